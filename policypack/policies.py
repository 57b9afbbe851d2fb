"""The s3-prefix-keys CrossGuard policies.

Importable without starting a policy pack: ``__main__.py`` is the only place that
constructs ``PolicyPack`` (which blocks in a gRPC server). The offline run
(``policypack.check``) and the tests call these policies directly.

Relating resources
------------------
On the first ``pulumi preview`` of a new stack every ARN, generated name and value
derived from one is unknown, and pulumi-policy skips a whole policy as soon as it
reads an unknown value. A policy that joined a notification to its queue by ARN would
therefore pass silently on exactly the preview that matters. These policies relate
resources the way the engine knows them before anything exists:

* by **property dependencies**: a BucketNotification whose ``bucket`` input came from
  a Bucket's output depends on that Bucket's URN; a queue configuration's ``queueArn``
  makes ``queues`` depend on the Queue; a mapping row's ``item`` depends on its KMS Key;
* by **parent**: the mapping rows, the notification, the bucket policy and the
  encryption configuration of one bucket are children of one ``BucketIntegration``;
* by **literal values** where they are known (a bucket named in config, a key ARN
  given as a string), which also covers resources owned by other programs.

Reads go through :func:`value`, which turns an unknown into :data:`UNKNOWN` instead of
raising. A check that cannot be decided at preview is recorded as *deferred*; after
every decidable check has reported, the policy raises :class:`PreviewUnknownError`
(an ``UnknownValueError``), which pulumi-policy reports as its usual advisory
"can't run policy ... during preview" note. So a preview shows every violation it can
prove, and says which checks wait for ``pulumi up``.
"""

from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, _is_unknown

from components.config import NAMESPACE, prefix_problem
from components.iam_conditions import Unsupported
from components.strict_mode import rule_problems as strict_rule_problems
from enforcer.arns import KeyArnProblem, check_key_arn, region_of_key_arn

PACK_NAME = "s3-prefix-keys"

# ---------------------------------------------------------------------------
# Resource types

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
NOTIFICATION = "aws:s3/bucketNotification:BucketNotification"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
SSE_CONFIG_TYPES = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
TABLE_ITEM = "aws:dynamodb/tableItem:TableItem"
KEY_TYPES = ("aws:kms/key:Key", "aws:kms/replicaKey:ReplicaKey")
KMS_ALIAS = "aws:kms/alias:Alias"
KMS_KEY_POLICY = "aws:kms/keyPolicy:KeyPolicy"
QUEUE = "aws:sqs/queue:Queue"
REDRIVE_POLICY = "aws:sqs/redrivePolicy:RedrivePolicy"
FUNCTION = "aws:lambda/function:Function"
ESM = "aws:lambda/eventSourceMapping:EventSourceMapping"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
EVENT_RULE = "aws:cloudwatch/eventRule:EventRule"
EVENT_TARGET = "aws:cloudwatch/eventTarget:EventTarget"
# pulumi-aws v7's token (pulumi_aws/s3/bucket_replication_config.py, @pulumi.type_token).
REPLICATION_CONFIG = "aws:s3/bucketReplicationConfig:BucketReplicationConfig"
INTEGRATION = f"{NAMESPACE}:index:BucketIntegration"

EXEMPT_TAG = f"{NAMESPACE}:exempt"
OBJECT_CREATED_ALL = "s3:ObjectCreated:*"
OBJECT_CREATED_EACH = frozenset(
    f"s3:ObjectCreated:{e}" for e in ("Put", "Post", "Copy", "CompleteMultipartUpload")
)
KMS_SSE_TYPES = ("aws:kms", "aws:kms:dsse")
KEY_ID_CONDITION = "s3:x-amz-server-side-encryption-aws-kms-key-id"
SSE_CONDITION = "s3:x-amz-server-side-encryption"
SNS_MANAGED_KEY = "alias/aws/sns"

# ---------------------------------------------------------------------------
# Unknown-safe reads


class _Unknown:
    """A value the engine cannot know until the resource exists (preview)."""

    def __repr__(self) -> str:
        return "<unknown>"

    def __bool__(self) -> bool:
        return False


UNKNOWN: Any = _Unknown()


def is_unknown(v: Any) -> bool:
    return v is UNKNOWN


def value(props: Any, key: str | int, default: Any = None) -> Any:
    """``props[key]``, :data:`UNKNOWN` when the engine marked it unknown, else ``default``."""
    if props is None or is_unknown(props):
        return UNKNOWN if is_unknown(props) else default
    try:
        v = props[key]
    except UnknownValueError:
        return UNKNOWN
    except (KeyError, IndexError, TypeError):
        return default
    if _is_unknown(v):
        return UNKNOWN
    return default if v is None else v


def plain(v: Any) -> Any:
    """A proxy value as plain Python, unknowns (at any depth) as :data:`UNKNOWN`."""
    if is_unknown(v) or _is_unknown(v):
        return UNKNOWN
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping):
        return {k: plain(value(v, k)) for k in v}
    if isinstance(v, Sequence):
        return [plain(value(v, i)) for i in range(len(v))]
    return v


def contains_unknown(v: Any) -> bool:
    if is_unknown(v):
        return True
    if isinstance(v, dict):
        return any(contains_unknown(x) for x in v.values())
    if isinstance(v, list):
        return any(contains_unknown(x) for x in v)
    return False


def json_value(props: Any, key: str) -> Any:
    """A JSON-string property parsed; UNKNOWN when unknown, None when absent or not JSON."""
    raw = value(props, key)
    if is_unknown(raw):
        return UNKNOWN
    if isinstance(raw, Mapping):  # some providers hand documents over as objects
        return plain(raw)
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def provider_computed(r: PolicyResource, prop: str) -> bool:
    """Whether ``r.prop`` is unknown only because the program left it for the provider.

    The Terraform-bridged AWS provider reports an unset Optional+Computed input (a
    queue's ``redrivePolicy``, a key's ``policy``, a bucket's inline encryption) as
    unknown while it previews a create. An unknown the *program* passes comes from
    another resource's output, so the engine lists that resource among the
    property's dependencies; an unknown with none is the provider's default: AWS's
    (no redrive policy, the default key policy, SSE-S3), or a separate resource's.
    """
    return is_unknown(value(r.props, prop)) and not (r.property_dependencies or {}).get(prop)


def as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    if isinstance(v, (str, bytes, Mapping)) or is_unknown(v):
        return [v]
    return list(v)


def describe(r: PolicyResource) -> str:
    """How every message names a resource: its type and its Pulumi name."""
    return f"{r.resource_type} '{r.name}'"


