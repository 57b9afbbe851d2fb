"""KMS key ARN rules, shared by the engine, the config model and the policy pack.

Keys are compared as whole ARNs, never by substring: a key ID is a suffix of its ARN,
and "contains the mapped key ID" also matches an ARN of another account or region
(the bug Cloud Custodian shipped in its encryption check).
"""

from __future__ import annotations

import re
from enum import Enum

_KEY_ARN = re.compile(
    r"^arn:(?P<partition>aws|aws-cn|aws-us-gov|aws-iso|aws-iso-[a-z]|aws-eusc):kms:"
    r"(?P<region>[a-z]{2}(-[a-z]+)+-\d):(?P<account>\d{12}):key/"
    r"(?P<key_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$"
)
_ALIAS_ARN = re.compile(r"^arn:[a-z-]+:kms:[^:]*:\d{12}:alias/(?P<name>.+)$")
_KEY_ID = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32})$")


class KeyArnProblem(Enum):
    ALIAS = "alias"
    KEY_ID = "key-id"
    AWS_MANAGED_S3 = "aws/s3"
    NOT_A_KEY_ARN = "not-a-key-arn"


def check_key_arn(value: object) -> KeyArnProblem | None:
    """None when ``value`` is a full KMS key ARN, else what is wrong with it."""
    if not isinstance(value, str):
        return KeyArnProblem.NOT_A_KEY_ARN
    if value in ("alias/aws/s3", "aws/s3") or (m := _ALIAS_ARN.match(value)) and m["name"] == "aws/s3":
        return KeyArnProblem.AWS_MANAGED_S3
    if value.startswith("alias/") or _ALIAS_ARN.match(value):
        return KeyArnProblem.ALIAS
    if _KEY_ID.match(value):
        return KeyArnProblem.KEY_ID
    if not _KEY_ARN.match(value):
        return KeyArnProblem.NOT_A_KEY_ARN
    return None


def region_of_key_arn(arn: str) -> str:
    return arn.split(":")[3]


def account_of_key_arn(arn: str) -> str:
    return arn.split(":")[4]
