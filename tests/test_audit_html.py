"""``ops audit --format html``: the page's numbers against the JSON report, and the page
loads nothing from anywhere."""

from __future__ import annotations

import json
import re
from collections import Counter
from html.parser import HTMLParser

import pytest
import typer
from typer.testing import CliRunner

from ops.audit import audit_command
from ops.audit_report import Category

BUCKETS = ("html-a", "html-b")
# bucket -> (key, how it is written); t1/ is SSE-KMS k1, t2/ DSSE-KMS k2 in both buckets.
OBJECTS = {
    "html-a": [("t1/ok", "kms:k1"), ("t1/ok2", "kms:k1"), ("t1/plain", "sse-s3"), ("t2/ok", "dsse:k2"),
               ("t2/kms", "kms:k2"), ("t1/<b>odd & key</b>", "kms:k3"), ("else/x", "sse-s3")],
    "html-b": [("t1/ok", "kms:k1"), ("t2/other", "dsse:k3"), ("t2/ok", "dsse:k2"), ("t2/ok2", "dsse:k2")],
}


@pytest.fixture
def two_buckets(world):
    for bucket in BUCKETS:
        world.bucket(bucket, notify=False)
        world.map(bucket, "t1/", world.key("k1"))
        world.map(bucket, "t2/", world.key("k2"), dsse=True)
        for key, how in OBJECTS[bucket]:
            kind, _, name = how.partition(":")
            extra = {}
            if kind in ("kms", "dsse"):
                extra = {"ServerSideEncryption": "aws:kms" if kind == "kms" else "aws:kms:dsse",
                         "SSEKMSKeyId": world.key(name)}
            world.s3.put_object(Bucket=bucket, Key=key, Body=b"x", **extra)
    return world


def cli(*args: str):
    app = typer.Typer()
    app.command()(audit_command)
    return CliRunner(env={"COLUMNS": "250"}).invoke(app, list(args))


