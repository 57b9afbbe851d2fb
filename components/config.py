"""The one typed model of the stack configuration (namespace ``s3-prefix-keys:``).

The Pulumi program, the policy pack's offline run, the local sandbox and the ``ops``
CLI all load configuration through this module, so a value that one of them accepts
is accepted by all of them, and every error reads the same everywhere: it names the
config path in ``pulumi config set --path`` syntax and says how to fix it.

Validation runs before any resource is registered (``load_pulumi_config`` is the
first thing ``__main__.py`` calls), because a half-registered graph built from a bad
mapping is worse than no preview at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from enforcer.arns import KeyArnProblem, check_key_arn, region_of_key_arn

NAMESPACE = "s3-prefix-keys"

# CloudWatch Logs accepts only these retention values; anything else fails at deploy.
LOG_RETENTION_DAYS = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
)

_PLAIN_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")


class ConfigError(ValueError):
    """Invalid stack configuration; ``problems`` holds one line per offending path."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "invalid s3-prefix-keys configuration:\n" + "\n".join(f"  - {p}" for p in problems)
        )


class StackFileError(ConfigError):
    """The stack file itself cannot be read (missing, not YAML, not a mapping): one
    line naming the file and the fix, with no "invalid configuration" preamble, since
    there is no configuration to judge yet."""

    def __init__(self, problem: str):
        super().__init__([problem])
        self.args = (problem,)

    def __str__(self) -> str:
        return self.problems[0]


def config_path(*segments: str | int) -> str:
    """Render a path the way ``pulumi config set --path`` parses it.

    Segments with characters other than letters, digits, ``-`` and ``_`` (a prefix's
    ``/``, a dotted bucket name) must be quoted as ``["..."]``; pulumi would otherwise
    split ``my.bucket`` into two keys.
    """
    out = ""
    for seg in segments:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif _PLAIN_SEGMENT.match(seg):
            out += f".{seg}" if out else seg
        else:
            out += f"[{json.dumps(seg)}]"
    return out


def _key_arn_error(problem: KeyArnProblem, value: str) -> PydanticCustomError:
    fixes = {
        KeyArnProblem.ALIAS: (
            "is a key alias; S3 resolves aliases in the requester's account, so a writer in "
            "another account would encrypt under its own key. Use the full key ARN "
            "(arn:aws:kms:<region>:<account>:key/<key-id>; `aws kms describe-key --key-id {value}` prints it)"
        ),
        KeyArnProblem.KEY_ID: (
            "is a bare key ID; S3 would resolve it in the requester's account. Use the full key ARN "
            "(arn:aws:kms:<region>:<account>:key/{value})"
        ),
        KeyArnProblem.AWS_MANAGED_S3: (
            "is the AWS managed key aws/s3, whose policy cannot be edited and which no other account "
            "can use; create a customer managed key per tenant and use its ARN"
        ),
        KeyArnProblem.NOT_A_KEY_ARN: (
            "is not a KMS key ARN; expected arn:<partition>:kms:<region>:<account>:key/<key-id>"
        ),
    }
    return PydanticCustomError("key_arn", "'{value}' " + fixes[problem], {"value": value})


def _key_arn_in_context(value: str, info: ValidationInfo) -> str:
    return _validate_key_arn(value, info.context)


def _validate_key_arn(value: str, info_context: Mapping[str, Any] | None) -> str:
    problem = check_key_arn(value)
    region = (info_context or {}).get("region")
    if problem is not None:
        raise _key_arn_error(problem, value)
    key_region = region_of_key_arn(value)
    if region and key_region != region:
        raise PydanticCustomError(
            "key_region",
            "'{value}' is in region {key_region} but the stack deploys to {region}; S3 can only use a "
            "KMS key in the bucket's region. Use a key (or a multi-Region replica) in {region}",
            {"value": value, "key_region": key_region, "region": region},
        )
    return value


def prefix_problem(prefix: str) -> str | None:
    """Why a mapping prefix is unusable, or None. Shared with the sandbox and ``ops``."""
    if prefix == "" or prefix.strip() == "":
        return (
            "is empty; a whole-bucket key belongs in defaultKmsKeyArn (the bucket's default "
            "encryption), not in a prefix mapping"
        )
    if prefix.startswith("/"):
        return "starts with '/'; S3 keys have no leading slash, so it would match nothing. Drop the '/'"
    if "*" in prefix or "?" in prefix:
        return "contains a wildcard; mappings are literal S3 key prefixes (longest match wins)"
    if len(prefix.encode()) > 1024:
        return "is longer than the 1024-byte S3 key limit"
    return None


