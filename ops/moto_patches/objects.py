"""S3 HEAD and object patches: UpdateObjectEncryption (1), DSSE key id (3), default
encryption of PutObject (4), SSE-C (8), retain-until dates (9), the null version (10), PutObjectAcl (7)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import xmltodict
from moto.s3.exceptions import (
    InvalidArgumentError,
    LockNotEnabled,
    MethodNotAllowed,
    MissingKey,
    MissingVersion,
    S3ClientError,
)
from moto.s3.models import FakeDeleteMarker, FakeKey, S3Backend
from moto.s3.responses import S3Response

from enforcer.arns import account_of_key_arn
from ops.moto_patches.context import _header, _tls

_RETAIN_UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
_KMS_KEY_ARN = re.compile(r"^arn:aws[-a-z0-9]*:kms:[-a-z0-9]*:[0-9]{12}:key/.+$")
_SSE_C_HEADER = "x-amz-server-side-encryption-customer-algorithm"
_SSE_C_ATTR = "_moto_patches_sse_c"  # moto keeps no trace of SSE-C; we remember it on the key


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
