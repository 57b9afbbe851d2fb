"""One policy evaluation: violations reported, checks that read unknowns deferred, and the policies' config.

A check that cannot be decided at preview is recorded as *deferred*; after
every decidable check has reported, the policy raises :class:`PreviewUnknownError`
(an ``UnknownValueError``), which pulumi-policy reports as its usual advisory
"can't run policy ... during preview" note. So a preview shows every violation it can
prove, and says which checks wait for ``pulumi up``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import PolicyResource, ReportViolation
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from policypack.stack_graph import describe


class PreviewUnknownError(UnknownValueError):
    """Raised after a policy has reported everything it could decide.

    pulumi-policy turns any ``UnknownValueError`` into an advisory "can't run policy
    ... during preview: <message>" diagnostic; violations already reported stay.
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


class _Run:
    """One policy evaluation: reports violations, collects deferred checks."""

    def __init__(self, report: ReportViolation):
        self._report = report
        self.deferred: dict[str, list[str]] = {}

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
        if self.deferred:
            raise PreviewUnknownError(
                [f"{what} of {', '.join(sorted(names))}" if names else what for what, names in self.deferred.items()]
            )


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
