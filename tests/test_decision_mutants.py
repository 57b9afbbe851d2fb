"""decide() at the edges a mutation run (`make mutation`) found untested: boundaries, log texts, targets.

Each case follows an AWS rule or a documented log column, not the mutant that exposed it.
"""

from datetime import UTC, datetime, timedelta

import pytest

from enforcer import decision
from enforcer.decision import Method, Outcome, Presence, Refusal, decide
from tests.test_decision import KEY_A, KEY_B, NOW, mapping, state

WRONG_TYPE = "Incorrect SSE type. Was AES256 whereas it should have been aws:kms"

# -- archived objects --------------------------------------------------------------------
# S3 API Reference, InvalidObjectState: an object in S3 Glacier Flexible Retrieval, S3
# Glacier Deep Archive, or the Intelligent-Tiering Archive / Deep Archive Access tiers
# cannot be read (so not copied) until RestoreObject has restored it. Glacier Instant
# Retrieval and the IA classes are read like STANDARD.


@pytest.mark.parametrize(
    ("storage_class", "archive_status", "named"),
    [
        ("GLACIER", None, "GLACIER"),
        ("DEEP_ARCHIVE", None, "DEEP_ARCHIVE"),
        ("INTELLIGENT_TIERING", "ARCHIVE_ACCESS", "ARCHIVE_ACCESS"),
        ("INTELLIGENT_TIERING", "DEEP_ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS"),
    ],
)
def test_every_archived_class_and_tier_needs_a_restore_before_a_copy(storage_class, archive_status, named):
    archived = state(storage_class=storage_class, archive_status=archive_status)
    d = decide(archived, mapping(dsse=True), now=NOW)
    assert d.outcome is Outcome.NEEDS_RESTORE and d.alert and d.method is None
    # The reason names the class or tier the operator restores from, then what to run.
    assert f"the object is archived ({named})" in d.reason
    assert d.reason.startswith("Incorrect SSE type. Was AES256 whereas it should have been aws:kms:dsse; ")
    assert d.reason.endswith("only a copy can re-key it here, which needs a restore first (RestoreObject, then backfill)")


