"""``ops sandbox`` in-process: provisioning from the stack file, the ESM loop (filters,
partial batch failures, dead-letter queue) and the seed scenario."""

from __future__ import annotations

import io
import json
import shutil
import socket
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
from rich.console import Console
from ruamel.yaml import YAML
from typer.testing import CliRunner

from components.config import DEMO, load_stack_file, notification_prefixes, stack_file
from ops import sandbox as sb
from ops.cli import app
from ops.sandbox import lifecycle, seed

ROOT = Path(__file__).resolve().parent.parent
BODY = b"tenant data \x00\xff"


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=200)


@pytest.fixture
def dev():
    """The dev stack (Pulumi.dev.yaml) on a free port; failed messages retried at once."""
    with sb.Sandbox("dev", port=sb.free_port(), console=quiet_console(), retry_delay_seconds=0) as box:
        yield box


def write_stack(tmp_path: Path, name: str, **namespace) -> Path:
    """A copy of the dev stack file with extra ``s3-prefix-keys:`` settings."""
    doc = YAML(typ="safe", pure=True).load(stack_file("dev", ROOT).read_text())
    for key, value in namespace.items():
        doc["config"][f"s3-prefix-keys:{key}"] = value
    path = tmp_path / f"Pulumi.{name}.yaml"
    with path.open("w") as handle:
        YAML(typ="safe", pure=True).dump(doc, handle)
    return path


def queue_messages(box: sb.Sandbox, url: str) -> list[dict]:
    return box.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])


