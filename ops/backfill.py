"""``ops backfill``: the command that brings every existing object under the mapped
prefixes to its key; it parses the options and wires the pieces below.

* The run (``ops/backfill_run.py``): each object re-keyed by the engine, the Lambda's
  own code path, with bounded concurrency.
* A checkpoint file (``ops/backfill_checkpoint.py``: append-only JSONL, flushed per
  object) so an interrupted run resumes without redoing finished objects: ``--resume FILE``.
  It and the run's JSON report (``--output FILE``) go to the state directory
  (``$XDG_STATE_HOME/s3-prefix-keys/backfill/``) unless named; both paths are printed
  before the run starts.
* ``--dry-run`` changes nothing (``ops/backfill_plan.py``): it judges each object with
  ``Enforcer.assess`` and prints the plan (objects and bytes per prefix and method), a
  cost estimate (``ops/pricing.py``) and the offenders.
* ``--batch-operations`` hands the work to S3 Batch Operations (``ops/backfill_batch.py``
  over ``ops/batch_jobs.py``); ``--status`` tracks those jobs.
* ``--versions`` also takes noncurrent versions: re-keyed in place where S3 allows it,
  else settled by ``--noncurrent keep|delete`` (the run module says how); the dry run
  shows what each choice would do.
* Every table is drawn by ``ops/backfill_render.py``.
"""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from botocore.utils import is_valid_uri
from typer.core import TyperCommand

from components.config import bucket_name_problem, load_stack_file, stack_file
from enforcer.engine import GIB
from ops import backfill_batch, batch_jobs, pricing, sources
from ops.aws import Target as AwsTarget
from ops.backfill_checkpoint import Checkpoint, run_files
from ops.backfill_plan import plan_backfill
from ops.backfill_render import render_plan, render_report
from ops.backfill_run import DEFAULT_CONCURRENCY, engine_settings, mapped_listing_prefixes, run_backfill
from ops.terminal import fail_input, make_console, progress_bar


class RekeyMethod(StrEnum):
    AUTO = "auto"
    COPY = "copy"


class OldVersionAction(StrEnum):
    DELETE = "delete"
    KEEP = "keep"


class NoncurrentAction(StrEnum):
    KEEP = "keep"
    DELETE = "delete"


# One text for both flags, shown under each, so that neither is mistaken for the other.
VERSION_FLAGS_HELP = (
    "Two different versions, two flags. --old-version-action: the version a copy REPLACES "
    "(the current object that was re-keyed by copying it: after the copy it is noncurrent, delete or keep it). "
    "--noncurrent (needs --versions): versions that were ALREADY noncurrent and that only a copy could re-key "
    "(DSSE-KMS prefixes, locked versions): a copy would make them current, so they are never copied; keep "
    "records the decision on the version (a tag: who, when), delete removes it and its history. Without "
    "--noncurrent they are reported, never deleted. Noncurrent versions S3 can re-key in place (SSE-KMS) are "
    "re-keyed with UpdateObjectEncryption pinned to their VersionId, whichever flag is given."
)


def endpoint_url_problem(endpoint_url: str | None, name: str = "--endpoint-url") -> str | None:
    """Why botocore would refuse an endpoint, as one line with the fix, or None.

    botocore's EndpointCreator raises a bare ``ValueError: Invalid endpoint`` unless
    ``is_valid_uri`` holds: a scheme and a host (botocore/endpoint.py, create_endpoint),
    so ``127.0.0.1:4566`` fails at the first client, with a traceback.
    """
    if not endpoint_url or is_valid_uri(endpoint_url):
        return None
    example = endpoint_url if "://" in endpoint_url else f"http://{endpoint_url}"
    if not is_valid_uri(example):
        example = "http://127.0.0.1:4566"
    return f"{name} {endpoint_url!r} is not a URL: give the scheme and host, e.g. {example}"


