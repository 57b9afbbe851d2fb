"""``BucketIntegration``: everything one configured bucket adds, and removes again.

Per bucket: its mapping rows, the route of its ObjectCreated events to the queue
(an S3 notification or an EventBridge rule), and optionally its strict-mode bucket
policy and its default encryption. The enforcer role's grants on the bucket are
planned for all buckets at once, within IAM's per-role quotas (``EnforcerGrants``). All of it is parented to the integration, so dropping the bucket from
config deletes all of it on the next ``pulumi up``.

The notification, the bucket policy and the encryption configuration are each a
single resource per bucket in S3: managing them here takes ownership of them. The
notification can be left to another owner (``manageNotification: false``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from components.access_policies import unique_sids
from components.config import NAMESPACE, BucketConfig, mapping_rows, notification_prefixes
from components.enforcer import BucketTarget, Enforcer, eventbridge_rule_name
from components.event_filter import eventbridge_rule_pattern
from components.quotas import compact_json
from components.strict_mode import strict_mode_statements

INTEGRATION_TYPE = f"{NAMESPACE}:index:BucketIntegration"
OBJECT_CREATED = "s3:ObjectCreated:*"


def bucket_policy_document(
    *, partition: str, bucket: str, config: BucketConfig, key_arns: Sequence[str], enforcer_role_arn: str
) -> dict[str, Any]:
    """Strict-mode statements (if on) followed by the config's ``policyStatements``."""
    statements: list[dict[str, Any]] = []
    if config.strict:
        mappings = [
            (prefix, arn, m.sse_type)
            for (prefix, m), arn in zip(sorted(config.prefixes.items()), key_arns, strict=True)
        ]
        statements += strict_mode_statements(
            partition=partition, bucket=bucket, mappings=mappings, enforcer_role_arn=enforcer_role_arn
        )
    statements += [dict(s) for s in config.policy_statements]
    return {"Version": "2012-10-17", "Statement": unique_sids(statements)}


def _slug(text: str) -> str:
    """A resource-name fragment for a prefix: readable, and unique by its hash."""
    readable = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "root"
    return f"{readable}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"


class BucketIntegrationArgs:
    def __init__(self, target: BucketTarget, enforcer: Enforcer):
        self.target = target
        self.enforcer = enforcer


class BucketIntegration(pulumi.ComponentResource):
    def __init__(self, name: str, args: BucketIntegrationArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(INTEGRATION_TYPE, name, None, opts)
        target, enforcer = args.target, args.enforcer
        config = target.config
        bucket = pulumi.Output.from_input(target.bucket)
        child = pulumi.ResourceOptions(parent=self)
        prefixes = sorted(config.prefixes)
        key_arns = [config.prefixes[p].kms_key_arn for p in prefixes]  # str or Output (demo keys)

        # -- mapping rows: what the enforcer looks up per object
        self.mapping_items = [
            aws.dynamodb.TableItem(
                f"{name}-mapping-{_slug(row.prefix)}",
                table_name=enforcer.mapping_table.name,
                hash_key="bucket_name",
                range_key="prefix",
                item=pulumi.Output.json_dumps(row.item()),
                opts=child,
            )
            for row in mapping_rows(target.bucket, config)  # type: ignore[arg-type]  # Output for demo buckets
        ]

        # -- the route of ObjectCreated events to the queue; S3 validates the queue
        # policy when the notification is put, so that comes first. With
        # manageNotification false the bucket's notification document belongs to
        # another tool, which must add the route itself; the queue policy (in the
        # Enforcer) and the EventBridge rule are still this stack's.
        after_queue_policy = pulumi.ResourceOptions(parent=self, depends_on=[enforcer.queue_policy])
        self.notification: aws.s3.BucketNotification | None = None
        self.event_rule: aws.cloudwatch.EventRule | None = None
        if config.notification == "sqs" and config.manage_notification:
            self.notification = aws.s3.BucketNotification(
                f"{name}-notification",
                bucket=bucket,
                # One filter per mapped prefix, nested ones folded into their parent:
                # S3 rejects overlapping filters, and unmapped prefixes never reach
                # the function.
                queues=[
                    {
                        "id": f"{NAMESPACE}-{i}",
                        "queue_arn": enforcer.queue.arn,
                        "events": [OBJECT_CREATED],
                        "filter_prefix": prefix,
                    }
                    for i, prefix in enumerate(notification_prefixes(prefixes))
                ],
                opts=after_queue_policy,
            )
        elif config.notification == "eventbridge":
            if config.manage_notification:
                # EventBridge delivery is the bucket's notification setting too.
                self.notification = aws.s3.BucketNotification(
                    f"{name}-notification", bucket=bucket, eventbridge=True, opts=child
                )
            self.event_rule = aws.cloudwatch.EventRule(
                f"{name}-object-created",
                name=eventbridge_rule_name(target.logical_name),
                description=f"{NAMESPACE}: Object Created under mapped prefixes, to the enforcer queue",
                event_pattern=bucket.apply(
                    lambda b: compact_json(eventbridge_rule_pattern(b, notification_prefixes(prefixes)))
                ),
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-to-queue",
                rule=self.event_rule.name,
                arn=enforcer.queue.arn,
                opts=after_queue_policy,
            )

        # -- optional: strict mode and extra statements, in the bucket's one policy
        self.bucket_policy: aws.s3.BucketPolicy | None = None
        if config.strict or config.policy_statements:
            self.bucket_policy = aws.s3.BucketPolicy(
                f"{name}-policy",
                bucket=bucket,
                policy=pulumi.Output.all(enforcer.partition, bucket, enforcer.role.arn, *key_arns).apply(
                    lambda v: compact_json(
                        bucket_policy_document(
                            partition=v[0], bucket=v[1], config=config, key_arns=v[3:], enforcer_role_arn=v[2]
                        )
                    )
                ),
                opts=child,
            )

        # -- optional: default encryption, so unmapped prefixes are not left on SSE-S3
        self.encryption: aws.s3.BucketServerSideEncryptionConfiguration | None = None
        if config.default_kms_key_arn:
            rule: dict[str, Any] = {
                "apply_server_side_encryption_by_default": {
                    "sse_algorithm": "aws:kms",
                    "kms_master_key_id": config.default_kms_key_arn,
                },
                "bucket_key_enabled": True,
            }
            if config.block_sse_c:
                rule["blocked_encryption_types"] = ["SSE-C"]
            self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
                f"{name}-default-encryption", bucket=bucket, rules=[rule], opts=child
            )

        self.register_outputs(
            {
                "bucket": bucket,
                "prefixes": prefixes,
                "notification": config.notification,
                "manageNotification": config.manage_notification,
                "strict": config.strict,
            }
        )
