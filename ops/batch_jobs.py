"""``ops backfill --batch-operations``: hand a bucket too large for one machine to S3
Batch Operations, one job per mapped prefix; ``--status`` tracks the jobs.

The default job invokes the deployed enforcer Lambda once per object (``LambdaInvoke``,
invocation schema 2.0, answered by ``enforcer/batch_operations.py``), so the engine
judges and re-keys each object exactly as on upload. Batch Operations' own copy
operation cannot replace it: its encryption filter only *selects* an encryption (it
cannot say "not this key"), and it copies at most 5 GB.

Where the cheaper ``S3UpdateObjectEncryption`` operation is provably enough, an extra
job per prefix can use it (``--update-encryption-jobs``): the target is SSE-KMS, the
generated manifest is filtered to SSE-S3 objects under the prefix, the key belongs to
the bucket owner's account (S3 refuses UpdateObjectEncryption with another account's
key), and no longer mapped prefix is nested inside it (its objects would get the wrong
key; the filter has no "exclude prefix"). Everything else stays with the Lambda job,
whose engine falls back to a copy for a cross-account key.

Pure request builders (``plan_jobs``, ``required_role_policy``) are separate from the
calls (``create_jobs``, ``job_statuses``), so the exact ``CreateJob`` requests are
tested with botocore's Stubber: moto has no s3control jobs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlparse

from botocore.exceptions import ClientError

from components.config import notification_prefixes
from enforcer.arns import account_of_key_arn
from enforcer.batch_operations import SUPPORTED_SCHEMA
from enforcer.decision import SSE_KMS
from enforcer.mapping import Mapping
from ops.sources import InputError

DESCRIPTION_PREFIX = "s3-prefix-keys backfill"
REPORT_FORMAT = "Report_CSV_20180820"
GENERATED_MANIFEST_FORMAT = "S3InventoryReport_CSV_20211130"
INVENTORY_MANIFEST_FORMAT = "S3InventoryReport_CSV_20161130"
LAMBDA_INVOKE = "LambdaInvoke"
UPDATE_ENCRYPTION = "S3UpdateObjectEncryption"
REPORT_SCOPES = ("AllTasks", "FailedTasksOnly")


@dataclass(frozen=True)
class JobOptions:
    account_id: str
    role_arn: str
    report_bucket: str
    function_arn: str | None = None
    report_prefix: str = "s3-prefix-keys/batch-operations"
    report_scope: str = "AllTasks"
    priority: int = 10
    confirmation_required: bool = True
    inventory_manifest: str | None = None  # s3://bucket/path/manifest.json
    inventory_manifest_etag: str | None = None
    update_encryption_jobs: bool = False
    # The account that owns the buckets; None: the job's own account (``account_id``),
    # the usual case. Only S3UpdateObjectEncryption cares: S3 refuses it with a key of
    # any other account.
    bucket_owner_account_id: str | None = None
    # Part of the idempotency token: the same command twice creates each job once; a
    # new run id creates new jobs (a second pass after fixing grants, say).
    run_id: str = ""
    partition: str = "aws"


@dataclass(frozen=True)
class PlannedJob:
    bucket: str
    prefix: str | None  # None: an inventory manifest job over the whole manifest
    operation: str
    request: dict[str, Any]  # the keyword arguments of s3control.create_job
    covers: tuple[str, ...] = ()  # mapped prefixes whose objects this job reaches


@dataclass(frozen=True)
class SkippedJob:
    prefix: str
    operation: str
    reason: str


def _is_local(endpoint_url: str) -> bool:
    host = (urlparse(endpoint_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def require_batch_operations_endpoint(s3control) -> None:
    """Refuse the local sandbox (any loopback endpoint) before the first s3control call.

    moto has no S3 Batch Operations jobs, and botocore's s3control model gives ListJobs,
    DescribeJob and CreateJob the host prefix ``{AccountId}.`` (so the request would go to
    ``http://123456789012.127.0.0.1:4566/...``, a host that does not resolve).
    """
    endpoint = s3control.meta.endpoint_url
    if _is_local(endpoint):
        raise InputError(
            # one line within the 200 columns of a non-terminal console (ops/terminal.py)
            f"S3 Batch Operations is not emulated by the sandbox ({endpoint}); instead run: "
            f"python -m ops backfill --bucket BUCKET --mapping-table TABLE --endpoint-url {endpoint}")


def s3_arn(bucket: str, partition: str = "aws") -> str:
    return f"arn:{partition}:s3:::{bucket}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise InputError(f"--inventory-manifest {uri!r} is not an s3://bucket/path/manifest.json URI")
    return parsed.netloc, parsed.path.lstrip("/")


def client_request_token(*parts: Any) -> str:
    """Deterministic, so a retried or repeated command does not create a second job."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()  # 64 chars


def _validate(options: JobOptions) -> None:
    if not options.role_arn:
        raise InputError("--role-arn is required with --batch-operations: the IAM role the jobs run as "
                         "(docs/backfill.md lists the policy it needs)")
    if not options.report_bucket:
        raise InputError("--report-bucket is required with --batch-operations: where completion reports go")
    if options.report_scope not in REPORT_SCOPES:
        raise InputError(f"--report-scope must be one of {', '.join(REPORT_SCOPES)}")
    if not 0 <= options.priority <= 2147483647:
        raise InputError("--priority must be between 0 and 2147483647")
    if options.inventory_manifest and not options.inventory_manifest_etag:
        raise InputError("an inventory manifest needs its ETag (--inventory-manifest-etag, or let the "
                         "command read it from S3)")


def _common(options: JobOptions, bucket: str, prefix: str | None, operation: str, detail: Any) -> dict[str, Any]:
    where = f"s3://{bucket}/{prefix}" if prefix is not None else f"s3://{bucket} (inventory)"
    return {
        "AccountId": options.account_id,
        "ConfirmationRequired": options.confirmation_required,
        "ClientRequestToken": client_request_token(
            options.account_id, bucket, prefix, operation, detail, options.inventory_manifest,
            options.inventory_manifest_etag, options.run_id,
        ),
        "Description": f"{DESCRIPTION_PREFIX} {where} {operation}"[:256],
        "Priority": options.priority,
        "RoleArn": options.role_arn,
        "Report": {
            "Bucket": s3_arn(options.report_bucket, options.partition),
            "Prefix": options.report_prefix,
            "Format": REPORT_FORMAT,
            "Enabled": True,
            "ReportScope": options.report_scope,
        },
    }


def _generated_manifest(
    options: JobOptions, bucket: str, prefix: str, encryption: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    filt: dict[str, Any] = {"KeyNameConstraint": {"MatchAnyPrefix": [prefix]}}
    if encryption:
        filt["MatchAnyObjectEncryption"] = encryption
    return {
        "S3JobManifestGenerator": {
            "SourceBucket": s3_arn(bucket, options.partition),
            # Kept next to the reports: the exact object list a job ran on is evidence.
            "ManifestOutputLocation": {
                "Bucket": s3_arn(options.report_bucket, options.partition),
                "ManifestPrefix": f"{options.report_prefix}/manifests",
                "ManifestFormat": GENERATED_MANIFEST_FORMAT,
            },
            "Filter": filt,
            "EnableManifestOutput": True,
        }
    }


def _lambda_operation(options: JobOptions) -> dict[str, Any]:
    return {"LambdaInvoke": {"FunctionArn": options.function_arn, "InvocationSchemaVersion": SUPPORTED_SCHEMA}}


def update_encryption_problem(
    mapping: Mapping, mappings: list[Mapping], inventory: bool, bucket_owner: str
) -> str | None:
    """Why an S3UpdateObjectEncryption job would not be provably right for this prefix."""
    if mapping.problem:
        return f"the mapping is unusable: {mapping.problem}"
    if mapping.target.sse_type != SSE_KMS:
        return "the target is DSSE-KMS; UpdateObjectEncryption can only write SSE-KMS"
    owner = account_of_key_arn(mapping.target.kms_key_arn)
    if owner != bucket_owner:
        return (
            f"the key belongs to account {owner}, not to the bucket owner {bucket_owner}, and S3 refuses "
            "UpdateObjectEncryption with another account's key; the LambdaInvoke job (--function-arn) "
            "re-keys them by copy"
        )
    if inventory:
        return "an inventory manifest cannot be filtered to SSE-S3 objects; only a generated manifest can"
    nested = sorted(m.prefix for m in mappings if m.prefix != mapping.prefix and m.prefix.startswith(mapping.prefix))
    if nested:
        return (
            f"mapped prefix(es) {', '.join(nested)} are nested inside it and the manifest filter cannot "
            "exclude them, so their objects would get this prefix's key"
        )
    return None


def plan_jobs(bucket: str, mappings: list[Mapping], options: JobOptions) -> tuple[list[PlannedJob], list[SkippedJob]]:
    """The CreateJob requests for ``bucket``: LambdaInvoke per (outermost) mapped prefix, or one
    over an inventory manifest; plus S3UpdateObjectEncryption jobs where they are enough."""
    _validate(options)
    if not mappings:
        raise InputError(f"bucket {bucket!r} has no mappings; nothing to hand to Batch Operations")
    jobs: list[PlannedJob] = []
    skipped: list[SkippedJob] = []
    mapped = sorted(m.prefix for m in mappings)
    if options.function_arn:
        if options.inventory_manifest:
            manifest_bucket, manifest_key = parse_s3_uri(options.inventory_manifest)
            request = _common(options, bucket, None, LAMBDA_INVOKE, options.function_arn)
            request["Operation"] = _lambda_operation(options)
            request["Manifest"] = {
                "Spec": {"Format": INVENTORY_MANIFEST_FORMAT},
                "Location": {
                    "ObjectArn": f"{s3_arn(manifest_bucket, options.partition)}/{manifest_key}",
                    "ETag": options.inventory_manifest_etag,
                },
            }
            # The enforcer skips unmapped keys without an S3 call, so one job over the
            # whole inventory costs only the invocations of unmapped objects.
            jobs.append(PlannedJob(bucket, None, LAMBDA_INVOKE, request, tuple(mapped)))
        else:
            # Nested prefixes fold into their parent: one job reaches both, and the engine
            # applies the longest mapped prefix to each object.
            for prefix in notification_prefixes(mapped):
                request = _common(options, bucket, prefix, LAMBDA_INVOKE, options.function_arn)
                request["Operation"] = _lambda_operation(options)
                request["ManifestGenerator"] = _generated_manifest(options, bucket, prefix)
                covers = tuple(p for p in mapped if p.startswith(prefix))
                jobs.append(PlannedJob(bucket, prefix, LAMBDA_INVOKE, request, covers))
    elif not options.update_encryption_jobs:
        raise InputError("--function-arn is required: the deployed enforcer function the jobs invoke "
                         "(`ops outputs --stack <stack>` prints it)")
    if options.update_encryption_jobs:
        for mapping in sorted(mappings, key=lambda m: m.prefix):
            problem = update_encryption_problem(
                mapping, mappings, bool(options.inventory_manifest),
                options.bucket_owner_account_id or options.account_id,
            )
            if problem:
                skipped.append(SkippedJob(mapping.prefix, UPDATE_ENCRYPTION, problem))
                continue
            target = mapping.target
            request = _common(options, bucket, mapping.prefix, UPDATE_ENCRYPTION, target.kms_key_arn)
            request["Operation"] = {
                "S3UpdateObjectEncryption": {
                    "ObjectEncryption": {
                        "SSEKMS": {"KMSKeyArn": target.kms_key_arn, "BucketKeyEnabled": target.bucket_key}
                    }
                }
            }
            request["ManifestGenerator"] = _generated_manifest(options, bucket, mapping.prefix, [{"SSES3": {}}])
            jobs.append(PlannedJob(bucket, mapping.prefix, UPDATE_ENCRYPTION, request, (mapping.prefix,)))
    return jobs, skipped


def resolve_inventory_manifest(s3, uri: str, bucket: str, etag: str | None) -> str:
    """Check the manifest is an inventory of ``bucket`` and return its ETag (read when not given)."""
    manifest_bucket, key = parse_s3_uri(uri)
    try:
        got = s3.get_object(Bucket=manifest_bucket, Key=key)
    except ClientError as exc:
        raise InputError(f"cannot read the inventory manifest {uri}: {exc}") from None
    try:
        doc = json.loads(got["Body"].read())
    except ValueError:
        raise InputError(f"{uri} is not an S3 Inventory manifest.json (not JSON)") from None
    source = str(doc.get("sourceBucket", ""))
    if source != bucket:
        raise InputError(f"{uri} is an inventory of bucket {source!r}, not {bucket!r}")
    if doc.get("fileFormat") not in (None, "CSV"):
        raise InputError(f"{uri} is a {doc.get('fileFormat')} inventory; Batch Operations reads CSV inventories")
    actual = got["ETag"]
    if etag and etag.strip('"') != actual.strip('"'):
        raise InputError(f"{uri} has ETag {actual}, not {etag}: the manifest changed; pass the current ETag")
    return actual.strip('"')


def required_role_policy(jobs: list[PlannedJob], mappings: list[Mapping], options: JobOptions) -> dict[str, Any]:
    """The permissions policy the jobs' role (``--role-arn``) needs; trust: batchoperations.s3.amazonaws.com."""
    p = options.partition
    statements: list[dict[str, Any]] = []
    lambda_jobs = [j for j in jobs if j.operation == LAMBDA_INVOKE]
    if lambda_jobs:
        statements.append({
            "Sid": "InvokeEnforcer",
            "Effect": "Allow",
            "Action": "lambda:InvokeFunction",
            "Resource": [options.function_arn, f"{options.function_arn}:*"],
        })
    generated = [j for j in jobs if "ManifestGenerator" in j.request]
    if generated:
        statements.append({
            "Sid": "GenerateManifest",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:ListBucketVersions"],
            "Resource": sorted({s3_arn(j.bucket, p) for j in generated}),
        })
    if options.inventory_manifest:
        manifest_bucket, key = parse_s3_uri(options.inventory_manifest)
        folder = key.rsplit("/", 1)[0] if "/" in key else ""
        # The inventory's data files sit beside manifest.json (same destination prefix).
        inventory_root = folder.rsplit("/", 1)[0] if "/" in folder else folder
        statements.append({
            "Sid": "ReadInventoryManifest",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": [f"{s3_arn(manifest_bucket, p)}/{inventory_root}/*" if inventory_root
                         else f"{s3_arn(manifest_bucket, p)}/*"],
        })
    statements.append({
        "Sid": "WriteReportsAndManifests",
        "Effect": "Allow",
        "Action": ["s3:PutObject", "s3:GetBucketLocation"],
        "Resource": [s3_arn(options.report_bucket, p), f"{s3_arn(options.report_bucket, p)}/{options.report_prefix}/*"],
    })
    uoe = [j for j in jobs if j.operation == UPDATE_ENCRYPTION]
    if uoe:
        statements.append({
            "Sid": "UpdateObjectEncryption",
            "Effect": "Allow",
            "Action": ["s3:UpdateObjectEncryption", "s3:GetObject", "s3:GetObjectVersion"],
            "Resource": [f"{s3_arn(j.bucket, p)}/{j.prefix}*" for j in uoe],
        })
        keys = sorted({m.target.kms_key_arn for m in mappings if m.prefix in {j.prefix for j in uoe}})
        statements.append({
            "Sid": "UseMappedKeys",
            "Effect": "Allow",
            "Action": ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncrypt*"],
            "Resource": keys,
        })
    return {"Version": "2012-10-17", "Statement": statements}


TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "batchoperations.s3.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


@dataclass(frozen=True)
class CreatedJob:
    job: PlannedJob
    job_id: str


def create_jobs(s3control, jobs: list[PlannedJob]) -> list[CreatedJob]:
    return [CreatedJob(job, s3control.create_job(**job.request)["JobId"]) for job in jobs]


# -- status ------------------------------------------------------------------------


@dataclass
class ReportSummary:
    """A job's completion report: counts per task status and outcome, and failed tasks."""

    location: str
    results: Counter = field(default_factory=Counter)  # (task status, outcome) -> tasks
    failed: list[dict[str, str]] = field(default_factory=list)


@dataclass
class JobStatus:
    job_id: str
    description: str
    operation: str
    status: str
    priority: int | None
    total: int | None
    succeeded: int | None
    failed: int | None
    elapsed_seconds: int | None = None
    status_reason: str | None = None
    suspended_cause: str | None = None
    failure_reasons: list[str] = field(default_factory=list)
    report: ReportSummary | None = None


def _operation_name(operation: dict[str, Any] | None) -> str:
    return next(iter(operation or {}), "?")


def _describe(s3control, account_id: str, job_id: str) -> dict[str, Any]:
    return s3control.describe_job(AccountId=account_id, JobId=job_id)["Job"]


def our_job_ids(s3control, account_id: str) -> list[str]:
    """Jobs this tool created (by description), newest first, every status."""
    ids = []
    token = None
    while True:
        kwargs: dict[str, Any] = {"AccountId": account_id}
        if token:
            kwargs["NextToken"] = token
        page = s3control.list_jobs(**kwargs)
        for job in page.get("Jobs", []):
            if str(job.get("Description", "")).startswith(DESCRIPTION_PREFIX):
                ids.append((job.get("CreationTime"), job["JobId"]))
        token = page.get("NextToken")
        if not token:
            break
    return [job_id for _, job_id in sorted(ids, key=lambda t: str(t[0]), reverse=True)]


def read_completion_report(s3, job: dict[str, Any], max_failed: int = 20) -> ReportSummary | None:
    """Batch Operations writes ``<prefix>/job-<id>/manifest.json`` listing result CSVs."""
    report = job.get("Report") or {}
    if not report.get("Enabled") or not report.get("Bucket"):
        return None
    bucket = report["Bucket"].split(":::", 1)[-1]
    prefix = (report.get("Prefix") or "").strip("/")
    manifest_key = f"{prefix}/job-{job['JobId']}/manifest.json" if prefix else f"job-{job['JobId']}/manifest.json"
    location = f"s3://{bucket}/{manifest_key}"
    try:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read())
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None  # not written yet: reports appear when the job completes
        raise
    summary = ReportSummary(location)
    for result in manifest.get("Results", []):
        body = s3.get_object(Bucket=result.get("Bucket", bucket), Key=result["Key"])["Body"].read().decode()
        for row in csv.reader(io.StringIO(body)):
            if len(row) < 7:
                continue
            _, key, version, status, fifth, sixth, message = row[:7]
            error_code, http_status = _error_and_http_status(fifth, sixth)
            outcome = message.split(":", 1)[0].strip() if message else (error_code or status)
            summary.results[(status, outcome)] += 1
            if status.lower() != "succeeded" and len(summary.failed) < max_failed:
                summary.failed.append({
                    "key": unquote_plus(key), "version_id": version, "error_code": error_code,
                    "http_status": http_status, "result": message,
                })
    return summary


def _error_and_http_status(fifth: str, sixth: str) -> tuple[str, str]:
    # The report manifest's ReportSchema says "..., ErrorCode, HTTPStatusCode, ...", while
    # the User Guide's sample rows read "failed,400,PermanentFailure": tell them apart by
    # which one is a number rather than trust either order.
    if fifth.isdigit() and not sixth.isdigit():
        return sixth, fifth
    return fifth, sixth


def job_statuses(s3control, s3, account_id: str, job_id: str | None = None, reports: bool = True) -> list[JobStatus]:
    ids = [job_id] if job_id else our_job_ids(s3control, account_id)
    out = []
    for jid in ids:
        job = _describe(s3control, account_id, jid)
        progress = job.get("ProgressSummary") or {}
        out.append(JobStatus(
            job_id=jid,
            description=job.get("Description", ""),
            operation=_operation_name(job.get("Operation")),
            status=job.get("Status", "?"),
            priority=job.get("Priority"),
            total=progress.get("TotalNumberOfTasks"),
            succeeded=progress.get("NumberOfTasksSucceeded"),
            failed=progress.get("NumberOfTasksFailed"),
            elapsed_seconds=(progress.get("Timers") or {}).get("ElapsedTimeInActiveSeconds"),
            status_reason=job.get("StatusUpdateReason"),
            suspended_cause=job.get("SuspendedCause"),
            failure_reasons=[f"{f.get('FailureCode')}: {f.get('FailureReason')}" for f in job.get("FailureReasons", [])],
            report=read_completion_report(s3, job) if reports and job.get("Status") in ("Complete", "Failed", "Cancelled") else None,
        ))
    return out
