"""The policy pack started as `pulumi preview --policy-pack policypack` starts it, over gRPC.

The pack runs as its own process, from the argv, working directory and environment of
``policypack.launch`` (the CLI's RunPlugin for a Python pack), and answers the calls the
engine makes through pulumi's own analyzer stubs. Its answers for the dev stack's
graph must be the offline run's (``policypack.check``), whose requests
``policypack.engine_marshalling`` builds.
"""

from __future__ import annotations

import collections
import os
import select
import subprocess
from pathlib import Path
from typing import NamedTuple

import grpc
import pytest
from google.protobuf import empty_pb2, json_format
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc

from policypack import check, launch
from policypack.engine_marshalling import (
    analyze_requests,
    analyze_stack_request,
    analyzer,
    configure_request,
)
from policypack.policies import PACK_NAME, POLICIES
from policypack.policy_config import load_policy_config, resolve_policy_config

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

STACK, ORGANIZATION = "dev", "organization"
# Not dialled by the pack (pulumi.policy only parses it); any engine address will do.
ENGINE_ADDRESS = "127.0.0.1:50051"
START_TIMEOUT = 15


class Pack(NamedTuple):
    stub: analyzer_pb2_grpc.AnalyzerStub
    start: launch.Launch
    handshake: grpc.StatusCode
    configure_stack: analyzer_pb2.AnalyzerStackConfigureResponse


def _handshake(stub, start) -> grpc.StatusCode:
    try:
        stub.Handshake(analyzer_pb2.AnalyzerHandshakeRequest(
            engine_address=ENGINE_ADDRESS, root_directory=str(start.cwd), program_directory=str(start.cwd)))
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """The pack process and a stub connected to the port it printed."""
    config = launch.engine_config(check.stack_config(STACK))
    start = launch.launch(ENGINE_ADDRESS, environ=os.environ, stack=launch.stack_env(
        organization=ORGANIZATION, project=check.PROJECT, stack=STACK, dry_run=True, config=config))
    stderr_path = tmp_path_factory.mktemp("pack") / "stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(start.argv, cwd=start.cwd, env=start.env, stdout=subprocess.PIPE, stderr=stderr)
    channel = None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
        assert line.strip().isdigit(), (
            f"the pack printed {line!r} instead of its port; stderr:\n{stderr_path.read_text()[-3000:]}")
        channel = grpc.insecure_channel(f"127.0.0.1:{int(line)}")
        grpc.channel_ready_future(channel).result(timeout=START_TIMEOUT)
        stub = analyzer_pb2_grpc.AnalyzerStub(channel)
        # What the engine does on loading the pack, before any other call (analyzer_plugin.go).
        yield Pack(stub, start, _handshake(stub, start), stub.ConfigureStack(analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=STACK, project=check.PROJECT, organization=ORGANIZATION, dry_run=True, config=config)))
    finally:
        if channel is not None:
            channel.close()
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()


