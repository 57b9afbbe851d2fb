"""EventBridge event patterns for the enforcer: one matcher, and the patterns the product deploys.

Lambda event-source-mapping (ESM) filter criteria and EventBridge rules share the
EventBridge pattern language. The Pulumi program deploys the patterns built here, and
the local sandbox and the benchmark decide with ``esm_accepts`` which queue messages
would reach the function, so both run the same patterns. The off-the-shelf matchers do
not work on real S3 records: moto's ``EventPattern`` does not match inside arrays of
objects such as ``Records[]``, and ``event-ruler`` 0.3.0 (PyPI; a gopy wrapper around
quamina 1.0.0) raises ``RuntimeError("failed to match for payload")`` once an array
element holds two or more nested objects, which every S3 record does
(``tests/test_event_filter.py`` records that, and cross-checks this matcher against
event-ruler on events it can handle).

Sources: "Content filtering in Amazon EventBridge event patterns" and "Event pattern
syntax" (EventBridge User Guide); "Lambda event filtering" (Lambda Developer Guide,
including "Filtering with Amazon SQS"). Where the guides are silent, the behaviour
follows aws/event-ruler (the engine behind both), noted below.

Patterns (checked by ``validate_pattern``; anything else raises ``ValueError`` naming
the operator or problem and the dotted path):

* A pattern is a non-empty JSON object. A field maps to a non-empty object (a nested
  pattern) or to a non-empty array of rules; the field matches when ANY rule does, and
  a pattern matches when ALL its fields do.
* Rules: a string, number, boolean or null (exact match), ``{"prefix": str}``,
  ``{"exists": true|false}``, ``{"anything-but": str | number | [str, ...] |
  [number, ...]}`` (a list is all strings or all numbers, as event-ruler requires) and
  ``{"anything-but": {"prefix": non-empty str}}``. Other EventBridge operators
  (``suffix``, ``numeric``, ``cidr``, ``equals-ignore-case``, ``wildcard``, ``$or``)
  are rejected: the product emits none of them, and a matcher that half-implemented
  them would make the sandbox disagree with AWS.

Matching:

* Exact strings are case-sensitive. Numbers compare by value (``5`` matches ``5.0``:
  event-ruler compiles a numeric pattern literal to both its text and a numeric
  equality), never a string (``5`` does not match ``"5"``); booleans match only
  booleans and null only null.
* A field missing from the event matches no rule except ``{"exists": false}``;
  ``anything-but`` does not match a missing field (EventBridge: it needs a value to
  compare).
* Only leaf values count: a field whose value is an object has no value of its own, so
  ``exists: true`` does not match it and ``exists: false`` does (EventBridge: "exists
  matching only works on leaf nodes").
* An array value is the set of its elements (nested arrays flattened): a rule matches
  when ANY element matches. An empty array is a missing field. So ``anything-but "x"``
  matches ``["x", "y"]`` (``"y"`` is not ``"x"``) but not ``["x"]``.
* A nested pattern against an array of objects (``Records[]``) must be satisfied by a
  single element (event-ruler's "array consistency"); a record whose principal
  matches and another whose event name matches do not combine. Against a missing
  field, a scalar, or an array with no objects, a nested pattern is matched against an
  empty object, so only ``exists: false`` rules can hold.
* ``anything-but`` compares like exact match, so a value of another type (a number
  against ``anything-but "x"``, null) matches; ``anything-but {"prefix": p}`` matches
  every value that is not a string starting with ``p``.

Lambda ESM on SQS (``esm_accepts``): filters are OR'ed, and a record no filter matches
is DELETED from the queue, not sent to the dead-letter queue. Lambda matches a
pattern's ``"body"`` against the message body parsed as JSON when the body is JSON and
the pattern's ``body`` is an object; when the body is a plain string only a plain-
string ``body`` rule list (``"body": [...]``) is applied to it. A mismatch (a JSON
pattern for a plain-string body, or the reverse) is no match, so the message is
dropped ("Properly filtering Amazon SQS messages" in "Lambda event filtering"). Only
a JSON *object* counts as JSON here: AWS documents "valid JSON" vs "plain string", and
only an object has the keys a body pattern names; every AWS sender this product reads
(S3, SNS, EventBridge) sends objects. The same guide says SQS mappings filter on
``body`` only; fields other than ``body`` are matched against the record as given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "MAX_FILTERS",
    "MAX_PATTERN_CHARS",
    "enforcer_filter_patterns",
    "esm_accepts",
    "eventbridge_rule_pattern",
    "filter_criteria",
    "matches",
    "patterns_from_criteria",
    "validate_pattern",
]

# Lambda quotas ("Lambda event filtering"): five filters per mapping by default (ten on
# request), and the API rejects a Pattern longer than 4096 characters. Failing here
# beats failing half-way through a ``pulumi up``.
MAX_FILTERS = 5
MAX_PATTERN_CHARS = 4096

SUPPORTED_OPERATORS = ("prefix", "exists", "anything-but")
# Valid EventBridge, deliberately not implemented: named as such in the error so that
# nobody mistakes them for typos.
_KNOWN_UNSUPPORTED = frozenset({"suffix", "numeric", "cidr", "equals-ignore-case", "wildcard", "$or"})

_MISSING = object()


# -- patterns ---------------------------------------------------------------------


def validate_pattern(pattern: Any) -> None:
    """Raise ``ValueError`` (naming the operator or problem and the path) unless valid."""
    if not isinstance(pattern, Mapping):
        raise ValueError(f"malformed pattern at <root>: must be a JSON object, got {type(pattern).__name__}")
    _validate_object(pattern, "")


def _where(path: str) -> str:
    return path or "<root>"


def _validate_object(obj: Mapping[str, Any], path: str) -> None:
    if not obj:
        raise ValueError(f"malformed pattern at {_where(path)}: empty object (EventBridge rejects it)")
    for key, sub in obj.items():
        if not isinstance(key, str):
            raise ValueError(f"malformed pattern at {_where(path)}: field name {key!r} is not a string")
        here = f"{path}.{key}" if path else key
        if key == "$or":
            raise ValueError(f"unsupported operator '$or' at {here}: use one pattern per alternative")
        if isinstance(sub, Mapping):
            _validate_object(sub, here)
        elif isinstance(sub, list):
            _validate_rules(sub, here)
        else:
            raise ValueError(
                f"malformed pattern at {here}: a field maps to an object or an array of rules, "
                f"got {type(sub).__name__} {sub!r} (write [{json.dumps(sub)}] for an exact match)"
            )


def _is_number(value: Any) -> bool:
    # bool is an int subclass in Python, but JSON true is not the number 1.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_json_scalar(value: Any) -> bool:
    if _is_number(value):
        return not (isinstance(value, float) and not math.isfinite(value))
    return value is None or isinstance(value, str | bool)


def _validate_rules(rules: list[Any], path: str) -> None:
    if not rules:
        raise ValueError(f"malformed pattern at {path}: empty array of rules (EventBridge rejects it)")
    for rule in rules:
        if isinstance(rule, Mapping):
            _validate_operator(rule, path)
        elif not _is_json_scalar(rule):
            raise ValueError(
                f"malformed pattern at {path}: rule {rule!r} is neither a string, number, boolean, null "
                "nor an operator object"
            )


def _validate_operator(rule: Mapping[str, Any], path: str) -> None:
    if len(rule) != 1:
        raise ValueError(
            f"malformed operator at {path}: an operator object has exactly one key, got {sorted(rule)}"
        )
    ((op, arg),) = rule.items()
    if op == "prefix":
        if not isinstance(arg, str):
            raise ValueError(f"operator 'prefix' at {path} needs a string, got {arg!r}")
    elif op == "exists":
        if not isinstance(arg, bool):
            raise ValueError(f"operator 'exists' at {path} needs true or false, got {arg!r}")
    elif op == "anything-but":
        _validate_anything_but(arg, path)
    elif op in _KNOWN_UNSUPPORTED:
        raise ValueError(
            f"unsupported operator {op!r} at {path}: this matcher implements only {', '.join(SUPPORTED_OPERATORS)}"
        )
    else:
        raise ValueError(f"unknown operator {op!r} at {path}: supported are {', '.join(SUPPORTED_OPERATORS)}")


def _validate_anything_but(arg: Any, path: str) -> None:
    if isinstance(arg, Mapping):
        if len(arg) != 1:
            raise ValueError(
                f"malformed operator 'anything-but' at {path}: expected one key, got {sorted(arg)}"
            )
        ((inner, value),) = arg.items()
        if inner != "prefix":
            raise ValueError(
                f"unsupported operator 'anything-but/{inner}' at {path}: only anything-but/prefix is"
            )
        if not isinstance(value, str) or not value:
            raise ValueError(
                f"operator 'anything-but/prefix' at {path} needs a non-empty string, got {value!r}"
            )
        return
    values = arg if isinstance(arg, list) else [arg]
    all_strings = bool(values) and all(isinstance(v, str) for v in values)
    all_numbers = bool(values) and all(_is_number(v) and _is_json_scalar(v) for v in values)
    if not (all_strings or all_numbers):
        raise ValueError(
            f"operator 'anything-but' at {path} needs a string, a number, or a non-empty list of only "
            f"strings or only numbers, got {arg!r}"
        )


# -- matching ---------------------------------------------------------------------


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether ``event`` matches ``pattern`` under EventBridge semantics (module docstring)."""
    validate_pattern(pattern)
    if not isinstance(event, Mapping):
        raise TypeError(f"an event is a JSON object, got {type(event).__name__}")
    return _match_object(pattern, event)


