"""Policy 4, enforcer-delivery-is-resilient: the enforcement queue retries and dead-letters, and the
dead-letter queue's alarm reaches a topic CloudWatch can publish to."""

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
from policypack.policy_run import DeferringStackPolicy, _config, _Run
from policypack.stack_graph import (
    ALARM,
    ESM,
    FUNCTION,
    KMS_ALIAS,
    KMS_KEY_POLICY,
    QUEUE,
    REDRIVE_POLICY,
    TOPIC,
    UNKNOWN,
    StackGraph,
    _strings,
    as_list,
    contains_unknown,
    describe,
    is_unknown,
    json_value,
    plain,
    provider_computed,
    value,
)

SNS_MANAGED_KEY = "alias/aws/sns"

# ---------------------------------------------------------------------------
# 4. enforcer-delivery-is-resilient


def _dlq_of(graph: StackGraph, q: PolicyResource, run: _Run) -> tuple[Any, Any, PolicyResource]:
    """(dead-letter queue resource | UNKNOWN | None, maxReceiveCount | UNKNOWN | None, resource holding it)."""
    holder = q
    policy = None if provider_computed(q, "redrivePolicy") else json_value(q.props, "redrivePolicy")
    deps = graph.deps(q, "redrivePolicy", QUEUE)
    if policy is None:
        for rp in graph.of_type(REDRIVE_POLICY):
            related = [graph.refers_to(rp, "queueUrl", q, attr=a) for a in ("url", "id")]
            if True in related:
                holder, policy, deps = rp, json_value(rp.props, "redrivePolicy"), graph.deps(rp, "redrivePolicy", QUEUE)
            elif UNKNOWN in related and policy is None:
                holder, policy = rp, UNKNOWN  # may be this queue's: decided once its URL is known
    if policy is None:
        return None, None, holder
    if is_unknown(policy):
        return (deps[0] if deps else UNKNOWN), UNKNOWN, holder
    target = policy.get("deadLetterTargetArn") if isinstance(policy, dict) else None
    count = policy.get("maxReceiveCount") if isinstance(policy, dict) else None
    dlq: Any = None
    for cand in graph.of_type(QUEUE):
        if cand.urn in {d.urn for d in deps} or (isinstance(target, str) and value(cand.props, "arn") == target):
            dlq = cand
            break
    if dlq is None and isinstance(target, str) and target.startswith("arn:") and ":sqs:" in target:
        dlq = target  # a queue outside this stack
    if isinstance(count, str) and count.isdigit():
        count = int(count)
    return dlq, count, holder


def _alarms_on(graph: StackGraph, dlq: Any) -> list[PolicyResource]:
    out = []
    for a in graph.of_type(ALARM):
        if isinstance(dlq, str):
            dims = plain(value(a.props, "dimensions")) or {}
            if isinstance(dims, dict) and isinstance(dims.get("QueueName"), str) and dlq.endswith(":" + dims["QueueName"]):
                out.append(a)
            continue
        related = (
            graph.refers_to(a, "dimensions", dlq, attr="name") is True
            or graph.refers_to(a, "metricQueries", dlq, attr="name") is True
        )
        if related:
            out.append(a)
    return out


def _is_depth_metric(a: PolicyResource) -> Any:
    metric = value(a.props, "metricName")
    namespace = value(a.props, "namespace")
    if value(a.props, "metricQueries") not in (None, []):
        return True  # metric math over the queue; trust the dependency
    if is_unknown(metric) or is_unknown(namespace):
        return UNKNOWN
    return namespace == "AWS/SQS" and metric in (
        "ApproximateNumberOfMessagesVisible",
        "ApproximateNumberOfMessages",
        "NumberOfMessagesSent",
        "ApproximateAgeOfOldestMessage",
    )


