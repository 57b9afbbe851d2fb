"""``EnforcerGrants``: the enforcer role's access to every mapped bucket and key, as managed policies.

One component for the whole stack, not a policy per bucket: IAM's quotas are per role
(10,240 inline characters; 10 managed policies of 6,144), so the grants are planned
together (``components.grant_plan``) at the finest scope that fits, and a bucket
dropped from config drops out of them on the next ``pulumi up``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from components.config import NAMESPACE
from components.enforcer import BucketTarget, Enforcer
from components.grant_plan import GrantPlan, plan_grants
from components.quotas import compact_json
from components.sizing import StackValues, StandIns, grant_inputs

GRANTS_TYPE = f"{NAMESPACE}:index:EnforcerGrants"


class EnforcerGrantsArgs:
    def __init__(self, enforcer: Enforcer, targets: Sequence[BucketTarget]):
        self.enforcer = enforcer
        self.targets = list(targets)


class EnforcerGrants(pulumi.ComponentResource):
    def __init__(self, name: str, args: EnforcerGrantsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(GRANTS_TYPE, name, None, opts)
        enforcer = args.enforcer
        config = enforcer.config
        values = StackValues(
            partition=enforcer.partition,
            dns_suffix=enforcer.dns_suffix,
            account_id=enforcer.account_id,
            queue_arn=enforcer.queue.arn,
            role_arn=enforcer.role.arn,
            principal_id=enforcer.principal_id,
            mapping_table=enforcer.mapping_table.name,
            log_table=enforcer.log_table.name,
            topic_arn=enforcer.topic.arn,
        )
        # The plan is made from stand-ins at their maxima where a value is an Output,
        # exactly as config validation made it (components/sizing.py), then filled in.
        stand = StandIns()
        self.plan: GrantPlan = plan_grants(
            grant_inputs(args.targets, config, values, stand), config.iam_managed_policies_per_role
        )
        if self.plan.coarsened:
            pulumi.log.warn(self.plan.explain(), resource=self)

        self.policies: list[aws.iam.Policy] = []
        for i, document in enumerate(self.plan.documents):
            text = compact_json(document)
            policy = aws.iam.Policy(
                f"{name}-{i}",
                description=f"{NAMESPACE} ({pulumi.get_stack()}): enforcer data grants, part {i + 1} of "
                f"{len(self.plan.documents)}",
                policy=pulumi.Output.all(*stand.values).apply(lambda v, text=text: stand.substitute(text, v)),
                opts=pulumi.ResourceOptions(parent=self),
            )
            aws.iam.RolePolicyAttachment(
                f"{name}-{i}",
                role=enforcer.role.name,
                policy_arn=policy.arn,
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.policies.append(policy)

        self.register_outputs(
            {
                "scope": self.plan.scope.describe(),
                "policyArns": [p.arn for p in self.policies],
            }
        )
