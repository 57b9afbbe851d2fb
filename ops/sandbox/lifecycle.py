"""``Sandbox``: the emulator, the provisioned stack and the enforcer's event source mapping,
started and stopped together, polled, and reported on the console."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console

from components.config import ConfigError, StackConfig, load_stack_file, stack_file
from ops import moto_patches
from ops.lambda_runtime import LambdaContext
from ops.sandbox.emulator import DEFAULT_PORT, HOST, UPLOADER_CREDENTIALS, SandboxError, running
from ops.sandbox.enforcer_function import environment, load_handler
from ops.sandbox.esm_runner import DEFAULT_RETRY_DELAY_SECONDS, BatchOutcome, EventSourceMapping
from ops.sandbox.provisioning import Provisioned, SandboxNames, log_rows, provision
from ops.sandbox.render import mapping_table


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
    ):
        self.stack = stack
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
            cleanup.enter_context(running(self.port))  # the port is checked before anything starts
            self.prov = provision(self.endpoint_url, config, SandboxNames(self.stack))
            # The sandbox prints one line per object itself; Powertools' JSON log lines
            # and EMF metrics would bury them. POWERTOOLS_LOG_LEVEL=INFO brings the
            # function's logs back.
            cleanup.enter_context(environment({
                "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
                "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
            }))
            self.handler_module = load_handler(self.prov)
            self.esm = EventSourceMapping(
                self.prov.client("sqs"),
                self.prov.queue_url,
                self.prov.queue_arn,
                self.prov.region,
                self.handler_module.handler,
                self.prov.enforcer_principal,
                batch_size=config.lambda_.batch_size,
                retry_delay_seconds=self.retry_delay_seconds,
                context=LambdaContext(self.prov.names.function_name, self.prov.region, self.prov.account),
            )
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
        """Poll until the queue is empty (and ``done()`` holds); False on timeout."""
        assert self.esm is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.esm.poll(wait_seconds=0) is not None:
                continue
            # S3 queues a notification before it answers the request that caused it,
            # so once nothing is visible or in flight, nothing more is coming.
            if self.esm.queue_depth() == (0, 0) and (done is None or done()):
                return True
            time.sleep(0.1)
        return False

    def serve_forever(self, stop: threading.Event | None = None, report: bool = True) -> None:
        """The interactive loop: poll, print what the enforcer did, until ``stop`` or Ctrl-C."""
        stop = stop or threading.Event()
        while not stop.is_set():
            outcome = self.poll(wait_seconds=1)
            if outcome is not None and report:
                self.report(outcome)

    def report(self, outcome: BatchOutcome) -> None:
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
        if outcome.invoked:
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
