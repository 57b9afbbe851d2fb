"""The offline policy run: the pack over the program's resource graph, no Pulumi CLI.

    python -m policypack.check --stack dev [--config policypack/config.json] [--first-preview]

It loads ``Pulumi.<stack>.yaml``, runs ``__main__.py`` under Pulumi's mock runtime
(``components.mocks``), and sends the recorded graph through pulumi-policy's own
analyzer (the servicer ``PolicyPack`` would serve over gRPC, called in-process) the way
the engine does during a preview: one ``Analyze`` request per resource (its inputs) and
one ``AnalyzeStack`` request (every resource's outputs, parent, dependencies, property
dependencies and provider), with the pack configured from ``config.json`` as the CLI
configures it. Values are marshalled the engine's way (a protobuf ``Struct``: numbers
become doubles, unknowns pulumi-policy's sentinels), URNs are the engine's, and each
resource has the default ``aws`` provider with the stack's ``aws:*`` config. So the
enforcement levels, the skip of a policy that reads an unknown value (with its advisory
"can't run policy ... during preview" note) and the messages are pulumi-policy's own.
Violations are printed the way ``pulumi preview --policy-pack`` prints them; the exit
status is 1 on any mandatory violation, 2 when the stack or policy configuration is
invalid (or the program or a policy fails), 0 otherwise.

``--first-preview`` runs the program in preview mode, as the first ``pulumi preview``
of a new stack: every output a resource computes (ARNs, URLs, key ids, and anything
derived from them) is unknown; inputs, Pulumi autonames and invoke results are known.

``ops policy-check`` wraps :func:`run_check`.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pulumi  # noqa: E402
from google.protobuf import json_format, struct_pb2  # noqa: E402
from pulumi.runtime import proto  # noqa: E402
from pulumi_policy import (  # noqa: E402
    EnforcementLevel,
    Policy,
    PolicyResource,
    ResourceValidationPolicy,
    StackValidationPolicy,
)
from pulumi_policy.deserialize import deserialize_properties, serialize_properties  # noqa: E402
from pulumi_policy.policy import _PolicyAnalyzerServicer  # noqa: E402
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy  # noqa: E402

from components import mocks  # noqa: E402
from components.config import ConfigError  # noqa: E402
from policypack.policies import PACK_ENFORCEMENT_LEVEL, PACK_NAME, POLICIES  # noqa: E402

PACK_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = PACK_DIR / "config.json"
PROJECT = "s3-prefix-keys"
# pulumi-policy's servicer always calls itself v0.0.1 in the messages it builds (the
# CLI shows PulumiPolicy.yaml's version in headers); mirrored so texts match a preview.
_SDK_PACK_VERSION = "0.0.1"
_CANT_RUN = "can't run policy"


def pack_version() -> str:
    m = re.search(r"^version:\s*([^\s#]+)", (PACK_DIR / "PulumiPolicy.yaml").read_text(), re.M)
    return m.group(1) if m else _SDK_PACK_VERSION


# ---------------------------------------------------------------------------
# Policy configuration (--policy-pack-config)


class PolicyConfigError(ValueError):
    """Invalid policy pack configuration; ``problems`` holds one line per offending key."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid policy pack configuration:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class PolicySettings:
    level: EnforcementLevel
    properties: Mapping[str, Any]


_LEVELS = {lvl.value: lvl for lvl in EnforcementLevel}
_JSON_TYPES = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def _check_schema_value(where: str, value: Any, schema: Mapping[str, Any], problems: list[str]) -> None:
    kind = schema.get("type")
    types = _JSON_TYPES.get(kind) if isinstance(kind, str) else None
    if types and (not isinstance(value, types) or (kind in ("integer", "number") and isinstance(value, bool))):
        problems.append(f"{where}: expected {kind}, got {json.dumps(value)}")
        return
    if "minimum" in schema and isinstance(value, (int, float)) and value < schema["minimum"]:
        problems.append(f"{where}: must be >= {schema['minimum']}, got {value}")
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: must be one of {schema['enum']}, got {json.dumps(value)}")
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _check_schema_value(f"{where}[{i}]", item, schema["items"], problems)


