"""One policy evaluation: violations reported, checks that read unknowns deferred, and the policies' config.

A check that cannot be decided at preview is recorded as *deferred*, and the policy
goes on with the checks it can decide. The pack's own policies are
:class:`DeferringStackPolicy` / :class:`DeferringResourcePolicy`: what they defer, and
an ``UnknownValueError`` one of them lets escape, goes to :data:`DEFERRALS`, and the
advisory policy ``preview-deferred-checks`` (``deferred_checks``), registered last,
reports it. No ``UnknownValueError`` reaches pulumi-policy, whose own note for one
("can't run policy ... from policy pack '<name>@v0.0.1' during preview") names the
SDK's fixed version, not PulumiPolicy.yaml's. A policy that is not a deferring one
still raises :class:`PreviewUnknownError` from :meth:`_Run.finish`, and gets that note.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from policypack.stack_graph import describe


class PreviewUnknownError(UnknownValueError):
    """Raised after a policy that is not a deferring one has reported everything it could decide.

    pulumi-policy 1.21 catches any ``UnknownValueError`` around a policy's ``validate``
    (``_PolicyAnalyzerServicer.Analyze`` / ``AnalyzeStack`` in pulumi_policy/policy.py)
    and turns it into an advisory diagnostic "can't run policy '<policy>' from policy pack
    '<pack>@v0.0.1' during preview: <message>"; violations already reported stay.
    """

    def __init__(self, deferred: list[str]):
        Exception.__init__(self)
        self.unknown_type_sentinel = UNKNOWN_STRING_VALUE
        self.props = []
        self.deferred = list(deferred)
        self.message = (
            "some checks read values that are unknown until the resources exist; they run again at "
            "`pulumi up`: " + "; ".join(dict.fromkeys(deferred))
        )


def deferral_lines(deferred: Mapping[str, list[str]]) -> list[str]:
    """``what of subject, subject`` per deferred check."""
    return [f"{what} of {', '.join(sorted(names))}" if names else what for what, names in deferred.items()]


class _Deferrals:
    """What each policy deferred since ``preview-deferred-checks`` last reported, by policy name.

    One per pack process. The engine sends every ``Analyze`` (resource policies) before
    the one ``AnalyzeStack``, which receives every resource of the stack, and the
    servicer runs the stack policies of that call one after another in registration
    order; so the reporting policy, registered last, sees all of one preview's
    deferrals. gRPC serves calls from a thread pool, hence the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_policy: dict[str, dict[str, list[str]]] = {}

    def record(self, policy: str, deferred: Mapping[str, list[str]]) -> None:
        with self._lock:
            mine = self._by_policy.setdefault(policy, {})
            for what, names in deferred.items():
                known = mine.setdefault(what, [])
                known.extend(n for n in names if n not in known)
            if not mine:
                del self._by_policy[policy]

    def drain(self) -> dict[str, dict[str, list[str]]]:
        """Everything recorded, by policy name (sorted); the ledger is empty afterwards."""
        with self._lock:
            out, self._by_policy = self._by_policy, {}
        return dict(sorted(out.items()))


DEFERRALS = _Deferrals()
"""The pack's deferral ledger (see :class:`_Deferrals`)."""


class _DeferringReport:
    """``report_violation`` of a deferring policy, carrying the policy's deferred checks."""

    def __init__(self, report: ReportViolation):
        self._report = report
        self.deferred: dict[str, list[str]] = {}

    def __call__(self, message: str, urn: str | None = None) -> None:
        self._report(message, urn)


def _stray_unknown(exc: UnknownValueError) -> str:
    # pulumi-policy's own wording ("string value at .arn can't be known during preview"),
    # without the tail that the deferral message says in its own words.
    return exc.message.removesuffix(" can't be known during preview")


class _Deferring:
    """A policy whose deferred checks go to :data:`DEFERRALS` instead of an ``UnknownValueError``.

    The validation is synchronous (all of the pack's are); an awaitable result would
    raise its unknowns after this returns, to pulumi-policy.
    """

    def _subject(self, args: Any) -> list[str]:
        return []

    def validate(self, args: Any, report_violation: ReportViolation) -> Any:
        report = _DeferringReport(report_violation)
        try:
            return super().validate(args, report)  # type: ignore[misc]
        except UnknownValueError as exc:
            report.deferred.setdefault(_stray_unknown(exc), []).extend(self._subject(args))
            return None
        finally:
            DEFERRALS.record(self.name, report.deferred)  # type: ignore[attr-defined]


class DeferringStackPolicy(_Deferring, StackValidationPolicy):
    """A stack policy of this pack (see :class:`_Deferring`)."""


class DeferringResourcePolicy(_Deferring, ResourceValidationPolicy):
    """A resource policy of this pack (see :class:`_Deferring`)."""

    def _subject(self, args: ResourceValidationArgs) -> list[str]:
        return [f"{args.resource_type} '{args.name}'"]


class _Run:
    """One policy evaluation: reports violations, collects deferred checks."""

    def __init__(self, report: ReportViolation):
        self._report = report
        # Under a deferring policy the deferrals live on its report, so that they survive
        # an UnknownValueError this evaluation did not expect.
        self.deferred: dict[str, list[str]] = report.deferred if isinstance(report, _DeferringReport) else {}

    def violation(self, resource: PolicyResource | None, message: str) -> None:
        self._report(message, resource.urn if resource is not None else None)

    def defer(self, what: str, *subjects: PolicyResource | str) -> None:
        """``what`` of ``subjects`` cannot be decided until the resources exist."""
        names = self.deferred.setdefault(what, [])
        for s in subjects:
            text = s if isinstance(s, str) else describe(s)
            if text not in names:
                names.append(text)

    def finish(self) -> None:
        """Outside a deferring policy, hand what was deferred to pulumi-policy's "can't run" note."""
        if self.deferred and not isinstance(self._report, _DeferringReport):
            raise PreviewUnknownError(deferral_lines(self.deferred))


def _config(args: Any) -> Mapping[str, Any]:
    try:
        return args.get_config() or {}
    except AttributeError:
        return {}


_EXEMPT_SCHEMA = {
    "type": "array",
    "items": {"type": "string"},
    "default": [],
    "description": "Glob patterns matched against a bucket's name and its Pulumi resource name.",
}
