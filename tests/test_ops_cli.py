"""``python -m ops``: argument handling, ``ops mappings`` (validated edits that keep the
stack file's comments and order, exact config keys), ``policy-check`` and the global
AWS options."""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
from pulumi.automation import CommandError, CommandResult
from typer.testing import CliRunner

from components.config import all_mapping_rows, load_stack_file, stack_file
from ops import cli, deploy, stack_config
from ops.audit import audit_command
from ops.backfill import backfill_command
from ops.cli import app
from ops.stack_config import ConfigEdit, MappingError, Writer

ROOT = Path(__file__).resolve().parent.parent
ARN_A = "arn:aws:kms:us-east-1:111122223333:key/1a2b3c4d-1111-4aaa-8bbb-0123456789ab"
ARN_B = "arn:aws:kms:us-east-1:111122223333:key/2b3c4d5e-2222-4bbb-8ccc-123456789abc"
PROD_ARN = "arn:aws:kms:eu-west-1:111122223333:key/5d5e6f70-4444-4ddd-8eee-3456789abcde"
ARN_B_PROD = "arn:aws:kms:eu-west-1:111122223333:key/2b3c4d5e-2222-4bbb-8ccc-123456789abc"  # tenant-b/ in prod

runner = CliRunner()


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A copy of the project's stack files; no Pulumi CLI on PATH, so edits go to the file."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root)
    shutil.copy(ROOT / "Pulumi.dev.yaml", root)
    shutil.copy(ROOT / "Pulumi.prod.yaml.example", root / "Pulumi.prod.yaml")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    monkeypatch.setattr(deploy, "PROJECT_ROOT", root)
    return root


def invoke(*args: str):
    return runner.invoke(app, list(args))


def is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(line in it for line in short)


def diff_lines(old: list[str], new: list[str], sign: str) -> list[str]:
    """Lines added ('+') or removed ('-') between two versions of a file."""
    return [line[2:] for line in difflib.ndiff(old, new) if line.startswith(sign + " ")]


# ---------------------------------------------------------------------------
# the command tree


def test_every_command_is_registered():
    names = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert {"sandbox", "preview", "up", "destroy", "outputs", "policy-check", "audit", "backfill"} <= names
    callbacks = {c.name: c.callback for c in app.registered_commands}
    assert callbacks["audit"] is audit_command
    assert callbacks["backfill"] is backfill_command
    assert sorted(g.name for g in app.registered_groups) == ["dlq", "mappings"]
    result = invoke("audit", "--help")
    assert result.exit_code == 0 and "--versions" in result.output and "--endpoint-url" in result.output


def test_every_help_renders_and_the_aws_commands_take_endpoint_and_region():
    groups = {"mappings": ["list", "add", "remove"], "dlq": ["list", "redrive"]}
    commands = [[c.name or c.callback.__name__] for c in app.registered_commands]
    commands += [[group, sub] for group, subs in groups.items() for sub in subs]
    for command in commands:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "250"})
        assert result.exit_code == 0, (command, result.output)
        takes_aws_options = "--endpoint-url" in result.output and "--region" in result.output
        assert takes_aws_options == (command[0] in cli.AWS_COMMANDS), command


def test_no_arguments_prints_help_and_usage_error_exits_2():
    result = invoke()
    assert "sandbox" in result.output and "mappings" in result.output
    result = invoke("mappings", "add", "--bucket", "b-bucket")
    assert result.exit_code == 2 and "--prefix" in result.output


def test_global_endpoint_and_region_reach_every_aws_client(project, monkeypatch):
    # Set, then delete: monkeypatch restores the variables (absent) after the test.
    for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.setenv(name, "placeholder")
        monkeypatch.delenv(name)
    # A bucket the dev stack does not map: audit stops with exit 2 before calling AWS.
    result = invoke("--endpoint-url", "http://127.0.0.1:4599", "--region", "eu-west-1", "audit",
                    "--bucket", "unmapped-bucket")
    assert result.exit_code == 2 and "has no prefix mappings" in result.output
    s3 = boto3.client("s3")
    assert s3.meta.endpoint_url == "http://127.0.0.1:4599"
    assert s3.meta.region_name == "eu-west-1"


