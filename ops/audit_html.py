"""The audit report as one self-contained HTML file (``ops audit --format html``): a
compliance bar per mapped prefix, the outcome breakdown per prefix, the per-bucket and
per-prefix tables, and the first offenders of each bucket with their fixes.

Self-contained means the file loads nothing: the charts are inline SVG, rendered here
by vl-convert (Vega-Lite), the style is inline, and a Content-Security-Policy of
``default-src 'none'`` makes a browser refuse any fetch that might slip in. vl-convert
bundles Vega and Vega-Lite in its own engine and makes network requests only for
remote data, images, fonts or plugins a spec names (https://vega.github.io/vl-convert/);
the specs here carry their data inline and name none of those.

Every number shown is also on its element as a ``data-*`` attribute, so tests (and
scripts) read the page's figures without scraping its layout.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape
from typing import Any

import vl_convert

from ops.audit_report import AuditReport, Category, compliance, finding_order

# The order and colours of the outcome breakdown: fine outcomes green/teal/grey, the
# key mismatches in warm colours, what a person must look at in cool ones.
CATEGORY_COLOURS: dict[Category, str] = {
    Category.COMPLIANT: "#2e7d32",
    Category.KEPT: "#26a69a",
    Category.GONE: "#bdbdbd",
    Category.WRONG_KEY: "#c62828",
    Category.WRONG_TYPE: "#ef6c00",
    Category.UNENCRYPTED_OR_SSE_S3: "#8e0000",
    Category.SSE_C: "#6a1b9a",
    Category.ACCESS_DENIED: "#546e7a",
    Category.NEEDS_RESTORE: "#1565c0",
    Category.NEEDS_CHOICE: "#f9a825",
    Category.INVALID_MAPPING: "#5d4037",
    Category.ERROR: "#212121",
}

# What vl-convert puts on the root <svg>. The HTML parser places an inline <svg> in the
# SVG namespace by itself (HTML Living Standard, "foreign elements"), so the
# declarations are redundant there; without them the file holds no "http" at all, and
# "loads nothing" is checkable with grep.
_NAMESPACE_DECLARATIONS = re.compile(r'\s+xmlns(:xlink)?="http://www\.w3\.org/[^"]*"')

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #212121; max-width: 1150px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
.meta { color: #555; margin-top: 0; }
.fail { color: #c62828; font-weight: bold; } .pass { color: #2e7d32; font-weight: bold; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
td, code { overflow-wrap: anywhere; } code { font-size: 12px; }
#buckets td, #prefixes td, #prefixes code { overflow-wrap: break-word; }
"""


def label(bucket: str, prefix: str) -> str:
    return f"{bucket}/{prefix}"


def bar_chart(rows: list[dict[str, Any]], **encoding: Any) -> str:
    """Horizontal bars, one line per bucket/prefix in the rows' order, as inline SVG."""
    spec = {
        "data": {"values": rows},
        "width": 640,
        "height": {"step": 22},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {
            "y": {"field": "prefix", "type": "nominal", "sort": None, "title": None, "axis": {"labelLimit": 360}},
            **encoding,
        },
    }
    return _NAMESPACE_DECLARATIONS.sub("", vl_convert.vegalite_to_svg(spec))


def compliance_chart(reports: Sequence[AuditReport]) -> str:
    rows = [
        {"prefix": label(r.bucket, p), "compliance": round(100 * share, 1)}
        for r in reports
        for p, s in sorted(r.prefixes.items())
        if (share := s.compliance) is not None
    ]
    if not rows:
        return '<p class="meta">No mapped objects were judged, so there is no compliance to chart.</p>'
    return bar_chart(
        rows,
        x={"field": "compliance", "type": "quantitative", "title": "compliant (% of judged objects)",
           "scale": {"domain": [0, 100]}},
        color={"condition": {"test": "datum.compliance >= 100", "value": CATEGORY_COLOURS[Category.COMPLIANT]},
               "value": CATEGORY_COLOURS[Category.WRONG_KEY]},
    )


def outcome_chart(reports: Sequence[AuditReport]) -> str:
    order = list(CATEGORY_COLOURS)
    rows = [
        {"prefix": label(r.bucket, p), "outcome": str(c), "objects": s.counts.get(c, 0), "rank": order.index(c)}
        for r in reports
        for p, s in sorted(r.prefixes.items())
        for c in order
        if s.counts.get(c, 0)
    ]
    if not rows:
        return '<p class="meta">No mapped objects were judged.</p>'
    present = [c for c in order if any(row["outcome"] == str(c) for row in rows)]
    return bar_chart(
        rows,
        x={"field": "objects", "type": "quantitative", "stack": "zero", "title": "objects"},
        color={"field": "outcome", "type": "nominal", "title": "outcome",
               "scale": {"domain": [str(c) for c in present], "range": [CATEGORY_COLOURS[c] for c in present]}},
        order={"field": "rank"},
    )


def attrs(**values: Any) -> str:
    return "".join(f' data-{name.replace("_", "-")}="{escape(str(v))}"' for name, v in values.items())


