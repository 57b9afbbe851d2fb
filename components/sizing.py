"""What the program is about to register, measured against AWS's quotas before anything is registered.

The same functions build the documents here and in the components: config validation
(``quota_problems``), the components' choice of scope, and the tests all go through
``measure``. Values the program does not know yet (demo bucket names, key ARNs, the
partition, ARNs of resources still to be created) stand in at their documented
maximal length (``StandIns``), so a document that fits here fits once they are known.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from components import names
from components.config import DEMO, BucketConfig, PrefixMapping, StackConfig, notification_prefixes
from components.grant_plan import BucketAccess, GrantInputs, GrantPlan, GrantsDoNotFit, plan_grants
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
    Usage,
    compact_json,
    condition_count,
    environment_bytes,
    eventbridge_rules_limit,
    iam_characters,
    max_actions_per_statement,
    policy_bytes,
    principal_count,
)
from enforcer.arns import account_of_key_arn

# Documented maxima of values the program learns only at deploy time. Names take
# their longest legal length from the one table of name rules (components/names.py).
BUCKET_NAME_MAX = names.RULES[names.S3_BUCKET].max_length
QUEUE_NAME_MAX = names.RULES[names.SQS_QUEUE].max_length
ROLE_NAME_MAX = names.RULES[names.IAM_ROLE].max_length
TABLE_NAME_MAX = names.RULES[names.DYNAMODB_TABLE].max_length
TOPIC_NAME_MAX = names.RULES[names.SNS_TOPIC].max_length
FUNCTION_NAME_MAX = names.RULES[names.LAMBDA_FUNCTION].max_length
ACCOUNT_ID_LENGTH = 12
# A key ID is a UUID or mrk- and 32 hex digits: 36 characters either way
# (https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id-key-id).
KEY_ID_LENGTH = 36
# RoleId is not a name the program sets: up to 128 characters (IAM API reference, Role).
ROLE_ID_MAX = 128


@cache
def _partitions() -> list[dict[str, Any]]:
    # botocore's own partition data: every partition's name and DNS suffix.
    from botocore.loaders import Loader

    return Loader().load_data("endpoints")["partitions"]


def partition_max() -> int:
    return max(len(p["partition"]) for p in _partitions())


def dns_suffix_max() -> int:
    return max(len(p["dnsSuffix"]) for p in _partitions())


def key_arn_max(region: str) -> int:
    return len(f"arn::kms:{region}::key/") + partition_max() + ACCOUNT_ID_LENGTH + KEY_ID_LENGTH


def queue_arn_max(region: str) -> int:
    return len(f"arn::sqs:{region}::") + partition_max() + ACCOUNT_ID_LENGTH + QUEUE_NAME_MAX


class Unknown:
    """A value config validation cannot know (it is an Output in the program)."""

    def __repr__(self) -> str:
        return "<unknown>"


class StandIns:
    """Unknown values as unique tokens of their maximal length, substituted once known.

    The same object (one demo key used by two buckets) gets the same token, so a
    document deduplicates it the same way before and after substitution.
    """

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.values: list[Any] = []

    def of(self, value: Any, max_length: int) -> str:
        if isinstance(value, str):
            return value
        for token, known in zip(self.tokens, self.values, strict=True):
            if known is value:
                return token
        token = f"<{len(self.tokens)}>"
        token += "~" * max(0, max_length - len(token))
        self.tokens.append(token)
        self.values.append(value)
        return token

    def substitute(self, text: str, resolved: Sequence[str]) -> str:
        """``text`` (compact JSON) with each token replaced by its value, JSON-escaped."""
        for token, value in sorted(zip(self.tokens, resolved, strict=True), key=lambda tv: -len(tv[0])):
            text = text.replace(token, compact_json(value)[1:-1])
        return text


@dataclass(frozen=True)
class StackValues:
    """The stack-wide values documents are built from: strings, or Outputs/``Unknown``."""

    partition: Any
    dns_suffix: Any
    account_id: Any
    queue_arn: Any
    role_arn: Any
    principal_id: Any
    mapping_table: Any
    log_table: Any
    topic_arn: Any

    @classmethod
    def unknown(cls) -> StackValues:
        return cls(*(Unknown() for _ in range(9)))


def grant_inputs(targets: Sequence[Any], config: StackConfig, values: StackValues, stand: StandIns) -> GrantInputs:
    """The role's data grants' inputs: every target bucket, its prefixes, every key it meets."""
    partition = stand.of(values.partition, partition_max())
    region = config.region
    buckets = []
    keys: list[str] = []
    accounts: list[str] = []

    def key(arn: Any) -> None:
        token = stand.of(arn, key_arn_max(region))
        keys.append(token)
        # Keys this stack creates (the demo's) are in its own account.
        accounts.append(account_of_key_arn(arn) if isinstance(arn, str) else stand.of(values.account_id, ACCOUNT_ID_LENGTH))

    for t in targets:
        bc: BucketConfig = t.config
        old_version_action = bc.old_version_action or config.old_version_action
        buckets.append(
            BucketAccess(
                bucket=stand.of(t.bucket, BUCKET_NAME_MAX),
                prefixes=tuple(sorted(bc.prefixes)),
                delete_old_versions=old_version_action == "delete",
            )
        )
        for p in sorted(bc.prefixes):
            key(bc.prefixes[p].kms_key_arn)
        if bc.default_kms_key_arn:
            key(bc.default_kms_key_arn)
    for arn in config.source_key_arns:
        key(arn)
    return GrantInputs(
        partition=partition,
        dns_suffix=stand.of(values.dns_suffix, dns_suffix_max()),
        region=region,
        buckets=tuple(buckets),
        key_arns=tuple(keys),
        key_accounts=tuple(accounts),
    )


def demo_targets(config: StackConfig) -> list[Any]:
    """The demo's buckets as the program registers them, names and keys unknown."""
    from components.enforcer import BucketTarget

    if not config.demo:
        return []
    keys = {name: Unknown() for name in DEMO.key_names}
    prefixes = {
        prefix: PrefixMapping.model_construct(kms_key_arn=raw["kmsKeyArn"], dual_layer=raw["dualLayer"], bucket_key=None)
        for prefix, raw in DEMO.bucket_config(keys).items()
    }
    bc = BucketConfig.model_construct(prefixes=prefixes)
    return [BucketTarget(f"demo_{name}", Unknown(), bc) for name, _ in DEMO.buckets]


