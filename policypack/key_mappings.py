"""Policies 2 and 3 (key mappings): every bucket has one, every mapping row names a usable key in the
stack's region, and mapped keys rotate (the advisory half)."""

from __future__ import annotations

import json
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
)

from components.config import NAMESPACE, prefix_problem
from enforcer.arns import KeyArnProblem, check_key_arn, region_of_key_arn
from policypack.policy_run import _EXEMPT_SCHEMA, DeferringStackPolicy, _config, _Run
from policypack.stack_graph import (
    UNKNOWN,
    MappingRow,
    StackGraph,
    _ddb_attr,
    _glob_match,
    as_list,
    contains_unknown,
    describe,
    is_unknown,
    json_value,
    plain,
    value,
)

EXEMPT_TAG = f"{NAMESPACE}:exempt"

# ---------------------------------------------------------------------------
# 2. bucket-has-key-mapping


def _exempt_tag(b: PolicyResource) -> Any:
    """The bucket's ``s3-prefix-keys:exempt`` tag: its own, else the provider's default tags.

    ``tagsAll`` (tags merged with the provider's ``defaultTags``) is computed, so
    unknown at a first preview; the provider's inputs are known then.
    """
    tags = plain(value(b.props, "tags"))
    if is_unknown(tags):
        return UNKNOWN
    if isinstance(tags, dict) and EXEMPT_TAG in tags:
        return tags[EXEMPT_TAG]
    tags_all = plain(value(b.props, "tagsAll"))
    if isinstance(tags_all, dict) and EXEMPT_TAG in tags_all:
        return tags_all[EXEMPT_TAG]
    if b.provider is not None:
        # The engine hands a provider's object inputs over JSON-encoded: pulumi_aws's
        # ProviderArgs serialises defaultTags to a string ('{"tags":{...}}').
        defaults = json_value(b.provider.props, "defaultTags")
        if is_unknown(defaults) or contains_unknown(defaults):
            return UNKNOWN
        default_tags = defaults.get("tags") if isinstance(defaults, dict) else None
        if isinstance(default_tags, dict) and EXEMPT_TAG in default_tags:
            return default_tags[EXEMPT_TAG]
    return None


def validate_bucket_has_mapping(args: StackValidationArgs, report: ReportViolation) -> None:
    run = _Run(report)
    graph = StackGraph(args.resources)
    exempt = [p for p in as_list(_config(args).get("exemptBuckets")) if isinstance(p, str)]
    for g in graph.bucket_groups():
        for b in g.buckets:
            if graph.mappings_of_bucket(g, b):
                continue
            name = value(b.props, "bucket")
            tag = _exempt_tag(b)
            if isinstance(tag, str) and tag.lower() == "true":
                continue
            if _glob_match(exempt, name, b.name):
                continue
            # A generated name (bucketPrefix) or unknown tags may still exempt the bucket.
            if is_unknown(tag) or (is_unknown(name) and exempt):
                run.defer("whether the unmapped bucket is exempt (its tags or generated name)", b)
                continue
            shown = f" (bucket name '{name}')" if isinstance(name, str) else ""
            run.violation(
                b,
                f"{describe(b)}{shown} has no prefix key mapping, so no per-prefix KMS key is enforced on it. "
                f"Fix: map at least one prefix (`pulumi config set --path "
                f"'{NAMESPACE}:buckets.<bucket>.prefixes[\"<prefix>/\"].kmsKeyArn' arn:aws:kms:<region>:<account>:key/<id>`), "
                f"or exempt it: add its name or '{b.name}' to exemptBuckets in the policy config, or tag it "
                f"{EXEMPT_TAG}=true.",
            )
    run.finish()


# ---------------------------------------------------------------------------
# 3. key-mapping-valid


_ARN_FIXES = {
    KeyArnProblem.ALIAS: (
        "is a key alias; S3 resolves aliases in the requester's account, so a writer in another account "
        "would encrypt under its own key. Use the full key ARN (arn:aws:kms:<region>:<account>:key/<key-id>)"
    ),
    KeyArnProblem.KEY_ID: (
        "is a bare key ID; S3 would resolve it in the requester's account. Use the full key ARN "
        "(arn:aws:kms:<region>:<account>:key/<key-id>)"
    ),
    KeyArnProblem.AWS_MANAGED_S3: (
        "is the AWS managed key aws/s3, whose policy cannot be edited and which no other account can use. "
        "Create a customer managed key and map its ARN"
    ),
    KeyArnProblem.NOT_A_KEY_ARN: "is not a KMS key ARN; use arn:aws:kms:<region>:<account>:key/<key-id>",
}


