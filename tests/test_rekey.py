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
