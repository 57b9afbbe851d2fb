"""Versioned history: noncurrent versions re-keyed in place where S3 allows it (SSE-KMS),
settled by the operator's recorded choice where only a copy could (DSSE-KMS, locked),
and audited as kept by decision instead of failing the gate forever."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import typer
from typer.testing import CliRunner

from enforcer import versions
from enforcer.decision import (
    SSE_DSSE,
    SSE_KMS,
    SSE_S3,
    KeptRecord,
    Method,
    ObjectState,
    Outcome,
    Replication,
    ReplicationRule,
    decide,
)
from enforcer.mapping import Mapping, Target
from ops.audit import audit_command
from ops.backfill import backfill_command
from tests.conftest import LambdaContext
from tests.test_enforcer_refusals import replicate

KEY = "arn:aws:kms:us-east-1:111122223333:key/11111111-1111-4111-8111-111111111111"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
FIX = "ops backfill --versions --noncurrent keep|delete"


def mapping(dsse=False) -> Mapping:
    return Mapping("b", "t/", Target(SSE_DSSE if dsse else SSE_KMS, KEY, not dsse))


def version(sse=SSE_S3, **extra) -> ObjectState:
    return ObjectState("b", "t/x", version_id="v1", etag='"e"', sse_type=sse, **extra)


def cli(command, *args: str):
    app = typer.Typer()
    app.command()(command)
    return CliRunner(env={"COLUMNS": "250"}).invoke(app, list(args))


def audit_json(bucket: str):
    result = cli(audit_command, "--bucket", bucket, "--mapping-table", "mapping", "--versions", "--format", "json")
    return result.exit_code, json.loads(result.stdout)


def backfill(bucket: str, *args: str):
    return cli(backfill_command, "--bucket", bucket, "--mapping-table", "mapping", *args)


def listed_versions(world, bucket, key):
    return {v["VersionId"]: v for v in world.s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]}


def sse_of(world, bucket, key, version_id):
    h = world.s3.head_object(Bucket=bucket, Key=key, VersionId=version_id)
    return h.get("ServerSideEncryption"), h.get("SSEKMSKeyId")


def tags_of(world, bucket, key, version_id):
    tag_set = world.s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=version_id)["TagSet"]
    return {t["Key"]: t["Value"] for t in tag_set}


def overwrite_three_times(world, bucket, key):
    """Three quick writes, each with other bytes (so other ETags), before the enforcer runs."""
    return [world.s3.put_object(Bucket=bucket, Key=key, Body=body)["VersionId"] for body in (b"one", b"two", b"3")]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # backfill checkpoints land in the cwd


# -- decide(): the pure rules -----------------------------------------------------


def test_a_noncurrent_version_of_an_sse_kms_prefix_is_re_keyed_in_place_even_where_the_prefix_replicates():
    replication = Replication((ReplicationRule("dr", "arn:aws:s3:::dr", KEY, True),))
    d = decide(version(), mapping(), noncurrent=True, replication=replication, now=NOW)
    assert (d.outcome, d.method) == (Outcome.REKEY, Method.UPDATE_ENCRYPTION)
    assert "keeps its old key" in d.replica
    # the same version, current: the replica decides for a copy
    assert decide(version(), mapping(), replication=replication, now=NOW).method is Method.COPY


@pytest.mark.parametrize(
    ("dsse", "state", "why"),
    [
        (True, version(), "cannot write aws:kms:dsse"),
        (False, version(SSE_DSSE, kms_key_arn=KEY.replace("1111", "2222")), "cannot re-key a aws:kms:dsse source"),
        (False, version(legal_hold=True), "under Object Lock"),
        (False, ObjectState("b", "t/x", version_id="null", sse_type=SSE_S3), "null version"),
    ],
    ids=["dsse-target", "dsse-source", "locked", "null-version"],
)
def test_a_noncurrent_version_only_a_copy_could_re_key_waits_for_the_operators_choice(dsse, state, why):
    d = decide(state, mapping(dsse), noncurrent=True, now=NOW)
    assert d.outcome is Outcome.NEEDS_CHOICE and d.method is None and not d.alert
    assert why in d.reason and d.reason.endswith(FIX)


def test_the_operators_choice_becomes_the_decision_and_a_locked_version_is_never_deleted():
    assert decide(version(), mapping(True), noncurrent=True, noncurrent_action="keep", now=NOW).outcome is Outcome.KEEP
    delete = decide(version(), mapping(True), noncurrent=True, noncurrent_action="delete", now=NOW)
    assert delete.outcome is Outcome.DELETE_VERSION
    until = NOW + timedelta(days=3)
    locked = decide(version(lock_mode="COMPLIANCE", lock_retain_until=until), mapping(True), noncurrent=True,
                    noncurrent_action="delete", now=NOW)
    assert locked.outcome is Outcome.LOCKED and until.isoformat() in locked.reason
    assert "--noncurrent keep" in locked.reason


def test_a_recorded_keep_is_not_an_offender_and_a_compliant_version_needs_no_choice():
    record = KeptRecord("arn:aws:iam::1:user/ops", "2026-05-01T10:00:00Z", "operator")
    d = decide(version(), mapping(True), noncurrent=True, kept=record, now=NOW)
    assert d.outcome is Outcome.KEPT and d.kept == record and "decided by arn:aws:iam::1:user/ops" in d.reason
    compliant = version(SSE_KMS, kms_key_arn=KEY)
    assert decide(compliant, mapping(), noncurrent=True, now=NOW).outcome is Outcome.COMPLIANT


def test_the_record_round_trips_through_a_tag_value_s3_accepts():
    record = KeptRecord("AWS:AROAEXAMPLE:fn name(1)", "2026-05-01T10:00:00Z", "locked")
    value = versions.encode(record)
    assert set(value) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _.:/=+-@")
    assert versions.decode(value) == KeptRecord("AWS:AROAEXAMPLE:fn_name_1_", record.decided_at, "locked")
    assert versions.decode("keep") is None and versions.decode("keep  arn") is None  # not three fields


# -- the enforcer: rapid overwrites ----------------------------------------------------


def test_rapid_overwrites_on_a_dsse_prefix_leave_noncurrent_versions_that_name_their_fix(world, load_handler):
    bucket = world.bucket("race-versioned", versioned=True)
    world.map(bucket, "prefix3/", world.key("k3"), dsse=True)
    old = overwrite_three_times(world, bucket, "prefix3/race.bin")
    handler = load_handler()
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}

    rows = {r["s3_object_path"].rsplit("versionId=", 1)[-1]: r for r in world.log_rows()}
    for superseded in old[:2]:
        assert rows[superseded]["outcome"] == "superseded" and FIX in rows[superseded]["action_reason"]
        assert sse_of(world, bucket, "prefix3/race.bin", superseded)[0] == SSE_S3  # history kept, never copied
    assert rows[old[2]]["outcome"] == "rekeyed"
    assert set(listed_versions(world, bucket, "prefix3/")) == {*old[:2], rows[old[2]]["new_version_id"]}

    code, report = audit_json(bucket)
    assert code == 1
    assert {(o["version_id"], o["category"]) for o in report["offenders"]} == {(v, "needs-choice") for v in old[:2]}
    assert all(f"--bucket {bucket} --prefix prefix3/ --mapping-table mapping --versions --noncurrent keep|delete"
               in o["fix"] for o in report["offenders"])


@pytest.mark.parametrize("replicated", [False, True], ids=["in-place", "replicated-copy-then-in-place"])
def test_rapid_overwrites_on_an_sse_kms_prefix_re_key_every_version_in_place(world, load_handler, replicated):
    bucket = world.bucket("race-kms", versioned=True)
    world.map(bucket, "t/", world.key("k1"))
    old = overwrite_three_times(world, bucket, "t/race.bin")
    handler = load_handler(OLD_VERSION_ACTION="keep")
    if replicated:
        replicate(world, handler.s3, bucket)  # the prefix replicates: current objects are copied
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}

    rows = {r["s3_object_path"].rsplit("versionId=", 1)[-1]: r for r in world.log_rows()}
    assert {v: rows[v]["outcome"] for v in old} == dict.fromkeys(old, "rekeyed")
    for superseded in old[:2]:
        assert rows[superseded]["method"] == "update-object-encryption"  # the version itself, no new one
        assert sse_of(world, bucket, "t/race.bin", superseded) == (SSE_KMS, world.keys["k1"])
        if replicated:
            assert "during the copy" in rows[superseded]["action_reason"]
    expected = set(old) | ({rows[old[2]]["new_version_id"]} if replicated else set())
    assert set(listed_versions(world, bucket, "t/")) == expected
    assert audit_json(bucket)[0] == 0


def test_a_locked_version_kept_after_a_copy_is_recorded_and_audited_as_kept(world, load_handler):
    bucket = world.bucket("locked-versioned", object_lock=True)
    world.map(bucket, "t/", world.key("k2"), dsse=True)
    old = world.s3.put_object(Bucket=bucket, Key="t/ledger", Body=b"ledger", ObjectLockLegalHoldStatus="ON",
                              Tagging="team=a")["VersionId"]
    handler = load_handler()
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert (row["outcome"], row["old_version"]) == ("rekeyed", "kept")

    tags = tags_of(world, bucket, "t/ledger", old)
    assert tags["team"] == "a"  # the owner's tag stays beside the record
    assert versions.decode(tags[versions.KEPT_TAG]).why == "locked"
    code, report = audit_json(bucket)
    assert code == 0 and report["offenders"] == []
    (kept,) = report["kept_by_decision"]
    assert kept["version_id"] == old and kept["decided"].startswith(f"locked, decided by {world.enforcer_principal}")


# -- ops backfill --versions -------------------------------------------------------------


@pytest.fixture
def dsse_history(world, load_handler):
    """prefix3/race.bin after three overwrites and the enforcer: two noncurrent SSE-S3 versions."""
    bucket = world.bucket("history", versioned=True)
    world.map(bucket, "prefix3/", world.key("k3"), dsse=True)
    old = overwrite_three_times(world, bucket, "prefix3/race.bin")
    world.s3.put_object_tagging(Bucket=bucket, Key="prefix3/race.bin", VersionId=old[0],
                                Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    assert load_handler().handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    return bucket, old[:2]


def test_the_dry_run_shows_what_each_choice_would_do_and_changes_nothing(world, dsse_history):
    bucket, noncurrent = dsse_history
    before = listed_versions(world, bucket, "prefix3/")
    result = backfill(bucket, "--versions", "--dry-run")
    assert result.exit_code == 0, result.output
    for text in ("--noncurrent keep", "--noncurrent delete", "(neither)", "2 version(s) deleted", "history is lost"):
        assert text in result.stdout, text
    assert listed_versions(world, bucket, "prefix3/") == before
    assert versions.KEPT_TAG not in tags_of(world, bucket, "prefix3/race.bin", noncurrent[0])


def test_without_a_choice_nothing_is_deleted_and_the_run_says_what_to_pass(world, dsse_history):
    bucket, noncurrent = dsse_history
    before = set(listed_versions(world, bucket, "prefix3/"))
    result = backfill(bucket, "--versions")
    assert result.exit_code == 1 and "needs-choice" in result.stdout and "--noncurrent" in result.stdout
    assert set(listed_versions(world, bucket, "prefix3/")) == before


def test_keep_records_who_and_when_on_each_version_and_the_audit_passes(world, dsse_history):
    bucket, noncurrent = dsse_history
    result = backfill(bucket, "--versions", "--noncurrent", "keep")
    assert result.exit_code == 0, result.output
    caller = world.sts.get_caller_identity()["Arn"]
    for v in noncurrent:
        record = versions.decode(tags_of(world, bucket, "prefix3/race.bin", v)[versions.KEPT_TAG])
        assert (record.why, record.decided_by) == ("operator", caller)
        assert abs(datetime.fromisoformat(record.decided_at) - datetime.now(UTC)) < timedelta(minutes=5)
        assert sse_of(world, bucket, "prefix3/race.bin", v)[0] == SSE_S3  # kept as it was
    assert tags_of(world, bucket, "prefix3/race.bin", noncurrent[0])["team"] == "a"
    code, report = audit_json(bucket)
    assert code == 0
    assert {k["version_id"] for k in report["kept_by_decision"]} == set(noncurrent)
    table = cli(audit_command, "--bucket", bucket, "--mapping-table", "mapping", "--versions")
    assert table.exit_code == 0 and "Kept by decision" in table.stdout and caller in table.stdout


def test_delete_removes_exactly_the_noncurrent_versions(world, dsse_history):
    bucket, noncurrent = dsse_history
    current = world.s3.head_object(Bucket=bucket, Key="prefix3/race.bin")["VersionId"]
    result = backfill(bucket, "--versions", "--noncurrent", "delete")
    assert result.exit_code == 0, result.output
    assert set(listed_versions(world, bucket, "prefix3/")) == {current}
    assert audit_json(bucket)[0] == 0


def test_a_version_at_the_tag_limit_is_reported_not_silently_untagged(world, dsse_history):
    bucket, noncurrent = dsse_history
    full = [{"Key": f"k{i}", "Value": "v"} for i in range(versions.MAX_TAGS)]
    world.s3.put_object_tagging(Bucket=bucket, Key="prefix3/race.bin", VersionId=noncurrent[1],
                                Tagging={"TagSet": full})
    result = backfill(bucket, "--versions", "--noncurrent", "keep")
    assert result.exit_code == 1 and "10 tags" in result.stdout
    assert len(tags_of(world, bucket, "prefix3/race.bin", noncurrent[1])) == versions.MAX_TAGS  # untouched


def test_sse_kms_noncurrent_versions_are_re_keyed_in_place_by_the_backfill(world):
    bucket = world.bucket("history-kms", versioned=True, notify=False)
    world.map(bucket, "t/", world.key("k1"))
    old = overwrite_three_times(world, bucket, "t/doc")
    result = backfill(bucket, "--versions")  # no --noncurrent needed: nothing is copied or deleted
    assert result.exit_code == 0, result.output
    assert set(listed_versions(world, bucket, "t/")) == set(old)  # no new version
    assert all(sse_of(world, bucket, "t/doc", v) == (SSE_KMS, world.keys["k1"]) for v in old)
    assert audit_json(bucket)[0] == 0


def test_noncurrent_without_versions_is_bad_input(world, dsse_history):
    bucket, _ = dsse_history
    result = backfill(bucket, "--noncurrent", "delete")
    assert result.exit_code == 2 and "--versions" in result.output


def test_one_help_text_tells_the_two_version_flags_apart():
    result = cli(backfill_command, "--help")
    text = " ".join(result.stdout.replace("│", " ").split())  # rich's option box, unwrapped
    assert "--old-version-action: the version a copy REPLACES" in text
    assert "--noncurrent (needs --versions): versions that were ALREADY noncurrent" in text
