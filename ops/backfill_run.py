"""The backfill run: every listed object re-keyed by the engine, with bounded
concurrency, a checkpoint per object and a report of outcomes.

Where a prefix's mapped key can be reached by UpdateObjectEncryption (an SSE-KMS
target, ``--rekey-method auto``), each listed object gets that request straight away,
with no HEAD: one S3 call per object, as many as ``aws s3 cp`` makes, with nothing about
the object changed but its key (``Enforcer.process_uninspected`` says why that is safe).
Objects S3 refuses it for, and every object of a DSSE-KMS prefix, go through
``Enforcer.process``: one HEAD, ``decide()``, then a full-fidelity copy or multipart
copy, race-safe, the very code path the Lambda runs on upload. ``inspect`` sends every
object through that path, so that compliant objects are only read (a HEAD is a GET-tier
request; UpdateObjectEncryption is a write plus a KMS request) and counted as compliant.

Bounded concurrency (threads; clients sized to them, adaptive retries). The copies are
ObjectCreated events too: the deployed enforcer sees them and finds them compliant (a
HEAD and a journal row each, no second copy).

``versions`` lists every version (ListObjectVersions). Current ones are handled as
above; a noncurrent version is never copied (the copy would become the current object)
but inspected and re-keyed in place by UpdateObjectEncryption pinned to its VersionId
where S3 allows it, and otherwise settled by the operator's ``--noncurrent`` choice
(``EngineSettings.noncurrent_action``): keep (recorded on the version as a tag,
``enforcer/versions.py``) or delete. Without a choice such versions are reported as
needing one, and nothing is deleted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enforcer.decision import Outcome
from enforcer.engine import GIB, Enforcer, EngineSettings, Result
from ops import sources
from ops.backfill_checkpoint import ERROR, Checkpoint, method_label
from ops.terminal import ProgressSink

# Measured with ``python -m bench.backfill`` (docs/backfill.md): at 100 ms per request
# throughput keeps rising up to about this many objects in flight; beyond it the
# emulator's CPU, not latency, is the limit. Real S3 scales further; raise it with
# --concurrency, and botocore's adaptive retries slow down on 503 SlowDown by themselves.
DEFAULT_CONCURRENCY = 64

PROBLEM_OUTCOMES = frozenset(
    {Outcome.SSE_C, Outcome.ACCESS_DENIED, Outcome.NEEDS_RESTORE, Outcome.LOOP_GUARD, Outcome.INVALID_MAPPING,
     Outcome.LOCKED, Outcome.FAILED, Outcome.NEEDS_CHOICE}
)


@dataclass
class Problem:
    key: str
    outcome: str
    reason: str


@dataclass
class BackfillReport:
    bucket: str
    prefix: str | None
    checkpoint: Path | None = None
    counts: Counter = field(default_factory=Counter)  # (outcome, method or "") -> objects
    bytes: Counter = field(default_factory=Counter)  # (outcome, method or "") -> bytes
    skipped: int = 0  # done in an earlier run, per the checkpoint
    problems: list[Problem] = field(default_factory=list)
    interrupted: bool = False
    elapsed: float = 0.0

    @property
    def processed(self) -> int:
        return sum(self.counts.values())

    @property
    def rekeyed(self) -> int:
        return sum(n for (outcome, _), n in self.counts.items() if outcome == Outcome.REKEYED)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.problems else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "processed": self.processed,
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "elapsed_seconds": round(self.elapsed, 3),
            "outcomes": [
                {"outcome": o, "method": m or None, "objects": n, "bytes": self.bytes[(o, m)]}
                for (o, m), n in sorted(self.counts.items())
            ],
            "problems": [p.__dict__ for p in self.problems],
        }


class _Tally:
    """Results land here from the worker threads, so objects that finish while an
    interrupted run drains are counted and checkpointed like the others."""

    def __init__(self, report: BackfillReport, checkpoint: Checkpoint | None, sink: ProgressSink):
        self.report = report
        self.checkpoint = checkpoint
        self.sink = sink
        self._lock = threading.Lock()

    def add(self, listed: sources.Listed, result: Result | None, error: BaseException | None) -> None:
        key = checkpoint_key(listed)
        # HEAD's size where there was one; an uninspected object has the listing's.
        size = result.before.size if result is not None and result.before is not None else listed.size
        if self.checkpoint:
            self.checkpoint.record(key, result, error, size)
        with self._lock:
            if result is None:
                self.report.counts[(ERROR, "")] += 1
                self.report.problems.append(Problem(key, ERROR, f"{type(error).__name__}: {error}"))
            else:
                slot = (str(result.outcome), method_label(result))
                self.report.counts[slot] += 1
                self.report.bytes[slot] += size
                if result.outcome in PROBLEM_OUTCOMES:
                    self.report.problems.append(Problem(key, str(result.outcome), result.reason))
        self.sink.done()


def checkpoint_key(listed: sources.Listed) -> str:
    """The current object by its key, a noncurrent version by key and version (the
    journal's form), so that a resumed ``--versions`` run tells them apart."""
    return listed.ref.key if listed.is_latest else f"{listed.ref.key}?versionId={listed.ref.version_id}"


def engine_settings(
    rekey_method: str = "auto", old_version_action: str = "delete", multipart_threshold: int = 5 * GIB,
    noncurrent_action: str | None = None, decided_by: str | None = None,
) -> EngineSettings:
    # principal_id None: the backfill's own earlier copies are judged, never loop-guarded.
    return EngineSettings(
        rekey_method=rekey_method, old_version_action=old_version_action, multipart_threshold=multipart_threshold,
        noncurrent_action=noncurrent_action, decided_by=decided_by,
    )


def mapped_listing_prefixes(mappings, bucket: str, prefix: str | None) -> list[str]:
    prefixes = sources.listing_prefixes(mappings.for_bucket(bucket), prefix)
    if not prefixes:
        mapped = ", ".join(sorted(m.prefix for m in mappings.for_bucket(bucket))) or "none"
        raise sources.InputError(
            f"--prefix {prefix!r} is not under any mapped prefix of {bucket!r} (mapped: {mapped}); "
            "there is nothing to backfill there"
        )
    return prefixes


def run_backfill(
    s3,
    mappings,
    bucket: str,
    *,
    prefix: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    checkpoint: Checkpoint | None = None,
    settings: EngineSettings | None = None,
    progress: ProgressSink | None = None,
    stop: threading.Event | None = None,
    on_result=None,
    inspect: bool = False,
    versions: bool = False,
) -> BackfillReport:
    """Re-key every non-compliant current object under the mapped prefixes of ``bucket``
    (and, with ``versions``, every noncurrent version: see the module docstring).

    ``inspect``: HEAD every object first, even where UpdateObjectEncryption could be
    sent blind (see the module docstring for what each way costs).

    ``on_result(result_or_exception)`` is called on the calling thread after each object;
    raising ``KeyboardInterrupt`` from it (or Ctrl-C) stops the run like an interrupt:
    queued objects are dropped, running ones finish and are checkpointed.
    """
    if concurrency < 1:
        raise sources.InputError(f"--concurrency must be at least 1, got {concurrency}")
    prefixes = mapped_listing_prefixes(mappings, bucket, prefix)
    sink = progress or ProgressSink()
    report = BackfillReport(bucket, prefix, checkpoint.path if checkpoint else None)
    tally = _Tally(report, checkpoint, sink)
    engine = Enforcer(s3, mappings, settings or engine_settings())
    done = checkpoint.done if checkpoint else set()

    def todo():
        for listed in sources.list_objects(s3, bucket, prefixes, versions):
            if checkpoint_key(listed) in done:
                report.skipped += 1
                continue
            sink.listed()
            yield listed
        sink.listing_finished()

    process = engine.process if inspect else engine.process_uninspected

    def work(listed: sources.Listed) -> Result | BaseException:
        try:
            # Never the blind path for a noncurrent version: it must be judged as one.
            result = process(listed.ref) if listed.is_latest else engine.process(listed.ref, noncurrent=True)
        except Exception as exc:  # noqa: BLE001 - transient after retries: recorded, retried on resume
            tally.add(listed, None, exc)
            return exc
        tally.add(listed, result, None)
        return result

    started = time.monotonic()
    results = sources.bounded_map(work, todo(), concurrency, stop)
    try:
        for _, future in results:
            if on_result is not None:
                on_result(future.result())
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        results.close()  # drops queued objects, waits for (and so checkpoints) running ones
    report.elapsed = time.monotonic() - started
    if stop is not None and stop.is_set():
        report.interrupted = True
    return report
