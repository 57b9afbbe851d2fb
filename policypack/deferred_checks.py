"""Policy 10, preview-deferred-checks: says which checks of the other policies wait for `pulumi up`.

A check that reads a value unknown during preview (an ARN, a JSON document built from
one) cannot pass or fail it. The deferring policies record such checks in
``policy_run.DEFERRALS``; this advisory stack policy, registered after every other
policy, reports one diagnostic per policy that deferred, naming the checks and the
resources, and empties the ledger. An advisory level keeps a preview that proves no
violation passing whatever the deferring policy's own level; ``mandatory`` fails a
preview that cannot decide everything; ``disabled`` stops saying it.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, StackValidationArgs, StackValidationPolicy

from policypack.policy_run import DEFERRALS, deferral_lines

NAME = "preview-deferred-checks"


def message_for(policy: str, deferred: dict[str, list[str]]) -> str:
    return f"{policy} checks at `pulumi up`: " + "; ".join(deferral_lines(deferred))


def validate_deferred_checks(args: StackValidationArgs, report: ReportViolation) -> None:
    for policy, deferred in DEFERRALS.drain().items():
        # No URN: the checks span resources, so the engine puts it on the stack.
        report(message_for(policy, deferred), None)


preview_deferred_checks = StackValidationPolicy(
    name=NAME,
    description="Checks of this pack that read values unknown until the resources exist; each runs at "
    "`pulumi up`, and this preview neither passes nor fails it.",
    validate=validate_deferred_checks,
    enforcement_level=EnforcementLevel.ADVISORY,
    remediation_steps="None needed: run `pulumi up` (or a preview of the stack once it exists) to decide them.",
)