def _topic_key_problem(graph: StackGraph, topic: PolicyResource, run: _Run) -> str | None:
    key_id = value(topic.props, "kmsMasterKeyId")
    if isinstance(key_id, str) and (key_id == SNS_MANAGED_KEY or key_id.endswith(":" + SNS_MANAGED_KEY)):
        return (
            f"{describe(topic)} is encrypted with {SNS_MANAGED_KEY}, whose key policy does not let CloudWatch use it, "
            "so alarm notifications are silently dropped (the original sample's bug). Fix: encrypt the topic with a "
            "customer managed key whose key policy allows cloudwatch.amazonaws.com kms:Decrypt and "
            "kms:GenerateDataKey*."
        )
    keys = graph.deps(topic, "kmsMasterKeyId", "aws:kms/key:Key")
    for alias in graph.deps(topic, "kmsMasterKeyId", KMS_ALIAS):
        keys += graph.deps(alias, "targetKeyId", "aws:kms/key:Key")
    if key_id is None and not keys:
        return None  # unencrypted topic: CloudWatch can publish
    if is_unknown(key_id) and not keys:
        run.defer("kmsMasterKeyId", topic)
        return None
    for key in keys:
        policy = None if provider_computed(key, "policy") else json_value(key.props, "policy")
        holder = key
        if policy is None:
            for kp in graph.of_type(KMS_KEY_POLICY):
                if graph.refers_to(kp, "keyId", key, attr="keyId") is True or graph.refers_to(kp, "keyId", key) is True:
                    policy, holder = json_value(kp.props, "policy"), kp
        if is_unknown(policy) or contains_unknown(policy):
            if not _grants_cloudwatch(policy if isinstance(policy, dict) else None):
                run.defer("the key policy (CloudWatch access)", holder)
            continue
        if not _grants_cloudwatch(policy):
            return (
                f"{describe(topic)} is encrypted with {describe(key)}, whose key policy does not allow "
                "cloudwatch.amazonaws.com kms:Decrypt and kms:GenerateDataKey*, so CloudWatch alarms cannot "
                "publish to it. Fix: add that statement to the key policy."
            )
    return None


def _grants_cloudwatch(policy: dict | None) -> bool:
    if not isinstance(policy, dict):
        return False
    for st in as_list(policy.get("Statement")):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        principal = st.get("Principal")
        services = _strings(principal.get("Service")) if isinstance(principal, dict) else []
        if "cloudwatch.amazonaws.com" not in services:
            continue
        actions = set(_strings(st.get("Action")))
        if actions & {"kms:*", "*"}:
            return True
        decrypt = "kms:Decrypt" in actions
        gen = bool(actions & {"kms:GenerateDataKey*", "kms:GenerateDataKey"})
        if decrypt and gen:
            return True
    return False