def validate_key_mappings(args: StackValidationArgs, report: ReportViolation) -> None:
    run = _Run(report)
    graph = StackGraph(args.resources)
    region = graph.stack_region()
    seen: dict[tuple[Any, str], MappingRow] = {}
    for m in graph.mapping_rows():
        r = m.resource
        if m.item is None:
            run.violation(
                r,
                f"{describe(r)} is a mapping row whose item is not DynamoDB JSON; the enforcer cannot read it. "
                "Fix: create rows through BucketIntegration (config `buckets.<bucket>.prefixes`).",
            )
            continue
        # The key: its ARN when known, and the KMS resources the row was computed from.
        if is_unknown(m.kms_key_arn):
            if m.aliases and not m.keys:
                run.violation(
                    r,
                    f"{m.label} takes its key from {describe(m.aliases[0])}, i.e. an alias; S3 resolves aliases in "
                    "the requester's account. Fix: use the key's `arn` output (aws.kms.Key.arn), not the alias.",
                )
            elif not m.keys:
                run.defer("kms_key_arn", r)
            else:
                run.defer("whether kms_key_arn is the key's ARN (not its ID)", r)
        elif not isinstance(m.kms_key_arn, str):
            run.violation(
                r,
                f"{describe(r)} has no kms_key_arn string attribute. Fix: set kms_key_arn "
                "({\"S\": \"arn:aws:kms:<region>:<account>:key/<key-id>\"}).",
            )
        else:
            problem = check_key_arn(m.kms_key_arn)
            if problem is not None:
                run.violation(r, f"{m.label}: kms_key_arn '{m.kms_key_arn}' {_ARN_FIXES[problem]}.")
            elif region and region_of_key_arn(m.kms_key_arn) != region:
                run.violation(
                    r,
                    f"{m.label}: kms_key_arn '{m.kms_key_arn}' is in region {region_of_key_arn(m.kms_key_arn)} but "
                    f"the stack deploys to {region} (aws:region); S3 can only use a KMS key in the bucket's region. "
                    f"Fix: map a key (or a multi-Region replica) in {region}.",
                )
        for key in m.keys:
            key_region = graph.region_of(key)
            if region and key_region and key_region != region:
                run.violation(
                    r,
                    f"{m.label} maps {describe(key)}, which its provider creates in {key_region}, but the stack "
                    f"deploys to {region}; S3 can only use a KMS key in the bucket's region. Fix: create the key "
                    f"(or an aws.kms.ReplicaKey) with a provider for {region}.",
                )
            if key.resource_type == "aws:kms/key:Key":
                spec = value(key.props, "customerMasterKeySpec") or value(key.props, "keySpec") or "SYMMETRIC_DEFAULT"
                usage = value(key.props, "keyUsage") or "ENCRYPT_DECRYPT"
                if is_unknown(spec) or is_unknown(usage):
                    run.defer("keySpec/keyUsage", key)
                elif spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT":
                    run.violation(
                        r,
                        f"{m.label} maps {describe(key)} with keySpec {spec} and keyUsage {usage}; S3 server-side "
                        "encryption only works with symmetric encryption keys. Fix: use a key with "
                        "keySpec SYMMETRIC_DEFAULT and keyUsage ENCRYPT_DECRYPT.",
                    )
        # dual_layer_encryption must be a boolean attribute.
        dual = m.dual_layer
        if is_unknown(dual):
            pass  # the whole item is unknown: deferred with kms_key_arn above
        elif not (isinstance(dual, dict) and isinstance(dual.get("BOOL"), bool)):
            run.violation(
                r,
                f"{m.label}: dual_layer_encryption is {json.dumps(dual)}; it must be a DynamoDB boolean "
                "({\"BOOL\": true|false}), otherwise the enforcer treats the prefix as plain SSE-KMS. "
                f"Fix: set `pulumi config set --path '{NAMESPACE}:buckets.<bucket>.prefixes[\"<prefix>/\"].dualLayer' "
                "true|false`.",
            )
        elif dual["BOOL"] and isinstance(m.item, dict) and _ddb_attr(m.item, "bucket_key_enabled", "BOOL") is True:
            run.violation(
                r,
                f"{m.label}: bucket_key_enabled is true on a DSSE-KMS (dual layer) prefix; S3 Bucket Keys are not "
                "supported for DSSE-KMS. Fix: drop bucketKey for this prefix.",
            )
        # The prefix itself, and one row per (bucket, prefix).
        if isinstance(m.prefix, str):
            problem = prefix_problem(m.prefix)
            if problem:
                run.violation(r, f"{describe(r)}: prefix '{m.prefix}' {problem}.")
            bucket_key = m.bucket if isinstance(m.bucket, str) else (
                graph.integration_of(r).urn if graph.integration_of(r) else r.urn
            )
            other = seen.get((bucket_key, m.prefix))
            if other is not None:
                run.violation(
                    r,
                    f"{describe(r)} and {describe(other.resource)} both write the mapping row for prefix "
                    f"'{m.prefix}'; they overwrite each other and deleting either deletes the row. Fix: keep one.",
                )
            seen[(bucket_key, m.prefix)] = m
        elif m.prefix is None:
            run.violation(r, f"{describe(r)} has no prefix string attribute. Fix: set prefix ({{\"S\": \"<prefix>/\"}}).")
    run.finish()


