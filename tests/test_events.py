"""Delivery shapes and key decoding, per shape."""

import json

import pytest

from enforcer.events import MalformedMessage, parse_message
from tests.aws_events import USER, eventbridge_event, s3_notification, s3_record, s3_test_event, sns_delivery

# Keys that break naive decoders: spaces vs '+', literal '%', '=', '&', ';', unicode.
ODD_KEYS = [
    "tenant-a/a b+c.txt",
    "tenant-a/100% done.txt",
    "tenant-a/k=v&x=y;z.csv",
    "tenant-a/naïve 日本語 🚀.bin",
    "tenant-a/%2B literally.txt",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_s3_notification_keys_are_form_decoded(key):
    # s3_record form-encodes the key as S3 does: space -> '+', '+' -> '%2B'.
    body = s3_notification(s3_record(key))
    (ref,) = parse_message(body)
    assert ref.key == key
    assert ref.bucket == "bkt" and ref.delivery == "s3"
    assert ref.principal_id == USER


@pytest.mark.parametrize("key", ODD_KEYS)
def test_sns_envelope_raw_and_wrapped(key):
    inner = s3_notification(s3_record(key))
    (wrapped,) = parse_message(sns_delivery(inner))
    (raw,) = parse_message(sns_delivery(inner, raw_message_delivery=True))  # the S3 JSON itself
    assert wrapped.key == raw.key == key
    assert wrapped.delivery == "sns"


@pytest.mark.parametrize("key", ODD_KEYS)
def test_eventbridge_keys_are_taken_verbatim(key):
    (ref,) = parse_message(json.dumps(eventbridge_event(key, version_id="v1")))
    assert ref.key == key
    assert ref.version_id == "v1"
    assert ref.principal_id is None  # EventBridge carries only the account
    assert ref.delivery == "eventbridge"


def test_versioned_event_keeps_the_version_and_journals_it():
    (ref,) = parse_message(s3_notification(s3_record("a/b", version_id="3HL4kqtJ")))
    assert ref.version_id == "3HL4kqtJ"
    assert ref.s3_path == "s3://bkt/a/b?versionId=3HL4kqtJ"


def test_s3_test_event_is_ignored():
    assert parse_message(s3_test_event()) == []
    assert parse_message(sns_delivery(s3_test_event())) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "expected an object"),
        (json.dumps({"hello": "world"}), "neither"),
        (json.dumps({"Records": []}), "non-empty"),
        (json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}), "missing s3.object"),
        (s3_notification(s3_record("")), "empty key"),
        (s3_notification(s3_record("a", event_name="ObjectRemoved:Delete")), "not an ObjectCreated"),
        (json.dumps({"Type": "Notification", "Message": "{broken"}), "SNS Message is not JSON"),
        (json.dumps(eventbridge_event("k", detail_type="Object Deleted")), "not 'Object Created'"),
    ],
)
def test_malformed_bodies_raise_with_a_reason(body, problem):
    with pytest.raises(MalformedMessage, match=problem):
        parse_message(body)