class PreviewUnknownError(UnknownValueError):
    """Raised after a policy has reported everything it could decide.

    pulumi-policy turns any ``UnknownValueError`` into an advisory "can't run policy
    ... during preview: <message>" diagnostic; violations already reported stay.
    """

    def __init__(self, deferred: list[str]):
        Exception.__init__(self)
        self.unknown_type_sentinel = UNKNOWN_STRING_VALUE
        self.props = []
        self.deferred = list(deferred)
        self.message = (
            "some checks read values that are unknown until the resources exist; they run again at "
            "`pulumi up`: " + "; ".join(dict.fromkeys(deferred))
        )


class _Run:
    """One policy evaluation: reports violations, collects deferred checks."""

    def __init__(self, report: ReportViolation):
        self._report = report
        self.deferred: dict[str, list[str]] = {}

    def violation(self, resource: PolicyResource | None, message: str) -> None:
        self._report(message, resource.urn if resource is not None else None)

    def defer(self, what: str, *subjects: PolicyResource | str) -> None:
        """``what`` of ``subjects`` cannot be decided until the resources exist."""
        names = self.deferred.setdefault(what, [])
        for s in subjects:
            text = s if isinstance(s, str) else describe(s)
            if text not in names:
                names.append(text)

    def finish(self) -> None:
        if self.deferred:
            raise PreviewUnknownError(
                [f"{what} of {', '.join(sorted(names))}" if names else what for what, names in self.deferred.items()]
            )


def _config(args: Any) -> Mapping[str, Any]:
    try:
        return args.get_config() or {}
    except AttributeError:
        return {}


# ---------------------------------------------------------------------------
# The stack as a graph


@dataclass
class MappingRow:
    """One mapping TableItem, with what is known about it."""

    resource: PolicyResource
    item: Any  # parsed DynamoDB-JSON dict, UNKNOWN, or None when not parseable
    bucket: Any  # str | UNKNOWN | None
    prefix: Any
    kms_key_arn: Any
    dual_layer: Any  # the raw attribute value ({"BOOL": ...}) or UNKNOWN / None
    keys: list[PolicyResource] = field(default_factory=list)
    aliases: list[PolicyResource] = field(default_factory=list)

    @property
    def label(self) -> str:
        where = f" for '{self.prefix}'" if isinstance(self.prefix, str) else ""
        return f"{describe(self.resource)}{where}"


@dataclass
class BucketGroup:
    """Everything the stack says about one S3 bucket."""

    key: str
    names: set[str] = field(default_factory=set)
    buckets: list[PolicyResource] = field(default_factory=list)
    mappings: list[MappingRow] = field(default_factory=list)
    notifications: list[PolicyResource] = field(default_factory=list)
    rules: list[PolicyResource] = field(default_factory=list)
    policies: list[PolicyResource] = field(default_factory=list)
    sse_configs: list[PolicyResource] = field(default_factory=list)
    integrations: list[PolicyResource] = field(default_factory=list)
    replications: list[PolicyResource] = field(default_factory=list)

    @property
    def label(self) -> str:
        """``bucket '<name>'``, with the Bucket resource when the stack creates it."""
        name = f"bucket '{sorted(self.names)[0]}'" if self.names else None
        resource = describe(self.buckets[0]) if self.buckets else None
        if name and resource:
            return f"{name} ({resource})"
        if name or resource:
            return name or resource  # type: ignore[return-value]
        if self.integrations:
            return f"the bucket of {describe(self.integrations[0])}"
        return f"the bucket of {describe(self.mappings[0].resource)}" if self.mappings else "a bucket"

    @property
    def mapped_by(self) -> str:
        """Which mapping rows map the bucket (for messages)."""
        rows = sorted(describe(m.resource) for m in self.mappings)
        more = f" and {len(rows) - 1} more" if len(rows) > 1 else ""
        return f"{rows[0]}{more}" if rows else "no mapping row"

    @property
    def anchor(self) -> PolicyResource | None:
        """The resource a bucket-level violation is reported against."""
        # What the user declared (the Bucket, else its BucketIntegration, else a hand-written
        # mapping row) before a generated child such as the notification.
        for group in (self.buckets, self.integrations, [m.resource for m in self.mappings], self.notifications):
            if group:
                return group[0]
        return None

    def mapped_prefixes(self) -> tuple[list[str], list[MappingRow]]:
        """The mapped prefixes, and the rows whose prefix cannot be known yet.

        A row's ``item`` is unknown at preview when it holds a key ARN (or bucket name)
        the stack has yet to create. Such rows are children of a BucketIntegration
        whose registered ``prefixes`` output is a literal list, known at preview; it
        stands in for them.
        """
        known, unknown = [], []
        for m in self.mappings:
            if isinstance(m.prefix, str):
                known.append(m.prefix)
            else:
                unknown.append(m)
        if unknown:
            declared: dict[str, list[str]] = {}
            for integ in self.integrations:
                ps = plain(value(integ.props, "prefixes"))
                if isinstance(ps, list) and all(isinstance(p, str) for p in ps):
                    declared[integ.urn] = ps
            rest = []
            for m in unknown:
                integ = StackGraph.integration_of(m.resource)
                if integ is not None and integ.urn in declared:
                    known.extend(declared[integ.urn])
                else:
                    rest.append(m)
            unknown = rest
        return sorted(set(known)), unknown


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, items: Iterable[str]) -> str | None:
        items = list(items)
        if not items:
            return None
        root = self.find(items[0])
        for other in items[1:]:
            r = self.find(other)
            if r != root:
                self.parent[r] = root
        return self.find(root)