def bucket_table(reports: Sequence[AuditReport]) -> str:
    rows = []
    for r in reports:
        mapped = r.objects - r.unmapped
        share = compliance(mapped, r.non_compliant)
        rows.append(
            f"<tr{attrs(bucket=r.bucket, objects=r.objects, mapped=mapped, unmapped=r.unmapped, non_compliant=r.non_compliant)}>"
            f"<td>{escape(r.bucket)}</td><td class=n>{r.objects}</td><td class=n>{mapped}</td>"
            f"<td class=n>{r.unmapped}</td><td class=n>{r.non_compliant}</td><td class=n>{percent(share)}</td>"
            + ("<td>stopped at --max-objects</td>" if r.truncated else "<td></td>") + "</tr>"
        )
    head = "<tr><th>Bucket</th><th>Objects</th><th>Mapped</th><th>Unmapped</th><th>Non-compliant</th>" \
           "<th>Compliance</th><th>Note</th></tr>"
    return f'<table id="buckets">{head}{"".join(rows)}</table>'


def percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.1f}%"


def short_target(sse: str, arn: str | None) -> str:
    return f"{sse} {arn.rsplit(':', 1)[-1]}" if arn else sse


def prefix_table(reports: Sequence[AuditReport]) -> str:
    """Every category's count is on the row's data attributes; the columns show only the
    categories some prefix has, so the table fits a screen."""
    present = {c for r in reports for s in r.prefixes.values() for c, n in s.counts.items() if n}
    shown = [c for c in CATEGORY_COLOURS if c in present or c is Category.COMPLIANT]
    head = "<tr><th>Bucket</th><th>Prefix</th><th>Target</th><th>Objects</th><th>Non-compliant</th>" \
           "<th>Compliance</th>" + "".join(f"<th>{escape(str(c))}</th>" for c in shown) + "</tr>"
    rows = []
    for r in reports:
        for p, s in sorted(r.prefixes.items()):
            full = f"invalid: {s.problem}" if s.problem else (
                f"{s.target.sse_type} {s.target.kms_key_arn}" if s.target else "-"
            )
            target = full if s.problem or not s.target else short_target(s.target.sse_type, s.target.kms_key_arn)
            counts = {f"count_{c}": s.counts.get(c, 0) for c in CATEGORY_COLOURS}
            rows.append(
                f"<tr{attrs(bucket=r.bucket, prefix=p, objects=s.objects, non_compliant=s.offending, **counts)}>"
                f"<td>{escape(r.bucket)}</td><td><code>{escape(p)}</code></td>"
                f"<td title=\"{escape(full)}\"><code>{escape(target)}</code></td>"
                f"<td class=n>{s.objects}</td><td class=n>{s.offending}</td><td class=n>{percent(s.compliance)}</td>"
                + "".join(f"<td class=n>{s.counts.get(c, 0)}</td>" for c in shown) + "</tr>"
            )
    return f'<table id="prefixes">{head}{"".join(rows)}</table>'


def encryption(sse: str | None, key: str | None, missing: str) -> str:
    """The full ARN: unlike the terminal table, the page has room and wraps it."""
    return f"{sse or missing} {key or ''}".strip()


def offender_table(report: AuditReport, limit: int) -> str:
    shown = sorted(report.offenders, key=finding_order)[:limit]
    caption = (f"<h3{attrs(bucket=report.bucket, shown=len(shown), offenders=report.non_compliant)}>"
               f"s3://{escape(report.bucket)}: first {len(shown)} of {report.non_compliant} "
               "(all of them with --format json|csv)</h3>")
    head = "<tr><th>Key</th><th>Version</th><th>Category</th><th>Now</th><th>Should be</th><th>Reason</th><th>Fix</th></tr>"
    rows = [
        f"<tr{attrs(bucket=f.bucket, key=f.key, category=f.category)}>"
        f"<td><code>{escape(f.key)}</code></td>"
        f"<td>{escape((f.version_id or '-') + ('' if f.is_latest else ' (noncurrent)'))}</td>"
        f"<td>{escape(str(f.category))}</td>"
        f"<td><code>{escape(encryption(f.sse_type, f.kms_key_arn, 'none'))}</code></td>"
        f"<td><code>{escape(encryption(f.target_sse_type, f.target_kms_key_arn, '-'))}</code></td>"
        f"<td>{escape(f.reason)}</td><td><code>{escape(f.fix)}</code></td></tr>"
        for f in shown
    ]
    return caption + (f'<table class="offenders">{head}{"".join(rows)}</table>' if rows else "")


def render_html(reports: Sequence[AuditReport], limit: int = 20, generated: datetime | None = None) -> str:
    """The whole page for one bucket's report or several (``--all``), with the first
    ``limit`` offenders of each bucket."""
    generated = generated or datetime.now(UTC)
    objects = sum(r.objects for r in reports)
    offenders = sum(r.non_compliant for r in reports)
    sources = sorted({r.source for r in reports})
    verdict = (f'<span class="fail">{offenders} mapped object(s) not compliant</span>' if offenders
               else '<span class="pass">every mapped object is compliant</span>')
    offending = [r for r in reports if r.offenders]
    return "".join([
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>s3-prefix-keys audit: {escape(', '.join(r.bucket for r in reports))}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1{attrs(buckets=len(reports), objects=objects, non_compliant=offenders)}>s3-prefix-keys audit</h1>",
        f"<p class=\"meta\">{len(reports)} bucket(s), {objects} objects judged, mappings from "
        f"{escape(', '.join(sources))}; generated {generated:%Y-%m-%d %H:%M} UTC</p><p>{verdict}</p>",
        "<h2>Buckets</h2>", bucket_table(reports),
        "<h2>Compliance per prefix</h2>", compliance_chart(reports),
        "<h2>Outcomes per prefix</h2>", outcome_chart(reports),
        "<h2>Prefixes</h2>", prefix_table(reports),
        "<h2>Offenders</h2>",
        "".join(offender_table(r, limit) for r in offending) or "<p>None.</p>",
        "</body></html>\n",
    ])
