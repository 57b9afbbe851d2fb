"""The enforcer's CloudWatch metrics: namespace, dimensions and every metric name.

Defined once, here: the handler emits exactly these names and the stack's dashboard
and alarms (``components/dashboard.py``, ``components/enforcer.py``) chart and watch
them, so a renamed metric cannot leave a widget or an alarm on a metric nobody writes.
"""

from __future__ import annotations

from enforcer.decision import Method, Outcome

NAMESPACE = "S3PrefixKeys"
SERVICE = "enforcer"
# Powertools' EMF output puts the Metrics' service into every metric's dimension set
# as "service" (3.37, ``AmazonCloudWatchEMFProvider.serialize_metric_set``),
# and the handler adds no other dimension: CloudWatch keys the metric by this set, so
# a dashboard widget or an alarm must name it exactly.
DIMENSIONS: dict[str, str] = {"service": SERVICE}

# The seconds from the S3 event's time until the re-key completed, one value per
# re-keyed object (enforcer/engine.py: ``exposure_seconds``).
EXPOSURE = "exposure_seconds"
MALFORMED = "malformed_messages"

# Decisions to act are never a result's outcome; the engine turns them into REKEYED,
# KEPT, DELETED or a failure.
_DECISIONS_ONLY = frozenset({Outcome.REKEY, Outcome.KEEP, Outcome.DELETE_VERSION})


def outcome_metric(outcome: Outcome) -> str:
    """How many results ended with ``outcome`` in one invocation (a Count)."""
    return f"outcome_{outcome}"


def method_metric(method: Method) -> str:
    """How many objects were re-keyed with ``method`` in one invocation (a Count)."""
    return f"method_{method}"


OUTCOMES: tuple[str, ...] = tuple(outcome_metric(o) for o in Outcome if o not in _DECISIONS_ONLY)
METHODS: tuple[str, ...] = tuple(method_metric(m) for m in Method)
# Every name the handler may emit.
ALL: tuple[str, ...] = (*OUTCOMES, *METHODS, MALFORMED, EXPOSURE)
