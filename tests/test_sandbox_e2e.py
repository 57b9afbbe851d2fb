"""``python -m ops sandbox`` as a subprocess, driven by the real awscli (a dev requirement)."""

from __future__ import annotations

import hashlib
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

import boto3
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


MIB = 1024 * 1024
# API_UploadPart: every part but the last is at least 5 MiB; the last may be 1 byte. Two parts
# is the smallest upload that is multipart in S3's own terms (the part-size rule applies).
MULTIPART_PARTS = (b"m" * (5 * MIB), b"!")


def _multipart_upload(s3, bucket: str, key: str) -> str:
    created = s3.create_multipart_upload(Bucket=bucket, Key=key)
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key=key, UploadId=created["UploadId"],
                                                      PartNumber=n, Body=body)["ETag"]}
             for n, body in enumerate(MULTIPART_PARTS, start=1)]
    done = s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=created["UploadId"],
                                        MultipartUpload={"Parts": parts})
    return done["ETag"]


def test_multipart_uploads_are_rekeyed_in_every_mapped_prefix_type(sandbox_process):
    """SSE-KMS and DSSE prefixes of the plain and the versioned demo bucket (issue 11: the DSSE
    copy path read the multipart object's ACL, which moto answered with a 500 before patch 12)."""
    exports = sandbox_process.exports()
    s3 = boto3.client("s3", endpoint_url=exports["AWS_ENDPOINT_URL"], region_name=exports["AWS_DEFAULT_REGION"],
                      aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
    ddb = boto3.client("dynamodb", endpoint_url=exports["AWS_ENDPOINT_URL"],
                       region_name=exports["AWS_DEFAULT_REGION"], aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                       aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
    rows = ddb.scan(TableName=exports["MAPPING_TABLE_NAME"])["Items"]
    targets = {(r["bucket_name"]["S"], r["prefix"]["S"]): (r["kms_key_arn"]["S"], r["dual_layer_encryption"]["BOOL"])
               for r in rows}
    prefix_types = {dsse: prefix for prefix, _, dsse in DEMO.prefixes}  # one SSE-KMS and one DSSE prefix
    uploads = [(demo_bucket_name(name), prefix_types[dsse]) for name, _ in DEMO.buckets for dsse in (False, True)]
    assert len(set(uploads)) == 4 and all(u in targets for u in uploads)

    for bucket, prefix in uploads:
        assert _multipart_upload(s3, bucket, f"{prefix}big.bin").endswith(f'-{len(MULTIPART_PARTS)}"')

    body_sha = hashlib.sha256(b"".join(MULTIPART_PARTS)).hexdigest()
    deadline = time.monotonic() + 30
    for bucket, prefix in uploads:
        key_arn, dsse = targets[(bucket, prefix)]
        want = ["aws:kms:dsse" if dsse else "aws:kms", key_arn]
        while (got := s3.head_object(Bucket=bucket, Key=f"{prefix}big.bin")) and \
                [got.get("ServerSideEncryption"), got.get("SSEKMSKeyId")] != want and time.monotonic() < deadline:
            time.sleep(0.3)
        assert [got.get("ServerSideEncryption"), got.get("SSEKMSKeyId")] == want, (bucket, prefix)
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}big.bin")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == body_sha, (bucket, prefix)

    for bucket, prefix in uploads:  # the copy commits before the sandbox prints its outcome
        reported = f"s3://{bucket}/{prefix}big.bin"
        if reported not in "".join(sandbox_process.lines):
            sandbox_process.wait_for(reported, timeout=10)
    code = sandbox_process.stop()
    output = "".join(sandbox_process.lines)
    assert code == 0, output
    assert "Traceback" not in output and "dead-letter" not in output.lower(), output


@pytest.mark.parametrize("port", [None, 4570])
def test_make_demo_and_sandbox_pass_port(port):
    """`make demo PORT=N` / `make sandbox PORT=N` (a dry run: make prints the commands)."""
    extra = [f"PORT={port}"] if port else []
    done = subprocess.run(["make", "-n", "--always-make", "demo", "sandbox", *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    commands = [line.split() for line in done.stdout.splitlines() if "-m ops sandbox" in line]
    assert len(commands) == 2 and any("--scenario" in c for c in commands)
    for command in commands:
        assert ("--port" in command) == bool(port)
        if port:
            assert command[command.index("--port") + 1] == str(port)
