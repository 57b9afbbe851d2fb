"""``Sandbox``: the emulator, the provisioned stack and the enforcer's event source mapping,
started and stopped together, polled, and reported on the console (what each batch did,
and a live status line built on :mod:`ops.status_model`)."""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import Any

from botocore.config import Config
from rich.console import Console
from rich.live import Live
from rich.text import Text

from components.config import ConfigError, StackConfig, load_stack_file, stack_file
from ops import moto_patches, status_model
from ops.lambda_runtime import LambdaContext
from ops.sandbox.emulator import DEFAULT_PORT, HOST, UPLOADER_CREDENTIALS, SandboxError, client, running
from ops.sandbox.enforcer_function import environment, load_handler
from ops.sandbox.esm_runner import DEFAULT_RETRY_DELAY_SECONDS, BatchOutcome, EventSourceMapping
from ops.sandbox.provisioning import Provisioned, SandboxNames, log_rows, provision
from ops.sandbox.reload import watch_stack_file
from ops.sandbox.render import mapping_table

# How often serve_forever prints the new log rows (one Scan of the log table each time)
# and refreshes the status line; on a pipe, the status line is printed at most this often.
REPORT_INTERVAL_SECONDS = 1.0
PIPE_STATUS_INTERVAL_SECONDS = 10.0