def bucket_name_problem(name: str) -> str | None:
    if name.endswith("--x-s3") or name.endswith("--table-s3"):
        return (
            "is a directory (or table) bucket; those take one customer managed key for the bucket's "
            "whole lifetime and no per-object override, so per-prefix keys cannot apply. Map a "
            "general purpose bucket instead"
        )
    # The one S3 bucket rule (length, characters, shape: an IP address, reserved
    # prefixes and suffixes) lives with the other AWS name rules; imported here because
    # components.names imports this module.
    from components.names import RULES, S3_BUCKET, name_problem

    problem = name_problem(S3_BUCKET, name)
    if problem:
        detail = problem.removeprefix(f"{RULES[S3_BUCKET].what} {name!r} ")
        return f"is not a valid S3 bucket name: it {detail}; give the bucket's name as S3 lists it"
    return None


def _check(problem_of, what):
    def check(value: str) -> str:
        problem = problem_of(value)
        if problem:
            raise PydanticCustomError("name", what + " '{value}' " + problem, {"value": value})
        return value

    return check


Prefix = Annotated[str, AfterValidator(_check(prefix_problem, "prefix"))]
BucketName = Annotated[str, AfterValidator(_check(bucket_name_problem, "bucket"))]
# A type, not a field validator, so that an error in a list names its index
# (sourceKeyArns[1]), and every key field checks the same way.
KeyArn = Annotated[str, AfterValidator(_key_arn_in_context)]

# Bucket policies reject a statement without any of these (MalformedPolicy at deploy).
_STATEMENT_FIELDS = (("Effect",), ("Action", "NotAction"), ("Principal", "NotPrincipal"), ("Resource", "NotResource"))


def _bucket_policy_statement(st: dict[str, Any]) -> dict[str, Any]:
    missing = [names[0] for names in _STATEMENT_FIELDS if not any(n in st for n in names)]
    if missing:
        problem = "it has no " + ", ".join(missing)
    elif st["Effect"] not in ("Allow", "Deny"):
        problem = f"Effect is {st['Effect']!r}"
    else:
        return st
    raise PydanticCustomError(
        "statement",
        "not a bucket-policy statement ({problem}): each needs Effect (Allow|Deny), Action (or "
        "NotAction), Principal (or NotPrincipal) and Resource (or NotResource)",
        {"problem": problem},
    )


Statement = Annotated[dict[str, Any], AfterValidator(_bucket_policy_statement)]


class _Model(BaseModel):
    # Unknown fields are typos until proven otherwise: a misspelt `dualLayer` would
    # otherwise silently map a DSSE tenant to plain SSE-KMS.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class PrefixMapping(_Model):
    kms_key_arn: KeyArn = Field(alias="kmsKeyArn")
    dual_layer: bool = Field(default=False, alias="dualLayer")
    # None means "the sensible default for the type": on for SSE-KMS, off for DSSE
    # (S3 Bucket Keys are not supported with DSSE-KMS).
    bucket_key: bool | None = Field(default=None, alias="bucketKey")

    @model_validator(mode="after")
    def _bucket_key_with_dsse(self):
        if self.dual_layer and self.bucket_key:
            raise PydanticCustomError(
                "bucket_key_dsse",
                "bucketKey: true cannot be combined with dualLayer: true; S3 Bucket Keys are not "
                "supported for DSSE-KMS. Remove bucketKey or set it to false",
            )
        return self

    @property
    def sse_type(self) -> str:
        return "aws:kms:dsse" if self.dual_layer else "aws:kms"

    @property
    def bucket_key_enabled(self) -> bool:
        return (not self.dual_layer) if self.bucket_key is None else self.bucket_key


