"""decide(): every case, no AWS."""

from datetime import UTC, datetime, timedelta

import pytest

from enforcer.decision import (
    REASON_COMPLIANT,
    REASON_UNMAPPED,
    Method,
    ObjectState,
    Outcome,
    Presence,
    Refusal,
    Replication,
    ReplicationRule,
    UpdateRefused,
    decide,
)
from enforcer.mapping import Mapping, Target, longest_prefix

KEY_A = "arn:aws:kms:us-east-1:111122223333:key/11111111-1111-1111-1111-111111111111"
KEY_B = "arn:aws:kms:us-east-1:111122223333:key/22222222-2222-2222-2222-222222222222"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def mapping(key=KEY_A, dsse=False, old_version_action=None, problem=None, prefix="tenant-a/"):
    target = Target("aws:kms:dsse" if dsse else "aws:kms", key, not dsse)
    return Mapping("bkt", prefix, target, old_version_action, problem)


def state(**kw):
    base = dict(bucket="bkt", key="tenant-a/x", etag='"e"', size=10, sse_type="AES256")
    base.update(kw)
    return ObjectState(**base)


def test_unmapped_needs_no_state_and_keeps_the_original_reason():
    d = decide(None, None)
    assert d.outcome is Outcome.UNMAPPED
    assert d.reason == "No KMS key configured for this object's prefix" == REASON_UNMAPPED
    assert not d.alert


def test_compliant_object_is_left_alone_with_the_original_reason():
    d = decide(state(sse_type="aws:kms", kms_key_arn=KEY_A), mapping(), now=NOW)
    assert d.outcome is Outcome.COMPLIANT
    assert d.reason == "Already using the correct key"
    assert d.method is None


def test_wrong_type_sse_s3_to_kms_uses_update_object_encryption():
    d = decide(state(sse_type="AES256"), mapping(), now=NOW)
    assert d.outcome is Outcome.REKEY
    assert d.method is Method.UPDATE_ENCRYPTION
    assert d.reason == "Incorrect SSE type. Was AES256 whereas it should have been aws:kms"
    assert d.target.kms_key_arn == KEY_A and d.target.bucket_key is True


def test_wrong_key_is_compared_as_whole_arn_and_rekeyed_in_place():
    d = decide(state(sse_type="aws:kms", kms_key_arn=KEY_B), mapping(), now=NOW)
    assert d.outcome is Outcome.REKEY and d.method is Method.UPDATE_ENCRYPTION
    assert d.reason == f"Incorrect KMS key. Was {KEY_B} whereas it should have been {KEY_A}"


@pytest.mark.parametrize(
    "lookalike",
    [
        KEY_A.replace("111122223333", "999988887777"),  # same key id, other account
        KEY_A.replace("us-east-1", "us-west-2"),  # same key id, other region
        "11111111-1111-1111-1111-111111111111",  # the bare key id S3 never reports
    ],
)
def test_a_key_arn_containing_the_mapped_key_id_is_not_compliant(lookalike):
    d = decide(state(sse_type="aws:kms", kms_key_arn=lookalike), mapping(), now=NOW)
    assert d.outcome is Outcome.REKEY


def test_dsse_target_needs_a_copy_because_update_object_encryption_cannot_write_dsse():
    d = decide(state(sse_type="AES256"), mapping(dsse=True), now=NOW)
    assert d.outcome is Outcome.REKEY
    assert d.method is Method.COPY
    assert d.reason == "Incorrect SSE type. Was AES256 whereas it should have been aws:kms:dsse"
    assert d.target.sse_type == "aws:kms:dsse" and d.target.bucket_key is False


def test_dsse_source_to_kms_target_copies():
    d = decide(state(sse_type="aws:kms:dsse", kms_key_arn=KEY_A), mapping(), now=NOW)
    assert d.method is Method.COPY


def test_rekey_method_copy_forces_the_copy_path():
    d = decide(state(), mapping(), rekey_method="copy", now=NOW)
    assert d.method is Method.COPY


