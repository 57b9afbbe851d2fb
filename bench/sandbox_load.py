"""The sandbox under load: how fast ``ops sandbox`` re-keys a burst and a trickle of uploads,
as a client sees it, with the concurrent pollers and with today's single poller.

    .venv/bin/python -m bench.sandbox_load                  # everything below, ~6 minutes
    .venv/bin/python -m bench.sandbox_load --objects 300 --modes 10:process
    .venv/bin/python -m bench.sandbox_load --url http://127.0.0.1:4566   # a running `make sandbox`

One run prints, side by side:

* moto's raw capacity: PUT and HEAD requests/s of one patched moto process, 16 threads;
* per mode (``POLLERS:process`` = moto in a process of its own, ``POLLERS:inprocess`` =
  moto in the sandbox's process, as before; ``1:inprocess`` is the old single poller):
  a burst of ``--objects`` 1 KiB uploads across the mapped demo prefixes (SSE-KMS and
  DSSE, both demo buckets) from 16 client threads: end-to-end objects/s (first upload
  started -> last object seen under its mapped key) and the latency of each object
  (its upload finished -> the first HEAD that shows its mapped key), p50 and p99;
  then a steady trickle of ``--trickle-rate`` uploads/s, and its latency.

Each mode runs in a fresh sandbox process (``serve`` below), printing its own console to
a log file, as ``make sandbox`` does on a pipe. The client checks objects oldest upload
first, each at most every ``RECHECK_MIN_SECONDS`` (backing off to 1 s), under one
token bucket of ``--head-rate`` HEAD/s, so that its own polling is a bounded share of
what moto serves. Where the time goes: the CPU seconds that the sandbox's process and
its moto process each used during the burst (from /proc), next to the burst's wall time.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from botocore.config import Config

from components.config import DEMO
from ops.sandbox.emulator import PROFILE_VARIABLE

_REPO = Path(__file__).resolve().parent.parent
CLIENT_THREADS = 16
BODY = os.urandom(1024)
RECHECK_MIN_SECONDS = 0.1
RECHECK_MAX_SECONDS = 1.0
READY = "BENCH-READY"


# -- the sandbox under test, in a process of its own ----------------------------------------


def serve(port: int, pollers: int, moto_process: bool, log: str) -> None:
    from rich.console import Console

    from ops.sandbox.lifecycle import Sandbox

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(log, "w") as handle:
        console = Console(file=handle, width=200, force_terminal=False)
        with Sandbox("dev", port=port, console=console, concurrency=pollers, separate_process=moto_process) as box:
            box.run_until_idle()  # provisioning's s3:TestEvent messages
            box.start_pollers(wait_warm=120)  # measure the pollers, not their cold starts
            print(READY, flush=True)
            box.serve_forever(stop)
            console.print(f"final stats: {box.esm.stats}")


class SandboxProcess:
    def __init__(self, pollers: int, moto_process: bool, log: Path, profile: str | None = None):
        from ops.sandbox.emulator import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.sandbox_load", "serve", "--port", str(self.port), "--pollers", str(pollers),
             "--moto", "process" if moto_process else "inprocess", "--log", str(log)],
            cwd=_REPO, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(_REPO), **({PROFILE_VARIABLE: profile} if profile else {})},
        )
        line = self.proc.stdout.readline()
        if READY not in line:
            self.stop()
            raise RuntimeError(f"the sandbox did not start; see {log}")

    def pids(self) -> dict[str, int]:
        """The sandbox's process and, when moto runs apart, moto's."""
        found = {"sandbox": self.proc.pid}
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            for pid in children.read_text().split():
                found["moto"] = int(pid)
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_line(before: dict[str, float], after: dict[str, float], wall: float) -> str:
    used = {name: after[name] - before[name] for name in before}
    used["client (this process)"] = after["client"] - before["client"]
    used.pop("client")
    return "CPU during the burst: " + ", ".join(
        f"{name} {seconds:.1f}s ({100 * seconds / wall:.0f}% of a core)" for name, seconds in used.items()
    )


def print_profile(path: str, top: int = 25) -> None:
    """Where moto's request threads spent their time, by own (tottime) and cumulative time."""
    import pstats

    stats = pstats.Stats(path)
    total = sum(entry[2] for entry in stats.stats.values())  # tottime of every function
    print(f"moto profile ({path}): {total:.1f}s wall-clock summed over request threads, top {top}:")
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


# -- the client ----------------------------------------------------------------------------


