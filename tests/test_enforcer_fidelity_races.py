"""Copies keep everything about an object; races never let an older copy win."""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from enforcer import rekey
from enforcer.decision import SSE_KMS
from enforcer.mapping import Target
from ops import moto_patches
from tests.conftest import LambdaContext, aws_error, failing, sqs_event

MIB = 1024**2
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def snapshot(world, bucket, key, version_id=None):
    """Every attribute a re-key must preserve, plus the bytes."""
    kw = {"VersionId": version_id} if version_id else {}
    h = world.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED", **kw)
    return {
        "body": world.s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read(),
        "metadata": h.get("Metadata"),
        "content": {f: h.get(f) for f in ("ContentType", "CacheControl", "ContentDisposition",
                                          "ContentEncoding", "ContentLanguage", "Expires")},
        "redirect": h.get("WebsiteRedirectLocation"),
        "storage_class": h.get("StorageClass", "STANDARD"),
        "checksum_sha256": bool(h.get("ChecksumSHA256")),
        "tags": sorted((t["Key"], t["Value"]) for t in world.s3.get_object_tagging(Bucket=bucket, Key=key, **kw)["TagSet"]),
        "lock": (h.get("ObjectLockMode"), h.get("ObjectLockRetainUntilDate"), h.get("ObjectLockLegalHoldStatus")),
        "sse": (h.get("ServerSideEncryption"), h.get("SSEKMSKeyId")),
    }


def grants(world, bucket, key):
    acl = world.s3.get_object_acl(Bucket=bucket, Key=key)
    return sorted((g["Grantee"].get("URI") or g["Grantee"].get("ID"), g["Permission"]) for g in acl["Grants"])


def put_rich(world, bucket, key, body, **extra):
    return world.s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        Metadata={"tenant": "a", "owner": "data-team"},
        ContentType="application/x-tenant",
        CacheControl="max-age=60",
        ContentDisposition='attachment; filename="r.bin"',
        ContentEncoding="identity",
        ContentLanguage="fr-CA",
        Expires=datetime(2030, 1, 1, tzinfo=UTC),
        WebsiteRedirectLocation="/moved/here",
        StorageClass="STANDARD_IA",
        Tagging="team=a&cost+center=42",
        ChecksumAlgorithm="SHA256",
        **extra,
    )