class Page(HTMLParser):
    """Every element's tag and attributes, rows by table id, and the text of each cell."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.rows: dict[str, list[tuple[dict[str, str], list[str]]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attrs))
        if tag == "table":
            self._table = attrs.get("id") or attrs.get("class")
        elif tag == "tr" and self._table:
            self.rows.setdefault(self._table, []).append((attrs, []))
        elif tag == "td":
            self._cell = []
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[self._table][-1][1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None
        self._in_style = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_style:
            self.style += data


def audit_both(tmp_path):
    out = tmp_path / "audit.html"
    as_json = cli("--all", "--mapping-table", "mapping", "--format", "json")
    as_html = cli("--all", "--mapping-table", "mapping", "--format", "html", "--output", str(out))
    assert as_json.exit_code == as_html.exit_code == 1, as_html.output
    assert f"wrote {out}" in as_html.stderr
    page = Page()
    text = out.read_text(encoding="utf-8")
    page.feed(text)
    return json.loads(as_json.stdout), page, text


def test_the_pages_numbers_are_the_json_reports(two_buckets, tmp_path):
    doc, page, text = audit_both(tmp_path)
    by_bucket = {b["bucket"]: b for b in doc["buckets"]}
    assert sorted(by_bucket) == list(BUCKETS)

    buckets = {a["data-bucket"]: (a, cells) for a, cells in page.rows["buckets"] if a}
    assert sorted(buckets) == list(BUCKETS)
    for name, (a, cells) in buckets.items():
        report = by_bucket[name]
        mapped = report["objects"] - report["unmapped"]["objects"]
        assert (int(a["data-objects"]), int(a["data-mapped"]), int(a["data-non-compliant"])) == (
            report["objects"], mapped, report["non_compliant"])
        # what a reader sees is the same figure
        assert cells[1:5] == [str(report["objects"]), str(mapped), str(report["unmapped"]["objects"]),
                              str(report["non_compliant"])]
        assert cells[5] == f"{100 * (mapped - report['non_compliant']) / mapped:.1f}%"

    prefixes = {(a["data-bucket"], a["data-prefix"]): a for a, _ in page.rows["prefixes"] if a}
    expected = {(b["bucket"], p["prefix"]): p for b in doc["buckets"] for p in b["prefixes"]}
    assert prefixes.keys() == expected.keys()
    for where, p in expected.items():
        a = prefixes[where]
        assert (int(a["data-objects"]), int(a["data-non-compliant"])) == (p["objects"], p["non_compliant"])
        for category, n in p["counts"].items():
            assert int(a[f"data-count-{category}"]) == n, (where, category)

    # the compliance bars: one per prefix, each at the JSON's share
    found = re.findall(r'aria-label="compliant \(% of judged objects\): ([\d.]+); prefix: ([^"]+)"', text)
    bars = {prefix: float(share) for share, prefix in found}
    assert len(bars) == len(found)
    assert bars == {f"{b}/{p}": round(100 * (x["objects"] - x["non_compliant"]) / x["objects"], 1)
                    for (b, p), x in expected.items()}

    offenders = Counter((a["data-bucket"], a["data-key"], a["data-category"])
                        for a, _ in page.rows.get("offenders", []) if a)
    assert offenders == Counter((o["bucket"], o["key"], o["category"]) for b in doc["buckets"] for o in b["offenders"])
    assert sum(offenders.values()) == doc["non_compliant"]


def test_the_page_loads_nothing(two_buckets, tmp_path):
    _, page, text = audit_both(tmp_path)
    assert not re.search(r"https?://", text)  # not even an inert namespace URI
    tags = Counter(tag for tag, _ in page.elements)
    assert tags["svg"] == 2  # the compliance bars and the outcome breakdown, inline
    for tag in ("script", "link", "img", "iframe", "object", "embed", "base"):
        assert not tags[tag], tag
    for tag, attrs in page.elements:
        for name, value in attrs.items():
            assert "//" not in value and "url(" not in value.lower(), (tag, name, value)
            assert not (name in ("href", "src", "xlink:href") and value and not value.startswith("#")), (tag, name)
    assert "url(" not in page.style and "@import" not in page.style
    csp = next(a["content"] for t, a in page.elements if a.get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp


def test_keys_are_text_not_markup(two_buckets, tmp_path):
    _, page, text = audit_both(tmp_path)
    assert not any(tag == "b" for tag, _ in page.elements)
    shown = [cells[0] for a, cells in page.rows["offenders"] if a.get("data-bucket") == "html-a"]
    assert "t1/<b>odd & key</b>" in shown


def test_one_bucket_and_the_limit(two_buckets, tmp_path):
    out = tmp_path / "one.html"
    result = cli("--bucket", "html-a", "--mapping-table", "mapping", "--format", "html", "--output", str(out),
                 "--limit", "1")
    assert result.exit_code == 1
    page = Page()
    page.feed(out.read_text(encoding="utf-8"))
    assert [a["data-bucket"] for a, _ in page.rows["buckets"] if a] == ["html-a"]
    heading = next(a for t, a in page.elements if t == "h3")
    offending = sum(1 for _, how in OBJECTS["html-a"] if how in ("sse-s3", "kms:k2", "kms:k3")) - 1  # else/x unmapped
    assert (heading["data-shown"], heading["data-offenders"]) == ("1", str(offending))
    assert len([a for a, _ in page.rows["offenders"] if a]) == 1


def test_a_compliant_bucket_says_so(world, tmp_path):
    world.bucket("clean", notify=False)
    world.map("clean", "t1/", world.key("k1"))
    world.s3.put_object(Bucket="clean", Key="t1/a", Body=b"x", ServerSideEncryption="aws:kms",
                        SSEKMSKeyId=world.key("k1"))
    out = tmp_path / "clean.html"
    result = cli("--bucket", "clean", "--mapping-table", "mapping", "--format", "html", "--output", str(out))
    assert result.exit_code == 0
    assert "every mapped object is compliant" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "html"], "--format html writes a file: add --output FILE"),
        (["--output", "x.json"], "--output writes a json, csv or html report"),
        (["--format", "html", "--output", "/nonexistent-dir/a.html"], "--output /nonexistent-dir/a.html: cannot write it"),
    ],
    ids=["html-without-output", "output-with-table", "unwritable"],
)
def test_output_options_exit_2(two_buckets, args, message):
    result = cli("--bucket", "html-a", "--mapping-table", "mapping", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())


def test_the_readme_demo_builds():
    # The screenshot's source (make report-screenshot): both demo buckets, every category it writes.
    from ops.audit_html_demo import BUCKETS as DEMO_BUCKETS
    from ops.audit_html_demo import MIX, build

    page = Page()
    page.feed(build())
    rows = [a for a, _ in page.rows["prefixes"] if a]
    assert {a["data-bucket"] for a in rows} == set(DEMO_BUCKETS)
    mapped = [p for p in MIX if p != "prefix4/"]
    assert {a["data-prefix"] for a in rows} == set(mapped)
    assert all(int(a[f"data-count-{Category.COMPLIANT}"]) < int(a["data-objects"]) for a in rows)
