"""The backfill's output as rich tables: the dry-run plan and cost, the run's report, and
the S3 Batch Operations jobs and their status.

Text columns fold (wrap inside a word where they must) instead of rich's default
ellipsis, so that at 80 columns a prefix, key or reason is shown whole, over several
lines; counts never wrap.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from enforcer.decision import Outcome
from ops import batch_jobs, pricing
from ops.audit_render import short_key
from ops.backfill_plan import BackfillPlan
from ops.backfill_run import BackfillReport


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _text_columns(table: Table, *names: str) -> Table:
    for name in names:
        table.add_column(name, overflow="fold")
    return table


def _count_columns(table: Table, *names: str) -> Table:
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    return table


def render_plan(plan: BackfillPlan, console: Console, limit: int) -> None:
    audit = plan.audit
    table = Table(title=f"Dry run: backfill plan for s3://{audit.bucket}/{audit.prefix or ''} (nothing was changed)")
    _text_columns(table, "Prefix", "Method")
    _count_columns(table, "Objects", "Bytes", "S3 requests", "KMS requests (max)")
    for r in plan.rows:
        table.add_row(r.prefix, r.method, f"{r.objects:,}", human_bytes(r.bytes), f"{r.requests.s3_total():,}",
                      f"{r.requests.kms:,}")
    console.print(table)
    q, c, p = plan.requests, plan.cost, plan.prices
    cost = Table(title="Cost estimate (USD; prices in ops/pricing.py, override with --price NAME=VALUE)")
    _text_columns(cost, "Item")
    _count_columns(cost, "Requests", "Price", "Cost")
    cost.add_row("S3 LIST + PUT/COPY/POST", f"{q.list + q.put_copy_post:,}", f"${p.put_copy_post_list_per_1000}/1,000",
                 f"${(q.list + q.put_copy_post) * p.put_copy_post_list_per_1000 / 1000:,.4f}")
    cost.add_row("S3 HEAD/GET", f"{q.get_head:,}", f"${p.get_head_per_1000}/1,000",
                 f"${q.get_head * p.get_head_per_1000 / 1000:,.4f}")
    cost.add_row("S3 UpdateObjectEncryption", f"{q.update_encryption:,}", f"${p.update_encryption_per_1000}/1,000",
                 f"${q.update_encryption * p.update_encryption_per_1000 / 1000:,.4f}")
    cost.add_row("S3 DELETE (old versions)", f"{q.delete:,}", "free", "$0")
    cost.add_row("KMS (upper bound: no Bucket Key savings)", f"{q.kms:,}", f"${p.kms_per_10000}/10,000",
                 f"${c.kms:,.4f}")
    cost.add_row("Total", f"{q.s3_total() + q.kms:,}", "", f"${c.total:,.4f}", style="bold")
    console.print(cost)
    requests, dollars = pricing.seed_001_check(p)
    console.print(
        f"Price check (seed 001): {pricing.SEED_001_ENCRYPTIONS:,} encryption + {pricing.SEED_001_DECRYPTIONS:,} "
        f"decryption KMS requests = {requests:,} requests = ${dollars:,.2f} "
        f"(published: ${pricing.SEED_001_PUBLISHED_DOLLARS}). After the backfill every read of an SSE-KMS object "
        "without an S3 Bucket Key is one more KMS Decrypt.",
        highlight=False,
    )
    console.print(
        f"With --batch-operations: the same S3/KMS requests, plus ${plan.batch_operations_fee:,.2f} for "
        f"{plan.jobs} job(s) and {audit.objects:,} tasks, plus the Lambda invocations.",
        highlight=False,
    )
    render_noncurrent_choices(plan, console)
    if audit.offenders:
        shown = sorted(audit.offenders, key=lambda f: f.key)[:limit]
        offenders = Table(title=f"Offenders: first {len(shown)} of {audit.non_compliant}")
        _text_columns(offenders, "Key", "Category", "Now", "Method")
        for f in shown:
            now = f"{f.sse_type or 'none'} {short_key(f.kms_key_arn) if f.kms_key_arn else ''}".strip()
            offenders.add_row(f.key, str(f.category), now, f.method or f.reason)
        console.print(offenders)
    else:
        console.print("[green]Every mapped object is already compliant; a backfill with --inspect would only "
                      "HEAD them.[/]")


def render_noncurrent_choices(plan: BackfillPlan, console: Console) -> None:
    """What each --noncurrent choice would do, per prefix, the chosen one marked."""
    for choice in plan.noncurrent:
        table = Table(title=f"{choice.prefix}: {choice.versions:,} noncurrent version(s) "
                            f"({human_bytes(choice.bytes)}) only a copy could re-key, which would make them current")
        _text_columns(table, "Choice", "What it does", "This run")
        for flag, effect, chosen in choice.effects():
            table.add_row(flag, effect, "chosen" if chosen else "-", style="bold" if chosen else None)
        console.print(table)


def render_report(report: BackfillReport, console: Console, limit: int) -> None:
    table = Table(title=f"Backfill of s3://{report.bucket}/{report.prefix or ''}")
    _text_columns(table, "Outcome", "Method")
    _count_columns(table, "Objects", "Bytes")
    for (outcome, method), n in sorted(report.counts.items()):
        table.add_row(outcome, method or "-", f"{n:,}", human_bytes(report.bytes[(outcome, method)]))
    if report.skipped:
        table.add_row("done earlier (checkpoint)", "-", f"{report.skipped:,}", "-", style="dim")
    console.print(table)
    rate = report.processed / report.elapsed if report.elapsed else 0.0
    console.print(f"{report.processed:,} objects in {report.elapsed:.1f} s ({rate:,.1f} objects/s); "
                  f"{report.rekeyed:,} re-keyed.", highlight=False)
    if report.problems:
        shown = report.problems[:limit]
        problems = Table(title=f"Need attention: first {len(shown)} of {len(report.problems)}")
        _text_columns(problems, "Key", "Outcome", "Reason")
        for p in shown:
            problems.add_row(p.key, p.outcome, p.reason)
        console.print(problems)
        waiting = sum(p.outcome == Outcome.NEEDS_CHOICE for p in report.problems)
        if waiting:
            console.print(f"{waiting:,} noncurrent version(s) wait for a choice: run again with --noncurrent "
                          "keep|delete (--dry-run shows what each does). Nothing was deleted.", highlight=False)
    if report.checkpoint:
        hint = "interrupted; resume with" if report.interrupted else "checkpoint:"
        console.print(f"{hint} --resume {report.checkpoint}", highlight=False)


def render_jobs(created: list[batch_jobs.CreatedJob] | None, planned: list[batch_jobs.PlannedJob],
                skipped: list[batch_jobs.SkippedJob], console: Console) -> None:
    table = Table(title="S3 Batch Operations jobs" + (" (dry run: not created)" if created is None else ""))
    _text_columns(table, "Prefix", "Operation", "Covers", "Job id")
    ids = {id(c.job): c.job_id for c in created or []}
    for job in planned:
        table.add_row(job.prefix or "(inventory manifest)", job.operation, ", ".join(job.covers),
                      ids.get(id(job), "-"))
    for s in skipped:
        table.add_row(s.prefix, s.operation, "-", f"skipped: {s.reason}", style="dim")
    console.print(table)
    if created and any(job.request.get("ConfirmationRequired") for job in planned):
        console.print("The jobs wait for confirmation: review them, then run "
                      "`aws s3control update-job-status --account-id <id> --job-id <id> --requested-job-status Ready`. "
                      "Track them with `ops backfill --status`.", highlight=False)


def render_status(statuses: list[batch_jobs.JobStatus], console: Console, limit: int) -> None:
    if not statuses:
        console.print("No s3-prefix-keys Batch Operations jobs in this account and region.")
        return
    table = Table(title="S3 Batch Operations jobs")
    _text_columns(table, "Job id", "Description", "Status")
    _count_columns(table, "Tasks", "Succeeded", "Failed")
    for s in statuses:
        status = s.status + (f" ({s.suspended_cause})" if s.suspended_cause else "")
        table.add_row(s.job_id, s.description, status, _n(s.total), _n(s.succeeded), _n(s.failed))
    console.print(table)
    for s in statuses:
        for reason in s.failure_reasons:
            console.print(f"[red]{s.job_id}[/]: {reason}", highlight=False)
        if s.report is None:
            continue
        results = Table(title=f"Completion report of {s.job_id} ({s.report.location})")
        _text_columns(results, "Task status", "Result")
        _count_columns(results, "Tasks")
        for (status, outcome), n in sorted(s.report.results.items()):
            results.add_row(status, outcome, f"{n:,}")
        console.print(results)
        for row in s.report.failed[:limit]:
            console.print(f"  {row['key']}: {row['result'] or row['error_code']}", highlight=False)


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"
