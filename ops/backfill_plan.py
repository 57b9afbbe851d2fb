"""The backfill's dry run: what a run would do per prefix and method, and what it would
cost (``ops/pricing.py``); it only reads (LIST, HEAD, and the tags of noncurrent
versions that have some). With ``versions``, the noncurrent versions that wait for an
operator's choice are counted per prefix with what each ``--noncurrent`` choice would
do to them (``NoncurrentChoice``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from components.config import notification_prefixes
from enforcer.decision import Method, target_allows_update_in_place
from enforcer.engine import EngineSettings
from enforcer.rekey import BucketAclModes
from enforcer.versions import CHOICES
from ops import pricing
from ops.audit_report import AuditReport, Category
from ops.audit_run import run_audit
from ops.backfill_run import DEFAULT_CONCURRENCY, engine_settings, mapped_listing_prefixes
from ops.terminal import ProgressSink

NO_REKEY = "no re-key (HEAD only)"
NO_REKEY_REFUSED = "no re-key (UpdateObjectEncryption refused, then HEAD)"
SAME_KEY = "update-object-encryption (already compliant: same key again)"


@dataclass
class PlanRow:
    prefix: str
    method: str
    objects: int = 0
    bytes: int = 0
    requests: pricing.Requests = field(default_factory=pricing.Requests)


@dataclass
class NoncurrentChoice:
    """Noncurrent versions of one prefix that only a copy could re-key, and what each
    ``--noncurrent`` choice would do to them."""

    prefix: str
    versions: int = 0
    bytes: int = 0
    locked: int = 0  # cannot be deleted: delete leaves them, reported
    chosen: str | None = None  # the run's --noncurrent, None when not given

    def effects(self) -> list[tuple[str, str, bool]]:
        """(flag, what it does here, chosen) for each choice."""
        out = []
        for choice in CHOICES:
            n = self.versions - self.locked if choice.action == "delete" else self.versions
            effect = f"{n:,} version(s) {choice.effect}"
            if choice.action == "delete" and self.locked:
                effect += f" ({self.locked:,} locked: left, reported)"
            out.append((f"--noncurrent {choice.action}", effect, self.chosen == choice.action))
        out.append(("(neither)", f"{self.versions:,} version(s) reported as needing a choice; nothing deleted",
                    self.chosen is None))
        return out


@dataclass
class BackfillPlan:
    audit: AuditReport
    rows: list[PlanRow]
    requests: pricing.Requests
    cost: pricing.Cost
    prices: pricing.Prices
    jobs: int  # S3 Batch Operations jobs the same work would take (LambdaInvoke)
    batch_operations_fee: float
    noncurrent: list[NoncurrentChoice] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "plan": [
                {"prefix": r.prefix, "method": r.method, "objects": r.objects, "bytes": r.bytes,
                 "s3_requests": r.requests.s3_total(), "kms_requests_max": r.requests.kms}
                for r in self.rows
            ],
            "requests": self.requests.__dict__,
            "cost_usd": {"s3": self.cost.s3, "kms": self.cost.kms, "total": self.cost.total},
            "batch_operations_fee_usd": self.batch_operations_fee,
            "prices": self.prices.as_dict(),
            "offenders": [f.as_dict() for f in self.audit.offenders],
            "noncurrent_choices": [
                {"prefix": c.prefix, "versions": c.versions, "bytes": c.bytes, "locked": c.locked,
                 "chosen": c.chosen, "effects": {flag: effect for flag, effect, _ in c.effects()}}
                for c in self.noncurrent
            ],
        }


def plan_backfill(
    s3,
    mappings,
    bucket: str,
    *,
    prefix: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    settings: EngineSettings | None = None,
    prices: pricing.Prices | None = None,
    source: str = "",
    progress: ProgressSink | None = None,
    inspect: bool = False,
    versions: bool = False,
) -> BackfillPlan:
    """What a backfill (run with the same ``inspect``) would do and cost; only reads (LIST, HEAD)."""
    settings = settings or engine_settings()
    prices = prices or pricing.Prices()
    prefixes = mapped_listing_prefixes(mappings, bucket, prefix)
    audit = run_audit(
        s3, mappings, bucket, prefix=prefix, versions=versions, concurrency=concurrency, only_mapped=True,
        settings=settings, source=source, progress=progress,
    )
    copies_planned = any(f.method in (Method.COPY, Method.MULTIPART_COPY) for f in audit.offenders)
    reads_acl = copies_planned and BucketAclModes(s3).uses_acls(bucket)
    def update_first(summary) -> bool:
        return (not inspect and summary is not None and summary.target is not None and not summary.problem
                and target_allows_update_in_place(summary.target, settings.rekey_method))

    rows: dict[tuple[str, str], PlanRow] = {}
    rekeyed_objects: Counter = Counter()  # prefix -> objects
    rekeyed_bytes: Counter = Counter()  # prefix -> bytes
    choices: dict[str, NoncurrentChoice] = {}
    for f in audit.offenders:
        if f.category is Category.NEEDS_CHOICE:
            choice = choices.setdefault(f.prefix, NoncurrentChoice(f.prefix, chosen=settings.noncurrent_action))
            choice.versions += 1
            choice.bytes += f.size
            choice.locked += f.noncurrent_action == "locked"
            action = f.noncurrent_action if f.noncurrent_action in ("keep", "delete") else None
            row = rows.setdefault((f.prefix, f"noncurrent: {action or 'no choice'}"),
                                  PlanRow(f.prefix, f"noncurrent: {action or 'no choice'}"))
            row.objects += 1
            row.bytes += f.size
            # A HEAD each; keep reads the tags and writes them back, delete is one DELETE.
            row.requests += pricing.Requests(get_head=1 + (action == "keep"), put_copy_post=int(action == "keep"),
                                             delete=int(action == "delete"))
            rekeyed_objects[f.prefix] += 1
            rekeyed_bytes[f.prefix] += f.size
            continue
        if not f.method:
            continue
        row = rows.setdefault((f.prefix, f.method), PlanRow(f.prefix, f.method))
        row.objects += 1
        row.bytes += f.size
        row.requests += pricing.rekey_requests(
            Method(f.method), f.size, f.sse_type, multipart_threshold=settings.multipart_threshold,
            reads_acl=reads_acl, has_tags=f.tag_count > 0, deletes_old_version=f.old_version_action == "delete",
            # a noncurrent version is always inspected first (never the blind path)
            update_first=f.is_latest and update_first(audit.prefixes.get(f.prefix)),
        )
        rekeyed_objects[f.prefix] += 1
        rekeyed_bytes[f.prefix] += f.size
    for name, summary in audit.prefixes.items():
        fast = update_first(summary)
        # Blind, compliant objects are re-keyed to the same key; inspected, they are only read.
        compliant, compliant_bytes = (summary.counts[Category.COMPLIANT], summary.bytes[Category.COMPLIANT]) if fast \
            else (0, 0)
        groups = (
            (SAME_KEY, compliant, compliant_bytes, True),
            (NO_REKEY_REFUSED if fast else NO_REKEY,
             summary.objects - rekeyed_objects[name] - compliant,
             sum(summary.bytes.values()) - rekeyed_bytes[name] - compliant_bytes,
             False),
        )
        for method, objects, size, is_compliant in groups:
            if objects:
                row = rows.setdefault((name, method), PlanRow(name, method))
                row.objects += objects
                row.bytes += size
                row.requests += pricing.untouched_requests(objects, compliant=is_compliant, update_first=fast)
                if not is_compliant:
                    # SSE-C: after HEAD's bodiless 400, a one-byte GET confirms it
                    row.requests.get_head += summary.counts[Category.SSE_C]
    # One listing per folded prefix, 1,000 keys a page.
    total = pricing.Requests(list=len(prefixes) - 1 + pricing.list_requests(audit.objects))
    for row in rows.values():
        total += row.requests
    jobs = len(notification_prefixes(m.prefix for m in mappings.for_bucket(bucket)))
    fee = jobs * prices.batch_operations_per_job + audit.objects / 1e6 * prices.batch_operations_per_million_objects
    return BackfillPlan(
        audit, sorted(rows.values(), key=lambda r: (r.prefix, r.method)), total, pricing.cost_of(total, prices),
        prices, jobs, fee, [choices[p] for p in sorted(choices)],
    )
