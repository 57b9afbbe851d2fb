"""Which replication rules carry an object, read once per bucket per container.

User Guide, "Updating server-side encryption for existing data"
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/update-sse-encryption.html):
UpdateObjectEncryption on a bucket with live replication does not re-key the replicas.
A copy is a new write, which replication carries, so ``decide()`` copies where a rule
covers the object. What the replica then gets is the rule's own business (User Guide,
"Replicating encrypted objects",
https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-config-for-kms-objects.html):
S3 replicates an object encrypted with a KMS key only when the rule's
``SourceSelectionCriteria.SseKmsEncryptedObjects`` is Enabled, and encrypts the replica
with the rule's ``EncryptionConfiguration.ReplicaKmsKeyID``.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError

from enforcer.bucket_locks import BucketLocks
from enforcer.decision import Replication, ReplicationRule

log = logging.getLogger(__name__)

# GetBucketReplication's answer for a bucket without a configuration: no replication.
NOT_FOUND = "ReplicationConfigurationNotFoundError"
UNREADABLE = "GetBucketReplication was denied; grant s3:GetReplicationConfiguration on the bucket"


def _filter_of(rule: dict[str, Any]) -> tuple[str, bool]:
    """The rule's key prefix, and whether it also filters on tags.

    V2 rules carry ``Filter`` (``Prefix``, ``Tag`` or ``And`` of both; empty: every
    object); V1 rules, without ``Filter``, carry ``Prefix`` itself (ReplicationRule,
    S3 API Reference).
    """
    if "Filter" not in rule:
        return rule.get("Prefix") or "", False
    flt = rule.get("Filter") or {}
    if "And" in flt:
        both = flt["And"] or {}
        return both.get("Prefix") or "", bool(both.get("Tags"))
    return flt.get("Prefix") or "", "Tag" in flt


def rules_covering(config: dict[str, Any], key: str) -> tuple[ReplicationRule, ...]:
    """The Enabled rules of a ReplicationConfiguration whose filter covers ``key``.

    A rule that filters on tags too is counted as covering: HEAD shows only the number
    of tags, and the copy keeps them, so its replica follows wherever the original's did.
    """
    covering = []
    for rule in config.get("Rules") or []:
        if rule.get("Status") != "Enabled":
            continue
        prefix, tag_filtered = _filter_of(rule)
        if not key.startswith(prefix):
            continue
        destination = rule.get("Destination") or {}
        criteria = (rule.get("SourceSelectionCriteria") or {}).get("SseKmsEncryptedObjects") or {}
        covering.append(
            ReplicationRule(
                rule_id=rule.get("ID") or f"priority {rule.get('Priority', '-')}",
                destination=destination.get("Bucket", "?"),
                replica_kms_key_id=(destination.get("EncryptionConfiguration") or {}).get("ReplicaKmsKeyID"),
                sse_kms_selected=criteria.get("Status") == "Enabled",
                tag_filtered=tag_filtered,
            )
        )
    return tuple(covering)


class BucketReplication:
    """Each bucket's replication configuration, asked once per bucket per container.

    As with ownership controls (``rekey.BucketAclModes``), records of one batch that miss
    the cache at once share one GetBucketReplication under the bucket's lock.

    A denied read (AccessDenied) is remembered as unknown, and unknown counts as
    replicating: every re-key of that bucket is then a copy, which is right whether or
    not a replica exists, where an update in place would leave one on the old key. The
    log row says so. Any other error (throttling, 5xx) is raised and not remembered, so
    the record is retried.
    """

    def __init__(self, s3):
        self._s3 = s3
        self._configs: dict[str, dict[str, Any] | str] = {}  # bucket -> config, or why unknown
        self._locks = BucketLocks()

    def of(self, bucket: str, key: str) -> Replication:
        with self._locks.of(bucket):
            if bucket not in self._configs:
                self._configs[bucket] = self._fetch(bucket)
            config = self._configs[bucket]
        if isinstance(config, str):
            return Replication(unknown=config)
        return Replication(rules_covering(config, key))

    def _fetch(self, bucket: str) -> dict[str, Any] | str:
        try:
            return self._s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == NOT_FOUND:
                return {}
            if code == "AccessDenied":
                log.warning("s3://%s: %s; copying every re-key so that any replica follows", bucket, UNREADABLE)
                return UNREADABLE
            raise
