"""Physical names AWS accepts (components/names.py), built and as the program registers them.

botocore's service models carry each API's own length and pattern for a name; where
they describe the name exactly, they are the independent oracle for ``name_problem``.
"""

from __future__ import annotations

import random
import re

import botocore.session
import pytest

from components import names
from components.config import NAMESPACE
from components.mocks import Graph, run_program

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

KEY_A = "arn:aws:kms:us-east-1:111122223333:key/1a2b3c4d-1111-4aaa-8bbb-0123456789ab"
KEY_B = "arn:aws:kms:us-east-1:111122223333:key/2b3c4d5e-2222-4bbb-8ccc-123456789abc"

# The Pulumi limit is 100 characters of letters, digits, "-", "_" and "." (see names.py).
DOTTED_STACK = "prod.eu"
LONG_STACK = ("platform_team.storage-" * 5)[:100]
STACKS = [DOTTED_STACK, LONG_STACK]

# A 63-character dotted bucket (the S3 maximum) in eventbridge mode, so that the rule
# name carries the longest logical name config allows; a plain bucket in sqs mode.
LONG_BUCKET = ("tenant.data." * 6)[:62] + "x"
CONFIG = {
    "aws:region": "us-east-1",
    "demo": True,
    "buckets": {
        LONG_BUCKET: {"notification": "eventbridge", "prefixes": {"a/": {"kmsKeyArn": KEY_A}}},
        "plain-bucket": {"prefixes": {"b/": {"kmsKeyArn": KEY_B}}},
    },
}

FUNCTION = "aws:lambda/function:Function"
LAYER = "aws:lambda/layerVersion:LayerVersion"
RULE = "aws:cloudwatch/eventRule:EventRule"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
BUCKET = "aws:s3/bucket:Bucket"
IAM_POLICIES = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")


@pytest.fixture(scope="module", params=STACKS, ids=["dotted", "long"])
def graph(request) -> Graph:
    return run_program(CONFIG, stack=request.param)


