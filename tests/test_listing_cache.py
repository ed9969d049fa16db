"""Listings (feeds, sitemaps) and robots.txt kept between runs: an unchanged re-run asks
conditionally, reuses what a 304 or an index ``<lastmod>`` vouches for, and still notices change.

A real local server plays the publisher; it answers ``If-None-Match`` like a CMS would.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from tasks.http_cache import CachedDoc, DocCache
from tasks.sources import FetchSettings, Source, discover, parse_feed


class Publisher:
    """Serves mutable documents with ETags; records every request's path and validators."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.docs: dict[str, tuple[str, str]] = {}  # path -> (body, content type)
        self.seen: list[tuple[str, str | None]] = []  # (path, If-None-Match sent)
        for path in ("/robots.txt", "/sitemap.xml", "/child.xml", "/feed.xml"):
            server.expect_request(path).respond_with_handler(self._handle)

    def url(self, path: str) -> str:
        return self.server.url_for(path)

    def _handle(self, request: Request) -> Response:
        inm = request.headers.get("If-None-Match")
        self.seen.append((request.path, inm))
        if request.path not in self.docs:
            return Response("", status=404)
        body, ctype = self.docs[request.path]
        etag = '"' + hashlib.sha256(body.encode()).hexdigest()[:16] + '"'
        if inm == etag:
            return Response("", status=304, headers={"ETag": etag})
        return Response(body, status=200, content_type=ctype, headers={"ETag": etag})

    def paths(self) -> list[str]:
        return sorted(p for p, _ in self.seen)


def _index(child_url: str, lastmod: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{child_url}</loc><lastmod>{lastmod}</lastmod></sitemap>"
        "</sitemapindex>"
    )


def _urlset(*locs: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        + "".join(f"<url><loc>{u}</loc></url>" for u in locs)
        + "</urlset>"
    )


RSS = """<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
<item><link>/news/from-feed</link><pubDate>Mon, 23 Nov 2026 10:00:00 +0000</pubDate></item>
</channel></rss>"""


@pytest.fixture
def pub(httpserver: HTTPServer) -> Publisher:
    p = Publisher(httpserver)
    p.docs["/robots.txt"] = ("User-agent: *\nDisallow: /private/\n", "text/plain")
    p.docs["/sitemap.xml"] = (
        _index(p.url("/child.xml"), "2026-01-01T00:00:00+00:00"),
        "application/xml",
    )
    p.docs["/child.xml"] = (_urlset(p.url("/news/a"), p.url("/news/b")), "application/xml")
    p.docs["/feed.xml"] = (RSS, "application/rss+xml")
    return p


@pytest.fixture
def settings(tmp_path: Path) -> FetchSettings:
    return FetchSettings(
        connect_timeout=1,
        read_timeout=1,
        total_timeout=5,
        retries=0,
        per_host_delay_s=0.0,
        allow_private_hosts={"127.0.0.1"},
        host_state_dir=str(tmp_path / "hosts"),
        cache_dir=str(tmp_path / "cache"),
    )


def _sources(pub: Publisher) -> list[Source]:
    return [
        Source("map", "sitemap", pub.url("/sitemap.xml")),
        Source("feed", "feed", pub.url("/feed.xml")),
    ]


def _urls(shards) -> list[str]:
    return sorted(u for s in shards for u in s.items)


def test_unchanged_rerun_asks_listings_conditionally_and_skips_robots_and_children(pub, settings):
    first, _ = discover(_sources(pub), settings, run_id="r1")
    assert pub.paths() == ["/child.xml", "/feed.xml", "/robots.txt", "/sitemap.xml"]
    pub.seen.clear()
    second, log = discover(_sources(pub), settings, run_id="r2")
    assert (
        _urls(second)
        == _urls(first)
        == sorted([pub.url("/news/a"), pub.url("/news/b"), pub.url("/news/from-feed")])
    )
    # robots.txt is fresh (< 24 h) and the child predates our copy: neither is asked for;
    # the index and the feed are asked with their ETags and answered 304
    assert pub.paths() == ["/feed.xml", "/sitemap.xml"]
    assert all(inm for _, inm in pub.seen)
    assert log.num_rows == 0  # nothing dropped, nothing failed


