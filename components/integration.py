"""``BucketIntegration``: everything one configured bucket adds, and removes again.

Per bucket: its mapping rows, the route of its ObjectCreated events to the queue
(an S3 notification or an EventBridge rule), the enforcer role's grants on its mapped
prefixes and keys, and optionally its strict-mode bucket policy and its default
encryption. All of it is parented to the integration, so dropping the bucket from
config deletes all of it on the next ``pulumi up``.

The notification, the bucket policy and the encryption configuration are each a
single resource per bucket in S3: managing them here takes ownership of them. The
notification can be left to another owner (``manageNotification: false``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from components.config import NAMESPACE, BucketConfig, mapping_rows, notification_prefixes
from components.enforcer import BucketTarget, Enforcer, eventbridge_rule_name, policy_sid, unique_sids
from components.event_filter import eventbridge_rule_pattern

INTEGRATION_TYPE = f"{NAMESPACE}:index:BucketIntegration"
OBJECT_CREATED = "s3:ObjectCreated:*"

# What re-keying an object in place or by copy touches (see enforcer/engine.py and
# enforcer/rekey.py): the object and its versions, their tags, ACLs, retention and
# legal hold, the in-place encryption update, and cleanup of a failed multipart copy.
# Retention and legal hold have no separate Version actions. PutObjectVersionTagging
# and PutObjectVersionAcl are in the product's grant contract (issue 3), though the
# engine writes tags and ACLs only along with a copy. tests/test_program.py maps each
# S3 call of the engine to the actions it needs.
REKEY_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:GetObjectAcl",
    "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:GetObjectRetention",
    "s3:PutObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:PutObjectLegalHold",
    "s3:UpdateObjectEncryption",
    "s3:AbortMultipartUpload",
)
DELETE_OLD_VERSION_ACTION = "s3:DeleteObjectVersion"
MAPPED_KEY_ACTIONS = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:GenerateDataKey",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
)
SSE_HEADER = "s3:x-amz-server-side-encryption"
KMS_KEY_HEADER = "s3:x-amz-server-side-encryption-aws-kms-key-id"


def iam_literal(text: str) -> str:
    """``text`` as a literal inside an IAM resource or condition: ``$`` starts a policy variable."""
    return text.replace("$", "${$}")


def grant_policy_document(
    *,
    partition: str,
    dns_suffix: str,
    region: str,
    bucket: str,
    prefixes: Sequence[str],
    mapped_key_arns: Sequence[str],
    decrypt_only_key_arns: Sequence[str],
    delete_old_versions: bool,
) -> dict[str, Any]:
    """The enforcer role's access to one bucket: its mapped prefixes and keys, nothing more."""
    bucket_arn = f"arn:{partition}:s3:::{bucket}"
    prefixes = sorted(prefixes)
    # Keys are used only through S3, never directly by the function.
    via_s3 = {"StringEquals": {"kms:ViaService": f"s3.{region}.{dns_suffix}"}}
    mapped = sorted(set(mapped_key_arns))
    decrypt_only = sorted(set(decrypt_only_key_arns) - set(mapped))
    actions = list(REKEY_OBJECT_ACTIONS) + ([DELETE_OLD_VERSION_ACTION] if delete_old_versions else [])
    statements: list[dict[str, Any]] = [
        {
            "Sid": "RekeyObjectsUnderMappedPrefixes",
            "Effect": "Allow",
            "Action": actions,
            "Resource": [f"{bucket_arn}/{iam_literal(p)}*" for p in prefixes],
        },
        {
            # Without ListBucket, HEAD of a missing object answers 403, not 404, and
            # "gone" would read as "access denied".
            "Sid": "ListMappedPrefixes",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
            "Condition": {"StringLike": {"s3:prefix": [f"{iam_literal(p)}*" for p in prefixes]}},
        },
        {
            # Whether the bucket still uses ACLs, i.e. whether a copy must carry grants.
            "Sid": "ReadOwnershipControls",
            "Effect": "Allow",
            "Action": "s3:GetBucketOwnershipControls",
            "Resource": bucket_arn,
        },
        {
            "Sid": "UseMappedKeys",
            "Effect": "Allow",
            "Action": list(MAPPED_KEY_ACTIONS),
            "Resource": mapped,
            "Condition": via_s3,
        },
    ]
    if decrypt_only:
        statements.append(
            {
                # Objects arriving under the bucket default key or a declared source key
                # must be readable to be re-keyed.
                "Sid": "DecryptSourceKeys",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": decrypt_only,
                "Condition": via_s3,
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


def strict_mode_statements(
    *, partition: str, bucket: str, mappings: Sequence[tuple[str, str, str]]
) -> list[dict[str, Any]]:
    """Deny PutObject under each mapped prefix unless it names that prefix's key and type.

    ``mappings`` are (prefix, key ARN, SSE type: ``aws:kms`` or ``aws:kms:dsse``).
    Writers must send the full key ARN: S3 compares the header as sent.
    """
    statements = []
    for prefix, key_arn, sse_type in sorted(mappings):
        objects = f"arn:{partition}:s3:::{bucket}/{iam_literal(prefix)}*"
        tag = policy_sid(prefix)
        deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": objects}
        statements += [
            {"Sid": f"StrictKeyMissing{tag}", **deny, "Condition": {"Null": {KMS_KEY_HEADER: "true"}}},
            {"Sid": f"StrictKeyOther{tag}", **deny, "Condition": {"StringNotEquals": {KMS_KEY_HEADER: key_arn}}},
            {"Sid": f"StrictSseType{tag}", **deny, "Condition": {"StringNotEquals": {SSE_HEADER: sse_type}}},
        ]
    return statements


def bucket_policy_document(
    *, partition: str, bucket: str, config: BucketConfig, key_arns: Sequence[str]
) -> dict[str, Any]:
    """Strict-mode statements (if on) followed by the config's ``policyStatements``."""
    statements: list[dict[str, Any]] = []
    if config.strict:
        mappings = [
            (prefix, arn, m.sse_type)
            for (prefix, m), arn in zip(sorted(config.prefixes.items()), key_arns, strict=True)
        ]
        statements += strict_mode_statements(partition=partition, bucket=bucket, mappings=mappings)
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
        config, stack_config = target.config, enforcer.config
        bucket = pulumi.Output.from_input(target.bucket)
        child = pulumi.ResourceOptions(parent=self)
        prefixes = sorted(config.prefixes)
        key_arns = [config.prefixes[p].kms_key_arn for p in prefixes]  # str or Output (demo keys)
        old_version_action = config.old_version_action or stack_config.old_version_action

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
                    lambda b: json.dumps(eventbridge_rule_pattern(b, notification_prefixes(prefixes)))
                ),
                opts=child,
            )
            aws.cloudwatch.EventTarget(
                f"{name}-to-queue",
                rule=self.event_rule.name,
                arn=enforcer.queue.arn,
                opts=after_queue_policy,
            )

        # -- grants on the enforcer role, for this bucket only
        decrypt_only = list(stack_config.source_key_arns)
        if config.default_kms_key_arn:
            decrypt_only.append(config.default_kms_key_arn)
        self.grants = aws.iam.RolePolicy(
            f"{name}-grants",
            role=enforcer.role.id,
            name=f"bucket-{target.logical_name}"[:128],
            policy=pulumi.Output.all(enforcer.partition, enforcer.dns_suffix, bucket, *key_arns).apply(
                lambda v: json.dumps(
                    grant_policy_document(
                        partition=v[0],
                        dns_suffix=v[1],
                        region=stack_config.region,
                        bucket=v[2],
                        prefixes=prefixes,
                        mapped_key_arns=v[3:],
                        decrypt_only_key_arns=decrypt_only,
                        delete_old_versions=old_version_action == "delete",
                    )
                )
            ),
            opts=child,
        )

        # -- optional: strict mode and extra statements, in the bucket's one policy
        self.bucket_policy: aws.s3.BucketPolicy | None = None
        if config.strict or config.policy_statements:
            self.bucket_policy = aws.s3.BucketPolicy(
                f"{name}-policy",
                bucket=bucket,
                policy=pulumi.Output.all(enforcer.partition, bucket, *key_arns).apply(
                    lambda v: json.dumps(
                        bucket_policy_document(partition=v[0], bucket=v[1], config=config, key_arns=v[2:])
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
