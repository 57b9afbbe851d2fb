"""``ops audit``: the command that reports how compliant a bucket is, per mapped prefix;
it parses the options and wires the run to its output. Changes nothing.

Every listed object goes through ``Enforcer.assess`` (mapping lookup, one HEAD,
``decide()``), the same judgement the Lambda makes on upload (``ops/audit_run.py``);
the audit only counts the answers (``ops/audit_report.py``) and prints them
(``ops/audit_render.py``, or JSON/CSV). Exit code 1 when any mapped object is not
compliant, so CI can gate on it; 2 on bad input.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from ops import sources
from ops.audit_render import render_table
from ops.audit_run import run_audit
from ops.aws import Target as AwsTarget
from ops.terminal import fail_input, make_console, progress_bar


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


def audit_command(
    bucket: sources.BucketOption,
    prefix: sources.PrefixOption = None,
    versions: Annotated[
        bool, typer.Option("--versions", help="Judge every version (ListObjectVersions), not just current objects.")
    ] = False,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table (the first --limit offenders) or json/csv (every offender).")] = OutputFormat.TABLE,
    stack: sources.StackOption = None,
    mapping_table: sources.MappingTableOption = None,
    endpoint_url: sources.EndpointOption = None,
    region: sources.RegionOption = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Objects inspected at once.")] = 32,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Offenders listed in the table.")] = 20,
    max_objects: Annotated[
        int | None, typer.Option("--max-objects", min=1, help="Stop after judging this many objects (a sample).")
    ] = None,
) -> None:
    """Report per mapped prefix how many objects are compliant, wrong type, wrong key, or
    unencrypted/SSE-S3. Exit 1 when any mapped object is not compliant (a CI gate)."""
    err = make_console(stderr=True)
    out = make_console()
    try:
        aws = AwsTarget(endpoint_url, region)
        mappings = sources.resolve_mappings(aws, stack, mapping_table)
        label = sources.source_label(stack, mapping_table)
        sources.bucket_mappings(mappings, bucket, label)
        s3 = aws.client("s3", pool=concurrency + 4)
        with progress_bar(err, f"Auditing s3://{bucket}/{prefix or ''}") as sink:
            report = run_audit(
                s3, mappings, bucket, prefix=prefix, versions=versions, concurrency=concurrency,
                max_objects=max_objects, source=label, progress=sink,
            )
    except sources.InputError as exc:
        raise fail_input(err, str(exc)) from None
    except Exception as exc:
        problem = sources.aws_problem(exc)
        if problem:
            raise fail_input(err, problem) from None
        raise
    if output_format is OutputFormat.JSON:
        sys.stdout.write(report.to_json() + "\n")
    elif output_format is OutputFormat.CSV:
        sys.stdout.write(report.to_csv())
        err.print(f"{report.non_compliant} non-compliant of {report.objects} objects", highlight=False)
    else:
        render_table(report, out, limit)
    raise typer.Exit(report.exit_code)
