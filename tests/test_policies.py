"""The CrossGuard policies over the program's real resource graph (Pulumi mocks).

Every policy passes on the dev stack and fails, with its message, on a stack made bad
by changing its config or its graph. Each bad case runs twice where the issue asks:
as after `pulumi up` (every value known) and as the first `pulumi preview` of a new
stack (every computed value unknown), where a policy that related resources by ARN
would silently pass.
"""

from __future__ import annotations

import ast
import json
import runpy
from collections.abc import Callable

import pulumi_policy
import pytest
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy
from pulumi_policy.proxy import UnknownValueError

from policypack import check, engine_marshalling, policy_config
from policypack import stack_graph as G
from policypack.bucket_encryption import (
    KEY_ID_CONDITION,
    SSE_CONDITION,
    bucket_default_encryption_is_kms,
    replicated_prefix_rekeyed_by_copy,
    strict_policy_matches_mapping,
)
from policypack.check import CheckReport
from policypack.deferred_checks import preview_deferred_checks
from policypack.delivery_resilience import enforcer_delivery_is_resilient
from policypack.engine_marshalling import UNKNOWN, Record, StackGraph
from policypack.key_mappings import bucket_has_key_mapping, key_mapping_valid, mapped_key_rotation_enabled
from policypack.notification_filters import notification_filters_do_not_overlap
from policypack.notification_routes import bucket_notification_routes_to_enforcer
from policypack.policies import POLICIES
from policypack.policy_run import DEFERRALS, DeferringResourcePolicy, DeferringStackPolicy, _Run

REGION = "us-east-1"
KEY_A = "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555"
KEY_B = "arn:aws:kms:us-east-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
KEY_DEFAULT = "arn:aws:kms:us-east-1:111122223333:key/99999999-8888-7777-6666-555555555555"
TENANT = "tenant-data"

BUCKET = "aws:s3/bucket:Bucket"
NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
TABLE_ITEM = "aws:dynamodb/tableItem:TableItem"
QUEUE = "aws:sqs/queue:Queue"
TOPIC = "aws:sns/topic:Topic"
KEY = "aws:kms/key:Key"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
ESM = "aws:lambda/eventSourceMapping:EventSourceMapping"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
CANT_RUN = "can't run policy"
DEFERRED = preview_deferred_checks.name

MODES = ["up", "first-preview"]

# Importing pulumi_aws's deprecated resource classes warns; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")


# ---------------------------------------------------------------------------
# Graphs: one program run per config and mode, copied per test


@pytest.fixture(scope="module")
def dev_config() -> dict:
    return check.stack_config("dev")


def _tenant_config(dev_config: dict, **bucket: object) -> dict:
    spec = {
        "prefixes": {"a/": {"kmsKeyArn": KEY_A}, "b/": {"kmsKeyArn": KEY_B, "dualLayer": True}},
        **bucket,
    }
    return {**dev_config, "s3-prefix-keys:buckets": {TENANT: spec}}


@pytest.fixture(scope="module")
def graphs(dev_config) -> Callable[..., StackGraph]:
    """``graphs(kind, mode)``: a fresh copy of the graph of one of the test stacks."""
    configs = {
        "dev": dev_config,
        # A bucket mapped in config (literal key ARNs), strict, with default encryption.
        "tenant": _tenant_config(dev_config, strict=True, defaultKmsKeyArn=KEY_DEFAULT),
        "tenant-plain": _tenant_config(dev_config),
        "tenant-eventbridge": _tenant_config(dev_config, notification="eventbridge"),
        # The bucket's notification configuration belongs to another tool.
        "tenant-external": _tenant_config(dev_config, manageNotification=False),
        "tenant-external-eventbridge": _tenant_config(dev_config, notification="eventbridge", manageNotification=False),
    }
    cache: dict[tuple[str, str], StackGraph] = {}

    def get(kind: str = "dev", mode: str = "up") -> StackGraph:
        if (kind, mode) not in cache:
            cache[(kind, mode)] = check.program_graph(configs[kind], first_preview=mode == "first-preview")
        return cache[(kind, mode)].copy()

    return get


EXAMPLE_CONFIG = policy_config.load_policy_config(check.DEFAULT_CONFIG)


def run(graph: StackGraph, policy, settings: dict | str | None = None) -> CheckReport:
    """One policy over ``graph``, configured as in policypack/config.json unless ``settings`` say otherwise.

    With the pack's preview-deferred-checks after it, as in the pack, to say what it defers.
    """
    entry = EXAMPLE_CONFIG.get(policy.name) if settings is None else settings
    return check.analyze(graph, {policy.name: entry} if entry is not None else None,
                         policies=[policy] if policy is preview_deferred_checks else [policy, preview_deferred_checks])


def violations(report: CheckReport) -> list[check.Diagnostic]:
    """What a policy proved (not the checks it deferred)."""
    return report.violations


def deferred(report: CheckReport) -> str:
    """The checks the policies left for `pulumi up`: said by preview-deferred-checks, never unsaid."""
    notes = report.deferrals
    # Never pulumi-policy's "can't run policy" note, which names the SDK's v0.0.1.
    assert all(d.policy == DEFERRED and d.level == "advisory" and not d.message.startswith(CANT_RUN)
               for d in notes), [d.message for d in notes]
    assert report.unsaid == {}
    return "\n".join(d.message for d in notes)


def assert_passes_once_known(report: CheckReport, mode: str, deferral: str) -> None:
    """No violation: after `pulumi up` nothing at all, at a first preview the deferral note ``deferral``."""
    assert violations(report) == []
    if mode == "first-preview":
        assert deferral in deferred(report)
    else:
        assert report.diagnostics == []


def one(graph: StackGraph, type_: str, name_part: str = "") -> Record:
    """The resource of ``type_`` named ``name_part`` (exactly, else as a substring)."""
    found = [r for r in graph.records if r.type == type_ and r.name == name_part]
    found = found or [r for r in graph.records if r.type == type_ and name_part in r.name]
    assert len(found) == 1, f"expected one {type_} named *{name_part}*, found {[r.name for r in found]}"
    return found[0]


def demo_notification(graph: StackGraph) -> Record:
    return one(graph, NOTIFICATION, "demo_demo-notification")


def enforcer_queue(graph: StackGraph) -> Record:
    return one(graph, QUEUE, "enforcer-queue")


def items_of(graph: StackGraph, integration_name: str) -> list[Record]:
    integ = one(graph, G.INTEGRATION, integration_name)
    return [r for r in graph.records if r.type == TABLE_ITEM and r.parent == integ.urn]


def set_item_field(graph: StackGraph, item: Record, field: str, value: dict) -> None:
    data = json.loads(item.inputs["item"])
    data[field] = value
    graph.set_property(item, "item", json.dumps(data))


# ---------------------------------------------------------------------------
# The pack itself


SPEC = {
    "bucket-notification-routes-to-enforcer": (StackValidationPolicy, EnforcementLevel.MANDATORY),
    "bucket-has-key-mapping": (StackValidationPolicy, EnforcementLevel.MANDATORY),
    "key-mapping-valid": (StackValidationPolicy, EnforcementLevel.MANDATORY),
    "mapped-key-rotation-enabled": (StackValidationPolicy, EnforcementLevel.ADVISORY),
    "enforcer-delivery-is-resilient": (StackValidationPolicy, EnforcementLevel.MANDATORY),
    "notification-filters-do-not-overlap": (ResourceValidationPolicy, EnforcementLevel.MANDATORY),
    "strict-policy-matches-mapping": (StackValidationPolicy, EnforcementLevel.ADVISORY),
    "bucket-default-encryption-is-kms": (StackValidationPolicy, EnforcementLevel.ADVISORY),
    "replicated-prefix-rekeyed-by-copy": (StackValidationPolicy, EnforcementLevel.ADVISORY),
    "preview-deferred-checks": (StackValidationPolicy, EnforcementLevel.ADVISORY),
}


def test_pack_has_the_specified_policies_with_kinds_levels_and_remediation():
    assert [p.name for p in POLICIES] == list(SPEC)
    for p in POLICIES:
        kind, level = SPEC[p.name]
        assert isinstance(p, kind), p.name
        assert p.enforcement_level == level, p.name
        assert p.name == p.name.lower() and " " not in p.name and "_" not in p.name
        assert p.description and p.remediation_steps, p.name
    # Each policy that checks the stack defers through preview-deferred-checks, which the
    # servicer must run after all of them.
    assert POLICIES[-1] is preview_deferred_checks
    assert all(isinstance(p, (DeferringStackPolicy, DeferringResourcePolicy)) for p in POLICIES[:-1])
    schemas = {p.name: set(p.config_schema.properties) for p in POLICIES if p.config_schema}
    assert schemas == {
        "bucket-notification-routes-to-enforcer": {"externalNotificationBuckets"},
        "bucket-has-key-mapping": {"exemptBuckets"},
        "enforcer-delivery-is-resilient": {"minMaxReceiveCount", "visibilityMultiplier"},
        "bucket-default-encryption-is-kms": {"exemptBuckets"},
    }


def test_only_the_pack_entry_point_constructs_policypack():
    # PolicyPack() blocks in a gRPC server: policies.py and check.py must stay importable.
    root = check.PACK_DIR

    def calls_policypack(path) -> bool:
        return any(
            isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "PolicyPack"
            for node in ast.walk(ast.parse(path.read_text()))
        )

    assert sorted(p.name for p in root.glob("*.py") if calls_policypack(p)) == ["__main__.py"]
    main = (root / "__main__.py").read_text()
    assert 'PolicyPack(name="s3-prefix-keys", policies=POLICIES, enforcement_level=' in main


