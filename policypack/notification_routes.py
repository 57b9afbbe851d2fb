"""Policy 1, bucket-notification-routes-to-enforcer: every mapped prefix's ObjectCreated events reach
the enforcement queue, through S3 queue configurations or EventBridge rules."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
)

from components.config import NAMESPACE
from policypack.policy_run import _EXEMPT_SCHEMA, DeferringStackPolicy, _config, _Run
from policypack.stack_graph import (
    ESM,
    EVENT_RULE,
    EVENT_TARGET,
    NOTIFICATION,
    QUEUE,
    UNKNOWN,
    BucketGroup,
    StackGraph,
    _glob_match,
    _pattern_values,
    _strings,
    as_list,
    contains_unknown,
    describe,
    is_unknown,
    json_value,
    plain,
    value,
)

OBJECT_CREATED_ALL = "s3:ObjectCreated:*"
OBJECT_CREATED_EACH = frozenset(
    f"s3:ObjectCreated:{e}" for e in ("Put", "Post", "Copy", "CompleteMultipartUpload")
)

# ---------------------------------------------------------------------------
# 1. bucket-notification-routes-to-enforcer


def _covers_object_created(events: Any) -> Any:
    evs = set(_strings(plain(events)))
    if contains_unknown(plain(events)):
        return UNKNOWN
    return OBJECT_CREATED_ALL in evs or evs >= OBJECT_CREATED_EACH


def _sqs_routes(
    graph: StackGraph, n: PolicyResource, queues: list[PolicyResource], run: _Run
) -> tuple[list[dict], list[dict]]:
    """The queue configurations of ``n`` that deliver ObjectCreated to the enforcer: (sure, ambiguous).

    A configuration whose ``queueArn`` is unknown is related by the dependencies of
    ``queues``, which the engine records for the property as a whole, not per entry.
    When they name only enforcer queues every such entry goes to the enforcer, when
    none, no entry does; when they name the enforcer queue *and* another queue of the
    stack, which entry goes where is unknown until the ARNs are: those routes are
    returned as ambiguous, for the caller to wait for only if the sure ones fall short.
    """
    configs = plain(value(n.props, "queues", []))
    if is_unknown(configs):
        run.defer("queues", n)
        return [], []
    sure: list[dict] = []
    maybe: list[dict] = []
    dep_queues = {q.urn for q in graph.deps(n, "queues", QUEUE)}
    enforcer_urns = {q.urn for q in queues}
    enforcer_arns = {value(q.props, "arn") for q in queues} - {UNKNOWN, None}
    for c in configs or []:
        if not isinstance(c, dict):
            continue
        arn = c.get("queueArn")
        ambiguous = False
        if isinstance(arn, str):
            to_enforcer = arn in enforcer_arns
        else:
            to_enforcer = bool(dep_queues) and dep_queues <= enforcer_urns
            ambiguous = not to_enforcer and bool(dep_queues & enforcer_urns)
        if not (to_enforcer or ambiguous):
            continue
        created = _covers_object_created(c.get("events"))
        if is_unknown(created):
            run.defer("queue configuration events", n)
            continue
        if not created:
            continue
        prefix = c.get("filterPrefix") or ""
        suffix = c.get("filterSuffix") or ""
        if is_unknown(prefix) or is_unknown(suffix):
            run.defer("queue configuration filters", n)
            continue
        (maybe if ambiguous else sure).append({"prefix": prefix, "suffix": suffix})
    return sure, maybe


def _eventbridge_routes(
    graph: StackGraph, g: BucketGroup, queues: list[PolicyResource], run: _Run
) -> tuple[list[dict], list[str]]:
    """Rules of this bucket targeting the enforcer queue; also why others do not count."""
    routes, problems = [], []
    targets = graph.of_type(EVENT_TARGET)
    for rule in g.rules:
        enabled = value(rule.props, "state", "ENABLED")
        if value(rule.props, "isEnabled") is False or (isinstance(enabled, str) and enabled.upper() == "DISABLED"):
            problems.append(f"{describe(rule)} is disabled")
            continue
        hits = []
        for t in targets:
            if graph.refers_to(t, "rule", rule, attr="name") is True and any(
                graph.refers_to(t, "arn", q) is True for q in queues
            ):
                hits.append(t)
        if not hits:
            problems.append(f"{describe(rule)} has no target on the enforcement queue")
            continue
        pattern = json_value(rule.props, "eventPattern")
        if is_unknown(pattern):
            # Which prefixes the rule matches is unknown until its bucket name is; the rule
            # is related by dependency, so count it as a whole-bucket route for now.
            run.defer("the prefixes in eventPattern", rule)
            routes.append({"prefix": None, "suffix": ""})
            continue
        if not isinstance(pattern, dict):
            problems.append(f"{describe(rule)} has no parseable eventPattern")
            continue
        detail_types = _pattern_values(pattern, "detail-type")
        if detail_types and "Object Created" not in detail_types:
            problems.append(f"{describe(rule)} does not match 'Object Created' events")
            continue
        keys = _pattern_values(pattern, "detail", "object", "key")
        if not keys:
            routes.append({"prefix": "", "suffix": ""})
        for k in keys:
            if isinstance(k, dict) and isinstance(k.get("prefix"), str):
                routes.append({"prefix": k["prefix"], "suffix": ""})
            elif isinstance(k, str):
                routes.append({"prefix": k, "suffix": "", "exact": True})
    return routes, problems


def _uncovered(prefixes: list[str], routes: list[dict]) -> list[str]:
    def covered(p: str) -> bool:
        for r in routes:
            if r.get("exact") or r["suffix"]:
                continue
            if r["prefix"] is None or p.startswith(r["prefix"]):
                return True
        return False

    return [p for p in prefixes if not covered(p)]


def validate_notification_routes(args: StackValidationArgs, report: ReportViolation) -> None:
    run = _Run(report)
    graph = StackGraph(args.resources)
    queues = graph.enforcer_queues()
    external = [p for p in as_list(_config(args).get("externalNotificationBuckets")) if isinstance(p, str)]
    for g in graph.mapped_groups():
        anchor = g.anchor
        prefixes, unknown_rows = g.mapped_prefixes()
        mapped = ", ".join(f"'{p}'" for p in prefixes) or "its mapped prefixes"
        if not g.notifications:
            # Another owner's notification configuration is out of this stack's sight.
            if _glob_match(external, *g.names, *(b.name for b in g.buckets)):
                continue
            if external and any(is_unknown(value(b.props, "bucket")) for b in g.buckets):
                run.defer("whether the bucket (generated name) is in externalNotificationBuckets", *g.buckets)
                continue
            route = ("route ObjectCreated events to the enforcement queue (a queue configuration per mapped "
                     "prefix, or `eventbridge = true` with `notification: eventbridge`)")
            head = f"{g.label} has prefix key mappings ({mapped}; {g.mapped_by}) but no {NOTIFICATION} in this stack"
            if any(value(i.props, "manageNotification") is False for i in g.integrations):
                message = (
                    f"{head}: its BucketIntegration has `manageNotification: false`, so the notification "
                    "configuration is owned outside this stack, where this policy cannot check that ObjectCreated "
                    f"events reach the enforcer. Fix: have that owner {route}, then list the bucket in this policy's "
                    "`externalNotificationBuckets` config; or drop `manageNotification: false` so the "
                    "BucketIntegration owns the notification."
                )
            else:
                message = (
                    f"{head}, so no ObjectCreated event reaches the enforcer and its objects are never re-keyed. "
                    "Fix: keep the default (`manageNotification: true`) so the BucketIntegration creates the "
                    "notification. If the bucket's notification configuration is owned outside this stack, set "
                    f"`pulumi config set --path '{NAMESPACE}:buckets.<bucket>.manageNotification' false`, have its "
                    f"owner {route}, and list the bucket in this policy's `externalNotificationBuckets` config."
                )
            run.violation(anchor, message)
            continue
        if not queues:
            run.violation(
                anchor,
                f"{g.label} is mapped, but the stack has no {ESM} reading an SQS queue, so there is no "
                "enforcement queue to route to. Fix: deploy the Enforcer component in this stack.",
            )
            continue
        routes: list[dict] = []
        ambiguous: list[dict] = []  # routes that may go to another queue (unknown ARNs)
        ambiguous_in: list[PolicyResource] = []
        eventbridge_on: list[PolicyResource] = []
        for n in g.notifications:
            sure, maybe = _sqs_routes(graph, n, queues, run)
            routes += sure
            ambiguous += maybe
            if maybe:
                ambiguous_in.append(n)
            eb = value(n.props, "eventbridge")
            if eb is True:
                eventbridge_on.append(n)
            elif is_unknown(eb):
                run.defer("eventbridge", n)
        eb_routes, eb_problems = _eventbridge_routes(graph, g, queues, run)
        if eventbridge_on:
            routes += eb_routes
        if unknown_rows:
            run.defer("the mapped prefix (coverage by the notification)", *(m.resource for m in unknown_rows))
        # A violation must hold even if every ambiguous route reaches the enforcer;
        # what holds only without them waits for the ARNs.
        if not routes and not ambiguous:
            names = ", ".join(describe(n) for n in g.notifications)
            if any(is_unknown(value(n.props, "queues")) for n in g.notifications):
                pass  # deferred by _sqs_routes
            elif eventbridge_on and not eb_routes:
                why = "; ".join(eb_problems) or f"no {EVENT_RULE} for this bucket targets it"
                run.violation(
                    g.notifications[0],
                    f"{names} for {g.label} sets eventbridge=true, but no EventBridge rule sends this bucket's "
                    f"Object Created events to the enforcement queue ({why}). Fix: with `notification: eventbridge` "
                    "the BucketIntegration creates the rule and its queue target; if you manage the rule yourself, "
                    "match source aws.s3, detail-type 'Object Created' and this bucket, and target the enforcer queue.",
                )
            else:
                run.violation(
                    g.notifications[0],
                    f"{names} for {g.label} sends nothing to the enforcer: no queue configuration delivers "
                    f"{OBJECT_CREATED_ALL} to the enforcement queue and EventBridge delivery is off. Objects under "
                    f"{mapped} are never re-keyed. Fix: add a queue configuration per mapped prefix "
                    f"(events [{OBJECT_CREATED_ALL}], filterPrefix <prefix>, queueArn the enforcer queue) or set "
                    "eventbridge=true with a rule targeting the queue (`notification: eventbridge`).",
                )
            continue
        missing = _uncovered(prefixes, routes + ambiguous)
        if missing:
            covered = sorted({r["prefix"] for r in routes + ambiguous if isinstance(r["prefix"], str)})
            at_most = "at most " if ambiguous else ""
            run.violation(
                g.notifications[0],
                f"{describe(g.notifications[0])} for {g.label} routes ObjectCreated events to the enforcer only for "
                f"{at_most}{', '.join(repr(p) for p in covered) or 'no prefix'}; mapped prefix(es) "
                f"{', '.join(repr(p) for p in missing)} are never enforced. Fix: add a queue configuration "
                f"(events [{OBJECT_CREATED_ALL}], filterPrefix set to each missing prefix) targeting the enforcer "
                "queue, or let the BucketIntegration own the notification.",
            )
        elif ambiguous and _uncovered(prefixes, routes):
            run.defer("which queue configuration targets the enforcement queue", *ambiguous_in)
    run.finish()


bucket_notification_routes_to_enforcer = DeferringStackPolicy(
    name="bucket-notification-routes-to-enforcer",
    description="Every bucket with prefix key mappings sends ObjectCreated events for every mapped prefix to the "
    "enforcement queue.",
    validate=validate_notification_routes,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(properties={"externalNotificationBuckets": {
        **_EXEMPT_SCHEMA,
        "description": "Glob patterns (bucket name or Pulumi resource name) of mapped buckets whose notification "
        "configuration is owned outside this stack (`manageNotification: false`): they pass without a "
        "BucketNotification in the stack; one in the stack is still checked.",
    }}),
    remediation_steps="Keep `notification: sqs` (default) so BucketIntegration owns a BucketNotification with one "
    "queue configuration per mapped prefix, or set `notification: eventbridge` and `eventbridge = true` on the "
    "bucket's existing notification. A notification owned outside the stack (`manageNotification: false`) must "
    "cover every mapped prefix; list its bucket in `externalNotificationBuckets`.",
)
