"""The backfill's checkpoint file (append-only JSONL), where it and the run's report go
by default, and the outcomes a resumed run counts as done."""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass
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
        if self.path.is_dir():
            raise CheckpointMismatch(
                f"{self.path} is a directory; pass a checkpoint file, e.g. {self.path / 'run.checkpoint.jsonl'} "
                "for a new one, or leave out --resume"
            )
        # A new run: no file, or an empty one (created, killed before the header).
        self.fresh = not self.path.exists() or self.path.stat().st_size == 0
        if not self.fresh:
            try:
                self._load(bucket)
            except OSError as exc:
                raise sources.InputError(
                    f"cannot read the checkpoint {self.path}: {exc.strerror or exc}; pass a readable --resume FILE"
                ) from None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise sources.InputError(
                f"cannot write the checkpoint {self.path}: {exc.strerror or exc}; pass a writable --resume FILE"
            ) from None
        if not self.fresh and not self._ends_with_newline():
            # End the torn line, or the next entry would be glued onto it and lost too.
            self._file.write("\n")
        if self.fresh:
            self._write({"type": "backfill", "bucket": bucket, "prefix": prefix, "started": _now()})

    def _ends_with_newline(self) -> bool:
        with self.path.open("rb") as f:
            f.seek(-1, 2)
            return f.read(1) == b"\n"

    def _load(self, bucket: str) -> None:
        not_ours = CheckpointMismatch(
            f"{self.path} is not a backfill checkpoint file (its first line is not a backfill header); "
            "pass the file a backfill printed, or leave out --resume to start a new one"
        )
        # Binary lines: a torn last line may end inside a multi-byte UTF-8 character,
        # and a file that is not a checkpoint at all (binary) must not raise mid-decode.
        with self.path.open("rb") as f:
            for number, raw in enumerate(f):
                try:
                    entry = json.loads(raw.decode("utf-8"))
                except ValueError:  # UnicodeDecodeError is a ValueError too
                    if number == 0:
                        raise not_ours from None
                    self.torn_lines += 1
                    continue
                if number == 0:
                    if not isinstance(entry, dict) or entry.get("type") != "backfill":
                        raise not_ours
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


STATE_SUBDIR = Path("s3-prefix-keys") / "backfill"


def state_dir() -> Path:
    """Where a backfill keeps its checkpoints and reports unless told otherwise:
    ``$XDG_STATE_HOME/s3-prefix-keys/backfill``, else ``~/.local/state/s3-prefix-keys/backfill``.

    The XDG Base Directory Specification 0.8: state "that should persist between
    (application) restarts", default ``$HOME/.local/state`` when the variable "is either
    not set or empty", and a relative path in it is to be ignored
    (https://specifications.freedesktop.org/basedir-spec/0.8/ar01s03.html and ar01s02.html).
    """
    base = os.environ.get("XDG_STATE_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / STATE_SUBDIR


@dataclass(frozen=True)
class RunFiles:
    """A run's checkpoint and report paths; the defaults share one bucket-and-time stem."""

    checkpoint: Path
    report: Path


def run_files(bucket: str, resume: Path | None, output: Path | None, dry_run: bool = False) -> RunFiles:
    stem = state_dir() / f"{bucket}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    report = output or stem.with_name(stem.name + (".plan.json" if dry_run else ".report.json"))
    return RunFiles(resume or stem.with_name(stem.name + ".checkpoint.jsonl"), report)
