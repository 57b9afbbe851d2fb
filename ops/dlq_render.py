"""The ``ops dlq`` commands' face: their options, consoles and exit codes, and the output
(the listing as a rich table or JSON, the redrive's progress and summary). The work is
``ops/dlq.py``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ops.aws import Target as AwsTarget
from ops.dlq import (
    LIST_VISIBILITY_SECONDS,
    MAX_MESSAGES_PER_SECOND,
    Listing,
    RedriveResult,
    effective_endpoint,
    list_dlq,
    redrive,
    resolve_queues,
)
from ops.sources import EndpointOption, InputError, RegionOption, aws_problem
from ops.terminal import fail_input, make_console, progress_bar


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def listing_json(listing: Listing) -> str:
    doc: dict[str, Any] = {
        "dead_letter_queue": listing.queues.dlq_url,
        "source_queue": listing.queues.queue_url,
        "log_table": listing.queues.log_table,
        "approximate_depth": listing.depth,
        "messages_listed": listing.messages,
        "entries": [e.to_json() for e in listing.entries],
        "notes": listing.notes,
    }
    return json.dumps(doc, indent=2)


def render_listing(listing: Listing, out: Console) -> None:
    q = listing.queues
    out.print(f"Dead-letter queue {q.dlq_url} ({q.origin}): about {listing.depth} messages, "
              f"{listing.messages} listed", markup=False, highlight=False, soft_wrap=True)
    if listing.entries:
        table = Table(title_justify="left")
        for column in ("message", "bucket", "key", "receives", "first receive (UTC)", "first failure (log table)"):
            # Keys and reasons are what the operator acts on: wrap them, never cut them.
            table.add_column(column, overflow="fold")
        for e in listing.entries:
            key = e.ref.key + (f" (version {e.ref.version_id})" if e.ref.version_id else "") if e.ref else "-"
            table.add_row(
                escape(e.message_id[:8]),
                escape(e.ref.bucket) if e.ref else "-",
                escape(key) if e.ref else f"[yellow]{escape(e.malformed or '')}[/]",
                str(e.receives),
                _when(e.first_receive),
                _failure(e.log_row),
            )
        out.print(table)
    for note in listing.notes:
        out.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def _failure(row: dict[str, Any] | None) -> str:
    if not row:
        return "no log row"
    reason = row.get("action_reason") or ""
    return escape(f"{row.get('outcome', '?')} at {row.get('current_timestamp_utc', '?')}" + (f": {reason}" if reason else ""))


def redrive_json(result: RedriveResult) -> str:
    return json.dumps({
        "method": result.method,
        "status": result.status,
        "to_move": result.to_move,
        "moved": result.moved,
        "task_handle": result.task_handle,
        "failure": result.failure,
        "duplicates": result.duplicates,
        "fallback_reason": result.fallback_reason,
        "notes": result.notes,
    }, indent=2)


def render_redrive(result: RedriveResult, out: Console) -> None:
    via = "SQS message move task" if result.method == "message-move-task" else "receive, send, delete"
    total = "?" if result.to_move is None else str(result.to_move)
    colour = "green" if result.ok else "red"
    out.print(f"[{colour}]{escape(result.status.lower())}[/]: moved {result.moved} of {total} messages "
              f"back to the source queue ({via})", highlight=False, soft_wrap=True)
    if result.failure:
        out.print(f"[red]failed:[/] {escape(result.failure)}", highlight=False, soft_wrap=True)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


# -- the commands --------------------------------------------------------------

dlq_app = typer.Typer(
    help="The enforcer's dead-letter queue: list what failed (decoded), redrive it to the source queue.",
    no_args_is_help=True,
)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


StackOption = Annotated[str, typer.Option(
    "--stack", help="Stack whose queues to use: the deployed stack's outputs, or with --endpoint-url the sandbox's names.")]
DlqUrlOption = Annotated[str | None, typer.Option("--dlq-url", help="The dead-letter queue's URL (instead of --stack).")]
QueueUrlOption = Annotated[str | None, typer.Option(
    "--queue-url", help="The source queue's URL: where redrive sends the messages (default: the stack's queue).")]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="table, or json for scripts.")]


def clients(target: AwsTarget) -> tuple[Any, Any]:
    """(sqs, dynamodb) for the commands; a seam for tests."""
    return target.client("sqs", retry_mode="standard"), target.client("dynamodb", retry_mode="standard")


def _run(endpoint_url: str | None, region: str | None,
         work: Callable[[Console, str | None, Any, Any], Any]) -> tuple[Any, Console]:
    """``work(err, endpoint, sqs, dynamodb)`` with the operator's errors as exit 2."""
    err = make_console(stderr=True)
    try:
        sqs, ddb = clients(AwsTarget(endpoint_url, region))
        return work(err, effective_endpoint(endpoint_url), sqs, ddb), make_console()
    except InputError as exc:
        raise fail_input(err, escape(str(exc))) from None
    except Exception as exc:
        problem = aws_problem(exc)
        if problem:
            raise fail_input(err, escape(problem)) from None
        raise


@dlq_app.command("list")
def list_command(
    stack: StackOption = "dev",
    dlq_url: DlqUrlOption = None,
    log_table: Annotated[str | None, typer.Option(
        "--log-table", help="Log table for each object's first failure (default: the stack's).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help=(
        "Messages to list (and log-table Queries, one per object). SQS has no peek: listing receives them, "
        f"so they are invisible for at most {LIST_VISIBILITY_SECONDS} s, then handed back."))] = 50,
    output_format: FormatOption = OutputFormat.TABLE,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
) -> None:
    """What the dead-letter queue holds, decoded; deletes nothing.

    Per object: bucket, key, receive count, first receive, and the log table's first row for it since."""

    def work(err: Console, endpoint: str | None, sqs: Any, ddb: Any) -> Listing:
        queues = resolve_queues(sqs, stack, endpoint, dlq_url, None, log_table)
        with progress_bar(err, "Looking up first failures") as sink:
            return list_dlq(sqs, ddb, queues, limit, sink)

    listing, out = _run(endpoint_url, region, work)
    if output_format is OutputFormat.JSON:
        sys.stdout.write(listing_json(listing) + "\n")
    else:
        render_listing(listing, out)


@dlq_app.command("redrive")
def redrive_command(
    stack: StackOption = "dev",
    dlq_url: DlqUrlOption = None,
    queue_url: QueueUrlOption = None,
    max_per_second: Annotated[int | None, typer.Option(
        "--max-per-second", min=1, max=MAX_MESSAGES_PER_SECOND,
        help="Messages moved per second (default: SQS picks the rate).")] = None,
    output_format: FormatOption = OutputFormat.TABLE,
    endpoint_url: EndpointOption = None,
    region: RegionOption = None,
) -> None:
    """Move the dead-letter queue's messages back to the source queue, with progress.

    SQS's message move task (StartMessageMoveTask); where the endpoint lacks that API (the sandbox),
    receive, send, delete, one message at a time. Exit 1 when the move failed or stopped."""

    def work(err: Console, endpoint: str | None, sqs: Any, _ddb: Any) -> RedriveResult:
        queues = resolve_queues(sqs, stack, endpoint, dlq_url, queue_url, None)
        with progress_bar(err, f"Redriving {queues.dlq_url}") as sink:
            return redrive(sqs, queues, endpoint, max_per_second, sink,
                           on_note=lambda note: err.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True))

    result, out = _run(endpoint_url, region, work)
    if output_format is OutputFormat.JSON:
        sys.stdout.write(redrive_json(result) + "\n")
    else:
        render_redrive(result, out)
    raise typer.Exit(0 if result.ok else 1)