def test_pack_entry_point_builds_the_pack_the_cli_would_load(monkeypatch):
    built: dict = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: built.update(kwargs))
    runpy.run_path(str(check.PACK_DIR / "__main__.py"), run_name="__main__")
    assert built == {"name": "s3-prefix-keys", "policies": POLICIES, "enforcement_level": EnforcementLevel.ADVISORY}
    # What the CLI reads from the pack (GetAnalyzerInfo): names, levels, schemas, remediation.
    info = engine_marshalling.analyzer(POLICIES, policy_config.resolve_policy_config(None)).GetAnalyzerInfo(None, None)
    assert info.name == "s3-prefix-keys" and info.supportsConfig
    by_name = {p.name: p for p in info.policies}
    assert list(by_name) == list(SPEC)
    assert dict(by_name["enforcer-delivery-is-resilient"].configSchema.properties["minMaxReceiveCount"]) == {
        "type": "integer", "minimum": 2.0, "default": 2.0,
        "description": "Lowest accepted maxReceiveCount of the enforcement queue's redrive policy.",
    }
    assert all(p.remediation_steps for p in info.policies)


def test_example_policy_config_is_valid_and_sets_every_policy():
    raw = policy_config.load_policy_config(check.DEFAULT_CONFIG)
    settings = policy_config.resolve_policy_config(raw)
    # preview-deferred-checks only reports; its default (advisory) needs no entry.
    assert set(raw) - {DEFERRED} == set(SPEC) - {DEFERRED}
    assert {n: s.level for n, s in settings.items()} == {n: lvl for n, (_, lvl) in SPEC.items()}


# ---------------------------------------------------------------------------
# The dev stack passes, in both modes


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_dev_stack_passes(graphs, policy):
    report = run(graphs("dev", "up"), policy)
    assert report.diagnostics == []


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_dev_stack_first_preview_has_no_violation(graphs, policy):
    report = run(graphs("dev", "first-preview"), policy)
    assert violations(report) == []
    # Whatever waits for `pulumi up` is said by preview-deferred-checks, on the stack,
    # as one advisory diagnostic for this policy.
    deferred(report)
    for d in report.diagnostics:
        assert d.level == "advisory" and d.resource_type == "pulumi:pulumi:Stack"
        assert d.message.startswith(f"{policy.name} checks at `pulumi up`: ")


@pytest.mark.parametrize("kind", ["tenant", "tenant-eventbridge"])
@pytest.mark.parametrize("mode", MODES)
def test_config_buckets_pass_every_mandatory_policy(graphs, kind, mode):
    report = check.analyze(graphs(kind, mode), policy_config.load_policy_config(check.DEFAULT_CONFIG))
    assert report.mandatory == []


@pytest.mark.parametrize("mode", MODES)
def test_policies_see_the_dev_graph_related_without_arns(graphs, mode):
    # Guards against passing vacuously: the relations every policy builds on.
    g = graphs("dev", mode)
    sg = G.StackGraph(engine_marshalling.stack_resources(g))
    groups = sg.mapped_groups()
    assert [(len(x.buckets), len(x.mappings), len(x.notifications), len(x.integrations)) for x in groups] == [
        (1, 3, 1, 1), (1, 3, 1, 1)
    ]
    assert sorted(x.buckets[0].name for x in groups) == ["demo-demo", "demo-demo-versioned"]
    assert [x.mapped_prefixes() for x in groups] == [(["prefix1/", "prefix2/", "prefix3/"], [])] * 2
    assert [q.name for q in sg.enforcer_queues()] == ["enforcer-queue"]
    rows = sg.mapping_rows()
    assert len(rows) == 6 and all(len(m.keys) == 1 and m.keys[0].resource_type == KEY for m in rows)
    assert sg.stack_region() == REGION
    if mode == "first-preview":
        assert all(m.item is G.UNKNOWN for m in rows) and groups[0].names == set()
    else:
        assert {m.kms_key_arn for m in rows} == {G.value(k.props, "arn") for m in rows for k in m.keys}
        assert all(x.names and next(iter(x.names)).startswith("s3-prefix-keys-demo-") for x in groups)


# ---------------------------------------------------------------------------
# 1. bucket-notification-routes-to-enforcer


@pytest.mark.parametrize("mode", MODES)
def test_missing_notification_fails(graphs, mode):
    g = graphs("dev", mode)
    g.remove(demo_notification(g).urn)
    found = violations(run(g, bucket_notification_routes_to_enforcer))
    assert len(found) == 1
    v = found[0]
    assert v.level == "mandatory"
    assert (v.resource_type, v.resource_name) == (BUCKET, "demo-demo")
    assert f"no {NOTIFICATION} in this stack" in v.message
    assert "'prefix1/', 'prefix2/', 'prefix3/'" in v.message
    # How to fix it, including for a notification configuration owned elsewhere.
    assert "`manageNotification: true`" in v.message
    assert "buckets.<bucket>.manageNotification' false" in v.message
    assert "`externalNotificationBuckets`" in v.message


@pytest.mark.parametrize("mode", MODES)
def test_notification_covering_prefix1_but_not_prefix2_fails(graphs, mode):
    g = graphs("dev", mode)
    n = demo_notification(g)
    only_first = [c for c in n.inputs["queues"] if c["filterPrefix"] == "prefix1/"]
    assert len(only_first) == 1
    g.set_property(n, "queues", only_first)
    found = violations(run(g, bucket_notification_routes_to_enforcer))
    assert [(v.resource_type, v.resource_name) for v in found] == [(NOTIFICATION, "demo_demo-notification")]
    assert "only for 'prefix1/'" in found[0].message
    assert "'prefix2/', 'prefix3/' are never enforced" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_config_bucket_notification_missing_a_prefix_fails(graphs, mode):
    # The rows of a config bucket are known even at first preview (literal key ARNs).
    g = graphs("tenant-plain", mode)
    n = one(g, NOTIFICATION, TENANT)
    g.set_property(n, "queues", [c for c in n.inputs["queues"] if c["filterPrefix"] == "a/"])
    found = violations(run(g, bucket_notification_routes_to_enforcer))
    assert len(found) == 1 and "'b/' are never enforced" in found[0].message


def test_notification_to_another_queue_or_event_sends_nothing(graphs):
    g = graphs("dev", "up")
    n = demo_notification(g)
    queues = [dict(c, queueArn="arn:aws:sqs:us-east-1:123456789012:elsewhere") for c in n.inputs["queues"]]
    g.set_property(n, "queues", queues, deps=[])
    found = violations(run(g, bucket_notification_routes_to_enforcer))
    assert len(found) == 1 and "sends nothing to the enforcer" in found[0].message

    g = graphs("dev", "up")
    n = demo_notification(g)
    g.set_property(n, "queues", [dict(c, events=["s3:ObjectRemoved:*"]) for c in n.inputs["queues"]])
    found = violations(run(g, bucket_notification_routes_to_enforcer))
    assert len(found) == 1 and "sends nothing to the enforcer" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_eventbridge_mode_needs_a_rule_targeting_the_queue(graphs, mode):
    g = graphs("tenant-eventbridge", mode)
    assert one(g, NOTIFICATION, TENANT).inputs.get("eventbridge") is True
    assert violations(run(g, bucket_notification_routes_to_enforcer)) == []
    g.remove(one(g, EVENT_RULE, TENANT).urn)
    found = violations(run(g, bucket_notification_routes_to_enforcer))
    assert len(found) == 1
    assert (found[0].resource_type, found[0].resource_name) == (NOTIFICATION, f"{TENANT}-notification")
    assert "sets eventbridge=true, but no EventBridge rule" in found[0].message


def test_eventbridge_rule_missing_a_prefix_fails(graphs):
    g = graphs("tenant-eventbridge", "up")
    rule = one(g, EVENT_RULE, TENANT)
    pattern = json.loads(rule.inputs["eventPattern"])
    keys = pattern["detail"]["object"]["key"]
    assert {"prefix": "b/"} in keys
    pattern["detail"]["object"]["key"] = [k for k in keys if k != {"prefix": "b/"}]
    g.set_property(rule, "eventPattern", json.dumps(pattern))
    found = violations(run(g, bucket_notification_routes_to_enforcer))
    assert len(found) == 1 and "'b/' are never enforced" in found[0].message


def add_queue_configuration_to(g: StackGraph, n: Record, queue: Record, prefix: str) -> None:
    """One more queue configuration on ``n``, to ``queue``, as a program passing queue.arn would."""
    extra = dict(n.inputs["queues"][0], filterPrefix=prefix, id="to-" + queue.name, queueArn=queue.outputs["arn"])
    g.set_property(n, "queues", [*n.inputs["queues"], extra], deps=[*n.property_dependencies["queues"], queue.urn])


@pytest.mark.parametrize("mode", MODES)
def test_notification_also_feeding_another_queue_of_the_stack_is_not_a_false_violation(graphs, mode):
    # At first preview every queueArn is unknown and `queues` depends on both queues:
    # which configuration goes where is undecidable, so the policy waits for the ARNs.
    g = graphs("dev", mode)
    n = demo_notification(g)
    add_queue_configuration_to(g, n, one(g, QUEUE, "enforcer-dlq"), "other/")
    assert_passes_once_known(run(g, bucket_notification_routes_to_enforcer), mode,
                             f"which queue configuration targets the enforcement queue of {NOTIFICATION} '{n.name}'")


