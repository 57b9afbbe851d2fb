"""enforcer.rekey's pure parts: error classes, grant headers and copy plans, no AWS."""

from __future__ import annotations

from datetime import UTC, datetime

import boto3
import botocore
import pytest
from botocore.exceptions import ClientError
from botocore.retries import standard

from enforcer import rekey
from enforcer.decision import ObjectState
from enforcer.mapping import Target
from tests.conftest import aws_error


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("KMS.ThrottlingException", 400),
        ("KMS.LimitExceededException", 400),
        ("ThrottlingException", 400),
        ("SlowDown", 503),
        ("RequestTimeout", 400),
        ("ExpiredToken", 400),
        ("RequestTimeTooSkewed", 403),
        ("InternalError", 500),
        ("KMS.KMSInternalException", 500),
        ("TooManyRequests", 429),
    ],
)
def test_throttling_timeouts_and_signing_errors_on_a_write_are_transient(code, status):
    exc = aws_error(code, status, "CopyObject")
    with pytest.raises(ClientError) as raised:
        rekey.raise_classified(exc)
    assert raised.value is exc  # re-raised as is: the SQS message becomes a batch item failure


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("KMS.AccessDeniedException", 403),
        ("AccessDenied", 403),
        ("KMS.DisabledException", 400),
        ("InvalidArgument", 400),
        ("SomethingNew", 400),
    ],
)
def test_grant_key_and_argument_errors_on_a_write_are_permanent(code, status):
    with pytest.raises(rekey.PermanentFailure, match=code):
        rekey.raise_classified(aws_error(code, status, "CopyObject"))


@pytest.mark.parametrize(
    ("checker", "attribute"),
    [
        (standard.ThrottledRetryableChecker, "_THROTTLED_ERROR_CODES"),
        (standard.TransientRetryableChecker, "_TRANSIENT_ERROR_CODES"),
    ],
)
def test_botocores_private_retry_lists_are_still_there(checker, attribute):
    # enforcer/rekey.py reads these private lists at import. Renamed, every enforcer
    # import fails; emptied, throttling and timeouts would be alerted as permanent.
    codes = getattr(checker, attribute, None)
    assert codes, (
        f"botocore {botocore.__version__}: botocore.retries.standard.{checker.__name__}.{attribute} "
        f"is {'gone' if codes is None else 'empty'}; enforcer/rekey.py builds TRANSIENT_CODES from it, "
        "so without it throttled or timed-out writes are alerted as permanent failures. Find where this botocore "
        "keeps its retryable error codes and read them from there."
    )
    assert set(codes) <= rekey.TRANSIENT_CODES


def test_transient_codes_come_from_botocores_own_retry_lists():
    assert {"Throttling", "ThrottlingException", "SlowDown", "RequestTimeout"} <= rekey.TRANSIENT_CODES
    assert "KMS.ThrottlingException" in rekey.TRANSIENT_CODES


WRITER = "a" * 64  # the enforcer's account, which owns every copy it writes
FOREIGN = "f" * 64  # another account that wrote the object into an ObjectWriter bucket


def acl(owner: str, *grants: tuple[dict, str]) -> dict:
    return {"Owner": {"ID": owner}, "Grants": [{"Grantee": g, "Permission": p} for g, p in grants]}


def user(canonical_id: str) -> dict:
    return {"Type": "CanonicalUser", "ID": canonical_id}


def test_a_foreign_owners_only_grant_goes_along_with_the_copy():
    # The copy is owned by the writer; without this header the foreign owner loses all access.
    assert rekey.acl_grant_params(acl(FOREIGN, (user(FOREIGN), "FULL_CONTROL"))) == {
        "GrantFullControl": f'id="{FOREIGN}"'
    }


def test_every_grant_is_reapplied_as_it_was():
    all_users = {"Type": "Group", "URI": "http://acs.amazonaws.com/groups/global/AllUsers"}
    params = rekey.acl_grant_params(
        acl(
            FOREIGN,
            (user(FOREIGN), "FULL_CONTROL"),
            (user(WRITER), "READ"),
            (all_users, "READ"),
            ({"Type": "AmazonCustomerByEmail", "EmailAddress": "ops@example.com"}, "READ_ACP"),
            (user(WRITER), "WRITE"),  # a bucket permission; meaningless on an object
        )
    )
    assert params == {
        "GrantFullControl": f'id="{FOREIGN}"',
        "GrantRead": f'id="{WRITER}", uri="{all_users["URI"]}"',
        "GrantReadACP": 'emailAddress="ops@example.com"',
    }


def test_the_writers_own_default_acl_is_reapplied_unchanged():
    assert rekey.acl_grant_params(acl(WRITER, (user(WRITER), "FULL_CONTROL"))) == {
        "GrantFullControl": f'id="{WRITER}"'
    }


def test_every_checksum_algorithm_of_this_botocore_is_carried():
    model = boto3.session.Session().client("s3", region_name="us-east-1").meta.service_model
    head_fields = {f for f in model.operation_model("HeadObject").output_shape.members if f.startswith("Checksum")}
    assert set(rekey._CHECKSUM_FIELDS) == head_fields - {"ChecksumType"}
    assert set(rekey._CHECKSUM_FIELDS.values()) == set(model.shape_for("ChecksumAlgorithm").enum)


TARGET = Target("aws:kms:dsse", "arn:aws:kms:us-east-1:111122223333:key/k", False)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def plan_for(**head) -> rekey.CopyPlan:
    state = ObjectState("bkt", "k", etag='"e"', size=10, sse_type="AES256", head=head)
    return rekey.CopyPlan.build(state, TARGET, {}, NOW)


@pytest.mark.parametrize(
    ("head", "algorithm", "checksum_type"),
    [
        ({"ChecksumCRC32": "x", "ChecksumType": "FULL_OBJECT"}, "CRC32", "FULL_OBJECT"),
        ({"ChecksumCRC64NVME": "x", "ChecksumType": "FULL_OBJECT"}, "CRC64NVME", "FULL_OBJECT"),
        ({"ChecksumSHA256": "x", "ChecksumType": "COMPOSITE"}, "SHA256", "COMPOSITE"),
        # a single-PUT SHA256 object is FULL_OBJECT, which a multipart SHA256 upload cannot be
        ({"ChecksumSHA256": "x", "ChecksumType": "FULL_OBJECT"}, "SHA256", None),
        ({"ChecksumXXHASH64": "x"}, "XXHASH64", None),
        ({"ChecksumSHA512": "x", "ChecksumType": "FULL_OBJECT"}, "SHA512", None),
        ({}, None, None),
    ],
)
def test_the_copy_asks_for_the_sources_checksum_algorithm_and_type(head, algorithm, checksum_type):
    plan = plan_for(**head)
    assert plan.params.get("ChecksumAlgorithm") == algorithm
    assert plan.checksum_type == checksum_type
    assert "ChecksumType" not in plan.params  # CopyObject has no such parameter
