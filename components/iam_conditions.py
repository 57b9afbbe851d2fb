"""IAM's evaluation of a policy statement against one request: does it apply?

A small, pure model of the documented semantics, so that strict mode's deny
statements can be checked over the request context of every call a writer and the
enforcer make (tests/test_strict_mode.py, and the policy pack's
``strict-policy-matches-mapping``). Mocks and moto evaluate no bucket policy, so this
is the only place those semantics are exercised offline.

Source: IAM User Guide, "IAM JSON policy elements: Condition operators"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html)
and "Condition element" / "Creating a condition with multiple keys or values"
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html):

* "If the key that you specify in a policy condition is not present in the request
  context, the values do not match and the condition is *false*. If the policy
  condition requires that the key is *not* matched, such as ``StringNotLike`` or
  ``ArnNotLike``, and the right key is not present, the condition is *true*. This
  logic applies to all condition operators except ``...IfExists`` and Null check."
* ``...IfExists``: "If the policy key is present in the context of the request,
  process the key as specified in the policy. If the key is not present, evaluate
  the condition element as true."
* ``Null``: ``"true"`` holds when the key is absent from the request context,
  ``"false"`` when it is present.
* Several operators in one Condition, or several keys under one operator, are
  ANDed; several values for one key are ORed, and for a negated operator the
  condition holds when the request value matches *none* of them.
* String operators are case-sensitive; ``StringLike`` takes ``*`` and ``?``
  anywhere. ``ArnEquals`` and ``ArnLike`` compare each of the six colon-delimited
  components separately, each with ``*`` and ``?``. ``Bool`` compares ``true`` /
  ``false``. Condition key *names* are case-insensitive.

Only single-valued context keys are modelled; ``ForAnyValue:`` / ``ForAllValues:``,
numeric, date and IP operators are refused (:class:`Unsupported`), so that a policy
using them is reported as undecidable rather than judged wrongly.

Statement matching (``Action``, ``Resource``, ``Principal``) follows "IAM JSON
policy elements: Action / Resource": action names are case-insensitive with ``*``
and ``?``; resource ARNs are case-sensitive with ``*`` and ``?``; the policy
variables ``${*}``, ``${?}`` and ``${$}`` stand for the literal characters
("IAM policy elements: Variables and tags", special characters).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

STRING_OPERATORS = {"StringEquals", "StringNotEquals", "StringLike", "StringNotLike"}
ARN_OPERATORS = {"ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike"}
NEGATED = {"StringNotEquals", "StringNotLike", "ArnNotEquals", "ArnNotLike"}
_LITERAL_VARIABLES = {"${*}": "*", "${?}": "?", "${$}": "$"}


class Unsupported(ValueError):
    """A policy element this model does not evaluate (the caller cannot decide it)."""


@dataclass(frozen=True)
class Request:
    """One authorization check: an IAM action on a resource, with its request context."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)

    def value(self, key: str) -> str | None:
        wanted = key.lower()  # condition key names are case-insensitive
        for k, v in self.context.items():
            if k.lower() == wanted:
                return v
        return None


def _wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """``*`` and ``?`` as wildcards, ``${*}``/``${?}``/``${$}`` as literals, the rest literal."""
    out, i = [], 0
    while i < len(pattern):
        lit = next((v for k, v in _LITERAL_VARIABLES.items() if pattern.startswith(k, i)), None)
        if lit is not None:
            out.append(re.escape(lit))
            i += 4
            continue
        c = pattern[i]
        out.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _matches(operator: str, wanted: str, actual: str) -> bool:
    base = operator.removeprefix("String").removeprefix("Arn").replace("Not", "")
    if operator in STRING_OPERATORS:
        if base == "Equals":
            return actual == wanted
        return _wildcard(wanted).fullmatch(actual) is not None
    # ArnEquals and ArnLike both match component by component, wildcards allowed.
    want_parts, got_parts = wanted.split(":", 5), actual.split(":", 5)
    if len(want_parts) != 6 or len(got_parts) != 6:
        return False
    return all(_wildcard(w).fullmatch(g) is not None for w, g in zip(want_parts, got_parts, strict=True))


def _values(v: Any) -> list[str]:
    items = v if isinstance(v, list) else [v]
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, (str, int)):
            out.append(str(item))
        else:
            raise Unsupported(f"condition value {item!r}")
    return out


def operator_holds(operator: str, key: str, wanted: Any, request: Request) -> bool:
    """Whether ``{operator: {key: wanted}}`` holds for ``request``."""
    values = _values(wanted)
    actual = request.value(key)
    if operator == "Null":
        if len(values) != 1 or values[0].lower() not in ("true", "false"):
            raise Unsupported(f"Null takes 'true' or 'false', not {wanted!r}")
        return (actual is None) == (values[0].lower() == "true")
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if base == "Bool":
        if actual is None:
            return if_exists
        return actual.lower() in {v.lower() for v in values}
    if base not in STRING_OPERATORS | ARN_OPERATORS:
        raise Unsupported(f"condition operator {operator}")
    if actual is None:
        # Missing key: IfExists holds; otherwise only a negated operator holds.
        return if_exists or base in NEGATED
    matched = any(_matches(base, v, actual) for v in values)
    return not matched if base in NEGATED else matched


def condition_holds(condition: Mapping[str, Any] | None, request: Request) -> bool:
    """Every operator, and every key under it, must hold (AND); no Condition always holds."""
    for operator, body in (condition or {}).items():
        if not isinstance(body, Mapping):
            raise Unsupported(f"condition block of {operator}")
        if ":" in operator:  # ForAnyValue:/ForAllValues: (multi-valued keys)
            raise Unsupported(f"set operator {operator}")
        for key, wanted in body.items():
            if not operator_holds(operator, key, wanted, request):
                return False
    return True


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, Sequence):
        return [x for x in v if isinstance(x, str)]
    return []


def _principal_matches(principal: Any, principal_arn: str | None) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, Mapping):
        if set(principal) - {"AWS"}:
            raise Unsupported(f"principal {principal!r}")
        arns = _strings(principal.get("AWS"))
        return "*" in arns or (principal_arn is not None and principal_arn in arns)
    raise Unsupported(f"principal {principal!r}")


def statement_applies(statement: Mapping[str, Any], request: Request, *, principal_arn: str | None = None) -> bool:
    """Whether ``statement``'s Principal, Action, Resource and Condition all match ``request``.

    ``principal_arn`` is the caller as a bucket policy's ``Principal`` names it; the
    same ARN goes in the context as ``aws:PrincipalArn`` for conditions.
    """
    for unsupported in ("NotAction", "NotResource", "NotPrincipal"):
        if unsupported in statement:
            raise Unsupported(unsupported)
    if "Principal" in statement and not _principal_matches(statement["Principal"], principal_arn):
        return False
    if not any(_wildcard(a, ignore_case=True).fullmatch(request.action) for a in _strings(statement.get("Action"))):
        return False
    if not any(_wildcard(r).fullmatch(request.resource) for r in _strings(statement.get("Resource"))):
        return False
    return condition_holds(statement.get("Condition"), request)


def denying_statements(statements: Sequence[Mapping[str, Any]], request: Request) -> list[str]:
    """The Sids (or positions) of the Deny statements that apply to ``request``.

    An explicit Deny in any applicable policy overrides every Allow ("Policy
    evaluation logic"), so one applicable Deny statement refuses the request.
    """
    principal = request.value("aws:PrincipalArn")
    return [
        str(st.get("Sid", f"#{i}"))
        for i, st in enumerate(statements)
        if st.get("Effect") == "Deny" and statement_applies(st, request, principal_arn=principal)
    ]