@pytest.mark.parametrize(("threshold", "size"), [(None, 4096), (5 * MIB, 11 * MIB)], ids=["copy", "multipart"])
def test_copy_keeps_every_attribute_and_the_bytes(world, load_handler, threshold, size):
    env = {"MULTIPART_THRESHOLD_BYTES": str(threshold)} if threshold else {}
    handler = load_handler(**env)
    bucket = world.bucket("acl-bucket", ownership="ObjectWriter")
    world.map(bucket, "t/", world.key("t"), dsse=True)
    body = bytes(range(256)) * (size // 256)
    put_rich(world, bucket, "t/report.bin", body)
    owner = world.s3.get_object_acl(Bucket=bucket, Key="t/report.bin")["Owner"]
    world.s3.put_object_acl(
        Bucket=bucket,
        Key="t/report.bin",
        AccessControlPolicy={
            "Owner": owner,
            "Grants": [
                {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
                {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"},
            ],
        },
    )
    before, acl_before = snapshot(world, bucket, "t/report.bin"), grants(world, bucket, "t/report.bin")
    assert (ALL_USERS, "READ") in acl_before

    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}

    after, acl_after = snapshot(world, bucket, "t/report.bin"), grants(world, bucket, "t/report.bin")
    assert after["sse"] == ("aws:kms:dsse", world.keys["t"])
    for attribute in ("body", "metadata", "content", "redirect", "storage_class", "checksum_sha256", "tags"):
        assert after[attribute] == before[attribute], attribute
    assert after["storage_class"] == "STANDARD_IA" and after["redirect"] == "/moved/here"
    assert acl_after == acl_before
    (row,) = world.log_rows()
    assert row["method"] == ("multipart-copy" if threshold else "copy")
    assert world.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_copy_keeps_the_access_of_an_owner_from_another_account(world, load_handler):
    """Another account wrote the object into an ObjectWriter bucket, so it owns it and holds
    the only grant. The copy belongs to the enforcer's account: the grant must go along."""
    handler = load_handler()
    bucket = world.bucket("acl-bucket", ownership="ObjectWriter")
    world.map(bucket, "t/", world.key("t"), dsse=True)
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x")
    foreign = "f" * 64
    world.s3.put_object_acl(
        Bucket=bucket,
        Key="t/x",
        AccessControlPolicy={
            "Owner": world.s3.get_object_acl(Bucket=bucket, Key="t/x")["Owner"],
            "Grants": [{"Grantee": {"Type": "CanonicalUser", "ID": foreign}, "Permission": "FULL_CONTROL"}],
        },
    )

    def owned_by_the_writer(parsed, **_):
        parsed["Owner"] = {"ID": foreign}  # moto has one canonical owner for all accounts

    handler.s3.meta.events.register("after-call.s3.GetObjectAcl", owned_by_the_writer)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    assert world.s3.head_object(Bucket=bucket, Key="t/x")["ServerSideEncryption"] == "aws:kms:dsse"
    assert grants(world, bucket, "t/x") == [(foreign, "FULL_CONTROL")]


def test_bucket_acl_mode_is_asked_once_for_a_concurrent_batch(world, load_handler):
    handler = load_handler()
    bucket = world.bucket("fresh-bucket")
    world.map(bucket, "t/", world.key("t"), dsse=True)
    for i in range(10):
        world.s3.put_object(Bucket=bucket, Key=f"t/{i}", Body=b"x")
    asked = []

    def round_trip(**_):
        asked.append(1)
        time.sleep(0.05)  # while it is in flight, every other record of the batch wants the answer

    handler.s3.meta.events.register("before-call.s3.GetBucketOwnershipControls", round_trip)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    assert len(asked) == 1
    assert [r["outcome"] for r in world.log_rows()] == ["rekeyed"] * 10


def test_multipart_copy_keeps_a_full_object_checksum_type(world, load_handler):
    handler = load_handler(MULTIPART_THRESHOLD_BYTES=str(5 * MIB))
    bucket = world.bucket("crc-bucket")
    world.map(bucket, "t/", world.key("t"), dsse=True)
    body = bytes(range(256)) * (6 * MIB // 256)
    world.s3.put_object(Bucket=bucket, Key="t/big", Body=body, ChecksumAlgorithm="CRC32")

    def as_s3_reports_it(parsed, **_):
        parsed.setdefault("ChecksumType", "FULL_OBJECT")  # a single PUT's type; moto's HEAD omits it

    created = []
    handler.s3.meta.events.register("after-call.s3.HeadObject", as_s3_reports_it)
    handler.s3.meta.events.register("before-parameter-build.s3.CreateMultipartUpload",
                                    lambda params, **_: created.append(dict(params)))
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    assert [(p["ChecksumAlgorithm"], p["ChecksumType"]) for p in created] == [("CRC32", "FULL_OBJECT")]
    assert world.log_rows()[0]["method"] == "multipart-copy"
    after = world.s3.head_object(Bucket=bucket, Key="t/big", ChecksumMode="ENABLED")
    assert after["ServerSideEncryption"] == "aws:kms:dsse" and after.get("ChecksumCRC32")
    assert world.s3.get_object(Bucket=bucket, Key="t/big")["Body"].read() == body


@pytest.mark.parametrize(("threshold", "size"), [(None, 6), (5 * MIB, 6 * MIB)], ids=["copy", "multipart"])
def test_object_lock_retention_and_legal_hold_are_reapplied(world, load_handler, threshold, size):
    handler = load_handler(**({"MULTIPART_THRESHOLD_BYTES": str(threshold)} if threshold else {}))
    bucket = world.bucket("locked-bucket", object_lock=True)
    world.map(bucket, "t/", world.key("t"))
    until = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    body = b"ledger" * (size // 6)
    old = world.s3.put_object(
        Bucket=bucket,
        Key="t/ledger",
        Body=body,
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )["VersionId"]
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    # Object Lock forbids the in-place update, so a copy makes a new, locked version.
    assert row["method"] == ("multipart-copy" if threshold else "copy") and row["old_version"] == "kept"
    new = row["new_version_id"]
    after = snapshot(world, bucket, "t/ledger", new)
    assert after["sse"] == ("aws:kms", world.keys["t"])
    assert after["lock"] == ("GOVERNANCE", until, "ON")
    assert after["body"] == body
    versions = {v["VersionId"] for v in world.s3.list_object_versions(Bucket=bucket)["Versions"]}
    assert versions == {old, new}


def test_a_lapsed_retention_is_not_reapplied_but_the_legal_hold_is(world, load_handler):
    handler = load_handler()
    bucket = world.bucket("locked-bucket", object_lock=True)
    world.map(bucket, "t/", world.key("t"), dsse=True)
    until = datetime.now(UTC) + timedelta(seconds=1)
    for key, hold in (("t/held", "ON"), ("t/free", "OFF")):
        world.s3.put_object(Bucket=bucket, Key=key, Body=b"ledger", ObjectLockMode="COMPLIANCE",
                            ObjectLockRetainUntilDate=until, ObjectLockLegalHoldStatus=hold)
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.2)  # S3 refuses a past date

    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    rows = {r["s3_object_path"].split("/")[-1].split("?")[0]: r for r in world.log_rows()}
    assert {k: (r["outcome"], r["method"]) for k, r in rows.items()} == {
        "held": ("rekeyed", "copy"), "free": ("rekeyed", "copy")}
    held = snapshot(world, bucket, "t/held", rows["held"]["new_version_id"])
    assert held["sse"] == ("aws:kms:dsse", world.keys["t"]) and held["body"] == b"ledger"
    assert held["lock"] == (None, None, "ON")
    assert rows["held"]["old_version"] == "kept"  # a legal hold still protects the old version
    free = snapshot(world, bucket, "t/free", rows["free"]["new_version_id"])
    assert free["lock"] == (None, None, "OFF") and rows["free"]["old_version"] == "deleted"


def test_update_in_place_refused_by_object_lock_copies_and_keeps_the_locked_version(world, load_handler):
    """When HEAD cannot see the lock (no GetObjectLegalHold grant), S3 itself refuses: copy."""
    handler = load_handler()
    bucket = world.bucket("locked-bucket", object_lock=True)
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x", ObjectLockLegalHoldStatus="ON")

    def hide_lock(http_response, parsed, model, **_):
        if model.name == "HeadObject":
            for field in ("ObjectLockMode", "ObjectLockRetainUntilDate", "ObjectLockLegalHoldStatus"):
                parsed.pop(field, None)

    handler.s3.meta.events.register("after-call.s3.HeadObject", hide_lock)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert (row["outcome"], row["method"]) == ("rekeyed", "copy")
    assert row["fallback"].startswith("object-lock: ") and "Object Lock" in row["fallback"]
    assert row["old_version"] == "kept"  # the locked version stays, as S3 requires
    new = world.s3.head_object(Bucket=bucket, Key="t/x", VersionId=row["new_version_id"])
    assert new["SSEKMSKeyId"] == world.keys["t"]


# -- races ------------------------------------------------------------------


def newer_put(world, bucket, key):
    world.s3.put_object(Bucket=bucket, Key=key, Body=b"NEWER CONTENT", ServerSideEncryption="AES256")


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_newer_put_between_inspect_and_copy_survives(world, load_handler, versioned):
    handler = load_handler()
    bucket = world.bucket("race-bucket", versioned=versioned)
    world.map(bucket, "t/", world.key("t"), dsse=True)
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"OLDER CONTENT")
    event = world.event()
    fired = []

    def land_first(**_):
        if not fired:
            fired.append(1)
            newer_put(world, bucket, "t/x")

    handler.s3.meta.events.register("before-call.s3.CopyObject", land_first)
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert world.s3.get_object(Bucket=bucket, Key="t/x")["Body"].read() == b"NEWER CONTENT"
    (row,) = world.log_rows()
    assert row["outcome"] == "superseded" and "newer write" in row["action_reason"]
    if versioned:
        assert len(world.s3.list_object_versions(Bucket=bucket)["Versions"]) == 2  # nothing deleted


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_newer_put_while_copy_is_in_flight_survives(world, load_handler, versioned):
    handler = load_handler()
    bucket = world.bucket("race-bucket", versioned=versioned)
    world.map(bucket, "t/", world.key("t"), dsse=True)
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"OLDER CONTENT")
    event = world.event()
    with moto_patches.commit_hook(lambda b, k: newer_put(world, b, k)):
        assert handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert world.s3.get_object(Bucket=bucket, Key="t/x")["Body"].read() == b"NEWER CONTENT"
    assert world.log_rows()[0]["outcome"] == "superseded"


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_newer_put_before_multipart_completes_survives_and_upload_is_aborted(world, load_handler, versioned):
    handler = load_handler(MULTIPART_THRESHOLD_BYTES=str(5 * MIB))
    bucket = world.bucket("race-bucket", versioned=versioned)
    world.map(bucket, "t/", world.key("t"), dsse=True)
    world.s3.put_object(Bucket=bucket, Key="t/big", Body=b"o" * (6 * MIB))
    event = world.event()
    handler.s3.meta.events.register(
        "before-call.s3.CompleteMultipartUpload", lambda **_: newer_put(world, bucket, "t/big")
    )
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert world.s3.get_object(Bucket=bucket, Key="t/big")["Body"].read() == b"NEWER CONTENT"
    assert world.log_rows()[0]["outcome"] == "superseded"
    assert world.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "versioned"])
