"""Run the Pulumi program offline, under Pulumi's mock runtime, and record its graph.

No Pulumi CLI, provider plugin or AWS account is involved: ``run_program`` executes
``__main__.py`` through the same entry point the Python language host uses
(``run_in_stack``), with ``pulumi.runtime.set_mocks`` standing in for the engine, and
returns a ``Graph`` of every registered resource: its URN, type, name, the inputs the
engine would receive (Pulumi property names, e.g. ``visibilityTimeoutSeconds``), its
parent, its dependencies and property dependencies, and the stack's outputs.

``MockResourceArgs`` carries neither the parent nor the dependencies, so the monitor's
``RegisterResource`` is wrapped to take them from the request itself.

The mocks answer like AWS would: realistic ARNs, ids, names, role ``unique_id``
(``AROA…``), queue URLs, bucket names and KMS key ids, all derived from the URN so
that two runs of the same config give the same graph. With ``preview=True`` they
answer like a first ``pulumi preview``: every value a provider computes at create
time (ARNs, ids, URLs, unique ids) is unknown, and so is everything derived from it.

Used by the program's tests and by the policy pack's offline run; safe to call many
times in one process.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import runpy
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi.output import Unknown
from pulumi.runtime import Mocks, rpc, set_mocks
from pulumi.runtime import config as pulumi_config
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs
from pulumi.runtime.settings import ROOT, SETTINGS
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from components.config import NAMESPACE, read_stack_file

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MAIN = PROJECT_ROOT / "__main__.py"
ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
STACK_TYPE = "pulumi:pulumi:Stack"


class _UnknownValue:
    """A value that is not known until the resource exists (preview only)."""

    _instance: _UnknownValue | None = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = _UnknownValue()


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def contains_unknown(value: Any) -> bool:
    if value is UNKNOWN:
        return True
    if isinstance(value, Mapping):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(contains_unknown(v) for v in value)
    return False


# ---------------------------------------------------------------------------
# The recorded graph


@dataclass
class RecordedResource:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    provider: str | None = None
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    protect: bool = False
    retain_on_delete: bool = False
    delete_before_replace: bool = False
    ignore_changes: list[str] = field(default_factory=list)
    secret_inputs: list[str] = field(default_factory=list)

    def get(self, prop: str, default: Any = None) -> Any:
        """An input, or failing that an output, by its Pulumi property name."""
        if prop in self.inputs:
            return self.inputs[prop]
        return self.outputs.get(prop, default)

    def json(self, prop: str) -> Any:
        """A JSON-document input (a policy, an event pattern) parsed, or UNKNOWN."""
        value = self.get(prop)
        return value if value is UNKNOWN or value is None else json.loads(value)


@dataclass
class Graph:
    project: str
    stack: str
    preview: bool
    config: dict[str, str]
    resources: dict[str, RecordedResource] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)

    @property
    def stack_urn(self) -> str:
        return f"urn:pulumi:{self.stack}::{self.project}::{STACK_TYPE}::{self.project}-{self.stack}"

    def __iter__(self) -> Iterator[RecordedResource]:
        return iter(self.resources.values())

    def __len__(self) -> int:
        return len(self.resources)

    def get(self, urn: str) -> RecordedResource:
        return self.resources[urn]

    def by_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> RecordedResource:
        """The single resource of a type (and name); an error naming what was found otherwise."""
        found = [r for r in self.by_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise LookupError(f"expected one {type_} {name or ''}, found {[r.name for r in found]}")
        return found[0]

    def children(self, urn: str) -> list[RecordedResource]:
        return [r for r in self if r.parent == urn]

    def descendants(self, urn: str) -> list[RecordedResource]:
        out = []
        for child in self.children(urn):
            out.append(child)
            out.extend(self.descendants(child.urn))
        return out

    def ancestors(self, urn: str) -> list[RecordedResource]:
        out = []
        parent = self.resources[urn].parent
        while parent and parent in self.resources:
            out.append(self.resources[parent])
            parent = self.resources[parent].parent
        return out

    def counts(self, *, custom_only: bool = False) -> Counter[str]:
        return Counter(r.type for r in self if r.type != STACK_TYPE and (r.custom or not custom_only))

    @property
    def warnings(self) -> list[str]:
        return [msg for level, msg in self.log if level in ("WARNING", "ERROR")]


# ---------------------------------------------------------------------------
# Mocks: what AWS would answer


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _partition(region: str) -> tuple[str, str]:
    if region.startswith("cn-"):
        return "aws-cn", "amazonaws.com.cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov", "amazonaws.com"
    return "aws", "amazonaws.com"


# Pulumi autonames these properties (name + 7 hex characters) when they are unset;
# the engine does so in Check, so the name is known even in preview.
_AUTONAMED = {
    "aws:s3/bucket:Bucket": "bucket",
    "aws:sqs/queue:Queue": "name",
    "aws:iam/role:Role": "name",
    "aws:iam/rolePolicy:RolePolicy": "name",
    "aws:iam/policy:Policy": "name",
    "aws:sns/topic:Topic": "name",
    "aws:dynamodb/table:Table": "name",
    "aws:cloudwatch/logGroup:LogGroup": "name",
    "aws:cloudwatch/metricAlarm:MetricAlarm": "name",
    "aws:cloudwatch/eventRule:EventRule": "name",
    "aws:lambda/function:Function": "name",
}

# Resources whose id is the bucket they configure.
_BUCKET_SUBRESOURCES = {
    "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketNotification:BucketNotification",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
}


class AwsMocks(Mocks):
    """Answers resource registrations and invokes like one AWS account and region."""

    def __init__(self, region: str, *, preview: bool, account_id: str = ACCOUNT_ID):
        self.region = region
        self.preview = preview
        self.account_id = account_id
        self.partition, self.dns_suffix = _partition(region)
        self.invokes: list[tuple[str, dict[str, Any]]] = []
        # The URN of the registration being answered (set by the recording monitor;
        # MockResourceArgs has no parent, so the name alone is not unique).
        self.current = threading.local()

    # -- invokes: known in preview too, as with the real engine

    def call(self, args: MockCallArgs) -> dict[str, Any]:
        self.invokes.append((args.token, dict(args.args)))
        answers: dict[str, Callable[[], dict[str, Any]]] = {
            "aws:index/getPartition:getPartition": lambda: {
                "id": self.partition,
                "partition": self.partition,
                "dnsSuffix": self.dns_suffix,
                "reverseDnsPrefix": ".".join(reversed(self.dns_suffix.split("."))),
            },
            "aws:index/getCallerIdentity:getCallerIdentity": lambda: {
                "id": self.account_id,
                "accountId": self.account_id,
                "arn": f"arn:{self.partition}:iam::{self.account_id}:user/mock-deployer",
                "userId": "AIDA" + _digest("user", self.account_id)[:17].upper(),
            },
            "aws:index/getRegion:getRegion": lambda: {
                "id": self.region,
                "name": self.region,
                "region": self.region,
                "endpoint": f"ec2.{self.region}.{self.dns_suffix}",
                "description": self.region,
            },
        }
        if args.token not in answers:
            raise NotImplementedError(
                f"components/mocks.py has no answer for invoke {args.token}; add one to AwsMocks.call"
            )
        return answers[args.token]()

    # -- resources

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict]:
        if not args.custom:
            return "", {}
        urn = getattr(self.current, "urn", None) or f"{args.typ}::{args.name}"
        seed = _digest(urn)
        inputs = {k: v for k, v in args.inputs.items() if not isinstance(v, Unknown)}
        autonamed = _AUTONAMED.get(args.typ)
        if autonamed and not inputs.get(autonamed) and not inputs.get(f"{autonamed}Prefix"):
            inputs[autonamed] = f"{args.name}-{seed[:7]}"
        if self.preview:
            # A first preview: inputs (with autonames) are known, computed values are not.
            return "", inputs
        computed = self._computed(args.typ, args.name, inputs, seed)
        resource_id = computed.pop("id", None) or f"{args.name}-{seed[:8]}"
        return resource_id, {**inputs, **computed}

    def _arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account_id if account else ''}:{resource}"
        )

    def _computed(self, typ: str, name: str, inputs: dict[str, Any], seed: str) -> dict[str, Any]:
        key_uuid = str(uuid.UUID(seed[:32]))
        physical = inputs.get(_AUTONAMED.get(typ, "name"))
        region, dns = self.region, self.dns_suffix
        match typ:
            case "aws:s3/bucket:Bucket":
                # bucket_prefix: the provider appends a 26-character unique suffix.
                bucket = inputs.get("bucket") or (inputs["bucketPrefix"] + seed[:26])[:63]
                return {
                    "id": bucket,
                    "bucket": bucket,
                    "arn": f"arn:{self.partition}:s3:::{bucket}",
                    "bucketDomainName": f"{bucket}.s3.{dns}",
                    "bucketRegionalDomainName": f"{bucket}.s3.{region}.{dns}",
                    "region": region,
                }
            case "aws:kms/key:Key":
                return {"id": key_uuid, "keyId": key_uuid, "arn": self._arn("kms", f"key/{key_uuid}")}
            case "aws:sqs/queue:Queue":
                url = f"https://sqs.{region}.{dns}/{self.account_id}/{physical}"
                return {"id": url, "url": url, "arn": self._arn("sqs", physical)}
            case "aws:iam/role:Role":
                return {
                    "id": physical,
                    "arn": self._arn("iam", f"role{inputs.get('path', '/')}{physical}", region=False),
                    "uniqueId": "AROA" + seed[:17].upper(),
                    "createDate": "2025-01-01T00:00:00Z",
                }
            case "aws:iam/rolePolicy:RolePolicy":
                return {"id": f"{inputs.get('role')}:{physical}"}
            case "aws:iam/policy:Policy":
                arn = self._arn("iam", f"policy{inputs.get('path', '/')}{physical}", region=False)
                return {"id": arn, "arn": arn, "policyId": "ANPA" + seed[:17].upper(), "attachmentCount": 1}
            case "aws:iam/rolePolicyAttachment:RolePolicyAttachment":
                return {"id": f"{inputs.get('role')}-{seed[:8]}"}
            case "aws:lambda/function:Function":
                arn = self._arn("lambda", f"function:{physical}")
                return {
                    "id": physical,
                    "arn": arn,
                    "qualifiedArn": f"{arn}:$LATEST",
                    "invokeArn": f"arn:{self.partition}:apigateway:{region}:lambda:path/2015-03-31/functions/{arn}/invocations",
                    "version": "$LATEST",
                }
            case "aws:lambda/layerVersion:LayerVersion":
                layer_arn = self._arn("lambda", f"layer:{inputs['layerName']}")
                return {"id": f"{layer_arn}:1", "arn": f"{layer_arn}:1", "layerArn": layer_arn, "version": "1"}
            case "aws:lambda/eventSourceMapping:EventSourceMapping":
                return {
                    "id": key_uuid,
                    "uuid": key_uuid,
                    "arn": self._arn("lambda", f"event-source-mapping:{key_uuid}"),
                    "functionArn": inputs.get("functionName"),
                    "state": "Enabled",
                }
            case "aws:dynamodb/table:Table":
                return {"id": physical, "arn": self._arn("dynamodb", f"table/{physical}")}
            case "aws:dynamodb/tableItem:TableItem":
                return {"id": f"{inputs.get('tableName')}|{seed[:12]}"}
            case "aws:sns/topic:Topic":
                arn = self._arn("sns", physical)
                return {"id": arn, "arn": arn, "owner": self.account_id}
            case "aws:sns/topicSubscription:TopicSubscription":
                arn = f"{inputs.get('topic')}:{key_uuid}"
                return {"id": arn, "arn": arn, "ownerId": self.account_id}
            case "aws:cloudwatch/logGroup:LogGroup":
                return {"id": physical, "arn": self._arn("logs", f"log-group:{physical}")}
            case "aws:cloudwatch/metricAlarm:MetricAlarm":
                return {"id": physical, "arn": self._arn("cloudwatch", f"alarm:{physical}")}
            case "aws:cloudwatch/eventRule:EventRule":
                return {"id": physical, "arn": self._arn("events", f"rule/{physical}")}
            case "aws:cloudwatch/eventTarget:EventTarget":
                target_id = inputs.get("targetId") or f"{name}-{seed[:7]}"
                return {"id": f"{inputs.get('rule')}-{target_id}", "targetId": target_id}
            case "aws:sqs/queuePolicy:QueuePolicy":
                return {"id": inputs.get("queueUrl")}
            case _ if typ in _BUCKET_SUBRESOURCES:
                return {"id": inputs.get("bucket")}
        return {}


# ---------------------------------------------------------------------------
# The recording monitor


def _plain(value: Any, path: str, secrets: list[str]) -> Any:
    """Deserialized engine values as plain Python: UNKNOWN for unknowns, secrets unwrapped."""
    if isinstance(value, Unknown):
        return UNKNOWN
    if rpc.is_rpc_secret(value):
        secrets.append(path)
        return _plain(rpc.unwrap_rpc_secret(value), path, secrets)
    if isinstance(value, dict):
        return {k: _plain(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    return value


def _deserialize(struct) -> tuple[dict[str, Any], list[str]]:
    secrets: list[str] = []
    return _plain(rpc.deserialize_properties(struct, keep_unknowns=True), "", secrets), secrets


class _RecordingMonitor(MockMonitor):
    def __init__(self, mocks: AwsMocks, graph: Graph):
        super().__init__(mocks)
        self.graph = graph
        self._lock = threading.Lock()

    def RegisterResource(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        self.mocks.current.urn = urn
        try:
            response = super().RegisterResource(request)
        finally:
            self.mocks.current.urn = None
        _ensure_event_loop()
        inputs, secret_inputs = _deserialize(request.object)
        outputs, _ = _deserialize(response.object) if response.object else ({}, [])
        record = RecordedResource(
            urn=urn,
            type=request.type,
            name=request.name,
            custom=request.custom,
            parent=request.parent or None,
            inputs=inputs,
            outputs=outputs,
            id=response.id or (UNKNOWN if request.custom else None),
            provider=request.provider or None,
            dependencies=list(request.dependencies),
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            delete_before_replace=bool(request.deleteBeforeReplace),
            ignore_changes=list(request.ignoreChanges),
            secret_inputs=secret_inputs,
        )
        with self._lock:
            self.graph.resources[urn] = record
        return response

    def RegisterResourceOutputs(self, request):
        _ensure_event_loop()
        outputs, _ = _deserialize(request.outputs)
        with self._lock:
            if request.urn == self.graph.stack_urn:
                self.graph.outputs = outputs
            elif request.urn in self.graph.resources:
                self.graph.resources[request.urn].outputs.update(outputs)
        return super().RegisterResourceOutputs(request)


class _LogCollector(logging.Handler):
    def __init__(self, graph: Graph):
        super().__init__(logging.DEBUG)
        self.graph = graph

    def emit(self, record: logging.LogRecord) -> None:
        self.graph.log.append((record.levelname, record.getMessage()))


# ---------------------------------------------------------------------------
# Config


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The raw ``config:`` map of a ``Pulumi.<stack>.yaml`` (duplicate keys rejected)."""
    return read_stack_file(path)


