"""S3 copy and multipart patches: CopySourceIfMatch (2), default encryption of copies and
uploads (4), destination conditions and the commit hook's place (6), copy fidelity (7), SSE-C sources (8),
the default ACL of a multipart upload (12)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from moto.s3.exceptions import LockNotEnabled, MissingKey, PreconditionFailed
from moto.s3.models import FakeKey, S3Backend, get_canned_acl
from moto.s3.responses import S3Response

from enforcer.decision import same_etag
from ops.moto_patches.context import _current, _header, _run_commit_hook, _tls
from ops.moto_patches.objects import _SSE_C_ATTR, _SSE_C_HEADER, _require_future_retain_until, _require_sse_c

_COPY_SSE_C_HEADER = "x-amz-copy-source-server-side-encryption-customer-algorithm"
_MP_EXTRA_ATTR = "_moto_patches_extra"  # what CreateMultipartUpload asked for but moto drops


# --------------------------------------------------------------------------- conditions


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
        if acl is None:
            # Patch 12: "By default, all objects are private. Only the owner has full access control."
            # (API_CreateMultipartUpload, x-amz-acl). moto keeps None and CompleteMultipartUpload puts
            # it on the object, so its GetObjectAcl answers 500 ('NoneType' object has no attribute 'grants').
            acl = get_canned_acl("private")
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


# --------------------------------------------------------------------------- response wrappers


def _copy_source(resp: S3Response) -> tuple[str, str, str | None]:
    source = resp.headers.get("x-amz-copy-source")
    if isinstance(source, bytes):
        source = source.decode("utf-8")
    parsed = urlparse(source)
    bucket, key = unquote(parsed.path).lstrip("/").split("/", 1)
    return bucket, key, parse_qs(parsed.query).get("versionId", [None])[0]


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
