"""s3-prefix-keys: enforce a KMS key per S3 key prefix.

The program is only wiring; the components hold the product:
``Enforcer`` (queue, function, tables, alerts), ``EnforcerGrants`` (the role's
access to every mapped bucket and key), one ``BucketIntegration`` per bucket
(mapping rows, event route, strict mode, default encryption) and,
in demo stacks, a ``DemoBucket``.
"""

import pulumi

from components.config import load_pulumi_config
from components.demo import DemoBucket
from components.enforcer import BucketTarget, Enforcer, EnforcerArgs
from components.grants import EnforcerGrants, EnforcerGrantsArgs
from components.integration import BucketIntegration, BucketIntegrationArgs

# First, before any resource: a bad mapping must fail the preview, not half-deploy.
config = load_pulumi_config()

targets = [BucketTarget(name, name, bucket) for name, bucket in sorted(config.buckets.items())]
demo = DemoBucket("demo") if config.demo else None
if demo is not None:
    targets = demo.targets() + targets

# The enforcer's queue policy names every bucket (and rule) that may send to it.
enforcer = Enforcer("enforcer", EnforcerArgs(config=config, targets=targets))
# The role's data grants are planned for all buckets together: IAM's quotas are per role.
EnforcerGrants("enforcer-grants", EnforcerGrantsArgs(enforcer=enforcer, targets=targets))
for target in targets:
    BucketIntegration(target.logical_name, BucketIntegrationArgs(target=target, enforcer=enforcer))

pulumi.export("mappingTableName", enforcer.mapping_table.name)
pulumi.export("logTableName", enforcer.log_table.name)
pulumi.export("queueArn", enforcer.queue.arn)
pulumi.export("queueUrl", enforcer.queue.url)
pulumi.export("deadLetterQueueUrl", enforcer.dead_letter_queue.url)
pulumi.export("functionName", enforcer.function.name)
pulumi.export("alertTopicArn", enforcer.topic.arn)
pulumi.export("roleArn", enforcer.role.arn)
pulumi.export("enforcerPrincipalId", enforcer.principal_id)
pulumi.export("dashboardUrl", enforcer.dashboard_url)
pulumi.export("integratedBuckets", [t.bucket for t in targets])
if demo is not None:
    pulumi.export("demoBucketNames", demo.bucket_names)
    pulumi.export("demoKeyArns", demo.key_arns)
