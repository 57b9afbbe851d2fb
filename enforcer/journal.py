"""The log table: one row per action, written in batches, with a TTL.

Rows are buffered for the whole invocation and written with BatchWriteItem (25 per
call), so a batch of ten objects costs one write call instead of ten PutItems. A row
that cannot be written after retries fails its SQS message, so the event is processed
again rather than its record silently lost.

Rows keep the original sample's columns and add ``bucket`` and ``prefix``, so that
``ops log`` can Query them by bucket and time (the ``bucket-time`` index).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from enforcer.engine import NO_ACTION, Result
from enforcer.mapping import MappingSource

BATCH_LIMIT = 25  # BatchWriteItem's maximum
TABLE_KEY = ("s3_object_path", "current_timestamp_utc")  # the original sample's log schema
# The global secondary index `ops log` queries by bucket and time. Rows written before
# rows carried a bucket attribute are not in it: a GSI holds only the items that have
# its key attributes ("Take advantage of sparse indexes", DynamoDB Developer Guide,
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-indexes-general-sparse-indexes.html).
BUCKET_INDEX = "bucket-time"
BUCKET_INDEX_KEY = ("bucket", "current_timestamp_utc")


def row_for(result: Result, timestamp: datetime, retention_days: int, prefix: str | None = None) -> dict[str, Any]:
    """A log-table row in the original sample's schema, plus bucket, the mapped ``prefix``
    the object matched (none when unmapped), method/outcome and TTL."""
    before, target = result.before, result.target
    row: dict[str, Any] = {
        "s3_object_path": result.ref.s3_path,
        "bucket": result.ref.bucket,
        "prefix": prefix,
        # The original's format, so its queries and sort order keep working.
        "current_timestamp_utc": timestamp.strftime("%Y-%m-%d %H:%M:%S:%f%z"),
        "current_sse_type": before.sse_type if before else None,
        "current_kms_key_arn": before.kms_key_arn if before else None,
        "new_sse_type": target.sse_type if target else None,
        "new_kms_key_arn": target.kms_key_arn if target else None,
        "action_taken": result.action_taken,
        "action_reason": result.reason,
        "outcome": str(result.outcome),
        "method": str(result.method) if result.method else None,
        "new_version_id": result.new_version_id,
        "old_version": result.old_version,
        "fallback": result.fallback,
        "replica": result.replica,
        "delivery": result.ref.delivery,
        "exposure_seconds": result.exposure_seconds,
        "expires_at": int((timestamp + timedelta(days=retention_days)).timestamp()),
    }
    return {k: v for k, v in row.items() if v is not None}


def _attr(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        # Fixed-point: DynamoDB numbers are decimal strings, and repr() may give "1e-05".
        return {"N": f"{value:.3f}"}
    return {"S": str(value)}


class Journal:
    """Thread-safe buffer of log rows for one invocation."""

    def __init__(
        self,
        dynamodb,
        table_name: str,
        retention_days: int = 90,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        mappings: MappingSource | None = None,
    ):
        self._ddb = dynamodb
        self._table = table_name
        self._retention = retention_days
        self._clock = clock
        self._max_attempts = max_attempts
        self._sleep = sleep
        # The engine's own mapping source: its cache has the row the engine just used.
        self._mappings = mappings
        self._lock = threading.Lock()
        self._pending: list[tuple[str, dict[str, Any]]] = []  # (owner id, row)
        self._last_ts: dict[str, datetime] = {}

    def add(self, owner: str, result: Result) -> dict[str, Any]:
        """Buffer the row for ``result``; ``owner`` (an SQS messageId) fails if it is lost."""
        prefix = self._prefix_of(result)  # outside the lock: a cache miss is a Query
        with self._lock:
            ts = self._clock()
            # Two events for one object in one batch must not share a key: DynamoDB
            # rejects a BatchWriteItem with duplicate keys as a whole.
            last = self._last_ts.get(result.ref.s3_path)
            if last is not None and ts <= last:
                ts = last + timedelta(microseconds=1)
            self._last_ts[result.ref.s3_path] = ts
            row = row_for(result, ts, self._retention, prefix)
            self._pending.append((owner, row))
            return row

    def _prefix_of(self, result: Result) -> str | None:
        if self._mappings is None:
            return None
        mapping = self._mappings.lookup(result.ref.bucket, result.ref.key)
        return mapping.prefix if mapping is not None else None

    def flush(self) -> set[str]:
        """Write everything buffered; the owners whose rows could not be written."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._last_ts.clear()
        failed: set[str] = set()
        for start in range(0, len(pending), BATCH_LIMIT):
            failed |= self._write(pending[start : start + BATCH_LIMIT])
        return failed

    def _write(self, chunk: list[tuple[str, dict[str, Any]]]) -> set[str]:
        owners = {}
        requests = []
        for owner, row in chunk:
            item = {k: _attr(v) for k, v in row.items()}
            owners[(row["s3_object_path"], row["current_timestamp_utc"])] = owner
            requests.append({"PutRequest": {"Item": item}})
        for attempt in range(self._max_attempts):
            try:
                answer = self._ddb.batch_write_item(RequestItems={self._table: requests})
            except Exception:  # noqa: BLE001 - botocore already retried; give up on this chunk
                if attempt == self._max_attempts - 1:
                    return set(owners.values())
                self._sleep(min(2.0, 0.05 * 2**attempt))
                continue
            requests = answer.get("UnprocessedItems", {}).get(self._table, [])
            if not requests:
                return set()
            # Unprocessed items are DynamoDB's throttling signal: back off, then resend.
            self._sleep(min(2.0, 0.05 * 2**attempt))
        return {
            owners[(r["PutRequest"]["Item"]["s3_object_path"]["S"],
                    r["PutRequest"]["Item"]["current_timestamp_utc"]["S"])]
            for r in requests
        }