# ---------------------------------------------------------------------------
# 3b. mapped-key-rotation-enabled (advisory half of key validation)


def validate_key_rotation(args: StackValidationArgs, report: ReportViolation) -> None:
    run = _Run(report)
    graph = StackGraph(args.resources)
    reported: set[str] = set()
    for m in graph.mapping_rows():
        for key in m.keys:
            if key.urn in reported or key.resource_type != "aws:kms/key:Key":
                continue
            rotation = value(key.props, "enableKeyRotation", False)
            if is_unknown(rotation):
                run.defer("enableKeyRotation", key)
            elif rotation is not True:
                reported.add(key.urn)
                run.violation(
                    key,
                    f"{describe(key)} is mapped ({m.label}) but automatic rotation is off. Fix: set "
                    "enable_key_rotation=True (rotation keeps old key material, so existing objects stay readable).",
                )
    run.finish()


bucket_has_key_mapping = DeferringStackPolicy(
    name="bucket-has-key-mapping",
    description="Every S3 bucket in the stack has at least one prefix key mapping, unless it is exempt.",
    validate=validate_bucket_has_mapping,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PolicyConfigSchema(properties={"exemptBuckets": _EXEMPT_SCHEMA}),
    remediation_steps="Map a prefix with `pulumi config set --path "
    "'s3-prefix-keys:buckets.<bucket>.prefixes[\"<prefix>/\"].kmsKeyArn' <key ARN>`, or exempt the bucket: "
    "add a glob to `exemptBuckets` in the policy config, or tag it `s3-prefix-keys:exempt=true`.",
)

key_mapping_valid = DeferringStackPolicy(
    name="key-mapping-valid",
    description="Mapping rows name a full KMS key ARN (not an alias, key ID or aws/s3) in the stack's region, a "
    "boolean dual_layer_encryption, and, for keys in the stack, a symmetric ENCRYPT_DECRYPT key.",
    validate=validate_key_mappings,
    enforcement_level=EnforcementLevel.MANDATORY,
    remediation_steps="Set `kmsKeyArn` to the key's full ARN in the stack's aws:region (`aws kms describe-key "
    "--key-id <alias>` prints it); keys created in the stack must be SYMMETRIC_DEFAULT / ENCRYPT_DECRYPT.",
)

mapped_key_rotation_enabled = DeferringStackPolicy(
    name="mapped-key-rotation-enabled",
    description="KMS keys created in the stack and mapped to a prefix have automatic rotation enabled.",
    validate=validate_key_rotation,
    enforcement_level=EnforcementLevel.ADVISORY,
    remediation_steps="Set enable_key_rotation=True on the aws.kms.Key.",
)
