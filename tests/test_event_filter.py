"""The ESM filters and the EventBridge rule pattern, on deliveries in the shapes AWS documents.

A record no ESM filter matches is deleted by Lambda, so the cases that matter most
are the ones that must pass: everything the handler would act on.
"""

from __future__ import annotations

import json

import event_ruler  # PyPI event-ruler 0.3.0: quamina 1.0.0 behind gopy
import pytest

from components.event_filter import (
    MAX_FILTERS,
    MAX_PATTERN_CHARS,
    enforcer_filter_patterns,
    esm_accepts,
    eventbridge_rule_pattern,
    filter_criteria,
    matches,
    patterns_from_criteria,
    validate_pattern,
)
from enforcer.events import MalformedMessage, parse_message
from tests.aws_events import (
    USER,
    eventbridge_event,
    s3_notification,
    s3_record,
    s3_test_event,
    sns_delivery,
    sqs_record,
)

PRINCIPAL = "AWS:AROAEXAMPLE:enforcer"


# -- the deployed ESM filters -----------------------------------------------------

EXPECTED_PATTERNS = [
    {
        "body": {
            "Records": {
                "eventSource": ["aws:s3"],
                "eventName": [{"prefix": "ObjectCreated:"}],
                "userIdentity": {"principalId": [{"anything-but": [PRINCIPAL]}]},
            }
        }
    },
    {
        "body": {
            "Records": {
                "eventSource": ["aws:s3"],
                "eventName": [{"prefix": "ObjectCreated:"}],
                "userIdentity": {"principalId": [{"exists": False}]},
            }
        }
    },
    {"body": {"source": ["aws.s3"], "detail-type": ["Object Created"]}},
    {"body": {"Type": ["Notification"], "Message": [{"exists": True}]}},
]


def test_enforcer_patterns_are_exactly_the_deployed_ones():
    """A change here changes every deployed event source mapping: make it on purpose."""
    patterns = enforcer_filter_patterns(PRINCIPAL)
    assert patterns == EXPECTED_PATTERNS
    assert len(patterns) <= MAX_FILTERS
    # The principal is a parameter: another deployment gets its own.
    other = enforcer_filter_patterns("AWS:AROAOTHER:enforcer-eu")
    assert other[0]["body"]["Records"]["userIdentity"]["principalId"] == [
        {"anything-but": ["AWS:AROAOTHER:enforcer-eu"]}
    ]
    assert PRINCIPAL not in json.dumps(other)


DELIVERIES = {
    # name: (SQS body, passes the ESM filter)
    "user PUT": (s3_notification(s3_record()), True),
    "user's own CopyObject": (s3_notification(s3_record(event_name="ObjectCreated:Copy")), True),
    "user multipart upload": (
        s3_notification(s3_record(event_name="ObjectCreated:CompleteMultipartUpload")),
        True,
    ),
    "another function of the same role": (
        s3_notification(s3_record(principal="AWS:AROAEXAMPLE:enforcer-canary")),
        True,
    ),
    "enforcer's re-key copy": (
        s3_notification(s3_record(principal=PRINCIPAL, event_name="ObjectCreated:Copy")),
        False,
    ),
    "enforcer's multipart copy": (
        s3_notification(s3_record(principal=PRINCIPAL, event_name="ObjectCreated:CompleteMultipartUpload")),
        False,
    ),
    "record without userIdentity": (s3_notification(s3_record(principal=None)), True),
    "batch with a user record after the enforcer's": (
        s3_notification(s3_record(principal=PRINCIPAL, event_name="ObjectCreated:Copy"), s3_record()),
        True,
    ),
    "user delete (never subscribed)": (s3_notification(s3_record(event_name="ObjectRemoved:Delete")), False),
    "EventBridge Object Created": (json.dumps(eventbridge_event()), True),
    "EventBridge Object Deleted": (json.dumps(eventbridge_event(detail_type="Object Deleted")), False),
    # Raw message delivery puts the S3 JSON itself in the body: the same bytes as direct.
    "SNS raw delivery, user": (sns_delivery(s3_notification(s3_record()), raw_message_delivery=True), True),
    "SNS raw delivery, enforcer": (
        sns_delivery(
            s3_notification(s3_record(principal=PRINCIPAL, event_name="ObjectCreated:Copy")),
            raw_message_delivery=True,
        ),
        False,
    ),
    "SNS envelope, user": (sns_delivery(s3_notification(s3_record())), True),
    # Filters cannot parse the JSON string in Message: the handler skips it instead.
    "SNS envelope, enforcer": (
        sns_delivery(s3_notification(s3_record(principal=PRINCIPAL, event_name="ObjectCreated:Copy"))),
        True,
    ),
    "S3 test event": (s3_test_event(), False),
    # Lambda: a JSON body pattern does not match a plain-string body, so it is deleted
    # (the handler would have sent it to the DLQ).
    "non-JSON body": ("ObjectCreated tenant-a/x.csv", False),
    "JSON array body": ("[1, 2]", False),
}


