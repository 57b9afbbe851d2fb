"""AWS's default quotas on the documents this program registers, and how their size is counted.

Mocks and moto enforce none of these, so each is written down here from AWS's own
page, with the way AWS counts it (characters without whitespace, bytes, items).
``components.sizing`` measures what the program is about to register against them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

IAM_QUOTAS = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"
SQS_POLICY_QUOTAS = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-policies.html"
S3_BUCKET_POLICY = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-policies.html"
LAMBDA_QUOTAS = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
LAMBDA_FILTERS = "https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html"
LAMBDA_FILTER_API = "https://docs.aws.amazon.com/lambda/latest/api/API_Filter.html"
EVENTBRIDGE_QUOTAS = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-quota.html"


@dataclass(frozen=True)
class Quota:
    """One documented limit: what it is, its default, the most it can be raised to, and where AWS says so."""

    name: str
    limit: int
    unit: str
    source: str
    adjustable_to: int | None = None

    def describe(self) -> str:
        raised = f", adjustable to {self.adjustable_to:,}" if self.adjustable_to else ", not adjustable"
        return f"{self.name} ({self.limit:,} {self.unit} by default{raised}; {self.source})"


# IAM: "Role policy size cannot exceed 10,240 characters" (the aggregate of all inline
# policies of a role); "Managed policy size: 6,144 characters"; "Managed policies
# attached to an IAM role: 10" (adjustable to 20); "Role trust policy length: 2,048
# characters" (adjustable to 4,096). "IAM doesn't count white space when calculating
# the size of a policy against these limits."
IAM_INLINE_PER_ROLE = Quota("IAM inline policies per role, aggregate size", 10_240, "characters", IAM_QUOTAS)
IAM_MANAGED_POLICY_SIZE = Quota("IAM managed policy size", 6_144, "characters", IAM_QUOTAS)
IAM_MANAGED_PER_ROLE = Quota("IAM managed policies attached per role", 10, "policies", IAM_QUOTAS, adjustable_to=20)
IAM_TRUST_POLICY = Quota("IAM role trust policy length", 2_048, "characters", IAM_QUOTAS, adjustable_to=4_096)
# "Customer managed policies in an AWS account: 1,500" (adjustable to 5,000): shared
# with everything else in the account, so only this stack's share can be measured.
IAM_MANAGED_PER_ACCOUNT = Quota(
    "IAM customer managed policies per account", 1_500, "policies", IAM_QUOTAS, adjustable_to=5_000
)

# SQS policy quotas: Bytes 8,192; Conditions 10; Principals 50; Statements 20;
# Actions per statement 7. None is adjustable.
SQS_POLICY_BYTES = Quota("SQS queue policy size", 8_192, "bytes", SQS_POLICY_QUOTAS)
SQS_POLICY_STATEMENTS = Quota("SQS queue policy statements", 20, "statements", SQS_POLICY_QUOTAS)
SQS_POLICY_PRINCIPALS = Quota("SQS queue policy principals", 50, "principals", SQS_POLICY_QUOTAS)
SQS_POLICY_CONDITIONS = Quota("SQS queue policy conditions", 10, "conditions", SQS_POLICY_QUOTAS)
SQS_ACTIONS_PER_STATEMENT = Quota("SQS queue policy actions per statement", 7, "actions", SQS_POLICY_QUOTAS)

# "Bucket policies are limited to 20 KB in size."
S3_BUCKET_POLICY_BYTES = Quota("S3 bucket policy size", 20 * 1024, "bytes", S3_BUCKET_POLICY)

# Lambda: "Environment variables: 4 KB, for all environment variables associated with
# the function, in aggregate"; event filtering: "By default, you can define up to five
# different filters for a single event source mapping" (up to 10 on request), and a
# Filter's Pattern is at most 4,096 characters.
LAMBDA_ENVIRONMENT_BYTES = Quota("Lambda environment variables, aggregate size", 4 * 1024, "bytes", LAMBDA_QUOTAS)
ESM_FILTERS = Quota("Lambda event source mapping filters", 5, "filters", LAMBDA_FILTERS, adjustable_to=10)
ESM_FILTER_PATTERN = Quota("Lambda event filter pattern length", 4_096, "characters", LAMBDA_FILTER_API)

# EventBridge: "Event pattern size: 2,048" characters per rule (adjustable to 4,096).
EVENTBRIDGE_PATTERN = Quota("EventBridge event pattern size", 2_048, "characters", EVENTBRIDGE_QUOTAS, adjustable_to=4_096)
# "Number of rules: 300 per event bus" (100 in af-south-1 and eu-south-1), adjustable.
# One rule per eventbridge-mode bucket, all on the default bus, which other stacks share.
EVENTBRIDGE_RULES = Quota("EventBridge rules per event bus", 300, "rules", EVENTBRIDGE_QUOTAS, adjustable_to=None)
EVENTBRIDGE_RULES_SMALL_REGIONS = ("af-south-1", "eu-south-1")


def eventbridge_rules_limit(region: str) -> int:
    return 100 if region in EVENTBRIDGE_RULES_SMALL_REGIONS else EVENTBRIDGE_RULES.limit


def compact_json(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


def iam_characters(document: Any) -> int:
    """IAM's measure: characters, white space not counted.

    IAM does not say whether white space inside strings (a prefix with a space) is
    skipped too; counting it is the reading that can only over-estimate.
    """
    return len(compact_json(document))


def policy_bytes(document: Any) -> int:
    """SQS and S3 measure a policy in bytes, as sent (compact JSON, UTF-8)."""
    return len(compact_json(document).encode())


def environment_bytes(variables: dict[str, str]) -> int:
    """Lambda's aggregate: every name and value, in bytes (the JSON braces and quotes over-estimate it)."""
    return len(compact_json(variables).encode())


def condition_count(document: dict[str, Any]) -> int:
    """Condition entries (operator, key) over all statements: the strictest reading of SQS's "Conditions"."""
    return sum(len(keys) for st in document.get("Statement", []) for keys in (st.get("Condition") or {}).values())


def principal_count(document: dict[str, Any]) -> int:
    count = 0
    for st in document.get("Statement", []):
        principal = st.get("Principal")
        if principal == "*":
            count += 1
        elif isinstance(principal, dict):
            for values in principal.values():
                count += len(values) if isinstance(values, list) else 1
    return count


def max_actions_per_statement(document: dict[str, Any]) -> int:
    return max((len(_as_list(st.get("Action"))) for st in document.get("Statement", [])), default=0)


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else [] if v is None else [v]


@dataclass(frozen=True)
class Usage:
    """How much of one quota one document (``subject``) uses."""

    quota: Quota
    subject: str
    used: int
    limit: int | None = None  # the limit in force, when config raised the default

    @property
    def allowed(self) -> int:
        return self.limit if self.limit is not None else self.quota.limit

    @property
    def fits(self) -> bool:
        return self.used <= self.allowed

    def line(self) -> str:
        return f"{self.quota.name}: {self.subject}: {self.used:,} / {self.allowed:,} {self.quota.unit}"
