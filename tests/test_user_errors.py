"""Errors a new user hits, tried the way they would be: each exits 2 with one line that
names the input and the fix, never a traceback; and the 80-column output of the
backfill and mappings tables and of their ``--help``."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from components.config import ConfigError, bucket_name_problem, read_stack_file
from ops import cli, sources
from ops.backfill_run import BackfillReport, Problem
from ops.cli import app
from tests.test_ops_cli import project as ops_project  # noqa: F401, F811 (a fixture)

ARN = "arn:aws:kms:us-east-1:111122223333:key/1a2b3c4d-1111-4aaa-8bbb-0123456789ab"
# Each one a different YAML mistake: an unclosed flow list, a tab, an unclosed quote.
MALFORMED = {
    "unclosed-list": "config:\n  aws:region: us-east-1\n  s3-prefix-keys:demo: [true\n  other: 1\n",
    "tab": "config:\n\taws:region: us-east-1\n",
    "unclosed-quote": "config:\n  aws:region: 'us-east-1\n",
}
runner = CliRunner()


def invoke(*args: str, columns: int = 250):
    return runner.invoke(app, list(args), env={"COLUMNS": str(columns)})


def one_error_line(result) -> str:
    """The single error line the command printed; fails on a traceback or anything else.

    ops.terminal's console folds a line longer than its width (200 off a terminal), as
    a terminal would: the continuation lines are that one line, joined back here.
    """
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), lines
    assert not any(line.startswith(("error", "Error", "warning", "Usage")) for line in lines[1:]), lines
    assert all(len(line) >= 150 for line in lines[:-1]), lines  # only a folded line goes on
    return " ".join(" ".join(lines).split())


@pytest.fixture
def project(ops_project, tmp_path, monkeypatch) -> Path:  # noqa: F811
    """test_ops_cli's copy of the stack files (no Pulumi CLI), where every command looks."""
    monkeypatch.setattr(sources, "STACK_ROOT", ops_project)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return ops_project


@pytest.fixture
def backfill_ready(project, world):
    """A bucket mapped in the stack file, so that backfill gets as far as its checkpoint."""
    world.bucket("user-errors")
    result = invoke("mappings", "add", "--bucket", "user-errors", "--prefix", "t1/", "--key", ARN)
    assert result.exit_code == 0, result.output
    return world


# -- backfill --resume ------------------------------------------------------------------


def test_resume_with_a_binary_file(backfill_ready, tmp_path):
    binary = tmp_path / "photo.jpg"
    binary.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\xfe\x80\n\x00\xc3")
    line = one_error_line(invoke("backfill", "--bucket", "user-errors", "--resume", str(binary)))
    assert str(binary) in line and "not a backfill checkpoint file" in line and "leave out --resume" in line
    assert binary.read_bytes().endswith(b"\xc3")  # not appended to


def test_resume_with_a_directory(backfill_ready, tmp_path):
    line = one_error_line(invoke("backfill", "--bucket", "user-errors", "--resume", str(tmp_path)))
    assert f"{tmp_path} is a directory" in line and "pass a checkpoint file" in line


def test_resume_with_a_missing_file_says_it_starts_a_new_checkpoint(backfill_ready, tmp_path):
    missing = tmp_path / "typo.jsonl"
    result = invoke("backfill", "--bucket", "user-errors", "--resume", str(missing))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert f"--resume {missing} does not exist yet: starting a new checkpoint at {missing}" in text
    assert missing.read_text().startswith('{"type": "backfill"')


# -- --endpoint-url ---------------------------------------------------------------------


@pytest.mark.parametrize("where", ["global", "backfill"])
def test_endpoint_url_without_a_scheme(project, where):
    endpoint = ["--endpoint-url", "127.0.0.1:4610"]
    args = [*endpoint, "backfill", "--bucket", "b-bucket"] if where == "global" else [
        "backfill", "--bucket", "b-bucket", *endpoint]
    line = one_error_line(invoke(*args))
    assert "'127.0.0.1:4610' is not a URL" in line and "e.g. http://127.0.0.1:4610" in line


