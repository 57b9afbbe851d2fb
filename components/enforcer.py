"""``Enforcer``: the queue, the function and everything around it, shared by all buckets.

It holds no S3 or KMS data access of its own: each ``BucketIntegration`` grants the
role exactly its bucket's mapped prefixes and keys, so removing a bucket from config
removes its grants too. What the Enforcer does need to know about the buckets is who
may send to its queue; that comes from the list of ``BucketTarget``s, so the single
queue policy is complete before any bucket notification is created (S3 validates the
queue policy when a notification is put).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pulumi
import pulumi_aws as aws

from components import names
from components.config import NAMESPACE, BucketConfig, StackConfig
from components.event_filter import enforcer_filter_patterns, filter_criteria
from components.packaging import (
    HANDLER,
    LAMBDA_ARCHITECTURE,
    LAMBDA_RUNTIME,
    dependency_closure,
    enforcer_code_archive,
    layer_archive,
    layer_description,
)
from components.quotas import compact_json
from enforcer.settings import GIB

ENFORCER_TYPE = f"{NAMESPACE}:index:Enforcer"

# The enforcer's own copies are large only for objects above S3's 5 GiB CopyObject
# limit; below it a single copy is cheaper than a multipart one.
MULTIPART_THRESHOLD_BYTES = 5 * GIB
MAPPING_CACHE_SECONDS = 60
# AWS guidance for SQS event sources: at least six times the function timeout (plus
# the batching window), so a message is not redelivered while a retry is running.
VISIBILITY_TIMEOUT_FACTOR = 6
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # the SQS maximum: time for a human to look
ALARM_PERIOD_SECONDS = 300


def stack_scoped_name(suffix: str, kind: str) -> str:
    """A physical name unique per stack: ``s3-prefix-keys-<stack>-<suffix>``, legal for
    ``kind`` (a ``components.names`` kind) whatever the stack is called."""
    return names.physical_name(kind, pulumi.get_stack(), suffix)


def eventbridge_rule_name(logical_name: str) -> str:
    """The EventBridge rule of an ``eventbridge``-mode bucket.

    A fixed name (not an autoname) so that the queue policy can name the rule's ARN
    before the rule exists; otherwise the queue policy would wait for the rules and the
    notifications for the queue policy, across components.
    """
    return stack_scoped_name(f"bucket-{logical_name}", names.EVENTBRIDGE_RULE)


def eventbridge_rule_prefix() -> str:
    """What every rule name of this stack starts with, however a long name is shortened."""
    return os.path.commonprefix([eventbridge_rule_name("a" * 64), eventbridge_rule_name("b" * 64)])


def policy_sid(text: str) -> str:
    """An IAM statement id (letters and digits only) that still reads like ``text``."""
    words = re.split(r"[^A-Za-z0-9]+", text)
    return "".join(w[:1].upper() + w[1:] for w in words if w) or "X"


@dataclass(frozen=True)
class BucketTarget:
    """One bucket the enforcer serves.

    ``logical_name`` names its resources (the config key; ``demo_<name>`` for demo
    buckets); ``bucket`` is its S3 name, an Output for buckets created in this stack;
    ``config`` its validated settings (for demo buckets, built from keys this stack
    creates, whose ARNs are Outputs).
    """

    logical_name: str
    bucket: pulumi.Input[str]
    config: BucketConfig


def queue_policy_document(
    *,
    queue_arn: str,
    partition: str,
    account_id: str,
    region: str,
    s3_buckets: Sequence[str],
    rule_names: Sequence[str],
    scope: Literal["senders", "account"] = "senders",
) -> dict[str, Any]:
    """TLS only; S3 from the mapped buckets, EventBridge from this stack's rules, SNS from this account.

    One statement per service, not per bucket: SQS allows 20 statements and 8,192
    bytes (``components.quotas``), which a statement per bucket passes at 19 buckets.
    At ``scope="account"``, chosen when even the list of bucket ARNs is too long, S3
    may send from any bucket of this account and EventBridge from any rule named
    after this stack; the engine still ignores every bucket that has no mapping.
    Anything else is kept out, because a body the event filters do not match is
    dropped by Lambda, not dead-lettered.
    """
    statements: list[dict[str, Any]] = [_deny_insecure_transport(queue_arn)]
    if s3_buckets:
        source = (
            {"ArnEquals": {"aws:SourceArn": sorted(f"arn:{partition}:s3:::{b}" for b in s3_buckets)}}
            if scope == "senders"
            else {"ArnLike": {"aws:SourceArn": f"arn:{partition}:s3:::*"}}
        )
        statements.append(
            {
                "Sid": "S3NotificationsOfMappedBuckets",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {**source, "StringEquals": {"aws:SourceAccount": account_id}},
            }
        )
    if rule_names:
        rule_arn = f"arn:{partition}:events:{region}:{account_id}:rule/"
        source = (
            {"ArnEquals": {"aws:SourceArn": sorted(rule_arn + r for r in rule_names)}}
            if scope == "senders"
            else {"ArnLike": {"aws:SourceArn": rule_arn + eventbridge_rule_prefix() + "*"}}
        )
        statements.append(
            {
                "Sid": "EventBridgeRulesOfThisStack",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": source,
            }
        )
    statements.append(
        {
            # Existing S3 -> SNS fan-outs in this account may subscribe the queue.
            "Sid": "SnsTopicsOfThisAccount",
            "Effect": "Allow",
            "Principal": {"Service": "sns.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
        }
    )
    return {"Version": "2012-10-17", "Statement": statements}


@dataclass(frozen=True)
class QueuePolicyPlan:
    document: dict[str, Any]
    scope: str
    note: str = ""  # why the coarser scope, with the figure


def queue_policy_plan(
    *,
    queue_arn: str,
    partition: str,
    account_id: str,
    region: str,
    targets: Sequence[BucketTarget],
    bucket_name: Callable[[Any], str],
) -> QueuePolicyPlan:
    """The finest queue policy inside SQS's quotas (``bucket_name`` renders a bucket, known or not)."""
    from components.quotas import SQS_POLICY_BYTES, policy_bytes

    kwargs = dict(
        queue_arn=queue_arn,
        partition=partition,
        account_id=account_id,
        region=region,
        s3_buckets=[bucket_name(t.bucket) for t in targets if t.config.notification == "sqs"],
        rule_names=[eventbridge_rule_name(t.logical_name) for t in targets if t.config.notification == "eventbridge"],
    )
    senders = queue_policy_document(**kwargs, scope="senders")
    size = policy_bytes(senders)
    if size <= SQS_POLICY_BYTES.limit:
        return QueuePolicyPlan(senders, "senders")
    note = (
        f"the enforcer queue policy lets S3 send from any bucket of this account and EventBridge from any rule of "
        f"this stack, because naming every sender takes {size:,} bytes and {SQS_POLICY_BYTES.describe()}"
    )
    return QueuePolicyPlan(queue_policy_document(**kwargs, scope="account"), "account", note)