@pytest.mark.parametrize("mode", MODES)
def test_sure_routes_covering_every_prefix_need_no_deferral_beside_an_ambiguous_configuration(graphs, mode):
    # The EventBridge rule delivers a/ and b/ to the enforcer for sure. At first preview
    # which queue configuration goes to which queue is unknown; it cannot matter.
    g = graphs("tenant-eventbridge", mode)
    n = one(g, NOTIFICATION, TENANT)
    queues = {"a/": enforcer_queue(g), "other/": one(g, QUEUE, "enforcer-dlq")}
    configs = [{"events": ["s3:ObjectCreated:*"], "filterPrefix": prefix, "queueArn": q.outputs["arn"]}
               for prefix, q in queues.items()]
    g.set_property(n, "queues", configs, deps=[q.urn for q in queues.values()])
    report = run(g, bucket_notification_routes_to_enforcer)
    assert deferred(report) == ""
    assert report.diagnostics == []


def test_queue_configurations_covering_every_prefix_need_no_deferral_beside_a_new_queues(graphs):
    # A preview that adds a queue: the enforcer's configurations have known ARNs and
    # cover every prefix, the new queue's ARN is unknown until it exists.
    g = graphs("dev", "up")
    n = demo_notification(g)
    new_queue = one(g, QUEUE, "enforcer-dlq")
    extra = dict(n.inputs["queues"][0], filterPrefix="other/", id="to-new-queue", queueArn=UNKNOWN)
    g.set_property(n, "queues", [*n.inputs["queues"], extra],
                   deps=[*n.property_dependencies["queues"], new_queue.urn])
    report = run(g, bucket_notification_routes_to_enforcer)
    assert deferred(report) == ""
    assert report.diagnostics == []


@pytest.mark.parametrize("mode", MODES)
def test_ambiguous_routes_still_fail_when_no_reading_covers_a_prefix(graphs, mode):
    # Even counting every ambiguous configuration as the enforcer's, prefix2/ and
    # prefix3/ are not covered: provable at first preview too.
    g = graphs("dev", mode)
    n = demo_notification(g)
    g.set_property(n, "queues", [c for c in n.inputs["queues"] if c["filterPrefix"] == "prefix1/"])
    add_queue_configuration_to(g, n, one(g, QUEUE, "enforcer-dlq"), "other/")
    found = violations(run(g, bucket_notification_routes_to_enforcer))
    assert [(v.resource_type, v.resource_name) for v in found] == [(NOTIFICATION, n.name)]
    assert "'prefix2/', 'prefix3/' are never enforced" in found[0].message
    # After `pulumi up` the DLQ's configuration is known not to be the enforcer's.
    covered = "at most 'other/', 'prefix1/'" if mode == "first-preview" else "'prefix1/'"
    assert f"to the enforcer only for {covered}; mapped prefix(es)" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_notification_only_to_another_queue_of_the_stack_sends_nothing(graphs, mode):
    # `queues` depends only on the DLQ: unambiguous even with unknown ARNs.
    g = graphs("dev", mode)
    n = demo_notification(g)
    dlq = one(g, QUEUE, "enforcer-dlq")
    g.set_property(n, "queues", [dict(c, queueArn=dlq.outputs["arn"]) for c in n.inputs["queues"]], deps=[dlq.urn])
    found = violations(run(g, bucket_notification_routes_to_enforcer))
    assert len(found) == 1 and "sends nothing to the enforcer" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_external_notification_bucket_passes_only_when_listed(graphs, mode):
    # manageNotification: false: the stack registers no notification for the bucket.
    for kind in ("tenant-external", "tenant-external-eventbridge"):
        g = graphs(kind, mode)
        assert not [r for r in g.records if r.type == NOTIFICATION and TENANT in r.name]
        found = violations(run(g, bucket_notification_routes_to_enforcer))
        assert len(found) == 1 and f"bucket '{TENANT}'" in found[0].message
        assert "its BucketIntegration has `manageNotification: false`" in found[0].message
        assert "`externalNotificationBuckets`" in found[0].message
        # Reported on the integration: the bucket is not created in this stack.
        assert (found[0].resource_type, found[0].resource_name) == (G.INTEGRATION, TENANT)
        for pattern in (TENANT, "tenant-*"):
            report = run(g, bucket_notification_routes_to_enforcer, {"externalNotificationBuckets": [pattern]})
            assert report.diagnostics == [], pattern
        assert violations(run(g, bucket_notification_routes_to_enforcer, {"externalNotificationBuckets": ["other"]}))


@pytest.mark.parametrize("mode", MODES)
def test_external_notification_bucket_with_a_notification_in_the_stack_is_still_checked(graphs, mode):
    g = graphs("tenant-plain", mode)
    n = one(g, NOTIFICATION, TENANT)
    g.set_property(n, "queues", [c for c in n.inputs["queues"] if c["filterPrefix"] == "a/"])
    found = violations(run(g, bucket_notification_routes_to_enforcer, {"externalNotificationBuckets": ["tenant-*"]}))
    assert len(found) == 1 and "'b/' are never enforced" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_external_notification_match_on_a_generated_bucket_name(graphs, mode):
    # The demo buckets' names come from bucketPrefix: known after `pulumi up`, not at
    # a first preview, where a name glob can neither exempt nor condemn them.
    g = graphs("dev", mode)
    g.remove(demo_notification(g).urn)
    settings = {"externalNotificationBuckets": ["s3-prefix-keys-demo-*"]}
    assert_passes_once_known(run(g, bucket_notification_routes_to_enforcer, settings), mode,
                             f"whether the bucket (generated name) is in externalNotificationBuckets of {BUCKET} 'demo-demo'")
    # The Pulumi resource name is known in both modes.
    assert run(g, bucket_notification_routes_to_enforcer, {"externalNotificationBuckets": ["demo-demo"]}).diagnostics == []


# ---------------------------------------------------------------------------
# 2. bucket-has-key-mapping


def add_unmapped_bucket(
    g: StackGraph, name: str = "orphan", tags: dict | None = None, *, type_: str = BUCKET, prefixed: bool = False
) -> Record:
    """A Bucket named ``<name>-bucket`` (or, ``prefixed``, generated from bucketPrefix ``<name>-``)."""
    demo = one(g, BUCKET, "demo-demo-versioned")
    inputs = {"bucketPrefix": f"{name}-"} if prefixed else {"bucket": f"{name}-bucket"}
    inputs.update({"tags": tags} if tags else {})
    outputs = dict(inputs)
    if prefixed and not g.preview:
        outputs["bucket"] = f"{name}-" + "0" * 26  # the provider's unique suffix
    return g.add(Record(
        urn=demo.urn.rsplit("::", 1)[0].replace(BUCKET, type_) + f"::{name}",
        type=type_, name=name, custom=True, inputs=inputs, outputs=outputs,
        parent=demo.parent, provider=demo.provider,
    ))


def add_rule_on_buckets(g: StackGraph, *buckets: Record) -> Record:
    """A user's EventRule (an audit trail, say) matching Object Created in several buckets."""
    stack = next(r for r in g.records if r.type == "pulumi:pulumi:Stack")
    pattern: object = UNKNOWN  # built from the buckets' names: unknown until they exist
    if not g.preview:
        pattern = json.dumps({"source": ["aws.s3"], "detail-type": ["Object Created"],
                              "detail": {"bucket": {"name": [b.outputs["bucket"] for b in buckets]}}})
    return g.add(Record(
        urn=stack.urn.split("::")[0] + f"::{g.project}::{EVENT_RULE}::audit-rule", type=EVENT_RULE,
        name="audit-rule", custom=True, inputs={"eventPattern": pattern}, outputs={"eventPattern": pattern},
        parent=stack.urn, provider=buckets[0].provider,
        property_dependencies={"eventPattern": [b.urn for b in buckets]},
    ))


@pytest.mark.parametrize("mode", MODES)
def test_bucket_without_mapping_fails(graphs, mode):
    g = graphs("dev", mode)
    add_unmapped_bucket(g)
    found = violations(run(g, bucket_has_key_mapping))
    assert [(v.level, v.resource_type, v.resource_name) for v in found] == [("mandatory", BUCKET, "orphan")]
    assert "(bucket name 'orphan-bucket') has no prefix key mapping" in found[0].message
    assert "exemptBuckets" in found[0].message and "s3-prefix-keys:exempt=true" in found[0].message


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("type_", [BUCKET, "aws:s3/bucketV2:BucketV2"])
def test_bucket_sharing_a_rule_with_a_mapped_bucket_still_needs_a_mapping(graphs, mode, type_):
    # One rule naming both buckets must not make the unmapped one look mapped.
    g = graphs("dev", mode)
    orphan = add_unmapped_bucket(g, type_=type_)
    add_rule_on_buckets(g, one(g, BUCKET, "demo-demo"), orphan)
    found = violations(run(g, bucket_has_key_mapping))
    assert [(v.resource_type, v.resource_name) for v in found] == [(type_, "orphan")]
    # ... and the mapped bucket's own checks still see the rule, without the orphan's name.
    groups = {x.buckets[0].name: x for x in G.StackGraph(engine_marshalling.stack_resources(g)).bucket_groups() if x.buckets}
    assert [r.name for r in groups["demo-demo"].rules] == [r.name for r in groups["orphan"].rules] == ["audit-rule"]
    assert "orphan-bucket" not in groups["demo-demo"].names and groups["orphan"].mappings == []
    assert violations(run(g, bucket_notification_routes_to_enforcer)) == []