def test_newer_put_while_part_copies_are_in_flight_survives_and_upload_is_aborted(world, load_handler, versioned):
    handler = load_handler(MULTIPART_THRESHOLD_BYTES=str(5 * MIB))
    bucket = world.bucket("race-bucket", versioned=versioned)
    world.map(bucket, "t/", world.key("t"), dsse=True)
    world.s3.put_object(Bucket=bucket, Key="t/big", Body=b"o" * (11 * MIB))  # three parts
    event = world.event()
    landed = threading.Lock()
    part_calls = []

    def land_during_the_first_part(**_):
        part_calls.append(1)
        if landed.acquire(blocking=False):
            newer_put(world, bucket, "t/big")

    handler.s3.meta.events.register("before-call.s3.UploadPartCopy", land_during_the_first_part)
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert world.s3.get_object(Bucket=bucket, Key="t/big")["Body"].read() == b"NEWER CONTENT"
    (row,) = world.log_rows()
    assert (row["outcome"], row["method"]) == ("superseded", "multipart-copy")
    assert world.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert part_calls  # the race really was during the part copies
    if versioned:
        assert len(world.s3.list_object_versions(Bucket=bucket)["Versions"]) == 2  # nothing deleted


def test_upload_is_aborted_only_after_the_running_part_copies_end(world, load_handler):
    handler = load_handler(MULTIPART_THRESHOLD_BYTES=str(5 * MIB))
    bucket = world.bucket("race-bucket")
    world.map(bucket, "t/", world.key("t"), dsse=True)
    world.s3.put_object(Bucket=bucket, Key="t/big", Body=b"o" * (11 * MIB))  # parts 1-3
    copying: set[int] = set()
    still_copying_at_abort = []

    def part_starts(params, context, **_):
        if params["PartNumber"] == 1:
            raise aws_error("SlowDown", 503, "UploadPartCopy")
        context["part"] = params["PartNumber"]
        copying.add(params["PartNumber"])
        time.sleep(0.2)  # parts 2 and 3 are still copying when part 1 fails

    handler.s3.meta.events.register("before-parameter-build.s3.UploadPartCopy", part_starts)
    handler.s3.meta.events.register("after-call.s3.UploadPartCopy",
                                    lambda context, **_: copying.discard(context["part"]))
    handler.s3.meta.events.register("before-call.s3.AbortMultipartUpload",
                                    lambda **_: still_copying_at_abort.append(set(copying)))
    event = world.event()
    assert handler.handler(event, LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]
    }
    # S3 may still accept a part copied during the abort, and bill it: abort after them.
    assert still_copying_at_abort == [set()]
    assert world.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def multipart_copy_of(world, bucket, key, pool):
    state = rekey.inspect(world.s3, bucket, key)
    plan = rekey.CopyPlan.build(state, Target(SSE_KMS, world.key("t"), False), {}, datetime.now(UTC))
    return rekey.multipart_copy(world.s3, state, plan, 5 * MIB, pool)


