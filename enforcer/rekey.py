"""The S3 actions: inspect one object, and re-key it by the cheapest correct method.

Every write here is guarded so that an older object never overwrites a newer one:
copies carry ``CopySourceIfMatch`` (the source has not changed since inspection) and
the destination condition ``IfMatch`` (S3 evaluates it when the copy commits, so a
PUT that lands while the copy is in flight wins and the copy answers 412).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from botocore.exceptions import ClientError
from botocore.retries.standard import ThrottledRetryableChecker, TransientRetryableChecker

from enforcer.bucket_locks import BucketLocks
from enforcer import refusals
from enforcer.decision import SSE_KMS, ObjectState, Presence
from enforcer.mapping import Target

log = logging.getLogger(__name__)

MIB = 1024**2
MIN_PART = 5 * MIB  # S3's minimum part size (all but the last part)
MAX_PART = 5 * 1024**3
MAX_PARTS = 10_000
PREFERRED_MAX_PART = 512 * MIB  # larger parts only add per-part latency to the copy

# HEAD's Checksum* field -> the ChecksumAlgorithm a copy asks for to keep that checksum:
# every algorithm of the pinned botocore's S3 model (tests/test_rekey.py checks it).
_CHECKSUM_FIELDS = {
    f"Checksum{algorithm}": algorithm
    for algorithm in (
        "CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256", "SHA512", "MD5", "XXHASH64", "XXHASH3", "XXHASH128"
    )
}
# The checksum types S3 documents for each algorithm of a multipart upload ("Checking
# object integrity"). A source type outside these (a single-PUT SHA256 object is
# FULL_OBJECT, which multipart SHA256 cannot be) is left to S3's default.
_MULTIPART_CHECKSUM_TYPES = {
    "FULL_OBJECT": frozenset({"CRC32", "CRC32C", "CRC64NVME"}),
    "COMPOSITE": frozenset({"CRC32", "CRC32C", "SHA1", "SHA256"}),
}
# Attributes a copy must carry over explicitly: with MetadataDirective=REPLACE (and
# always for CreateMultipartUpload) S3 copies none of them by itself.
_CONTENT_FIELDS = (
    "ContentType",
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "Expires",
    "WebsiteRedirectLocation",
)


# ---------------------------------------------------------------------------
# Errors


class Superseded(Exception):
    """412: a newer write replaced the inspected object; its own event handles it."""


class Conflict(Exception):
    """409 ConditionalRequestConflict: inspect again and decide again."""


class Gone(Exception):
    """404 during the write: the object or version was deleted meanwhile."""


class Refused(Exception):
    """S3 refused UpdateObjectEncryption; ``refusals.classify`` says why, given HEAD's state."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class PermanentFailure(Exception):
    """Retrying cannot help (a missing grant, a disabled key): alert a human."""