class StackGraph:
    """Index over the ``PolicyResource`` list the engine hands to a stack policy."""

    def __init__(self, resources: Iterable[PolicyResource]):
        self.resources = list(resources)
        self.by_urn = {r.urn: r for r in self.resources}
        self.children: dict[str, list[PolicyResource]] = defaultdict(list)
        for r in self.resources:
            if r.parent is not None:
                self.children[r.parent.urn].append(r)
        self._groups: list[BucketGroup] | None = None
        self._bucket_tokens: dict[str, set[str]] = {}  # URN -> the bucket tokens it names (one bucket)

    # -- basic relations -------------------------------------------------

    def of_type(self, *types: str) -> list[PolicyResource]:
        return [r for r in self.resources if r.resource_type in types]

    def _custom_descendants(self, r: PolicyResource) -> list[PolicyResource]:
        out, todo = [], list(self.children.get(r.urn, []))
        while todo:
            c = todo.pop(0)
            out.append(c)
            todo.extend(self.children.get(c.urn, []))
        return out

    def deps(self, r: PolicyResource, prop: str, *types: str) -> list[PolicyResource]:
        """Resources the property ``prop`` of ``r`` was computed from (optionally of ``types``)."""
        found: list[PolicyResource] = []
        for d in (r.property_dependencies or {}).get(prop, []) or []:
            d = self.by_urn.get(d.urn, d)
            found.append(d)
            if d.resource_type.startswith(f"{NAMESPACE}:"):  # a component: its children count
                found.extend(self._custom_descendants(d))
        seen: dict[str, PolicyResource] = {}
        for d in found:
            if not types or d.resource_type in types:
                seen.setdefault(d.urn, d)
        return list(seen.values())

    def refers_to(self, r: PolicyResource, prop: str, target: PolicyResource, attr: str = "arn") -> Any:
        """Whether ``r.prop`` (a string, or a list/structure of them) points at ``target``.

        True/False when decidable (by dependency or by comparing known values),
        UNKNOWN when the value is unknown and there is no dependency to go by.
        """
        if any(d.urn == target.urn for d in self.deps(r, prop)):
            return True
        v = plain(value(r.props, prop))
        target_value = value(target.props, attr)
        strings = _strings(v)
        if isinstance(target_value, str) and target_value in strings:
            return True
        if contains_unknown(v):
            return UNKNOWN
        return False

    @staticmethod
    def integration_of(r: PolicyResource) -> PolicyResource | None:
        p = r.parent
        while p is not None:
            if p.resource_type == INTEGRATION:
                return p
            p = p.parent
        return None

    def region_of(self, r: PolicyResource | None) -> str | None:
        if r is not None and r.provider is not None:
            reg = value(r.provider.props, "region")
            if isinstance(reg, str) and reg:
                return reg
        return None

    def stack_region(self) -> str | None:
        """The stack's ``aws:region``: the default aws provider's, else the stack config's."""
        counts: dict[str, int] = defaultdict(int)
        for r in self.resources:
            prov = r.provider
            if prov is not None and prov.resource_type == "pulumi:providers:aws" and prov.name.startswith("default"):
                reg = value(prov.props, "region")
                if isinstance(reg, str) and reg:
                    counts[reg] += 1
        if counts:
            return max(counts, key=lambda k: counts[k])
        try:
            import pulumi

            return pulumi.Config("aws").get("region")
        except Exception:  # noqa: BLE001 - no runtime settings outside the engine
            return None

    # -- mapping rows ----------------------------------------------------

    def mapping_rows(self) -> list[MappingRow]:
        rows = []
        for r in self.of_type(TABLE_ITEM):
            item = json_value(r.props, "item")
            hash_key = value(r.props, "hashKey")
            range_key = value(r.props, "rangeKey")
            is_mapping = (hash_key == "bucket_name" and range_key in ("prefix", None, UNKNOWN)) or (
                isinstance(item, dict) and "bucket_name" in item and "kms_key_arn" in item
            )
            if not is_mapping:
                continue
            rows.append(
                MappingRow(
                    resource=r,
                    item=item,
                    bucket=_ddb_attr(item, "bucket_name", "S"),
                    prefix=_ddb_attr(item, "prefix", "S"),
                    kms_key_arn=_ddb_attr(item, "kms_key_arn", "S"),
                    dual_layer=item.get("dual_layer_encryption") if isinstance(item, dict) else item,
                    keys=self.deps(r, "item", *KEY_TYPES),
                    aliases=self.deps(r, "item", KMS_ALIAS),
                )
            )
        return rows

    # -- buckets ---------------------------------------------------------

    def _tokens(self, r: PolicyResource, prop: str) -> set[str]:
        toks = {f"urn:{b.urn}" for b in self.deps(r, prop, *BUCKET_TYPES)}
        v = value(r.props, prop)
        if isinstance(v, str) and v:
            toks.add(f"name:{v}")
        return toks

    def bucket_groups(self) -> list[BucketGroup]:
        """Resources grouped by the bucket they concern (URN, literal name, or shared integration).

        A Bucket's URN and literal name are one bucket. A resource about exactly one
        bucket (a mapping row, a notification, an integration's children) ties what it
        names to that bucket and to its integration. A resource naming several buckets
        (a user's EventRule matching two of them) joins each of their groups but never
        merges them: one shared rule must not let an unmapped bucket pass as mapped.
        """
        if self._groups is not None:
            return self._groups
        uf = _UnionFind()
        entries: list[tuple[str, Any, PolicyResource, set[str]]] = []  # (kind, object, resource, bucket tokens)

        for b in self.of_type(*BUCKET_TYPES):
            entries.append(("bucket", b, b, self.bucket_identity(b)))
        for m in self.mapping_rows():
            toks = {f"urn:{b.urn}" for b in self.deps(m.resource, "item", *BUCKET_TYPES)}
            if isinstance(m.bucket, str):
                toks.add(f"name:{m.bucket}")
            entries.append(("mapping", m, m.resource, toks))
        for kind, types in (("notification", (NOTIFICATION,)), ("policy", (BUCKET_POLICY,)), ("sse", SSE_CONFIG_TYPES),
                            ("replication", (REPLICATION_CONFIG,))):
            for r in self.of_type(*types):
                entries.append((kind, r, r, self._tokens(r, "bucket")))
        for rule in self.of_type(EVENT_RULE):
            toks = {f"urn:{b.urn}" for b in self.deps(rule, "eventPattern", *BUCKET_TYPES)}
            pattern = json_value(rule.props, "eventPattern")
            names = _pattern_values(pattern, "detail", "bucket", "name") if isinstance(pattern, dict) else []
            toks |= {f"name:{n}" for n in names if isinstance(n, str)}
            if toks or self.integration_of(rule) is not None:
                entries.append(("rule", rule, rule, toks))
        for integ in self.of_type(INTEGRATION):
            entries.append(("integration", integ, integ, set()))

        def joined(r: PolicyResource, toks: set[str]) -> set[str]:
            """What an entry ties together: the bucket tokens it names and its integration, else just itself."""
            integ = r if r.resource_type == INTEGRATION else self.integration_of(r)
            scope = {f"scope:{integ.urn}"} if integ is not None else set()
            return toks | scope or {f"self:{r.urn}"}

        own = [joined(r, toks) for _, _, r, toks in entries]

        def buckets_named(toks: set[str]) -> set[str]:
            return {uf.find(t) for t in toks}

        for kind, _, _, toks in entries:
            if kind == "bucket":
                uf.union(sorted(toks))
        multi: list[int] = []
        for i, (_, _, _, toks) in enumerate(entries):
            if len(buckets_named(toks)) > 1:
                multi.append(i)
                continue
            uf.union(sorted(own[i]))
        attached: dict[int, set[str]] = {}
        for i in multi:
            roots = buckets_named(entries[i][3])
            if len(roots) == 1:  # the others' names and URNs turned out to be one bucket
                uf.union(sorted(own[i]))
            else:
                attached[i] = roots

        groups: dict[str, BucketGroup] = {}
        field_of = {"bucket": "buckets", "mapping": "mappings", "notification": "notifications", "rule": "rules",
                    "policy": "policies", "sse": "sse_configs", "integration": "integrations",
                    "replication": "replications"}
        for i, (kind, obj, r, toks) in enumerate(entries):
            roots = {uf.find(t) for t in attached[i]} if i in attached else {uf.find(next(iter(own[i])))}
            for root in sorted(roots):
                g = groups.setdefault(root, BucketGroup(key=root))
                getattr(g, field_of[kind]).append(obj)
                if i not in attached:
                    g.names |= {t[5:] for t in toks if t.startswith("name:")}
                    self._bucket_tokens[r.urn] = toks
        self._groups = list(groups.values())
        return self._groups

    @staticmethod
    def bucket_identity(b: PolicyResource) -> set[str]:
        """The tokens a Bucket resource is known by: its URN, and its name when literal."""
        toks = {f"urn:{b.urn}"}
        name = value(b.props, "bucket")
        if isinstance(name, str) and name:
            toks.add(f"name:{name}")
        return toks

    def mappings_of_bucket(self, g: BucketGroup, b: PolicyResource) -> list[MappingRow]:
        """The rows of group ``g`` that map Bucket ``b`` itself.

        A row names its bucket (URN or literal name); one that names none is the bucket's
        when it shares an integration with a resource that names ``b``.
        """
        self.bucket_groups()  # records which bucket each resource names
        mine = self.bucket_identity(b)
        scopes = {
            integ.urn
            for r in (*g.notifications, *g.policies, *g.sse_configs, *g.rules, *(m.resource for m in g.mappings))
            if self._bucket_tokens.get(r.urn, set()) & mine and (integ := self.integration_of(r)) is not None
        }
        rows = []
        for m in g.mappings:
            names = self._bucket_tokens.get(m.resource.urn)
            integ = self.integration_of(m.resource)
            if names is None:
                continue  # a row naming several buckets maps none of them for sure
            if names & mine or (not names and integ is not None and integ.urn in scopes):
                rows.append(m)
        return rows

    def mapped_groups(self) -> list[BucketGroup]:
        return sorted((g for g in self.bucket_groups() if g.mappings), key=lambda g: g.label)

    # -- the enforcer ----------------------------------------------------

    def enforcer_queues(self) -> list[PolicyResource]:
        """Queues that feed a Lambda event source mapping (the enforcement queue)."""
        queues: dict[str, PolicyResource] = {}
        all_queues = self.of_type(QUEUE)
        for esm in self.of_type(ESM):
            for q in all_queues:
                if self.refers_to(esm, "eventSourceArn", q) is True:
                    queues[q.urn] = q
        return list(queues.values())


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for x in v.values() for s in _strings(x)]
    if isinstance(v, list):
        return [s for x in v for s in _strings(x)]
    return []


