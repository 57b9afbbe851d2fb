"""The status model: what the enforcer's pipeline is doing right now, as one snapshot, read
from the stack's SQS queues (and, when asked, its log table), judged (is it falling
behind?) and rendered as one line.

Pure on purpose: no console, no sandbox. The sandbox's live status line and ``ops status``
both build a :class:`StatusSnapshot` with :func:`read_status` and render it with
:func:`render_line`; whoever runs the pollers (the sandbox) adds what only it knows
(received, processed, in flight) with :func:`dataclasses.replace`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# GetQueueAttributes: ApproximateNumberOfMessages is what waits (visible),
# ApproximateNumberOfMessagesNotVisible what is in flight (received, not yet deleted),
# ApproximateNumberOfMessagesDelayed what is not yet visible:
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_GetQueueAttributes.html
QUEUE_ATTRIBUTES = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)
# The journal's timestamp format (enforcer/journal.py): fixed width and UTC, so that
# string order is time order and a Scan can filter on it.
LOG_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S:%f%z"

# A backlog that takes longer than this to drain at the observed rate, or whose oldest
# message waited longer, is "falling behind": the sandbox's targets are p99 <= 30 s for
# a burst, so a queue that needs more than that is worth a note.
BEHIND_DRAIN_SECONDS = 30.0
BEHIND_OLDEST_SECONDS = 30.0


@dataclass(frozen=True)
class StatusSnapshot:
    """One look at the pipeline. ``None`` means "not known from here" (not zero)."""

    queue_depth: int  # visible: waiting for a poller
    in_flight: int  # received by a poller, not yet deleted or made visible again
    dlq_depth: int
    delayed: int = 0
    oldest_age_seconds: float | None = None
    outcomes: Mapping[str, int] = field(default_factory=dict)  # outcome -> count (log table)
    received: int | None = None  # messages the pollers received (the sandbox knows)
    processed: int | None = None  # messages acknowledged: deleted after success or filtering
    failed: int | None = None  # messages handed back for redelivery
    rate_per_second: float | None = None  # messages processed per second, recently
    taken_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def backlog(self) -> int:
        return self.queue_depth + self.in_flight + self.delayed

    @property
    def drain_seconds(self) -> float | None:
        """How long the backlog takes at the recent rate; None without a rate."""
        if not self.backlog:
            return 0.0
        if not self.rate_per_second:
            return None
        return self.backlog / self.rate_per_second


def _queue_counts(sqs, queue_url: str) -> tuple[int, int, int]:
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(QUEUE_ATTRIBUTES))["Attributes"]
    visible, not_visible, delayed = (int(attrs.get(name, 0)) for name in QUEUE_ATTRIBUTES)
    return visible, not_visible, delayed


def oldest_age_from_cloudwatch(cloudwatch, queue_name: str, now: datetime | None = None) -> float | None:
    """SQS's ApproximateAgeOfOldestMessage (Maximum over the last 5 minutes), or None.

    Only CloudWatch knows it; GetQueueAttributes has no such attribute. The metric is
    published per minute for an active queue:
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html
    """
    now = now or datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace="AWS/SQS",
        MetricName="ApproximateAgeOfOldestMessage",
        Dimensions=[{"Name": "QueueName", "Value": queue_name}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now,
        Period=60,
        Statistics=["Maximum"],
    ).get("Datapoints", [])
    if not points:
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])


def outcome_counts(dynamodb, log_table: str, since: datetime) -> Counter[str]:
    """Outcomes of the log table's rows written since ``since`` (a filtered Scan: the table
    is keyed on the object path, so no Query can select by time)."""
    counts: Counter[str] = Counter()
    paginator = dynamodb.get_paginator("scan")
    for page in paginator.paginate(
        TableName=log_table,
        FilterExpression="current_timestamp_utc >= :since",
        ExpressionAttributeValues={":since": {"S": since.astimezone(UTC).strftime(LOG_TIMESTAMP_FORMAT)}},
        ProjectionExpression="outcome",
    ):
        counts.update(item.get("outcome", {}).get("S", "unknown") for item in page["Items"])
    return counts


def read_status(
    sqs,
    queue_url: str,
    dlq_url: str | None,
    *,
    dynamodb=None,
    log_table: str | None = None,
    outcomes_since: datetime | None = None,
    cloudwatch=None,
    queue_name: str | None = None,
) -> StatusSnapshot:
    """A snapshot from the clients given: queue and DLQ always; outcomes when a log table
    is given; the oldest message's age when CloudWatch is."""
    now = datetime.now(UTC)
    visible, in_flight, delayed = _queue_counts(sqs, queue_url)
    dlq = sum(_queue_counts(sqs, dlq_url)) if dlq_url else 0
    outcomes: Mapping[str, int] = {}
    if dynamodb is not None and log_table:
        outcomes = dict(outcome_counts(dynamodb, log_table, outcomes_since or now - timedelta(hours=1)))
    oldest = None
    if cloudwatch is not None and queue_name:
        oldest = oldest_age_from_cloudwatch(cloudwatch, queue_name, now)
    return StatusSnapshot(
        queue_depth=visible,
        in_flight=in_flight,
        dlq_depth=dlq,
        delayed=delayed,
        oldest_age_seconds=oldest,
        outcomes=outcomes,
        taken_at=now,
    )


def falling_behind(snapshot: StatusSnapshot) -> str | None:
    """Why the queue is falling behind, in words; None when it keeps up."""
    if snapshot.queue_depth == 0:
        return None
    oldest = snapshot.oldest_age_seconds
    if oldest is not None and oldest > BEHIND_OLDEST_SECONDS:
        return f"the oldest message has waited {oldest:.0f}s ({snapshot.queue_depth} waiting)"
    drain = snapshot.drain_seconds
    if drain is not None and drain > BEHIND_DRAIN_SECONDS:
        return (
            f"{snapshot.backlog} messages need ~{drain:.0f}s at {snapshot.rate_per_second:.1f}/s "
            "to drain"
        )
    return None


def render_line(snapshot: StatusSnapshot) -> str:
    """One line, what is known only: ``received 12 · processed 10 · in flight 2 · queue 0 · DLQ 0``."""
    parts = []
    if snapshot.received is not None:
        parts.append(f"received {snapshot.received}")
    if snapshot.processed is not None:
        parts.append(f"processed {snapshot.processed}")
    if snapshot.failed:
        parts.append(f"retried {snapshot.failed}")
    parts.append(f"in flight {snapshot.in_flight}")
    parts.append(f"queue {snapshot.queue_depth}")
    if snapshot.delayed:
        parts.append(f"delayed {snapshot.delayed}")
    parts.append(f"DLQ {snapshot.dlq_depth}")
    if snapshot.oldest_age_seconds is not None:
        parts.append(f"oldest {snapshot.oldest_age_seconds:.0f}s")
    if snapshot.rate_per_second is not None:
        parts.append(f"{snapshot.rate_per_second:.1f} msg/s")
    if snapshot.outcomes:
        parts.append(", ".join(f"{name} {count}" for name, count in sorted(snapshot.outcomes.items())))
    line = " · ".join(parts)
    behind = falling_behind(snapshot)
    return f"{line} — falling behind: {behind}" if behind else line
