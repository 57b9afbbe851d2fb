"""``ops backfill --batch-operations`` / ``--status``: the exact s3control requests.

moto has no s3control jobs, so CreateJob, ListJobs and DescribeJob go through
botocore's Stubber, which also validates every request and response against the
service model: a wrong member name or shape fails here, as it would against AWS.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
import typer
from botocore.stub import ANY, Stubber
from typer.testing import CliRunner

from enforcer.mapping import Mapping
from ops import aws, batch_jobs
from ops.backfill import backfill_command
from ops.sources import InputError

ACCOUNT = "123456789012"
BUCKET = "tenant-data"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/s3-prefix-keys-batch"
FUNCTION = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:s3-prefix-keys-enforcer"
K1 = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/11111111-1111-4111-8111-111111111111"
K2 = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/22222222-2222-4222-8222-222222222222"
K3 = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/33333333-3333-4333-8333-333333333333"
REPORT = {
    "Bucket": "arn:aws:s3:::ops-reports",
    "Prefix": "s3-prefix-keys/batch-operations",
    "Format": "Report_CSV_20180820",
    "Enabled": True,
    "ReportScope": "AllTasks",
}
MANIFEST_OUTPUT = {
    "Bucket": "arn:aws:s3:::ops-reports",
    "ManifestPrefix": "s3-prefix-keys/batch-operations/manifests",
    "ManifestFormat": "S3InventoryReport_CSV_20211130",
}


def mappings() -> list[Mapping]:
    return [
        Mapping.from_row({"bucket_name": BUCKET, "prefix": "a/", "kms_key_arn": K1}),
        Mapping.from_row({"bucket_name": BUCKET, "prefix": "a/b/", "kms_key_arn": K2}),
        Mapping.from_row({"bucket_name": BUCKET, "prefix": "c/", "kms_key_arn": K3, "dual_layer_encryption": True}),
    ]


def options(**overrides) -> batch_jobs.JobOptions:
    values = {"account_id": ACCOUNT, "role_arn": ROLE, "report_bucket": "ops-reports", "function_arn": FUNCTION}
    values.update(overrides)
    return batch_jobs.JobOptions(**values)


def lambda_job(prefix: str) -> dict:
    return {
        "AccountId": ACCOUNT,
        "ConfirmationRequired": True,
        "ClientRequestToken": ANY,
        "Description": f"s3-prefix-keys backfill s3://{BUCKET}/{prefix} LambdaInvoke",
        "Priority": 10,
        "RoleArn": ROLE,
        "Report": REPORT,
        "Operation": {"LambdaInvoke": {"FunctionArn": FUNCTION, "InvocationSchemaVersion": "2.0"}},
        "ManifestGenerator": {
            "S3JobManifestGenerator": {
                "SourceBucket": f"arn:aws:s3:::{BUCKET}",
                "ManifestOutputLocation": MANIFEST_OUTPUT,
                "Filter": {"KeyNameConstraint": {"MatchAnyPrefix": [prefix]}},
                "EnableManifestOutput": True,
            }
        },
    }


@pytest.fixture
def s3control():
    client = boto3.client("s3control", region_name="us-east-1")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


# -- CreateJob -----------------------------------------------------------------------


def test_one_lambda_job_per_outer_prefix_and_update_encryption_where_provably_enough(s3control):
    client, stub = s3control
    jobs, skipped = batch_jobs.plan_jobs(BUCKET, mappings(), options(update_encryption_jobs=True))

    stub.add_response("create_job", {"JobId": "job-a"}, lambda_job("a/"))
    stub.add_response("create_job", {"JobId": "job-c"}, lambda_job("c/"))
    stub.add_response("create_job", {"JobId": "job-ab-uoe"}, {
        "AccountId": ACCOUNT,
        "ConfirmationRequired": True,
        "ClientRequestToken": ANY,
        "Description": f"s3-prefix-keys backfill s3://{BUCKET}/a/b/ S3UpdateObjectEncryption",
        "Priority": 10,
        "RoleArn": ROLE,
        "Report": REPORT,
        "Operation": {
            "S3UpdateObjectEncryption": {"ObjectEncryption": {"SSEKMS": {"KMSKeyArn": K2, "BucketKeyEnabled": True}}}
        },
        "ManifestGenerator": {
            "S3JobManifestGenerator": {
                "SourceBucket": f"arn:aws:s3:::{BUCKET}",
                "ManifestOutputLocation": MANIFEST_OUTPUT,
                "Filter": {
                    "KeyNameConstraint": {"MatchAnyPrefix": ["a/b/"]},
                    "MatchAnyObjectEncryption": [{"SSES3": {}}],
                },
                "EnableManifestOutput": True,
            }
        },
    })
    created = batch_jobs.create_jobs(client, jobs)

    assert [c.job_id for c in created] == ["job-a", "job-c", "job-ab-uoe"]
    assert jobs[0].covers == ("a/", "a/b/")  # the engine applies a/b/'s key to its objects
    reasons = {(s.prefix, s.operation): s.reason for s in skipped}
    assert set(reasons) == {("a/", "S3UpdateObjectEncryption"), ("c/", "S3UpdateObjectEncryption")}
    assert "a/b/ are nested inside it" in reasons[("a/", "S3UpdateObjectEncryption")]
    assert "DSSE-KMS" in reasons[("c/", "S3UpdateObjectEncryption")]


def test_priority_confirmation_and_report_scope_are_passed_through(s3control):
    client, stub = s3control
    jobs, _ = batch_jobs.plan_jobs(BUCKET, mappings()[:1], options(
        priority=42, confirmation_required=False, report_scope="FailedTasksOnly", report_prefix="reports/x",
    ))
    expected = lambda_job("a/")
    expected.update(Priority=42, ConfirmationRequired=False)
    expected["Report"] = {**REPORT, "Prefix": "reports/x", "ReportScope": "FailedTasksOnly"}
    expected["ManifestGenerator"]["S3JobManifestGenerator"]["ManifestOutputLocation"] = {
        **MANIFEST_OUTPUT, "ManifestPrefix": "reports/x/manifests",
    }
    stub.add_response("create_job", {"JobId": "job-1"}, expected)
    batch_jobs.create_jobs(client, jobs)


def test_client_request_tokens_are_deterministic_per_job_and_run():
    def tokens(**kw):
        return [j.request["ClientRequestToken"] for j in batch_jobs.plan_jobs(BUCKET, mappings(), options(**kw))[0]]

    first = tokens(update_encryption_jobs=True)
    assert first == tokens(update_encryption_jobs=True)  # a repeated command creates no second job
    assert len(set(first)) == len(first)
    assert all(len(t) <= 64 for t in first)
    assert set(first).isdisjoint(tokens(update_encryption_jobs=True, run_id="second-pass"))


def test_inventory_manifest_job_covers_the_whole_inventory(s3control):
    client, stub = s3control
    uri = f"s3://inventory-bucket/{BUCKET}/daily/2026-01-01T01-00Z/manifest.json"
    jobs, skipped = batch_jobs.plan_jobs(
        BUCKET, mappings(), options(inventory_manifest=uri, inventory_manifest_etag="0123abcd", update_encryption_jobs=True)
    )
    stub.add_response("create_job", {"JobId": "job-inv"}, {
        "AccountId": ACCOUNT,
        "ConfirmationRequired": True,
        "ClientRequestToken": ANY,
        "Description": f"s3-prefix-keys backfill s3://{BUCKET} (inventory) LambdaInvoke",
        "Priority": 10,
        "RoleArn": ROLE,
        "Report": REPORT,
        "Operation": {"LambdaInvoke": {"FunctionArn": FUNCTION, "InvocationSchemaVersion": "2.0"}},
        "Manifest": {
            "Spec": {"Format": "S3InventoryReport_CSV_20161130"},
            "Location": {
                "ObjectArn": f"arn:aws:s3:::inventory-bucket/{BUCKET}/daily/2026-01-01T01-00Z/manifest.json",
                "ETag": "0123abcd",
            },
        },
    })
    batch_jobs.create_jobs(client, jobs)
    assert jobs[0].covers == ("a/", "a/b/", "c/")
    # An inventory cannot be filtered to SSE-S3 objects, so nothing is provably UOE-safe.
    assert {s.prefix for s in skipped} == {"a/", "a/b/", "c/"}
    assert all("generated manifest" in s.reason for s in skipped if s.prefix == "a/b/")


def test_inventory_manifest_is_checked_against_the_bucket(world):
    world.s3.create_bucket(Bucket="inventory-bucket")
    key = f"{BUCKET}/daily/2026-01-01T01-00Z/manifest.json"
    manifest = {"sourceBucket": BUCKET, "fileFormat": "CSV", "files": []}
    etag = world.s3.put_object(Bucket="inventory-bucket", Key=key, Body=json.dumps(manifest))["ETag"].strip('"')
    uri = f"s3://inventory-bucket/{key}"
    assert batch_jobs.resolve_inventory_manifest(world.s3, uri, BUCKET, None) == etag
    assert batch_jobs.resolve_inventory_manifest(world.s3, uri, BUCKET, f'"{etag}"') == etag
    with pytest.raises(InputError, match="not 'other-bucket'"):
        batch_jobs.resolve_inventory_manifest(world.s3, uri, "other-bucket", None)
    with pytest.raises(InputError, match="the manifest changed"):
        batch_jobs.resolve_inventory_manifest(world.s3, uri, BUCKET, "stale")
    with pytest.raises(InputError, match="not an s3://"):
        batch_jobs.resolve_inventory_manifest(world.s3, "inventory-bucket/manifest.json", BUCKET, None)


def test_update_encryption_jobs_alone_need_no_function():
    jobs, _ = batch_jobs.plan_jobs(BUCKET, mappings(), options(function_arn=None, update_encryption_jobs=True))
    assert [(j.prefix, j.operation) for j in jobs] == [("a/b/", "S3UpdateObjectEncryption")]


OTHER_ACCOUNT = "210987654321"
FOREIGN_KEY = f"arn:aws:kms:us-east-1:{OTHER_ACCOUNT}:key/44444444-4444-4444-8444-444444444444"


def test_no_update_encryption_job_for_another_accounts_key():
    # S3 answers UpdateObjectEncryption with a key of another account AccessDenied
    # ("must be owned by the same account as the bucket"): such a job would fail every task.
    rows = [*mappings(), Mapping.from_row({"bucket_name": BUCKET, "prefix": "x/", "kms_key_arn": FOREIGN_KEY})]
    jobs, skipped = batch_jobs.plan_jobs(BUCKET, rows, options(update_encryption_jobs=True))
    assert [(j.prefix, j.operation) for j in jobs] == [
        ("a/", "LambdaInvoke"), ("c/", "LambdaInvoke"), ("x/", "LambdaInvoke"), ("a/b/", "S3UpdateObjectEncryption"),
    ]
    reason = next(s.reason for s in skipped if s.prefix == "x/")
    assert f"account {OTHER_ACCOUNT}, not to the bucket owner {ACCOUNT}" in reason
    assert FOREIGN_KEY not in batch_jobs.required_role_policy(jobs, rows, options(update_encryption_jobs=True))[
        "Statement"][-1]["Resource"]


def test_bucket_owner_other_than_the_job_account_decides_which_keys_fit():
    rows = [Mapping.from_row({"bucket_name": BUCKET, "prefix": "x/", "kms_key_arn": FOREIGN_KEY}),
            Mapping.from_row({"bucket_name": BUCKET, "prefix": "y/", "kms_key_arn": K1})]
    jobs, skipped = batch_jobs.plan_jobs(
        BUCKET, rows, options(function_arn=None, update_encryption_jobs=True, bucket_owner_account_id=OTHER_ACCOUNT)
    )
    assert [(j.prefix, j.operation) for j in jobs] == [("x/", "S3UpdateObjectEncryption")]
    assert [(s.prefix, f"not to the bucket owner {OTHER_ACCOUNT}" in s.reason) for s in skipped] == [("y/", True)]
    assert jobs[0].request["AccountId"] == ACCOUNT  # the job still runs in the caller's account


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"role_arn": ""}, "--role-arn is required"),
        ({"report_bucket": ""}, "--report-bucket is required"),
        ({"function_arn": None}, "--function-arn is required"),
        ({"report_scope": "Some"}, "--report-scope must be one of"),
    ],
)
def test_missing_settings_are_input_errors(overrides, message):
    with pytest.raises(InputError, match=message):
        batch_jobs.plan_jobs(BUCKET, mappings(), options(**overrides))


def test_role_policy_grants_exactly_what_the_jobs_use():
    opts = options(update_encryption_jobs=True)
    jobs, _ = batch_jobs.plan_jobs(BUCKET, mappings(), opts)
    policy = batch_jobs.required_role_policy(jobs, mappings(), opts)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["InvokeEnforcer"]["Resource"] == [FUNCTION, f"{FUNCTION}:*"]
    assert by_sid["GenerateManifest"]["Resource"] == [f"arn:aws:s3:::{BUCKET}"]
    assert by_sid["UpdateObjectEncryption"]["Resource"] == [f"arn:aws:s3:::{BUCKET}/a/b/*"]
    assert by_sid["UseMappedKeys"]["Resource"] == [K2]  # only the key of the UOE job's prefix
    assert "s3:PutObject" in by_sid["WriteReportsAndManifests"]["Action"]
    assert batch_jobs.TRUST_POLICY["Statement"][0]["Principal"] == {"Service": "batchoperations.s3.amazonaws.com"}


# -- status ---------------------------------------------------------------------------


def describe(job_id: str, status: str, prefix: str = "s3-prefix-keys/batch-operations") -> dict:
    return {
        "Job": {
            "JobId": job_id,
            "Description": f"s3-prefix-keys backfill s3://{BUCKET}/a/ LambdaInvoke",
            "Status": status,
            "Priority": 10,
            "ConfirmationRequired": True,
            "Operation": {"LambdaInvoke": {"FunctionArn": FUNCTION, "InvocationSchemaVersion": "2.0"}},
            "ProgressSummary": {
                "TotalNumberOfTasks": 3,
                "NumberOfTasksSucceeded": 2,
                "NumberOfTasksFailed": 1,
                "Timers": {"ElapsedTimeInActiveSeconds": 12},
            },
            "Report": {**REPORT, "Prefix": prefix},
            "RoleArn": ROLE,
            "CreationTime": datetime(2026, 1, 1, tzinfo=UTC),
        }
    }


def put_completion_report(s3, job_id: str, prefix: str = "s3-prefix-keys/batch-operations") -> None:
    s3.create_bucket(Bucket="ops-reports")
    results_key = f"{prefix}/job-{job_id}/results/0123.csv"
    rows = (
        f'{BUCKET},a%2Fone.txt,,succeeded,200,,"rekeyed: Incorrect SSE type. Was AES256 whereas it should have '
        'been aws:kms"\n'
        f'{BUCKET},a%2Ftwo+words.txt,,succeeded,200,,"compliant: Already using the correct key"\n'
        f'{BUCKET},a%2Fsecret.bin,,failed,400,PermanentFailure,"sse-c: Object is encrypted with a '
        'customer-provided key (SSE-C)"\n'
        # the column order the report manifest's ReportSchema announces
        f'{BUCKET},a%2Fdenied.bin,,failed,PermanentFailure,403,"access-denied: Access denied reading the object"\n'
    )
    s3.put_object(Bucket="ops-reports", Key=results_key, Body=rows)
    s3.put_object(Bucket="ops-reports", Key=f"{prefix}/job-{job_id}/manifest.json", Body=json.dumps({
        "Format": "Report_CSV_20180820",
        "ReportCreationDate": "2026-01-01T02:00:00.000Z",
        "Results": [{"TaskExecutionStatus": "succeeded", "Bucket": "ops-reports", "MD5Checksum": "x",
                     "Key": results_key}],
        "ReportSchema": "Bucket, Key, VersionId, TaskStatus, ErrorCode, HTTPStatusCode, ResultMessage",
    }))


def stub_listing(stub) -> None:
    stub.add_response("list_jobs", {
        "Jobs": [
            {"JobId": "job-ours", "Description": f"s3-prefix-keys backfill s3://{BUCKET}/a/ LambdaInvoke",
             "Operation": "LambdaInvoke", "Status": "Complete", "CreationTime": datetime(2026, 1, 1, tzinfo=UTC)},
            {"JobId": "job-foreign", "Description": "someone else's tagging job", "Operation": "S3PutObjectTagging",
             "Status": "Active", "CreationTime": datetime(2026, 1, 2, tzinfo=UTC)},
        ],
        "NextToken": "page-2",
    }, {"AccountId": ACCOUNT})
    stub.add_response("list_jobs", {"Jobs": []}, {"AccountId": ACCOUNT, "NextToken": "page-2"})


def test_status_reads_progress_and_the_completion_report(world, s3control):
    client, stub = s3control
    stub_listing(stub)
    stub.add_response("describe_job", describe("job-ours", "Complete"), {"AccountId": ACCOUNT, "JobId": "job-ours"})
    put_completion_report(world.s3, "job-ours")

    (status,) = batch_jobs.job_statuses(client, world.s3, ACCOUNT)

    assert (status.job_id, status.status, status.operation) == ("job-ours", "Complete", "LambdaInvoke")
    assert (status.total, status.succeeded, status.failed) == (3, 2, 1)
    assert dict(status.report.results) == {
        ("succeeded", "rekeyed"): 1, ("succeeded", "compliant"): 1, ("failed", "sse-c"): 1,
        ("failed", "access-denied"): 1,
    }
    secret, denied = status.report.failed
    assert (secret["key"], secret["error_code"], secret["http_status"]) == ("a/secret.bin", "PermanentFailure", "400")
    assert (denied["key"], denied["error_code"], denied["http_status"]) == ("a/denied.bin", "PermanentFailure", "403")
    assert status.report.location == "s3://ops-reports/s3-prefix-keys/batch-operations/job-job-ours/manifest.json"


def test_status_of_a_running_job_has_no_report_yet(world, s3control):
    client, stub = s3control
    stub.add_response("describe_job", describe("job-1", "Active"), {"AccountId": ACCOUNT, "JobId": "job-1"})
    (status,) = batch_jobs.job_statuses(client, world.s3, ACCOUNT, job_id="job-1")
    assert status.status == "Active" and status.report is None


# -- the command ------------------------------------------------------------------------


@pytest.fixture
def stubbed_cli(world, s3control, monkeypatch, tmp_path):
    """The command, with its s3control client replaced by the stubbed one (all else on moto)."""
    monkeypatch.chdir(tmp_path)
    client, stub = s3control
    real = aws.Target.client

    def client_for(self, service, **kw):
        return client if service == "s3control" else real(self, service, **kw)

    monkeypatch.setattr(aws.Target, "client", client_for)
    world.map(BUCKET, "a/", world.key("k1"))
    world.map(BUCKET, "c/", world.key("k3"), dsse=True)

    def run(*args: str):
        app = typer.Typer()
        app.command()(backfill_command)
        return CliRunner(env={"COLUMNS": "250"}).invoke(app, list(args))

    return run, stub


def test_command_creates_the_jobs_with_the_account_from_sts(stubbed_cli):
    run, stub = stubbed_cli
    for n in (1, 2):
        stub.add_response("create_job", {"JobId": f"job-{n}"}, {
            "AccountId": ACCOUNT, "ClientRequestToken": ANY, "ConfirmationRequired": True, "Description": ANY,
            "Priority": 10, "RoleArn": ROLE, "Report": REPORT, "Operation": ANY, "ManifestGenerator": ANY,
        })
    result = run("--bucket", BUCKET, "--mapping-table", "mapping", "--batch-operations", "--function-arn", FUNCTION,
                 "--role-arn", ROLE, "--report-bucket", "ops-reports")
    assert result.exit_code == 0, result.output
    assert "job-1" in result.stdout and "job-2" in result.stdout
    assert "update-job-status" in result.stdout  # how to confirm them


def test_command_dry_run_prints_requests_and_role_policy_without_creating(stubbed_cli):
    run, _ = stubbed_cli  # no stubbed response: any CreateJob would fail the command
    result = run("--bucket", BUCKET, "--mapping-table", "mapping", "--batch-operations", "--dry-run",
                 "--function-arn", FUNCTION, "--role-arn", ROLE, "--report-bucket", "ops-reports",
                 "--update-encryption-jobs")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout[result.stdout.index("{"):])
    assert [r["Description"].split()[-1] for r in doc["CreateJob requests"]] == [
        "LambdaInvoke", "LambdaInvoke", "S3UpdateObjectEncryption",
    ]
    assert doc["role trust policy"] == batch_jobs.TRUST_POLICY
    assert any(s["Sid"] == "UpdateObjectEncryption" for s in doc["role permissions policy"]["Statement"])


def test_command_dry_run_prints_why_a_cross_account_key_gets_no_update_encryption_job(stubbed_cli, world):
    run, _ = stubbed_cli
    world.map(BUCKET, "x/", FOREIGN_KEY)
    result = run("--bucket", BUCKET, "--mapping-table", "mapping", "--batch-operations", "--dry-run",
                 "--function-arn", FUNCTION, "--role-arn", ROLE, "--report-bucket", "ops-reports",
                 "--update-encryption-jobs")
    assert result.exit_code == 0, result.output
    plan = " ".join(result.stdout[:result.stdout.index("{")].split())
    assert f"skipped: the key belongs to account {OTHER_ACCOUNT}, not to the bucket owner {ACCOUNT}" in plan
    doc = json.loads(result.stdout[result.stdout.index("{"):])
    descriptions = [r["Description"] for r in doc["CreateJob requests"]]
    assert f"s3-prefix-keys backfill s3://{BUCKET}/x/ LambdaInvoke" in descriptions
    assert not any("/x/ S3UpdateObjectEncryption" in d for d in descriptions)


def test_command_bucket_owner_account_decides_which_keys_get_an_update_encryption_job(stubbed_cli, world):
    run, _ = stubbed_cli
    world.map(BUCKET, "x/", FOREIGN_KEY)
    result = run("--bucket", BUCKET, "--mapping-table", "mapping", "--batch-operations", "--dry-run",
                 "--function-arn", FUNCTION, "--role-arn", ROLE, "--report-bucket", "ops-reports",
                 "--update-encryption-jobs", "--bucket-owner-account-id", OTHER_ACCOUNT)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout[result.stdout.index("{"):])
    descriptions = [r["Description"] for r in doc["CreateJob requests"]]
    # The bucket is the other account's: its key fits, this account's key (a/) does not.
    assert f"s3-prefix-keys backfill s3://{BUCKET}/x/ S3UpdateObjectEncryption" in descriptions
    assert not any("/a/ S3UpdateObjectEncryption" in d for d in descriptions)


def test_command_status_shows_jobs_and_report(stubbed_cli, world):
    run, stub = stubbed_cli
    stub_listing(stub)
    stub.add_response("describe_job", describe("job-ours", "Complete"), {"AccountId": ACCOUNT, "JobId": "job-ours"})
    put_completion_report(world.s3, "job-ours")
    result = run("--status")
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    assert "job-ours" in out and "job-foreign" not in out
    assert "Completion report of job-ours" in out and "a/secret.bin" in out


def test_command_without_role_exits_2(stubbed_cli):
    run, _ = stubbed_cli
    result = run("--bucket", BUCKET, "--mapping-table", "mapping", "--batch-operations", "--function-arn", FUNCTION,
                 "--report-bucket", "ops-reports")
    assert result.exit_code == 2 and "--role-arn is required" in result.stderr


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:4610", "http://localhost:4566", "http://[::1]:4566"])
@pytest.mark.parametrize("args", [
    ("--status",),
    ("--bucket", BUCKET, "--mapping-table", "mapping", "--batch-operations", "--function-arn", FUNCTION,
     "--role-arn", ROLE, "--report-bucket", "ops-reports"),
])
def test_command_against_the_local_sandbox_says_batch_operations_is_not_emulated(world, monkeypatch, tmp_path,
                                                                                 endpoint, args):
    monkeypatch.chdir(tmp_path)
    world.map(BUCKET, "a/", world.key("k1"))
    calls = []
    monkeypatch.setattr(batch_jobs, "create_jobs", lambda *a: calls.append(a))
    monkeypatch.setattr(batch_jobs, "job_statuses", lambda *a, **k: calls.append(a))
    real = aws.Target.client
    # Everything but s3control on moto, so the command gets as far as the s3control client.
    monkeypatch.setattr(aws.Target, "client", lambda self, service, **kw: real(
        aws.Target(None if service != "s3control" else endpoint, self.region), service, **kw))
    app = typer.Typer()
    app.command()(backfill_command)
    result = CliRunner(env={"COLUMNS": "400"}).invoke(app, [*args, "--endpoint-url", endpoint])
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert "\n" not in message and "not emulated" in message
    assert f"python -m ops backfill --bucket BUCKET --mapping-table TABLE --endpoint-url {endpoint}" in message
    assert not calls


@pytest.mark.parametrize("endpoint", [None, "https://s3-control.eu-west-1.amazonaws.com", "http://10.0.0.5:4566",
                                      "http://127.example.com:4566"])
def test_aws_and_remote_endpoints_are_not_taken_for_the_sandbox(endpoint):
    client = boto3.client("s3control", region_name="eu-west-1", endpoint_url=endpoint)
    batch_jobs.require_batch_operations_endpoint(client)  # no InputError
