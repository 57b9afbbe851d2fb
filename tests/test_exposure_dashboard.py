"""The exposure window (event time to completed re-key): parsed, computed, journaled,
emitted as a metric and alarmed on; the stack's dashboard and its URL; and no
"No application metrics to publish" warning from the handler."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from aws_lambda_powertools import Metrics

from components import dashboard, names
from components.mocks import Graph, run_program
from enforcer import metric_names
from enforcer.decision import Method, Outcome
from enforcer.engine import Enforcer, Result, exposure_seconds
from enforcer.events import ObjectRef, event_time, parse_message
from enforcer.journal import row_for
from enforcer.mapping import DynamoMappings
from tests.aws_events import eventbridge_event, s3_notification, s3_record, s3_test_event, sqs_record
from tests.conftest import LambdaContext

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pulumi_aws")

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
QUEUE = "aws:sqs/queue:Queue"
FUNCTION = "aws:lambda/function:Function"
TOPIC = "aws:sns/topic:Topic"
NO_METRICS = "No application metrics to publish"


# ---------------------------------------------------------------------------
# The event time and the computation


def test_both_event_shapes_carry_their_time():
    (s3_ref,) = parse_message(s3_notification(s3_record()))
    (eb_ref,) = parse_message(json.dumps(eventbridge_event()))
    # aws_events' documented examples: "2026-11-22T12:00:00.000Z" and "2026-11-22T12:00:00Z".
    assert s3_ref.event_time == T0 and eb_ref.event_time == T0
    assert s3_ref.event_time.tzinfo is not None


@pytest.mark.parametrize("raw", [None, "", "yesterday", 1700000000])
def test_an_unreadable_time_leaves_the_object_enforced_but_untimed(raw):
    record = s3_record()
    record["eventTime"] = raw
    (ref,) = parse_message(s3_notification(record))  # not a malformed message
    assert ref.event_time is None and event_time(raw) is None


def test_offsets_are_normalised_to_utc():
    assert event_time("2026-11-22T13:00:00+01:00") == T0
    assert event_time("2026-11-22T12:00:00") == T0  # no offset: UTC, as both shapes write


def test_exposure_is_event_time_to_completion():
    assert exposure_seconds(T0, T0 + timedelta(seconds=12, microseconds=345600)) == 12.346
    assert exposure_seconds(None, T0) is None
    # S3's clock a little ahead of the function's: no negative window.
    assert exposure_seconds(T0, T0 - timedelta(seconds=2)) == 0.0


def test_the_log_row_carries_it_as_a_number():
    result = Result(ObjectRef("bkt", "t/a", event_time=T0), Outcome.REKEYED, "r", Method.COPY,
                    exposure_seconds=1.5)
    row = row_for(result, T0, 90)
    assert row["exposure_seconds"] == 1.5
    assert "exposure_seconds" not in row_for(Result(ObjectRef("bkt", "t/a"), Outcome.COMPLIANT, "ok"), T0, 90)
    from enforcer.journal import _attr

    assert _attr(1.5) == {"N": "1.500"} and _attr(1e-05) == {"N": "0.000"}


def test_the_engine_times_rekeys_only(world):
    bucket = world.bucket("timed-bucket", notify=False)
    world.map(bucket, "t/", world.key("t"))
    world.s3.put_object(Bucket=bucket, Key="t/a", Body=b"x")
    clock = [T0 + timedelta(seconds=42)]
    engine = Enforcer(world.s3, DynamoMappings(world.ddb, "mapping", 0), clock=lambda: clock[0])
    rekeyed = engine.process(ObjectRef(bucket, "t/a", event_time=T0))
    assert rekeyed.outcome is Outcome.REKEYED and rekeyed.exposure_seconds == 42.0
    again = engine.process(ObjectRef(bucket, "t/a", event_time=T0))
    assert again.outcome is Outcome.COMPLIANT and again.exposure_seconds is None
    untimed = engine.process_uninspected(ObjectRef(bucket, "t/a"))  # a backfill: no event
    assert untimed.outcome is Outcome.REKEYED and untimed.exposure_seconds is None


# ---------------------------------------------------------------------------
# The handler: log row, metric, and no empty-flush warning


def _emf(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_handler_journals_and_emits_each_exposure(world, load_handler, capsys):
    handler = load_handler()
    bucket = world.bucket("exposed-bucket")
    world.map(bucket, "t/", world.key("t"))
    for key in ("t/a", "t/b", "u/c"):
        world.s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    capsys.readouterr()
    started = datetime.now(UTC)
    handler.handler(world.event(), LambdaContext())
    rows = {r["s3_object_path"]: r for r in world.log_rows()}
    timed = sorted(float(r["exposure_seconds"]) for r in rows.values() if "exposure_seconds" in r)
    assert len(timed) == 2  # the two re-keyed objects; the unmapped one has no window
    assert "exposure_seconds" not in rows[f"s3://{bucket}/u/c"]
    assert all(0 <= s <= (datetime.now(UTC) - started).total_seconds() + 60 for s in timed)
    (blob,) = _emf(capsys.readouterr().out)
    assert sorted(blob[metric_names.EXPOSURE]) == timed  # one sample per object, as journaled
    (directive,) = blob["_aws"]["CloudWatchMetrics"]
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units[metric_names.EXPOSURE] == "Seconds"
    # What the alarm and the dashboard must name to find these values.
    assert directive["Namespace"] == metric_names.NAMESPACE
    assert directive["Dimensions"] == [sorted(metric_names.DIMENSIONS)]
    assert {k: blob[k] for k in metric_names.DIMENSIONS} == metric_names.DIMENSIONS
    assert set(units) <= set(metric_names.ALL)


def test_powertools_itself_still_warns_on_an_empty_flush():
    # Why the handler skips the empty flush: if this stops warning, the skip is moot.
    with pytest.warns(UserWarning, match=NO_METRICS):
        Metrics(namespace="S3PrefixKeysWarnProbe").flush_metrics()


@pytest.mark.filterwarnings("error::UserWarning")
@pytest.mark.parametrize("disabled", [True, False], ids=["metrics-disabled", "nothing-to-count"])
def test_no_empty_metrics_warning(world, load_handler, monkeypatch, disabled, capsys):
    handler = load_handler()
    if disabled:
        monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    bucket = world.bucket("quiet-bucket")
    world.map(bucket, "t/", world.key("t"))
    if disabled:
        world.s3.put_object(Bucket=bucket, Key="t/a", Body=b"x")  # results, but no metrics
        event = world.event()
    else:
        event = {"Records": [sqs_record(s3_test_event(bucket))]}  # no object, nothing to count
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handler.handler(event, LambdaContext())
    assert not [w for w in caught if NO_METRICS in str(w.message)]
    assert _emf(capsys.readouterr().out) == []
    assert handler.metrics.metric_set == {}


# ---------------------------------------------------------------------------
# The stack: dashboard, alarm, output


@pytest.fixture(scope="module")
def graph() -> Graph:
    return run_program({"aws:region": "eu-west-1", "demo": True, "exposureAlarmSeconds": 120})


def _queues(graph: Graph) -> tuple[str, str]:
    by_name = {q.name: q for q in graph.by_type(QUEUE)}
    main, dlq = by_name["enforcer-queue"], by_name["enforcer-dlq"]
    assert json.loads(main.inputs["redrivePolicy"])["deadLetterTargetArn"] == dlq.outputs["arn"]
    return main.outputs["name"], dlq.outputs["name"]


def _charted(graph: Graph) -> list[list]:
    (board,) = graph.by_type(DASHBOARD)
    body = json.loads(board.inputs["dashboardBody"])
    return [m for w in body["widgets"] for m in w["properties"]["metrics"]]


def test_every_widget_names_an_emitted_metric_or_one_of_a_stack_resource(graph):
    queue, dlq = _queues(graph)
    (function,) = graph.by_type(FUNCTION)
    # AWS metrics per resource, from the SQS and Lambda metric pages.
    aws = {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq),
        *{("AWS/Lambda", m, "FunctionName", function.outputs["name"])
          for m in ("Errors", "Throttles", "Duration", "ConcurrentExecutions")},
    }
    own, seen_aws = set(), set()
    for metric in _charted(graph):
        plain = tuple(p for p in metric if not isinstance(p, dict))
        if plain[0] == metric_names.NAMESPACE:
            assert dict(zip(plain[2::2], plain[3::2], strict=True)) == metric_names.DIMENSIONS, metric
            assert plain[1] in metric_names.ALL, metric
            own.add(plain[1])
        else:
            assert plain in aws, metric
            seen_aws.add(plain)
    assert own == set(metric_names.ALL)  # and nothing the handler emits is left off
    assert seen_aws == aws


def test_exposure_is_charted_as_p50_and_p99(graph):
    stats = {m[-1].get("stat") for m in _charted(graph) if m[1] == metric_names.EXPOSURE}
    assert stats == {"p50", "p99"}


def test_exposure_alarm_watches_p99_of_the_emitted_metric(graph):
    (alarm,) = [a for a in graph.by_type(ALARM) if a.inputs.get("metricName") == metric_names.EXPOSURE]
    assert alarm.inputs["namespace"] == metric_names.NAMESPACE
    assert alarm.inputs["dimensions"] == metric_names.DIMENSIONS
    assert alarm.inputs["extendedStatistic"] == "p99" and "statistic" not in alarm.inputs
    assert alarm.inputs["threshold"] == 120 and alarm.inputs["comparisonOperator"] == "GreaterThanThreshold"
    (topic,) = graph.by_type(TOPIC)
    assert alarm.inputs["alarmActions"] == [topic.outputs["arn"]]
    assert alarm.inputs["treatMissingData"] == "notBreaching"  # no re-keys is no exposure


def test_the_default_threshold_and_a_bad_one():
    from components.config import ConfigError, validate

    assert validate({}, "us-east-1").exposure_alarm_seconds == 900
    for bad in (0, 15 * 24 * 3600, "soon"):
        with pytest.raises(ConfigError, match="exposureAlarmSeconds"):
            validate({"exposureAlarmSeconds": bad}, "us-east-1")


def test_dashboard_url_output(graph):
    (board,) = graph.by_type(DASHBOARD)
    name = board.inputs["dashboardName"]
    assert names.name_problem(names.CLOUDWATCH_DASHBOARD, name) is None
    assert name.startswith(names.stack_prefix(names.CLOUDWATCH_DASHBOARD, graph.stack))
    assert graph.outputs["dashboardUrl"] == (
        f"https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#dashboards:name={name}"
    )
    assert dashboard.dashboard_url("eu-west-1", name) == graph.outputs["dashboardUrl"]


def test_dashboard_names_follow_the_put_dashboard_rule():
    assert names.name_problem(names.CLOUDWATCH_DASHBOARD, "s3-prefix-keys_prod-1") is None
    assert "contains '.'" in names.name_problem(names.CLOUDWATCH_DASHBOARD, "s3.prefix")
    built = names.physical_name(names.CLOUDWATCH_DASHBOARD, "prod.eu", "enforcer")
    assert names.name_problem(names.CLOUDWATCH_DASHBOARD, built) is None
