"""The audit report as rich tables: per mapped prefix, then the first offenders (each
with the command that fixes it), then the versions kept by decision."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ops.audit_report import TABLE_COLUMNS, AuditReport, Category, finding_order


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
    render_kept(report, console, limit)
    if not report.offenders:
        console.print(f"[green]All mapped objects are compliant[/] ({report.objects} objects judged"
                      + (f"; {len(report.kept)} noncurrent version(s) kept by decision" if report.kept else "")
                      + ").")
        return
    shown = sorted(report.offenders, key=finding_order)[:limit]
    offenders = Table(title=f"Offenders: first {len(shown)} of {report.non_compliant} (all of them with --format json|csv)")
    offenders.add_column("Key")
    if report.versions:
        offenders.add_column("Version")
    offenders.add_column("Category")
    offenders.add_column("Now")
    offenders.add_column("Should be")
    offenders.add_column("Fix")
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
        kept.add_column(name)
    for f in shown:
        kept.add_row(f.key, f.version_id or "-", describe_encryption(f.sse_type, f.kms_key_arn), f.decided)
    console.print(kept)
