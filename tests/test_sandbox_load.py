"""The sandbox under load: the event source mapping's concurrent pollers against moto
in-process (no message lost or processed twice under injected failures), and the status
model with its one-line rendering and "falling behind" note, alone and in the sandbox."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from rich.console import Console

from ops import status_model
from ops.lambda_runtime import create_tables
from ops.sandbox import lifecycle
from ops.sandbox.emulator import free_port
from ops.sandbox.esm_runner import EventSourceMapping
from tests.conftest import aws_error

REGION = "us-east-1"
PRINCIPAL = "AWS:AROAEXAMPLE:s3-prefix-keys-test-enforcer"


def s3_body(key: str) -> str:
    """An S3 ObjectCreated notification that passes the enforcer's filter criteria."""
    return json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": "b"}, "object": {"key": key}}}]})


def key_of(record: dict) -> str:
    return json.loads(record["body"])["Records"][0]["s3"]["object"]["key"]


class FlakySqs:
    """The SQS client with failures injected into the pollers' acknowledgements."""

    def __init__(self, sqs, throttle_every: int, partial_once: str, lose_delete_of: str, visibility_fail_once: bool):
        self.sqs = sqs
        self.throttle_every = throttle_every
        self.partial_once = partial_once  # this key's first delete answers Failed (a server fault)
        self.lose_delete_of = lose_delete_of  # every delete of this key fails, the first time it is received
        self.visibility_fail_once = visibility_fail_once
        self.lock = threading.Lock()
        self.delete_calls = 0
        self.throttled = 0
        self.keys: dict[str, str] = {}  # receipt handle -> key
        self.lost_receipts: set[str] = set()

    def __getattr__(self, name):
        return getattr(self.sqs, name)

    def receive_message(self, **kwargs):
        answer = self.sqs.receive_message(**kwargs)
        with self.lock:
            for message in answer.get("Messages", []):
                key = json.loads(message["Body"])["Records"][0]["s3"]["object"]["key"]
                self.keys[message["ReceiptHandle"]] = key
                if key == self.lose_delete_of and not self.lost_receipts:
                    self.lost_receipts.add(message["ReceiptHandle"])
        return answer

    def delete_message_batch(self, QueueUrl, Entries):  # noqa: N803 - boto3's parameter names
        with self.lock:
            self.delete_calls += 1
            if self.delete_calls % self.throttle_every == 0:
                self.throttled += 1
                raise aws_error("ThrottlingException", 400, "DeleteMessageBatch", "Rate exceeded")
            failed = [e for e in Entries if e["ReceiptHandle"] in self.lost_receipts]
            if self.partial_once:
                failed += [e for e in Entries if self.keys.get(e["ReceiptHandle"]) == self.partial_once]
                if failed:
                    self.partial_once = ""
        keep = [e for e in Entries if e not in failed]
        answer = self.sqs.delete_message_batch(QueueUrl=QueueUrl, Entries=keep) if keep else {"Successful": []}
        answer["Failed"] = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in failed]
        return answer

    def change_message_visibility(self, **kwargs):
        with self.lock:
            if self.visibility_fail_once:
                self.visibility_fail_once = False
                raise aws_error("InternalError", 500, "ChangeMessageVisibility")
        return self.sqs.change_message_visibility(**kwargs)


class RecordingHandler:
    """Thread-safe stand-in for the function: injected batch item failures and one crash."""

    def __init__(self, fail_first: set[str], crash_on: str, seconds: float = 0.05):
        self.fail_first = fail_first
        self.crash_on = crash_on
        self.seconds = seconds
        self.lock = threading.Lock()
        self.attempts: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        self.active = 0
        self.most_active = 0
        self.crashed: set[str] = set()  # the keys of the batch that crashed
        self.failed_once: set[str] = set()

    def __call__(self, event, context):
        keys = [key_of(r) for r in event["Records"]]
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.attempts.update(keys)
            crash = self.crash_on in keys and self.attempts[self.crash_on] == 1
            if crash:
                self.crashed = set(keys)
        try:
            time.sleep(self.seconds)  # the work, so that batches overlap
            if crash:
                raise RuntimeError("injected: the function crashed")
            with self.lock:
                # Each of fail_first fails once, in the first batch that does not crash.
                failing = {k for k in keys if k in self.fail_first and k not in self.failed_once}
                self.failed_once |= failing
                failed = [r["messageId"] for r, k in zip(event["Records"], keys, strict=True) if k in failing]
                self.successes.update(k for r, k in zip(event["Records"], keys, strict=True)
                                      if r["messageId"] not in failed)
            return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}
        finally:
            with self.lock:
                self.active -= 1


