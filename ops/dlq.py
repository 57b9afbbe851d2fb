"""``ops dlq list | redrive``: what the enforcer's dead-letter queue holds, decoded, and
moving it back to the source queue. This module owns the SQS and log-table work; the
commands' options and their table and JSON output are ``ops/dlq_render.py``.

Where the queues come from: ``--dlq-url`` (with ``--queue-url``, ``--log-table``) names
them outright; else with an endpoint (``--endpoint-url``, the sandbox) they are the
sandbox's names for ``--stack`` (``SandboxNames``); else they are the deployed stack's
outputs ``deadLetterQueueUrl``, ``queueUrl`` and ``logTableName``.

SQS has no peek. ``list`` receives (never deletes) with a short visibility timeout, so
that it can see more than one batch, and then makes each message visible again
(ChangeMessageVisibility 0): for at most ``LIST_VISIBILITY_SECONDS`` the listed
messages are invisible, and each listing adds one to their ApproximateReceiveCount.

``redrive`` uses SQS's own message-move task. Where that API is missing (moto, so the
sandbox), it falls back to receive -> send -> delete, one message at a time: a message
is deleted from the DLQ only after the source queue accepted its copy, so a failure in
between leaves a duplicate (the enforcer is idempotent), never a loss.
"""

from __future__ import annotations

import ipaddress
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from botocore.exceptions import ClientError

from enforcer.events import MalformedMessage, ObjectRef, parse_message
from ops.sources import InputError
from ops.status_model import LOG_TIMESTAMP_FORMAT
from ops.terminal import ProgressSink

SQS_API = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_{}.html"

# A listing holds each message this long at most; it hands them back at once when done.
LIST_VISIBILITY_SECONDS = 30
# The fallback holds the message it is moving this long: far more than one send and one
# delete take, so no other consumer receives it meanwhile.
MOVE_VISIBILITY_SECONDS = 60
# "The maximum value for messages per second is 500" (API_StartMessageMoveTask).
MAX_MESSAGES_PER_SECOND = 500
# ListMessageMoveTasks: "Status ... RUNNING, COMPLETED, CANCELLING, CANCELLED, and
# FAILED" (API_ListMessageMoveTasksResultEntry).
TASK_DONE = {"COMPLETED", "CANCELLED", "FAILED"}


# -- where the queues are ------------------------------------------------------


@dataclass(frozen=True)
class Queues:
    dlq_url: str
    queue_url: str | None  # the source queue: the redrive's destination
    log_table: str | None
    origin: str  # how they were found, for the output


def effective_endpoint(endpoint_url: str | None) -> str | None:
    # The global --endpoint-url reaches the commands as AWS_ENDPOINT_URL (ops/cli.py).
    return endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None


def read_stack_outputs(stack: str) -> dict[str, Any]:
    """The deployed stack's outputs as plain values (Automation API; a seam for tests)."""
    from ops import deploy

    try:
        deploy.check_pulumi_cli()
        return {name: out.value for name, out in deploy.stack_outputs(stack, deploy.PROJECT_ROOT).items()}
    except deploy.DeployError as exc:
        raise InputError(f"{exc}; or name the queue with --dlq-url") from None


def resolve_queues(
    sqs,
    stack: str,
    endpoint_url: str | None,
    dlq_url: str | None = None,
    queue_url: str | None = None,
    log_table: str | None = None,
) -> Queues:
    if dlq_url:
        return Queues(dlq_url, queue_url, log_table, "--dlq-url")
    if endpoint_url:
        from ops.sandbox.provisioning import SandboxNames  # the sandbox's naming, not repeated here

        names = SandboxNames(stack)
        return Queues(
            _queue_url(sqs, names.dead_letter_queue, endpoint_url, stack),
            queue_url or _queue_url(sqs, names.queue, endpoint_url, stack),
            log_table or names.log_table,
            f"sandbox stack {stack} at {endpoint_url}",
        )
    outputs = read_stack_outputs(stack)
    if not outputs.get("deadLetterQueueUrl"):
        raise InputError(
            f"stack {stack!r} has no output deadLetterQueueUrl (not deployed yet?): deploy it with "
            f"`python -m ops up --stack {stack}`, or name the queue with --dlq-url"
        )
    return Queues(
        outputs["deadLetterQueueUrl"],
        queue_url or outputs.get("queueUrl"),
        log_table or outputs.get("logTableName"),
        f"stack {stack}",
    )


