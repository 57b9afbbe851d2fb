"""Strict mode: the bucket-policy deny statements that refuse writes under the wrong key.

This module owns the statements (``strict_mode_statements``), the rule they must
satisfy (``rule_problems``: the calls a writer and the enforcer make, and which of
them must or must not be denied) and their size (``strict_mode_size``). The policy
pack's ``strict-policy-matches-mapping`` judges a bucket policy by the same rule,
evaluated with ``components.iam_conditions``.

What AWS documents, and what the statements rely on:

* A condition key missing from the request makes ``Null: true`` and the negated
  operators (``StringNotEquals``, ``ArnNotEquals``) true ("IAM JSON policy elements:
  Condition operators"). Every deny below therefore tests a key's *presence* with
  ``Null: false`` before comparing it, except where absence itself is the fault.
* PutObject, CopyObject, CreateMultipartUpload, UploadPart, UploadPartCopy and
  CompleteMultipartUpload are all authorized as ``s3:PutObject`` (Service
  Authorization Reference for Amazon S3, "Actions defined by Amazon S3",
  https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html).
  UploadPart, UploadPartCopy and CompleteMultipartUpload send no encryption headers.
  Whether S3 nevertheless fills the encryption condition keys for them from the
  upload's state is not documented: the statements hold under either reading.
* ``s3:ObjectCreationOperation`` is what AWS uses to exempt CreateMultipartUpload,
  UploadPart and UploadPartCopy from a deny; CopyObject and CompleteMultipartUpload
  carry it as true (User Guide, "Enforce conditional writes on Amazon S3 buckets",
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes-enforce.html:
  its deny on ``Bool: {s3:ObjectCreationOperation: true}`` refuses CopyObject and
  CompleteMultipartUpload and lets the part operations through).
* ``s3:UpdateObjectEncryption`` is an action of its own with the
  ``s3:x-amz-server-side-encryption*`` condition keys (Service Authorization
  Reference); the User Guide's "Updating server-side encryption for existing data"
  also lists ``s3:PutObject`` among its permissions. Whether the request's
  ``ObjectEncryption`` body fills those keys is not documented.
* ``aws:PrincipalArn`` is, for a role session, the role's ARN, not the session's
  ("AWS global condition context keys",
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principalarn).
  It exempts the enforcer's execution role, and is absent for anonymous callers
  (so ``ArnNotEquals`` holds and they stay denied).

Where the rule cannot hold under every reading, availability wins: a PutObject or
CreateMultipartUpload that sends no encryption header at all looks like UploadPart
when S3 does not fill the keys (same action, no encryption key, no
``s3:ObjectCreationOperation`` distinguishing CreateMultipartUpload), so it is not
denied: it gets the bucket default key and the enforcer re-keys it. An
UpdateObjectEncryption whose key S3 does not expose cannot be told right from wrong,
so every principal but the enforcer is refused it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.access_policies import policy_sid
from components.grant_plan import iam_literal
from components.iam_conditions import Request, Unsupported, denying_statements

# Condition keys (Service Authorization Reference for Amazon S3, "Condition keys for
# Amazon S3"); each applies to s3:PutObject, and the two encryption keys to
# s3:UpdateObjectEncryption too.
SSE_HEADER = "s3:x-amz-server-side-encryption"  # AES256, aws:kms, aws:kms:dsse
KMS_KEY_HEADER = "s3:x-amz-server-side-encryption-aws-kms-key-id"  # compared as sent: full ARN
SSE_C_HEADER = "s3:x-amz-server-side-encryption-customer-algorithm"  # SSE-C
COPY_SOURCE = "s3:x-amz-copy-source"  # CopyObject and UploadPartCopy
CREATION_OPERATION = "s3:ObjectCreationOperation"  # see the module docstring
PRINCIPAL_ARN = "aws:PrincipalArn"  # global key: the role ARN for a role session

PUT = "s3:PutObject"
UPDATE_ENCRYPTION = "s3:UpdateObjectEncryption"
KMS_TYPES = ("aws:kms", "aws:kms:dsse")


def strict_mode_statements(
    *, partition: str, bucket: str, mappings: Sequence[tuple[str, str, str]], enforcer_role_arn: str
) -> list[dict[str, Any]]:
    """The deny statements of strict mode for one bucket.

    ``mappings`` are (prefix, key ARN, SSE type: ``aws:kms`` or ``aws:kms:dsse``).
    Writers must send the full key ARN: S3 compares the header as sent. Only the
    other-key deny is per prefix; the rest list every prefix they cover, which keeps
    10 prefixes well inside S3's 20 KB (``strict_mode_size``).
    """
    mappings = sorted(mappings)
    objects = {p: f"arn:{partition}:s3:::{bucket}/{iam_literal(p)}*" for p, _, _ in mappings}
    not_enforcer = {"ArnNotEquals": {PRINCIPAL_ARN: enforcer_role_arn}}

    def deny(sid: str, actions: list[str], resources: list[str], condition: dict[str, Any]) -> dict[str, Any]:
        return {
            "Sid": sid,
            "Effect": "Deny",
            "Principal": "*",
            "Action": actions if len(actions) > 1 else actions[0],
            "Resource": resources if len(resources) > 1 else resources[0],
            "Condition": {**condition, **not_enforcer},
        }

    both = [PUT, UPDATE_ENCRYPTION]
    statements = [
        # A key is named and it is not the prefix's. Null:false keeps the deny off calls
        # that carry no key (the part operations), whatever S3 fills for them.
        deny(f"StrictOtherKey{policy_sid(p)}", both, [objects[p]],
             {"Null": {KMS_KEY_HEADER: "false"}, "StringNotEquals": {KMS_KEY_HEADER: key}})
        for p, key, _ in mappings
    ]
    for sse_type in KMS_TYPES:
        covered = [objects[p] for p, _, t in mappings if t == sse_type]
        if covered:
            name = "Dsse" if sse_type == "aws:kms:dsse" else "Kms"
            statements.append(deny(f"StrictSseType{name}", both, covered,
                                   {"Null": {SSE_HEADER: "false"}, "StringNotEquals": {SSE_HEADER: sse_type}}))
    every = list(objects.values())
    statements += [
        # An SSE type without a key: S3 would use the AWS managed key aws/s3.
        deny("StrictKeyMissing", [PUT], every, {"Null": {SSE_HEADER: "false", KMS_KEY_HEADER: "true"}}),
        # CopyObject without a key: a copy keeps no encryption of its source's, it takes
        # the bucket default. UploadPartCopy also sends x-amz-copy-source, but is not
        # an object creation operation, so it stays outside this deny.
        deny("StrictCopyKeyMissing", [PUT], every,
             {"Bool": {CREATION_OPERATION: "true"}, "Null": {COPY_SOURCE: "false", KMS_KEY_HEADER: "true"}}),
        # An UpdateObjectEncryption whose key is not visible cannot be checked: only the
        # enforcer may make it.
        deny("StrictUpdateKeyMissing", [UPDATE_ENCRYPTION], every, {"Null": {KMS_KEY_HEADER: "true"}}),
        deny("StrictCustomerKey", [PUT], every, {"Null": {SSE_C_HEADER: "false"}}),
    ]
    return statements


def strict_mode_size(
    prefix_count: int,
    *,
    prefix_length: int = 64,
    bucket_length: int = 63,
    partition_length: int = len("aws-iso-f"),
    key_arn_length: int = 100,
    role_arn_length: int = 120,
) -> int:
    """Bytes (compact JSON, UTF-8) of the strict statements for ``prefix_count`` prefixes.

    Every value is a stand-in of the given length, both SSE types are present (the
    larger case), and statement ids are sized for prefixes of ``prefix_length``.
    S3: "Bucket policies are limited to 20 KB in size" (User Guide, "Bucket policies
    for Amazon S3").
    """
    mappings = [
        (f"{i:0{prefix_length}d}"[-prefix_length:], f"{i:0{key_arn_length}d}", KMS_TYPES[i % 2])
        for i in range(prefix_count)
    ]
    statements = strict_mode_statements(
        partition="p" * partition_length,
        bucket="b" * bucket_length,
        mappings=mappings,
        enforcer_role_arn="r" * role_arn_length,
    )
    return len(json.dumps(statements, separators=(",", ":")).encode())


# ---------------------------------------------------------------------------
# The rule: what strict mode must deny, and what it must never deny


@dataclass(frozen=True)
class Call:
    """One API call as IAM sees it: the authorization checks it needs, all in one reading.

    ``must`` is ``deny`` (some check is refused), ``allow`` (none is) or ``either``
    (the rule leaves it to the bucket default key and the enforcer).
    """

    name: str
    requests: tuple[Request, ...]
    must: str


def _context(**keys: str | None) -> dict[str, str]:
    names = {
        "sse": SSE_HEADER,
        "key": KMS_KEY_HEADER,
        "sse_c": SSE_C_HEADER,
        "copy": COPY_SOURCE,
        "creation": CREATION_OPERATION,
        "principal": PRINCIPAL_ARN,
    }
    return {names[k]: v for k, v in keys.items() if v is not None}


def rule_calls(
    *, object_arn: str, key_arn: str, sse_type: str, other_key_arn: str, enforcer_role_arn: str, writer_arn: str
) -> list[Call]:
    """Every call a writer and the enforcer make on ``object_arn``, in every reading.

    Readings where AWS does not document the context: S3 fills the part operations'
    encryption keys from the upload or leaves them out; ``s3:ObjectCreationOperation``
    is ``false`` or absent on the part operations (and ``true`` or absent on
    CompleteMultipartUpload); UpdateObjectEncryption exposes its key or not, and is
    checked as ``s3:PutObject`` too or not.
    """
    wrong_type = "aws:kms" if sse_type == "aws:kms:dsse" else "aws:kms:dsse"
    source = "source-bucket/source-key"
    right = {"sse": sse_type, "key": key_arn}

    def one(action: str, **keys: str | None) -> dict[str, Any]:
        return {"action": action, "keys": keys}

    # (name, [checks], must) as the writer sends them; the principal is added below.
    creating: list[tuple[str, list[dict[str, Any]], str]] = [
        ("PutObject naming the prefix's key", [one(PUT, creation="true", **right)], "allow"),
        ("PutObject naming another key", [one(PUT, creation="true", sse=sse_type, key=other_key_arn)], "deny"),
        ("PutObject with the SSE type but no key", [one(PUT, creation="true", sse=sse_type)], "deny"),
        (f"PutObject of type {wrong_type}", [one(PUT, creation="true", sse=wrong_type, key=key_arn)], "deny"),
        ("PutObject with SSE-S3", [one(PUT, creation="true", sse="AES256")], "deny"),
        ("PutObject with SSE-C", [one(PUT, creation="true", sse_c="AES256")], "deny"),
        ("PutObject with no encryption header", [one(PUT, creation="true")], "either"),
        ("CopyObject naming the prefix's key", [one(PUT, creation="true", copy=source, **right)], "allow"),
        ("CopyObject naming another key",
         [one(PUT, creation="true", copy=source, sse=sse_type, key=other_key_arn)], "deny"),
        ("CopyObject with no encryption header", [one(PUT, creation="true", copy=source)], "deny"),
        ("CopyObject with SSE-S3", [one(PUT, creation="true", copy=source, sse="AES256")], "deny"),
    ]
    for creation in ("false", None):  # CreateMultipartUpload: exempted like the parts
        tag = f"ObjectCreationOperation {creation or 'absent'}"
        creating += [
            (f"CreateMultipartUpload naming the prefix's key ({tag})", [one(PUT, creation=creation, **right)], "allow"),
            (f"CreateMultipartUpload naming another key ({tag})",
             [one(PUT, creation=creation, sse=sse_type, key=other_key_arn)], "deny"),
            (f"CreateMultipartUpload with the SSE type but no key ({tag})",
             [one(PUT, creation=creation, sse=sse_type)], "deny"),
            (f"CreateMultipartUpload with SSE-S3 ({tag})", [one(PUT, creation=creation, sse="AES256")], "deny"),
            (f"CreateMultipartUpload with no encryption header ({tag})", [one(PUT, creation=creation)], "either"),
        ]
    # The parts and the completion of an upload created with the prefix's key.
    for filled in (False, True):
        enc = right if filled else {}
        reading = "keys filled from the upload" if filled else "no encryption keys"
        for creation in ("false", None):
            tag = f"{reading}, ObjectCreationOperation {creation or 'absent'}"
            creating += [
                (f"UploadPart ({tag})", [one(PUT, creation=creation, **enc)], "allow"),
                (f"UploadPartCopy ({tag})", [one(PUT, creation=creation, copy=source, **enc)], "allow"),
            ]
        for creation in ("true", None):
            tag = f"{reading}, ObjectCreationOperation {creation or 'absent'}"
            creating.append((f"CompleteMultipartUpload ({tag})", [one(PUT, creation=creation, **enc)], "allow"))
    # UpdateObjectEncryption: its key exposed or not; checked as s3:PutObject too or not.
    for exposed in (True, False):
        for also_put in (False, True):
            tag = f"key {'exposed' if exposed else 'not exposed'}{', also checked as s3:PutObject' if also_put else ''}"
            # To the prefix's key: allowed where the key is exposed, refused where it cannot
            # be told from a wrong one (and a DSSE prefix's object must not drop to SSE-KMS).
            for label, key, must in (("the prefix's key", key_arn, "either"), ("another key", other_key_arn, "deny")):
                keys = {"sse": "aws:kms", "key": key} if exposed else {}
                checks = [one(UPDATE_ENCRYPTION, **keys)] + ([one(PUT, **keys)] if also_put else [])
                creating.append((f"UpdateObjectEncryption to {label} ({tag})", checks, must))

    calls = []
    for name, checks, must in creating:
        for who, principal, want in (("writer", writer_arn, must), ("enforcer", enforcer_role_arn, "allow")):
            requests = tuple(
                Request(c["action"], object_arn, _context(principal=principal, **c["keys"])) for c in checks
            )
            calls.append(Call(f"{who}'s {name}", requests, want))
    return calls


def denied(statements: Sequence[Mapping[str, Any]], call: Call) -> bool:
    """Whether any of the call's authorization checks meets an applicable Deny."""
    return any(denying_statements(statements, r) for r in call.requests)


def rule_problems(
    statements: Sequence[Mapping[str, Any]],
    *,
    partition: str,
    bucket: str,
    prefix: str,
    key_arn: str,
    sse_type: str,
    enforcer_role_arn: str,
) -> list[str]:
    """Where ``statements`` break strict mode's rule for one mapped prefix; [] when they keep it.

    Raises :class:`components.iam_conditions.Unsupported` for a statement this model
    cannot evaluate.
    """
    other = key_arn[:-1] + ("0" if not key_arn.endswith("0") else "1")
    writer = f"arn:{partition}:iam::000000000000:role/strict-mode-probe-writer"
    calls = rule_calls(
        object_arn=f"arn:{partition}:s3:::{bucket}/{prefix}strict-mode-probe",
        key_arn=key_arn,
        sse_type=sse_type,
        other_key_arn=other,
        enforcer_role_arn=enforcer_role_arn,
        writer_arn=writer,
    )
    breaks, misses = [], []  # what breaks a writer or the enforcer comes first
    for call in calls:
        refused = denied(statements, call)
        if call.must == "deny" and not refused:
            misses.append(f"does not deny the {call.name}")
        elif call.must == "allow" and refused:
            breaks.append(f"denies the {call.name}")
    # A writer's broken upload before the enforcer's, then what is let through.
    return sorted(breaks, key=lambda b: "enforcer's" in b) + misses


__all__ = [
    "KMS_KEY_HEADER",
    "SSE_HEADER",
    "Call",
    "Unsupported",
    "rule_calls",
    "rule_problems",
    "strict_mode_size",
    "strict_mode_statements",
]
