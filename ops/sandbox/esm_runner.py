"""Lambda's SQS event source mapping for the enforcer: polling, the deployed filter
criteria, ``batchItemFailures`` made visible again for SQS's redrive policy, and up to
``maximumConcurrency`` batches in flight at once, each in an execution environment of
its own.

Acknowledgement is exactly-once per receive: a message is deleted after success or
filtering, or made visible again after a failure, never both; a delete that fails is
retried, and if it still fails the message is redelivered when its visibility timeout
ends (processed again, never lost).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from components.event_filter import enforcer_filter_patterns, esm_accepts
from ops.lambda_runtime import LambdaContext, sqs_event

# Lambda leaves a failed message invisible for the queue's visibility timeout (12
# minutes with the stack's defaults); the sandbox makes it visible again after this,
# so retries and the dead-letter queue can be watched in seconds.
DEFAULT_RETRY_DELAY_SECONDS = 1
# SQS's ReceiveMessage limit (MaxNumberOfMessages 1 to 10,
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html);
# Lambda's larger batches need a batching window.
SQS_MAX_MESSAGES = 10
# A delete that fails (throttled, a 5xx) is tried this often, with a doubling pause,
# before the message is left to be redelivered.
DELETE_ATTEMPTS = 4
DELETE_BACKOFF_SECONDS = 0.05
# The recent processing rate, for the status line, is measured over this window.
RATE_WINDOW_SECONDS = 10.0

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@dataclass
class EsmStats:
    received: int = 0
    invocations: int = 0
    records_invoked: int = 0
    failed: int = 0
    filtered_own_writes: int = 0  # the enforcer's own copies, dropped by the filters
    filtered_other: int = 0  # s3:TestEvent and anything else no filter accepts
    handler_errors: int = 0
    deleted: int = 0  # acknowledged: succeeded or filtered, and deleted
    duplicates: int = 0  # a second receive of a message a poller still holds: left to that poller
    delete_failures: int = 0  # deletes that failed after every attempt: those messages come back
    visibility_failures: int = 0  # failures whose early retry could not be set: they come back later


@dataclass(frozen=True)
class BatchOutcome:
    invoked: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    filtered: list[dict[str, Any]]


class EventSourceMapping:
    """What Lambda's SQS event source mapping does for the function.

    :meth:`poll` sees one batch through, in the calling thread, on ``handler``.
    :meth:`start` runs ``concurrency`` pollers, each long-polling and invoking its own
    execution environment, as Lambda runs up to ``maximumConcurrency`` concurrent
    invocations, one batch each, each environment serving one invocation at a time
    (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html). The first
    poller uses ``handler``; the others get one from ``environment_factory`` (a cold
    start), or share ``handler`` when there is none (a handler that is thread-safe).
    """

    def __init__(
        self,
        sqs,
        queue_url: str,
        queue_arn: str,
        region: str,
        handler: Callable[[dict[str, Any], Any], dict[str, Any]],
        principal_id: str,
        batch_size: int = SQS_MAX_MESSAGES,
        retry_delay_seconds: int = DEFAULT_RETRY_DELAY_SECONDS,
        context: Any = None,
        concurrency: int = 1,
        environment_factory: Callable[[], Handler] | None = None,
    ):
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self.handler = handler
        self.principal_id = principal_id
        self.filters = enforcer_filter_patterns(principal_id)
        self.batch_size = max(1, min(batch_size, SQS_MAX_MESSAGES))
        self.retry_delay_seconds = retry_delay_seconds
        self.context = context or LambdaContext(region=region)
        self.stats = EsmStats()
        self.concurrency = max(1, concurrency)
        self.environment_factory = environment_factory
        self.on_outcome: Callable[[BatchOutcome], None] | None = None  # called from the pollers
        self._lock = threading.Lock()
        self._cold_start = threading.Lock()  # one cold start at a time: it swaps os.environ
        self._holding: dict[str, float] = {}  # messageId -> SentTimestamp (s), received and not acknowledged
        self._acks: deque[tuple[float, int]] = deque()  # (monotonic time, messages acknowledged)
        self._created = time.monotonic()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._warm = 0  # pollers whose execution environment is ready

    def _count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self.stats, name, getattr(self.stats, name) + delta)

    # -- one batch

    def poll(self, wait_seconds: int = 1, handler: Handler | None = None) -> BatchOutcome | None:
        """Receive one batch and see it through; None when the queue had nothing."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
        ).get("Messages", [])
        messages = self._hold(messages)
        if not messages:
            return None
        try:
            return self._see_through(messages, handler or self.handler)
        finally:
            self._release(messages)

    def _hold(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The messages no other poller holds, now held by this one.

        SQS standard queues deliver at least once: a message can come back while a
        poller still works on it (moto's receive is not atomic across threads either).
        That poller acknowledges it; a second copy would be processed twice.
        https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/standard-queues-at-least-once-delivery.html
        """
        mine = []
        with self._lock:
            for message in messages:
                if message["MessageId"] in self._holding:
                    self.stats.duplicates += 1
                    continue
                sent = int(message.get("Attributes", {}).get("SentTimestamp", "0")) / 1000
                self._holding[message["MessageId"]] = sent or time.time()
                mine.append(message)
            self.stats.received += len(mine)
        return mine

    def _release(self, messages: list[dict[str, Any]]) -> None:
        with self._lock:
            for message in messages:
                self._holding.pop(message["MessageId"], None)
            self._acks.append((time.monotonic(), len(messages)))

    def _see_through(self, messages: list[dict[str, Any]], handler: Handler) -> BatchOutcome:
        records = sqs_event(messages, self.queue_arn, self.region)["Records"]
        accepted = {r["messageId"] for r in records if esm_accepts(self.filters, r)}
        invoked = [r for r in records if r["messageId"] in accepted]
        filtered = [r for r in records if r["messageId"] not in accepted]
        own = sum(1 for record in filtered if self.is_own_write(record))
        self._count(filtered_own_writes=own, filtered_other=len(filtered) - own)
        # Lambda deletes what no filter matches: it never reaches the function or the DLQ
        # ("If none of your filters are satisfied, Lambda discards the record",
        # https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html).
        self._delete(filtered)
        failed: list[dict[str, Any]] = []
        if invoked:
            failed = self._invoke(invoked, handler)
            failed_ids = {r["messageId"] for r in failed}
            self._delete([r for r in invoked if r["messageId"] not in failed_ids])
            for record in failed:
                self._retry_soon(record)
        return BatchOutcome(invoked=invoked, failed=failed, filtered=filtered)

    def _invoke(self, records: list[dict[str, Any]], handler: Handler) -> list[dict[str, Any]]:
        self._count(invocations=1, records_invoked=len(records))
        # A crashed invocation fails the whole batch; with ReportBatchItemFailures only the
        # listed itemIdentifiers become visible again, as in Lambda:
        # https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html#services-sqs-batchfailurereporting
        try:
            response = handler({"Records": records}, self.context)
        except Exception:  # noqa: BLE001 - a crashed invocation fails the whole batch, as in Lambda
            traceback.print_exc()
            self._count(handler_errors=1)
            failed_ids = {r["messageId"] for r in records}
        else:
            failed_ids = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        failed = [r for r in records if r["messageId"] in failed_ids]
        self._count(failed=len(failed))
        return failed

    def _retry_soon(self, record: dict[str, Any]) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=record["receiptHandle"],
                VisibilityTimeout=self.retry_delay_seconds,
            )
        except (ClientError, BotoCoreError):
            # The message still comes back, when the queue's visibility timeout ends.
            self._count(visibility_failures=1)

    def _delete(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), SQS_MAX_MESSAGES):
            pending = {str(i): r["receiptHandle"] for i, r in enumerate(records[start : start + SQS_MAX_MESSAGES])}
            for attempt in range(DELETE_ATTEMPTS):
                if attempt:
                    time.sleep(DELETE_BACKOFF_SECONDS * 2 ** (attempt - 1))
                try:
                    answer = self.sqs.delete_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[{"Id": i, "ReceiptHandle": h} for i, h in pending.items()],
                    )
                except (ClientError, BotoCoreError):
                    continue  # nothing was deleted that we know of: the whole chunk again
                done = {entry["Id"] for entry in answer.get("Successful", [])}
                self._count(deleted=len(done))
                # A sender fault (a receipt handle no longer valid) will not get better;
                # the message is then another receiver's, or already gone.
                failed = answer.get("Failed", [])
                pending = {e["Id"]: pending[e["Id"]] for e in failed if not e.get("SenderFault")}
                self._count(delete_failures=len(failed) - len(pending))
                if not pending:
                    break
            else:
                self._count(delete_failures=len(pending))

    def is_own_write(self, record: Mapping[str, Any]) -> bool:
        return self.describe(record) == "own write"

    def describe(self, record: Mapping[str, Any]) -> str:
        """What a message is, for the sandbox's report of what it filtered."""
        try:
            body = json.loads(record["body"])
        except ValueError:
            return "not JSON"
        if not isinstance(body, dict):
            return "not an object event"
        if body.get("Event") == "s3:TestEvent":
            return "S3 test event"
        s3_records = body.get("Records")
        if isinstance(s3_records, list) and any(
            isinstance(r, dict) and (r.get("userIdentity") or {}).get("principalId") == self.principal_id
            for r in s3_records
        ):
            return "own write"
        return "not an object event"

    # -- concurrent pollers

    def start(self) -> EventSourceMapping:
        """Start the pollers (idempotent); each runs until :meth:`stop`."""
        if self._threads:
            return self
        self._stop.clear()
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._run_poller, args=(index,), name=f"esm-poller-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the pollers after the batch each holds (its long poll ends within a second)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        self._warm = 0

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def _environment(self, index: int) -> Handler | None:
        if index == 0 or self.environment_factory is None:
            return None  # self.handler, read at each batch (tests swap it)
        with self._cold_start:
            return self.environment_factory()

    def warm(self) -> int:
        """Pollers whose execution environment has started (cold starts run one at a time)."""
        with self._lock:
            return self._warm

    def _run_poller(self, index: int) -> None:
        handler = self._environment(index)
        with self._lock:
            self._warm += 1
        while not self._stop.is_set():
            try:
                outcome = self.poll(wait_seconds=1, handler=handler)
            except Exception:  # noqa: BLE001 - a poller must outlive a failed call; what it held is released
                # A failed receive holds nothing; a batch that failed half-way leaves its
                # unacknowledged messages to come back after their visibility timeout.
                traceback.print_exc()
                self._stop.wait(1)
                continue
            if outcome is not None and self.on_outcome is not None:
                self.on_outcome(outcome)

    # -- what it is doing

    def holding(self) -> int:
        """Messages received by a poller and not yet acknowledged."""
        with self._lock:
            return len(self._holding)

    def activity(self) -> dict[str, Any]:
        """What only the pollers know, as :class:`ops.status_model.StatusSnapshot` fields."""
        now = time.monotonic()
        with self._lock:
            while self._acks and now - self._acks[0][0] > RATE_WINDOW_SECONDS:
                self._acks.popleft()
            done = sum(count for _, count in self._acks)
            oldest = min(self._holding.values(), default=None)
            stats = self.stats
            return {
                "received": stats.received,
                "processed": stats.deleted,
                "failed": stats.failed,
                "in_flight": len(self._holding),
                "oldest_age_seconds": None if oldest is None else max(0.0, time.time() - oldest),
                "rate_per_second": done / max(1.0, min(RATE_WINDOW_SECONDS, now - self._created)),
            }

    def queue_depth(self) -> tuple[int, int]:
        """(visible, in flight) messages of the queue."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])
