"""The publisher registry and discovery: clear config errors, feeds/sitemaps expanded to shards.

Discovery runs against a real local server; every URL it drops is a fetch-log row with a reason.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from tasks.fetch import FETCHES
from tasks.sources import (
    FetchSettings,
    Source,
    SourcesError,
    canonical_url,
    discover,
    load_sources,
    parse_sitemap,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> FetchSettings:
    return FetchSettings(
        connect_timeout=1,
        read_timeout=1,
        total_timeout=5,
        retries=0,
        backoff=0.01,
        per_host_delay_s=0.0,
        allow_private_hosts={"127.0.0.1"},
        host_state_dir=str(tmp_path / "hosts"),
    )


@pytest.fixture
def server(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/robots.txt").respond_with_data(
        "User-agent: *\nDisallow: /private/\n", content_type="text/plain"
    )
    return httpserver


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "sources.yaml"
    p.write_text(text, encoding="utf-8")
    return p


# --- load_sources ---------------------------------------------------------------------------
def test_load_sources_defaults_relative_paths_and_settings(tmp_path):
    (tmp_path / "pages").mkdir()
    (tmp_path / "dump.jsonl").write_text("", encoding="utf-8")
    p = write(
        tmp_path,
        """
settings:
  user_agent: test-bot/1.0
  timeouts: {connect: 2, read: 3, total: 9}
  max_bytes: 1000
  per_host_concurrency: 2
  allow_hosts: ["127.0.0.1"]
sources:
  - {name: wire, kind: feed, location: "http://127.0.0.1:8000/rss.xml", outlet: Wire,
     include: ["/news/"], exclude: ["/video/"], max_age_days: 3, language: en,
     delay_s: 0.5, max_pages: 10, extra_key: kept}
  - {name: local, kind: html_dir, location: pages}
  - {name: dump, kind: jsonl, location: ./dump.jsonl}
""",
    )
    sources, s = load_sources(p)
    assert [x.name for x in sources] == ["wire", "local", "dump"]
    wire = sources[0]
    assert (wire.include, wire.exclude, wire.max_age_days, wire.max_pages) == (
        ["/news/"],
        ["/video/"],
        3.0,
        10,
    )
    assert wire.options == {"extra_key": "kept"}
    assert sources[1].location == str((tmp_path / "pages").resolve())
    assert s.user_agent == "test-bot/1.0" and s.connect_timeout == 2.0
    assert s.total_timeout == 9.0 and s.max_bytes == 1000 and s.per_host_concurrency == 2
    assert s.allow_private_hosts == {"127.0.0.1"}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("sources: []", "non-empty list"),
        ("nope: 1", "'sources:'"),
        ("sources:\n  - {name: a, location: x}", "sources[0]"),
        ("sources:\n  - {name: a, kind: rss, location: http://x}", "kind must be one of"),
        ("sources:\n  - {name: a, kind: feed}", "location"),
        ("sources:\n  - {name: a, kind: feed, location: 'http://x', include: ['(']}", "bad regex"),
        ("sources:\n  - {name: a, kind: feed, location: 'http://x', max_pages: lots}", "max_pages"),
        ("sources:\n  - {name: a, kind: html_dir, location: missing_dir}", "not a directory"),
        (
            "sources:\n  - {name: a, kind: feed, location: 'http://x'}\n"
            "  - {name: a, kind: feed, location: 'http://y'}",
            "duplicate name",
        ),
        (
            "settings: {bogus: 1}\nsources:\n  - {name: a, kind: feed, location: 'http://x'}",
            "unknown key 'bogus'",
        ),
        ("sources: [", "not valid YAML"),
    ],
)
def test_bad_config_says_file_entry_and_problem(tmp_path, body, needle):
    p = write(tmp_path, body)
    with pytest.raises(SourcesError) as e:
        load_sources(p)
    assert str(p) in str(e.value) and needle in str(e.value)


def test_error_names_the_entry_index_and_name(tmp_path):
    p = write(
        tmp_path,
        "sources:\n  - {name: ok, kind: feed, location: 'http://x'}\n"
        "  - {name: bad, kind: warc, location: 'http://x/a.warc'}\n",
    )
    with pytest.raises(SourcesError, match=r"sources\[1\] \('bad'\).*local path"):
        load_sources(p)


# --- parsing --------------------------------------------------------------------------------
def test_canonical_url_dedups_trivial_variants():
    assert canonical_url("HTTP://Ex.com/a?b=2&a=1#top") == canonical_url("http://ex.com/a?a=1&b=2")


def test_parse_sitemap_text_and_relative_locs():
    pages, kids = parse_sitemap(b"/a\n# c\nhttps://x.org/b\n", "https://x.org/s.txt")
    assert [p.url for p in pages] == ["https://x.org/a", "https://x.org/b"] and kids == []


# --- discovery ------------------------------------------------------------------------------
NEWS_SITEMAP = """<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">
  <url><loc>/news/fresh</loc>
    <news:news><news:publication><news:name>Wire</news:name><news:language>en</news:language>
    </news:publication><news:publication_date>2026-11-24T09:00:00Z</news:publication_date>
    </news:news></url>
  <url><loc>{base}/news/old</loc>
    <news:news><news:publication_date>2026-01-01</news:publication_date></news:news></url>
  <url><loc>{base}/private/secret</loc></url>
