"""The backfill's checkpoint file (append-only JSONL) and the outcomes a resumed run
counts as done."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from enforcer.decision import Outcome
from enforcer.engine import Result
from ops import sources

# Outcomes a resumed run does not touch again. Everything else (errors, grants to fix,
# objects superseded by a newer write) is retried, which is what a resume after fixing
# the cause should do.
DONE_OUTCOMES = frozenset(
    {Outcome.COMPLIANT, Outcome.REKEYED, Outcome.UNMAPPED, Outcome.GONE, Outcome.KEPT, Outcome.DELETED}
)
ERROR = "error"  # a transient failure that outlived the SDK's retries


class CheckpointMismatch(sources.InputError):
    pass


class Checkpoint:
    """Append-only JSONL: a header line, then one line per finished object.

    Each line is flushed as it is written, so a killed run loses at most the objects in
    flight; a torn last line (killed mid-write) is ignored on resume.
    """

    def __init__(self, path: str | Path, bucket: str, prefix: str | None):
        self.path = Path(path)
        self.done: set[str] = set()
        self.previous: Counter = Counter()  # outcome -> objects, from earlier runs
        self.torn_lines = 0
        self._lock = threading.Lock()
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        if not fresh:
            self._load(bucket)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        if not fresh and not self._ends_with_newline():
            # End the torn line, or the next entry would be glued onto it and lost too.
            self._file.write("\n")
        if fresh:
            self._write({"type": "backfill", "bucket": bucket, "prefix": prefix, "started": _now()})

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as f:
            f.seek(-1, 2)
            return f.read(1) == b"\n"

    def _load(self, bucket: str) -> None:
        with self.path.open(encoding="utf-8") as f:
            for number, line in enumerate(f):
                try:
                    entry = json.loads(line)
                except ValueError:
                    self.torn_lines += 1
                    continue
                if number == 0:
                    if entry.get("type") != "backfill":
                        raise CheckpointMismatch(f"{self.path} is not a backfill checkpoint file")
                    if entry.get("bucket") != bucket:
                        raise CheckpointMismatch(
                            f"{self.path} is the checkpoint of bucket {entry.get('bucket')!r}, not {bucket!r}; "
                            "pass that bucket, or another --resume file"
                        )
                    continue
                if entry.get("type") == "backfill":
                    continue
                outcome = entry.get("outcome")
                if outcome in DONE_OUTCOMES:
                    self.done.add(entry["key"])
                    self.previous[outcome] += 1

    def _write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def record(self, key: str, result: Result | None, error: BaseException | None = None,
               size: int | None = None) -> None:
        if result is None:
            self._write({"key": key, "outcome": ERROR, "reason": f"{type(error).__name__}: {error}", "at": _now()})
            return
        entry: dict[str, Any] = {"key": key, "outcome": str(result.outcome), "at": _now()}
        if result.method:
            entry["method"] = method_label(result)
        if size is not None:
            entry["bytes"] = size
        if result.before is not None and result.before.version_id:
            entry["version_id"] = result.before.version_id
        if result.new_version_id:
            entry["new_version_id"] = result.new_version_id
        if result.old_version:
            entry["old_version"] = result.old_version
        if result.outcome not in DONE_OUTCOMES:
            entry["reason"] = result.reason
        self._write(entry)

    def close(self) -> None:
        with self._lock:
            self._file.close()


UNINSPECTED = " (not inspected)"


def method_label(result: Result) -> str:
    """The method as reported; an uninspected re-key may have found the object compliant."""
    if not result.method:
        return ""
    if result.outcome is Outcome.REKEYED and result.before is None:
        return str(result.method) + UNINSPECTED
    return str(result.method)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def default_checkpoint_path(bucket: str) -> Path:
    return Path(f"backfill-{bucket}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.checkpoint.jsonl")
