"""Stack-file changes reach a running sandbox: ``ops mappings add|remove`` (or an editor)
rewrites ``Pulumi.<stack>.yaml``, and the sandbox applies the new mapping rows, buckets
and notifications live, as ``pulumi up`` would in AWS, and prints what changed.

:func:`apply_changes` is the diff-and-apply step (pure over the provisioned state and the
new config, plus the emulator calls); :func:`watch_stack_file` polls the file's mtime
once a second from a thread of its own, for as long as the sandbox runs.

Only the mappings are live. Settings the enforcer reads at its cold start (``lambda``,
``oldVersionAction``, ...), the region and the demo switch need a restart; the change
says which. A bucket that leaves the stack loses its notifications, not its objects.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from ruamel.yaml.error import YAMLError

from components.config import (
    BucketConfig,
    ConfigError,
    MappingRow,
    StackConfig,
    all_mapping_rows,
    load_stack_file,
    mapping_rows,
)
from ops.sandbox.enforcer_function import SANDBOX_MAPPING_CACHE_SECONDS
from ops.sandbox.provisioning import (
    Provisioned,
    create_bucket,
    put_default_encryption,
    put_notifications,
    remove_notifications,
    unenforced_notes,
)

POLL_SECONDS = 1.0
# The fields of StackConfig that are the mappings; every other change needs a restart.
_LIVE_FIELDS = {"buckets"}


def _describe(row: MappingRow) -> str:
    kind = "DSSE-KMS" if row.dual_layer else "SSE-KMS"
    return f"s3://{row.bucket}/{row.prefix} -> {row.kms_key_arn} ({kind}, bucket key {'on' if row.bucket_key else 'off'})"


def _rows(prov: Provisioned, config: StackConfig) -> dict[tuple[str, str], MappingRow]:
    rows = [row for bucket in prov.demo_buckets for row in mapping_rows(bucket, prov.buckets[bucket])]
    rows += all_mapping_rows(config)
    return {(row.bucket, row.prefix): row for row in rows}


def restart_fields(running: StackConfig, new: StackConfig) -> list[str]:
    """The stack settings (by their config names) that differ and cannot be applied live."""
    old_doc = running.model_dump(by_alias=True, exclude=_LIVE_FIELDS)
    new_doc = new.model_dump(by_alias=True, exclude=_LIVE_FIELDS)
    return sorted(name for name in old_doc.keys() | new_doc.keys() if old_doc.get(name) != new_doc.get(name))


def _apply_rows(prov: Provisioned, new_rows: dict[tuple[str, str], MappingRow]) -> tuple[list[str], set[str]]:
    """Put and delete mapping-table rows; the changes, and the buckets whose rows changed."""
    ddb, table = prov.client("dynamodb"), prov.names.mapping_table
    old_rows = {(row.bucket, row.prefix): row for row in prov.rows}
    changes: list[str] = []
    for ident in sorted(new_rows.keys() | old_rows.keys()):
        new, old = new_rows.get(ident), old_rows.get(ident)
        if new is None:
            ddb.delete_item(TableName=table, Key={"bucket_name": {"S": ident[0]}, "prefix": {"S": ident[1]}})
            changes.append(f"unmapped s3://{ident[0]}/{ident[1]}")
        elif old is None or new.item() != old.item():
            ddb.put_item(TableName=table, Item=new.item())
            changes.append(f"{'mapped' if old is None else 'remapped'} {_describe(new)}")
    touched = {bucket for bucket, _ in new_rows.keys() ^ old_rows.keys()}
    touched |= {ident[0] for ident in new_rows.keys() & old_rows.keys() if new_rows[ident].item() != old_rows[ident].item()}
    return changes, touched


def _apply_notifications(prov: Provisioned, buckets: dict[str, BucketConfig], created: set[str]) -> list[str]:
    s3, events = prov.client("s3"), prov.client("events")
    changes: list[str] = []
    for bucket in sorted(buckets):
        new, old = buckets[bucket], prov.buckets.get(bucket)
        if old is not None and old.notification != new.notification:
            remove_notifications(s3, events, prov.names, bucket, old.notification)
        if old is None or (old.prefixes.keys(), old.notification) != (new.prefixes.keys(), new.notification):
            put_notifications(s3, events, prov.names, prov.queue_arn, bucket, new)
            what = "created bucket" if bucket in created else "notifications of"
            changes.append(f"{what} {bucket}: notifications cover {', '.join(sorted(new.prefixes))} "
                           f"({new.notification})")
        if old is not None and old.default_kms_key_arn != new.default_kms_key_arn:
            if new.default_kms_key_arn:
                put_default_encryption(s3, bucket, new)
            else:
                s3.delete_bucket_encryption(Bucket=bucket)
            changes.append(f"default encryption of {bucket}: {new.default_kms_key_arn or 'SSE-S3'}")
    for bucket in sorted(prov.buckets.keys() - buckets.keys()):
        remove_notifications(s3, events, prov.names, bucket, prov.buckets[bucket].notification)
        changes.append(f"{bucket} left the stack: its notifications are removed (the bucket and its objects stay)")
    return changes


def apply_changes(prov: Provisioned, config: StackConfig) -> list[str]:
    """Bring the emulator from ``prov`` (updated in place) to ``config``'s mappings; one line per change."""
    clash = sorted(set(config.buckets) & set(prov.demo_buckets))
    if clash:  # as provision() refuses it: the demo's rows would be replaced
        raise ValueError(f"s3-prefix-keys:buckets.{clash[0]} collides with the sandbox's demo bucket of that name; "
                         "rename the configured bucket")
    buckets = {bucket: prov.buckets[bucket] for bucket in prov.demo_buckets} | dict(config.buckets)
    created = buckets.keys() - prov.buckets.keys()
    s3 = prov.client("s3")
    for bucket in sorted(created):  # first: rows and routes of a bucket that could not be made are never written
        create_bucket(s3, bucket, buckets[bucket], prov.region)

    changes, touched = _apply_rows(prov, _rows(prov, config))
    changes += _apply_notifications(prov, buckets, set(created))
    changes += [f"note: {note}" for bucket in sorted(created) for note in unenforced_notes(bucket, buckets[bucket])]
    if touched & prov.buckets.keys():
        # enforcer/mapping.py DynamoMappings: each execution environment caches a bucket's
        # rows for MAPPING_CACHE_SECONDS, 1 s in the sandbox (enforcer_function.py).
        changes.append(f"note: the enforcer picks up the changed rows within {SANDBOX_MAPPING_CACHE_SECONDS} s; "
                       "objects already uploaded under a new prefix need `python -m ops backfill`")
    restart = restart_fields(prov.config, config)
    if restart:
        changes.append(f"restart the sandbox to apply the other changes ({', '.join(restart)}): "
                       "only mappings, buckets and notifications are applied live")
    prov.rows = list(_rows(prov, config).values())
    prov.buckets = buckets
    prov.config = prov.config.model_copy(update={"buckets": config.buckets})
    return changes


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size


