"""``python -m ops sandbox`` as a subprocess, driven by the real awscli (a dev requirement)."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from components.config import DEMO
from ops.sandbox import demo_bucket_name, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
READY = "Sandbox ready on"
# The awscli of the venv that runs the tests, invoked as its own process.
AWS = [sys.executable, "-m", "awscli"]


class SandboxProcess:
    def __init__(self, port: int):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ops", "sandbox", "--port", str(port)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if marker in line:
                return
        raise AssertionError(f"no {marker!r} within {timeout}s; output so far:\n{''.join(self.lines)}")

    def exports(self) -> dict[str, str]:
        found = (re.match(r"\s*export (\w+)=(\S+)\s*$", line) for line in self.lines)
        return {m.group(1): m.group(2) for m in found if m}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code


@pytest.fixture
def sandbox_process():
    box = SandboxProcess(free_port())
    try:
        box.wait_for(READY, timeout=60)
        yield box
    finally:
        if box.proc.poll() is None:
            box.stop()


def aws(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*AWS, *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"aws {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def head(env: dict[str, str], bucket: str, key: str) -> list:
    return json.loads(aws(env, "s3api", "head-object", "--bucket", bucket, "--key", key,
                          "--query", "[ServerSideEncryption, SSEKMSKeyId]"))


def wait_for_encryption(env, bucket, key, want: str, timeout: float = 10.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        got = head(env, bucket, key)
        if got[0] == want or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def test_uploads_with_awscli_are_rekeyed_within_seconds(sandbox_process, tmp_path):
    exports = sandbox_process.exports()
    endpoint = exports["AWS_ENDPOINT_URL"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        **{name: exports[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")},
        "AWS_ENDPOINT_URL": endpoint,  # as printed: the hint is the whole setup
    }
    mapping_table = exports["MAPPING_TABLE_NAME"]
    rows = json.loads(aws(env, "dynamodb", "scan", "--table-name", mapping_table))["Items"]
    targets = {(r["bucket_name"]["S"], r["prefix"]["S"]): (r["kms_key_arn"]["S"], r["dual_layer_encryption"]["BOOL"])
               for r in rows}

    plain, versioned = (demo_bucket_name(name) for name, _ in DEMO.buckets)
    kms_prefix = next(p for p, _, dsse in DEMO.prefixes if not dsse)
    dsse_prefix = next(p for p, _, dsse in DEMO.prefixes if dsse)
    source = tmp_path / "a.txt"
    source.write_bytes(b"tenant data\n")
    uploads = [
        (plain, f"{kms_prefix}quarterly report + notes 2.txt"),  # spaces and a '+' in the key
        (versioned, f"{dsse_prefix}v 1+1.txt"),
    ]
    for bucket, key in uploads:
        aws(env, "s3", "cp", str(source), f"s3://{bucket}/{key}")

    for bucket, key in uploads:
        prefix = next(p for (b, p) in targets if b == bucket and key.startswith(p))
        key_arn, dsse = targets[(bucket, prefix)]
        want = "aws:kms:dsse" if dsse else "aws:kms"
        assert wait_for_encryption(env, bucket, key, want) == [want, key_arn]

    # The versioned bucket: one version left (the copy's), the uploaded one deleted.
    versions = json.loads(aws(env, "s3api", "list-object-versions", "--bucket", versioned,
                              "--prefix", uploads[1][1]))["Versions"]
    assert len(versions) == 1 and versions[0]["IsLatest"]
    got = tmp_path / "back.txt"
    aws(env, "s3", "cp", f"s3://{versioned}/{uploads[1][1]}", str(got))
    assert got.read_bytes() == source.read_bytes()

    code = sandbox_process.stop()
    output = "".join(sandbox_process.lines)
    assert code == 0, output
    assert "Sandbox stopped." in output
    for bucket, key in uploads:
        assert f"s3://{bucket}/{key}" in output  # the sandbox reported each object it re-keyed