def engine_config(raw: Mapping[str, Any]) -> dict[str, str]:
    """Config as the engine hands it to a program: namespaced keys, string values.

    Keys without a namespace are taken as the project's (``demo`` means
    ``s3-prefix-keys:demo``). Structured values (``pulumi config set --path``) reach
    the program as JSON strings, scalars as their YAML spelling. An encrypted value
    cannot be decrypted offline and is passed as the placeholder ``[secret]``.
    """
    out: dict[str, str] = {}
    for key, value in raw.items():
        full_key = key if ":" in key else f"{NAMESPACE}:{key}"
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            out[full_key] = "[secret]"
        elif isinstance(value, str):
            out[full_key] = value
        else:
            out[full_key] = json.dumps(value)
    return out


@contextmanager
def _engine_environment(config: dict[str, str]) -> Iterator[None]:
    # The language host passes config in PULUMI_CONFIG; load_pulumi_config reads it
    # there, pulumi.Config reads the runtime's copy. Set both, restore both.
    saved = os.environ.get("PULUMI_CONFIG")
    saved_runtime = dict(pulumi_config.CONFIG.get())
    os.environ["PULUMI_CONFIG"] = json.dumps(config)
    pulumi_config.set_all_config(config, [])
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PULUMI_CONFIG", None)
        else:
            os.environ["PULUMI_CONFIG"] = saved
        pulumi_config.set_all_config(saved_runtime, [])


