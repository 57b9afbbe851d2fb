"""Shared fixtures: a patched in-process moto "world" with the enforcer's tables,
keys, buckets and queue, and a handler loaded under its own assumed role."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from ops import moto_patches
from ops.lambda_runtime import LambdaContext, create_tables, sqs_event  # noqa: F401 (re-exported to tests)

REGION = "us-east-1"
FAKE_CREDS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch):
    """No test may reach real AWS or a developer's profile."""
    for name, value in FAKE_CREDS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "ENFORCER_PRINCIPAL_ID", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "S3PrefixKeysTest")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")


def aws_error(code: str, status: int, operation: str, message: str = "") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message or code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


def failing(code: str, status: int, operation: str, message: str = "", when=lambda params: True):
    """A before-call / before-parameter-build hook that answers the call with an AWS error."""

    def hook(params=None, **_):
        if when(params or {}):
            raise aws_error(code, status, operation, message)

    return hook


@dataclass
class World:
    """One account: buckets, three keys, the enforcer's tables and queue."""

    s3: Any  # the uploader's client (a plain user, not the enforcer)
    kms: Any
    ddb: Any
    sqs: Any
    sts: Any
    queue_url: str
    queue_arn: str
    keys: dict[str, str] = field(default_factory=dict)
    enforcer_creds: dict[str, str] = field(default_factory=dict)
    enforcer_principal: str = ""

    def key(self, name: str) -> str:
        if name not in self.keys:
            self.keys[name] = self.kms.create_key(Description=name)["KeyMetadata"]["Arn"]
        return self.keys[name]

    def bucket(self, name: str, versioned=False, object_lock=False, ownership=None, notify=True) -> str:
        kwargs: dict[str, Any] = {"Bucket": name}
        if object_lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        if ownership:
            kwargs["ObjectOwnership"] = ownership
        self.s3.create_bucket(**kwargs)
        if versioned and not object_lock:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        if notify:
            self.s3.put_bucket_notification_configuration(
                Bucket=name,
                NotificationConfiguration={
                    "QueueConfigurations": [{"QueueArn": self.queue_arn, "Events": ["s3:ObjectCreated:*"]}]
                },
            )
            self.drain()  # S3's s3:TestEvent
        return name

    def map(self, bucket: str, prefix: str, key_arn: str, dsse=False, **extra) -> None:
        item = {
            "bucket_name": {"S": bucket},
            "prefix": {"S": prefix},
            "kms_key_arn": {"S": key_arn},
            "dual_layer_encryption": {"BOOL": dsse},
        }
        for name, value in extra.items():
            item[name] = {"BOOL": value} if isinstance(value, bool) else {"S": value}
        self.ddb.put_item(TableName="mapping", Item=item)

    def drain(self) -> list[dict[str, Any]]:
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                return out
            for m in got:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            out += got

    def event(self) -> dict[str, Any]:
        """Everything queued so far, as one SQS event."""
        return sqs_event(self.drain(), self.queue_arn)

    def log_rows(self) -> list[dict[str, Any]]:
        items = self.ddb.scan(TableName="log")["Items"]
        return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]

    def enforcer_client(self, service: str):
        return boto3.client(service, region_name=REGION, **self.enforcer_creds)


@pytest.fixture
def world() -> Iterator[World]:
    with moto_patches.patched(), mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        iam = boto3.client("iam", region_name=REGION)
        sts = boto3.client("sts", region_name=REGION)
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_tables(ddb)
        queue_url = sqs.create_queue(QueueName="enforcer")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        role = iam.create_role(
            RoleName="enforcer-role",
            AssumeRolePolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
            ),
        )["Role"]
        creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="enforcer")["Credentials"]
        enforcer_creds = {
            "aws_access_key_id": creds["AccessKeyId"],
            "aws_secret_access_key": creds["SecretAccessKey"],
            "aws_session_token": creds["SessionToken"],
        }
        who = boto3.client("sts", region_name=REGION, **enforcer_creds).get_caller_identity()
        yield World(
            s3=s3,
            kms=boto3.client("kms", region_name=REGION),
            ddb=ddb,
            sqs=sqs,
            sts=sts,
            queue_url=queue_url,
            queue_arn=queue_arn,
            enforcer_creds=enforcer_creds,
            enforcer_principal="AWS:" + who["UserId"],
        )


@pytest.fixture
def load_handler(world, monkeypatch):
    """Import ``enforcer.handler`` as a fresh cold start, running as the enforcer role."""

    def load(**env: str):
        settings = {
            "MAPPING_TABLE_NAME": "mapping",
            "LOG_TABLE_NAME": "log",
            "ENFORCER_PRINCIPAL_ID": world.enforcer_principal,
            "AWS_ACCESS_KEY_ID": world.enforcer_creds["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": world.enforcer_creds["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": world.enforcer_creds["aws_session_token"],
        }
        settings.update(env)
        for name, value in settings.items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        sys.modules.pop("enforcer.handler", None)
        return importlib.import_module("enforcer.handler")

    yield load
    sys.modules.pop("enforcer.handler", None)