# Arguments that end a command quickly should it ever run: a regression fails, not hangs.
@pytest.mark.parametrize("command", [["up"], ["preview"], ["destroy"], ["outputs"], ["sandbox", "--port", "0"],
                                     ["mappings", "list"], ["policy-check", "--stack", "no-such-stack"]],
                         ids=" ".join)
@pytest.mark.parametrize("options", [["--endpoint-url", "http://127.0.0.1:4599"], ["--region", "eu-west-1"]],
                         ids=lambda o: o[0])
def test_global_aws_options_are_refused_where_they_would_be_ignored(project, monkeypatch, command, options):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    ran = []
    monkeypatch.setattr(deploy, "check_pulumi_cli", lambda *a, **k: ran.append(command))
    result = invoke(*options, *command)
    assert result.exit_code == 2, result.output
    assert f"{options[0]} applies to audit and backfill" in " ".join(result.output.split())
    assert f"`{command[0]}` would ignore it" in " ".join(result.output.split())
    assert ran == [] and "AWS_ENDPOINT_URL" not in os.environ


# ---------------------------------------------------------------------------
# config keys


@pytest.mark.parametrize(
    ("bucket", "prefix", "field", "key"),
    [
        ("my-bucket", "tenant-a/", "kmsKeyArn", 's3-prefix-keys:buckets.my-bucket.prefixes["tenant-a/"].kmsKeyArn'),
        ("my.bucket", "tenant-a/", "kmsKeyArn", 's3-prefix-keys:buckets["my.bucket"].prefixes["tenant-a/"].kmsKeyArn'),
        ("my.bucket", "tenant-a/", "dualLayer", 's3-prefix-keys:buckets["my.bucket"].prefixes["tenant-a/"].dualLayer'),
        ("bkt", "plain", None, "s3-prefix-keys:buckets.bkt.prefixes.plain"),
        ("bkt", 'say "hi"/', "bucketKey", 's3-prefix-keys:buckets.bkt.prefixes["say \\"hi\\"/"].bucketKey'),
    ],
)
def test_mapping_key_is_what_pulumi_config_set_path_takes(bucket, prefix, field, key):
    assert stack_config.mapping_key(bucket, prefix, field) == key


def test_plans_name_exact_keys_and_commands():
    buckets = {"my.bucket": {"prefixes": {"tenant-a/": {"kmsKeyArn": ARN_A, "dualLayer": True},
                                          "tenant-b/": {"kmsKeyArn": ARN_B}}}}
    edits = stack_config.plan_add(buckets, "my.bucket", "tenant-a/", ARN_B, dsse=False, bucket_key=False)
    # A replace never removes the mapping: the new key first, then the stale field.
    assert [(e.action, e.key, e.value) for e in edits] == [
        ("set", 's3-prefix-keys:buckets["my.bucket"].prefixes["tenant-a/"].kmsKeyArn', ARN_B),
        ("remove", 's3-prefix-keys:buckets["my.bucket"].prefixes["tenant-a/"].dualLayer', None),
        ("set", 's3-prefix-keys:buckets["my.bucket"].prefixes["tenant-a/"].bucketKey', False),
    ]
    assert edits[2].command("prod") == (
        "pulumi config set --stack prod --path "
        "'s3-prefix-keys:buckets[\"my.bucket\"].prefixes[\"tenant-a/\"].bucketKey' false"
    )
    assert edits[1].command("prod") == (
        "pulumi config rm --stack prod --path "
        "'s3-prefix-keys:buckets[\"my.bucket\"].prefixes[\"tenant-a/\"].dualLayer'"
    )
    fresh = stack_config.plan_add({}, "new-bucket", "x/", ARN_A, dsse=True)
    assert [(e.key, e.config_value) for e in fresh] == [
        ('s3-prefix-keys:buckets.new-bucket.prefixes["x/"].kmsKeyArn', ARN_A),
        ('s3-prefix-keys:buckets.new-bucket.prefixes["x/"].dualLayer', "true"),
    ]
    one = stack_config.plan_remove(buckets, "my.bucket", "tenant-b/", "Pulumi.prod.yaml")
    assert [e.key for e in one] == ['s3-prefix-keys:buckets["my.bucket"].prefixes["tenant-b/"]']
    last = stack_config.plan_remove({"b-one": {"prefixes": {"p/": {}}}}, "b-one", "p/", "Pulumi.prod.yaml")
    assert [(e.action, e.key) for e in last] == [("remove", "s3-prefix-keys:buckets.b-one")]


