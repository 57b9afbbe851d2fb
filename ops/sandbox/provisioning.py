"""Provisioning: the config model (``Pulumi.<stack>.yaml``, the demo definition) turned into
the stack's resources in the emulator, and the tables read back."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from components.config import (
    DEMO,
    BucketConfig,
    MappingRow,
    StackConfig,
    all_mapping_rows,
    mapping_rows,
    notification_prefixes,
)
from components.event_filter import eventbridge_rule_pattern
from enforcer.arns import account_of_key_arn
from enforcer.journal import BUCKET_INDEX, BUCKET_INDEX_KEY
from enforcer.mapping import Mapping as KeyMapping
from enforcer.mapping import StaticMappings
from ops.lambda_runtime import create_tables
from ops.sandbox.emulator import SandboxError, client

# The sandbox's demo buckets have fixed names, so the printed commands work as typed.
DEMO_BUCKET_PREFIX = "s3pk-"
OBJECT_CREATED_EVENTS = ["s3:ObjectCreated:*"]

_DESERIALIZE = TypeDeserializer()


@dataclass(frozen=True)
class SandboxNames:
    """Physical names, in the ``s3-prefix-keys-<stack>-`` scheme the program uses."""

    stack: str

    def _name(self, suffix: str) -> str:
        return f"s3-prefix-keys-{self.stack}-{suffix}"

    @property
    def function_name(self) -> str:
        return self._name("enforcer")

    @property
    def role_name(self) -> str:
        return self._name("enforcer-role")

    @property
    def mapping_table(self) -> str:
        return self._name("mappings")

    @property
    def log_table(self) -> str:
        return self._name("log")

    @property
    def queue(self) -> str:
        return self._name("queue")

    @property
    def dead_letter_queue(self) -> str:
        return self._name("dlq")

    @property
    def alert_topic(self) -> str:
        return self._name("alerts")

    def eventbridge_rule(self, bucket: str) -> str:
        return self._name(f"{bucket}-created")[:64]


def demo_bucket_name(name: str) -> str:
    return DEMO_BUCKET_PREFIX + name


@dataclass
class Provisioned:
    """What ``provision`` created: everything the enforcer loop and the clients need."""

    endpoint_url: str
    config: StackConfig
    names: SandboxNames
    account: str
    queue_url: str
    queue_arn: str
    dead_letter_queue_url: str
    alert_topic_arn: str
    enforcer_credentials: dict[str, str]
    enforcer_principal: str
    demo_key_arns: dict[str, str] = field(default_factory=dict)  # DEMO key name -> ARN
    demo_buckets: dict[str, bool] = field(default_factory=dict)  # bucket -> versioned
    buckets: dict[str, BucketConfig] = field(default_factory=dict)  # every integrated bucket
    rows: list[MappingRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def region(self) -> str:
        return self.config.region

    def client(self, service: str, credentials: Mapping[str, str] | None = None):
        return client(service, self.endpoint_url, self.region, credentials)

    def mappings(self) -> StaticMappings:
        """The rows as the engine reads them (``Mapping.from_row``): the expected targets."""
        return StaticMappings(
            KeyMapping.from_row({k: _DESERIALIZE.deserialize(v) for k, v in row.item().items()})
            for row in self.rows
        )

    def notified(self, bucket: str, key: str) -> bool:
        """Whether an upload of ``key`` reaches the queue (notifications cover mapped prefixes only)."""
        config = self.buckets.get(bucket)
        return config is not None and any(key.startswith(p) for p in notification_prefixes(config.prefixes))


def _demo_bucket_config(key_arns: Mapping[str, str], region: str) -> BucketConfig:
    # Validated like any configured bucket: the demo's keys are real ARNs here.
    return BucketConfig.model_validate({"prefixes": DEMO.bucket_config(key_arns)}, context={"region": region})


def _config_key_arns(config: StackConfig) -> set[str]:
    arns = set(config.source_key_arns)
    for bucket in config.buckets.values():
        arns.update(m.kms_key_arn for m in bucket.prefixes.values())
        if bucket.default_kms_key_arn:
            arns.add(bucket.default_kms_key_arn)
    return arns


def add_bucket_index(ddb, table: str) -> None:
    """The program's ``bucket-time`` index on the log table ``create_tables`` made (for
    `ops log --bucket`): the same name, keys and projection as components/enforcer.py."""
    ddb.update_table(
        TableName=table,
        AttributeDefinitions=[{"AttributeName": name, "AttributeType": "S"} for name in BUCKET_INDEX_KEY],
        GlobalSecondaryIndexUpdates=[{"Create": {
            "IndexName": BUCKET_INDEX,
            "KeySchema": [
                {"AttributeName": BUCKET_INDEX_KEY[0], "KeyType": "HASH"},
                {"AttributeName": BUCKET_INDEX_KEY[1], "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        }}],
    )


def provision(endpoint_url: str, config: StackConfig, names: SandboxNames) -> Provisioned:
    """Create the local equivalent of the stack in a (fresh) emulator."""
    region = config.region

    def aws(service: str, creds: Mapping[str, str] | None = None):
        return client(service, endpoint_url, region, creds)

    s3, sqs, kms, iam, sts = aws("s3"), aws("sqs"), aws("kms"), aws("iam"), aws("sts")
    account = sts.get_caller_identity()["Account"]
    notes: list[str] = []

    create_tables(aws("dynamodb"), names.mapping_table, names.log_table)
    add_bucket_index(aws("dynamodb"), names.log_table)  # the program's bucket-time index: `ops log --bucket`

    dlq_url = sqs.create_queue(QueueName=names.dead_letter_queue)["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    settings = config.lambda_
    queue_url = sqs.create_queue(
        QueueName=names.queue,
        Attributes={
            # The program's rule (six function timeouts plus the batching window).
            "VisibilityTimeout": str(6 * settings.timeout_seconds + settings.batching_window_seconds),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(config.max_receive_count)}
            ),
        },
    )["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)
    topic_arn = aws("sns").create_topic(Name=names.alert_topic)["TopicArn"]

    # The function's role, assumed with the function's name as session name: Lambda's
    # principal AWS:<role id>:<function name>, distinct from every uploader.
    role = iam.create_role(
        RoleName=names.role_name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )["Role"]
    creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName=names.function_name)["Credentials"]
    enforcer_credentials = {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }
    principal = "AWS:" + aws("sts", enforcer_credentials).get_caller_identity()["UserId"]

    buckets: dict[str, BucketConfig] = {}
    demo_key_arns: dict[str, str] = {}
    demo_buckets: dict[str, bool] = {}
    if config.demo:
        for key_name in DEMO.key_names:
            demo_key_arns[key_name] = kms.create_key(
                Description=f"s3-prefix-keys demo ({names.stack}): tenant key {key_name}"
            )["KeyMetadata"]["Arn"]
        demo_config = _demo_bucket_config(demo_key_arns, region)
        for name, versioned in DEMO.buckets:
            bucket = demo_bucket_name(name)
            if bucket in config.buckets:
                raise SandboxError(
                    f"s3-prefix-keys:buckets.{bucket} collides with the sandbox's demo bucket of that name; "
                    "rename the configured bucket or set s3-prefix-keys:demo false"
                )
            demo_buckets[bucket] = versioned
            buckets[bucket] = demo_config
    buckets.update(config.buckets)

    foreign = sorted(a for a in _config_key_arns(config) if account_of_key_arn(a) != account)
    if foreign:
        notes.append(
            f"{len(foreign)} configured key ARN(s) belong to another account than the emulator's ({account}), "
            f"e.g. {foreign[0]}: S3 refuses UpdateObjectEncryption with another account's key, so those "
            "prefixes are re-keyed by copy here"
        )

    ddb = aws("dynamodb")
    rows = [row for bucket in demo_buckets for row in mapping_rows(bucket, buckets[bucket])]
    rows += all_mapping_rows(config)
    for row in rows:
        ddb.put_item(TableName=names.mapping_table, Item=row.item())

    events = aws("events")
    for bucket, bucket_config in buckets.items():
        create_bucket(s3, bucket, bucket_config, region, versioned=demo_buckets.get(bucket, False))
        put_notifications(s3, events, names, queue_arn, bucket, bucket_config)
        notes += unenforced_notes(bucket, bucket_config)

    return Provisioned(
        endpoint_url=endpoint_url,
        config=config,
        names=names,
        account=account,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dead_letter_queue_url=dlq_url,
        alert_topic_arn=topic_arn,
        enforcer_credentials=enforcer_credentials,
        enforcer_principal=principal,
        demo_key_arns=demo_key_arns,
        demo_buckets=demo_buckets,
        buckets=buckets,
        rows=rows,
        notes=notes,
    )


def create_bucket(s3, bucket: str, bucket_config: BucketConfig, region: str, versioned: bool = False) -> None:
    """The bucket as the stack expects it to exist: versioning (demo) and default encryption."""
    s3.create_bucket(**_create_bucket_args(bucket, region))
    if versioned:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put_default_encryption(s3, bucket, bucket_config)


def put_default_encryption(s3, bucket: str, bucket_config: BucketConfig) -> None:
    if not bucket_config.default_kms_key_arn:
        return
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": bucket_config.default_kms_key_arn,
                    },
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )


def put_notifications(s3, events, names: SandboxNames, queue_arn: str, bucket: str,
                      bucket_config: BucketConfig) -> None:
    """One route per mapped prefix (nested ones folded), to the queue or through EventBridge.

    PutBucketNotificationConfiguration replaces the whole configuration, so calling this
    again after a mapping change leaves exactly the new routes."""
    prefixes = notification_prefixes(bucket_config.prefixes)
    if bucket_config.notification == "sqs":
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "Id": f"s3-prefix-keys-{i}",
                        "QueueArn": queue_arn,
                        "Events": OBJECT_CREATED_EVENTS,
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}},
                    }
                    for i, prefix in enumerate(prefixes)
                ]
            },
        )
    else:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        rule = names.eventbridge_rule(bucket)
        events.put_rule(Name=rule, EventPattern=json.dumps(eventbridge_rule_pattern(bucket, prefixes)))
        events.put_targets(Rule=rule, Targets=[{"Id": "enforcer-queue", "Arn": queue_arn}])


def remove_notifications(s3, events, names: SandboxNames, bucket: str, notification: str) -> None:
    """Undo :func:`put_notifications` (a bucket that left the stack, or changed its delivery)."""
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    if notification == "eventbridge":
        rule = names.eventbridge_rule(bucket)
        events.remove_targets(Rule=rule, Ids=["enforcer-queue"])
        events.delete_rule(Name=rule)


def unenforced_notes(bucket: str, bucket_config: BucketConfig) -> list[str]:
    if bucket_config.strict or bucket_config.policy_statements or bucket_config.block_sse_c:
        return [
            f"{bucket}: strict mode, policyStatements and blockSseC are bucket policy/encryption "
            "settings moto does not enforce; the sandbox leaves them out"
        ]
    return []


def _queue_arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _create_bucket_args(bucket: str, region: str) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": bucket}
    # us-east-1 takes no LocationConstraint (S3 rejects one naming it, aws/aws-sdk-js#526):
    # https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateBucket.html#API_CreateBucket_RequestSyntax
    if region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    return args


def log_rows(ddb, table: str) -> list[dict[str, Any]]:
    rows = []
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        rows += [{k: _DESERIALIZE.deserialize(v) for k, v in item.items()} for item in page["Items"]]
    return sorted(rows, key=lambda r: (r["s3_object_path"], r["current_timestamp_utc"]))
