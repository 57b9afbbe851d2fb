"""Make moto behave like S3 where this product depends on it.

One module, shared by the test-suite and the local sandbox. Every patch wraps a moto
method (originals are kept and put back by :func:`remove`); both ``moto.mock_aws`` and a
``ThreadedMotoServer`` in the same process dispatch through the patched classes.

Measured against moto 5.2.5. Each patch has a "gap" test in ``tests/test_moto_patches.py``
that asserts moto itself still lacks the behaviour; when moto gains it, that test fails
and the patch should be deleted.

====  ===========================================================  ===========================================
#     AWS behaviour restored (AWS API / User Guide page)            gap test (fails once moto has it)
====  ===========================================================  ===========================================
1     UpdateObjectEncryption (API_UpdateObjectEncryption; "Updating  test_gap1_update_object_encryption_overwrites_body
      server-side encryption for existing objects"): re-key one
      version in place; body/ETag/VersionId/LastModified/metadata/
      tags/storage class/checksum kept; 404 NoSuchKey/NoSuchVersion;
      400 InvalidRequest (unencrypted, DSSE-KMS or SSE-C source,
      missing/invalid key ARN); 403 AccessDenied (Object Lock,
      key of another account); no event notification.
      moto 5.2.5: treats it as PutObject, the body becomes the XML.
2     x-amz-copy-source-if-match (API_CopyObject, API_UploadPartCopy) test_gap2_copy_source_if_match_ignored
      -> 412 PreconditionFailed. moto 5.2.5 ignores it.
3     HEAD/GET of DSSE-KMS objects return x-amz-server-side-         test_gap3_dsse_head_has_no_key_id
      encryption-aws-kms-key-id (API_HeadObject). moto: only aws:kms.
4     Default encryption (UserGuide "default-encryption-faq": since  test_gap4_no_default_encryption
      Jan 2023 every new object is SSE-S3 unless the bucket default
      says SSE-KMS/DSSE-KMS) for PutObject, CopyObject,
      CreateMultipartUpload (and its response headers). moto: no SSE
      without a bucket configuration (it does apply an explicit
      aws:kms / aws:kms:dsse bucket default), and an in-place copy
      of an SSE-KMS object falls to AES256 even when the bucket
      default is SSE-KMS.
5     Event userIdentity (UserGuide "notification-content-           test_gap5_event_has_no_user_identity,
      structure"): Records[].userIdentity.principalId = "AWS:" +     test_gap5_eventbridge_reason_requester_etag
      the caller's STS UserId (as moto's GetCallerIdentity answers
      for the request's access key). EventBridge "Object Created"
      (UserGuide "ev-events"): detail.requester = caller account,
      detail.reason = PutObject/POST Object/CopyObject/              test_gap5_event_has_no_version_id
      CompleteMultipartUpload, detail.object.etag; records of
      versioned buckets carry s3.object.versionId; no
      s3:ObjectTagging:Put for tags set by PutObject/CopyObject/
      CompleteMultipartUpload. moto: no userIdentity, no versionId;
      EventBridge requester hard-coded 123456789012, reason
      "ObjectCreated", "eTag" only, an "Object Tags Added" per PUT.
6     Destination conditions (API_CopyObject, API_CompleteMultipart-  test_gap6_destination_if_match_ignored
      Upload: If-Match / If-None-Match evaluated when the write
      commits): 412 PreconditionFailed on ETag mismatch, 404 NoSuchKey
      when there is no current object; runs after the commit hook.
      moto: CopyObject ignores both, CompleteMultipartUpload ignores
      If-Match.
7     Copy fidelity (API_CopyObject, API_CreateMultipartUpload,       test_gap7_copy_with_object_lock_needs_md5,
      API_UploadPartCopy): CopyObject with Object Lock headers needs  test_gap7_multipart_drops_lock_and_bucket_key,
      no Content-MD5 (the operation has no such member);              test_gap7_upload_part_copy_no_source_version,
      CreateMultipartUpload keeps x-amz-object-lock-* and             test_gap7_complete_multipart_sends_extra_put_event
      BucketKeyEnabled onto the completed object; UploadPartCopy
      answers x-amz-copy-source-version-id; CompleteMultipartUpload
      emits only s3:ObjectCreated:CompleteMultipartUpload (moto also
      emits s3:ObjectCreated:Put); PutObjectAcl honours an              test_gap7_put_object_acl_ignores_body
      AccessControlPolicy body (moto applies the bucket ACL).
8     SSE-C (UserGuide "ServerSideEncryptionCustomerKeys"): HEAD/GET  test_gap8_sse_c_object_readable_without_key
      without the customer key answer 400; CopyObject/UploadPartCopy
      of an SSE-C source need x-amz-copy-source-server-side-
      encryption-customer-*; HEAD reports SSECustomerAlgorithm.
      moto ignores SSE-C completely (stores the object in clear).
9     Object Lock retain-until dates (API_PutObject, API_CopyObject,   test_gap9_past_retain_until_date_accepted
      API_CreateMultipartUpload: x-amz-object-lock-retain-until-
      date): a date that is not in the future is refused with 400
      InvalidArgument "The retain until date must be in the
      future!". moto 5.2.5 stores it, so the object is born with a
      lapsed retention.
10    The null version (UserGuide "AddingObjectstoVersionSuspended-   test_gap10_head_null_version_of_unversioned_bucket
      Buckets", API_HeadObject): HEAD ?versionId=null in a bucket
      that was never versioned answers the object (its version is
      the null version), or 404 when there is none. EventBridge
      events carry "version-id": "null" for such objects. moto 5.2.5
      answers 400 before it looks the key up (GET already works).
====  ===========================================================  ===========================================

Test seam: :func:`commit_hook` runs ``fn(bucket, key)`` inside CopyObject and
CompleteMultipartUpload after the source was read and before the destination is
committed (and before patch 6 evaluates If-Match), to emulate "a newer PUT lands while the
copy is in flight". The hook may call back into moto (no lock is held while it runs).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import xmltodict
from moto.s3 import notifications
from moto.s3.exceptions import (
    InvalidArgumentError,
    LockNotEnabled,
    MethodNotAllowed,
    MissingKey,
    MissingVersion,
    PreconditionFailed,
    S3ClientError,
)
from moto.s3.models import FakeDeleteMarker, FakeKey, S3Backend
from moto.s3.responses import S3Response

from enforcer.arns import account_of_key_arn
from enforcer.decision import same_etag

MOTO_VERSION_MEASURED = "5.2.5"

# The table above, for tooling: patch number -> AWS documentation it follows, and the gap
# tests (tests/test_moto_patches.py) that fail once moto itself behaves like S3.
PATCHES: dict[int, tuple[str, tuple[str, ...]]] = {
    1: ("API_UpdateObjectEncryption", ("test_gap1_update_object_encryption_overwrites_body",)),
    2: ("API_CopyObject, API_UploadPartCopy (x-amz-copy-source-if-match)",
        ("test_gap2_copy_source_if_match_ignored",)),
    3: ("API_HeadObject, API_GetObject (SSEKMSKeyId for aws:kms:dsse)", ("test_gap3_dsse_head_has_no_key_id",)),
    4: ("UserGuide default-encryption-faq (SSE-S3 by default since 2023-01-05)",
        ("test_gap4_no_default_encryption",)),
    5: ("UserGuide notification-content-structure, ev-events (EventBridge)",
        ("test_gap5_event_has_no_user_identity", "test_gap5_event_has_no_version_id",
         "test_gap5_eventbridge_reason_requester_etag")),
    6: ("API_CopyObject, API_CompleteMultipartUpload (If-Match / If-None-Match)",
        ("test_gap6_destination_if_match_ignored",)),
    7: ("API_CopyObject, API_CreateMultipartUpload, API_UploadPartCopy, API_PutObjectAcl",
        ("test_gap7_copy_with_object_lock_needs_md5", "test_gap7_multipart_drops_lock_and_bucket_key",
         "test_gap7_upload_part_copy_no_source_version", "test_gap7_complete_multipart_sends_extra_put_event",
         "test_gap7_put_object_acl_ignores_body")),
    8: ("UserGuide ServerSideEncryptionCustomerKeys (SSE-C)", ("test_gap8_sse_c_object_readable_without_key",)),
    9: ("API_PutObject, API_CopyObject, API_CreateMultipartUpload (x-amz-object-lock-retain-until-date)",
        ("test_gap9_past_retain_until_date_accepted",)),
    10: ("UserGuide AddingObjectstoVersionSuspendedBuckets, API_HeadObject (versionId=null)",
         ("test_gap10_head_null_version_of_unversioned_bucket",)),
}

_RETAIN_UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
_KMS_KEY_ARN = re.compile(r"^arn:aws[-a-z0-9]*:kms:[-a-z0-9]*:[0-9]{12}:key/.+$")
_SSE_C_HEADER = "x-amz-server-side-encryption-customer-algorithm"
_COPY_SSE_C_HEADER = "x-amz-copy-source-server-side-encryption-customer-algorithm"
_SSE_C_ATTR = "_moto_patches_sse_c"  # moto keeps no trace of SSE-C; we remember it on the key
_MP_EXTRA_ATTR = "_moto_patches_extra"  # what CreateMultipartUpload asked for but moto drops
_EB_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}

_apply_lock = threading.Lock()  # guards apply/remove only; never held during a request
_originals: list[tuple[Any, str, Any]] = []
_tls = threading.local()  # .requests (S3Response stack: in-process calls nest), .completing, .s3_eventbridge
_hook: Callable[[str, str], None] | None = None
_hook_running = False  # global, not per thread: in server mode the hook's calls run elsewhere


class ObjectLockProtected(S3ClientError):
    code = "AccessDenied"

    def __init__(self) -> None:
        super().__init__(
            "AccessDenied",
            "The encryption type for the specified object can't be updated because that object is "
            "protected by S3 Object Lock.",
        )


class KeyNotOwnedByBucketOwner(S3ClientError):
    code = "AccessDenied"

    def __init__(self) -> None:
        super().__init__(
            "AccessDenied",
            "The Amazon Web Services KMS key in the request must be owned by the same account as the "
            "bucket. Modify the request to specify a KMS key from the same account, and then try again.",
        )


class InvalidEncryptionRequest(S3ClientError):
    code = "InvalidRequest"

    def __init__(self, message: str) -> None:
        super().__init__("InvalidRequest", message)


# --------------------------------------------------------------------------- request context


def _stack() -> list[Any]:
    if not hasattr(_tls, "requests"):
        _tls.requests = []
    return _tls.requests


def _current() -> Any | None:
    stack = _stack()
    return stack[-1] if stack else None


def _header(name: str) -> str | None:
    req = _current()
    return req.headers.get(name) if req is not None else None


def _caller() -> tuple[str, str] | None:
    """(UserId, Account) exactly as moto's STS GetCallerIdentity answers for this request's key."""
    req = _current()
    if req is None:
        return None
    try:
        from moto.sts.models import sts_backends
        from moto.utilities.utils import get_partition

        sts = sts_backends[req.current_account][get_partition(req.region)]
        user_id, _arn, account = sts.get_caller_identity(req.get_access_key(), req.region)
        return user_id, account
    except Exception:  # noqa: BLE001 - a notification must never fail the request
        return None


def _wrap_entry(original: Callable[..., Any]) -> Callable[..., Any]:
    def entry(self: S3Response, *args: Any, **kwargs: Any) -> Any:
        stack = _stack()
        stack.append(self)
        try:
            return original(self, *args, **kwargs)
        finally:
            stack.pop()

    return entry


# --------------------------------------------------------------------------- commit hook / conditions


def _run_commit_hook(bucket: str, key: str) -> None:
    global _hook_running
    fn = _hook
    if fn is None or _hook_running:
        return
    _hook_running = True
    try:
        fn(bucket, key)
    finally:
        _hook_running = False


def _check_destination(backend: S3Backend, bucket: str, key: str, if_match: str | None,
                       if_none_match: str | None) -> None:
    # Patch 6: conditional writes are decided when the write commits, against the current object.
    if not if_match and not if_none_match:
        return
    current = backend.get_object(bucket, key)  # None for "missing" and for a delete marker
    if if_match:
        if current is None:
            raise MissingKey(key=key)
        if not same_etag(if_match, current.etag):
            raise PreconditionFailed("If-Match")
    if if_none_match == "*" and current is not None:
        raise PreconditionFailed("If-None-Match")


def _check_copy_source_if_match(src: Any) -> None:
    # Patch 2: CopySourceIfMatch is evaluated against the source S3 actually reads.
    wanted = _header("x-amz-copy-source-if-match")
    if wanted and not same_etag(wanted, src.etag):
        raise PreconditionFailed("x-amz-copy-source-If-Match")


class _SourceSnapshot:
    """The copy source as read before the hook: an overwrite disposes moto's FakeKey buffer."""

    def __init__(self, key: FakeKey) -> None:
        self.__dict__["_key"] = key
        self.__dict__["value"] = key.value

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_key"], name)