def validate_delivery(args: StackValidationArgs, report: ReportViolation) -> None:
    run = _Run(report)
    graph = StackGraph(args.resources)
    cfg = _config(args)
    min_receives = int(cfg.get("minMaxReceiveCount", 2))
    multiplier = float(cfg.get("visibilityMultiplier", 6))
    esms = graph.of_type(ESM)
    if graph.mapping_rows() and not esms:
        run.violation(
            None,
            f"the stack maps prefixes to keys but has no {ESM}, so nothing consumes the enforcement queue. "
            "Fix: deploy the Enforcer component in this stack.",
        )
    for esm in esms:
        queues = [q for q in graph.of_type(QUEUE) if graph.refers_to(esm, "eventSourceArn", q) is True]
        functions = [f for f in graph.of_type(FUNCTION) if graph.refers_to(esm, "functionName", f, attr="name") is True
                     or graph.refers_to(esm, "functionName", f) is True]
        if not queues:
            continue  # not an SQS-fed function
        # Partial batch responses.
        types = plain(value(esm.props, "functionResponseTypes", []))
        if is_unknown(types):
            run.defer("functionResponseTypes", esm)
        elif "ReportBatchItemFailures" not in _strings(types):
            run.violation(
                esm,
                f"{describe(esm)} does not report batch item failures, so one failed object makes the whole "
                "batch return to the queue and be re-processed (and dead-lettered together). Fix: set "
                "function_response_types=['ReportBatchItemFailures'].",
            )
        for q in queues:
            dlq, count, holder = _dlq_of(graph, q, run)
            if dlq is None:
                run.violation(
                    q,
                    f"{describe(q)} (the enforcement queue) has no redrive policy: a message that keeps failing "
                    "is retried until the retention period ends and is then lost without an alert. Fix: set "
                    f"redrive_policy with a deadLetterTargetArn and maxReceiveCount >= {min_receives} "
                    f"(config `{NAMESPACE}:maxReceiveCount`, default 5).",
                )
            if is_unknown(count):
                run.defer("redrivePolicy.maxReceiveCount", holder)
            elif dlq is not None and (not isinstance(count, int) or count < min_receives):
                run.violation(
                    q,
                    f"{describe(q)} redrives to its dead-letter queue with maxReceiveCount {count}; below "
                    f"{min_receives} a throttled KMS or S3 call is never retried. Fix: "
                    f"`pulumi config set {NAMESPACE}:maxReceiveCount 5` (at least {min_receives}).",
                )
            # Visibility timeout against the function timeout.
            visibility = value(q.props, "visibilityTimeoutSeconds", 30)
            window = value(esm.props, "maximumBatchingWindowInSeconds", 0)
            for f in functions:
                timeout = value(f.props, "timeout", 3)
                if any(is_unknown(v) for v in (visibility, window, timeout)):
                    run.defer("visibilityTimeoutSeconds against the function timeout", q, f)
                    continue
                need = multiplier * float(timeout) + float(window or 0)
                if float(visibility) < need:
                    run.violation(
                        q,
                        f"{describe(q)} has visibilityTimeoutSeconds {float(visibility):g}, below {multiplier:g} x the "
                        f"timeout of {describe(f)} ({float(timeout):g}s) plus the batching window "
                        f"({float(window or 0):g}s) = {need:g}s; messages "
                        "reappear while still being processed and are re-keyed twice. Fix: raise the visibility "
                        f"timeout to at least {need:g}s or lower `{NAMESPACE}:lambda.timeoutSeconds`.",
                    )
            # An alarm on the DLQ that notifies a topic CloudWatch can publish to.
            if dlq is None or is_unknown(dlq):
                if is_unknown(dlq):
                    run.defer("the dead-letter queue", holder)
                continue
            alarms = _alarms_on(graph, dlq)
            depth = [a for a in alarms if _is_depth_metric(a) is not False]
            dlq_name = describe(dlq) if not isinstance(dlq, str) else f"dead-letter queue {dlq}"
            if not depth:
                run.violation(
                    dlq if not isinstance(dlq, str) else q,
                    f"no aws:cloudwatch/metricAlarm:MetricAlarm watches the depth of {dlq_name}, so dead-lettered "
                    "objects (left unencrypted under the wrong key) go unnoticed. Fix: alarm on AWS/SQS "
                    "ApproximateNumberOfMessagesVisible > 0 for the DLQ with alarm_actions=[<alert topic ARN>].",
                )
                continue
            notified = False
            for a in depth:
                if value(a.props, "actionsEnabled") is False:
                    continue
                actions = plain(value(a.props, "alarmActions", []))
                topics = [t for t in graph.of_type(TOPIC) if graph.refers_to(a, "alarmActions", t) is True]
                external = [s for s in _strings(actions) if s.startswith("arn:") and ":sns:" in s]
                if is_unknown(actions) or (contains_unknown(actions) and not topics):
                    run.defer("alarmActions", a)
                    notified = True
                    continue
                if topics or external:
                    notified = True
            if not notified:
                names = ", ".join(describe(a) for a in depth)
                run.violation(
                    depth[0],
                    f"{names} watches {dlq_name} but notifies no SNS topic (alarm_actions is empty or disabled), "
                    "so nobody hears about dead-lettered objects. Fix: set alarm_actions=[<alert topic ARN>] "
                    f"and `pulumi config set {NAMESPACE}:alertEmail <address>` for an email subscription.",
                )
    # Every topic an alarm notifies must be one CloudWatch can publish to (DLQ depth,
    # function errors and throttles alike), whatever else is wrong above.
    checked: set[str] = set()
    for a in graph.of_type(ALARM):
        for t in graph.of_type(TOPIC):
            if t.urn not in checked and graph.refers_to(a, "alarmActions", t) is True:
                checked.add(t.urn)
                problem = _topic_key_problem(graph, t, run)
                if problem:
                    run.violation(t, problem)
    run.finish()


enforcer_delivery_is_resilient = DeferringStackPolicy(
    name="enforcer-delivery-is-resilient",
    description="The enforcement queue retries and dead-letters failures, and an alarm on the dead-letter queue "
    "reaches a topic CloudWatch can publish to.",
    validate=validate_delivery,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(
        properties={
            "minMaxReceiveCount": {
                "type": "integer",
                "minimum": 2,
                "default": 2,
                "description": "Lowest accepted maxReceiveCount of the enforcement queue's redrive policy.",
            },
            "visibilityMultiplier": {
                "type": "number",
                "minimum": 1,
                "default": 6,
                "description": "Visibility timeout must be at least this many function timeouts plus the "
                "batching window (AWS guidance: 6).",
            },
        }
    ),
    remediation_steps="Redrive the queue to a DLQ with maxReceiveCount >= 2 (`s3-prefix-keys:maxReceiveCount`), keep "
    "visibility >= 6x the function timeout plus the batching window, set ReportBatchItemFailures on the event "
    "source mapping, alarm on the DLQ's depth to an SNS topic encrypted with a customer managed key that "
    "CloudWatch may use (never alias/aws/sns).",
)