# ---------------------------------------------------------------------------
# ops mappings list / add / remove (file writer)


def test_list_shows_every_mapping_row(project):
    result = invoke("mappings", "list", "--stack", "prod")
    assert result.exit_code == 0, result.output
    rows = all_mapping_rows(load_stack_file(project / "Pulumi.prod.yaml"))
    assert rows
    for row in rows:
        assert row.bucket in result.output and row.prefix in result.output and row.kms_key_arn in result.output
    assert "DSSE-KMS" in result.output and "eventbridge" in result.output


def test_add_keeps_comments_order_and_quoting(project):
    path = project / "Pulumi.prod.yaml"
    before = path.read_text()
    result = invoke("mappings", "add", "--stack", "prod", "--bucket", "acme.analytics.exports",
                    "--prefix", "tenant-d/", "--key", PROD_ARN, "--dsse")
    assert result.exit_code == 0, result.output
    after = path.read_text()
    old, new = before.splitlines(), after.splitlines()
    assert is_subsequence(old, new), "an existing line was changed, dropped or moved"
    added = diff_lines(old, new, "+")
    assert [line.strip() for line in added] == ["tenant-d/:", f"kmsKeyArn: {PROD_ARN}", "dualLayer: true"]
    # Inserted at the end of that bucket's prefixes, indented like its siblings.
    sibling = next(line for line in old if line.strip() == "tenant-c/reports/:")
    assert added[0].startswith(sibling[: len(sibling) - len(sibling.lstrip())] + "tenant-d/")
    assert new.index(added[0]) > new.index(sibling)
    assert diff_lines(old, new, "-") == []
    mapping = load_stack_file(path).buckets["acme.analytics.exports"].prefixes["tenant-d/"]
    assert (mapping.kms_key_arn, mapping.dual_layer) == (PROD_ARN, True)
    key = 's3-prefix-keys:buckets["acme.analytics.exports"].prefixes["tenant-d/"].kmsKeyArn'
    assert key in result.output
    assert "Pulumi CLI is not installed" in result.output  # the note: why the file was edited


def test_add_to_a_stack_without_buckets_then_list_and_remove_restores_the_file(project):
    path = project / "Pulumi.dev.yaml"
    before = path.read_text()
    result = invoke("mappings", "add", "--bucket", "my.bucket", "--prefix", "tenant-a/", "--key", ARN_A,
                    "--no-bucket-key")
    assert result.exit_code == 0, result.output
    assert 's3-prefix-keys:buckets["my.bucket"].prefixes["tenant-a/"].kmsKeyArn' in result.output
    assert 's3-prefix-keys:buckets["my.bucket"].prefixes["tenant-a/"].bucketKey\' false' in result.output
    config = load_stack_file(path)
    assert config.demo is True  # untouched
    assert config.buckets["my.bucket"].prefixes["tenant-a/"].bucket_key is False
    listed = invoke("mappings", "list")
    assert "my.bucket" in listed.output and ARN_A in listed.output
    removed = invoke("mappings", "remove", "--bucket", "my.bucket", "--prefix", "tenant-a/")
    assert removed.exit_code == 0, removed.output
    assert "last mapping of my.bucket" in removed.output
    assert path.read_text() == before


def test_add_replaces_a_mapping_without_leaving_old_fields(project):
    path = project / "Pulumi.prod.yaml"
    assert load_stack_file(path).buckets["acme-tenant-data"].prefixes["tenant-b/"].dual_layer
    result = invoke("mappings", "add", "--stack", "prod", "--bucket", "acme-tenant-data",
                    "--prefix", "tenant-b/", "--key", PROD_ARN)
    assert result.exit_code == 0, result.output
    mapping = load_stack_file(path).buckets["acme-tenant-data"].prefixes["tenant-b/"]
    assert (mapping.kms_key_arn, mapping.dual_layer) == (PROD_ARN, False)


