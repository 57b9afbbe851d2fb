"""A demo HTML audit report: the README's screenshot (``make report-screenshot``).

    python -m ops.audit_html_demo OUTPUT.html

Builds the sandbox's two demo buckets (``DEMO``: prefix1/ and prefix2/ on SSE-KMS,
prefix3/ on DSSE-KMS, prefix4/ unmapped) in an in-process moto with the project's
patches, writes objects in a fixed mix of right and wrong encryptions, runs the real
audit over both buckets (``run_audits``, as ``ops audit --all``) and writes its HTML.
No server, no network, no AWS account.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import boto3
from moto import mock_aws

from components.config import DEMO
from enforcer.mapping import Mapping, StaticMappings
from ops import moto_patches
from ops.audit_html import render_html
from ops.audit_run import run_audits

REGION = "us-east-1"
BUCKETS = ("s3pk-demo", "s3pk-demo-versioned")
SOURCE = "mapping table s3-prefix-keys-dev-mappings"
# Per prefix: how many objects are written each way. "kms:<key>" / "dsse:<key>" name
# one of the demo keys or "other" (a key no prefix maps); "sse-s3" is S3's default.
MIX = {
    "prefix1/": {"kms:prefix1": 7, "sse-s3": 2, "kms:other": 1},
    "prefix2/": {"kms:prefix2": 9, "kms:other": 1},
    "prefix3/": {"dsse:prefix3": 5, "kms:prefix3": 2},
    "prefix4/": {"sse-s3": 3},
}


def write_objects(s3, bucket: str, keys: dict[str, str], skew: int) -> None:
    for prefix, ways in MIX.items():
        n = 0
        for way, count in ways.items():
            kind, _, key_name = way.partition(":")
            extra = {}
            if kind in ("kms", "dsse"):
                extra = {"ServerSideEncryption": "aws:kms" if kind == "kms" else "aws:kms:dsse",
                         "SSEKMSKeyId": keys[key_name]}
            # The second bucket has one compliant object fewer per prefix: two different bars.
            for _ in range(count - (skew if kind != "sse-s3" and key_name != "other" else 0)):
                s3.put_object(Bucket=bucket, Key=f"{prefix}report-{n:03d}.csv", Body=b"demo", **extra)
                n += 1


def build(generated: datetime | None = None) -> str:
    with moto_patches.patched(), mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        kms = boto3.client("kms", region_name=REGION)
        keys = {name: kms.create_key(Description=name)["KeyMetadata"]["Arn"] for name in [*DEMO.key_names, "other"]}
        rows = []
        for skew, bucket in enumerate(BUCKETS):
            s3.create_bucket(Bucket=bucket)
            rows += [
                Mapping.from_row({"bucket_name": bucket, "prefix": prefix, "kms_key_arn": keys[key],
                                  "dual_layer_encryption": dsse})
                for prefix, key, dsse in DEMO.prefixes
            ]
            write_objects(s3, bucket, keys, skew)
        audits = run_audits(s3, StaticMappings(rows), BUCKETS, concurrency=4, source=SOURCE)
        return render_html(audits.reports, generated=generated)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m ops.audit_html_demo OUTPUT.html", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(build(datetime.now(UTC)), encoding="utf-8")
    print(f"wrote {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
