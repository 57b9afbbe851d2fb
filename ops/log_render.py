"""The ``ops log`` command's face: its options, consoles and exit codes, the Scan's
progress, and the rows as a rich table, JSON or CSV. The work is ``ops/log_query.py``."""

from __future__ import annotations

import csv
import io
import json
import sys
from contextlib import nullcontext
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ops.aws import Target
from ops.log_query import OUTCOMES, LogFilter, LogResult, parse_time, read_log, resolve_log_table
from ops.sources import EndpointOption, InputError, RegionOption, aws_problem
from ops.terminal import fail_input, make_console

# The CSV's leading columns: the original sample's, then this product's; any other
# attribute a row has follows, sorted, so that no column is dropped.
CSV_COLUMNS = (
    "s3_object_path", "current_timestamp_utc", "current_sse_type", "current_kms_key_arn",
    "new_sse_type", "new_kms_key_arn", "action_taken", "action_reason",
    "bucket", "prefix", "outcome", "method", "new_version_id", "old_version",
    "fallback", "replica", "delivery", "expires_at",
)
TABLE_COLUMNS = (
    ("time (UTC)", "current_timestamp_utc"), ("object", "s3_object_path"), ("prefix", "prefix"),
    ("outcome", "outcome"), ("action", "action_taken"), ("reason", "action_reason"),
)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def result_json(result: LogResult) -> str:
    return json.dumps({
        "log_table": result.table,
        "origin": result.origin,
        "scanned": result.scanned,
        "older_rows": result.older_rows,
        "rows": result.rows,
        "notes": result.notes,
    }, indent=2, default=str)


def result_csv(result: LogResult) -> str:
    extra = sorted({k for row in result.rows for k in row} - set(CSV_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    writer.writerows(result.rows)
    return buffer.getvalue()


def render_table(result: LogResult, out: Console) -> None:
    out.print(f"Log table {result.table} ({result.origin}): {len(result.rows)} rows",
              markup=False, highlight=False, soft_wrap=True)
    if result.rows:
        table = Table(title_justify="left")
        for title, _ in TABLE_COLUMNS:
            # Paths and reasons are what the operator acts on: wrap them, never cut them.
            table.add_column(title, overflow="fold")
        for row in result.rows:
            table.add_row(*(escape(str(row.get(name, "-"))) for _, name in TABLE_COLUMNS))
        out.print(table)


def _notes(result: LogResult, console: Console) -> None:
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def read_stack_outputs(stack: str) -> dict[str, Any]:
    """The deployed stack's outputs, as ``ops dlq`` reads them, with this command's hint."""
    from ops import dlq

    try:
        return dlq.read_stack_outputs(stack)
    except InputError as exc:
        raise InputError(str(exc).rsplit("; or name", 1)[0] + "; or name the table with --log-table") from None


def client(target: Target):
    """The DynamoDB client for the command; a seam for tests."""
    return target.client("dynamodb", retry_mode="standard")


def log_command(
    bucket: Annotated[str | None, typer.Option(
        "--bucket", help="Rows of this bucket: a Query on the bucket-time index (without it, a Scan of the whole table).")] = None,
    prefix: Annotated[str | None, typer.Option("--prefix", help="Only keys under this prefix (literal S3 key prefix).")] = None,
    outcome: Annotated[str | None, typer.Option("--outcome", help=f"Only this outcome: {', '.join(OUTCOMES)}.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Rows from this time: ISO 8601 (naive is UTC) or an age like 30m, 1h, 7d.")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Rows up to this time, in the same forms as --since.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="The newest rows to show, at most.")] = 100,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table, json or csv.")] = OutputFormat.TABLE,
    stack: Annotated[str, typer.Option(
        "--stack", help="Stack whose log table to read: its output logTableName, or with --endpoint-url the sandbox's.")] = "dev",
    log_table: Annotated[str | None, typer.Option("--log-table", help="The log table's name (instead of --stack).")] = None,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
) -> None:
    """The enforcer's log rows by bucket, prefix, outcome and time, newest first.

    Rows written before rows carried a bucket attribute are found by a Scan, which the output says."""
    from ops.dlq import effective_endpoint  # the global --endpoint-url, as dlq reads it

    err, out = make_console(stderr=True), make_console()
    try:
        now = datetime.now(UTC)
        flt = LogFilter(bucket, prefix, outcome, parse_time("--since", since, now), parse_time("--until", until, now), limit)
        table, origin = resolve_log_table(stack, effective_endpoint(endpoint_url), log_table, read_stack_outputs)
        with err.status(f"Reading {table}...") if err.is_terminal else nullcontext() as status:
            def progress(scanned: int, matched: int) -> None:
                if status is not None:
                    status.update(f"Scanning {table}: {scanned} rows read, {matched} match")
            result = read_log(client(Target(endpoint_url, region)), table, origin, flt, progress)
    except InputError as exc:
        raise fail_input(err, escape(str(exc))) from None
    except Exception as exc:
        problem = aws_problem(exc)
        if problem:
            raise fail_input(err, escape(problem)) from None
        raise
    if output_format is OutputFormat.JSON:
        sys.stdout.write(result_json(result) + "\n")
    elif output_format is OutputFormat.CSV:
        sys.stdout.write(result_csv(result))
        _notes(result, err)  # the CSV stays machine-readable
    else:
        render_table(result, out)
        _notes(result, out)