@pytest.mark.parametrize(("body", "passes"), list(DELIVERIES.values()), ids=list(DELIVERIES))
def test_esm_filters_per_delivery(body, passes):
    assert esm_accepts(enforcer_filter_patterns(PRINCIPAL), sqs_record(body)) is passes


@pytest.mark.parametrize("body", [body for body, _ in DELIVERIES.values()], ids=list(DELIVERIES))
def test_every_record_the_handler_would_act_on_passes(body):
    """Deleted by the filter means never seen: no object the handler would re-key may be dropped."""
    try:
        refs = parse_message(body)
    except MalformedMessage:
        refs = []
    if any(ref.principal_id != PRINCIPAL for ref in refs):
        assert esm_accepts(enforcer_filter_patterns(PRINCIPAL), sqs_record(body))


def test_record_fields_must_come_from_one_array_element():
    """The enforcer's create plus a user's delete must not add up to a user's create."""
    body = s3_notification(
        s3_record(principal=PRINCIPAL, event_name="ObjectCreated:Copy"),
        s3_record(principal=USER, event_name="ObjectRemoved:Delete"),
    )
    assert not esm_accepts(enforcer_filter_patterns(PRINCIPAL), sqs_record(body))
    pattern = {"Records": {"a": {"b": ["1"]}, "c": {"d": ["2"]}}}
    assert matches(pattern, {"Records": [{"a": {"b": "0"}}, {"a": {"b": "1"}, "c": {"d": "2"}}]})
    assert not matches(pattern, {"Records": [{"a": {"b": "1"}}, {"c": {"d": "2"}}]})


def test_esm_body_format_rules():
    plain = sqs_record("hello world")
    structured = sqs_record(json.dumps({"greeting": "hello world"}))
    # A plain-string body rule list applies only to a plain-string body, and vice versa.
    assert esm_accepts([{"body": [{"prefix": "hello"}]}], plain)
    assert not esm_accepts([{"body": [{"prefix": "hello"}]}], structured)
    assert esm_accepts([{"body": {"greeting": [{"prefix": "hello"}]}}], structured)
    assert not esm_accepts([{"body": {"greeting": [{"exists": False}]}}], plain)
    # Filters are OR'ed; no filters is no filtering.
    assert esm_accepts([{"body": {"x": ["1"]}}, {"body": {"greeting": ["hello world"]}}], structured)
    assert esm_accepts([], plain)
    with pytest.raises(ValueError, match="'numeric'"):
        esm_accepts([{"body": {"n": [{"numeric": [">", 1]}]}}], structured)


def test_filter_criteria_round_trip():
    patterns = enforcer_filter_patterns(PRINCIPAL)
    criteria = filter_criteria(patterns)
    assert list(criteria) == ["Filters"]
    assert [list(f) for f in criteria["Filters"]] == [["Pattern"]] * len(patterns)
    assert all(isinstance(f["Pattern"], str) for f in criteria["Filters"])
    assert [json.loads(f["Pattern"]) for f in criteria["Filters"]] == patterns
    assert patterns_from_criteria(criteria) == patterns


