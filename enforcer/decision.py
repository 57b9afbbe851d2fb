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
    ACCESS_DENIED = "access-denied"  # HEAD answers 403 and the probes say S3 denies the read
    KMS_DENIED = "kms-denied"  # HEAD answers 403 for the checksum; kms:Decrypt on the key is missing


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
    # a noncurrent version only a copy could re-key, which would make it current: the
    # operator chooses (ops backfill --versions --noncurrent keep|delete)
    NEEDS_CHOICE = "needs-choice"
    KEPT = "kept"  # such a version, kept by a decision recorded on it (enforcer/versions.py)
    # decisions to act
    REKEY = "rekey"
    KEEP = "keep"  # record the operator's keep on a noncurrent version
    DELETE_VERSION = "delete-version"  # delete a noncurrent version, as the operator chose
    # outcomes of acting (set by the engine; SUPERSEDED also by decide() for an own write
    # that a newer one has already replaced)
    REKEYED = "rekeyed"
    SUPERSEDED = "superseded"
    LOCKED = "locked"
    FAILED = "failed"
    DELETED = "deleted"  # a noncurrent version deleted by the operator's choice


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


class Refusal(StrEnum):
    """Why S3 refused an UpdateObjectEncryption (``enforcer/refusals.py`` tells them apart).

    All but UNSUPPORTED come back as 403 AccessDenied.
    """

    UNSUPPORTED = "unsupported"  # InvalidRequest/NotImplemented, or a boto3 without the call
    OBJECT_LOCK = "object-lock"  # a retention mode or legal hold (a lapsed retention may count)
    OTHER_ACCOUNT_KEY = "other-account-key"  # the key is not the bucket owner's
    KMS_DENIED = "kms-denied"  # a KMS permission UpdateObjectEncryption needs that a copy may not
    S3_DENIED = "s3-denied"  # S3 itself denies the call: a missing grant or a bucket policy


@dataclass(frozen=True)
class UpdateRefused:
    """S3's refusal of an UpdateObjectEncryption, classified."""

    refusal: Refusal
    detail: str  # S3's own message, for the log row

    def __str__(self) -> str:
        return f"{self.refusal}: {self.detail}"


@dataclass(frozen=True)
class ReplicationRule:
    """One Enabled replication rule whose filter covers the object."""

    rule_id: str
    destination: str  # the destination bucket's ARN
    replica_kms_key_id: str | None  # EncryptionConfiguration.ReplicaKmsKeyID
    sse_kms_selected: bool  # SourceSelectionCriteria.SseKmsEncryptedObjects is Enabled
    tag_filtered: bool = False  # the filter also names tags, which HEAD does not show

    def describe(self) -> str:
        where = f"rule {self.rule_id!r} to {self.destination}"
        if not self.sse_kms_selected:
            # Replicating encrypted objects: S3 replicates objects encrypted with a KMS key
            # only when the rule opts in with SseKmsEncryptedObjects.
            return f"not replicated at all by {where}: its SourceSelectionCriteria.SseKmsEncryptedObjects is not Enabled"
        key = self.replica_kms_key_id or "no ReplicaKmsKeyID named in the rule"
        tags = " (if the object's tags match the rule's)" if self.tag_filtered else ""
        return f"replicated by {where}{tags}, encrypted there with {key}"


@dataclass(frozen=True)
class Replication:
    """What the bucket's replication configuration says about one object key."""

    rules: tuple[ReplicationRule, ...] = ()
    unknown: str | None = None  # why the configuration could not be read

    @property
    def replicates(self) -> bool:
        # Unreadable counts as replicating: a copy is right either way, an update in place
        # would leave any replica on the old key.
        return bool(self.rules) or self.unknown is not None

    def describe(self) -> str | None:
        if self.unknown is not None:
            return f"replication unknown ({self.unknown}): copied so that any replica follows"
        if not self.rules:
            return None
        return "; ".join(rule.describe() for rule in self.rules)