def _ddb_attr(item: Any, name: str, kind: str) -> Any:
    if is_unknown(item):
        return UNKNOWN
    if not isinstance(item, dict):
        return None
    attr = item.get(name)
    if isinstance(attr, dict):
        return attr.get(kind)
    return None


def _pattern_values(pattern: Any, *path: str) -> list[Any]:
    node = pattern
    for p in path:
        if not isinstance(node, dict):
            return []
        node = node.get(p)
    return node if isinstance(node, list) else ([] if node is None else [node])


def _glob_match(patterns: Iterable[str], *names: Any) -> str | None:
    for pat in patterns:
        for n in names:
            if isinstance(n, str) and fnmatch.fnmatchcase(n, pat):
                return pat
    return None


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


# ---------------------------------------------------------------------------
# 2. bucket-has-key-mapping


def _exempt_tag(b: PolicyResource) -> Any:
    """The bucket's ``s3-prefix-keys:exempt`` tag: its own, else the provider's default tags.

    ``tagsAll`` (tags merged with the provider's ``defaultTags``) is computed, so
    unknown at a first preview; the provider's inputs are known then.
    """
    tags = plain(value(b.props, "tags"))
    if is_unknown(tags):
        return UNKNOWN
    if isinstance(tags, dict) and EXEMPT_TAG in tags:
        return tags[EXEMPT_TAG]
    tags_all = plain(value(b.props, "tagsAll"))
    if isinstance(tags_all, dict) and EXEMPT_TAG in tags_all:
        return tags_all[EXEMPT_TAG]
    if b.provider is not None:
        # The engine hands a provider's object inputs over JSON-encoded: pulumi_aws's
        # ProviderArgs serialises defaultTags to a string ('{"tags":{...}}').
        defaults = json_value(b.provider.props, "defaultTags")
        if is_unknown(defaults) or contains_unknown(defaults):
            return UNKNOWN
        default_tags = defaults.get("tags") if isinstance(defaults, dict) else None
        if isinstance(default_tags, dict) and EXEMPT_TAG in default_tags:
            return default_tags[EXEMPT_TAG]
    return None


def validate_bucket_has_mapping(args: StackValidationArgs, report: ReportViolation) -> None:
    run = _Run(report)
    graph = StackGraph(args.resources)
    exempt = [p for p in as_list(_config(args).get("exemptBuckets")) if isinstance(p, str)]
    for g in graph.bucket_groups():
        for b in g.buckets:
            if graph.mappings_of_bucket(g, b):
                continue
            name = value(b.props, "bucket")
            tag = _exempt_tag(b)
            if isinstance(tag, str) and tag.lower() == "true":
                continue
            if _glob_match(exempt, name, b.name):
                continue
            # A generated name (bucketPrefix) or unknown tags may still exempt the bucket.
            if is_unknown(tag) or (is_unknown(name) and exempt):
                run.defer("whether the unmapped bucket is exempt (its tags or generated name)", b)
                continue
            shown = f" (bucket name '{name}')" if isinstance(name, str) else ""
            run.violation(
                b,
                f"{describe(b)}{shown} has no prefix key mapping, so no per-prefix KMS key is enforced on it. "
                f"Fix: map at least one prefix (`pulumi config set --path "
                f"'{NAMESPACE}:buckets.<bucket>.prefixes[\"<prefix>/\"].kmsKeyArn' arn:aws:kms:<region>:<account>:key/<id>`), "
                f"or exempt it: add its name or '{b.name}' to exemptBuckets in the policy config, or tag it "
                f"{EXEMPT_TAG}=true.",
            )
    run.finish()


