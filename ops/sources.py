"""Where ``ops audit`` and ``ops backfill`` get their mappings and their objects.

Mappings come either from the stack configuration (``--stack dev``: the rows the
Pulumi program writes to the mapping table, built by the same ``all_mapping_rows``
code) or from a deployed mapping table (``--mapping-table NAME``: the enforcer's own
``DynamoMappings``). Either way each row becomes a ``Mapping`` through
``Mapping.from_row``, so the operator tools judge an object exactly as the Lambda does.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from threading import Event
from typing import Annotated, Any, TypeVar

import typer
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from components.config import (
    ConfigError,
    all_mapping_rows,
    load_stack_file,
    notification_prefixes,
    stack_file,
)
from enforcer.events import ObjectRef
from enforcer.mapping import DynamoMappings, Mapping, MappingSource, StaticMappings
from ops.aws import Target

# Where Pulumi.<stack>.yaml files live (the repository root); tests point it elsewhere.
STACK_ROOT: Path | None = None

_DESERIALIZE = TypeDeserializer()

T = TypeVar("T")
R = TypeVar("R")


class InputError(Exception):
    """Bad input from the operator: the command prints the message and exits 2."""


# -- options shared by audit and backfill ------------------------------------

BucketOption = Annotated[str, typer.Option("--bucket", help="Bucket to work on.")]
PrefixOption = Annotated[
    str | None, typer.Option("--prefix", help="Only keys under this prefix (literal S3 key prefix).")
]
StackOption = Annotated[
    str | None,
    typer.Option("--stack", help="Take mappings from Pulumi.<stack>.yaml (default: dev, unless --mapping-table)."),
]
MappingTableOption = Annotated[
    str | None, typer.Option("--mapping-table", help="Take mappings from this deployed DynamoDB mapping table.")
]
EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint-url", help="AWS endpoint, e.g. http://127.0.0.1:4566 for `ops sandbox`."),
]
RegionOption = Annotated[str | None, typer.Option("--region", help="AWS region (default: the SDK's).")]


# -- mappings ----------------------------------------------------------------


def mappings_from_stack(stack: str, root: Path | None = None) -> StaticMappings:
    """The stack file's mappings, as the rows the program puts in the mapping table."""
    path = stack_file(stack, root or STACK_ROOT)
    try:
        config = load_stack_file(path)
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    rows = []
    for row in all_mapping_rows(config):
        item = {name: _DESERIALIZE.deserialize(value) for name, value in row.item().items()}
        rows.append(Mapping.from_row(item))
    return StaticMappings(rows)


def mappings_from_table(dynamodb, table: str) -> DynamoMappings:
    try:
        dynamodb.describe_table(TableName=table)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise InputError(
                f"mapping table {table!r} does not exist in this account/region; pass the deployed table's "
                "name (`ops outputs --stack <stack>` prints it) or use --stack instead"
            ) from None
        raise
    # The Lambda's cache rule: one Query per bucket a minute, not one per object, and a
    # row edited during a long run is picked up within that minute.
    return DynamoMappings(dynamodb, table, cache_seconds=60)


def resolve_mappings(target: Target, stack: str | None, mapping_table: str | None) -> MappingSource:
    if stack and mapping_table:
        raise InputError("pass either --stack or --mapping-table, not both")
    if mapping_table:
        return mappings_from_table(target.client("dynamodb"), mapping_table)
    return mappings_from_stack(stack or "dev")


def source_label(stack: str | None, mapping_table: str | None) -> str:
    return f"mapping table {mapping_table}" if mapping_table else f"stack {stack or 'dev'}"


def bucket_mappings(mappings: MappingSource, bucket: str, label: str) -> list[Mapping]:
    """The bucket's mappings; none at all is almost always a typo, so it is an input error."""
    from components.config import bucket_name_problem

    problem = bucket_name_problem(bucket)
    if problem:
        raise InputError(f"bucket {bucket!r} {problem}")
    try:
        found = mappings.for_bucket(bucket)
    except ClientError as exc:
        raise InputError(f"could not read mappings for {bucket!r} from {label}: {exc}") from None
    if not found:
        hint = ""
        if label.startswith("stack"):
            # The demo buckets' keys are created by the deployment (or the sandbox), so their
            # mappings exist only in the mapping table, never in the stack file.
            hint = "; for the demo buckets use --mapping-table with the deployed (or sandbox) table"
        raise InputError(
            f"bucket {bucket!r} has no prefix mappings in {label}; check the bucket name, or add a mapping "
            f"with `ops mappings add --bucket {bucket} --prefix <prefix> --key <key ARN>`{hint}"
        )
    return found