def unique_sids(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Statement ids made unique (``my-bucket`` and ``my.bucket`` read alike)."""
    seen: Counter[str] = Counter()
    out = []
    for st in statements:
        sid = st.get("Sid")
        if sid is not None:
            seen[sid] += 1
            if seen[sid] > 1:
                st = {**st, "Sid": f"{sid}{seen[sid]}"}
        out.append(st)
    return out


def tls_only_queue_policy(queue_arn: str) -> dict[str, Any]:
    """The dead-letter queue's policy: nothing reads or writes it without TLS.

    No service sends to it; SQS moves messages there by the source queue's redrive.
    """
    return {"Version": "2012-10-17", "Statement": [_deny_insecure_transport(queue_arn)]}


def _deny_insecure_transport(queue_arn: str) -> dict[str, Any]:
    return {
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "sqs:*",
        "Resource": queue_arn,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def topic_key_policy(partition: str, account_id: str) -> dict[str, Any]:
    """The alert topic's key: the account administers it, CloudWatch may use it.

    CloudWatch alarms publish to an encrypted topic only if the key lets
    ``cloudwatch.amazonaws.com`` generate data keys; under ``alias/aws/sns`` (whose
    policy cannot be changed) alarm notifications are silently lost. Resource ``*``
    in a key policy means this key only.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AccountAdministersKey",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
                "Action": "kms:*",
                "Resource": "*",
            },
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
            },
        ],
    }