# ---------------------------------------------------------------------------
# 3. key-mapping-valid


_ARN_FIXES = {
    KeyArnProblem.ALIAS: (
        "is a key alias; S3 resolves aliases in the requester's account, so a writer in another account "
        "would encrypt under its own key. Use the full key ARN (arn:aws:kms:<region>:<account>:key/<key-id>)"
    ),
    KeyArnProblem.KEY_ID: (
        "is a bare key ID; S3 would resolve it in the requester's account. Use the full key ARN "
        "(arn:aws:kms:<region>:<account>:key/<key-id>)"
    ),
    KeyArnProblem.AWS_MANAGED_S3: (
        "is the AWS managed key aws/s3, whose policy cannot be edited and which no other account can use. "
        "Create a customer managed key and map its ARN"
    ),
    KeyArnProblem.NOT_A_KEY_ARN: "is not a KMS key ARN; use arn:aws:kms:<region>:<account>:key/<key-id>",
}


def validate_key_mappings(args: StackValidationArgs, report: ReportViolation) -> None:
    run = _Run(report)
    graph = StackGraph(args.resources)
    region = graph.stack_region()
    seen: dict[tuple[Any, str], MappingRow] = {}
    for m in graph.mapping_rows():
        r = m.resource
        if m.item is None:
            run.violation(
                r,
                f"{describe(r)} is a mapping row whose item is not DynamoDB JSON; the enforcer cannot read it. "
                "Fix: create rows through BucketIntegration (config `buckets.<bucket>.prefixes`).",
            )
            continue
        # The key: its ARN when known, and the KMS resources the row was computed from.
        if is_unknown(m.kms_key_arn):
            if m.aliases and not m.keys:
                run.violation(
                    r,
                    f"{m.label} takes its key from {describe(m.aliases[0])}, i.e. an alias; S3 resolves aliases in "
                    "the requester's account. Fix: use the key's `arn` output (aws.kms.Key.arn), not the alias.",
                )
            elif not m.keys:
                run.defer("kms_key_arn", r)
            else:
                run.defer("whether kms_key_arn is the key's ARN (not its ID)", r)
        elif not isinstance(m.kms_key_arn, str):
            run.violation(
                r,
                f"{describe(r)} has no kms_key_arn string attribute. Fix: set kms_key_arn "
                "({\"S\": \"arn:aws:kms:<region>:<account>:key/<key-id>\"}).",
            )
        else:
            problem = check_key_arn(m.kms_key_arn)
            if problem is not None:
                run.violation(r, f"{m.label}: kms_key_arn '{m.kms_key_arn}' {_ARN_FIXES[problem]}.")
            elif region and region_of_key_arn(m.kms_key_arn) != region:
                run.violation(
                    r,
                    f"{m.label}: kms_key_arn '{m.kms_key_arn}' is in region {region_of_key_arn(m.kms_key_arn)} but "
                    f"the stack deploys to {region} (aws:region); S3 can only use a KMS key in the bucket's region. "
                    f"Fix: map a key (or a multi-Region replica) in {region}.",
                )
        for key in m.keys:
            key_region = graph.region_of(key)
            if region and key_region and key_region != region:
                run.violation(
                    r,
                    f"{m.label} maps {describe(key)}, which its provider creates in {key_region}, but the stack "
                    f"deploys to {region}; S3 can only use a KMS key in the bucket's region. Fix: create the key "
                    f"(or an aws.kms.ReplicaKey) with a provider for {region}.",
                )
            if key.resource_type == "aws:kms/key:Key":
                spec = value(key.props, "customerMasterKeySpec") or value(key.props, "keySpec") or "SYMMETRIC_DEFAULT"
                usage = value(key.props, "keyUsage") or "ENCRYPT_DECRYPT"
                if is_unknown(spec) or is_unknown(usage):
                    run.defer("keySpec/keyUsage", key)
                elif spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT":
                    run.violation(
                        r,
                        f"{m.label} maps {describe(key)} with keySpec {spec} and keyUsage {usage}; S3 server-side "
                        "encryption only works with symmetric encryption keys. Fix: use a key with "
                        "keySpec SYMMETRIC_DEFAULT and keyUsage ENCRYPT_DECRYPT.",
                    )
        # dual_layer_encryption must be a boolean attribute.
        dual = m.dual_layer
        if is_unknown(dual):
            pass  # the whole item is unknown: deferred with kms_key_arn above
        elif not (isinstance(dual, dict) and isinstance(dual.get("BOOL"), bool)):
            run.violation(
                r,
                f"{m.label}: dual_layer_encryption is {json.dumps(dual)}; it must be a DynamoDB boolean "
                "({\"BOOL\": true|false}), otherwise the enforcer treats the prefix as plain SSE-KMS. "
                f"Fix: set `pulumi config set --path '{NAMESPACE}:buckets.<bucket>.prefixes[\"<prefix>/\"].dualLayer' "
                "true|false`.",
            )
        elif dual["BOOL"] and isinstance(m.item, dict) and _ddb_attr(m.item, "bucket_key_enabled", "BOOL") is True:
            run.violation(
                r,
                f"{m.label}: bucket_key_enabled is true on a DSSE-KMS (dual layer) prefix; S3 Bucket Keys are not "
                "supported for DSSE-KMS. Fix: drop bucketKey for this prefix.",
            )
        # The prefix itself, and one row per (bucket, prefix).
        if isinstance(m.prefix, str):
            problem = prefix_problem(m.prefix)
            if problem:
                run.violation(r, f"{describe(r)}: prefix '{m.prefix}' {problem}.")
            bucket_key = m.bucket if isinstance(m.bucket, str) else (
                graph.integration_of(r).urn if graph.integration_of(r) else r.urn
            )
            other = seen.get((bucket_key, m.prefix))
            if other is not None:
                run.violation(
                    r,
                    f"{describe(r)} and {describe(other.resource)} both write the mapping row for prefix "
                    f"'{m.prefix}'; they overwrite each other and deleting either deletes the row. Fix: keep one.",
                )
            seen[(bucket_key, m.prefix)] = m
        elif m.prefix is None:
            run.violation(r, f"{describe(r)} has no prefix string attribute. Fix: set prefix ({{\"S\": \"<prefix>/\"}}).")
    run.finish()


