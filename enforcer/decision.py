"""What must happen to one object: a pure function of its state and its mapping.

``decide()`` makes no AWS call and reads no clock of its own, so every case the
enforcer handles is a unit test away. The engine (``engine.py``) inspects the object,
asks ``decide()``, and carries the answer out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from enforcer.mapping import Mapping, Target

SSE_S3 = "AES256"
SSE_KMS = "aws:kms"
SSE_DSSE = "aws:kms:dsse"

# The original sample's journal texts, kept verbatim so existing log-table queries
# keep working.
REASON_UNMAPPED = "No KMS key configured for this object's prefix"
REASON_COMPLIANT = "Already using the correct key"


def reason_wrong_type(current: str | None, target: str) -> str:
    return f"Incorrect SSE type. Was {current} whereas it should have been {target}"


def reason_wrong_key(current: str | None, target: str) -> str:
    return f"Incorrect KMS key. Was {current} whereas it should have been {target}"


def reason_superseded(reason: str) -> str:
    return f"Superseded by a newer write; the newer object's own event re-keys it ({reason})"


class Presence(StrEnum):
    PRESENT = "present"
    GONE = "gone"  # 404, or the version / current object is a delete marker
    SSE_C = "sse-c"  # HEAD without the customer key answers 400
    ACCESS_DENIED = "access-denied"  # HEAD answers 403: a missing grant


class Outcome(StrEnum):
    # decisions that end without an S3 write
    COMPLIANT = "compliant"
    UNMAPPED = "unmapped"
    GONE = "gone"
    SSE_C = "sse-c"
    ACCESS_DENIED = "access-denied"
    NEEDS_RESTORE = "needs-restore"
    LOOP_GUARD = "loop-guard"
    INVALID_MAPPING = "invalid-mapping"
    # a decision to act
    REKEY = "rekey"
    # outcomes of acting (set by the engine; SUPERSEDED also by decide() for an own write
    # that a newer one has already replaced)
    REKEYED = "rekeyed"
    SUPERSEDED = "superseded"
    LOCKED = "locked"
    FAILED = "failed"


# Outcomes that leave a mapped object non-compliant and need a human: alerted once
# per invocation, never retried (a retry cannot fix a missing grant or key).
ALERTING = frozenset(
    {
        Outcome.SSE_C,
        Outcome.ACCESS_DENIED,
        Outcome.NEEDS_RESTORE,
        Outcome.LOOP_GUARD,
        Outcome.INVALID_MAPPING,
        Outcome.LOCKED,
        Outcome.FAILED,
    }
)


class Method(StrEnum):
    UPDATE_ENCRYPTION = "update-object-encryption"
    COPY = "copy"
    MULTIPART_COPY = "multipart-copy"


@dataclass(frozen=True)
class ObjectState:
    """What HEAD said about one object version (``head`` keeps the raw answer)."""

    bucket: str
    key: str
    presence: Presence = Presence.PRESENT
    version_id: str | None = None
    etag: str | None = None
    size: int = 0
    sse_type: str | None = None
    kms_key_arn: str | None = None
    bucket_key_enabled: bool | None = None
    storage_class: str = "STANDARD"
    archive_status: str | None = None  # Intelligent-Tiering archive tiers
    restore: str | None = None  # x-amz-restore, e.g. 'ongoing-request="false", expiry-date=...'
    lock_mode: str | None = None
    lock_retain_until: datetime | None = None
    legal_hold: bool = False
    head: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def versioned(self) -> bool:
        return self.version_id not in (None, "null")

    def locked(self, now: datetime) -> bool:
        retained = self.lock_retain_until is not None and self.lock_retain_until > now
        return self.legal_hold or (self.lock_mode is not None and retained)

    @property
    def archived(self) -> bool:
        """Stored in a tier a copy cannot read until the object is restored."""
        if self.archive_status:  # Intelligent-Tiering Archive / Deep Archive Access
            return True
        return self.storage_class in ("GLACIER", "DEEP_ARCHIVE")

    @property
    def restored(self) -> bool:
        return self.restore is not None and 'ongoing-request="false"' in self.restore


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    method: Method | None = None
    target: Target | None = None
    # Copy path on a versioned bucket: what to do with the replaced version.
    old_version_action: str | None = None

    @property
    def alert(self) -> bool:
        return self.outcome in ALERTING


def is_compliant(state: ObjectState, target: Target) -> bool:
    # Whole-ARN equality: a key ID is a substring of many ARNs (other accounts/regions).
    return state.sse_type == target.sse_type and state.kms_key_arn == target.kms_key_arn


def mismatch_reason(state: ObjectState, target: Target) -> str:
    if state.sse_type != target.sse_type:
        return reason_wrong_type(state.sse_type, target.sse_type)
    return reason_wrong_key(state.kms_key_arn, target.kms_key_arn)


def same_etag(a: str, b: str) -> bool:
    # Events carry the ETag bare, HEAD quotes it.
    return a.strip().strip('"') == b.strip().strip('"')


def target_allows_update_in_place(target: Target, rekey_method: str) -> bool:
    """Whether UpdateObjectEncryption can reach ``target`` at all: it writes SSE-KMS only."""
    return rekey_method == "auto" and target.sse_type == SSE_KMS


def decide(
    state: ObjectState | None,
    mapping: Mapping | None,
    *,
    own_write: bool = False,
    event_etag: str | None = None,
    rekey_method: str = "auto",
    multipart_threshold: int = 5 * 1024**3,
    default_old_version_action: str = "delete",
    now: datetime | None = None,
) -> Decision:
    """The action one object needs.

    ``state`` may be None only when there is no mapping: the engine looks the mapping
    up first, so an unmapped object costs no S3 call.
    ``own_write`` is true when the event was caused by the enforcer's own write;
    ``event_etag`` is the ETag that event names, when it names one.
    """
    if mapping is None:
        return Decision(Outcome.UNMAPPED, REASON_UNMAPPED)
    if mapping.problem:
        return Decision(
            Outcome.INVALID_MAPPING,
            f"Mapping for prefix {mapping.prefix!r} is unusable: {mapping.problem}",
        )
    if state is None:
        raise ValueError("decide() needs the object's state once a mapping applies")

    target = mapping.target
    if state.presence is Presence.GONE:
        return Decision(Outcome.GONE, "Object or version no longer exists (deleted or delete marker)", target=target)
    if state.presence is Presence.SSE_C:
        return Decision(
            Outcome.SSE_C,
            "Object is encrypted with a customer-provided key (SSE-C); S3 cannot re-key it without "
            "that key. Re-upload it with the mapped key, or block SSE-C on the bucket",
            target=target,
        )
    if state.presence is Presence.ACCESS_DENIED:
        return Decision(
            Outcome.ACCESS_DENIED,
            "Access denied reading the object (HEAD 403): the enforcer role lacks a grant for this "
            "prefix, or the bucket policy denies it",
            target=target,
        )
    if is_compliant(state, target):
        return Decision(Outcome.COMPLIANT, REASON_COMPLIANT, target=target)

    reason = mismatch_reason(state, target)
    if own_write:
        if event_etag and state.etag and not same_etag(event_etag, state.etag):
            # HEAD found other bytes than the enforcer wrote: a user's write landed after
            # it, and that write's own event re-keys it. Not a loop, nothing to alert.
            return Decision(Outcome.SUPERSEDED, reason_superseded(reason), target=target)
        # The enforcer wrote this object and it is still wrong: copying again would loop.
        return Decision(
            Outcome.LOOP_GUARD,
            f"Loop guard: the enforcer's own write is not compliant ({reason}); check the key "
            "policy and the bucket's default encryption. Not copying again",
            target=target,
        )

    now = now or datetime.now(UTC)
    locked = state.locked(now)
    can_update_in_place = (
        target_allows_update_in_place(target, rekey_method)
        and state.sse_type in (SSE_S3, SSE_KMS)
        and not locked
    )
    if can_update_in_place:
        # UpdateObjectEncryption re-wraps the data key: no data moves, archived objects
        # need no restore, and the exact version is re-keyed without a new one.
        return Decision(Outcome.REKEY, reason, Method.UPDATE_ENCRYPTION, target)

    if state.archived and not state.restored:
        return Decision(
            Outcome.NEEDS_RESTORE,
            f"{reason}; the object is archived ({state.archive_status or state.storage_class}) and "
            "only a copy can re-key it here, which needs a restore first (RestoreObject, then backfill)",
            target=target,
        )
    method = Method.MULTIPART_COPY if state.size > multipart_threshold else Method.COPY
    old_version_action = None
    if state.versioned:
        # A locked version cannot be deleted until its retention ends; the copy keeps
        # the same retention on the new version.
        old_version_action = "keep" if locked else (mapping.old_version_action or default_old_version_action)
    return Decision(Outcome.REKEY, reason, method, target, old_version_action)
