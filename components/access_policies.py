"""The Enforcer's policy documents: queue policies, the alert key's policy, the role's core and trust policies.

Pure (no Pulumi): the components, config validation's sizing and the policy pack
build the same documents from here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from components.quotas import SQS_POLICY_BYTES, policy_bytes


def policy_sid(text: str) -> str:
    """An IAM statement id (letters and digits only) that still reads like ``text``."""
    words = re.split(r"[^A-Za-z0-9]+", text)
    return "".join(w[:1].upper() + w[1:] for w in words if w) or "X"


def queue_policy_document(
    *,
    queue_arn: str,
    partition: str,
    account_id: str,
    region: str,
    s3_buckets: Sequence[str],
    rule_names: Sequence[str],
    rule_prefix: str,
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
            else {"ArnLike": {"aws:SourceArn": rule_arn + rule_prefix + "*"}}
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
    targets: Sequence[Any],
    bucket_name: Callable[[Any], str],
    rule_name: Callable[[str], str],
    rule_prefix: str,
) -> QueuePolicyPlan:
    """The finest queue policy inside SQS's quotas (``bucket_name`` renders a bucket, known or not)."""
    kwargs = dict(
        queue_arn=queue_arn,
        partition=partition,
        account_id=account_id,
        region=region,
        s3_buckets=[bucket_name(t.bucket) for t in targets if t.config.notification == "sqs"],
        rule_names=[rule_name(t.logical_name) for t in targets if t.config.notification == "eventbridge"],
        rule_prefix=rule_prefix,
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