# ---------------------------------------------------------------------------
# 3b. mapped-key-rotation-enabled (advisory half of key validation)


def validate_key_rotation(args: StackValidationArgs, report: ReportViolation) -> None:
    run = _Run(report)
    graph = StackGraph(args.resources)
    reported: set[str] = set()
    for m in graph.mapping_rows():
        for key in m.keys:
            if key.urn in reported or key.resource_type != "aws:kms/key:Key":
                continue
            rotation = value(key.props, "enableKeyRotation", False)
            if is_unknown(rotation):
                run.defer("enableKeyRotation", key)
            elif rotation is not True:
                reported.add(key.urn)
                run.violation(
                    key,
                    f"{describe(key)} is mapped ({m.label}) but automatic rotation is off. Fix: set "
                    "enable_key_rotation=True (rotation keeps old key material, so existing objects stay readable).",
                )
    run.finish()


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


# ---------------------------------------------------------------------------
# 6. strict-policy-matches-mapping (advisory)


def _statement_prefixes(st: dict, bucket_names: set[str]) -> list[str]:
    out = []
    for res in _strings(st.get("Resource")):
        # arn:<partition>:s3:::<bucket>/<prefix>*
        parts = res.split(":::", 1)
        if len(parts) != 2 or "/" not in parts[1]:
            continue
        bucket, key = parts[1].split("/", 1)
        if bucket_names and bucket not in bucket_names:
            continue
        out.append(key[:-1] if key.endswith("*") else key)
    return out


def _condition_values(st: dict, key: str) -> tuple[set[str], set[str]]:
    """(operators using ``key``, the values they compare with)."""
    ops, values = set(), set()
    cond = st.get("Condition")
    if not isinstance(cond, dict):
        return ops, values
    for op, body in cond.items():
        if isinstance(body, dict) and key in body:
            ops.add(op)
            values |= set(_strings(body[key]))
    return ops, values


def _puts(st: dict) -> bool:
    actions = set(_strings(st.get("Action")))
    return bool(actions & {"s3:PutObject", "s3:*", "*", "s3:Put*", "s3:UpdateObjectEncryption"})


def _enforcer_roles(graph: StackGraph, run: _Run) -> list[str]:
    """The execution roles of the functions an event source mapping feeds (the enforcer's)."""
    roles: list[str] = []
    for esm in graph.of_type(ESM):
        for f in graph.of_type(FUNCTION):
            if graph.refers_to(esm, "functionName", f, attr="name") is True or graph.refers_to(esm, "functionName", f) is True:
                role = value(f.props, "role")
                if isinstance(role, str):
                    roles.append(role)
                elif is_unknown(role):
                    run.defer("the enforcer role that strict mode exempts", f)
    return sorted(set(roles))


def validate_strict_policy(args: StackValidationArgs, report: ReportViolation) -> None:
    """Judge each strict bucket policy by strict mode's own rule (``components.strict_mode``).

    The rule is evaluated with IAM's documented condition semantics over every call a
    writer and the enforcer make, in every undocumented reading of their request
    context: wrong keys denied, multipart parts and the enforcer never.
    """
    run = _Run(report)
    graph = StackGraph(args.resources)
    roles: list[list[str]] = []

    def enforcer_roles() -> list[str]:
        # Only a strict bucket needs the role; looking earlier would defer stacks without one.
        if not roles:
            roles.append(_enforcer_roles(graph, run))
        return roles[0]

    for g in graph.mapped_groups():
        for p in g.policies:
            doc = json_value(p.props, "policy")
            if is_unknown(doc) or contains_unknown(doc):
                run.defer("the bucket policy document", p)
                continue
            if not isinstance(doc, dict):
                continue
            statements = [st for st in as_list(doc.get("Statement")) if isinstance(st, dict)]
            deny = [st for st in statements if st.get("Effect") == "Deny" and _puts(st)]
            if not any(_condition_values(st, KEY_ID_CONDITION)[0] for st in deny):
                continue  # strict mode is off for this bucket
            rows = g.mappings
            if any(not isinstance(m.prefix, str) or not isinstance(m.kms_key_arn, str) for m in rows):
                run.defer("the mapped prefixes and keys compared with the bucket policy", p)
                continue
            names = sorted(g.names)
            if not names:
                run.defer("the bucket name the strict statements name", p)
                continue
            exempted = set().union(*(_condition_values(st, "aws:PrincipalArn")[1] for st in deny))
            # The enforcer is the stack's ESM-fed function's role; without one in the stack,
            # the role the policy exempts is taken at its word.
            enforcer = next((r for r in enforcer_roles() if r in exempted), None) or (
                enforcer_roles()[0] if enforcer_roles() else min(exempted, default="")
            )
            partition = next((res.split(":")[1] for st in deny for res in _strings(st.get("Resource"))
                              if res.startswith("arn:")), "aws")
            problems: list[str] = []
            for prefix, m in sorted({m.prefix: m for m in rows}.items()):
                dsse = isinstance(m.dual_layer, dict) and m.dual_layer.get("BOOL") is True
                try:
                    found = strict_rule_problems(
                        statements, partition=partition, bucket=names[0], prefix=prefix, key_arn=m.kms_key_arn,
                        sse_type="aws:kms:dsse" if dsse else "aws:kms", enforcer_role_arn=enforcer or "<no enforcer role>",
                    )
                except Unsupported as e:
                    problems.append(f"'{prefix}': a statement cannot be evaluated ({e})")
                    continue
                if found:
                    # One line per call; its other readings are counted, not repeated.
                    calls: dict[str, str] = {}
                    for f in found:
                        calls.setdefault(f.split(" (", 1)[0], f)
                    first = list(calls.values())
                    shown = "; ".join(first[:6]) + (f"; and {len(first) - 6} more calls" if len(first) > 6 else "")
                    problems.append(f"'{prefix}' {shown}")
            by_prefix = {prefix for st in deny for prefix in _statement_prefixes(st, set(names))
                         if _condition_values(st, KEY_ID_CONDITION)[0]}
            for prefix in sorted(by_prefix - {m.prefix for m in rows}):
                problems.append(f"'{prefix}' has key-enforcing deny statements but is not mapped")
            if problems:
                run.violation(
                    p,
                    f"{describe(p)} is in strict mode for {g.label} but its deny statements break strict mode's "
                    f"rule (wrong keys denied; multipart parts and the enforcer role {enforcer or '(none found)'} "
                    f"never): {'; '.join(problems)}. Fix: let BucketIntegration generate the strict statements "
                    "(`strict: true`) and keep hand-written `policyStatements` free of key conditions.",
                )
    run.finish()