class ConditionalWritesEnforced(PermanentFailure):
    """CopyObject with If-Match answered 501: the bucket policy enforces conditional writes."""


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "") or str(
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


def status_of(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


_PERMANENT_CODES = {
    "AccessDenied",
    "KMS.AccessDeniedException",
    "KMS.DisabledException",
    "KMS.NotFoundException",
    "KMS.KMSInvalidStateException",
    "KMS.InvalidKeyUsageException",
    "InvalidObjectState",
    "InvalidArgument",
    "InvalidRequest",
    "AccessControlListNotSupported",
}


# Errors that a later attempt can get past, although several answer with a 4xx status.
# botocore's own lists (what its standard/adaptive retries already retried), the same
# codes as S3 reports them for a KMS call it made on the enforcer's behalf, KMS's own
# transient failures, and the request-signing errors that fresh credentials or a
# corrected clock fix (a Lambda's credentials rotate; the next attempt signs anew).
_BOTOCORE_RETRYABLE = frozenset(
    ThrottledRetryableChecker._THROTTLED_ERROR_CODES + TransientRetryableChecker._TRANSIENT_ERROR_CODES
)
TRANSIENT_CODES = (
    _BOTOCORE_RETRYABLE
    | {f"KMS.{code}" for code in _BOTOCORE_RETRYABLE}
    | {"KMS.KMSInternalException", "KMS.DependencyTimeoutException", "KMS.KeyUnavailableException"}
    | {"InternalError", "ServiceUnavailable", "ExpiredToken", "ExpiredTokenException", "RequestTimeTooSkewed"}
)


def is_transient(exc: ClientError) -> bool:
    status = status_of(exc)
    return error_code(exc) in TRANSIENT_CODES or status in (408, 429) or status >= 500


def raise_classified(exc: ClientError) -> None:
    """Translate a failed write into the engine's vocabulary; transient errors re-raise."""
    code, status = error_code(exc), status_of(exc)
    if code == "PreconditionFailed" or status == 412:
        raise Superseded(str(exc)) from exc
    if code == "ConditionalRequestConflict" or status == 409:
        raise Conflict(str(exc)) from exc
    if code in ("NoSuchKey", "NoSuchVersion", "404") or status == 404:
        raise Gone(str(exc)) from exc
    if is_transient(exc):
        raise exc  # back to SQS: the message is retried later, then dead-lettered
    if code in _PERMANENT_CODES or 400 <= status < 500:
        raise PermanentFailure(f"{code}: {exc.response.get('Error', {}).get('Message', '')}") from exc
    raise exc  # anything unclassified (no status at all): a retry costs less than a lost re-key


# ---------------------------------------------------------------------------
# Inspect


def _parse_lock(head: dict[str, Any]) -> tuple[str | None, datetime | None, bool]:
    return (
        head.get("ObjectLockMode"),
        head.get("ObjectLockRetainUntilDate"),
        head.get("ObjectLockLegalHoldStatus") == "ON",
    )


def _read_error(s3, bucket: str, key: str, version_id: str | None) -> ClientError | None:
    """A one-byte GET's error, which has a body where HEAD's has none; None if it reads.

    Sent only after HEAD failed, so the normal path pays nothing.
    """
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Range": "bytes=0-0"}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        s3.get_object(**kwargs)["Body"].close()
    except ClientError as exc:
        return exc
    return None


def _asks_for_customer_key(error: ClientError | None) -> bool:
    """Whether HEAD's bodiless 400 was S3 asking for the SSE-C key.

    An expired token or a malformed request answers HEAD with 400 too; read as SSE-C, it
    would be alerted and never retried. The one-byte GET's error tells them apart.
    """
    if error is None:
        return False
    message = error.response.get("Error", {}).get("Message", "")
    return error_code(error) == "InvalidRequest" and "Server Side Encryption" in message


def _forbidden(s3, bucket: str, key: str, version_id: str | None, first: ClientError) -> ObjectState:
    """Why HEAD with ChecksumMode answered 403, which alone it cannot say.

    HeadObject (S3 API Reference, https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html):
    errors carry only a generic code; with ChecksumMode, an object uploaded with a
    checksum under a KMS key needs kms:Decrypt on that key. Two probes, only after a 403:
    a HEAD without ChecksumMode, which needs no KMS permission and names the key, and the
    one-byte GET, whose error body names the refusal. An expired token or a skewed clock
    is a passing 403: raised, so the record is retried, never alerted.
    """
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        plain = s3.head_object(**kwargs)
    except ClientError as exc:
        if status_of(exc) != 403:
            raise
        plain = None
    error = _read_error(s3, bucket, key, version_id)
    if error is not None and is_transient(error):
        raise error
    if error is None:
        raise first  # the GET read and decrypted: whatever refused the HEAD has passed
    code, message = error_code(error), error.response.get("Error", {}).get("Message", "")
    if plain is not None and not plain.get("DeleteMarker"):
        state = _state_of(bucket, key, version_id, plain)
        if state.kms_key_arn and (code in refusals.DENIED_CODES or refusals.is_kms_denial(code, message)):
            # S3 lets the role read the object (the plain HEAD), so the denial is KMS's.
            return replace(state, presence=Presence.KMS_DENIED)
    elif refusals.is_kms_denial(code, message):
        return ObjectState(bucket, key, Presence.KMS_DENIED, version_id=version_id,
                           kms_key_arn=refusals.named_key(message))
    return ObjectState(bucket, key, Presence.ACCESS_DENIED, version_id=version_id)


def inspect(s3, bucket: str, key: str, version_id: str | None = None) -> ObjectState:
    """One HEAD; its answer holds everything the decision and a full-fidelity copy need."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "ChecksumMode": "ENABLED"}
    if version_id:
        kwargs["VersionId"] = version_id
    try:
        head = s3.head_object(**kwargs)
    except ClientError as exc:
        status = status_of(exc)
        if status in (404, 405):  # 405: the version is a delete marker
            return ObjectState(bucket, key, Presence.GONE, version_id=version_id)
        if status == 400:
            if _asks_for_customer_key(_read_error(s3, bucket, key, version_id)):
                return ObjectState(bucket, key, Presence.SSE_C, version_id=version_id)
            raise
        if status == 403:
            return _forbidden(s3, bucket, key, version_id, exc)
        raise
    if head.get("DeleteMarker"):
        return ObjectState(bucket, key, Presence.GONE, version_id=version_id)
    return _state_of(bucket, key, version_id, head)


def _state_of(bucket: str, key: str, version_id: str | None, head: dict[str, Any]) -> ObjectState:
    mode, until, hold = _parse_lock(head)
    return ObjectState(
        bucket=bucket,
        key=key,
        version_id=head.get("VersionId") or version_id,
        etag=head.get("ETag"),
        size=int(head.get("ContentLength") or 0),
        sse_type=head.get("ServerSideEncryption"),
        kms_key_arn=head.get("SSEKMSKeyId"),
        bucket_key_enabled=head.get("BucketKeyEnabled"),
        storage_class=head.get("StorageClass") or "STANDARD",
        archive_status=head.get("ArchiveStatus"),
        restore=head.get("Restore"),
        lock_mode=mode,
        lock_retain_until=until,
        legal_hold=hold,
        head=head,
    )


# ---------------------------------------------------------------------------
# Method 1: UpdateObjectEncryption


def update_encryption(s3, state: ObjectState, target: Target) -> None:
    """Re-key in place: same bytes, ETag, metadata, tags, storage class and version."""
    if not hasattr(s3, "update_object_encryption"):
        raise Refused(refusals.CLIENT_LACKS_IT, "this boto3 has no UpdateObjectEncryption")
    kwargs: dict[str, Any] = {
        "Bucket": state.bucket,
        "Key": state.key,
        "ObjectEncryption": {
            "SSEKMS": {"KMSKeyArn": target.kms_key_arn, "BucketKeyEnabled": target.bucket_key}
        },
    }
    if state.versioned:
        kwargs["VersionId"] = state.version_id
    try:
        s3.update_object_encryption(**kwargs)
    except ClientError as exc:
        code = error_code(exc)
        if code in refusals.REFUSAL_CODES:
            raise Refused(code, exc.response.get("Error", {}).get("Message", "")) from exc
        raise_classified(exc)


# ---------------------------------------------------------------------------
# Methods 2 and 3: full-fidelity copies


class BucketAclModes:
    """Whether each bucket still uses ACLs, asked once per bucket per container.

    With Object Ownership "bucket owner enforced" ACLs are off and re-applying grants
    would fail; otherwise a copy resets the ACL to the default, so grants go along.
    Records of one batch are copied concurrently; a per-bucket lock held across the
    fetch makes them share one GetBucketOwnershipControls instead of each missing the
    cache at the same moment.
    """

    def __init__(self, s3):
        self._s3 = s3
        self._modes: dict[str, bool] = {}
        self._locks = BucketLocks()

    def uses_acls(self, bucket: str) -> bool:
        with self._locks.of(bucket):
            if bucket not in self._modes:
                self._modes[bucket] = self._fetch(bucket)
            return self._modes[bucket]

    def _fetch(self, bucket: str) -> bool:
        try:
            rules = self._s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
        except ClientError as exc:
            # No ownership controls: a pre-2023 bucket with ACLs on. Denied: read the
            # object's ACL instead of guessing that there is none to keep.
            if error_code(exc) not in ("OwnershipControlsNotFoundError", "AccessDenied"):
                raise
            return True
        return not any(r.get("ObjectOwnership") == "BucketOwnerEnforced" for r in rules)


_GRANT_PARAMS = {
    "FULL_CONTROL": "GrantFullControl",
    "READ": "GrantRead",
    "READ_ACP": "GrantReadACP",
    "WRITE_ACP": "GrantWriteACP",
}


def acl_grant_params(acl: dict[str, Any]) -> dict[str, str]:
    """GetObjectAcl's answer as CopyObject/CreateMultipartUpload grant headers.

    Passed on the write itself, so the new object never exists with a default ACL.
    """
    # Every grant goes along, the owner's own FULL_CONTROL included. With grant headers
    # the copy's ACL is exactly these grants, and the copy's owner (the account that
    # writes it: the enforcer's, the bucket owner's) keeps only the implicit
    # READ_ACP/WRITE_ACP every owner has. Leaving the owner's grant out is harmless
    # only when the owner is that writer; when another account wrote the object
    # (ObjectWriter, or BucketOwnerPreferred without bucket-owner-full-control), that
    # account would lose its access to its own data. Re-applying the list as it was
    # keeps every grantee's access in both cases, and costs no call.
    by_perm: dict[str, list[str]] = {}
    for grant in acl.get("Grants", []):
        grantee, perm = grant.get("Grantee", {}), grant.get("Permission")
        if perm not in _GRANT_PARAMS:
            continue
        if grantee.get("Type") == "CanonicalUser":
            value = f'id="{grantee["ID"]}"'
        elif grantee.get("Type") == "Group":
            value = f'uri="{grantee["URI"]}"'
        elif grantee.get("Type") == "AmazonCustomerByEmail":
            value = f'emailAddress="{grantee["EmailAddress"]}"'
        else:
            continue
        by_perm.setdefault(_GRANT_PARAMS[perm], []).append(value)
    return {k: ", ".join(v) for k, v in by_perm.items()}


@dataclass
class CopyPlan:
    """Everything a copy writes besides the bytes, taken from HEAD (and ACL/tags)."""

    params: dict[str, Any]
    tags: dict[str, str] | None = None  # only fetched for multipart (CopyObject copies them)
    checksum_type: str | None = None  # CreateMultipartUpload only: CopyObject has no such parameter

    @classmethod
    def build(cls, state: ObjectState, target: Target, grants: dict[str, str], now: datetime) -> CopyPlan:
        head = state.head
        params: dict[str, Any] = {
            "Metadata": dict(head.get("Metadata") or {}),
            # Passed explicitly: omitting it silently moves the object to STANDARD.
            "StorageClass": state.storage_class,
            "ServerSideEncryption": target.sse_type,
            "SSEKMSKeyId": target.kms_key_arn,
        }
        if target.sse_type == SSE_KMS:
            params["BucketKeyEnabled"] = target.bucket_key
        for name in _CONTENT_FIELDS:
            if head.get(name) is not None:
                params[name] = head[name]
        # A retention that has lapsed protects nothing any more, and S3 refuses a
        # retain-until date in the past (400 InvalidArgument): only a live one goes
        # along. A legal hold has no date and is carried as it is.
        if state.lock_mode and state.lock_retain_until and state.lock_retain_until > now:
            params["ObjectLockMode"] = state.lock_mode
            params["ObjectLockRetainUntilDate"] = state.lock_retain_until
        if head.get("ObjectLockLegalHoldStatus") is not None:
            params["ObjectLockLegalHoldStatus"] = head["ObjectLockLegalHoldStatus"]
        algorithm = next((alg for f, alg in _CHECKSUM_FIELDS.items() if head.get(f)), None)
        checksum_type = None
        if algorithm:
            params["ChecksumAlgorithm"] = algorithm
            if algorithm in _MULTIPART_CHECKSUM_TYPES.get(head.get("ChecksumType") or "", ()):
                checksum_type = head["ChecksumType"]
        params.update(grants)
        return cls(params, checksum_type=checksum_type)


def _copy_source(state: ObjectState) -> dict[str, str]:
    src = {"Bucket": state.bucket, "Key": state.key}
    if state.versioned:
        src["VersionId"] = state.version_id  # pinned: never copy a newer version by accident
    return src


def copy_in_place(s3, state: ObjectState, plan: CopyPlan) -> dict[str, Any]:
    try:
        return s3.copy_object(
            Bucket=state.bucket,
            Key=state.key,
            CopySource=_copy_source(state),
            CopySourceIfMatch=state.etag,
            IfMatch=state.etag,
            MetadataDirective="REPLACE",
            TaggingDirective="COPY",
            **plan.params,
        )
    except ClientError as exc:
        if error_code(exc) == "NotImplemented" or status_of(exc) == 501:
            # User Guide, "Enforce conditional writes on Amazon S3 buckets"
            # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes-enforce.html):
            # under such a bucket policy S3 refuses every CopyObject into the bucket or
            # prefix, and answers 501 to one that carries If-Match. Not retried (it cannot
            # pass) and not sent without IfMatch: that condition keeps a newer write from
            # being overwritten by the older bytes.
            raise ConditionalWritesEnforced(
                "CopyObject with If-Match answered 501 NotImplemented: the bucket policy enforces "
                "conditional writes (s3:if-match / s3:if-none-match), under which S3 refuses every "
                "CopyObject here. The enforcer keeps its If-Match for race safety; exempt its role from "
                "that statement"
            ) from exc
        raise_classified(exc)
        raise  # unreachable; keeps type checkers honest


def part_size_for(size: int, threshold: int) -> int:
    size_floor = math.ceil(size / MAX_PARTS)
    return min(MAX_PART, max(MIN_PART, size_floor, min(threshold, PREFERRED_MAX_PART)))


def multipart_copy(
    s3,
    state: ObjectState,
    plan: CopyPlan,
    threshold: int,
    pool: ThreadPoolExecutor,
    on_part: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """UploadPartCopy in parallel parts; the upload is aborted on any failure."""
    params = dict(plan.params)
    if plan.tags:
        params["Tagging"] = urlencode(plan.tags)
    if plan.checksum_type:
        params["ChecksumType"] = plan.checksum_type
    try:
        upload_id = s3.create_multipart_upload(Bucket=state.bucket, Key=state.key, **params)["UploadId"]
    except ClientError as exc:
        raise_classified(exc)
        raise
    part_size = part_size_for(state.size, threshold)
    ranges = [(n + 1, start, min(start + part_size, state.size) - 1)
              for n, start in enumerate(range(0, state.size, part_size))]
    algorithm = plan.params.get("ChecksumAlgorithm")
    checksum_field = f"Checksum{algorithm}" if algorithm else None
    # Set by the first failure. A pool thread takes the next queued part the moment its
    # own part fails, before this thread can cancel it: that part sees the flag instead.
    failed = threading.Event()

    def copy_part(part: tuple[int, int, int]) -> dict[str, Any] | None:
        if failed.is_set():
            return None  # the upload is being aborted; this part's result is never read
        number, first, last = part
        try:
            result = s3.upload_part_copy(
                Bucket=state.bucket,
                Key=state.key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource=_copy_source(state),
                CopySourceRange=f"bytes={first}-{last}",
                CopySourceIfMatch=state.etag,
            )["CopyPartResult"]
            if on_part:
                on_part(number, len(ranges))
        except BaseException:
            failed.set()
            raise
        done = {"PartNumber": number, "ETag": result["ETag"]}
        if checksum_field and result.get(checksum_field):
            done[checksum_field] = result[checksum_field]
        return done

    copies: list[Future[dict[str, Any] | None]] = []
    try:
        for part in ranges:
            copies.append(pool.submit(copy_part, part))
        # Not each part in turn: a failure behind a slow part must stop the rest at once,
        # or they keep taking the shared pool's threads for an upload about to be aborted.
        done, _ = wait(copies, return_when=FIRST_EXCEPTION)
        for copy in copies:
            if copy in done and copy.exception() is not None:
                copy.result()  # raises that part's error
        parts = [copy.result() for copy in copies]
        return s3.complete_multipart_upload(
            Bucket=state.bucket,
            Key=state.key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            IfMatch=state.etag,
        )
    except BaseException as exc:
        failed.set()
        # S3 may still accept a part that is being copied while the upload is aborted,
        # and bill it until the upload is aborted again: let the running ones finish.
        for copy in copies:
            copy.cancel()
        wait(copies)
        try:
            s3.abort_multipart_upload(Bucket=state.bucket, Key=state.key, UploadId=upload_id)
        except ClientError:
            # Parts of an unaborted upload are billed until a lifecycle rule removes them.
            log.warning("could not abort upload %s of s3://%s/%s", upload_id, state.bucket, state.key)
        failure = exc
        errors = [e for copy in copies if not copy.cancelled() and (e := copy.exception()) is not None]
        if any(e is exc for e in errors):
            # Parts fail in no set order. A source that changed (412) or vanished (404) under
            # any of them decides the outcome, and makes another part's throttling moot.
            failure = next((e for e in errors if isinstance(e, ClientError) and status_of(e) in (404, 412)), exc)
        if isinstance(failure, ClientError):
            raise_classified(failure)
        raise  # only a ClientError is ever put in exc's place


def written_encryption(response: dict[str, Any]) -> tuple[str | None, str | None]:
    return response.get("ServerSideEncryption"), response.get("SSEKMSKeyId")