@pytest.mark.parametrize("mode", MODES)
def test_mapping_is_decided_per_bucket_within_a_group(graphs, mode):
    # A resource parented to the demo integration but about another bucket ties both
    # buckets into one group; the other bucket still has no mapping of its own.
    g = graphs("dev", mode)
    orphan = add_unmapped_bucket(g)
    integ = one(g, G.INTEGRATION, "demo_demo")
    doc = json.dumps({"Version": "2012-10-17", "Statement": []})
    g.add(Record(urn=integ.urn + f"${BUCKET_POLICY}::stray-policy", type=BUCKET_POLICY, name="stray-policy",
                 custom=True, inputs={"bucket": "orphan-bucket", "policy": doc},
                 outputs={"bucket": "orphan-bucket", "policy": doc}, parent=integ.urn, provider=orphan.provider,
                 property_dependencies={"bucket": [orphan.urn]}))
    groups = G.StackGraph(engine_marshalling.stack_resources(g)).bucket_groups()
    assert sorted(b.name for x in groups for b in x.buckets if len(x.buckets) > 1) == ["demo-demo", "orphan"]
    found = violations(run(g, bucket_has_key_mapping))
    assert [(v.resource_type, v.resource_name) for v in found] == [(BUCKET, "orphan")]


@pytest.mark.parametrize("mode", MODES)
def test_mappings_of_bucket_answers_as_the_first_call_on_a_graph(graphs, mode):
    sg = G.StackGraph(engine_marshalling.stack_resources(graphs("dev", mode)))
    bucket = next(b for b in sg.of_type(BUCKET) if b.name == "demo-demo")
    group = G.BucketGroup(key="demo-demo", buckets=[bucket], mappings=sg.mapping_rows())  # both buckets' rows
    mine = sorted(m.resource.name for m in sg.mappings_of_bucket(group, bucket))
    (demo,) = [x for x in sg.mapped_groups() if x.buckets == [bucket]]
    assert len(mine) == 3 and mine == sorted(m.resource.name for m in demo.mappings)


@pytest.mark.parametrize("mode", MODES)
def test_deprecated_bucket_v2_without_mapping_fails(graphs, mode):
    g = graphs("dev", mode)
    add_unmapped_bucket(g, name="legacy", type_="aws:s3/bucketV2:BucketV2")
    found = violations(run(g, bucket_has_key_mapping))
    assert [(v.level, v.resource_type, v.resource_name) for v in found] == [
        ("mandatory", "aws:s3/bucketV2:BucketV2", "legacy")
    ]
    assert "(bucket name 'legacy-bucket') has no prefix key mapping" in found[0].message


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("pattern", ["orphan-*", "orph?n"])  # bucket name, resource name
def test_bucket_exempt_by_config_passes(graphs, mode, pattern):
    g = graphs("dev", mode)
    add_unmapped_bucket(g)
    assert run(g, bucket_has_key_mapping, {"exemptBuckets": [pattern]}).diagnostics == []
    assert len(violations(run(g, bucket_has_key_mapping, {"exemptBuckets": ["other-*"]}))) == 1


@pytest.mark.parametrize("mode", MODES)
def test_bucket_with_a_generated_name_is_exempt_once_the_name_is_known(graphs, mode):
    g = graphs("dev", mode)
    add_unmapped_bucket(g, prefixed=True)
    # At a first preview the name glob may match the generated name, or not.
    assert_passes_once_known(run(g, bucket_has_key_mapping, {"exemptBuckets": ["orphan-*"]}), mode,
                             f"whether the unmapped bucket is exempt (its tags or generated name) of {BUCKET} 'orphan'")
    # Without exemptions nothing can save it, in either mode.
    assert len(violations(run(g, bucket_has_key_mapping, {"exemptBuckets": []}))) == 1


@pytest.mark.parametrize(("exempt", "passes"), [("true", True), ("false", False)])
def test_bucket_exempt_by_the_providers_default_tags(graphs, exempt, passes):
    # tagsAll (which merges them in) is computed, so unknown at a first preview. The
    # engine sends the provider's defaultTags JSON-encoded, as pulumi_aws serialises it.
    g = graphs("dev", "first-preview")
    bucket = add_unmapped_bucket(g)
    assert bucket.outputs["tagsAll"] is UNKNOWN
    provider = g.by_urn(bucket.provider)
    sent = json.dumps({"tags": {"s3-prefix-keys:exempt": exempt, "team": "storage"}})
    provider.inputs["defaultTags"] = provider.outputs["defaultTags"] = sent
    assert (run(g, bucket_has_key_mapping).diagnostics == []) is passes


def test_providers_default_tags_as_pulumi_aws_sends_them():
    # What the real provider object puts on the wire for defaultTags: a JSON string.
    # (pulumi_aws/provider.py registers it through pulumi.runtime.to_json.)
    from pathlib import Path

    import pulumi_aws.provider

    source = Path(pulumi_aws.provider.__file__).read_text()
    assert '__props__.__dict__["default_tags"] = pulumi.Output.from_input(default_tags).apply(pulumi.runtime.to_json)' in source


def test_unknown_default_tags_defer(graphs):
    g = graphs("dev", "first-preview")
    bucket = add_unmapped_bucket(g)
    provider = g.by_urn(bucket.provider)
    provider.inputs["defaultTags"] = provider.outputs["defaultTags"] = UNKNOWN
    report = run(g, bucket_has_key_mapping)
    assert violations(report) == []
    assert "whether the unmapped bucket is exempt (its tags or generated name)" in deferred(report)


def test_bucket_exempt_by_tag_passes(graphs):
    g = graphs("dev", "first-preview")
    add_unmapped_bucket(g, tags={"s3-prefix-keys:exempt": "true"})
    assert violations(run(g, bucket_has_key_mapping)) == []
    add_unmapped_bucket(g, name="other", tags={"s3-prefix-keys:exempt": "false"})
    assert [v.resource_name for v in violations(run(g, bucket_has_key_mapping))] == ["other"]


# ---------------------------------------------------------------------------
# 3. key-mapping-valid (and its advisory half, mapped-key-rotation-enabled)


@pytest.mark.parametrize("mode", MODES)
def test_alias_arn_fails(graphs, mode):
    g = graphs("tenant-plain", mode)
    item = next(r for r in items_of(g, TENANT) if json.loads(r.inputs["item"])["prefix"]["S"] == "a/")
    set_item_field(g, item, "kms_key_arn", {"S": "arn:aws:kms:us-east-1:111122223333:alias/tenant-a"})
    found = violations(run(g, key_mapping_valid))
    assert [(v.resource_type, v.resource_name) for v in found] == [(TABLE_ITEM, item.name)]
    assert "'arn:aws:kms:us-east-1:111122223333:alias/tenant-a' is a key alias" in found[0].message
    assert "Use the full key ARN" in found[0].message


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        ("11111111-2222-3333-4444-555555555555", "is a bare key ID"),
        ("alias/aws/s3", "is the AWS managed key aws/s3"),
        ("arn:aws:kms:eu-west-1:111122223333:key/11111111-2222-3333-4444-555555555555",
         "is in region eu-west-1 but the stack deploys to us-east-1"),
    ],
)
def test_key_id_managed_key_and_cross_region_arn_fail(graphs, arn, expected):
    g = graphs("tenant-plain", "up")
    item = items_of(g, TENANT)[0]
    set_item_field(g, item, "kms_key_arn", {"S": arn})
    found = violations(run(g, key_mapping_valid))
    assert len(found) == 1 and expected in found[0].message and found[0].resource_name == item.name


def test_cross_region_demo_row_fails(graphs):
    g = graphs("dev", "up")
    item = items_of(g, "demo_demo")[0]
    arn = json.loads(item.inputs["item"])["kms_key_arn"]["S"]
    set_item_field(g, item, "kms_key_arn", {"S": arn.replace(f":{REGION}:", ":eu-west-1:")})
    found = violations(run(g, key_mapping_valid))
    assert len(found) == 1 and "is in region eu-west-1 but the stack deploys to us-east-1" in found[0].message


def test_cross_region_key_resource_fails_at_first_preview(graphs):
    # The ARN is unknown; the key's provider says where it will be created.
    g = graphs("dev", "first-preview")
    key = one(g, KEY, "demo-prefix2")
    provider = Record(
        urn=key.urn.split("::")[0] + "::s3-prefix-keys::pulumi:providers:aws::eu",
        type="pulumi:providers:aws", name="eu", custom=True,
        inputs={"region": "eu-west-1"}, outputs={"region": "eu-west-1"},
    )
    g.records.append(provider)
    key.provider = provider.urn
    found = violations(run(g, key_mapping_valid))
    assert {v.resource_type for v in found} == {TABLE_ITEM} and len(found) == 2  # both demo buckets map it
    assert all("which its provider creates in eu-west-1, but the stack deploys to us-east-1" in v.message
               for v in found)


@pytest.mark.parametrize("mode", MODES)
def test_asymmetric_key_in_stack_fails(graphs, mode):
    g = graphs("dev", mode)
    key = one(g, KEY, "demo-prefix1")
    g.set_property(key, "customerMasterKeySpec", "RSA_2048")
    found = violations(run(g, key_mapping_valid))
    assert len(found) == 2
    assert all("keySpec RSA_2048" in v.message and "SYMMETRIC_DEFAULT" in v.message for v in found)