def core_role_policy(
    *,
    log_group_arn: str,
    mapping_table_arn: str,
    log_table_arn: str,
    topic_arn: str,
    topic_key_arn: str,
    queue_arn: str,
) -> dict[str, Any]:
    """Everything the function needs that is not a bucket's data."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnLogGroup",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group_arn}:*",
            },
            {"Sid": "ReadMappings", "Effect": "Allow", "Action": "dynamodb:Query", "Resource": mapping_table_arn},
            {
                "Sid": "WriteJournal",
                "Effect": "Allow",
                "Action": ["dynamodb:BatchWriteItem", "dynamodb:PutItem"],
                "Resource": log_table_arn,
            },
            {"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic_arn},
            {
                # The one KMS grant outside the integrations, and no data access: SNS
                # encrypts a message for a topic under a customer managed key with the
                # publisher's own KMS permissions, so without these every alert the
                # enforcer publishes fails (KMS access denied). The topic's key only.
                "Sid": "EncryptAlerts",
                "Effect": "Allow",
                "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
                "Resource": topic_key_arn,
            },
            {
                "Sid": "ConsumeQueue",
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                "Resource": queue_arn,
            },
        ],
    }


def lambda_trust_policy() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }


def function_environment(
    config: StackConfig, *, mapping_table: Any, log_table: Any, topic_arn: Any, principal_id: Any
) -> dict[str, Any]:
    """The contract of enforcer/settings.py; values are strings or Outputs."""
    return {
        "MAPPING_TABLE_NAME": mapping_table,
        "LOG_TABLE_NAME": log_table,
        "ALERT_TOPIC_ARN": topic_arn,
        "LOG_RETENTION_DAYS": str(config.journal_retention_days),
        "OLD_VERSION_ACTION": config.old_version_action,
        "ENFORCER_PRINCIPAL_ID": principal_id,
        "REKEY_METHOD": "auto",
        "MULTIPART_THRESHOLD_BYTES": str(MULTIPART_THRESHOLD_BYTES),
        "MAPPING_CACHE_SECONDS": str(MAPPING_CACHE_SECONDS),
    }


class EnforcerArgs:
    """The stack's validated config and the buckets whose events may reach the queue."""

    def __init__(self, config: StackConfig, targets: Sequence[BucketTarget] = ()):
        self.config = config
        self.targets = list(targets)


