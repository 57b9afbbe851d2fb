"""``ops log`` against moto in-process: the bucket-time index Query, the Scan for rows
written before rows carried a bucket, the filters, the formats and the input errors."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws
from typer.testing import CliRunner

from enforcer.decision import Method, Outcome
from enforcer.engine import Result
from enforcer.events import ObjectRef
from enforcer.journal import NO_ACTION, Journal
from enforcer.mapping import Mapping, StaticMappings, Target
from ops import log_render
from ops.cli import app
from ops.lambda_runtime import create_tables
from ops.log_query import ROLLOUT_SLACK, LogFilter, read_log, stamp_of
from ops.sandbox.provisioning import add_bucket_index

KEY = "arn:aws:kms:us-east-1:111122223333:key/11111111-1111-1111-1111-111111111111"
NOW = datetime.now(UTC).replace(microsecond=0)
runner = CliRunner()


@pytest.fixture
def ddb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, "mapping", "log")
        add_bucket_index(client, "log")
        yield client


def calls(client, operation: str) -> list[dict]:
    seen: list[dict] = []
    client.meta.events.register(f"before-parameter-build.dynamodb.{operation}", lambda params, **_: seen.append(params))
    return seen


def write_new(ddb, bucket: str, key: str, when: datetime, outcome=Outcome.REKEYED) -> None:
    mappings = StaticMappings([Mapping(bucket, "t/", Target("aws:kms", KEY, True))])
    journal = Journal(ddb, "log", clock=lambda: when, mappings=mappings)
    method = Method.COPY if outcome is Outcome.REKEYED else None
    journal.add("m", Result(ObjectRef(bucket, key), outcome, "reason", method))
    assert journal.flush() == set()


def write_old(ddb, bucket: str, key: str, when: datetime, outcome="rekeyed") -> None:
    """A row as the journal wrote it before rows carried bucket and prefix."""
    ddb.put_item(TableName="log", Item={
        "s3_object_path": {"S": f"s3://{bucket}/{key}"},
        "current_timestamp_utc": {"S": stamp_of(when)},
        "outcome": {"S": outcome},
        "action_taken": {"S": "None"},
    })


def test_a_bucket_is_a_query_on_the_index_and_older_rows_are_scanned_and_counted(ddb):
    queries, scans = calls(ddb, "Query"), calls(ddb, "Scan")
    old = NOW - timedelta(days=3)
    write_old(ddb, "bkt", "t/old", old)
    write_old(ddb, "other", "t/old", old)
    for n in range(3):
        write_new(ddb, "bkt", f"t/new{n}", NOW - timedelta(hours=n))
    write_new(ddb, "other", "t/x", NOW)
    result = read_log(ddb, "log", "test", LogFilter(bucket="bkt"))
    paths = [r["s3_object_path"] for r in result.rows]
    assert paths == ["s3://bkt/t/new0", "s3://bkt/t/new1", "s3://bkt/t/new2", "s3://bkt/t/old"]  # newest first
    assert all(q["IndexName"] == "bucket-time" for q in queries)
    assert result.older_rows == 1 and len(scans) == 1
    assert "1 older rows without a bucket attribute were found by a Scan" in result.notes[0]
    assert result.rows[0]["bucket"] == "bkt" and result.rows[0]["prefix"] == "t/"


def test_no_scan_when_the_range_starts_after_the_buckets_first_indexed_row(ddb):
    scans = calls(ddb, "Scan")
    first = NOW - timedelta(days=2)
    write_old(ddb, "bkt", "t/old", first - timedelta(days=1))
    write_new(ddb, "bkt", "t/a", first)
    write_new(ddb, "bkt", "t/b", NOW)
    since = first + ROLLOUT_SLACK + timedelta(seconds=1)
    result = read_log(ddb, "log", "test", LogFilter(bucket="bkt", since=since))
    assert [r["s3_object_path"] for r in result.rows] == ["s3://bkt/t/b"]
    assert scans == [] and not result.scanned
    # Within the rollout's slack an old-code row may still come: then the Scan runs.
    read_log(ddb, "log", "test", LogFilter(bucket="bkt", since=first))
    assert len(scans) == 1


def test_a_full_page_of_newer_rows_needs_no_scan(ddb):
    scans = calls(ddb, "Scan")
    write_old(ddb, "bkt", "t/old", NOW - timedelta(days=5))
    write_new(ddb, "bkt", "t/a", NOW - timedelta(days=2))
    write_new(ddb, "bkt", "t/b", NOW)
    result = read_log(ddb, "log", "test", LogFilter(bucket="bkt", limit=1))
    assert [r["s3_object_path"] for r in result.rows] == ["s3://bkt/t/b"] and scans == []


def test_without_a_bucket_the_table_is_scanned_page_by_page_and_filtered(ddb):
    for n in range(30):
        write_old(ddb, f"b{n % 3}", f"t/{n}", NOW - timedelta(minutes=n), "failed" if n % 2 else "compliant")
    write_new(ddb, "b0", "u/new", NOW, Outcome.FAILED)
    pages = []
    flt = LogFilter(prefix="t/", outcome="failed", since=NOW - timedelta(minutes=20))
    real = ddb.get_paginator

    def small_pages(name):  # several pages, so that LastEvaluatedKey is followed
        paginator = real(name)
        paginate = paginator.paginate
        paginator.paginate = lambda **kw: paginate(**kw, PaginationConfig={"PageSize": 7})
        return paginator

    ddb.get_paginator = small_pages
    result = read_log(ddb, "log", "test", flt, progress=lambda scanned, matched: pages.append((scanned, matched)))
    expected = {f"t/{n}" for n in range(21) if n % 2}
    assert {r["s3_object_path"].split("/", 3)[3] for r in result.rows} == expected
    assert result.scanned and "no --bucket" in result.notes[0]
    assert len(pages) > 1 and pages[-1][1] == len(expected)


def test_no_ops_row_says_no_action_and_unmapped_rows_have_no_prefix(ddb):
    write_new(ddb, "bkt", "t/ok", NOW, Outcome.COMPLIANT)
    write_new(ddb, "bkt", "z/unmapped", NOW - timedelta(seconds=1), Outcome.UNMAPPED)
    rows = {r["s3_object_path"]: r for r in read_log(ddb, "log", "t", LogFilter(bucket="bkt")).rows}
    assert rows["s3://bkt/t/ok"]["action_taken"] == NO_ACTION
    assert "prefix" not in rows["s3://bkt/z/unmapped"]


def invoke(ddb, monkeypatch, *args):
    monkeypatch.setattr(log_render, "client", lambda target: ddb)
    return runner.invoke(app, ["log", "--log-table", "log", *args])


def test_json_and_csv_hold_the_same_rows(ddb, monkeypatch):
    write_old(ddb, "bkt", "t/old", NOW - timedelta(days=1))
    write_new(ddb, "bkt", "t/new", NOW)
    doc = json.loads(invoke(ddb, monkeypatch, "--bucket", "bkt", "--format", "json").stdout)
    assert doc["older_rows"] == 1 and len(doc["rows"]) == 2
    out = invoke(ddb, monkeypatch, "--bucket", "bkt", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [r["s3_object_path"] for r in rows] == [r["s3_object_path"] for r in doc["rows"]]
    assert rows[0]["bucket"] == "bkt" and rows[1]["bucket"] == ""
    table = invoke(ddb, monkeypatch, "--bucket", "bkt")
    assert table.exit_code == 0 and "s3://bkt/t/new" in table.stdout
    assert "1 older rows without a bucket attribute were found by a Scan" in table.stdout


@pytest.mark.parametrize("args,names", [
    (["--since", "yesterday"], "--since 'yesterday'"),
    (["--until", "7x"], "--until '7x'"),
    (["--outcome", "broken"], "--outcome 'broken'"),
    (["--since", "1h", "--until", "2h"], "--since"),
])
def test_bad_input_exits_2_with_one_line(ddb, monkeypatch, args, names):
    result = invoke(ddb, monkeypatch, *args)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in result.output
