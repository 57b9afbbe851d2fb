"""Terminal output shared by ``ops audit`` and ``ops backfill``: consoles, the exit-2
input error, and progress bars that draw only on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)


def make_console(stderr: bool = False) -> Console:
    # Not a terminal (CI logs, pipes, files): wide enough that keys and ARNs are not cut.
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200)


def fail_input(console: Console, message: str) -> typer.Exit:
    # One line, whatever the width (soft_wrap), and the message is data, never markup.
    console.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


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
