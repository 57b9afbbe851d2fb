"""``ops audit``: how compliant is a bucket, per mapped prefix? Changes nothing.

Every listed object goes through ``Enforcer.assess`` (mapping lookup, one HEAD,
``decide()``), the same judgement the Lambda makes on upload; this module only
counts and prints the answers. Exit code 1 when any mapped object is not
compliant, so CI can gate on it; 2 on bad input.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from enforcer.decision import SSE_S3, Decision, ObjectState, Outcome
from enforcer.engine import Enforcer, EngineSettings
from enforcer.mapping import Mapping, MappingSource, Target
from ops import sources
from ops.aws import Target as AwsTarget


class Category(StrEnum):
    COMPLIANT = "compliant"
    WRONG_TYPE = "wrong-type"  # SSE-KMS where DSSE-KMS is mapped, or the reverse
    WRONG_KEY = "wrong-key"  # the mapped type under another key
    UNENCRYPTED_OR_SSE_S3 = "unencrypted-or-sse-s3"
    SSE_C = "sse-c"
    ACCESS_DENIED = "access-denied"
    NEEDS_RESTORE = "needs-restore"
    INVALID_MAPPING = "invalid-mapping"
    GONE = "gone"  # deleted between the listing and the HEAD
    ERROR = "error"  # throttled or unreachable after the SDK's retries: not judged
    UNMAPPED = "unmapped"


# Mapped objects in these categories are fine (or no longer exist); every other mapped
# category is an offender and fails the CI gate.
NOT_OFFENDING = frozenset({Category.COMPLIANT, Category.GONE, Category.UNMAPPED})
MISMATCH_CATEGORIES = (Category.WRONG_TYPE, Category.WRONG_KEY, Category.UNENCRYPTED_OR_SSE_S3)
TABLE_COLUMNS = (Category.COMPLIANT, *MISMATCH_CATEGORIES)


def mismatch_category(state: ObjectState, target: Target) -> Category:
    """Which way a non-compliant object is wrong (``decide()`` already said that it is)."""
    if state.sse_type in (None, SSE_S3):
        return Category.UNENCRYPTED_OR_SSE_S3
    if state.sse_type != target.sse_type:
        return Category.WRONG_TYPE
    return Category.WRONG_KEY


def categorize(state: ObjectState | None, decision: Decision) -> Category:
    if decision.outcome is Outcome.REKEY:
        return mismatch_category(state, decision.target)
    return {
        Outcome.COMPLIANT: Category.COMPLIANT,
        Outcome.UNMAPPED: Category.UNMAPPED,
        Outcome.GONE: Category.GONE,
        Outcome.SSE_C: Category.SSE_C,
        Outcome.ACCESS_DENIED: Category.ACCESS_DENIED,
        Outcome.NEEDS_RESTORE: Category.NEEDS_RESTORE,
        Outcome.INVALID_MAPPING: Category.INVALID_MAPPING,
    }.get(decision.outcome, Category.ERROR)


@dataclass(frozen=True)
class Finding:
    """One object (version) as judged: the row of the offenders list."""

    bucket: str
    key: str
    version_id: str | None
    is_latest: bool
    prefix: str | None  # the mapped prefix that applies, None when unmapped
    category: Category
    size: int
    storage_class: str
    sse_type: str | None = None
    kms_key_arn: str | None = None
    target_sse_type: str | None = None
    target_kms_key_arn: str | None = None
    method: str | None = None  # how the backfill would re-key it
    reason: str = ""
    # for the dry-run cost model
    tag_count: int = 0
    old_version_action: str | None = None

    @property
    def offending(self) -> bool:
        return self.prefix is not None and self.category not in NOT_OFFENDING

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["category"] = str(self.category)
        return out


CSV_FIELDS = (
    "bucket", "key", "version_id", "is_latest", "prefix", "category", "size", "storage_class", "sse_type",
    "kms_key_arn", "target_sse_type", "target_kms_key_arn", "method", "reason",
)


@dataclass
class PrefixSummary:
    prefix: str
    target: Target | None
    problem: str | None = None
    counts: Counter = field(default_factory=Counter)  # Category -> objects
    bytes: Counter = field(default_factory=Counter)  # Category -> bytes

    @property
    def objects(self) -> int:
        return sum(self.counts.values())

    @property
    def offending(self) -> int:
        return sum(n for c, n in self.counts.items() if c not in NOT_OFFENDING)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "target": asdict(self.target) if self.target else None,
            "problem": self.problem,
            "objects": self.objects,
            "non_compliant": self.offending,
            "counts": {str(c): self.counts.get(c, 0) for c in Category if c is not Category.UNMAPPED},
            "bytes": {str(c): n for c, n in sorted(self.bytes.items())},
        }


@dataclass
class AuditReport:
    bucket: str
    prefix: str | None
    versions: bool
    source: str
    prefixes: dict[str, PrefixSummary] = field(default_factory=dict)
    unmapped: int = 0
    unmapped_bytes: int = 0
    offenders: list[Finding] = field(default_factory=list)  # every one, in completion order
    objects: int = 0
    truncated: bool = False  # stopped at --max-objects

    @property
    def non_compliant(self) -> int:
        return len(self.offenders)

    @property
    def exit_code(self) -> int:
        return 1 if self.non_compliant else 0

    def expect(self, mapping: Mapping) -> None:
        """A row for ``mapping`` even if no object is found under it: an empty mapped prefix
        shows 0 objects rather than vanishing from the report."""
        self.prefixes.setdefault(mapping.prefix, PrefixSummary(mapping.prefix, mapping.target, mapping.problem))

    def add(self, finding: Finding, mapping: Mapping | None) -> None:
        self.objects += 1
        if finding.prefix is None:
            self.unmapped += 1
            self.unmapped_bytes += finding.size
            return
        summary = self.prefixes.get(finding.prefix)
        if summary is None:
            summary = self.prefixes[finding.prefix] = PrefixSummary(
                finding.prefix, mapping.target if mapping else None, mapping.problem if mapping else None
            )
        summary.counts[finding.category] += 1
        summary.bytes[finding.category] += finding.size
        if finding.offending:
            self.offenders.append(finding)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "versions": self.versions,
            "mappings_from": self.source,
            "objects": self.objects,
            "truncated": self.truncated,
            "non_compliant": self.non_compliant,
            "unmapped": {"objects": self.unmapped, "bytes": self.unmapped_bytes},
            "prefixes": [self.prefixes[p].as_dict() for p in sorted(self.prefixes)],
            "offenders": [f.as_dict() for f in sorted(self.offenders, key=_finding_order)],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False, default=str)

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for finding in sorted(self.offenders, key=_finding_order):
            writer.writerow({k: ("" if v is None else v) for k, v in finding.as_dict().items()})
        return out.getvalue()


def _finding_order(f: Finding) -> tuple[str, str]:
    return f.key, f.version_id or ""


# -- progress ------------------------------------------------------------------


class ProgressSink:
    """Receives listing and completion counts; the no-op default for scripts and CI."""

    def listed(self, n: int = 1) -> None: ...

    def done(self, n: int = 1) -> None: ...

    def listing_finished(self) -> None: ...


class RichProgress(ProgressSink):
    def __init__(self, progress: Progress, description: str):
        self._progress = progress
        self._task = progress.add_task(description + " (listing…)", total=0)
        self._description = description
        self._listed = 0

    def listed(self, n: int = 1) -> None:
        self._listed += n
        self._progress.update(self._task, total=self._listed)

    def done(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def listing_finished(self) -> None:
        self._progress.update(self._task, description=self._description)


@contextmanager
def progress_bar(console: Console, description: str) -> Iterator[ProgressSink]:
    """A rich progress bar when ``console`` is a terminal; nothing otherwise (logs, CI, pipes)."""
    if not console.is_terminal:
        yield ProgressSink()
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        yield RichProgress(progress, description)


def counted(items: Iterable[sources.Listed], sink: ProgressSink, limit: int | None, report: AuditReport):
    for n, item in enumerate(items):
        if limit is not None and n >= limit:
            report.truncated = True
            break
        sink.listed()
        yield item
    sink.listing_finished()


# -- the audit -----------------------------------------------------------------


def mappings_in_scope(mappings: Iterable[Mapping], prefix: str | None) -> list[Mapping]:
    """The mappings that can apply to a key under ``prefix``: those inside it, and the
    longest one it is itself inside (the others are shadowed there by that one)."""
    mappings = list(mappings)
    if prefix is None:
        return mappings
    inside = [m for m in mappings if m.prefix.startswith(prefix)]
    around = [m for m in mappings if prefix.startswith(m.prefix) and m not in inside]
    if around:
        inside.append(max(around, key=lambda m: len(m.prefix)))
    return inside


def judge(engine: Enforcer, listed: sources.Listed) -> tuple[Finding, Mapping | None]:
    ref = listed.ref
    try:
        mapping, state, decision = engine.assess(ref)
    except Exception as exc:  # noqa: BLE001 - throttled or unreachable after retries: report, go on
        mapping = engine.mappings.lookup(ref.bucket, ref.key)
        return (
            Finding(
                ref.bucket, ref.key, ref.version_id, listed.is_latest, mapping.prefix if mapping else None,
                Category.ERROR, listed.size, listed.storage_class, reason=f"{type(exc).__name__}: {exc}",
            ),
            mapping,
        )
    target = decision.target
    finding = Finding(
        bucket=ref.bucket,
        key=ref.key,
        version_id=(state.version_id if state else None) or ref.version_id,
        is_latest=listed.is_latest,
        prefix=mapping.prefix if mapping else None,
        category=categorize(state, decision),
        size=state.size if state and state.size else listed.size,
        storage_class=state.storage_class if state else listed.storage_class,
        sse_type=state.sse_type if state else None,
        kms_key_arn=state.kms_key_arn if state else None,
        target_sse_type=target.sse_type if target else None,
        target_kms_key_arn=target.kms_key_arn if target else None,
        method=str(decision.method) if decision.method else None,
        reason=decision.reason,
        tag_count=int((state.head.get("TagCount") if state else 0) or 0),
        old_version_action=decision.old_version_action,
    )
    return finding, mapping


def run_audit(
    s3,
    mappings: MappingSource,
    bucket: str,
    *,
    prefix: str | None = None,
    versions: bool = False,
    concurrency: int = 32,
    max_objects: int | None = None,
    only_mapped: bool = False,
    settings: EngineSettings | None = None,
    source: str = "",
    progress: ProgressSink | None = None,
) -> AuditReport:
    """Judge every object under ``prefix`` (every version with ``versions``).

    ``only_mapped`` lists just the mapped prefixes (the backfill's dry run); otherwise
    the whole bucket (or ``prefix``) is listed so unmapped objects are counted too.
    """
    if concurrency < 1:
        raise sources.InputError(f"--concurrency must be at least 1, got {concurrency}")
    sink = progress or ProgressSink()
    report = AuditReport(bucket, prefix, versions, source)
    bucket_mappings = mappings.for_bucket(bucket)
    for mapping in mappings_in_scope(bucket_mappings, prefix):
        report.expect(mapping)
    engine = Enforcer(s3, mappings, settings or EngineSettings())
    if only_mapped:
        prefixes: list[str | None] = list(sources.listing_prefixes(bucket_mappings, prefix))
    else:
        prefixes = [prefix]
    listing = counted(sources.list_objects(s3, bucket, prefixes, versions), sink, max_objects, report)
    for _, future in sources.bounded_map(lambda item: judge(engine, item), listing, concurrency):
        finding, mapping = future.result()
        report.add(finding, mapping)
        sink.done()
    return report


# -- rendering -------------------------------------------------------------------


def short_key(arn: str | None) -> str:
    """``key/1234…`` from a full ARN: the table is for eyes, JSON/CSV keep the ARN."""
    if not arn:
        return "-"
    return arn.rsplit(":", 1)[-1]


def describe_encryption(sse: str | None, key: str | None) -> str:
    if sse is None:
        return "none"
    return sse if not key else f"{sse} {short_key(key)}"


def render_table(report: AuditReport, console: Console, limit: int) -> None:
    title = f"s3://{report.bucket}/{report.prefix or ''}" + (" (all versions)" if report.versions else "")
    table = Table(title=f"Audit of {title} — mappings from {report.source}")
    table.add_column("Prefix")
    table.add_column("Target")
    table.add_column("Objects", justify="right")
    for category in TABLE_COLUMNS:
        table.add_column(str(category), justify="right")
    table.add_column("Other")
    for name in sorted(report.prefixes):
        s = report.prefixes[name]
        target = "invalid: " + s.problem if s.problem else describe_encryption(
            s.target.sse_type, s.target.kms_key_arn
        )
        other = ", ".join(
            f"{c}: {n}" for c, n in sorted(s.counts.items()) if c not in TABLE_COLUMNS and n
        )
        table.add_row(
            name, target, str(s.objects), *(str(s.counts.get(c, 0)) for c in TABLE_COLUMNS), other or "-"
        )
    table.add_row("(unmapped)", "-", str(report.unmapped), *("-" for _ in TABLE_COLUMNS), "-", style="dim")
    console.print(table)
    if report.truncated:
        console.print(f"[yellow]Stopped after {report.objects} objects (--max-objects).[/]")
    if not report.offenders:
        console.print(f"[green]All mapped objects are compliant[/] ({report.objects} objects judged).")
        return
    shown = sorted(report.offenders, key=_finding_order)[:limit]
    offenders = Table(title=f"Offenders: first {len(shown)} of {report.non_compliant} (all of them with --format json|csv)")
    offenders.add_column("Key")
    if report.versions:
        offenders.add_column("Version")
    offenders.add_column("Category")
    offenders.add_column("Now")
    offenders.add_column("Should be")
    for f in shown:
        row = [f.key]
        if report.versions:
            row.append((f.version_id or "-") + ("" if f.is_latest else " (noncurrent)"))
        row += [
            str(f.category),
            describe_encryption(f.sse_type, f.kms_key_arn) if f.category not in (
                Category.SSE_C, Category.ACCESS_DENIED, Category.ERROR, Category.INVALID_MAPPING
            ) else f.reason[:80],
            describe_encryption(f.target_sse_type, f.target_kms_key_arn),
        ]
        offenders.add_row(*row)
    console.print(offenders)
    console.print(f"[red]{report.non_compliant} mapped object(s) are not compliant.[/]")


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def make_console(stderr: bool = False) -> Console:
    # Not a terminal (CI logs, pipes, files): wide enough that keys and ARNs are not cut.
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200)


def fail_input(console: Console, message: str) -> typer.Exit:
    console.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


def audit_command(
    bucket: sources.BucketOption,
    prefix: sources.PrefixOption = None,
    versions: Annotated[
        bool, typer.Option("--versions", help="Judge every version (ListObjectVersions), not just current objects.")
    ] = False,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table (the first --limit offenders) or json/csv (every offender).")] = OutputFormat.TABLE,
    stack: sources.StackOption = None,
    mapping_table: sources.MappingTableOption = None,
    endpoint_url: sources.EndpointOption = None,
    region: sources.RegionOption = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Objects inspected at once.")] = 32,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Offenders listed in the table.")] = 20,
    max_objects: Annotated[
        int | None, typer.Option("--max-objects", min=1, help="Stop after judging this many objects (a sample).")
    ] = None,
) -> None:
    """Report per mapped prefix how many objects are compliant, wrong type, wrong key, or
    unencrypted/SSE-S3. Exit 1 when any mapped object is not compliant (a CI gate)."""
    err = make_console(stderr=True)
    out = make_console()
    try:
        aws = AwsTarget(endpoint_url, region)
        mappings = sources.resolve_mappings(aws, stack, mapping_table)
        label = sources.source_label(stack, mapping_table)
        sources.bucket_mappings(mappings, bucket, label)
        s3 = aws.client("s3", pool=concurrency + 4)
        with progress_bar(err, f"Auditing s3://{bucket}/{prefix or ''}") as sink:
            report = run_audit(
                s3, mappings, bucket, prefix=prefix, versions=versions, concurrency=concurrency,
                max_objects=max_objects, source=label, progress=sink,
            )
    except sources.InputError as exc:
        raise fail_input(err, str(exc)) from None
    except Exception as exc:
        problem = sources.aws_problem(exc)
        if problem:
            raise fail_input(err, problem) from None
        raise
    if output_format is OutputFormat.JSON:
        sys.stdout.write(report.to_json() + "\n")
    elif output_format is OutputFormat.CSV:
        sys.stdout.write(report.to_csv())
        err.print(f"{report.non_compliant} non-compliant of {report.objects} objects", highlight=False)
    else:
        render_table(report, out, limit)
    raise typer.Exit(report.exit_code)
