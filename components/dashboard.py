"""The stack's CloudWatch dashboard: its body (a JSON document) and its console URL.

Pure: no Pulumi runtime. ``components/enforcer.py`` fills in the physical names once
they exist and registers the ``aws.cloudwatch.Dashboard``. The enforcer's own metrics
come from ``enforcer/metric_names.py``, the names the handler emits, so a widget
cannot chart a metric nobody writes; the others are AWS metrics of the stack's queue,
dead-letter queue and function.

Body syntax: CloudWatch API Reference, *Dashboard Body Structure and Syntax*
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html):
a ``widgets`` array; a metric widget's ``properties.metrics`` holds one array per
metric, ``[Namespace, MetricName, DimensionName, DimensionValue, ..., {options}]``,
whose trailing object may set ``stat``, ``label`` and ``yAxis``; the grid is 24 units wide.
"""

from __future__ import annotations

from typing import Any

from enforcer import metric_names

# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html
# (dimension QueueName) and
# https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html
# (dimension FunctionName; ConcurrentExecutions is reported per function too).
SQS_NAMESPACE = "AWS/SQS"
LAMBDA_NAMESPACE = "AWS/Lambda"
QUEUE_DEPTH = "ApproximateNumberOfMessagesVisible"
OLDEST_MESSAGE_AGE = "ApproximateAgeOfOldestMessage"

PERIOD_SECONDS = 300
_WIDTH, _HEIGHT = 12, 6  # two widgets a row


def _own(name: str, **options: Any) -> list[Any]:
    dims = [part for item in sorted(metric_names.DIMENSIONS.items()) for part in item]
    return [metric_names.NAMESPACE, name, *dims, *([options] if options else [])]


def _aws(namespace: str, name: str, dimension: str, value: str, **options: Any) -> list[Any]:
    return [namespace, name, dimension, value, *([options] if options else [])]


def _widget(title: str, metrics: list[list[Any]], region: str, *, stat: str = "Sum",
            **extra: Any) -> dict[str, Any]:
    return {
        "type": "metric",
        "width": _WIDTH,
        "height": _HEIGHT,
        "properties": {
            "title": title,
            "view": "timeSeries",
            "region": region,
            "period": PERIOD_SECONDS,
            "stat": stat,
            "metrics": metrics,
            **extra,
        },
    }


def dashboard_body(
    *, region: str, queue_name: str, dead_letter_queue_name: str, function_name: str,
    exposure_alarm_seconds: float,
) -> dict[str, Any]:
    """The dashboard: outcomes, methods, the exposure window, backlog, DLQ, function."""
    fn = ("FunctionName", function_name)
    widgets = [
        _widget("Outcomes (objects per 5 minutes)",
                [_own(n) for n in (*metric_names.OUTCOMES, metric_names.MALFORMED)], region, stacked=True),
        _widget("Re-key methods (objects per 5 minutes)", [_own(n) for n in metric_names.METHODS], region,
                stacked=True),
        _widget(
            "Exposure window: seconds under the wrong key",
            [_own(metric_names.EXPOSURE, stat=s, label=s) for s in ("p50", "p99")],
            region,
            stat="p99",
            # The alarm's threshold, so that the line it crosses is on the graph.
            annotations={"horizontal": [{"label": "exposure alarm", "value": exposure_alarm_seconds}]},
        ),
        _widget(
            "Backlog: queue depth and oldest message (s)",
            [
                _aws(SQS_NAMESPACE, QUEUE_DEPTH, "QueueName", queue_name, label="messages visible"),
                _aws(SQS_NAMESPACE, OLDEST_MESSAGE_AGE, "QueueName", queue_name, label="oldest message age",
                     yAxis="right"),
            ],
            region,
            stat="Maximum",
        ),
        _widget("Dead-letter queue depth",
                [_aws(SQS_NAMESPACE, QUEUE_DEPTH, "QueueName", dead_letter_queue_name)], region, stat="Maximum"),
        _widget("Function errors and throttles",
                [_aws(LAMBDA_NAMESPACE, m, *fn) for m in ("Errors", "Throttles")], region),
        _widget(
            "Function duration (ms) and concurrency",
            [
                _aws(LAMBDA_NAMESPACE, "Duration", *fn, stat="p99", label="duration p99"),
                _aws(LAMBDA_NAMESPACE, "ConcurrentExecutions", *fn, stat="Maximum", label="concurrency",
                     yAxis="right"),
            ],
            region,
            stat="Average",
        ),
    ]
    for i, widget in enumerate(widgets):
        widget["x"], widget["y"] = (i % 2) * _WIDTH, (i // 2) * _HEIGHT
    return {"widgets": widgets}


def dashboard_url(region: str, name: str) -> str:
    """The dashboard in the CloudWatch console (the commercial partition's console host)."""
    return f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#dashboards:name={name}"
