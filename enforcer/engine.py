"""The re-key engine: look up, inspect, decide, act. Shared by the Lambda handler,
``ops backfill``, ``ops audit`` and the sandbox, so that an object is judged and fixed
the same way whichever of them touches it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from enforcer import refusals, rekey, versions
from enforcer.decision import (
    ALERTING,
    NONCURRENT_FIX,
    Decision,
    KeptRecord,
    Method,
    ObjectState,
    Outcome,
    Refusal,
    Replication,
    UpdateRefused,
    decide,
    is_compliant,
    reason_superseded,
    target_allows_update_in_place,
)
from enforcer.events import ObjectRef
from enforcer.mapping import Mapping, MappingSource, Target
from enforcer.replication import BucketReplication

log = logging.getLogger(__name__)

GIB = 1024**3
# action_taken where nothing was done. The original sample wrote the string "None" into
# its log column; rows written before keep theirs, nothing is migrated.
NO_ACTION = "No action"

REASON_UNINSPECTED = (
    "Re-keyed in place with UpdateObjectEncryption without inspecting it first; it may already "
    "have been compliant"
)


def exposure_seconds(event_time: datetime | None, completed: datetime) -> float | None:
    """How long the object sat under the wrong key: from its write's event time until
    its re-key completed, in seconds (milliseconds kept); None for a ref with no time."""
    if event_time is None:
        return None
    # S3 stamps the event with its own clock; a function clock slightly behind it must
    # not report a negative window.
    return round(max(0.0, (completed - event_time).total_seconds()), 3)


class ConflictPersisted(Exception):
    """409s kept coming; the message goes back to the queue for a later attempt."""


@dataclass(frozen=True)
class EngineSettings:
    principal_id: str | None = None  # AWS:<role unique id>:<function name>
    rekey_method: str = "auto"  # auto | copy
    multipart_threshold: int = 5 * GIB
    old_version_action: str = "delete"  # delete | keep
    max_conflict_retries: int = 3
    part_concurrency: int = 8
    # ops backfill --versions: the operator's choice for noncurrent versions no method can
    # re-key (keep | delete | None), and who the keep records name.
    noncurrent_action: str | None = None
    decided_by: str | None = None


@dataclass(frozen=True)
class Result:
    ref: ObjectRef
    outcome: Outcome
    reason: str
    method: Method | None = None
    before: ObjectState | None = None
    target: Target | None = None
    new_version_id: str | None = None
    old_version: str | None = None  # deleted | kept (recorded on it) | kept: <why>
    fallback: str | None = None  # why UpdateObjectEncryption was not used
    replica: str | None = None  # what the object's replicas get (bucket replication rules)
    exposure_seconds: float | None = None  # REKEYED only: see exposure_seconds()

    @property
    def alert(self) -> bool:
        return self.outcome in ALERTING

    @property
    def action_taken(self) -> str:
        if self.outcome is not Outcome.REKEYED:
            return NO_ACTION
        return {
            Method.UPDATE_ENCRYPTION: "Re-keyed in place with UpdateObjectEncryption",
            Method.COPY: "Re-keyed with an in-place copy",
            Method.MULTIPART_COPY: "Re-keyed with an in-place multipart copy",
        }[self.method]


class Enforcer:
    def __init__(
        self,
        s3,
        mappings: MappingSource,
        settings: EngineSettings | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.s3 = s3
        self.mappings = mappings
        self.settings = settings or EngineSettings()
        self._clock = clock
        self._acl_modes = rekey.BucketAclModes(s3)
        self._replication = BucketReplication(s3)
        self._key_refusals = refusals.KeyRefusals()
        # Threads start only when a multipart copy needs them; a pool of its own keeps
        # part copies from waiting behind the record workers that started them.
        self._part_pool = ThreadPoolExecutor(self.settings.part_concurrency, thread_name_prefix="part-copy")

    # -- public -------------------------------------------------------------

    def is_own_write(self, ref: ObjectRef) -> bool:
        return bool(self.settings.principal_id) and ref.principal_id == self.settings.principal_id

    def assess(self, ref: ObjectRef, *, noncurrent: bool = False
               ) -> tuple[Mapping | None, ObjectState | None, Decision]:
        """Inspect and decide without acting (``ops audit``, ``backfill --dry-run``).

        ``noncurrent``: the listing said the version is not the current object.
        """
        mapping = self.mappings.lookup(ref.bucket, ref.key)
        if mapping is None or mapping.problem:
            return mapping, None, self._decide(None, mapping, ref)
        state = rekey.inspect(self.s3, ref.bucket, ref.key, ref.version_id)
        kept = self._kept(state, mapping.target) if noncurrent else None
        return mapping, state, self._decide(state, mapping, ref, noncurrent=noncurrent, kept=kept)

    def process(self, ref: ObjectRef, *, refused: Exception | None = None, noncurrent: bool = False) -> Result:
        """``_process``, with a re-key's exposure window measured when it completed."""
        return self._timed(self._process(ref, refused=refused, noncurrent=noncurrent))

    def _timed(self, result: Result) -> Result:
        if result.outcome is not Outcome.REKEYED:
            return result
        return replace(result, exposure_seconds=exposure_seconds(result.ref.event_time, self._clock()))

    def _process(self, ref: ObjectRef, *, refused: Exception | None = None, noncurrent: bool = False) -> Result:
        """Bring one object to its mapped encryption. Raises only for transient errors.

        ``refused``: how S3 already answered an UpdateObjectEncryption of this object
        (the backfill's blind attempt), so that the request is not sent a second time.
        ``noncurrent``: the listing said the version is not the current object: it is
        re-keyed in place where S3 allows it, else settled by ``noncurrent_action``.
        """
        # Mapping first: an unmapped object costs no S3 call, and the role needs no
        # grant outside the mapped prefixes.
        mapping = self.mappings.lookup(ref.bucket, ref.key)
        if mapping is None or mapping.problem:
            decision = self._decide(None, mapping, ref)
            return Result(ref, decision.outcome, decision.reason)
        for attempt in range(self.settings.max_conflict_retries + 1):
            state = rekey.inspect(self.s3, ref.bucket, ref.key, ref.version_id)
            known = self._classify(refused, state, mapping.target) if isinstance(refused, rekey.Refused) else None
            decision = self._judge(state, mapping, ref, known, noncurrent=noncurrent)

            def ended(outcome: Outcome, reason: str, decision: Decision = decision, state: ObjectState = state):
                return Result(ref, outcome, reason, decision.method, state, decision.target,
                              fallback=decision.fallback, replica=decision.replica)

            if decision.outcome in (Outcome.KEEP, Outcome.DELETE_VERSION):
                return self._settle(ref, state, decision)
            if decision.outcome is not Outcome.REKEY:
                return replace(ended(decision.outcome, decision.reason), method=None)
            try:
                if isinstance(refused, rekey.PermanentFailure) and decision.method is Method.UPDATE_ENCRYPTION:
                    raise refused  # S3's answer to this very request, already had
                return self._act(ref, mapping, state, decision)
            except rekey.Conflict:
                log.info("conflicting write on %s (attempt %d); inspecting again", ref.s3_path, attempt + 1)
            except rekey.Superseded:
                return self._superseded(ref, mapping, state, decision, ended)
            except rekey.Gone:
                return ended(Outcome.GONE, "Object was deleted while being re-keyed")
            except rekey.PermanentFailure as exc:
                return ended(Outcome.FAILED, f"{decision.reason}; re-key failed and will not be retried: {exc}")
        raise ConflictPersisted(
            f"{ref.s3_path}: {self.settings.max_conflict_retries + 1} conflicting writes in a row"
        )

    def process_uninspected(self, ref: ObjectRef) -> Result:
        """Backfill's fast path: UpdateObjectEncryption at once, without a HEAD first.

        Safe without looking: UpdateObjectEncryption moves no data, so it cannot put an
        older body over a newer write (unversioned, it re-keys whatever is current, and
        that maps to the same key), and S3 refuses every source it cannot re-key
        (DSSE-KMS, SSE-C, unencrypted: InvalidRequest; Object Lock, another account's
        key, a missing KMS permission: AccessDenied). Those objects take the inspected
        path. The price: an object that was already compliant is re-keyed to the same
        key (one write, one KMS request) and cannot be told apart from the others.
        Where replication covers the key, the update would leave the replica on the old
        key, so the object takes the inspected path, which copies.
        """
        mapping = self.mappings.lookup(ref.bucket, ref.key)
        if (
            mapping is None
            or mapping.problem
            or not target_allows_update_in_place(mapping.target, self.settings.rekey_method)
            or not self._key_refusals.blind_update_pays(mapping.target.kms_key_arn)
            or self._replication.of(ref.bucket, ref.key).replicates
        ):
            return self.process(ref)
        known = ObjectState(ref.bucket, ref.key, version_id=ref.version_id)  # all a listing tells
        try:
            rekey.update_encryption(self.s3, known, mapping.target)
        except rekey.Gone:
            return Result(ref, Outcome.GONE, "Object was deleted before it was re-keyed", target=mapping.target)
        except (rekey.Refused, rekey.PermanentFailure) as exc:
            return self.process(ref, refused=exc)  # the HEAD and decide() say what it needs
        except (rekey.Conflict, rekey.Superseded):
            return self.process(ref)  # S3 was busy with the object: judge it afresh
        return self._timed(Result(ref, Outcome.REKEYED, REASON_UNINSPECTED, Method.UPDATE_ENCRYPTION,
                                  target=mapping.target))

    # -- internals ----------------------------------------------------------

    def _decide(self, state, mapping, ref, refused: UpdateRefused | None = None,
                replication: Replication | None = None, *, noncurrent: bool = False,
                kept: KeptRecord | None = None) -> Decision:
        return decide(
            state,
            mapping,
            own_write=self.is_own_write(ref),
            event_etag=ref.etag,
            rekey_method=self.settings.rekey_method,
            multipart_threshold=self.settings.multipart_threshold,
            default_old_version_action=self.settings.old_version_action,
            now=self._clock(),
            update_refused=refused,
            replication=replication,
            noncurrent=noncurrent,
            kept=kept,
            noncurrent_action=self.settings.noncurrent_action,
        )

    def _judge(self, state: ObjectState, mapping: Mapping, ref: ObjectRef,
               refused: UpdateRefused | None = None, *, noncurrent: bool = False) -> Decision:
        """decide(), with the facts that cost calls gathered only for objects to re-key.

        The bucket's replication configuration is read once per bucket per container,
        and only once a re-key is on the table: a compliant object costs no extra call.
        A noncurrent version's tags are read only when HEAD counted some and it is not
        compliant: they may hold a recorded keep.
        """
        refused = refused or self._key_refusals.recall(state, mapping.target.kms_key_arn)
        kept = self._kept(state, mapping.target) if noncurrent else None
        decision = self._decide(state, mapping, ref, refused, noncurrent=noncurrent, kept=kept)
        if decision.outcome is not Outcome.REKEY:
            return decision
        return self._decide(state, mapping, ref, refused, self._replication.of(state.bucket, state.key),
                            noncurrent=noncurrent, kept=kept)

    def _kept(self, state: ObjectState, target: Target) -> KeptRecord | None:
        if not state.head.get("TagCount") or is_compliant(state, target):
            return None
        try:
            return versions.read_record(self.s3, state)
        except ClientError as exc:
            rekey.raise_classified(exc)
            raise

    def _superseded(self, ref: ObjectRef, mapping: Mapping, state: ObjectState, decision: Decision, ended) -> Result:
        """A newer write beat the copy: the inspected version is noncurrent now.

        Where S3 re-keys that version in place (an SSE-KMS target), it is re-keyed so,
        pinned to its VersionId; a copy would make it current again. Otherwise it stays,
        for the operator to settle (``NONCURRENT_FIX``).
        """
        again = self._judge(state, mapping, ref, decision.update_refused, noncurrent=True)
        if again.outcome is Outcome.REKEY and again.method is Method.UPDATE_ENCRYPTION:
            try:
                rekey.update_encryption(self.s3, state, again.target)
            except (rekey.Refused, rekey.PermanentFailure) as exc:
                log.warning("UpdateObjectEncryption of superseded %s refused (%s)", ref.s3_path, exc)
            except (rekey.Gone, rekey.Superseded, rekey.Conflict):
                pass  # deleted or busy meanwhile: the newer write's own event stands
            else:
                return Result(ref, Outcome.REKEYED,
                              f"{decision.reason}; superseded by a newer write during the copy, so this "
                              "noncurrent version was re-keyed in place", Method.UPDATE_ENCRYPTION, state,
                              again.target, replica=again.replica)
        return ended(Outcome.SUPERSEDED, f"{reason_superseded(decision.reason)}; this version stays noncurrent "
                     f"under its old key until {NONCURRENT_FIX}")

    def _settle(self, ref: ObjectRef, state: ObjectState, decision: Decision) -> Result:
        """Carry out the operator's choice for a noncurrent version no method can re-key."""
        if decision.outcome is Outcome.DELETE_VERSION:
            try:
                versions.delete_version(self.s3, state)
            except ClientError as exc:
                rekey.raise_classified(exc)
                raise
            return Result(ref, Outcome.DELETED, decision.reason, before=state, target=decision.target,
                          old_version="deleted")
        try:
            record = versions.record_keep(self.s3, state, "operator", self._decider(), self._clock())
        except versions.TagLimit as exc:
            return Result(ref, Outcome.FAILED, f"keep not recorded: {exc} ({decision.reason})", before=state,
                          target=decision.target)
        except ClientError as exc:
            rekey.raise_classified(exc)
            raise
        return Result(ref, Outcome.KEPT, f"{decision.reason} ({record.describe()})", before=state,
                      target=decision.target, old_version="kept")

    def _decider(self) -> str:
        return self.settings.decided_by or self.settings.principal_id or "s3-prefix-keys-enforcer"

    def _classify(self, exc: rekey.Refused, state: ObjectState, target: Target) -> UpdateRefused:
        refused = refusals.classify(exc.code, exc.message, state)
        self._key_refusals.remember(refused, state, target.kms_key_arn)
        return refused

    def _act(self, ref: ObjectRef, mapping: Mapping, state: ObjectState, decision: Decision) -> Result:
        if decision.method is Method.UPDATE_ENCRYPTION:
            try:
                rekey.update_encryption(self.s3, state, decision.target)
                return Result(ref, Outcome.REKEYED, decision.reason, decision.method, state, decision.target)
            except rekey.Refused as exc:
                refused = self._classify(exc, state, decision.target)
                log.warning("UpdateObjectEncryption refused for %s (%s)", ref.s3_path, refused)
                decision = self._judge(state, mapping, ref, refused)
                if decision.outcome is not Outcome.REKEY:
                    return Result(ref, decision.outcome, decision.reason, before=state, target=decision.target,
                                  fallback=decision.fallback, replica=decision.replica)
        return self._copy(ref, state, decision)

    def _copy(self, ref: ObjectRef, state: ObjectState, decision: Decision) -> Result:
        target = decision.target
        grants: dict[str, str] = {}
        if self._acl_modes.uses_acls(state.bucket):
            grants = rekey.acl_grant_params(self._read(self.s3.get_object_acl, state))
        plan = rekey.CopyPlan.build(state, target, grants, self._clock())
        if decision.method is Method.MULTIPART_COPY:
            if state.head.get("TagCount"):
                tag_set = self._read(self.s3.get_object_tagging, state)["TagSet"]
                plan.tags = {t["Key"]: t["Value"] for t in tag_set}
            written = rekey.multipart_copy(
                self.s3, state, plan, self.settings.multipart_threshold, self._part_pool
            )
        else:
            written = rekey.copy_in_place(self.s3, state, plan)
        new_version = written.get("VersionId") if state.versioned else None
        result = Result(
            ref, Outcome.REKEYED, decision.reason, decision.method, state, target, new_version_id=new_version,
            fallback=decision.fallback, replica=decision.replica,
        )
        if decision.old_version_action and new_version:
            result = self._handle_old_version(result, state, decision, written)
        return result

    def _handle_old_version(self, result: Result, state: ObjectState, decision: Decision, written) -> Result:
        target = decision.target
        confirmed = rekey.written_encryption(written) == (target.sse_type, target.kms_key_arn)
        if not confirmed:
            # The copy's answer did not show the key (some endpoints omit it for DSSE):
            # only a HEAD of the new version may clear the old one for deletion.
            after = rekey.inspect(self.s3, state.bucket, state.key, result.new_version_id)
            confirmed = is_compliant(after, target)
        if not confirmed:
            return replace(
                result,
                outcome=Outcome.FAILED,
                reason=f"{result.reason}; the new version {result.new_version_id} is not encrypted as "
                "mapped, so the old version was kept",
                old_version="kept: new version not compliant",
            )
        if decision.old_version_action != "delete":
            return replace(result, old_version=self._record_kept(state, decision))
        try:
            self.s3.delete_object(Bucket=state.bucket, Key=state.key, VersionId=state.version_id)
            return replace(result, old_version="deleted")
        except ClientError as exc:
            message = exc.response.get("Error", {}).get("Message", "")
            if rekey.error_code(exc) == "AccessDenied":
                return replace(result, old_version=f"kept: {message or 'access denied'}")
            raise

    def _record_kept(self, state: ObjectState, decision: Decision) -> str:
        """The replaced version is kept: say so on it, so that an audit of the versions
        reports it as kept by decision, not as an offender."""
        lock_refused = decision.update_refused is not None and decision.update_refused.refusal is Refusal.OBJECT_LOCK
        why = "locked" if state.locked(self._clock()) or lock_refused else "old-version-action"
        try:
            versions.record_keep(self.s3, state, why, self._decider(), self._clock())
        except (versions.TagLimit, ClientError) as exc:
            # Not documented whether S3 lets a locked version's tags change; the re-key
            # stands either way, and the audit names the command that records the keep.
            detail = versions.error_message(exc) if isinstance(exc, ClientError) else str(exc)
            log.warning("could not record the keep on %s version %s: %s", state.key, state.version_id, detail)
            return f"kept: the keep ({why}) could not be recorded on it: {detail}"
        return "kept"

    def _read(self, operation, state: ObjectState) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": state.bucket, "Key": state.key}
        if state.versioned:
            kwargs["VersionId"] = state.version_id
        try:
            return operation(**kwargs)
        except ClientError as exc:
            rekey.raise_classified(exc)
            raise
