"""Backfill benchmark: ``ops backfill`` against ``aws s3 cp --recursive`` (seeds 001/003).

    python -m bench.backfill [--objects 2000] [--latency-ms 20 100] [--concurrency N] [--repeat 1]

One emulator process (``bench/emulator.py``: moto server with the project's patches, a
fixed delay per request, requests counted per operation). The same objects, in one
prefix, each carrying tags, user metadata, content headers and the STANDARD_IA storage
class, SSE-S3 encrypted (S3's default). Before each tool runs the objects are written
again, so both start from the same state. Both tools run as subprocesses, their
interpreter start included:

* ``aws s3 cp s3://b/p/ s3://b/p/ --recursive --sse aws:kms --sse-kms-key-id K``
  (the venv's awscli, its default concurrency);
* ``ops backfill --bucket b --mapping-table mapping`` (its default concurrency unless
  --concurrency is given): UpdateObjectEncryption without a HEAD first;
* the same with ``--inspect``: a HEAD first, so compliant objects would only be read.

Printed per latency: wall time and objects/s per tool, the ratios, S3 calls per object
per operation, and how many objects kept each attribute; then the issue's targets
(every attribute kept, no more S3 calls per object than awscli, >= 1.5x awscli's
throughput at 100 ms) against the default ``ops backfill``. Not a test: figures only.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import boto3
from botocore.config import Config

from bench.emulator import Emulator
from components.config import MappingRow
from ops.lambda_runtime import create_tables

REGION = "us-east-1"
BUCKET = "bench-backfill"
PREFIX = "p/"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_CONFIG_FILE": "/dev/null",
}
BODY = bytes(range(256)) * 4  # 1 KiB
CONTENT = {
    "ContentType": "application/x-bench",
    "CacheControl": "max-age=600",
    "ContentDisposition": 'attachment; filename="o.bin"',
    "ContentEncoding": "identity",
    "ContentLanguage": "en-GB",
}
STORAGE_CLASS = "STANDARD_IA"
ATTRIBUTES = ("tags", "metadata", "content headers", "storage class", "mapped key")
_REPO = Path(__file__).resolve().parent.parent
_BIN = Path(sys.executable).parent


def key_name(i: int) -> str:
    return f"{PREFIX}obj-{i:05d}.bin"


def expected_tags(i: int) -> list[tuple[str, str]]:
    return sorted([("team", "bench"), ("idx", str(i))])


def expected_metadata(i: int) -> dict[str, str]:
    return {"tenant": f"t-{i % 7}", "owner": "bench"}


class Setup:
    def __init__(self, url: str, objects: int):
        os.environ.update(CREDENTIALS)
        config = Config(max_pool_connections=32, retries={"mode": "standard", "max_attempts": 5})
        self.s3 = boto3.client("s3", endpoint_url=url, region_name=REGION, config=config)
        kms = boto3.client("kms", endpoint_url=url, region_name=REGION)
        ddb = boto3.client("dynamodb", endpoint_url=url, region_name=REGION)
        self.objects = objects
        self.key_arn = kms.create_key(Description="bench tenant")["KeyMetadata"]["Arn"]
        self.s3.create_bucket(Bucket=BUCKET)
        create_tables(ddb)
        row = MappingRow(BUCKET, PREFIX, self.key_arn, dual_layer=False, bucket_key=True)
        ddb.put_item(TableName="mapping", Item=row.item())

    def _put(self, i: int) -> None:
        self.s3.put_object(
            Bucket=BUCKET, Key=key_name(i), Body=BODY, Metadata=expected_metadata(i),
            Tagging=f"team=bench&idx={i}", StorageClass=STORAGE_CLASS, **CONTENT,
        )

    def reset_objects(self) -> None:
        """Every object written again as it was: SSE-S3, all attributes."""
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(self._put, range(self.objects)))

    def _kept(self, i: int) -> dict[str, bool]:
        head = self.s3.head_object(Bucket=BUCKET, Key=key_name(i))
        tags = self.s3.get_object_tagging(Bucket=BUCKET, Key=key_name(i))["TagSet"]
        return {
            "tags": sorted((t["Key"], t["Value"]) for t in tags) == expected_tags(i),
            "metadata": head.get("Metadata") == expected_metadata(i),
            "content headers": all(head.get(k) == v for k, v in CONTENT.items()),
            "storage class": head.get("StorageClass", "STANDARD") == STORAGE_CLASS,
            "mapped key": (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == ("aws:kms", self.key_arn),
        }

    def attributes_kept(self) -> dict[str, int]:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(self._kept, range(self.objects)))
        return {a: sum(r[a] for r in results) for a in ATTRIBUTES}


def run_awscli(url: str, key_arn: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(_BIN / "aws"), "--endpoint-url", url, "s3", "cp", f"s3://{BUCKET}/{PREFIX}", f"s3://{BUCKET}/{PREFIX}",
         "--recursive", "--sse", "aws:kms", "--sse-kms-key-id", key_arn, "--only-show-errors"],
        env={**os.environ, **CREDENTIALS}, capture_output=True, text=True,
    )


TOOLS = ("aws s3 cp", "ops backfill", "ops backfill --inspect")
TARGET_RATIO_AT_100MS = 1.5


def run_ours(url: str, checkpoint: Path, concurrency: int | None, inspect: bool) -> subprocess.CompletedProcess:
    # The command function itself, as `ops backfill` runs it (the CLI module registers
    # the same function).
    argv = ["--bucket", BUCKET, "--mapping-table", "mapping", "--endpoint-url", url, "--region", REGION,
            "--resume", str(checkpoint)]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if inspect:
        argv.append("--inspect")
    return subprocess.run(
        [sys.executable, "-c", "import typer; from ops.backfill import backfill_command; typer.run(backfill_command)",
         *argv],
        cwd=_REPO, env={**os.environ, **CREDENTIALS, "PYTHONPATH": str(_REPO)}, capture_output=True, text=True,
    )


def measure(emulator: Emulator, setup: Setup, tool: str, latency_ms: float, concurrency: int | None,
            workdir: Path) -> dict:
    emulator.set_latency(0)
    setup.reset_objects()
    emulator.reset()
    emulator.set_latency(latency_ms)
    started = time.monotonic()
    if tool == "aws s3 cp":
        proc = run_awscli(emulator.url, setup.key_arn)
    else:
        proc = run_ours(emulator.url, workdir / f"{latency_ms:g}ms-{time.time_ns()}.checkpoint.jsonl", concurrency,
                        inspect=tool.endswith("--inspect"))
    seconds = time.monotonic() - started
    emulator.set_latency(0)
    requests = emulator.stats()["requests"]
    if proc.returncode != 0:
        print(f"  ! {tool} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-800:]}", file=sys.stderr)
    s3_calls = {op.removeprefix("s3."): n for op, n in requests.items() if op.startswith("s3.")}
    other = {op: n for op, n in requests.items() if not op.startswith("s3.")}
    return {
        "tool": tool,
        "seconds": seconds,
        "rate": setup.objects / seconds,
        "s3_calls": s3_calls,
        "other_calls": other,
        "kept": setup.attributes_kept(),
        "exit": proc.returncode,
    }


def print_results(latency_ms: float, objects: int, rows: list[dict]) -> None:
    print(f"\n=== {latency_ms:g} ms per request, {objects} objects (1 KiB, tags + metadata + content headers + "
          f"{STORAGE_CLASS}) ===")
    print(f"{'tool':<24}{'seconds':>9}{'objects/s':>11}{'S3 calls/object':>17}   by operation")
    for r in rows:
        ops = ", ".join(f"{op} {n / objects:.3f}" for op, n in sorted(r["s3_calls"].items()))
        print(f"{r['tool']:<24}{r['seconds']:>9.1f}{r['rate']:>11.1f}{s3_calls_per_object(r, objects):>17.3f}   {ops}")
        if r["other_calls"]:
            print(f"{'':<24}{'':>37}   other: " + ", ".join(f"{op} {n}" for op, n in sorted(r["other_calls"].items())))
    awscli = rows[0]
    for r in rows[1:]:
        print(f"throughput ratio ({r['tool']} / aws s3 cp): {r['rate'] / awscli['rate']:.2f}x")
    print(f"{'objects that kept':<24}" + "".join(f"{a:>16}" for a in ATTRIBUTES))
    for r in rows:
        print(f"{r['tool']:<24}" + "".join(f"{r['kept'][a]:>11}/{objects:<4}" for a in ATTRIBUTES))


def s3_calls_per_object(row: dict, objects: int) -> float:
    return sum(row["s3_calls"].values()) / objects


def print_targets(results: dict[float, list[dict]], objects: int) -> None:
    print("\nTargets (default ops backfill against aws s3 cp)")
    for latency, rows in sorted(results.items()):
        awscli, ours = rows[0], rows[1]
        kept = all(ours["kept"][a] == objects for a in ATTRIBUTES)
        ours_calls, cli_calls = s3_calls_per_object(ours, objects), s3_calls_per_object(awscli, objects)
        print(f"  [{'ok' if kept else 'MISS'}] {latency:g} ms: every attribute kept by every object")
        print(f"  [{'ok' if ours_calls <= cli_calls else 'MISS'}] {latency:g} ms: S3 calls per object "
              f"{ours_calls:.3f} <= aws s3 cp's {cli_calls:.3f}")
        if latency == 100:
            ratio = ours["rate"] / awscli["rate"]
            print(f"  [{'ok' if ratio >= TARGET_RATIO_AT_100MS else 'MISS'}] 100 ms: throughput "
                  f"{ratio:.2f}x >= {TARGET_RATIO_AT_100MS}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ops backfill vs aws s3 cp --recursive on one emulator")
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[20, 100])
    parser.add_argument("--concurrency", type=int, default=None, help="ops backfill --concurrency (default: its own)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per tool and latency, alternating tools; the median run is reported "
                             "(other load on the machine hits both tools alike)")
    args = parser.parse_args(argv)
    print(f"bench.backfill {datetime.now(UTC):%Y-%m-%d %H:%M}Z, {os.cpu_count()} CPU(s), "
          f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}")
    with Emulator(0) as emulator, tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
        setup = Setup(emulator.url, args.objects)
        results: dict[float, list[dict]] = {}
        for latency in args.latency_ms:
            runs: dict[str, list[dict]] = {tool: [] for tool in TOOLS}
            for _ in range(max(1, args.repeat)):
                for tool in runs:
                    runs[tool].append(measure(emulator, setup, tool, latency, args.concurrency, Path(tmp)))
            rows = [sorted(r, key=lambda run: run["rate"])[len(r) // 2] for r in runs.values()]
            if args.repeat > 1:
                for tool, r in runs.items():
                    print(f"{tool}: objects/s per run " + ", ".join(f"{run['rate']:.1f}" for run in r))
            print_results(latency, args.objects, rows)
            results[latency] = rows
        print_targets(results, args.objects)


if __name__ == "__main__":
    main()