def test_newer_index_lastmod_refetches_the_child_and_finds_its_new_page(pub, settings):
    discover(_sources(pub), settings, run_id="r1")
    later = (datetime.now(UTC) + timedelta(minutes=10)).isoformat(timespec="seconds")
    pub.docs["/sitemap.xml"] = (_index(pub.url("/child.xml"), later), "application/xml")
    pub.docs["/child.xml"] = (
        _urlset(pub.url("/news/a"), pub.url("/news/b"), pub.url("/news/c")),
        "application/xml",
    )
    pub.seen.clear()
    shards, _ = discover(_sources(pub), settings, run_id="r2")
    assert pub.url("/news/c") in _urls(shards)
    assert "/child.xml" in pub.paths()


def test_changed_feed_is_downloaded_again(pub, settings):
    discover(_sources(pub), settings, run_id="r1")
    pub.docs["/feed.xml"] = (RSS.replace("/news/from-feed", "/news/other"), "application/rss+xml")
    shards, _ = discover(_sources(pub), settings, run_id="r2")
    urls = _urls(shards)
    assert pub.url("/news/other") in urls and pub.url("/news/from-feed") not in urls


def test_robots_txt_is_asked_again_once_older_than_its_max_age(pub, settings):
    discover(_sources(pub), settings, run_id="r1")
    pub.docs["/robots.txt"] = ("User-agent: *\nDisallow: /news/b\n", "text/plain")
    settings.robots_max_age_s = 0.0
    pub.seen.clear()
    shards, log = discover(_sources(pub), settings, run_id="r2")
    assert "/robots.txt" in pub.paths()
    assert pub.url("/news/b") not in _urls(shards)
    assert "robots_disallowed" in log.column("reason").to_pylist()


def test_without_a_cache_dir_every_run_reads_everything(pub, settings):
    settings.cache_dir = None
    discover(_sources(pub), settings, run_id="r1")
    pub.seen.clear()
    discover(_sources(pub), settings, run_id="r2")
    assert pub.paths() == ["/child.xml", "/feed.xml", "/robots.txt", "/sitemap.xml"]
    assert not any(inm for _, inm in pub.seen)


def test_a_corrupt_cache_entry_is_a_miss_not_an_error(pub, settings):
    first, _ = discover(_sources(pub), settings, run_id="r1")
    for f in Path(settings.cache_dir).rglob("*"):
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    pub.seen.clear()
    second, log = discover(_sources(pub), settings, run_id="r2")
    assert _urls(second) == _urls(first) and log.num_rows == 0
    assert pub.paths() == ["/child.xml", "/feed.xml", "/robots.txt", "/sitemap.xml"]


def test_doc_cache_round_trip_and_touch(tmp_path):
    cache = DocCache(tmp_path)
    assert cache.get("http://x.org/s.xml") is None
    cache.put("http://x.org/s.xml", CachedDoc(b"<a/>\n<b/>", 200, '"e1"', None, 1000.0))
    doc = cache.get("http://x.org/s.xml")
    assert doc == CachedDoc(b"<a/>\n<b/>", 200, '"e1"', None, 1000.0)
    cache.touch("http://x.org/s.xml")
    assert cache.get("http://x.org/s.xml").age_s() < 60  # a 304 re-dates our copy


def test_atom_updated_is_a_lastmod_rss_pubdate_is_not():
    atom = b"""<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>
    <entry><link href="/a"/><id>a</id><published>2026-11-20T08:00:00Z</published>
    <updated>2026-11-24T09:30:00Z</updated></entry></feed>"""
    [entry] = parse_feed(atom, "https://x.org/atom.xml")
    assert entry.url == "https://x.org/a"
    assert entry.modified == datetime(2026, 11, 24, 9, 30, 1, tzinfo=UTC)
    [item] = parse_feed(RSS.encode(), "https://x.org/rss.xml")
    assert item.modified is None and item.published is not None