@pytest.mark.parametrize("storage_class", ["GLACIER_IR", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING"])
def test_classes_read_without_a_restore_are_copied_straight_away(storage_class):
    d = decide(state(storage_class=storage_class), mapping(dsse=True), now=NOW)
    assert (d.outcome, d.method) == (Outcome.REKEY, Method.COPY)


def test_a_restore_still_in_progress_is_not_yet_readable():
    ongoing = state(storage_class="DEEP_ARCHIVE", restore='ongoing-request="true"')
    assert decide(ongoing, mapping(dsse=True), now=NOW).outcome is Outcome.NEEDS_RESTORE


def test_an_archived_object_of_a_replicated_prefix_says_why_it_could_not_be_updated_in_place():
    # The update in place would have re-keyed it without a restore; replication ruled it out.
    rule = decision.ReplicationRule("r1", "arn:aws:s3:::dr", None, True)
    d = decide(state(storage_class="GLACIER"), mapping(), now=NOW, replication=decision.Replication((rule,)))
    assert d.outcome is Outcome.NEEDS_RESTORE
    assert d.fallback is not None and "replicates" in d.fallback


# -- what UpdateObjectEncryption can start from ------------------------------------------
# User Guide, "Updating server-side encryption for existing data": UpdateObjectEncryption
# changes an existing *encrypted* object (SSE-S3 or SSE-KMS) to SSE-KMS. An object stored
# without encryption (written before S3's default encryption) or with DSSE-KMS needs a copy.


def test_an_unencrypted_object_is_copied_not_updated_in_place():
    d = decide(state(sse_type=None), mapping(), now=NOW)
    assert (d.outcome, d.method) == (Outcome.REKEY, Method.COPY)
    assert d.reason == "Incorrect SSE type. Was None whereas it should have been aws:kms"


def test_an_unencrypted_archived_object_needs_a_restore():
    d = decide(state(sse_type=None, storage_class="DEEP_ARCHIVE"), mapping(), now=NOW)
    assert d.outcome is Outcome.NEEDS_RESTORE


# -- own writes ------------------------------------------------------------------------------


def test_an_own_write_whose_head_has_no_etag_trips_the_loop_guard():
    # Without HEAD's ETag nothing shows a newer write landed: the guard holds.
    d = decide(state(sse_type="AES256", etag=None), mapping(), own_write=True, event_etag="written", now=NOW)
    assert d.outcome is Outcome.LOOP_GUARD and d.alert


def test_a_superseded_own_write_keeps_the_mismatch_in_its_reason():
    d = decide(state(etag='"newer"'), mapping(), own_write=True, event_etag="written", now=NOW)
    assert d.reason == decision.reason_superseded(WRONG_TYPE)
    assert d.reason.endswith(f"({WRONG_TYPE})")


# -- Object Lock retention ---------------------------------------------------------------
# User Guide, "Locking objects with Object Lock": a retention period protects the version
# until its retain-until date; after that the version can be overwritten or deleted. The
# retain-until instant itself is the end. If S3 counted that instant as locked it would
# refuse the update, and the Object Lock refusal copies and keeps the version.


def test_a_retention_ending_exactly_now_no_longer_locks():
    ending = state(version_id="v1", lock_mode="GOVERNANCE", lock_retain_until=NOW)
    assert decide(ending, mapping(), now=NOW).method is Method.UPDATE_ENCRYPTION
    later = state(version_id="v1", lock_mode="GOVERNANCE", lock_retain_until=NOW + timedelta(microseconds=1))
    d = decide(later, mapping(), now=NOW)
    assert (d.method, d.old_version_action) == (Method.COPY, "keep")


def test_without_a_given_time_decide_reads_the_utc_clock():
    # lock_retain_until comes from HEAD as an aware UTC datetime.
    today = datetime.now(UTC)
    ahead = state(version_id="v1", lock_mode="COMPLIANCE", lock_retain_until=today + timedelta(days=1))
    assert decide(ahead, mapping()).old_version_action == "keep"
    lapsed = state(version_id="v1", lock_mode="COMPLIANCE", lock_retain_until=today - timedelta(days=1))
    assert decide(lapsed, mapping()).method is Method.UPDATE_ENCRYPTION


# -- the target on every row -------------------------------------------------------------
# enforcer/journal.py writes new_sse_type / new_kms_key_arn from the decision's target for
# every outcome, so a row that did not re-key still says what the key should be.

MAPPED_OUTCOMES = {
    "gone": (dict(presence=Presence.GONE, sse_type=None), {}),
    "sse-c": (dict(presence=Presence.SSE_C, sse_type=None), {}),
    "access-denied": (dict(presence=Presence.ACCESS_DENIED, sse_type=None), {}),
    "kms-denied": (dict(presence=Presence.KMS_DENIED, sse_type="aws:kms", kms_key_arn=KEY_B), {}),
    "compliant": (dict(sse_type="aws:kms", kms_key_arn=KEY_A), {}),
    "superseded": (dict(etag='"newer"'), dict(own_write=True, event_etag="written")),
    "loop-guard": ({}, dict(own_write=True)),
    "failed": ({}, dict(update_refused=decision.UpdateRefused(Refusal.S3_DENIED, "AccessDenied"))),
    "needs-restore": (dict(storage_class="GLACIER"), dict(rekey_method="copy")),
}


@pytest.mark.parametrize("case", MAPPED_OUTCOMES, ids=list(MAPPED_OUTCOMES))
def test_every_decision_on_a_mapped_object_names_the_mapped_target(case):
    fields, options = MAPPED_OUTCOMES[case]
    m = mapping()
    d = decide(state(**fields), m, now=NOW, **options)
    assert d.outcome != Outcome.REKEY and d.target == m.target


# -- reasons an operator acts on (the journal's action_reason and the alert text) ---------


def test_an_unusable_mapping_names_its_prefix_and_the_problem():
    d = decide(None, mapping(problem="kms_key_arn 'alias/x' is an alias"))
    assert d.reason == "Mapping for prefix 'tenant-a/' is unusable: kms_key_arn 'alias/x' is an alias"


def test_a_missing_state_is_a_programming_error_saying_so():
    with pytest.raises(ValueError, match=r"^decide\(\) needs the object's state once a mapping applies$"):
        decide(None, mapping())


def test_a_gone_object_says_it_was_deleted():
    d = decide(state(presence=Presence.GONE, sse_type=None), mapping(), now=NOW)
    assert d.reason == "Object or version no longer exists (deleted or delete marker)"


def test_an_sse_c_object_says_what_to_do_about_it():
    d = decide(state(presence=Presence.SSE_C, sse_type=None), mapping(), now=NOW)
    assert d.reason.startswith("Object is encrypted with a customer-provided key (SSE-C); S3 cannot re-key it")
    assert d.reason.endswith("Re-upload it with the mapped key, or block SSE-C on the bucket")


def test_a_denied_read_names_the_missing_grant():
    d = decide(state(presence=Presence.ACCESS_DENIED, sse_type=None), mapping(), now=NOW)
    assert d.reason.startswith("Access denied reading the object (HEAD 403")
    assert d.reason.endswith("the enforcer role lacks the s3:GetObject grant for this prefix, or the bucket policy denies it")


def test_a_denied_key_that_head_did_not_name_says_so():
    d = decide(state(presence=Presence.KMS_DENIED, sse_type="aws:kms", kms_key_arn=None), mapping(), now=NOW)
    assert d.reason.startswith("Access denied using the object's KMS key (not named): ")
    assert "HEAD with ChecksumMode needs kms:Decrypt on it, and so does re-keying" in d.reason
    assert d.reason.endswith("Add that key ARN to the bucket's sourceKeyArns")


def test_the_loop_guard_and_a_denied_update_name_their_remedies():
    guard = decide(state(), mapping(), own_write=True, now=NOW)
    assert guard.reason.endswith("check the key policy and the bucket's default encryption. Not copying again")
    denied = decide(state(), mapping(), now=NOW, update_refused=decision.UpdateRefused(Refusal.S3_DENIED, "AccessDenied"))
    assert denied.reason.endswith(
        "lacks s3:UpdateObjectEncryption or s3:PutObject here, or a bucket policy denies it"
    )


# -- the replica column (docs/enforcer.md, "Replication") ----------------------------------


def test_a_rule_without_a_replica_key_says_none_is_named():
    rule = decision.ReplicationRule("r1", "arn:aws:s3:::dr", None, True)
    assert rule.describe() == "replicated by rule 'r1' to arn:aws:s3:::dr, encrypted there with no ReplicaKmsKeyID named in the rule"


def test_a_tag_filtered_rule_is_qualified_because_head_does_not_show_tags():
    rule = decision.ReplicationRule("r1", "arn:aws:s3:::dr", KEY_B, True, tag_filtered=True)
    assert rule.describe() == (
        f"replicated by rule 'r1' to arn:aws:s3:::dr (if the object's tags match the rule's), encrypted there with {KEY_B}"
    )
    assert "tags" not in decision.ReplicationRule("r1", "arn:aws:s3:::dr", KEY_B, True).describe()


def test_several_covering_rules_are_each_described():
    first = decision.ReplicationRule("r1", "arn:aws:s3:::dr1", KEY_A, True)
    second = decision.ReplicationRule("r2", "arn:aws:s3:::dr2", KEY_B, False)
    described = decision.Replication((first, second)).describe()
    assert described == f"{first.describe()}; {second.describe()}"
