"""Strict mode's deny statements, evaluated with IAM's documented condition semantics.

Each row is the request context of one call a writer or the enforcer makes, written
out here from the S3 API and the Service Authorization Reference (not taken from
``components.strict_mode``'s own rule). Where AWS does not document the context
(the part operations' encryption keys, ``s3:ObjectCreationOperation`` on them,
UpdateObjectEncryption's keys), every reading is a row.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.iam_conditions import (
    Request,
    Unsupported,
    condition_holds,
    denying_statements,
    operator_holds,
)
from components.strict_mode import rule_problems, strict_mode_size, strict_mode_statements

BUCKET = "tenant-data"
KMS_PREFIX, DSSE_PREFIX = "tenant-a/", "tenant-b/"
KEY_A = "arn:aws:kms:us-east-1:111122223333:key/1a2b3c4d-1111-4aaa-8bbb-0123456789ab"
KEY_B = "arn:aws:kms:us-east-1:111122223333:key/2b3c4d5e-2222-4bbb-8ccc-123456789abc"
OTHER_KEY = "arn:aws:kms:us-east-1:111122223333:key/9f9f9f9f-9999-4fff-8fff-999999999999"
ENFORCER = "arn:aws:iam::111122223333:role/s3-prefix-keys-prod-enforcer-role-1a2b3c4"
WRITER = "arn:aws:iam::111122223333:role/tenant-a-writer"
SSE, KEY = "s3:x-amz-server-side-encryption", "s3:x-amz-server-side-encryption-aws-kms-key-id"
SSE_C, COPY, CREATION = "s3:x-amz-server-side-encryption-customer-algorithm", "s3:x-amz-copy-source", "s3:ObjectCreationOperation"
PUT, UPDATE = "s3:PutObject", "s3:UpdateObjectEncryption"


@pytest.fixture(scope="module")
def statements():
    return strict_mode_statements(
        partition="aws",
        bucket=BUCKET,
        mappings=[(KMS_PREFIX, KEY_A, "aws:kms"), (DSSE_PREFIX, KEY_B, "aws:kms:dsse")],
        enforcer_role_arn=ENFORCER,
    )


def obj(prefix: str = KMS_PREFIX, key: str = "report.csv") -> str:
    return f"arn:aws:s3:::{BUCKET}/{prefix}{key}"


def req(action: str, principal: str | None = WRITER, resource: str | None = None, **context: str) -> Request:
    ctx = dict(context)
    if principal is not None:
        ctx["aws:PrincipalArn"] = principal
    return Request(action, resource or obj(), ctx)


def kms(key: str = KEY_A, sse: str = "aws:kms") -> dict[str, str]:
    return {SSE: sse, KEY: key}


# (call, context without the principal, denied?) for a writer under the SSE-KMS prefix.
WRITER_CALLS = [
    ("PutObject, the prefix's key", {CREATION: "true", **kms()}, False),
    ("PutObject, another key", {CREATION: "true", **kms(OTHER_KEY)}, True),
    ("PutObject, aws:kms without a key (aws/s3)", {CREATION: "true", SSE: "aws:kms"}, True),
    ("PutObject, DSSE instead of SSE-KMS", {CREATION: "true", **kms(sse="aws:kms:dsse")}, True),
    ("PutObject, SSE-S3", {CREATION: "true", SSE: "AES256"}, True),
    ("PutObject, SSE-C", {CREATION: "true", SSE_C: "AES256"}, True),
    ("CopyObject, the prefix's key", {CREATION: "true", COPY: "src/a", **kms()}, False),
    ("CopyObject, another key", {CREATION: "true", COPY: "src/a", **kms(OTHER_KEY)}, True),
    ("CopyObject, no encryption header", {CREATION: "true", COPY: "src/a"}, True),
    ("CreateMultipartUpload, the prefix's key", {CREATION: "false", **kms()}, False),
    ("CreateMultipartUpload, the prefix's key, no creation key", kms(), False),
    ("CreateMultipartUpload, another key", {CREATION: "false", **kms(OTHER_KEY)}, True),
    ("CreateMultipartUpload, aws:kms without a key", {CREATION: "false", SSE: "aws:kms"}, True),
    ("CreateMultipartUpload, SSE-S3", {SSE: "AES256"}, True),
    # The parts and completion of an upload created with KEY_A, in each reading.
    ("UploadPart, no keys filled", {CREATION: "false"}, False),
    ("UploadPart, no keys, no creation key", {}, False),
    ("UploadPart, keys filled from the upload", {CREATION: "false", **kms()}, False),
    ("UploadPartCopy, no keys filled", {CREATION: "false", COPY: "src/a"}, False),
    ("UploadPartCopy, no keys, no creation key", {COPY: "src/a"}, False),
    ("UploadPartCopy, keys filled from the upload", {COPY: "src/a", **kms()}, False),
    ("CompleteMultipartUpload, no keys filled", {CREATION: "true"}, False),
    ("CompleteMultipartUpload, no keys, no creation key", {}, False),
    ("CompleteMultipartUpload, keys filled from the upload", {CREATION: "true", **kms()}, False),
]


@pytest.mark.parametrize(("call", "context", "want_denied"), WRITER_CALLS, ids=[c[0] for c in WRITER_CALLS])
def test_a_writers_calls(statements, call, context, want_denied):
    assert bool(denying_statements(statements, req(PUT, **context))) is want_denied


@pytest.mark.parametrize(("call", "context", "want_denied"), WRITER_CALLS, ids=[c[0] for c in WRITER_CALLS])
def test_the_enforcer_is_never_denied(statements, call, context, want_denied):
    for action in (PUT, UPDATE):
        assert denying_statements(statements, req(action, principal=ENFORCER, **context)) == []


def test_dsse_prefix_takes_its_own_key_and_type(statements):
    right = {CREATION: "true", **kms(KEY_B, "aws:kms:dsse")}
    assert denying_statements(statements, req(PUT, resource=obj(DSSE_PREFIX), **right)) == []
    downgraded = {CREATION: "true", **kms(KEY_B)}
    assert denying_statements(statements, req(PUT, resource=obj(DSSE_PREFIX), **downgraded)) == ["StrictSseTypeDsse"]
    # Tenant A's key is "another key" under tenant B's prefix.
    assert denying_statements(statements, req(PUT, resource=obj(DSSE_PREFIX), **kms(KEY_A, "aws:kms:dsse")))


def test_header_less_put_is_left_to_the_default_key(statements):
    # Availability wins: with no header at all it cannot be told from UploadPart.
    for creation in ("true", "false", None):
        context = {CREATION: creation} if creation else {}
        assert denying_statements(statements, req(PUT, **context)) == []


@pytest.mark.parametrize("also_put", [False, True], ids=["UpdateObjectEncryption", "and PutObject"])
def test_update_object_encryption(statements, also_put):
    actions = (UPDATE, PUT) if also_put else (UPDATE,)

    def refused(principal, context):
        return any(denying_statements(statements, req(a, principal=principal, **context)) for a in actions)

    # Key exposed in the request context, and not.
    assert refused(WRITER, kms(OTHER_KEY))
    assert refused(WRITER, {})  # cannot be told from a wrong one
    assert not refused(WRITER, kms())
    assert refused(WRITER, {**kms(KEY_B)}) is True  # another tenant's key
    for context in (kms(), {}, kms(OTHER_KEY)):
        assert not refused(ENFORCER, context)


def test_anonymous_callers_are_denied(statements):
    # No aws:PrincipalArn: ArnNotEquals holds, so the exemption does not apply.
    assert denying_statements(statements, req(PUT, principal=None, **kms(OTHER_KEY)))


def test_unmapped_prefixes_are_untouched(statements):
    outside = obj("public/")
    assert denying_statements(statements, req(PUT, resource=outside, **kms(OTHER_KEY))) == []
    assert denying_statements(statements, req(UPDATE, resource=outside)) == []


def test_rule_holds_for_the_generated_statements(statements):
    for prefix, key, sse_type in ((KMS_PREFIX, KEY_A, "aws:kms"), (DSSE_PREFIX, KEY_B, "aws:kms:dsse")):
        assert rule_problems(
            statements, partition="aws", bucket=BUCKET, prefix=prefix, key_arn=key, sse_type=sse_type,
            enforcer_role_arn=ENFORCER,
        ) == []


def test_rule_flags_the_old_statements():
    # The statements before issue 9: Null plus StringNotEquals on s3:PutObject, no exemption.
    objects = f"arn:aws:s3:::{BUCKET}/{KMS_PREFIX}*"
    deny = {"Effect": "Deny", "Principal": "*", "Action": PUT, "Resource": objects}
    old = [
        {**deny, "Condition": {"Null": {KEY: "true"}}},
        {**deny, "Condition": {"StringNotEquals": {KEY: KEY_A}}},
        {**deny, "Condition": {"StringNotEquals": {SSE: "aws:kms"}}},
    ]
    problems = rule_problems(
        old, partition="aws", bucket=BUCKET, prefix=KMS_PREFIX, key_arn=KEY_A, sse_type="aws:kms",
        enforcer_role_arn=ENFORCER,
    )
    text = "\n".join(problems)
    assert "denies the writer's UploadPart (no encryption keys" in text
    assert "denies the writer's CompleteMultipartUpload (no encryption keys" in text
    assert "denies the enforcer's UploadPartCopy" in text
    assert "does not deny the writer's UpdateObjectEncryption to another key" in text


def test_rule_flags_a_missing_exemption(statements):
    problems = rule_problems(
        statements, partition="aws", bucket=BUCKET, prefix=KMS_PREFIX, key_arn=KEY_A, sse_type="aws:kms",
        enforcer_role_arn="arn:aws:iam::111122223333:role/someone-else",
    )
    assert problems and all("enforcer's" in p for p in problems)


def test_every_condition_key_is_cited_in_the_module():
    import components.strict_mode as module

    source = Path(module.__file__).read_text()
    used = {k for st in strict_mode_statements(
        partition="aws", bucket=BUCKET, mappings=[(KMS_PREFIX, KEY_A, "aws:kms")], enforcer_role_arn=ENFORCER,
    ) for body in st["Condition"].values() for k in body}
    assert used == {SSE, KEY, SSE_C, COPY, CREATION, "aws:PrincipalArn"}
    for key in used:
        assert f'"{key}"' in source


def test_size_at_ten_prefixes_fits_s3s_limit():
    # "Bucket policies are limited to 20 KB in size" (S3 User Guide, bucket policies).
    assert strict_mode_size(10) <= 20 * 1024
    assert strict_mode_size(1) < strict_mode_size(2) < strict_mode_size(10)
    real = strict_mode_statements(
        partition="aws", bucket="b" * 63, mappings=[(f"{i:064d}", KEY_A, "aws:kms:dsse" if i % 2 else "aws:kms")
                                                    for i in range(10)], enforcer_role_arn=ENFORCER,
    )
    assert len(json.dumps(real, separators=(",", ":"))) <= strict_mode_size(10)


# ---------------------------------------------------------------------------
# The evaluator itself: the documented semantics for a key missing from the context


@pytest.mark.parametrize(
    ("operator", "missing_holds"),
    [
        ("StringEquals", False), ("StringLike", False), ("ArnEquals", False), ("ArnLike", False), ("Bool", False),
        ("StringNotEquals", True), ("StringNotLike", True), ("ArnNotEquals", True), ("ArnNotLike", True),
        ("StringEqualsIfExists", True), ("StringNotEqualsIfExists", True), ("BoolIfExists", True),
    ],
)
def test_missing_key(operator, missing_holds):
    assert operator_holds(operator, "aws:PrincipalArn", "arn:aws:iam::1:role/x", Request(PUT, "r")) is missing_holds


def test_null_tests_presence():
    present = Request(PUT, "r", {KEY: KEY_A})
    assert operator_holds("Null", KEY, "false", present) and not operator_holds("Null", KEY, "true", present)
    assert operator_holds("Null", KEY, "true", Request(PUT, "r"))


def test_values_or_keys_and():
    r = Request(PUT, "r", {KEY: KEY_A, SSE: "aws:kms"})
    assert condition_holds({"StringEquals": {KEY: [OTHER_KEY, KEY_A]}}, r)
    assert not condition_holds({"StringNotEquals": {KEY: [OTHER_KEY, KEY_A]}}, r)  # matches one: not "none"
    assert not condition_holds({"StringEquals": {KEY: KEY_A, SSE: "AES256"}}, r)
    assert not condition_holds({"StringEquals": {KEY: KEY_A}, "Null": {SSE: "true"}}, r)


def test_wildcards_and_case():
    r = Request(PUT, "r", {"aws:principalarn": "arn:aws:iam::111122223333:role/a/b"})
    assert condition_holds({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/*"}}, r)  # key names ignore case
    assert not condition_holds({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:ROLE/*"}}, r)
    assert condition_holds({"StringLike": {"aws:PrincipalArn": "arn:aws:iam::1111?2223333:*"}}, r)
    assert not condition_holds({"StringEquals": {"aws:PrincipalArn": "ARN:aws:iam::111122223333:role/a/b"}}, r)
    assert denying_statements([{"Effect": "Deny", "Action": "S3:put*", "Resource": "a/${*}"}], Request(PUT, "a/*"))
    assert not denying_statements([{"Effect": "Deny", "Action": "s3:*", "Resource": "a/${*}"}], Request(PUT, "a/b"))


def test_unsupported_elements_are_refused():
    with pytest.raises(Unsupported):
        condition_holds({"ForAnyValue:StringEquals": {"aws:TagKeys": "a"}}, Request(PUT, "r"))
    with pytest.raises(Unsupported):
        condition_holds({"NumericLessThan": {"s3:max-keys": "10"}}, Request(PUT, "r"))
    with pytest.raises(Unsupported):
        denying_statements([{"Effect": "Deny", "NotAction": "s3:GetObject", "Resource": "*"}], Request(PUT, "r"))