class BucketConfig(_Model):
    prefixes: dict[Prefix, PrefixMapping]
    notification: Literal["sqs", "eventbridge"] = "sqs"
    # A bucket's notification configuration is one document: managing it replaces
    # every route another tool put there. False leaves it to its owner, who must add
    # the route (docs/deploy.md says what); the queue policy and rule are still made.
    manage_notification: bool = Field(default=True, alias="manageNotification")
    strict: bool = False
    policy_statements: list[Statement] = Field(default_factory=list, alias="policyStatements")
    block_sse_c: bool = Field(default=False, alias="blockSseC")
    default_kms_key_arn: KeyArn | None = Field(default=None, alias="defaultKmsKeyArn")
    old_version_action: Literal["delete", "keep"] | None = Field(default=None, alias="oldVersionAction")

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, v: dict[str, PrefixMapping]):
        if not v:
            raise PydanticCustomError(
                "no_prefixes",
                "a configured bucket needs at least one prefix mapping; add "
                "prefixes[\"<prefix>/\"].kmsKeyArn or remove the bucket",
            )
        return v

    @model_validator(mode="after")
    def _block_sse_c_needs_default_key(self):
        if self.block_sse_c and not self.default_kms_key_arn:
            raise PydanticCustomError(
                "block_sse_c",
                "blockSseC lives in the bucket's encryption configuration, which this stack only "
                "manages when defaultKmsKeyArn is set; set defaultKmsKeyArn too, or drop blockSseC",
            )
        return self

    @model_validator(mode="after")
    def _strict_needs_disjoint_prefixes(self):
        # Strict mode denies PutObject on `<prefix>*` unless the request names that
        # prefix's key. IAM resources cannot exclude a nested prefix, so the deny for
        # `a/*` would also reject every correct write to `a/b/` (mapped to another key).
        if not self.strict:
            return self
        nested = sorted(
            (outer, inner)
            for outer in self.prefixes
            for inner in self.prefixes
            if inner != outer and inner.startswith(outer)
        )
        if nested:
            outer, inner = nested[0]
            raise PydanticCustomError(
                "strict_nested",
                "strict: true cannot be used with nested prefixes ('{inner}' is inside '{outer}'): the "
                "bucket policy's deny for '{outer}*' would also reject writes to '{inner}' that name its "
                "own key. Map disjoint prefixes, or set strict: false",
                {"outer": outer, "inner": inner},
            )
        return self


class LambdaSettings(_Model):
    memory_mb: int = Field(default=512, alias="memoryMb", ge=128, le=10240)
    timeout_seconds: int = Field(default=120, alias="timeoutSeconds", ge=10, le=900)
    batch_size: int = Field(default=10, alias="batchSize", ge=1, le=10000)
    batching_window_seconds: int = Field(default=1, alias="batchingWindowSeconds", ge=0, le=300)
    max_concurrency: int = Field(default=10, alias="maxConcurrency", ge=2, le=1000)

    @model_validator(mode="after")
    def _window_for_large_batches(self):
        # Lambda rejects batch sizes above 10 for SQS unless a batching window is set.
        if self.batch_size > 10 and self.batching_window_seconds < 1:
            raise PydanticCustomError(
                "batch_window",
                "batchSize above 10 needs batchingWindowSeconds >= 1 (an SQS event source rule); "
                "set lambda.batchingWindowSeconds",
            )
        return self


class StackConfig(_Model):
    region: str = Field(description="aws:region of the stack; not in the project namespace")
    buckets: dict[BucketName, BucketConfig] = Field(default_factory=dict)
    alert_email: str | None = Field(default=None, alias="alertEmail")
    journal_retention_days: int = Field(default=90, alias="journalRetentionDays", ge=1, le=3650)
    log_group_retention_days: int = Field(default=30, alias="logGroupRetentionDays")
    retain_log_table: bool = Field(default=False, alias="retainLogTable")
    lambda_settings: LambdaSettings = Field(default_factory=LambdaSettings, alias="lambda")
    max_receive_count: int = Field(default=5, alias="maxReceiveCount", le=1000)
    source_key_arns: list[KeyArn] = Field(default_factory=list, alias="sourceKeyArns")
    old_version_action: Literal["delete", "keep"] = Field(default="delete", alias="oldVersionAction")
    # IAM's "managed policies attached per role" is 10 unless AWS raised it (to at
    # most 20); set this after a raise, so the grants may use the room.
    iam_managed_policies_per_role: int = Field(default=10, alias="iamManagedPoliciesPerRole", ge=1, le=20)
    # The exposure alarm fires when p99 of the seconds an object sat under the wrong key
    # passes this. Seconds are normal (batching window plus one re-key); the default sits
    # above one redelivery at the default timeout (6 x 120 s visibility), so a single
    # retried message does not page but a backlog does. At most 14 days: SQS keeps no
    # message longer (MessageRetentionPeriod's maximum, API_SetQueueAttributes), so no
    # event is processed later than that.
    exposure_alarm_seconds: int = Field(default=900, alias="exposureAlarmSeconds", ge=1, le=14 * 24 * 3600)
    demo: bool = False

    @field_validator("alert_email")
    @classmethod
    def _email(cls, v: str | None):
        if v is not None and not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", v):
            raise PydanticCustomError("email", "'{v}' is not an email address", {"v": v})
        return v

    @field_validator("log_group_retention_days")
    @classmethod
    def _retention(cls, v: int):
        if v not in LOG_RETENTION_DAYS:
            raise PydanticCustomError(
                "retention",
                "{v} is not a CloudWatch Logs retention value; use one of {allowed}",
                {"v": v, "allowed": ", ".join(map(str, LOG_RETENTION_DAYS))},
            )
        return v

    @field_validator("max_receive_count")
    @classmethod
    def _receives(cls, v: int):
        if v < 2:
            raise PydanticCustomError(
                "max_receive",
                "maxReceiveCount {v} sends a message to the DLQ after its first failure, so a "
                "throttled KMS call is never retried; use 2 or more (default 5)",
                {"v": v},
            )
        return v

    @property
    def lambda_(self) -> LambdaSettings:
        return self.lambda_settings