@pytest.mark.parametrize(
    ("args", "path_named", "fix"),
    [
        (["--key", "alias/tenant-a"], '["my.bucket"].prefixes["tenant-a/"].kmsKeyArn', "Use the full key ARN"),
        (["--key", ARN_A.replace("us-east-1", "eu-west-1")], "kmsKeyArn", "Use a key (or a multi-Region replica) in us-east-1"),
        (["--key", ARN_A, "--dsse", "--bucket-key"], 'prefixes["tenant-a/"]', "Remove bucketKey or set it to false"),
        (["--key", "1a2b3c4d-1111-4aaa-8bbb-0123456789ab"], "kmsKeyArn", "Use the full key ARN"),
    ],
)
def test_invalid_mapping_exits_2_naming_path_and_fix_and_writes_nothing(project, args, path_named, fix):
    path = project / "Pulumi.dev.yaml"
    before = path.read_bytes()
    result = invoke("mappings", "add", "--bucket", "my.bucket", "--prefix", "tenant-a/", *args)
    assert result.exit_code == 2, result.output
    assert "s3-prefix-keys:buckets" in result.output and path_named in result.output
    assert fix in result.output
    assert "nothing was written" in result.output
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("bucket", "prefix", "fix"),
    [
        ("my-bucket", "/tenant-a/", "Drop the '/'"),
        ("my-bucket", "tenant-*", "wildcard"),
        ("My_Bucket", "tenant-a/", "not a valid S3 bucket name"),
        ("tenant--x-s3", "tenant-a/", "directory"),
    ],
)
def test_invalid_bucket_or_prefix_exits_2(project, bucket, prefix, fix):
    before = (project / "Pulumi.dev.yaml").read_bytes()
    result = invoke("mappings", "add", "--bucket", bucket, "--prefix", prefix, "--key", ARN_A)
    assert result.exit_code == 2, result.output
    assert fix in result.output
    assert (project / "Pulumi.dev.yaml").read_bytes() == before


def test_remove_of_an_unmapped_prefix_names_it_and_the_mapped_ones(project):
    result = invoke("mappings", "remove", "--stack", "prod", "--bucket", "acme-tenant-data", "--prefix", "tenant-z/")
    assert result.exit_code == 2
    assert 's3-prefix-keys:buckets.acme-tenant-data.prefixes["tenant-z/"]' in result.output
    assert "tenant-a/, tenant-b/" in result.output
    result = invoke("mappings", "remove", "--stack", "prod", "--bucket", "nope-bucket", "--prefix", "a/")
    assert result.exit_code == 2 and "acme-tenant-data" in result.output


def test_remove_one_of_several_prefixes_keeps_the_rest(project):
    path = project / "Pulumi.prod.yaml"
    before = path.read_text().splitlines()
    result = invoke("mappings", "remove", "--stack", "prod", "--bucket", "acme.analytics.exports",
                    "--prefix", "tenant-c/reports/")
    assert result.exit_code == 0, result.output
    after = path.read_text().splitlines()
    assert is_subsequence(after, before)
    assert [line.strip() for line in diff_lines(before, after, "-")] == [
        "tenant-c/reports/:", "kmsKeyArn: arn:aws:kms:eu-west-1:111122223333:key/4d5e6f70-4444-4ddd-8eee-3456789abcde",
        "bucketKey: false",
    ]
    assert sorted(load_stack_file(path).buckets["acme.analytics.exports"].prefixes) == ["tenant-a/"]


def test_error_messages_are_printed_as_text_not_markup(project, monkeypatch):
    def broken(*args, **kwargs):
        raise MappingError("s3-prefix-keys:buckets.b-b.prefixes[bold] is [/] odd")

    monkeypatch.setattr(stack_config, "list_mappings", broken)
    result = invoke("mappings", "list")
    assert result.exit_code == 2
    assert "s3-prefix-keys:buckets.b-b.prefixes[bold] is [/] odd" in result.output


def test_missing_stack_file_exits_2(project):
    for args in (["mappings", "list", "--stack", "qa"],
                 ["mappings", "add", "--stack", "qa", "--bucket", "b-b", "--prefix", "p/", "--key", ARN_A]):
        result = invoke(*args)
        assert result.exit_code == 2
        assert "Pulumi.qa.yaml" in result.output and "no such stack file" in result.output


# ---------------------------------------------------------------------------
# the Automation API writer, offline


