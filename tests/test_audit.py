"""``ops audit`` on patched moto: categories per prefix, offenders, formats, exit codes."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass

import pytest
import typer
from botocore.exceptions import ClientError
from rich.console import Console
from typer.testing import CliRunner

from enforcer.mapping import Mapping
from ops import sources
from ops.audit import audit_command
from ops.audit_report import Category
from ops.audit_run import mappings_in_scope, run_audit
from ops.terminal import ProgressSink, RichProgress, progress_bar

BUCKET = "audit-bucket"


@dataclass(frozen=True)
class Obj:
    key: str
    encryption: str  # how it is written: sse-s3 | kms:<key name> | dsse:<key name> | sse-c
    expected: Category


# Ground truth: each object is written the way its ``encryption`` says, and the audit
# must put it in ``expected``. Mapped: t1/ -> SSE-KMS k1, t2/ -> DSSE-KMS k2.
OBJECTS = [
    Obj("t1/ok-0", "kms:k1", Category.COMPLIANT),
    Obj("t1/ok-1", "kms:k1", Category.COMPLIANT),
    Obj("t1/other-key", "kms:k3", Category.WRONG_KEY),
    Obj("t1/dsse", "dsse:k1", Category.WRONG_TYPE),
    Obj("t1/default-0", "sse-s3", Category.UNENCRYPTED_OR_SSE_S3),
    Obj("t1/default-1", "sse-s3", Category.UNENCRYPTED_OR_SSE_S3),
    Obj("t1/customer", "sse-c", Category.SSE_C),
    Obj("t2/kms", "kms:k2", Category.WRONG_TYPE),
    Obj("t2/dsse-other", "dsse:k3", Category.WRONG_KEY),
    Obj("t2/ok", "dsse:k2", Category.COMPLIANT),
    Obj("elsewhere/a", "sse-s3", Category.UNMAPPED),
    Obj("elsewhere/b", "kms:k3", Category.UNMAPPED),
]


def write(world, bucket: str, obj: Obj) -> None:
    kind, _, key_name = obj.encryption.partition(":")
    extra = {}
    if kind == "kms":
        extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": world.key(key_name)}
    elif kind == "dsse":
        extra = {"ServerSideEncryption": "aws:kms:dsse", "SSEKMSKeyId": world.key(key_name)}
    elif kind == "sse-c":
        extra = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": b"k" * 32}
    world.s3.put_object(Bucket=bucket, Key=obj.key, Body=b"payload " + obj.key.encode(), **extra)


def expected_counts(prefix: str) -> Counter:
    return Counter(o.expected for o in OBJECTS if o.key.startswith(prefix))


def expected_offenders() -> set[str]:
    return {o.key for o in OBJECTS if o.expected not in (Category.COMPLIANT, Category.UNMAPPED)}


@pytest.fixture
def tenants(world):
    world.bucket(BUCKET, notify=False)
    world.map(BUCKET, "t1/", world.key("k1"))
    world.map(BUCKET, "t2/", world.key("k2"), dsse=True)
    for obj in OBJECTS:
        write(world, BUCKET, obj)
    return world


def table_mappings(world):
    return sources.mappings_from_table(world.ddb, "mapping")


def cli(*args: str):
    app = typer.Typer()
    app.command()(audit_command)
    return CliRunner(env={"COLUMNS": "250"}).invoke(app, list(args))


# -- the report ---------------------------------------------------------------------


def test_counts_every_category_per_mapped_prefix(tenants):
    report = run_audit(tenants.s3, table_mappings(tenants), BUCKET, concurrency=4)
    assert set(report.prefixes) == {"t1/", "t2/"}
    for prefix in ("t1/", "t2/"):
        assert +report.prefixes[prefix].counts == expected_counts(prefix), prefix
    assert report.unmapped == sum(o.expected is Category.UNMAPPED for o in OBJECTS)
    assert report.objects == len(OBJECTS)
    assert {f.key for f in report.offenders} == expected_offenders()
    assert report.exit_code == 1
    wrong_key = next(f for f in report.offenders if f.key == "t1/other-key")
    assert (wrong_key.kms_key_arn, wrong_key.target_kms_key_arn) == (tenants.keys["k3"], tenants.keys["k1"])
    assert wrong_key.method == "update-object-encryption"
    assert next(f for f in report.offenders if f.key == "t2/kms").method == "copy"


def test_prefix_limits_the_listing(tenants):
    report = run_audit(tenants.s3, table_mappings(tenants), BUCKET, prefix="t2/")
    assert list(report.prefixes) == ["t2/"]
    assert report.unmapped == 0
    assert report.objects == sum(o.key.startswith("t2/") for o in OBJECTS)


def test_a_mapped_prefix_without_objects_shows_zero(tenants):
    tenants.map(BUCKET, "t3/", tenants.key("k3"))  # mapped, nothing uploaded yet
    report = run_audit(tenants.s3, table_mappings(tenants), BUCKET)
    assert sorted(report.prefixes) == ["t1/", "t2/", "t3/"]
    assert (report.prefixes["t3/"].objects, report.prefixes["t3/"].target.kms_key_arn) == (0, tenants.keys["k3"])
    as_json = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--format", "json")
    t3 = next(p for p in json.loads(as_json.stdout)["prefixes"] if p["prefix"] == "t3/")
    assert (t3["objects"], t3["non_compliant"]) == (0, 0)
    table = cli("--bucket", BUCKET, "--mapping-table", "mapping")
    row = next(line for line in table.stdout.splitlines() if "t3/" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")][2:7] == ["0", "0", "0", "0", "0"]


@pytest.mark.parametrize(
    ("prefix", "shown"),
    [
        ("t3/", ["t3/"]),  # the audited prefix is itself mapped, and empty
        ("t1/sub/", ["t1/"]),  # inside t1/: its keys are t1/'s, none of them there
        ("t", ["t1/", "t2/", "t3/"]),
        ("elsewhere/", []),
    ],
)
def test_the_prefix_option_limits_the_empty_prefixes_shown_too(tenants, prefix, shown):
    tenants.map(BUCKET, "t3/", tenants.key("k3"))
    report = run_audit(tenants.s3, table_mappings(tenants), BUCKET, prefix=prefix)
    assert sorted(report.prefixes) == shown


def test_only_the_longest_mapping_around_the_prefix_applies():
    arn = "arn:aws:kms:us-east-1:123456789012:key/11111111-1111-4111-8111-111111111111"
    rows = [Mapping.from_row({"bucket_name": BUCKET, "prefix": p, "kms_key_arn": arn})
            for p in ("a/", "a/b/", "a/b/c/d/", "z/")]
    assert [m.prefix for m in mappings_in_scope(rows, "a/b/c/")] == ["a/b/c/d/", "a/b/"]
    assert [m.prefix for m in mappings_in_scope(rows, None)] == ["a/", "a/b/", "a/b/c/d/", "z/"]


def test_audit_writes_nothing(tenants):
    calls = []
    tenants.s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    run_audit(tenants.s3, table_mappings(tenants), BUCKET)
    # HeadBucket: botocore's region redirector probing after the SSE-C object's HEAD 400;
    # GetObject: the one-byte read that tells that 400 apart from an expired token.
    assert set(calls) <= {"ListObjectsV2", "HeadObject", "HeadBucket", "GetObject"}
    assert calls.count("GetObject") == sum(o.expected is Category.SSE_C for o in OBJECTS)
    assert calls.count("HeadObject") == sum(o.expected is not Category.UNMAPPED for o in OBJECTS)


def test_head_denied_and_throttled_objects_are_reported_not_fatal(tenants):
    # denied: HEAD and the one-byte GET probe both refused (a missing S3 grant);
    # flaky: only HEAD refused while GET reads, which no grant explains (a transient 403).
    denied, throttled, flaky = "t1/ok-0", "t1/ok-1", "t2/ok"

    def fail(params, **_):
        if params.get("Key") in (denied, flaky):
            raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"},
                               "ResponseMetadata": {"HTTPStatusCode": 403}}, "HeadObject")
        if params.get("Key") == throttled:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "slow down"},
                               "ResponseMetadata": {"HTTPStatusCode": 503}}, "HeadObject")

    def deny_get(params, **_):
        if params.get("Key") == denied:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                               "ResponseMetadata": {"HTTPStatusCode": 403}}, "GetObject")

    tenants.s3.meta.events.register("before-parameter-build.s3.HeadObject", fail)
    tenants.s3.meta.events.register("before-parameter-build.s3.GetObject", deny_get)
    report = run_audit(tenants.s3, table_mappings(tenants), BUCKET)
    by_key = {f.key: f for f in report.offenders}
    assert by_key[denied].category is Category.ACCESS_DENIED
    assert by_key[throttled].category is Category.ERROR and "SlowDown" in by_key[throttled].reason
    assert by_key[flaky].category is Category.ERROR
    assert report.prefixes["t1/"].counts[Category.COMPLIANT] == expected_counts("t1/")[Category.COMPLIANT] - 2


def test_versions_judges_noncurrent_versions_and_skips_delete_markers(world):
    bucket = world.bucket("audit-versioned", versioned=True, notify=False)
    world.map(bucket, "t/", world.key("k1"))
    kms = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": world.keys["k1"]}
    old = world.s3.put_object(Bucket=bucket, Key="t/doc", Body=b"v1")["VersionId"]  # SSE-S3, now noncurrent
    world.s3.put_object(Bucket=bucket, Key="t/doc", Body=b"v2", **kms)
    world.s3.put_object(Bucket=bucket, Key="t/deleted", Body=b"x", **kms)
    world.s3.delete_object(Bucket=bucket, Key="t/deleted")  # a delete marker on top
    mappings = table_mappings(world)

    current = run_audit(world.s3, mappings, bucket)
    assert current.objects == 1 and current.exit_code == 0

    every = run_audit(world.s3, mappings, bucket, versions=True)
    assert every.objects == 3  # two versions of t/doc, one of t/deleted; no delete marker
    (offender,) = every.offenders
    assert (offender.key, offender.version_id, offender.is_latest) == ("t/doc", old, False)
    assert offender.category is Category.UNENCRYPTED_OR_SSE_S3


def test_unversioned_bucket_with_versions_flag(tenants):
    report = run_audit(tenants.s3, table_mappings(tenants), BUCKET, versions=True)
    assert {f.key for f in report.offenders} == expected_offenders()


def test_max_objects_stops_early(tenants):
    report = run_audit(tenants.s3, table_mappings(tenants), BUCKET, max_objects=3)
    assert report.objects == 3 and report.truncated


# -- the command --------------------------------------------------------------------


def test_json_lists_every_offender_and_exits_1(tenants):
    result = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--format", "json", "--limit", "1")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert {o["key"] for o in doc["offenders"]} == expected_offenders()
    assert doc["non_compliant"] == len(expected_offenders())
    t1 = next(p for p in doc["prefixes"] if p["prefix"] == "t1/")
    assert t1["target"]["kms_key_arn"] == tenants.keys["k1"]
    for category, n in expected_counts("t1/").items():
        assert t1["counts"][str(category)] == n
    assert doc["unmapped"]["objects"] == sum(o.expected is Category.UNMAPPED for o in OBJECTS)


def test_csv_has_one_row_per_offender(tenants):
    result = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--format", "csv")
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["key"] for r in rows} == expected_offenders()
    expected = {o.key: str(o.expected) for o in OBJECTS}
    assert all(r["category"] == expected[r["key"]] for r in rows)
    assert "non-compliant" in result.stderr


def test_table_shows_counts_and_the_first_offenders(tenants):
    result = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--limit", "2")
    assert result.exit_code == 1
    assert f"first 2 of {len(expected_offenders())}" in result.stdout
    assert "t1/" in result.stdout and "(unmapped)" in result.stdout
    shown = [k for k in sorted(expected_offenders()) if k in result.stdout]
    assert shown == sorted(expected_offenders())[:2]


def test_exit_0_when_every_mapped_object_is_compliant(world):
    world.bucket(BUCKET, notify=False)
    world.map(BUCKET, "t1/", world.key("k1"))
    for obj in OBJECTS:
        if obj.expected in (Category.COMPLIANT, Category.UNMAPPED) and obj.key.startswith(("t1/", "elsewhere/")):
            write(world, BUCKET, obj)
    result = cli("--bucket", BUCKET, "--mapping-table", "mapping")
    assert result.exit_code == 0, result.output
    assert "All mapped objects are compliant" in result.stdout


def test_stack_config_gives_the_same_answer_as_the_table(tenants, tmp_path, monkeypatch):
    (tmp_path / "Pulumi.audit.yaml").write_text(
        "config:\n"
        "  aws:region: us-east-1\n"
        "  s3-prefix-keys:buckets:\n"
        f"    {BUCKET}:\n"
        "      prefixes:\n"
        "        t1/:\n"
        f"          kmsKeyArn: {tenants.keys['k1']}\n"
        "        t2/:\n"
        f"          kmsKeyArn: {tenants.keys['k2']}\n"
        "          dualLayer: true\n"
    )
    monkeypatch.setattr(sources, "STACK_ROOT", tmp_path)
    from_stack = cli("--bucket", BUCKET, "--stack", "audit", "--format", "json")
    from_table = cli("--bucket", BUCKET, "--mapping-table", "mapping", "--format", "json")
    assert from_stack.exit_code == from_table.exit_code == 1
    stack_doc, table_doc = json.loads(from_stack.stdout), json.loads(from_table.stdout)
    assert stack_doc["mappings_from"] == "stack audit"
    assert stack_doc["prefixes"] == table_doc["prefixes"]
    # The same offenders; each one's fix names the mappings' source it was audited with.
    fixes = {"stack": [o.pop("fix") for o in stack_doc["offenders"]],
             "table": [o.pop("fix") for o in table_doc["offenders"]]}
    assert stack_doc["offenders"] == table_doc["offenders"]
    assert all("--stack audit" in fix for fix in fixes["stack"] if "backfill" in fix)
    assert all("--mapping-table mapping" in fix for fix in fixes["table"] if "backfill" in fix)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bucket", "not-mapped", "--mapping-table", "mapping"], "has no prefix mappings in mapping table mapping"),
        (["--bucket", BUCKET, "--mapping-table", "no-such-table"], "mapping table 'no-such-table' does not exist"),
        (["--bucket", BUCKET, "--mapping-table", "mapping", "--stack", "dev"], "either --stack or --mapping-table"),
        (["--bucket", BUCKET, "--stack", "nosuchstack"], "Pulumi.nosuchstack.yaml: no such stack file"),
    ],
    ids=["unmapped-bucket", "missing-table", "two-sources", "missing-stack"],
)
def test_bad_input_exits_2_naming_the_problem(tenants, tmp_path, monkeypatch, args, message):
    monkeypatch.setattr(sources, "STACK_ROOT", tmp_path)
    result = cli(*args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_missing_bucket_exits_2(world):
    world.map("never-created", "t/", world.key("k1"))
    result = cli("--bucket", "never-created", "--mapping-table", "mapping")
    assert result.exit_code == 2
    assert "bucket 'never-created' does not exist" in result.stderr


def test_progress_bar_only_on_a_terminal():
    with progress_bar(Console(file=io.StringIO()), "x") as sink:
        assert type(sink) is ProgressSink
    terminal = io.StringIO()
    with progress_bar(Console(file=terminal, force_terminal=True), "Auditing") as sink:
        assert isinstance(sink, RichProgress)
        sink.listed(3)
        sink.done(3)
        sink.listing_finished()
    assert "Auditing" in terminal.getvalue() and "3/3" in terminal.getvalue()


# -- --all, --prefix that reaches nothing, 80 columns -------------------------------

SINGLE_BUCKET_KEYS = ["bucket", "prefix", "versions", "mappings_from", "objects", "truncated", "non_compliant",
                      "unmapped", "prefixes", "offenders", "kept_by_decision"]


@pytest.fixture
def two_buckets(tenants):
    tenants.bucket("audit-other", notify=False)
    tenants.map("audit-other", "t1/", tenants.key("k1"))
    write(tenants, "audit-other", Obj("t1/ok", "kms:k1", Category.COMPLIANT))
    write(tenants, "audit-other", Obj("t1/bad", "sse-s3", Category.UNENCRYPTED_OR_SSE_S3))
    return tenants


def test_all_audits_every_mapped_bucket(two_buckets):
    result = cli("--all", "--mapping-table", "mapping", "--format", "json")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert [b["bucket"] for b in doc["buckets"]] == ["audit-bucket", "audit-other"]
    # each bucket's entry is the single-bucket report, as `--bucket` prints it
    single = json.loads(cli("--bucket", BUCKET, "--mapping-table", "mapping", "--format", "json").stdout)
    assert list(single) == SINGLE_BUCKET_KEYS
    assert doc["buckets"][0] == single
    other = doc["buckets"][1]
    assert {o["key"] for o in other["offenders"]} == {"t1/bad"}
    assert doc["non_compliant"] == len(expected_offenders()) + 1
    assert doc["objects"] == len(OBJECTS) + 2

    rows = list(csv.DictReader(io.StringIO(cli("--all", "--mapping-table", "mapping", "--format", "csv").stdout)))
    assert Counter(r["bucket"] for r in rows) == {BUCKET: len(expected_offenders()), "audit-other": 1}

    table = cli("--all", "--mapping-table", "mapping")
    assert table.exit_code == 1
    row = next(line for line in table.stdout.splitlines() if "audit-other" in line and "%" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")] == ["audit-other", "2", "2", "1", "50.0%"]
    assert f"Audit of s3://{BUCKET}/" in table.stdout and "Audit of s3://audit-other/" in table.stdout


def test_all_from_the_stack_file(two_buckets, tmp_path, monkeypatch):
    (tmp_path / "Pulumi.two.yaml").write_text(
        "config:\n  aws:region: us-east-1\n  s3-prefix-keys:buckets:\n"
        + "".join(f"    {b}:\n      prefixes:\n        t1/:\n          kmsKeyArn: {two_buckets.keys['k1']}\n"
                  for b in (BUCKET, "audit-other"))
    )
    monkeypatch.setattr(sources, "STACK_ROOT", tmp_path)
    doc = json.loads(cli("--all", "--stack", "two", "--format", "json").stdout)
    assert [b["bucket"] for b in doc["buckets"]] == [BUCKET, "audit-other"]
    assert doc["mappings_from"] == "stack two"


def test_all_with_a_prefix_skips_the_buckets_it_does_not_reach(two_buckets):
    two_buckets.map("audit-other", "only-here/", two_buckets.key("k2"))
    doc = json.loads(cli("--all", "--prefix", "only-here/", "--mapping-table", "mapping", "--format", "json").stdout)
    assert [b["bucket"] for b in doc["buckets"]] == ["audit-other"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bucket", BUCKET, "--prefix", "elsewhere/"],
         "--prefix 'elsewhere/' matches no mapped prefix of bucket 'audit-bucket' (mapped: t1/, t2/)"),
        (["--all", "--prefix", "nothing/"], "--prefix 'nothing/' matches no mapped prefix in any of the 2 bucket(s)"),
        (["--all", "--bucket", BUCKET], "pass either --bucket NAME or --all"),
        ([], "pass either --bucket NAME or --all"),
    ],
    ids=["prefix-nothing", "all-prefix-nothing", "bucket-and-all", "neither"],
)
def test_an_audit_of_nothing_exits_2(two_buckets, args, message):
    result = cli(*args, "--mapping-table", "mapping")
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_all_with_an_empty_mapping_table_exits_2(world):
    result = cli("--all", "--mapping-table", "mapping")
    assert result.exit_code == 2
    assert "no bucket has mappings in mapping table mapping" in result.stderr


def test_at_80_columns_tables_wrap_instead_of_cutting(world):
    from ops.audit_render import render_table

    bucket = world.bucket("audit-narrow", notify=False)
    prefix = "tenants/a-very-long-tenant-name-that-is-wider-than-its-column/"
    world.map(bucket, prefix, world.key("k1"))
    key = prefix + "reports/2026/quarterly-figures-final.csv"
    world.s3.put_object(Bucket=bucket, Key=key, Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=b"k" * 32)
    report = run_audit(world.s3, table_mappings(world), bucket)
    (offender,) = report.offenders
    assert len(offender.reason) > 80  # the reason the table once cut at 80 characters
    out = io.StringIO()
    render_table(report, Console(file=out, width=80, color_system=None), limit=5)
    lines = out.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in out.getvalue()
    # every folded value reads back whole when a column's pieces are joined down the table
    columns = [text.replace(" ", "") for text in table_columns(lines)]
    for value in (prefix, key, offender.reason, offender.fix):
        assert any(value.replace(" ", "") in column for column in columns), value


def table_columns(lines: list[str]) -> list[str]:
    """Each column of each rich table in ``lines``, its cells' lines joined top to bottom."""
    tables: list[list[list[str]]] = []
    for line in lines:
        if line.lstrip().startswith(("┏", "┌")):
            tables.append([])
        elif tables and line.count("│") + line.count("┃") >= 2:
            tables[-1].append(re.split("[│┃]", line)[1:-1])
    return ["".join(row[i].strip() for row in rows if i < len(row)) for rows in tables for i in range(len(rows[0]))]


def test_help_at_80_columns_shows_every_option_whole():
    app = typer.Typer()
    app.command()(audit_command)
    result = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["--help"])
    assert result.exit_code == 0
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    for option in ("--bucket", "--all", "--prefix", "--versions", "--format", "--output", "--stack",
                   "--mapping-table", "--endpoint-url", "--region", "--concurrency", "--limit", "--max-objects"):
        assert re.search(rf"(^|\s){re.escape(option)}(\s|$)", result.stdout, re.M), option
