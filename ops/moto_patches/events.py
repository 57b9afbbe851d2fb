"""Event notification patches (5): S3 records and EventBridge "Object Created" events carry
what S3 sends (userIdentity, versionId, requester, reason, etag), and no stray ObjectTagging events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.s3 import notifications

from ops.moto_patches.context import _caller, _current, _tls

_EB_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}


def _get_s3_event(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = original(event_name, bucket, key, notification_id)
        caller = _caller()
        version_id = getattr(key, "version_id", None)
        for record in event.get("Records", []):
            if caller is not None:
                record.setdefault("userIdentity", {"principalId": "AWS:" + caller[0]})
            if version_id not in (None, "null"):  # versioned buckets name the version written
                record["s3"]["object"].setdefault("versionId", version_id)
        return event

    return get_s3_event


def _send_event(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        req = _current()
        if (event_name == notifications.S3NotificationEvent.OBJECT_TAGGING_PUT_EVENT and req is not None
                and "tagging" not in (getattr(req, "querystring", None) or {})):
            return  # tags written by PutObject/CopyObject/CompleteMultipartUpload raise no ObjectTagging event
        original(account_id, event_name, bucket, key)

    return send_event


def _send_event_bridge_message(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        caller = _caller()
        _tls.s3_eventbridge = (str(getattr(event_name, "value", event_name)), caller[1] if caller else account_id)
        try:
            original(account_id, bucket, event_name, key)
        finally:
            _tls.s3_eventbridge = None

    return send_event_bridge_message


def _send_to_targets(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        context = getattr(_tls, "s3_eventbridge", None)
        detail = original_event.get("detail") if isinstance(original_event, dict) else None
        if context and isinstance(detail, dict) and original_event.get("source") == "aws.s3":
            event_name, requester = context
            detail["requester"] = requester
            if event_name in _EB_REASONS:
                detail["reason"] = _EB_REASONS[event_name]
            obj = detail.get("object") or {}
            if "eTag" in obj:
                obj.setdefault("etag", obj["eTag"])
        return original(self, original_event, transform_input)

    return send_to_targets