def test_alias_resource_feeding_a_row_fails_at_first_preview(graphs):
    g = graphs("dev", "first-preview")
    item = items_of(g, "demo_demo")[0]
    key = next(g.by_urn(u) for u in item.property_dependencies["item"] if g.by_urn(u).type == KEY)
    alias = Record(urn=key.urn + "-alias", type="aws:kms/alias:Alias", name="tenant-alias", custom=True,
                   inputs={"name": "alias/tenant"}, outputs={"name": "alias/tenant", "arn": UNKNOWN},
                   parent=key.parent, provider=key.provider)
    g.records.append(alias)
    item.property_dependencies["item"] = [u for u in item.property_dependencies["item"] if u != key.urn] + [alias.urn]
    found = violations(run(g, key_mapping_valid))
    assert len(found) == 1 and "takes its key from aws:kms/alias:Alias 'tenant-alias'" in found[0].message


def test_non_boolean_dual_layer_fails(graphs):
    g = graphs("tenant-plain", "first-preview")
    item = items_of(g, TENANT)[0]
    set_item_field(g, item, "dual_layer_encryption", {"S": "true"})
    found = violations(run(g, key_mapping_valid))
    assert len(found) == 1 and 'dual_layer_encryption is {"S": "true"}' in found[0].message


def test_rotation_off_is_advisory(graphs):
    g = graphs("dev", "first-preview")
    g.set_property(one(g, KEY, "demo-prefix3"), "enableKeyRotation", False)
    found = violations(run(g, mapped_key_rotation_enabled))
    assert [(v.level, v.resource_type, v.resource_name) for v in found] == [("advisory", KEY, "demo-prefix3")]
    assert "automatic rotation is off" in found[0].message


# ---------------------------------------------------------------------------
# 4. enforcer-delivery-is-resilient


@pytest.mark.parametrize("mode", MODES)
def test_queue_without_dlq_fails(graphs, mode):
    g = graphs("dev", mode)
    q = enforcer_queue(g)
    g.set_property(q, "redrivePolicy", None)
    # The premise: left unset, the provider reports it as unknown while creating the queue.
    assert q.outputs.get("redrivePolicy") is (UNKNOWN if mode == "first-preview" else None)
    found = violations(run(g, enforcer_delivery_is_resilient))
    assert [(v.level, v.resource_type, v.resource_name) for v in found] == [("mandatory", QUEUE, q.name)]
    assert "has no redrive policy" in found[0].message and "maxReceiveCount" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_max_receive_count_1_fails(graphs, mode):
    g = graphs("dev", mode)
    q = enforcer_queue(g)
    if mode == "first-preview":
        # Built from the DLQ's ARN, the program's redrivePolicy is unknown (its count is
        # deferred, see test_policy_check); a literal DLQ ARN makes it known.
        assert q.outputs["redrivePolicy"] is UNKNOWN
        dlq = one(g, QUEUE, "enforcer-dlq")
        redrive = {"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:111122223333:{dlq.outputs['name']}"}
        g.set_property(q, "redrivePolicy", json.dumps({**redrive, "maxReceiveCount": 1}), deps=[])
    else:
        redrive = json.loads(q.inputs["redrivePolicy"])
        assert redrive["maxReceiveCount"] == 5
        g.set_property(q, "redrivePolicy", json.dumps({**redrive, "maxReceiveCount": 1}))
    found = violations(run(g, enforcer_delivery_is_resilient))
    assert len(found) == 1 and found[0].resource_name == q.name
    assert "maxReceiveCount 1; below 2" in found[0].message


def add_redrive_policy_resource(g: StackGraph, count: int, *, related: bool = True) -> Record:
    """The enforcer queue's redrive as an aws.sqs.RedrivePolicy (built from the DLQ's ARN)."""
    q, dlq = enforcer_queue(g), one(g, QUEUE, "enforcer-dlq")
    redrive = {"deadLetterTargetArn": dlq.outputs["arn"], "maxReceiveCount": count}
    policy = UNKNOWN if g.preview else json.dumps(redrive)
    g.set_property(q, "redrivePolicy", None)
    return g.add(Record(
        urn=q.urn.replace("aws:sqs/queue:Queue", "aws:sqs/redrivePolicy:RedrivePolicy") + "-redrive",
        type="aws:sqs/redrivePolicy:RedrivePolicy", name="enforcer-redrive", custom=True,
        inputs={"queueUrl": q.outputs["url"], "redrivePolicy": policy},
        outputs={"queueUrl": q.outputs["url"], "redrivePolicy": policy},
        parent=q.parent, provider=q.provider,
        property_dependencies={"queueUrl": [q.urn] if related else [], "redrivePolicy": [dlq.urn]},
    ))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("count", [5, 1])
def test_redrive_policy_as_its_own_resource(graphs, mode, count):
    g = graphs("dev", mode)
    add_redrive_policy_resource(g, count)
    report = run(g, enforcer_delivery_is_resilient)
    found = violations(report)
    if mode == "first-preview":
        # The queue's unknown redrivePolicy is the provider's (it has no dependency); the
        # RedrivePolicy resource holds the real one, whose count waits for the DLQ's ARN.
        assert found == []
        assert "redrivePolicy.maxReceiveCount of aws:sqs/redrivePolicy:RedrivePolicy 'enforcer-redrive'" \
            in deferred(report)
    elif count >= 2:
        assert found == []
    else:
        assert len(found) == 1 and "maxReceiveCount 1; below 2" in found[0].message


def test_redrive_policy_resource_for_an_unknown_queue_defers(graphs):
    # A queueUrl without dependencies (an external queue's URL from config, say) that
    # is unknown: it may be the enforcer queue's, so "no redrive policy" is not proven.
    g = graphs("dev", "first-preview")
    add_redrive_policy_resource(g, 5, related=False)
    report = run(g, enforcer_delivery_is_resilient)
    assert violations(report) == []
    assert "of aws:sqs/redrivePolicy:RedrivePolicy 'enforcer-redrive'" in deferred(report)


def test_max_receive_count_threshold_is_configurable(graphs):
    found = violations(run(graphs("dev", "up"), enforcer_delivery_is_resilient, {"minMaxReceiveCount": 6}))
    assert len(found) == 1 and "maxReceiveCount 5; below 6" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_aws_sns_managed_topic_key_fails(graphs, mode):
    g = graphs("dev", mode)
    topic = one(g, TOPIC, "enforcer-alerts")
    g.set_property(topic, "kmsMasterKeyId", "alias/aws/sns", deps=[])
    found = violations(run(g, enforcer_delivery_is_resilient))
    assert [(v.resource_type, v.resource_name) for v in found] == [(TOPIC, topic.name)]
    assert "encrypted with alias/aws/sns" in found[0].message and "cloudwatch.amazonaws.com" in found[0].message
    # Reported even when the DLQ itself is missing (the errors alarm notifies the same topic).
    g.set_property(enforcer_queue(g), "redrivePolicy", None)
    found = violations(run(g, enforcer_delivery_is_resilient))
    assert sorted(v.resource_type for v in found) == sorted([QUEUE, TOPIC])


@pytest.mark.parametrize("mode", MODES)
def test_topic_key_without_cloudwatch_grant_fails(graphs, mode):
    g = graphs("dev", mode)
    key = one(g, KEY, "enforcer-alerts-key")
    policy = json.loads(key.inputs["policy"])
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Principal", {}).get("Service") is None]
    g.set_property(key, "policy", json.dumps(policy))
    found = violations(run(g, enforcer_delivery_is_resilient))
    assert len(found) == 1 and "does not allow cloudwatch.amazonaws.com" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_topic_key_with_the_default_key_policy_fails(graphs, mode):
    # No policy: AWS's default key policy, which grants the account only. At first
    # preview the provider reports the unset policy as unknown.
    g = graphs("dev", mode)
    key = one(g, KEY, "enforcer-alerts-key")
    g.set_property(key, "policy", None)
    assert key.outputs.get("policy") is (UNKNOWN if mode == "first-preview" else None)
    found = violations(run(g, enforcer_delivery_is_resilient))
    assert [(v.resource_type, v.resource_name) for v in found] == [(TOPIC, "enforcer-alerts")]
    assert "does not allow cloudwatch.amazonaws.com" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_short_visibility_and_no_batch_item_failures_fail(graphs, mode):
    g = graphs("dev", mode)
    q = enforcer_queue(g)
    g.set_property(q, "visibilityTimeoutSeconds", 300)
    g.set_property(one(g, ESM), "functionResponseTypes", None)
    found = violations(run(g, enforcer_delivery_is_resilient))
    messages = sorted(v.message for v in found)
    assert len(found) == 2
    assert "does not report batch item failures" in messages[0]
    assert "visibilityTimeoutSeconds 300, below 6 x the timeout" in messages[1]
    assert "= 721s" in messages[1]  # 6 x 120 + 1 (batching window)


def test_visibility_multiplier_is_configurable(graphs):
    g = graphs("dev", "first-preview")
    found = violations(run(g, enforcer_delivery_is_resilient, {"visibilityMultiplier": 7}))
    assert len(found) == 1 and "below 7 x the timeout" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_dlq_without_alarm_or_alarm_without_topic_fails(graphs, mode):
    g = graphs("dev", mode)
    g.remove(one(g, ALARM, "dlq-depth").urn)
    found = violations(run(g, enforcer_delivery_is_resilient))
    assert len(found) == 1 and found[0].resource_name == "enforcer-dlq"
    assert f"no {ALARM} watches the depth" in found[0].message

    g = graphs("dev", mode)
    g.set_property(one(g, ALARM, "dlq-depth"), "alarmActions", [], deps=[])
    found = violations(run(g, enforcer_delivery_is_resilient))
    assert len(found) == 1 and "notifies no SNS topic" in found[0].message


