"""The journal's batching and retries, and the mapping table's paging and cache."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
from botocore.stub import Stubber

from enforcer.decision import Method, Outcome
from enforcer.engine import Result
from enforcer.events import ObjectRef
from enforcer.journal import BUCKET_INDEX_KEY, NO_ACTION, Journal
from enforcer.mapping import DynamoMappings, Mapping, StaticMappings, Target
from tests.conftest import LambdaContext

KEY = "arn:aws:kms:us-east-1:111122223333:key/11111111-1111-1111-1111-111111111111"
T0 = datetime(2026, 11, 22, 12, 0, 0, 123456, tzinfo=UTC)


def result(key="t/x", outcome=Outcome.COMPLIANT):
    return Result(ObjectRef("bkt", key), outcome, "Already using the correct key")


def stubbed(service):
    client = boto3.client(service, region_name="us-east-1")
    return client, Stubber(client)


def test_rows_are_written_25_per_call_and_unprocessed_items_are_resent():
    ddb, _ = stubbed("dynamodb")
    journal = Journal(ddb, "log", clock=lambda: T0, sleep=lambda s: None)
    for i in range(30):
        journal.add(f"m{i}", result(f"t/{i}"))
    sent = []

    def batch_write_item(RequestItems):
        items = RequestItems["log"]
        sent.append(len(items))
        if len(sent) == 1:  # DynamoDB throttles two of the first 25
            return {"UnprocessedItems": {"log": items[:2]}}
        return {"UnprocessedItems": {}}

    ddb.batch_write_item = batch_write_item
    assert journal.flush() == set()
    assert sent == [25, 2, 5]


def test_rows_that_never_get_written_fail_their_messages():
    ddb, _ = stubbed("dynamodb")
    journal = Journal(ddb, "log", clock=lambda: T0, sleep=lambda s: None, max_attempts=3)
    journal.add("m-ok", result("t/ok"))
    journal.add("m-lost", result("t/lost"))

    def always_unprocessed(RequestItems):
        lost = [r for r in RequestItems["log"] if r["PutRequest"]["Item"]["s3_object_path"]["S"].endswith("lost")]
        return {"UnprocessedItems": {"log": lost}}

    ddb.batch_write_item = always_unprocessed
    assert journal.flush() == {"m-lost"}


def test_two_rows_for_one_object_in_one_batch_get_distinct_sort_keys():
    ddb, _ = stubbed("dynamodb")
    journal = Journal(ddb, "log", clock=lambda: T0)
    a = journal.add("m1", result())
    b = journal.add("m2", result())
    assert a["s3_object_path"] == b["s3_object_path"]
    assert a["current_timestamp_utc"] != b["current_timestamp_utc"]
    assert a["current_timestamp_utc"] == "2026-11-22 12:00:00:123456+0000"  # the original's format


def test_rows_expire_after_the_retention():
    ddb, _ = stubbed("dynamodb")
    row = Journal(ddb, "log", retention_days=7, clock=lambda: T0).add("m", result())
    assert row["expires_at"] - int(T0.timestamp()) == 7 * 86400


def test_rows_carry_the_bucket_index_keys_and_the_mapped_prefix():
    ddb, _ = stubbed("dynamodb")
    mappings = StaticMappings([Mapping("bkt", "t/", Target("aws:kms", KEY, True)),
                               Mapping("bkt", "t/deep/", Target("aws:kms", KEY, True))])
    journal = Journal(ddb, "log", clock=lambda: T0, mappings=mappings)
    deep, shallow, unmapped = (journal.add("m", result(k)) for k in ("t/deep/x", "t/x", "u/x"))
    assert all(row[k] for row in (deep, shallow, unmapped) for k in BUCKET_INDEX_KEY)  # in the bucket-time index
    assert (deep["prefix"], shallow["prefix"]) == ("t/deep/", "t/")  # the longest mapped prefix, as enforced
    assert "prefix" not in unmapped and unmapped["bucket"] == "bkt"


def test_action_taken_is_a_real_value_for_a_no_op():
    ddb, _ = stubbed("dynamodb")
    journal = Journal(ddb, "log", clock=lambda: T0)
    assert journal.add("m", result()).get("action_taken") == NO_ACTION
    rekeyed = Result(ObjectRef("bkt", "t/y"), Outcome.REKEYED, "wrong key", Method.COPY)
    assert journal.add("m", rekeyed)["action_taken"] == rekeyed.action_taken != NO_ACTION


def test_mapping_query_is_paginated_and_cached():
    ddb, stub = stubbed("dynamodb")
    page = {"bucket_name": {"S": "bkt"}, "kms_key_arn": {"S": KEY}, "dual_layer_encryption": {"BOOL": False}}
    expected = {"TableName": "mapping", "KeyConditionExpression": "bucket_name = :b",
                "ExpressionAttributeValues": {":b": {"S": "bkt"}}, "ConsistentRead": False}
    stub.add_response("query", {"Items": [{**page, "prefix": {"S": "a/"}}],
                                "LastEvaluatedKey": {"bucket_name": {"S": "bkt"}, "prefix": {"S": "a/"}}}, expected)
    stub.add_response("query", {"Items": [{**page, "prefix": {"S": "a/b/"}}]},
                      {**expected, "ExclusiveStartKey": {"bucket_name": {"S": "bkt"}, "prefix": {"S": "a/"}}})
    now = [0.0]
    mappings = DynamoMappings(ddb, "mapping", cache_seconds=60, clock=lambda: now[0])
    with stub:
        assert mappings.lookup("bkt", "a/b/c").prefix == "a/b/"
        assert mappings.lookup("bkt", "a/x").prefix == "a/"
        now[0] = 59.0
        assert mappings.lookup("bkt", "zzz") is None  # still cached: no third response queued
    stub.assert_no_pending_responses()


def test_disabled_metrics_do_not_pile_up_across_invocations(world, load_handler, monkeypatch):
    # The sandbox runs the handler for hours with metrics disabled; Powertools then never
    # flushes, so whatever the handler adds stays in memory (and leaks into later tests).
    handler = load_handler()
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    bucket = world.bucket("quiet-bucket")
    world.map(bucket, "t/", world.key("t"))
    for n in range(3):
        world.s3.put_object(Bucket=bucket, Key=f"t/{n}", Body=b"x")
        handler.handler(world.event(), LambdaContext())
    assert handler.metrics.metric_set == {}


def test_handler_emits_outcome_and_method_metrics(world, load_handler, capsys):
    handler = load_handler()
    bucket = world.bucket("metrics-bucket")
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/a", Body=b"x")
    world.s3.put_object(Bucket=bucket, Key="u/b", Body=b"x")
    capsys.readouterr()
    handler.handler(world.event(), LambdaContext())
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    assert emf, "no EMF metrics were printed"
    blob = emf[-1]
    assert blob["outcome_rekeyed"] == [1.0] and blob["outcome_unmapped"] == [1.0]
    assert blob["method_update-object-encryption"] == [1.0]
