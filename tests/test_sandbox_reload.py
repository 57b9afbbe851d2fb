"""A running sandbox picks up stack-file changes (``ops/sandbox/reload.py``): mappings added
and removed with ``ops mappings``, new buckets, an invalid file, settings that need a restart."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rich.console import Console
from ruamel.yaml import YAML

from components.config import DEMO, stack_file
from ops import sandbox as sb
from ops import stack_config
from ops.sandbox import reload

ROOT = Path(__file__).resolve().parent.parent
STACK = "live"
NEW_BUCKET = "tenant-live"


class Box:
    def __init__(self, sandbox: sb.Sandbox, out: io.StringIO, root: Path):
        self.sandbox, self.out, self.root = sandbox, out, root
        self.s3 = sandbox.client("s3")
        self.key_arn = sandbox.client("kms").create_key(Description="live tenant")["KeyMetadata"]["Arn"]

    def wait_for_output(self, marker: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.out.getvalue():
            assert time.monotonic() < deadline, f"no {marker!r} within {timeout}s:\n{self.out.getvalue()}"
            time.sleep(0.1)
        return self.out.getvalue()

    def upload_and_settle(self, bucket: str, key: str) -> dict:
        self.s3.put_object(Bucket=bucket, Key=key, Body=b"tenant data")
        assert self.sandbox.run_until_idle(timeout=20)
        return self.s3.head_object(Bucket=bucket, Key=key)

    def rows(self) -> set[tuple[str, str, str]]:
        items = self.sandbox.client("dynamodb").scan(TableName=self.sandbox.prov.names.mapping_table)["Items"]
        return {(i["bucket_name"]["S"], i["prefix"]["S"], i["kms_key_arn"]["S"]) for i in items}


@pytest.fixture
def box(tmp_path):
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    path = tmp_path / f"Pulumi.{STACK}.yaml"
    path.write_text(stack_file("dev", ROOT).read_text())
    out = io.StringIO()
    with sb.Sandbox(STACK, port=sb.free_port(), stack_path=path, console=Console(file=out, width=300),
                    retry_delay_seconds=0) as sandbox:
        yield Box(sandbox, out, tmp_path)


def add(box: Box, bucket: str, prefix: str, **kw) -> None:
    stack_config.add_mapping(STACK, bucket, prefix, box.key_arn, root=box.root, writer=stack_config.Writer.FILE, **kw)


def test_a_mapping_added_and_removed_with_ops_mappings_reaches_the_running_sandbox(box):
    add(box, NEW_BUCKET, "a/", dsse=True)
    out = box.wait_for_output(f"created bucket {NEW_BUCKET}: notifications cover a/ (sqs)")
    assert f"mapped s3://{NEW_BUCKET}/a/ -> {box.key_arn} (DSSE-KMS, bucket key off)" in out
    assert (NEW_BUCKET, "a/", box.key_arn) in box.rows()
    got = box.upload_and_settle(NEW_BUCKET, "a/x.txt")
    assert (got["ServerSideEncryption"], got["SSEKMSKeyId"]) == ("aws:kms:dsse", box.key_arn)
    assert box.upload_and_settle(NEW_BUCKET, "b/early.txt")["ServerSideEncryption"] == "AES256"  # not mapped yet

    add(box, NEW_BUCKET, "b/")
    out = box.wait_for_output(f"notifications of {NEW_BUCKET}: notifications cover a/, b/ (sqs)")
    assert f"mapped s3://{NEW_BUCKET}/b/ -> {box.key_arn} (SSE-KMS, bucket key on)" in out
    assert "the enforcer picks up the changed rows within 1 s" in out  # a/x.txt filled it
    routes = box.s3.get_bucket_notification_configuration(Bucket=NEW_BUCKET)["QueueConfigurations"]
    assert sorted(r["Filter"]["Key"]["FilterRules"][0]["Value"] for r in routes) == ["a/", "b/"]
    assert box.sandbox.prov.notified(NEW_BUCKET, "b/late.txt")

    for prefix in ("a/", "b/"):
        stack_config.remove_mapping(STACK, NEW_BUCKET, prefix, root=box.root, writer=stack_config.Writer.FILE)
    box.wait_for_output(f"{NEW_BUCKET} left the stack")
    assert "unmapped s3://tenant-live/b/" in box.out.getvalue()
    assert not any(row[0] == NEW_BUCKET for row in box.rows())
    assert "QueueConfigurations" not in box.s3.get_bucket_notification_configuration(Bucket=NEW_BUCKET)
    assert box.upload_and_settle(NEW_BUCKET, "a/after.txt")["ServerSideEncryption"] == "AES256"
    assert not box.sandbox.prov.notified(NEW_BUCKET, "a/after.txt")
    demo = sb.demo_bucket_name("demo")  # the demo's own rows are untouched
    assert {(b, p) for b, p, _ in box.rows()} == {(sb.demo_bucket_name(n), p) for n, _ in DEMO.buckets
                                                  for p, _, _ in DEMO.prefixes}
    assert demo in box.sandbox.prov.buckets


def test_a_configured_bucket_named_like_a_demo_bucket_is_refused(box):
    rows = box.rows()
    add(box, sb.demo_bucket_name("demo"), "prefix5/")
    box.wait_for_output("collides with the sandbox's demo bucket")
    assert box.rows() == rows


def test_an_invalid_stack_file_is_reported_and_the_mappings_are_kept(box):
    path = box.sandbox.stack_path
    rows = box.rows()
    path.write_text(path.read_text() + "  s3-prefix-keys:buckets: {b: {prefixes: {p/: {kmsKeyArn: alias/x}}}}\n")
    out = box.wait_for_output("is not valid, so the sandbox keeps its mappings")
    assert path.name in out
    assert box.rows() == rows


def test_settings_that_need_a_restart_are_named(box):
    path = box.sandbox.stack_path
    doc = YAML(typ="safe", pure=True).load(path.read_text())
    doc["config"]["s3-prefix-keys:maxReceiveCount"] = 2
    with path.open("w") as handle:
        YAML(typ="safe", pure=True).dump(doc, handle)
    out = box.wait_for_output("restart the sandbox")
    assert "maxReceiveCount" in out
    assert box.sandbox.prov.config.max_receive_count != 2  # what runs is still the old setting


def test_apply_changes_reports_nothing_for_an_unchanged_config(box):
    from components.config import load_stack_file

    assert reload.apply_changes(box.sandbox.prov, load_stack_file(box.sandbox.stack_path)) == []


def test_a_half_written_file_is_retried_before_it_is_reported(box, tmp_path):
    path = tmp_path / "Pulumi.watch.yaml"
    path.write_text(box.sandbox.stack_path.read_text())
    out = io.StringIO()
    watcher = reload.StackFileWatcher(path, box.sandbox.prov, Console(file=out, width=300))
    path.write_text("config:\n  aws:region: [")  # a writer caught mid-write
    assert watcher.check() is None and out.getvalue() == ""  # first sight: look again
    assert watcher.check() is None and "is not valid" in out.getvalue()  # still so a tick later
    path.write_text(box.sandbox.stack_path.read_text())
    assert watcher.check() == []


def test_an_eventbridge_bucket_gets_its_rule_and_loses_it_when_it_leaves(box, tmp_path):
    from components.config import load_stack_file

    path = tmp_path / "Pulumi.eb.yaml"
    doc = YAML(typ="safe", pure=True).load(box.sandbox.stack_path.read_text())
    doc["config"]["s3-prefix-keys:buckets"] = {
        NEW_BUCKET: {"notification": "eventbridge", "prefixes": {"a/": {"kmsKeyArn": box.key_arn}}}}
    with path.open("w") as handle:
        YAML(typ="safe", pure=True).dump(doc, handle)
    prov, events = box.sandbox.prov, box.sandbox.client("events")
    changes = reload.apply_changes(prov, load_stack_file(path))
    assert f"created bucket {NEW_BUCKET}: notifications cover a/ (eventbridge)" in changes
    rule = prov.names.eventbridge_rule(NEW_BUCKET)
    assert [t["Arn"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]] == [prov.queue_arn]
    got = box.upload_and_settle(NEW_BUCKET, "a/x.txt")  # through the rule to the queue
    assert (got["ServerSideEncryption"], got["SSEKMSKeyId"]) == ("aws:kms", box.key_arn)

    changes = reload.apply_changes(prov, load_stack_file(box.sandbox.stack_path))
    assert f"{NEW_BUCKET} left the stack: its notifications are removed (the bucket and its objects stay)" in changes
    assert rule not in [r["Name"] for r in events.list_rules()["Rules"]]
    assert box.upload_and_settle(NEW_BUCKET, "a/after.txt")["ServerSideEncryption"] == "AES256"
