"""Lambda entry point: SQS batches in, partial batch failures out (and S3 Batch
Operations tasks in, per-task results out).

Thin on purpose: the engine does the work. Clients, settings and pools are created
once per container (at cold start, where a missing variable fails loudly); each
invocation gets a fresh journal buffer and alert buffer.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.utilities.batch import (
    AsyncBatchProcessor,
    EventType,
    async_process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from enforcer import batch_operations, metric_names
from enforcer.alerts import Alerts
from enforcer.clients import aws_config
from enforcer.decision import Outcome
from enforcer.engine import Enforcer, EngineSettings, Result
from enforcer.events import MalformedMessage, parse_message
from enforcer.journal import Journal
from enforcer.mapping import DynamoMappings
from enforcer.settings import Settings

logger = Logger(service="s3-prefix-keys-enforcer")
metrics = Metrics(namespace=metric_names.NAMESPACE, service=metric_names.SERVICE)
copy_config_to_registered_loggers(source_logger=logger, include={"enforcer"})

settings = Settings.from_env(os.environ)
_config = aws_config("standard", pool=settings.concurrency * 2 + 8)
# A session of its own: the process-wide default session keeps whatever credentials
# it saw first, which is wrong for anything that hosts the handler besides Lambda.
_session = boto3.session.Session()
s3 = _session.client("s3", config=_config)
dynamodb = _session.client("dynamodb", config=_config)
sns = _session.client("sns", config=_config)
# The principal S3 puts on events caused by this function's own writes. The program
# sets it; without it, ask STS once per container rather than guess.
principal_id = settings.principal_id or "AWS:" + _session.client("sts", config=_config).get_caller_identity()["UserId"]

engine = Enforcer(
    s3,
    DynamoMappings(dynamodb, settings.mapping_table, settings.mapping_cache_seconds),
    EngineSettings(
        principal_id=principal_id,
        rekey_method=settings.rekey_method,
        multipart_threshold=settings.multipart_threshold,
        old_version_action=settings.old_version_action,
    ),
)
_workers = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="record")
# False: a batch whose every record failed must still answer with the failures, so
# that each message is retried on its own and then dead-lettered, not the batch.
# logger: a record's exception is logged through the function's own Logger, at a level
# its POWERTOOLS_LOG_LEVEL shows, not on Powertools' internal debug logger.
processor = AsyncBatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False, logger=logger)


@dataclass
class Invocation:
    journal: Journal
    alerts: Alerts
    results: list[Result] = field(default_factory=list)
    malformed: int = 0


_current: Invocation | None = None


def _record(owner: str, result: Result) -> None:
    """Journal, log and (when it needs a human) alert one result of this invocation."""
    inv = _current
    row = inv.journal.add(owner, result)
    inv.results.append(result)
    logger.info("object processed", extra={"owner": owner, **row})
    if result.alert:
        inv.alerts.add(str(result.outcome), result.ref.bucket, result.ref.key, result.reason)


def handle_record(record: SQSRecord) -> int:
    """One SQS message: every object it names, processed and journaled."""
    inv = _current
    try:
        refs = parse_message(record.body)
    except MalformedMessage as exc:
        inv.malformed += 1
        inv.alerts.add("malformed message", "(queue)", f"message {record.message_id}", str(exc))
        logger.error("malformed message", extra={"message_id": record.message_id, "problem": str(exc)})
        raise  # a batch item failure: redelivered, then dead-lettered, never dropped
    for ref in refs:
        _record(record.message_id, engine.process(ref))
    return len(refs)


async def record_handler(record: SQSRecord) -> int:
    # boto3 is synchronous: run each record on the bounded worker pool so a batch of
    # ten costs about one object's latency, not ten.
    return await asyncio.get_running_loop().run_in_executor(_workers, handle_record, record)


def _emit_metrics(inv: Invocation) -> None:
    if is_metrics_disabled():
        # Powertools (3.37) clears the metric set only when it prints it: disabled, every
        # invocation would add to it for the life of the container (or sandbox).
        return
    counts = Counter(metric_names.outcome_metric(r.outcome) for r in inv.results)
    counts.update(metric_names.method_metric(r.method) for r in inv.results if r.outcome is Outcome.REKEYED)
    if inv.malformed:
        counts[metric_names.MALFORMED] = inv.malformed
    for name, value in sorted(counts.items()):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    # One value per re-keyed object, not an average: EMF takes a list of values per
    # metric, and CloudWatch's percentiles (p50, p99) need every sample.
    for r in inv.results:
        if r.exposure_seconds is not None:
            metrics.add_metric(name=metric_names.EXPOSURE, unit=MetricUnit.Seconds, value=r.exposure_seconds)


def _flush_metrics() -> None:
    """Print this invocation's metrics, if it has any.

    Not ``log_metrics``: Powertools 3.37's ``flush_metrics`` warns "No application
    metrics to publish" on an empty set before it looks at POWERTOOLS_METRICS_DISABLED,
    so the sandbox (metrics disabled, hence none added) and an invocation with nothing
    to count would warn every time. An empty set has nothing to print: skip it.
    """
    if metrics.metric_set:
        metrics.flush_metrics()


def _finish(inv: Invocation) -> set[str]:
    """Write the journal, send the alerts, count outcomes; owners whose rows were lost."""
    unjournaled = inv.journal.flush()
    inv.alerts.flush()
    _emit_metrics(inv)
    return unjournaled


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        return _handle(event, context)
    finally:
        _flush_metrics()  # what log_metrics did, failed invocations included


def _handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _current
    _current = Invocation(
        journal=Journal(dynamodb, settings.log_table, settings.log_retention_days, mappings=engine.mappings),
        alerts=Alerts(sns, settings.alert_topic_arn),
    )
    if batch_operations.is_batch_operations_event(event):
        answer = batch_operations.handle(event, engine.process, _record, _workers)
        return batch_operations.fail_unjournaled(answer, _finish(_current))
    response = async_process_partial_response(event, record_handler, processor, context)
    unjournaled = _finish(_current)
    failed = [f["itemIdentifier"] for f in response.get("batchItemFailures", [])]
    # Each failed messageId once, in batch order: a message whose log row could not be
    # written is retried too, so its record is not lost.
    order = [r["messageId"] for r in event.get("Records", [])]
    failed_set = set(failed) | unjournaled
    return {"batchItemFailures": [{"itemIdentifier": m} for m in order if m in failed_set]}