NONCURRENT_FIX = "ops backfill --versions --noncurrent keep|delete"


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
class KeptRecord:
    """A decision to keep a noncurrent version under its old key, as recorded on it."""

    decided_by: str
    decided_at: str  # ISO 8601, UTC
    why: str  # operator | locked | old-version-action

    def describe(self) -> str:
        return f"{self.why}, decided by {self.decided_by} at {self.decided_at}"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str
    method: Method | None = None
    target: Target | None = None
    # Copy path on a versioned bucket: what to do with the replaced version.
    old_version_action: str | None = None
    fallback: str | None = None  # why a copy, where UpdateObjectEncryption would have done
    replica: str | None = None  # what the object's replicas get from this re-key
    update_refused: UpdateRefused | None = None  # S3's refusal the fallback rests on
    kept: KeptRecord | None = None  # the keep recorded on a noncurrent version

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
    update_refused: UpdateRefused | None = None,
    replication: Replication | None = None,
    noncurrent: bool = False,
    kept: KeptRecord | None = None,
    noncurrent_action: str | None = None,
) -> Decision:
    """The action one object needs.

    ``state`` may be None only when there is no mapping: the engine looks the mapping
    up first, so an unmapped object costs no S3 call.
    ``own_write`` is true when the event was caused by the enforcer's own write;
    ``event_etag`` is the ETag that event names, when it names one.
    ``update_refused``: how S3 answered an UpdateObjectEncryption of this object.
    ``replication``: what the bucket's replication rules say about this key (None: not
    read, which the engine does only once an update in place is on the table).
    ``noncurrent``: the version is not the current object (a listing's IsLatest, or a
    copy that a newer write beat); ``kept``: the keep decision recorded on it;
    ``noncurrent_action``: the operator's choice for one no method can re-key
    (keep | delete | None: not chosen).
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
            "Access denied reading the object (HEAD 403, and a read without the checksum too): the "
            "enforcer role lacks the s3:GetObject grant for this prefix, or the bucket policy denies it",
            target=target,
        )
    if state.presence is Presence.KMS_DENIED and not is_compliant(state, target):
        # Neither method works without it: a copy reads the data and UpdateObjectEncryption
        # re-wraps its data key, both with kms:Decrypt on the object's current key.
        return Decision(
            Outcome.ACCESS_DENIED,
            f"Access denied using the object's KMS key {state.kms_key_arn or '(not named)'}: HEAD with "
            "ChecksumMode needs kms:Decrypt on it, and so does re-keying. Add that key ARN to the "
            "bucket's sourceKeyArns",
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

    if update_refused is not None and update_refused.refusal is Refusal.S3_DENIED:
        return Decision(
            Outcome.FAILED,
            f"{reason}; S3 denied UpdateObjectEncryption ({update_refused.detail}): the enforcer role "
            "lacks s3:UpdateObjectEncryption or s3:PutObject here, or a bucket policy denies it",
            target=target,
        )

    now = now or datetime.now(UTC)
    locked = state.locked(now)
    can_update_in_place = (
        target_allows_update_in_place(target, rekey_method)
        and state.sse_type in (SSE_S3, SSE_KMS)
        and not locked
    )
    replica = replication.describe() if replication is not None else None
    if noncurrent:
        return _decide_noncurrent(state, target, reason, can_update_in_place, update_refused, replica,
                                  kept, noncurrent_action, locked)
    fallback = None
    if can_update_in_place and update_refused is not None:
        fallback = str(update_refused)
    elif can_update_in_place and replication is not None and replication.replicates:
        # User Guide, "Updating server-side encryption for existing data": the update does
        # not reach the replicas. A copy is a new write, which replication carries over.
        fallback = f"the prefix replicates, and UpdateObjectEncryption would not re-key the replica ({replica})"
    if can_update_in_place and fallback is None:
        # UpdateObjectEncryption re-wraps the data key: no data moves, archived objects
        # need no restore, and the exact version is re-keyed without a new one.
        return Decision(Outcome.REKEY, reason, Method.UPDATE_ENCRYPTION, target)

    if state.archived and not state.restored:
        return Decision(
            Outcome.NEEDS_RESTORE,
            f"{reason}; the object is archived ({state.archive_status or state.storage_class}) and "
            "only a copy can re-key it here, which needs a restore first (RestoreObject, then backfill)",
            target=target,
            fallback=fallback,
        )
    method = Method.MULTIPART_COPY if state.size > multipart_threshold else Method.COPY
    old_version_action = None
    if state.versioned:
        # A locked version cannot be deleted until its retention ends; the copy keeps
        # the same retention on the new version. S3's own Object Lock refusal counts as a
        # lock even where HEAD showed none live (a lapsed retention, or no grant to see it).
        kept = locked or (update_refused is not None and update_refused.refusal is Refusal.OBJECT_LOCK)
        old_version_action = "keep" if kept else (mapping.old_version_action or default_old_version_action)
    return Decision(Outcome.REKEY, reason, method, target, old_version_action, fallback, replica, update_refused)


def _decide_noncurrent(
    state: ObjectState,
    target: Target,
    reason: str,
    can_update_in_place: bool,
    update_refused: UpdateRefused | None,
    replica: str | None,
    kept: KeptRecord | None,
    noncurrent_action: str | None,
    locked: bool,
) -> Decision:
    """A version that is not the current object: never copied, since a copy in place
    would become the current object over the newer write."""
    if kept is not None:
        return Decision(Outcome.KEPT, f"{reason}; kept by decision ({kept.describe()})", target=target, kept=kept)
    # The null version is noncurrent only in a bucket versioned after it was written; the
    # engine pins no VersionId for it (ObjectState.versioned), so an update would reach
    # the current object instead. Left to the operator's choice.
    if can_update_in_place and update_refused is None and state.versioned:
        # UpdateObjectEncryption takes a VersionId and re-keys that version without
        # creating one (API_UpdateObjectEncryption, VersionId: "The version ID of the
        # object that you want to update the server-side encryption type for"). Even where
        # the prefix replicates: the replica of a noncurrent version has no better method.
        if replica:
            replica = f"{replica}; the replica of this noncurrent version keeps its old key"
        return Decision(Outcome.REKEY, reason, Method.UPDATE_ENCRYPTION, target, replica=replica)
    if locked:
        why = "it is under Object Lock"
    elif update_refused is not None:
        why = f"S3 refused UpdateObjectEncryption ({update_refused})"
    elif target.sse_type != SSE_KMS:
        why = f"UpdateObjectEncryption cannot write {target.sse_type}"
    elif state.sse_type not in (SSE_S3, SSE_KMS):
        why = f"UpdateObjectEncryption cannot re-key a {state.sse_type or 'unencrypted'} source"
    elif not state.versioned:
        why = "it is the null version, which the engine never re-keys by version"
    else:
        why = "the re-key method is copy"
    where = f"a noncurrent version, which only a copy could re-key ({why}), and a copy would make it current"
    if noncurrent_action == "keep":
        return Decision(Outcome.KEEP, f"{reason}; {where}; kept by the operator's choice", target=target)
    if noncurrent_action == "delete":
        if locked:
            until = state.lock_retain_until.isoformat() if state.lock_retain_until else "a legal hold is lifted"
            return Decision(
                Outcome.LOCKED,
                f"{reason}; {where}, and it cannot be deleted until {until}: keep it with "
                "ops backfill --versions --noncurrent keep",
                target=target,
            )
        return Decision(Outcome.DELETE_VERSION, f"{reason}; {where}; deleted by the operator's choice",
                        target=target)
    return Decision(Outcome.NEEDS_CHOICE, f"{reason}; {where}: choose with {NONCURRENT_FIX}", target=target)