# ---------------------------------------------------------------------------
# Loading


_LOC_ALIASES = {"lambda_settings": "lambda"}


def _render_loc(loc: Iterable[str | int]) -> str:
    # pydantic reports a bad dict key at (..., key, "[key]"); the key is the path.
    parts = [_LOC_ALIASES.get(p, p) if isinstance(p, str) else p for p in loc if p != "[key]"]
    return config_path(*parts)


def _fix_hint(path: str, err: dict) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"unknown field; check the spelling or remove it (`pulumi config rm --path '{NAMESPACE}:{path}'`)"
    if kind == "missing":
        return f"required; set it with `pulumi config set --path '{NAMESPACE}:{path}' <value>`"
    return err["msg"].removeprefix("Value error, ")


def validate(raw: Mapping[str, Any], region: str | None) -> StackConfig:
    """Validate the namespace's values (keys without the ``s3-prefix-keys:`` prefix)."""
    if not region:
        raise ConfigError(["aws:region: required; set it with `pulumi config set aws:region <region>`"])
    data = dict(raw)
    if "region" in data:
        raise ConfigError(
            [f"{NAMESPACE}:region: unknown field; the region comes from aws:region"]
        )
    data["region"] = region
    try:
        config = StackConfig.model_validate(data, context={"region": region})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = _render_loc(err["loc"])
            problems.append(f"{NAMESPACE}:{path}: {_fix_hint(path, err)}")
        raise ConfigError(problems) from None
    # A stack whose documents cannot fit AWS's quotas even at the coarsest scope is
    # refused here, before any resource is registered (components/sizing.py).
    from components.sizing import quota_problems

    problems = quota_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def _decode(value: Any) -> Any:
    # `pulumi config set --path` stores structured values; the engine hands them to
    # the program as JSON strings, plain values as strings.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def load_pulumi_config() -> StackConfig:
    """Read and validate the running Pulumi stack's configuration."""
    from pulumi.runtime.config import get_config_env

    env = get_config_env()
    raw = {
        k.split(":", 1)[1]: _decode(v) for k, v in env.items() if k.startswith(f"{NAMESPACE}:")
    }
    return validate(raw, env.get("aws:region"))


def read_stack_file(path: str | Path) -> dict[str, Any]:
    """The ``config:`` map of a ``Pulumi.<stack>.yaml``, with duplicate keys rejected.

    YAML loaders keep the last of two equal keys without a word; for a prefix mapping
    that silently drops a tenant, so duplicates are an error naming the key.
    """
    # Only the CLI-less readers (sandbox, ops, the policy check, the mocks) need this:
    # the Pulumi CLI rejects a stack file with duplicate keys itself, before the
    # program runs, so load_pulumi_config never sees one.
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="safe", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(Path(path).read_text(encoding="utf-8")) or {}
    except DuplicateKeyError as exc:
        raise StackFileError(f"{path}: duplicate key {exc.problem}; each prefix may be mapped once") from None
    except FileNotFoundError:
        raise StackFileError(f"{path}: no such stack file; create it with `pulumi stack init` or pass --stack") from None
    except IsADirectoryError:
        raise StackFileError(f"{path}: is a directory, not a stack file; pass another --stack") from None
    except UnicodeDecodeError:
        raise StackFileError(f"{path}: not a text file (not UTF-8); restore the stack file from version control") from None
    except YAMLError as exc:
        raise StackFileError(yaml_syntax_problem(path, exc)) from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(doc, dict) or not isinstance(config, dict | None):
        raise StackFileError(
            f"{path}: not a Pulumi stack file (expected a mapping with a `config:` mapping); "
            "fix the file, e.g. from `pulumi config` output or version control"
        )
    return dict(config or {})


