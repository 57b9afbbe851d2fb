"""What ``ops audit`` finds: the categories of an object, the findings, the per-prefix
summaries and the report of one bucket (``AuditReport``) or of every mapped bucket
(``AuditSet``, ``--all``), with their JSON and CSV forms, and for each offender the
command that fixes it (``fix_command``)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from enforcer.decision import SSE_S3, Decision, ObjectState, Outcome
from enforcer.mapping import Mapping, Target


class Category(StrEnum):
    COMPLIANT = "compliant"
    WRONG_TYPE = "wrong-type"  # SSE-KMS where DSSE-KMS is mapped, or the reverse
    WRONG_KEY = "wrong-key"  # the mapped type under another key
    UNENCRYPTED_OR_SSE_S3 = "unencrypted-or-sse-s3"
    SSE_C = "sse-c"
    ACCESS_DENIED = "access-denied"
    NEEDS_RESTORE = "needs-restore"
    INVALID_MAPPING = "invalid-mapping"
    GONE = "gone"  # deleted between the listing and the HEAD
    ERROR = "error"  # throttled or unreachable after the SDK's retries: not judged
    UNMAPPED = "unmapped"
    # noncurrent versions only a copy could re-key, which would make them current
    NEEDS_CHOICE = "needs-choice"  # no decision yet: ops backfill --versions --noncurrent keep|delete
    KEPT = "kept-by-decision"  # a keep recorded on the version (enforcer/versions.py)


# Mapped objects in these categories are fine (or no longer exist); every other mapped
# category is an offender and fails the CI gate.
NOT_OFFENDING = frozenset({Category.COMPLIANT, Category.GONE, Category.UNMAPPED, Category.KEPT})
MISMATCH_CATEGORIES = (Category.WRONG_TYPE, Category.WRONG_KEY, Category.UNENCRYPTED_OR_SSE_S3)
TABLE_COLUMNS = (Category.COMPLIANT, *MISMATCH_CATEGORIES)


def mismatch_category(state: ObjectState, target: Target) -> Category:
    """Which way a non-compliant object is wrong (``decide()`` already said that it is)."""
    if state.sse_type in (None, SSE_S3):
        return Category.UNENCRYPTED_OR_SSE_S3
    if state.sse_type != target.sse_type:
        return Category.WRONG_TYPE
    return Category.WRONG_KEY


def categorize(state: ObjectState | None, decision: Decision) -> Category:
    if decision.outcome is Outcome.REKEY:
        return mismatch_category(state, decision.target)
    return {
        Outcome.COMPLIANT: Category.COMPLIANT,
        Outcome.UNMAPPED: Category.UNMAPPED,
        Outcome.GONE: Category.GONE,
        Outcome.SSE_C: Category.SSE_C,
        Outcome.ACCESS_DENIED: Category.ACCESS_DENIED,
        Outcome.NEEDS_RESTORE: Category.NEEDS_RESTORE,
        Outcome.INVALID_MAPPING: Category.INVALID_MAPPING,
        Outcome.KEPT: Category.KEPT,
        # With a --noncurrent choice (the backfill's dry run) the version still waits for it.
        Outcome.NEEDS_CHOICE: Category.NEEDS_CHOICE,
        Outcome.KEEP: Category.NEEDS_CHOICE,
        Outcome.DELETE_VERSION: Category.NEEDS_CHOICE,
        Outcome.LOCKED: Category.NEEDS_CHOICE,
    }.get(decision.outcome, Category.ERROR)


def fix_command(f: Finding, source: str) -> str:
    """What an operator runs (or does) to fix one offender; ``source`` is the report's
    ``mappings_from`` label, turned back into the option that gave it."""
    if source.startswith("mapping table "):
        flags = f"--mapping-table {source.removeprefix('mapping table ')}"
    else:
        flags = f"--stack {source.removeprefix('stack ') or 'dev'}"
    backfill = f"python -m ops backfill --bucket {f.bucket} --prefix {f.prefix} {flags}"
    if f.category is Category.NEEDS_CHOICE:
        return f"{backfill} --versions --noncurrent keep|delete (see both with --dry-run)"
    if f.category in MISMATCH_CATEGORIES:
        return backfill if f.is_latest else f"{backfill} --versions"
    if f.category is Category.NEEDS_RESTORE:
        return f"aws s3api restore-object --bucket {f.bucket} --key {f.key} ..., then {backfill}"
    if f.category is Category.SSE_C:
        return "re-upload it with the mapped key (S3 cannot re-key SSE-C without the customer's key)"
    if f.category is Category.ACCESS_DENIED:
        return f"grant s3:GetObject here and kms:Decrypt on its key (sourceKeyArns), then {backfill}"
    if f.category is Category.INVALID_MAPPING:
        return f"fix the mapping of {f.prefix} (python -m ops mappings add), then {backfill}"
    return "run the audit again: it was throttled or unreachable"


@dataclass(frozen=True)
class Finding:
    """One object (version) as judged: the row of the offenders list."""

    bucket: str
    key: str
    version_id: str | None
    is_latest: bool
    prefix: str | None  # the mapped prefix that applies, None when unmapped
    category: Category
    size: int
    storage_class: str
    sse_type: str | None = None
    kms_key_arn: str | None = None
    target_sse_type: str | None = None
    target_kms_key_arn: str | None = None
    method: str | None = None  # how the backfill would re-key it
    reason: str = ""
    # for the dry-run cost model
    tag_count: int = 0
    old_version_action: str | None = None
    noncurrent_action: str | None = None  # dry run with --noncurrent: keep | delete | locked
    fix: str = ""  # the command that fixes an offender
    decided: str = ""  # kept by decision: who, when, why

    @property
    def offending(self) -> bool:
        return self.prefix is not None and self.category not in NOT_OFFENDING

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["category"] = str(self.category)
        return out


CSV_FIELDS = (
    "bucket", "key", "version_id", "is_latest", "prefix", "category", "size", "storage_class", "sse_type",
    "kms_key_arn", "target_sse_type", "target_kms_key_arn", "method", "reason", "fix", "decided",
)


@dataclass
class PrefixSummary:
    prefix: str
    target: Target | None
    problem: str | None = None
    counts: Counter = field(default_factory=Counter)  # Category -> objects
    bytes: Counter = field(default_factory=Counter)  # Category -> bytes

    @property
    def objects(self) -> int:
        return sum(self.counts.values())

    @property
    def offending(self) -> int:
        return sum(n for c, n in self.counts.items() if c not in NOT_OFFENDING)

    @property
    def compliance(self) -> float | None:
        return compliance(self.objects, self.offending)

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "target": asdict(self.target) if self.target else None,
            "problem": self.problem,
            "objects": self.objects,
            "non_compliant": self.offending,
            "counts": {str(c): self.counts.get(c, 0) for c in Category if c is not Category.UNMAPPED},
            "bytes": {str(c): n for c, n in sorted(self.bytes.items())},
        }


@dataclass
class AuditReport:
    bucket: str
    prefix: str | None
    versions: bool
    source: str
    prefixes: dict[str, PrefixSummary] = field(default_factory=dict)
    unmapped: int = 0
    unmapped_bytes: int = 0
    offenders: list[Finding] = field(default_factory=list)  # every one, in completion order
    kept: list[Finding] = field(default_factory=list)  # versions kept by a recorded decision
    objects: int = 0
    truncated: bool = False  # stopped at --max-objects

    @property
    def non_compliant(self) -> int:
        return len(self.offenders)

    @property
    def exit_code(self) -> int:
        return 1 if self.non_compliant else 0

    def expect(self, mapping: Mapping) -> None:
        """A row for ``mapping`` even if no object is found under it: an empty mapped prefix
        shows 0 objects rather than vanishing from the report."""
        self.prefixes.setdefault(mapping.prefix, PrefixSummary(mapping.prefix, mapping.target, mapping.problem))

    def add(self, finding: Finding, mapping: Mapping | None) -> None:
        self.objects += 1
        if finding.prefix is None:
            self.unmapped += 1
            self.unmapped_bytes += finding.size
            return
        summary = self.prefixes.get(finding.prefix)
        if summary is None:
            summary = self.prefixes[finding.prefix] = PrefixSummary(
                finding.prefix, mapping.target if mapping else None, mapping.problem if mapping else None
            )
        summary.counts[finding.category] += 1
        summary.bytes[finding.category] += finding.size
        if finding.offending:
            self.offenders.append(finding)
        elif finding.category is Category.KEPT:
            self.kept.append(finding)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "versions": self.versions,
            "mappings_from": self.source,
            "objects": self.objects,
            "truncated": self.truncated,
            "non_compliant": self.non_compliant,
            "unmapped": {"objects": self.unmapped, "bytes": self.unmapped_bytes},
            "prefixes": [self.prefixes[p].as_dict() for p in sorted(self.prefixes)],
            "offenders": [f.as_dict() for f in sorted(self.offenders, key=finding_order)],
            "kept_by_decision": [f.as_dict() for f in sorted(self.kept, key=finding_order)],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False, default=str)

    def to_csv(self) -> str:
        return offenders_csv(sorted(self.offenders, key=finding_order))


def offenders_csv(findings: Iterable[Finding]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for finding in findings:
        writer.writerow({k: ("" if v is None else v) for k, v in finding.as_dict().items()})
    return out.getvalue()


def finding_order(f: Finding) -> tuple[str, str]:
    return f.key, f.version_id or ""


def compliance(judged: int, offending: int) -> float | None:
    """The share of judged mapped objects that are not offenders (compliant, kept by
    decision, or gone since the listing); None when nothing was judged, which is no
    evidence either way and must not read as 100 %."""
    return None if judged == 0 else (judged - offending) / judged


@dataclass
class AuditSet:
    """``ops audit --all``: one ``AuditReport`` per mapped bucket, in bucket order.

    Its JSON is a new shape, ``{"buckets": [<the single-bucket report>, ...]}`` with the
    totals beside it, so the single-bucket JSON stays as its users know it.
    """

    reports: list[AuditReport]
    prefix: str | None
    versions: bool
    source: str

    @property
    def objects(self) -> int:
        return sum(r.objects for r in self.reports)

    @property
    def non_compliant(self) -> int:
        return sum(r.non_compliant for r in self.reports)

    @property
    def exit_code(self) -> int:
        return 1 if self.non_compliant else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "versions": self.versions,
            "mappings_from": self.source,
            "objects": self.objects,
            "non_compliant": self.non_compliant,
            "buckets": [r.as_dict() for r in self.reports],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False, default=str)

    def to_csv(self) -> str:
        """One header, then every bucket's offenders (each row names its bucket)."""
        return offenders_csv(f for r in self.reports for f in sorted(r.offenders, key=finding_order))