# ---------------------------------------------------------------------------
# Running the program


def run_program(
    config: Mapping[str, Any] | str | Path,
    *,
    stack: str = "dev",
    preview: bool = False,
    main: str | Path = MAIN,
    project: str = NAMESPACE,
) -> Graph:
    """Run the Pulumi program under mocks and return the graph it registered.

    ``config`` is a raw config map (``load_config_file``'s answer, or a dict such as
    ``{"aws:region": "us-east-1", "demo": True}``) or the path of a stack file.

    If the program fails (a ``ConfigError`` from validation, say), its exception is
    raised with the partial graph attached as ``exc.graph``, so a test can check that
    nothing was registered before the failure.
    """
    raw = load_config_file(config) if isinstance(config, str | Path) else dict(config)
    env_config = engine_config(raw)
    graph = Graph(project=project, stack=stack, preview=preview, config=env_config)
    mocks = AwsMocks(env_config.get("aws:region") or DEFAULT_REGION, preview=preview)
    monitor = _RecordingMonitor(mocks, graph)
    logger = logging.Logger(f"pulumi-mocks-{stack}", logging.DEBUG)
    logger.addHandler(_LogCollector(graph))

    main_path = Path(main).resolve()
    if str(main_path.parent) not in sys.path:
        sys.path.insert(0, str(main_path.parent))

    with _engine_environment(env_config):
        # A previous run (or a failed one) may have left a root stack and pending
        # outputs in the runtime's globals.
        ROOT.set(None)
        SETTINGS.outputs.clear()
        # Pulumi registers resources on the thread's current event loop; code that ran
        # before (asyncio.run, a closed loop) may have left none, or a closed one.
        if _ensure_event_loop().is_closed():
            asyncio.set_event_loop(asyncio.new_event_loop())
        set_mocks(mocks, project=project, stack=stack, preview=preview, logger=logger, monitor=monitor)
        SETTINGS.rpc_manager.clear()
        # set_mocks registers and finishes a root stack at once (for tests that build
        # resources by hand); a program's exports are only registered when it ends,
        # so run it the way the language host does: in a fresh stack via run_in_stack.
        ROOT.set(None)
        graph.resources.clear()
        try:
            _sync_await(run_in_stack(lambda: runpy.run_path(str(main_path), run_name="__main__")))
        except BaseException as exc:
            exc.graph = graph  # type: ignore[attr-defined]
            raise
        finally:
            ROOT.set(None)
            SETTINGS.outputs.clear()
    graph.invokes = list(mocks.invokes)
    return graph
