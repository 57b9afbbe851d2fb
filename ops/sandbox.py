"""``ops sandbox``: the whole product on this machine, on an embedded moto server.

What runs, and what each piece stands in for:

* **AWS**: ``moto.server.ThreadedMotoServer`` on 127.0.0.1:PORT, in this process, with
  ``ops.moto_patches`` applied (UpdateObjectEncryption, conditional copies, SSE-S3 by
  default, ``userIdentity.principalId`` on S3 events...), so any client (awscli, boto3,
  another terminal) talks to it over HTTP like to AWS.
* **The stack**: provisioned from ``Pulumi.<stack>.yaml`` through the same config model
  (``load_stack_file``), the same mapping-row code (``MappingRow.item()``), the same
  notification folding (``notification_prefixes``), the same EventBridge rule pattern
  and the same demo definition (``DEMO``) as the Pulumi program.
* **Lambda's SQS event source mapping**: :class:`EventSourceMapping` long-polls the
  queue, builds the event Lambda would (``sqs_event``), applies the deployed filter
  criteria with the same matcher the Pulumi tests use (``esm_accepts`` over
  ``enforcer_filter_patterns``; filtered messages are deleted, as Lambda does), hands
  the rest to ``enforcer.handler.handler`` and honours ``batchItemFailures``: failed
  messages become visible again and SQS's own redrive policy moves them to the DLQ
  after ``maxReceiveCount`` receives.
* **The function's identity**: the handler runs with credentials of an assumed IAM
  role whose session is named after the function, so its principal is
  ``AWS:AROA…:<function name>`` exactly as in Lambda, and the filters drop the events
  its own copies cause.

``run_seed`` is the original sample README's *Testing* section, end to end.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from rich.console import Console
from rich.table import Table

from components.config import (
    DEMO,
    BucketConfig,
    ConfigError,
    MappingRow,
    StackConfig,
    all_mapping_rows,
    load_stack_file,
    mapping_rows,
    notification_prefixes,
    stack_file,
)
from components.event_filter import enforcer_filter_patterns, esm_accepts, eventbridge_rule_pattern
from enforcer import decision
from enforcer.arns import account_of_key_arn
from enforcer.mapping import Mapping as KeyMapping
from enforcer.mapping import StaticMappings
from ops import moto_patches
from ops.lambda_runtime import LambdaContext, create_tables, sqs_event

DEFAULT_PORT = 4566
HOST = "127.0.0.1"
# moto accepts any credentials; these are the ones the printed exports name.
UPLOADER_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
# The sandbox's demo buckets have fixed names, so the printed commands work as typed.
DEMO_BUCKET_PREFIX = "s3pk-"
# Lambda leaves a failed message invisible for the queue's visibility timeout (12
# minutes with the stack's defaults); the sandbox makes it visible again after this,
# so retries and the dead-letter queue can be watched in seconds.
DEFAULT_RETRY_DELAY_SECONDS = 1
# SQS's ReceiveMessage limit; Lambda's larger batches need a batching window.
SQS_MAX_MESSAGES = 10
OBJECT_CREATED_EVENTS = ["s3:ObjectCreated:*"]

_DESERIALIZE = TypeDeserializer()


class SandboxError(Exception):
    """Bad input or a broken setup: the CLI prints the message and exits 2."""


# ---------------------------------------------------------------------------
# names and the port


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


def check_port_free(port: int, host: str = HOST) -> None:
    """Fail before starting anything: moto's server thread would die on the bind
    error while ``start()`` waits for it forever."""
    if not 1 <= port <= 65535:
        raise SandboxError(f"--port {port} is not a TCP port; use 1-65535 (default {DEFAULT_PORT})")
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As werkzeug binds: connections of a stopped sandbox in TIME_WAIT do not count,
    # a listening socket does.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError as exc:
        raise SandboxError(
            f"port {port} on {host} is in use ({exc.strerror}); another sandbox or emulator "
            f"(LocalStack also defaults to 4566) is running. Stop it, or pass a free port: --port 4567"
        ) from None
    finally:
        probe.close()


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (for tests and scripts running several sandboxes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------------------
# provisioning


@functools.lru_cache(maxsize=8)
def _session(access_key: str, secret_key: str, token: str | None) -> boto3.session.Session:
    # One session per identity: a session caches the service models it has loaded,
    # and loading them again for every client costs about 0.3 s each.
    return boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret_key, aws_session_token=token
    )


def client(service: str, endpoint_url: str, region: str, credentials: Mapping[str, str] | None = None):
    """A client of the emulator; explicit credentials, so a developer's real ones are never sent."""
    creds = credentials or UPLOADER_CREDENTIALS
    session = _session(creds["aws_access_key_id"], creds["aws_secret_access_key"], creds.get("aws_session_token"))
    return session.client(service, endpoint_url=endpoint_url, region_name=region)


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


