"""``ops backfill``: bring every existing object under the mapped prefixes to its key.

Where a prefix's mapped key can be reached by UpdateObjectEncryption (an SSE-KMS
target, ``--rekey-method auto``), each listed object gets that request straight away,
with no HEAD: one S3 call per object, as many as ``aws s3 cp`` makes, with nothing about
the object changed but its key (``Enforcer.process_uninspected`` says why that is safe).
Objects S3 refuses it for, and every object of a DSSE-KMS prefix, go through
``Enforcer.process``: one HEAD, ``decide()``, then a full-fidelity copy or multipart
copy, race-safe, the very code path the Lambda runs on upload. ``--inspect`` sends every
object through that path, so that compliant objects are only read (a HEAD is a GET-tier
request; UpdateObjectEncryption is a write plus a KMS request) and counted as compliant.

* Bounded concurrency (threads; clients sized to them, adaptive retries).
* A checkpoint file (append-only JSONL, flushed per object) so an interrupted run
  resumes without redoing finished objects: ``--resume FILE``.
* ``--dry-run`` changes nothing: it judges each object with ``Enforcer.assess`` and
  prints the plan (objects and bytes per prefix and method), a cost estimate
  (``ops/pricing.py``) and the offenders.
* ``--batch-operations`` hands the work to S3 Batch Operations (``ops/batch_jobs.py``);
  ``--status`` tracks those jobs.

The copies are ObjectCreated events too: the deployed enforcer sees them and finds
them compliant (a HEAD and a journal row each, no second copy).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from components.config import load_stack_file, notification_prefixes, stack_file
from enforcer.decision import Method, Outcome, target_allows_update_in_place
from enforcer.engine import GIB, Enforcer, EngineSettings, Result
from enforcer.rekey import BucketAclModes
from ops import batch_jobs, pricing, sources
from ops.audit import (
    AuditReport,
    Category,
    ProgressSink,
    fail_input,
    make_console,
    progress_bar,
    run_audit,
    short_key,
)
from ops.aws import Target as AwsTarget

# Measured with ``python -m bench.backfill`` (docs/backfill.md): at 100 ms per request
# throughput keeps rising up to about this many objects in flight; beyond it the
# emulator's CPU, not latency, is the limit. Real S3 scales further; raise it with
# --concurrency, and botocore's adaptive retries slow down on 503 SlowDown by themselves.
DEFAULT_CONCURRENCY = 64

# Outcomes a resumed run does not touch again. Everything else (errors, grants to fix,
# objects superseded by a newer write) is retried, which is what a resume after fixing
# the cause should do.
DONE_OUTCOMES = frozenset({Outcome.COMPLIANT, Outcome.REKEYED, Outcome.UNMAPPED, Outcome.GONE})
PROBLEM_OUTCOMES = frozenset(
    {Outcome.SSE_C, Outcome.ACCESS_DENIED, Outcome.NEEDS_RESTORE, Outcome.LOOP_GUARD, Outcome.INVALID_MAPPING,
     Outcome.LOCKED, Outcome.FAILED}
)
ERROR = "error"  # a transient failure that outlived the SDK's retries


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# -- checkpoint -----------------------------------------------------------------------


class CheckpointMismatch(sources.InputError):
    pass


class Checkpoint:
    """Append-only JSONL: a header line, then one line per finished object.

    Each line is flushed as it is written, so a killed run loses at most the objects in
    flight; a torn last line (killed mid-write) is ignored on resume.
    """

    def __init__(self, path: str | Path, bucket: str, prefix: str | None):
        self.path = Path(path)
        self.done: set[str] = set()
        self.previous: Counter = Counter()  # outcome -> objects, from earlier runs
        self.torn_lines = 0
        self._lock = threading.Lock()
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if not fresh:
            self._load(bucket)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        if not fresh and not self._ends_with_newline():
            # End the torn line, or the next entry would be glued onto it and lost too.
            self._file.write("\n")
        if fresh:
            self._write({"type": "backfill", "bucket": bucket, "prefix": prefix, "started": _now()})

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as f:
            f.seek(-1, 2)
            return f.read(1) == b"\n"

    def _load(self, bucket: str) -> None:
        with self.path.open(encoding="utf-8") as f:
            for number, line in enumerate(f):
                try:
                    entry = json.loads(line)
                except ValueError:
                    self.torn_lines += 1
                    continue
                if number == 0:
                    if entry.get("type") != "backfill":
                        raise CheckpointMismatch(f"{self.path} is not a backfill checkpoint file")
                    if entry.get("bucket") != bucket:
                        raise CheckpointMismatch(
                            f"{self.path} is the checkpoint of bucket {entry.get('bucket')!r}, not {bucket!r}; "
                            "pass that bucket, or another --resume file"
                        )
                    continue
                if entry.get("type") == "backfill":
                    continue
                outcome = entry.get("outcome")
                if outcome in DONE_OUTCOMES:
                    self.done.add(entry["key"])
                    self.previous[outcome] += 1

    def _write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def record(self, key: str, result: Result | None, error: BaseException | None = None,
               size: int | None = None) -> None:
        if result is None:
            self._write({"key": key, "outcome": ERROR, "reason": f"{type(error).__name__}: {error}", "at": _now()})
            return
        entry: dict[str, Any] = {"key": key, "outcome": str(result.outcome), "at": _now()}
        if result.method:
            entry["method"] = method_label(result)
        if size is not None:
            entry["bytes"] = size
        if result.before is not None and result.before.version_id:
            entry["version_id"] = result.before.version_id
        if result.new_version_id:
            entry["new_version_id"] = result.new_version_id
        if result.old_version:
            entry["old_version"] = result.old_version
        if result.outcome not in DONE_OUTCOMES:
            entry["reason"] = result.reason
        self._write(entry)

    def close(self) -> None:
        with self._lock:
            self._file.close()


UNINSPECTED = " (not inspected)"


def method_label(result: Result) -> str:
    """The method as reported; an uninspected re-key may have found the object compliant."""
    if not result.method:
        return ""
    if result.outcome is Outcome.REKEYED and result.before is None:
        return str(result.method) + UNINSPECTED
    return str(result.method)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_checkpoint_path(bucket: str) -> Path:
    return Path(f"backfill-{bucket}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.checkpoint.jsonl")


# -- the backfill -----------------------------------------------------------------------


@dataclass
class Problem:
    key: str
    outcome: str
    reason: str


@dataclass
class BackfillReport:
    bucket: str
    prefix: str | None
    checkpoint: Path | None = None
    counts: Counter = field(default_factory=Counter)  # (outcome, method or "") -> objects
    bytes: Counter = field(default_factory=Counter)  # (outcome, method or "") -> bytes
    skipped: int = 0  # done in an earlier run, per the checkpoint
    problems: list[Problem] = field(default_factory=list)
    interrupted: bool = False
    elapsed: float = 0.0

    @property
    def processed(self) -> int:
        return sum(self.counts.values())

    @property
    def rekeyed(self) -> int:
        return sum(n for (outcome, _), n in self.counts.items() if outcome == Outcome.REKEYED)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.problems else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "processed": self.processed,
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "elapsed_seconds": round(self.elapsed, 3),
            "outcomes": [
                {"outcome": o, "method": m or None, "objects": n, "bytes": self.bytes[(o, m)]}
                for (o, m), n in sorted(self.counts.items())
            ],
            "problems": [p.__dict__ for p in self.problems],
        }


class _Tally:
    """Results land here from the worker threads, so objects that finish while an
    interrupted run drains are counted and checkpointed like the others."""

    def __init__(self, report: BackfillReport, checkpoint: Checkpoint | None, sink: ProgressSink):
        self.report = report
        self.checkpoint = checkpoint
        self.sink = sink
        self._lock = threading.Lock()

    def add(self, listed: sources.Listed, result: Result | None, error: BaseException | None) -> None:
        key = listed.ref.key
        # HEAD's size where there was one; an uninspected object has the listing's.
        size = result.before.size if result is not None and result.before is not None else listed.size
        if self.checkpoint:
            self.checkpoint.record(key, result, error, size)
        with self._lock:
            if result is None:
                self.report.counts[(ERROR, "")] += 1
                self.report.problems.append(Problem(key, ERROR, f"{type(error).__name__}: {error}"))
            else:
                slot = (str(result.outcome), method_label(result))
                self.report.counts[slot] += 1
                self.report.bytes[slot] += size
                if result.outcome in PROBLEM_OUTCOMES:
                    self.report.problems.append(Problem(key, str(result.outcome), result.reason))
        self.sink.done()


def engine_settings(
    rekey_method: str = "auto", old_version_action: str = "delete", multipart_threshold: int = 5 * GIB
) -> EngineSettings:
    # principal_id None: the backfill's own earlier copies are judged, never loop-guarded.
    return EngineSettings(
        rekey_method=rekey_method, old_version_action=old_version_action, multipart_threshold=multipart_threshold
    )


def mapped_listing_prefixes(mappings, bucket: str, prefix: str | None) -> list[str]:
    prefixes = sources.listing_prefixes(mappings.for_bucket(bucket), prefix)
    if not prefixes:
        mapped = ", ".join(sorted(m.prefix for m in mappings.for_bucket(bucket))) or "none"
        raise sources.InputError(
            f"--prefix {prefix!r} is not under any mapped prefix of {bucket!r} (mapped: {mapped}); "
            "there is nothing to backfill there"
        )
    return prefixes


def run_backfill(
    s3,
    mappings,
    bucket: str,
    *,
    prefix: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    checkpoint: Checkpoint | None = None,
    settings: EngineSettings | None = None,
    progress: ProgressSink | None = None,
    stop: threading.Event | None = None,
    on_result=None,
    inspect: bool = False,
) -> BackfillReport:
    """Re-key every non-compliant current object under the mapped prefixes of ``bucket``.

    ``inspect``: HEAD every object first, even where UpdateObjectEncryption could be
    sent blind (see the module docstring for what each way costs).

    ``on_result(result_or_exception)`` is called on the calling thread after each object;
    raising ``KeyboardInterrupt`` from it (or Ctrl-C) stops the run like an interrupt:
    queued objects are dropped, running ones finish and are checkpointed.
    """
    if concurrency < 1:
        raise sources.InputError(f"--concurrency must be at least 1, got {concurrency}")
    prefixes = mapped_listing_prefixes(mappings, bucket, prefix)
    sink = progress or ProgressSink()
    report = BackfillReport(bucket, prefix, checkpoint.path if checkpoint else None)
    tally = _Tally(report, checkpoint, sink)
    engine = Enforcer(s3, mappings, settings or engine_settings())
    done = checkpoint.done if checkpoint else set()

    def todo():
        # Current objects only: copying a noncurrent version in place would make it current.
        for listed in sources.list_objects(s3, bucket, prefixes):
            if listed.ref.key in done:
                report.skipped += 1
                continue
            sink.listed()
            yield listed
        sink.listing_finished()

    process = engine.process if inspect else engine.process_uninspected

    def work(listed: sources.Listed) -> Result | BaseException:
        try:
            result = process(listed.ref)
        except Exception as exc:  # noqa: BLE001 - transient after retries: recorded, retried on resume
            tally.add(listed, None, exc)
            return exc
        tally.add(listed, result, None)
        return result

    started = time.monotonic()
    results = sources.bounded_map(work, todo(), concurrency, stop)
    try:
        for _, future in results:
            if on_result is not None:
                on_result(future.result())
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        results.close()  # drops queued objects, waits for (and so checkpoints) running ones
    report.elapsed = time.monotonic() - started
    if stop is not None and stop.is_set():
        report.interrupted = True
    return report


# -- dry run ---------------------------------------------------------------------------


NO_REKEY = "no re-key (HEAD only)"
NO_REKEY_REFUSED = "no re-key (UpdateObjectEncryption refused, then HEAD)"
SAME_KEY = "update-object-encryption (already compliant: same key again)"


@dataclass
class PlanRow:
    prefix: str
    method: str
    objects: int = 0
    bytes: int = 0
    requests: pricing.Requests = field(default_factory=pricing.Requests)


@dataclass
class BackfillPlan:
    audit: AuditReport
    rows: list[PlanRow]
    requests: pricing.Requests
    cost: pricing.Cost
    prices: pricing.Prices
    jobs: int  # S3 Batch Operations jobs the same work would take (LambdaInvoke)
    batch_operations_fee: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": [
                {"prefix": r.prefix, "method": r.method, "objects": r.objects, "bytes": r.bytes,
                 "s3_requests": r.requests.s3_total(), "kms_requests_max": r.requests.kms}
                for r in self.rows
            ],
            "requests": self.requests.__dict__,
            "cost_usd": {"s3": self.cost.s3, "kms": self.cost.kms, "total": self.cost.total},
            "batch_operations_fee_usd": self.batch_operations_fee,
            "prices": self.prices.as_dict(),
            "offenders": [f.as_dict() for f in self.audit.offenders],
        }


def plan_backfill(
    s3,
    mappings,
    bucket: str,
    *,
    prefix: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    settings: EngineSettings | None = None,
    prices: pricing.Prices | None = None,
    source: str = "",
    progress: ProgressSink | None = None,
    inspect: bool = False,
) -> BackfillPlan:
    """What a backfill (run with the same ``inspect``) would do and cost; only reads (LIST, HEAD)."""
    settings = settings or engine_settings()
    prices = prices or pricing.Prices()
    prefixes = mapped_listing_prefixes(mappings, bucket, prefix)
    audit = run_audit(
        s3, mappings, bucket, prefix=prefix, concurrency=concurrency, only_mapped=True, settings=settings,
        source=source, progress=progress,
    )
    copies_planned = any(f.method in (Method.COPY, Method.MULTIPART_COPY) for f in audit.offenders)
    reads_acl = copies_planned and BucketAclModes(s3).uses_acls(bucket)
    def update_first(summary) -> bool:
        return (not inspect and summary is not None and summary.target is not None and not summary.problem
                and target_allows_update_in_place(summary.target, settings.rekey_method))

    rows: dict[tuple[str, str], PlanRow] = {}
    rekeyed_objects: Counter = Counter()  # prefix -> objects
    rekeyed_bytes: Counter = Counter()  # prefix -> bytes
    for f in audit.offenders:
        if not f.method:
            continue
        row = rows.setdefault((f.prefix, f.method), PlanRow(f.prefix, f.method))
        row.objects += 1
        row.bytes += f.size
        row.requests += pricing.rekey_requests(
            Method(f.method), f.size, f.sse_type, multipart_threshold=settings.multipart_threshold,
            reads_acl=reads_acl, has_tags=f.tag_count > 0, deletes_old_version=f.old_version_action == "delete",
            update_first=update_first(audit.prefixes.get(f.prefix)),
        )
        rekeyed_objects[f.prefix] += 1
        rekeyed_bytes[f.prefix] += f.size
    for name, summary in audit.prefixes.items():
        fast = update_first(summary)
        # Blind, compliant objects are re-keyed to the same key; inspected, they are only read.
        compliant, compliant_bytes = (summary.counts[Category.COMPLIANT], summary.bytes[Category.COMPLIANT]) if fast \
            else (0, 0)
        groups = (
            (SAME_KEY, compliant, compliant_bytes, True),
            (NO_REKEY_REFUSED if fast else NO_REKEY,
             summary.objects - rekeyed_objects[name] - compliant,
             sum(summary.bytes.values()) - rekeyed_bytes[name] - compliant_bytes,
             False),
        )
        for method, objects, size, is_compliant in groups:
            if objects:
                row = rows.setdefault((name, method), PlanRow(name, method))
                row.objects += objects
                row.bytes += size
                row.requests += pricing.untouched_requests(objects, compliant=is_compliant, update_first=fast)
                if not is_compliant:
                    # SSE-C: after HEAD's bodiless 400, a one-byte GET confirms it
                    row.requests.get_head += summary.counts[Category.SSE_C]
    # One listing per folded prefix, 1,000 keys a page.
    total = pricing.Requests(list=len(prefixes) - 1 + pricing.list_requests(audit.objects))
    for row in rows.values():
        total += row.requests
    jobs = len(notification_prefixes(m.prefix for m in mappings.for_bucket(bucket)))
    fee = jobs * prices.batch_operations_per_job + audit.objects / 1e6 * prices.batch_operations_per_million_objects
    return BackfillPlan(
        audit, sorted(rows.values(), key=lambda r: (r.prefix, r.method)), total, pricing.cost_of(total, prices),
        prices, jobs, fee,
    )


# -- rendering ---------------------------------------------------------------------------


def render_plan(plan: BackfillPlan, console: Console, limit: int) -> None:
    audit = plan.audit
    table = Table(title=f"Dry run: backfill plan for s3://{audit.bucket}/{audit.prefix or ''} (nothing was changed)")
    for name, justify in (("Prefix", "left"), ("Method", "left"), ("Objects", "right"), ("Bytes", "right"),
                          ("S3 requests", "right"), ("KMS requests (max)", "right")):
        table.add_column(name, justify=justify)
    for r in plan.rows:
        table.add_row(r.prefix, r.method, f"{r.objects:,}", human_bytes(r.bytes), f"{r.requests.s3_total():,}",
                      f"{r.requests.kms:,}")
    console.print(table)
    q, c, p = plan.requests, plan.cost, plan.prices
    cost = Table(title="Cost estimate (USD; prices in ops/pricing.py, override with --price NAME=VALUE)")
    cost.add_column("Item")
    cost.add_column("Requests", justify="right")
    cost.add_column("Price", justify="right")
    cost.add_column("Cost", justify="right")
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
    if audit.offenders:
        shown = sorted(audit.offenders, key=lambda f: f.key)[:limit]
        offenders = Table(title=f"Offenders: first {len(shown)} of {audit.non_compliant}")
        for name in ("Key", "Category", "Now", "Method"):
            offenders.add_column(name)
        for f in shown:
            now = f"{f.sse_type or 'none'} {short_key(f.kms_key_arn) if f.kms_key_arn else ''}".strip()
            offenders.add_row(f.key, str(f.category), now, f.method or f.reason[:70])
        console.print(offenders)
    else:
        console.print("[green]Every mapped object is already compliant; a backfill with --inspect would only "
                      "HEAD them.[/]")


def render_report(report: BackfillReport, console: Console, limit: int) -> None:
    table = Table(title=f"Backfill of s3://{report.bucket}/{report.prefix or ''}")
    for name, justify in (("Outcome", "left"), ("Method", "left"), ("Objects", "right"), ("Bytes", "right")):
        table.add_column(name, justify=justify)
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
        problems.add_column("Key")
        problems.add_column("Outcome")
        problems.add_column("Reason")
        for p in shown:
            problems.add_row(p.key, p.outcome, p.reason[:160])
        console.print(problems)
    if report.checkpoint:
        hint = "interrupted; resume with" if report.interrupted else "checkpoint:"
        console.print(f"{hint} --resume {report.checkpoint}", highlight=False)


def render_jobs(created: list[batch_jobs.CreatedJob] | None, planned: list[batch_jobs.PlannedJob],
                skipped: list[batch_jobs.SkippedJob], console: Console) -> None:
    table = Table(title="S3 Batch Operations jobs" + (" (dry run: not created)" if created is None else ""))
    table.add_column("Prefix")
    table.add_column("Operation")
    table.add_column("Covers")
    table.add_column("Job id")
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
    for name, justify in (("Job id", "left"), ("Description", "left"), ("Status", "left"), ("Tasks", "right"),
                          ("Succeeded", "right"), ("Failed", "right")):
        table.add_column(name, justify=justify)
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
        results.add_column("Task status")
        results.add_column("Result")
        results.add_column("Tasks", justify="right")
        for (status, outcome), n in sorted(s.report.results.items()):
            results.add_row(status, outcome, f"{n:,}")
        console.print(results)
        for row in s.report.failed[:limit]:
            console.print(f"  {row['key']}: {row['result'] or row['error_code']}", highlight=False)


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


# -- the command ------------------------------------------------------------------------------


class RekeyMethod(StrEnum):
    AUTO = "auto"
    COPY = "copy"


class OldVersionAction(StrEnum):
    DELETE = "delete"
    KEEP = "keep"


def _stack_old_version_action(stack: str | None, mapping_table: str | None) -> str:
    """The stack's oldVersionAction (the Lambda's OLD_VERSION_ACTION); 'delete' for a table."""
    if mapping_table:
        return "delete"
    return load_stack_file(stack_file(stack or "dev", sources.STACK_ROOT)).old_version_action


def backfill_command(
    bucket: Annotated[str | None, typer.Option("--bucket", help="Bucket to backfill (not needed with --status).")] = None,
    prefix: sources.PrefixOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Change nothing; print the plan, cost and offenders.")] = False,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Objects re-keyed at once.")] = DEFAULT_CONCURRENCY,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Checkpoint file: skip the objects it records as done, append the rest."),
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
                     "oldVersionAction with --stack, delete with --mapping-table)."),
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
        str | None, typer.Option("--inventory-manifest", help="s3://…/manifest.json of an S3 Inventory (CSV).")
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
        if status:
            s3control = aws.client("s3control")
            account = account_id or aws.client("sts").get_caller_identity()["Account"]
            render_status(batch_jobs.job_statuses(s3control, aws.client("s3"), account, job_id), out, limit)
            raise typer.Exit(0)
        if not bucket:
            raise sources.InputError("--bucket is required (except with --status)")
        mappings = sources.resolve_mappings(aws, stack, mapping_table)
        label = sources.source_label(stack, mapping_table)
        bucket_mappings = sources.bucket_mappings(mappings, bucket, label)
        if batch_operations:
            _batch_operations(
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
        )
        # One connection per worker, plus the multipart part copies' own pool.
        s3 = aws.client("s3", pool=concurrency + settings.part_concurrency + 2)
        if dry_run:
            with progress_bar(err, f"Planning s3://{bucket}/{prefix or ''}") as sink:
                plan = plan_backfill(s3, mappings, bucket, prefix=prefix, concurrency=concurrency, settings=settings,
                                     prices=prices, source=label, progress=sink, inspect=inspect)
            render_plan(plan, out, limit)
            raise typer.Exit(0)
        mapped_listing_prefixes(mappings, bucket, prefix)  # before a checkpoint file is created
        checkpoint = Checkpoint(resume or default_checkpoint_path(bucket), bucket, prefix)
        if checkpoint.done:
            err.print(f"Resuming from {checkpoint.path}: {len(checkpoint.done):,} object(s) already done.",
                      highlight=False)
        try:
            with progress_bar(err, f"Backfilling s3://{bucket}/{prefix or ''}") as sink:
                report = run_backfill(s3, mappings, bucket, prefix=prefix, concurrency=concurrency,
                                      checkpoint=checkpoint, settings=settings, progress=sink, inspect=inspect)
        finally:
            checkpoint.close()
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


def _batch_operations(aws: AwsTarget, console: Console, bucket: str, mappings, dry_run: bool,
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
    created = batch_jobs.create_jobs(aws.client("s3control"), planned)
    render_jobs(created, planned, skipped, console)
