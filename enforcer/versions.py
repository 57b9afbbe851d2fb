"""Noncurrent versions that stay under their old key by decision: the record of that
decision, kept as a tag on the version itself, and the S3 calls that read and write it.

A noncurrent version of a DSSE-KMS prefix (or one S3 will not re-key in place) has no
good re-key: a copy would make it current again, and deleting it loses history. When
an operator chooses ``keep`` (``ops backfill --versions --noncurrent keep``), or the
enforcer keeps a version it replaced (locked, or ``oldVersionAction: keep``), the choice
is written on the version, so that ``ops audit --versions`` can report it as kept by
decision, with who decided and when, instead of failing its gate forever.

The record is one tag, ``s3-prefix-keys:kept``, whose value is
``<why> <when> <who>``. One tag, not three, because S3 allows at most 10 tags per object
and every other tag on the version is the owner's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from enforcer.decision import KeptRecord, ObjectState

KEPT_TAG = "s3-prefix-keys:kept"

# PutObjectTagging (S3 API Reference,
# https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObjectTagging.html): it "sets
# the supplied tag-set", replacing every tag the version had, "S3 limits the maximum
# number of tags to 10 tags per object", and "to put tags of any other version, use the
# versionId query parameter" (s3:PutObjectVersionTagging).
MAX_TAGS = 10
# Tag (S3 API Reference, https://docs.aws.amazon.com/AmazonS3/latest/API/API_Tag.html and
# API_control_S3Tag.html): values up to 256 characters of ^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$.
# A principal name is ARN-like; anything outside the pattern (and spaces, which separate
# the record's fields) becomes "_".
MAX_VALUE = 256
_NOT_ALLOWED = re.compile(r"[^\w.:/=+\-@]")


class TagLimit(Exception):
    """The version already carries S3's maximum of tags, none of them the record."""


def encode(record: KeptRecord) -> str:
    who = _NOT_ALLOWED.sub("_", record.decided_by)
    return f"{record.why} {record.decided_at} {who}"[:MAX_VALUE]


def decode(value: str) -> KeptRecord | None:
    parts = value.split(" ", 2)
    if len(parts) != 3 or not all(parts):
        return None  # someone else's tag of that name, or a torn edit: not a decision
    why, when, who = parts
    return KeptRecord(decided_by=who, decided_at=when, why=why)


def record_of(tag_set: list[dict[str, str]]) -> KeptRecord | None:
    for tag in tag_set:
        if tag.get("Key") == KEPT_TAG:
            return decode(tag.get("Value", ""))
    return None


def _version_kwargs(state: ObjectState) -> dict[str, Any]:
    # Always pinned, the null version too ("null" is its VersionId): these calls must
    # never reach the current object instead of the version judged.
    if state.version_id is None:
        raise ValueError(f"{state.key}: a version record needs the version's id")
    return {"Bucket": state.bucket, "Key": state.key, "VersionId": state.version_id}


def read_record(s3, state: ObjectState) -> KeptRecord | None:
    """The version's recorded decision; asked only of a version HEAD showed tags on."""
    return record_of(s3.get_object_tagging(**_version_kwargs(state))["TagSet"])


def record_keep(s3, state: ObjectState, why: str, who: str, now: datetime) -> KeptRecord:
    """Write the decision on the version, keeping every tag it has (raises TagLimit)."""
    record = KeptRecord(decided_by=who, decided_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"), why=why)
    kwargs = _version_kwargs(state)
    tags = [t for t in s3.get_object_tagging(**kwargs)["TagSet"] if t.get("Key") != KEPT_TAG]
    if len(tags) >= MAX_TAGS:
        raise TagLimit(
            f"the version has {len(tags)} tags, S3's limit of {MAX_TAGS} per object, so the keep decision "
            "cannot be recorded on it: remove one of its tags, or choose --noncurrent delete"
        )
    tags.append({"Key": KEPT_TAG, "Value": encode(record)})
    s3.put_object_tagging(**kwargs, Tagging={"TagSet": tags})
    return record


def delete_version(s3, state: ObjectState) -> None:
    """Delete exactly this version (never the current object: the VersionId is required)."""
    s3.delete_object(**_version_kwargs(state))


def error_message(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")


@dataclass(frozen=True)
class Choice:
    """What ``--noncurrent`` does to a version no method can re-key (dry-run wording)."""

    action: str
    effect: str


CHOICES = (
    Choice("keep", "tagged s3-prefix-keys:kept (who, when); stays under its old key, history intact; "
                   "ops audit --versions reports it as kept by decision"),
    Choice("delete", "deleted (DeleteObject with its VersionId): the history is lost; locked versions "
                     "cannot be deleted and are reported"),
)
