"""The enforcer role's data grants, scoped as finely as IAM's quotas allow, packed into managed policies.

Pure: strings in, policy documents out. The finest scope that fits wins, in this
order (docs/deploy.md, "Grants at scale"):

1. S3 objects per mapped prefix, KMS use per key ARN;
2. S3 objects per mapped prefix, KMS use on ``key/*`` of the keys' accounts, limited
   to S3 in the stack's region (``kms:ViaService``) and to the mapped buckets (the
   ``kms:EncryptionContext:aws:s3:arn`` that S3 sends);
3. as 2, with S3 objects per bucket (``bucket/*``).

Listing (``s3:ListBucket``) is on each mapped bucket at every rung; see
``statement_groups``.

Statements are cut into managed policies of at most 6,144 characters; a role may
attach 10 of them by default (``components.quotas``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from components.quotas import IAM_MANAGED_PER_ROLE, IAM_MANAGED_POLICY_SIZE, iam_characters

# What re-keying an object in place or by copy touches (see enforcer/engine.py and
# enforcer/rekey.py): the object and its versions, their tags, ACLs, retention and
# legal hold, the in-place encryption update, and cleanup of a failed multipart copy.
# Retention and legal hold have no separate Version actions. PutObjectVersionTagging
# and PutObjectVersionAcl are in the product's grant contract (issue 3), though the
# engine writes tags and ACLs only along with a copy. tests/test_iam_grants.py maps
# each call of the engine to the actions it needs.
REKEY_OBJECT_ACTIONS = (
    "s3:GetObject",
    "s3:GetObjectVersion",
    "s3:PutObject",
    "s3:GetObjectTagging",
    "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:GetObjectAcl",
    "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl",
    "s3:PutObjectVersionAcl",
    "s3:GetObjectRetention",
    "s3:PutObjectRetention",
    "s3:GetObjectLegalHold",
    "s3:PutObjectLegalHold",
    "s3:UpdateObjectEncryption",
    "s3:AbortMultipartUpload",
)
DELETE_OLD_VERSION_ACTION = "s3:DeleteObjectVersion"
# Bucket settings the engine reads once per bucket: whether a copy must carry ACL
# grants (ownership controls), and whether a prefix replicates, so that the replica
# follows a copy (UpdateObjectEncryption does not re-key replicas).
BUCKET_READ_ACTIONS = ("s3:GetBucketOwnershipControls", "s3:GetReplicationConfiguration")
LIST_ACTION = "s3:ListBucket"
# The S3 User Guide's "Updating server-side encryption for existing data" lists
# kms:Encrypt, kms:Decrypt, kms:GenerateDataKey and kms:ReEncrypt* for the caller of
# UpdateObjectEncryption without saying which key each is checked on, so every key
# the role meets (mapped, source, bucket default) gets all of them: right under
# either reading. A copy needs GenerateDataKey on the new key and Decrypt on the old.
KEY_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo")
# https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service
VIA_SERVICE = "kms:ViaService"
# S3 sends aws:s3:arn in the encryption context: the object's ARN, or the bucket's
# with an S3 Bucket Key (https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html#encryption-context).
S3_ENCRYPTION_CONTEXT = "kms:EncryptionContext:aws:s3:arn"

EMPTY_DOCUMENT = {"Version": "2012-10-17", "Statement": []}


def iam_literal(text: str) -> str:
    """``text`` as a literal inside an IAM resource or condition: ``$`` starts a policy variable."""
    return text.replace("$", "${$}")


@dataclass(frozen=True)
class BucketAccess:
    """One mapped bucket, as the role needs it (names may be stand-ins of maximal length)."""

    bucket: str
    prefixes: tuple[str, ...]
    delete_old_versions: bool


@dataclass(frozen=True)
class GrantInputs:
    partition: str
    dns_suffix: str
    region: str
    buckets: tuple[BucketAccess, ...]
    key_arns: tuple[str, ...]  # every key the role meets: mapped, sourceKeyArns, bucket defaults
    key_accounts: tuple[str, ...]  # the accounts those keys are in

    def bucket_arn(self, b: BucketAccess) -> str:
        return f"arn:{self.partition}:s3:::{b.bucket}"


@dataclass(frozen=True)
class Scope:
    objects: Literal["prefix", "bucket"]
    keys: Literal["keys", "accounts"]

    def describe(self) -> str:
        objects = "S3 objects per mapped prefix" if self.objects == "prefix" else "S3 objects per bucket (bucket/*)"
        keys = (
            "KMS per key ARN"
            if self.keys == "keys"
            else "KMS on key/* of the keys' accounts, via S3 in this region, for the mapped buckets only"
        )
        return f"{objects}; {keys}"


LADDER = (Scope("prefix", "keys"), Scope("prefix", "accounts"), Scope("bucket", "accounts"))


@dataclass(frozen=True)
class Template:
    """A statement whose atoms (resources, or the values of one condition key) may be split."""

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...] = ()  # fixed resources, when the atoms are condition values
    condition: dict[str, dict[str, Any]] = field(default_factory=dict)
    atom_condition: tuple[str, str] | None = None  # (operator, key) the atoms fill; else Resource

    def statement(self, sid: str, atoms: list[str]) -> dict[str, Any]:
        condition = {op: dict(keys) for op, keys in self.condition.items()}
        st: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": list(self.actions)}
        if self.atom_condition is None:
            st["Resource"] = atoms
        else:
            st["Resource"] = list(self.resources)
            op, key = self.atom_condition
            condition.setdefault(op, {})[key] = atoms
        if condition:
            st["Condition"] = condition
        return st


def statement_groups(inputs: GrantInputs, scope: Scope) -> list[tuple[Template, list[str]]]:
    """Every statement the role needs at ``scope``, as templates and their atoms."""
    groups: list[tuple[Template, list[str]]] = []
    for delete in (False, True):
        buckets = [b for b in inputs.buckets if b.delete_old_versions == delete]
        actions = REKEY_OBJECT_ACTIONS + ((DELETE_OLD_VERSION_ACTION,) if delete else ())
        sid = "RekeyObjectsAndOldVersions" if delete else "RekeyObjects"
        if scope.objects == "prefix":
            atoms = [f"{inputs.bucket_arn(b)}/{iam_literal(p)}*" for b in buckets for p in sorted(b.prefixes)]
        else:
            atoms = [f"{inputs.bucket_arn(b)}/*" for b in buckets]
        groups.append((Template(sid, actions), atoms))

    # Listing is on the whole bucket at every rung. Without ListBucket, HEAD of a missing
    # object answers 403, not 404, and "gone" would read as "access denied"; and S3 does
    # not document that the ListBucket check behind HeadObject carries s3:prefix, so a
    # grant limited by s3:prefix may not count there (a key the request lacks fails
    # StringLike). Listing reveals key names, never data.
    bucket_arns = [inputs.bucket_arn(b) for b in inputs.buckets]
    groups.append((Template("ListAndReadBuckets", (LIST_ACTION, *BUCKET_READ_ACTIONS)), bucket_arns))

    via_s3 = {"StringEquals": {VIA_SERVICE: f"s3.{inputs.region}.{inputs.dns_suffix}"}}
    if scope.keys == "keys":
        groups.append((Template("UseKeysThroughS3", KEY_ACTIONS, condition=via_s3), sorted(set(inputs.key_arns))))
    else:
        accounts = sorted(set(inputs.key_accounts))
        groups.append(
            (
                Template(
                    "UseKeysThroughS3ForMappedBuckets",
                    KEY_ACTIONS,
                    resources=tuple(f"arn:{inputs.partition}:kms:{inputs.region}:{a}:key/*" for a in accounts),
                    condition=via_s3,
                    atom_condition=("StringLike", S3_ENCRYPTION_CONTEXT),
                ),
                [v for arn in bucket_arns for v in (arn, f"{arn}/*")],
            )
        )
    return groups


class StatementTooLarge(ValueError):
    pass


def pack(groups: Sequence[tuple[Template, list[str]]], limit: int) -> list[dict[str, Any]]:
    """Greedy: fill each policy up to ``limit`` characters, splitting a template's atoms across statements."""
    documents: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    size = iam_characters(EMPTY_DOCUMENT)

    def close() -> None:
        nonlocal current, size
        if current:
            documents.append({"Version": "2012-10-17", "Statement": current})
        current, size = [], iam_characters(EMPTY_DOCUMENT)

    for template, atoms in groups:
        parts = 0
        open_atoms: list[str] | None = None
        for atom in atoms:
            cost = len(json.dumps(atom)) + 1  # the value and its comma
            if open_atoms is not None and size + cost <= limit:
                open_atoms.append(atom)
                size += cost
                continue
            parts += 1
            sid = template.sid if parts == 1 else f"{template.sid}{parts}"
            st = template.statement(sid, [atom])
            cost = iam_characters(st) + (1 if current else 0)
            if size + cost > limit:
                close()
                cost = iam_characters(st)
                if size + cost > limit:
                    raise StatementTooLarge(f"statement {sid} alone is {cost:,} characters")
            current.append(st)
            size += cost
            open_atoms = st["Resource"] if template.atom_condition is None else _condition_values(st, template)
    close()
    return documents