class StackFileWatcher:
    """Polls the stack file; a change is applied once it parses (a half-written file is
    retried on the next tick, and reported only when it stays that way)."""

    def __init__(self, path: Path, prov: Provisioned, console: Console, poll_seconds: float = POLL_SECONDS):
        self.path, self.prov, self.console, self.poll_seconds = path, prov, console, poll_seconds
        self._applied = _stamp(path)
        self._failed: tuple[int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stack-file-watcher", daemon=True)

    def start(self) -> StackFileWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the watcher must not take the sandbox down
                self.console.print(f"[red]stack file change not applied:[/] {exc}", highlight=False, soft_wrap=True)

    def check(self) -> list[str] | None:
        """One tick: the changes applied, or None when there was nothing (yet) to apply."""
        stamp = _stamp(self.path)
        if stamp is None or stamp == self._applied:
            return None
        try:
            config = load_stack_file(self.path)
        except (ConfigError, YAMLError) as exc:  # load_stack_file lets a YAML syntax error through
            if stamp != self._failed:  # maybe half-written: look again on the next tick
                self._failed = stamp
                return None
            self._applied = stamp
            self.console.print(f"[red]{self.path.name} changed but is not valid, so the sandbox keeps its "
                               f"mappings:[/] {exc}", highlight=False, soft_wrap=True)
            return None
        self._applied, self._failed = stamp, None
        changes = apply_changes(self.prov, config)
        self.console.print(f"[bold]{self.path.name} changed:[/] "
                           f"{'applied to the running sandbox' if changes else 'no mapping changes'}",
                           highlight=False)
        for change in changes:
            self.console.print(f"  {change}", highlight=False, soft_wrap=True)
        return changes


@contextmanager
def watch_stack_file(path: Path, prov: Provisioned, console: Console) -> Iterator[StackFileWatcher]:
    """Watch ``path`` while the block runs (the sandbox's lifetime)."""
    watcher = StackFileWatcher(path, prov, console).start()
    try:
        yield watcher
    finally:
        watcher.stop()
