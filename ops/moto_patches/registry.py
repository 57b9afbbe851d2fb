"""The registry of moto patches: the AWS behaviour each one restores, the moto version they
were measured against, and installing / removing them all.

Every patch wraps a moto method (originals are kept and put back by :func:`remove`); both
``moto.mock_aws`` and a ``ThreadedMotoServer`` in the same process dispatch through the
patched classes.

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
11    GetBucketReplication (API_GetBucketReplication, API_Replication- test_gap11_replication_rules_lose_filter_and_criteria
      Rule) answers the configuration as it was put: each rule's
      Filter, DeleteMarkerReplication, SourceSelectionCriteria and
      ExistingObjectReplication. moto 5.2.5 answers every rule with
      Filter {"Prefix": ""} and DeleteMarkerReplication Disabled,
      and drops the rest, so the engine would see every rule cover
      every key and no rule replicate SSE-KMS objects.
12    The default object ACL (API_CreateMultipartUpload, x-amz-acl:  test_gap12_multipart_object_has_no_acl
      "By default, all objects are private. Only the owner has full
      access control."): an object completed from a multipart upload
      created without ACL headers answers GetObjectAcl with the
      owner's FULL_CONTROL grant. moto 5.2.5 stores no ACL and
      answers 500 ('NoneType' object has no attribute 'grants'),
      which failed every copy-path re-key of a multipart object.
====  ===========================================================  ===========================================
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from moto.s3 import notifications
from moto.s3.models import FakeKey, S3Backend
from moto.s3.responses import S3Response

from ops.moto_patches.buckets import _get_bucket_replication
from ops.moto_patches.context import _wrap_entry
from ops.moto_patches.copies import (
    _complete_multipart_upload,
    _copy_object,
    _create_multipart_upload,
    _key_response_post,
    _upload_part_copy,
)
from ops.moto_patches.events import _get_s3_event, _send_event, _send_event_bridge_message, _send_to_targets
from ops.moto_patches.objects import (
    _get_object,
    _head_object,
    _key_response_put,
    _put_object,
    _put_object_acl,
    _response_dict,
)

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
    11: ("API_GetBucketReplication, API_ReplicationRule (the configuration as it was put)",
         ("test_gap11_replication_rules_lose_filter_and_criteria",)),
    12: ("API_CreateMultipartUpload (x-amz-acl: by default all objects are private)",
         ("test_gap12_multipart_object_has_no_acl",)),
}

_apply_lock = threading.Lock()  # guards apply/remove only; never held during a request
_originals: list[tuple[Any, str, Any]] = []


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
        (S3Response, "get_bucket_replication", _get_bucket_replication),
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