def resolve_policy_config(
    raw: Mapping[str, Any] | None, policies: Iterable[Policy] = POLICIES
) -> dict[str, PolicySettings]:
    """Each policy's effective level and properties, as the CLI derives them from the JSON file.

    ``"all"`` sets every policy's level; a policy's own entry (a level string, or an
    object with ``enforcementLevel`` and its properties) overrides it. Properties are
    checked against the policy's config schema, and unknown policies or properties
    are errors (a typo would otherwise silently fall back to the default).
    """
    raw = dict(raw or {})
    policies = list(policies)
    by_name = {p.name: p for p in policies}
    problems: list[str] = []
    for name in raw:
        if name != "all" and name not in by_name:
            problems.append(f"{name}: no such policy in {PACK_NAME} (policies: {', '.join(sorted(by_name))})")

    def level_of(where: str, value: Any) -> EnforcementLevel | None:
        if value is None:
            return None
        if isinstance(value, str) and value in _LEVELS:
            return _LEVELS[value]
        problems.append(f"{where}: enforcement level must be one of {', '.join(_LEVELS)}, got {json.dumps(value)}")
        return None

    all_level = level_of("all", raw.get("all"))
    out: dict[str, PolicySettings] = {}
    for p in policies:
        entry = raw.get(p.name)
        level = p.enforcement_level or PACK_ENFORCEMENT_LEVEL
        if all_level is not None:
            level = all_level
        props: dict[str, Any] = {}
        if isinstance(entry, Mapping):
            if "enforcementLevel" in entry:
                level = level_of(f"{p.name}.enforcementLevel", entry["enforcementLevel"]) or level
            schema = p.config_schema.properties if p.config_schema else {}
            for k, v in entry.items():
                if k == "enforcementLevel":
                    continue
                if k not in schema:
                    allowed = ", ".join(sorted(schema)) or "none besides enforcementLevel"
                    problems.append(f"{p.name}.{k}: unknown property (allowed: {allowed})")
                    continue
                _check_schema_value(f"{p.name}.{k}", v, schema[k], problems)
                props[k] = v
            for req in (p.config_schema.required or []) if p.config_schema else []:
                if req not in entry:
                    problems.append(f"{p.name}.{req}: required")
        elif entry is not None:
            level = level_of(p.name, entry) or level
        if p.config_schema:  # the CLI applies schema defaults
            for k, s in p.config_schema.properties.items():
                if k not in props and "default" in s:
                    props[k] = copy.deepcopy(s["default"])
        out[p.name] = PolicySettings(level, props)
    if problems:
        raise PolicyConfigError(problems)
    return out


