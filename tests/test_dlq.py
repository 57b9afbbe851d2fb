"""``ops dlq list | redrive`` against moto in-process (and once against moto's server, the
sandbox's emulator), and the message-move-task path, which moto 5.2.5 lacks, through
botocore's Stubber."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from typer.testing import CliRunner

from ops import dlq, dlq_render
from ops.cli import app
from ops.lambda_runtime import create_tables
from ops.status_model import LOG_TIMESTAMP_FORMAT
from tests.conftest import REGION, aws_error, failing

runner = CliRunner()


def s3_event(bucket: str, raw_key: str, version: str | None = None) -> str:
    obj = {"key": raw_key, "size": 3, "eTag": "e"}
    if version:
        obj["versionId"] = version
    return json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": bucket}, "object": obj}}]})


class Queues:
    def __init__(self):
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.ddb = boto3.client("dynamodb", region_name=REGION)
        create_tables(self.ddb)
        self.dlq = self.sqs.create_queue(QueueName="s3-prefix-keys-dev-dlq")["QueueUrl"]
        dlq_arn = self.sqs.get_queue_attributes(QueueUrl=self.dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"})
        self.queue = self.sqs.create_queue(QueueName="s3-prefix-keys-dev-queue", Attributes={"RedrivePolicy": policy})["QueueUrl"]

    def dead_letter(self, body: str) -> str:
        """Send, fail once (receive, no delete), and let SQS's redrive policy move it."""
        self.sqs.send_message(QueueUrl=self.queue, MessageBody=body)
        got = self.sqs.receive_message(QueueUrl=self.queue, VisibilityTimeout=0)["Messages"]
        assert not self.sqs.receive_message(QueueUrl=self.queue).get("Messages")  # now in the DLQ
        return got[0]["MessageId"]

    def counts(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def bodies(self, url: str) -> list[str]:
        out = []
        while got := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages"):
            out += [m["Body"] for m in got]
        return out

    def args(self) -> list[str]:
        return ["--dlq-url", self.dlq, "--queue-url", self.queue]


@pytest.fixture
def queues(monkeypatch):
    with mock_aws():
        q = Queues()
        monkeypatch.setattr(dlq_render, "clients", lambda target: (q.sqs, q.ddb))
        yield q


def test_list_decodes_every_message_and_consumes_none(queues):
    queues.dead_letter(s3_event("b", "tenant-a/red+flower%2B1.txt", version="v1"))
    queues.dead_letter(s3_event("b", "tenant-b/x.bin"))
    queues.dead_letter("not json")
    # The enforcer's row for the first object, written after its first receive; an
    # older row of the same object (before the failure) must not be taken for it.
    path = "s3://b/tenant-a/red flower+1.txt?versionId=v1"
    now = datetime.now(UTC)
    for when, outcome in ((now - timedelta(hours=2), "rekeyed"), (now + timedelta(seconds=2), "access-denied")):
        queues.ddb.put_item(TableName="log", Item={
            "s3_object_path": {"S": path}, "current_timestamp_utc": {"S": when.strftime(LOG_TIMESTAMP_FORMAT)},
            "outcome": {"S": outcome}, "action_reason": {"S": f"{outcome} reason"}})

    result = runner.invoke(app, ["dlq", "list", "--dlq-url", queues.dlq, "--log-table", "log", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    by_key = {e["key"]: e for e in doc["entries"]}
    assert set(by_key) == {"tenant-a/red flower+1.txt", "tenant-b/x.bin", None}
    first = by_key["tenant-a/red flower+1.txt"]
    assert (first["bucket"], first["version_id"], first["delivery"]) == ("b", "v1", "s3")
    assert first["first_failure"]["outcome"] == "access-denied"
    assert by_key["tenant-b/x.bin"]["first_failure"] is None
    assert "not JSON" in by_key[None]["malformed"]
    # one receive in the source queue, one more by this listing
    assert all(e["receive_count"] == 2 for e in doc["entries"])
    assert all(e["first_receive"] for e in doc["entries"])
    assert doc["messages_listed"] == 3
    # nothing consumed, and all visible again at once (handed back, not left to time out)
    visible = queues.sqs.get_queue_attributes(QueueUrl=queues.dlq, AttributeNames=["ApproximateNumberOfMessages"])
    assert visible["Attributes"]["ApproximateNumberOfMessages"] == "3"


def test_list_table_is_bounded_by_limit_and_says_so(queues):
    for i in range(12):
        queues.dead_letter(s3_event("b", f"p/k{i}"))
    result = runner.invoke(app, ["dlq", "list", "--dlq-url", queues.dlq, "--limit", "11"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert sum(f"p/k{i} " in result.output for i in range(12)) == 11
    assert "listed 11 of about 12 messages: raise --limit" in result.output
    assert "pass --log-table" in result.output
    assert queues.counts(queues.dlq) == 12


def test_redrive_falls_back_on_moto_and_moves_every_message(queues):
    bodies = [s3_event("b", f"p/k{i}") for i in range(3)]
    for body in bodies:
        queues.dead_letter(body)
    result = runner.invoke(app, ["dlq", "redrive", *queues.args()])
    assert result.exit_code == 0, result.output
    assert "no StartMessageMoveTask (NotImplementedError" in " ".join(result.output.split())
    assert "moved 3 of 3" in result.output
    assert sorted(queues.bodies(queues.queue)) == sorted(bodies)
    assert queues.counts(queues.dlq) == 0


def test_a_failure_between_send_and_delete_loses_nothing(queues):
    body = s3_event("b", "p/only")
    queues.dead_letter(body)
    queues.sqs.meta.events.register("before-call.sqs.DeleteMessage", failing("InternalError", 500, "DeleteMessage"))
    result = runner.invoke(app, ["dlq", "redrive", *queues.args(), "--format", "json"])
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["method"] == "receive-send-delete" and len(doc["duplicates"]) == 1
    assert "stays in both queues" in doc["failure"]
    # in both queues: the source has its copy, the DLQ still holds the original
    assert queues.counts(queues.dlq) == 1
    assert queues.bodies(queues.queue) == [body]


def test_a_failed_send_leaves_the_message_in_the_dlq(queues):
    queues.dead_letter(s3_event("b", "p/only"))
    queues.sqs.meta.events.register("before-call.sqs.SendMessage", failing("AccessDenied", 403, "SendMessage"))
    result = runner.invoke(app, ["dlq", "redrive", *queues.args()])
    assert result.exit_code == 1 and "still in the DLQ" in " ".join(result.output.split())
    assert queues.counts(queues.dlq) == 1 and queues.counts(queues.queue) == 0


def test_a_message_that_fails_again_during_the_fallback_is_not_moved_twice():
    # The fallback remembers the ids it sent: one dead-lettered back is handed back, not looped.
    sqs = Stubber(boto3.client("sqs", region_name=REGION))
    client = sqs.client
    sqs.add_response("get_queue_attributes", {"Attributes": {"ApproximateNumberOfMessages": "2"}})
    sqs.add_response("receive_message", {"Messages": [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": "x"}]})
    sqs.add_response("send_message", {"MessageId": "m2", "MD5OfMessageBody": "0"})
    sqs.add_response("delete_message", {})
    sqs.add_response("receive_message", {"Messages": [{"MessageId": "m2", "ReceiptHandle": "r2", "Body": "x"}]})
    sqs.add_response("change_message_visibility_batch", {"Successful": [{"Id": "0"}], "Failed": []})
    with sqs:
        result = dlq.fallback_redrive(client, dlq.Queues("https://q/dlq", "https://q/src", None, "t"),
                                      dlq.ProgressSink(), None, lambda s: None, 0)
    assert result.moved == 1 and "came back to the DLQ" in result.notes[0]


# -- the message move task (StartMessageMoveTask), which moto 5.2.5 lacks


DLQ_ARN = "arn:aws:sqs:us-east-1:123456789012:s3-prefix-keys-dev-dlq"
SRC_ARN = "arn:aws:sqs:us-east-1:123456789012:s3-prefix-keys-dev-queue"


def stubbed_task(statuses: list[dict], max_per_second: int | None = None) -> Stubber:
    client = boto3.client("sqs", region_name=REGION)
    stub = Stubber(client)
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": DLQ_ARN}},
                      {"QueueUrl": "https://q/dlq", "AttributeNames": ["QueueArn"]})
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": SRC_ARN}},
                      {"QueueUrl": "https://q/src", "AttributeNames": ["QueueArn"]})
    request = {"SourceArn": DLQ_ARN, "DestinationArn": SRC_ARN}
    if max_per_second:
        request["MaxNumberOfMessagesPerSecond"] = max_per_second
    stub.add_response("start_message_move_task", {"TaskHandle": "handle-1"}, request)
    for status in statuses:
        stub.add_response("list_message_move_tasks", {"Results": [{"SourceArn": DLQ_ARN, **status}]},
                          {"SourceArn": DLQ_ARN, "MaxResults": 1})
    return stub


class Recorder(dlq.ProgressSink):
    def __init__(self):
        self.total, self.done_count = None, 0

    def listed(self, n=1):
        self.total = n

    def done(self, n=1):
        self.done_count += n


def test_redrive_uses_the_message_move_task_and_reports_its_progress():
    stub = stubbed_task([
        {"Status": "RUNNING", "ApproximateNumberOfMessagesToMove": 5, "ApproximateNumberOfMessagesMoved": 2},
        {"Status": "RUNNING", "ApproximateNumberOfMessagesToMove": 5, "ApproximateNumberOfMessagesMoved": 4},
        {"Status": "COMPLETED", "ApproximateNumberOfMessagesToMove": 5, "ApproximateNumberOfMessagesMoved": 5},
    ], max_per_second=50)
    sleeps, progress = [], Recorder()
    with stub:
        result = dlq.redrive(stub.client, dlq.Queues("https://q/dlq", "https://q/src", None, "t"),
                             max_per_second=50, progress=progress, sleep=sleeps.append)
        stub.assert_no_pending_responses()
    assert result.ok and result.method == "message-move-task" and result.task_handle == "handle-1"
    assert (result.to_move, result.moved) == (5, 5)
    assert (progress.total, progress.done_count) == (5, 5)
    assert len(sleeps) == 2


def test_a_failed_message_move_task_exits_1_with_its_reason(monkeypatch):
    stub = stubbed_task([{"Status": "FAILED", "ApproximateNumberOfMessagesMoved": 1,
                          "ApproximateNumberOfMessagesToMove": 3, "FailureReason": "AccessDenied on the destination"}])
    monkeypatch.setattr(dlq_render, "clients", lambda target: (stub.client, None))
    with stub:
        result = runner.invoke(app, ["dlq", "redrive", "--dlq-url", "https://q/dlq", "--queue-url", "https://q/src"])
    assert result.exit_code == 1
    assert "moved 1 of 3" in result.output and "AccessDenied on the destination" in result.output


def test_a_refused_message_move_task_is_not_taken_for_a_missing_api():
    client = boto3.client("sqs", region_name=REGION)
    stub = Stubber(client)
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": DLQ_ARN}})
    stub.add_response("get_queue_attributes", {"Attributes": {"QueueArn": SRC_ARN}})
    stub.add_client_error("start_message_move_task", "AccessDenied", http_status_code=403)
    with stub, pytest.raises(Exception) as raised:
        dlq.redrive(client, dlq.Queues("https://q/dlq", "https://q/src", None, "t"))
    assert "AccessDenied" in str(raised.value)


@pytest.mark.parametrize("exc,endpoint,missing", [
    (NotImplementedError("The start_message_move_task action has not been implemented"), None, True),
    (aws_error("500", 500, "StartMessageMoveTask", "<title>500 Internal Server Error</title>"), "http://127.0.0.1:4566", True),
    (aws_error("500", 500, "StartMessageMoveTask"), None, False),  # AWS's own 500 is a fault, not a missing API
    (aws_error("InvalidAction", 400, "StartMessageMoveTask"), None, True),
    (aws_error("UnsupportedOperation", 400, "StartMessageMoveTask"), None, False),
    (aws_error("AccessDenied", 403, "StartMessageMoveTask"), "http://localhost:4566", False),
])
def test_api_missing_is_told_apart_from_a_refusal(exc, endpoint, missing):
    assert dlq.api_missing(exc, endpoint) is missing


# -- bad input: exit 2, one line


def test_a_stack_without_outputs_exits_2(monkeypatch):
    monkeypatch.setattr(dlq, "read_stack_outputs", lambda stack: {})
    result = runner.invoke(app, ["dlq", "list", "--stack", "prod"])
    assert result.exit_code == 2
    assert "stack 'prod' has no output deadLetterQueueUrl" in result.output and len(result.output.strip().splitlines()) == 1


def test_a_queue_that_does_not_exist_exits_2(queues):
    result = runner.invoke(app, ["dlq", "list", "--dlq-url", queues.dlq + "-nope"], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "does not exist" in result.output, result.output


def test_max_per_second_over_sqs_limit_is_refused():
    result = runner.invoke(app, ["dlq", "redrive", "--dlq-url", "u", "--max-per-second", "501"])
    assert result.exit_code == 2 and "--max-per-second" in result.output


# -- the sandbox: moto's server, queues by the sandbox's names, its answer to the missing API


def test_sandbox_redrive_through_moto_server(monkeypatch):
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        q = Queues()
        q.dead_letter(s3_event("b", "p/k"))
        listed = runner.invoke(app, ["--endpoint-url", endpoint, "dlq", "list", "--format", "json"])
        assert listed.exit_code == 0, listed.output
        assert [e["key"] for e in json.loads(listed.stdout)["entries"]] == ["p/k"]
        result = runner.invoke(app, ["--endpoint-url", endpoint, "dlq", "redrive", "--format", "json"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["method"] == "receive-send-delete" and "it answered 500" in doc["fallback_reason"]
        assert q.counts(q.dlq) == 0 and q.counts(q.queue) == 1
    finally:
        server.stop()
