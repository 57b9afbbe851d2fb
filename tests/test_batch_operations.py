"""The Lambda handler answering S3 Batch Operations (LambdaInvoke, invocation schema 2.0)
on patched moto: one result per task, keys decoded, failures classified."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import LambdaContext, failing

BUCKET = "bops-bucket"

# A task that ends in TemporaryFailure (or a rejected schema) journals nothing, so the
# invocation has no metric to publish and Powertools says so.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@pytest.fixture
def tenant(world):
    world.bucket(BUCKET, notify=False)
    world.map(BUCKET, "t/", world.key("t"))
    return world


@pytest.fixture
def one_object(tenant, load_handler):
    """The tenant bucket holding t/x (SSE-S3), and a handler: (world, handler)."""
    tenant.s3.put_object(Bucket=BUCKET, Key="t/x", Body=b"x")
    return tenant, load_handler()


def task(n: int, key: str, bucket: str = BUCKET, version_id: str | None = None, encode=quote_plus) -> dict:
    return {"taskId": f"task-{n}", "s3Bucket": bucket, "s3Key": encode(key, safe=""), "s3VersionId": version_id}


def invocation(*tasks: dict, schema: str = "2.0") -> dict:
    return {
        "invocationSchemaVersion": schema,
        "invocationId": "YXNkbGZqYWRmaiBhc2RmdW9hZHNmZGpmaGFzbGtkaGZza2RmaAo",
        "job": {"id": "job-0123", "userArguments": {}},
        "tasks": list(tasks),
    }


def results(answer: dict) -> dict[str, tuple[str, str]]:
    return {r["taskId"]: (r["resultCode"], r["resultString"]) for r in answer["results"]}


def run_task(handler, key: str = "t/x") -> tuple[str, str]:
    """One task through the handler: its (resultCode, resultString)."""
    return results(handler.handler(invocation(task(1, key)), LambdaContext()))["task-1"]


def sse(world, key, **kw):
    h = world.s3.head_object(Bucket=BUCKET, Key=key, **kw)
    return h.get("ServerSideEncryption"), h.get("SSEKMSKeyId")


def test_rekeyed_compliant_and_unmapped_tasks_succeed(tenant, load_handler):
    world = tenant
    handler = load_handler()
    world.s3.put_object(Bucket=BUCKET, Key="t/default", Body=b"x")
    world.s3.put_object(Bucket=BUCKET, Key="t/right", Body=b"x", ServerSideEncryption="aws:kms",
                        SSEKMSKeyId=world.keys["t"])
    world.s3.put_object(Bucket=BUCKET, Key="elsewhere/x", Body=b"x")
    got = {}
    # Batch Operations sends one task per invocation.
    for n, key in enumerate(("t/default", "t/right", "elsewhere/x"), start=1):
        event = invocation(task(n, key))
        answer = handler.handler(event, LambdaContext())
        assert answer["invocationSchemaVersion"] == "2.0"
        assert answer["invocationId"] == event["invocationId"]
        assert answer["treatMissingKeysAs"] == "PermanentFailure"
        got.update(results(answer))

    assert {code for code, _ in got.values()} == {"Succeeded"}
    assert got["task-1"][1].startswith("rekeyed:") and "Incorrect SSE type" in got["task-1"][1]
    assert got["task-2"][1].startswith("compliant:")
    assert got["task-3"][1].startswith("unmapped:")
    assert sse(world, "t/default") == ("aws:kms", world.keys["t"])
    assert sse(world, "elsewhere/x") == ("AES256", None)
    rows = {r["s3_object_path"]: r for r in world.log_rows()}
    assert rows[f"s3://{BUCKET}/t/default"]["outcome"] == "rekeyed"
    assert len(rows) == 3  # every task is journaled like an upload event


@pytest.mark.parametrize("encode", [quote_plus, quote], ids=["plus-for-space", "percent-20-for-space"])
@pytest.mark.parametrize("key", ["t/a b+c.txt", "t/100% done.txt", "t/k=v&x=y;z.csv", "t/naïve 日本語 🚀.bin"])
def test_url_encoded_keys_are_decoded(tenant, load_handler, key, encode):
    world = tenant
    handler = load_handler()
    world.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    raw = encode(key, safe="")
    assert raw != key
    answer = handler.handler(invocation(task(1, key, encode=encode)), LambdaContext())
    (code, message), = results(answer).values()
    assert code == "Succeeded" and message.startswith("rekeyed:"), message
    assert sse(world, key) == ("aws:kms", world.keys["t"])


def test_versioned_task_rekeys_that_version_in_place(world, load_handler):
    bucket = world.bucket("bops-versioned", versioned=True, notify=False)
    world.map(bucket, "t/", world.key("t"))
    old = world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"v1")["VersionId"]
    world.s3.put_object(Bucket=bucket, Key="t/x", Body=b"v2")
    handler = load_handler()
    answer = handler.handler(invocation(task(1, "t/x", bucket=bucket, version_id=old)), LambdaContext())
    assert results(answer)["task-1"][0] == "Succeeded"
    h = world.s3.head_object(Bucket=bucket, Key="t/x", VersionId=old)
    assert h["SSEKMSKeyId"] == world.keys["t"]
    assert len(world.s3.list_object_versions(Bucket=bucket)["Versions"]) == 2  # no new version


def test_sse_c_object_is_a_permanent_failure(tenant, load_handler):
    world = tenant
    handler = load_handler()
    world.s3.put_object(Bucket=BUCKET, Key="t/customer", Body=b"x", SSECustomerAlgorithm="AES256",
                        SSECustomerKey=b"k" * 32)
    code, message = run_task(handler, "t/customer")
    assert code == "PermanentFailure"
    assert message.startswith("sse-c:") and "customer-provided key" in message


def test_missing_grant_on_head_is_a_permanent_failure(one_object):
    world, handler = one_object

    # HEAD and the probe GET both denied: a missing S3 grant, not a transient 403.
    handler.s3.meta.events.register("before-call.s3.HeadObject", failing("403", 403, "HeadObject", "Forbidden"))
    handler.s3.meta.events.register("before-call.s3.GetObject", failing("AccessDenied", 403, "GetObject", "Access Denied"))
    code, message = run_task(handler)
    assert code == "PermanentFailure" and message.startswith("access-denied:")


def test_a_kms_denial_of_the_update_falls_back_to_a_copy(one_object):
    world, handler = one_object

    denied = failing("KMS.AccessDeniedException", 403, "UpdateObjectEncryption", "not authorized to kms:Encrypt")
    handler.s3.meta.events.register("before-call.s3.UpdateObjectEncryption", denied)
    code, _ = run_task(handler)
    assert code == "Succeeded"
    assert sse(world, "t/x")[0] == "aws:kms"


def test_missing_kms_grant_for_the_copy_too_is_a_permanent_failure(one_object):
    world, handler = one_object

    update = failing("KMS.AccessDeniedException", 403, "UpdateObjectEncryption", "not authorized to kms:Encrypt")
    copy = failing("AccessDenied", 403, "CopyObject", "User is not authorized to perform: kms:GenerateDataKey")
    handler.s3.meta.events.register("before-call.s3.UpdateObjectEncryption", update)
    handler.s3.meta.events.register("before-call.s3.CopyObject", copy)
    code, message = run_task(handler)
    assert code == "PermanentFailure" and "kms:" in message
    assert sse(world, "t/x") == ("AES256", None)


def test_throttling_is_a_temporary_failure_retried_by_the_job(tenant, load_handler):
    world = tenant
    handler = load_handler()
    world.s3.put_object(Bucket=BUCKET, Key="t/throttled", Body=b"x")
    world.s3.put_object(Bucket=BUCKET, Key="t/fine", Body=b"x")

    throttle = failing("SlowDown", 503, "HeadObject", "Please reduce your request rate.",
                       when=lambda params: params.get("Key") == "t/throttled")
    handler.s3.meta.events.register("before-parameter-build.s3.HeadObject", throttle)
    got = {}
    for n, key in enumerate(("t/throttled", "t/fine"), start=1):
        got.update(results(handler.handler(invocation(task(n, key)), LambdaContext())))
    assert got["task-1"][0] == "TemporaryFailure" and "SlowDown" in got["task-1"][1]
    assert got["task-2"][0] == "Succeeded"
    assert sse(world, "t/throttled") == ("AES256", None)
    assert sse(world, "t/fine") == ("aws:kms", world.keys["t"])


def test_schema_1_0_is_answered_with_a_clear_permanent_failure(one_object):
    world, handler = one_object
    event = {
        "invocationSchemaVersion": "1.0",
        "invocationId": "inv-1",
        "job": {"id": "job-1"},
        "tasks": [{"taskId": "task-1", "s3Key": "t/x", "s3VersionId": None, "s3BucketArn": f"arn:aws:s3:::{BUCKET}"}],
    }
    answer = handler.handler(event, LambdaContext())
    assert answer["invocationSchemaVersion"] == "1.0"
    (code, message), = results(answer).values()
    assert code == "PermanentFailure"
    assert "schema 1.0 is not supported" in message and "InvocationSchemaVersion 2.0" in message
    assert sse(world, "t/x") == ("AES256", None)  # nothing was touched


def test_task_whose_log_row_is_lost_is_a_temporary_failure(one_object):
    world, handler = one_object

    table_unavailable = failing("InternalServerError", 500, "BatchWriteItem", "try again")
    handler.dynamodb.meta.events.register("before-call.dynamodb.BatchWriteItem", table_unavailable)
    code, message = run_task(handler)
    assert code == "TemporaryFailure"
    assert "log-table row could not be written" in message and "rekeyed:" in message
    assert world.log_rows() == []
    assert sse(world, "t/x") == ("aws:kms", world.keys["t"])  # the re-key itself happened

    handler.dynamodb.meta.events.unregister("before-call.dynamodb.BatchWriteItem", table_unavailable)
    code, message = run_task(handler)
    assert code == "Succeeded" and message.startswith("compliant:")  # the job's retry journals it
    assert [r["outcome"] for r in world.log_rows()] == ["compliant"]