class Sandbox:
    """Emulator + provisioned stack + enforcer loop; a context manager that cleans up."""

    def __init__(
        self,
        stack: str = "dev",
        port: int = DEFAULT_PORT,
        root: str | Path | None = None,
        stack_path: str | Path | None = None,
        console: Console | None = None,
        retry_delay_seconds: int = DEFAULT_RETRY_DELAY_SECONDS,
        concurrency: int | None = None,
        separate_process: bool = True,
    ):
        self.stack = stack
        # None: the stack's lambda.maxConcurrency, as the deployed mapping's maximumConcurrency.
        self.concurrency = concurrency
        self.separate_process = separate_process
        self.port = port
        self.stack_path = Path(stack_path) if stack_path else stack_file(stack, root)
        self.console = console or Console()
        self.retry_delay_seconds = retry_delay_seconds
        self.endpoint_url = f"http://{HOST}:{port}"
        self.prov: Provisioned | None = None
        self.esm: EventSourceMapping | None = None
        self.handler_module: Any = None
        self._cleanup = ExitStack()
        self._seen_rows: set[tuple[str, str]] = set()

    # -- lifecycle

    def load_config(self) -> StackConfig:
        try:
            config = load_stack_file(self.stack_path)
        except ConfigError as exc:
            raise SandboxError(str(exc)) from None
        if not config.demo and not config.buckets:
            raise SandboxError(
                f"{self.stack_path.name} maps no bucket and has the demo off, so the sandbox would enforce "
                "nothing; set `s3-prefix-keys:demo: true` or add a mapping with "
                "`python -m ops mappings add --stack ... --bucket B --prefix P --key ARN`"
            )
        return config

    def start(self) -> Sandbox:
        config = self.load_config()  # bad config first: nothing to clean up yet
        with ExitStack() as cleanup:  # unwound in reverse if any step fails
            cleanup.enter_context(running(self.port, self.separate_process))  # the port is checked first
            self.prov = provision(self.endpoint_url, config, SandboxNames(self.stack))
            # The sandbox prints one line per object itself; Powertools' JSON log lines
            # and EMF metrics would bury them. POWERTOOLS_LOG_LEVEL=INFO brings the
            # function's logs back.
            cleanup.enter_context(environment({
                "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
                "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
            }))
            self.handler_module = load_handler(self.prov)
            prov = self.prov
            concurrency = self.concurrency or config.lambda_.max_concurrency
            # Every poller long-polls on a connection of its own, and deletes on another.
            sqs = client("sqs", prov.endpoint_url, prov.region, config=Config(max_pool_connections=2 * concurrency + 2))
            self.esm = EventSourceMapping(
                sqs,
                self.prov.queue_url,
                self.prov.queue_arn,
                self.prov.region,
                self.handler_module.handler,
                self.prov.enforcer_principal,
                batch_size=config.lambda_.batch_size,
                retry_delay_seconds=self.retry_delay_seconds,
                context=LambdaContext(self.prov.names.function_name, self.prov.region, self.prov.account),
                concurrency=concurrency,
                # Each further poller is an execution environment of its own: a cold start
                # of the handler module, with its own clients and per-invocation state.
                environment_factory=lambda: load_handler(prov).handler,
            )
            cleanup.callback(self.esm.stop)  # first out: the pollers stop before the server
            cleanup.enter_context(watch_stack_file(self.stack_path, self.prov, self.console))  # ops/sandbox/reload.py
            self._cleanup = cleanup.pop_all()
        return self

    def stop(self) -> None:
        """Stop the server, restore the environment and moto's own behaviour (idempotent)."""
        self._cleanup.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- running

    def client(self, service: str):
        assert self.prov is not None, "start() the sandbox first"
        return self.prov.client(service)

    def poll(self, wait_seconds: int = 1) -> BatchOutcome | None:
        assert self.esm is not None, "start() the sandbox first"
        return self.esm.poll(wait_seconds)

    def run_until_idle(self, done: Callable[[], bool] | None = None, timeout: float = 30.0) -> bool:
        """Poll until the queue is empty (and ``done()`` holds); False on timeout.

        With the pollers running (:meth:`start_pollers`), they poll and this waits."""
        assert self.esm is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.esm.running:
                if self.esm.holding():
                    time.sleep(0.05)
                    continue
            elif self.esm.poll(wait_seconds=0) is not None:
                continue
            # S3 queues a notification before it answers the request that caused it,
            # so once nothing is visible or in flight, nothing more is coming.
            if self.esm.queue_depth() == (0, 0) and (done is None or done()):
                return True
            time.sleep(0.1)
        return False

    def start_pollers(self, wait_warm: float = 0.0) -> None:
        """Run the event source mapping's concurrent pollers (until :meth:`stop`); wait up to
        ``wait_warm`` seconds for every poller's cold start."""
        assert self.esm is not None, "start() the sandbox first"
        self.esm.start()
        deadline = time.monotonic() + wait_warm
        while self.esm.warm() < self.esm.concurrency and time.monotonic() < deadline:
            time.sleep(0.05)

    def status(self) -> status_model.StatusSnapshot:
        """The shared status model, with what only the pollers know filled in."""
        assert self.prov is not None and self.esm is not None
        snapshot = status_model.read_status(self.esm.sqs, self.prov.queue_url, self.prov.dead_letter_queue_url)
        # The pollers' in-flight count replaces the queue's not-visible one, which also
        # counts failed messages waiting for their retry.
        return dataclasses.replace(snapshot, **self.esm.activity())

    def serve_forever(self, stop: threading.Event | None = None, report: bool = True) -> None:
        """The interactive loop until ``stop`` or Ctrl-C: the pollers work, this thread prints
        what the enforcer did (each batch's failures and filtered messages, the new log
        rows) and keeps a one-line status, live on a terminal, every few seconds on a pipe."""
        stop = stop or threading.Event()
        outcomes: queue.SimpleQueue[BatchOutcome] = queue.SimpleQueue()
        assert self.esm is not None
        self.esm.on_outcome = outcomes.put
        self.start_pollers()
        live_terminal = report and self.console.is_terminal
        live = Live(Text(""), console=self.console, refresh_per_second=4, transient=True) if live_terminal else None
        last_pipe_status, last_pipe_line, behind = 0.0, "", False
        try:
            with live or nullcontext():
                while not stop.wait(REPORT_INTERVAL_SECONDS):
                    invoked = False
                    while not outcomes.empty():
                        outcome = outcomes.get()
                        invoked = invoked or bool(outcome.invoked)
                        if report:
                            self.report_batch(outcome)
                    if report and invoked:
                        self.report_rows()
                    if not report:
                        continue
                    snapshot = self.status()
                    line = status_model.render_line(snapshot)
                    note = status_model.falling_behind(snapshot)
                    if note and not behind:
                        self.console.print(f"[yellow]note:[/] the queue is falling behind: {note}", highlight=False)
                    behind = bool(note)
                    if live is not None:
                        live.update(Text(line))
                    elif line != last_pipe_line and time.monotonic() - last_pipe_status >= PIPE_STATUS_INTERVAL_SECONDS:
                        self.console.print(f"status: {line}", highlight=False, soft_wrap=True)
                        last_pipe_status, last_pipe_line = time.monotonic(), line
        finally:
            self.esm.on_outcome = None
            self.esm.stop()

    def report(self, outcome: BatchOutcome) -> None:
        """One batch's failures and filtered messages, then the log rows it wrote."""
        self.report_batch(outcome)
        if outcome.invoked:
            self.report_rows()

    def report_batch(self, outcome: BatchOutcome) -> None:
        assert self.prov is not None and self.esm is not None
        for record in outcome.filtered:
            self.console.print(
                f"[dim]filtered ({self.esm.describe(record)}): message {record['messageId']}[/]", highlight=False
            )
        for record in outcome.failed:
            receives = int(record["attributes"].get("ApproximateReceiveCount", "1"))
            limit = self.prov.config.max_receive_count
            fate = "goes to the DLQ" if receives >= limit else f"retried in {self.retry_delay_seconds}s"
            self.console.print(
                f"[red]failed[/] message {record['messageId']} (receive {receives} of {limit}): {fate}",
                highlight=False,
            )

    def report_rows(self) -> None:
        for row in self.new_log_rows():
            self.console.print(
                f"{row['s3_object_path']}: {row['action_taken']} ({row['action_reason']})",
                highlight=False,
                soft_wrap=True,
            )

    def new_log_rows(self) -> list[dict[str, Any]]:
        assert self.prov is not None
        fresh = []
        for row in log_rows(self.client("dynamodb"), self.prov.names.log_table):
            ident = (row["s3_object_path"], row["current_timestamp_utc"])
            if ident not in self._seen_rows:
                self._seen_rows.add(ident)
                fresh.append(row)
        return fresh

    # -- what to print

    def client_hints(self) -> list[str]:
        assert self.prov is not None
        bucket = next(iter(self.prov.demo_buckets), None) or next(iter(self.prov.buckets))
        prefix = sorted(self.prov.buckets[bucket].prefixes)[0]
        return [
            f"export AWS_ENDPOINT_URL={self.endpoint_url}",
            f"export AWS_ACCESS_KEY_ID={UPLOADER_CREDENTIALS['aws_access_key_id']}",
            f"export AWS_SECRET_ACCESS_KEY={UPLOADER_CREDENTIALS['aws_secret_access_key']}",
            f"export AWS_DEFAULT_REGION={self.prov.region}",
            f"export MAPPING_TABLE_NAME={self.prov.names.mapping_table}",
            f"export LOG_TABLE_NAME={self.prov.names.log_table}",
            f"export BUCKET_NAME={bucket}",
            "echo hello > a.txt",
            f"aws --endpoint-url {self.endpoint_url} s3 cp a.txt s3://{bucket}/{prefix}",
            f"aws --endpoint-url {self.endpoint_url} s3api head-object --bucket {bucket} --key {prefix}a.txt "
            '--query "[ServerSideEncryption, SSEKMSKeyId]"',
            f"python -m ops audit --bucket {bucket} --mapping-table {self.prov.names.mapping_table} "
            f"--endpoint-url {self.endpoint_url}",
        ]

    def print_banner(self) -> None:
        assert self.prov is not None
        prov = self.prov
        self.console.print(
            f"[bold]s3-prefix-keys sandbox[/] (stack {self.stack}): moto {moto_patches.MOTO_VERSION_MEASURED}-patched "
            f"AWS emulator on [bold]{self.endpoint_url}[/], account {prov.account}, region {prov.region}",
            highlight=False,
        )
        self.console.print(mapping_table(prov))
        self.console.print(
            f"queue {prov.names.queue} (DLQ after {prov.config.max_receive_count} receives), "
            f"tables {prov.names.mapping_table} / {prov.names.log_table}, "
            f"enforcer principal {prov.enforcer_principal}",
            highlight=False,
        )
        for note in prov.notes:
            self.console.print(f"[yellow]note:[/] {note}", highlight=False)