def test_large_objects_take_the_multipart_copy_above_the_threshold():
    big = state(size=100)
    assert decide(big, mapping(dsse=True), multipart_threshold=99, now=NOW).method is Method.MULTIPART_COPY
    assert decide(big, mapping(dsse=True), multipart_threshold=100, now=NOW).method is Method.COPY
    # UpdateObjectEncryption moves no data, so size does not matter to it
    assert decide(big, mapping(), multipart_threshold=1, now=NOW).method is Method.UPDATE_ENCRYPTION


def test_sse_c_cannot_be_rekeyed_alerts_and_is_not_retried():
    d = decide(state(presence=Presence.SSE_C, sse_type=None), mapping(), now=NOW)
    assert d.outcome is Outcome.SSE_C and d.alert and d.method is None
    assert "SSE-C" in d.reason


def test_access_denied_on_head_alerts():
    d = decide(state(presence=Presence.ACCESS_DENIED, sse_type=None), mapping(), now=NOW)
    assert d.outcome is Outcome.ACCESS_DENIED and d.alert
    assert "grant" in d.reason


def test_gone_object_is_an_outcome_not_a_failure():
    d = decide(state(presence=Presence.GONE, sse_type=None), mapping(), now=NOW)
    assert d.outcome is Outcome.GONE and not d.alert


def test_archived_object_is_rekeyed_in_place_without_restore():
    d = decide(state(storage_class="DEEP_ARCHIVE"), mapping(), now=NOW)
    assert d.method is Method.UPDATE_ENCRYPTION


def test_archived_object_on_the_copy_path_needs_restore():
    d = decide(state(storage_class="GLACIER"), mapping(dsse=True), now=NOW)
    assert d.outcome is Outcome.NEEDS_RESTORE and d.alert
    assert "restore" in d.reason
    tiered = state(storage_class="INTELLIGENT_TIERING", archive_status="DEEP_ARCHIVE_ACCESS")
    assert decide(tiered, mapping(dsse=True), now=NOW).outcome is Outcome.NEEDS_RESTORE


def test_restored_archived_object_can_be_copied():
    restored = state(storage_class="GLACIER", restore='ongoing-request="false", expiry-date="Fri, 1 Jan 2027"')
    d = decide(restored, mapping(dsse=True), now=NOW)
    assert d.outcome is Outcome.REKEY and d.method is Method.COPY


def test_object_lock_retention_blocks_in_place_update_and_keeps_the_locked_version():
    locked = state(version_id="v1", lock_mode="GOVERNANCE", lock_retain_until=NOW + timedelta(days=1))
    d = decide(locked, mapping(), now=NOW)
    assert d.method is Method.COPY
    assert d.old_version_action == "keep"


def test_legal_hold_blocks_in_place_update():
    d = decide(state(version_id="v1", legal_hold=True), mapping(), now=NOW)
    assert d.method is Method.COPY and d.old_version_action == "keep"


def test_expired_retention_no_longer_locks():
    expired = state(lock_mode="COMPLIANCE", lock_retain_until=NOW - timedelta(seconds=1))
    assert decide(expired, mapping(), now=NOW).method is Method.UPDATE_ENCRYPTION


def test_old_version_action_mapping_row_overrides_the_default():
    versioned = state(version_id="v1")
    assert decide(versioned, mapping(dsse=True), now=NOW).old_version_action == "delete"
    d = decide(versioned, mapping(dsse=True, old_version_action="keep"), now=NOW)
    assert d.old_version_action == "keep"
    d = decide(versioned, mapping(dsse=True), default_old_version_action="keep", now=NOW)
    assert d.old_version_action == "keep"


def test_unversioned_copy_has_no_old_version_to_handle():
    assert decide(state(version_id="null"), mapping(dsse=True), now=NOW).old_version_action is None