def test_filter_criteria_limits():
    with pytest.raises(ValueError, match="no patterns"):
        filter_criteria([])
    with pytest.raises(ValueError, match="quota"):
        filter_criteria([{"body": {"n": [str(i)]}} for i in range(MAX_FILTERS + 1)])
    with pytest.raises(ValueError, match=str(MAX_PATTERN_CHARS)):
        filter_criteria([{"body": {"k": ["x" * MAX_PATTERN_CHARS]}}])
    with pytest.raises(ValueError, match="'suffix'"):
        patterns_from_criteria({"Filters": [{"Pattern": json.dumps({"body": {"k": [{"suffix": ".csv"}]}})}]})
    with pytest.raises(ValueError, match="not JSON"):
        patterns_from_criteria({"Filters": [{"Pattern": "{body"}]})


@pytest.mark.parametrize("principal", ["", "   ", None, "AROAEXAMPLE:enforcer"])
def test_principal_is_required(principal):
    with pytest.raises(ValueError, match="principal_id"):
        enforcer_filter_patterns(principal)


# -- the EventBridge-mode rule ----------------------------------------------------


def test_eventbridge_rule_pattern():
    pattern = eventbridge_rule_pattern("bkt", ["tenant-b/", "tenant-a/", "tenant-b/"])
    assert pattern == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": ["bkt"]},
            "object": {"key": [{"prefix": "tenant-a/"}, {"prefix": "tenant-b/"}]},
        },
    }
    assert matches(pattern, eventbridge_event(key="tenant-b/deep/x.csv"))
    assert not matches(pattern, eventbridge_event(key="tenant-c/x.csv"))
    assert not matches(pattern, eventbridge_event(bucket="other"))
    assert not matches(pattern, eventbridge_event(detail_type="Object Deleted"))


def test_eventbridge_rule_pattern_whole_bucket_and_errors():
    whole = eventbridge_rule_pattern("bkt", ["", "tenant-a/"])
    assert "object" not in whole["detail"]
    assert matches(whole, eventbridge_event(key="anything"))
    with pytest.raises(ValueError, match="no prefixes"):
        eventbridge_rule_pattern("bkt", [])
    with pytest.raises(ValueError, match="bucket"):
        eventbridge_rule_pattern("", ["a/"])
    with pytest.raises(TypeError):
        eventbridge_rule_pattern("bkt", "tenant-a/")


# -- matcher semantics the cross-check cannot cover -------------------------------


def test_numbers_compare_by_value_not_text():
    """event-ruler (Java, JsonRuleCompiler) adds numericEquals for a number literal; quamina 1.0.0 does not."""
    assert matches({"a": [5]}, {"a": 5.0})
    assert matches({"a": [{"anything-but": [5]}]}, {"a": 6})
    assert not matches({"a": [{"anything-but": [5]}]}, {"a": 5.0})
    assert not matches({"a": [True]}, {"a": 1})
    assert not matches({"a": [1]}, {"a": True})


def test_anything_but_prefix_and_nested_absence():
    rule = {"k": [{"anything-but": {"prefix": "tmp/"}}]}
    assert matches(rule, {"k": "data/x"})
    assert not matches(rule, {"k": "tmp/x"})
    assert not matches(rule, {})
    # A nested pattern against a missing object or an array of scalars: only absence holds.
    assert matches({"d": {"b": [{"exists": False}]}}, {"d": ["x"]})
    assert not matches({"d": {"b": [{"exists": True}]}}, {"d": ["x"]})