def listing_prefixes(mappings: Iterable[Mapping], prefix: str | None) -> list[str]:
    """The prefixes to list so that every mapped key under ``prefix`` is seen once.

    Nested mapped prefixes fold into their parent (listing ``a/`` covers ``a/b/``), the
    same folding the notification configuration uses.
    """
    out = []
    for mapped in notification_prefixes(m.prefix for m in mappings):
        if prefix is None or mapped.startswith(prefix):
            out.append(mapped)
        elif prefix.startswith(mapped):
            out.append(prefix)
    return sorted(set(out))


# -- objects -----------------------------------------------------------------


@dataclass(frozen=True)
class Listed:
    """One listed object (or version), with what the listing already told us."""

    ref: ObjectRef
    size: int
    storage_class: str
    is_latest: bool = True


def list_objects(s3, bucket: str, prefixes: Iterable[str | None], versions: bool = False) -> Iterator[Listed]:
    """Every object (or every version, delete markers skipped) under ``prefixes``, paginated."""
    for prefix in prefixes:
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if prefix:
            kwargs["Prefix"] = prefix
        try:
            if versions:
                for page in s3.get_paginator("list_object_versions").paginate(**kwargs):
                    for v in page.get("Versions", []):
                        version = v.get("VersionId")
                        if version == "null" and v.get("IsLatest", True):
                            # The current object is the null version: HEAD it without a version
                            # id, the same object, which S3-compatible stores that lack
                            # versionId=null (moto, until ops/moto_patches/objects.py, patch 10) accept too.
                            version = None
                        yield Listed(
                            ObjectRef(bucket, v["Key"], version_id=version, delivery="backfill"),
                            int(v.get("Size") or 0),
                            v.get("StorageClass") or "STANDARD",
                            bool(v.get("IsLatest", True)),
                        )
            else:
                for page in s3.get_paginator("list_objects_v2").paginate(**kwargs):
                    for o in page.get("Contents", []):
                        yield Listed(
                            ObjectRef(bucket, o["Key"], delivery="backfill"),
                            int(o.get("Size") or 0),
                            o.get("StorageClass") or "STANDARD",
                        )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "NoSuchBucket":
                raise InputError(f"bucket {bucket!r} does not exist (at this endpoint and region)") from None
            if code in ("AccessDenied", "403"):
                raise InputError(
                    f"listing s3://{bucket}/{prefix or ''} was denied; the caller needs s3:ListBucket"
                    + (" and s3:ListBucketVersions" if versions else "")
                ) from None
            raise


def bounded_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    concurrency: int,
    stop: Event | None = None,
) -> Iterator[tuple[T, Future]]:
    """Run ``fn`` over ``items`` on ``concurrency`` threads, yielding (item, future) as each ends.

    At most ``2 * concurrency`` items are taken from ``items`` ahead of the workers, so a
    listing of millions of keys is consumed as it is produced, not held in memory.
    When ``stop`` is set, or the consumer stops iterating (an interrupt), queued items
    are cancelled and only those already running finish.
    """
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="object")
    pending: dict[Future, T] = {}
    # Each future posts itself here when it ends: O(1) per object, where
    # concurrent.futures.wait() re-arms a waiter on every pending future each time.
    finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
    source = iter(items)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < 2 * concurrency and not (stop and stop.is_set()):
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                future = pool.submit(fn, item)
                pending[future] = item
                future.add_done_callback(finished.put)
            if not pending:
                return
            while True:
                try:
                    # A timeout, so that Ctrl-C is noticed even while every worker is busy.
                    future = finished.get(timeout=0.5)
                    break
                except queue.Empty:
                    continue
            yield pending.pop(future), future
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def aws_problem(exc: BaseException) -> str | None:
    """A one-line reason for an AWS failure that is the operator's to fix (credentials,
    endpoint), or None for anything else."""
    if isinstance(exc, BotoCoreError):
        return f"cannot reach AWS: {exc}"
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "UnrecognizedClientException"):
            return f"AWS rejected the credentials ({code}); check AWS_PROFILE / the environment"
    return None
