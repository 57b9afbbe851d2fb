"""Object references out of every delivery shape the enforcer accepts.

Key encoding differs per shape, and getting it wrong re-keys the wrong object or
reports a live one as gone:

* **S3 event notifications** (to SQS, or through SNS) form-encode the key: "The
  object key name value is URL encoded. For example, 'red flower.jpg' becomes
  'red+flower.jpg'" (S3 User Guide, *Event message structure*). So ``unquote_plus``:
  ``+`` is a space and ``%2B`` a plus.
* **EventBridge** "Object Created" events carry ``detail.object.key`` as the plain
  key. The S3 User Guide's *EventBridge event message structure* documents no
  encoding for it (unlike the notification page); Powertools'
  ``S3EventBridgeNotificationObject.key`` returns it verbatim while its notification
  class applies ``unquote_plus``; moto's fix for notification encoding (getmoto/moto
  #9060) applies to the SQS/SNS/Lambda payloads only. Decoding it would turn a real
  ``+`` into a space.
* **S3 Batch Operations** (schema 2.0) tasks carry ``s3Key`` URL-encoded, which
  Powertools decodes with ``unquote_plus``; see ``batch_operations.py``.

Each ref also carries when the write happened, the start of its exposure window: a
notification record's ``eventTime``, "in ISO-8601 format (for example,
1970-01-01T00:00:00.000Z) when Amazon S3 finished processing the request" (*Event
message structure*), or an EventBridge event's ``time`` (EventBridge User Guide,
*AWS service event metadata*: "the event timestamp, which can be specified by the
service originating the event"). A time that is missing or not
ISO-8601 leaves ``event_time`` None: the object is still enforced, only not timed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus


class MalformedMessage(ValueError):
    """A body that is none of the accepted shapes; it must reach the DLQ, not vanish."""


@dataclass(frozen=True)
class ObjectRef:
    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    principal_id: str | None = None  # userIdentity.principalId; None for EventBridge
    event_name: str | None = None
    delivery: str = "s3"  # s3 | sns | eventbridge | batch-operations | backfill
    event_time: datetime | None = None  # when S3 finished the write (UTC); None off events

    @property
    def s3_path(self) -> str:
        """The journal's partition key: the original's s3:// form, plus the version."""
        path = f"s3://{self.bucket}/{self.key}"
        return f"{path}?versionId={self.version_id}" if self.version_id not in (None, "null") else path


def parse_message(body: str) -> list[ObjectRef]:
    """The objects one SQS message body refers to; [] for S3 test events."""
    try:
        doc = json.loads(body)
    except (TypeError, ValueError) as exc:
        raise MalformedMessage(f"body is not JSON: {exc}") from None
    return _parse_doc(doc, delivery="s3")


def _parse_doc(doc: Any, delivery: str) -> list[ObjectRef]:
    if not isinstance(doc, dict):
        raise MalformedMessage(f"body is JSON {type(doc).__name__}, expected an object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    if doc.get("Type") == "Notification" and "Message" in doc:
        # SNS envelope (raw message delivery off): the S3 event is a JSON string inside.
        message = doc["Message"]
        try:
            inner = json.loads(message) if isinstance(message, str) else message
        except ValueError as exc:
            raise MalformedMessage(f"SNS Message is not JSON: {exc}") from None
        return _parse_doc(inner, delivery="sns")
    if "Records" in doc:
        return _parse_s3_records(doc["Records"], delivery)
    if doc.get("source") == "aws.s3" and "detail" in doc:
        return _parse_eventbridge(doc)
    raise MalformedMessage(
        "body is neither an S3 event notification, an SNS envelope, nor an EventBridge S3 event "
        f"(top-level keys: {sorted(doc)[:8]})"
    )


def event_time(value: Any) -> datetime | None:
    """An event's ISO-8601 time as an aware UTC datetime; None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        # 3.11's fromisoformat reads "Z" and fractional seconds, as S3 writes them.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    # A time without an offset is read as UTC, the zone both shapes document.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _require(obj: Any, *path: str) -> Any:
    cur = obj
    for part in path:
        if not isinstance(cur, dict) or part not in cur:
            raise MalformedMessage(f"missing {'.'.join(path)}")
        cur = cur[part]
    if cur in (None, ""):
        raise MalformedMessage(f"empty {'.'.join(path)}")
    return cur


def _parse_s3_records(records: Any, delivery: str) -> list[ObjectRef]:
    if not isinstance(records, list) or not records:
        raise MalformedMessage("Records is not a non-empty list")
    refs = []
    for rec in records:
        event_name = _require(rec, "eventName")
        if not str(event_name).startswith("ObjectCreated:"):
            # The integration subscribes to ObjectCreated only; anything else is a
            # misrouted notification, and treating it as an object to fix would be wrong.
            raise MalformedMessage(f"event {event_name!r} is not an ObjectCreated event")
        obj = _require(rec, "s3", "object")
        raw_key = _require(obj, "key")
        refs.append(
            ObjectRef(
                bucket=_require(rec, "s3", "bucket", "name"),
                key=unquote_plus(raw_key),
                version_id=obj.get("versionId") or None,
                etag=obj.get("eTag"),
                size=obj.get("size"),
                principal_id=(rec.get("userIdentity") or {}).get("principalId"),
                event_name=event_name,
                delivery=delivery,
                event_time=event_time(rec.get("eventTime")),
            )
        )
    return refs


def _parse_eventbridge(doc: dict[str, Any]) -> list[ObjectRef]:
    if doc.get("detail-type") != "Object Created":
        raise MalformedMessage(f"EventBridge detail-type {doc.get('detail-type')!r} is not 'Object Created'")
    obj = _require(doc, "detail", "object")
    return [
        ObjectRef(
            bucket=_require(doc, "detail", "bucket", "name"),
            key=_require(obj, "key"),  # plain key: see the module docstring
            version_id=obj.get("version-id") or None,
            etag=obj.get("etag"),
            size=obj.get("size"),
            principal_id=None,
            event_name=f"ObjectCreated:{doc['detail'].get('reason', '')}",
            delivery="eventbridge",
            event_time=event_time(doc.get("time")),
        )
    ]