def _condition_values(st: dict[str, Any], template: Template) -> list[str]:
    op, key = template.atom_condition  # type: ignore[misc]
    return st["Condition"][op][key]


@dataclass(frozen=True)
class GrantPlan:
    scope: Scope
    documents: list[dict[str, Any]]
    rejected: tuple[tuple[Scope, int], ...]  # finer scopes and how many policies each needed
    max_policies: int

    @property
    def coarsened(self) -> bool:
        return bool(self.rejected)

    def explain(self) -> str:
        """Why this scope, with the figures: shown at preview when a quota forced coarser grants."""
        lines = [
            f"{s.describe()}: needs {n} managed policies of at most {IAM_MANAGED_POLICY_SIZE.limit:,} characters"
            for s, n in self.rejected
        ]
        return (
            f"the enforcer role's grants are scoped as {self.scope.describe()}, in {len(self.documents)} managed "
            f"policies, because the finer scopes do not fit the {self.max_policies} managed policies a role may "
            f"attach ({IAM_MANAGED_PER_ROLE.name}): " + "; ".join(lines)
        )


class GrantsDoNotFit(ValueError):
    """Even the coarsest scope needs more managed policies than the role may attach."""

    def __init__(self, needed: int, max_policies: int, characters: int):
        self.needed, self.max_policies, self.characters = needed, max_policies, characters
        raised = IAM_MANAGED_PER_ROLE.adjustable_to
        fix = (
            f"ask AWS to raise the quota (up to {raised}) and set s3-prefix-keys:iamManagedPoliciesPerRole to the new "
            "value, or split the buckets over two stacks"
            if max_policies < (raised or 0)
            else "split the buckets over two stacks (one enforcer each)"
        )
        super().__init__(
            f"the enforcer role's grants need {needed} managed policies ({characters:,} characters at the coarsest "
            f"scope, {LADDER[-1].describe()}), but {IAM_MANAGED_PER_ROLE.name} is {max_policies} "
            f"({IAM_MANAGED_PER_ROLE.source}); fix: {fix}"
        )


def plan_grants(inputs: GrantInputs, max_policies: int = IAM_MANAGED_PER_ROLE.limit) -> GrantPlan:
    rejected: list[tuple[Scope, int]] = []
    for scope in LADDER:
        documents = pack(statement_groups(inputs, scope), IAM_MANAGED_POLICY_SIZE.limit)
        if len(documents) <= max_policies:
            return GrantPlan(scope, documents, tuple(rejected), max_policies)
        rejected.append((scope, len(documents)))
    raise GrantsDoNotFit(len(documents), max_policies, sum(iam_characters(d) for d in documents))