def _as_dict(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_pack_starts_in_its_directory_from_the_repository_venv(pack):
    assert pack.start.cwd == ROOT / "policypack"
    assert pack.start.argv == [str(ROOT / ".venv" / "bin" / "python"), "-u", "-m", "pulumi.policy",
                               ENGINE_ADDRESS, str(ROOT / "policypack")]


def test_handshake_and_configure_stack_are_answered(pack):
    # The engine accepts an unimplemented Handshake (analyzer_plugin.go); any other error fails the preview.
    assert pack.handshake in (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED)
    assert isinstance(pack.configure_stack, analyzer_pb2.AnalyzerStackConfigureResponse)


def test_analyzer_info_lists_the_pack_policies(pack):
    info = pack.stub.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == PACK_NAME
    assert sorted(p.name for p in info.policies) == sorted(p.name for p in POLICIES)
    assert info.supportsConfig  # or the CLI refuses --policy-pack-config
    assert pack.stub.GetPluginInfo(empty_pb2.Empty()).version


STRICT = {"enforcer-delivery-is-resilient": {"visibilityMultiplier": 8}}


@pytest.mark.parametrize("first_preview, policy_config", [
    (False, "config.json"), (True, "config.json"), (False, STRICT),
], ids=["up", "first-preview", "mandatory-violation"])
def test_analyze_over_grpc_answers_as_the_offline_run(pack, first_preview, policy_config):
    stub = pack.stub
    if policy_config == "config.json":
        policy_config = load_policy_config(check.DEFAULT_CONFIG)
    settings = resolve_policy_config(policy_config)
    # The request the offline analyzer configures itself with (engine_marshalling.analyzer).
    stub.Configure(configure_request(settings))
    graph = check.program_graph(check.stack_config(STACK), stack=STACK, first_preview=first_preview)
    offline = analyzer(POLICIES, settings)

    over_grpc = []
    for request in analyze_requests(graph):
        response = stub.Analyze(request)
        assert _as_dict(response) == _as_dict(offline.Analyze(request, None)), request.urn
        over_grpc.extend(response.diagnostics)
    stack_request = analyze_stack_request(graph)
    response = stub.AnalyzeStack(stack_request)
    assert _as_dict(response) == _as_dict(offline.AnalyzeStack(stack_request, None))
    over_grpc.extend(response.diagnostics)

    report = check.analyze(graph, policy_config)
    levels = {analyzer_pb2.ADVISORY: "advisory", analyzer_pb2.MANDATORY: "mandatory"}
    assert collections.Counter((d.policyName, levels[d.enforcementLevel]) for d in over_grpc) == \
        collections.Counter((d.policy, d.level) for d in report.diagnostics)
    if policy_config is STRICT:  # the comparison is not vacuous
        assert report.mandatory and report.exit_code == 1
    # The real pack, too, says its deferred checks itself, never with pulumi-policy's v0.0.1 note.
    assert not any(d.message.startswith("can't run policy") for d in over_grpc)
    if first_preview:
        assert {d.policyName for d in over_grpc} == {"preview-deferred-checks"}


# --- the launch function itself ------------------------------------------------------


def _fake_pack(tmp_path: Path, venv: str | None = "env") -> Path:
    pack_dir = tmp_path / "pack"
    pack_dir.mkdir()
    (pack_dir / "__main__.py").write_text("")
    options = f"    toolchain: pip\n    virtualenv: {venv}\n" if venv else "    toolchain: pip\n"
    (pack_dir / "PulumiPolicy.yaml").write_text(f"runtime:\n  name: python\n  options:\n{options}")
    return pack_dir


def _make_venv(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").write_text("")
    return path


def test_virtualenv_is_relative_to_the_pack_dir_not_the_cwd(tmp_path, monkeypatch):
    pack_dir = _fake_pack(tmp_path, "../shared-venv/")
    venv = _make_venv(tmp_path / "shared-venv")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    start = launch.launch("127.0.0.1:1", pack_dir=pack_dir, environ={"PATH": "/usr/bin", "PYTHONHOME": "/x"})
    assert start.argv[0] == str(venv / "bin" / "python")
    assert start.argv[-2:] == ["127.0.0.1:1", str(pack_dir)]
    assert start.cwd == pack_dir
    assert start.env == {"PATH": f"{venv}/bin:/usr/bin", "VIRTUAL_ENV": str(venv)}


def test_absolute_virtualenv_is_kept(tmp_path):
    venv = _make_venv(tmp_path / "abs-venv")
    pack_dir = _fake_pack(tmp_path, str(venv))
    assert launch.launch("a:1", pack_dir=pack_dir).argv[0] == str(venv / "bin" / "python")


def test_missing_virtualenv_is_a_clear_error(tmp_path):
    pack_dir = _fake_pack(tmp_path, ".venv")
    with pytest.raises(launch.LaunchError) as exc:
        launch.launch("a:1", pack_dir=pack_dir)
    message = str(exc.value)
    assert "virtualenv '.venv'" in message and str(pack_dir / ".venv") in message
    assert "make setup" in message


def test_unset_virtualenv_and_other_toolchains_are_refused(tmp_path):
    pack_dir = _fake_pack(tmp_path, None)
    with pytest.raises(launch.LaunchError, match="virtualenv is not set"):
        launch.launch("a:1", pack_dir=pack_dir)
    with pytest.raises(launch.LaunchError, match="toolchain 'uv'"):
        launch.virtualenv_dir(pack_dir, {"toolchain": "uv", "virtualenv": ".venv"})


def test_pack_without_main_is_refused(tmp_path):
    _make_venv(tmp_path / "pack-venv")
    pack_dir = _fake_pack(tmp_path, "../pack-venv")
    (pack_dir / "__main__.py").unlink()
    with pytest.raises(launch.LaunchError, match="no __main__.py"):
        launch.launch("a:1", pack_dir=pack_dir)


def test_stack_env_is_what_runplugin_appends():
    env = launch.stack_env(organization="", project="p", stack="s", dry_run=False,
                           config=launch.engine_config({"aws:region": "eu-west-1", "p:demo": True,
                                                        "p:buckets": {"b": {"x": 1}}}))
    assert env == {"PULUMI_PROJECT": "p", "PULUMI_STACK": "s", "PULUMI_DRY_RUN": "false",
                   "PULUMI_CONFIG": '{"aws:region":"eu-west-1","p:demo":"true","p:buckets":"{\\"b\\":{\\"x\\":1}}"}'}
    assert "PULUMI_CONFIG" not in launch.stack_env(organization="o", project="p", stack="s", dry_run=True,
                                                   config={})
