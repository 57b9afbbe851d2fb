"""Request prices for the backfill cost estimate (``ops backfill --dry-run``).

Defaults are AWS list prices for S3 Standard and AWS KMS in us-east-1 (USD). They
are a model, not a bill: override any of them with ``--price NAME=VALUE`` (names are
the fields of :class:`Prices`) for another region, storage class or a negotiated rate.

* S3 PUT, COPY, POST and LIST requests: $0.005 per 1,000.
* S3 GET, HEAD and all other requests: $0.0004 per 1,000. DELETE is free.
* UpdateObjectEncryption: priced here as a PUT-tier request. That is an assumption
  (it is a write of the object's encryption metadata); override ``update_encryption_per_1000``
  when the price list says otherwise.
* AWS KMS: $0.03 per 10,000 requests (symmetric keys), the same in every commercial
  region, which is what makes seed 001's example a check: 10,000 encryption plus
  2,000,000 decryption requests = 2,010,000 requests = $6.03, "$6" in the blog post.
* S3 Batch Operations: $0.25 per job plus $1.00 per million objects processed (plus,
  for LambdaInvoke jobs, the Lambda invocations themselves, not modelled here).

KMS request counts are upper bounds: with an S3 Bucket Key (the default for SSE-KMS
mappings) S3 asks KMS for a bucket-level key once in a while instead of once per
object, so the real KMS figure for SSE-KMS targets is usually far lower.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from enforcer.decision import SSE_KMS, Method
from enforcer.rekey import part_size_for

# Seed 001 ("Changing your Amazon S3 encryption from S3-Managed to AWS KMS"): a month of
# 10,000 overwrites (encryptions) and 2,000,000 downloads (decryptions) costs $6 in KMS.
SEED_001_ENCRYPTIONS = 10_000
SEED_001_DECRYPTIONS = 2_000_000
SEED_001_PUBLISHED_DOLLARS = 6


@dataclass(frozen=True)
class Prices:
    put_copy_post_list_per_1000: float = 0.005
    get_head_per_1000: float = 0.0004
    update_encryption_per_1000: float = 0.005
    kms_per_10000: float = 0.03
    batch_operations_per_job: float = 0.25
    batch_operations_per_million_objects: float = 1.00

    def with_overrides(self, overrides: dict[str, float]) -> Prices:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown price {', '.join(unknown)}; known prices: {', '.join(sorted(known))}")
        negative = sorted(name for name, value in overrides.items() if value < 0)
        if negative:
            raise ValueError(f"price {', '.join(negative)} must not be negative")
        return replace(self, **overrides)

    def kms_cost(self, requests: int) -> float:
        return requests * self.kms_per_10000 / 10_000

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def parse_price_overrides(items: list[str] | None) -> dict[str, float]:
    """``["kms_per_10000=0.03", ...]`` from the command line."""
    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--price {item!r} is not NAME=NUMBER (for example kms_per_10000=0.03)") from None
    return out


def seed_001_check(prices: Prices) -> tuple[int, float]:
    """KMS requests and dollars of seed 001's monthly example under ``prices``."""
    requests = SEED_001_ENCRYPTIONS + SEED_001_DECRYPTIONS
    return requests, prices.kms_cost(requests)


@dataclass
class Requests:
    """Billable requests, grouped by price tier."""

    list: int = 0  # ListObjectsV2 pages (PUT tier)
    get_head: int = 0  # HeadObject, GetObjectAcl, GetObjectTagging
    put_copy_post: int = 0  # CopyObject, CreateMultipartUpload, UploadPartCopy, Complete...
    update_encryption: int = 0
    delete: int = 0  # old versions removed after a copy (free, counted for the record)
    kms: int = 0  # upper bound, see the module docstring

    def __iadd__(self, other: Requests) -> Requests:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def s3_total(self) -> int:
        return self.list + self.get_head + self.put_copy_post + self.update_encryption + self.delete


@dataclass(frozen=True)
class Cost:
    s3: float
    kms: float

    @property
    def total(self) -> float:
        return self.s3 + self.kms


def cost_of(requests: Requests, prices: Prices) -> Cost:
    s3 = (
        (requests.list + requests.put_copy_post) * prices.put_copy_post_list_per_1000 / 1000
        + requests.get_head * prices.get_head_per_1000 / 1000
        + requests.update_encryption * prices.update_encryption_per_1000 / 1000
    )
    return Cost(s3=s3, kms=prices.kms_cost(requests.kms))


def untouched_requests(objects: int, *, compliant: bool, update_first: bool) -> Requests:
    """Objects a backfill leaves as they are: a HEAD each, or under ``update_first`` an
    UpdateObjectEncryption each (which re-keys a compliant SSE-KMS object to the same key,
    reading its data key once, or is refused for the rest, which then get their HEAD)."""
    if not update_first:
        return Requests(get_head=objects)
    if compliant:
        return Requests(update_encryption=objects, kms=2 * objects)
    return Requests(update_encryption=objects, get_head=objects)


def list_requests(objects: int) -> int:
    """ListObjectsV2 returns up to 1,000 keys a page."""
    return max(1, math.ceil(objects / 1000))


def rekey_requests(
    method: Method,
    size: int,
    source_sse: str | None,
    *,
    multipart_threshold: int,
    reads_acl: bool = False,
    has_tags: bool = False,
    deletes_old_version: bool = False,
    update_first: bool = False,
) -> Requests:
    """What the engine spends on one non-compliant object.

    ``update_first``: the backfill's uninspected path (``Enforcer.process_uninspected``)
    sends UpdateObjectEncryption before any HEAD; where S3 refuses it, that refused
    request is billed too, and the object then takes the inspected path.
    """
    source_is_kms = source_sse is not None and source_sse.startswith(SSE_KMS)
    if method is Method.UPDATE_ENCRYPTION and update_first:
        return Requests(update_encryption=1, kms=1 + (1 if source_is_kms else 0))
    r = Requests(get_head=1)  # the HEAD that judges the object
    if update_first:
        r.update_encryption = 1  # the UpdateObjectEncryption S3 refused before the HEAD
    if method is Method.UPDATE_ENCRYPTION:
        r.update_encryption = 1
        # a new data key under the mapped key; an SSE-KMS source's data key is decrypted first
        r.kms = 1 + (1 if source_is_kms else 0)
        return r
    if reads_acl:
        r.get_head += 1  # GetObjectAcl, so the copy keeps the grants
    if deletes_old_version:
        r.delete = 1
    if method is Method.COPY:
        r.put_copy_post = 1
        r.kms = 1 + (1 if source_is_kms else 0)
        return r
    parts = math.ceil(size / part_size_for(size, multipart_threshold)) if size else 1
    r.put_copy_post = 2 + parts  # Create, one UploadPartCopy per part, Complete
    if has_tags:
        r.get_head += 1  # GetObjectTagging: multipart uploads do not copy tags by themselves
    # The upload's data key at Create, then a Decrypt of it per part; an SSE-KMS source
    # is decrypted once per ranged part read.
    r.kms = 1 + parts + (parts if source_is_kms else 0)
    return r

