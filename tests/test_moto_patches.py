"""ops.moto_patches: every patch restores real-S3 behaviour, and every gap is still in moto.

``test_gapN_*`` tests run against unpatched moto and assert the gap is still there; each
fails when moto fixes it upstream - then delete patch N (see the table in
``ops/moto_patches/registry.py``).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.s3 import notifications
from moto.s3.responses import S3Response
from moto.server import ThreadedMotoServer

from ops import moto_patches

REGION = "us-east-1"
MIB = 1024 * 1024
FOREIGN_KEY = "arn:aws:kms:us-east-1:111122223333:key/0b7e2f51-0000-4000-8000-000000000000"


@pytest.fixture(autouse=True)
def _fake_aws(monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")


@pytest.fixture(autouse=True)
def _patched(_fake_aws) -> Iterator[None]:
    assert not moto_patches.is_applied(), "a previous test leaked the patches"
    with moto_patches.patched():
        yield
    assert not moto_patches.is_applied()


@pytest.fixture
def unpatched(_patched) -> None:
    """Plain moto, for the gap tests."""
    moto_patches.remove()


class Aws:
    def __init__(self) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.kms = boto3.client("kms", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.key_arn = self.kms.create_key(Description="t")["KeyMetadata"]["Arn"]

    def bucket(self, name: str, versioned=False, lock=False, ownership=None) -> str:
        kwargs: dict[str, Any] = {"Bucket": name}
        if lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        if ownership:
            kwargs["ObjectOwnership"] = ownership
        self.s3.create_bucket(**kwargs)
        if versioned and not lock:
            self.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def queue(self, bucket: str, eventbridge=False) -> str:
        url = self.sqs.create_queue(QueueName=f"{bucket}-q")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        config: dict[str, Any] = {"QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]}
        if eventbridge:
            config["EventBridgeConfiguration"] = {}
        self.s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        self.drain(url)  # s3:TestEvent
        return url

    def drain(self, url: str) -> list[dict[str, Any]]:
        out = []
        while batch := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            for m in batch:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
                out.append(json.loads(m["Body"]))
        return out


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        yield Aws()


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"].get("Message", "")


def uoe(s3, bucket, key, arn, bucket_key=False, **kw):
    return s3.update_object_encryption(
        Bucket=bucket, Key=key, ObjectEncryption={"SSEKMS": {"KMSKeyArn": arn, "BucketKeyEnabled": bucket_key}}, **kw
    )


def until(days=1) -> datetime.datetime:
    return (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=days)).replace(microsecond=0)


def assumed_role(iam, sts, session="fn") -> dict[str, str]:
    role = iam.create_role(RoleName="fn-role", AssumeRolePolicyDocument="{}")["Role"]
    c = sts.assume_role(RoleArn=role["Arn"], RoleSessionName=session)["Credentials"]
    return {"aws_access_key_id": c["AccessKeyId"], "aws_secret_access_key": c["SecretAccessKey"],
            "aws_session_token": c["SessionToken"]}


# ----------------------------------------------------------------------------- install / remove


def test_apply_is_idempotent_and_remove_restores_moto():
    wrapped = S3Response.__dict__["_key_response_put"]
    moto_patches.apply()
    assert S3Response.__dict__["_key_response_put"] is wrapped  # not wrapped twice
    moto_patches.remove()
    original = S3Response.__dict__["_key_response_put"]
    assert original is not wrapped and original.__module__ == "moto.s3.responses"
    assert notifications._get_s3_event.__module__ == "moto.s3.notifications"
    with moto_patches.patched():
        with moto_patches.patched():
            assert S3Response.__dict__["_key_response_put"] is not original
        assert moto_patches.is_applied()  # the inner block restores the state it found
    assert S3Response.__dict__["_key_response_put"] is original
    moto_patches.apply()  # leave it as the autouse fixture expects


def test_moto_is_the_version_the_gaps_were_measured_on():
    """A moto upgrade must re-run the gap tests and update MOTO_VERSION_MEASURED."""
    import moto

    assert moto.__version__ == moto_patches.MOTO_VERSION_MEASURED


def test_every_gap_test_is_in_the_patch_table():
    listed = {name for _doc, tests in moto_patches.PATCHES.values() for name in tests}
    defined = {name for name in globals() if name.startswith("test_gap")}
    assert listed == defined
    assert all(f"test_gap{n}_" in " ".join(tests) for n, (_doc, tests) in moto_patches.PATCHES.items())


# ----------------------------------------------------------------------------- 1 UpdateObjectEncryption


def test_update_object_encryption_rekeys_one_version_in_place(aws):
    b = aws.bucket("uoe", versioned=True)
    url = aws.queue(b)
    put = aws.s3.put_object(Bucket=b, Key="k", Body=b"\x00payload\xff", Metadata={"m": "v"}, Tagging="t=1",
                            StorageClass="STANDARD_IA", ChecksumAlgorithm="SHA256")
    newest = aws.s3.put_object(Bucket=b, Key="k", Body=b"newest")["VersionId"]
    aws.drain(url)
    before = aws.s3.head_object(Bucket=b, Key="k", VersionId=put["VersionId"], ChecksumMode="ENABLED")

    uoe(aws.s3, b, "k", aws.key_arn, bucket_key=True, VersionId=put["VersionId"])

    got = aws.s3.get_object(Bucket=b, Key="k", VersionId=put["VersionId"], ChecksumMode="ENABLED")
    assert got["Body"].read() == b"\x00payload\xff"
    assert (got["ETag"], got["VersionId"], got["LastModified"]) == (put["ETag"], put["VersionId"], before["LastModified"])
    assert (got["Metadata"], got["StorageClass"], got["ChecksumSHA256"]) == ({"m": "v"}, "STANDARD_IA", before["ChecksumSHA256"])
    assert (got["ServerSideEncryption"], got["SSEKMSKeyId"], got["BucketKeyEnabled"]) == ("aws:kms", aws.key_arn, True)
    assert aws.s3.get_object_tagging(Bucket=b, Key="k", VersionId=put["VersionId"])["TagSet"] == [{"Key": "t", "Value": "1"}]
    versions = aws.s3.list_object_versions(Bucket=b)["Versions"]
    assert sorted(v["VersionId"] for v in versions) == sorted([put["VersionId"], newest])  # no new version
    assert aws.s3.head_object(Bucket=b, Key="k")["ServerSideEncryption"] == "AES256"  # other version untouched
    assert aws.drain(url) == []  # no event notification


def test_update_object_encryption_current_object_and_bucket_key_off(aws):
    b = aws.bucket("uoe-plain")
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=aws.key_arn,
                      BucketKeyEnabled=True)
    other = aws.kms.create_key()["KeyMetadata"]["Arn"]
    uoe(aws.s3, b, "k", other)
    h = aws.s3.head_object(Bucket=b, Key="k")
    assert (h["SSEKMSKeyId"], h.get("BucketKeyEnabled", False), h["ContentLength"]) == (other, False, 1)


def _dsse(aws, b):
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x", ServerSideEncryption="aws:kms:dsse", SSEKMSKeyId=aws.key_arn)


SSE_C = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": "k" * 32}


def _sse_c(aws, b):
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x", **SSE_C)


def _unencrypted(aws, b):
    moto_patches.remove()  # only moto (or an object from before 2023) can hold an unencrypted object
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x")
    moto_patches.apply()


@pytest.mark.parametrize(
    ("setup", "code", "message"),
    [
        (_unencrypted, "InvalidRequest", "unencrypted source objects"),
        (_dsse, "InvalidRequest", "DSSE-KMS or SSE-C"),
        (_sse_c, "InvalidRequest", "DSSE-KMS or SSE-C"),
    ],
    ids=["unencrypted", "dsse", "sse-c"],
)
def test_update_object_encryption_refuses_unsupported_sources(aws, setup, code, message):
    b = aws.bucket("uoe-src")
    setup(aws, b)
    with pytest.raises(ClientError) as exc:
        uoe(aws.s3, b, "k", aws.key_arn)
    assert error(exc)[:2] == (400, code) and message in error(exc)[2]
    assert aws.s3.get_object(Bucket=b, Key="k", **(SSE_C if setup is _sse_c else {}))["Body"].read() == b"x"


@pytest.mark.parametrize(
    ("encryption", "status", "code", "message"),
    [
        ({"SSEKMS": {}}, 400, "InvalidRequest", "require an Amazon Web Services KMS key"),
        ({"SSEKMS": {"KMSKeyArn": "alias/mine"}}, 400, "InvalidRequest", "require a valid"),
        ({"SSEKMS": {"KMSKeyArn": "arn:aws:kms:us-east-1:123456789012:alias/mine"}}, 400, "InvalidRequest", "require a valid"),
        ({}, 400, "InvalidRequest", "valid new encryption type"),
        ({"SSEKMS": {"KMSKeyArn": FOREIGN_KEY}}, 403, "AccessDenied", "must be owned by the same account as the bucket"),
    ],
    ids=["no-arn", "alias", "alias-arn", "no-type", "foreign-account"],
)
def test_update_object_encryption_validates_the_key(aws, encryption, status, code, message):
    b = aws.bucket("uoe-key")
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x")
    raw = boto3.client("s3", region_name=REGION, config=Config(parameter_validation=False))
    with pytest.raises(ClientError) as exc:
        raw.update_object_encryption(Bucket=b, Key="k", ObjectEncryption=encryption)
    assert error(exc)[:2] == (status, code) and message in error(exc)[2]
    assert aws.s3.head_object(Bucket=b, Key="k")["ServerSideEncryption"] == "AES256"


def test_update_object_encryption_missing_key_and_version(aws):
    b = aws.bucket("uoe-missing", versioned=True)
    with pytest.raises(ClientError) as exc:
        uoe(aws.s3, b, "nope", aws.key_arn)
    assert error(exc)[:2] == (404, "NoSuchKey")
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        uoe(aws.s3, b, "k", aws.key_arn, VersionId="3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY")
    assert error(exc)[:2] == (404, "NoSuchVersion")
    aws.s3.delete_object(Bucket=b, Key="k")  # current version is now a delete marker
    with pytest.raises(ClientError) as exc:
        uoe(aws.s3, b, "k", aws.key_arn)
    assert error(exc)[:2] == (404, "NoSuchKey")


@pytest.mark.parametrize(
    "lock",
    [
        {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": until()},
        {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until()},
        {"ObjectLockLegalHoldStatus": "ON"},
    ],
    ids=["governance", "compliance", "legal-hold"],
)
def test_update_object_encryption_refuses_object_lock(aws, lock):
    b = aws.bucket("uoe-lock", lock=True)
    vid = aws.s3.put_object(Bucket=b, Key="k", Body=b"x", ChecksumAlgorithm="SHA256", **lock)["VersionId"]
    with pytest.raises(ClientError) as exc:
        uoe(aws.s3, b, "k", aws.key_arn, VersionId=vid)
    status, code, message = error(exc)
    assert (status, code) == (403, "AccessDenied") and "protected by S3 Object Lock" in message
    assert aws.s3.head_object(Bucket=b, Key="k")["ServerSideEncryption"] == "AES256"


def test_update_object_encryption_allowed_once_legal_hold_is_off(aws):
    b = aws.bucket("uoe-unlock", lock=True)
    vid = aws.s3.put_object(Bucket=b, Key="k", Body=b"x", ChecksumAlgorithm="SHA256",
                            ObjectLockLegalHoldStatus="ON")["VersionId"]
    aws.s3.put_object_legal_hold(Bucket=b, Key="k", VersionId=vid, LegalHold={"Status": "OFF"})
    uoe(aws.s3, b, "k", aws.key_arn, VersionId=vid)
    assert aws.s3.head_object(Bucket=b, Key="k")["SSEKMSKeyId"] == aws.key_arn


def test_gap1_update_object_encryption_overwrites_body(aws, unpatched):
    """Fails when moto fixes this upstream; then delete patch 1."""
    b = aws.bucket("gap1", versioned=True)
    vid = aws.s3.put_object(Bucket=b, Key="k", Body=b"payload", ServerSideEncryption="AES256")["VersionId"]
    uoe(aws.s3, b, "k", aws.key_arn)
    got = aws.s3.get_object(Bucket=b, Key="k")
    assert got["Body"].read().startswith(b"<ObjectEncryption")
    assert got["VersionId"] != vid


# ----------------------------------------------------------------------------- 2 CopySourceIfMatch


def test_copy_source_if_match_is_enforced(aws):
    b = aws.bucket("srcmatch")
    etag = aws.s3.put_object(Bucket=b, Key="src", Body=b"x" * (5 * MIB))["ETag"]
    with pytest.raises(ClientError) as exc:
        aws.s3.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src"}, CopySourceIfMatch='"0ld"')
    assert error(exc)[:2] == (412, "PreconditionFailed")
    assert "Contents" not in aws.s3.list_objects_v2(Bucket=b, Prefix="dst")
    aws.s3.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src"}, CopySourceIfMatch=etag)
    upload = aws.s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    with pytest.raises(ClientError) as exc:
        aws.s3.upload_part_copy(Bucket=b, Key="mp", UploadId=upload, PartNumber=1,
                                CopySource={"Bucket": b, "Key": "src"}, CopySourceIfMatch='"0ld"')
    assert error(exc)[:2] == (412, "PreconditionFailed")
    part = aws.s3.upload_part_copy(Bucket=b, Key="mp", UploadId=upload, PartNumber=1,
                                   CopySource={"Bucket": b, "Key": "src"}, CopySourceIfMatch=etag.strip('"'))
    assert part["CopyPartResult"]["ETag"] == etag


def test_gap2_copy_source_if_match_ignored(aws, unpatched):
    """Fails when moto fixes this upstream; then delete patch 2."""
    b = aws.bucket("gap2")
    aws.s3.put_object(Bucket=b, Key="src", Body=b"x")
    aws.s3.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src"}, CopySourceIfMatch='"0ld"')
    upload = aws.s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    aws.s3.upload_part_copy(Bucket=b, Key="mp", UploadId=upload, PartNumber=1,
                            CopySource={"Bucket": b, "Key": "src"}, CopySourceIfMatch='"0ld"')
    assert aws.s3.get_object(Bucket=b, Key="dst")["Body"].read() == b"x"


# ----------------------------------------------------------------------------- 3 DSSE key id


def test_dsse_head_and_get_name_the_key(aws):
    b = aws.bucket("dsse")
    _dsse(aws, b)
    for got in (aws.s3.head_object(Bucket=b, Key="k"), aws.s3.get_object(Bucket=b, Key="k")):
        assert (got["ServerSideEncryption"], got["SSEKMSKeyId"]) == ("aws:kms:dsse", aws.key_arn)


def test_gap3_dsse_head_has_no_key_id(aws, unpatched):
    """Fails when moto fixes this upstream; then delete patch 3."""
    b = aws.bucket("gap3")
    _dsse(aws, b)
    h = aws.s3.head_object(Bucket=b, Key="k")
    assert h["ServerSideEncryption"] == "aws:kms:dsse" and "SSEKMSKeyId" not in h


# ----------------------------------------------------------------------------- 4 default encryption


def _multipart(s3, bucket, key, **kwargs) -> dict[str, Any]:
    created = s3.create_multipart_upload(Bucket=bucket, Key=key, **kwargs)
    part = s3.upload_part(Bucket=bucket, Key=key, UploadId=created["UploadId"], PartNumber=1, Body=b"p")
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=created["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    return created


def test_every_new_object_is_sse_s3_by_default(aws):
    b = aws.bucket("default-enc")
    assert aws.s3.put_object(Bucket=b, Key="put", Body=b"x")["ServerSideEncryption"] == "AES256"
    assert aws.s3.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "put"})["ServerSideEncryption"] == "AES256"
    assert _multipart(aws.s3, b, "mp")["ServerSideEncryption"] == "AES256"
    for key in ("put", "copy", "mp"):
        h = aws.s3.head_object(Bucket=b, Key=key)
        assert h["ServerSideEncryption"] == "AES256" and "SSEKMSKeyId" not in h
    # SSE-C objects are not SSE-S3 objects.
    _sse_c(aws, b)
    h = aws.s3.head_object(Bucket=b, Key="k", **SSE_C)
    assert "ServerSideEncryption" not in h and h["SSECustomerAlgorithm"] == "AES256"


@pytest.mark.parametrize("algorithm", ["aws:kms", "aws:kms:dsse"])
def test_bucket_default_kms_applies_to_put_copy_multipart(aws, algorithm):
    b = aws.bucket("default-kms")
    aws.s3.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": algorithm, "KMSMasterKeyID": aws.key_arn}}]})
    other = aws.kms.create_key()["KeyMetadata"]["Arn"]
    aws.s3.put_object(Bucket=b, Key="put", Body=b"x")
    aws.s3.put_object(Bucket=b, Key="inplace", Body=b"x", ServerSideEncryption="aws:kms", SSEKMSKeyId=other)
    aws.s3.copy_object(Bucket=b, Key="inplace", CopySource={"Bucket": b, "Key": "inplace"}, MetadataDirective="REPLACE")
    created = _multipart(aws.s3, b, "mp")
    assert (created["ServerSideEncryption"], created["SSEKMSKeyId"]) == (algorithm, aws.key_arn)
    for key in ("put", "inplace", "mp"):
        h = aws.s3.head_object(Bucket=b, Key=key)
        assert (key, h["ServerSideEncryption"], h["SSEKMSKeyId"]) == (key, algorithm, aws.key_arn)


def test_gap4_no_default_encryption(aws, unpatched):
    """Fails when moto fixes this upstream; then delete patch 4."""
    b = aws.bucket("gap4")
    aws.s3.put_object(Bucket=b, Key="put", Body=b"x")
    aws.s3.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "put"})
    created = _multipart(aws.s3, b, "mp")
    assert "ServerSideEncryption" not in created
    assert [aws.s3.head_object(Bucket=b, Key=k).get("ServerSideEncryption") for k in ("put", "copy", "mp")] == [None] * 3


# ----------------------------------------------------------------------------- 5 events


def test_event_records_carry_the_callers_principal(aws, monkeypatch):
    iam, sts, sns = (boto3.client(s, region_name=REGION) for s in ("iam", "sts", "sns"))
    b = aws.bucket("notify")
    q = aws.sqs.create_queue(QueueName="via-sns")["QueueUrl"]
    q_arn = aws.sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name="t")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=q_arn, Attributes={"RawMessageDelivery": "true"})
    url = aws.sqs.create_queue(QueueName="direct")["QueueUrl"]
    direct_arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    invoked: list[dict[str, Any]] = []
    monkeypatch.setattr(notifications, "_invoke_awslambda", lambda acct, body, arn, region: invoked.append(body))
    aws.s3.put_bucket_notification_configuration(Bucket=b, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": direct_arn, "Events": ["s3:ObjectCreated:*"]}],
        "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}],
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": f"arn:aws:lambda:{REGION}:123456789012:function:f",
                                          "Events": ["s3:ObjectCreated:*"]}]})
    aws.drain(url), aws.drain(q)
    role_creds = assumed_role(iam, sts)
    role_id = boto3.client("sts", region_name=REGION, **role_creds).get_caller_identity()["UserId"]
    user_id = sts.get_caller_identity()["UserId"]
    assert role_id.endswith(":fn") and role_id != user_id

    aws.s3.put_object(Bucket=b, Key="a b+c.txt", Body=b"x")
    boto3.client("s3", region_name=REGION, **role_creds).copy_object(
        Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "a b+c.txt"})

    for records in ([e["Records"][0] for e in aws.drain(url)], [e["Records"][0] for e in aws.drain(q)],
                    [e["Records"][0] for e in invoked]):
        assert [(r["eventName"], r["s3"]["object"]["key"], r["userIdentity"]["principalId"]) for r in records] == [
            ("ObjectCreated:Put", "a+b%2Bc.txt", "AWS:" + user_id),  # form-encoded, like S3
            ("ObjectCreated:Copy", "copy", "AWS:" + role_id),
        ]


def _eventbridge_target(aws, bucket) -> str:
    """Every aws.s3 event of ``bucket`` that reaches EventBridge, delivered to a queue."""
    events = boto3.client("events", region_name=REGION)
    aws.queue(bucket, eventbridge=True)
    url = aws.sqs.create_queue(QueueName=f"{bucket}-eb")["QueueUrl"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=f"{bucket}-all", EventPattern=json.dumps({"source": ["aws.s3"]}))
    events.put_targets(Rule=f"{bucket}-all", Targets=[{"Id": "q", "Arn": arn}])
    return url


def test_eventbridge_object_created_has_requester_reason_and_etag(aws):
    b = aws.bucket("ebkt")
    url = _eventbridge_target(aws, b)
    etag = aws.s3.put_object(Bucket=b, Key="a b+c.txt", Body=b"x", Tagging="t=1")["ETag"].strip('"')
    aws.s3.copy_object(Bucket=b, Key="copy", CopySource={"Bucket": b, "Key": "a b+c.txt"})
    _multipart(aws.s3, b, "mp")
    aws.s3.put_object_tagging(Bucket=b, Key="mp", Tagging={"TagSet": [{"Key": "t", "Value": "2"}]})
    got = aws.drain(url)
    assert [e["detail-type"] for e in got] == ["Object Created"] * 3 + ["Object Tags Added"]
    details = [e["detail"] for e in got[:3]]
    assert [(d["reason"], d["requester"]) for d in details] == [
        ("PutObject", "123456789012"), ("CopyObject", "123456789012"), ("CompleteMultipartUpload", "123456789012")]
    assert (details[0]["object"]["key"], details[0]["object"]["etag"]) == ("a b+c.txt", etag)  # moto: key not encoded


def test_gap5_event_has_no_user_identity(aws, unpatched):
    """Fails when moto fixes this upstream; then delete the userIdentity part of patch 5."""
    b = aws.bucket("gap5")
    url = aws.queue(b)
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x")
    (event,) = aws.drain(url)
    assert "userIdentity" not in event["Records"][0]


def test_versioned_bucket_events_name_the_version(aws):
    b = aws.bucket("ev-versioned", versioned=True)
    url = aws.queue(b)
    vid = aws.s3.put_object(Bucket=b, Key="k", Body=b"x")["VersionId"]
    copied = aws.s3.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k"}, ServerSideEncryption="aws:kms")
    versions = [e["Records"][0]["s3"]["object"]["versionId"] for e in aws.drain(url)]
    assert versions == [vid, copied["VersionId"]] and vid != copied["VersionId"]
    plain = aws.bucket("ev-plain")
    url = aws.queue(plain)
    aws.s3.put_object(Bucket=plain, Key="k", Body=b"x")
    assert "versionId" not in aws.drain(url)[0]["Records"][0]["s3"]["object"]


def test_gap5_event_has_no_version_id(aws, unpatched):
    """Fails when moto fixes this upstream; then delete the versionId part of patch 5."""
    b = aws.bucket("gap5v", versioned=True)
    url = aws.queue(b)
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x")
    assert "versionId" not in aws.drain(url)[0]["Records"][0]["s3"]["object"]


def test_gap5_eventbridge_reason_requester_etag(aws, unpatched):
    """Fails when moto fixes this upstream; then delete the EventBridge/ObjectTagging parts of patch 5."""
    b = aws.bucket("gap5eb")
    url = _eventbridge_target(aws, b)
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x")
    created, tagged = aws.drain(url)
    assert (created["detail-type"], tagged["detail-type"]) == ("Object Created", "Object Tags Added")
    assert created["detail"]["reason"] == "ObjectCreated" and "etag" not in created["detail"]["object"]


# ----------------------------------------------------------------------------- 6 destination conditions


def test_copy_if_match_is_checked_against_the_destination(aws):
    b = aws.bucket("dest", versioned=True)
    aws.s3.put_object(Bucket=b, Key="src", Body=b"new")
    dst_etag = aws.s3.put_object(Bucket=b, Key="dst", Body=b"old")["ETag"]
    src = {"Bucket": b, "Key": "src"}
    with pytest.raises(ClientError) as exc:
        aws.s3.copy_object(Bucket=b, Key="dst", CopySource=src, IfMatch='"0ther"')
    assert error(exc)[:2] == (412, "PreconditionFailed")
    with pytest.raises(ClientError) as exc:
        aws.s3.copy_object(Bucket=b, Key="absent", CopySource=src, IfMatch=dst_etag)
    assert error(exc)[:2] == (404, "NoSuchKey")
    with pytest.raises(ClientError) as exc:
        aws.s3.copy_object(Bucket=b, Key="dst", CopySource=src, IfNoneMatch="*")
    assert error(exc)[:2] == (412, "PreconditionFailed")
    assert aws.s3.get_object(Bucket=b, Key="dst")["Body"].read() == b"old"
    aws.s3.copy_object(Bucket=b, Key="dst", CopySource=src, IfMatch=dst_etag)
    aws.s3.copy_object(Bucket=b, Key="fresh", CopySource=src, IfNoneMatch="*")
    assert aws.s3.get_object(Bucket=b, Key="dst")["Body"].read() == b"new"
    aws.s3.delete_object(Bucket=b, Key="fresh")  # latest version is a delete marker
    with pytest.raises(ClientError) as exc:
        aws.s3.copy_object(Bucket=b, Key="fresh", CopySource=src, IfMatch=dst_etag)
    assert error(exc)[:2] == (404, "NoSuchKey")


def test_complete_multipart_if_match_is_checked_against_the_destination(aws):
    b = aws.bucket("dest-mp")
    etag = aws.s3.put_object(Bucket=b, Key="k", Body=b"old")["ETag"]
    upload = aws.s3.create_multipart_upload(Bucket=b, Key="k")["UploadId"]
    part = aws.s3.upload_part(Bucket=b, Key="k", UploadId=upload, PartNumber=1, Body=b"new")
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    with pytest.raises(ClientError) as exc:
        aws.s3.complete_multipart_upload(Bucket=b, Key="k", UploadId=upload, MultipartUpload=parts, IfMatch='"0ther"')
    assert error(exc)[:2] == (412, "PreconditionFailed")
    assert aws.s3.get_object(Bucket=b, Key="k")["Body"].read() == b"old"
    aws.s3.complete_multipart_upload(Bucket=b, Key="k", UploadId=upload, MultipartUpload=parts, IfMatch=etag)
    assert aws.s3.get_object(Bucket=b, Key="k")["Body"].read() == b"new"


def test_gap6_destination_if_match_ignored(aws, unpatched):
    """Fails when moto fixes this upstream; then delete patch 6."""
    b = aws.bucket("gap6")
    aws.s3.put_object(Bucket=b, Key="src", Body=b"new")
    aws.s3.put_object(Bucket=b, Key="dst", Body=b"old")
    aws.s3.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src"}, IfMatch='"0ther"')
    aws.s3.copy_object(Bucket=b, Key="absent", CopySource={"Bucket": b, "Key": "src"}, IfMatch='"0ther"')
    upload = aws.s3.create_multipart_upload(Bucket=b, Key="dst")["UploadId"]
    part = aws.s3.upload_part(Bucket=b, Key="dst", UploadId=upload, PartNumber=1, Body=b"mp")
    aws.s3.complete_multipart_upload(Bucket=b, Key="dst", UploadId=upload, IfMatch='"0ther"',
                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert aws.s3.get_object(Bucket=b, Key="dst")["Body"].read() == b"mp"


# ----------------------------------------------------------------------------- commit hook


def test_commit_hook_newer_put_during_pinned_copy_fails_if_match(aws):
    b = aws.bucket("race", versioned=True)
    old = aws.s3.put_object(Bucket=b, Key="k", Body=b"OLDER CONTENT")
    seen = []

    def newer_put(bucket, key):
        seen.append((bucket, key))
        aws.s3.put_object(Bucket=bucket, Key=key, Body=b"NEWER CONTENT")  # back into moto, same thread

    with moto_patches.commit_hook(newer_put), pytest.raises(ClientError) as exc:
        aws.s3.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k", "VersionId": old["VersionId"]},
                           IfMatch=old["ETag"], ServerSideEncryption="aws:kms", SSEKMSKeyId=aws.key_arn)
    assert error(exc)[:2] == (412, "PreconditionFailed") and seen == [(b, "k")]
    assert aws.s3.get_object(Bucket=b, Key="k")["Body"].read() == b"NEWER CONTENT"
    assert len(aws.s3.list_object_versions(Bucket=b)["Versions"]) == 2
    aws.s3.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k"}, ServerSideEncryption="aws:kms")
    assert seen == [(b, "k")]  # the hook is gone after the block


def test_commit_hook_copy_without_condition_commits_last_with_what_it_read(aws):
    b = aws.bucket("race-plain")
    aws.s3.put_object(Bucket=b, Key="k", Body=b"OLDER CONTENT")
    landed = []

    def newer_put(bucket, key):
        landed.append(aws.s3.put_object(Bucket=bucket, Key=key, Body=b"NEWER")["ETag"])

    with moto_patches.commit_hook(newer_put):
        aws.s3.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k"}, ServerSideEncryption="aws:kms")
    assert len(landed) == 1  # the newer PUT did land, and the copy (of what it had read) committed after it
    got = aws.s3.get_object(Bucket=b, Key="k")
    assert (got["Body"].read(), got["ServerSideEncryption"]) == (b"OLDER CONTENT", "aws:kms")


def test_commit_hook_runs_before_complete_multipart_if_match(aws):
    b = aws.bucket("race-mp")
    old = aws.s3.put_object(Bucket=b, Key="k", Body=b"o" * (6 * MIB))
    upload = aws.s3.create_multipart_upload(Bucket=b, Key="k")["UploadId"]
    part = aws.s3.upload_part_copy(Bucket=b, Key="k", UploadId=upload, PartNumber=1, CopySource={"Bucket": b, "Key": "k"},
                                   CopySourceIfMatch=old["ETag"])
    with moto_patches.commit_hook(lambda bucket, key: aws.s3.put_object(Bucket=bucket, Key=key, Body=b"NEWER")), \
            pytest.raises(ClientError) as exc:
        aws.s3.complete_multipart_upload(Bucket=b, Key="k", UploadId=upload, IfMatch=old["ETag"], MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": part["CopyPartResult"]["ETag"]}]})
    assert error(exc)[:2] == (412, "PreconditionFailed")
    assert aws.s3.get_object(Bucket=b, Key="k")["Body"].read() == b"NEWER"
    assert [u["UploadId"] for u in aws.s3.list_multipart_uploads(Bucket=b)["Uploads"]] == [upload]  # can be aborted


# ----------------------------------------------------------------------------- 7 copy fidelity


REPLACED = {
    "Metadata": {"m": "v"}, "ContentType": "text/x-test", "CacheControl": "max-age=5",
    "ContentDisposition": "attachment", "ContentEncoding": "identity", "ContentLanguage": "de",
    "Expires": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC), "WebsiteRedirectLocation": "/r",
    "StorageClass": "STANDARD_IA",
}
EVERYONE = 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'


def _sse(aws, algorithm):
    if algorithm == "aws:kms":
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": aws.key_arn, "BucketKeyEnabled": True}
    return {"ServerSideEncryption": "aws:kms:dsse", "SSEKMSKeyId": aws.key_arn}


def _assert_replaced(aws, b, key, sse, retain, tags):
    h = aws.s3.head_object(Bucket=b, Key=key, ChecksumMode="ENABLED")
    assert {k: h.get(k) for k in REPLACED} == REPLACED
    assert {k: h.get(k) for k in sse} == sse
    assert (h["ObjectLockMode"], h["ObjectLockRetainUntilDate"], h["ObjectLockLegalHoldStatus"]) == ("GOVERNANCE", retain, "ON")
    assert h.get("ChecksumSHA256")
    assert aws.s3.get_object_tagging(Bucket=b, Key=key)["TagSet"] == tags
    grants = aws.s3.get_object_acl(Bucket=b, Key=key)["Grants"]
    assert [(g["Grantee"].get("URI"), g["Permission"]) for g in grants] == [(EVERYONE[5:-1], "READ")]


@pytest.mark.parametrize("algorithm", ["aws:kms", "aws:kms:dsse"])
def test_copy_object_replace_keeps_everything(aws, algorithm):
    b = aws.bucket("fidelity", lock=True, ownership="ObjectWriter")
    v1 = aws.s3.put_object(Bucket=b, Key="src", Body=b"first", Tagging="t1=v1&t%202=v%2B2")["VersionId"]
    aws.s3.put_object(Bucket=b, Key="src", Body=b"second", Tagging="t1=later")
    retain, sse = until(), _sse(aws, algorithm)
    copied = aws.s3.copy_object(
        Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src", "VersionId": v1}, MetadataDirective="REPLACE",
        TaggingDirective="COPY", ChecksumAlgorithm="SHA256", GrantRead=EVERYONE, ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=retain, ObjectLockLegalHoldStatus="ON", **REPLACED, **sse)
    assert copied["CopySourceVersionId"] == v1
    assert aws.s3.get_object(Bucket=b, Key="dst")["Body"].read() == b"first"
    _assert_replaced(aws, b, "dst", sse, retain, [{"Key": "t1", "Value": "v1"}, {"Key": "t 2", "Value": "v+2"}])


@pytest.mark.parametrize("algorithm", ["aws:kms", "aws:kms:dsse"])
def test_multipart_copy_keeps_everything(aws, algorithm):
    b = aws.bucket("fidelity-mp", lock=True, ownership="ObjectWriter")
    body = bytes(range(256)) * (24 * 1024)  # 6 MiB
    v1 = aws.s3.put_object(Bucket=b, Key="src", Body=body, ChecksumAlgorithm="SHA256")["VersionId"]
    aws.s3.put_object(Bucket=b, Key="src", Body=b"later", ChecksumAlgorithm="SHA256")
    retain, sse = until(), _sse(aws, algorithm)
    created = aws.s3.create_multipart_upload(
        Bucket=b, Key="dst", ChecksumAlgorithm="SHA256", Tagging="a=1&b%20c=d%2Be", GrantRead=EVERYONE,
        ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=retain, ObjectLockLegalHoldStatus="ON", **REPLACED, **sse)
    assert {k: created.get(k) for k in sse} == sse
    parts = []
    for n, rng in ((1, f"bytes=0-{5 * MIB - 1}"), (2, f"bytes={5 * MIB}-{6 * MIB - 1}")):
        got = aws.s3.upload_part_copy(Bucket=b, Key="dst", UploadId=created["UploadId"], PartNumber=n,
                                      CopySource={"Bucket": b, "Key": "src", "VersionId": v1}, CopySourceRange=rng)
        assert got["CopySourceVersionId"] == v1
        parts.append({"PartNumber": n, "ETag": got["CopyPartResult"]["ETag"]})
    done = aws.s3.complete_multipart_upload(Bucket=b, Key="dst", UploadId=created["UploadId"],
                                            MultipartUpload={"Parts": parts})
    assert {k: done.get(k) for k in sse} == sse
    assert aws.s3.get_object(Bucket=b, Key="dst")["Body"].read() == body
    _assert_replaced(aws, b, "dst", sse, retain, [{"Key": "a", "Value": "1"}, {"Key": "b c", "Value": "d+e"}])


def test_gap7_copy_with_object_lock_needs_md5(aws, unpatched):
    """Fails when moto fixes this upstream; then delete the CopyObject Object Lock part of patch 7."""
    b = aws.bucket("gap7", lock=True)
    aws.s3.put_object(Bucket=b, Key="src", Body=b"x", ChecksumAlgorithm="SHA256")
    with pytest.raises(ClientError) as exc:
        aws.s3.copy_object(Bucket=b, Key="dst", CopySource={"Bucket": b, "Key": "src"},
                           ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until())
    assert error(exc)[1] == "MissingUploadObjectWithObjectLockHeaders"


def test_gap7_multipart_drops_lock_and_bucket_key(aws, unpatched):
    """Fails when moto fixes this upstream; then delete the CreateMultipartUpload part of patch 7."""
    b = aws.bucket("gap7mp", lock=True)
    _multipart(aws.s3, b, "k", ObjectLockLegalHoldStatus="ON", ServerSideEncryption="aws:kms",
               SSEKMSKeyId=aws.key_arn, BucketKeyEnabled=True)
    h = aws.s3.head_object(Bucket=b, Key="k")
    assert h["ServerSideEncryption"] == "aws:kms"
    assert "ObjectLockLegalHoldStatus" not in h and "BucketKeyEnabled" not in h


def test_gap7_upload_part_copy_no_source_version(aws, unpatched):
    """Fails when moto fixes this upstream; then delete the UploadPartCopy part of patch 7."""
    b = aws.bucket("gap7upc", versioned=True)
    aws.s3.put_object(Bucket=b, Key="src", Body=b"x")
    upload = aws.s3.create_multipart_upload(Bucket=b, Key="dst")["UploadId"]
    got = aws.s3.upload_part_copy(Bucket=b, Key="dst", UploadId=upload, PartNumber=1, CopySource={"Bucket": b, "Key": "src"})
    assert "CopySourceVersionId" not in got


def test_complete_multipart_sends_one_event(aws):
    b = aws.bucket("mp-event")
    url = aws.queue(b)
    _multipart(aws.s3, b, "k")
    assert [e["Records"][0]["eventName"] for e in aws.drain(url)] == ["ObjectCreated:CompleteMultipartUpload"]


def test_gap7_complete_multipart_sends_extra_put_event(aws, unpatched):
    """Fails when moto fixes this upstream; then delete the CompleteMultipartUpload event part of patch 7."""
    b = aws.bucket("gap7ev")
    url = aws.queue(b)
    _multipart(aws.s3, b, "k")
    names = [e["Records"][0]["eventName"] for e in aws.drain(url)]
    assert names == ["ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload"]


ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def _acl_body_round_trip(aws, bucket) -> tuple[str, list[tuple[str | None, str]]]:
    aws.s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    owner = aws.s3.get_object_acl(Bucket=bucket, Key="k")["Owner"]
    aws.s3.put_object_acl(Bucket=bucket, Key="k", AccessControlPolicy={"Owner": owner, "Grants": [
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
        {"Grantee": {"Type": "CanonicalUser", "ID": owner["ID"]}, "Permission": "FULL_CONTROL"}]})
    grants = aws.s3.get_object_acl(Bucket=bucket, Key="k")["Grants"]
    return owner["ID"], sorted((g["Grantee"].get("URI") or g["Grantee"].get("ID"), g["Permission"]) for g in grants)


def test_put_object_acl_with_a_policy_body(aws):
    b = aws.bucket("acl-body", ownership="ObjectWriter")
    owner_id, grants = _acl_body_round_trip(aws, b)
    assert grants == sorted([(ALL_USERS, "READ"), (owner_id, "FULL_CONTROL")])


def test_gap7_put_object_acl_ignores_body(aws, unpatched):
    """Fails when moto fixes this upstream; then delete the PutObjectAcl part of patch 7."""
    b = aws.bucket("gap7acl", ownership="ObjectWriter")
    assert (ALL_USERS, "READ") not in _acl_body_round_trip(aws, b)[1]


# ----------------------------------------------------------------------------- 8 SSE-C


def test_sse_c_object_needs_its_key_to_be_read_or_copied(aws):
    b = aws.bucket("ssec", versioned=True)
    _sse_c(aws, b)
    with pytest.raises(ClientError) as exc:
        aws.s3.head_object(Bucket=b, Key="k")
    assert error(exc)[0] == 400
    with pytest.raises(ClientError) as exc:
        aws.s3.get_object(Bucket=b, Key="k")
    assert error(exc)[:2] == (400, "InvalidRequest")
    with pytest.raises(ClientError) as exc:
        aws.s3.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k"}, ServerSideEncryption="aws:kms")
    assert error(exc)[:2] == (400, "InvalidRequest")
    upload = aws.s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    with pytest.raises(ClientError) as exc:
        aws.s3.upload_part_copy(Bucket=b, Key="mp", UploadId=upload, PartNumber=1, CopySource={"Bucket": b, "Key": "k"})
    assert error(exc)[:2] == (400, "InvalidRequest")
    assert aws.s3.head_object(Bucket=b, Key="k", **SSE_C)["SSECustomerAlgorithm"] == "AES256"
    assert aws.s3.get_object(Bucket=b, Key="k", **SSE_C)["Body"].read() == b"x"
    aws.s3.copy_object(Bucket=b, Key="k", CopySource={"Bucket": b, "Key": "k"}, ServerSideEncryption="aws:kms",
                       CopySourceSSECustomerAlgorithm="AES256", CopySourceSSECustomerKey="k" * 32)
    assert aws.s3.head_object(Bucket=b, Key="k")["ServerSideEncryption"] == "aws:kms"  # re-keyed: readable again


def test_gap8_sse_c_object_readable_without_key(aws, unpatched):
    """Fails when moto fixes this upstream; then delete patch 8."""
    b = aws.bucket("gap8")
    _sse_c(aws, b)
    h = aws.s3.head_object(Bucket=b, Key="k")
    assert "SSECustomerAlgorithm" not in h
    assert aws.s3.get_object(Bucket=b, Key="k")["Body"].read() == b"x"


# ----------------------------------------------------------------------------- 9 retain-until dates


def _with_retain_until(aws, bucket, retain):
    """PutObject, CopyObject and CreateMultipartUpload, each asking for ``retain``."""
    lock = {"ObjectLockMode": "GOVERNANCE", "ObjectLockRetainUntilDate": retain}
    aws.s3.put_object(Bucket=bucket, Key="src", Body=b"x", ChecksumAlgorithm="SHA256")
    return {
        "put": lambda: aws.s3.put_object(Bucket=bucket, Key="p", Body=b"x", ChecksumAlgorithm="SHA256", **lock),
        "copy": lambda: aws.s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "src"}, **lock),
        "multipart": lambda: aws.s3.create_multipart_upload(Bucket=bucket, Key="m", **lock),
    }


def test_retain_until_date_in_the_past_is_refused(aws):
    b = aws.bucket("retain", lock=True)
    for name, write in _with_retain_until(aws, b, until(days=-1)).items():
        with pytest.raises(ClientError) as exc:
            write()
        assert error(exc) == (400, "InvalidArgument", "The retain until date must be in the future!"), name
    for write in _with_retain_until(aws, b, until(days=1)).values():
        write()  # a future date is still accepted
    assert aws.s3.head_object(Bucket=b, Key="c")["ObjectLockMode"] == "GOVERNANCE"


def test_gap9_past_retain_until_date_accepted(aws, unpatched):
    """Fails when moto fixes this upstream; then delete patch 9."""
    b = aws.bucket("gap9", lock=True)
    past = until(days=-1)
    _with_retain_until(aws, b, past)["put"]()
    assert aws.s3.head_object(Bucket=b, Key="p")["ObjectLockRetainUntilDate"] == past
    aws.s3.create_multipart_upload(Bucket=b, Key="m", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=past)


# ----------------------------------------------------------------------------- patch 10: null version


def test_head_of_the_null_version_in_a_never_versioned_bucket(aws):
    b = aws.bucket("nullv")
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x")
    head = aws.s3.head_object(Bucket=b, Key="k", VersionId="null")
    assert head["ContentLength"] == 1
    with pytest.raises(ClientError) as missing:
        aws.s3.head_object(Bucket=b, Key="nope", VersionId="null")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    # Other version ids still name no version there.
    with pytest.raises(ClientError) as other:
        aws.s3.head_object(Bucket=b, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY")
    assert other.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_gap10_head_null_version_of_unversioned_bucket(aws, unpatched):
    """Fails when moto fixes this upstream; then delete patch 10."""
    b = aws.bucket("gap10")
    aws.s3.put_object(Bucket=b, Key="k", Body=b"x")
    with pytest.raises(ClientError) as refused:
        aws.s3.head_object(Bucket=b, Key="k", VersionId="null")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


# ----------------------------------------------------------------------------- 11 GetBucketReplication


def _replication(aws, source="repl-src") -> dict[str, Any]:
    """A V2 configuration with each kind of filter, the SSE-KMS criteria and ExistingObjectReplication."""
    for name in (source, "repl-dst"):
        aws.bucket(name, versioned=True)
    dest = {"Bucket": "arn:aws:s3:::repl-dst"}
    off = {"Status": "Disabled"}
    return {
        "Role": "arn:aws:iam::123456789012:role/replication",
        "Rules": [
            {"ID": "kms", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": "tenant-a/"},
             "DeleteMarkerReplication": {"Status": "Enabled"},
             "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
             "ExistingObjectReplication": {"Status": "Enabled"},
             "Destination": {**dest, "EncryptionConfiguration": {"ReplicaKmsKeyID": aws.key_arn}}},
            {"ID": "one-tag", "Priority": 2, "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}},
             "DeleteMarkerReplication": off, "Destination": dest},
            {"ID": "prefix-and-tag", "Priority": 3, "Status": "Enabled",
             "Filter": {"And": {"Prefix": "tenant-b/", "Tags": [{"Key": "k", "Value": "v"}]}},
             "DeleteMarkerReplication": off, "Destination": dest},
            {"ID": "two-tags", "Priority": 4, "Status": "Disabled",
             "Filter": {"And": {"Tags": [{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}]}},
             "DeleteMarkerReplication": off, "Destination": dest},
            {"ID": "everything", "Priority": 5, "Status": "Enabled", "Filter": {},
             "DeleteMarkerReplication": off, "Destination": dest},
        ],
    }


def test_get_bucket_replication_answers_the_configuration_as_put(aws):
    from enforcer.replication import rules_covering

    config = _replication(aws)
    with pytest.raises(ClientError) as none:
        aws.s3.get_bucket_replication(Bucket="repl-src")
    assert error(none)[:2] == (404, "ReplicationConfigurationNotFoundError")
    aws.s3.put_bucket_replication(Bucket="repl-src", ReplicationConfiguration=config)
    answer = aws.s3.get_bucket_replication(Bucket="repl-src")["ReplicationConfiguration"]
    assert answer == config
    # What the engine reads from it: only the rules whose filter covers the key, with their criteria.
    covering = {rule.rule_id: rule for rule in rules_covering(answer, "tenant-a/x")}
    assert set(covering) == {"kms", "one-tag", "everything"}
    assert covering["kms"].sse_kms_selected and covering["kms"].replica_kms_key_id == aws.key_arn
    assert covering["one-tag"].tag_filtered and not covering["everything"].tag_filtered


def test_get_bucket_replication_keeps_a_v1_rule_prefix(aws):
    # V1 rules carry Prefix on the rule itself and no Filter (API_ReplicationRule).
    _replication(aws)
    v1 = {"Role": "arn:aws:iam::123456789012:role/replication",
          "Rules": [{"ID": "v1", "Prefix": "old/", "Status": "Enabled",
                     "Destination": {"Bucket": "arn:aws:s3:::repl-dst"}}]}
    aws.s3.put_bucket_replication(Bucket="repl-src", ReplicationConfiguration=v1)
    rule = aws.s3.get_bucket_replication(Bucket="repl-src")["ReplicationConfiguration"]["Rules"][0]
    assert rule["Prefix"] == "old/" and "Filter" not in rule


def test_gap11_replication_rules_lose_filter_and_criteria(aws, unpatched):
    """Fails when moto fixes this upstream; then delete patch 11."""
    aws.s3.put_bucket_replication(Bucket="repl-src", ReplicationConfiguration=_replication(aws))
    rules = aws.s3.get_bucket_replication(Bucket="repl-src")["ReplicationConfiguration"]["Rules"]
    assert all(rule["Filter"] == {"Prefix": ""} for rule in rules)  # every key, for every rule
    assert not any("SourceSelectionCriteria" in rule for rule in rules)


# ----------------------------------------------------------------------------- 12 default ACL of a multipart object


def _grants(s3, bucket, key) -> tuple[str, list[tuple[str | None, str]]]:
    acl = s3.get_object_acl(Bucket=bucket, Key=key)
    return acl["Owner"]["ID"], sorted((g["Grantee"].get("URI") or g["Grantee"].get("ID"), g["Permission"])
                                      for g in acl["Grants"])


@pytest.mark.parametrize("ownership", [None, "ObjectWriter"])
def test_multipart_object_without_acl_headers_is_private(aws, ownership):
    b = aws.bucket("mp-acl", versioned=True, ownership=ownership)
    aws.s3.put_object(Bucket=b, Key="single", Body=b"x")
    _multipart(aws.s3, b, "multi")
    owner_id, grants = _grants(aws.s3, b, "multi")
    assert grants == [(owner_id, "FULL_CONTROL")]
    assert (owner_id, grants) == _grants(aws.s3, b, "single")  # the same default as a PutObject


def test_multipart_object_keeps_a_canned_acl_it_was_created_with(aws):
    b = aws.bucket("mp-acl-canned", ownership="ObjectWriter")
    _multipart(aws.s3, b, "k", ACL="public-read")
    owner_id, grants = _grants(aws.s3, b, "k")
    assert grants == sorted([(ALL_USERS, "READ"), (owner_id, "FULL_CONTROL")])


def test_gap12_multipart_object_has_no_acl(aws, unpatched):
    """Fails when moto fixes this upstream; then delete patch 12."""
    b = aws.bucket("gap12")
    _multipart(aws.s3, b, "k")
    # in-process the AttributeError escapes; the server turns the same error into a 500
    with pytest.raises(AttributeError, match="grants"):
        aws.s3.get_object_acl(Bucket=b, Key="k")


# ----------------------------------------------------------------------------- server mode


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        yield endpoint
    finally:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10).read()
        srv.stop()


def test_server_update_object_encryption_keeps_body_and_version(server):
    s3, kms = (boto3.client(s, region_name=REGION, endpoint_url=server) for s in ("s3", "kms"))
    arn = kms.create_key()["KeyMetadata"]["Arn"]
    s3.create_bucket(Bucket="srv")
    s3.put_bucket_versioning(Bucket="srv", VersioningConfiguration={"Status": "Enabled"})
    body = bytes(range(256)) * 64
    put = s3.put_object(Bucket="srv", Key="dir/k", Body=body)
    assert put["ServerSideEncryption"] == "AES256"
    uoe(s3, "srv", "dir/k", arn, bucket_key=True, VersionId=put["VersionId"])
    got = s3.get_object(Bucket="srv", Key="dir/k")
    assert (got["Body"].read(), got["ETag"], got["VersionId"]) == (body, put["ETag"], put["VersionId"])
    assert (got["ServerSideEncryption"], got["SSEKMSKeyId"], got["BucketKeyEnabled"]) == ("aws:kms", arn, True)
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket="srv")["Versions"]] == [put["VersionId"]]


def test_server_events_and_commit_hook(server):
    s3, sqs, iam, sts = (boto3.client(s, region_name=REGION, endpoint_url=server) for s in ("s3", "sqs", "iam", "sts"))
    creds = assumed_role(iam, sts)
    role_id = boto3.client("sts", region_name=REGION, endpoint_url=server, **creds).get_caller_identity()["UserId"]
    url = sqs.create_queue(QueueName="srv-q")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.create_bucket(Bucket="srv-ev")
    s3.put_bucket_notification_configuration(Bucket="srv-ev", NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    old = boto3.client("s3", region_name=REGION, endpoint_url=server, **creds).put_object(
        Bucket="srv-ev", Key="k", Body=b"OLD")
    with moto_patches.commit_hook(lambda b, k: s3.put_object(Bucket=b, Key=k, Body=b"NEWER")), \
            pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket="srv-ev", Key="k", CopySource={"Bucket": "srv-ev", "Key": "k"}, IfMatch=old["ETag"],
                       ServerSideEncryption="aws:kms")
    assert error(exc)[:2] == (412, "PreconditionFailed")
    assert s3.get_object(Bucket="srv-ev", Key="k")["Body"].read() == b"NEWER"
    bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    principals = [b["Records"][0]["userIdentity"]["principalId"] for b in bodies if "Records" in b]
    assert principals[0] == "AWS:" + role_id and len(principals) == 2 and principals[1] != principals[0]
