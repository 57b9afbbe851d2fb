"""The s3-prefix-keys CrossGuard pack: every policy, assembled in the order the pack registers them.

Each policy lives with its family (``notification_routes``, ``key_mappings``,
``delivery_resilience``, ``notification_filters``, ``bucket_encryption``), over the graph
model in ``stack_graph``; ``deferred_checks`` comes last and says what the others could
not decide at preview (see ``policy_run``). Importable without starting a policy pack:
``__main__.py`` is the only place that constructs ``PolicyPack`` (which blocks in a gRPC
server). The offline run (``policypack.check``) and the tests call these policies directly.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel

from policypack.bucket_encryption import (
    bucket_default_encryption_is_kms,
    replicated_prefix_rekeyed_by_copy,
    strict_policy_matches_mapping,
)
from policypack.deferred_checks import preview_deferred_checks
from policypack.delivery_resilience import enforcer_delivery_is_resilient
from policypack.key_mappings import bucket_has_key_mapping, key_mapping_valid, mapped_key_rotation_enabled
from policypack.notification_filters import notification_filters_do_not_overlap
from policypack.notification_routes import bucket_notification_routes_to_enforcer

PACK_NAME = "s3-prefix-keys"

POLICIES = [
    bucket_notification_routes_to_enforcer,
    bucket_has_key_mapping,
    key_mapping_valid,
    mapped_key_rotation_enabled,
    enforcer_delivery_is_resilient,
    notification_filters_do_not_overlap,
    strict_policy_matches_mapping,
    bucket_default_encryption_is_kms,
    replicated_prefix_rekeyed_by_copy,
    # Last: pulumi-policy runs the stack policies of an AnalyzeStack call in this order,
    # and it reports what those before it deferred.
    preview_deferred_checks,
]
"""Every policy of the pack, in the order ``PolicyPack`` registers them."""

PACK_ENFORCEMENT_LEVEL = EnforcementLevel.ADVISORY
"""The pack default, for policies without their own level (all of ours have one)."""
