"""Make moto behave like S3 where this product depends on it: the patches, shared by the
test-suite and the local sandbox, and the names their callers import.

The table of patches and the moto version they were measured against is in
:mod:`ops.moto_patches.registry`; the patches themselves are in ``objects`` (S3 HEAD and
objects), ``copies`` (S3 copies and multipart) and ``events`` (event notifications).
"""

from ops.moto_patches.context import commit_hook
from ops.moto_patches.objects import (
    InvalidEncryptionRequest,
    KeyNotOwnedByBucketOwner,
    ObjectLockProtected,
    SseCKeyRequired,
)
from ops.moto_patches.registry import MOTO_VERSION_MEASURED, PATCHES, apply, is_applied, patched, remove

__all__ = [
    "MOTO_VERSION_MEASURED",
    "PATCHES",
    "InvalidEncryptionRequest",
    "KeyNotOwnedByBucketOwner",
    "ObjectLockProtected",
    "SseCKeyRequired",
    "apply",
    "commit_hook",
    "is_applied",
    "patched",
    "remove",
]
