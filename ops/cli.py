"""``python -m ops``: the operator CLI (typer + rich), a thin layer over importable modules.

Exit codes: 0 success, 1 the operation ran and failed (a failed deploy, a failed seed
check, non-compliant objects in ``audit``), 2 bad input or a missing prerequisite, with
a message naming the thing and the fix.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ops import deploy, stack_config
from ops.audit import audit_command
from ops.backfill import PlainHelpCommand, backfill_command, endpoint_url_problem
from ops.dlq_render import dlq_app
from ops.log_render import log_command

app = typer.Typer(
    name="ops",
    help="s3-prefix-keys operator tooling: local sandbox, deploys, mapping edits, audit and backfill.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
mappings_app = typer.Typer(help="List, add or remove prefix -> KMS key mappings in the stack's config "
                           "(pulumi config when the CLI is installed, else Pulumi.<stack>.yaml).",
                           no_args_is_help=True)
app.add_typer(mappings_app, name="mappings")

StackOption = Annotated[str, typer.Option("--stack", help="Stack name: Pulumi.<stack>.yaml.")]


def console(stderr: bool = False) -> Console:
    # Not a terminal (make demo piped to a file, CI, tests): wide enough that key ARNs
    # and export lines are never wrapped or cut.
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200)


def fail(message: str, code: int = 2) -> NoReturn:
    # The message is data (config keys like prefixes["a/"], engine output): never markup.
    console(stderr=True).print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# The commands that call AWS themselves. The others would silently ignore the global
# --endpoint-url/--region: deploys take the region from the stack's aws:region and
# their endpoints from the aws provider, the sandbox serves its own endpoint (--port).
AWS_COMMANDS = ("audit", "backfill", "dlq", "log")


@app.callback()
def main(
    ctx: typer.Context,
    endpoint_url: Annotated[
        str | None,
        typer.Option("--endpoint-url", help="AWS endpoint for audit and backfill, e.g. the sandbox's "
                     "http://127.0.0.1:4566 (the command's own --endpoint-url wins)."),
    ] = None,
    region: Annotated[
        str | None,
        typer.Option("--region", help="AWS region for audit and backfill (the command's own --region wins)."),
    ] = None,
) -> None:
    problem = endpoint_url_problem(endpoint_url)
    if problem:
        fail(problem)
    if (endpoint_url or region) and ctx.invoked_subcommand not in AWS_COMMANDS:
        given = [name for name, value in (("--endpoint-url", endpoint_url), ("--region", region)) if value]
        verb, pronoun = ("apply", "them") if len(given) > 1 else ("applies", "it")
        fail(
            f"{' and '.join(given)} {verb} to {' and '.join(AWS_COMMANDS)}, the commands that call AWS themselves; "
            f"`{ctx.invoked_subcommand}` would ignore {pronoun}. A deployment's region is the stack's aws:region "
            "(`pulumi config set aws:region ...`); the sandbox serves its own endpoint (--port)."
        )
    # botocore reads these for every client that is not given its own values, so the
    # global options reach audit and backfill without each command re-declaring them.
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = endpoint_url
    if region:
        os.environ["AWS_DEFAULT_REGION"] = region
        os.environ["AWS_REGION"] = region


app.command("audit")(audit_command)
# Plain click help: rich's panel cuts option names at 80 columns (PlainHelpCommand says why).
app.command("backfill", cls=PlainHelpCommand)(backfill_command)
app.add_typer(dlq_app, name="dlq")
app.command("log")(log_command)


# ---------------------------------------------------------------------------
# sandbox


class Scenario(StrEnum):
    SEED = "seed"


@app.command()
def sandbox(
    port: Annotated[int, typer.Option("--port", help="Port of the emulator on 127.0.0.1.")] = 4566,
    stack: StackOption = "dev",
    scenario: Annotated[
        Scenario | None,
        typer.Option("--scenario", help="seed: run the original README's Testing section end to end and exit "
                     "(0 only when every result is as expected)."),
    ] = None,
) -> None:
    """Run the whole product locally: moto (patched) on 127.0.0.1:PORT, the stack provisioned from
    Pulumi.<stack>.yaml, and the enforcer fed by an SQS poller that behaves like Lambda's."""
    from ops.sandbox.emulator import SandboxError
    from ops.sandbox.lifecycle import Sandbox
    from ops.sandbox.seed import run_seed

    out = console()
    box = Sandbox(stack=stack, port=port, console=out)
    try:
        if out.is_terminal:
            with out.status(f"starting the emulator on port {port} and provisioning stack {stack}..."):
                box.start()
        else:
            box.start()
    except SandboxError as exc:
        fail(str(exc))
    try:
        box.print_banner()
        if scenario is Scenario.SEED:
            report = run_seed(box)
            raise typer.Exit(0 if report.ok else 1)
        out.print("\nFrom another terminal:", highlight=False)
        for line in box.client_hints():
            out.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
        out.print(
            f"\nSandbox ready on {box.endpoint_url}: the enforcer is polling {box.prov.names.queue}. "
            "Ctrl-C to stop.",
            highlight=False,
            soft_wrap=True,
        )
        _stop_on_signals()
        with contextlib.suppress(KeyboardInterrupt):
            box.serve_forever()
        out.print("Sandbox stopped.", highlight=False)
    except SandboxError as exc:
        fail(str(exc))
    finally:
        box.stop()


