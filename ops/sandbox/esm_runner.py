"""Lambda's SQS event source mapping for the enforcer: polling, the deployed filter
criteria, and ``batchItemFailures`` made visible again for SQS's redrive policy."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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


@dataclass
class EsmStats:
    received: int = 0
    invocations: int = 0
    records_invoked: int = 0
    failed: int = 0
    filtered_own_writes: int = 0  # the enforcer's own copies, dropped by the filters
    filtered_other: int = 0  # s3:TestEvent and anything else no filter accepts
    handler_errors: int = 0


@dataclass(frozen=True)
class BatchOutcome:
    invoked: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    filtered: list[dict[str, Any]]


class EventSourceMapping:
    """One poller doing what Lambda's SQS event source mapping does for the function."""

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

    def poll(self, wait_seconds: int = 1) -> BatchOutcome | None:
        """Receive one batch and see it through; None when the queue had nothing."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not messages:
            return None
        self.stats.received += len(messages)
        records = sqs_event(messages, self.queue_arn, self.region)["Records"]
        accepted = {r["messageId"] for r in records if esm_accepts(self.filters, r)}
        invoked = [r for r in records if r["messageId"] in accepted]
        filtered = [r for r in records if r["messageId"] not in accepted]
        for record in filtered:
            if self.is_own_write(record):
                self.stats.filtered_own_writes += 1
            else:
                self.stats.filtered_other += 1
        # Lambda deletes what no filter matches: it never reaches the function or the DLQ
        # ("If none of your filters are satisfied, Lambda discards the record",
        # https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html).
        self._delete(filtered)
        failed: list[dict[str, Any]] = []
        if invoked:
            failed = self._invoke(invoked)
            failed_ids = {r["messageId"] for r in failed}
            self._delete([r for r in invoked if r["messageId"] not in failed_ids])
            for record in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=record["receiptHandle"],
                    VisibilityTimeout=self.retry_delay_seconds,
                )
        return BatchOutcome(invoked=invoked, failed=failed, filtered=filtered)

    def _invoke(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.stats.invocations += 1
        self.stats.records_invoked += len(records)
        # A crashed invocation fails the whole batch; with ReportBatchItemFailures only the
        # listed itemIdentifiers become visible again, as in Lambda:
        # https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html#services-sqs-batchfailurereporting
        try:
            response = self.handler({"Records": records}, self.context)
        except Exception:  # noqa: BLE001 - a crashed invocation fails the whole batch, as in Lambda
            import traceback

            traceback.print_exc()
            self.stats.handler_errors += 1
            failed_ids = {r["messageId"] for r in records}
        else:
            failed_ids = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        failed = [r for r in records if r["messageId"] in failed_ids]
        self.stats.failed += len(failed)
        return failed

    def _delete(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), SQS_MAX_MESSAGES):
            chunk = records[start : start + SQS_MAX_MESSAGES]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )

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

    def queue_depth(self) -> tuple[int, int]:
        """(visible, in flight) messages of the queue."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])