def _queue_url(sqs, name: str, endpoint_url: str, stack: str) -> str:
    try:
        return sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if _code(exc) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise InputError(
                f"no queue {name} at {endpoint_url}: start the sandbox (`python -m ops sandbox --stack {stack}`), "
                "pass the --stack it runs, or name the queue with --dlq-url"
            ) from None
        raise


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def queue_attributes(sqs, url: str, *names: str) -> dict[str, str]:
    try:
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names))["Attributes"]
    except ClientError as exc:
        if _code(exc) in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            raise InputError(f"queue {url} does not exist (at this endpoint and region): check the URL or --region") from None
        raise


# -- list ----------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One object referred to by one DLQ message (or the message, when its body is none)."""

    message_id: str
    receives: int
    first_receive: datetime | None  # SQS's ApproximateFirstReceiveTimestamp: the first delivery
    sent: datetime | None
    ref: ObjectRef | None = None
    malformed: str | None = None
    log_row: dict[str, Any] | None = None  # the first log row at or after the first receive

    def to_json(self) -> dict[str, Any]:
        row = self.log_row or {}
        return {
            "message_id": self.message_id,
            "bucket": self.ref.bucket if self.ref else None,
            "key": self.ref.key if self.ref else None,
            "version_id": self.ref.version_id if self.ref else None,
            "delivery": self.ref.delivery if self.ref else None,
            "receive_count": self.receives,
            "first_receive": self.first_receive.isoformat() if self.first_receive else None,
            "sent": self.sent.isoformat() if self.sent else None,
            "malformed": self.malformed,
            "first_failure": {k: row.get(k) for k in ("current_timestamp_utc", "outcome", "action_reason")} if row else None,
        }


@dataclass
class Listing:
    queues: Queues
    depth: int  # ApproximateNumberOfMessages before the listing
    messages: int = 0
    entries: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _millis(value: str | None) -> datetime | None:
    # "ApproximateFirstReceiveTimestamp and SentTimestamp are each returned as an integer
    # representing the epoch time in milliseconds" (API_ReceiveMessage).
    return datetime.fromtimestamp(int(value) / 1000, UTC) if value else None


def peek(sqs, dlq_url: str, limit: int, wait_seconds: int = 1) -> list[dict[str, Any]]:
    """Up to ``limit`` messages of the queue, none deleted, all visible again on return."""
    seen: dict[str, dict[str, Any]] = {}
    try:
        while len(seen) < limit:
            got = sqs.receive_message(
                QueueUrl=dlq_url,
                MaxNumberOfMessages=min(10, limit - len(seen)),  # ReceiveMessage's maximum
                VisibilityTimeout=LIST_VISIBILITY_SECONDS,
                # A long poll, however short, asks every SQS server: a short poll samples a
                # subset and can answer nothing while messages wait (API_ReceiveMessage).
                WaitTimeSeconds=wait_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            fresh = [m for m in got if m["MessageId"] not in seen]
            if not fresh:
                break
            seen.update((m["MessageId"], m) for m in fresh)
    finally:
        _hand_back(sqs, dlq_url, list(seen.values()))
    return list(seen.values())


def _hand_back(sqs, url: str, messages: list[dict[str, Any]]) -> None:
    # Best effort, so the batch's per-entry Failed list is not checked: a message not
    # handed back is visible again after LIST_VISIBILITY_SECONDS anyway.
    for start in range(0, len(messages), 10):  # ChangeMessageVisibilityBatch takes 10 entries
        chunk = messages[start:start + 10]
        sqs.change_message_visibility_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)],
        )