def test_endpoint_url_from_the_environment_without_a_scheme(project, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:4566")
    line = one_error_line(invoke("backfill", "--status"))
    assert "AWS_ENDPOINT_URL 'localhost:4566' is not a URL" in line and "http://localhost:4566" in line


# -- a malformed stack file, from every command that reads one ----------------------------


@pytest.mark.parametrize("mistake", sorted(MALFORMED))
def test_read_stack_file_turns_yaml_syntax_errors_into_one_config_error(tmp_path, mistake):
    path = tmp_path / "Pulumi.broken.yaml"
    path.write_text(MALFORMED[mistake])
    with pytest.raises(ConfigError) as caught:
        read_stack_file(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: not valid YAML at line ")
    assert message.endswith("correct the YAML there and run again")


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\xff", b"- a list\n- not a mapping\n", b"config: [1]\n"],
                         ids=["binary", "list", "config-not-a-mapping"])
def test_read_stack_file_refuses_what_is_not_a_stack_file(tmp_path, content):
    path = tmp_path / "Pulumi.odd.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        read_stack_file(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


@pytest.fixture
def broken(project) -> Path:
    path = project / "Pulumi.broken.yaml"
    path.write_text(MALFORMED["unclosed-list"])
    return path


def assert_names_the_yaml_error(line: str, path: Path) -> None:
    assert path.name in line and "not valid YAML at line 4, column 8" in line and "correct the YAML" in line


def test_malformed_stack_from_mappings_list(broken):
    assert_names_the_yaml_error(one_error_line(invoke("mappings", "list", "--stack", "broken")), broken)


def test_malformed_stack_from_mappings_add(broken):
    result = invoke("mappings", "add", "--stack", "broken", "--bucket", "b-bucket", "--prefix", "t/", "--key", ARN)
    assert_names_the_yaml_error(one_error_line(result), broken)
    assert broken.read_text() == MALFORMED["unclosed-list"]


def test_malformed_stack_from_audit(broken):
    assert_names_the_yaml_error(one_error_line(invoke("audit", "--bucket", "b-bucket", "--stack", "broken")), broken)


def test_malformed_stack_from_sandbox(broken, monkeypatch):
    import ops.sandbox.lifecycle as lifecycle

    # The sandbox reads Pulumi.<stack>.yaml of the project; the config is read before
    # the emulator starts, so nothing is started here.
    monkeypatch.setattr(lifecycle, "stack_file", lambda stack, root=None: broken.parent / f"Pulumi.{stack}.yaml")
    assert_names_the_yaml_error(one_error_line(invoke("sandbox", "--stack", "broken")), broken)


def test_malformed_stack_from_policypack_check(broken, capsys):
    from policypack import check

    assert check.main(["--stack-file", str(broken)]) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert_names_the_yaml_error(lines[0], broken)


# -- bucket names and prefixes ----------------------------------------------------------


def test_bucket_that_is_an_ip_address(project):
    assert "IP address" in bucket_name_problem("192.168.1.1")
    assert bucket_name_problem("192.168.1.1.example") is None  # only the whole name counts
    result = invoke("mappings", "add", "--bucket", "192.168.1.1", "--prefix", "t1/", "--key", ARN)
    assert result.exit_code == 2 and "192.168.1.1" in result.output and "IP address" in result.output
    line = one_error_line(invoke("backfill", "--bucket", "192.168.1.1"))
    assert "--bucket '192.168.1.1' is not a valid S3 bucket name" in line and "IP address" in line


def test_prefix_without_a_trailing_slash_warns_that_it_matches_more(project):
    result = invoke("mappings", "add", "--bucket", "b-bucket", "--prefix", "t1", "--key", ARN)
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert "warning: prefix 't1' has no trailing '/'" in warning and "t10/" in warning
    assert "--prefix t1/" in warning
    result = invoke("mappings", "add", "--bucket", "b-bucket", "--prefix", "t2/", "--key", ARN)
    assert result.exit_code == 0 and "warning" not in result.stderr


# -- 80 columns -------------------------------------------------------------------------


def column_text(rendered: str, header: str) -> str:
    """The text of one column of a rich table, its folded lines joined back together."""
    lines = rendered.splitlines()
    head = next(i for i, line in enumerate(lines) if re.search(rf"[│┃] {re.escape(header)}\s", line))
    # Cell borders are at the same offsets on every row of a table.
    borders = [m.start() for m in re.finditer("[│┃]", lines[head])]
    index = next(n for n, b in enumerate(borders) if lines[head][b + 2:].startswith(header))
    left, right = borders[index], borders[index + 1]
    cells = [line[left + 1:right].strip() for line in lines[head + 2:] if len(line) > right and line[left] == "│"]
    return "".join(cells)


def test_backfill_report_at_80_columns_wraps_the_key_and_the_reason():
    key = "tenant-with-a-long-name/" + "sub-folder/" * 5 + "object.bin"
    reason = "AccessDenied: the role lacks kms:GenerateDataKey on " + ARN + " " + "so nothing was copied; " * 4
    report = BackfillReport("b-bucket", None, Path("/tmp/c.jsonl"))
    report.counts[("access-denied", "")] = 1
    report.problems.append(Problem(key, "access-denied", reason.strip()))
    out = io.StringIO()
    from ops.backfill_render import render_report

    render_report(report, Console(file=out, width=80), 20)
    text = out.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert column_text(text, "Key") == key
    assert column_text(text, "Reason").replace(" ", "") == reason.strip().replace(" ", "")


def test_mappings_list_at_80_columns_shows_the_whole_prefix_and_key(project, monkeypatch):
    prefix = "a-rather-long-tenant-prefix/with/nested/levels/"
    assert invoke("mappings", "add", "--bucket", "b-bucket", "--prefix", prefix, "--key", ARN).exit_code == 0
    monkeypatch.setattr(cli, "console", lambda stderr=False: Console(stderr=stderr, width=80))
    result = invoke("mappings", "list", columns=80)
    assert result.exit_code == 0, result.output
    table = result.output.split("demo:")[0]
    assert "…" not in table and max(len(line) for line in table.splitlines()) <= 80
    assert prefix in column_text(table, "prefix") and ARN in column_text(table, "kms key ARN")


@pytest.mark.parametrize("command", [["backfill"], ["mappings"], ["mappings", "add"], ["mappings", "list"],
                                     ["mappings", "remove"]])
def test_help_at_80_columns_shows_every_option_name_in_full(command):
    result = invoke(*command, "--help", columns=80)
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and max(len(line) for line in result.output.splitlines()) <= 80
    import typer.main

    click_command = typer.main.get_command(cli.app)
    for name in command:
        click_command = click_command.commands[name]
    for param in click_command.params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("--"):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", result.output), opt


def test_every_command_reading_a_bucket_says_when_it_is_an_ip_address():
    from ops.sources import InputError, bucket_mappings

    with pytest.raises(InputError, match="IP address"):
        bucket_mappings(None, "192.168.1.1", "stack dev")  # refused before any lookup


def test_an_input_error_is_one_line_however_long():
    import io

    from rich.console import Console

    from ops.terminal import fail_input

    out = io.StringIO()
    console = Console(file=out, width=80)
    fail_input(console, "x" * 300 + " [not markup]")
    assert out.getvalue().count("\n") == 1 and "[not markup]" in out.getvalue()
