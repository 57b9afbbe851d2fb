"""``ops backfill`` on patched moto: re-keys with full fidelity, resumes, plans and prices."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from enforcer.decision import Method
from ops import pricing, sources
from ops.audit_run import run_audit
from ops.backfill import backfill_command
from ops.backfill_checkpoint import DONE_OUTCOMES, Checkpoint
from ops.backfill_plan import NO_REKEY, NO_REKEY_REFUSED, SAME_KEY, plan_backfill
from ops.backfill_run import engine_settings, run_backfill
from tests.conftest import LambdaContext, aws_error, failing

MIB = 1024**2
BUCKET = "backfill-bucket"
CONTENT = {
    "ContentType": "application/x-tenant",
    "CacheControl": "max-age=60",
    "ContentDisposition": 'attachment; filename="r.bin"',
    "ContentEncoding": "identity",
    "ContentLanguage": "fr-CA",
    "Expires": datetime(2031, 1, 1, tzinfo=UTC),
}


def put_rich(world, bucket, key, **extra):
    return world.s3.put_object(
        Bucket=bucket, Key=key, Body=extra.pop("Body", b"tenant data"), Metadata={"tenant": key.split("/")[0], "owner": "data-team"},
        Tagging="team=a&cost+center=42", StorageClass="STANDARD_IA", **CONTENT, **extra,
    )


def snapshot(world, bucket, key):
    h = world.s3.head_object(Bucket=bucket, Key=key)
    return {
        "body": world.s3.get_object(Bucket=bucket, Key=key)["Body"].read(),
        "metadata": h.get("Metadata"),
        "content": {f: h.get(f) for f in CONTENT},
        "storage_class": h.get("StorageClass", "STANDARD"),
        "tags": sorted((t["Key"], t["Value"]) for t in world.s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]),
        "sse": (h.get("ServerSideEncryption"), h.get("SSEKMSKeyId")),
        "etag": h["ETag"],
    }


def mappings(world):
    return sources.mappings_from_table(world.ddb, "mapping")


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # A run without --resume/--output writes to the XDG state directory: a fresh one
    # per test, and a working directory that must stay empty.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def state_files(pattern: str = "*") -> list[Path]:
    return sorted((Path.cwd() / "state" / "s3-prefix-keys" / "backfill").glob(pattern))


@pytest.fixture
def tenants(world):
    """t1/ -> SSE-KMS (re-keyed in place), t2/ -> DSSE-KMS (copied), unmapped keys beside them."""
    world.bucket(BUCKET)
    world.map(BUCKET, "t1/", world.key("k1"))
    world.map(BUCKET, "t2/", world.key("k2"), dsse=True)
    return world


def cli(*args: str):
    app = typer.Typer()
    app.command()(backfill_command)
    return CliRunner(env={"COLUMNS": "250"}).invoke(app, list(args))


# -- re-keying --------------------------------------------------------------------


@pytest.mark.parametrize("inspect", [False, True], ids=["uninspected", "inspect"])
def test_backfill_rekeys_every_offender_and_keeps_every_attribute(tenants, inspect):
    world = tenants
    plan = {  # key -> (extra put arguments, the method the engine must pick)
        "t1/default": ({}, Method.UPDATE_ENCRYPTION),
        "t1/wrong-key": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": world.key("k3")}, Method.UPDATE_ENCRYPTION),
        "t2/default": ({}, Method.COPY),
        "t2/big": ({"Body": bytes(range(256)) * (24 * 1024)}, Method.MULTIPART_COPY),  # 6 MiB
    }
    for key, (extra, _) in plan.items():
        put_rich(world, BUCKET, key, **extra)
    put_rich(world, BUCKET, "t1/already", ServerSideEncryption="aws:kms", SSEKMSKeyId=world.keys["k1"])
    put_rich(world, BUCKET, "unmapped/x")
    before = {key: snapshot(world, BUCKET, key) for key in [*plan, "t1/already", "unmapped/x"]}

    report = run_backfill(world.s3, mappings(world), BUCKET, concurrency=4,
                          settings=engine_settings(multipart_threshold=5 * MIB), inspect=inspect)

    assert report.exit_code == 0 and report.problems == []
    if inspect:
        expected = Counter(("rekeyed", str(method)) for _, method in plan.values())
        expected[("compliant", "")] += 1
    else:
        # t1/ is re-keyed blind, the compliant object along with the others.
        expected = Counter({("rekeyed", "update-object-encryption (not inspected)"): 3,
                            ("rekeyed", str(Method.COPY)): 1, ("rekeyed", str(Method.MULTIPART_COPY)): 1})
    assert +report.counts == expected
    assert report.bytes[("rekeyed", str(Method.MULTIPART_COPY))] == 6 * MIB
    targets = {"t1/": ("aws:kms", world.keys["k1"]), "t2/": ("aws:kms:dsse", world.keys["k2"])}
    for key in [*plan, "t1/already"]:
        after = snapshot(world, BUCKET, key)
        assert after["sse"] == targets[key[:3]], key
        for attribute in ("body", "metadata", "content", "storage_class", "tags"):
            assert after[attribute] == before[key][attribute], (key, attribute)
    assert snapshot(world, BUCKET, "unmapped/x") == before["unmapped/x"]  # outside the mapped prefixes
    assert snapshot(world, BUCKET, "t1/already")["etag"] == before["t1/already"]["etag"]
    assert run_audit(world.s3, mappings(world), BUCKET).offenders == []


def test_backfill_copies_are_compliant_no_ops_for_the_deployed_enforcer(tenants, load_handler):
    world = tenants
    put_rich(world, BUCKET, "t2/a")
    put_rich(world, BUCKET, "t2/b")
    world.drain()  # the uploads' own notifications
    run_backfill(world.s3, mappings(world), BUCKET)
    etags = {k: snapshot(world, BUCKET, k)["etag"] for k in ("t2/a", "t2/b")}
    event = world.event()  # the backfill's copies, as S3 notifies them
    assert len(event["Records"]) == 2
    handler = load_handler()
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert {r["outcome"] for r in world.log_rows()} == {"compliant"}
    assert {k: snapshot(world, BUCKET, k)["etag"] for k in etags} == etags
    assert world.drain() == []


def test_problems_are_listed_exit_1_and_retried_on_resume(tenants, tmp_path):
    world = tenants
    world.s3.put_object(Bucket=BUCKET, Key="t1/customer-key", Body=b"x",
                        SSECustomerAlgorithm="AES256", SSECustomerKey=b"k" * 32)
    put_rich(world, BUCKET, "t1/fine")
    checkpoint = Checkpoint(tmp_path / "run.checkpoint.jsonl", BUCKET, None)
    report = run_backfill(world.s3, mappings(world), BUCKET, checkpoint=checkpoint)
    checkpoint.close()
    assert report.exit_code == 1
    assert [(p.key, p.outcome) for p in report.problems] == [("t1/customer-key", "sse-c")]
    resumed = Checkpoint(tmp_path / "run.checkpoint.jsonl", BUCKET, None)
    assert resumed.done == {"t1/fine"}  # the SSE-C object is tried again next time


def count_calls(world):
    calls = Counter()
    world.s3.meta.events.register("before-parameter-build.s3",
                                  lambda model, params, **_: calls.update([(model.name, params.get("Key"))]))
    return calls


def test_uninspected_backfill_is_one_s3_call_per_object_of_an_sse_kms_prefix(tenants):
    world = tenants
    keys = [f"t1/{i}" for i in range(5)]
    for key in keys:
        put_rich(world, BUCKET, key)
    put_rich(world, BUCKET, "t1/already", ServerSideEncryption="aws:kms", SSEKMSKeyId=world.keys["k1"])
    calls = count_calls(world)
    report = run_backfill(world.s3, mappings(world), BUCKET)
    per_object = Counter(op for (op, key) in calls.elements() if key)
    assert per_object == {"UpdateObjectEncryption": 6}
    assert all(n == 1 for (op, key), n in calls.items() if key)  # one call each, none repeated
    assert report.rekeyed == 6
    assert run_audit(world.s3, mappings(world), BUCKET).offenders == []


def test_refused_blind_update_falls_back_to_head_and_copy_without_a_second_update(tenants):
    world = tenants
    # A DSSE-KMS source under an SSE-KMS prefix: S3 refuses UpdateObjectEncryption for it.
    put_rich(world, BUCKET, "t1/dsse", ServerSideEncryption="aws:kms:dsse", SSEKMSKeyId=world.key("k3"))
    before = snapshot(world, BUCKET, "t1/dsse")
    calls = count_calls(world)
    report = run_backfill(world.s3, mappings(world), BUCKET)
    assert report.counts == {("rekeyed", str(Method.COPY)): 1}
    ops_on_object = Counter(op for (op, key), n in calls.items() if key == "t1/dsse" for _ in range(n))
    assert ops_on_object["UpdateObjectEncryption"] == 1
    assert ops_on_object["HeadObject"] == 1 and ops_on_object["CopyObject"] == 1
    after = snapshot(world, BUCKET, "t1/dsse")
    assert after["sse"] == ("aws:kms", world.keys["k1"])
    for attribute in ("body", "metadata", "content", "storage_class", "tags"):
        assert after[attribute] == before[attribute], attribute


def test_blind_update_that_hits_a_conflict_is_judged_afresh(tenants):
    world = tenants
    put_rich(world, BUCKET, "t1/busy")
    first = [True]

    def conflict_once(params, **_):
        if first[0]:
            first[0] = False
            raise aws_error("OperationAborted", 409, "UpdateObjectEncryption", "A conflicting operation is in progress")

    world.s3.meta.events.register("before-call.s3.UpdateObjectEncryption", conflict_once)
    calls = count_calls(world)
    report = run_backfill(world.s3, mappings(world), BUCKET)
    assert report.counts == {("rekeyed", str(Method.UPDATE_ENCRYPTION)): 1} and report.problems == []
    assert calls[("UpdateObjectEncryption", "t1/busy")] == 2 and calls[("HeadObject", "t1/busy")] == 1


def test_blind_update_refused_for_good_is_not_sent_again(tenants):
    # A KMS denial of the in-place update is a reason to copy: the object ends on its
    # key by copy, after one refused update and one HEAD, and the update is not re-sent.
    world = tenants
    put_rich(world, BUCKET, "t1/denied")
    world.s3.meta.events.register("before-call.s3.UpdateObjectEncryption", failing(
        "KMS.AccessDeniedException", 400, "UpdateObjectEncryption", "not allowed to use the key"))
    calls = count_calls(world)
    report = run_backfill(world.s3, mappings(world), BUCKET)
    assert report.problems == []
    assert report.counts == {("rekeyed", str(Method.COPY)): 1}
    assert calls[("UpdateObjectEncryption", "t1/denied")] == 1 and calls[("HeadObject", "t1/denied")] == 1


def test_blind_update_refused_by_object_lock_is_judged_after_a_head(world):
    bucket = world.bucket("locked-backfill", object_lock=True)
    world.map(bucket, "t1/", world.key("k1"))
    world.s3.put_object(Bucket=bucket, Key="t1/held", Body=b"x", ObjectLockLegalHoldStatus="ON")
    calls = count_calls(world)
    report = run_backfill(world.s3, mappings(world), bucket)
    ops_on_object = Counter(op for (op, key), n in calls.items() if key == "t1/held" for _ in range(n))
    assert ops_on_object["UpdateObjectEncryption"] == 1 and ops_on_object["HeadObject"] == 1
    # A held version cannot be re-keyed in place: decide() copies it to a new version
    # that carries the hold too, and keeps the held one (it cannot be deleted).
    assert report.counts == {("rekeyed", str(Method.COPY)): 1} and report.problems == []
    versions = world.s3.list_object_versions(Bucket=bucket)["Versions"]
    assert len(versions) == 2
    head = world.s3.head_object(Bucket=bucket, Key="t1/held")
    assert head["ObjectLockLegalHoldStatus"] == "ON"
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", world.keys["k1"])


# -- concurrency -----------------------------------------------------------------------


def test_concurrency_is_bounded(tenants):
    world = tenants
    for i in range(24):
        world.s3.put_object(Bucket=BUCKET, Key=f"t1/{i:02d}", Body=b"x")
    in_flight, peak, lock = [0], [0], threading.Lock()

    def start(model, **_):
        if model.name in ("HeadObject", "UpdateObjectEncryption"):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            time.sleep(0.01)  # long enough for the other workers to overlap

    def end(model, **_):
        if model.name in ("HeadObject", "UpdateObjectEncryption"):
            with lock:
                in_flight[0] -= 1

    world.s3.meta.events.register("before-call.s3", start)
    world.s3.meta.events.register("after-call.s3", end)
    report = run_backfill(world.s3, mappings(world), BUCKET, concurrency=3)
    assert report.rekeyed == 24
    assert 2 <= peak[0] <= 3


# -- checkpoint and resume -------------------------------------------------------------


def test_interrupted_run_resumes_without_redoing_finished_objects(tenants, tmp_path):
    world = tenants
    keys = [f"t1/obj-{i:02d}" for i in range(30)]
    for key in keys:
        world.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    path = tmp_path / "b.checkpoint.jsonl"

    seen = []

    def interrupt_after_8(result):
        seen.append(result)
        if len(seen) == 8:
            raise KeyboardInterrupt  # what Ctrl-C does to the main thread

    first = Checkpoint(path, BUCKET, None)
    report = run_backfill(world.s3, mappings(world), BUCKET, concurrency=2, checkpoint=first,
                          on_result=interrupt_after_8)
    first.close()
    assert report.interrupted and report.exit_code == 130
    # Objects still running at the interrupt finish and are checkpointed too; the
    # queued ones are dropped.
    assert 8 <= report.processed < len(keys)
    with path.open("a") as f:
        f.write('{"key": "t1/obj-99", "outc')  # a line torn by a kill mid-write

    resumed = Checkpoint(path, BUCKET, None)
    done = set(resumed.done)
    assert len(done) == report.processed and resumed.torn_lines == 1
    headed = []
    world.s3.meta.events.register("before-parameter-build.s3.UpdateObjectEncryption",
                                  lambda params, **_: headed.append(params["Key"]))
    second = run_backfill(world.s3, mappings(world), BUCKET, checkpoint=resumed)
    resumed.close()
    assert second.skipped == len(done)
    assert set(headed) == set(keys) - done and len(headed) == len(keys) - len(done)
    assert second.rekeyed == len(keys) - len(done)
    assert run_audit(world.s3, mappings(world), BUCKET).offenders == []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]
    finished = [e["key"] for e in lines[1:] if e.get("outcome") in DONE_OUTCOMES]
    assert sorted(finished) == sorted(keys)  # each object recorded done exactly once


def test_checkpoint_of_another_bucket_is_refused(tenants, tmp_path):
    path = tmp_path / "other.checkpoint.jsonl"
    Checkpoint(path, "some-other-bucket", None).close()
    result = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--resume", str(path))
    assert result.exit_code == 2
    assert "checkpoint of bucket 'some-other-bucket'" in " ".join(result.stderr.split())


# -- dry run and prices ------------------------------------------------------------------


PRICE_TIER = {  # S3 operation -> the pricing.Requests field it is billed under
    "ListObjectsV2": "list", "HeadObject": "get_head", "GetObject": "get_head", "GetObjectAcl": "get_head", "GetObjectTagging": "get_head",
    "CopyObject": "put_copy_post", "CreateMultipartUpload": "put_copy_post", "UploadPartCopy": "put_copy_post",
    "CompleteMultipartUpload": "put_copy_post", "UpdateObjectEncryption": "update_encryption",
    "DeleteObject": "delete",
}


@pytest.mark.parametrize("inspect", [False, True], ids=["uninspected", "inspect"])
def test_dry_run_changes_nothing_and_plans_what_the_backfill_then_spends(world, inspect):
    bucket = world.bucket("dry-versioned", versioned=True)
    world.map(bucket, "t1/", world.key("k1"))
    world.map(bucket, "t2/", world.key("k2"), dsse=True)
    sources_by_key = {  # key -> (put arguments, expected method, source encryption)
        "t1/a": ({}, Method.UPDATE_ENCRYPTION, "AES256"),
        "t1/b": ({}, Method.UPDATE_ENCRYPTION, "AES256"),
        "t1/c": ({"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": world.key("k3")}, Method.UPDATE_ENCRYPTION,
                 "aws:kms"),
        "t1/d": ({"ServerSideEncryption": "aws:kms:dsse", "SSEKMSKeyId": world.key("k3")}, Method.COPY,
                 "aws:kms:dsse"),  # S3 refuses UpdateObjectEncryption for a DSSE source
        "t2/a": ({}, Method.COPY, "AES256"),
        "t2/b": ({"Body": b"y" * (6 * MIB)}, Method.MULTIPART_COPY, "AES256"),
    }
    for key, (extra, _, _) in sources_by_key.items():
        put_rich(world, bucket, key, **extra)
    put_rich(world, bucket, "t1/ok", ServerSideEncryption="aws:kms", SSEKMSKeyId=world.keys["k1"])
    world.s3.put_object(Bucket=bucket, Key="t1/customer", Body=b"x", SSECustomerAlgorithm="AES256",
                        SSECustomerKey=b"k" * 32)
    state_before = world.s3.list_object_versions(Bucket=bucket)["Versions"]
    calls = []
    world.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    threshold = 5 * MIB
    settings = engine_settings(multipart_threshold=threshold)

    plan = plan_backfill(world.s3, mappings(world), bucket, settings=settings, inspect=inspect)

    # GetObject: one byte of the SSE-C object, after its HEAD's bodiless 400 (and
    # HeadBucket, botocore's region redirector probing after that 400)
    assert set(calls) <= {"ListObjectsV2", "HeadObject", "GetBucketOwnershipControls", "GetObject", "HeadBucket"}
    assert world.s3.list_object_versions(Bucket=bucket)["Versions"] == state_before  # ETags, versions, dates
    rows = {(r.prefix, r.method): r for r in plan.rows}
    expected = Counter((k[:3], str(m)) for k, (_, m, _) in sources_by_key.items())
    expected[("t1/", NO_REKEY if inspect else SAME_KEY)] += 1  # t1/ok
    expected[("t1/", NO_REKEY if inspect else NO_REKEY_REFUSED)] += 1  # t1/customer
    assert {key: row.objects for key, row in rows.items()} == dict(expected)
    assert rows[("t2/", str(Method.MULTIPART_COPY))].bytes == 6 * MIB

    # The model, object by object (this bucket has ACLs on, so each copy also reads
    # the object's ACL; blind, t1/d's refused update is billed before its HEAD).
    want = pricing.Requests(list=2)
    for key, (_, method, source_sse) in sources_by_key.items():
        size = world.s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        want += pricing.rekey_requests(method, size, source_sse, multipart_threshold=threshold, reads_acl=True,
                                       has_tags=True, deletes_old_version=True,
                                       update_first=not inspect and key.startswith("t1/"))
    want += pricing.untouched_requests(1, compliant=True, update_first=not inspect)  # t1/ok
    want += pricing.untouched_requests(1, compliant=False, update_first=not inspect)  # t1/customer...
    want.get_head += 1  # ...and the one-byte GET that confirms it is SSE-C
    assert plan.requests == want
    assert want.update_encryption == (3 if inspect else 6) and want.kms >= 5  # blind: t1/d and t1/customer refused
    assert plan.cost == pricing.cost_of(want, pricing.Prices())
    dearer = plan_backfill(world.s3, mappings(world), bucket, settings=settings, inspect=inspect,
                           prices=pricing.Prices().with_overrides({"kms_per_10000": 0.3}))
    assert dearer.cost.kms == pytest.approx(plan.cost.kms * 10)
    assert dearer.cost.s3 == pytest.approx(plan.cost.s3)
    assert {f.key for f in plan.audit.offenders} == {*sources_by_key, "t1/customer"}

    # ...and it is what the backfill then spends. GetBucketOwnershipControls and
    # GetBucketReplication, asked once per bucket (not per object), and botocore's
    # HeadBucket probe after a 400 are left out of the model.
    calls.clear()
    report = run_backfill(world.s3, mappings(world), bucket, settings=settings, inspect=inspect)
    assert [(p.key, p.outcome) for p in report.problems] == [("t1/customer", "sse-c")]
    spent = pricing.Requests()
    for name in calls:
        if name not in ("GetBucketOwnershipControls", "GetBucketReplication", "HeadBucket"):
            setattr(spent, PRICE_TIER[name], getattr(spent, PRICE_TIER[name]) + 1)
    assert calls.count("GetBucketOwnershipControls") <= 1 and calls.count("GetBucketReplication") <= 1
    assert dataclasses.replace(spent, kms=0) == dataclasses.replace(plan.requests, kms=0)


def test_seed_001_cost_example():
    # 10 TB of 1 GB objects: 10,000 encryptions (overwrites) and 2,000,000 decryptions
    # (downloads) a month cost "$6" in KMS requests (seed 001).
    requests, dollars = pricing.seed_001_check(pricing.Prices())
    assert requests == 2_010_000
    assert round(dollars) == pricing.SEED_001_PUBLISHED_DOLLARS
    # ...and re-keying those 10,000 objects in place is one KMS request each.
    per_object = pricing.rekey_requests(Method.UPDATE_ENCRYPTION, 1024**3, "AES256", multipart_threshold=5 * 1024**3)
    total = pricing.Requests()
    for _ in range(10_000):
        total += per_object
    assert total.kms == pricing.SEED_001_ENCRYPTIONS
    assert pricing.cost_of(total, pricing.Prices()).kms == pytest.approx(pricing.Prices().kms_cost(10_000))


def test_multipart_request_model_follows_the_engine_part_size():
    size, threshold = 12 * MIB, 5 * MIB
    r = pricing.rekey_requests(Method.MULTIPART_COPY, size, "aws:kms", multipart_threshold=threshold, has_tags=True)
    from enforcer.rekey import part_size_for

    parts = -(-size // part_size_for(size, threshold))
    assert r.put_copy_post == parts + 2
    assert r.get_head == 2  # HEAD + GetObjectTagging
    assert r.kms == 1 + 2 * parts


def test_price_overrides_are_validated():
    assert pricing.parse_price_overrides(["kms_per_10000=0.05"]) == {"kms_per_10000": 0.05}
    with pytest.raises(ValueError, match="NAME=NUMBER"):
        pricing.parse_price_overrides(["kms"])
    with pytest.raises(ValueError, match="unknown price nope"):
        pricing.Prices().with_overrides({"nope": 1})


# -- the command ------------------------------------------------------------------------


def test_command_backfills_then_resume_skips_everything(tenants, tmp_path):
    world = tenants
    for i in range(5):
        put_rich(world, BUCKET, f"t1/{i}")
    path = tmp_path / "cli.checkpoint.jsonl"
    first = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--resume", str(path))
    assert first.exit_code == 0, first.output
    assert "rekeyed" in first.stdout and "update-object-encryption" in first.stdout
    second = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--resume", str(path))
    assert second.exit_code == 0
    assert "done earlier (checkpoint)" in second.stdout
    assert "5 object(s) already done" in second.stderr


def test_command_dry_run_prints_plan_cost_and_offenders(tenants):
    world = tenants
    put_rich(world, BUCKET, "t1/x")
    etag = snapshot(world, BUCKET, "t1/x")["etag"]
    result = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--dry-run", "--price", "kms_per_10000=0.06")
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "nothing was changed" in out and "update-object-encryption" in out
    assert "$0.06/10,000" in out and "Price check (seed 001)" in out and "t1/x" in out
    assert snapshot(world, BUCKET, "t1/x")["etag"] == etag
    assert world.s3.head_object(Bucket=BUCKET, Key="t1/x")["ServerSideEncryption"] == "AES256"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefix", "elsewhere/"], "--prefix 'elsewhere/' is not under any mapped prefix"),
        (["--dry-run", "--price", "bogus=1"], "unknown price bogus"),
        (["--concurrency", "0"], "Invalid value for '--concurrency'"),
    ],
    ids=["unmapped-prefix", "unknown-price", "zero-concurrency"],
)
def test_bad_input_exits_2(tenants, args, message):
    result = cli("--bucket", BUCKET, "--mapping-table", "mapping", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert state_files() == [] and list(Path.cwd().glob("*.jsonl")) == []  # refused before any file was made


def test_run_without_resume_writes_checkpoint_and_report_to_the_state_dir(tenants):
    put_rich(tenants, BUCKET, "t1/x")
    result = cli("--bucket", BUCKET, "--mapping-table", "mapping")
    assert result.exit_code == 0, result.output
    (path,) = state_files(f"{BUCKET}-*.checkpoint.jsonl")
    (report,) = state_files(f"{BUCKET}-*.report.json")
    assert report.name.removesuffix(".report.json") == path.name.removesuffix(".checkpoint.jsonl")
    stderr = " ".join(result.stderr.split())
    assert f"Checkpoint: {path}" in stderr and f"Report: {report}" in stderr  # said before the run
    assert f"--resume {path}" in " ".join(result.stdout.split())
    assert Checkpoint(path, BUCKET, None).done == {"t1/x"}
    data = json.loads(report.read_text())
    assert data["checkpoint"] == str(path) and data["processed"] == 1
    assert [(o["outcome"], o["objects"]) for o in data["outcomes"]] == [("rekeyed", 1)]
    assert [p.name for p in Path.cwd().iterdir()] == ["state"]  # nothing in the working directory


def test_xdg_state_home_unset_or_relative_means_home_local_state(monkeypatch, tmp_path):
    from ops.backfill_checkpoint import state_dir

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value in ("", "relative/state"):
        monkeypatch.setenv("XDG_STATE_HOME", value)
        assert state_dir() == tmp_path / "home" / ".local" / "state" / "s3-prefix-keys" / "backfill"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state_dir() == tmp_path / "home" / ".local" / "state" / "s3-prefix-keys" / "backfill"


def test_output_and_resume_override_the_state_dir(tenants, tmp_path):
    put_rich(tenants, BUCKET, "t1/x")
    checkpoint, report = tmp_path / "mine" / "run.jsonl", tmp_path / "out" / "r.json"
    result = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--resume", str(checkpoint),
                 "--output", str(report))
    assert result.exit_code == 0, result.output
    assert state_files() == []
    assert "starting a new checkpoint at" in " ".join(result.stderr.split())
    assert json.loads(report.read_text())["checkpoint"] == str(checkpoint)
    plan = tmp_path / "plan.json"
    result = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--dry-run", "--output", str(plan))
    assert result.exit_code == 0, result.output
    written = json.loads(plan.read_text())
    assert written["bucket"] == BUCKET and written["dry_run"] and "plan" in written and state_files() == []