def _stop_on_signals() -> None:
    # `kill` and process managers send SIGTERM: stop as cleanly as on Ctrl-C. SIGINT
    # too, explicitly: a shell starts background jobs with SIGINT ignored.
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)


# ---------------------------------------------------------------------------
# deploys (Automation API)


PolicyPackOption = Annotated[
    str | None,
    typer.Option("--policy-pack", help="Run this CrossGuard pack (e.g. policypack) with its config.json."),
]


def _deploy(operation: str, stack: str, policy_pack: str | None) -> None:
    try:
        deploy.check_pulumi_cli()  # before anything else: one message, exit 2
        if operation != "destroy":
            # The shared model's messages, before the CLI spends time on a doomed preview.
            stack_config.list_mappings(stack, deploy.PROJECT_ROOT)
        result = deploy.run_operation(operation, stack, policy_pack, deploy.PROJECT_ROOT, on_output=print)
    except (deploy.DeployError, stack_config.MappingError) as exc:
        fail(str(exc))
    except deploy.OperationFailed as exc:
        fail(str(exc), code=1)
    changes = ", ".join(f"{k} {v}" for k, v in sorted(result.changes.items())) or "no changes"
    console().print(f"{result.summary} ({changes})", highlight=False)


@app.command()
def preview(stack: StackOption = "dev", policy_pack: PolicyPackOption = None) -> None:
    """pulumi preview of the stack through the Automation API (output streamed)."""
    _deploy("preview", stack, policy_pack)


@app.command()
def up(stack: StackOption = "dev", policy_pack: PolicyPackOption = None) -> None:
    """pulumi up of the stack through the Automation API (output streamed)."""
    _deploy("up", stack, policy_pack)


@app.command()
def destroy(stack: StackOption = "dev") -> None:
    """pulumi destroy of the stack through the Automation API (output streamed)."""
    _deploy("destroy", stack, None)


@app.command()
def outputs(
    stack: StackOption = "dev",
    as_json: Annotated[bool, typer.Option("--json", help="Print the outputs as one JSON object.")] = False,
    show_secrets: Annotated[bool, typer.Option("--show-secrets", help="Print secret outputs in clear.")] = False,
) -> None:
    """The deployed stack's outputs through the Automation API (table names, queue, function, demo buckets
    and keys...)."""
    try:
        deploy.check_pulumi_cli()
        values = deploy.stack_outputs(stack, deploy.PROJECT_ROOT)
    except deploy.DeployError as exc:
        fail(str(exc))
    shown = {
        name: (value.value if show_secrets or not value.secret else "[secret]") for name, value in values.items()
    }
    if as_json:
        sys.stdout.write(json.dumps(shown, indent=2, sort_keys=True) + "\n")
        return
    if not shown:
        console().print(f"stack {stack} has no outputs (not deployed yet: `python -m ops up --stack {stack}`)",
                        highlight=False)
        return
    table = Table(title=f"Outputs of stack {stack}", title_justify="left")
    table.add_column("output")
    table.add_column("value", overflow="fold")
    for name, value in sorted(shown.items()):
        table.add_row(name, value if isinstance(value, str) else json.dumps(value))
    console().print(table)


# ---------------------------------------------------------------------------
# mappings


BucketOption = Annotated[str, typer.Option("--bucket", help="Bucket name.")]
PrefixOption = Annotated[str, typer.Option("--prefix", help="Literal S3 key prefix, e.g. tenant-a/.")]


