"""enforcer.rekey's pure parts: error classes, grant headers and copy plans, no AWS."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from enforcer import rekey


def client_error(code: str, status: int, operation: str = "CopyObject") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": f"{code} happened"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation,
    )


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
    exc = client_error(code, status)
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
        rekey.raise_classified(client_error(code, status))


def test_transient_codes_come_from_botocores_own_retry_lists():
    # The private lists this module reads; a botocore that renames them fails here, not in Lambda.
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
