"""A platform team's stack, generated: N buckets x M tenant prefixes, each prefix its own key.

Shared by the quota tests and the scale benchmark, so both measure the same stack:
some prefixes DSSE, some buckets strict, some on EventBridge, keys in two accounts.
"""

from __future__ import annotations

import uuid
from typing import Any

ACCOUNTS = ("111122223333", "444455556666")


def key_arn(region: str, bucket: int, prefix: int) -> str:
    key_id = uuid.uuid5(uuid.NAMESPACE_URL, f"tenant-key-{bucket}-{prefix}")
    return f"arn:aws:kms:{region}:{ACCOUNTS[(bucket + prefix) % 2]}:key/{key_id}"


def platform_config(buckets: int = 200, prefixes: int = 10, *, region: str = "eu-west-1") -> dict[str, Any]:
    """The raw config map (as run_program takes it) of the generated stack."""
    config: dict[str, Any] = {}
    for b in range(buckets):
        bucket: dict[str, Any] = {
            "prefixes": {
                f"tenant-{p:03d}/": {"kmsKeyArn": key_arn(region, b, p), **({"dualLayer": True} if p % 4 == 3 else {})}
                for p in range(prefixes)
            }
        }
        if b % 5 == 0:
            bucket["strict"] = True
        if b % 7 == 0:
            bucket["notification"] = "eventbridge"
        if b % 11 == 0:
            bucket["defaultKmsKeyArn"] = key_arn(region, b, 999)
            bucket["oldVersionAction"] = "keep"
        config[f"platform-tenant-data-{b:04d}"] = bucket
    return {
        "aws:region": region,
        "s3-prefix-keys:demo": False,
        "s3-prefix-keys:buckets": config,
        "s3-prefix-keys:sourceKeyArns": [key_arn(region, 9999, 0)],
    }