def test_no_event_source_mapping_means_no_enforcer(graphs):
    g = graphs("dev", "first-preview")
    g.remove(one(g, ESM).urn)
    found = violations(run(g, enforcer_delivery_is_resilient))
    assert [(v.resource_type, v.resource_name) for v in found] == [("pulumi:pulumi:Stack", "s3-prefix-keys-dev")]
    assert f"has no {ESM}, so nothing consumes the enforcement queue" in found[0].message
    found = violations(run(g, bucket_notification_routes_to_enforcer))
    assert sorted(v.resource_name for v in found) == ["demo-demo", "demo-demo-versioned"]
    assert all("there is no enforcement queue to route to" in v.message for v in found)


@pytest.mark.parametrize(("type_", "prop"), [
    (BUCKET, "serverSideEncryptionConfiguration"),
    ("aws:s3/bucketV2:BucketV2", "serverSideEncryptionConfigurations"),  # a list of blocks
])
def test_inline_bucket_encryption_counts_only_without_a_configuration_resource(graphs, type_, prop):
    g = graphs("tenant-plain", "up")
    bucket = add_unmapped_bucket(g, name="tenant-owned", type_=type_)
    g.set_property(bucket, "bucket", TENANT)  # the config bucket, created in this stack
    sse = {"rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]}
    g.set_property(bucket, prop, [sse] if prop.endswith("s") else sse)
    found = violations(run(g, bucket_default_encryption_is_kms))
    assert [(v.resource_type, v.resource_name) for v in found] == [(type_, "tenant-owned")]
    assert "sets default encryption AES256" in found[0].message
    g = graphs("tenant", "up")
    bucket = add_unmapped_bucket(g, name="tenant-owned", type_=type_)
    g.set_property(bucket, "bucket", TENANT)
    g.set_property(bucket, prop, [sse] if prop.endswith("s") else sse)  # stale: the resource below owns it
    assert violations(run(g, bucket_default_encryption_is_kms)) == []


# ---------------------------------------------------------------------------
# 5. notification-filters-do-not-overlap (resource policy, inputs)


@pytest.mark.parametrize("mode", MODES)
def test_overlapping_filters_fail(graphs, mode):
    g = graphs("dev", mode)
    n = demo_notification(g)
    nested = dict(n.inputs["queues"][0], filterPrefix="prefix1/sub/", id="extra")
    g.set_property(n, "queues", [*n.inputs["queues"], nested])
    found = violations(run(g, notification_filters_do_not_overlap))
    assert [(v.level, v.resource_type, v.resource_name) for v in found] == [
        ("mandatory", NOTIFICATION, n.name)
    ]
    assert "(prefix 'prefix1/', suffix '') and queue configuration #3 (prefix 'prefix1/sub/'" in found[0].message
    assert "Configurations overlap" in found[0].message and "('prefix1/')" in found[0].message


def test_filters_for_other_events_or_suffixes_do_not_overlap(graphs):
    g = graphs("dev", "up")
    n = demo_notification(g)
    first = n.inputs["queues"][0]
    extra = [
        dict(first, filterPrefix="prefix1/sub/", events=["s3:ObjectRemoved:*"], id="removed"),
        dict(first, filterPrefix="", filterSuffix=".tmp", id="tmp"),
        dict(first, filterPrefix="", filterSuffix=".log", id="log"),
    ]
    g.set_property(n, "queues", [*n.inputs["queues"], *extra])
    found = violations(run(g, notification_filters_do_not_overlap))
    # prefix '' overlaps every prefix for ObjectCreated; the two suffix filters do not overlap each other.
    assert len(found) == 6 and all("suffix '.log'" in v.message or "suffix '.tmp'" in v.message for v in found)


# ---------------------------------------------------------------------------
# 6. strict-policy-matches-mapping (advisory)


def strict_statements(g: StackGraph) -> tuple[Record, dict]:
    p = one(g, BUCKET_POLICY, TENANT)
    return p, json.loads(p.inputs["policy"])


def strict_violation(g: StackGraph, doc: dict) -> str:
    """The one advisory the policy reports on the tenant bucket's policy, set to ``doc``."""
    p = one(g, BUCKET_POLICY, TENANT)
    g.set_property(p, "policy", json.dumps(doc))
    found = violations(run(g, strict_policy_matches_mapping))
    assert [(v.level, v.resource_type) for v in found] == [("advisory", BUCKET_POLICY)]
    return found[0].message


def enforcer_role_arn(g: StackGraph) -> str:
    return one(g, "aws:iam/role:Role", "enforcer-role").outputs["arn"]


@pytest.mark.parametrize("mode", MODES)
def test_strict_policy_matching_the_mapping_passes(graphs, mode):
    # The statements name the enforcer role's ARN, so a first preview cannot see them.
    g = graphs("tenant", mode)
    p = one(g, BUCKET_POLICY, TENANT)
    assert_passes_once_known(run(g, strict_policy_matches_mapping), mode,
                             f"the bucket policy document of {BUCKET_POLICY} '{p.name}'")


def test_strict_policy_exempts_the_stacks_enforcer_role(graphs):
    g = graphs("tenant")
    _, doc = strict_statements(g)
    role = enforcer_role_arn(g)
    assert all(s["Condition"]["ArnNotEquals"] == {"aws:PrincipalArn": role} for s in doc["Statement"])
    other = "arn:aws:iam::111122223333:role/someone-else"
    for s in doc["Statement"]:
        s["Condition"]["ArnNotEquals"] = {"aws:PrincipalArn": other}
    message = strict_violation(g, doc)
    assert f"the enforcer role {role}" in message and "'a/' denies the enforcer's PutObject naming another key" in message


def test_strict_policy_of_the_old_shape_breaks_multipart_uploads(graphs):
    # Before issue 9: Null plus StringNotEquals on s3:PutObject, per prefix, no exemption.
    g = graphs("tenant")
    _, doc = strict_statements(g)
    old = []
    for prefix, key, sse in (("a/", KEY_A, "aws:kms"), ("b/", KEY_B, "aws:kms:dsse")):
        deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{TENANT}/{prefix}*"}
        old += [
            {**deny, "Condition": {"Null": {KEY_ID_CONDITION: "true"}}},
            {**deny, "Condition": {"StringNotEquals": {KEY_ID_CONDITION: key}}},
            {**deny, "Condition": {"StringNotEquals": {SSE_CONDITION: sse}}},
        ]
    message = strict_violation(g, {**doc, "Statement": old})
    assert "denies the writer's UploadPart (no encryption keys" in message
    assert "denies the writer's CompleteMultipartUpload (no encryption keys" in message
    assert "'a/' " in message and "'b/' " in message


def test_strict_policy_missing_a_prefix_or_naming_another_key_fails(graphs):
    g = graphs("tenant")
    _, doc = strict_statements(g)
    doc["Statement"] = [s for s in doc["Statement"] if s["Sid"] != "StrictOtherKeyB"]
    message = strict_violation(g, doc)
    assert "'b/' does not deny the writer's PutObject naming another key" in message
    assert "'a/'" not in message

    g = graphs("tenant")
    _, doc = strict_statements(g)
    (st,) = [s for s in doc["Statement"] if s["Sid"] == "StrictOtherKeyA"]
    st["Condition"]["StringNotEquals"] = {KEY_ID_CONDITION: KEY_B}
    message = strict_violation(g, doc)
    assert "'a/' denies the writer's PutObject naming the prefix's key" in message


def test_strict_policy_covering_an_unmapped_prefix_fails(graphs):
    g = graphs("tenant")
    _, doc = strict_statements(g)
    stale = [dict(s, Sid=s["Sid"] + "Old", Resource=s["Resource"].replace("/a/*", "/old/*"))
             for s in doc["Statement"] if s["Sid"] == "StrictOtherKeyA"]
    doc["Statement"] += stale
    assert "'old/' has key-enforcing deny statements but is not mapped" in strict_violation(g, doc)


def test_strict_policy_with_an_operator_the_model_lacks_is_reported(graphs):
    g = graphs("tenant")
    _, doc = strict_statements(g)
    doc["Statement"][0]["Condition"]["ForAnyValue:StringEquals"] = {"aws:TagKeys": "x"}
    assert "a statement cannot be evaluated (set operator ForAnyValue:StringEquals)" in strict_violation(g, doc)


def test_strict_policy_built_from_unknown_values_is_deferred(graphs):
    # A document computed from a key the stack creates is unknown until the key exists.
    g = graphs("tenant", "first-preview")
    p = one(g, BUCKET_POLICY, TENANT)
    g.set_property(p, "policy", UNKNOWN, deps=[one(g, KEY, "enforcer-alerts-key").urn])
    report = run(g, strict_policy_matches_mapping)
    assert violations(report) == []
    assert f"the bucket policy document of {BUCKET_POLICY} '{p.name}'" in deferred(report)


# ---------------------------------------------------------------------------
# 7. bucket-default-encryption-is-kms (advisory)


@pytest.mark.parametrize("mode", MODES)
def test_default_kms_encryption_passes_and_dsse_counts_as_kms(graphs, mode):
    g = graphs("tenant", mode)
    assert run(g, bucket_default_encryption_is_kms).diagnostics == []
    sse = one(g, SSE, TENANT)
    rules = sse.inputs["rules"]
    rules[0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] = "aws:kms:dsse"
    g.set_property(sse, "rules", rules)
    assert run(g, bucket_default_encryption_is_kms).diagnostics == []


@pytest.mark.parametrize("mode", MODES)
def test_sse_s3_default_or_no_default_encryption_fails(graphs, mode):
    g = graphs("tenant", mode)
    sse = one(g, SSE, TENANT)
    g.set_property(sse, "rules", [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}])
    found = violations(run(g, bucket_default_encryption_is_kms))
    assert [(v.level, v.resource_type) for v in found] == [("advisory", SSE)]
    assert "sets default encryption AES256" in found[0].message

    found = violations(run(graphs("tenant-plain", mode), bucket_default_encryption_is_kms))
    assert len(found) == 1
    assert f"bucket '{TENANT}'" in found[0].message and "has no default encryption configuration" in found[0].message
    assert "defaultKmsKeyArn" in found[0].message