# ---------------------------------------------------------------------------
# 7. bucket-default-encryption-is-kms (advisory)


# The deprecated inline block: one object on aws.s3.Bucket, a list of them on BucketV2.
_INLINE_SSE = ("serverSideEncryptionConfiguration", "serverSideEncryptionConfigurations")


def _sse_rules(r: PolicyResource, prop: str) -> Any:
    """The encryption rules in ``r.prop`` (a configuration's ``rules`` or an inline block); UNKNOWN if unknown."""
    raw = plain(value(r.props, prop))
    rules: list[Any] = []
    if prop in _INLINE_SSE:
        for block in as_list(raw) if prop == _INLINE_SSE[1] else [raw]:
            inner = block.get("rules") or block.get("rule") if isinstance(block, dict) else block
            rules += as_list(inner) if isinstance(block, dict) or is_unknown(block) else []
    else:
        rules = as_list(raw)
    if any(is_unknown(x) for x in rules):
        return UNKNOWN
    return [x for x in rules if isinstance(x, dict)]


def validate_default_encryption(args: StackValidationArgs, report: ReportViolation) -> None:
    run = _Run(report)
    graph = StackGraph(args.resources)
    cfg = _config(args)
    exempt = [p for p in as_list(cfg.get("exemptBuckets")) if isinstance(p, str)]
    for g in graph.mapped_groups():
        if _glob_match(exempt, *g.names, *(b.name for b in g.buckets)):
            continue
        if exempt and any(is_unknown(value(b.props, "bucket")) for b in g.buckets):
            run.defer("whether the bucket (generated name) is in exemptBuckets", *g.buckets)
            continue
        sources: list[tuple[PolicyResource, Any]] = [(s, _sse_rules(s, "rules")) for s in g.sse_configs]
        if not sources:
            # The Bucket's own (deprecated, computed) block: what S3 reported when the bucket
            # was created, so only meaningful when no separate configuration resource owns it.
            # Left to the provider, it is S3's own default (SSE-S3), however it reads at preview.
            sources = [(b, _sse_rules(b, prop)) for b in g.buckets for prop in _INLINE_SSE
                       if value(b.props, prop) is not None and not provider_computed(b, prop)]
        anchor = g.anchor
        if not sources:
            run.violation(
                anchor,
                f"{g.label}, mapped by {g.mapped_by}, has no default encryption configuration in this stack, so "
                "objects under unmapped prefixes stay on SSE-S3 and mapped ones are SSE-S3 until the enforcer "
                f"re-keys them. Fix: `pulumi config set --path '{NAMESPACE}:buckets.<bucket>.defaultKmsKeyArn' "
                "<key ARN>` (the integration then owns the bucket's encryption configuration).",
            )
            continue
        for res, rules in sources:
            if is_unknown(rules):
                run.defer("default encryption rules", res)
                continue
            algos = []
            for rule in rules:
                by_default = rule.get("applyServerSideEncryptionByDefault") or {}
                if isinstance(by_default, list):
                    by_default = by_default[0] if by_default else {}
                algos.append((by_default.get("sseAlgorithm"), by_default.get("kmsMasterKeyId")))
            if any(is_unknown(a) for a, _ in algos):
                run.defer("default encryption sseAlgorithm", res)
                continue
            if not any(a in KMS_SSE_TYPES for a, _ in algos):
                shown = ", ".join(str(a) for a, _ in algos) or "none"
                run.violation(
                    res,
                    f"{describe(res)} sets default encryption {shown} for {g.label}; objects under unmapped "
                    "prefixes are left on SSE-S3. Fix: default to SSE-KMS (aws:kms) or DSSE-KMS (aws:kms:dsse) "
                    "with a customer managed key (config `defaultKmsKeyArn`).",
                )
                continue
            for algo, key_id in algos:
                if algo in KMS_SSE_TYPES and key_id is None:
                    run.violation(
                        res,
                        f"{describe(res)} defaults {g.label} to {algo} without kmsMasterKeyId, i.e. the AWS managed "
                        "aws/s3 key, which no other account can use. Fix: set kmsMasterKeyId to a customer managed "
                        "key ARN (config `defaultKmsKeyArn`).",
                    )
                elif isinstance(key_id, str) and check_key_arn(key_id) is KeyArnProblem.AWS_MANAGED_S3:
                    run.violation(
                        res,
                        f"{describe(res)} defaults {g.label} to the AWS managed aws/s3 key. Fix: use a customer "
                        "managed key ARN (config `defaultKmsKeyArn`).",
                    )
    run.finish()


# ---------------------------------------------------------------------------
# 8. replicated-prefix-rekeyed-by-copy (advisory)


def _rule_prefix(rule: dict) -> Any:
    """The key prefix a replication rule selects ("" for every object), UNKNOWN if not known yet."""
    filt = rule.get("filter")
    if is_unknown(filt):
        return UNKNOWN
    if isinstance(filt, dict):
        inner = filt.get("and") if isinstance(filt.get("and"), dict) else filt
        return inner.get("prefix") or ""
    return rule.get("prefix") or ""  # the deprecated top-level prefix (V1 rules)


