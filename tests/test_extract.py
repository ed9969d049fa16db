"""Extraction behaviour users rely on, checked against golden pages the project owns.

Each ``tests/fixtures/pages/<name>.html`` and ``tests/fixtures/extract/<name>.html`` is a
hand-written page in the style of the news and aggregator pages we scrape;
``<name>.expected.json`` next to it holds the reviewed output of extract + clean. When a
change to the output is intended, regenerate and review the diff:

    .venv/bin/python tests/test_extract.py --update
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import extract as extract_mod  # noqa: E402
from tasks.clean import clean_batch, clean_record  # noqa: E402
from tasks.extract import extract_batch, extract_html  # noqa: E402
from tasks.schema import ARTICLES_CORE, PAGES, REJECTS, stable_id  # noqa: E402

PAGES_DIR = Path(__file__).parent / "fixtures" / "pages"
EXTRACT_DIR = Path(__file__).parent / "fixtures" / "extract"
GOLDEN_FIELDS = (
    "title",
    "authors",
    "published",
    "published_at",
    "language",
    "canonical_url",
    "site_name",
    "origin_credit",
    "syndication_hints",
    "body",
)


def _url(name: str) -> str:
    return f"https://news.example.org/2025/{name}"


def run_page(name: str, folder: Path = PAGES_DIR) -> dict:
    """extract + clean one fixture page into the golden-file shape."""
    html = (folder / f"{name}.html").read_text(encoding="utf-8")
    record, reason, _ = extract_html(html, _url(name))
    if record is None:
        return {"reject_reason": reason}
    cleaned, reason = clean_record(record)
    if cleaned is None:
        return {"reject_reason": reason}
    out = {k: cleaned.get(k) for k in GOLDEN_FIELDS}
    out["published"] = str(out["published"]) if out["published"] else None
    out["published_at"] = out["published_at"].isoformat() if out["published_at"] else None
    return out


CASES = [
    (d, p.name.removesuffix(".html"))
    for d in (PAGES_DIR, EXTRACT_DIR)
    for p in sorted(d.glob("*.html"))
]


@pytest.mark.parametrize(("folder", "name"), CASES, ids=[f"{d.name}/{n}" for d, n in CASES])
def test_page_matches_golden_file(folder: Path, name: str) -> None:
    expected = json.loads((folder / f"{name}.expected.json").read_text(encoding="utf-8"))
    assert run_page(name, folder) == expected


def test_section_index_page_is_rejected_as_not_article() -> None:
    """A section front (og:type website, no date, a river of headline links with teasers)
    has no article JSON-LD or listing URL to give it away; its body does."""
    html = (EXTRACT_DIR / "section_front.html").read_text(encoding="utf-8")
    record, reason, detail = extract_html(html, "https://news.example.org/business/")
    assert record is None and reason == "not_article"
    assert "headline links" in (detail or "")


def test_a_declared_article_made_of_linked_items_is_kept() -> None:
    """A roundup whose paragraphs start with headline links is still an article when the
    page says so (article JSON-LD / og:type article / a publication date)."""
    html = (EXTRACT_DIR / "section_front.html").read_text(encoding="utf-8")
    declared = html.replace(
        '<meta property="og:type" content="website">',
        '<meta property="og:type" content="article">'
        '<meta property="article:published_time" content="2025-04-02T08:00:00Z">',
    )
    record, reason, _ = extract_html(declared, "https://news.example.org/business/roundup")
    assert reason is None and record is not None
    assert "Ferry operator orders four electric boats" in record["body"]


def test_undeclared_article_with_inline_and_related_links_is_kept() -> None:
    got = run_page("plain_article_with_links", EXTRACT_DIR)
    assert "reject_reason" not in got
    assert got["body"].startswith("When the last tram left the depot")


def test_wire_dateline_and_glued_source_footer_become_the_credit() -> None:
    got = run_page("wire_copy_dateline_footer", EXTRACT_DIR)
    # the dateline stays in the lede as published; the glued footer is cut off
    assert got["body"].startswith("NAIROBI, Kenya (Eastwire) — Kenya's central bank left")
    assert got["body"].endswith("tea and flower exports.")
    assert "Original article source" not in got["body"]
    # the agency (an outlet dedup can attribute to) wins over the footer's headline
    assert got["origin_credit"] == "Eastwire"


ARTICLE_HTML = """<html lang="en"><head><title>Harbour cranes return | Port Gazette</title>
{head}</head><body><article><h1>Harbour cranes return</h1>{time}
<p>The four container cranes that were shipped away for repairs last spring came back to the
harbour on Tuesday, towed on a single barge through the narrow channel at high tide.</p>
<p>Port officials said the cranes would be back in service by the end of the month, once
inspectors have signed off on the new electrical systems and the rebuilt control cabins.</p>
<p>Dock workers, who had moved cargo with mobile cranes since April, welcomed the return.</p>
</article></body></html>"""


def _dated(head: str = "", time_tag: str = "") -> dict:
    html = ARTICLE_HTML.format(head=head, time=time_tag)
    record, reason, _ = extract_html(html, "https://port.example/news/harbour-cranes-return")
    assert reason is None and record is not None
    return record


def _jsonld(date_published: str) -> str:
    return (
        '<script type="application/ld+json">{"@type": "NewsArticle", '
        f'"headline": "Harbour cranes return", "datePublished": "{date_published}"}}'
        "</script>"
    )


@pytest.mark.parametrize(
    ("head", "time_tag", "published", "published_at"),
    [
        # an offset: converted to UTC, while the date stays the publisher's local one
        (
            '<meta property="article:published_time" content="2025-03-04T23:40:00-05:00">',
            "",
            "2025-03-04",
            datetime(2025, 3, 5, 4, 40, tzinfo=UTC),
        ),
        (
            _jsonld("2025-03-04T08:15:30.250+01:00"),
            "",
            "2025-03-04",
            datetime(2025, 3, 4, 7, 15, 30, 250000, tzinfo=UTC),
        ),
        (
            _jsonld("2025-03-04T08:15:30Z"),
            "",
            "2025-03-04",
            datetime(2025, 3, 4, 8, 15, 30, tzinfo=UTC),
        ),
        (
            "",
            '<time class="entry-date published" datetime="2025-03-04T10:05:00+0530">4 March</time>',
            "2025-03-04",
            datetime(2025, 3, 4, 4, 35, tzinfo=UTC),
        ),
        (
            '<meta name="date" content="Tue, 04 Mar 2025 10:05:00 +0100">' + _jsonld("2025-03-04"),
            "",
            "2025-03-04",
            datetime(2025, 3, 4, 9, 5, tzinfo=UTC),
        ),
        # the page's only <time>: the article's, once the declared date has no time
        (
            _jsonld("2025-03-04"),
            '<time datetime="2025-03-04T10:05:00+01:00">4 March</time>',
            "2025-03-04",
            datetime(2025, 3, 4, 9, 5, tzinfo=UTC),
        ),
        # a bare date, or midnight (how CMSs write a bare date): no time of day, never 00:00
        (_jsonld("2025-03-04"), "", "2025-03-04", None),
        (
            '<meta property="article:published_time" content="2025-03-04T00:00:00+08:00">',
            "",
            "2025-03-04",
            None,
        ),
        # a time without an offset: no instant, and no zone is guessed
        (_jsonld("2025-03-04T08:15:30"), "", "2025-03-04", None),
        (
            '<meta property="article:published_time" content="2025-03-04 08:15">',
            "",
            "2025-03-04",
            None,
        ),
        ("", '<time pubdate datetime="2025-03-04T08:15:00">4 March</time>', None, None),
    ],
    ids=[
        "meta-offset",
        "jsonld-offset",
        "jsonld-z",
        "time-tag",
        "rfc2822",
        "only-time-tag",
        "date-only",
        "midnight",
        "jsonld-no-offset",
        "meta-no-offset",
        "time-no-offset",
    ],
)
def test_published_at_is_utc_and_only_from_a_declared_time_with_offset(
    head: str, time_tag: str, published: str | None, published_at: datetime | None
) -> None:
    record = _dated(head, time_tag)
    if published is not None:
        assert record["published"] == published
    assert record["published_at"] == published_at
    if published_at is not None:
        assert published_at.utcoffset().total_seconds() == 0


def test_published_at_falls_back_to_a_later_declaration_of_the_same_date() -> None:
    """A date-only JSON-LD value defers to a meta tag that has the time of that same day;
    a time of another day (an update, a related story) is not the publication time."""
    head = _jsonld("2025-03-04") + (
        '<meta property="article:published_time" content="2025-03-04T09:30:00+01:00">'
    )
    assert _dated(head)["published_at"] == datetime(2025, 3, 4, 8, 30, tzinfo=UTC)
    head = _jsonld("2025-03-04") + (
        '<meta property="article:published_time" content="2025-03-06T09:30:00+01:00">'
    )
    record = _dated(head)
    assert record["published"] == "2025-03-04" and record["published_at"] is None


def test_an_updated_time_tag_is_not_the_publication_time() -> None:
    tag = '<time class="updated" datetime="2025-03-04T18:00:00+00:00">updated</time>'
    assert _dated(_jsonld("2025-03-04"), tag)["published_at"] is None


def _pages(rows: list[dict]) -> pa.Table:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    full = [
        {
            "page_id": stable_id(r["url"]),
            "final_url": r["url"],
            "source": "test",
            "status": 200,
            "content_type": "text/html",
            "fetched_at": now,
            "run_id": "r0",
            **r,
        }
        for r in rows
    ]
    return pa.Table.from_pylist(full, schema=PAGES)


def test_batch_outputs_contract_tables_and_rejects_empty_pages() -> None:
    html = (PAGES_DIR / "wire_ca.html").read_text(encoding="utf-8")
    pages = _pages(
        [
            {"url": _url("wire_ca"), "html": html, "outlet": "Capital Courier"},
            {"url": _url("empty"), "html": "   ", "outlet": None},
        ]
    )
    articles, rejects = extract_batch(pages, "run-1")
    assert articles.schema == ARTICLES_CORE and rejects.schema == REJECTS
    assert articles.num_rows == 1
    row = articles.to_pylist()[0]
    assert row["article_id"] == stable_id(row["canonical_url"] or row["url"])
    assert row["outlet"] == "Capital Courier" and row["run_id"] == "run-1"
    assert str(row["published"]) == "2025-02-12"
    assert row["published_at"] is None  # the page gives a bare date
    assert rejects.to_pylist()[0]["reason"] == "empty_page"
    assert rejects.to_pylist()[0]["stage"] == "extract"


def test_published_at_survives_extract_and_clean_as_a_utc_timestamp() -> None:
    html = (PAGES_DIR / "syndicated_en.html").read_text(encoding="utf-8")
    articles, _ = extract_batch(_pages([{"url": _url("syndicated_en"), "html": html}]), "r")
    cleaned, rejects = clean_batch(articles, "r")
    assert rejects.num_rows == 0 and cleaned.schema == ARTICLES_CORE
    assert cleaned.schema.field("published_at").type == pa.timestamp("us", tz="UTC")
    row = cleaned.to_pylist()[0]
    # declared as 2025-01-29T23:40:00-05:00: the local date stays, the instant is UTC
    assert str(row["published"]) == "2025-01-29"
    assert row["published_at"] == datetime(2025, 1, 30, 4, 40, tzinfo=UTC)


def test_a_page_that_raises_is_a_parse_error_reject(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(html: str, url: str | None = None, outlet: str | None = None) -> None:
        raise RuntimeError("parser exploded")

    monkeypatch.setattr(extract_mod, "extract_html", boom)
    _, rejects = extract_batch(_pages([{"url": _url("x"), "html": "<p>x</p>"}]), "r")
    rej = rejects.to_pylist()[0]
    assert rej["reason"] == "parse_error" and "parser exploded" in rej["detail"]
    assert rej["item_id"] == stable_id(_url("x")) and rej["url"] == _url("x")


def test_a_page_that_hangs_times_out_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = extract_mod.extract_html

    def slow_then_real(html: str, url: str | None = None, outlet: str | None = None):
        if "hang" in (url or ""):
            time.sleep(5)
        return real(html, url, outlet)

    monkeypatch.setattr(extract_mod, "extract_html", slow_then_real)
    html = (PAGES_DIR / "wire_ca.html").read_text(encoding="utf-8")
    pages = _pages([{"url": _url("hang"), "html": html}, {"url": _url("ok"), "html": html}])
    started = time.monotonic()
    articles, rejects = extract_batch(pages, "r", time_limit_s=0.3)
    assert time.monotonic() - started < 3
    assert [r["reason"] for r in rejects.to_pylist()] == ["timeout"]
    assert articles.num_rows == 1


def test_batch_called_from_a_worker_thread_still_enforces_the_time_limit() -> None:
    """Prefect runs tasks in threads, where signals cannot be used; a child process is."""
    html = (PAGES_DIR / "wire_ca.html").read_text(encoding="utf-8")
    pages = _pages([{"url": _url("ok"), "html": html}])
    with ThreadPoolExecutor(1) as pool:
        articles, rejects = pool.submit(extract_batch, pages, "r", time_limit_s=5).result()
    assert articles.num_rows == 1 and rejects.num_rows == 0


def update_golden_files() -> None:
    for folder, name in CASES:
        path = folder / f"{name}.expected.json"
        path.write_text(
            json.dumps(run_page(name, folder), ensure_ascii=False, indent=2) + "\n",
            encoding="utf-8",
        )
        print(f"wrote {path}")


if __name__ == "__main__" and "--update" in sys.argv:
    update_golden_files()


def _full_cascade_text(html: str) -> str:
    from trafilatura import bare_extraction
    from trafilatura.utils import load_html

    doc = bare_extraction(load_html(html), **extract_mod._BODY_OPTIONS)
    return doc.text if doc is not None else ""


@pytest.mark.parametrize("name", sorted(p.stem for p in PAGES_DIR.glob("*.html")))
def test_fast_body_path_gives_the_full_cascades_text(name: str) -> None:
    """Skipping trafilatura's fallback extractors is a speed-up only: on every fixture page,
    whichever path ``extract_body`` takes, the text is what the full cascade gives."""
    from trafilatura.utils import load_html

    html = (PAGES_DIR / f"{name}.html").read_text(encoding="utf-8")
    doc = extract_mod.extract_body(load_html(html), None)
    assert (doc.text if doc is not None else "") == _full_cascade_text(html)


def test_article_outside_paragraphs_gets_the_full_cascade(cascade_calls: list[bool]) -> None:
    """Prose in bare ``<div>``s with ``<br>`` breaks (no ``<p>`` at all) is where trafilatura's
    fast mode comes up short and the fallbacks find the story: that page must not be cut.
    With so little ``<p>`` text the fast attempt could never be kept, so it is not made."""
    from trafilatura.utils import load_html

    sentences = [
        f"Sentence {i} of the council report says the bridge repairs will take {i} weeks more."
        for i in range(40)
    ]
    html = (
        "<html><head><title>Bridge repairs delayed</title></head><body>"
        "<nav><a href='/'>Home</a> <a href='/news'>News</a></nav>"
        "<div class='story'><h1>Bridge repairs delayed</h1><div>"
        + "<br><br>".join(sentences)
        + "</div></div><footer><p>Contact us</p></footer></body></html>"
    )
    doc = extract_mod.extract_body(load_html(html), None)
    assert cascade_calls == [False]  # the full cascade only
    text = doc.text if doc is not None else ""
    assert text == _full_cascade_text(html)
    assert "Sentence 39 of the council report" in text


def test_pages_parse_into_plain_elements_and_forms_do_not_change_the_article() -> None:
    """The parser builds plain HtmlElements (no per-element Python lookup); a page with a
    form and fields extracts as it did with lxml.html's form classes."""
    from lxml.html import FormElement, HtmlElement
    from trafilatura.utils import load_html

    form = "<form action='/s'><label for='q'>Search</label><input name='q' value='x'></form>"
    paras = "".join(
        f"<p>The council approved part {i} of the budget after a long debate on Tuesday.</p>"
        for i in range(6)
    )
    page = (
        "<html><head><title>Budget vote</title></head><body>"
        f"<article><h1>Budget vote</h1>{paras}</article>{form}</body></html>"
    )
    tree = load_html(page)
    field = tree.find(".//input")
    assert type(field) is HtmlElement and not isinstance(tree.find(".//form"), FormElement)
    assert field.text_content() == "" and tree.find(".//label").text_content() == "Search"
    record, reason, _ = extract_html(page, "https://example.org/budget")
    assert reason is None and record["body"].count("The council approved") == 6
    assert "Search" not in record["body"]


def test_cache_reset_empties_what_trafilaturas_does_but_keeps_the_stoplists() -> None:
    """Our reset replaces trafilatura's (which also drops justext's costly stoplist cache);
    a cache trafilatura adds to its own reset must not be left growing here."""
    import trafilatura.meta as tf_meta
    from justext.core import define_stoplist

    for case_dir, name in CASES[:6]:
        run_page(name, case_dir)
    define_stoplist(("The", "and"))
    caches = {
        name: obj
        for name, obj in vars(tf_meta).items()
        if hasattr(obj, "cache_info") and obj is not define_stoplist
    }
    assert caches, "trafilatura.meta no longer names its caches: re-read its reset_caches"
    assert any(c.cache_info().currsize for c in caches.values())
    tf_meta.LRU_TEST.put("key", 1)  # filled only by extraction with deduplicate=True

    extract_mod.reset_caches()

    assert {n: c.cache_info().currsize for n, c in caches.items() if c.cache_info().currsize} == {}
    assert len(tf_meta.LRU_TEST.cache) == 0
    assert define_stoplist.cache_info().currsize >= 1
