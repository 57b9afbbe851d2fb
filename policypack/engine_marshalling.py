"""The engine's side of a policy run, mirrored: the stack as the engine records it (URNs, providers,
preview unknowns), marshalled into the analyzer's protobuf requests, answered by pulumi-policy's servicer.

``policypack.check`` runs the pack through it; see that module for how a run mirrors a
``pulumi preview``.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import proto
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyResource,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties, serialize_properties
from pulumi_policy.policy import _PolicyAnalyzerServicer
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from components import mocks
from policypack.policies import PACK_ENFORCEMENT_LEVEL, PACK_NAME
from policypack.policy_config import PolicySettings

# pulumi-policy's servicer always calls itself v0.0.1 in the messages it builds (the
# CLI shows PulumiPolicy.yaml's version in headers); mirrored so texts match a preview.
_SDK_PACK_VERSION = "0.0.1"


# ---------------------------------------------------------------------------
# The resource graph, as plain records


class _UnknownMarker:
    def __repr__(self) -> str:
        return "UNKNOWN"

    def __copy__(self) -> _UnknownMarker:
        return self

    def __deepcopy__(self, memo: dict) -> _UnknownMarker:
        return self


UNKNOWN = _UnknownMarker()
"""An unknown value in a :class:`Record` (the engine's computed/unknown)."""


@dataclass
class Record:
    """One registered resource, in the engine's terms (camelCase property names)."""

    urn: str
    type: str
    name: str
    custom: bool
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    parent: str | None = None
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    provider: str | None = None  # URN of the provider resource
    protect: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool | None = None
    aliases: list[str] = field(default_factory=list)
    additional_secret_outputs: list[str] = field(default_factory=list)


@dataclass
class StackGraph:
    """What a deployment hands the analyzer: every resource, including the stack and providers."""

    stack: str
    project: str
    preview: bool
    records: list[Record]

    def by_urn(self, urn: str) -> Record:
        for r in self.records:
            if r.urn == urn:
                return r
        raise KeyError(urn)

    def find(self, type_: str, name: str | None = None) -> list[Record]:
        return [r for r in self.records if r.type == type_ and (name is None or r.name == name)]

    def copy(self) -> StackGraph:
        return copy.deepcopy(self)

    def remove(self, urn: str) -> None:
        """Drop a resource (and its children), as if the program never registered it."""
        gone = {urn}
        changed = True
        while changed:
            changed = False
            for r in self.records:
                if r.parent in gone and r.urn not in gone:
                    gone.add(r.urn)
                    changed = True
        self.records = [r for r in self.records if r.urn not in gone]
        for r in self.records:
            r.dependencies = [d for d in r.dependencies if d not in gone]
            r.property_dependencies = {k: [d for d in v if d not in gone] for k, v in r.property_dependencies.items()}

    def add(self, record: Record) -> Record:
        """Register another resource, e.g. to craft a bad stack.

        In preview its outputs are what a provider previewing the create reports: the
        computed ones unknown unless the record sets them (see :func:`preview_unknowns`).
        """
        if self.preview and record.custom:
            _mark_preview_unknowns(record.type, record.outputs)
        self.records.append(record)
        return record

    def set_property(self, record: Record, key: str, value: Any, deps: list[str] | None = None) -> None:
        """Change an input (and the matching output), e.g. to craft a bad stack.

        ``value=None`` unsets the input, as if the program never passed it; in preview
        a property the provider computes when unset then reads as unknown.
        """
        for bag in (record.inputs, record.outputs):
            if value is None:
                bag.pop(key, None)
            else:
                bag[key] = value
        if deps is not None or value is None:
            record.property_dependencies[key] = list(deps or [])
            if value is None:
                record.property_dependencies.pop(key, None)
        if value is None and self.preview and record.custom:
            _mark_preview_unknowns(record.type, record.outputs)


def _is_unknown_value(v: Any) -> bool:
    return (
        v is UNKNOWN
        or v is mocks.UNKNOWN
        or isinstance(v, pulumi.output.Unknown)
        or (isinstance(v, str) and v == pulumi.runtime.rpc.UNKNOWN)
    )


def _normalize(v: Any) -> Any:
    """Mock-runtime values as plain data: Unknown -> UNKNOWN, secrets unwrapped."""
    if _is_unknown_value(v):
        return UNKNOWN
    if isinstance(v, Mapping):
        return {k: _normalize(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_normalize(x) for x in v]
    if isinstance(v, pulumi.Resource):  # a resource reference: the engine would send its URN
        return UNKNOWN
    return v


def _getter_names(cls: type | None) -> set[str]:
    names = set()
    for attr in vars(cls).values() if cls is not None else ():
        name = getattr(getattr(attr, "fget", None), "_pulumi_name", None)
        if isinstance(name, str):
            names.add(name)
    return names


@functools.cache
def computed_names(type_token: str) -> frozenset[str]:
    """Output-only properties of a pulumi-aws resource (camelCase): its ARN, ID-derived values...

    These are the ones a provider reports as unknown when it previews a create. Most
    inputs the program leaves unset stay absent (or take their schema default); the
    exceptions are in :data:`PREVIEW_UNKNOWN_WHEN_UNSET`.
    """
    m = re.match(r"^(?P<pkg>[\w-]+):(?P<mod>[\w/-]+):(?P<cls>\w+)$", type_token)
    if not m or m["pkg"] != "aws":
        return frozenset()
    mod = m["mod"].split("/")[0]
    for candidate in (f"pulumi_aws.{mod}", f"pulumi_aws.{mod}_"):
        try:
            module = importlib.import_module(candidate)
        except ImportError:
            continue
        cls = getattr(module, m["cls"], None)
        if cls is not None:
            args_cls = getattr(module, f"{m['cls']}Args", None)
            return frozenset(_getter_names(cls) - _getter_names(args_cls))
    return frozenset()


PREVIEW_UNKNOWN_WHEN_UNSET: Mapping[str, frozenset[str]] = {
    # Inputs the Terraform-bridged AWS provider declares Optional+Computed: left unset,
    # they are "known after apply" while the resource is being created, because AWS
    # (or a separate resource such as aws.sqs.RedrivePolicy / aws.kms.KeyPolicy /
    # aws.s3.BucketServerSideEncryptionConfiguration) fills them in. Only the ones the
    # pack reads or that sit next to them; sources: the provider schema
    # (`pulumi package get-schema aws`, or terraform-provider-aws resource schemas).
    # `name`/`bucket` are Optional+Computed too, but Pulumi autonames them in Check,
    # unless a `namePrefix`/`bucketPrefix` leaves the name to the provider (below).
    "aws:sqs/queue:Queue": frozenset({
        "policy", "redrivePolicy", "redriveAllowPolicy", "kmsDataKeyReusePeriodSeconds", "sqsManagedSseEnabled",
    }),
    "aws:kms/key:Key": frozenset({"policy", "description", "multiRegion", "rotationPeriodInDays"}),
    "aws:s3/bucket:Bucket": frozenset({
        "serverSideEncryptionConfiguration", "policy", "acl", "accelerationStatus", "requestPayer",
        "objectLockEnabled",
    }),
    "aws:s3/bucketV2:BucketV2": frozenset({
        "serverSideEncryptionConfigurations", "policy", "acl", "accelerationStatus", "requestPayer",
        "objectLockEnabled",
    }),
}
"""Per type: inputs a provider reports as unknown at preview of a create when the program leaves them unset."""


def preview_unknowns(type_token: str) -> frozenset[str]:
    """Every property of ``type_token`` that is unknown at preview of a create unless the program sets it."""
    return computed_names(type_token) | PREVIEW_UNKNOWN_WHEN_UNSET.get(type_token, frozenset())


def _mark_preview_unknowns(type_token: str, outputs: dict[str, Any]) -> None:
    for name in preview_unknowns(type_token):
        if outputs.get(name) is None:
            outputs[name] = UNKNOWN
    for name in ("bucket", "name"):  # the provider appends a unique suffix to the prefix at create
        if outputs.get(f"{name}Prefix") is not None and outputs.get(name) is None:
            outputs[name] = UNKNOWN


# ---------------------------------------------------------------------------
# From a mocks graph to records


def graph_from_mocks(mock_graph: Any, *, preview: bool | None = None) -> StackGraph:
    """Translate a ``components.mocks.Graph`` into the engine's view of the stack.

    * custom resources: the analyzer's stack view carries *outputs* — the inputs plus
      what the provider computed. In preview the mocks compute nothing, and every
      output-only property of the resource class (ARN, URL, key id...), and every
      unset input the provider computes (:data:`PREVIEW_UNKNOWN_WHEN_UNSET`), is
      unknown, as a provider reports it when it previews a create;
    * components: their outputs are what they registered (``register_outputs``);
    * resources without an explicit provider get the default ``aws`` provider, whose
      inputs are the stack's ``aws:*`` config (so ``provider.props["region"]`` is the
      stack's ``aws:region``), as the engine registers it.
    """
    preview = mock_graph.preview if preview is None else preview
    stack_urn = mock_graph.stack_urn
    default_provider = _default_provider(mock_graph.stack, mock_graph.project, mock_graph.config)
    records: list[Record] = []
    for res in mock_graph:
        inputs = _normalize(res.inputs)
        if res.type == "pulumi:pulumi:Stack":
            outputs = _normalize(mock_graph.outputs)
        elif res.custom:
            outputs = {**inputs, **{k: v for k, v in _normalize(res.outputs).items() if v is not None}}
            if preview:
                _mark_preview_unknowns(res.type, outputs)
        else:
            outputs = _normalize(res.outputs)
        provider = _provider_urn(res.provider)
        if provider is None and res.custom and res.type.startswith("aws:"):
            provider = default_provider.urn
        records.append(
            Record(
                urn=res.urn,
                type=res.type,
                name=res.name,
                custom=res.custom,
                inputs=inputs,
                outputs=outputs,
                parent=res.parent or (None if res.urn == stack_urn else stack_urn),
                dependencies=list(res.dependencies),
                property_dependencies={k: list(v) for k, v in res.property_dependencies.items()},
                provider=provider,
                protect=bool(res.protect),
                ignore_changes=list(res.ignore_changes),
                delete_before_replace=res.delete_before_replace or None,
                additional_secret_outputs=[],
            )
        )
    if not any(r.urn == stack_urn for r in records):
        records.insert(0, Record(stack_urn, "pulumi:pulumi:Stack", stack_urn.split("::")[-1], False, {},
                                 _normalize(mock_graph.outputs)))
    records.sort(key=lambda r: r.type != "pulumi:pulumi:Stack")
    records.insert(1, default_provider)
    _engine_urns(records, mock_graph.stack, mock_graph.project)
    return StackGraph(stack=mock_graph.stack, project=mock_graph.project, preview=preview, records=records)


def _engine_urns(records: list[Record], stack: str, project: str) -> None:
    """Rename resources to the URNs the engine gives them, in place.

    The mock monitor qualifies a type with its parent's last type only, and names the
    root stack in it (``pulumi:pulumi:Stack$aws:s3/bucket:Bucket``); the engine uses the
    whole chain of ancestor types below the root stack
    (``s3-prefix-keys:index:DemoBucket$aws:kms/key:Key``, plain ``aws:s3/bucket:Bucket``).
    """
    by_urn = {r.urn: r for r in records}
    renamed: dict[str, str] = {}

    def engine_urn(r: Record) -> str:
        if r.urn not in renamed:
            chain, parent = [r.type], by_urn.get(r.parent or "")
            if r.type == "pulumi:pulumi:Stack" or parent is None:
                renamed[r.urn] = r.urn
                return r.urn
            while parent is not None and parent.type != "pulumi:pulumi:Stack":
                chain.insert(0, parent.type)
                parent = by_urn.get(parent.parent or "")
            renamed[r.urn] = f"urn:pulumi:{stack}::{project}::{'$'.join(chain)}::{r.name}"
        return renamed[r.urn]

    for r in records:
        engine_urn(r)
    for r in records:
        r.urn = renamed[r.urn]
        r.parent = renamed.get(r.parent, r.parent) if r.parent else None
        r.provider = renamed.get(r.provider, r.provider) if r.provider else None
        r.dependencies = [renamed.get(d, d) for d in r.dependencies]
        r.property_dependencies = {k: [renamed.get(d, d) for d in v] for k, v in r.property_dependencies.items()}


def _provider_urn(ref: Any) -> str | None:
    """A provider reference is ``<urn>::<id>``."""
    if not ref:
        return None
    ref = str(ref)
    return ref.rsplit("::", 1)[0] if ref.count("::") >= 4 else ref


def _default_provider(stack: str, project: str, config: Mapping[str, Any]) -> Record:
    import pulumi_aws

    version = getattr(pulumi_aws, "__version__", None) or _pkg_version("pulumi_aws")
    inputs: dict[str, Any] = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("aws:")}
    inputs["version"] = version
    name = "default_" + version.replace(".", "_")
    urn = f"urn:pulumi:{stack}::{project}::pulumi:providers:aws::{name}"
    return Record(urn, "pulumi:providers:aws", name, True, dict(inputs), dict(inputs), parent=None)


def _pkg_version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist.replace("_", "-"))


