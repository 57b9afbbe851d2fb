"""Physical names that AWS accepts: one rule per kind of name, and the stack-scoped builder.

Pulumi stack names may contain letters, digits, ``-``, ``_`` and ``.``, up to 100
characters (pulumi/pulumi ``pkg/backend/diy/store.go``: "stack names are limited to
100 characters and may only contain alphanumeric, hyphens, underscores, or periods";
https://www.pulumi.com/docs/iac/concepts/stacks/). Lambda refuses the ``.`` and every
service has its own length limit, so a name built from the stack name is made legal
here, per kind, instead of at each call site.

Pure: no Pulumi runtime, so config validation, the policy pack and the tests can use
it. The patterns are those of each API's request parameter (the same ones botocore's
service models carry), anchored to the whole name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from components.config import NAMESPACE

LAMBDA_FUNCTION = "lambda_function"
LAMBDA_LAYER = "lambda_layer"
EVENTBRIDGE_RULE = "eventbridge_rule"
LOG_GROUP = "log_group"
IAM_ROLE = "iam_role"
IAM_POLICY = "iam_policy"  # inline (PutRolePolicy) and managed (CreatePolicy) alike
S3_BUCKET = "s3_bucket"
S3_BUCKET_PREFIX = "s3_bucket_prefix"
SQS_QUEUE = "sqs_queue"
DYNAMODB_TABLE = "dynamodb_table"
SNS_TOPIC = "sns_topic"
CLOUDWATCH_ALARM = "cloudwatch_alarm"
CLOUDWATCH_DASHBOARD = "cloudwatch_dashboard"

_DIGEST_LENGTH = 8
# A shortened name ends "-<digest>".
_SHORTENED_TAIL = 1 + _DIGEST_LENGTH
# What a shortened stack prefix leaves of the limit for the suffix's start, so that
# shortened names still say what they name.
_SUFFIX_ROOM = 16

# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_S3_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_S3_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
# The unique suffix the provider appends to bucket_prefix: terraform's
# PrefixedUniqueId, an 18-digit timestamp and an 8-hex-digit counter
# (hashicorp/terraform helper/resource/id.go), hence pulumi-aws's documented
# "less than or equal to 37 characters" for bucketPrefix (63 - 26;
# https://www.pulumi.com/registry/packages/aws/api-docs/s3/bucket/#bucketprefix_python).
S3_UNIQUE_SUFFIX_LENGTH = 26
S3_BUCKET_MAX = 63


def _s3_shape(name: str, *, whole_bucket: bool) -> str | None:
    if not re.match(r"[a-z0-9]", name):
        return "must begin with a lowercase letter or a digit"
    if whole_bucket and not re.search(r"[a-z0-9]$", name):
        return "must end with a lowercase letter or a digit"
    if ".." in name:
        return "must not contain two adjacent periods"
    if whole_bucket and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", name):
        return "must not be formatted as an IP address"
    reserved = next((p for p in _S3_RESERVED_PREFIXES if name.startswith(p)), None)
    if reserved:
        return f"must not start with the reserved prefix {reserved!r}"
    reserved = next((s for s in _S3_RESERVED_SUFFIXES if name.endswith(s)), None)
    if whole_bucket and reserved:
        return f"must not end with the reserved suffix {reserved!r}"
    return None


@dataclass(frozen=True)
class NameRule:
    """What one AWS API accepts as a name: length, characters, and any further shape."""

    kind: str
    what: str
    min_length: int
    max_length: int
    chars: str  # a regex character class: every character of the name is in it
    doc: str
    lowercase: bool = False
    shape: Callable[[str], str | None] | None = None

    def clean(self, text: str) -> str:
        """``text`` with every character the rule refuses replaced by ``-``."""
        if self.lowercase:
            # Dots are legal in bucket names but break virtual-hosted-style HTTPS
            # (same page), so names built here use none.
            text = text.lower().replace(".", "-")
        return re.sub(f"[^{self.chars[1:-1]}]", "-", text, flags=re.ASCII)


RULES: dict[str, NameRule] = {
    rule.kind: rule
    for rule in (
        # "If you specify only the function name, it is limited to 64 characters";
        # the name part of the FunctionName pattern is [a-zA-Z0-9-_]+.
        NameRule(
            LAMBDA_FUNCTION, "Lambda function name", 1, 64, "[A-Za-z0-9_-]",
            "https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html#lambda-CreateFunction-request-FunctionName",
        ),
        # LayerName: [a-zA-Z0-9-_]{1,140} when given as a name, not an ARN.
        NameRule(
            LAMBDA_LAYER, "Lambda layer name", 1, 140, "[A-Za-z0-9_-]",
            "https://docs.aws.amazon.com/lambda/latest/api/API_PublishLayerVersion.html#lambda-PublishLayerVersion-request-LayerName",
        ),
        NameRule(
            EVENTBRIDGE_RULE, "EventBridge rule name", 1, 64, r"[A-Za-z0-9_.-]",
            "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html#eventbridge-PutRule-request-Name",
        ),
        NameRule(
            LOG_GROUP, "CloudWatch Logs log group name", 1, 512, r"[A-Za-z0-9_./#-]",
            "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html#CWL-CreateLogGroup-request-logGroupName",
        ),
        # [\w+=,.@-]+ ; \w is ASCII in AWS's (Java) patterns.
        NameRule(
            IAM_ROLE, "IAM role name", 1, 64, r"[A-Za-z0-9_+=,.@-]",
            "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html#API_CreateRole_RequestParameters",
        ),
        # The same pattern and 128 for inline (PutRolePolicy) and managed (CreatePolicy)
        # policies: https://docs.aws.amazon.com/IAM/latest/APIReference/API_PutRolePolicy.html
        NameRule(
            IAM_POLICY, "IAM policy name", 1, 128, r"[A-Za-z0-9_+=,.@-]",
            "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreatePolicy.html#API_CreatePolicy_RequestParameters",
        ),
        NameRule(
            S3_BUCKET, "S3 bucket name", 3, S3_BUCKET_MAX, "[a-z0-9.-]",
            "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html",
            lowercase=True,
            shape=lambda n: _s3_shape(n, whole_bucket=True),
        ),
        # A prefix, not a name: the provider's unique suffix (digits) completes it, so
        # only the rules about a name's start and interior apply.
        NameRule(
            S3_BUCKET_PREFIX, "S3 bucket_prefix", 1, S3_BUCKET_MAX - S3_UNIQUE_SUFFIX_LENGTH, "[a-z0-9.-]",
            "https://www.pulumi.com/registry/packages/aws/api-docs/s3/bucket/#bucketprefix_python",
            lowercase=True,
            shape=lambda n: _s3_shape(n, whole_bucket=False),
        ),
        # "up to 80 characters ... alphanumeric characters, hyphens (-), and underscores
        # (_)"; a FIFO queue's ".fifo" suffix is not used here.
        NameRule(
            SQS_QUEUE, "SQS queue name", 1, 80, "[A-Za-z0-9_-]",
            "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html#SQS-CreateQueue-request-QueueName",
        ),
        NameRule(
            DYNAMODB_TABLE, "DynamoDB table name", 3, 255, r"[A-Za-z0-9_.-]",
            "https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_CreateTable.html#DDB-CreateTable-request-TableName",
        ),
        # "uppercase and lowercase ASCII letters, numbers, underscores, and hyphens, and
        # must be between 1 and 256 characters long" (standard topics).
        NameRule(
            SNS_TOPIC, "SNS topic name", 1, 256, "[A-Za-z0-9_-]",
            "https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html#API_CreateTopic_RequestParameters",
        ),
        # 1-255 characters; the API documents no character pattern, so the builder
        # keeps to the conservative set the program's other names use.
        NameRule(
            CLOUDWATCH_ALARM, "CloudWatch alarm name", 1, 255, r"[A-Za-z0-9_.-]",
            "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html#API_PutMetricAlarm_RequestParameters",
        ),
        # DashboardName: "The maximum length is 255, and valid characters are A-Z, a-z,
        # 0-9, "-", and "_"."
        NameRule(
            CLOUDWATCH_DASHBOARD, "CloudWatch dashboard name", 1, 255, "[A-Za-z0-9_-]",
            "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html#API_PutDashboard_RequestParameters",
        ),
    )
}

# Where each name lives in a registered resource: Pulumi type -> (input, kind) pairs.
# A resource that sets none of them is autonamed by Pulumi from its logical name.
RESOURCE_NAMES: dict[str, tuple[tuple[str, str], ...]] = {
    "aws:lambda/function:Function": (("name", LAMBDA_FUNCTION),),
    "aws:lambda/layerVersion:LayerVersion": (("layerName", LAMBDA_LAYER),),
    "aws:cloudwatch/eventRule:EventRule": (("name", EVENTBRIDGE_RULE),),
    "aws:cloudwatch/logGroup:LogGroup": (("name", LOG_GROUP),),
    "aws:iam/role:Role": (("name", IAM_ROLE),),
    "aws:iam/rolePolicy:RolePolicy": (("name", IAM_POLICY),),
    "aws:iam/policy:Policy": (("name", IAM_POLICY),),
    "aws:s3/bucket:Bucket": (("bucket", S3_BUCKET), ("bucketPrefix", S3_BUCKET_PREFIX)),
    "aws:sqs/queue:Queue": (("name", SQS_QUEUE),),
    "aws:dynamodb/table:Table": (("name", DYNAMODB_TABLE),),
    "aws:sns/topic:Topic": (("name", SNS_TOPIC),),
    "aws:cloudwatch/metricAlarm:MetricAlarm": (("name", CLOUDWATCH_ALARM),),
    "aws:cloudwatch/dashboard:Dashboard": (("dashboardName", CLOUDWATCH_DASHBOARD),),
}


def name_problem(kind: str, name: str) -> str | None:
    """Why AWS would refuse ``name`` as a name of ``kind``, or None when it accepts it."""
    rule = RULES[kind]
    if not rule.min_length <= len(name) <= rule.max_length:
        return (
            f"{rule.what} {name!r} has {len(name)} characters; "
            f"{rule.min_length}-{rule.max_length} are allowed ({rule.doc})"
        )
    bad = sorted(set(re.sub(rule.chars, "", name, flags=re.ASCII)))
    if bad:
        return f"{rule.what} {name!r} contains {''.join(bad)!r}; only {rule.chars} is allowed ({rule.doc})"
    problem = rule.shape(name) if rule.shape else None
    return f"{rule.what} {name!r} {problem} ({rule.doc})" if problem else None


def checked(kind: str, name: str) -> str:
    """``name`` itself, or ValueError when AWS would refuse it: for names fixed in code."""
    problem = name_problem(kind, name)
    if problem:
        raise ValueError(problem)
    return name


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_DIGEST_LENGTH]


def stack_prefix(kind: str, stack: str) -> str:
    """What every ``physical_name(kind, stack, ...)`` starts with.

    ``s3-prefix-keys-<stack>-`` when the stack name is legal for ``kind`` as it stands
    and still leaves room for a shortened name's digest (the condition under which
    earlier versions kept it whole). Otherwise its legal part, cut so that the suffix
    keeps some room, and a digest of the stack name: ``prod.eu`` and ``prod-eu`` are
    the same once the ``.`` is replaced, and two long names may share their start.
    A stack name that is a prefix of another (``prod``, ``prod-eu``) gives a prefix of
    the other's names too: a policy that matches names by this prefix must allow for it.
    """
    rule = RULES[kind]
    clean = rule.clean(stack)
    plain = f"{NAMESPACE}-{clean}-"
    if clean == stack and len(plain) <= rule.max_length - _SHORTENED_TAIL:
        return plain
    fixed = len(NAMESPACE) + 2 + _DIGEST_LENGTH + 1
    keep = max(0, rule.max_length - _SHORTENED_TAIL - _SUFFIX_ROOM - fixed)
    return re.sub("-+", "-", f"{NAMESPACE}-{clean[:keep].rstrip('._-')}-{_digest(stack)}-")


def physical_name(kind: str, stack: str, suffix: str) -> str:
    """``s3-prefix-keys-<stack>-<suffix>``, made legal for ``kind``.

    Characters the kind refuses become ``-``; a name that is too long, or whose suffix
    had to change, keeps ``stack_prefix`` and the suffix's start and ends with a
    digest of the unaltered name. A name legal as it stands is returned unchanged;
    while the stack prefix is the plain one (a legal stack name of up to 39 characters
    for the 64-character kinds) the shortened form is also the one earlier versions
    produced, so that existing stacks keep their resources.
    """
    rule = RULES[kind]
    prefix = stack_prefix(kind, stack)
    clean_suffix = rule.clean(suffix)
    name = prefix + clean_suffix
    if clean_suffix == suffix and len(name) <= rule.max_length and name_problem(kind, name) is None:
        return name
    room = rule.max_length - len(prefix) - _SHORTENED_TAIL
    return f"{prefix}{clean_suffix[:room]}-{_digest(f'{NAMESPACE}-{stack}-{suffix}')}"