</urlset>"""
PLAIN_SITEMAP = """<?xml version="1.0"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>{base}/news/p1</loc><lastmod>2026-11-25</lastmod></url>
  <url><loc>{base}/video/v1</loc></url>
  <url><loc>{base}/news/fresh#comments</loc></url>
</urlset>"""
INDEX = """<?xml version="1.0"?>
<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <sitemap><loc>/sitemap-news.xml</loc></sitemap>
  <sitemap><loc>{base}/sitemap-pages.xml.gz</loc></sitemap>
  <sitemap><loc>{base}/sitemap-missing.xml</loc></sitemap>
</sitemapindex>"""


def test_sitemap_index_with_news_sitemap(server, settings):
    base = server.url_for("").rstrip("/")
    server.expect_request("/sitemap.xml").respond_with_data(
        INDEX.format(base=base), content_type="application/xml"
    )
    server.expect_request("/sitemap-news.xml").respond_with_data(
        NEWS_SITEMAP.format(base=base), content_type="application/xml"
    )
    server.expect_request("/sitemap-pages.xml.gz").respond_with_data(
        gzip.compress(PLAIN_SITEMAP.format(base=base).encode()), content_type="application/x-gzip"
    )
    server.expect_request("/sitemap-missing.xml").respond_with_data("no", status=404)
    src = Source(
        "wire", "sitemap", base + "/sitemap.xml", outlet="Wire", exclude=["/video/"], max_age_days=7
    )
    shards, dropped = discover([src], settings, run_id="r1", now=NOW)
    urls = [u for s in shards for u in s.items]
    assert urls == [base + "/news/fresh", base + "/news/p1"]
    assert dropped.schema.equals(FETCHES)
    why = {r["url"].rsplit("/", 1)[-1]: r["reason"] for r in dropped.to_pylist()}
    assert why == {
        "old": "too_old",
        "secret": "robots_disallowed",
        "v1": "filtered_exclude",
        "fresh": "duplicate",
        "sitemap-missing.xml": "http_error",
    }
    assert all(s.outlet == "Wire" and s.kind == "sitemap" for s in shards)


def test_sitemap_lastmod_reaches_the_shard_even_for_a_duplicate(server, settings):
    """A feed owns the URL, but the sitemap's <lastmod> for it still travels with the shard."""
    base = server.url_for("").rstrip("/")
    server.expect_request("/feed.xml").respond_with_data(
        f'<rss version="2.0"><channel><item><link>{base}/a</link></item>'
        f"<item><link>{base}/b</link></item></channel></rss>",
        content_type="application/rss+xml",
    )
    server.expect_request("/sitemap.xml").respond_with_data(
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<url><loc>{base}/a</loc><lastmod>2026-11-20T08:00:00Z</lastmod></url>"
        f"<url><loc>{base}/c</loc><lastmod>2026-11-21</lastmod></url></urlset>",
        content_type="application/xml",
    )
    shards, _ = discover(
        [Source("f", "feed", base + "/feed.xml"), Source("s", "sitemap", base + "/sitemap.xml")],
        settings,
        now=NOW,
    )
    mods = {u.rsplit("/", 1)[-1]: m for s in shards for u, m in (s.modified or {}).items()}
    # as the latest instant each can mean: the next second, the end of a bare date's day
    assert mods == {"a": "2026-11-20T08:00:01+00:00", "c": "2026-11-22T00:00:00+00:00"}


RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>
<link>/</link>
<item><title>One</title><link>/news/1</link><pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate></item>
<item><title>Two</title><link>news/2?utm_source=rss</link></item>
<item><title>Three</title><link>{base}/opinion/3</link></item>
</channel></rss>"""


def test_rss_relative_links_resolved_and_filtered(server, settings):
    base = server.url_for("").rstrip("/")
    server.expect_request("/feeds/rss.xml").respond_with_data(
        RSS.format(base=base), content_type="application/rss+xml"
    )
    src = Source("wire", "feed", base + "/feeds/rss.xml", include=["/news/"])
    shards, dropped = discover([src], settings, run_id="r1", now=NOW)
    assert [u for s in shards for u in s.items] == [base + "/news/1", base + "/feeds/news/2"]
    assert dropped.column("reason").to_pylist() == ["filtered_include"]


def test_shards_are_per_host_and_bounded(tmp_path, settings):
    urls = [f"http://127.0.0.1:{port}/a{i}" for port in (1, 2) for i in range(5)]
    lst = tmp_path / "urls.txt"
    lst.write_text("\n".join(urls) + "\n", encoding="utf-8")
    settings.respect_robots = False
    shards, _ = discover([Source("list", "urls", str(lst))], settings, shard_size=2, now=NOW)
    hosts = [{u.split("/")[2] for u in s.items} for s in shards]
    assert all(len(h) == 1 for h in hosts)
    # round-robin by host, so parallel workers start on different hosts
    assert [h.pop() for h in hosts] == ["127.0.0.1:1", "127.0.0.1:2"] * 3
    assert [len(s.items) for s in shards] == [2, 2, 2, 2, 1, 1]
    assert len({s.shard_id for s in shards}) == len(shards)


def test_duplicates_across_sources_and_max_pages(tmp_path, settings):
    settings.respect_robots = False
    a = tmp_path / "a.txt"
    a.write_text("http://127.0.0.1:1/x\nhttp://127.0.0.1:1/y\nhttp://127.0.0.1:1/z\n")
    b = tmp_path / "b.txt"
    b.write_text("http://127.0.0.1:1/x#frag\n")
    shards, dropped = discover(
        [Source("a", "urls", str(a), max_pages=2), Source("b", "urls", str(b))], settings, now=NOW
    )
    assert [u for s in shards for u in s.items] == ["http://127.0.0.1:1/x", "http://127.0.0.1:1/y"]
    assert sorted(dropped.column("reason").to_pylist()) == ["duplicate", "max_pages"]


def test_broken_feed_is_logged_not_raised(server, settings):
    server.expect_request("/bad.xml").respond_with_data("<<<not xml", content_type="text/xml")
    server.expect_request("/down.xml").respond_with_data("x", status=404)
    srcs = [
        Source("bad", "feed", server.url_for("/bad.xml")),
        Source("down", "sitemap", server.url_for("/down.xml")),
    ]
    shards, dropped = discover(srcs, settings, now=NOW)
    assert shards == []
    assert dropped.column("reason").to_pylist() == ["discovery_error", "http_error"]


def test_ssrf_applies_to_discovery(server, settings):
    server.expect_request("/rss.xml").respond_with_data(RSS, content_type="application/rss+xml")
    settings.allow_private_hosts = set()
    shards, dropped = discover([Source("x", "feed", server.url_for("/rss.xml"))], settings)
    assert shards == [] and dropped.column("reason").to_pylist() == ["ssrf_blocked"]
    assert [r.path for r, _ in server.log] == []


def test_local_kinds_become_file_shards(tmp_path, settings):
    d = tmp_path / "site"
    (d / "sub").mkdir(parents=True)
    for i in range(3):
        (d / "sub" / f"{i}.html").write_text("<html></html>")
    (d / "notes.txt").write_text("skip")
    w = tmp_path / "x.warc.gz"
    w.write_bytes(b"")
    shards, _ = discover(
        [Source("dir", "html_dir", str(d)), Source("w", "warc", str(w))], settings, shard_size=2
    )
    assert [(s.kind, len(s.items)) for s in shards] == [
        ("html_dir", 2),
        ("html_dir", 1),
        ("warc", 1),
    ]


def test_max_age_uses_feed_dates(server, settings):
    base = server.url_for("").rstrip("/")
    server.expect_request("/rss.xml").respond_with_data(
        RSS.format(base=base), content_type="application/rss+xml"
    )
    src = Source("wire", "feed", base + "/rss.xml", max_age_days=0.5)
    _, dropped = discover([src], settings, now=NOW + timedelta(days=2))
    assert dropped.column("reason").to_pylist() == ["too_old"]


def test_sitemap_index_loops_and_depth_are_bounded(server, settings):
    base = server.url_for("").rstrip("/")
    loop = (
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/'
        'sitemap/0.9"><sitemap><loc>/a.xml</loc></sitemap><sitemap><loc>/b.xml</loc>'
        "</sitemap></sitemapindex>"
    )
    server.expect_request("/a.xml").respond_with_data(loop, content_type="application/xml")
    server.expect_request("/b.xml").respond_with_data(
        loop.replace("/a.xml", "/c.xml"), content_type="application/xml"
    )
    server.expect_request("/c.xml").respond_with_data(
        loop.replace("/a.xml", "/d.xml"), content_type="application/xml"
    )
    settings.max_sitemap_depth = 2
    shards, dropped = discover([Source("s", "sitemap", base + "/a.xml")], settings)
    assert shards == []
    assert "sitemap_too_deep" in dropped.column("reason").to_pylist()
    assert [r.path for r, _ in server.log].count("/a.xml") == 1