def load_policy_config(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PolicyConfigError([f"{path}: no such file"]) from None
    except ValueError as exc:
        raise PolicyConfigError([f"{path}: not JSON ({exc})"]) from None
    if not isinstance(data, dict):
        raise PolicyConfigError([f"{path}: expected a JSON object of policy name -> level or settings"])
    return data


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


def analyzer(policies: Iterable[Policy], settings: Mapping[str, PolicySettings]) -> Any:
    """pulumi-policy's own analyzer, configured as the CLI configures it; no gRPC server.

    ``PolicyPack()`` would start a server and block; its servicer is what answers the
    engine's ``Analyze``/``AnalyzeStack`` calls, and it runs in-process here.
    """
    servicer = _PolicyAnalyzerServicer(PACK_NAME, _SDK_PACK_VERSION, list(policies), PACK_ENFORCEMENT_LEVEL)
    request = proto.ConfigureAnalyzerRequest()
    for name, setting in settings.items():
        config = proto.PolicyConfig(enforcementLevel=_LEVEL_TO_PROTO[setting.level])
        if setting.properties:
            config.properties.update(json.loads(json.dumps(dict(setting.properties))))
        request.policyConfig[name].CopyFrom(config)
    servicer.Configure(request, None)
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


# ---------------------------------------------------------------------------
# Running the pack


@dataclass(frozen=True)
class Diagnostic:
    policy: str
    level: str  # mandatory | advisory
    description: str
    message: str  # the policy's own text ("" for none)
    urn: str
    resource_type: str
    resource_name: str

    @property
    def text(self) -> str:
        """The diagnostic message as the analyzer sends it (description, then message)."""
        return self.description + (f"\n{self.message}" if self.message else "")


@dataclass
class CheckReport:
    stack: str
    first_preview: bool
    diagnostics: list[Diagnostic] = field(default_factory=list)
    not_applicable: list[tuple[str, str]] = field(default_factory=list)
    levels: dict[str, str] = field(default_factory=dict)
    resource_count: int = 0

    @property
    def mandatory(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "mandatory"]

    @property
    def advisory(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "advisory"]

    @property
    def exit_code(self) -> int:
        return 1 if self.mandatory else 0

    def for_policy(self, name: str) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.policy == name]

    def render(self) -> str:
        """The report the way `pulumi preview --policy-pack` prints its "Policies:" section."""
        mode = ("as the first `pulumi preview` of a new stack (computed values unknown)" if self.first_preview
                else "as after `pulumi up` (every value known)")
        enabled = sum(1 for lvl in self.levels.values() if lvl != "disabled")
        lines = [f"Offline policy check of {PROJECT}/{self.stack} {mode}: {self.resource_count} resources, "
                 f"{enabled} policies enabled", ""]
        mark = "❌" if self.mandatory else ("⚠️ " if self.diagnostics else "✅")
        lines.append("Policies:")
        lines.append(f"    {mark} {PACK_NAME}@v{pack_version()} (local: policypack)")
        order = {"mandatory": 0, "advisory": 1}
        for d in sorted(self.diagnostics, key=lambda d: order.get(d.level, 2)):
            lines.append(f"        - [{d.level}]  {d.policy}  ({d.resource_type}: {d.resource_name})")
            lines.extend(f"          {text_line}" for text_line in d.text.splitlines())
        lines.append("")
        notes = [d for d in self.advisory if d.message.startswith(_CANT_RUN)]
        advisory = len(self.advisory) - len(notes)
        summary = (f"{len(self.mandatory)} mandatory, {advisory} advisory violation(s)"
                   if len(self.diagnostics) > len(notes) else "no policy violations")
        if notes:
            summary += f"; {len(notes)} policy(ies) deferred checks on unknown values to `pulumi up`"
        lines.append(f"Result: {summary}")
        return "\n".join(lines)


class PolicyRunError(RuntimeError):
    """A policy raised (the engine would fail the preview with the policy's error)."""