def test_own_write_that_is_not_compliant_trips_the_loop_guard():
    d = decide(state(sse_type="AES256"), mapping(), own_write=True, now=NOW)
    assert d.outcome is Outcome.LOOP_GUARD and d.alert and d.method is None
    assert "Not copying again" in d.reason


def test_own_write_overtaken_by_a_newer_write_is_superseded_not_a_loop():
    # The event names the ETag the enforcer wrote; HEAD finds a user's newer bytes.
    d = decide(state(sse_type="AES256", etag='"newer"'), mapping(), own_write=True, event_etag="written", now=NOW)
    assert d.outcome is Outcome.SUPERSEDED and not d.alert and d.method is None
    assert d.reason.startswith("Superseded by a newer write")


@pytest.mark.parametrize("event_etag", ["e", '"e"', None], ids=["bare", "quoted", "not-in-event"])
def test_own_write_with_the_same_etag_still_trips_the_loop_guard(event_etag):
    d = decide(state(sse_type="AES256", etag='"e"'), mapping(), own_write=True, event_etag=event_etag, now=NOW)
    assert d.outcome is Outcome.LOOP_GUARD


def test_a_users_event_with_another_etag_is_judged_on_what_head_found():
    d = decide(state(sse_type="AES256", etag='"newer"'), mapping(), event_etag="older", now=NOW)
    assert d.outcome is Outcome.REKEY


def test_own_write_that_is_compliant_is_just_compliant():
    d = decide(state(sse_type="aws:kms", kms_key_arn=KEY_A), mapping(), own_write=True, now=NOW)
    assert d.outcome is Outcome.COMPLIANT and d.reason == REASON_COMPLIANT


def test_unusable_mapping_row_alerts_instead_of_encrypting():
    d = decide(None, mapping(problem="kms_key_arn 'alias/x' is an alias"))
    assert d.outcome is Outcome.INVALID_MAPPING and d.alert


def test_state_is_required_once_a_mapping_applies():
    with pytest.raises(ValueError):
        decide(None, mapping())


def test_longest_literal_prefix_wins():
    maps = [mapping(prefix="t/"), mapping(KEY_B, prefix="t/vip/"), mapping(prefix="u/")]
    assert longest_prefix(maps, "t/vip/x").target.kms_key_arn == KEY_B
    assert longest_prefix(maps, "t/vipx").prefix == "t/"
    assert longest_prefix(maps, "T/vip/x") is None  # S3 keys are case-sensitive
    assert longest_prefix(maps, "v/x") is None


def test_mapping_rows_are_validated_like_config():
    good = Mapping.from_row({"bucket_name": "b", "prefix": "p/", "kms_key_arn": KEY_A, "dual_layer_encryption": False})
    assert good.problem is None and good.target.bucket_key is True
    dsse = Mapping.from_row({"bucket_name": "b", "prefix": "p/", "kms_key_arn": KEY_A, "dual_layer_encryption": True})
    assert dsse.target.sse_type == "aws:kms:dsse" and dsse.target.bucket_key is False
    alias = Mapping.from_row({"bucket_name": "b", "prefix": "p/", "kms_key_arn": "alias/tenant"})
    assert "alias" in alias.problem
    not_bool = Mapping.from_row({"bucket_name": "b", "prefix": "p/", "kms_key_arn": KEY_A, "dual_layer_encryption": "yes"})
    assert "boolean" in not_bool.problem


# -- facts the engine gathers after a first look: refusals and replication ---------------


def refused(kind, detail="AccessDenied: no"):
    return UpdateRefused(kind, detail)


@pytest.mark.parametrize("kind", [Refusal.UNSUPPORTED, Refusal.OTHER_ACCOUNT_KEY, Refusal.KMS_DENIED])
def test_a_refused_update_in_place_falls_back_to_a_copy_and_says_why(kind):
    d = decide(state(), mapping(), now=NOW, update_refused=refused(kind, "S3 said so"))
    assert (d.outcome, d.method) == (Outcome.REKEY, Method.COPY)
    assert d.fallback == f"{kind}: S3 said so" and not d.alert


