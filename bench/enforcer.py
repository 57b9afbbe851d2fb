"""Enforcer benchmark: AWS calls, invocations and wall time per re-keyed object.

    python -m bench.enforcer [--latency-ms 20] [--objects 10]

Patched moto in-process, 20 ms injected per AWS call, a warm container (handler
imported, clients created) with ENFORCER_PRINCIPAL_ID set, mapping cache cleared
before each measured batch so its Query is counted. Invocations per object are
counted by passing every event the batch caused through the same ESM filter the
Pulumi program deploys (``components.event_filter``).

The baseline replays what the original sample's Lambda does, sequentially, per
object: GetObject, Query, HeadObject, CopyObject, PutItem; then the second
invocation its own copy triggers: GetObject, Query, PutItem.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
from contextlib import ExitStack

import boto3

os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_SHARED_CREDENTIALS_FILE="/dev/null",
    POWERTOOLS_LOG_LEVEL="ERROR",
    POWERTOOLS_METRICS_NAMESPACE="S3PrefixKeysBench",
    POWERTOOLS_METRICS_DISABLED="true",
)

from moto import mock_aws  # noqa: E402

from bench.latency import CallMeter  # noqa: E402
from components.event_filter import enforcer_filter_patterns, esm_accepts  # noqa: E402
from ops import moto_patches  # noqa: E402
from ops.lambda_runtime import LambdaContext, create_tables, sqs_event  # noqa: E402

MIB = 1024**2


class Bench:
    def __init__(self, latency: float):
        self.latency = latency
        self.s3 = boto3.client("s3")
        self.ddb = boto3.client("dynamodb")
        self.sqs = boto3.client("sqs")
        self.kms = boto3.client("kms")
        create_tables(self.ddb)
        self.queue_url = self.sqs.create_queue(QueueName="enforcer")["QueueUrl"]
        self.queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        iam, sts = boto3.client("iam"), boto3.client("sts")
        role = iam.create_role(RoleName="enforcer", AssumeRolePolicyDocument="{}")["Role"]
        creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="enforcer")["Credentials"]
        self.creds = creds
        who = boto3.client(
            "sts",
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        ).get_caller_identity()
        self.principal = "AWS:" + who["UserId"]
        self.filters = enforcer_filter_patterns(self.principal)
        self.key_kms = self.kms.create_key()["KeyMetadata"]["Arn"]
        self.key_dsse = self.kms.create_key()["KeyMetadata"]["Arn"]
        self.buckets = {}
        for name, versioned in (("bench-plain", False), ("bench-versioned", True)):
            self.s3.create_bucket(Bucket=name)
            if versioned:
                self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
            self.s3.put_bucket_notification_configuration(
                Bucket=name,
                NotificationConfiguration={
                    "QueueConfigurations": [{"QueueArn": self.queue_arn, "Events": ["s3:ObjectCreated:*"]}]
                },
            )
            for prefix, arn, dsse in (("kms/", self.key_kms, False), ("dsse/", self.key_dsse, True)):
                self.ddb.put_item(
                    TableName="mapping",
                    Item={
                        "bucket_name": {"S": name},
                        "prefix": {"S": prefix},
                        "kms_key_arn": {"S": arn},
                        "dual_layer_encryption": {"BOOL": dsse},
                    },
                )
        self.drain()

    def load_handler(self, threshold: int):
        os.environ.update(
            MAPPING_TABLE_NAME="mapping",
            LOG_TABLE_NAME="log",
            ENFORCER_PRINCIPAL_ID=self.principal,
            MULTIPART_THRESHOLD_BYTES=str(threshold),
            AWS_ACCESS_KEY_ID=self.creds["AccessKeyId"],
            AWS_SECRET_ACCESS_KEY=self.creds["SecretAccessKey"],
            AWS_SESSION_TOKEN=self.creds["SessionToken"],
        )
        try:
            sys.modules.pop("enforcer.handler", None)
            handler = importlib.import_module("enforcer.handler")
        finally:
            os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
            os.environ.pop("AWS_SESSION_TOKEN", None)
        meter = CallMeter(self.latency).attach(handler.s3, handler.dynamodb, handler.sns)
        return handler, meter

    def drain(self):
        out = []
        while got := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
            for m in got:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])
            out += got
        return out

    def put(self, bucket, keys, size):
        body = os.urandom(size)
        for key in keys:
            self.s3.put_object(Bucket=bucket, Key=key, Body=body)
        return self.drain()

    def run_batches(self, handler, meter, messages):
        """Feed messages in ESM-sized batches, as Lambda would; returns (seconds, invocations)."""
        meter.reset()
        handler.engine.mappings._cache.clear()
        accepted = [m for m in sqs_event(messages, self.queue_arn)["Records"] if esm_accepts(self.filters, m)]
        start = time.perf_counter()
        for i in range(0, len(accepted), 10):
            result = handler.handler({"Records": accepted[i : i + 10]}, LambdaContext())
            assert result == {"batchItemFailures": []}, result
        elapsed = time.perf_counter() - start
        # What the batch's own writes would deliver: dropped by the ESM filter, or not.
        caused = sqs_event(self.drain(), self.queue_arn)["Records"]
        second = [m for m in caused if esm_accepts(self.filters, m)]
        return elapsed, len(accepted), len(caused), len(second)

    def baseline(self, bucket, keys):
        """The original sample, sequential: 8 calls per object over two invocations."""
        meter = CallMeter(self.latency).attach(self.s3, self.ddb)
        start = time.perf_counter()
        for key in keys:
            for invocation in (1, 2):
                self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                self.ddb.query(
                    TableName="mapping",
                    KeyConditionExpression="bucket_name = :b",
                    ExpressionAttributeValues={":b": {"S": bucket}},
                )
                if invocation == 1:
                    self.s3.head_object(Bucket=bucket, Key=key)
                    self.s3.copy_object(
                        Bucket=bucket,
                        Key=key,
                        CopySource={"Bucket": bucket, "Key": key},
                        ServerSideEncryption="aws:kms",
                        SSEKMSKeyId=self.key_kms,
                    )
                self.ddb.put_item(
                    TableName="log",
                    Item={"s3_object_path": {"S": f"s3://{bucket}/{key}"}, "current_timestamp_utc": {"S": str(time.time())}},
                )
        elapsed = time.perf_counter() - start
        self.drain()
        meter.delay = 0
        return elapsed, meter.total / len(keys)


def report(title, n, elapsed, meter, accepted, caused, second):
    calls = meter.total
    print(f"\n{title}")
    print(f"  objects                 {n}")
    print(f"  wall time               {elapsed * 1000:8.1f} ms")
    print(f"  AWS calls per object    {calls / n:8.2f}")
    for op, per in meter.per_object(n).items():
        print(f"      {op:<34}{per:6.2f}")
    print(f"  invocations per object  {(accepted + second) / n:8.2f}  "
          f"(events caused by the enforcer: {caused}, passed by the ESM filter: {second})")
    return calls / n


def powertools_overhead(records: int = 10, rounds: int = 300) -> tuple[float, float]:
    """Microseconds per batch: Powertools AsyncBatchProcessor vs a hand-rolled loop."""
    from aws_lambda_powertools.utilities.batch import (
        AsyncBatchProcessor,
        EventType,
        async_process_partial_response,
    )

    event = sqs_event(
        [{"MessageId": f"m{i}", "ReceiptHandle": "r", "Body": "{}"} for i in range(records)], "arn:q"
    )
    processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    async def noop(record):
        return None

    start = time.perf_counter()
    for _ in range(rounds):
        async_process_partial_response(event, noop, processor)
    powertools = (time.perf_counter() - start) / rounds * 1e6

    async def hand_rolled():
        results = await asyncio.gather(*(noop(r) for r in event["Records"]), return_exceptions=True)
        return [r for r in results if isinstance(r, Exception)]

    start = time.perf_counter()
    for _ in range(rounds):
        asyncio.run(hand_rolled())
    manual = (time.perf_counter() - start) / rounds * 1e6
    return powertools, manual


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--objects", type=int, default=10)
    args = parser.parse_args(argv)
    n = args.objects
    latency = args.latency_ms / 1000

    with ExitStack() as stack:
        stack.enter_context(moto_patches.patched())
        stack.enter_context(mock_aws())
        bench = Bench(latency)
        handler, meter = bench.load_handler(threshold=8 * MIB)
        # Warm the container: one invocation before measuring.
        bench.run_batches(handler, meter, bench.put("bench-plain", ["kms/warmup"], 1024))

        keys = [f"kms/obj-{i}" for i in range(n)]
        messages = bench.put("bench-plain", keys, 1024)
        t_rekey, *counts = bench.run_batches(handler, meter, messages)
        per_rekeyed = report("Re-key: SSE-S3 -> SSE-KMS, unversioned (gated)", n, t_rekey, meter, *counts)

        t_ok, *counts = bench.run_batches(handler, meter, messages)
        per_compliant = report("Same objects, now compliant (gated)", n, t_ok, meter, *counts)

        base_keys = [f"kms/base-{i}" for i in range(n)]
        bench.put("bench-plain", base_keys, 1024)
        t_base, base_calls = bench.baseline("bench-plain", base_keys)
        print("\nBaseline: the original sample, sequential, two invocations per object")
        print(f"  wall time               {t_base * 1000:8.1f} ms   calls per object {base_calls:.2f}")

        print("\nOther paths (reported, not gated)")
        t, *c = bench.run_batches(handler, meter, bench.put("bench-plain", [f"dsse/obj-{i}" for i in range(n)], 1024))
        report("DSSE target: copy", n, t, meter, *c)
        t, *c = bench.run_batches(handler, meter, bench.put("bench-versioned", [f"kms/obj-{i}" for i in range(n)], 1024))
        report("Versioned bucket, SSE-KMS: update in place", n, t, meter, *c)
        t, *c = bench.run_batches(handler, meter, bench.put("bench-versioned", [f"dsse/obj-{i}" for i in range(n)], 1024))
        report("Versioned bucket, DSSE: copy + delete old version", n, t, meter, *c)
        big = 2
        t, *c = bench.run_batches(handler, meter, bench.put("bench-plain", [f"dsse/big-{i}" for i in range(big)], 20 * MIB))
        report("Multipart copy, 20 MiB objects, 8 MiB threshold", big, t, meter, *c)

    pt, manual = powertools_overhead()
    speedup = t_base / t_rekey
    print("\nPowertools batch utilities (10 no-op records): "
          f"{pt:.0f} us per batch vs {manual:.0f} us hand-rolled; +{pt - manual:.0f} us per batch")
    print("\nTargets")
    verdicts = [
        (f"calls per re-keyed object {per_rekeyed:.2f} <= 2.2", per_rekeyed <= 2.2),
        (f"calls per compliant object {per_compliant:.2f} <= 1.2", per_compliant <= 1.2),
        (f"speed-up vs baseline {speedup:.1f}x >= 10x", speedup >= 10),
    ]
    for text, ok in verdicts:
        print(f"  [{'ok' if ok else 'MISSED'}] {text}")
    return 0 if all(ok for _, ok in verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
