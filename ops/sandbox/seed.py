"""The seed scenario, the original sample README's *Testing* section end to end: uploads
to every demo prefix, the enforcer's work, and every expected result checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from components.config import DEMO
from enforcer import decision
from enforcer.engine import NO_ACTION
from ops.sandbox.emulator import SandboxError
from ops.sandbox.esm_runner import EsmStats
from ops.sandbox.provisioning import log_rows
from ops.sandbox.render import head_table, log_table

if TYPE_CHECKING:
    from ops.sandbox.lifecycle import Sandbox

SEED_BODY = b"hello from the seed scenario\n"
SEED_FILE = "a.txt"


@dataclass
class SeedObject:
    bucket: str
    key: str
    version_id: str | None = None
    before: tuple[str | None, str | None] = (None, None)
    after: tuple[str | None, str | None] = (None, None)
    expected: tuple[str, str | None] = ("AES256", None)
    delivered: bool = True  # a notification prefix covers the key
    versions: int | None = None  # versions of the key afterwards, in a versioned bucket

    @property
    def path(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass
class SeedReport:
    objects: list[SeedObject]
    rows: list[dict[str, Any]]
    stats: EsmStats
    dlq_messages: int
    checks: list[tuple[str, bool]]
    finished: bool

    @property
    def ok(self) -> bool:
        return self.finished and all(passed for _, passed in self.checks)


def _head(s3, bucket: str, key: str) -> tuple[str | None, str | None]:
    head = s3.head_object(Bucket=bucket, Key=key)
    return head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")


def _row_object(path: str) -> str:
    return path.split("?versionId=", 1)[0]


def seed_checks(
    objects: list[SeedObject], rows: list[dict[str, Any]], stats: EsmStats, dlq: int, old_version_action: str
) -> list[tuple[str, bool]]:
    """Every expectation of the scenario as (what, passed)."""
    checks: list[tuple[str, bool]] = []
    for obj in objects:
        checks.append((f"{obj.path} before: AES256 (S3's default), no key", obj.before == ("AES256", None)))
        want = f"{obj.expected[0]} {obj.expected[1] or 'null'}"
        checks.append((f"{obj.path} after: {want}", obj.after == obj.expected))
        own = [r for r in rows if _row_object(r["s3_object_path"]) == obj.path]
        if not obj.delivered:
            checks.append((f"{obj.path}: no event (not under a mapped prefix), no log row", own == []))
            continue
        expected_reason = (
            decision.reason_wrong_type(obj.before[0], obj.expected[0])
            if obj.before[0] != obj.expected[0]
            else decision.reason_wrong_key(obj.before[1], obj.expected[1] or "")
        )
        checks.append(
            (
                f"{obj.path}: one log row, re-keyed, reason '{expected_reason}'",
                len(own) == 1 and own[0]["action_reason"] == expected_reason and own[0]["action_taken"] != NO_ACTION
                and own[0].get("outcome") == "rekeyed",
            )
        )
        if obj.version_id:
            checks.append(
                (
                    f"{obj.path}: the log row names the uploaded version",
                    len(own) == 1 and own[0]["s3_object_path"].endswith(f"?versionId={obj.version_id}"),
                )
            )
            # In place keeps the one version; a copy adds one and, with "delete", removes the old.
            copied = len(own) == 1 and own[0].get("method") != "update-object-encryption"
            want = 2 if copied and old_version_action == "keep" else 1
            checks.append((f"{obj.path}: {want} version(s) left (oldVersionAction {old_version_action})",
                           obj.versions == want))
    delivered = sum(o.delivered for o in objects)
    copies = sum(1 for r in rows if r.get("method") in ("copy", "multipart-copy"))
    checks.append(
        (f"the function was handed exactly the {delivered} uploads' events", stats.records_invoked == delivered)
    )
    checks.append(
        (
            f"each of the enforcer's {copies} copy event(s) was dropped by the ESM filter, not invoked",
            stats.filtered_own_writes == copies,
        )
    )
    checks.append(("no failed records, nothing in the dead-letter queue", stats.failed == 0 and dlq == 0))
    return checks


def run_seed(sandbox: Sandbox, timeout: float = 30.0) -> SeedReport:
    """Upload to the mapped and unmapped prefixes of every demo bucket, let the enforcer
    work, and check every result; the tables are printed on ``sandbox.console``."""
    prov = sandbox.prov
    assert prov is not None and sandbox.esm is not None
    if not prov.demo_buckets:
        raise SandboxError(
            f"the seed scenario uses the demo buckets, but {sandbox.stack_path.name} has "
            "`s3-prefix-keys:demo` off; set it to true (the dev stack has it on)"
        )
    console = sandbox.console
    s3 = prov.client("s3")
    mappings = prov.mappings()
    # Let provisioning's s3:TestEvent messages pass through the filters first, so the
    # counts below are the scenario's own.
    sandbox.run_until_idle(timeout=timeout)
    sandbox.esm.stats = EsmStats()

    prefixes = [p for p, _, _ in DEMO.prefixes] + [DEMO.unmapped_prefix]
    objects = []
    for bucket in prov.demo_buckets:
        for prefix in prefixes:
            key = prefix + SEED_FILE
            answer = s3.put_object(Bucket=bucket, Key=key, Body=SEED_BODY)
            mapping = mappings.lookup(bucket, key)
            expected = (mapping.target.sse_type, mapping.target.kms_key_arn) if mapping else ("AES256", None)
            objects.append(
                SeedObject(
                    bucket, key, version_id=answer.get("VersionId"), expected=expected,
                    delivered=prov.notified(bucket, key),
                )
            )
    # Immediately after the uploads, before the enforcer has polled: the "before" table.
    for obj in objects:
        obj.before = _head(s3, obj.bucket, obj.key)
    console.print(head_table("head-object right after the uploads", objects, after=False))

    ddb = prov.client("dynamodb")
    expected_rows = sum(o.delivered for o in objects)

    def all_logged() -> bool:
        return len(log_rows(ddb, prov.names.log_table)) >= expected_rows

    if console.is_terminal:
        with console.status("the enforcer is working through the queue..."):
            finished = sandbox.run_until_idle(all_logged, timeout=timeout)
    else:
        finished = sandbox.run_until_idle(all_logged, timeout=timeout)

    for obj in objects:
        obj.after = _head(s3, obj.bucket, obj.key)
        if s3.get_object(Bucket=obj.bucket, Key=obj.key)["Body"].read() != SEED_BODY:
            obj.after = ("(body changed)", None)
        if obj.version_id:
            listed = s3.list_object_versions(Bucket=obj.bucket, Prefix=obj.key).get("Versions", [])
            obj.versions = sum(1 for v in listed if v["Key"] == obj.key)
    rows = log_rows(ddb, prov.names.log_table)
    dlq = int(
        prov.client("sqs").get_queue_attributes(
            QueueUrl=prov.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
    )
    stats = sandbox.esm.stats
    console.print(head_table("head-object a few seconds later", objects, after=True))
    console.print(log_table(rows))
    console.print(
        f"Event source mapping: {stats.received} messages received, {stats.invocations} invocation(s) "
        f"with {stats.records_invoked} record(s), {stats.filtered_own_writes} of the enforcer's own copy "
        f"events filtered out, {stats.failed} failed; dead-letter queue: {dlq}. (The original sample "
        "invoked the function again for each of its own copies and logged 'Already using the correct key'; "
        "UpdateObjectEncryption raises no event at all.)",
        highlight=False,
    )
    console.print(
        f"{DEMO.unmapped_prefix} is not mapped: notifications cover mapped prefixes only, so its uploads "
        "never reach the function (the original sample logged a 'No KMS key configured' row for them).",
        highlight=False,
    )
    checks = seed_checks(objects, rows, stats, dlq, prov.config.old_version_action)
    report = SeedReport(objects, rows, stats, dlq, checks, finished)
    if not finished:
        console.print(f"[red]timed out after {timeout:.0f}s waiting for the enforcer[/]")
    failed = [what for what, passed in report.checks if not passed]
    for what in failed:
        console.print(f"[red]FAIL[/] {what}", highlight=False)
    verdict = "[green]PASS[/]" if report.ok else "[red]FAIL[/]"
    console.print(
        f"{verdict} seed scenario: {len(report.checks) - len(failed)}/{len(report.checks)} checks passed",
        highlight=False,
    )
    return report