def _check_endpoint(endpoint_url: str | None) -> None:
    # The global --endpoint-url arrives as AWS_ENDPOINT_URL (ops/cli.py), and a user's
    # own environment may set it too.
    problem = endpoint_url_problem(endpoint_url) or endpoint_url_problem(
        os.environ.get("AWS_ENDPOINT_URL"), "AWS_ENDPOINT_URL")
    if problem:
        raise sources.InputError(problem)


def _writable_report(path: Path) -> Path:
    if path.is_dir():
        raise sources.InputError(f"--output {path} is a directory; name a file, e.g. {path}/report.json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise sources.InputError(f"--output {path}: cannot create {path.parent} ({exc.strerror}); "
                                 "name a file in a writable directory") from None
    return path


def _write_report(path: Path, data: dict) -> None:
    try:
        path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise sources.InputError(f"--output {path}: cannot write it ({exc.strerror}); "
                                 "name a file in a writable directory") from None


def _decided_by(aws: AwsTarget) -> str:
    """Who a keep record names: the caller's ARN (GetCallerIdentity needs no permission)."""
    return aws.client("sts").get_caller_identity()["Arn"]


def _stack_old_version_action(stack: str | None, mapping_table: str | None) -> str:
    """The stack's oldVersionAction (the Lambda's OLD_VERSION_ACTION); 'delete' for a table."""
    if mapping_table:
        return "delete"
    return load_stack_file(stack_file(stack or "dev", sources.STACK_ROOT)).old_version_action