class Enforcer(pulumi.ComponentResource):
    def __init__(self, name: str, args: EnforcerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(ENFORCER_TYPE, name, None, opts)
        config = args.config
        settings = config.lambda_
        child = pulumi.ResourceOptions(parent=self)
        invoke_opts = pulumi.InvokeOutputOptions(parent=self)

        self.config = config
        self.region = config.region
        # Never hard-code "aws": the same program deploys to aws-cn and aws-us-gov.
        partition = aws.get_partition_output(opts=invoke_opts)
        self.partition: pulumi.Output[str] = partition.partition
        self.dns_suffix: pulumi.Output[str] = partition.dns_suffix
        self.account_id: pulumi.Output[str] = aws.get_caller_identity_output(opts=invoke_opts).account_id
        # Explicit, not autonamed: the principal id below needs it before the function
        # exists, and the log group must carry it in its name.
        self.function_name = stack_scoped_name("enforcer", names.LAMBDA_FUNCTION)

        # -- tables (schemas per enforcer/mapping.py and enforcer/journal.py)
        self.mapping_table = aws.dynamodb.Table(
            f"{name}-mappings",
            hash_key="bucket_name",
            range_key="prefix",
            attributes=[
                {"name": "bucket_name", "type": "S"},
                {"name": "prefix", "type": "S"},
            ],
            billing_mode="PAY_PER_REQUEST",
            point_in_time_recovery={"enabled": True},
            # No TTL here: a mapping row that expired would silently un-map a tenant.
            opts=child,
        )
        self.log_table = aws.dynamodb.Table(
            f"{name}-log",
            hash_key="s3_object_path",
            range_key="current_timestamp_utc",
            attributes=[
                {"name": "s3_object_path", "type": "S"},
                {"name": "current_timestamp_utc", "type": "S"},
            ],
            billing_mode="PAY_PER_REQUEST",
            point_in_time_recovery={"enabled": True},
            # The journal writes expires_at = now + journalRetentionDays.
            ttl={"attribute_name": "expires_at", "enabled": True},
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=config.retain_log_table),
        )

        # -- queues
        self.dead_letter_queue = aws.sqs.Queue(
            f"{name}-dlq",
            sqs_managed_sse_enabled=True,
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-queue",
            # SSE-SQS, not a KMS key: S3 and EventBridge cannot send to a queue under
            # the aws/sqs managed key, and a CMK would need their service principals.
            sqs_managed_sse_enabled=True,
            visibility_timeout_seconds=(
                VISIBILITY_TIMEOUT_FACTOR * settings.timeout_seconds + settings.batching_window_seconds
            ),
            redrive_policy=self.dead_letter_queue.arn.apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": config.max_receive_count})
            ),
            opts=child,
        )
        self.dead_letter_queue_policy = aws.sqs.QueuePolicy(
            f"{name}-dlq-policy",
            queue_url=self.dead_letter_queue.url,
            policy=self.dead_letter_queue.arn.apply(lambda arn: json.dumps(tls_only_queue_policy(arn))),
            opts=child,
        )
        self.queue_policy = aws.sqs.QueuePolicy(
            f"{name}-queue-policy",
            queue_url=self.queue.url,
            policy=self._queue_policy(args.targets),
            opts=child,
        )

        # -- alerts
        self.topic_key = aws.kms.Key(
            f"{name}-alerts-key",
            description=f"{NAMESPACE} ({pulumi.get_stack()}): encrypts the enforcer's alert topic",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(self.partition, self.account_id).apply(
                lambda v: json.dumps(topic_key_policy(v[0], v[1]))
            ),
            opts=child,
        )
        self.topic = aws.sns.Topic(
            f"{name}-alerts",
            kms_master_key_id=self.topic_key.arn,
            opts=child,
        )
        if config.alert_email:
            aws.sns.TopicSubscription(
                f"{name}-alerts-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=config.alert_email,
                opts=child,
            )

        # -- function
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            name=f"/aws/lambda/{self.function_name}",
            retention_in_days=config.log_group_retention_days,
            opts=child,
        )
        self.role = aws.iam.Role(
            f"{name}-role",
            description=f"{NAMESPACE} enforcer ({pulumi.get_stack()}); bucket grants are separate policies",
            assume_role_policy=compact_json(lambda_trust_policy()),
            opts=child,
        )
        self.core_policy = aws.iam.RolePolicy(
            f"{name}-core",
            role=self.role.id,
            policy=pulumi.Output.all(
                log_group_arn=self.log_group.arn,
                mapping_table_arn=self.mapping_table.arn,
                log_table_arn=self.log_table.arn,
                topic_arn=self.topic.arn,
                topic_key_arn=self.topic_key.arn,
                queue_arn=self.queue.arn,
            ).apply(lambda v: compact_json(core_role_policy(**v))),
            opts=child,
        )
        # S3 writes events caused by the function's own copies with this principal;
        # the event filters and the engine use it to recognise them.
        self.principal_id = pulumi.Output.concat("AWS:", self.role.unique_id, ":", self.function_name)

        distributions = dependency_closure()
        self.layer = aws.lambda_.LayerVersion(
            f"{name}-dependencies",
            layer_name=stack_scoped_name("enforcer-deps", names.LAMBDA_LAYER),
            description=layer_description(distributions),
            code=layer_archive(distributions),
            compatible_runtimes=[LAMBDA_RUNTIME],
            compatible_architectures=[LAMBDA_ARCHITECTURE],
            opts=child,
        )
        self.function = aws.lambda_.Function(
            f"{name}-function",
            name=self.function_name,
            role=self.role.arn,
            runtime=LAMBDA_RUNTIME,
            architectures=[LAMBDA_ARCHITECTURE],
            handler=HANDLER,
            code=enforcer_code_archive(),
            layers=[self.layer.arn],
            memory_size=settings.memory_mb,
            timeout=settings.timeout_seconds,
            environment={
                "variables": function_environment(
                    config,
                    mapping_table=self.mapping_table.name,
                    log_table=self.log_table.name,
                    topic_arn=self.topic.arn,
                    principal_id=self.principal_id,
                )
            },
            # The log group first, or Lambda creates it without retention; the core
            # policy first, or the first invocations cannot log or read mappings.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.log_group, self.core_policy]),
        )
        self.event_source_mapping = aws.lambda_.EventSourceMapping(
            f"{name}-queue-events",
            event_source_arn=self.queue.arn,
            function_name=self.function.arn,
            batch_size=settings.batch_size,
            maximum_batching_window_in_seconds=settings.batching_window_seconds,
            scaling_config={"maximum_concurrency": settings.max_concurrency},
            function_response_types=["ReportBatchItemFailures"],
            # Drop the function's own copy events before they cost an invocation. The
            # principal is known only once the role exists, hence the apply.
            filter_criteria=self.principal_id.apply(_filter_criteria_args),
            # Lambda checks at creation that the role may receive from the queue.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.core_policy]),
        )

        # -- alarms, all to the alert topic
        self.alarms = [
            self._alarm(
                f"{name}-dlq-depth",
                description="Messages reached the enforcer's dead-letter queue: objects were not checked",
                namespace="AWS/SQS",
                metric_name="ApproximateNumberOfMessagesVisible",
                dimensions={"QueueName": self.dead_letter_queue.name},
                statistic="Maximum",
            ),
            self._alarm(
                f"{name}-errors",
                description="The enforcer function failed (see its log group and the log table)",
                namespace="AWS/Lambda",
                metric_name="Errors",
                dimensions={"FunctionName": self.function.name},
                statistic="Sum",
            ),
            self._alarm(
                f"{name}-throttles",
                description="The enforcer function was throttled; raise lambda.maxConcurrency or account limits",
                namespace="AWS/Lambda",
                metric_name="Throttles",
                dimensions={"FunctionName": self.function.name},
                statistic="Sum",
            ),
        ]

        self.register_outputs(
            {
                "mappingTableName": self.mapping_table.name,
                "logTableName": self.log_table.name,
                "queueArn": self.queue.arn,
                "queueUrl": self.queue.url,
                "deadLetterQueueUrl": self.dead_letter_queue.url,
                "functionName": self.function.name,
                "alertTopicArn": self.topic.arn,
                "roleArn": self.role.arn,
                "principalId": self.principal_id,
            }
        )

    def _queue_policy(self, targets: Sequence[BucketTarget]) -> pulumi.Output[str]:
        from components.sizing import (
            ACCOUNT_ID_LENGTH,
            BUCKET_NAME_MAX,
            StandIns,
            partition_max,
            queue_arn_max,
        )

        # Bucket names, the queue ARN, partition and account are Outputs: the plan is
        # made with stand-ins at their maxima, then filled in (components/sizing.py).
        stand = StandIns()
        plan = queue_policy_plan(
            queue_arn=stand.of(self.queue.arn, queue_arn_max(self.region)),
            partition=stand.of(self.partition, partition_max()),
            account_id=stand.of(self.account_id, ACCOUNT_ID_LENGTH),
            region=self.region,
            targets=targets,
            bucket_name=lambda b: stand.of(b, BUCKET_NAME_MAX),
        )
        if plan.note:
            pulumi.log.warn(plan.note, resource=self)
        text = compact_json(plan.document)
        return pulumi.Output.all(*stand.values).apply(lambda v: stand.substitute(text, v))

    def _alarm(self, name: str, *, description: str, **metric: Any) -> aws.cloudwatch.MetricAlarm:
        return aws.cloudwatch.MetricAlarm(
            name,
            alarm_description=description,
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            period=ALARM_PERIOD_SECONDS,
            evaluation_periods=1,
            treat_missing_data="notBreaching",
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            opts=pulumi.ResourceOptions(parent=self),
            **metric,
        )


def _filter_criteria_args(principal_id: str) -> aws.lambda_.EventSourceMappingFilterCriteriaArgs:
    criteria = filter_criteria(enforcer_filter_patterns(principal_id))
    return aws.lambda_.EventSourceMappingFilterCriteriaArgs(
        filters=[aws.lambda_.EventSourceMappingFilterCriteriaFilterArgs(pattern=f["Pattern"]) for f in criteria["Filters"]]
    )
