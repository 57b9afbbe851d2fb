"""``ops log``: the log table's rows by bucket, prefix, outcome and time range. This
module owns the DynamoDB work and the filters; the command's options and its table,
JSON and CSV output are ``ops/log_render.py``.

Rows written since rows carry a ``bucket`` attribute are in the ``bucket-time`` global
secondary index, so ``--bucket`` is a Query on it. Older rows have no bucket attribute
and are not in the index (GSIs are sparse), so they are reached by a Scan, which the
output announces, and nothing is migrated. The Scan for older rows is skipped when it
cannot find any in range: every row written after the upgrade carries a bucket, so the
bucket's oldest indexed row bounds the older rows' time from above (plus
``ROLLOUT_SLACK``). Without ``--bucket`` the whole table is scanned (also announced).

Where the table comes from: ``--log-table`` names it; else with an endpoint (the
sandbox) it is the sandbox's name for ``--stack``; else the deployed stack's output
``logTableName``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from enforcer.decision import Outcome
from enforcer.journal import BUCKET_INDEX, BUCKET_INDEX_KEY
from ops.sources import InputError
from ops.status_model import LOG_TIMESTAMP_FORMAT

# An invocation still running the code from before the upgrade can write a row without
# a bucket after the new code wrote one: Lambda's longest timeout is 900 seconds
# ("Configure Lambda function timeout", https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html).
ROLLOUT_SLACK = timedelta(seconds=900)
RELATIVE = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
OUTCOMES = tuple(str(o) for o in Outcome)

_DESERIALIZE = TypeDeserializer()


# -- the operator's input -------------------------------------------------------


def parse_time(option: str, value: str | None, now: datetime) -> datetime | None:
    """ISO 8601 (naive means UTC) or a relative age like ``1h``, ``7d``; InputError else."""
    if value is None:
        return None
    match = RELATIVE.match(value.strip())
    if match:
        return now - timedelta(**{UNITS[match[2]]: int(match[1])})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(
            f"{option} {value!r} is not a time: give ISO 8601 (2026-11-22T12:00:00Z) or an age like 1h, 7d, 30m"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LogFilter:
    bucket: str | None = None
    prefix: str | None = None  # a literal key prefix
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.outcome is not None and self.outcome not in OUTCOMES:
            raise InputError(f"--outcome {self.outcome!r} is not an outcome: use one of {', '.join(OUTCOMES)}")
        if self.since and self.until and self.since > self.until:
            raise InputError(f"--since ({self.since.isoformat()}) is after --until ({self.until.isoformat()}): swap them")

    def matches(self, row: dict[str, Any]) -> bool:
        """The filters on a decoded row: the same rule for Query and Scan pages."""
        bucket, key = split_path(row.get("s3_object_path", ""))
        stamp = row.get("current_timestamp_utc", "")
        return (
            (self.bucket is None or bucket == self.bucket)
            and (self.prefix is None or key.startswith(self.prefix))
            and (self.outcome is None or row.get("outcome") == self.outcome)
            and (self.since is None or stamp >= stamp_of(self.since))
            and (self.until is None or stamp <= stamp_of(self.until))
        )


def stamp_of(when: datetime) -> str:
    """The journal's sort-key form; UTC throughout, so string order is time order."""
    return when.astimezone(UTC).strftime(LOG_TIMESTAMP_FORMAT)


def split_path(path: str) -> tuple[str, str]:
    """(bucket, key) of the journal's ``s3://bucket/key[?versionId=...]``."""
    rest = path.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    return bucket, key.split("?versionId=", 1)[0]


# -- the result -----------------------------------------------------------------


@dataclass
class LogResult:
    table: str
    origin: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # newest first
    scanned: bool = False  # a Scan ran (the output says so)
    older_rows: int = 0  # rows without a bucket attribute, found by the Scan
    notes: list[str] = field(default_factory=list)


ScanProgress = Callable[[int, int], None]  # (rows scanned so far, rows matched so far)


