"""enforcer.rekey's HEAD reading and part sizing, without AWS: cases `make mutation` found untested.

HEAD runs against botocore's Stubber, which checks each request and response against
the S3 service model, so a wrong member name fails here as it would against AWS.
"""

from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber

from enforcer import rekey
from enforcer.decision import Presence

KEY = "arn:aws:kms:us-east-1:111122223333:key/11111111-1111-1111-1111-111111111111"
UNTIL = datetime(2027, 1, 1, tzinfo=UTC)


@pytest.fixture
def s3():
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_inspect_reads_everything_the_decision_needs_from_one_head(s3):
    client, stub = s3
    head = {
        "VersionId": "v2",
        "ETag": '"abc"',
        "ContentLength": 42,
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": KEY,
        "BucketKeyEnabled": True,
        "StorageClass": "INTELLIGENT_TIERING",
        "ArchiveStatus": "ARCHIVE_ACCESS",
        "Restore": 'ongoing-request="true"',
        "ObjectLockMode": "GOVERNANCE",
        "ObjectLockRetainUntilDate": UNTIL,
        "ObjectLockLegalHoldStatus": "ON",
    }
    # ChecksumMode so that the copy can ask for the same checksum (HeadObject, S3 API Reference).
    stub.add_response("head_object", head, {"Bucket": "b", "Key": "k", "ChecksumMode": "ENABLED", "VersionId": "v2"})
    state = rekey.inspect(client, "b", "k", "v2")
    assert state.presence is Presence.PRESENT
    assert (state.bucket, state.key, state.version_id, state.etag, state.size) == ("b", "k", "v2", '"abc"', 42)
    assert (state.sse_type, state.kms_key_arn, state.bucket_key_enabled) == ("aws:kms", KEY, True)
    assert (state.storage_class, state.archive_status, state.restore) == (
        "INTELLIGENT_TIERING", "ARCHIVE_ACCESS", 'ongoing-request="true"'
    )
    assert (state.lock_mode, state.lock_retain_until, state.legal_hold) == ("GOVERNANCE", UNTIL, True)
    assert state.head["ETag"] == '"abc"'


def test_a_bare_head_is_a_standard_unversioned_unlocked_object(s3):
    # HEAD omits StorageClass for STANDARD, and VersionId where the bucket never versioned.
    client, stub = s3
    stub.add_response("head_object", {"ETag": '"e"'}, {"Bucket": "b", "Key": "k", "ChecksumMode": "ENABLED"})
    state = rekey.inspect(client, "b", "k")
    assert (state.storage_class, state.version_id, state.size) == ("STANDARD", None, 0)
    assert (state.lock_mode, state.lock_retain_until, state.legal_hold) == (None, None, False)


def test_a_legal_hold_that_is_off_holds_nothing(s3):
    client, stub = s3
    stub.add_response(
        "head_object", {"ObjectLockLegalHoldStatus": "OFF"}, {"Bucket": "b", "Key": "k", "ChecksumMode": "ENABLED"}
    )
    assert rekey.inspect(client, "b", "k").legal_hold is False


def test_a_delete_marker_is_gone(s3):
    client, stub = s3
    stub.add_response("head_object", {"DeleteMarker": True}, {"Bucket": "b", "Key": "k", "ChecksumMode": "ENABLED"})
    assert rekey.inspect(client, "b", "k").presence is Presence.GONE


@pytest.mark.parametrize(("code", "status"), [("404", 404), ("405", 405)], ids=["missing", "delete-marker-version"])
def test_a_missing_object_or_a_delete_marker_version_is_gone(s3, code, status):
    # HeadObject on a version that is a delete marker answers 405 Method Not Allowed.
    client, stub = s3
    stub.add_client_error("head_object", code, http_status_code=status)
    state = rekey.inspect(client, "b", "k", "v1")
    assert (state.presence, state.bucket, state.key, state.version_id) == (Presence.GONE, "b", "k", "v1")


# UploadPartCopy (S3 API Reference, "Amazon S3 multipart upload limits"): parts of 5 MiB
# to 5 GiB, the last one excepted, and at most 10,000 parts.
@pytest.mark.parametrize("size", [1, 5 * rekey.MIB, 6 * 1024**3, 5 * 1024**4, 48 * 1024**4])
@pytest.mark.parametrize("threshold", [1, 64 * rekey.MIB, 5 * 1024**3])
def test_part_sizes_stay_inside_the_multipart_limits(size, threshold):
    part = rekey.part_size_for(size, threshold)
    assert rekey.MIN_PART <= part <= rekey.MAX_PART
    assert -(-size // part) <= rekey.MAX_PARTS


def test_parts_are_the_threshold_up_to_the_preferred_size():
    gib = 1024**3
    assert rekey.part_size_for(10 * gib, 64 * rekey.MIB) == 64 * rekey.MIB
    assert rekey.part_size_for(10 * gib, 5 * gib) == rekey.PREFERRED_MAX_PART
    # Only the 10,000-part limit makes them larger than preferred.
    assert rekey.part_size_for(10_000 * gib, 64 * rekey.MIB) == gib