# ---------------------------------------------------------------------------
# The analyzer protocol: the requests the engine sends, answered by pulumi-policy itself


def _to_wire(v: Any) -> Any:
    if v is UNKNOWN:
        return UNKNOWN_STRING_VALUE
    if isinstance(v, Mapping):
        return {k: _to_wire(x) for k, x in v.items() if x is not None}
    if isinstance(v, (list, tuple)):
        return [_to_wire(x) for x in v]
    return v


def to_struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    """Properties as the engine marshals them: unknowns as sentinels, numbers as doubles."""
    struct = struct_pb2.Struct()
    struct.update(serialize_properties(_to_wire(dict(props))))
    return struct


def marshal(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """Props exactly as a policy receives them (pulumi-policy's deserializer and unknown proxy)."""
    return unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(to_struct(props))))


def _options(r: Record) -> proto.AnalyzerResourceOptions:
    return proto.AnalyzerResourceOptions(
        protect=r.protect,
        ignoreChanges=list(r.ignore_changes),
        deleteBeforeReplace=bool(r.delete_before_replace),
        deleteBeforeReplaceDefined=r.delete_before_replace is not None,
        additionalSecretOutputs=list(r.additional_secret_outputs),
        aliases=list(r.aliases),
        parent=r.parent or "",
    )


