"""``ops preview|up|destroy|outputs``: the Pulumi CLI check (present, new enough), and the
Automation API calls with their arguments, offline; the real CLI where installed."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from pulumi.automation import CommandError, CommandResult, OutputValue
from typer.testing import CliRunner

from components.config import load_stack_file
from ops import deploy, stack_config
from ops.cli import app

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = re.search(r'^requiredPulumiVersion:\s*"([^"]+)"', (ROOT / "Pulumi.yaml").read_text(), re.M).group(1)
runner = CliRunner()


def fake_pulumi(directory: Path, version_output: str) -> Path:
    """A `pulumi` executable that only answers `pulumi version`."""
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "pulumi"
    exe.write_text(f"#!/bin/sh\nif [ \"$1\" = version ]; then echo '{version_output}'; exit 0; fi\nexit 3\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


@pytest.fixture
def no_cli(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def lowest_allowed() -> str:
    return re.search(r">=\s*v?([0-9.]+)", REQUIRED).group(1)


def just_below(version: str) -> str:
    major, minor, patch = (int(p) for p in version.split("."))
    return f"{major}.{minor - 1}.{patch}" if minor else f"{major - 1}.999.0"


# ---------------------------------------------------------------------------
# versions


@pytest.mark.parametrize(
    ("version", "constraint", "ok"),
    [
        ("3.272.0", ">=3.272.0 <4.0.0", True),
        ("v3.300.1", ">=3.272.0 <4.0.0", True),
        ("3.271.9", ">=3.272.0 <4.0.0", False),
        ("4.0.0", ">=3.272.0 <4.0.0", False),
        ("3.272.0-alpha.1", ">=3.272.0", False),  # a pre-release sorts before its release
        ("3.272.1-dev.0", ">=3.272.0", True),
        ("2.5.0", ">=3.0.0 || =2.5.0", True),
        ("3.272", ">=3.272.0", True),
        ("3.1.0", "3.1.0", True),
        ("3.1.0", ">3.1.0", False),
        ("3.1.0", "<=3.1.0", True),
    ],
)
def test_version_satisfies(version, constraint, ok):
    assert deploy.version_satisfies(version, constraint) is ok


@pytest.mark.parametrize("constraint", ["", "~3.272", ">=3.272.0 ||", "latest"])
def test_unreadable_version_range_is_an_error(constraint):
    with pytest.raises(ValueError):
        deploy.version_satisfies("3.272.0", constraint)


def test_required_version_comes_from_pulumi_yaml():
    assert deploy.required_pulumi_version(ROOT) == REQUIRED
    assert deploy.version_satisfies(lowest_allowed(), REQUIRED)
    assert not deploy.version_satisfies(just_below(lowest_allowed()), REQUIRED)


# ---------------------------------------------------------------------------
# the CLI check


def test_missing_cli_says_how_to_install(no_cli):
    with pytest.raises(deploy.DeployError) as err:
        deploy.check_pulumi_cli(ROOT)
    assert deploy.INSTALL_COMMAND in str(err.value)
    assert err.value.short == "the Pulumi CLI is not installed"


def test_cli_too_old_is_refused_with_the_requirement(tmp_path, monkeypatch):
    old = just_below(lowest_allowed())
    fake_pulumi(tmp_path / "bin", f"v{old}")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(deploy.DeployError) as err:
        deploy.check_pulumi_cli(ROOT)
    assert old in str(err.value) and REQUIRED in str(err.value) and deploy.INSTALL_COMMAND in str(err.value)


def test_cli_new_enough_is_accepted(tmp_path, monkeypatch):
    exe = fake_pulumi(tmp_path / "bin", f"v{lowest_allowed()}")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    cli = deploy.check_pulumi_cli(ROOT)
    assert cli.path == str(exe) and str(cli.version) == lowest_allowed()


def test_cli_that_reports_no_version_is_refused(tmp_path, monkeypatch):
    fake_pulumi(tmp_path / "bin", "warning: something odd")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(deploy.DeployError, match="not a version"):
        deploy.check_pulumi_cli(ROOT)


@pytest.mark.parametrize("command", [["preview"], ["up"], ["destroy"], ["outputs"],
                                     ["preview", "--policy-pack", "policypack"]])
def test_every_deploy_command_without_the_cli_prints_one_message_and_exits_2(no_cli, command):
    result = runner.invoke(app, [*command, "--stack", "dev"])
    assert result.exit_code == 2
    assert result.output.count(deploy.INSTALL_COMMAND) == 1
    assert "Traceback" not in result.output
    assert result.output.strip().startswith("error: The Pulumi CLI is not installed")


# ---------------------------------------------------------------------------
# the Automation API calls, with a stand-in stack


class FakeStack:
    def __init__(self, outputs=None, fail=None):
        self.calls: list[tuple[str, dict]] = []
        self._outputs = outputs or {}
        self._fail = fail

    def _run(self, name, kwargs):
        self.calls.append((name, kwargs))
        if self._fail == name:
            raise CommandError(CommandResult("", "error: update failed: access denied\n", 255))
        kwargs["on_output"](f"streamed {name} line")

    def preview(self, **kwargs):
        self._run("preview", kwargs)
        return SimpleNamespace(change_summary={"create": 40})

    def up(self, **kwargs):
        self._run("up", kwargs)
        return SimpleNamespace(summary=SimpleNamespace(result="succeeded", resource_changes={"create": 40}))

    def destroy(self, **kwargs):
        self._run("destroy", kwargs)
        return SimpleNamespace(summary=SimpleNamespace(result="succeeded", resource_changes={"delete": 40}))

    def outputs(self):
        if self._fail == "outputs":
            raise CommandError(CommandResult("", "error: could not read the stack: passphrase must be set\n", 255))
        return self._outputs


@pytest.fixture
def cli_ok(tmp_path, monkeypatch):
    fake_pulumi(tmp_path / "bin", f"v{lowest_allowed()}")
    monkeypatch.setenv("PATH", str(tmp_path / "bin") + os.pathsep + os.environ.get("PATH", ""))


@pytest.fixture
def opened(monkeypatch):
    """Replace open_stack; records (stack, root, create) and hands out one FakeStack."""
    state = SimpleNamespace(stack=FakeStack(), opens=[])

    def fake_open(stack, root=None, create=True):
        state.opens.append((stack, root, create))
        return state.stack

    monkeypatch.setattr(deploy, "open_stack", fake_open)
    return state


def test_preview_streams_output_and_runs_the_policy_pack(cli_ok, opened):
    result = runner.invoke(app, ["preview", "--stack", "dev", "--policy-pack", "policypack"])
    assert result.exit_code == 0, result.output
    assert opened.opens == [("dev", deploy.PROJECT_ROOT, True)]
    name, kwargs = opened.stack.calls[0]
    assert name == "preview"
    assert kwargs["policy_packs"] == [str(ROOT / "policypack")]
    assert kwargs["policy_pack_configs"] == [str(ROOT / "policypack" / "config.json")]
    assert "streamed preview line" in result.output
    assert "preview succeeded (create 40)" in result.output


def test_up_and_destroy(cli_ok, opened):
    result = runner.invoke(app, ["up", "--stack", "dev"])
    assert result.exit_code == 0, result.output
    assert "up succeeded (create 40)" in result.output
    assert "policy_packs" not in opened.stack.calls[0][1]
    result = runner.invoke(app, ["destroy", "--stack", "dev"])
    assert result.exit_code == 0, result.output
    # destroy never creates the stack it removes
    assert opened.opens[-1] == ("dev", deploy.PROJECT_ROOT, False)
    assert "destroy succeeded (delete 40)" in result.output


def test_failed_update_exits_1_with_the_engine_error(cli_ok, opened):
    opened.stack = FakeStack(fail="up")
    result = runner.invoke(app, ["up", "--stack", "dev"])
    assert result.exit_code == 1
    assert "pulumi up failed: error: update failed: access denied" in result.output


def test_outputs_table_json_and_secrets(cli_ok, opened):
    opened.stack = FakeStack(outputs={
        "mappingTableName": OutputValue("s3-prefix-keys-dev-mappings", False),
        "demoKeyArns": OutputValue({"prefix1": "arn:aws:kms:us-east-1:1:key/a"}, False),
        "token": OutputValue("hunter2", True),
    })
    table = runner.invoke(app, ["outputs", "--stack", "dev"])
    assert table.exit_code == 0, table.output
    assert "s3-prefix-keys-dev-mappings" in table.output and "hunter2" not in table.output
    assert '"prefix1": "arn:aws:kms:us-east-1:1:key/a"' in table.output
    as_json = runner.invoke(app, ["outputs", "--stack", "dev", "--json", "--show-secrets"])
    import json

    assert json.loads(as_json.output) == {
        "mappingTableName": "s3-prefix-keys-dev-mappings",
        "demoKeyArns": {"prefix1": "arn:aws:kms:us-east-1:1:key/a"},
        "token": "hunter2",
    }
    assert opened.opens[0][2] is False  # reading outputs never creates a stack


def test_outputs_that_pulumi_cannot_read_exit_2_with_the_engine_error(cli_ok, opened):
    opened.stack = FakeStack(fail="outputs")
    result = runner.invoke(app, ["outputs", "--stack", "dev"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert ("pulumi could not read the outputs of stack 'dev': error: could not read the stack: "
            "passphrase must be set") in " ".join(result.output.split())
    with pytest.raises(deploy.DeployError, match="passphrase must be set"):
        deploy.stack_outputs("dev", ROOT, stack_opener=lambda *a, **k: FakeStack(fail="outputs"))


@pytest.mark.parametrize(
    ("command", "function"),
    [(["preview"], "create_or_select_stack"), (["up"], "create_or_select_stack"),
     (["destroy"], "select_stack"), (["outputs"], "select_stack")],
)
def test_the_automation_api_runs_on_the_repository_root(cli_ok, monkeypatch, command, function):
    from pulumi import automation as auto

    calls = []

    def opened(**kwargs):
        calls.append((function, kwargs))
        return FakeStack()

    def unexpected(**kwargs):
        raise AssertionError(f"{command[0]} must not call this one: {kwargs}")

    for name in ("create_or_select_stack", "select_stack"):
        monkeypatch.setattr(auto, name, opened if name == function else unexpected)
    result = runner.invoke(app, [*command, "--stack", "dev"])
    assert result.exit_code == 0, result.output
    assert calls == [(function, {"stack_name": "dev", "work_dir": str(deploy.PROJECT_ROOT)})]
    # The directory that holds Pulumi.yaml and the program: a LocalWorkspace there runs it.
    assert deploy.PROJECT_ROOT == ROOT and (ROOT / "Pulumi.yaml").is_file() and (ROOT / "__main__.py").is_file()


def test_invalid_stack_config_stops_before_pulumi_runs(cli_ok, opened, tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root)
    (root / "Pulumi.dev.yaml").write_text("config:\n  aws:region: us-east-1\n  s3-prefix-keys:maxReceiveCount: 1\n")
    monkeypatch.setattr(deploy, "PROJECT_ROOT", root)
    result = runner.invoke(app, ["preview", "--stack", "dev"])
    assert result.exit_code == 2
    assert "s3-prefix-keys:maxReceiveCount" in result.output
    assert opened.opens == []


def test_unknown_policy_pack_exits_2(cli_ok, opened):
    result = runner.invoke(app, ["preview", "--stack", "dev", "--policy-pack", "no-such-pack"])
    assert result.exit_code == 2
    assert "no-such-pack" in result.output and "--policy-pack policypack" in result.output
    assert opened.stack.calls == []


def test_missing_stack_in_the_backend_is_exit_2(cli_ok, monkeypatch):
    from pulumi import automation as auto

    def not_found(**kwargs):
        raise auto.StackNotFoundError(CommandResult("", "error: no stack named 'qa' found", 255))

    monkeypatch.setattr(auto, "select_stack", not_found)
    result = runner.invoke(app, ["outputs", "--stack", "qa"])
    assert result.exit_code == 2
    assert "stack 'qa' does not exist" in result.output and "pulumi stack init qa" in result.output


# ---------------------------------------------------------------------------
# with the real Pulumi CLI


@pytest.fixture
def local_backend_project(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", root)
    shutil.copy(ROOT / "Pulumi.dev.yaml", root)
    monkeypatch.setenv("PULUMI_BACKEND_URL", (tmp_path / "state").as_uri())
    (tmp_path / "state").mkdir()
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "")
    monkeypatch.setenv("PULUMI_HOME", str(tmp_path / "pulumi-home"))
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    return root


@pytest.mark.skipif(shutil.which("pulumi") is None, reason="Pulumi CLI not installed")
def test_real_cli_satisfies_the_project():
    cli = deploy.check_pulumi_cli(ROOT)
    assert deploy.version_satisfies(cli.version, REQUIRED)


@pytest.mark.skipif(shutil.which("pulumi") is None, reason="Pulumi CLI not installed")
def test_real_cli_mapping_edit_goes_through_set_config(local_backend_project):
    root = local_backend_project
    deploy.open_stack("dev", root, create=True)  # the stack must exist for a config edit
    arn = "arn:aws:kms:us-east-1:111122223333:key/1a2b3c4d-1111-4aaa-8bbb-0123456789ab"
    result = stack_config.add_mapping("dev", "my.bucket", "tenant-a/", arn, dsse=True, root=root)
    assert result.written_via is stack_config.Writer.PULUMI
    mapping = load_stack_file(root / "Pulumi.dev.yaml").buckets["my.bucket"].prefixes["tenant-a/"]
    assert (mapping.kms_key_arn, mapping.dual_layer) == (arn, True)
    outputs = deploy.stack_outputs("dev", root)
    assert outputs == {}