def test_a_failed_part_behind_a_slow_one_starts_no_further_part_copies(world):
    bucket = world.bucket("race-bucket", notify=False)
    world.s3.put_object(Bucket=bucket, Key="t/big", Body=b"o" * (15 * MIB + 1))  # parts 1-4
    started: list[tuple[int, bool]] = []  # (part, whether part 2 had already failed)
    part_2_failed, last_part_started = threading.Event(), threading.Event()

    def part_starts(params, **_):
        number = params["PartNumber"]
        started.append((number, part_2_failed.is_set()))
        if number == 1:
            last_part_started.wait(timeout=0.5)  # slow: still copying when part 2 fails
        elif number == 2:
            part_2_failed.set()
            raise aws_error("SlowDown", 503, "UploadPartCopy")
        elif number == 4:
            last_part_started.set()

    world.s3.meta.events.register("before-parameter-build.s3.UploadPartCopy", part_starts)
    with ThreadPoolExecutor(2) as pool, pytest.raises(ClientError, match="SlowDown"):
        multipart_copy_of(world, bucket, "t/big", pool)
    assert sorted(started) == [(1, False), (2, False)]  # parts 3 and 4 never began
    assert world.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_part_that_finds_the_source_replaced_decides_over_another_parts_throttling(world):
    # In part order part 1's SlowDown came first and sent the record back to the queue
    # for nothing: the newer object's own event handles it.
    bucket = world.bucket("race-bucket", notify=False)
    world.s3.put_object(Bucket=bucket, Key="t/big", Body=b"o" * (11 * MIB))
    part_2_started = threading.Event()

    def part_starts(params, **_):
        if params["PartNumber"] == 1:
            part_2_started.wait(timeout=5)
            raise aws_error("SlowDown", 503, "UploadPartCopy")
        if params["PartNumber"] == 2:
            part_2_started.set()
            time.sleep(0.1)  # answers after part 1 failed
            raise aws_error("PreconditionFailed", 412, "UploadPartCopy")

    world.s3.meta.events.register("before-parameter-build.s3.UploadPartCopy", part_starts)
    with ThreadPoolExecutor(2) as pool, pytest.raises(rekey.Superseded):
        multipart_copy_of(world, bucket, "t/big", pool)
    assert world.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_upload_is_aborted_when_its_parts_cannot_be_submitted(world):
    bucket = world.bucket("race-bucket", notify=False)
    world.s3.put_object(Bucket=bucket, Key="t/big", Body=b"o" * (11 * MIB))
    pool = ThreadPoolExecutor(2)
    pool.shutdown()  # the container is stopping: the pool takes no more work
    with pytest.raises(RuntimeError, match="cannot schedule new futures"):
        multipart_copy_of(world, bucket, "t/big", pool)
    assert world.s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_conflict_409_is_inspected_again_and_retried(world, load_handler):
    handler = load_handler()
    bucket = world.bucket("race-bucket")
    world.map(bucket, "t/", world.key("t"), dsse=True)
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"content")
    heads, copies = [], []
    handler.s3.meta.events.register("before-call.s3.HeadObject", lambda **_: heads.append(1))

    def conflict_once(**_):
        copies.append(1)
        if len(copies) == 1:
            raise aws_error("ConditionalRequestConflict", 409, "CopyObject", "conflict")

    handler.s3.meta.events.register("before-call.s3.CopyObject", conflict_once)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    assert (len(heads), len(copies)) == (2, 2)
    assert world.s3.head_object(Bucket=bucket, Key="t/x")["ServerSideEncryption"] == "aws:kms:dsse"