class TokenBucket:
    """At most ``rate`` takes per second, shared by every thread."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> None:
        with self.lock:
            now = time.monotonic()
            wait = self.next - now
            self.next = max(now, self.next) + self.interval
        if wait > 0:
            time.sleep(wait)


@dataclass
class Upload:
    bucket: str
    key: str
    want: tuple[str, str]  # (ServerSideEncryption, SSEKMSKeyId) once re-keyed
    finished: float = 0.0  # monotonic: PutObject answered
    seen: float = 0.0  # monotonic: first HEAD with the mapped key
    next_check: float = 0.0
    gap: float = RECHECK_MIN_SECONDS

    @property
    def latency(self) -> float:
        return self.seen - self.finished


def s3_client(url: str, pool: int = CLIENT_THREADS + 4):
    from ops.sandbox.emulator import client

    return client("s3", url, "us-east-1", config=Config(max_pool_connections=pool, retries={"mode": "standard"}))


def mapped_targets(url: str) -> list[tuple[str, str, tuple[str, str]]]:
    """(bucket, prefix, (sse, key ARN)) of every mapped demo prefix, from the mapping table."""
    from ops.sandbox.emulator import client

    ddb = client("dynamodb", url, "us-east-1")
    targets = []
    for item in ddb.scan(TableName="s3-prefix-keys-dev-mappings")["Items"]:
        sse = "aws:kms:dsse" if item["dual_layer_encryption"]["BOOL"] else "aws:kms"
        targets.append((item["bucket_name"]["S"], item["prefix"]["S"], (sse, item["kms_key_arn"]["S"])))
    demo_prefixes = {prefix for prefix, _, _ in DEMO.prefixes}
    return sorted(t for t in targets if t[1] in demo_prefixes)


class Watcher:
    """Checks uploads, oldest first, under a HEAD budget, until every one is re-keyed."""

    def __init__(self, s3, head_rate: float, threads: int = 4):
        self.s3 = s3
        self.bucket = TokenBucket(head_rate)
        self.pending: list[Upload] = []
        self.lock = threading.Lock()
        self.heads = 0
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def add(self, upload: Upload) -> None:
        with self.lock:
            upload.next_check = upload.finished
            self.pending.append(upload)

    def _take(self) -> Upload | None:
        now = time.monotonic()
        with self.lock:
            for upload in self.pending:  # in upload order
                if upload.next_check <= now:
                    upload.next_check = float("inf")  # this thread's
                    return upload
        return None

    def _run(self) -> None:
        while not self.stopped.is_set():
            upload = self._take()
            if upload is None:
                time.sleep(0.01)
                continue
            self.bucket.take()
            head = self.s3.head_object(Bucket=upload.bucket, Key=upload.key)
            now = time.monotonic()
            with self.lock:
                self.heads += 1
                if (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == upload.want:
                    upload.seen = now
                    self.pending.remove(upload)
                else:
                    upload.next_check = now + upload.gap
                    upload.gap = min(upload.gap * 1.5, RECHECK_MAX_SECONDS)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.pending:
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self.stopped.set()


def percentile(values: list[float], q: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)


@dataclass
class Figures:
    objects: int
    seconds: float
    p50: float
    p99: float
    heads: int
    finished: bool

    @property
    def per_second(self) -> float:
        return self.objects / self.seconds

    def line(self) -> str:
        done = "" if self.finished else " (TIMED OUT: not every object was re-keyed)"
        return (f"{self.objects} objects in {self.seconds:.1f}s = {self.per_second:.1f} objects/s end to end; "
                f"latency p50 {self.p50:.2f}s p99 {self.p99:.2f}s; {self.heads} client HEADs{done}")


def _uploads(url: str, count: int, tag: str) -> list[Upload]:
    targets = mapped_targets(url)
    return [Upload(bucket, f"{prefix}{tag}-{i:05d}.bin", want)
            for i, (bucket, prefix, want) in ((i, targets[i % len(targets)]) for i in range(count))]


def _measure(url: str, uploads: list[Upload], pace: Callable[[int], float] | None, head_rate: float,
             timeout: float) -> Figures:
    s3 = s3_client(url)
    watcher = Watcher(s3, head_rate)
    started = time.monotonic()

    def put(index: int) -> None:
        if pace is not None:
            delay = started + pace(index) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        upload = uploads[index]
        s3.put_object(Bucket=upload.bucket, Key=upload.key, Body=BODY)
        upload.finished = time.monotonic()
        watcher.add(upload)

    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(put, range(len(uploads))))
    finished = watcher.wait(timeout)
    watcher.stop()
    done = [u for u in uploads if u.seen]
    end = max((u.seen for u in done), default=time.monotonic())
    latencies = [u.latency for u in done] or [float("nan")]
    return Figures(len(done), end - started, percentile(latencies, 50), percentile(latencies, 99), watcher.heads,
                   finished)


def burst(url: str, count: int, head_rate: float, timeout: float) -> Figures:
    return _measure(url, _uploads(url, count, "burst"), None, head_rate, timeout)


def trickle(url: str, count: int, rate: float, head_rate: float, timeout: float) -> Figures:
    return _measure(url, _uploads(url, count, "trickle"), lambda i: i / rate, head_rate, timeout)


# -- moto's raw capacity ---------------------------------------------------------------------


def raw_capacity(requests: int) -> tuple[float, float]:
    """PUT and HEAD requests/s of one patched moto process, from CLIENT_THREADS threads."""
    from ops.sandbox.emulator import free_port, running

    port = free_port()
    with running(port) as url:
        s3 = s3_client(url)
        s3.create_bucket(Bucket="capacity")
        keys = [f"k/{i:05d}" for i in range(requests)]
        with ThreadPoolExecutor(CLIENT_THREADS) as pool:
            start = time.monotonic()
            list(pool.map(lambda k: s3.put_object(Bucket="capacity", Key=k, Body=BODY), keys))
            put_rate = requests / (time.monotonic() - start)
            start = time.monotonic()
            list(pool.map(lambda k: s3.head_object(Bucket="capacity", Key=k), keys))
            head_rate = requests / (time.monotonic() - start)
    return put_rate, head_rate


# -- the driver ------------------------------------------------------------------------------


def parse_mode(text: str) -> tuple[int, bool]:
    pollers, _, where = text.partition(":")
    if not pollers.isdigit() or int(pollers) < 1 or where not in ("process", "inprocess", ""):
        raise argparse.ArgumentTypeError(f"mode {text!r}: use POLLERS:process or POLLERS:inprocess, e.g. 10:process")
    return int(pollers), where != "inprocess"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("serve", help="(internal) one sandbox under test")
    run.add_argument("--port", type=int, required=True)
    run.add_argument("--pollers", type=int, required=True)
    run.add_argument("--moto", choices=("process", "inprocess"), default="process")
    run.add_argument("--log", required=True)
    parser.add_argument("--objects", type=int, default=600, help="uploads in the burst (default 600)")
    parser.add_argument("--modes", type=parse_mode, nargs="+",
                        default=[parse_mode(m) for m in ("10:process", "10:inprocess", "1:inprocess")],
                        help="POLLERS:process|inprocess per sandbox (default: 10:process 10:inprocess 1:inprocess)")
    parser.add_argument("--pollers", type=int, default=None,
                        help="shorthand for --modes N:process (1: the single poller as the baseline)")
    parser.add_argument("--trickle-rate", type=float, default=5.0, help="uploads/s of the trickle (default 5)")
    parser.add_argument("--trickle-seconds", type=float, default=30.0, help="how long the trickle lasts (default 30)")
    parser.add_argument("--head-rate", type=float, default=40.0, help="the client's HEAD budget/s (default 40)")
    parser.add_argument("--profile-moto", action="store_true",
                        help="profile moto's request handling (cProfile) in the modes where it runs apart")
    parser.add_argument("--url", help="measure a sandbox already running there (dev stack) instead of starting any")
    parser.add_argument("--capacity-requests", type=int, default=1000)
    parser.add_argument("--timeout", type=float, default=600.0, help="per phase, seconds")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args.port, args.pollers, args.moto == "process", args.log)
        return
    modes = [(args.pollers, True)] if args.pollers else args.modes
    if args.url:
        b = burst(args.url, args.objects, args.head_rate, args.timeout)
        print(f"[{args.url}] burst:   {b.line()}", flush=True)
        t = trickle(args.url, int(args.trickle_rate * args.trickle_seconds), args.trickle_rate, args.head_rate,
                    args.timeout)
        print(f"[{args.url}] trickle ({args.trickle_rate:g}/s): {t.line()}", flush=True)
        return

    print(f"machine: {os.cpu_count()} CPUs; client: {CLIENT_THREADS} threads, HEAD budget {args.head_rate:g}/s",
          flush=True)
    put_rate, head_rate = raw_capacity(args.capacity_requests)
    print(f"moto raw capacity (one patched process, {CLIENT_THREADS} threads, 1 KiB): "
          f"PUT {put_rate:.0f}/s, HEAD {head_rate:.0f}/s", flush=True)
    logs = Path(tempfile.mkdtemp(prefix="sandbox-load-"))
    results = []
    for pollers, moto_process in modes:
        name = f"{pollers} poller{'s' if pollers > 1 else ''}, moto {'in its own process' if moto_process else 'in-process'}"
        log = logs / f"sandbox-{pollers}-{'process' if moto_process else 'inprocess'}.log"
        profile = str(logs / f"moto-{pollers}.pstats") if args.profile_moto and moto_process else None
        box = SandboxProcess(pollers, moto_process, log, profile)
        try:
            pids = {**box.pids(), "client": os.getpid()}
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            b = burst(box.url, args.objects, args.head_rate, args.timeout)
            after = {name: cpu_seconds(pid) for name, pid in pids.items()}
            print(f"[{name}] burst:   {b.line()}", flush=True)
            print(f"[{name}] {cpu_line(before, after, b.seconds)}", flush=True)
            count = int(args.trickle_rate * args.trickle_seconds)
            t = trickle(box.url, count, args.trickle_rate, args.head_rate, args.timeout)
            print(f"[{name}] trickle ({args.trickle_rate:g}/s): {t.line()}", flush=True)
        finally:
            box.stop()
        results.append((name, b, t))
        if profile:
            print_profile(profile)
    print(f"\nsandbox logs: {logs}")
    print("| sandbox | burst objects/s | burst p50 | burst p99 | trickle p50 | trickle p99 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, b, t in results:
        print(f"| {name} | {b.per_second:.1f} | {b.p50:.1f} s | {b.p99:.1f} s | {t.p50:.2f} s | {t.p99:.2f} s |")


if __name__ == "__main__":
    main()