def entries_of(message: dict[str, Any]) -> list[Entry]:
    attrs = message.get("Attributes") or {}
    base = dict(
        message_id=message["MessageId"],
        receives=int(attrs.get("ApproximateReceiveCount", 0)),
        first_receive=_millis(attrs.get("ApproximateFirstReceiveTimestamp")),
        sent=_millis(attrs.get("SentTimestamp")),
    )
    try:
        refs = parse_message(message.get("Body", ""))
    except MalformedMessage as exc:
        return [Entry(**base, malformed=str(exc))]
    if not refs:
        return [Entry(**base, malformed="S3 test event (no object)")]
    return [Entry(**base, ref=ref) for ref in refs]


class LogLookup:
    """The first log row of an object at or after a time: one Query, Limit 1."""

    # The row is written by the Lambda after SQS counted the receive; a second of slack
    # covers the two clocks.
    SLACK = timedelta(seconds=1)

    def __init__(self, ddb, table: str):
        self._ddb, self.table, self.problem = ddb, table, None

    def first_row(self, ref: ObjectRef, since: datetime | None) -> dict[str, Any] | None:
        if self.problem:
            return None
        values = {":p": {"S": ref.s3_path}}
        condition = "s3_object_path = :p"
        if since is not None:
            # Fixed-width UTC timestamps: string order is time order (ops/status_model.py).
            values[":t"] = {"S": (since - self.SLACK).strftime(LOG_TIMESTAMP_FORMAT)}
            condition += " AND current_timestamp_utc >= :t"
        try:
            items = self._ddb.query(
                TableName=self.table, KeyConditionExpression=condition, ExpressionAttributeValues=values,
                Limit=1, ScanIndexForward=True,
            ).get("Items", [])
        except ClientError as exc:
            # Listing the DLQ is worth more than the log column: say why it is empty, once.
            self.problem = f"log table {self.table}: {_code(exc)} ({exc.response.get('Error', {}).get('Message', '')})"
            return None
        return {k: next(iter(v.values())) for k, v in items[0].items()} if items else None


def list_dlq(sqs, ddb, queues: Queues, limit: int, progress: ProgressSink | None = None, wait_seconds: int = 1) -> Listing:
    progress = progress or ProgressSink()
    depth = int(queue_attributes(sqs, queues.dlq_url, "ApproximateNumberOfMessages").get("ApproximateNumberOfMessages", 0))
    listing = Listing(queues, depth)
    messages = peek(sqs, queues.dlq_url, limit, wait_seconds) if limit else []
    listing.messages = len(messages)
    lookup = LogLookup(ddb, queues.log_table) if queues.log_table and ddb is not None else None
    entries = [e for m in messages for e in entries_of(m)]
    progress.listed(len(entries))
    progress.listing_finished()
    for entry in entries:
        if lookup and entry.ref:
            entry = replace(entry, log_row=lookup.first_row(entry.ref, entry.first_receive))
        listing.entries.append(entry)
        progress.done()
    if lookup and lookup.problem:
        listing.notes.append(lookup.problem)
    if not queues.log_table:
        listing.notes.append("no log table known: pass --log-table to show each object's first failure")
    if depth > len(messages) and len(messages) == limit:
        listing.notes.append(f"listed {limit} of about {depth} messages: raise --limit to see more")
    listing.entries.sort(key=lambda e: (e.first_receive or datetime.max.replace(tzinfo=UTC), e.message_id))
    return listing


# -- redrive -------------------------------------------------------------------


