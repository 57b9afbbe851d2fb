"""S3 Batch Operations (LambdaInvoke, invocation schema 2.0): one answer per task.

Backfills too large for one machine hand each object to the deployed enforcer
through Batch Operations; the engine judges and re-keys it exactly as on upload.
Task keys arrive URL-encoded; Powertools' ``S3BatchOperationTask.s3_key`` decodes
them with ``unquote_plus``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from aws_lambda_powertools.utilities.data_classes import (
    S3BatchOperationEvent,
    S3BatchOperationResponse,
    S3BatchOperationResponseRecord,
)

from enforcer.decision import ALERTING
from enforcer.engine import Result
from enforcer.events import ObjectRef

SUPPORTED_SCHEMA = "2.0"


def is_batch_operations_event(event: dict[str, Any]) -> bool:
    return "invocationSchemaVersion" in event and "tasks" in event


def result_code(result: Result) -> str:
    # A grant or key problem will not fix itself on Batch Operations' retry; it shows
    # up in the job's completion report as a permanent failure with the reason.
    return "PermanentFailure" if result.outcome in ALERTING else "Succeeded"


def handle(
    event: dict[str, Any],
    process: Callable[[ObjectRef], Result],
    record: Callable[[str, Result], None],
    pool: Executor,
) -> dict[str, Any]:
    """Run every task through ``process``; ``record`` journals and alerts each result."""
    batch = S3BatchOperationEvent(event)
    response = S3BatchOperationResponse(
        batch.invocation_schema_version, batch.invocation_id, "PermanentFailure"
    )
    if batch.invocation_schema_version != SUPPORTED_SCHEMA:
        for task in batch.tasks:
            response.add_result(
                S3BatchOperationResponseRecord(
                    task.task_id,
                    "PermanentFailure",
                    f"invocation schema {batch.invocation_schema_version} is not supported; "
                    f"create the job with InvocationSchemaVersion {SUPPORTED_SCHEMA}",
                )
            )
        return response.asdict()

    def run(task) -> S3BatchOperationResponseRecord:
        ref = ObjectRef(
            bucket=task.s3_bucket,
            key=task.s3_key,
            version_id=task.s3_version_id or None,
            delivery="batch-operations",
        )
        try:
            result = process(ref)
        except Exception as exc:  # noqa: BLE001 - throttling and 5xx: let the job retry
            return S3BatchOperationResponseRecord(task.task_id, "TemporaryFailure", f"{type(exc).__name__}: {exc}"[:1000])
        record(task.task_id, result)
        return S3BatchOperationResponseRecord(task.task_id, result_code(result), f"{result.outcome}: {result.reason}"[:1000])

    for answer in pool.map(run, list(batch.tasks)):
        response.add_result(answer)
    return response.asdict()


REASON_UNJOURNALED = (
    "the object was handled but its log-table row could not be written (BatchWriteItem failed after "
    "retries); retrying the task writes it"
)


def fail_unjournaled(answer: dict[str, Any], task_ids: set[str]) -> dict[str, Any]:
    """Turn tasks whose log row was lost into TemporaryFailure, so the job retries them.

    A retry finds the object compliant and journals it; answering Succeeded would leave
    the task's record missing from the log table for good.
    """
    for result in answer.get("results", []):
        if result["taskId"] in task_ids:
            result["resultCode"] = "TemporaryFailure"
            result["resultString"] = f"{REASON_UNJOURNALED} ({result['resultString']})"[:1000]
    return answer
