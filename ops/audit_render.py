"""The audit report as rich tables: per mapped prefix, then the first offenders (each
with the command that fixes it), then the versions kept by decision; with ``--all`` a
table per bucket first, then each bucket's.

Every column that holds a name, a key, a reason or a command folds (wraps mid-word):
rich's default cuts a value longer than its column with an ellipsis, and at 80
columns that would hide the very prefix or reason an operator needs."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ops.audit_report import TABLE_COLUMNS, AuditReport, AuditSet, Category, compliance, finding_order


def text_column(table: Table, name: str) -> None:
    table.add_column(name, overflow="fold")


def count_column(table: Table, name: str) -> None:
    table.add_column(name, justify="right", overflow="fold")


def percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


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
    text_column(table, "Prefix")
    text_column(table, "Target")
    count_column(table, "Objects")
    for category in TABLE_COLUMNS:
        count_column(table, str(category))
    text_column(table, "Other")
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
    render_kept(report, console, limit)
    if not report.offenders:
        console.print(f"[green]All mapped objects are compliant[/] ({report.objects} objects judged"
                      + (f"; {len(report.kept)} noncurrent version(s) kept by decision" if report.kept else "")
                      + ").")
        return
    shown = sorted(report.offenders, key=finding_order)[:limit]
    offenders = Table(title=f"Offenders: first {len(shown)} of {report.non_compliant} (all of them with --format json|csv)")
    for name in ("Key", *(["Version"] if report.versions else []), "Category", "Now", "Should be", "Fix"):
        text_column(offenders, name)
    for f in shown:
        row = [f.key]
        if report.versions:
            row.append((f.version_id or "-") + ("" if f.is_latest else " (noncurrent)"))
        row += [
            str(f.category),
            describe_encryption(f.sse_type, f.kms_key_arn) if f.category not in (
                Category.SSE_C, Category.ACCESS_DENIED, Category.ERROR, Category.INVALID_MAPPING
            ) else f.reason,
            describe_encryption(f.target_sse_type, f.target_kms_key_arn),
            f.fix,
        ]
        offenders.add_row(*row)
    console.print(offenders)
    console.print(f"[red]{report.non_compliant} mapped object(s) are not compliant.[/]")


def render_kept(report: AuditReport, console: Console, limit: int) -> None:
    """Versions under their old key by a recorded decision: shown, never counted as offenders."""
    if not report.kept:
        return
    shown = sorted(report.kept, key=finding_order)[:limit]
    kept = Table(title=f"Kept by decision (not offenders): first {len(shown)} of {len(report.kept)}")
    for name in ("Key", "Version", "Now", "Decision"):
        text_column(kept, name)
    for f in shown:
        kept.add_row(f.key, f.version_id or "-", describe_encryption(f.sse_type, f.kms_key_arn), f.decided)
    console.print(kept)


def render_set(audits: AuditSet, console: Console, limit: int) -> None:
    """``--all``: compliance per bucket, then each bucket's own tables."""
    scope = f" under {audits.prefix}" if audits.prefix else ""
    table = Table(title=f"Audit of {len(audits.reports)} bucket(s){scope} — mappings from {audits.source}")
    text_column(table, "Bucket")
    for name in ("Objects", "Mapped", "Non-compliant", "Compliance"):
        count_column(table, name)
    for r in audits.reports:
        mapped = r.objects - r.unmapped
        table.add_row(r.bucket, str(r.objects), str(mapped), str(r.non_compliant),
                      percent(compliance(mapped, r.non_compliant)))
    console.print(table)
    for r in audits.reports:
        console.print()
        render_table(r, console, limit)