def validate_replicated_prefixes(args: StackValidationArgs, report: ReportViolation) -> None:
    """Tell the operator what replication does to a mapped prefix the enforcer re-keys.

    UpdateObjectEncryption does not re-key existing replicas (User Guide, "Updating
    server-side encryption for existing data"), so the enforcer re-keys replicated
    prefixes by copy; the copy is a new object that replication sends on, encrypted
    with the rule's ``replicaKmsKeyId``. A rule whose
    ``sourceSelectionCriteria.sseKmsEncryptedObjects`` is not Enabled does not
    replicate SSE-KMS objects at all (User Guide, "Replicating encrypted objects").
    """
    run = _Run(report)
    graph = StackGraph(args.resources)
    for g in graph.mapped_groups():
        prefixes, _ = g.mapped_prefixes()
        for rc in g.replications:
            rules = plain(value(rc.props, "rules"))
            if contains_unknown(rules):
                run.defer("the replication rules", rc)
                continue
            for rule in [r for r in as_list(rules) if isinstance(r, dict) and r.get("status") == "Enabled"]:
                selected = _rule_prefix(rule)
                if is_unknown(selected):
                    run.defer("the replication rules", rc)
                    continue
                covered = [p for p in prefixes if p.startswith(selected) or selected.startswith(p)]
                if not covered:
                    continue
                dest = rule.get("destination") if isinstance(rule.get("destination"), dict) else {}
                enc = dest.get("encryptionConfiguration") if isinstance(dest.get("encryptionConfiguration"), dict) else {}
                replica_key = enc.get("replicaKmsKeyId")
                criteria = rule.get("sourceSelectionCriteria") if isinstance(rule.get("sourceSelectionCriteria"), dict) else {}
                sse_kms = criteria.get("sseKmsEncryptedObjects") if isinstance(criteria.get("sseKmsEncryptedObjects"), dict) else {}
                rule_name = f"rule '{rule['id']}'" if isinstance(rule.get("id"), str) else "a rule"
                if sse_kms.get("status") != "Enabled":
                    what = ("does not replicate SSE-KMS objects (sourceSelectionCriteria.sseKmsEncryptedObjects is "
                            "not Enabled), so once re-keyed these objects are not replicated at all. Fix: enable "
                            "sseKmsEncryptedObjects and set destination.encryptionConfiguration.replicaKmsKeyId")
                else:
                    what = (f"sends the copy on; the replica is encrypted under the rule's replica KMS key "
                            f"{replica_key if isinstance(replica_key, str) else '(none set)'}, not the prefix's key")
                run.violation(
                    rc,
                    f"{describe(rc)} replicates mapped prefix(es) {', '.join(repr(p) for p in covered)} of "
                    f"{g.label} ({rule_name}, prefix '{selected}'). The enforcer re-keys such prefixes by copy, "
                    f"because UpdateObjectEncryption does not re-key replicas; the rule {what}.",
                )
    run.finish()


# ---------------------------------------------------------------------------
# The policies


_EXEMPT_SCHEMA = {
    "type": "array",
    "items": {"type": "string"},
    "default": [],
    "description": "Glob patterns matched against a bucket's name and its Pulumi resource name.",
}

bucket_notification_routes_to_enforcer = StackValidationPolicy(
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

bucket_has_key_mapping = StackValidationPolicy(
    name="bucket-has-key-mapping",
    description="Every S3 bucket in the stack has at least one prefix key mapping, unless it is exempt.",
    validate=validate_bucket_has_mapping,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(properties={"exemptBuckets": _EXEMPT_SCHEMA}),
    remediation_steps="Map a prefix with `pulumi config set --path "
    "'s3-prefix-keys:buckets.<bucket>.prefixes[\"<prefix>/\"].kmsKeyArn' <key ARN>`, or exempt the bucket: "
    "add a glob to `exemptBuckets` in the policy config, or tag it `s3-prefix-keys:exempt=true`.",
)

key_mapping_valid = StackValidationPolicy(
    name="key-mapping-valid",
    description="Mapping rows name a full KMS key ARN (not an alias, key ID or aws/s3) in the stack's region, a "
    "boolean dual_layer_encryption, and, for keys in the stack, a symmetric ENCRYPT_DECRYPT key.",
    validate=validate_key_mappings,
    enforcement_level=EnforcementLevel.MANDATORY,
    remediation_steps="Set `kmsKeyArn` to the key's full ARN in the stack's aws:region (`aws kms describe-key "
    "--key-id <alias>` prints it); keys created in the stack must be SYMMETRIC_DEFAULT / ENCRYPT_DECRYPT.",
)

mapped_key_rotation_enabled = StackValidationPolicy(
    name="mapped-key-rotation-enabled",
    description="KMS keys created in the stack and mapped to a prefix have automatic rotation enabled.",
    validate=validate_key_rotation,
    enforcement_level=EnforcementLevel.ADVISORY,
    remediation_steps="Set enable_key_rotation=True on the aws.kms.Key.",
)

enforcer_delivery_is_resilient = StackValidationPolicy(
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

notification_filters_do_not_overlap = ResourceValidationPolicy(
    name="notification-filters-do-not-overlap",
    description="A bucket notification's filters do not overlap for the same event type (S3 rejects it at deploy).",
    validate=validate_filters_do_not_overlap,
    enforcement_level=EnforcementLevel.MANDATORY,
    remediation_steps="Merge nested prefixes: 'a/' already covers 'a/b/'. BucketIntegration folds mapped "
    "prefixes this way; hand-written notifications must too.",
)

strict_policy_matches_mapping = StackValidationPolicy(
    name="strict-policy-matches-mapping",
    description="Where strict mode is on, the bucket policy's deny statements cover exactly the mapped prefixes "
    "and their keys.",
    validate=validate_strict_policy,
    enforcement_level=EnforcementLevel.ADVISORY,
    remediation_steps="Let BucketIntegration generate the strict statements (`strict: true`); do not hand-edit "
    "key conditions in `policyStatements`.",
)

bucket_default_encryption_is_kms = StackValidationPolicy(
    name="bucket-default-encryption-is-kms",
    description="Mapped buckets default to SSE-KMS or DSSE-KMS with a customer managed key, so unmapped prefixes "
    "are not left on SSE-S3.",
    validate=validate_default_encryption,
    enforcement_level=EnforcementLevel.ADVISORY,
    config_schema=PolicyConfigSchema(properties={"exemptBuckets": _EXEMPT_SCHEMA}),
    remediation_steps="Set `defaultKmsKeyArn` for the bucket; the integration then owns its encryption "
    "configuration (SSE-KMS, bucket keys on).",
)

replicated_prefix_rekeyed_by_copy = StackValidationPolicy(
    name="replicated-prefix-rekeyed-by-copy",
    description="A mapped prefix that a replication rule in the stack covers is re-keyed by copy; says what the "
    "replica gets.",
    validate=validate_replicated_prefixes,
    enforcement_level=EnforcementLevel.ADVISORY,
    remediation_steps="Let the rule replicate SSE-KMS objects (sourceSelectionCriteria.sseKmsEncryptedObjects "
    "Enabled) with destination.encryptionConfiguration.replicaKmsKeyId set to the key the replicas should have.",
)

POLICIES = [
    bucket_notification_routes_to_enforcer,
    bucket_has_key_mapping,
    key_mapping_valid,
    mapped_key_rotation_enabled,
    enforcer_delivery_is_resilient,
    notification_filters_do_not_overlap,
    strict_policy_matches_mapping,
    bucket_default_encryption_is_kms,
    replicated_prefix_rekeyed_by_copy,
]
"""Every policy of the pack, in the order ``PolicyPack`` registers them."""

PACK_ENFORCEMENT_LEVEL = EnforcementLevel.ADVISORY
"""The pack default, for policies without their own level (all of ours have one)."""
