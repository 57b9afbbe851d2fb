"""Policies 6 to 8, advisories on a mapped bucket's encryption: strict mode matches the mapping, default
encryption is KMS, and what replication does to a prefix the enforcer re-keys by copy."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
)

from components.config import NAMESPACE
from components.iam_conditions import Unsupported
from components.strict_mode import rule_problems as strict_rule_problems
from enforcer.arns import KeyArnProblem, check_key_arn
from policypack.policy_run import _EXEMPT_SCHEMA, DeferringStackPolicy, _config, _Run
from policypack.stack_graph import (
    ESM,
    FUNCTION,
    UNKNOWN,
    StackGraph,
    _glob_match,
    _strings,
    as_list,
    contains_unknown,
    describe,
    is_unknown,
    json_value,
    plain,
    provider_computed,
    value,
)

KMS_SSE_TYPES = ("aws:kms", "aws:kms:dsse")
KEY_ID_CONDITION = "s3:x-amz-server-side-encryption-aws-kms-key-id"
SSE_CONDITION = "s3:x-amz-server-side-encryption"

# ---------------------------------------------------------------------------
# 6. strict-policy-matches-mapping (advisory)


def _statement_prefixes(st: dict, bucket_names: set[str]) -> list[str]:
    out = []
    for res in _strings(st.get("Resource")):
        # arn:<partition>:s3:::<bucket>/<prefix>*
        parts = res.split(":::", 1)
        if len(parts) != 2 or "/" not in parts[1]:
            continue
        bucket, key = parts[1].split("/", 1)
        if bucket_names and bucket not in bucket_names:
            continue
        out.append(key[:-1] if key.endswith("*") else key)
    return out


def _condition_values(st: dict, key: str) -> tuple[set[str], set[str]]:
    """(operators using ``key``, the values they compare with)."""
    ops, values = set(), set()
    cond = st.get("Condition")
    if not isinstance(cond, dict):
        return ops, values
    for op, body in cond.items():
        if isinstance(body, dict) and key in body:
            ops.add(op)
            values |= set(_strings(body[key]))
    return ops, values


def _puts(st: dict) -> bool:
    actions = set(_strings(st.get("Action")))
    return bool(actions & {"s3:PutObject", "s3:*", "*", "s3:Put*", "s3:UpdateObjectEncryption"})


def _enforcer_roles(graph: StackGraph, run: _Run) -> list[str]:
    """The execution roles of the functions an event source mapping feeds (the enforcer's)."""
    roles: list[str] = []
    for esm in graph.of_type(ESM):
        for f in graph.of_type(FUNCTION):
            if graph.refers_to(esm, "functionName", f, attr="name") is True or graph.refers_to(esm, "functionName", f) is True:
                role = value(f.props, "role")
                if isinstance(role, str):
                    roles.append(role)
                elif is_unknown(role):
                    run.defer("the enforcer role that strict mode exempts", f)
    return sorted(set(roles))


def validate_strict_policy(args: StackValidationArgs, report: ReportViolation) -> None:
    """Judge each strict bucket policy by strict mode's own rule (``components.strict_mode``).

    The rule is evaluated with IAM's documented condition semantics over every call a
    writer and the enforcer make, in every undocumented reading of their request
    context: wrong keys denied, multipart parts and the enforcer never.
    """
    run = _Run(report)
    graph = StackGraph(args.resources)
    roles: list[list[str]] = []

    def enforcer_roles() -> list[str]:
        # Only a strict bucket needs the role; looking earlier would defer stacks without one.
        if not roles:
            roles.append(_enforcer_roles(graph, run))
        return roles[0]

    for g in graph.mapped_groups():
        for p in g.policies:
            doc = json_value(p.props, "policy")
            if is_unknown(doc) or contains_unknown(doc):
                run.defer("the bucket policy document", p)
                continue
            if not isinstance(doc, dict):
                continue
            statements = [st for st in as_list(doc.get("Statement")) if isinstance(st, dict)]
            deny = [st for st in statements if st.get("Effect") == "Deny" and _puts(st)]
            if not any(_condition_values(st, KEY_ID_CONDITION)[0] for st in deny):
                continue  # strict mode is off for this bucket
            rows = g.mappings
            if any(not isinstance(m.prefix, str) or not isinstance(m.kms_key_arn, str) for m in rows):
                run.defer("the mapped prefixes and keys compared with the bucket policy", p)
                continue
            names = sorted(g.names)
            if not names:
                run.defer("the bucket name the strict statements name", p)
                continue
            exempted = set().union(*(_condition_values(st, "aws:PrincipalArn")[1] for st in deny))
            # The enforcer is the stack's ESM-fed function's role; without one in the stack,
            # the role the policy exempts is taken at its word.
            enforcer = next((r for r in enforcer_roles() if r in exempted), None) or (
                enforcer_roles()[0] if enforcer_roles() else min(exempted, default="")
            )
            partition = next((res.split(":")[1] for st in deny for res in _strings(st.get("Resource"))
                              if res.startswith("arn:")), "aws")
            problems: list[str] = []
            for prefix, m in sorted({m.prefix: m for m in rows}.items()):
                dsse = isinstance(m.dual_layer, dict) and m.dual_layer.get("BOOL") is True
                try:
                    found = strict_rule_problems(
                        statements, partition=partition, bucket=names[0], prefix=prefix, key_arn=m.kms_key_arn,
                        sse_type="aws:kms:dsse" if dsse else "aws:kms", enforcer_role_arn=enforcer or "<no enforcer role>",
                    )
                except Unsupported as e:
                    problems.append(f"'{prefix}': a statement cannot be evaluated ({e})")
                    continue
                if found:
                    # One line per call; its other readings are counted, not repeated.
                    calls: dict[str, str] = {}
                    for f in found:
                        calls.setdefault(f.split(" (", 1)[0], f)
                    first = list(calls.values())
                    shown = "; ".join(first[:6]) + (f"; and {len(first) - 6} more calls" if len(first) > 6 else "")
                    problems.append(f"'{prefix}' {shown}")
            by_prefix = {prefix for st in deny for prefix in _statement_prefixes(st, set(names))
                         if _condition_values(st, KEY_ID_CONDITION)[0]}
            for prefix in sorted(by_prefix - {m.prefix for m in rows}):
                problems.append(f"'{prefix}' has key-enforcing deny statements but is not mapped")
            if problems:
                run.violation(
                    p,
                    f"{describe(p)} is in strict mode for {g.label} but its deny statements break strict mode's "
                    f"rule (wrong keys denied; multipart parts and the enforcer role {enforcer or '(none found)'} "
                    f"never): {'; '.join(problems)}. Fix: let BucketIntegration generate the strict statements "
                    "(`strict: true`) and keep hand-written `policyStatements` free of key conditions.",
                )
    run.finish()


# ---------------------------------------------------------------------------
# 7. bucket-default-encryption-is-kms (advisory)


# The deprecated inline block: one object on aws.s3.Bucket, a list of them on BucketV2.
_INLINE_SSE = ("serverSideEncryptionConfiguration", "serverSideEncryptionConfigurations")


def _sse_rules(r: PolicyResource, prop: str) -> Any:
    """The encryption rules in ``r.prop`` (a configuration's ``rules`` or an inline block); UNKNOWN if unknown."""
    raw = plain(value(r.props, prop))
    rules: list[Any] = []
    if prop in _INLINE_SSE:
        for block in as_list(raw) if prop == _INLINE_SSE[1] else [raw]:
            inner = block.get("rules") or block.get("rule") if isinstance(block, dict) else block
            rules += as_list(inner) if isinstance(block, dict) or is_unknown(block) else []
    else:
        rules = as_list(raw)
    if any(is_unknown(x) for x in rules):
        return UNKNOWN
    return [x for x in rules if isinstance(x, dict)]


def validate_default_encryption(args: StackValidationArgs, report: ReportViolation) -> None:
    run = _Run(report)
    graph = StackGraph(args.resources)
    cfg = _config(args)
    exempt = [p for p in as_list(cfg.get("exemptBuckets")) if isinstance(p, str)]
    for g in graph.mapped_groups():
        if _glob_match(exempt, *g.names, *(b.name for b in g.buckets)):
            continue
        if exempt and any(is_unknown(value(b.props, "bucket")) for b in g.buckets):
            run.defer("whether the bucket (generated name) is in exemptBuckets", *g.buckets)
            continue
        sources: list[tuple[PolicyResource, Any]] = [(s, _sse_rules(s, "rules")) for s in g.sse_configs]
        if not sources:
            # The Bucket's own (deprecated, computed) block: what S3 reported when the bucket
            # was created, so only meaningful when no separate configuration resource owns it.
            # Left to the provider, it is S3's own default (SSE-S3), however it reads at preview.
            sources = [(b, _sse_rules(b, prop)) for b in g.buckets for prop in _INLINE_SSE
                       if value(b.props, prop) is not None and not provider_computed(b, prop)]
        anchor = g.anchor
        if not sources:
            run.violation(
                anchor,
                f"{g.label}, mapped by {g.mapped_by}, has no default encryption configuration in this stack, so "
                "objects under unmapped prefixes stay on SSE-S3 and mapped ones are SSE-S3 until the enforcer "
                f"re-keys them. Fix: `pulumi config set --path '{NAMESPACE}:buckets.<bucket>.defaultKmsKeyArn' "
                "<key ARN>` (the integration then owns the bucket's encryption configuration).",
            )
            continue
        for res, rules in sources:
            if is_unknown(rules):
                run.defer("default encryption rules", res)
                continue
            algos = []
            for rule in rules:
                by_default = rule.get("applyServerSideEncryptionByDefault") or {}
                if isinstance(by_default, list):
                    by_default = by_default[0] if by_default else {}
                algos.append((by_default.get("sseAlgorithm"), by_default.get("kmsMasterKeyId")))
            if any(is_unknown(a) for a, _ in algos):
                run.defer("default encryption sseAlgorithm", res)
                continue
            if not any(a in KMS_SSE_TYPES for a, _ in algos):
                shown = ", ".join(str(a) for a, _ in algos) or "none"
                run.violation(
                    res,
                    f"{describe(res)} sets default encryption {shown} for {g.label}; objects under unmapped "
                    "prefixes are left on SSE-S3. Fix: default to SSE-KMS (aws:kms) or DSSE-KMS (aws:kms:dsse) "
                    "with a customer managed key (config `defaultKmsKeyArn`).",
                )
                continue
            for algo, key_id in algos:
                if algo in KMS_SSE_TYPES and key_id is None:
                    run.violation(
                        res,
                        f"{describe(res)} defaults {g.label} to {algo} without kmsMasterKeyId, i.e. the AWS managed "
                        "aws/s3 key, which no other account can use. Fix: set kmsMasterKeyId to a customer managed "
                        "key ARN (config `defaultKmsKeyArn`).",
                    )
                elif isinstance(key_id, str) and check_key_arn(key_id) is KeyArnProblem.AWS_MANAGED_S3:
                    run.violation(
                        res,
                        f"{describe(res)} defaults {g.label} to the AWS managed aws/s3 key. Fix: use a customer "
                        "managed key ARN (config `defaultKmsKeyArn`).",
                    )
    run.finish()


# ---------------------------------------------------------------------------
# 8. replicated-prefix-rekeyed-by-copy (advisory)


def _rule_prefix(rule: dict) -> Any:
    """The key prefix a replication rule selects ("" for every object), UNKNOWN if not known yet."""
    filt = rule.get("filter")
    if is_unknown(filt):
        return UNKNOWN
    if isinstance(filt, dict):
        inner = filt.get("and") if isinstance(filt.get("and"), dict) else filt
        return inner.get("prefix") or ""
    return rule.get("prefix") or ""  # the deprecated top-level prefix (V1 rules)


def validate_replicated_prefixes(args: StackValidationArgs, report: ReportViolation) -> None:
    """Tell the operator what replication does to a mapped prefix the enforcer re-keys.

    UpdateObjectEncryption does not re-key existing replicas (User Guide, "Updating
    server-side encryption for existing data"), so the enforcer re-keys replicated
    prefixes by copy; the copy is a new object that replication sends on, encrypted
    with the rule's ``replicaKmsKeyId``. A rule whose
    ``sourceSelectionCriteria.sseKmsEncryptedObjects`` is not Enabled does not
    replicate SSE-KMS objects at all (User Guide, "Replicating encrypted objects").
    """
    run = _Run(report)
    graph = StackGraph(args.resources)
    for g in graph.mapped_groups():
        prefixes, _ = g.mapped_prefixes()
        for rc in g.replications:
            rules = plain(value(rc.props, "rules"))
            if contains_unknown(rules):
                run.defer("the replication rules", rc)
                continue
            for rule in [r for r in as_list(rules) if isinstance(r, dict) and r.get("status") == "Enabled"]:
                selected = _rule_prefix(rule)
                if is_unknown(selected):
                    run.defer("the replication rules", rc)
                    continue
                covered = [p for p in prefixes if p.startswith(selected) or selected.startswith(p)]
                if not covered:
                    continue
                dest = rule.get("destination") if isinstance(rule.get("destination"), dict) else {}
                enc = dest.get("encryptionConfiguration") if isinstance(dest.get("encryptionConfiguration"), dict) else {}
                replica_key = enc.get("replicaKmsKeyId")
                criteria = rule.get("sourceSelectionCriteria") if isinstance(rule.get("sourceSelectionCriteria"), dict) else {}
                sse_kms = criteria.get("sseKmsEncryptedObjects") if isinstance(criteria.get("sseKmsEncryptedObjects"), dict) else {}
                rule_name = f"rule '{rule['id']}'" if isinstance(rule.get("id"), str) else "a rule"
                if sse_kms.get("status") != "Enabled":
                    what = ("does not replicate SSE-KMS objects (sourceSelectionCriteria.sseKmsEncryptedObjects is "
                            "not Enabled), so once re-keyed these objects are not replicated at all. Fix: enable "
                            "sseKmsEncryptedObjects and set destination.encryptionConfiguration.replicaKmsKeyId")
                else:
                    what = (f"sends the copy on; the replica is encrypted under the rule's replica KMS key "
                            f"{replica_key if isinstance(replica_key, str) else '(none set)'}, not the prefix's key")
                run.violation(
                    rc,
                    f"{describe(rc)} replicates mapped prefix(es) {', '.join(repr(p) for p in covered)} of "
                    f"{g.label} ({rule_name}, prefix '{selected}'). The enforcer re-keys such prefixes by copy, "
                    f"because UpdateObjectEncryption does not re-key replicas; the rule {what}.",
                )
    run.finish()


strict_policy_matches_mapping = DeferringStackPolicy(
    name="strict-policy-matches-mapping",
    description="Where strict mode is on, the bucket policy's deny statements cover exactly the mapped prefixes "
    "and their keys.",
    validate=validate_strict_policy,
    enforcement_level=EnforcementLevel.ADVISORY,
    remediation_steps="Let BucketIntegration generate the strict statements (`strict: true`); do not hand-edit "
    "key conditions in `policyStatements`.",
)

bucket_default_encryption_is_kms = DeferringStackPolicy(
    name="bucket-default-encryption-is-kms",
    description="Mapped buckets default to SSE-KMS or DSSE-KMS with a customer managed key, so unmapped prefixes "
    "are not left on SSE-S3.",
    validate=validate_default_encryption,
    enforcement_level=EnforcementLevel.ADVISORY,
    config_schema=PolicyConfigSchema(properties={"exemptBuckets": _EXEMPT_SCHEMA}),
    remediation_steps="Set `defaultKmsKeyArn` for the bucket; the integration then owns its encryption "
    "configuration (SSE-KMS, bucket keys on).",
)

replicated_prefix_rekeyed_by_copy = DeferringStackPolicy(
    name="replicated-prefix-rekeyed-by-copy",
    description="A mapped prefix that a replication rule in the stack covers is re-keyed by copy; says what the "
    "replica gets.",
    validate=validate_replicated_prefixes,
    enforcement_level=EnforcementLevel.ADVISORY,
    remediation_steps="Let the rule replicate SSE-KMS objects (sourceSelectionCriteria.sseKmsEncryptedObjects "
    "Enabled) with destination.encryptionConfiguration.replicaKmsKeyId set to the key the replicas should have.",
)
