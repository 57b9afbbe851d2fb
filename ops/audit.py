"""``ops audit``: the command that reports how compliant a bucket is, per mapped prefix;
it parses the options and wires the run to its output. Changes nothing.

Every listed object goes through ``Enforcer.assess`` (mapping lookup, one HEAD,
``decide()``), the same judgement the Lambda makes on upload (``ops/audit_run.py``);
the audit only counts the answers (``ops/audit_report.py``) and prints them
(``ops/audit_render.py``, JSON/CSV, or one self-contained HTML file from
``ops/audit_html.py``). ``--all`` audits every bucket the mappings name, one after the
other. Exit code 1 when any mapped object is not compliant, so CI can gate on it; 2 on
bad input, which includes a ``--prefix`` that reaches no mapped prefix (a gate must not
pass on 0 objects judged).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from ops import sources
from ops.audit_html import render_html
from ops.audit_render import render_set, render_table
from ops.audit_report import AuditReport, AuditSet
from ops.audit_run import buckets_in_stack, buckets_in_table, run_audit, run_audits, scope_problem
from ops.aws import Target as AwsTarget
from ops.terminal import fail_input, make_console, progress_bar


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"
    HTML = "html"


BucketOrAllOption = Annotated[
    str | None, typer.Option("--bucket", help="Bucket to audit (or --all).", show_default=False)
]


def audit_command(
    bucket: BucketOrAllOption = None,
    all_buckets: Annotated[
        bool, typer.Option("--all", help="Every bucket the mappings name, one after the other.")
    ] = False,
    prefix: sources.PrefixOption = None,
    versions: Annotated[
        bool, typer.Option("--versions", help="Judge every version (ListObjectVersions), not just current objects.")
    ] = False,
    output_format: Annotated[
        OutputFormat,
        typer.Option("--format", help="table or html (the first --limit offenders), json/csv (every offender)."),
    ] = OutputFormat.TABLE,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Write the json/csv/html report to this file (html needs it).", dir_okay=False),
    ] = None,
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
        check_output_options(output_format, output)
        if bool(bucket) == all_buckets:
            raise sources.InputError("pass either --bucket NAME or --all (every mapped bucket), not both or neither")
        aws = AwsTarget(endpoint_url, region)
        mappings = sources.resolve_mappings(aws, stack, mapping_table)
        label = sources.source_label(stack, mapping_table)
        if all_buckets:
            names = buckets_in_table(aws.client("dynamodb"), mapping_table) if mapping_table else buckets_in_stack(
                stack or "dev"
            )
            buckets = [b for b in names if not scope_problem(sources.bucket_mappings(mappings, b, label), b, prefix)]
            if not buckets:
                raise sources.InputError(
                    f"no bucket has mappings in {label}; add one with `ops mappings add`" if not names else
                    f"--prefix {prefix!r} matches no mapped prefix in any of the {len(names)} bucket(s) of {label}; "
                    "pass a mapped prefix, one inside it, or one that contains it"
                )
        else:
            problem = scope_problem(sources.bucket_mappings(mappings, bucket, label), bucket, prefix)
            if problem:
                raise sources.InputError(problem)
        s3 = aws.client("s3", pool=concurrency + 4)
        scope = f"{len(buckets)} bucket(s)" if all_buckets else f"s3://{bucket}/"
        with progress_bar(err, f"Auditing {scope}{prefix or ''}") as sink:
            options = dict(
                prefix=prefix, versions=versions, concurrency=concurrency, max_objects=max_objects,
                source=label, progress=sink,
            )
            report = run_audits(s3, mappings, buckets, **options) if all_buckets else run_audit(
                s3, mappings, bucket, **options
            )
    except sources.InputError as exc:
        raise fail_input(err, str(exc)) from None
    except Exception as exc:
        problem = sources.aws_problem(exc)
        if problem:
            raise fail_input(err, problem) from None
        raise
    if output_format is OutputFormat.TABLE:
        if isinstance(report, AuditSet):
            render_set(report, out, limit)
        else:
            render_table(report, out, limit)
        raise typer.Exit(report.exit_code)
    if output_format is OutputFormat.JSON:
        text = report.to_json() + "\n"
    elif output_format is OutputFormat.CSV:
        text = report.to_csv()
    else:
        text = render_html(report.reports if isinstance(report, AuditSet) else [report], limit)
    if output is None:
        sys.stdout.write(text)
    else:
        write_report(err, output, text)
    if output is not None or output_format is OutputFormat.CSV:
        err.print(summary_line(report, output), highlight=False)
    raise typer.Exit(report.exit_code)


def check_output_options(output_format: OutputFormat, output: Path | None) -> None:
    if output_format is OutputFormat.HTML and output is None:
        raise sources.InputError("--format html writes a file: add --output FILE (e.g. --output audit.html)")
    if output_format is OutputFormat.TABLE and output is not None:
        raise sources.InputError("--output writes a json, csv or html report: add --format json|csv|html")


def write_report(err, output: Path, text: str) -> None:
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise fail_input(err, f"--output {output}: cannot write it ({exc.strerror}); pick a writable path") from None


def summary_line(report: AuditReport | AuditSet, output: Path | None) -> str:
    where = f"wrote {output}: " if output is not None else ""
    return f"{where}{report.non_compliant} non-compliant of {report.objects} objects"