def analyze(
    graph: StackGraph,
    policy_config: Mapping[str, Any] | None = None,
    *,
    policies: Iterable[Policy] = POLICIES,
) -> CheckReport:
    """Send ``graph`` through pulumi-policy's analyzer as the engine does during a preview.

    One ``Analyze`` call per resource (resource policies, on inputs) and one
    ``AnalyzeStack`` call (stack policies, on outputs), with the pack configured from
    ``policy_config`` (the ``--policy-pack-config`` JSON). pulumi-policy itself applies
    the enforcement levels, skips a policy that reads an unknown value (with its
    advisory "can't run policy ... during preview" note) and builds the messages.
    """
    policies = list(policies)
    settings = resolve_policy_config(policy_config, policies)
    servicer = analyzer(policies, settings)
    by_urn = {r.urn: r for r in graph.records}
    root = next((r for r in graph.records if r.type == "pulumi:pulumi:Stack"), None)
    report = CheckReport(stack=graph.stack, first_preview=graph.preview, resource_count=len(graph.records),
                         levels={name: s.level.value for name, s in settings.items()})
    descriptions = {p.name: p.description for p in policies}

    def collect(response: Any, default_urn: str) -> None:
        for d in response.diagnostics:
            # The engine attributes a diagnostic to the resource it names, else to the
            # analyzed resource (Analyze), else to the root stack (AnalyzeStack).
            r = by_urn.get(d.urn) or by_urn.get(default_urn) or root
            text = d.message
            description = d.description or descriptions.get(d.policyName, "")
            message = text[len(description) + 1:] if text.startswith(description + "\n") else text
            if message == description:
                message = ""
            report.diagnostics.append(Diagnostic(
                policy=d.policyName, level=_LEVEL_FROM_PROTO.get(d.enforcementLevel, "advisory"),
                description=description, message=message, urn=r.urn if r else d.urn,
                resource_type=r.type if r else "", resource_name=r.name if r else "",
            ))
        report.not_applicable.extend((n.policy_name, n.reason) for n in response.not_applicable)

    try:
        if any(isinstance(p, ResourceValidationPolicy) for p in policies):
            for request in analyze_requests(graph):
                collect(servicer.Analyze(request, None), request.urn)
        if any(isinstance(p, StackValidationPolicy) for p in policies):
            collect(servicer.AnalyzeStack(analyze_stack_request(graph), None), "")
    except Exception as exc:
        raise PolicyRunError(f"a policy of {PACK_NAME} failed: {exc!r}") from exc
    return report


# ---------------------------------------------------------------------------
# Running the program


def stack_config(stack: str, root: Path = ROOT, stack_file: str | Path | None = None) -> dict[str, Any]:
    """The ``config:`` map of ``Pulumi.<stack>.yaml`` (or ``stack_file``), validated by the config model."""
    from components import config as cfgmod

    path = Path(stack_file) if stack_file else cfgmod.stack_file(stack, root)
    cfgmod.load_stack_file(path)  # raises ConfigError naming the config path and the fix
    return cfgmod.read_stack_file(path)


def program_graph(config: Mapping[str, Any], *, stack: str = "dev", first_preview: bool = False) -> StackGraph:
    """Run ``__main__.py`` under the mocks with ``config`` (a stack file's ``config:`` map)."""
    return graph_from_mocks(mocks.run_program(dict(config), stack=stack, preview=first_preview))


def run_check(
    stack: str = "dev",
    config_path: str | Path | None = DEFAULT_CONFIG,
    first_preview: bool = False,
    *,
    stack_file: str | Path | None = None,
    root: Path = ROOT,
) -> CheckReport:
    """The offline run as a library call (``ops policy-check``).

    Raises ``ConfigError`` (invalid stack config) or ``PolicyConfigError`` (invalid
    policy config) before any resource is registered.
    """
    policy_config = load_policy_config(config_path)
    resolve_policy_config(policy_config)  # fail fast, before running the program
    config = stack_config(stack, root, stack_file)
    return analyze(program_graph(config, stack=stack, first_preview=first_preview), policy_config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m policypack.check",
        description="Run the s3-prefix-keys policy pack over the program's resource graph, offline.",
    )
    parser.add_argument("--stack", default="dev", help="stack name: reads Pulumi.<stack>.yaml (default dev)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None,
                        help="policy pack config JSON, as for --policy-pack-config (default policypack/config.json)")
    parser.add_argument("--stack-file", default=None,
                        help="read this stack file instead of Pulumi.<stack>.yaml")
    parser.add_argument("--first-preview", action="store_true",
                        help="preview mode: computed outputs unknown, as on a new stack's first `pulumi preview`")
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    try:
        report = run_check(args.stack, args.config, args.first_preview, stack_file=args.stack_file)
    except (ConfigError, PolicyConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PolicyRunError:
        import traceback

        traceback.print_exc()
        return 2
    except Exception:  # the program itself failed, as `pulumi preview` would report
        import traceback

        traceback.print_exc()
        print("error: the Pulumi program failed under the mock runtime (see above)", file=sys.stderr)
        return 2
    print(report.render())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
