"""The deliveries the enforcer's queue receives, in the shapes AWS documents, for tests.

One builder per documented shape, so every test file feeds the parser and the filters
the same bytes; the values follow the documents' examples, in us-east-1. Sources:

* S3 notification records and ``s3:TestEvent``: "Event message structure", Amazon S3
  User Guide (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html),
  event version 2.1.
* EventBridge "Object Created": "EventBridge event message structure", Amazon S3 User
  Guide (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html).
* SNS to SQS: "Amazon SNS message and JSON formats" and "Amazon SNS raw message
  delivery", Amazon SNS Developer Guide
  (https://docs.aws.amazon.com/sns/latest/dg/sns-message-and-json-formats.html).
* SQS records as Lambda hands them over: "Using Lambda with Amazon SQS", Lambda
  Developer Guide (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html), built
  by ``ops.lambda_runtime.sqs_event``, the same code the sandbox runs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote_plus

from ops.lambda_runtime import sqs_event

ACCOUNT = "111122223333"
BUCKET = "bkt"
USER = "AWS:AIDAEXAMPLEUSER"
VERSION_ID = "096fKKXTRTtl3on89fVO.nfljtsv6qko"
ETAG = "d41d8cd98f00b204e9800998ecf8427e"
QUEUE_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:enforcer"
TOPIC_ARN = f"arn:aws:sns:us-east-1:{ACCOUNT}:s3-events"


def s3_record(
    key: str = "tenant-a/x.csv",
    *,
    bucket: str = BUCKET,
    principal: str | None = USER,
    event_name: str = "ObjectCreated:Put",
    version_id: str | None = VERSION_ID,
    etag: str = ETAG,
) -> dict[str, Any]:
    """One S3 notification record for the object ``key`` (the plain key, not encoded).

    S3 form-encodes the key ("'red flower.jpg' becomes 'red+flower.jpg'"), and so does
    this. ``principal=None`` leaves out ``userIdentity``; ``version_id=None`` is an
    object in an unversioned bucket.
    """
    obj = {"key": quote_plus(key, safe="/"), "size": 1024, "eTag": etag, "sequencer": "0055AED6DCD90281E5"}
    if version_id is not None:
        obj["versionId"] = version_id
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T12:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": principal},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "enforcer",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }
    if principal is None:
        del record["userIdentity"]
    return record


def s3_notification(*records: dict[str, Any]) -> str:
    """The message S3 sends to a queue or topic: its records in one JSON document."""
    return json.dumps({"Records": list(records)})


def s3_test_event(bucket: str = BUCKET) -> str:
    """The message S3 sends once when a notification configuration is put."""
    return json.dumps(
        {
            "Service": "Amazon S3",
            "Event": "s3:TestEvent",
            "Time": "2026-11-22T12:00:00.000Z",
            "Bucket": bucket,
            "RequestId": "5582815E1AEA5ADF",
            "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
        }
    )


def eventbridge_event(
    key: str = "tenant-a/x.csv",
    *,
    bucket: str = BUCKET,
    detail_type: str = "Object Created",
    version_id: str | None = VERSION_ID,
    etag: str = "b1946ac92492d2347c6235b4d2611184",
) -> dict[str, Any]:
    """An S3 event as EventBridge delivers it: the key as it is (EventBridge does not encode
    it); ``version_id=None`` is an object in an unversioned bucket."""
    obj = {"key": key, "size": 5, "etag": etag, "sequencer": "00617F08299329D189"}
    if version_id is not None:
        obj["version-id"] = version_id
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": "2026-11-22T12:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": ACCOUNT,
            "source-ip-address": "203.0.113.7",
            "reason": "PutObject",
        },
    }


def sns_delivery(message: str, *, raw_message_delivery: bool = False) -> str:
    """The SQS body an SNS subscription delivers for ``message``.

    With raw message delivery the body is the message itself; without it, the message
    is a JSON string in the ``Message`` field of SNS's notification envelope.
    """
    if raw_message_delivery:
        return message
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC_ARN,
            "Subject": "Amazon S3 Notification",
            "Message": message,
            "Timestamp": "2026-11-22T12:00:01.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-EXAMPLE.pem",
            "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=EXAMPLE",
        }
    )


def sqs_record(body: str, *, queue_arn: str = QUEUE_ARN) -> dict[str, Any]:
    """One record of the event Lambda's SQS event source builds from a message with ``body``.

    ``sqs_event`` carries only the ``ApproximateReceiveCount`` attribute; the filters
    and the handler read none of the others.
    """
    message = {
        "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "ReceiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "Body": body,
        "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
    }
    (record,) = sqs_event([message], queue_arn)["Records"]
    return record