def test_provisions_the_dev_stack_from_its_stack_file(dev):
    config = load_stack_file(stack_file("dev", ROOT))
    prov = dev.prov
    assert config.demo, "the dev stack is the demo stack"
    s3, kms, sqs, ddb = (dev.client(s) for s in ("s3", "kms", "sqs", "dynamodb"))

    # Keys: one per DEMO key name, found by the description that names it.
    described = {}
    for key in kms.list_keys()["Keys"]:
        meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
        described[meta["Description"].rsplit(" ", 1)[-1]] = meta["Arn"]
    assert sorted(described) == sorted(DEMO.key_names)

    # Mapping rows: every demo bucket, every DEMO prefix, the right key and type.
    items = ddb.scan(TableName=prov.names.mapping_table)["Items"]
    got = {(i["bucket_name"]["S"], i["prefix"]["S"], i["kms_key_arn"]["S"], i["dual_layer_encryption"]["BOOL"])
           for i in items}
    want = {(sb.demo_bucket_name(bucket), prefix, described[key], dsse)
            for bucket, _ in DEMO.buckets for prefix, key, dsse in DEMO.prefixes}
    assert got == want
    # Bucket keys follow the model's default: on for SSE-KMS, off for DSSE.
    assert all(i["bucket_key_enabled"]["BOOL"] is (not i["dual_layer_encryption"]["BOOL"]) for i in items)

    # Buckets, versioning and one notification per (folded) mapped prefix.
    for bucket, versioned in DEMO.buckets:
        name = sb.demo_bucket_name(bucket)
        status = s3.get_bucket_versioning(Bucket=name).get("Status")
        assert (status == "Enabled") is versioned
        queues = s3.get_bucket_notification_configuration(Bucket=name)["QueueConfigurations"]
        prefixes = sorted(q["Filter"]["Key"]["FilterRules"][0]["Value"] for q in queues)
        assert prefixes == notification_prefixes(p for p, _, _ in DEMO.prefixes)
        assert {q["QueueArn"] for q in queues} == {prov.queue_arn}

    # The queue redrives to the DLQ after the config's maxReceiveCount.
    attrs = sqs.get_queue_attributes(QueueUrl=prov.queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    dlq_arn = sqs.get_queue_attributes(QueueUrl=prov.dead_letter_queue_url,
                                       AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == config.max_receive_count
    assert redrive["deadLetterTargetArn"] == dlq_arn

    # The function runs as an assumed role session named after it, not as the uploader.
    assert prov.enforcer_principal.startswith("AWS:AROA")
    assert prov.enforcer_principal.endswith(":" + prov.names.function_name)
    uploader = "AWS:" + dev.client("sts").get_caller_identity()["UserId"]
    assert uploader != prov.enforcer_principal


def test_esm_drops_what_the_filters_reject_and_invokes_the_rest(dev):
    prov, esm = dev.prov, dev.esm
    dev.run_until_idle()  # provisioning's s3:TestEvent messages
    esm.stats = sb.EsmStats()
    handed: list[dict] = []
    real_handler = esm.handler

    def recording_handler(event, context):
        handed.extend(event["Records"])
        return real_handler(event, context)

    esm.handler = recording_handler
    sqs, s3 = dev.client("sqs"), dev.client("s3")
    forged_own_write = {"Records": [{
        "eventSource": "aws:s3", "eventName": "ObjectCreated:Copy",
        "userIdentity": {"principalId": prov.enforcer_principal},
        "s3": {"bucket": {"name": "s3pk-demo"}, "object": {"key": "prefix1/forged.txt"}},
    }]}
    sqs.send_message(QueueUrl=prov.queue_url, MessageBody=json.dumps(forged_own_write))
    sqs.send_message(QueueUrl=prov.queue_url, MessageBody="not json at all")
    bucket = sb.demo_bucket_name(DEMO.buckets[0][0])
    dsse_prefix = next(p for p, _, dsse in DEMO.prefixes if dsse)
    s3.put_object(Bucket=bucket, Key=f"{dsse_prefix}x.txt", Body=BODY)  # re-keyed by copy

    assert dev.run_until_idle(timeout=20)
    # Only the upload reached the function; the forged own write, the non-JSON body and
    # the enforcer's real copy event were deleted by the filters, as Lambda does.
    keys = [unquote_plus(json.loads(r["body"])["Records"][0]["s3"]["object"]["key"]) for r in handed]
    assert keys == [f"{dsse_prefix}x.txt"]
    assert esm.stats.filtered_own_writes == 2
    assert esm.stats.filtered_other == 1
    assert esm.stats.records_invoked == 1 and esm.stats.failed == 0
    head = s3.head_object(Bucket=bucket, Key=f"{dsse_prefix}x.txt")
    assert head["ServerSideEncryption"] == "aws:kms:dsse"
    assert queue_messages(dev, prov.dead_letter_queue_url) == []


def test_batch_item_failures_are_retried_then_dead_lettered(tmp_path):
    path = write_stack(tmp_path, "poison", maxReceiveCount=2)
    with sb.Sandbox("poison", port=sb.free_port(), stack_path=path, console=quiet_console(),
                    retry_delay_seconds=0) as box:
        prov, esm = box.prov, box.esm
        assert prov.config.max_receive_count == 2
        box.run_until_idle()
        esm.stats = sb.EsmStats()
        # Passes the filters (an S3 ObjectCreated record without a principal) but names
        # no object: the handler reports it as a batch item failure.
        poison = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]})
        sqs, s3 = box.client("sqs"), box.client("s3")
        sqs.send_message(QueueUrl=prov.queue_url, MessageBody=poison)
        bucket = sb.demo_bucket_name(DEMO.buckets[0][0])
        plain_prefix = next(p for p, _, dsse in DEMO.prefixes if not dsse)
        s3.put_object(Bucket=bucket, Key=f"{plain_prefix}good.txt", Body=BODY)

        assert box.run_until_idle(timeout=20)
        # The poison message was handed over maxReceiveCount times, then SQS moved it.
        assert esm.stats.failed == prov.config.max_receive_count
        assert esm.stats.records_invoked == prov.config.max_receive_count + 1
        dead = queue_messages(box, prov.dead_letter_queue_url)
        assert [m["Body"] for m in dead] == [poison]
        # The good record of the same batch succeeded once and was not retried.
        rows = sb.log_rows(box.client("dynamodb"), prov.names.log_table)
        assert [r["s3_object_path"] for r in rows] == [f"s3://{bucket}/{plain_prefix}good.txt"]
        assert s3.head_object(Bucket=bucket, Key=f"{plain_prefix}good.txt")["ServerSideEncryption"] == "aws:kms"


def test_a_crashed_invocation_fails_the_whole_batch(dev):
    prov, esm = dev.prov, dev.esm
    dev.run_until_idle()

    def crashing_handler(event, context):
        raise RuntimeError("the function crashed")

    esm.handler = crashing_handler
    esm.stats = sb.EsmStats()
    sqs = dev.client("sqs")
    body = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                                    "s3": {"bucket": {"name": "s3pk-demo"}, "object": {"key": "prefix1/a"}}}]})
    sqs.send_message(QueueUrl=prov.queue_url, MessageBody=body)
    assert dev.run_until_idle(timeout=30)
    assert esm.stats.handler_errors == prov.config.max_receive_count
    assert [m["Body"] for m in queue_messages(dev, prov.dead_letter_queue_url)] == [body]