def test_persistent_conflict_goes_back_to_the_queue(world, load_handler):
    handler = load_handler()
    bucket = world.bucket("race-bucket")
    world.map(bucket, "t/", world.key("t"), dsse=True)
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"content")

    always = failing("ConditionalRequestConflict", 409, "CopyObject", "conflict")
    handler.s3.meta.events.register("before-call.s3.CopyObject", always)
    event = world.event()
    assert handler.handler(event, LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]
    }


# -- failures, alerts, isolation ----------------------------------------------


@pytest.fixture
def alert_inbox(world):
    sns = world.enforcer_client("sns")
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    inbox = world.sqs.create_queue(QueueName="alert-inbox")["QueueUrl"]
    inbox_arn = world.sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn, Attributes={"RawMessageDelivery": "true"})

    def read():
        msgs = world.sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10).get("Messages", [])
        return [m["Body"] for m in msgs]

    return topic, read


def test_malformed_message_is_a_batch_failure_and_an_alert(world, load_handler, alert_inbox):
    topic, read_alerts = alert_inbox
    handler = load_handler(ALERT_TOPIC_ARN=topic)
    event = sqs_event([{"MessageId": "m-bad", "ReceiptHandle": "r", "Body": "not json"}], world.queue_arn)
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    (alert,) = read_alerts()
    assert "malformed message" in alert and "message m-bad" in alert and "body is not JSON" in alert