@pytest.mark.parametrize("mode", MODES)
def test_demo_buckets_are_flagged_unless_exempt(graphs, mode):
    # The demo leaves prefix4/ unmapped on purpose; the example config exempts it. At a
    # first preview the buckets' inline encryption reads as unknown, but the program
    # leaves it to the provider: S3's default, SSE-S3.
    g = graphs("dev", mode)
    if mode == "first-preview":
        assert one(g, BUCKET, "demo-demo").outputs["serverSideEncryptionConfiguration"] is UNKNOWN
    assert run(g, bucket_default_encryption_is_kms).diagnostics == []
    found = violations(run(g, bucket_default_encryption_is_kms, {"exemptBuckets": []}))
    assert sorted(v.resource_name for v in found) == ["demo-demo", "demo-demo-versioned"]
    assert all("has no default encryption configuration in this stack" in v.message for v in found)
    # Exempt by their generated names: known after `pulumi up` only.
    assert_passes_once_known(
        run(g, bucket_default_encryption_is_kms, {"exemptBuckets": ["s3-prefix-keys-demo-*"]}), mode,
        f"whether the bucket (generated name) is in exemptBuckets of {BUCKET} 'demo-demo', {BUCKET} 'demo-demo-versioned'",
    )


def test_default_encryption_rules_built_from_unknown_values_are_deferred(graphs):
    g = graphs("tenant", "first-preview")
    sse = one(g, SSE, TENANT)
    g.set_property(sse, "rules", UNKNOWN, deps=[one(g, KEY, "enforcer-alerts-key").urn])
    report = run(g, bucket_default_encryption_is_kms)
    assert violations(report) == []
    assert f"default encryption rules of {SSE} '{sse.name}'" in deferred(report)


# ---------------------------------------------------------------------------
# Every mandatory policy still fires at the first preview of a new stack


def _break_routes(g):
    g.remove(demo_notification(g).urn)


def _break_mapping(g):
    add_unmapped_bucket(g)


def _break_keys(g):
    g.set_property(one(g, KEY, "demo-prefix1"), "keyUsage", "SIGN_VERIFY")


def _break_delivery(g):
    g.set_property(enforcer_queue(g), "redrivePolicy", None)


def _break_filters(g):
    n = demo_notification(g)
    g.set_property(n, "queues", [*n.inputs["queues"], dict(n.inputs["queues"][1], filterPrefix="")])


BREAKERS = {
    "bucket-notification-routes-to-enforcer": _break_routes,
    "bucket-has-key-mapping": _break_mapping,
    "key-mapping-valid": _break_keys,
    "enforcer-delivery-is-resilient": _break_delivery,
    "notification-filters-do-not-overlap": _break_filters,
}


def test_every_mandatory_policy_has_a_first_preview_case():
    mandatory = {p.name for p in POLICIES if p.enforcement_level == EnforcementLevel.MANDATORY}
    assert mandatory == set(BREAKERS)


@pytest.mark.parametrize("name", sorted(BREAKERS))
def test_mandatory_policy_fires_at_first_preview(graphs, name):
    g = graphs("dev", "first-preview")
    # The premise: ARNs really are unknown in this mode.
    assert enforcer_queue(g).outputs["arn"] is UNKNOWN
    assert all(i.inputs["item"] is UNKNOWN for i in items_of(g, "demo_demo"))
    BREAKERS[name](g)
    report = check.analyze(g, policy_config.load_policy_config(check.DEFAULT_CONFIG))
    assert {d.policy for d in report.mandatory} == {name}
    assert report.exit_code == 1


# ---------------------------------------------------------------------------
# The engine's view: marshalling, unknowns, configuration


def test_marshal_mirrors_the_engine_numbers_and_unknowns():
    props = engine_marshalling.marshal({"timeout": 120, "arn": UNKNOWN, "nested": {"list": [1, UNKNOWN]}, "gone": None})
    assert props["timeout"] == 120.0 and isinstance(props["timeout"], float)
    assert "gone" not in props
    with pytest.raises(UnknownValueError) as err:
        props["arn"]
    assert err.value.message == "string value at .arn can't be known during preview"
    with pytest.raises(UnknownValueError) as err:
        props["nested"]["list"][1]
    assert err.value.message == "string value at .nested.list.1 can't be known during preview"
    assert G.value(props, "arn") is G.UNKNOWN and G.value(props, "missing", 7) == 7


def test_a_policy_reading_an_unknown_is_skipped_like_pulumi_policy_does(graphs):
    def by_arn(args, report):
        for r in args.resources:
            if r.resource_type == QUEUE:
                report(f"queue {r.props['arn']}", r.urn)

    naive = StackValidationPolicy(name="naive-by-arn", description="Relates queues by ARN.", validate=by_arn,
                                  enforcement_level=EnforcementLevel.MANDATORY)
    up = check.analyze(graphs("dev", "up"), policies=[naive])
    assert len(up.mandatory) == 2 and up.mandatory[0].message.startswith("queue arn:aws:sqs:us-east-1:")
    preview = check.analyze(graphs("dev", "first-preview"), policies=[naive])
    assert preview.mandatory == []
    assert [d.message for d in preview.advisory] == [
        "can't run policy 'naive-by-arn' from policy pack 's3-prefix-keys@v0.0.1' during preview: "
        "string value at .arn can't be known during preview"
    ]


def _by_arn(args, report):
    run = _Run(report)
    for r in args.resources:
        if r.resource_type == QUEUE and G.is_unknown(G.value(r.props, "arn")):
            run.defer("the queue's ARN", r)
        elif r.resource_type == QUEUE:
            run.violation(r, f"queue {r.props['arn']}")
    run.finish()


def test_a_deferring_policy_says_its_deferred_checks_through_the_pack_policy(graphs):
    # Mandatory, yet what it cannot decide is advisory: the preview passes, and says so.
    policy = DeferringStackPolicy(name="by-arn", description="Relates queues by ARN.", validate=_by_arn,
                                  enforcement_level=EnforcementLevel.MANDATORY)
    up = check.analyze(graphs("dev", "up"), policies=[policy, preview_deferred_checks])
    assert [d.policy for d in up.mandatory] == ["by-arn", "by-arn"] and up.deferrals == []
    preview = check.analyze(graphs("dev", "first-preview"), policies=[policy, preview_deferred_checks])
    assert preview.exit_code == 0 and preview.violations == []
    assert [(d.policy, d.level, d.resource_type) for d in preview.diagnostics] == [
        (DEFERRED, "advisory", "pulumi:pulumi:Stack")]
    assert preview.diagnostics[0].message == (
        "by-arn checks at `pulumi up`: the queue's ARN of "
        "aws:sqs/queue:Queue 'enforcer-dlq', aws:sqs/queue:Queue 'enforcer-queue'")
    assert "0.0.1" not in preview.render() and CANT_RUN not in preview.render()
    # The same evaluation outside a deferring policy falls back to pulumi-policy's note.
    plain = StackValidationPolicy(name="by-arn", description="Relates queues by ARN.", validate=_by_arn,
                                  enforcement_level=EnforcementLevel.MANDATORY)
    fallback = check.analyze(graphs("dev", "first-preview"), policies=[plain, preview_deferred_checks])
    assert [d.message for d in fallback.diagnostics] == [
        "can't run policy 'by-arn' from policy pack 's3-prefix-keys@v0.0.1' during preview: some checks read values "
        "that are unknown until the resources exist; they run again at `pulumi up`: the queue's ARN of "
        "aws:sqs/queue:Queue 'enforcer-dlq', aws:sqs/queue:Queue 'enforcer-queue'"]
    assert [d.policy for d in fallback.deferrals] == ["by-arn"]


def test_an_unknown_a_deferring_policy_reads_is_deferred_not_raised_to_the_sdk(graphs):
    def naive(args, report):
        run = _Run(report)
        run.defer("something decided earlier", "x")
        for r in args.resources:
            if r.resource_type == QUEUE:
                report(f"queue {r.props['arn']}", r.urn)

    policy = DeferringStackPolicy(name="naive-by-arn", description="Relates queues by ARN.", validate=naive,
                                  enforcement_level=EnforcementLevel.MANDATORY)
    preview = check.analyze(graphs("dev", "first-preview"), policies=[policy, preview_deferred_checks])
    # What was deferred before the unknown read survives it.
    assert [d.message for d in preview.diagnostics] == [
        "naive-by-arn checks at `pulumi up`: something decided earlier of x; string value at .arn"]
    assert preview.exit_code == 0