def test_object_lock_refusal_copies_and_keeps_the_version_head_showed_unlocked():
    lapsed = state(version_id="v1", lock_mode="GOVERNANCE", lock_retain_until=NOW - timedelta(days=1))
    d = decide(lapsed, mapping(), now=NOW, update_refused=refused(Refusal.OBJECT_LOCK, "protected by S3 Object Lock"))
    assert (d.outcome, d.method, d.old_version_action) == (Outcome.REKEY, Method.COPY, "keep")
    assert d.fallback.startswith("object-lock: ")


def test_s3_denying_the_update_is_a_failure_naming_the_grants():
    d = decide(state(), mapping(), now=NOW, update_refused=refused(Refusal.S3_DENIED))
    assert d.outcome is Outcome.FAILED and d.alert
    assert "s3:UpdateObjectEncryption" in d.reason and d.reason.startswith("Incorrect SSE type")


def test_a_refusal_does_not_matter_to_an_object_that_needed_a_copy_anyway():
    d = decide(state(), mapping(dsse=True), now=NOW, update_refused=refused(Refusal.KMS_DENIED))
    assert d.method is Method.COPY and d.fallback is None


REPLICA_KEY = "arn:aws:kms:eu-west-1:111122223333:key/33333333-3333-3333-3333-333333333333"


def rule(selected=True, replica_key=REPLICA_KEY):
    return ReplicationRule("r1", "arn:aws:s3:::dr-bucket", replica_key, selected)


def test_a_replicated_prefix_is_copied_so_that_the_replica_follows():
    d = decide(state(), mapping(), now=NOW, replication=Replication((rule(),)))
    assert (d.outcome, d.method) == (Outcome.REKEY, Method.COPY)
    assert "replicates" in d.fallback
    assert d.replica == f"replicated by rule 'r1' to arn:aws:s3:::dr-bucket, encrypted there with {REPLICA_KEY}"


def test_a_rule_that_skips_kms_objects_is_logged_as_not_replicating_the_copy():
    d = decide(state(), mapping(), now=NOW, replication=Replication((rule(selected=False),)))
    assert d.method is Method.COPY
    assert d.replica.startswith("not replicated at all by rule 'r1'") and "SseKmsEncryptedObjects" in d.replica


def test_an_unreadable_replication_configuration_copies_and_says_so():
    d = decide(state(), mapping(), now=NOW, replication=Replication(unknown="GetBucketReplication was denied"))
    assert d.method is Method.COPY and d.replica.startswith("replication unknown (GetBucketReplication was denied)")


def test_no_covering_rule_keeps_the_update_in_place():
    d = decide(state(), mapping(), now=NOW, replication=Replication())
    assert (d.method, d.fallback, d.replica) == (Method.UPDATE_ENCRYPTION, None, None)


def test_a_copy_for_its_own_reasons_still_says_what_the_replica_gets():
    d = decide(state(), mapping(dsse=True), now=NOW, replication=Replication((rule(),)))
    assert d.method is Method.COPY and d.fallback is None and REPLICA_KEY in d.replica


def test_a_key_the_role_cannot_decrypt_is_named_for_source_key_arns():
    d = decide(state(presence=Presence.KMS_DENIED, sse_type="aws:kms", kms_key_arn=KEY_B), mapping(), now=NOW)
    assert d.outcome is Outcome.ACCESS_DENIED and d.alert
    assert KEY_B in d.reason and "sourceKeyArns" in d.reason and "kms:Decrypt" in d.reason


def test_a_kms_denied_head_of_an_object_already_on_its_key_is_compliant():
    d = decide(state(presence=Presence.KMS_DENIED, sse_type="aws:kms", kms_key_arn=KEY_A), mapping(), now=NOW)
    assert d.outcome is Outcome.COMPLIANT