def yaml_syntax_problem(path: str | Path, exc: Exception) -> str:
    """One line for a YAML syntax error: the file, where, what, and the fix."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
    return f"{path}: not valid YAML{where}: {what}; correct the YAML there and run again"


def load_stack_file(path: str | Path) -> StackConfig:
    """Validate a ``Pulumi.<stack>.yaml`` without the Pulumi CLI (sandbox, ops, policy check)."""
    cfg = read_stack_file(path)
    raw = {}
    for key, value in cfg.items():
        if key.startswith(f"{NAMESPACE}:"):
            raw[key.split(":", 1)[1]] = _unsecret(value)
    return validate(raw, cfg.get("aws:region"))


def _unsecret(value: Any) -> Any:
    # Encrypted values cannot be read without the stack's secrets provider; keep a
    # placeholder so validation still sees the field and nothing secret is printed.
    if isinstance(value, Mapping):
        if set(value) == {"secure"}:
            return "[secret]"
        return {k: _unsecret(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsecret(v) for v in value]
    return value


def stack_file(stack: str, root: str | Path | None = None) -> Path:
    return Path(root or Path(__file__).resolve().parent.parent) / f"Pulumi.{stack}.yaml"


# ---------------------------------------------------------------------------
# Mapping rows: the same rows for TableItems (Pulumi), the sandbox and `ops`.


@dataclass(frozen=True)
class MappingRow:
    bucket: str
    prefix: str
    kms_key_arn: Any  # str, or a pulumi Output for keys created in the same stack
    dual_layer: bool
    bucket_key: bool
    old_version_action: str | None = None

    def item(self, kms_key_arn: str | None = None) -> dict[str, dict[str, Any]]:
        """DynamoDB-JSON item, the schema of the original sample plus two optional fields."""
        item: dict[str, dict[str, Any]] = {
            "bucket_name": {"S": self.bucket},
            "prefix": {"S": self.prefix},
            "kms_key_arn": {"S": kms_key_arn if kms_key_arn is not None else self.kms_key_arn},
            "dual_layer_encryption": {"BOOL": self.dual_layer},
            "bucket_key_enabled": {"BOOL": self.bucket_key},
        }
        if self.old_version_action:
            item["old_version_action"] = {"S": self.old_version_action}
        return item


def mapping_rows(bucket: str, bc: BucketConfig) -> list[MappingRow]:
    return [
        MappingRow(
            bucket=bucket,
            prefix=prefix,
            kms_key_arn=m.kms_key_arn,
            dual_layer=m.dual_layer,
            bucket_key=m.bucket_key_enabled,
            old_version_action=bc.old_version_action,
        )
        for prefix, m in sorted(bc.prefixes.items())
    ]


def all_mapping_rows(config: StackConfig) -> list[MappingRow]:
    return [row for name, bc in sorted(config.buckets.items()) for row in mapping_rows(name, bc)]


def notification_prefixes(prefixes: Iterable[str]) -> list[str]:
    """Mapped prefixes with nested ones folded into their parent.

    S3 rejects a notification configuration whose prefix filters overlap for the same
    event type, and ``a/`` already covers ``a/b/``.
    """
    out: list[str] = []
    for p in sorted(set(prefixes)):
        if not any(p.startswith(kept) for kept in out):
            out.append(p)
    return out


# ---------------------------------------------------------------------------
# The demo: one definition for the Pulumi DemoBucket and the sandbox.


@dataclass(frozen=True)
class DemoSpec:
    """The original sample's demo: two buckets, three keys, prefix3 on DSSE."""

    buckets: tuple[tuple[str, bool], ...] = (("demo", False), ("demo-versioned", True))
    # prefix -> (key name, dual layer)
    prefixes: tuple[tuple[str, str, bool], ...] = (
        ("prefix1/", "prefix1", False),
        ("prefix2/", "prefix2", False),
        ("prefix3/", "prefix3", True),
    )
    unmapped_prefix: str = "prefix4/"

    @property
    def key_names(self) -> list[str]:
        return [k for _, k, _ in self.prefixes]

    def bucket_config(self, key_arns: Mapping[str, Any]) -> dict[str, Any]:
        """The prefixes block a demo bucket gets, given key name -> key ARN."""
        return {
            prefix: {"kmsKeyArn": key_arns[key], "dualLayer": dsse}
            for prefix, key, dsse in self.prefixes
        }


DEMO = DemoSpec()