def test_configured_eventbridge_bucket_is_routed_through_a_rule(tmp_path):
    account = "123456789012"  # moto's default account: the key is the emulator's own
    key_arn = f"arn:aws:kms:us-east-1:{account}:key/1a2b3c4d-1111-4aaa-8bbb-0123456789ab"
    path = write_stack(tmp_path, "events", demo=False, buckets={
        "tenant-events": {"notification": "eventbridge", "prefixes": {"tenant-a/": {"kmsKeyArn": key_arn}}},
    })
    with sb.Sandbox("events", port=sb.free_port(), stack_path=path, console=quiet_console()) as box:
        prov = box.prov
        assert prov.account == account
        assert prov.demo_buckets == {}
        rule = box.client("events").describe_rule(Name=prov.names.eventbridge_rule("tenant-events"))
        assert json.loads(rule["EventPattern"])["detail"]["bucket"]["name"] == ["tenant-events"]
        s3 = box.client("s3")
        s3.put_object(Bucket="tenant-events", Key="tenant-a/report 1+2.csv", Body=BODY)
        s3.put_object(Bucket="tenant-events", Key="elsewhere/x.csv", Body=BODY)
        assert box.run_until_idle(timeout=20)
        # The rule passed the mapped prefix only, with the plain key (no '+' decoding).
        rows = sb.log_rows(box.client("dynamodb"), prov.names.log_table)
        assert [(r["s3_object_path"], r["delivery"]) for r in rows] == [
            ("s3://tenant-events/tenant-a/report 1+2.csv", "eventbridge")
        ]
        assert s3.head_object(Bucket="tenant-events", Key="elsewhere/x.csv")["ServerSideEncryption"] == "AES256"
        # EventBridge names the object's version "null" (never versioned): patch 10 lets
        # HEAD ?versionId=null find it, as S3 does.
        assert rows[0]["outcome"] == "rekeyed"
        head = s3.head_object(Bucket="tenant-events", Key="tenant-a/report 1+2.csv")
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)


def test_seed_scenario_passes_through_the_cli():
    port = sb.free_port()
    result = CliRunner().invoke(app, ["sandbox", "--scenario", "seed", "--port", str(port)])
    assert result.exit_code == 0, result.output
    out = result.output
    for title in ("head-object right after the uploads", "head-object a few seconds later", "Log table"):
        assert title in out
    assert "PASS seed scenario" in out and "FAIL" not in out
    for bucket, _ in DEMO.buckets:
        for prefix in [p for p, _, _ in DEMO.prefixes] + [DEMO.unmapped_prefix]:
            assert f"s3://{sb.demo_bucket_name(bucket)}/{prefix}a.txt" in out


def test_seed_scenario_fails_when_a_result_is_wrong(dev):
    # Unmap one prefix behind the scenario's back: the object stays SSE-S3 and the
    # enforcer logs "no key configured", so the scenario must fail, not pass.
    prov = dev.prov
    bucket = sb.demo_bucket_name(DEMO.buckets[0][0])
    prefix = DEMO.prefixes[1][0]
    dev.client("dynamodb").delete_item(
        TableName=prov.names.mapping_table, Key={"bucket_name": {"S": bucket}, "prefix": {"S": prefix}}
    )
    report = sb.run_seed(dev)
    assert not report.ok
    failed = [what for what, passed in report.checks if not passed]
    assert any(f"s3://{bucket}/{prefix}a.txt after" in what for what in failed)
    assert all(f"{bucket}/{prefix}" in what for what in failed)


