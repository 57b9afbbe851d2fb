"""The installable project: the ``s3pk`` console command, the wheel the build backend
makes, and that the editable install never leaks into the enforcer's Lambda layer."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import typer
from packaging.requirements import Requirement

from components.packaging import dependency_closure, layer_archive
from ops.cli import app

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DIST = "s3-prefix-keys"
# The layout the Pulumi program and the handler path (enforcer.handler.handler) need.
TOP_LEVEL = {"ops", "components", "enforcer", "policypack"}


def _installed() -> metadata.Distribution:
    try:
        return metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{DIST} is not installed in {sys.prefix}; run `make setup` (it installs it editable)")


def _help(argv: list[str], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(COLUMNS="120", NO_COLOR="1", TERM="dumb")
    proc = subprocess.run(argv + ["--help"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _listed_commands(help_text: str) -> set[str]:
    """Names in the help's Commands panel (rich draws each row as '│ name   help')."""
    panel = help_text.split("Commands", 1)[1]
    return set(re.findall(r"^│ ([a-z][a-z0-9-]*)\s{2,}", panel, re.M))


def _normalised(text: str, prog: str) -> list[str]:
    return [line.replace(prog, "PROG").rstrip() for line in text.splitlines()]


def test_s3pk_runs_from_any_directory_and_is_the_ops_cli(tmp_path):
    script = BIN / "s3pk"
    assert script.is_file(), f"{script} is missing; run `make setup`"
    entry = {ep.name: ep.value for ep in _installed().entry_points if ep.group == "console_scripts"}
    assert entry == {"s3pk": "ops.cli:app"}

    ours = _help([str(script)], cwd=tmp_path)  # outside the project: found through the install
    theirs = _help([sys.executable, "-m", "ops"], cwd=ROOT)
    registered = set(typer.main.get_command(app).commands)
    assert _listed_commands(ours) == _listed_commands(theirs) == registered
    assert ours.lstrip().startswith("Usage: s3pk ")
    assert _normalised(ours, "s3pk") == _normalised(theirs, "python -m ops")


def test_wheel_holds_exactly_the_four_packages_with_pinned_dependencies(tmp_path):
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in TOP_LEVEL:
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy2(ROOT / name, src / name)
    # The pinned backend from the venv, as `make setup` builds; nothing fetched.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-q", "-w", str(tmp_path / "out")],
        cwd=src, check=True, capture_output=True, timeout=300,
    )
    (wheel,) = (tmp_path / "out").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        meta = zf.read(f"{info}/METADATA").decode()

    assert {n.split("/")[0] for n in names} - {info} == TOP_LEVEL
    # Every module and data file of the four packages is in it: a new subpackage missing
    # from [tool.setuptools] packages, or a file policypack reads, would be left out.
    shipped = {
        p.relative_to(src).as_posix()
        for name in TOP_LEVEL
        for p in (src / name).rglob("*")
        if p.is_file()
    }
    assert shipped - names == set()

    requires = {str(Requirement(v)) for k, v in _headers(meta) if k == "Requires-Dist"}
    pinned = {
        str(Requirement(line))
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    }
    assert requires == pinned
    assert ("Classifier", "Private :: Do Not Upload") in _headers(meta)


def _headers(meta: str) -> list[tuple[str, str]]:
    head = meta.split("\n\n", 1)[0]
    return [tuple(line.split(": ", 1)) for line in head.splitlines() if ": " in line]


def test_layer_ships_no_part_of_the_project_itself():
    dist = _installed()  # the editable install's dist-info, .pth and finder are in site-packages
    own_files = {f.as_posix() for f in dist.files or []}
    assert any(f.endswith(".pth") for f in own_files)

    closure = dependency_closure()
    assert DIST not in {metadata_name(d) for d in closure}
    layer = set(layer_archive(closure).assets)
    leaked = {
        n for n in layer
        if n.removeprefix("python/") in own_files
        or n.split("/")[1].removesuffix(".py") in TOP_LEVEL
        or "__editable__" in n
    }
    assert leaked == set()


def metadata_name(dist: metadata.Distribution) -> str:
    return dist.metadata["Name"].lower().replace("_", "-")