def _provider_message(by_urn: Mapping[str, Record], r: Record) -> proto.AnalyzerProviderResource | None:
    p = by_urn.get(r.provider or "")
    if p is None:
        return None
    return proto.AnalyzerProviderResource(type=p.type, properties=to_struct(p.inputs), urn=p.urn, name=p.name)


def analyze_requests(graph: StackGraph) -> list[proto.AnalyzeRequest]:
    """One ``Analyze`` request per resource: its inputs, as the engine sends them before a step."""
    by_urn = {r.urn: r for r in graph.records}
    out = []
    for r in graph.records:
        if r.type == "pulumi:pulumi:Stack":
            continue
        kwargs: dict[str, Any] = {}
        provider = _provider_message(by_urn, r)
        if provider is not None:
            kwargs["provider"] = provider
        out.append(proto.AnalyzeRequest(type=r.type, properties=to_struct(r.inputs), urn=r.urn, name=r.name,
                                        options=_options(r), **kwargs))
    return out


def analyze_stack_request(graph: StackGraph) -> proto.AnalyzeStackRequest:
    """The ``AnalyzeStack`` request: every resource's outputs, parent and dependencies."""
    by_urn = {r.urn: r for r in graph.records}
    resources = []
    for r in graph.records:
        kwargs: dict[str, Any] = {}
        provider = _provider_message(by_urn, r)
        if provider is not None:
            kwargs["provider"] = provider
        resources.append(proto.AnalyzerResource(
            type=r.type, properties=to_struct(r.outputs), urn=r.urn, name=r.name, options=_options(r),
            parent=r.parent or "", dependencies=list(r.dependencies),
            # The engine sends only properties that depend on something (a literal input
            # has no entry), so "no entry" cannot tell "unset" from "set to a constant".
            propertyDependencies={k: proto.AnalyzerPropertyDependencies(urns=list(v))
                                  for k, v in r.property_dependencies.items() if v},
            **kwargs,
        ))
    return proto.AnalyzeStackRequest(resources=resources)