def queue_counts(sqs, url: str) -> tuple[int, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


@pytest.fixture
def queues():
    with mock_aws():
        sqs = boto3.client("sqs", region_name=REGION)
        dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        # A short visibility timeout: a message whose acknowledgement was lost comes back
        # within the test.
        url = sqs.create_queue(QueueName="q", Attributes={
            "VisibilityTimeout": "2",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        })["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        yield sqs, url, arn, dlq


def test_concurrent_pollers_lose_nothing_and_process_nothing_twice(queues):
    sqs, url, arn, dlq = queues
    keys = [f"prefix1/k{i:03d}" for i in range(120)]
    fail_first = set(keys[3::10])  # a batch item failure on the first delivery
    handler = RecordingHandler(fail_first, crash_on=keys[50])
    flaky = FlakySqs(sqs, throttle_every=5, partial_once=keys[7], lose_delete_of=keys[90], visibility_fail_once=True)
    esm = EventSourceMapping(flaky, url, arn, REGION, handler, PRINCIPAL, batch_size=5, retry_delay_seconds=0,
                             concurrency=4)
    for start in range(0, len(keys), 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": s3_body(k)}
                                                      for i, k in enumerate(keys[start:start + 10])])
    esm.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if set(handler.successes) == set(keys) and esm.holding() == 0 and queue_counts(sqs, url) == (0, 0):
                break
            time.sleep(0.1)
    finally:
        esm.stop()

    # Concurrency: batches overlapped, never more than the pollers.
    assert 1 < handler.most_active <= 4
    # Nothing lost: every message succeeded and is gone, nothing went to the DLQ.
    assert set(handler.successes) == set(keys)
    assert queue_counts(sqs, url) == (0, 0)
    assert queue_counts(sqs, dlq) == (0, 0)
    # Nothing processed twice, except the one message whose every delete failed: that one
    # was redelivered after its visibility timeout, as SQS does, and succeeded again.
    twice = {k for k, n in handler.successes.items() if n > 1}
    assert twice == {keys[90]} and handler.successes[keys[90]] == 2
    assert esm.stats.delete_failures == 1
    # Each failure (a batch item failure, the crashed batch, the lost delete) cost one more
    # delivery of exactly the messages it concerned, and nothing else did.
    assert keys[50] in handler.crashed and 1 <= len(handler.crashed) <= 5
    expected = {k: 1 + (k in fail_first) + (k in handler.crashed) + (k == keys[90]) for k in keys}
    assert dict(handler.attempts) == expected
    assert esm.stats.handler_errors == 1
    assert flaky.throttled > 0 and esm.stats.visibility_failures == 1
    # Acknowledged once per message: each deleted once (the lost delete's message by its
    # redelivery), every delivery received once by the pollers.
    assert esm.stats.deleted == len(keys)
    assert esm.stats.received == sum(expected.values()) and esm.holding() == 0


def test_a_second_copy_of_a_held_message_is_left_to_its_holder(queues):
    sqs, url, arn, _ = queues
    sqs.send_message(QueueUrl=url, MessageBody=s3_body("prefix1/once"))
    message = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["All"])["Messages"][0]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    handler = RecordingHandler(set(), crash_on="")
    esm = EventSourceMapping(sqs, url, arn, REGION, handler, PRINCIPAL)
    held = esm._hold([message])  # a poller holds the first copy
    assert held == [message]
    assert esm.poll(wait_seconds=0) is None  # the second copy is not processed
    assert esm.stats.duplicates == 1 and handler.attempts == Counter()
    esm._release(held)


# -- the status model ---------------------------------------------------------------------------


def test_render_line_shows_the_pipeline_and_only_what_is_known():
    snap = status_model.StatusSnapshot(queue_depth=3, in_flight=2, dlq_depth=1, received=40, processed=35,
                                       rate_per_second=20.0)
    line = status_model.render_line(snap)
    assert line.split(" · ")[:5] == ["received 40", "processed 35", "in flight 2", "queue 3", "DLQ 1"]
    assert "oldest" not in line and "falling behind" not in line  # 5 messages at 20/s drain at once
    bare = status_model.render_line(status_model.StatusSnapshot(queue_depth=0, in_flight=0, dlq_depth=0))
    assert bare == "in flight 0 · queue 0 · DLQ 0"
    with_outcomes = status_model.StatusSnapshot(0, 0, 0, outcomes={"rekeyed": 4, "compliant": 1})
    assert status_model.render_line(with_outcomes).endswith("compliant 1, rekeyed 4")


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"queue_depth": 0, "in_flight": 5, "rate_per_second": 0.01}, None),  # nothing waits
        ({"queue_depth": 500, "in_flight": 10, "rate_per_second": 50.0}, None),  # ~10 s to drain
        ({"queue_depth": 500, "in_flight": 10, "rate_per_second": 5.0}, "~102s at 5.0/s"),
        ({"queue_depth": 2, "in_flight": 0, "oldest_age_seconds": 45.0}, "waited 45s"),
        ({"queue_depth": 2, "in_flight": 0}, None),  # no rate, no age: nothing to judge by
    ],
)
def test_falling_behind_note(fields, why):
    snap = status_model.StatusSnapshot(dlq_depth=0, **fields)
    note = status_model.falling_behind(snap)
    line = status_model.render_line(snap)
    if why is None:
        assert note is None and "falling behind" not in line
    else:
        assert why in note and line.endswith(f"falling behind: {note}")