def config_targets(config: StackConfig) -> list[Any]:
    from components.enforcer import BucketTarget

    return [BucketTarget(name, name, bc) for name, bc in sorted(config.buckets.items())]


@dataclass
class Sizing:
    usages: list[Usage] = field(default_factory=list)
    grants: GrantPlan | None = None
    queue_scope: str = ""
    notes: list[str] = field(default_factory=list)  # coarser scopes chosen, with the reason
    problems: list[str] = field(default_factory=list)  # what cannot fit: each names quota, figure and fix

    def over(self) -> list[Usage]:
        return [u for u in self.usages if not u.fits]


def measure(config: StackConfig, targets: Sequence[Any] | None = None) -> Sizing:
    """Every quota-bound document of the stack, with unknowns at their maxima."""
    from components.access_policies import core_role_policy, lambda_trust_policy, queue_policy_plan
    from components.enforcer import eventbridge_rule_name, eventbridge_rule_prefix, function_environment
    from components.event_filter import enforcer_filter_patterns, eventbridge_rule_pattern, filter_criteria
    from components.integration import bucket_policy_document

    if targets is None:
        targets = demo_targets(config) + config_targets(config)
    values = StackValues.unknown()
    stand = StandIns()
    sizing = Sizing()
    partition = stand.of(values.partition, partition_max())
    account = stand.of(values.account_id, ACCOUNT_ID_LENGTH)
    region = config.region

    def arn(service: str, resource_max: int, value: Any) -> str:
        return stand.of(value, len(f"arn::{service}:{region}::") + partition_max() + ACCOUNT_ID_LENGTH + resource_max)

    # -- the role: trust policy, the inline core policy, the managed data grants
    sizing.usages.append(Usage(IAM_TRUST_POLICY, "enforcer role trust policy", iam_characters(lambda_trust_policy())))
    core = core_role_policy(
        log_group_arn=arn("logs", len("log-group:/aws/lambda/") + FUNCTION_NAME_MAX, Unknown()),
        mapping_table_arn=arn("dynamodb", len("table/") + TABLE_NAME_MAX, values.mapping_table),
        log_table_arn=arn("dynamodb", len("table/") + TABLE_NAME_MAX, values.log_table),
        topic_arn=arn("sns", TOPIC_NAME_MAX, values.topic_arn),
        topic_key_arn=stand.of(Unknown(), key_arn_max(region)),
        queue_arn=arn("sqs", QUEUE_NAME_MAX, values.queue_arn),
    )
    sizing.usages.append(Usage(IAM_INLINE_PER_ROLE, "enforcer role inline policies", iam_characters(core)))
    max_policies = config.iam_managed_policies_per_role
    try:
        plan = plan_grants(grant_inputs(targets, config, values, stand), max_policies)
    except GrantsDoNotFit as exc:
        sizing.problems.append(str(exc))
    else:
        sizing.grants = plan
        sizing.usages.append(
            Usage(IAM_MANAGED_PER_ROLE, "enforcer role", len(plan.documents), limit=max_policies)
        )
        sizing.usages.append(Usage(IAM_MANAGED_PER_ACCOUNT, "this stack's share", len(plan.documents)))
        for i, doc in enumerate(plan.documents):
            sizing.usages.append(Usage(IAM_MANAGED_POLICY_SIZE, f"enforcer grants policy {i}", iam_characters(doc)))
        if plan.coarsened:
            sizing.notes.append(plan.explain())

    # -- the queue policy
    queue = queue_policy_plan(
        queue_arn=stand.of(values.queue_arn, queue_arn_max(region)),
        partition=partition,
        account_id=account,
        region=region,
        targets=targets,
        bucket_name=lambda b: stand.of(b, BUCKET_NAME_MAX),
        rule_name=eventbridge_rule_name,
        rule_prefix=eventbridge_rule_prefix(),
    )
    sizing.queue_scope = queue.scope
    if queue.note:
        sizing.notes.append(queue.note)
    doc = queue.document
    sizing.usages += [
        Usage(SQS_POLICY_BYTES, "enforcer queue policy", policy_bytes(doc)),
        Usage(SQS_POLICY_STATEMENTS, "enforcer queue policy", len(doc["Statement"])),
        Usage(SQS_POLICY_PRINCIPALS, "enforcer queue policy", principal_count(doc)),
        Usage(SQS_POLICY_CONDITIONS, "enforcer queue policy", condition_count(doc)),
        Usage(SQS_ACTIONS_PER_STATEMENT, "enforcer queue policy", max_actions_per_statement(doc)),
    ]

    # -- per bucket: its policy (strict mode, policyStatements) and its EventBridge rule
    role_arn = stand.of(values.role_arn, len("arn::iam:::role/") + partition_max() + ACCOUNT_ID_LENGTH + ROLE_NAME_MAX)
    for t in targets:
        bc: BucketConfig = t.config
        bucket = stand.of(t.bucket, BUCKET_NAME_MAX)
        if bc.strict or bc.policy_statements:
            key_arns = [stand.of(bc.prefixes[p].kms_key_arn, key_arn_max(region)) for p in sorted(bc.prefixes)]
            policy = bucket_policy_document(
                partition=partition, bucket=bucket, config=bc, key_arns=key_arns, enforcer_role_arn=role_arn
            )
            sizing.usages.append(Usage(S3_BUCKET_POLICY_BYTES, f"bucket policy of {t.logical_name}", policy_bytes(policy)))
        if bc.notification == "eventbridge":
            pattern = eventbridge_rule_pattern(bucket, notification_prefixes(bc.prefixes))
            sizing.usages.append(
                Usage(EVENTBRIDGE_PATTERN, f"rule {eventbridge_rule_name(t.logical_name)}", len(compact_json(pattern)))
            )

    rules = sum(1 for t in targets if t.config.notification == "eventbridge")
    sizing.usages.append(
        Usage(EVENTBRIDGE_RULES, "default event bus (this stack's share)", rules, limit=eventbridge_rules_limit(region))
    )

    # -- the function: its environment and its event source mapping's filters
    # AWS:<role unique id>:<function name>, each at its maximum.
    principal = f"AWS:{stand.of(Unknown(), ROLE_ID_MAX)}:{stand.of(Unknown(), FUNCTION_NAME_MAX)}"
    env = function_environment(
        config,
        mapping_table=stand.of(values.mapping_table, TABLE_NAME_MAX),
        log_table=stand.of(values.log_table, TABLE_NAME_MAX),
        topic_arn=arn("sns", TOPIC_NAME_MAX, values.topic_arn),
        principal_id=principal,
    )
    sizing.usages.append(Usage(LAMBDA_ENVIRONMENT_BYTES, "enforcer function environment", environment_bytes(env)))
    filters = filter_criteria(enforcer_filter_patterns(principal))["Filters"]
    sizing.usages.append(Usage(ESM_FILTERS, "enforcer queue event source mapping", len(filters)))
    sizing.usages += [
        Usage(ESM_FILTER_PATTERN, f"event source mapping filter {i}", len(f["Pattern"])) for i, f in enumerate(filters)
    ]

    for u in sizing.over():
        sizing.problems.append(f"{u.line()} ({u.quota.source}); {_fix(u)}")
    return sizing


def _fix(u: Usage) -> str:
    if u.quota is S3_BUCKET_POLICY_BYTES:
        return "fix: shorten policyStatements, or map fewer prefixes in strict mode"
    if u.quota is EVENTBRIDGE_RULES:
        return "fix: ask AWS to raise the rules per event bus, or use notification: sqs for some buckets"
    if u.quota is EVENTBRIDGE_PATTERN:
        return "fix: ask AWS to raise the event pattern size (up to 4,096) or map fewer, shorter prefixes on this bucket"
    return "fix: split the buckets over two stacks"


def quota_problems(config: StackConfig) -> list[str]:
    """What config validation refuses: documents that cannot fit even at the coarsest scope."""
    return measure(config).problems