def _bucket_default(bucket: Any) -> tuple[str | None, str | None, Any]:
    if not bucket.encryption:
        return None, None, None
    rule = bucket.encryption["Rule"]
    default = rule["ApplyServerSideEncryptionByDefault"]
    return default["SSEAlgorithm"], default.get("KMSMasterKeyID"), rule.get("BucketKeyEnabled")


# --------------------------------------------------------------------------- backend wrappers


def _put_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_object(self: S3Backend, bucket_name: str, key_name: str, value: bytes, *args: Any,
                   **kwargs: Any) -> FakeKey:
        sse_c = _header(_SSE_C_HEADER)
        # Patch 4: S3 encrypts every new object (SSE-S3 unless the bucket default says otherwise).
        if not kwargs.get("encryption") and not sse_c and not self.get_bucket(bucket_name).encryption:
            kwargs["encryption"] = "AES256"
        # Patch 7: CompleteMultipartUpload announces itself once, not also as a Put.
        if getattr(_tls, "completing", False):
            kwargs["disable_notification"] = True
        key = original(self, bucket_name, key_name, value, *args, **kwargs)
        if sse_c:
            setattr(key, _SSE_C_ATTR, sse_c)
        return key

    return put_object


def _copy_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def copy_object(self: S3Backend, src_key: FakeKey, dest_bucket_name: str, dest_key_name: str,
                    **kwargs: Any) -> Any:
        _check_copy_source_if_match(src_key)
        _require_sse_c(src_key, _COPY_SSE_C_HEADER)
        if_match, if_none_match = _header("If-Match"), _header("If-None-Match")
        snapshot = _SourceSnapshot(src_key)
        _run_commit_hook(dest_bucket_name, dest_key_name)
        _check_destination(self, dest_bucket_name, dest_key_name, if_match, if_none_match)
        if not kwargs.get("encryption") and not _header(_SSE_C_HEADER):
            # Patch 4: a copy without SSE headers gets the bucket default, not moto's AES256 special case.
            algorithm, key_id, bucket_key = _bucket_default(self.get_bucket(dest_bucket_name))
            if algorithm:
                kwargs.update(encryption=algorithm, kms_key_id=key_id)
                kwargs["bucket_key_enabled"] = kwargs.get("bucket_key_enabled") or bucket_key
        return original(self, snapshot, dest_bucket_name, dest_key_name, **kwargs)

    return copy_object


