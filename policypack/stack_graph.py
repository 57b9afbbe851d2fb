"""The stack graph the policies read, and its unknown-safe value helpers.

Shared by every policy family (``notification_routes``, ``key_mappings``, ...); the
underscored helpers are the package's own, not an API. ``policies`` assembles the pack.

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
raising; ``policy_run`` defers what cannot be decided yet.
"""

from __future__ import annotations

import fnmatch
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import PolicyResource
from pulumi_policy.proxy import UnknownValueError, _is_unknown

from components.config import NAMESPACE

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
