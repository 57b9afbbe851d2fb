"""``DemoBucket``: the original sample's demo, made from ``components.config.DEMO``.

Two buckets (one versioned) and three symmetric KMS keys with rotation, both buckets
mapped to ``prefix1/``, ``prefix2/`` and ``prefix3/`` (DSSE). The sandbox builds the
same demo from the same ``DemoSpec``, so the two cannot drift apart.

The demo creates its keys, so its mappings hold Outputs rather than ARN strings and
cannot go through config validation; they are full key ARNs in the stack's region
by construction, which is all validation would check.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components import names
from components.config import DEMO, NAMESPACE, BucketConfig, DemoSpec, PrefixMapping
from components.enforcer import BucketTarget

DEMO_TYPE = f"{NAMESPACE}:index:DemoBucket"


class DemoBucketArgs:
    def __init__(self, spec: DemoSpec = DEMO):
        self.spec = spec


class DemoBucket(pulumi.ComponentResource):
    def __init__(self, name: str, args: DemoBucketArgs | None = None, opts: pulumi.ResourceOptions | None = None):
        super().__init__(DEMO_TYPE, name, None, opts)
        spec = (args or DemoBucketArgs()).spec
        self.spec = spec
        child = pulumi.ResourceOptions(parent=self)

        self.keys: dict[str, aws.kms.Key] = {
            key_name: aws.kms.Key(
                f"{name}-{key_name}",
                description=f"{NAMESPACE} demo ({pulumi.get_stack()}): tenant key {key_name}",
                key_usage="ENCRYPT_DECRYPT",
                customer_master_key_spec="SYMMETRIC_DEFAULT",
                enable_key_rotation=True,
                # Demo keys: the shortest waiting period once the demo is destroyed.
                deletion_window_in_days=7,
                opts=child,
            )
            for key_name in spec.key_names
        }

        self.buckets: dict[str, aws.s3.Bucket] = {}
        for bucket_name, versioned in spec.buckets:
            bucket = aws.s3.Bucket(
                f"{name}-{bucket_name}",
                # Bucket names are global: a recognisable prefix and the provider's
                # unique suffix, for which the prefix must leave room (components.names).
                bucket_prefix=names.checked(names.S3_BUCKET_PREFIX, f"{NAMESPACE}-{bucket_name}-"),
                # Demo data only: `pulumi destroy` may delete the objects too.
                force_destroy=True,
                opts=child,
            )
            aws.s3.BucketPublicAccessBlock(
                f"{name}-{bucket_name}-public-access",
                bucket=bucket.id,
                block_public_acls=True,
                block_public_policy=True,
                ignore_public_acls=True,
                restrict_public_buckets=True,
                opts=child,
            )
            if versioned:
                aws.s3.BucketVersioning(
                    f"{name}-{bucket_name}-versioning",
                    bucket=bucket.id,
                    versioning_configuration={"status": "Enabled"},
                    opts=child,
                )
            self.buckets[bucket_name] = bucket

        self.bucket_names = {n: b.bucket for n, b in self.buckets.items()}
        self.key_arns = {n: k.arn for n, k in self.keys.items()}
        self.register_outputs({"bucketNames": self.bucket_names, "keyArns": self.key_arns})

    def bucket_config(self) -> BucketConfig:
        """The demo's mapping as a BucketConfig (every demo bucket gets the same one)."""
        prefixes = {
            prefix: PrefixMapping.model_construct(
                kms_key_arn=raw["kmsKeyArn"], dual_layer=raw["dualLayer"], bucket_key=None
            )
            for prefix, raw in self.spec.bucket_config(self.key_arns).items()
        }
        return BucketConfig.model_construct(prefixes=prefixes)

    def targets(self) -> list[BucketTarget]:
        """The demo buckets as integration targets; ``demo_`` keeps them apart from config
        buckets, whose names cannot contain ``_``."""
        config = self.bucket_config()
        return [
            BucketTarget(logical_name=f"demo_{bucket_name}", bucket=self.bucket_names[bucket_name], config=config)
            for bucket_name, _ in self.spec.buckets
        ]
