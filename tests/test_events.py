"""Delivery shapes and key decoding, per shape."""

import json
from urllib.parse import quote_plus

import pytest

from enforcer.events import MalformedMessage, parse_message

# Keys that break naive decoders: spaces vs '+', literal '%', '=', '&', ';', unicode.
ODD_KEYS = [
    "tenant-a/a b+c.txt",
    "tenant-a/100% done.txt",
    "tenant-a/k=v&x=y;z.csv",
    "tenant-a/naïve 日本語 🚀.bin",
    "tenant-a/%2B literally.txt",
]


def s3_record(key_encoded, event_name="ObjectCreated:Put", principal="AWS:AIDAUSER", version=None):
    obj = {"key": key_encoded, "size": 5, "eTag": "abc", "sequencer": "0A1B2C"}
    if version:
        obj["versionId"] = version
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-22T12:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": principal},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {"x-amz-request-id": "R", "x-amz-id-2": "H"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "enforcer",
            "bucket": {"name": "bkt", "ownerIdentity": {"principalId": "A1"}, "arn": "arn:aws:s3:::bkt"},
            "object": obj,
        },
    }


def eventbridge(key, version=None):
    obj = {"key": key, "size": 5, "etag": "abc", "sequencer": "0A"}
    if version:
        obj["version-id"] = version
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2026-11-22T12:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:s3:::bkt"],
        "detail": {
            "version": "0",
            "bucket": {"name": "bkt"},
            "object": obj,
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "111122223333",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject",
        },
    }


@pytest.mark.parametrize("key", ODD_KEYS)
def test_s3_notification_keys_are_form_decoded(key):
    # S3 form-encodes keys in notifications: space -> '+', '+' -> '%2B'.
    body = json.dumps({"Records": [s3_record(quote_plus(key, safe="/"))]})
    (ref,) = parse_message(body)
    assert ref.key == key
    assert ref.bucket == "bkt" and ref.delivery == "s3"
    assert ref.principal_id == "AWS:AIDAUSER"


@pytest.mark.parametrize("key", ODD_KEYS)
def test_sns_envelope_raw_and_wrapped(key):
    inner = json.dumps({"Records": [s3_record(quote_plus(key, safe="/"))]})
    envelope = {
        "Type": "Notification",
        "MessageId": "m",
        "TopicArn": "arn:aws:sns:us-east-1:111122223333:fanout",
        "Subject": "Amazon S3 Notification",
        "Message": inner,
        "Timestamp": "2026-11-22T12:00:00.000Z",
    }
    (wrapped,) = parse_message(json.dumps(envelope))
    (raw,) = parse_message(inner)  # raw message delivery: the S3 JSON itself
    assert wrapped.key == raw.key == key
    assert wrapped.delivery == "sns"


@pytest.mark.parametrize("key", ODD_KEYS)
def test_eventbridge_keys_are_taken_verbatim(key):
    (ref,) = parse_message(json.dumps(eventbridge(key, version="v1")))
    assert ref.key == key
    assert ref.version_id == "v1"
    assert ref.principal_id is None  # EventBridge carries only the account
    assert ref.delivery == "eventbridge"


def test_versioned_event_keeps_the_version_and_journals_it():
    (ref,) = parse_message(json.dumps({"Records": [s3_record("a/b", version="3HL4kqtJ")]}))
    assert ref.version_id == "3HL4kqtJ"
    assert ref.s3_path == "s3://bkt/a/b?versionId=3HL4kqtJ"


def test_s3_test_event_is_ignored():
    body = {"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "t", "Bucket": "bkt", "RequestId": "r"}
    assert parse_message(json.dumps(body)) == []
    envelope = {"Type": "Notification", "Message": json.dumps(body)}
    assert parse_message(json.dumps(envelope)) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        (json.dumps({"hello": "world"}), "neither"),
        (json.dumps({"Records": []}), "non-empty"),
        (json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}), "missing s3.object"),
        (json.dumps({"Records": [s3_record("")]}), "empty key"),
        (json.dumps({"Records": [s3_record("a", event_name="ObjectRemoved:Delete")]}), "not an ObjectCreated"),
        (json.dumps({"Type": "Notification", "Message": "{broken"}), "SNS Message is not JSON"),
        (json.dumps({**eventbridge("k"), "detail-type": "Object Deleted"}), "not 'Object Created'"),
    ],
)
def test_malformed_bodies_raise_with_a_reason(body, problem):
    with pytest.raises(MalformedMessage, match=problem):
        parse_message(body)
