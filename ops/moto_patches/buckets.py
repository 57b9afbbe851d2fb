"""S3 bucket configuration patches: GetBucketReplication answers the replication
configuration as it was put (11)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from moto.core.responses import ActionResult
from moto.s3.responses import S3Response


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _rule_as_put(rule: dict[str, Any]) -> dict[str, Any]:
    """One stored rule (moto keeps PutBucketReplication's XML, parsed) in the API's member names."""
    out = {name: value for name, value in rule.items() if not name.startswith("@")}
    if "Filter" in out:
        flt = dict(out["Filter"] or {})  # <Filter/>: every object (ReplicationRuleFilter)
        if "Prefix" in flt:
            flt["Prefix"] = flt["Prefix"] or ""
        if isinstance(flt.get("And"), dict):
            both = dict(flt["And"])
            if "Prefix" in both:
                both["Prefix"] = both["Prefix"] or ""
            if "Tag" in both:  # the XML repeats <Tag>; the API member is the list Tags
                both["Tags"] = _as_list(both.pop("Tag"))
            flt["And"] = both
        out["Filter"] = flt
    return out


def _get_bucket_replication(original: Callable[..., Any]) -> Callable[..., Any]:
    def get_bucket_replication(self: S3Response) -> Any:
        # Patch 11: S3 answers the configuration that was put (API_GetBucketReplication: "Returns the
        # replication configuration of a bucket"). moto 5.2.5 answers every rule with Filter
        # {"Prefix": ""}, DeleteMarkerReplication Disabled, and no SourceSelectionCriteria or
        # ExistingObjectReplication.
        original(self)  # moto's own answer for a bucket without a configuration (the error)
        replication = self.backend.get_bucket_replication(self.bucket_name)
        rules = [_rule_as_put(rule) for rule in _as_list(replication["Rule"])]
        return self.serialized(
            ActionResult({"ReplicationConfiguration": {"Role": replication["Role"], "Rules": rules}}))

    return get_bucket_replication