def _match_object(pattern: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    for key, sub in pattern.items():
        value = obj.get(key, _MISSING)
        ok = _match_nested(sub, value) if isinstance(sub, Mapping) else _match_rules(sub, value)
        if not ok:
            return False
    return True


def _objects(value: Any) -> list[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        return [value]
    if isinstance(value, list):
        return [o for v in value for o in _objects(v)]
    return []


def _match_nested(sub: Mapping[str, Any], value: Any) -> bool:
    candidates = _objects(value)
    if not candidates:
        return _match_object(sub, {})
    # One element must satisfy the whole sub-pattern: array consistency.
    return any(_match_object(sub, c) for c in candidates)


def _leaves(value: Any) -> list[Any]:
    if value is _MISSING or isinstance(value, Mapping):
        return []
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _match_rules(rules: list[Any], value: Any) -> bool:
    leaves = _leaves(value)
    return any(_rule_matches(rule, leaves) for rule in rules)


def _rule_matches(rule: Any, leaves: list[Any]) -> bool:
    if not isinstance(rule, Mapping):
        return any(_same(v, rule) for v in leaves)
    ((op, arg),) = rule.items()
    if op == "exists":
        return bool(leaves) is arg
    if op == "prefix":
        return any(isinstance(v, str) and v.startswith(arg) for v in leaves)
    # anything-but (validate_pattern admits nothing else)
    if isinstance(arg, Mapping):
        prefix = arg["prefix"]
        return any(not (isinstance(v, str) and v.startswith(prefix)) for v in leaves)
    excluded = arg if isinstance(arg, list) else [arg]
    return any(not any(_same(v, x) for x in excluded) for v in leaves)


# -- Lambda ESM on SQS ------------------------------------------------------------


def _json_object(body: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def esm_accepts(filters: Sequence[Mapping[str, Any]], sqs_record: Mapping[str, Any]) -> bool:
    """Whether Lambda would hand ``sqs_record`` to the function; False means Lambda deletes it.

    ``filters`` are pattern dicts (``patterns_from_criteria`` turns API criteria into
    them), OR'ed. No filters means no filter criteria: every record passes.
    """
    for pattern in filters:
        validate_pattern(pattern)
    if not filters:
        return True
    body = sqs_record.get("body")
    if not isinstance(body, str):
        raise TypeError(f"an SQS record's body is a string, got {type(body).__name__}")
    parsed = _json_object(body)
    structured = {**sqs_record, "body": parsed} if parsed is not None else None
    for pattern in filters:
        body_rules = pattern.get("body", _MISSING)
        if body_rules is _MISSING:
            if _match_object(pattern, sqs_record):
                return True
        elif isinstance(body_rules, Mapping):
            # A JSON body pattern never matches a plain-string body: Lambda drops it.
            if structured is not None and _match_object(pattern, structured):
                return True
        elif parsed is None and _match_object(pattern, sqs_record):
            # A plain-string body rule list applies only to a plain-string body.
            return True
    return False


def filter_criteria(patterns: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, str]]]:
    """``{"Filters": [{"Pattern": "<json>"}, ...]}``, the Lambda API's FilterCriteria."""
    patterns = list(patterns)
    if not patterns:
        raise ValueError("no patterns: omit filter_criteria instead (an empty filter list is no filtering)")
    if len(patterns) > MAX_FILTERS:
        raise ValueError(
            f"{len(patterns)} filters exceed Lambda's default quota of {MAX_FILTERS} per mapping"
        )
    filters = []
    for pattern in patterns:
        validate_pattern(pattern)
        text = json.dumps(pattern)
        if len(text) > MAX_PATTERN_CHARS:
            raise ValueError(f"pattern is {len(text)} characters; Lambda accepts at most {MAX_PATTERN_CHARS}")
        filters.append({"Pattern": text})
    return {"Filters": filters}


def patterns_from_criteria(criteria: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pattern dicts inside a FilterCriteria (inverse of ``filter_criteria``)."""
    filters = criteria.get("Filters")
    if not isinstance(filters, list):
        raise ValueError(f"FilterCriteria needs a 'Filters' list, got keys {sorted(criteria)}")
    patterns = []
    for i, entry in enumerate(filters):
        text = entry.get("Pattern") if isinstance(entry, Mapping) else None
        if not isinstance(text, str):
            raise ValueError(f"Filters[{i}] needs a 'Pattern' string, got {entry!r}")
        try:
            pattern = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"Filters[{i}].Pattern is not JSON: {exc}") from None
        validate_pattern(pattern)
        patterns.append(pattern)
    return patterns


# -- the product's patterns -------------------------------------------------------

S3_EVENT_SOURCE = "aws:s3"
OBJECT_CREATED_PREFIX = "ObjectCreated:"
EVENTBRIDGE_SOURCE = "aws.s3"
EVENTBRIDGE_DETAIL_TYPE = "Object Created"


def enforcer_filter_patterns(principal_id: str) -> list[dict[str, Any]]:
    """The ESM filters for the enforcer's queue; ``principal_id`` is ``AWS:<role unique id>:<function name>``.

    Records no filter matches are deleted by Lambda, so these pass every shape
    ``enforcer.events.parse_message`` turns into objects, and drop only:

    * S3 notifications caused by the enforcer itself (its re-key copies), before they
      cost an invocation;
    * bodies that are none of the accepted shapes: the S3 ``s3:TestEvent``, non-JSON
      bodies, other S3 event types, other EventBridge events. The handler would have
      skipped the first and sent the rest to the dead-letter queue; filtered, they
      vanish without a trace.

    Passed through for the handler to judge (``Enforcer.is_own_write``): EventBridge
    events, which carry the requester's account but no principal, and non-raw SNS
    envelopes, whose S3 event is a JSON string filters cannot look into.
    """
    if not isinstance(principal_id, str) or not principal_id.strip():
        raise ValueError(f"principal_id must be a non-empty string, got {principal_id!r}")
    if not principal_id.startswith("AWS:"):
        # The bare role id never equals userIdentity.principalId, so the enforcer's own
        # copies would silently stop being filtered.
        raise ValueError(f"principal_id {principal_id!r} must look like AWS:<role unique id>:<function name>")

    def s3_records(principal_rule: dict[str, Any]) -> dict[str, Any]:
        # S3 notifications straight to SQS, and SNS with raw message delivery (the same
        # JSON as the body). Lambda's guide writes anything-but as a list; so do we.
        return {
            "body": {
                "Records": {
                    "eventSource": [S3_EVENT_SOURCE],
                    "eventName": [{"prefix": OBJECT_CREATED_PREFIX}],
                    "userIdentity": {"principalId": [principal_rule]},
                }
            }
        }

    return [
        s3_records({"anything-but": [principal_id]}),
        # anything-but never matches a missing field, and the handler accepts records
        # without a principal (unpatched moto sends none): without this they would be
        # deleted unseen. A filter of its own rather than a second rule in the same
        # list, which Lambda's guide does not show.
        s3_records({"exists": False}),
        {"body": {"source": [EVENTBRIDGE_SOURCE], "detail-type": [EVENTBRIDGE_DETAIL_TYPE]}},
        {"body": {"Type": ["Notification"], "Message": [{"exists": True}]}},
    ]


def eventbridge_rule_pattern(bucket: str, prefixes: Iterable[str]) -> dict[str, Any]:
    """The EventBridge-mode rule: Object Created in ``bucket`` under any of ``prefixes``.

    ``detail.object.key`` in EventBridge events is the plain key (not URL-encoded), so
    prefixes are given as plain keys too. A prefix of ``""`` covers the whole bucket, so
    the key constraint is left out rather than emitted as an empty prefix.
    """
    if not isinstance(bucket, str) or not bucket:
        raise ValueError(f"bucket must be a non-empty string, got {bucket!r}")
    if isinstance(prefixes, str):
        # A str is an iterable of one-letter prefixes: never what the caller meant.
        raise TypeError("prefixes must be a list of strings, not a single string")
    wanted = sorted(set(prefixes))
    if not wanted:
        raise ValueError(f"no prefixes for bucket {bucket!r}: the rule would match nothing")
    detail: dict[str, Any] = {"bucket": {"name": [bucket]}}
    if "" not in wanted:
        detail["object"] = {"key": [{"prefix": p} for p in wanted]}
    pattern = {"source": [EVENTBRIDGE_SOURCE], "detail-type": [EVENTBRIDGE_DETAIL_TYPE], "detail": detail}
    validate_pattern(pattern)
    return pattern