BAD_PATTERNS = [
    ({"detail": {"size": [{"numeric": [">", 0]}]}}, "'numeric' at detail.size"),
    ({"k": [{"suffix": ".csv"}]}, "'suffix' at k"),
    ({"k": [{"cidr": "10.0.0.0/8"}]}, "'cidr' at k"),
    ({"k": [{"equals-ignore-case": "x"}]}, "'equals-ignore-case' at k"),
    ({"k": [{"wildcard": "a*"}]}, "'wildcard' at k"),
    ({"$or": [{"a": ["1"]}, {"b": ["2"]}]}, "'$or' at $or"),
    ({"k": [{"bogus": 1}]}, "unknown operator 'bogus' at k"),
    ({"k": [{"anything-but": {"suffix": "x"}}]}, "'anything-but/suffix' at k"),
    ({"k": [{"anything-but": {"prefix": ""}}]}, "'anything-but/prefix' at k"),
    ({"k": [{"anything-but": ["x", 1]}]}, "'anything-but' at k"),
    ({"k": [{"anything-but": []}]}, "'anything-but' at k"),
    ({"k": [{"anything-but": None}]}, "'anything-but' at k"),
    ({"k": [{"exists": "yes"}]}, "'exists' at k"),
    ({"k": [{"prefix": 5}]}, "'prefix' at k"),
    ({"k": [{"prefix": "a", "exists": True}]}, "exactly one key"),
    ({"body": {"k": []}}, "empty array of rules"),
    ({"body": {}}, "empty object"),
    ({}, "empty object"),
    ({"k": "x"}, "at k"),
    ({"k": [["x"]]}, "at k"),
    (["k"], "JSON object"),
]


@pytest.mark.parametrize(("pattern", "message"), BAD_PATTERNS, ids=[m for _, m in BAD_PATTERNS])
def test_bad_patterns_name_the_operator_and_path(pattern, message):
    with pytest.raises(ValueError) as caught:
        validate_pattern(pattern)
    assert message in str(caught.value)
    with pytest.raises(ValueError):
        matches(pattern, {"k": "x"})


# -- cross-check against event-ruler 0.3.0 ----------------------------------------
#
# Its whole API is event_ruler.test_event_pattern(event_json, pattern_json) -> bool,
# raising RuntimeError("invalid pattern") for what quamina 1.0.0 cannot parse: no
# "prefix" (its "shellstyle" "p*" is the same test for a p without '*'), anything-but
# only as a list of strings. An empty rule array makes it panic and abort the process,
# so none is ever passed to it.