@mappings_app.command("list")
def mappings_list(stack: StackOption = "dev") -> None:
    """The stack's prefix mappings: the rows the program writes to the mapping table."""
    try:
        config, rows = stack_config.list_mappings(stack, deploy.PROJECT_ROOT)
    except stack_config.MappingError as exc:
        fail(str(exc))
    out = console()
    table = Table(title=f"Mappings of stack {stack}", title_justify="left")
    for column in ("bucket", "prefix", "encryption", "bucket key", "kms key ARN", "delivery"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row.bucket,
            row.prefix,
            "DSSE-KMS" if row.dual_layer else "SSE-KMS",
            "on" if row.bucket_key else "off",
            str(row.kms_key_arn),
            config.buckets[row.bucket].notification,
        )
    if rows:
        out.print(table)
    if config.demo:
        from components.config import DEMO

        prefixes = ", ".join(f"{p} ({'DSSE-KMS' if dsse else 'SSE-KMS'})" for p, _, dsse in DEMO.prefixes)
        out.print(
            f"demo: on, so the stack also creates {len(DEMO.buckets)} demo buckets and {len(DEMO.key_names)} keys "
            f"and maps {prefixes} in each (`python -m ops sandbox` shows them locally)",
            highlight=False,
        )
    if not rows and not config.demo:
        out.print("no mappings: add one with `python -m ops mappings add --bucket B --prefix P --key ARN`",
                  highlight=False)


def _report_change(result: stack_config.ChangeResult, what: str) -> None:
    out = console()
    for warning in result.warnings:
        console(stderr=True).print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    for note in result.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False)
    via = "pulumi config (Automation API)" if result.written_via is stack_config.Writer.PULUMI else result.path.name
    out.print(f"{what}; written via {via}:", highlight=False)
    for edit in result.edits:
        out.print(f"  {edit.command(result.stack)}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"Apply it with `python -m ops up --stack {result.stack}`; a running `python -m ops sandbox "
              f"--stack {result.stack}` applies it within a second (it watches {result.path.name}).", highlight=False)


@mappings_app.command("add")
def mappings_add(
    bucket: BucketOption,
    prefix: PrefixOption,
    key: Annotated[str, typer.Option("--key", help="Full KMS key ARN in the stack's region.")],
    stack: StackOption = "dev",
    dsse: Annotated[bool, typer.Option("--dsse", help="Dual-layer encryption (DSSE-KMS) instead of SSE-KMS.")] = False,
    bucket_key: Annotated[
        bool | None,
        typer.Option("--bucket-key/--no-bucket-key", help="S3 Bucket Keys (default: on for SSE-KMS, off for DSSE)."),
    ] = None,
) -> None:
    """Map PREFIX of BUCKET to a key (replacing any mapping of that prefix); validated before writing."""
    try:
        result = stack_config.add_mapping(stack, bucket, prefix, key, dsse, bucket_key, root=deploy.PROJECT_ROOT)
    except stack_config.MappingError as exc:
        fail(str(exc))
    _report_change(result, f"mapped s3://{bucket}/{prefix} to {key}{' (DSSE-KMS)' if dsse else ''}")


@mappings_app.command("remove")
def mappings_remove(bucket: BucketOption, prefix: PrefixOption, stack: StackOption = "dev") -> None:
    """Unmap PREFIX of BUCKET (the bucket's last mapping removes the bucket from the stack)."""
    try:
        result = stack_config.remove_mapping(stack, bucket, prefix, root=deploy.PROJECT_ROOT)
    except stack_config.MappingError as exc:
        fail(str(exc))
    removed_bucket = any(edit.segments == ("buckets", bucket) for edit in result.edits)
    suffix = f"; it was the last mapping of {bucket}, so the bucket left the stack" if removed_bucket else ""
    _report_change(result, f"unmapped s3://{bucket}/{prefix}{suffix}")


# ---------------------------------------------------------------------------
# policy check


@app.command("policy-check")
def policy_check(
    stack: StackOption = "dev",
    config: Annotated[
        Path | None, typer.Option("--config", help="Policy pack config JSON (default policypack/config.json).")
    ] = None,
    first_preview: Annotated[
        bool, typer.Option("--first-preview", help="Computed outputs unknown, as on a new stack's first preview.")
    ] = False,
) -> None:
    """The CrossGuard pack over the program's resources, offline (python -m policypack.check)."""
    command = [sys.executable, "-m", "policypack.check", "--stack", stack]
    if config is not None:
        command += ["--config", str(config)]
    if first_preview:
        command.append("--first-preview")
    # A process of its own: the check runs the program under Pulumi's mock runtime,
    # whose global state must not leak into this one. Its exit code is ours.
    raise typer.Exit(subprocess.run(command, cwd=deploy.PROJECT_ROOT).returncode)