def provision(endpoint_url: str, config: StackConfig, names: SandboxNames) -> Provisioned:
    """Create the local equivalent of the stack in a (fresh) emulator."""
    region = config.region

    def aws(service: str, creds: Mapping[str, str] | None = None):
        return client(service, endpoint_url, region, creds)

    s3, sqs, kms, iam, sts = aws("s3"), aws("sqs"), aws("kms"), aws("iam"), aws("sts")
    account = sts.get_caller_identity()["Account"]
    notes: list[str] = []

    create_tables(aws("dynamodb"), names.mapping_table, names.log_table)

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
        s3.create_bucket(**_create_bucket_args(bucket, region))
        if demo_buckets.get(bucket):
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        if bucket_config.default_kms_key_arn:
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
        if bucket_config.strict or bucket_config.policy_statements or bucket_config.block_sse_c:
            notes.append(
                f"{bucket}: strict mode, policyStatements and blockSseC are bucket policy/encryption "
                "settings moto does not enforce; the sandbox leaves them out"
            )

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


def _queue_arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _create_bucket_args(bucket: str, region: str) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # S3 rejects a location constraint naming us-east-1
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    return args


# ---------------------------------------------------------------------------
# the enforcer, loaded as Lambda would


def enforcer_environment(prov: Provisioned) -> dict[str, str]:
    """The function's environment: the program's variables plus the role's credentials."""
    config = prov.config
    return {
        "MAPPING_TABLE_NAME": prov.names.mapping_table,
        "LOG_TABLE_NAME": prov.names.log_table,
        "ALERT_TOPIC_ARN": prov.alert_topic_arn,
        "LOG_RETENTION_DAYS": str(config.journal_retention_days),
        "OLD_VERSION_ACTION": config.old_version_action,
        "ENFORCER_PRINCIPAL_ID": prov.enforcer_principal,
        "REKEY_METHOD": "auto",
        "AWS_ENDPOINT_URL": prov.endpoint_url,
        "AWS_REGION": prov.region,
        "AWS_DEFAULT_REGION": prov.region,
        "AWS_ACCESS_KEY_ID": prov.enforcer_credentials["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": prov.enforcer_credentials["aws_secret_access_key"],
        "AWS_SESSION_TOKEN": prov.enforcer_credentials["aws_session_token"],
        "AWS_LAMBDA_FUNCTION_NAME": prov.names.function_name,
    }


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_handler(prov: Provisioned):
    """A cold start of ``enforcer.handler`` under the function's environment.

    The module builds its clients and settings at import, which is when the variables
    are read; afterwards the process environment is put back, so the sandbox's own
    clients keep the uploader's identity.
    """
    with environment(enforcer_environment(prov)):
        sys.modules.pop("enforcer.handler", None)
        return importlib.import_module("enforcer.handler")


# ---------------------------------------------------------------------------
# Lambda's SQS event source mapping


@dataclass
class EsmStats:
    received: int = 0
    invocations: int = 0
    records_invoked: int = 0
    failed: int = 0
    filtered_own_writes: int = 0  # the enforcer's own copies, dropped by the filters
    filtered_other: int = 0  # s3:TestEvent and anything else no filter accepts
    handler_errors: int = 0


@dataclass(frozen=True)
class BatchOutcome:
    invoked: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    filtered: list[dict[str, Any]]


class EventSourceMapping:
    """One poller doing what Lambda's SQS event source mapping does for the function."""

    def __init__(
        self,
        sqs,
        queue_url: str,
        queue_arn: str,
        region: str,
        handler: Callable[[dict[str, Any], Any], dict[str, Any]],
        principal_id: str,
        batch_size: int = SQS_MAX_MESSAGES,
        retry_delay_seconds: int = DEFAULT_RETRY_DELAY_SECONDS,
        context: Any = None,
    ):
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self.handler = handler
        self.principal_id = principal_id
        self.filters = enforcer_filter_patterns(principal_id)
        self.batch_size = max(1, min(batch_size, SQS_MAX_MESSAGES))
        self.retry_delay_seconds = retry_delay_seconds
        self.context = context or LambdaContext(region=region)
        self.stats = EsmStats()

    def poll(self, wait_seconds: int = 1) -> BatchOutcome | None:
        """Receive one batch and see it through; None when the queue had nothing."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not messages:
            return None
        self.stats.received += len(messages)
        records = sqs_event(messages, self.queue_arn, self.region)["Records"]
        accepted = {r["messageId"] for r in records if esm_accepts(self.filters, r)}
        invoked = [r for r in records if r["messageId"] in accepted]
        filtered = [r for r in records if r["messageId"] not in accepted]
        for record in filtered:
            if self.is_own_write(record):
                self.stats.filtered_own_writes += 1
            else:
                self.stats.filtered_other += 1
        # Lambda deletes what no filter matches: it never reaches the function or the DLQ.
        self._delete(filtered)
        failed: list[dict[str, Any]] = []
        if invoked:
            failed = self._invoke(invoked)
            failed_ids = {r["messageId"] for r in failed}
            self._delete([r for r in invoked if r["messageId"] not in failed_ids])
            for record in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=record["receiptHandle"],
                    VisibilityTimeout=self.retry_delay_seconds,
                )
        return BatchOutcome(invoked=invoked, failed=failed, filtered=filtered)

    def _invoke(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.stats.invocations += 1
        self.stats.records_invoked += len(records)
        try:
            response = self.handler({"Records": records}, self.context)
        except Exception:  # noqa: BLE001 - a crashed invocation fails the whole batch, as in Lambda
            import traceback

            traceback.print_exc()
            self.stats.handler_errors += 1
            failed_ids = {r["messageId"] for r in records}
        else:
            failed_ids = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        failed = [r for r in records if r["messageId"] in failed_ids]
        self.stats.failed += len(failed)
        return failed

    def _delete(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), SQS_MAX_MESSAGES):
            chunk = records[start : start + SQS_MAX_MESSAGES]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(chunk)],
            )

    def is_own_write(self, record: Mapping[str, Any]) -> bool:
        return self.describe(record) == "own write"

    def describe(self, record: Mapping[str, Any]) -> str:
        """What a message is, for the sandbox's report of what it filtered."""
        try:
            body = json.loads(record["body"])
        except ValueError:
            return "not JSON"
        if not isinstance(body, dict):
            return "not an object event"
        if body.get("Event") == "s3:TestEvent":
            return "S3 test event"
        s3_records = body.get("Records")
        if isinstance(s3_records, list) and any(
            isinstance(r, dict) and (r.get("userIdentity") or {}).get("principalId") == self.principal_id
            for r in s3_records
        ):
            return "own write"
        return "not an object event"

    def queue_depth(self) -> tuple[int, int]:
        """(visible, in flight) messages of the queue."""
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


# ---------------------------------------------------------------------------
# the sandbox


def log_rows(ddb, table: str) -> list[dict[str, Any]]:
    rows = []
    for page in ddb.get_paginator("scan").paginate(TableName=table):
        rows += [{k: _DESERIALIZE.deserialize(v) for k, v in item.items()} for item in page["Items"]]
    return sorted(rows, key=lambda r: (r["s3_object_path"], r["current_timestamp_utc"]))


class Sandbox:
    """Emulator + provisioned stack + enforcer loop; a context manager that cleans up."""

    def __init__(
        self,
        stack: str = "dev",
        port: int = DEFAULT_PORT,
        root: str | Path | None = None,
        stack_path: str | Path | None = None,
        console: Console | None = None,
        retry_delay_seconds: int = DEFAULT_RETRY_DELAY_SECONDS,
    ):
        self.stack = stack
        self.port = port
        self.stack_path = Path(stack_path) if stack_path else stack_file(stack, root)
        self.console = console or Console()
        self.retry_delay_seconds = retry_delay_seconds
        self.endpoint_url = f"http://{HOST}:{port}"
        self.prov: Provisioned | None = None
        self.esm: EventSourceMapping | None = None
        self.handler_module: Any = None
        self._cleanup = ExitStack()
        self._seen_rows: set[tuple[str, str]] = set()

    # -- lifecycle

    def load_config(self) -> StackConfig:
        try:
            config = load_stack_file(self.stack_path)
        except ConfigError as exc:
            raise SandboxError(str(exc)) from None
        if not config.demo and not config.buckets:
            raise SandboxError(
                f"{self.stack_path.name} maps no bucket and has the demo off, so the sandbox would enforce "
                "nothing; set `s3-prefix-keys:demo: true` or add a mapping with "
                "`python -m ops mappings add --stack ... --bucket B --prefix P --key ARN`"
            )
        return config

    def start(self) -> Sandbox:
        config = self.load_config()  # bad config first: nothing to clean up yet
        check_port_free(self.port)
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO; the sandbox reports what matters itself.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        with ExitStack() as cleanup:  # unwound in reverse if any step fails
            cleanup.enter_context(moto_patches.patched())
            server = ThreadedMotoServer(ip_address=HOST, port=self.port, verbose=False)
            server.start()
            cleanup.callback(server.stop)
            # Backends live in this process: another sandbox started here before (tests)
            # must not leave its buckets and tables behind.
            urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"))
            self.prov = provision(self.endpoint_url, config, SandboxNames(self.stack))
            # The sandbox prints one line per object itself; Powertools' JSON log lines
            # and EMF metrics would bury them. POWERTOOLS_LOG_LEVEL=INFO brings the
            # function's logs back.
            cleanup.enter_context(environment({
                "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
                "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
            }))
            self.handler_module = load_handler(self.prov)
            self.esm = EventSourceMapping(
                self.prov.client("sqs"),
                self.prov.queue_url,
                self.prov.queue_arn,
                self.prov.region,
                self.handler_module.handler,
                self.prov.enforcer_principal,
                batch_size=config.lambda_.batch_size,
                retry_delay_seconds=self.retry_delay_seconds,
                context=LambdaContext(self.prov.names.function_name, self.prov.region, self.prov.account),
            )
            self._cleanup = cleanup.pop_all()
        return self

    def stop(self) -> None:
        """Stop the server, restore the environment and moto's own behaviour (idempotent)."""
        self._cleanup.close()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- running

    def client(self, service: str):
        assert self.prov is not None, "start() the sandbox first"
        return self.prov.client(service)

    def poll(self, wait_seconds: int = 1) -> BatchOutcome | None:
        assert self.esm is not None, "start() the sandbox first"
        return self.esm.poll(wait_seconds)

    def run_until_idle(self, done: Callable[[], bool] | None = None, timeout: float = 30.0) -> bool:
        """Poll until the queue is empty (and ``done()`` holds); False on timeout."""
        assert self.esm is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.esm.poll(wait_seconds=0) is not None:
                continue
            # S3 queues a notification before it answers the request that caused it,
            # so once nothing is visible or in flight, nothing more is coming.
            if self.esm.queue_depth() == (0, 0) and (done is None or done()):
                return True
            time.sleep(0.1)
        return False

    def serve_forever(self, stop: threading.Event | None = None, report: bool = True) -> None:
        """The interactive loop: poll, print what the enforcer did, until ``stop`` or Ctrl-C."""
        stop = stop or threading.Event()
        while not stop.is_set():
            outcome = self.poll(wait_seconds=1)
            if outcome is not None and report:
                self.report(outcome)

    def report(self, outcome: BatchOutcome) -> None:
        assert self.prov is not None and self.esm is not None
        for record in outcome.filtered:
            self.console.print(
                f"[dim]filtered ({self.esm.describe(record)}): message {record['messageId']}[/]", highlight=False
            )
        for record in outcome.failed:
            receives = int(record["attributes"].get("ApproximateReceiveCount", "1"))
            limit = self.prov.config.max_receive_count
            fate = "goes to the DLQ" if receives >= limit else f"retried in {self.retry_delay_seconds}s"
            self.console.print(
                f"[red]failed[/] message {record['messageId']} (receive {receives} of {limit}): {fate}",
                highlight=False,
            )
        if outcome.invoked:
            for row in self.new_log_rows():
                self.console.print(
                    f"{row['s3_object_path']}: {row['action_taken']} ({row['action_reason']})",
                    highlight=False,
                    soft_wrap=True,
                )

    def new_log_rows(self) -> list[dict[str, Any]]:
        assert self.prov is not None
        fresh = []
        for row in log_rows(self.client("dynamodb"), self.prov.names.log_table):
            ident = (row["s3_object_path"], row["current_timestamp_utc"])
            if ident not in self._seen_rows:
                self._seen_rows.add(ident)
                fresh.append(row)
        return fresh

    # -- what to print

    def client_hints(self) -> list[str]:
        assert self.prov is not None
        bucket = next(iter(self.prov.demo_buckets), None) or next(iter(self.prov.buckets))
        prefix = sorted(self.prov.buckets[bucket].prefixes)[0]
        return [
            f"export AWS_ENDPOINT_URL={self.endpoint_url}",
            f"export AWS_ACCESS_KEY_ID={UPLOADER_CREDENTIALS['aws_access_key_id']}",
            f"export AWS_SECRET_ACCESS_KEY={UPLOADER_CREDENTIALS['aws_secret_access_key']}",
            f"export AWS_DEFAULT_REGION={self.prov.region}",
            f"export MAPPING_TABLE_NAME={self.prov.names.mapping_table}",
            f"export LOG_TABLE_NAME={self.prov.names.log_table}",
            f"export BUCKET_NAME={bucket}",
            "echo hello > a.txt",
            f"aws --endpoint-url {self.endpoint_url} s3 cp a.txt s3://{bucket}/{prefix}",
            f"aws --endpoint-url {self.endpoint_url} s3api head-object --bucket {bucket} --key {prefix}a.txt "
            '--query "[ServerSideEncryption, SSEKMSKeyId]"',
            f"python -m ops audit --bucket {bucket} --mapping-table {self.prov.names.mapping_table} "
            f"--endpoint-url {self.endpoint_url}",
        ]

    def print_banner(self) -> None:
        assert self.prov is not None
        prov = self.prov
        self.console.print(
            f"[bold]s3-prefix-keys sandbox[/] (stack {self.stack}): moto {moto_patches.MOTO_VERSION_MEASURED}-patched "
            f"AWS emulator on [bold]{self.endpoint_url}[/], account {prov.account}, region {prov.region}",
            highlight=False,
        )
        self.console.print(mapping_table(prov))
        self.console.print(
            f"queue {prov.names.queue} (DLQ after {prov.config.max_receive_count} receives), "
            f"tables {prov.names.mapping_table} / {prov.names.log_table}, "
            f"enforcer principal {prov.enforcer_principal}",
            highlight=False,
        )
        for note in prov.notes:
            self.console.print(f"[yellow]note:[/] {note}", highlight=False)


def mapping_table(prov: Provisioned) -> Table:
    table = Table(title="Mappings (rows in the mapping table)", title_justify="left")
    for column in ("bucket_name", "prefix", "dual_layer_encryption", "kms_key_arn", "delivery"):
        table.add_column(column, overflow="fold")
    for row in prov.rows:
        delivery = prov.buckets[row.bucket].notification
        table.add_row(row.bucket, row.prefix, str(row.dual_layer), str(row.kms_key_arn), delivery)
    return table


# ---------------------------------------------------------------------------
# the seed scenario: the original README's Testing section


SEED_BODY = b"hello from the seed scenario\n"
SEED_FILE = "a.txt"


@dataclass
class SeedObject:
    bucket: str
    key: str
    version_id: str | None = None
    before: tuple[str | None, str | None] = (None, None)
    after: tuple[str | None, str | None] = (None, None)
    expected: tuple[str, str | None] = ("AES256", None)
    delivered: bool = True  # a notification prefix covers the key
    versions: int | None = None  # versions of the key afterwards, in a versioned bucket

    @property
    def path(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class SeedReport:
    objects: list[SeedObject]
    rows: list[dict[str, Any]]
    stats: EsmStats
    dlq_messages: int
    checks: list[tuple[str, bool]]
    finished: bool

    @property
    def ok(self) -> bool:
        return self.finished and all(passed for _, passed in self.checks)


def _head(s3, bucket: str, key: str) -> tuple[str | None, str | None]:
    head = s3.head_object(Bucket=bucket, Key=key)
    return head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")


def _row_object(path: str) -> str:
    return path.split("?versionId=", 1)[0]


def seed_checks(
    objects: list[SeedObject], rows: list[dict[str, Any]], stats: EsmStats, dlq: int, old_version_action: str
) -> list[tuple[str, bool]]:
    """Every expectation of the scenario as (what, passed)."""
    checks: list[tuple[str, bool]] = []
    for obj in objects:
        checks.append((f"{obj.path} before: AES256 (S3's default), no key", obj.before == ("AES256", None)))
        want = f"{obj.expected[0]} {obj.expected[1] or 'null'}"
        checks.append((f"{obj.path} after: {want}", obj.after == obj.expected))
        own = [r for r in rows if _row_object(r["s3_object_path"]) == obj.path]
        if not obj.delivered:
            checks.append((f"{obj.path}: no event (not under a mapped prefix), no log row", own == []))
            continue
        expected_reason = (
            decision.reason_wrong_type(obj.before[0], obj.expected[0])
            if obj.before[0] != obj.expected[0]
            else decision.reason_wrong_key(obj.before[1], obj.expected[1] or "")
        )
        checks.append(
            (
                f"{obj.path}: one log row, re-keyed, reason '{expected_reason}'",
                len(own) == 1 and own[0]["action_reason"] == expected_reason and own[0]["action_taken"] != "None"
                and own[0].get("outcome") == "rekeyed",
            )
        )
        if obj.version_id:
            checks.append(
                (
                    f"{obj.path}: the log row names the uploaded version",
                    len(own) == 1 and own[0]["s3_object_path"].endswith(f"?versionId={obj.version_id}"),
                )
            )
            # In place keeps the one version; a copy adds one and, with "delete", removes the old.
            copied = len(own) == 1 and own[0].get("method") != "update-object-encryption"
            want = 2 if copied and old_version_action == "keep" else 1
            checks.append((f"{obj.path}: {want} version(s) left (oldVersionAction {old_version_action})",
                           obj.versions == want))
    delivered = sum(o.delivered for o in objects)
    copies = sum(1 for r in rows if r.get("method") in ("copy", "multipart-copy"))
    checks.append(
        (f"the function was handed exactly the {delivered} uploads' events", stats.records_invoked == delivered)
    )
    checks.append(
        (
            f"each of the enforcer's {copies} copy event(s) was dropped by the ESM filter, not invoked",
            stats.filtered_own_writes == copies,
        )
    )
    checks.append(("no failed records, nothing in the dead-letter queue", stats.failed == 0 and dlq == 0))
    return checks


def run_seed(sandbox: Sandbox, timeout: float = 30.0) -> SeedReport:
    """Upload to the mapped and unmapped prefixes of every demo bucket, let the enforcer
    work, and check every result; the tables are printed on ``sandbox.console``."""
    prov = sandbox.prov
    assert prov is not None and sandbox.esm is not None
    if not prov.demo_buckets:
        raise SandboxError(
            f"the seed scenario uses the demo buckets, but {sandbox.stack_path.name} has "
            "`s3-prefix-keys:demo` off; set it to true (the dev stack has it on)"
        )
    console = sandbox.console
    s3 = prov.client("s3")
    mappings = prov.mappings()
    # Let provisioning's s3:TestEvent messages pass through the filters first, so the
    # counts below are the scenario's own.
    sandbox.run_until_idle(timeout=timeout)
    sandbox.esm.stats = EsmStats()

    prefixes = [p for p, _, _ in DEMO.prefixes] + [DEMO.unmapped_prefix]
    objects = []
    for bucket in prov.demo_buckets:
        for prefix in prefixes:
            key = prefix + SEED_FILE
            answer = s3.put_object(Bucket=bucket, Key=key, Body=SEED_BODY)
            mapping = mappings.lookup(bucket, key)
            expected = (mapping.target.sse_type, mapping.target.kms_key_arn) if mapping else ("AES256", None)
            objects.append(
                SeedObject(
                    bucket, key, version_id=answer.get("VersionId"), expected=expected,
                    delivered=prov.notified(bucket, key),
                )
            )
    # Immediately after the uploads, before the enforcer has polled: the "before" table.
    for obj in objects:
        obj.before = _head(s3, obj.bucket, obj.key)
    console.print(head_table("head-object right after the uploads", objects, after=False))

    ddb = prov.client("dynamodb")
    expected_rows = sum(o.delivered for o in objects)

    def all_logged() -> bool:
        return len(log_rows(ddb, prov.names.log_table)) >= expected_rows

    if console.is_terminal:
        with console.status("the enforcer is working through the queue..."):
            finished = sandbox.run_until_idle(all_logged, timeout=timeout)
    else:
        finished = sandbox.run_until_idle(all_logged, timeout=timeout)

    for obj in objects:
        obj.after = _head(s3, obj.bucket, obj.key)
        if s3.get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read() != SEED_BODY:
            obj.after = ("(body changed)", None)
        if obj.version_id:
            listed = s3.list_object_versions(Bucket=obj.bucket, Prefix=obj.key).get("Versions", [])
            obj.versions = sum(1 for v in listed if v["Key"] == obj.key)
    rows = log_rows(ddb, prov.names.log_table)
    dlq = int(
        prov.client("sqs").get_queue_attributes(
            QueueUrl=prov.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
    )
    stats = sandbox.esm.stats
    console.print(head_table("head-object a few seconds later", objects, after=True))
    console.print(log_table(rows))
    console.print(
        f"Event source mapping: {stats.received} messages received, {stats.invocations} invocation(s) "
        f"with {stats.records_invoked} record(s), {stats.filtered_own_writes} of the enforcer's own copy "
        f"events filtered out, {stats.failed} failed; dead-letter queue: {dlq}. (The original sample "
        "invoked the function again for each of its own copies and logged 'Already using the correct key'; "
        "UpdateObjectEncryption raises no event at all.)",
        highlight=False,
    )
    console.print(
        f"{DEMO.unmapped_prefix} is not mapped: notifications cover mapped prefixes only, so its uploads "
        "never reach the function (the original sample logged a 'No KMS key configured' row for them).",
        highlight=False,
    )
    checks = seed_checks(objects, rows, stats, dlq, prov.config.old_version_action)
    report = SeedReport(objects, rows, stats, dlq, checks, finished)
    if not finished:
        console.print(f"[red]timed out after {timeout:.0f}s waiting for the enforcer[/]")
    failed = [what for what, passed in report.checks if not passed]
    for what in failed:
        console.print(f"[red]FAIL[/] {what}", highlight=False)
    verdict = "[green]PASS[/]" if report.ok else "[red]FAIL[/]"
    console.print(
        f"{verdict} seed scenario: {len(report.checks) - len(failed)}/{len(report.checks)} checks passed",
        highlight=False,
    )
    return report


def head_table(title: str, objects: list[SeedObject], after: bool) -> Table:
    """``aws s3api head-object --query "[ServerSideEncryption, SSEKMSKeyId]"`` per object."""
    table = Table(title=title, title_justify="left")
    table.add_column("object", overflow="fold")
    table.add_column("ServerSideEncryption", overflow="fold")
    table.add_column("SSEKMSKeyId", overflow="fold")
    if after:
        table.add_column("expected", overflow="fold")
    for obj in objects:
        sse, key = obj.after if after else obj.before
        cells = [obj.path, str(sse) if sse else "null", key or "null"]
        if after:
            cells.append("[green]yes[/]" if obj.after == obj.expected else f"[red]no: {obj.expected}[/]")
        table.add_row(*cells)
    return table


LOG_COLUMNS = ("s3_object_path", "current_timestamp_utc", "action_reason", "action_taken", "method")


def log_table(rows: list[dict[str, Any]]) -> Table:
    """``aws dynamodb scan --table-name $LOG_TABLE_NAME`` with the original's columns (+ method)."""
    table = Table(title="Log table", title_justify="left")
    for column in LOG_COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(str(row.get(c, "")) for c in LOG_COLUMNS))
    return table