def _is_local(endpoint_url: str | None) -> bool:
    host = (urlparse(endpoint_url or "").hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_missing(exc: BaseException, endpoint_url: str | None) -> bool:
    """Whether the endpoint lacks the message-move API (rather than refusing this request).

    * moto in-process (5.2.5) raises NotImplementedError("The start_message_move_task
      action has not been implemented") from ``BaseResponse.call_action``;
    * moto's server (the sandbox) answers the same as an HTTP 500 whose body is
      werkzeug's HTML "Internal Server Error" page, so botocore's error code is the
      bare status "500". Only a loopback endpoint's such answer counts: from AWS a 500
      is InternalFailure, a retryable fault;
    * an emulator that knows it lacks the action answers InvalidAction ("The action or
      operation requested is invalid", SQS API Reference, Common Errors:
      https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/CommonErrors.html)
      or, over the JSON protocol, UnknownOperationException.
    """
    if isinstance(exc, NotImplementedError):
        return True
    if not isinstance(exc, ClientError):
        return False
    code = _code(exc)
    if code in ("InvalidAction", "UnknownOperationException"):
        return True
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code == "500" and status == 500 and _is_local(endpoint_url)


@dataclass
class RedriveResult:
    method: str  # "message-move-task" | "receive-send-delete"
    to_move: int | None = None
    moved: int = 0
    status: str = "COMPLETED"
    failure: str | None = None
    task_handle: str | None = None
    duplicates: list[str] = field(default_factory=list)  # sent to the source, still in the DLQ
    fallback_reason: str | None = None  # why the message-move task was not used
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "COMPLETED" and self.failure is None


def redrive(
    sqs,
    queues: Queues,
    endpoint_url: str | None = None,
    max_per_second: int | None = None,
    progress: ProgressSink | None = None,
    on_note: Callable[[str], None] = lambda note: None,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    wait_seconds: int = 1,
) -> RedriveResult:
    progress = progress or ProgressSink()
    if not queues.queue_url:
        raise InputError("the source queue is not known: pass --queue-url (the queue the DLQ's messages came from)")
    dlq_arn = queue_attributes(sqs, queues.dlq_url, "QueueArn")["QueueArn"]
    source_arn = queue_attributes(sqs, queues.queue_url, "QueueArn")["QueueArn"]
    # StartMessageMoveTask: SourceArn is the DLQ; DestinationArn, when given, "the queue
    # that receives the moved messages" (left out, "the messages will be redriven back to
    # their respective original source queues"); MaxNumberOfMessagesPerSecond left out
    # lets SQS pick the rate (API_StartMessageMoveTask).
    request: dict[str, Any] = {"SourceArn": dlq_arn, "DestinationArn": source_arn}
    if max_per_second is not None:
        request["MaxNumberOfMessagesPerSecond"] = max_per_second
    try:
        handle = sqs.start_message_move_task(**request)["TaskHandle"]
    except (NotImplementedError, ClientError) as exc:
        if not api_missing(exc, endpoint_url):
            raise
        note = (f"this endpoint has no StartMessageMoveTask ({_why(exc)}): moving the messages one at a time "
                "(receive, send to the source queue, delete)")
        on_note(note)
        result = fallback_redrive(sqs, queues, progress, max_per_second, sleep, wait_seconds)
        result.fallback_reason = note
        return result
    return watch_task(sqs, dlq_arn, handle, progress, poll_seconds, sleep)


def _why(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return f"it answered {_code(exc)}"
    return f"{type(exc).__name__}: {exc}"


def watch_task(sqs, dlq_arn: str, handle: str, progress: ProgressSink, poll_seconds: float,
               sleep: Callable[[float], None]) -> RedriveResult:
    """Poll ListMessageMoveTasks until the task ends; its progress goes to ``progress``."""
    result = RedriveResult("message-move-task", task_handle=handle, status="RUNNING")
    total_known = False
    while True:
        # "Gets the most recent message movement tasks (up to 10) under a specific source
        # queue" (API_ListMessageMoveTasks): the first is ours, the only one that can run
        # ("Only one active message movement task is supported per queue").
        tasks = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=1).get("Results", [])
        task = tasks[0] if tasks else {}
        to_move = task.get("ApproximateNumberOfMessagesToMove")
        if to_move is not None and not total_known:
            result.to_move, total_known = int(to_move), True
            progress.listed(result.to_move)
            progress.listing_finished()
        moved = int(task.get("ApproximateNumberOfMessagesMoved", 0))
        if moved > result.moved:
            progress.done(moved - result.moved)
            result.moved = moved
        result.status = task.get("Status", "RUNNING")
        if result.status in TASK_DONE:
            if result.status == "FAILED":
                result.failure = task.get("FailureReason") or "the message move task failed"
            elif result.status == "CANCELLED":
                result.failure = "the message move task was cancelled (CancelMessageMoveTask)"
            return result
        sleep(poll_seconds)


def fallback_redrive(sqs, queues: Queues, progress: ProgressSink, max_per_second: int | None,
                     sleep: Callable[[float], None], wait_seconds: int) -> RedriveResult:
    """receive -> send -> delete, one message at a time; stops at the first failure."""
    assert queues.queue_url
    if queues.dlq_url.endswith(".fifo"):
        raise InputError(f"{queues.dlq_url} is a FIFO queue: the one-at-a-time redrive handles standard queues only")
    depth = int(queue_attributes(sqs, queues.dlq_url, "ApproximateNumberOfMessages").get("ApproximateNumberOfMessages", 0))
    result = RedriveResult("receive-send-delete", to_move=depth)
    progress.listed(depth)
    progress.listing_finished()
    sent_ids: set[str] = set()
    while result.moved < depth:
        got = sqs.receive_message(
            QueueUrl=queues.dlq_url, MaxNumberOfMessages=1, VisibilityTimeout=MOVE_VISIBILITY_SECONDS,
            WaitTimeSeconds=wait_seconds, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not got:
            break
        message = got[0]
        if message["MessageId"] in sent_ids:
            # One we moved failed again and was dead-lettered back: moving it again would
            # loop. Hand it back and stop; its cause needs fixing first.
            _hand_back(sqs, queues.dlq_url, [message])
            result.notes.append(f"message {message['MessageId']} came back to the DLQ during the redrive; left there")
            break
        try:
            sent = sqs.send_message(QueueUrl=queues.queue_url, MessageBody=message["Body"], **_carried(message))
        except ClientError as exc:
            # Not sent: it stays in the DLQ (visible again after the visibility timeout).
            result.failure = f"sending message {message['MessageId']} to {queues.queue_url} failed: {exc}; it is still in the DLQ"
            break
        sent_ids.add(sent["MessageId"])
        try:
            sqs.delete_message(QueueUrl=queues.dlq_url, ReceiptHandle=message["ReceiptHandle"])
        except ClientError as exc:
            result.duplicates.append(message["MessageId"])
            result.failure = (
                f"message {message['MessageId']} was sent to the source queue (as {sent['MessageId']}) but deleting it "
                f"from the DLQ failed: {exc}; it stays in both queues, so a rerun redrives it again (a duplicate the "
                "enforcer handles as a no-op once the object is compliant)"
            )
            result.moved += 1
            progress.done()
            break
        result.moved += 1
        progress.done()
        if max_per_second:
            sleep(1.0 / max_per_second)
    return result


def _carried(message: dict[str, Any]) -> dict[str, Any]:
    """What SendMessage can carry over: the message attributes and the X-Ray trace header."""
    out: dict[str, Any] = {}
    if message.get("MessageAttributes"):
        out["MessageAttributes"] = {
            name: {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
            for name, value in message["MessageAttributes"].items()
        }
    trace = (message.get("Attributes") or {}).get("AWSTraceHeader")
    if trace:
        # "Currently, the only supported message system attribute is AWSTraceHeader" (API_SendMessage).
        out["MessageSystemAttributes"] = {"AWSTraceHeader": {"DataType": "String", "StringValue": trace}}
    return out