class RecordingStack:
    """A stand-in automation Stack; ``fail_at`` makes that call (0-based) fail as the CLI would."""

    def __init__(self, fail_at: int | None = None):
        self.calls: list[tuple] = []
        self.fail_at = fail_at

    def _record(self, call: tuple) -> None:
        if len(self.calls) == self.fail_at:
            raise CommandError(CommandResult("", "error: could not write config: the backend is read-only\n", 255))
        self.calls.append(call)

    def set_config(self, key, value, *, path=False):
        self._record(("set", key, value.value, value.secret, path))

    def remove_config(self, key, *, path=False):
        self._record(("remove", key, path))


@pytest.fixture
def cli_present(monkeypatch):
    monkeypatch.setattr(deploy, "check_pulumi_cli", lambda *a, **k: deploy.PulumiCli("/usr/bin/pulumi", None))


def test_with_the_cli_edits_go_through_set_config_with_path(project, cli_present):
    stack = RecordingStack()
    before = (project / "Pulumi.prod.yaml").read_bytes()
    result = stack_config.add_mapping(
        "prod", "acme-tenant-data", "tenant-b/", PROD_ARN, dsse=True, bucket_key=False, root=project,
        open_stack=lambda name, root: stack,
    )
    base = 's3-prefix-keys:buckets.acme-tenant-data.prefixes["tenant-b/"]'
    assert stack.calls == [
        ("set", base + ".kmsKeyArn", PROD_ARN, False, True),
        ("set", base + ".bucketKey", "false", False, True),
        ("set", base + ".dualLayer", "true", False, True),
    ]
    assert result.written_via is Writer.PULUMI
    assert (project / "Pulumi.prod.yaml").read_bytes() == before  # the CLI writes the file, not ops


@pytest.mark.parametrize("fail_at", [0, 1, 2])
def test_a_cli_failure_halfway_through_a_replace_keeps_a_mapping_and_says_what_was_applied(
    project, cli_present, fail_at
):
    # tenant-b/ is DSSE under one key; replace it with SSE-KMS under another, no bucket key.
    stack = RecordingStack(fail_at=fail_at)
    path = project / "Pulumi.prod.yaml"
    with pytest.raises(MappingError) as err:
        stack_config.add_mapping("prod", "acme-tenant-data", "tenant-b/", PROD_ARN, bucket_key=False,
                                 root=project, open_stack=lambda name, root: stack)
    message = str(err.value)
    base = 's3-prefix-keys:buckets.acme-tenant-data.prefixes["tenant-b/"]'
    failed = [f"set {base}.kmsKeyArn", f"remove {base}.dualLayer", f"set {base}.bucketKey"][fail_at]
    assert message.startswith(f"pulumi could not {failed}: error: could not write config")
    if fail_at:
        assert f"{fail_at} of 3 edits were applied before it" in message
    else:
        assert "No edit was applied" in message
    for call in stack.calls:
        assert call[1] in message.split("Not applied")[0]
    assert "Not applied" in message and f"{base}.bucketKey' false" in message.split("Not applied")[1]
    # What the backend holds after the calls that went through: still a mapping of
    # tenant-b/, and a configuration that validates.
    current = stack_config.StackDocument.load(path)
    edits = stack_config.plan_add(current.buckets, "acme-tenant-data", "tenant-b/", PROD_ARN, bucket_key=False)
    assert [call[1] for call in stack.calls] == [edit.key for edit in edits[:fail_at]]
    config = stack_config.validate_text(current.edited(edits[:fail_at]).dumps())
    assert config.buckets["acme-tenant-data"].prefixes["tenant-b/"].kms_key_arn in (PROD_ARN, ARN_B_PROD)


@pytest.mark.parametrize("old", [{"dualLayer": True}, {"bucketKey": True}, {"bucketKey": False},
                                 {"dualLayer": True, "bucketKey": False}])
@pytest.mark.parametrize(("dsse", "bucket_key"), [(True, None), (True, False), (False, True), (False, None)])
def test_every_step_of_a_replace_leaves_a_valid_mapping(tmp_path, old, dsse, bucket_key):
    path = tmp_path / "Pulumi.t.yaml"
    fields = "".join(f"          {name}: {str(value).lower()}\n" for name, value in old.items())
    path.write_text("config:\n  aws:region: us-east-1\n  s3-prefix-keys:buckets:\n    b-b:\n      prefixes:\n"
                    f"        p/:\n          kmsKeyArn: {ARN_A}\n{fields}")
    doc = stack_config.StackDocument.load(path)
    edits = stack_config.plan_add(doc.buckets, "b-b", "p/", ARN_B, dsse=dsse, bucket_key=bucket_key)
    for n in range(len(edits) + 1):
        mapping = stack_config.validate_text(doc.edited(edits[:n]).dumps()).buckets["b-b"].prefixes["p/"]
        assert mapping.kms_key_arn == (ARN_B if n else ARN_A)
    assert (mapping.dual_layer, mapping.bucket_key) == (dsse, bucket_key)