class PlainHelpCommand(TyperCommand):
    """``--help`` through click's own formatter instead of rich's panel.

    The backfill has some thirty options, and rich's panel shares the width among its
    columns evenly: at 80 columns it ellipsizes option names (``--old-version-ac…``) and
    long words of the help. Click's formatter never cuts: it wraps the help at word
    boundaries and puts it below an option name that is too long for its column.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rich_markup_mode = None  # TyperCommand.format_help: None takes click's formatter


def backfill_command(
    bucket: Annotated[str | None, typer.Option("--bucket", help="Bucket to backfill (not needed with --status).")] = None,
    prefix: sources.PrefixOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Change nothing; print the plan, cost and offenders.")] = False,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Objects re-keyed at once.")] = DEFAULT_CONCURRENCY,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Checkpoint file: skip the objects it records as done, append the rest "
                     "(default: a new one in $XDG_STATE_HOME/s3-prefix-keys/backfill/)."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Write the run's report (the plan, with --dry-run) as JSON here "
                     "(default: beside the checkpoint in $XDG_STATE_HOME/s3-prefix-keys/backfill/)."),
    ] = None,
    stack: sources.StackOption = None,
    mapping_table: sources.MappingTableOption = None,
    endpoint_url: sources.EndpointOption = None,
    region: sources.RegionOption = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Offenders/problems listed in tables.")] = 20,
    price: Annotated[
        list[str] | None, typer.Option("--price", help="Override a price, NAME=VALUE (see ops/pricing.py).")
    ] = None,
    rekey_method: Annotated[
        RekeyMethod, typer.Option("--rekey-method", help="auto (UpdateObjectEncryption where possible) or copy.")
    ] = RekeyMethod.AUTO,
    inspect: Annotated[
        bool, typer.Option("--inspect", help="HEAD every object before re-keying it. Without it, objects of "
                           "SSE-KMS prefixes get UpdateObjectEncryption straight away (1 S3 call each; compliant "
                           "ones are re-keyed to the same key); with it they cost a HEAD more, but compliant "
                           "objects are only read, and counted as compliant.")
    ] = False,
    old_version_action: Annotated[
        OldVersionAction | None,
        typer.Option("--old-version-action", help="Versioned buckets, copy path: delete or keep the replaced "
                     "version where the bucket's mapping sets no oldVersionAction (default: the stack's "
                     "oldVersionAction with --stack, delete with --mapping-table). " + VERSION_FLAGS_HELP),
    ] = None,
    versions: Annotated[
        bool, typer.Option("--versions", help="Every version (ListObjectVersions), not just current objects.")
    ] = False,
    noncurrent: Annotated[
        NoncurrentAction | None,
        typer.Option("--noncurrent", help="keep or delete, for noncurrent versions no method can re-key. "
                     + VERSION_FLAGS_HELP),
    ] = None,
    multipart_threshold: Annotated[
        int, typer.Option("--multipart-threshold", min=5 * 1024**2, max=5 * GIB,
                          help="Bytes above which copies are multipart (at most 5 GiB, CopyObject's limit).")
    ] = 5 * GIB,
    batch_operations: Annotated[
        bool, typer.Option("--batch-operations", help="Create S3 Batch Operations jobs instead of working here.")
    ] = False,
    function_arn: Annotated[str | None, typer.Option("--function-arn", help="Enforcer Lambda ARN (LambdaInvoke jobs).")] = None,
    role_arn: Annotated[str | None, typer.Option("--role-arn", help="IAM role the jobs run as.")] = None,
    report_bucket: Annotated[str | None, typer.Option("--report-bucket", help="Bucket for completion reports.")] = None,
    report_prefix: Annotated[
        str, typer.Option("--report-prefix", help="Key prefix in --report-bucket for reports and generated manifests.")
    ] = "s3-prefix-keys/batch-operations",
    report_scope: Annotated[str, typer.Option("--report-scope", help="AllTasks or FailedTasksOnly.")] = "AllTasks",
    priority: Annotated[int, typer.Option("--priority", min=0, help="Job priority; higher runs first.")] = 10,
    confirmation_required: Annotated[
        bool, typer.Option("--confirmation-required/--no-confirmation-required",
                           help="Jobs wait for an explicit go (default) or start at once.")
    ] = True,
    inventory_manifest: Annotated[
        str | None, typer.Option("--inventory-manifest", help="s3://BUCKET/PATH/manifest.json of an S3 Inventory (CSV).")
    ] = None,
    inventory_manifest_etag: Annotated[
        str | None, typer.Option("--inventory-manifest-etag", help="ETag of that manifest (default: read from S3).")
    ] = None,
    update_encryption_jobs: Annotated[
        bool, typer.Option("--update-encryption-jobs",
                           help="Also an S3UpdateObjectEncryption job per prefix where that is provably enough.")
    ] = False,
    account_id: Annotated[
        str | None, typer.Option("--account-id", help="Account that runs the jobs (default: the caller's, from STS).")
    ] = None,
    bucket_owner_account_id: Annotated[
        str | None, typer.Option("--bucket-owner-account-id",
                                 help="Account that owns --bucket, when not --account-id: decides whether "
                                      "UpdateObjectEncryption jobs can use the mapped keys.")
    ] = None,
    run_id: Annotated[str, typer.Option("--run-id", help="Change it to create new jobs for the same prefixes.")] = "",
    status: Annotated[bool, typer.Option("--status", help="Show Batch Operations jobs and completion reports.")] = False,
    job_id: Annotated[str | None, typer.Option("--job-id", help="With --status: only this job.")] = None,
) -> None:
    """Re-key every non-compliant object under the mapped prefixes (or plan it with --dry-run,
    or hand it to S3 Batch Operations with --batch-operations)."""
    err = make_console(stderr=True)
    out = make_console()
    aws = AwsTarget(endpoint_url, region)
    try:
        _check_endpoint(endpoint_url)
        if status:
            backfill_batch.show_status(aws, out, account_id, job_id, limit)
            raise typer.Exit(0)
        if not bucket:
            raise sources.InputError("--bucket is required (except with --status)")
        if noncurrent and not versions:
            raise sources.InputError(f"--noncurrent {noncurrent} applies to noncurrent versions: add --versions")
        problem = bucket_name_problem(bucket)
        if problem:
            raise sources.InputError(f"--bucket {bucket!r} {problem}")
        mappings = sources.resolve_mappings(aws, stack, mapping_table)
        label = sources.source_label(stack, mapping_table)
        bucket_mappings = sources.bucket_mappings(mappings, bucket, label)
        if batch_operations:
            backfill_batch.hand_off(
                aws, out, bucket, bucket_mappings, dry_run,
                batch_jobs.JobOptions(
                    account_id=account_id or "", role_arn=role_arn or "", report_bucket=report_bucket or "",
                    function_arn=function_arn, report_prefix=report_prefix.strip("/"), report_scope=report_scope,
                    priority=priority, confirmation_required=confirmation_required,
                    inventory_manifest=inventory_manifest, inventory_manifest_etag=inventory_manifest_etag,
                    update_encryption_jobs=update_encryption_jobs, run_id=run_id,
                    bucket_owner_account_id=bucket_owner_account_id,
                ),
            )
            raise typer.Exit(0)
        try:
            prices = pricing.Prices().with_overrides(pricing.parse_price_overrides(price))
        except ValueError as exc:
            raise sources.InputError(str(exc)) from None
        settings = engine_settings(
            str(rekey_method),
            str(old_version_action) if old_version_action else _stack_old_version_action(stack, mapping_table),
            multipart_threshold,
            noncurrent_action=str(noncurrent) if noncurrent else None,
            decided_by=_decided_by(aws) if noncurrent is NoncurrentAction.KEEP and not dry_run else None,
        )
        # One connection per worker, plus the multipart part copies' own pool.
        s3 = aws.client("s3", pool=concurrency + settings.part_concurrency + 2)
        files = run_files(bucket, resume, output, dry_run)
        if dry_run:
            _writable_report(files.report)
            err.print(f"Plan report: {files.report}", highlight=False, soft_wrap=True)
            with progress_bar(err, f"Planning s3://{bucket}/{prefix or ''}") as sink:
                plan = plan_backfill(s3, mappings, bucket, prefix=prefix, concurrency=concurrency, settings=settings,
                                     prices=prices, source=label, progress=sink, inspect=inspect, versions=versions)
            render_plan(plan, out, limit)
            _write_report(files.report, {"bucket": bucket, "prefix": prefix, "dry_run": True, **plan.as_dict()})
            raise typer.Exit(0)
        mapped_listing_prefixes(mappings, bucket, prefix)  # before a checkpoint file is created
        _writable_report(files.report)
        checkpoint = Checkpoint(files.checkpoint, bucket, prefix)
        if resume is not None and checkpoint.fresh:
            # Never a silent fresh start: a mistyped --resume would redo every object.
            err.print(f"--resume {resume} does not exist yet: starting a new checkpoint at {checkpoint.path}",
                      highlight=False, soft_wrap=True)
        elif checkpoint.fresh:
            err.print(f"Checkpoint: {checkpoint.path} (if interrupted, resume with --resume {checkpoint.path})",
                      highlight=False, soft_wrap=True)
        else:
            err.print(f"Resuming from {checkpoint.path}: {len(checkpoint.done):,} object(s) already done.",
                      highlight=False, soft_wrap=True)
        err.print(f"Report: {files.report}", highlight=False, soft_wrap=True)
        try:
            with progress_bar(err, f"Backfilling s3://{bucket}/{prefix or ''}") as sink:
                report = run_backfill(s3, mappings, bucket, prefix=prefix, concurrency=concurrency,
                                      checkpoint=checkpoint, settings=settings, progress=sink, inspect=inspect,
                                      versions=versions)
        finally:
            checkpoint.close()
        _write_report(files.report, report.as_dict())
    except sources.InputError as exc:
        raise fail_input(err, str(exc)) from None
    except typer.Exit:
        raise
    except Exception as exc:
        problem = sources.aws_problem(exc)
        if problem:
            raise fail_input(err, problem) from None
        raise
    render_report(report, out, limit)
    raise typer.Exit(report.exit_code)
