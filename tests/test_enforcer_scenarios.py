"""The enforcer end to end on patched moto: notifications in, objects re-keyed, rows out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote_plus

import pytest
from botocore.exceptions import ClientError

from enforcer.engine import NO_ACTION
from tests.conftest import LambdaContext, failing

BODY = b"tenant data \x00\xff" * 3


def head(world, bucket, key, **kw):
    return world.s3.head_object(Bucket=bucket, Key=key, **kw)


def body_of(world, bucket, key, **kw):
    return world.s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()


@pytest.fixture
def seed(world):
    """The original README's Testing setup: 3 keys, prefix3 on DSSE, prefix4 unmapped."""
    bucket = world.bucket("seed-bucket")
    for n in (1, 2, 3):
        world.map(bucket, f"prefix{n}/", world.key(f"key{n}"), dsse=(n == 3))
    return bucket


def test_original_testing_scenario(world, seed, load_handler):
    handler = load_handler()
    for n in (1, 2, 3, 4):
        world.s3.put_object(Bucket=seed, Key=f"prefix{n}/a.txt", Body=BODY)
    before = {n: head(world, seed, f"prefix{n}/a.txt")["ServerSideEncryption"] for n in (1, 2, 3, 4)}
    assert before == {1: "AES256", 2: "AES256", 3: "AES256", 4: "AES256"}

    result = handler.handler(world.event(), LambdaContext())
    assert result == {"batchItemFailures": []}

    after = {n: head(world, seed, f"prefix{n}/a.txt") for n in (1, 2, 3, 4)}
    assert (after[1]["ServerSideEncryption"], after[1]["SSEKMSKeyId"]) == ("aws:kms", world.keys["key1"])
    assert (after[2]["ServerSideEncryption"], after[2]["SSEKMSKeyId"]) == ("aws:kms", world.keys["key2"])
    assert (after[3]["ServerSideEncryption"], after[3]["SSEKMSKeyId"]) == ("aws:kms:dsse", world.keys["key3"])
    assert after[4]["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in after[4]
    for n in (1, 2, 3, 4):
        assert body_of(world, seed, f"prefix{n}/a.txt") == BODY

    rows = {r["s3_object_path"]: r for r in world.log_rows()}
    assert rows[f"s3://{seed}/prefix1/a.txt"]["action_reason"] == (
        "Incorrect SSE type. Was AES256 whereas it should have been aws:kms"
    )
    assert rows[f"s3://{seed}/prefix1/a.txt"]["method"] == "update-object-encryption"
    assert rows[f"s3://{seed}/prefix3/a.txt"]["action_reason"] == (
        "Incorrect SSE type. Was AES256 whereas it should have been aws:kms:dsse"
    )
    assert rows[f"s3://{seed}/prefix3/a.txt"]["method"] == "copy"
    assert rows[f"s3://{seed}/prefix4/a.txt"]["action_reason"] == "No KMS key configured for this object's prefix"
    assert rows[f"s3://{seed}/prefix4/a.txt"]["action_taken"] == NO_ACTION
    assert len(rows) == 4
    assert all(int(r["expires_at"]) > 0 for r in rows.values())

    # The enforcer's own writes come back as events (only the DSSE copy wrote data):
    # they cause no further copy, only an "already correct" row.
    own = world.drain()
    assert len(own) == 1
    record = json.loads(own[0]["Body"])["Records"][0]
    assert record["userIdentity"]["principalId"] == world.enforcer_principal
    etag3 = after[3]["ETag"]
    result = handler.handler(
        {"Records": [{"messageId": own[0]["MessageId"], "receiptHandle": "r", "body": own[0]["Body"],
                      "attributes": {}, "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                      "eventSourceARN": world.queue_arn, "awsRegion": "us-east-1"}]},
        LambdaContext(),
    )
    assert result == {"batchItemFailures": []}
    assert head(world, seed, "prefix3/a.txt")["ETag"] == etag3
    assert world.drain() == []
    latest = sorted((r for r in world.log_rows() if r["s3_object_path"].endswith("prefix3/a.txt")),
                    key=lambda r: r["current_timestamp_utc"])[-1]
    assert latest["action_reason"] == "Already using the correct key"


@pytest.mark.parametrize(
    "key",
    ["prefix1/a b+c.txt", "prefix1/100% done.txt", "prefix1/k=v&x=y;z.csv", "prefix1/naïve 日本語 🚀.bin"],
)
def test_odd_keys_round_trip_through_real_notifications(world, seed, load_handler, key):
    handler = load_handler()
    world.s3.put_object(Bucket=seed, Key=key, Body=BODY)
    event = world.event()
    # The notification carries the key form-encoded, as S3 does; only decoding gets it back.
    raw = json.loads(event["Records"][0]["body"])["Records"][0]["s3"]["object"]["key"]
    assert raw != key and unquote_plus(raw) == key
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
    h = head(world, seed, key)
    assert (h["ServerSideEncryption"], h["SSEKMSKeyId"]) == ("aws:kms", world.keys["key1"])
    assert [r["s3_object_path"] for r in world.log_rows()] == [f"s3://{seed}/{key}"]


def test_wrong_kms_key_is_logged_with_the_original_reason(world, seed, load_handler):
    handler = load_handler()
    other = world.key("other")
    world.s3.put_object(Bucket=seed, Key="prefix1/x", Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=other)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["action_reason"] == f"Incorrect KMS key. Was {other} whereas it should have been {world.keys['key1']}"
    assert (row["current_sse_type"], row["current_kms_key_arn"]) == ("aws:kms", other)
    assert head(world, seed, "prefix1/x")["SSEKMSKeyId"] == world.keys["key1"]


@pytest.mark.parametrize("rekey_method", ["auto", "copy"])
@pytest.mark.parametrize("bucket_key", [False, None], ids=["bucket-key-off", "bucket-key-default"])
def test_mapping_bucket_key_setting_reaches_the_object(world, load_handler, rekey_method, bucket_key):
    handler = load_handler(REKEY_METHOD=rekey_method)
    bucket = world.bucket("bucket-key")
    extra = {} if bucket_key is None else {"bucket_key_enabled": bucket_key}
    world.map(bucket, "t/", world.key("t"), **extra)
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=BODY)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["method"] == {"auto": "update-object-encryption", "copy": "copy"}[rekey_method]
    h = head(world, bucket, "t/x")
    assert (h["ServerSideEncryption"], h["SSEKMSKeyId"]) == ("aws:kms", world.keys["t"])
    assert h.get("BucketKeyEnabled", False) is (bucket_key is None)  # SSE-KMS default: on


def test_rekey_method_and_log_retention_are_read_from_the_environment(world, seed, load_handler):
    handler = load_handler(REKEY_METHOD="copy", LOG_RETENTION_DAYS="7")
    world.s3.put_object(Bucket=seed, Key="prefix1/x", Body=BODY)
    before = datetime.now(UTC)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["method"] == "copy"  # UpdateObjectEncryption would do in auto mode
    expires = datetime.fromtimestamp(int(row["expires_at"]), UTC)
    assert before + timedelta(days=7, seconds=-5) <= expires <= datetime.now(UTC) + timedelta(days=7, seconds=5)


def test_versioned_bucket_update_in_place_keeps_the_version(world, load_handler):
    handler = load_handler()
    bucket = world.bucket("versioned", versioned=True)
    world.map(bucket, "t/", world.key("t"))
    vid = world.s3.put_object(Bucket=bucket, Key="t/x", Body=BODY)["VersionId"]
    etag = head(world, bucket, "t/x")["ETag"]
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    versions = world.s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["VersionId"] for v in versions] == [vid]
    h = head(world, bucket, "t/x", VersionId=vid)
    assert (h["SSEKMSKeyId"], h["ETag"]) == (world.keys["t"], etag)
    assert world.log_rows()[0]["s3_object_path"] == f"s3://{bucket}/t/x?versionId={vid}"


@pytest.mark.parametrize("old_version_action", ["delete", "keep"])
def test_versioned_bucket_copy_path_handles_the_old_version(world, load_handler, old_version_action):
    handler = load_handler(OLD_VERSION_ACTION=old_version_action)
    bucket = world.bucket("versioned", versioned=True)
    world.map(bucket, "t/", world.key("t"), dsse=True)
    old = world.s3.put_object(Bucket=bucket, Key="t/x", Body=BODY)["VersionId"]
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    versions = {v["VersionId"]: v for v in world.s3.list_object_versions(Bucket=bucket)["Versions"]}
    (row,) = world.log_rows()
    new = row["new_version_id"]
    assert new != old and versions[new]["IsLatest"]
    assert head(world, bucket, "t/x")["ServerSideEncryption"] == "aws:kms:dsse"
    assert body_of(world, bucket, "t/x") == BODY
    if old_version_action == "delete":
        assert set(versions) == {new} and row["old_version"] == "deleted"
    else:
        assert set(versions) == {old, new} and row["old_version"] == "kept"


def test_mapping_row_old_version_action_overrides_the_environment(world, load_handler):
    handler = load_handler(OLD_VERSION_ACTION="delete")
    bucket = world.bucket("versioned", versioned=True)
    world.map(bucket, "t/", world.key("t"), dsse=True, old_version_action="keep")
    old = world.s3.put_object(Bucket=bucket, Key="t/x", Body=BODY)["VersionId"]
    handler.handler(world.event(), LambdaContext())
    assert old in {v["VersionId"] for v in world.s3.list_object_versions(Bucket=bucket)["Versions"]}


def test_own_event_is_skipped_but_a_users_own_copy_is_rekeyed(world, seed, load_handler):
    handler = load_handler()
    world.s3.put_object(Bucket=seed, Key="prefix3/x", Body=BODY)
    handler.handler(world.event(), LambdaContext())
    own_copy_event = world.event()
    assert len(own_copy_event["Records"]) == 1

    # A user copies the object onto itself with SSE-S3: a user write, re-keyed again.
    world.s3.copy_object(Bucket=seed, Key="prefix3/x", CopySource={"Bucket": seed, "Key": "prefix3/x"},
                         ServerSideEncryption="AES256", MetadataDirective="REPLACE")
    user_copy_event = world.event()
    user_record = json.loads(user_copy_event["Records"][0]["body"])["Records"][0]
    assert user_record["eventName"] == "ObjectCreated:Copy"
    assert user_record["userIdentity"]["principalId"] != world.enforcer_principal
    assert handler.handler(user_copy_event, LambdaContext()) == {"batchItemFailures": []}
    assert head(world, seed, "prefix3/x")["ServerSideEncryption"] == "aws:kms:dsse"

    # Replaying the enforcer's own (older) copy event makes no write at all.
    etag = head(world, seed, "prefix3/x")["ETag"]
    world.drain()
    handler.handler(own_copy_event, LambdaContext())
    assert head(world, seed, "prefix3/x")["ETag"] == etag
    assert world.drain() == []


def test_own_write_that_is_still_wrong_alerts_and_does_not_copy(world, seed, load_handler):
    handler = load_handler()
    world.s3.put_object(Bucket=seed, Key="prefix3/x", Body=BODY)
    body = world.drain()[0]["Body"]
    forged = json.loads(body)
    forged["Records"][0]["userIdentity"]["principalId"] = world.enforcer_principal
    event = {"Records": [{"messageId": "m1", "receiptHandle": "r", "body": json.dumps(forged), "attributes": {},
                          "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                          "eventSourceARN": world.queue_arn, "awsRegion": "us-east-1"}]}
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert head(world, seed, "prefix3/x")["ServerSideEncryption"] == "AES256"
    (row,) = world.log_rows()
    assert row["outcome"] == "loop-guard"
    assert world.drain() == []


def test_own_event_overtaken_by_a_users_newer_write_is_superseded(world, seed, load_handler):
    handler = load_handler()
    world.s3.put_object(Bucket=seed, Key="prefix3/x", Body=BODY)
    handler.handler(world.event(), LambdaContext())
    own_copy_event = world.event()  # the enforcer's DSSE copy, not yet delivered
    world.s3.put_object(Bucket=seed, Key="prefix3/x", Body=b"newer bytes", ServerSideEncryption="AES256")
    user_event = world.event()

    # Delivered late, the own event finds the user's object: no loop, no alert, no copy.
    assert handler.handler(own_copy_event, LambdaContext()) == {"batchItemFailures": []}
    assert head(world, seed, "prefix3/x")["ServerSideEncryption"] == "AES256"
    latest = max(world.log_rows(), key=lambda r: r["current_timestamp_utc"])
    assert latest["outcome"] == "superseded" and latest["action_reason"].startswith("Superseded by a newer write")
    # The newer write's own event re-keys it.
    assert handler.handler(user_event, LambdaContext()) == {"batchItemFailures": []}
    assert head(world, seed, "prefix3/x")["ServerSideEncryption"] == "aws:kms:dsse"
    assert body_of(world, seed, "prefix3/x") == b"newer bytes"


def test_unmapped_object_costs_no_s3_call(world, seed, load_handler):
    handler = load_handler()
    world.s3.put_object(Bucket=seed, Key="prefix4/x", Body=BODY)
    calls = []
    handler.s3.meta.events.register("before-call.s3", lambda model, **kw: calls.append(model.name))
    handler.handler(world.event(), LambdaContext())
    assert calls == []


def test_mapping_is_queried_once_per_bucket_per_batch(world, seed, load_handler):
    handler = load_handler()
    for i in range(6):
        world.s3.put_object(Bucket=seed, Key=f"prefix{1 + i % 2}/{i}", Body=BODY)
    queries = []
    handler.dynamodb.meta.events.register("before-call.dynamodb.Query", lambda **kw: queries.append(1))
    handler.handler(world.event(), LambdaContext())
    assert len(queries) == 1
    world.s3.put_object(Bucket=seed, Key="prefix1/again", Body=BODY)
    handler.handler(world.event(), LambdaContext())
    assert len(queries) == 1  # cached for MAPPING_CACHE_SECONDS


def test_deleted_object_is_gone_not_a_failure(world, seed, load_handler):
    handler = load_handler()
    world.s3.put_object(Bucket=seed, Key="prefix1/x", Body=BODY)
    world.s3.delete_object(Bucket=seed, Key="prefix1/x")
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["outcome"] == "gone"


def test_delete_marker_version_is_gone(world, load_handler):
    handler = load_handler()
    bucket = world.bucket("versioned", versioned=True)
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=BODY)
    event = world.event()
    for v in world.s3.list_object_versions(Bucket=bucket)["Versions"]:
        world.s3.delete_object(Bucket=bucket, Key="t/x", VersionId=v["VersionId"])
    world.s3.delete_object(Bucket=bucket, Key="t/x")  # leaves a delete marker
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert world.log_rows()[0]["outcome"] == "gone"


def test_missing_environment_fails_at_cold_start_naming_the_variable(world, load_handler):
    with pytest.raises(Exception, match="MAPPING_TABLE_NAME"):
        load_handler(MAPPING_TABLE_NAME=None)
    with pytest.raises(Exception, match="REKEY_METHOD"):
        load_handler(REKEY_METHOD="fast")


def test_multipart_threshold_above_copy_objects_limit_fails_at_cold_start(world, load_handler):
    with pytest.raises(Exception, match=r"MULTIPART_THRESHOLD_BYTES=5368709121 must be at most 5368709120 .*CopyObject"):
        load_handler(MULTIPART_THRESHOLD_BYTES=str(5 * 1024**3 + 1))
    assert load_handler(MULTIPART_THRESHOLD_BYTES=str(5 * 1024**3)).engine.settings.multipart_threshold == 5 * 1024**3


def test_principal_is_learned_from_sts_when_not_configured(world, load_handler):
    handler = load_handler(ENFORCER_PRINCIPAL_ID=None)
    assert handler.engine.settings.principal_id == world.enforcer_principal
    assert ":enforcer" in handler.engine.settings.principal_id


def test_update_encryption_falls_back_to_copy_on_invalid_request(world, seed, load_handler):
    handler = load_handler()
    world.s3.put_object(Bucket=seed, Key="prefix1/x", Body=BODY)

    def refuse(**kwargs):
        raise ClientError({"Error": {"Code": "NotImplemented", "Message": "not here"},
                           "ResponseMetadata": {"HTTPStatusCode": 501}}, "UpdateObjectEncryption")

    handler.s3.meta.events.register("before-call.s3.UpdateObjectEncryption", refuse)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["method"] == "copy" and "NotImplemented" in row["fallback"]
    assert head(world, seed, "prefix1/x")["SSEKMSKeyId"] == world.keys["key1"]


def test_fallback_that_ends_without_a_copy_still_logs_the_target(world, seed, load_handler):
    handler = load_handler()
    world.s3.put_object(Bucket=seed, Key="prefix1/cold", Body=BODY, StorageClass="GLACIER")
    refuse = failing("NotImplemented", 501, "UpdateObjectEncryption", "not here")
    handler.s3.meta.events.register("before-call.s3.UpdateObjectEncryption", refuse)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["outcome"] == "needs-restore" and "NotImplemented" in row["fallback"]
    assert (row["new_sse_type"], row["new_kms_key_arn"]) == ("aws:kms", world.keys["key1"])


def test_object_deleted_during_the_write_is_gone_and_logs_the_target(world, seed, load_handler):
    handler = load_handler()
    world.s3.put_object(Bucket=seed, Key="prefix1/x", Body=BODY)
    deleted = failing("NoSuchKey", 404, "UpdateObjectEncryption", "The specified key does not exist.")
    handler.s3.meta.events.register("before-call.s3.UpdateObjectEncryption", deleted)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["outcome"] == "gone" and row["method"] == "update-object-encryption"
    assert (row["new_sse_type"], row["new_kms_key_arn"]) == ("aws:kms", world.keys["key1"])


def test_a_boto3_without_update_object_encryption_copies_instead(world, seed, load_handler, monkeypatch):
    handler = load_handler()
    # The client's class is generated from the service model: without the operation in
    # the model (an older boto3 in the runtime) the method is simply not there.
    monkeypatch.delattr(type(handler.s3), "update_object_encryption")
    world.s3.put_object(Bucket=seed, Key="prefix1/x", Body=BODY)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["outcome"] == "rekeyed" and row["method"] == "copy"
    assert row["fallback"].startswith("unsupported: ") and "this boto3 has no UpdateObjectEncryption" in row["fallback"]
    assert head(world, seed, "prefix1/x")["SSEKMSKeyId"] == world.keys["key1"]
    assert body_of(world, seed, "prefix1/x") == BODY


def test_cross_account_key_falls_back_to_copy(world, seed, load_handler):
    handler = load_handler()
    other = world.keys["key1"].replace("123456789012", "210987654321")
    world.map(seed, "prefix1/", other)
    world.s3.put_object(Bucket=seed, Key="prefix1/x", Body=BODY)
    handler.handler(world.event(), LambdaContext())
    (row,) = world.log_rows()
    assert row["method"] == "copy" and "same account" in row["fallback"]


def test_batch_with_only_bad_messages_reports_each_once_and_alerts(world, load_handler):
    handler = load_handler()
    event = {"Records": [
        {"messageId": mid, "receiptHandle": "r", "body": body, "attributes": {}, "messageAttributes": {},
         "md5OfBody": "", "eventSource": "aws:sqs", "eventSourceARN": world.queue_arn, "awsRegion": "us-east-1"}
        for mid, body in (("m1", "not json"), ("m2", json.dumps({"what": "ever"})))
    ]}
    assert handler.handler(event, LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]
    }


def test_a_key_of_another_account_is_refused_once_then_copied_straight_away(world, load_handler):
    # S3 refuses UpdateObjectEncryption with a key the bucket owner does not own; the
    # engine falls back to a copy, and for that key stops asking.
    foreign_key = "arn:aws:kms:us-east-1:444455556666:key/0a1b2c3d-4444-4ddd-8eee-0123456789ab"
    bucket = world.bucket("foreign-key-bucket")
    world.map(bucket, "t/", foreign_key)
    handler = load_handler()
    calls = []
    handler.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    for batch in (["t/a"], ["t/b", "t/c"]):
        for key in batch:
            world.s3.put_object(Bucket=bucket, Key=key, Body=BODY)
        assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
        world.drain()  # the copies' own events, which the deployed filter drops
    assert calls.count("UpdateObjectEncryption") == 1
    assert calls.count("CopyObject") == 3
    rows = world.log_rows()
    assert {(r["outcome"], r["method"]) for r in rows} == {("rekeyed", "copy")}
    assert all(r["fallback"].startswith("other-account-key: ") and "same account" in r["fallback"] for r in rows)
    for key in ("t/a", "t/b", "t/c"):
        head = world.s3.head_object(Bucket=bucket, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", foreign_key)