_LEVEL_TO_PROTO = {
    EnforcementLevel.ADVISORY: proto.ADVISORY,
    EnforcementLevel.MANDATORY: proto.MANDATORY,
    EnforcementLevel.REMEDIATE: proto.REMEDIATE,
    EnforcementLevel.DISABLED: proto.DISABLED,
}
_LEVEL_FROM_PROTO = {v: k.value for k, v in _LEVEL_TO_PROTO.items()}


def configure_request(settings: Mapping[str, PolicySettings]) -> proto.ConfigureAnalyzerRequest:
    """The ``Configure`` request the CLI sends the pack for ``settings`` (the resolved policy config)."""
    request = proto.ConfigureAnalyzerRequest()
    for name, setting in settings.items():
        config = proto.PolicyConfig(enforcementLevel=_LEVEL_TO_PROTO[setting.level])
        if setting.properties:
            config.properties.update(json.loads(json.dumps(dict(setting.properties))))
        request.policyConfig[name].CopyFrom(config)
    return request


def analyzer(policies: Iterable[Policy], settings: Mapping[str, PolicySettings]) -> Any:
    """pulumi-policy's own analyzer, configured as the CLI configures it; no gRPC server.

    ``PolicyPack()`` would start a server and block; its servicer is what answers the
    engine's ``Analyze``/``AnalyzeStack`` calls, and it runs in-process here.
    """
    servicer = _PolicyAnalyzerServicer(PACK_NAME, _SDK_PACK_VERSION, list(policies), PACK_ENFORCEMENT_LEVEL)
    servicer.Configure(configure_request(settings), None)
    return servicer


def stack_resources(graph: StackGraph) -> list[PolicyResource]:
    """``StackValidationArgs.resources`` exactly as pulumi-policy builds them from the request."""
    captured: list[PolicyResource] = []
    capture = StackValidationPolicy(
        name="capture", description="Captures the stack's resources.",
        validate=lambda args, _report: captured.extend(args.resources),
    )
    servicer = analyzer([capture], {"capture": PolicySettings(EnforcementLevel.ADVISORY, {})})
    servicer.AnalyzeStack(analyze_stack_request(graph), None)
    return captured
