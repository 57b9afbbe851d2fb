"""The backfill's dry run: what a run would do per prefix and method, and what it would
cost (``ops/pricing.py``); it only reads (LIST, HEAD)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from components.config import notification_prefixes
from enforcer.decision import Method, target_allows_update_in_place
from enforcer.engine import EngineSettings
from enforcer.rekey import BucketAclModes
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
class BackfillPlan:
    audit: AuditReport
    rows: list[PlanRow]
    requests: pricing.Requests
    cost: pricing.Cost
    prices: pricing.Prices
    jobs: int  # S3 Batch Operations jobs the same work would take (LambdaInvoke)
    batch_operations_fee: float

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
) -> BackfillPlan:
    """What a backfill (run with the same ``inspect``) would do and cost; only reads (LIST, HEAD)."""
    settings = settings or engine_settings()
    prices = prices or pricing.Prices()
    prefixes = mapped_listing_prefixes(mappings, bucket, prefix)
    audit = run_audit(
        s3, mappings, bucket, prefix=prefix, concurrency=concurrency, only_mapped=True, settings=settings,
        source=source, progress=progress,
    )
    copies_planned = any(f.method in (Method.COPY, Method.MULTIPART_COPY) for f in audit.offenders)
    reads_acl = copies_planned and BucketAclModes(s3).uses_acls(bucket)
    def update_first(summary) -> bool:
        return (not inspect and summary is not None and summary.target is not None and not summary.problem
                and target_allows_update_in_place(summary.target, settings.rekey_method))

    rows: dict[tuple[str, str], PlanRow] = {}
    rekeyed_objects: Counter = Counter()  # prefix -> objects
    rekeyed_bytes: Counter = Counter()  # prefix -> bytes
    for f in audit.offenders:
        if not f.method:
            continue
        row = rows.setdefault((f.prefix, f.method), PlanRow(f.prefix, f.method))
        row.objects += 1
        row.bytes += f.size
        row.requests += pricing.rekey_requests(
            Method(f.method), f.size, f.sse_type, multipart_threshold=settings.multipart_threshold,
            reads_acl=reads_acl, has_tags=f.tag_count > 0, deletes_old_version=f.old_version_action == "delete",
            update_first=update_first(audit.prefixes.get(f.prefix)),
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
        prices, jobs, fee,
    )