def plain(row: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as JSON-ready values (numbers as int or float)."""
    out = {}
    for name, value in row.items():
        v = _DESERIALIZE.deserialize(value)
        out[name] = (int(v) if v == v.to_integral_value() else float(v)) if isinstance(v, Decimal) else v
    return out


# -- DynamoDB ---------------------------------------------------------------------


def _range_condition(flt: LogFilter, names: dict[str, str], values: dict[str, Any]) -> str | None:
    names["#t"] = BUCKET_INDEX_KEY[1]
    if flt.since and flt.until:
        values[":since"], values[":until"] = {"S": stamp_of(flt.since)}, {"S": stamp_of(flt.until)}
        return "#t BETWEEN :since AND :until"
    if flt.since:
        values[":since"] = {"S": stamp_of(flt.since)}
        return "#t >= :since"
    if flt.until:
        values[":until"] = {"S": stamp_of(flt.until)}
        return "#t <= :until"
    del names["#t"]
    return None


def _filters(flt: LogFilter, names: dict[str, str], values: dict[str, Any], *, older_only: bool) -> list[str]:
    terms = []
    if flt.outcome:
        names["#o"], values[":o"] = "outcome", {"S": flt.outcome}
        terms.append("#o = :o")
    if flt.bucket is not None:
        names["#p"], values[":path"] = "s3_object_path", {"S": f"s3://{flt.bucket}/{flt.prefix or ''}"}
        terms.append("begins_with(#p, :path)")
    if older_only:
        names["#b"] = BUCKET_INDEX_KEY[0]
        terms.append("attribute_not_exists(#b)")
    return terms


def query_bucket(ddb, table: str, flt: LogFilter) -> tuple[list[dict[str, Any]], bool]:
    """The bucket's indexed rows in range, newest first, up to the limit; and whether
    the limit stopped it (more rows in range)."""
    names = {"#k": BUCKET_INDEX_KEY[0]}
    values: dict[str, Any] = {":b": {"S": flt.bucket}}
    condition = " AND ".join(c for c in ("#k = :b", _range_condition(flt, names, values)) if c)
    terms = _filters(flt, names, values, older_only=False)
    args: dict[str, Any] = {
        "TableName": table,
        "IndexName": BUCKET_INDEX,
        "KeyConditionExpression": condition,
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": False,  # newest first, so --limit keeps the latest rows
    }
    if terms:
        args["FilterExpression"] = " AND ".join(terms)
    rows: list[dict[str, Any]] = []
    for page in ddb.get_paginator("query").paginate(**args):
        rows.extend(r for r in map(plain, page["Items"]) if flt.matches(r))
        if len(rows) >= flt.limit:
            return rows[: flt.limit], True
    return rows, False


def oldest_indexed(ddb, table: str, bucket: str) -> str | None:
    """The timestamp of the bucket's oldest row in the index: the older rows precede it."""
    answer = ddb.query(
        TableName=table,
        IndexName=BUCKET_INDEX,
        KeyConditionExpression="#k = :b",
        ExpressionAttributeNames={"#k": BUCKET_INDEX_KEY[0]},
        ExpressionAttributeValues={":b": {"S": bucket}},
        ScanIndexForward=True,
        Limit=1,
    )
    items = answer.get("Items", [])
    return items[0][BUCKET_INDEX_KEY[1]]["S"] if items else None


def scan_rows(ddb, table: str, flt: LogFilter, *, older_only: bool, progress: ScanProgress) -> Iterator[dict[str, Any]]:
    """Every matching row of a Scan, page by page (LastEvaluatedKey), with progress."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    terms = _filters(flt, names, values, older_only=older_only)
    time_range = _range_condition(flt, names, values)
    if time_range:
        terms.append(time_range)
    args: dict[str, Any] = {"TableName": table}
    if terms:
        args["FilterExpression"] = " AND ".join(terms)
        args["ExpressionAttributeNames"] = names
    if values:
        args["ExpressionAttributeValues"] = values
    scanned = matched = 0
    for page in ddb.get_paginator("scan").paginate(**args):
        scanned += page.get("ScannedCount", len(page["Items"]))
        for row in map(plain, page["Items"]):
            if flt.matches(row):
                matched += 1
                yield row
        progress(scanned, matched)


def _newest(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: r.get("current_timestamp_utc", ""), reverse=True)[:limit]


def read_log(ddb, table: str, origin: str, flt: LogFilter, progress: ScanProgress = lambda s, m: None) -> LogResult:
    result = LogResult(table, origin)
    if flt.bucket is None:
        result.scanned = True
        result.notes.append(
            f"no --bucket: scanned the whole table {table} (a Scan reads every row; "
            f"--bucket queries the {BUCKET_INDEX} index)"
        )
        result.rows = _newest(list(scan_rows(ddb, table, flt, older_only=False, progress=progress)), flt.limit)
        return result
    rows, full = query_bucket(ddb, table, flt)
    oldest = oldest_indexed(ddb, table, flt.bucket)
    older_until = None
    if oldest is not None:
        # Older rows are older than the bucket's first indexed row (give or take the rollout).
        first = datetime.strptime(oldest, LOG_TIMESTAMP_FORMAT) + ROLLOUT_SLACK
        older_until = min(flt.until, first) if flt.until else first
    needed = older_until is None or (
        (flt.since is None or flt.since <= older_until)
        and (not full or rows[-1]["current_timestamp_utc"] < stamp_of(older_until))
    )
    if needed:
        result.scanned = True
        older = LogFilter(flt.bucket, flt.prefix, flt.outcome, flt.since, older_until, flt.limit)
        found = list(scan_rows(ddb, table, older, older_only=True, progress=progress))
        result.older_rows = len(found)
        if found:
            result.notes.append(
                f"{len(found)} older rows without a bucket attribute were found by a Scan "
                f"(written before rows carried one; the {BUCKET_INDEX} index does not hold them)"
            )
        else:
            result.notes.append("a Scan for older rows without a bucket attribute found none")
        rows = _newest(rows + found, flt.limit)
    result.rows = rows
    return result


# -- where the table is -----------------------------------------------------------


def resolve_log_table(stack: str, endpoint_url: str | None, log_table: str | None,
                      outputs: Callable[[str], dict[str, Any]]) -> tuple[str, str]:
    """(table name, how it was found)."""
    if log_table:
        return log_table, "--log-table"
    if endpoint_url:
        from ops.sandbox.provisioning import SandboxNames  # the sandbox's naming, not repeated here

        return SandboxNames(stack).log_table, f"sandbox stack {stack} at {endpoint_url}"
    name = outputs(stack).get("logTableName")
    if not name:
        raise InputError(
            f"stack {stack!r} has no output logTableName (not deployed yet?): deploy it with "
            f"`python -m ops up --stack {stack}`, or name the table with --log-table"
        )
    return name, f"stack {stack}"

