"""Refusals told apart (UpdateObjectEncryption's 403s, HEAD's 403, CopyObject's 501) and
replication read once per bucket: the classification alone, then end to end on moto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from enforcer.decision import ObjectState, Refusal, UpdateRefused
from enforcer.engine import Enforcer
from enforcer.events import ObjectRef
from enforcer.mapping import DynamoMappings
from enforcer.refusals import KeyRefusals, classify, named_key
from enforcer.replication import rules_covering
from ops.moto_patches import KeyNotOwnedByBucketOwner, ObjectLockProtected
from tests.conftest import LambdaContext, failing
from tests.test_enforcer_fidelity_races import alert_inbox  # noqa: F401 (a fixture)

OLD_KEY = "arn:aws:kms:us-east-1:123456789012:key/0a0a0a0a-1111-4aaa-8bbb-0123456789ab"
NEW_KEY = "arn:aws:kms:us-east-1:123456789012:key/0b0b0b0b-2222-4bbb-8ccc-123456789abc"
KMS_MESSAGE = (
    "User: arn:aws:sts::123456789012:assumed-role/enforcer/fn is not authorized to perform: "
    f"kms:ReEncryptFrom on resource: {OLD_KEY} because no identity-based policy allows the kms:ReEncryptFrom action"
)


def state(**kw) -> ObjectState:
    return ObjectState("bkt", "t/x", **kw)


# -- UpdateObjectEncryption's refusals -----------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "head", "expected"),
    [
        ("AccessDenied", ObjectLockProtected().message, {}, Refusal.OBJECT_LOCK),
        ("AccessDenied", KeyNotOwnedByBucketOwner().message, {}, Refusal.OTHER_ACCOUNT_KEY),
        ("AccessDenied", KMS_MESSAGE, {}, Refusal.KMS_DENIED),
        ("KMS.AccessDeniedException", "denied", {}, Refusal.KMS_DENIED),
        # KMS's own wording when the caller may not use a key (KMS Decrypt's AccessDenied).
        ("AccessDenied", "The ciphertext refers to a customer master key that does not exist, does not "
                         "exist in this region, or you are not allowed to access.", {}, Refusal.KMS_DENIED),
        # A bare AccessDenied: the lock state HEAD reported decides, a lapsed retention too.
        ("AccessDenied", "Access Denied", {"lock_mode": "GOVERNANCE",
                                           "lock_retain_until": datetime(2020, 1, 1, tzinfo=UTC)}, Refusal.OBJECT_LOCK),
        ("AccessDenied", "Access Denied", {"legal_hold": True}, Refusal.OBJECT_LOCK),
        ("AccessDenied", "Access Denied", {}, Refusal.S3_DENIED),
        ("InvalidRequest", "DSSE-KMS source", {}, Refusal.UNSUPPORTED),
        ("NotImplemented", "not here", {}, Refusal.UNSUPPORTED),
    ],
    ids=["lock-message", "other-account", "kms-message", "kms-code", "kms-ciphertext", "lapsed-retention", "legal-hold",
         "bare-denial", "invalid-request", "not-implemented"],
)
def test_each_refusal_is_told_apart_by_message_and_lock_state(code, message, head, expected):
    assert classify(code, message, state(**head)).refusal is expected


def test_a_kms_denial_names_the_key_it_concerns():
    assert named_key(KMS_MESSAGE) == OLD_KEY
    assert named_key("not authorized to perform kms:Decrypt on key 0a0a0a0a") is None  # a bare ID names no ARN


def test_a_named_key_is_remembered_for_every_object_under_it():
    memory = KeyRefusals()
    denied = classify("AccessDenied", KMS_MESSAGE, state(sse_type="aws:kms", kms_key_arn=OLD_KEY))
    memory.remember(denied, state(sse_type="aws:kms", kms_key_arn=OLD_KEY), NEW_KEY)
    assert memory.recall(ObjectState("bkt", "t/other", sse_type="aws:kms", kms_key_arn=OLD_KEY), NEW_KEY) == denied
    assert memory.recall(state(sse_type="AES256"), NEW_KEY) is None  # SSE-S3 objects still update in place
    assert not memory.blind_update_pays(NEW_KEY)  # the old key shows only in a HEAD


def test_an_unnamed_kms_denial_is_remembered_for_that_pair_of_keys_only():
    memory = KeyRefusals()
    memory.remember(UpdateRefused(Refusal.KMS_DENIED, "KMS.AccessDeniedException"), state(), NEW_KEY)
    assert memory.recall(state(), NEW_KEY) is not None
    assert memory.recall(state(kms_key_arn=OLD_KEY), NEW_KEY) is None


@pytest.mark.parametrize("kind", [Refusal.OBJECT_LOCK, Refusal.S3_DENIED, Refusal.UNSUPPORTED])
def test_refusals_of_one_object_are_not_remembered_for_others(kind):
    memory = KeyRefusals()
    memory.remember(UpdateRefused(kind, "x"), state(legal_hold=True), NEW_KEY)
    assert memory.recall(state(), NEW_KEY) is None and memory.blind_update_pays(NEW_KEY)


# -- replication rules ------------------------------------------------------------


def config(*rules):
    return {"Role": "arn:aws:iam::123456789012:role/r", "Rules": list(rules)}


def rule(rule_id="r", status="Enabled", sse_kms="Enabled", **shape):
    destination = {"Bucket": "arn:aws:s3:::dr", "EncryptionConfiguration": {"ReplicaKmsKeyID": NEW_KEY}}
    return {"ID": rule_id, "Status": status, "Destination": destination,
            "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": sse_kms}}, **shape}


@pytest.mark.parametrize(
    ("shape", "key", "covers", "tags"),
    [
        ({"Filter": {"Prefix": "t/"}}, "t/x", True, False),
        ({"Filter": {"Prefix": "t/sub/"}}, "t/x", False, False),
        ({"Filter": {}}, "t/x", True, False),
        ({"Prefix": "t/"}, "t/x", True, False),  # V1, without Filter
        ({"Prefix": "u/"}, "t/x", False, False),
        ({"Filter": {"Tag": {"Key": "k", "Value": "v"}}}, "t/x", True, True),
        ({"Filter": {"And": {"Prefix": "t/", "Tags": [{"Key": "k", "Value": "v"}]}}}, "t/x", True, True),
        ({"Filter": {"And": {"Prefix": "u/", "Tags": [{"Key": "k", "Value": "v"}]}}}, "t/x", False, True),
    ],
)
def test_a_rule_covers_the_keys_its_filter_selects(shape, key, covers, tags):
    found = rules_covering(config(rule(**shape)), key)
    assert bool(found) is covers
    if covers:
        assert found[0].tag_filtered is tags and found[0].replica_kms_key_id == NEW_KEY


def test_disabled_rules_do_not_replicate_and_each_enabled_one_is_reported():
    found = rules_covering(config(rule("off", status="Disabled"), rule("a"), rule("b", sse_kms="Disabled")), "t/x")
    assert [(r.rule_id, r.sse_kms_selected) for r in found] == [("a", True), ("b", False)]


# -- end to end -------------------------------------------------------------------


def calls_of(client):
    """Every call the client makes, with its parameters, seen before any injected error."""
    calls = []
    client.meta.events.register("provide-client-params.s3", lambda model, params, **_: calls.append((model.name, params)))
    return calls


def names(calls):
    return [name for name, _ in calls]


def test_a_kms_denied_update_falls_back_to_a_copy_once_per_key(world, load_handler):
    bucket = world.bucket("kms-denied-bucket")
    old = world.key("bucket-default")
    world.map(bucket, "t/", world.key("t"))
    handler = load_handler()
    message = KMS_MESSAGE.replace(OLD_KEY, old)
    handler.s3.meta.events.register(
        "before-call.s3.UpdateObjectEncryption", failing("AccessDenied", 403, "UpdateObjectEncryption", message))
    calls = calls_of(handler.s3)
    for batch in (["t/a"], ["t/b", "t/c"]):
        for key in batch:
            world.s3.put_object(Bucket=bucket, Key=key, Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=old)
        assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
        world.drain()
    assert names(calls).count("UpdateObjectEncryption") == 1 and names(calls).count("CopyObject") == 3
    rows = world.log_rows()
    assert {(r["outcome"], r["method"]) for r in rows} == {("rekeyed", "copy")}
    assert all(r["fallback"].startswith("kms-denied: ") and old in r["fallback"] for r in rows)
    for key in ("t/a", "t/b", "t/c"):
        assert world.s3.head_object(Bucket=bucket, Key=key)["SSEKMSKeyId"] == world.keys["t"]


def test_a_bare_denial_on_a_lapsed_retention_copies_and_keeps_the_version(world, load_handler):
    bucket = world.bucket("lapsed-bucket", object_lock=True)
    world.map(bucket, "t/", world.key("t"))
    until = datetime.now(UTC) + timedelta(seconds=1)
    first = world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x", ObjectLockMode="GOVERNANCE",
                                ObjectLockRetainUntilDate=until)["VersionId"]
    event = world.event()
    while datetime.now(UTC) <= until + timedelta(milliseconds=200):
        pass  # the retention lapses; S3 (undocumented) may still refuse the update for it
    handler = load_handler()
    handler.s3.meta.events.register(
        "before-call.s3.UpdateObjectEncryption", failing("AccessDenied", 403, "UpdateObjectEncryption", "Access Denied"))
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert (row["outcome"], row["method"], row["old_version"]) == ("rekeyed", "copy", "kept")
    assert row["fallback"].startswith("object-lock: ") and "HEAD showed Object Lock settings" in row["fallback"]
    assert world.s3.head_object(Bucket=bucket, Key="t/x", VersionId=first)["ServerSideEncryption"] == "AES256"


def test_a_bare_denial_without_a_lock_is_a_failed_alerted_outcome(world, load_handler, alert_inbox):  # noqa: F811
    topic, read_alerts = alert_inbox
    bucket = world.bucket("s3-denied-bucket")
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x")
    handler = load_handler(ALERT_TOPIC_ARN=topic)
    handler.s3.meta.events.register(
        "before-call.s3.UpdateObjectEncryption", failing("AccessDenied", 403, "UpdateObjectEncryption", "Access Denied"))
    calls = calls_of(handler.s3)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["outcome"] == "failed" and "s3:UpdateObjectEncryption" in row["action_reason"]
    assert "CopyObject" not in names(calls) and len(read_alerts()) == 1


def forbid_checksum_head(client):
    client.meta.events.register("before-parameter-build.s3.HeadObject", failing(
        "403", 403, "HeadObject", "Forbidden", when=lambda params: params.get("ChecksumMode") == "ENABLED"))


def test_a_head_403_for_the_checksum_names_the_key_to_add_to_source_key_arns(world, load_handler, alert_inbox):  # noqa: F811
    topic, read_alerts = alert_inbox
    bucket = world.bucket("checksum-bucket")
    foreign = world.key("uploader-key")
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=foreign,
                        ChecksumAlgorithm="SHA256")
    handler = load_handler(ALERT_TOPIC_ARN=topic)
    forbid_checksum_head(handler.s3)
    handler.s3.meta.events.register("before-call.s3.GetObject", failing(
        "AccessDenied", 403, "GetObject", "User: r is not authorized to perform: kms:Decrypt"))
    calls = calls_of(handler.s3)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["outcome"] == "access-denied"
    assert foreign in row["action_reason"] and "sourceKeyArns" in row["action_reason"]
    assert names(calls) == ["HeadObject", "HeadObject", "GetObject"]  # the probes, and nothing written
    assert "ChecksumMode" not in calls[1][1] and len(read_alerts()) == 1


@pytest.mark.parametrize(("code", "status"), [("ExpiredToken", 400), ("RequestTimeTooSkewed", 403)])
def test_a_passing_head_403_is_retried_not_alerted(world, load_handler, alert_inbox, code, status):  # noqa: F811
    topic, read_alerts = alert_inbox
    bucket = world.bucket("skewed-bucket")
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x")
    event = world.event()
    handler = load_handler(ALERT_TOPIC_ARN=topic)
    forbid_checksum_head(handler.s3)
    handler.s3.meta.events.register("before-call.s3.GetObject", failing(code, status, "GetObject", code))
    assert handler.handler(event, LambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert world.log_rows() == [] and read_alerts() == []


def test_a_head_403_that_the_probes_do_not_repeat_is_retried(world, load_handler):
    bucket = world.bucket("passing-bucket")
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x")
    event = world.event()
    handler = load_handler()
    forbid_checksum_head(handler.s3)  # the probes, without ChecksumMode, both read
    assert handler.handler(event, LambdaContext())["batchItemFailures"] != []
    assert world.log_rows() == []


def test_a_conditional_write_policy_refusing_the_copy_is_permanent_and_alerted(world, load_handler, alert_inbox):  # noqa: F811
    topic, read_alerts = alert_inbox
    bucket = world.bucket("conditional-bucket")
    world.map(bucket, "t/", world.key("t"), dsse=True)
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x")
    handler = load_handler(ALERT_TOPIC_ARN=topic)
    handler.s3.meta.events.register("before-call.s3.CopyObject", failing("NotImplemented", 501, "CopyObject",
                                                                         "A header you provided implies functionality that is not implemented"))
    calls = calls_of(handler.s3)
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert row["outcome"] == "failed" and "conditional writes" in row["action_reason"]
    copies = [params for name, params in calls if name == "CopyObject"]
    assert len(copies) == 1 and copies[0]["IfMatch"]  # sent once, and never without its condition
    assert len(read_alerts()) == 1


def replicate(world, client, bucket, prefix="t/", sse_kms="Enabled"):
    """Give ``bucket`` a replication rule, and ``client`` S3's full answer for it.

    moto (5.1) keeps the rule but answers GetBucketReplication with ``Filter`` reset to
    ``{"Prefix": ""}`` and without ``SourceSelectionCriteria``; the answer below is the
    documented shape (S3 API Reference, GetBucketReplication), given to the client as S3
    would send it.
    """
    configuration = config(rule("dr", sse_kms=sse_kms, Priority=1, Filter={"Prefix": prefix},
                                DeleteMarkerReplication={"Status": "Disabled"}))
    world.s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=configuration)

    def answer(**_):  # each test has one replicating bucket
        return SimpleNamespace(status_code=200, headers={}), {
            "ReplicationConfiguration": configuration, "ResponseMetadata": {"HTTPStatusCode": 200}}

    client.meta.events.register("before-call.s3.GetBucketReplication", answer)


def test_a_replicated_prefix_is_copied_and_the_row_says_what_the_replica_gets(world, load_handler):
    bucket = world.bucket("replicated-bucket", versioned=True)
    world.map(bucket, "t/", world.key("t"))
    world.map(bucket, "u/", world.key("u"))
    handler = load_handler(OLD_VERSION_ACTION="keep")
    replicate(world, handler.s3, bucket)
    calls = calls_of(handler.s3)
    for batch in (["t/a", "u/a"], ["t/b", "u/b"]):
        for key in batch:
            world.s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
        world.drain()
    assert names(calls).count("GetBucketReplication") == 1  # once per bucket per container
    rows = {r["s3_object_path"].split("/", 3)[3].split("?")[0]: r for r in world.log_rows()}
    for key in ("t/a", "t/b"):
        assert rows[key]["method"] == "copy" and "replicates" in rows[key]["fallback"]
        assert rows[key]["replica"] == f"replicated by rule 'dr' to arn:aws:s3:::dr, encrypted there with {NEW_KEY}"
    for key in ("u/a", "u/b"):
        assert rows[key]["method"] == "update-object-encryption" and "replica" not in rows[key]


def test_a_rule_without_kms_objects_is_logged_as_not_replicating_the_copy(world, load_handler):
    bucket = world.bucket("kms-skipping-bucket", versioned=True)
    world.map(bucket, "t/", world.key("t"))
    handler = load_handler()
    replicate(world, handler.s3, bucket, sse_kms="Disabled")
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x")
    handler.handler(world.event(), LambdaContext())
    (row,) = world.log_rows()
    assert row["method"] == "copy" and row["replica"].startswith("not replicated at all")


def test_an_unreadable_replication_configuration_copies_without_failing(world, load_handler):
    bucket = world.bucket("unreadable-bucket")
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x")
    handler = load_handler()
    handler.s3.meta.events.register("before-call.s3.GetBucketReplication",
                                    failing("AccessDenied", 403, "GetBucketReplication", "Access Denied"))
    assert handler.handler(world.event(), LambdaContext()) == {"batchItemFailures": []}
    (row,) = world.log_rows()
    assert (row["outcome"], row["method"]) == ("rekeyed", "copy")
    assert row["replica"].startswith("replication unknown") and "s3:GetReplicationConfiguration" in row["replica"]


def test_compliant_objects_cost_no_replication_read(world, load_handler):
    bucket = world.bucket("quiet-bucket")
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"x", ServerSideEncryption="aws:kms",
                        SSEKMSKeyId=world.keys["t"], BucketKeyEnabled=True)
    handler = load_handler()
    calls = calls_of(handler.s3)
    handler.handler(world.event(), LambdaContext())
    assert names(calls) == ["HeadObject"] and world.log_rows()[0]["outcome"] == "compliant"


def test_the_blind_backfill_path_copies_a_replicated_prefix(world):
    bucket = world.bucket("blind-bucket", versioned=True, notify=False)
    world.map(bucket, "t/", world.key("t"))
    world.map(bucket, "u/", world.key("u"))
    s3 = world.enforcer_client("s3")
    replicate(world, s3, bucket)
    engine = Enforcer(s3, DynamoMappings(world.enforcer_client("dynamodb"), "mapping"))
    calls = calls_of(s3)
    for key in ("t/x", "u/x"):
        world.s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    replicated = engine.process_uninspected(ObjectRef(bucket, "t/x"))
    plain = engine.process_uninspected(ObjectRef(bucket, "u/x"))
    assert replicated.method.value == "copy" and plain.method.value == "update-object-encryption"
    assert names(calls).count("GetBucketReplication") == 1
    assert names(calls).count("UpdateObjectEncryption") == 1  # only the unreplicated one went blind