def _for_quamina(node):
    if isinstance(node, dict):
        if set(node) == {"prefix"}:
            assert "*" not in node["prefix"]
            return {"shellstyle": node["prefix"] + "*"}
        if set(node) == {"anything-but"} and not isinstance(node["anything-but"], list):
            return {"anything-but": [node["anything-but"]]}
        return {k: _for_quamina(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_for_quamina(v) for v in node]
    return node


def ruler_matches(pattern, event) -> bool:
    return event_ruler.test_event_pattern(json.dumps(event), json.dumps(_for_quamina(pattern)))


EXACT = {"a": ["x"]}
CREATED = {"a": [{"prefix": "ObjectCreated:"}]}
NOT_X = {"a": [{"anything-but": "x"}]}
NOT_XY = {"a": [{"anything-but": ["x", "y"]}]}
EXISTS = {"a": [{"exists": True}]}
ABSENT = {"a": [{"exists": False}]}
CROSS_CHECK = [
    (EXACT, {"a": "x"}),
    (EXACT, {"a": "X"}),
    (EXACT, {"a": "y"}),
    (EXACT, {}),
    (EXACT, {"b": "x"}),
    (EXACT, {"a": ["y", "x"]}),
    (EXACT, {"a": ["y"]}),
    (EXACT, {"a": {"b": "x"}}),
    ({"a": ["x", "y"]}, {"a": "y"}),
    ({"a": [""]}, {"a": ""}),
    ({"a": ["5"]}, {"a": 5}),
    ({"a": [5]}, {"a": 5}),
    ({"a": [5]}, {"a": 6}),
    ({"a": [5]}, {"a": "5"}),
    ({"a": [-1.5]}, {"a": -1.5}),
    ({"a": [2]}, {"a": [1, 2]}),
    ({"a": [True]}, {"a": True}),
    ({"a": [True]}, {"a": "true"}),
    ({"a": [None]}, {"a": None}),
    ({"a": [None]}, {"a": "null"}),
    ({"a": [None]}, {}),
    (CREATED, {"a": "ObjectCreated:Put"}),
    (CREATED, {"a": "ObjectCreated:"}),
    (CREATED, {"a": "ObjectRemoved:Delete"}),
    (CREATED, {"a": "objectcreated:Put"}),
    (CREATED, {"a": 5}),
    (CREATED, {}),
    (NOT_X, {"a": "y"}),
    (NOT_X, {"a": "x"}),
    (NOT_X, {}),
    (NOT_X, {"a": ["x", "y"]}),
    (NOT_X, {"a": ["x"]}),
    (NOT_X, {"a": []}),
    (NOT_X, {"a": 5}),
    (NOT_X, {"a": None}),
    (NOT_X, {"a": {"b": "y"}}),
    (NOT_XY, {"a": "y"}),
    (NOT_XY, {"a": "z"}),
    (EXISTS, {"a": "x"}),
    (EXISTS, {"a": None}),
    (EXISTS, {}),
    (EXISTS, {"a": []}),
    (EXISTS, {"a": {"b": "1"}}),
    (ABSENT, {}),
    (ABSENT, {"a": "x"}),
    (ABSENT, {"a": []}),
    (ABSENT, {"a": {"b": "1"}}),
    ({"a": ["x", {"prefix": "y"}]}, {"a": "yes"}),
    ({"a": ["x"], "b": [{"exists": False}]}, {"a": "x"}),
    ({"a": ["x"], "b": [{"exists": False}]}, {"a": "x", "b": "y"}),
    ({"a": ["x"], "b": ["y"]}, {"a": "x", "b": "z"}),
    ({"d": {"a": ["x"]}}, {"d": {"a": "x"}}),
    ({"d": {"a": ["x"]}}, {"d": {"a": "y"}}),
    ({"d": {"b": [{"exists": False}]}}, {"d": {"a": "x"}}),
    ({"d": {"b": [{"exists": False}]}}, {}),
    # Arrays of flat objects: array consistency, which quamina 1.0.0 gets right.
    ({"r": {"b": ["2"], "c": ["x"]}}, {"r": [{"b": "1", "c": "x"}, {"b": "2", "c": "y"}]}),
    ({"r": {"b": ["2"], "c": ["y"]}}, {"r": [{"b": "1", "c": "x"}, {"b": "2", "c": "y"}]}),
    ({"r": {"b": [{"anything-but": "1"}]}}, {"r": [{"b": "1"}, {"b": "2"}]}),
]


@pytest.mark.parametrize(
    ("pattern", "event"), CROSS_CHECK, ids=[f"{json.dumps(p)}~{json.dumps(e)}" for p, e in CROSS_CHECK]
)
def test_matches_agrees_with_event_ruler_on_flat_events(pattern, event):
    assert matches(pattern, event) is ruler_matches(pattern, event)


def test_cross_check_table_has_both_outcomes_for_every_operator():
    """A table where everything matches (or nothing does) would agree with any matcher."""
    for operator in ("prefix", "anything-but", "exists"):
        outcomes = {matches(p, e) for p, e in CROSS_CHECK if operator in json.dumps(p)}
        assert outcomes == {True, False}, operator


def test_event_ruler_still_fails_on_real_s3_records():
    """Records what event-ruler 0.3.0 does with a real S3 record: it raises.

    Fails when event-ruler fixes matching inside arrays whose elements hold two or more
    nested objects; then consider dropping our matcher for it.
    """
    pattern = EXPECTED_PATTERNS[0]["body"]
    event = {"Records": [s3_record()]}
    assert matches(pattern, event)
    with pytest.raises(RuntimeError, match="failed to match for payload"):
        event_ruler.test_event_pattern(json.dumps(event), json.dumps(_for_quamina(pattern)))
    # Even a flat field of such a record.
    with pytest.raises(RuntimeError, match="failed to match for payload"):
        event_ruler.test_event_pattern(
            json.dumps(event), json.dumps({"Records": {"eventSource": ["aws:s3"]}})
        )