def test_seed_scenario_exits_1_through_the_cli_when_a_result_is_wrong(monkeypatch):
    # The same scenario, with one mapping row deleted once the sandbox is up: the CLI's
    # exit code must say so, as `make demo` and CI read it.
    real_run_seed = sb.run_seed

    def run_seed_without_one_row(box, **kwargs):
        box.client("dynamodb").delete_item(TableName=box.prov.names.mapping_table, Key={
            "bucket_name": {"S": sb.demo_bucket_name(DEMO.buckets[0][0])}, "prefix": {"S": DEMO.prefixes[0][0]},
        })
        return real_run_seed(box, **kwargs)

    monkeypatch.setattr(seed, "run_seed", run_seed_without_one_row)
    result = CliRunner().invoke(app, ["sandbox", "--scenario", "seed", "--port", str(sb.free_port())])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "PASS seed scenario" not in result.output


def test_audit_and_backfill_reach_the_endpoint_and_region_given_after_the_command(dev, monkeypatch):
    # The SDK's own default region is another one: only --region finds the sandbox's
    # mapping table (DynamoDB tables are per region), and only --endpoint-url its bucket.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    bucket = sb.demo_bucket_name(DEMO.buckets[0][0])
    prefix = DEMO.prefixes[0][0]
    dev.client("s3").put_object(Bucket=bucket, Key=f"{prefix}only-in-the-sandbox.txt", Body=b"x")
    target = ["--bucket", bucket, "--mapping-table", dev.prov.names.mapping_table,
              "--endpoint-url", dev.endpoint_url, "--region", dev.prov.region]
    assert dev.prov.region == "us-east-1"

    audit = CliRunner().invoke(app, ["audit", *target, "--format", "json"])
    assert audit.exit_code == 1, audit.output  # the upload is still SSE-S3: the enforcer has not polled
    doc = json.loads(audit.stdout)
    assert [o["key"] for o in doc["offenders"]] == [f"{prefix}only-in-the-sandbox.txt"]
    assert sorted(p["prefix"] for p in doc["prefixes"]) == sorted(p for p, _, _ in DEMO.prefixes)

    backfill = CliRunner().invoke(app, ["backfill", *target, "--dry-run"])
    assert backfill.exit_code == 0, backfill.output
    assert f"{prefix}only-in-the-sandbox.txt" in backfill.stdout

    without_region = CliRunner().invoke(app, ["audit", *target[:-2], "--format", "json"])
    assert without_region.exit_code == 2
    assert "does not exist in this account/region" in " ".join(without_region.output.split())

    # The same options before the command (they go through the environment: set, then
    # delete, so that monkeypatch removes what the CLI sets).
    monkeypatch.setenv("AWS_ENDPOINT_URL", "placeholder")
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    global_form = CliRunner().invoke(app, [*target[4:], "audit", *target[:4], "--format", "json"])
    assert global_form.exit_code == 1, global_form.output
    assert json.loads(global_form.stdout)["offenders"] == doc["offenders"]


def test_port_in_use_is_refused_before_anything_starts():
    with socket.socket() as listener:
        listener.bind((sb.HOST, 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(sb.SandboxError, match=rf"port {port} .* in use.*--port"):
            sb.Sandbox("dev", port=port, console=quiet_console()).start()
        result = CliRunner().invoke(app, ["sandbox", "--port", str(port)])
    assert result.exit_code == 2
    assert f"port {port}" in result.output and "--port" in result.output


def test_stack_without_anything_to_enforce_is_refused(tmp_path):
    path = write_stack(tmp_path, "empty", demo=False)
    with pytest.raises(sb.SandboxError, match="maps no bucket.*demo"):
        sb.Sandbox("empty", port=sb.free_port(), stack_path=path, console=quiet_console()).start()


def test_seed_scenario_needs_the_demo(tmp_path):
    path = write_stack(tmp_path, "nodemo", demo=False, buckets={
        "tenant-data": {"prefixes": {"a/": {"kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/2b3c4d5e-2222-4bbb-8ccc-123456789abc"}}},
    })
    with sb.Sandbox("nodemo", port=sb.free_port(), stack_path=path, console=quiet_console()) as box, \
            pytest.raises(sb.SandboxError, match="demo"):
        sb.run_seed(box)


def test_invalid_stack_file_exits_2_naming_the_path(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root)
    write_stack(root, "dev", maxReceiveCount=1)
    monkeypatch.setattr(lifecycle, "stack_file", lambda stack, _root=None: root / f"Pulumi.{stack}.yaml")
    result = CliRunner().invoke(app, ["sandbox", "--port", str(sb.free_port())])
    assert result.exit_code == 2
    assert "s3-prefix-keys:maxReceiveCount" in result.output