def registered_names(graph: Graph, types: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(kind, name, where) of every name the given resource types carry, set or autonamed."""
    return [
        (kind, value, f"{resource.name}.{prop}")
        for resource in graph
        if resource.type in types
        for prop, kind in names.RESOURCE_NAMES[resource.type]
        if isinstance(value := resource.get(prop), str)
    ]


def assert_legal(found: list[tuple[str, str, str]]) -> None:
    assert found, "the program registered no such name"
    problems = [f"{where}: {names.name_problem(kind, name)}" for kind, name, where in found if names.name_problem(kind, name)]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------
# The recorded graph, per resource type


@pytest.mark.parametrize(
    ("type_", "prop", "kind"),
    [
        (FUNCTION, "name", names.LAMBDA_FUNCTION),
        (LAYER, "layerName", names.LAMBDA_LAYER),
        (RULE, "name", names.EVENTBRIDGE_RULE),
    ],
    ids=["function", "layer", "eventbridge-rule"],
)
def test_stack_scoped_names(graph, type_, prop, kind):
    (resource,) = graph.by_type(type_)
    assert_legal(registered_names(graph, (type_,)))
    # Built from this stack's name, so that two stacks in one account never meet.
    assert resource.inputs[prop].startswith(names.stack_prefix(kind, graph.stack))


def test_log_group_is_the_functions_own(graph):
    # Lambda writes to /aws/lambda/<function name>: any other group is not the function's.
    (function,) = graph.by_type(FUNCTION)
    (group,) = graph.by_type(LOG_GROUP)
    assert group.inputs["name"] == f"/aws/lambda/{function.inputs['name']}"
    assert_legal(registered_names(graph, (LOG_GROUP,)))


def test_iam_policy_names(graph):
    assert_legal(registered_names(graph, IAM_POLICIES))


def test_bucket_prefixes_and_buckets(graph):
    found = registered_names(graph, (BUCKET,))
    assert {kind for kind, _, _ in found} == {names.S3_BUCKET_PREFIX, names.S3_BUCKET}
    assert_legal(found)


def test_every_name_in_the_graph(graph):
    """Autonamed ones too (queues, tables, topic, role, alarms): a later ``name=`` is caught."""
    assert_legal(registered_names(graph, tuple(names.RESOURCE_NAMES)))


# ---------------------------------------------------------------------------
# The builder

NASTY_STACKS = [
    "dev",
    "prod.eu",
    "prod-eu",
    "Prod.EU_2",
    "a..b",
    "1.2.3.4",
    "xn--stack",
    "-._",
    "x" * 100,
    "x" * 99 + ".",
    LONG_STACK,
]
NASTY_SUFFIXES = ["enforcer", "enforcer-deps", f"bucket-{LONG_BUCKET}", "bucket-demo_demo", "", "UPPER", "a b/c:é"]


@pytest.mark.parametrize("kind", sorted(names.RULES))
def test_built_names_are_legal_and_keep_the_stack_prefix(kind):
    for stack in NASTY_STACKS:
        prefix = names.stack_prefix(kind, stack)
        for suffix in NASTY_SUFFIXES:
            name = names.physical_name(kind, stack, suffix)
            assert names.name_problem(kind, name) is None, (stack, suffix, name)
            assert name.startswith(prefix), (stack, suffix, name)
            assert name == names.physical_name(kind, stack, suffix)  # stable across runs


@pytest.mark.parametrize("kind", sorted(names.RULES))
def test_stacks_never_share_a_name(kind):
    # Pairs that coincide once shortened or once the "." is replaced.
    pairs = [
        ("x" * 90 + "a", "x" * 90 + "b"),
        ("prod.eu", "prod-eu"),
        (LONG_STACK, LONG_STACK[:-1] + "."),
    ]
    for a, b in pairs:
        for suffix in NASTY_SUFFIXES:
            assert names.physical_name(kind, a, suffix) != names.physical_name(kind, b, suffix), (a, b, suffix)
    # And within a stack, two long suffixes with a common start.
    long_a, long_b = "bucket-" + "b" * 200 + "1", "bucket-" + "b" * 200 + "2"
    assert names.physical_name(kind, "dev", long_a) != names.physical_name(kind, "dev", long_b)


@pytest.mark.parametrize("kind", sorted(names.RULES))
def test_a_name_legal_as_it_stands_is_kept(kind):
    # Existing stacks keep their resources: nothing is renamed that AWS accepted.
    for stack, suffix in [("dev", "enforcer"), ("prod", "bucket-my-bucket"), ("team-a", "enforcer-deps")]:
        assert names.physical_name(kind, stack, suffix) == f"{NAMESPACE}-{stack}-{suffix}"


def test_shortened_names_use_the_whole_limit_and_say_what_they_name():
    name = names.physical_name(names.LAMBDA_FUNCTION, LONG_STACK, "enforcer")
    assert "enforcer" in name
    rule_name = names.physical_name(names.EVENTBRIDGE_RULE, LONG_STACK, f"bucket-{LONG_BUCKET}")
    assert len(rule_name) == names.RULES[names.EVENTBRIDGE_RULE].max_length
    assert "bucket-tenant" in rule_name


# ---------------------------------------------------------------------------
# name_problem against AWS's own models

_MODELS = botocore.session.get_session()


def _botocore_rule(service: str, shape: str) -> tuple[int, int, str]:
    meta = _MODELS.get_service_model(service).shape_for(shape).metadata
    return meta["min"], meta["max"], meta["pattern"]


# Kinds whose botocore shape is the bare name (no ARN alternative in the pattern).
EXACT_SHAPES = {
    names.EVENTBRIDGE_RULE: ("events", "RuleName"),
    names.LOG_GROUP: ("logs", "LogGroupName"),
    names.IAM_ROLE: ("iam", "roleNameType"),
    names.IAM_POLICY: ("iam", "policyNameType"),
}


def _candidates() -> list[str]:
    rng = random.Random(9)
    alphabet = "aZ09-_./#+=,@:é $"
    out = ["", "a", "a" * 64, "a" * 65, "a" * 128, "a" * 129, "a" * 512, "a" * 513, "/aws/lambda/x"]
    out += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))) for _ in range(300)]
    return out


@pytest.mark.parametrize("kind", sorted(EXACT_SHAPES))
def test_name_problem_agrees_with_the_api_model(kind):
    low, high, pattern = _botocore_rule(*EXACT_SHAPES[kind])
    for candidate in _candidates():
        aws_accepts = low <= len(candidate) <= high and re.fullmatch(pattern, candidate, re.ASCII) is not None
        assert (names.name_problem(kind, candidate) is None) == aws_accepts, candidate


def test_lambda_names_fit_the_api_model():
    # The models' patterns also accept ARNs and qualifiers, so they only bound ours.
    for kind, shape in [(names.LAMBDA_FUNCTION, "FunctionName"), (names.LAMBDA_LAYER, "LayerName")]:
        low, high, pattern = _botocore_rule("lambda", shape)
        for candidate in _candidates():
            if names.name_problem(kind, candidate) is None:
                assert low <= len(candidate) <= high and re.fullmatch(pattern, candidate), (kind, candidate)
    assert names.name_problem(names.LAMBDA_FUNCTION, "a" * 65)  # "limited to 64 characters"
    assert names.name_problem(names.LAMBDA_FUNCTION, "s3-prefix-keys-prod.eu-enforcer")  # the case
    assert names.name_problem(names.LAMBDA_LAYER, "a" * 141)


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "a" * 64,  # too long
        "My-bucket",  # uppercase
        "my_bucket",  # underscore
        "-bucket",
        "bucket-",
        "my..bucket",
        "192.168.5.4",
        "xn--bucket",
        "sthree-bucket",
        "amzn-s3-demo-bucket",
        "bucket-s3alias",
        "bucket--ol-s3",
        "bucket.mrap",
        "bucket--usw2-az1--x-s3",
        "bucket--table-s3",
    ],
)
def test_s3_bucket_names_refused(name):
    assert names.name_problem(names.S3_BUCKET, name)


def test_s3_bucket_prefix_leaves_room_for_the_providers_suffix():
    limit = names.RULES[names.S3_BUCKET_PREFIX].max_length
    assert limit + names.S3_UNIQUE_SUFFIX_LENGTH == names.RULES[names.S3_BUCKET].max_length
    assert names.name_problem(names.S3_BUCKET_PREFIX, "p" * limit) is None
    assert names.name_problem(names.S3_BUCKET_PREFIX, "p" * (limit + 1))
    # What the provider appends is digits and hex: any legal prefix makes a legal bucket.
    assert names.name_problem(names.S3_BUCKET, "p" * limit + "2025010112000000000000000a") is None
    assert names.name_problem(names.S3_BUCKET_PREFIX, "xn--p")
    with pytest.raises(ValueError, match="bucket_prefix"):
        names.checked(names.S3_BUCKET_PREFIX, "Upper-")