def test_deferrals_nobody_says_are_reported_offline_and_do_not_leak_into_the_next_run(graphs):
    policy = DeferringStackPolicy(name="by-arn", description="Relates queues by ARN.", validate=_by_arn,
                                  enforcement_level=EnforcementLevel.MANDATORY)
    # Disabled (or absent), preview-deferred-checks says nothing, as in a real preview;
    # the offline run names what went unsaid.
    for config, policies in (({DEFERRED: "disabled"}, [policy, preview_deferred_checks]), (None, [policy])):
        report = check.analyze(graphs("dev", "first-preview"), config, policies=policies)
        assert report.diagnostics == [] and list(report.unsaid) == ["by-arn"]
        assert f"Unsaid ({DEFERRED} is not enabled)" in report.render()
        assert "    by-arn: the queue's ARN of aws:sqs/queue:Queue 'enforcer-dlq'" in report.render()
    assert DEFERRALS.drain() == {}
    assert check.analyze(graphs("dev", "up"), policies=[policy, preview_deferred_checks]).deferrals == []


def test_first_preview_reports_unset_provider_computed_inputs_as_unknown(graphs):
    # As the Terraform-bridged provider previews a create: Optional+Computed inputs the
    # program leaves unset are "known after apply"; inputs it sets stay known.
    g = graphs("dev", "first-preview")
    dlq = one(g, QUEUE, "enforcer-dlq")
    assert dlq.outputs["redrivePolicy"] is UNKNOWN and dlq.outputs["policy"] is UNKNOWN
    assert dlq.outputs["sqsManagedSseEnabled"] is True
    assert one(g, KEY, "demo-prefix1").outputs["policy"] is UNKNOWN
    assert isinstance(one(g, KEY, "enforcer-alerts-key").outputs["policy"], str)
    demo = one(g, BUCKET, "demo-demo")
    assert demo.outputs["serverSideEncryptionConfiguration"] is UNKNOWN
    assert demo.outputs["bucket"] is UNKNOWN  # generated from bucketPrefix by the provider
    assert set(engine_marshalling.PREVIEW_UNKNOWN_WHEN_UNSET[QUEUE]) >= {"redrivePolicy", "policy"}
    up = one(graphs("dev", "up"), QUEUE, "enforcer-dlq")
    assert "redrivePolicy" not in up.outputs and "policy" not in up.outputs
    # The engine sends property dependencies only for properties that have some.
    sent = next(r for r in engine_marshalling.analyze_stack_request(g).resources if r.urn == dlq.urn)
    assert dlq.property_dependencies["sqsManagedSseEnabled"] == []
    assert "sqsManagedSseEnabled" not in sent.propertyDependencies


def test_stack_resources_carry_parents_dependencies_and_providers(graphs):
    g = graphs("dev", "first-preview")
    resources = {r.urn: r for r in engine_marshalling.stack_resources(g)}
    n = resources[demo_notification(g).urn]
    # URNs as the engine makes them: the ancestor types below the root stack.
    assert n.urn == ("urn:pulumi:dev::s3-prefix-keys::s3-prefix-keys:index:BucketIntegration"
                     "$aws:s3/bucketNotification:BucketNotification::demo_demo-notification")
    assert one(g, BUCKET, "demo-demo").urn == (
        "urn:pulumi:dev::s3-prefix-keys::s3-prefix-keys:index:DemoBucket$aws:s3/bucket:Bucket::demo-demo")
    assert n.parent.resource_type == G.INTEGRATION
    assert [d.resource_type for d in n.property_dependencies["queues"]] == [QUEUE]
    assert [d.resource_type for d in n.property_dependencies["bucket"]] == [BUCKET]
    assert n.provider.resource_type == "pulumi:providers:aws" and n.provider.props["region"] == REGION
    assert n.opts.parent == n.parent.urn
    assert {d.urn for d in n.dependencies} >= {d.urn for d in n.property_dependencies["queues"]}


def test_policy_config_levels_all_and_errors():
    settings = policy_config.resolve_policy_config({"all": "advisory", "key-mapping-valid": "disabled"})
    assert settings["bucket-has-key-mapping"].level == EnforcementLevel.ADVISORY
    assert settings["key-mapping-valid"].level == EnforcementLevel.DISABLED
    assert settings["enforcer-delivery-is-resilient"].properties == {"minMaxReceiveCount": 2, "visibilityMultiplier": 6}
    with pytest.raises(policy_config.PolicyConfigError) as err:
        policy_config.resolve_policy_config({
            "bucket-has-key-mapping": {"exemptBucket": ["x"]},
            "enforcer-delivery-is-resilient": {"minMaxReceiveCount": 1, "visibilityMultiplier": "6"},
            "no-such-policy": "mandatory",
            "key-mapping-valid": "block",
        })
    text = str(err.value)
    assert "bucket-has-key-mapping.exemptBucket: unknown property (allowed: exemptBuckets)" in text
    assert "enforcer-delivery-is-resilient.minMaxReceiveCount: must be >= 2, got 1" in text
    assert 'enforcer-delivery-is-resilient.visibilityMultiplier: expected number, got "6"' in text
    assert "no-such-policy: no such policy" in text
    assert 'key-mapping-valid: enforcement level must be one of advisory, mandatory, remediate, disabled' in text


def test_disabled_policy_does_not_run_and_levels_apply(graphs):
    g = graphs("dev", "up")
    add_unmapped_bucket(g)
    assert check.analyze(g, {"bucket-has-key-mapping": "disabled"}, policies=[bucket_has_key_mapping]).diagnostics == []
    advisory = check.analyze(g, {"bucket-has-key-mapping": {"enforcementLevel": "advisory"}},
                             policies=[bucket_has_key_mapping])
    assert [d.level for d in advisory.diagnostics] == ["advisory"] and advisory.exit_code == 0


# ---------------------------------------------------------------------------
# 8. replicated-prefix-rekeyed-by-copy (advisory)

REPLICATION = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
REPLICA_KEY = "arn:aws:kms:us-west-2:111122223333:key/77777777-6666-5555-4444-333333333333"


def add_replication(g: StackGraph, rules: object) -> Record:
    """A user's BucketReplicationConfig on the tenant bucket (engine shape: camelCase)."""
    bucket = one(g, BUCKET_POLICY, TENANT)
    inputs = {"bucket": TENANT, "role": "arn:aws:iam::111122223333:role/replication", "rules": rules}
    return g.add(Record(
        urn=bucket.urn.rsplit("::", 1)[0].replace(BUCKET_POLICY, REPLICATION) + "::tenant-replication",
        type=REPLICATION, name="tenant-replication", custom=True, inputs=inputs, outputs=dict(inputs),
        parent=next(r for r in g.records if r.type == "pulumi:pulumi:Stack").urn, provider=bucket.provider,
    ))


def replication_rule(prefix: str, *, sse_kms: str | None = "Enabled", replica_key: str | None = REPLICA_KEY) -> dict:
    destination: dict = {"bucket": "arn:aws:s3:::tenant-data-replica"}
    if replica_key:
        destination["encryptionConfiguration"] = {"replicaKmsKeyId": replica_key}
    rule: dict = {"id": f"rep-{prefix or 'all'}", "status": "Enabled", "filter": {"prefix": prefix},
                  "destination": destination}
    if sse_kms:
        rule["sourceSelectionCriteria"] = {"sseKmsEncryptedObjects": {"status": sse_kms}}
    return rule


def test_the_pack_knows_the_replication_token():
    import pulumi_aws

    assert pulumi_aws.s3.BucketReplicationConfig.pulumi_type == G.REPLICATION_CONFIG == REPLICATION


@pytest.mark.parametrize("mode", MODES)
def test_replicated_mapped_prefix_is_flagged_with_what_the_replica_gets(graphs, mode):
    g = graphs("tenant", mode)
    add_replication(g, [replication_rule("a/")])
    (found,) = violations(run(g, replicated_prefix_rekeyed_by_copy))
    assert found.level == "advisory" and found.resource_type == REPLICATION
    assert "mapped prefix(es) 'a/'" in found.message and "re-keys such prefixes by copy" in found.message
    assert f"replica is encrypted under the rule's replica KMS key {REPLICA_KEY}" in found.message


@pytest.mark.parametrize("sse_kms", [None, "Disabled"])
def test_rule_not_replicating_sse_kms_objects_says_the_copy_is_not_replicated(graphs, sse_kms):
    g = graphs("tenant")
    add_replication(g, [replication_rule("", sse_kms=sse_kms)])  # every object: both prefixes
    (found,) = violations(run(g, replicated_prefix_rekeyed_by_copy))
    assert "'a/', 'b/'" in found.message and "not replicated at all" in found.message


def test_replication_of_unmapped_prefixes_or_disabled_rules_is_quiet(graphs):
    g = graphs("tenant")
    disabled = {**replication_rule("b/"), "status": "Disabled"}
    add_replication(g, [replication_rule("logs/"), disabled])
    assert run(g, replicated_prefix_rekeyed_by_copy).diagnostics == []


def test_unknown_replication_rules_defer(graphs):
    g = graphs("tenant", "first-preview")
    rc = add_replication(g, UNKNOWN)
    report = run(g, replicated_prefix_rekeyed_by_copy)
    assert violations(report) == []
    assert f"the replication rules of {REPLICATION} '{rc.name}'" in deferred(report)
