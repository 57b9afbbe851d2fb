"""Deploys through the Pulumi Automation API: ``ops preview|up|destroy|outputs``.

The Automation API drives the Pulumi CLI; it does not replace it. So the first thing
every command does is :func:`check_pulumi_cli`: the CLI must be on PATH and satisfy
``requiredPulumiVersion`` from ``Pulumi.yaml``, or the operator gets one message
saying how to install it. Nothing here pretends to deploy without it.

Scripts use the same functions: ``open_stack("dev").preview(on_output=print)``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semver import Version

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTALL_COMMAND = "curl -fsSL https://get.pulumi.com | sh"
DEFAULT_POLICY_PACK = "policypack"
POLICY_PACK_CONFIG = "config.json"


class DeployError(Exception):
    """A problem the operator must fix before Pulumi can run (CLI, stack, arguments): exit 2."""

    def __init__(self, message: str, short: str | None = None):
        super().__init__(message)
        self.short = short or message


class OperationFailed(Exception):
    """Pulumi ran and the preview/update/destroy failed (its output was streamed): exit 1."""


# ---------------------------------------------------------------------------
# the CLI and its version


_COMPARATOR = re.compile(r"^(>=|<=|>|<|==|=)?\s*v?(\d+(?:\.\d+){0,2}(?:[-+][0-9A-Za-z.+-]*)?)$")


def parse_version(text: str) -> Version:
    """``v3.272.0`` / ``3.272`` / ``3.272.0-alpha.1+dirty`` as a semver Version."""
    match = re.match(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?([-+][0-9A-Za-z.+-]+)?$", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a version")
    major, minor, patch, rest = match.groups()
    return Version.parse(f"{major}.{minor or 0}.{patch or 0}{rest or ''}")


def version_satisfies(version: str | Version, constraint: str) -> bool:
    """Whether ``version`` meets a semver range as ``requiredPulumiVersion`` writes it.

    Comparators separated by spaces must all hold; ``||`` separates alternatives
    (the blang/semver range syntax the Pulumi CLI evaluates).
    """
    current = version if isinstance(version, Version) else parse_version(version)
    alternatives = [a.strip() for a in constraint.split("||")]
    if not constraint.strip() or not all(alternatives):
        raise ValueError(f"empty version range {constraint!r}")
    for alternative in alternatives:
        tokens = re.findall(r"(?:>=|<=|>|<|==|=)?\s*v?[0-9][0-9A-Za-z.+-]*", alternative)
        if "".join(tokens).replace(" ", "") != alternative.replace(" ", ""):
            raise ValueError(f"cannot read version range {constraint!r}; use comparators like '>=3.272.0 <4.0.0'")
        if all(_holds(current, token.strip()) for token in tokens):
            return True
    return False


def _holds(current: Version, comparator: str) -> bool:
    match = _COMPARATOR.match(comparator)
    if not match:
        raise ValueError(f"cannot read version comparator {comparator!r}")
    op, bound = match.group(1) or "=", parse_version(match.group(2))
    cmp = current.compare(bound)
    return {">=": cmp >= 0, "<=": cmp <= 0, ">": cmp > 0, "<": cmp < 0, "=": cmp == 0, "==": cmp == 0}[op]


def required_pulumi_version(root: Path | None = None) -> str | None:
    """``requiredPulumiVersion`` from ``Pulumi.yaml``, or None when the project sets none."""
    from ruamel.yaml import YAML

    project = (root or PROJECT_ROOT) / "Pulumi.yaml"
    try:
        doc = YAML(typ="safe", pure=True).load(project.read_text()) or {}
    except FileNotFoundError:
        raise DeployError(f"{project}: no Pulumi project file; run ops from the s3-prefix-keys checkout") from None
    value = doc.get("requiredPulumiVersion")
    return str(value) if value else None


@dataclass(frozen=True)
class PulumiCli:
    path: str
    version: Version


def install_message(problem: str) -> str:
    return (
        f"{problem}. `ops preview|up|destroy|outputs` drive the Pulumi CLI through the Automation API. "
        f"Install it with `{INSTALL_COMMAND}` (it lands in ~/.pulumi/bin; put that on PATH), then log in to a "
        "backend: `pulumi login` (Pulumi Cloud) or `pulumi login --local`."
    )


def check_pulumi_cli(
    root: Path | None = None,
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., Any] = subprocess.run,
) -> PulumiCli:
    """The CLI on PATH, new enough for ``requiredPulumiVersion``; else a DeployError."""
    path = which("pulumi")
    if path is None:
        raise DeployError(install_message("The Pulumi CLI is not installed (no `pulumi` on PATH)"),
                          short="the Pulumi CLI is not installed")
    try:
        answer = run([path, "version"], capture_output=True, text=True, timeout=60,
                     env=_cli_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployError(install_message(f"`{path} version` failed ({exc})"),
                          short="the Pulumi CLI does not run") from None
    text = (answer.stdout or "").strip()
    try:
        version = parse_version(text)
    except ValueError:
        raise DeployError(install_message(f"`{path} version` answered {text!r}, not a version"),
                          short="the Pulumi CLI does not report a version") from None
    required = required_pulumi_version(root)
    if required and not version_satisfies(version, required):
        raise DeployError(
            f"Pulumi CLI {version} at {path} does not satisfy requiredPulumiVersion {required!r} (Pulumi.yaml). "
            f"Upgrade it with `{INSTALL_COMMAND}` (or `pulumi self-update`... where supported).",
            short=f"the Pulumi CLI {version} is older than {required}",
        )
    return PulumiCli(path, version)


def _cli_env() -> dict[str, str]:
    return {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}


# ---------------------------------------------------------------------------
# stacks


def open_stack(stack: str, root: Path | None = None, create: bool = True):
    """The project's stack in the logged-in backend (``work_dir`` = the repository root)."""
    from pulumi import automation as auto

    work_dir = str(root or PROJECT_ROOT)
    try:
        if create:
            return auto.create_or_select_stack(stack_name=stack, work_dir=work_dir)
        return auto.select_stack(stack_name=stack, work_dir=work_dir)
    except auto.StackNotFoundError:
        raise DeployError(
            f"stack {stack!r} does not exist in the current Pulumi backend; list them with `pulumi stack ls`, "
            f"or create it with `pulumi stack init {stack}` (`ops preview --stack {stack}` creates it too)",
            short=f"stack {stack!r} does not exist in the current Pulumi backend",
        ) from None
    except auto.CommandError as exc:
        first = first_error_line(exc)
        raise DeployError(f"pulumi could not open stack {stack!r}: {first}",
                          short=f"pulumi could not open stack {stack!r} ({first})") from None