def test_read_status_from_the_queues_and_the_log_table(queues):
    sqs, url, _, dlq = queues
    for i in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)
    sqs.send_message(QueueUrl=dlq, MessageBody="dead")
    ddb = boto3.client("dynamodb", region_name=REGION)
    create_tables(ddb)
    now = datetime.now(UTC)
    for path, when, outcome in (("s3://b/a", now, "rekeyed"), ("s3://b/b", now, "rekeyed"),
                                ("s3://b/c", now, "compliant"), ("s3://b/old", now - timedelta(hours=2), "failed")):
        ddb.put_item(TableName="log", Item={
            "s3_object_path": {"S": path},
            "current_timestamp_utc": {"S": when.strftime(status_model.LOG_TIMESTAMP_FORMAT)},
            "outcome": {"S": outcome},
        })
    snap = status_model.read_status(sqs, url, dlq, dynamodb=ddb, log_table="log")
    assert (snap.queue_depth, snap.in_flight, snap.dlq_depth) == (2, 1, 1)
    assert dict(snap.outcomes) == {"rekeyed": 2, "compliant": 1}  # the last hour only
    assert snap.oldest_age_seconds is None  # only CloudWatch knows it


def test_the_sandbox_prints_its_status_and_notes_a_backlog(tmp_path, monkeypatch):
    monkeypatch.setattr(lifecycle, "PIPE_STATUS_INTERVAL_SECONDS", 0.0)
    # Any backlog counts as behind here: the test is that the note reaches the console.
    monkeypatch.setattr(status_model, "BEHIND_DRAIN_SECONDS", 0.01)
    out = io.StringIO()
    with lifecycle.Sandbox("dev", port=free_port(), console=Console(file=out, width=300), concurrency=1,
                           retry_delay_seconds=0) as box:
        box.run_until_idle()
        slow = RecordingHandler(set(), crash_on="", seconds=0.3)
        box.esm.handler = slow
        sqs, url = box.client("sqs"), box.prov.queue_url
        for start in range(0, 100, 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": s3_body(f"prefix1/s{start + i}")}
                                                          for i in range(10)])
        stop = threading.Event()
        serving = threading.Thread(target=box.serve_forever, args=(stop,))
        serving.start()
        try:
            assert box.run_until_idle(lambda: len(slow.successes) == 100, timeout=60)
        finally:
            stop.set()
            serving.join(30)
        assert not box.esm.running  # serve_forever stops its pollers
    text = out.getvalue()
    statuses = [line for line in text.splitlines() if line.startswith("status: ")]
    assert statuses and all(" · DLQ 0" in line for line in statuses)
    # While the slow function worked, messages waited: the line showed them.
    assert max(int(re.search(r" · queue (\d+) · ", line).group(1)) for line in statuses) > 0
    assert "note: the queue is falling behind" in text
    assert sum(slow.successes.values()) == 100


# -- the emulator ------------------------------------------------------------------------------


def test_speedups_keep_moto_s_answers_and_are_undone(queues):
    from moto import backends
    from moto.sqs.models import SQSBackend, sqs_backends

    from ops.sandbox.emulator import moto_speedups

    sqs, _, _, _ = queues
    urls = {name: sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
            for name in ("expired", "fresh")}
    for name, url in urls.items():
        sqs.send_message(QueueUrl=url, MessageBody=name)
    sqs_backends["123456789012"][REGION].queues["expired"]._messages[0].sent_timestamp -= 61_000  # past 60 s
    listed, check = backends.list_of_moto_modules, SQSBackend.is_message_valid_based_on_retention_period
    with moto_speedups():
        assert backends.list_of_moto_modules() == tuple(listed())
        got = {name: sqs.receive_message(QueueUrl=url).get("Messages", []) for name, url in urls.items()}
    # Retention still holds: a message past it is not delivered, a fresh one is.
    assert got["expired"] == [] and [m["Body"] for m in got["fresh"]] == ["fresh"]
    assert backends.list_of_moto_modules is listed
    assert SQSBackend.is_message_valid_based_on_retention_period is check


def test_the_emulator_runs_in_a_process_of_its_own():
    from moto.s3.models import s3_backends

    from ops.sandbox.emulator import client, running

    with running(free_port()) as url:
        client("s3", url, REGION).create_bucket(Bucket="made-over-http")
        assert client("s3", url, REGION).list_buckets()["Buckets"][0]["Name"] == "made-over-http"
        # This process's moto never saw it: the server's backends live in the other process.
        assert "made-over-http" not in s3_backends["123456789012"]["aws"].buckets
