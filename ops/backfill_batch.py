"""The hand-off of ``ops backfill --batch-operations`` and ``--status``: resolves the
account and the inventory manifest, then plans, creates or shows the jobs (``ops/batch_jobs.py``)."""

from __future__ import annotations

import json

from rich.console import Console

from ops import batch_jobs
from ops.aws import Target as AwsTarget
from ops.backfill_render import render_jobs, render_status


def show_status(aws: AwsTarget, console: Console, account_id: str | None, job_id: str | None, limit: int) -> None:
    s3control = aws.client("s3control")
    batch_jobs.require_batch_operations_endpoint(s3control)
    account = account_id or aws.client("sts").get_caller_identity()["Account"]
    render_status(batch_jobs.job_statuses(s3control, aws.client("s3"), account, job_id), console, limit)


def hand_off(aws: AwsTarget, console: Console, bucket: str, mappings, dry_run: bool,
             options: batch_jobs.JobOptions) -> None:
    if options.inventory_manifest:
        etag = batch_jobs.resolve_inventory_manifest(
            aws.client("s3"), options.inventory_manifest, bucket, options.inventory_manifest_etag
        )
        options = batch_jobs.JobOptions(**{**options.__dict__, "inventory_manifest_etag": etag})
    if not options.account_id:
        account = aws.client("sts").get_caller_identity()["Account"]
        options = batch_jobs.JobOptions(**{**options.__dict__, "account_id": account})
    planned, skipped = batch_jobs.plan_jobs(bucket, mappings, options)
    if dry_run:
        render_jobs(None, planned, skipped, console)
        console.print_json(json.dumps({
            "CreateJob requests": [job.request for job in planned],
            "role trust policy": batch_jobs.TRUST_POLICY,
            "role permissions policy": batch_jobs.required_role_policy(planned, mappings, options),
        }))
        return
    s3control = aws.client("s3control")
    batch_jobs.require_batch_operations_endpoint(s3control)
    created = batch_jobs.create_jobs(s3control, planned)
    render_jobs(created, planned, skipped, console)