def open_stack_for_config(stack: str, root: Path) -> Any:
    """For ``ops mappings``: an existing stack only; a config edit must not create stacks."""
    return open_stack(stack, root, create=False)


def first_error_line(exc: BaseException) -> str:
    """The engine's own ``error: ...`` line out of a CommandError's code/stdout/stderr dump."""
    lines = []
    for line in str(exc).splitlines():
        line = re.sub(r"^(stdout|stderr):", "", line.strip()).strip()
        if line and not re.match(r"^code: -?\d+$", line):
            lines.append(line)
    errors = [line for line in lines if line.lower().startswith("error")]
    return (errors or lines or ["unknown error"])[0]


def policy_pack_args(policy_pack: str | None, root: Path | None = None) -> dict[str, list[str]]:
    """``policy_packs`` / ``policy_pack_configs`` for preview and up; the pack's
    ``config.json`` goes with it, as in ``pulumi preview --policy-pack-config``."""
    if not policy_pack:
        return {}
    base = root or PROJECT_ROOT
    pack = Path(policy_pack) if Path(policy_pack).is_absolute() else base / policy_pack
    if not (pack / "PulumiPolicy.yaml").exists():
        raise DeployError(
            f"--policy-pack {policy_pack}: {pack} is not a policy pack (no PulumiPolicy.yaml); "
            f"use --policy-pack {DEFAULT_POLICY_PACK}"
        )
    args = {"policy_packs": [str(pack)]}
    config = pack / POLICY_PACK_CONFIG
    if config.exists():
        args["policy_pack_configs"] = [str(config)]
    return args


@dataclass(frozen=True)
class OperationResult:
    summary: str
    changes: Mapping[str, int]


def run_operation(
    operation: str,
    stack: str,
    policy_pack: str | None = None,
    root: Path | None = None,
    on_output: Callable[[str], Any] = print,
    stack_opener: Callable[..., Any] | None = None,
) -> OperationResult:
    """``preview``, ``up`` or ``destroy`` with output streamed to ``on_output``."""
    if operation not in ("preview", "up", "destroy"):
        raise ValueError(f"unknown operation {operation!r}")
    if operation == "destroy" and policy_pack:
        raise DeployError("--policy-pack applies to preview and up; `pulumi destroy` runs no policies")
    pack_args = policy_pack_args(policy_pack, root)
    # A destroy must not create the stack it is asked to remove.
    target = (stack_opener or open_stack)(stack, root, create=operation != "destroy")
    from pulumi.automation import CommandError

    try:
        if operation == "preview":
            result = target.preview(on_output=on_output, **pack_args)
            return OperationResult("preview succeeded", dict(result.change_summary or {}))
        method = target.up if operation == "up" else target.destroy
        summary = method(on_output=on_output, **pack_args).summary
    except CommandError as exc:
        raise OperationFailed(f"pulumi {operation} failed: {first_error_line(exc)}") from exc
    return OperationResult(f"{operation} {summary.result}", dict(summary.resource_changes or {}))


def stack_outputs(
    stack: str, root: Path | None = None, stack_opener: Callable[..., Any] | None = None
) -> dict[str, Any]:
    """The stack's outputs as {name: OutputValue}; an undeployed stack has none.

    A stack missing from the backend, or the CLI failing to read it (backend
    unreachable, wrong passphrase), is a DeployError: exit 2, with the engine's line.
    """
    from pulumi.automation import CommandError

    target = (stack_opener or open_stack)(stack, root, create=False)
    try:
        return dict(target.outputs())
    except CommandError as exc:
        first = first_error_line(exc)
        raise DeployError(f"pulumi could not read the outputs of stack {stack!r}: {first}",
                          short=f"pulumi could not read the outputs of stack {stack!r} ({first})") from None
