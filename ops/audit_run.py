"""The audit run: list the objects in scope and judge each with ``Enforcer.assess``,
counting the answers into an ``AuditReport`` (one bucket) or an ``AuditSet`` (every
mapped bucket, ``--all``). Changes nothing."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from components.config import ConfigError, all_mapping_rows, load_stack_file, stack_file
from enforcer.decision import Outcome
from enforcer.engine import Enforcer, EngineSettings
from enforcer.mapping import Mapping, MappingSource
from ops import sources
from ops.audit_report import AuditReport, AuditSet, Category, Finding, categorize, fix_command
from ops.terminal import ProgressSink


def counted(items: Iterable[sources.Listed], sink: ProgressSink, limit: int | None, report: AuditReport):
    for n, item in enumerate(items):
        if limit is not None and n >= limit:
            report.truncated = True
            break
        sink.listed()
        yield item
    sink.listing_finished()


def mappings_in_scope(mappings: Iterable[Mapping], prefix: str | None) -> list[Mapping]:
    """The mappings that can apply to a key under ``prefix``: those inside it, and the
    longest one it is itself inside (the others are shadowed there by that one)."""
    mappings = list(mappings)
    if prefix is None:
        return mappings
    inside = [m for m in mappings if m.prefix.startswith(prefix)]
    around = [m for m in mappings if prefix.startswith(m.prefix) and m not in inside]
    if around:
        inside.append(max(around, key=lambda m: len(m.prefix)))
    return inside


def scope_problem(mappings: list[Mapping], bucket: str, prefix: str | None) -> str | None:
    """Why ``--prefix`` audits nothing mapped in ``bucket``, or None. A CI gate that
    judged 0 mapped objects would pass on nothing, so the command refuses instead."""
    if prefix is None or mappings_in_scope(mappings, prefix):
        return None
    mapped = ", ".join(sorted(m.prefix for m in mappings)) or "none"
    return (
        f"--prefix {prefix!r} matches no mapped prefix of bucket {bucket!r} (mapped: {mapped}); "
        "pass a mapped prefix, a prefix inside one, or one that contains one"
    )


def buckets_in_stack(stack: str) -> list[str]:
    """The buckets with mapping rows in ``Pulumi.<stack>.yaml``: the rows the program
    writes (``all_mapping_rows``), so ``--all`` audits what a deployment would map."""
    try:
        config = load_stack_file(stack_file(stack, sources.STACK_ROOT))
    except ConfigError as exc:
        raise sources.InputError(str(exc)) from None
    return sorted({row.bucket for row in all_mapping_rows(config)})


def buckets_in_table(dynamodb, table: str) -> list[str]:
    """Every bucket with a row in the deployed mapping table, by a Scan of its partition
    key alone. One Scan page reads at most 1 MB and says where to go on with
    LastEvaluatedKey; botocore's paginator follows it
    (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Scan.html)."""
    found: set[str] = set()
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ProjectionExpression="bucket_name"):
        found.update(item["bucket_name"]["S"] for item in page.get("Items", []))
    return sorted(found)


_NONCURRENT_ACTIONS = {Outcome.KEEP: "keep", Outcome.DELETE_VERSION: "delete", Outcome.LOCKED: "locked"}


def judge(engine: Enforcer, listed: sources.Listed, source: str = "") -> tuple[Finding, Mapping | None]:
    ref = listed.ref
    try:
        mapping, state, decision = engine.assess(ref, noncurrent=not listed.is_latest)
    except Exception as exc:  # noqa: BLE001 - throttled or unreachable after retries: report, go on
        mapping = engine.mappings.lookup(ref.bucket, ref.key)
        return (
            Finding(
                ref.bucket, ref.key, ref.version_id, listed.is_latest, mapping.prefix if mapping else None,
                Category.ERROR, listed.size, listed.storage_class, reason=f"{type(exc).__name__}: {exc}",
                fix="run the audit again: it was throttled or unreachable",
            ),
            mapping,
        )
    target = decision.target
    finding = Finding(
        bucket=ref.bucket,
        key=ref.key,
        version_id=(state.version_id if state else None) or ref.version_id,
        is_latest=listed.is_latest,
        prefix=mapping.prefix if mapping else None,
        category=categorize(state, decision),
        size=state.size if state and state.size else listed.size,
        storage_class=state.storage_class if state else listed.storage_class,
        sse_type=state.sse_type if state else None,
        kms_key_arn=state.kms_key_arn if state else None,
        target_sse_type=target.sse_type if target else None,
        target_kms_key_arn=target.kms_key_arn if target else None,
        method=str(decision.method) if decision.method else None,
        reason=decision.reason,
        tag_count=int((state.head.get("TagCount") if state else 0) or 0),
        old_version_action=decision.old_version_action,
        noncurrent_action=_NONCURRENT_ACTIONS.get(decision.outcome),
        decided=decision.kept.describe() if decision.kept else "",
    )
    if finding.offending:
        finding = replace(finding, fix=fix_command(finding, source))
    return finding, mapping


def run_audit(
    s3,
    mappings: MappingSource,
    bucket: str,
    *,
    prefix: str | None = None,
    versions: bool = False,
    concurrency: int = 32,
    max_objects: int | None = None,
    only_mapped: bool = False,
    settings: EngineSettings | None = None,
    source: str = "",
    progress: ProgressSink | None = None,
) -> AuditReport:
    """Judge every object under ``prefix`` (every version with ``versions``).

    ``only_mapped`` lists just the mapped prefixes (the backfill's dry run); otherwise
    the whole bucket (or ``prefix``) is listed so unmapped objects are counted too.
    """
    if concurrency < 1:
        raise sources.InputError(f"--concurrency must be at least 1, got {concurrency}")
    sink = progress or ProgressSink()
    report = AuditReport(bucket, prefix, versions, source)
    bucket_mappings = mappings.for_bucket(bucket)
    for mapping in mappings_in_scope(bucket_mappings, prefix):
        report.expect(mapping)
    engine = Enforcer(s3, mappings, settings or EngineSettings())
    if only_mapped:
        prefixes: list[str | None] = list(sources.listing_prefixes(bucket_mappings, prefix))
    else:
        prefixes = [prefix]
    listing = counted(sources.list_objects(s3, bucket, prefixes, versions), sink, max_objects, report)
    for _, future in sources.bounded_map(lambda item: judge(engine, item, source), listing, concurrency):
        finding, mapping = future.result()
        report.add(finding, mapping)
        sink.done()
    return report


def run_audits(s3, mappings: MappingSource, buckets: Iterable[str], *, prefix: str | None = None,
               versions: bool = False, source: str = "", **kwargs) -> AuditSet:
    """``run_audit`` over each bucket in turn (``--all``); with ``prefix``, only the buckets
    where it reaches a mapped prefix (the caller refuses when none does)."""
    reports = [
        run_audit(s3, mappings, bucket, prefix=prefix, versions=versions, source=source, **kwargs)
        for bucket in buckets
    ]
    return AuditSet(reports, prefix, versions, source)
