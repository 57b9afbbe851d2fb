"""The offline policy run: the pack over the program's resource graph, no Pulumi CLI.

    python -m policypack.check --stack dev [--config policypack/config.json] [--first-preview]

It loads ``Pulumi.<stack>.yaml``, runs ``__main__.py`` under Pulumi's mock runtime
(``components.mocks``), and sends the recorded graph through pulumi-policy's own
analyzer (the servicer ``PolicyPack`` would serve over gRPC, called in-process) the way
the engine does during a preview: one ``Analyze`` request per resource (its inputs) and
one ``AnalyzeStack`` request (every resource's outputs, parent, dependencies, property
dependencies and provider), with the pack configured from ``config.json`` as the CLI
configures it. Values are marshalled the engine's way (a protobuf ``Struct``: numbers
become doubles, unknowns pulumi-policy's sentinels), URNs are the engine's, and each
resource has the default ``aws`` provider with the stack's ``aws:*`` config. So the
enforcement levels and the messages are pulumi-policy's own, and so are the deferred
checks: ``preview-deferred-checks``'s advisory diagnostics (see ``policy_run``), or, for
a policy that lets an unknown value reach pulumi-policy, its "can't run policy ... during
preview" note.
Violations are printed the way ``pulumi preview --policy-pack`` prints them; the exit
status is 1 on any mandatory violation, 2 when the stack or policy configuration is
invalid (or the program or a policy fails), 0 otherwise.

``--first-preview`` runs the program in preview mode, as the first ``pulumi preview``
of a new stack: every output a resource computes (ARNs, URLs, key ids, and anything
derived from them) is unknown; inputs, Pulumi autonames and invoke results are known.

The marshalling is ``engine_marshalling``'s, the policy configuration ``policy_config``'s;
this module runs the pack and prints its report. ``ops policy-check`` wraps :func:`run_check`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pulumi_policy import (  # noqa: E402
    Policy,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from components import mocks  # noqa: E402
from components.config import ConfigError  # noqa: E402
from policypack.deferred_checks import NAME as DEFERRED_CHECKS  # noqa: E402
from policypack.engine_marshalling import (  # noqa: E402
    _LEVEL_FROM_PROTO,
    _SDK_PACK_VERSION,
    StackGraph,
    analyze_requests,
    analyze_stack_request,
    analyzer,
    graph_from_mocks,
)
from policypack.policies import PACK_NAME, POLICIES  # noqa: E402
from policypack.policy_config import PolicyConfigError, load_policy_config, resolve_policy_config  # noqa: E402
from policypack.policy_run import DEFERRALS, deferral_lines  # noqa: E402

PACK_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = PACK_DIR / "config.json"
PROJECT = "s3-prefix-keys"
_CANT_RUN = "can't run policy"


def pack_version() -> str:
    m = re.search(r"^version:\s*([^\s#]+)", (PACK_DIR / "PulumiPolicy.yaml").read_text(), re.M)
    return m.group(1) if m else _SDK_PACK_VERSION


# ---------------------------------------------------------------------------
# Running the pack


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    level: str  # mandatory | advisory
    description: str
    message: str  # the policy's own text ("" for none)
    urn: str
    resource_type: str
    resource_name: str

    @property
    def text(self) -> str:
        """The diagnostic message as the analyzer sends it (description, then message)."""
        return self.description + (f"\n{self.message}" if self.message else "")

    @property
    def deferral(self) -> bool:
        """Says that checks wait for `pulumi up` (the pack's own way, or pulumi-policy's note)."""
        return self.policy == DEFERRED_CHECKS or self.message.startswith(_CANT_RUN)


@dataclass
class CheckReport:
    stack: str
    first_preview: bool
    diagnostics: list[Diagnostic] = field(default_factory=list)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)
    levels: dict[str, str] = field(default_factory=dict)
    resource_count: int = 0
    unsaid: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """Checks deferred while no enabled preview-deferred-checks ran to say so, by policy:
    a real preview would print nothing for them."""

    @property
    def mandatory(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "mandatory"]

    @property
    def advisory(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "advisory"]

    @property
    def exit_code(self) -> int:
        return 1 if self.mandatory else 0

    @property
    def deferrals(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.deferral]

    @property
    def violations(self) -> list[Diagnostic]:
        """What the policies proved (not what they deferred)."""
        return [d for d in self.diagnostics if not d.deferral]

    def for_policy(self, name: str) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.policy == name]

    def render(self) -> str:
        """The report the way `pulumi preview --policy-pack` prints its "Policies:" section."""
        mode = ("as the first `pulumi preview` of a new stack (computed values unknown)" if self.first_preview
                else "as after `pulumi up` (every value known)")
        enabled = sum(1 for lvl in self.levels.values() if lvl != "disabled")
        lines = [f"Offline policy check of {PROJECT}/{self.stack} {mode}: {self.resource_count} resources, "
                 f"{enabled} policies enabled", ""]
        mark = "❌" if self.mandatory else ("⚠️ " if self.diagnostics else "✅")
        lines.append("Policies:")
        lines.append(f"    {mark} {PACK_NAME}@v{pack_version()} (local: policypack)")
        order = {"mandatory": 0, "advisory": 1}
        for d in sorted(self.diagnostics, key=lambda d: order.get(d.level, 2)):
            lines.append(f"        - [{d.level}]  {d.policy}  ({d.resource_type}: {d.resource_name})")
            lines.extend(f"          {text_line}" for text_line in d.text.splitlines())
        lines.append("")
        proved = self.violations
        mandatory = sum(1 for d in proved if d.level == "mandatory")
        summary = (f"{mandatory} mandatory, {len(proved) - mandatory} advisory violation(s)"
                   if proved else "no policy violations")
        if self.deferrals:
            summary += f"; {len(self.deferrals)} policy(ies) deferred checks on unknown values to `pulumi up`"
        lines.append(f"Result: {summary}")
        if self.unsaid:
            # Not in a real preview's output: there these deferrals go unsaid.
            lines.append(f"Unsaid ({DEFERRED_CHECKS} is not enabled), decided at `pulumi up` only:")
            lines.extend(f"    {policy}: {'; '.join(deferral_lines(d))}" for policy, d in self.unsaid.items())
        return "\n".join(lines)


class PolicyRunError(RuntimeError):
    """A policy raised (the engine would fail the preview with the policy's error)."""


def analyze(
    graph: StackGraph,
    policy_config: Mapping[str, Any] | None = None,
    *,
    policies: Iterable[Policy] = POLICIES,
) -> CheckReport:
    """Send ``graph`` through pulumi-policy's analyzer as the engine does during a preview.

    One ``Analyze`` call per resource (resource policies, on inputs) and one
    ``AnalyzeStack`` call (stack policies, on outputs), with the pack configured from
    ``policy_config`` (the ``--policy-pack-config`` JSON). pulumi-policy itself applies
    the enforcement levels and builds the messages; ``preview-deferred-checks``, when it
    is among ``policies`` and enabled, says what the others deferred.
    """
    policies = list(policies)
    DEFERRALS.drain()  # as in a pack process of its own, which starts with none
    settings = resolve_policy_config(policy_config, policies)
    servicer = analyzer(policies, settings)
    by_urn = {r.urn: r for r in graph.records}
    root = next((r for r in graph.records if r.type == "pulumi:pulumi:Stack"), None)
    report = CheckReport(stack=graph.stack, first_preview=graph.preview, resource_count=len(graph.records),
                         levels={name: s.level.value for name, s in settings.items()})
    descriptions = {p.name: p.description for p in policies}

    def collect(response: Any, default_urn: str) -> None:
        for d in response.diagnostics:
            # The engine attributes a diagnostic to the resource it names, else to the
            # analyzed resource (Analyze), else to the root stack (AnalyzeStack).
            r = by_urn.get(d.urn) or by_urn.get(default_urn) or root
            text = d.message
            description = d.description or descriptions.get(d.policyName, "")
            message = text[len(description) + 1:] if text.startswith(description + "\n") else text
            if message == description:
                message = ""
            report.diagnostics.append(Diagnostic(
                policy=d.policyName, level=_LEVEL_FROM_PROTO.get(d.enforcementLevel, "advisory"),
                description=description, message=message, urn=r.urn if r else d.urn,
                resource_type=r.type if r else "", resource_name=r.name if r else "",
            ))
        report.not_applicable.extend((n.policy_name, n.reason) for n in response.not_applicable)

    try:
        if any(isinstance(p, ResourceValidationPolicy) for p in policies):
            for request in analyze_requests(graph):
                collect(servicer.Analyze(request, None), request.urn)
        if any(isinstance(p, StackValidationPolicy) for p in policies):
            collect(servicer.AnalyzeStack(analyze_stack_request(graph), None), "")
    except Exception as exc:
        raise PolicyRunError(f"a policy of {PACK_NAME} failed: {exc!r}") from exc
    report.unsaid = DEFERRALS.drain()
    return report


# ---------------------------------------------------------------------------
# Running the program


def stack_config(stack: str, root: Path = ROOT, stack_file: str | Path | None = None) -> dict[str, Any]:
    """The ``config:`` map of ``Pulumi.<stack>.yaml`` (or ``stack_file``), validated by the config model."""
    from components import config as cfgmod

    path = Path(stack_file) if stack_file else cfgmod.stack_file(stack, root)
    cfgmod.load_stack_file(path)  # raises ConfigError naming the config path and the fix
    return cfgmod.read_stack_file(path)


def program_graph(config: Mapping[str, Any], *, stack: str = "dev", first_preview: bool = False) -> StackGraph:
    """Run ``__main__.py`` under the mocks with ``config`` (a stack file's ``config:`` map)."""
    return graph_from_mocks(mocks.run_program(dict(config), stack=stack, preview=first_preview))


def run_check(
    stack: str = "dev",
    config_path: str | Path | None = DEFAULT_CONFIG,
    first_preview: bool = False,
    *,
    stack_file: str | Path | None = None,
    root: Path = ROOT,
) -> CheckReport:
    """The offline run as a library call (``ops policy-check``).

    Raises ``ConfigError`` (invalid stack config) or ``PolicyConfigError`` (invalid
    policy config) before any resource is registered.
    """
    policy_config = load_policy_config(config_path)
    resolve_policy_config(policy_config)  # fail fast, before running the program
    config = stack_config(stack, root, stack_file)
    return analyze(program_graph(config, stack=stack, first_preview=first_preview), policy_config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m policypack.check",
        description="Run the s3-prefix-keys policy pack over the program's resource graph, offline.",
    )
    parser.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default dev)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None,
                        help="policy pack config JSON, as for --policy-pack-config (default policypack/config.json)")
    parser.add_argument("--stack-file", default=None,
                        help="read this stack file instead of Pulumi.<stack>.yaml")
    parser.add_argument("--first-preview", action="store_true",
                        help="preview mode: computed outputs unknown, as on a new stack's first `pulumi preview`")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    try:
        report = run_check(args.stack, args.config, args.first_preview, stack_file=args.stack_file)
    except (ConfigError, PolicyConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PolicyRunError:
        import traceback

        traceback.print_exc()
        return 2
    except Exception:  # the program itself failed, as `pulumi preview` would report
        import traceback

        traceback.print_exc()
        print("error: the Pulumi program failed under the mock runtime (see above)", file=sys.stderr)
        return 2
    print(report.render())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