def test_sse_c_objects_alert_once_per_bucket_and_are_not_retried(world, load_handler, alert_inbox):
    topic, read_alerts = alert_inbox
    handler = load_handler(ALERT_TOPIC_ARN=topic)
    bucket = world.bucket("ssec-bucket")
    world.map(bucket, "t/", world.key("t"))
    for name in ("a", "b"):
        world.s3.put_object(Bucket=bucket, Key=f"t/{name}", Body=b"secret",
                            SSECustomerAlgorithm="AES256", SSECustomerKey=b"k" * 32)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    assert {r["outcome"] for r in world.log_rows()} == {"sse-c"}
    (alert,) = read_alerts()
    assert "2 object(s)" in alert and "t/a" in alert and "t/b" in alert


def test_a_head_400_that_is_not_sse_c_goes_back_to_the_queue_without_an_alert(world, load_handler, alert_inbox):
    # HEAD answers every 400 without a body: an expired token looks like an SSE-C
    # object there. The one-byte GET that follows tells them apart.
    topic, read_alerts = alert_inbox
    handler = load_handler(ALERT_TOPIC_ARN=topic)
    bucket = world.bucket("token-bucket")
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/a", Body=b"x")
    event = world.event()
    handler.s3.meta.events.register("before-call.s3.HeadObject", failing("400", 400, "HeadObject", "Bad Request"))
    handler.s3.meta.events.register("before-call.s3.GetObject", failing(
        "ExpiredToken", 400, "GetObject", "The provided token has expired."))
    result = handler.handler(event, LambdaContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert world.log_rows() == [] and read_alerts() == []


def test_transient_error_fails_only_its_record(world, load_handler):
    handler = load_handler()
    bucket = world.bucket("mixed-bucket")
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/ok", Body=b"x")
    world.s3.put_object(Bucket=bucket, Key="t/throttled", Body=b"x")
    event = world.event()
    throttled_id = next(r["messageId"] for r in event["Records"] if "throttled" in r["body"])

    throttle = failing("SlowDown", 503, "HeadObject", "slow down", when=lambda params: params.get("Key") == "t/throttled")
    handler.s3.meta.events.register("before-parameter-build.s3.HeadObject", throttle)
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": [{"itemIdentifier": throttled_id}]}
    assert world.s3.head_object(Bucket=bucket, Key="t/ok")["SSEKMSKeyId"] == world.keys["t"]


def test_kms_access_denied_on_the_copy_is_permanent_alerted_and_not_retried(world, load_handler, alert_inbox):
    topic, read_alerts = alert_inbox
    handler = load_handler(ALERT_TOPIC_ARN=topic)
    bucket = world.bucket("denied-bucket")
    world.map(bucket, "t/", world.key("t"), dsse=True)
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x")

    denied = failing("KMS.AccessDeniedException", 403, "CopyObject", "not authorized to kms:Encrypt")
    handler.s3.meta.events.register("before-call.s3.CopyObject", denied)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["outcome"] == "failed" and "kms:Encrypt" in row["action_reason"]
    assert len(read_alerts()) == 1


def test_access_denied_on_head_is_an_alerted_outcome(world, load_handler, alert_inbox):
    topic, read_alerts = alert_inbox
    handler = load_handler(ALERT_TOPIC_ARN=topic)
    bucket = world.bucket("denied-bucket")
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x")

    forbidden = failing("403", 403, "HeadObject", "Forbidden")
    handler.s3.meta.events.register("before-call.s3.HeadObject", forbidden)
    handler.s3.meta.events.register("before-call.s3.GetObject", failing("AccessDenied", 403, "GetObject", "Access Denied"))
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    assert world.log_rows()[0]["outcome"] == "access-denied"
    assert "access-denied" in json.dumps(read_alerts())


@pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
@pytest.mark.parametrize(("dsse", "operation"), [(False, "UpdateObjectEncryption"), (True, "CopyObject")])
def test_kms_throttling_on_the_write_is_retried_not_alerted(world, load_handler, alert_inbox, dsse, operation):
    topic, read_alerts = alert_inbox
    handler = load_handler(ALERT_TOPIC_ARN=topic)
    bucket = world.bucket("throttled-bucket")
    world.map(bucket, "t/", world.key("t"), dsse=dsse)
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x")
    event = world.event()

    throttled = failing("KMS.ThrottlingException", 400, operation, "Rate exceeded")
    handler.s3.meta.events.register(f"before-call.s3.{operation}", throttled)
    logged = Recorded()
    handler.logger.addHandler(logged)
    try:
        assert handler.handler(event, LambdaContext()) == {
            "batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]
        }
    finally:
        handler.logger.removeHandler(logged)
    assert read_alerts() == []
    assert world.log_rows() == []  # journaled once it succeeds, on the redelivery
    # The batch processor logs the record's exception through the function's Logger,
    # at a level POWERTOOLS_LOG_LEVEL=WARNING shows.
    (failure,) = [r for r in logged.records if r.exc_info and r.levelno >= logging.WARNING]
    assert "KMS.ThrottlingException" in str(failure.exc_info[1])
    assert world.s3.head_object(Bucket=bucket, Key="t/x")["ServerSideEncryption"] == "AES256"


class Recorded(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)