def _create_multipart_upload(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_multipart_upload(self: S3Backend, bucket_name: str, key_name: str, metadata: Any,
                                storage_type: str, tags: Any, acl: Any, sse_encryption: str | None,
                                kms_key_id: str | None) -> Any:
        bucket = self.get_bucket(bucket_name)
        req = _current()
        sse_c = _header(_SSE_C_HEADER)
        bucket_key = _header("x-amz-server-side-encryption-bucket-key-enabled")
        if not sse_encryption and not sse_c:  # Patch 4
            algorithm, default_key, default_bucket_key = _bucket_default(bucket)
            sse_encryption = algorithm or "AES256"
            kms_key_id = kms_key_id or default_key
            bucket_key = bucket_key or default_bucket_key
        multipart = original(self, bucket_name, key_name, metadata, storage_type, tags, acl,
                             sse_encryption, kms_key_id)
        lock = (None, None, None)
        if req is not None:  # Patch 7: Object Lock headers (or the bucket default) apply to the result.
            lock = req._get_lock_details(bucket, bucket.object_lock_enabled)
            if (lock[0] == "ON" or lock[1] or lock[2]) and not bucket.object_lock_enabled:
                raise LockNotEnabled
        setattr(multipart, _MP_EXTRA_ATTR, {
            "bucket_key_enabled": str(bucket_key).lower() if bucket_key is not None else None,
            "lock_legal_status": lock[0], "lock_mode": lock[1], "lock_until": lock[2], "sse_c": sse_c,
        })
        return multipart

    return create_multipart_upload


def _complete_multipart_upload(original: Callable[..., Any]) -> Callable[..., Any]:
    def complete_multipart_upload(self: S3Backend, bucket_name: str, multipart_id: str,
                                  body: Any) -> Any:
        multipart = self.get_bucket(bucket_name).multiparts.get(multipart_id)
        if multipart is not None:
            if_match, if_none_match = _header("If-Match"), _header("If-None-Match")
            _run_commit_hook(bucket_name, multipart.key_name)
            _check_destination(self, bucket_name, multipart.key_name, if_match, if_none_match)
        extra = getattr(multipart, _MP_EXTRA_ATTR, {}) if multipart is not None else {}
        _tls.completing = True
        try:
            key = original(self, bucket_name, multipart_id, body)
        finally:
            _tls.completing = False
        if key is not None:
            for name in ("bucket_key_enabled", "lock_legal_status", "lock_mode", "lock_until"):
                if extra.get(name) is not None:
                    setattr(key, name, extra[name])
            if extra.get("sse_c"):
                key.encryption = None
                setattr(key, _SSE_C_ATTR, extra["sse_c"])
        return key

    return complete_multipart_upload


def _response_dict(original: property) -> property:
    def response_dict(self: FakeKey) -> dict[str, Any]:
        res = original.fget(self)  # type: ignore[misc]
        # Patch 3: DSSE-KMS objects name their key like SSE-KMS ones.
        if self.encryption == "aws:kms:dsse" and self.kms_key_id:
            res["x-amz-server-side-encryption-aws-kms-key-id"] = self.kms_key_id
        if getattr(self, _SSE_C_ATTR, None):
            res[_SSE_C_HEADER] = getattr(self, _SSE_C_ATTR)
        return res

    return property(response_dict)


# --------------------------------------------------------------------------- SSE-C (patch 8)


class SseCKeyRequired(S3ClientError):
    code = "InvalidRequest"

    def __init__(self) -> None:
        super().__init__(
            "InvalidRequest",
            "The object was stored using a form of Server Side Encryption. The correct parameters must be "
            "provided to retrieve the object.",
        )


def _require_sse_c(key: Any, header: str) -> None:
    # Patch 8: an SSE-C object is unreadable (and uncopyable) without its customer key.
    if key is not None and getattr(key, _SSE_C_ATTR, None) and not _header(header):
        raise SseCKeyRequired()


def _head_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def head_object(self: S3Response, bucket_name: str, query: dict[str, Any], key_name: str,
                    headers: Any) -> Any:
        if query.get("versionId") == ["null"] and not self.backend.get_bucket(bucket_name).is_versioned:
            # Patch 10: never versioned, so the current object is the null version.
            query = {name: value for name, value in query.items() if name != "versionId"}
        key = self.backend.get_object(bucket_name, key_name, version_id=query.get("versionId", [None])[0])
        if key is not None and getattr(key, _SSE_C_ATTR, None) and not headers.get(_SSE_C_HEADER):
            return 400, {}, ""  # HEAD has no body: S3 answers a bare 400 Bad Request
        return original(self, bucket_name, query, key_name, headers)

    return head_object


def _get_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_object(self: S3Response) -> Any:
        version_id = self.querystring.get("versionId", [None])[0]
        _require_sse_c(self.backend.get_object(self.bucket_name, self.parse_key_name(), version_id=version_id),
                       _SSE_C_HEADER)
        return original(self)

    return get_object


# --------------------------------------------------------------------------- retain-until (patch 9)


def _require_future_retain_until(resp: S3Response) -> None:
    value = resp.headers.get(_RETAIN_UNTIL_HEADER)
    if not value:
        return
    try:
        until = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return  # moto's own parsing answers for malformed dates
    if until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    if until <= datetime.now(UTC):
        raise InvalidArgumentError("The retain until date must be in the future!", _RETAIN_UNTIL_HEADER, value)


# --------------------------------------------------------------------------- response wrappers


def _copy_source(resp: S3Response) -> tuple[str, str, str | None]:
    source = resp.headers.get("x-amz-copy-source")
    if isinstance(source, bytes):
        source = source.decode("utf-8")
    parsed = urlparse(source)
    bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
    return bucket, key, parse_qs(parsed.query).get("versionId", [None])[0]


def _key_response_put(original: Callable[..., Any]) -> Callable[..., Any]:
    def key_response_put(self: S3Response, query: dict[str, Any], key_name: str) -> Any:
        multipart_part = query.get("uploadId") and query.get("partNumber")
        if not multipart_part and not any(q in query for q in ("retention", "legal-hold", "acl", "tagging")):
            _require_future_retain_until(self)  # Patch 9: PutObject, CopyObject
        if "encryption" in query and not multipart_part:
            self._set_action("KEY", "PUT", query)
            self._authenticate_and_authorize_s3_action(bucket_name=self.bucket_name, key_name=key_name)
            return _update_object_encryption(self, query, key_name)
        plain_copy = "x-amz-copy-source" in self.headers and not multipart_part and not any(
            q in query for q in ("retention", "legal-hold", "acl", "tagging"))
        if plain_copy:
            # Patch 7: CopyObject has no body, so no Content-MD5 can be required for Object Lock headers.
            self._set_action("KEY", "PUT", query)
            self._authenticate_and_authorize_s3_action(bucket_name=self.bucket_name, key_name=key_name)
            lock_headers = ("x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date")
            wants_lock = any(self.headers.get(h) for h in lock_headers) or (
                self.headers.get("x-amz-object-lock-legal-hold") == "ON")
            if wants_lock and not self.backend.get_bucket(self.bucket_name).object_lock_enabled:
                raise LockNotEnabled
            return self.copy_object()
        return original(self, query, key_name)

    return key_response_put


def _update_object_encryption(resp: S3Response, query: dict[str, Any], key_name: str) -> Any:
    """Patch 1: change only the SSE-KMS key / bucket-key flag of one existing object version."""
    resp.data["Action"] = "UpdateObjectEncryption"
    version_id = query.get("versionId", [None])[0]
    bucket = resp.backend.get_bucket(resp.bucket_name)
    key = resp.backend.get_object(resp.bucket_name, key_name, version_id=version_id,
                                  return_delete_marker=True)
    if isinstance(key, FakeDeleteMarker):
        if version_id:
            raise MethodNotAllowed(method="PUT", resource_type="DeleteMarker")
        raise MissingKey(key=key_name)
    if key is None:
        raise MissingVersion(key=key_name, version_id=version_id) if version_id else MissingKey(key=key_name)
    try:
        requested = xmltodict.parse(resp.body or b"<ObjectEncryption/>").get("ObjectEncryption") or {}
    except Exception:  # noqa: BLE001 - malformed XML is an invalid request
        requested = {}
    if not isinstance(requested, dict) or "SSE-KMS" not in requested:
        raise InvalidEncryptionRequest(
            "Requests that modify an object encryption configuration require a valid new encryption "
            "type. Valid values are SSEKMS.")
    sse_kms = requested["SSE-KMS"] if isinstance(requested["SSE-KMS"], dict) else {}
    arn = (sse_kms.get("KMSKeyArn") or "").strip()
    if not arn:
        raise InvalidEncryptionRequest(
            "Requests that modify an object's encryption type to SSE-KMS require an Amazon Web Services "
            "KMS key Amazon Resource Name (ARN).")
    if not _KMS_KEY_ARN.match(arn):
        raise InvalidEncryptionRequest(
            "Requests that modify an object's encryption type to SSE-KMS require a valid Amazon Web "
            "Services KMS key Amazon Resource Name (ARN).")
    bucket_key = str(sse_kms.get("BucketKeyEnabled") or "false").strip().lower()
    if bucket_key not in ("true", "false"):
        raise InvalidEncryptionRequest("The BucketKeyEnabled value isn't valid. Valid values are true or false.")
    if account_of_key_arn(arn) != bucket.account_id:
        raise KeyNotOwnedByBucketOwner()
    if getattr(key, _SSE_C_ATTR, None) or key.encryption == "aws:kms:dsse":
        raise InvalidEncryptionRequest(
            "The UpdateObjectEncryption operation doesn't support source objects with the encryption type "
            "DSSE-KMS or SSE-C. Only source objects encrypted with SSE-S3 or SSE-KMS are supported.")
    if key.encryption not in ("AES256", "aws:kms"):
        raise InvalidEncryptionRequest(
            "The UpdateObjectEncryption operation doesn't supported unencrypted source objects. Only "
            "source objects encrypted with SSE-S3 or SSE-KMS are supported.")
    if _lock_protected(key):
        raise ObjectLockProtected()
    key.encryption, key.kms_key_id = "aws:kms", arn
    key.bucket_key_enabled = "true" if bucket_key == "true" else None
    return 200, {}, b""


def _lock_protected(key: FakeKey) -> bool:
    # Any active retention (GOVERNANCE too: UpdateObjectEncryption has no bypass) or a legal hold.
    try:
        return key.is_locked(governance_bypass=False)
    except ValueError:
        return True  # a retain-until date moto cannot parse: refuse rather than guess


def _upload_part_copy(original: Callable[..., Any]) -> Callable[..., Any]:
    def upload_part_copy(self: S3Response) -> Any:
        src_bucket, src_key, src_version = _copy_source(self)
        src = self.backend.get_object(src_bucket, src_key, version_id=src_version)
        if src is not None:
            _check_copy_source_if_match(src)  # Patch 2
            _require_sse_c(src, _COPY_SSE_C_HEADER)
        status, headers, body = original(self)
        if src is not None and status == 200 and src.version_id != "null":
            headers["x-amz-copy-source-version-id"] = src.version_id  # Patch 7
        return status, headers, body

    return upload_part_copy


def _put_object_acl(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_object_acl(self: S3Response) -> Any:
        # Patch 7: PutObjectAcl with an AccessControlPolicy body (moto reads only x-amz-acl/x-amz-grant-*,
        # then silently falls back to the bucket ACL). The enforcer's ACL round-trip needs the body form.
        if self._acl_from_headers(self.headers) is not None or not self.body:
            return original(self)
        acl = self._acl_from_body()
        key_name, version_id = self.parse_key_name(), self._get_param("versionId")
        if version_id:
            key = self.backend.get_object(self.bucket_name, key_name, version_id=version_id)
            if key is None:
                raise MissingVersion(key=key_name, version_id=version_id)
            key.set_acl(acl)
        else:
            self.backend.put_object_acl(self.bucket_name, key_name, acl)
        return 200, self._get_cors_headers_other(), ""

    return put_object_acl


def _key_response_post(original: Callable[..., Any]) -> Callable[..., Any]:
    def key_response_post(self: S3Response, request: Any, body: bytes, bucket_name: str,
                          query: dict[str, Any], key_name: str) -> Any:
        if "uploads" in query:
            _require_future_retain_until(self)  # Patch 9: CreateMultipartUpload
        status, headers, out = original(self, request, body, bucket_name, query, key_name)
        if status != 200 or not isinstance(headers, dict):
            return status, headers, out
        multipart = None
        if "uploads" in query:  # Patch 4/7: CreateMultipartUpload states the encryption it will use
            found = re.search(rb"<UploadId>([^<]+)</UploadId>", out if isinstance(out, bytes) else out.encode())
            multipart = found and self.backend.get_bucket(bucket_name).multiparts.get(found.group(1).decode())
            if multipart:
                extra = getattr(multipart, _MP_EXTRA_ATTR, {})
                sse = {"x-amz-server-side-encryption": multipart.sse_encryption,
                       "x-amz-server-side-encryption-aws-kms-key-id": multipart.kms_key_id,
                       "x-amz-server-side-encryption-bucket-key-enabled": extra.get("bucket_key_enabled")}
                headers.update({k: v for k, v in sse.items() if v and v != "false"})
        elif query.get("uploadId"):
            key = self.backend.get_object(bucket_name, key_name)
            if key is not None:
                headers.update({k: v for k, v in key.response_dict.items()
                                if k.startswith("x-amz-server-side-encryption")})
        return status, headers, out

    return key_response_post


# --------------------------------------------------------------------------- notifications (patch 5)


def _get_s3_event(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_s3_event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        event = original(event_name, bucket, key, notification_id)
        caller = _caller()
        version_id = getattr(key, "version_id", None)
        for record in event.get("Records", []):
            if caller is not None:
                record.setdefault("userIdentity", {"principalId": "AWS:" + caller[0]})
            if version_id not in (None, "null"):  # versioned buckets name the version written
                record["s3"]["object"].setdefault("versionId", version_id)
        return event

    return get_s3_event


def _send_event(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_event(account_id: str, event_name: Any, bucket: Any, key: Any) -> None:
        req = _current()
        if (event_name == notifications.S3NotificationEvent.OBJECT_TAGGING_PUT_EVENT and req is not None
                and "tagging" not in (getattr(req, "querystring", None) or {})):
            return  # tags written by PutObject/CopyObject/CompleteMultipartUpload raise no ObjectTagging event
        original(account_id, event_name, bucket, key)

    return send_event


def _send_event_bridge_message(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
        caller = _caller()
        _tls.s3_eventbridge = (str(getattr(event_name, "value", event_name)), caller[1] if caller else account_id)
        try:
            original(account_id, bucket, event_name, key)
        finally:
            _tls.s3_eventbridge = None

    return send_event_bridge_message


def _send_to_targets(original: Callable[..., Any]) -> Callable[..., Any]:
    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        context = getattr(_tls, "s3_eventbridge", None)
        detail = original_event.get("detail") if isinstance(original_event, dict) else None
        if context and isinstance(detail, dict) and original_event.get("source") == "aws.s3":
            event_name, requester = context
            detail["requester"] = requester
            if event_name in _EB_REASONS:
                detail["reason"] = _EB_REASONS[event_name]
            obj = detail.get("object") or {}
            if "eTag" in obj:
                obj.setdefault("etag", obj["eTag"])
        return original(self, original_event, transform_input)

    return send_to_targets


# --------------------------------------------------------------------------- install / remove


def _targets() -> list[tuple[Any, str, Callable[[Any], Any]]]:
    from moto.events.models import Rule

    return [
        (S3Response, "key_response", _wrap_entry),
        (S3Response, "bucket_response", _wrap_entry),
        (S3Response, "_key_response_put", _key_response_put),
        (S3Response, "_key_response_post", _key_response_post),
        (S3Response, "upload_part_copy", _upload_part_copy),
        (S3Response, "put_object_acl", _put_object_acl),
        (S3Response, "head_object", _head_object),
        (S3Response, "get_object", _get_object),
        (S3Backend, "put_object", _put_object),
        (S3Backend, "copy_object", _copy_object),
        (S3Backend, "create_multipart_upload", _create_multipart_upload),
        (S3Backend, "complete_multipart_upload", _complete_multipart_upload),
        (FakeKey, "response_dict", _response_dict),
        (notifications, "_get_s3_event", _get_s3_event),
        (notifications, "send_event", _send_event),
        (notifications, "_send_event_bridge_message", _send_event_bridge_message),
        (Rule, "send_to_targets", _send_to_targets),
    ]


def is_applied() -> bool:
    return bool(_originals)


def apply() -> None:
    """Install every patch (idempotent)."""
    with _apply_lock:
        if _originals:
            return
        for owner, name, make in _targets():
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            _originals.append((owner, name, original))
            setattr(owner, name, make(original))


def remove() -> None:
    """Put moto's own behaviour back."""
    with _apply_lock:
        while _originals:
            owner, name, original = _originals.pop()
            setattr(owner, name, original)


@contextmanager
def patched() -> Iterator[None]:
    """Apply on enter; on exit restore whatever state there was before."""
    was_applied = is_applied()
    apply()
    try:
        yield
    finally:
        if not was_applied:
            remove()


@contextmanager
def commit_hook(fn: Callable[[str, str], None]) -> Iterator[None]:
    """Run ``fn(bucket, key)`` in CopyObject / CompleteMultipartUpload between reading the
    source and committing the destination (before If-Match is checked)."""
    global _hook
    previous, _hook = _hook, fn
    try:
        yield
    finally:
        _hook = previous
