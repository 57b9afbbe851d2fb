"""Alerts to the SNS topic, one message per (kind, bucket) per invocation.

A misconfigured key fails every object of a prefix at once; one message listing the
objects is useful, ten identical e-mails per batch are noise that gets filtered.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict

log = logging.getLogger(__name__)

MAX_LISTED = 20
SUBJECT_LIMIT = 100  # SNS rejects longer e-mail subjects


class Alerts:
    def __init__(self, sns, topic_arn: str | None):
        self._sns = sns
        self._topic = topic_arn
        self._lock = threading.Lock()
        self._groups: OrderedDict[tuple[str, str], list[tuple[str, str]]] = OrderedDict()

    def add(self, kind: str, bucket: str, subject: str, detail: str) -> None:
        with self._lock:
            entries = self._groups.setdefault((kind, bucket), [])
            if (subject, detail) not in entries:
                entries.append((subject, detail))

    def pending(self) -> int:
        with self._lock:
            return len(self._groups)

    def flush(self) -> int:
        """Publish the grouped alerts; returns how many messages were sent."""
        with self._lock:
            groups, self._groups = self._groups, OrderedDict()
        sent = 0
        for (kind, bucket), entries in groups.items():
            subject = f"s3-prefix-keys: {kind} in {bucket}"[:SUBJECT_LIMIT]
            listed = entries[:MAX_LISTED]
            lines = [f"{len(entries)} object(s) in bucket {bucket}: {kind}", ""]
            lines += [f"- {what}: {detail}" for what, detail in listed]
            if len(entries) > MAX_LISTED:
                lines.append(f"... and {len(entries) - MAX_LISTED} more (see the log table)")
            body = "\n".join(lines)
            # Always logged: the structured log is the record even without a topic,
            # and when SNS itself fails.
            log.error("ALERT %s", json.dumps({"kind": kind, "bucket": bucket, "count": len(entries)}))
            if not self._topic:
                continue
            try:
                self._sns.publish(TopicArn=self._topic, Subject=subject, Message=body)
                sent += 1
            except Exception:  # noqa: BLE001 - an alert failure must not fail the records
                log.exception("could not publish alert %r to %s", subject, self._topic)
        return sent
