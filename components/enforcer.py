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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import names
from components.access_policies import (
    core_role_policy,
    lambda_trust_policy,
    queue_policy_plan,
    tls_only_queue_policy,
    topic_key_policy,
)
from components.config import NAMESPACE, BucketConfig, StackConfig
from components.dashboard import dashboard_body, dashboard_url
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
from enforcer import metric_names
from enforcer.journal import BUCKET_INDEX, BUCKET_INDEX_KEY
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
                {"name": BUCKET_INDEX_KEY[0], "type": "S"},
            ],
            # `ops log` by bucket and time. Sparse: rows written before rows carried a
            # bucket attribute are not in it ("Take advantage of sparse indexes",
            # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-indexes-general-sparse-indexes.html),
            # so `ops log` finds those by a Scan. ALL: the log shows every column
            # ("Global secondary indexes", attribute projections,
            # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html).
            global_secondary_indexes=[{
                "name": BUCKET_INDEX,
                "key_schemas": [
                    {"attribute_name": BUCKET_INDEX_KEY[0], "key_type": "HASH"},
                    {"attribute_name": BUCKET_INDEX_KEY[1], "key_type": "RANGE"},
                ],
                "projection_type": "ALL",
            }],
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
            # p99 over the period: the handler emits one value per re-keyed object.
            self._alarm(
                f"{name}-exposure",
                description=f"p99 of the seconds objects sat under the wrong key passed "
                f"exposureAlarmSeconds ({config.exposure_alarm_seconds} s): a backlog or retries",
                namespace=metric_names.NAMESPACE,
                metric_name=metric_names.EXPOSURE,
                dimensions=metric_names.DIMENSIONS,
                extended_statistic="p99",
                threshold=config.exposure_alarm_seconds,
            ),
        ]

        # -- dashboard, one per stack
        self.dashboard_name = stack_scoped_name("enforcer", names.CLOUDWATCH_DASHBOARD)
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=self.dashboard_name,
            dashboard_body=pulumi.Output.all(
                self.queue.name, self.dead_letter_queue.name, self.function.name
            ).apply(
                lambda v: json.dumps(
                    dashboard_body(
                        region=self.region, queue_name=v[0], dead_letter_queue_name=v[1], function_name=v[2],
                        exposure_alarm_seconds=config.exposure_alarm_seconds,
                    )
                )
            ),
            opts=child,
        )
        self.dashboard_url = dashboard_url(self.region, self.dashboard_name)

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
                "dashboardUrl": self.dashboard_url,
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
            rule_name=eventbridge_rule_name,
            rule_prefix=eventbridge_rule_prefix(),
        )
        if plan.note:
            pulumi.log.warn(plan.note, resource=self)
        text = compact_json(plan.document)
        return pulumi.Output.all(*stand.values).apply(lambda v: stand.substitute(text, v))

    def _alarm(self, name: str, *, description: str, threshold: float = 0, **metric: Any
               ) -> aws.cloudwatch.MetricAlarm:
        return aws.cloudwatch.MetricAlarm(
            name,
            alarm_description=description,
            comparison_operator="GreaterThanThreshold",
            threshold=threshold,
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