def test_a_cli_failure_exits_2_without_a_traceback(project, cli_present, monkeypatch):
    monkeypatch.setattr(deploy, "open_stack_for_config", lambda name, root: RecordingStack(fail_at=0))
    result = invoke("mappings", "remove", "--stack", "prod", "--bucket", "acme-tenant-data", "--prefix", "tenant-a/")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "pulumi could not remove s3-prefix-keys:buckets.acme-tenant-data.prefixes[\"tenant-a/\"]" in result.output
    assert "No edit was applied" in result.output


def test_with_the_cli_invalid_edits_never_reach_pulumi(project, cli_present):
    stack = RecordingStack()
    with pytest.raises(MappingError, match="alias"):
        stack_config.add_mapping("dev", "b-b", "p/", "alias/x", root=project, open_stack=lambda n, r: stack)
    assert stack.calls == []


def test_stack_missing_from_the_backend_falls_back_to_the_file_and_says_so(project, cli_present):
    def missing(name, root):
        raise deploy.DeployError("long message", short=f"stack {name!r} does not exist in the current Pulumi backend")

    result = stack_config.add_mapping("dev", "b-b", "p/", ARN_A, root=project, open_stack=missing)
    assert result.written_via is Writer.FILE
    assert result.notes and "does not exist in the current Pulumi backend" in result.notes[0]
    assert load_stack_file(project / "Pulumi.dev.yaml").buckets["b-b"].prefixes["p/"].kms_key_arn == ARN_A
    with pytest.raises(MappingError, match="long message"):
        stack_config.add_mapping("dev", "b-b", "q/", ARN_A, root=project, open_stack=missing, writer=Writer.PULUMI)


def test_apply_edit_is_a_noop_for_an_absent_path():
    from ruamel.yaml.comments import CommentedMap

    doc = CommentedMap(config=CommentedMap({"aws:region": "us-east-1"}))
    stack_config.apply_edit(doc, ConfigEdit("remove", ("buckets", "b-b", "prefixes", "p/")))
    assert dict(doc["config"]) == {"aws:region": "us-east-1"}


# ---------------------------------------------------------------------------
# policy-check and sandbox arguments


def test_policy_check_passes_arguments_and_exit_code_through(monkeypatch, tmp_path):
    seen = {}

    def fake_run(command, cwd=None, **kwargs):
        seen.update(command=command, cwd=cwd)
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    config = tmp_path / "policy.json"
    result = invoke("policy-check", "--stack", "prod", "--config", str(config), "--first-preview")
    assert result.exit_code == 1
    assert seen["command"][1:] == ["-m", "policypack.check", "--stack", "prod", "--config", str(config),
                                   "--first-preview"]
    assert Path(seen["cwd"]) == deploy.PROJECT_ROOT


def test_policy_check_runs_the_real_check():
    result = invoke("policy-check", "--stack", "does-not-exist")
    # policypack.check answers 2 for a stack file that is not there.
    assert result.exit_code == 2
    assert not stack_file("does-not-exist", ROOT).exists()


@pytest.mark.parametrize("port", ["0", "70000"])
def test_sandbox_refuses_a_port_that_is_not_one(port):
    result = invoke("sandbox", "--port", port)
    assert result.exit_code == 2
    assert f"--port {port} is not a TCP port" in result.output


def test_sandbox_refuses_an_unknown_scenario():
    result = invoke("sandbox", "--scenario", "nope")
    assert result.exit_code == 2 and "seed" in result.output


def test_mapping_changes_say_a_running_sandbox_of_the_stack_applies_them(project):
    # The sandbox watches the stack file it was started on (ops/sandbox/reload.py).
    result = invoke("mappings", "add", "--stack", "dev", "--bucket", "live-bucket", "--prefix", "t/", "--key", ARN_A)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "a running `python -m ops sandbox --stack dev` applies it within a second (it watches Pulumi.dev.yaml)" in said
