"""Policy 5, notification-filters-do-not-overlap: a resource policy on one BucketNotification's inputs,
whose overlapping filters S3 would reject at deploy."""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    ReportViolation,
    ResourceValidationArgs,
)

from policypack.policy_run import DeferringResourcePolicy, _Run
from policypack.stack_graph import NOTIFICATION, _strings, contains_unknown, is_unknown, plain, value

# ---------------------------------------------------------------------------
# 5. notification-filters-do-not-overlap (resource policy)


def _event_overlap(a: set[str], b: set[str]) -> set[str]:
    out = set()
    for x in a:
        for y in b:
            if x == y:
                out.add(x)
            elif x.endswith(":*") and y.startswith(x[:-1]):
                out.add(y)
            elif y.endswith(":*") and x.startswith(y[:-1]):
                out.add(x)
    return out


def validate_filters_do_not_overlap(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != NOTIFICATION:
        return
    run = _Run(report)
    configs: list[tuple[str, int, dict]] = []
    for prop, label in (("queues", "queue"), ("topics", "topic"), ("lambdaFunctions", "lambda function")):
        items = plain(value(args.props, prop, []))
        if is_unknown(items):
            run.defer(prop, f"{args.resource_type} '{args.name}'")
            continue
        for i, c in enumerate(items or []):
            if isinstance(c, dict):
                configs.append((label, i, c))
    for i in range(len(configs)):
        for j in range(i + 1, len(configs)):
            (la, ia, a), (lb, ib, b) = configs[i], configs[j]
            ev_a, ev_b = plain(a.get("events")), plain(b.get("events"))
            fa = [a.get("filterPrefix") or "", a.get("filterSuffix") or ""]
            fb = [b.get("filterPrefix") or "", b.get("filterSuffix") or ""]
            if any(contains_unknown(v) for v in (ev_a, ev_b, *fa, *fb)):
                run.defer("filters", f"{args.resource_type} '{args.name}'")
                continue
            events = _event_overlap(set(_strings(ev_a)), set(_strings(ev_b)))
            if not events:
                continue
            (pa, sa), (pb, sb) = fa, fb
            if (pa.startswith(pb) or pb.startswith(pa)) and (sa.endswith(sb) or sb.endswith(sa)):
                keep = min(pa, pb, key=len)
                run.violation(
                    None,
                    f"{args.resource_type} '{args.name}': {la} configuration #{ia} (prefix '{pa}', suffix '{sa}') and "
                    f"{lb} configuration #{ib} (prefix '{pb}', suffix '{sb}') overlap for "
                    f"{', '.join(sorted(events))}; S3 rejects the whole notification configuration at deploy time "
                    f"('Configurations overlap'). Fix: merge nested prefixes into the shorter one ('{keep}'), which "
                    "already covers the longer; BucketIntegration does this for mapped prefixes.",
                )
    run.finish()


notification_filters_do_not_overlap = DeferringResourcePolicy(
    name="notification-filters-do-not-overlap",
    description="A bucket notification's filters do not overlap for the same event type (S3 rejects it at deploy).",
    validate=validate_filters_do_not_overlap,
    enforcement_level=EnforcementLevel.MANDATORY,
    remediation_steps="Merge nested prefixes: 'a/' already covers 'a/b/'. BucketIntegration folds mapped "
    "prefixes this way; hand-written notifications must too.",
)
