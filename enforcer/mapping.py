"""Prefix -> key mappings: the lookup rule and where mappings come from.

The rule is S3's own prefix semantics (the same as notification filters and IAM
resource ARNs): the longest mapped literal prefix of the key wins.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer

from enforcer.arns import KeyArnProblem, check_key_arn
from enforcer.bucket_locks import BucketLocks

_DESERIALIZE = TypeDeserializer()

# The original sample's table schema (partition key, sort key), kept for migration.
TABLE_KEY = ("bucket_name", "prefix")


@dataclass(frozen=True)
class Target:
    """The encryption an object must end up with."""

    sse_type: str  # "aws:kms" or "aws:kms:dsse"
    kms_key_arn: str
    bucket_key: bool


@dataclass(frozen=True)
class Mapping:
    bucket: str
    prefix: str
    target: Target
    old_version_action: str | None = None
    # Set when the row itself is unusable (hand-edited table); the engine alerts
    # instead of encrypting under a key that S3 would resolve somewhere else.
    problem: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Mapping:
        """From a mapping-table row (plain Python values, the original sample's schema)."""
        arn = row.get("kms_key_arn")
        dsse = row.get("dual_layer_encryption", False)
        problem = None
        arn_problem = check_key_arn(arn)
        if arn_problem is not None:
            problem = {
                KeyArnProblem.ALIAS: f"kms_key_arn {arn!r} is an alias; a full key ARN is required",
                KeyArnProblem.KEY_ID: f"kms_key_arn {arn!r} is a key ID; a full key ARN is required",
                KeyArnProblem.AWS_MANAGED_S3: "kms_key_arn is the aws/s3 managed key",
                KeyArnProblem.NOT_A_KEY_ARN: f"kms_key_arn {arn!r} is not a KMS key ARN",
            }[arn_problem]
        elif not isinstance(dsse, bool):
            problem = f"dual_layer_encryption must be a boolean, got {dsse!r}"
        ova = row.get("old_version_action")
        if ova not in (None, "delete", "keep"):
            problem = f"old_version_action must be 'delete' or 'keep', got {ova!r}"
        dsse = dsse is True
        bucket_key = row.get("bucket_key_enabled")
        if not isinstance(bucket_key, bool):
            bucket_key = not dsse  # S3 Bucket Keys do not apply to DSSE-KMS
        return cls(
            bucket=row["bucket_name"],
            prefix=row["prefix"],
            target=Target("aws:kms:dsse" if dsse else "aws:kms", str(arn), bucket_key and not dsse),
            old_version_action=ova,
            problem=problem,
        )


def longest_prefix(mappings: Iterable[Mapping], key: str) -> Mapping | None:
    best: Mapping | None = None
    for m in mappings:
        if key.startswith(m.prefix) and (best is None or len(m.prefix) > len(best.prefix)):
            best = m
    return best


class MappingSource(Protocol):
    def lookup(self, bucket: str, key: str) -> Mapping | None: ...

    def for_bucket(self, bucket: str) -> list[Mapping]: ...


class StaticMappings:
    """Mappings known up front: from stack config (``ops``) or tests."""

    def __init__(self, mappings: Iterable[Mapping]):
        self._by_bucket: dict[str, list[Mapping]] = {}
        for m in mappings:
            self._by_bucket.setdefault(m.bucket, []).append(m)

    def for_bucket(self, bucket: str) -> list[Mapping]:
        return list(self._by_bucket.get(bucket, []))

    def lookup(self, bucket: str, key: str) -> Mapping | None:
        return longest_prefix(self._by_bucket.get(bucket, ()), key)


class DynamoMappings:
    """The deployed mapping table, one paginated Query per bucket, cached.

    Records of one batch are processed concurrently; a per-bucket lock makes them
    share one Query instead of each missing the cache at the same moment.
    """

    def __init__(
        self,
        dynamodb,
        table_name: str,
        cache_seconds: float = 60,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._ddb = dynamodb
        self._table = table_name
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, list[Mapping]]] = {}
        self._locks = BucketLocks()

    def for_bucket(self, bucket: str) -> list[Mapping]:
        with self._locks.of(bucket):
            hit = self._cache.get(bucket)
            if hit and hit[0] > self._clock():
                return hit[1]
            mappings = [Mapping.from_row(row) for row in self._query(bucket)]
            self._cache[bucket] = (self._clock() + self._ttl, mappings)
            return mappings

    def lookup(self, bucket: str, key: str) -> Mapping | None:
        return longest_prefix(self.for_bucket(bucket), key)

    def _query(self, bucket: str):
        paginator = self._ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="bucket_name = :b",
            ExpressionAttributeValues={":b": {"S": bucket}},
            ConsistentRead=False,
        ):
            for item in page.get("Items", []):
                yield {k: _DESERIALIZE.deserialize(v) for k, v in item.items()}

