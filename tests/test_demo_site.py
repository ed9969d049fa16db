"""Tests of the bundled demo site and its server (newsflow.demo).

The demo site is the fixture the end-to-end tests lean on, so these tests pin down what those
tests assume: robots.txt, feed and sitemaps are well-formed and complete, conditional requests
work, and expected.json (the ground truth) agrees with the files actually served.
"""

from __future__ import annotations

import html
import json
import re
import urllib.robotparser
from collections.abc import Iterator
from datetime import date, timedelta
from urllib.parse import urljoin, urlsplit
from xml.etree import ElementTree as ET

import feedparser
import httpx
import pytest

from newsflow.demo import EXPECTED_PATH, SITE_DIR, DemoSite, sources_yaml

SM_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
NEWS_NS = "{http://www.google.com/schemas/sitemap-news/0.9}"


@pytest.fixture(scope="module")
def site() -> Iterator[DemoSite]:
    """One real server on a free port for the whole module (starting it is cheap but not free)."""
    with DemoSite(port=0) as s:
        yield s


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads(EXPECTED_PATH.read_text(encoding="utf-8"))


def _file_for(path: str):
    rel = path.lstrip("/")
    return SITE_DIR / (rel + "index.html" if path.endswith("/") else rel)


def _text_of(path: str) -> str:
    return html.unescape(_file_for(path).read_text(encoding="utf-8"))


def _sitemap_locs(client: httpx.Client, site: DemoSite) -> dict[str, list[str]]:
    """Child sitemap path -> list of <loc> URLs, following the sitemap index."""
    index = ET.fromstring(client.get(site.url("/sitemap.xml")).content)
    assert index.tag == SM_NS + "sitemapindex"
    out: dict[str, list[str]] = {}
    for loc in index.iter(SM_NS + "loc"):
        child = client.get(loc.text or "")
        assert child.status_code == 200, loc.text
        root = ET.fromstring(child.content)
        out[urlsplit(loc.text or "").path] = [e.text or "" for e in root.iter(SM_NS + "loc")]
    return out


def _feed_links(client: httpx.Client, site: DemoSite) -> list[str]:
    resp = client.get(site.url("/feed.xml"))
    feed = feedparser.parse(resp.content)
    assert not feed.bozo, feed.get("bozo_exception")
    return [urljoin(site.url("/feed.xml"), e.link) for e in feed.entries]


# --- server behaviour -----------------------------------------------------------------------
def test_robots_disallows_private_and_sets_no_crawl_delay(
    site: DemoSite, client: httpx.Client, expected: dict
) -> None:
    text = client.get(site.url("/robots.txt")).text
    rp = urllib.robotparser.RobotFileParser()
    rp.parse(text.splitlines())
    for path in expected["disallowed_paths"]:
        assert not rp.can_fetch("newsflow", site.url(path))
    for path in expected["articles"]:
        assert rp.can_fetch("newsflow", site.url(path))
    assert rp.crawl_delay("newsflow") is None
    assert f"Sitemap: {site.base_url}/sitemap.xml" in text


def test_feed_parses_and_every_item_resolves(site: DemoSite, client: httpx.Client) -> None:
    links = _feed_links(client, site)
    assert len(links) >= 10
    raw = (SITE_DIR / "feed.xml").read_text(encoding="utf-8")
    assert re.search(r"<link>/[^<]+</link>", raw), "some feed items should use relative links"
    for link in links:
        assert link.startswith(site.base_url + "/")
        assert client.get(link).status_code == 200, link


def test_sitemap_index_lists_articles_and_news(
    site: DemoSite, client: httpx.Client, expected: dict
) -> None:
    children = _sitemap_locs(client, site)
    assert set(children) == set(expected["child_sitemaps"])
    all_paths = {urlsplit(u).path for urls in children.values() for u in urls}
    article_paths = all_paths & set(expected["articles"])
    assert len(article_paths) >= 30
    news = ET.fromstring(client.get(site.url("/sitemaps/news.xml")).content)
    assert len(list(news.iter(NEWS_NS + "publication_date"))) >= 5


def test_feed_and_sitemap_cover_every_page(
    site: DemoSite, client: httpx.Client, expected: dict
) -> None:
    found = {urlsplit(u).path for u in _feed_links(client, site)}
    for urls in _sitemap_locs(client, site).values():
        found |= {urlsplit(u).path for u in urls}
    wanted = (
        set(expected["articles"])
        | set(expected["not_article_paths"])
        | set(expected["broken_paths"])
        | set(expected["disallowed_paths"])
    )
    assert wanted <= found, sorted(wanted - found)
    assert set(expected["disallowed_paths"]) <= found  # linked, so robots must be what stops it


def test_placeholder_is_replaced_with_real_base(
    site: DemoSite, client: httpx.Client, expected: dict
) -> None:
    for path in list(expected["articles"])[:5] + ["/feed.xml", "/sitemaps/news.xml"]:
        body = client.get(site.url(path)).text
        assert expected["base_placeholder"] not in body
        assert site.base_url in body
    path = next(iter(expected["articles"]))
    body = client.get(site.url(path)).text
    assert f'<link rel="canonical" href="{site.url(path)}">' in body


def test_etag_and_last_modified_round_trip(
    site: DemoSite, client: httpx.Client, expected: dict
) -> None:
    path = next(iter(expected["articles"]))
    first = client.get(site.url(path))
    assert first.status_code == 200
    assert first.headers["content-type"].startswith("text/html")
    etag, lm = first.headers["etag"], first.headers["last-modified"]
    assert client.get(site.url(path), headers={"If-None-Match": etag}).status_code == 304
    assert client.get(site.url(path), headers={"If-Modified-Since": lm}).status_code == 304
    assert client.get(site.url(path), headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get(site.url(path), headers={"If-None-Match": etag}).headers["etag"] == etag
    # a publisher edit: new ETag, and the old validators no longer match
    site.set_page(path, "<html><body><article><p>Edited.</p></article></body></html>")
    try:
        changed = client.get(site.url(path), headers={"If-None-Match": etag})
        assert changed.status_code == 200 and changed.headers["etag"] != etag
        assert client.get(site.url(path), headers={"If-Modified-Since": lm}).status_code == 200
    finally:
        site.set_page(path, None)
    assert client.get(site.url(path), headers={"If-None-Match": etag}).status_code == 304


def test_an_edited_page_gets_a_new_sitemap_lastmod(
    site: DemoSite, client: httpx.Client, expected: dict
) -> None:
    path = next(
        p
        for p in expected["articles"]
        if site.url(p) in client.get(site.url("/sitemaps/articles.xml")).text
    )
    before = client.get(site.url("/sitemaps/articles.xml"))
    site.set_page(path, "<html><body><article><p>Edited.</p></article></body></html>")
    try:
        after = client.get(site.url("/sitemaps/articles.xml"))
        assert after.headers["etag"] != before.headers["etag"]
        entry = after.text.split(f"<loc>{site.url(path)}</loc>", 1)[1].split("</url>", 1)[0]
        assert "<lastmod>2025-" not in entry and "<lastmod>20" in entry
        # and the index dates that child sitemap anew, so crawlers know to read it again
        index = client.get(site.url("/sitemap.xml")).text
        child = index.split(f"<loc>{site.url('/sitemaps/articles.xml')}</loc>", 1)[1]
        child = child.split("</sitemap>", 1)[0]
        assert "<lastmod>2025-" not in child and "<lastmod>20" in child
    finally:
        site.set_page(path, None)
    assert client.get(site.url("/sitemaps/articles.xml")).text == before.text


def test_requests_are_recorded_and_unknown_paths_404(site: DemoSite, client: httpx.Client) -> None:
    assert client.get(site.url("/no/such/page.html")).status_code == 404
    assert client.get(site.url("/%2e%2e/server.py")).status_code == 404
    assert client.head(site.url("/robots.txt")).status_code == 200
    assert ("GET", "/no/such/page.html") in site.requests
    assert "/no/such/page.html" in site.paths_requested()
    redirect = client.get(site.url("/harbor-times/world"))
    assert redirect.status_code == 301
    assert redirect.headers["location"] == site.url("/harbor-times/world/")


def test_sources_yaml_is_valid_for_the_loader(site: DemoSite, tmp_path) -> None:
    import yaml

    doc = yaml.safe_load(sources_yaml(site.base_url))
    kinds = {e["kind"]: e["location"] for e in doc["sources"]}
    assert kinds == {"feed": site.url("/feed.xml"), "sitemap": site.url("/sitemap.xml")}
    sources_mod = pytest.importorskip("tasks.sources")
    path = tmp_path / "sources.yaml"
    path.write_text(sources_yaml(site.base_url), encoding="utf-8")
    loaded, _settings = sources_mod.load_sources(path)
    assert [s.kind for s in loaded] == ["feed", "sitemap"]


# --- expected.json against the files ---------------------------------------------------------
def test_expected_paths_exist_and_counts(expected: dict) -> None:
    arts = expected["articles"]
    assert len(arts) >= 30
    for key in ("articles", "not_article_paths", "broken_paths", "disallowed_paths"):
        paths = arts if key == "articles" else expected[key]
        for path in paths:
            assert _file_for(path).is_file(), path
    publishers = {a["outlet"] for a in arts.values() if a["outlet"] != "Northwire"}
    assert len(publishers) >= 5
    assert any(a["language"] == "de" for a in arts.values())
    for path in expected["disallowed_paths"]:
        assert path.startswith(expected["disallowed_prefix"])
    days = sorted(date.fromisoformat(d) for d in {a["published"] for a in arts.values()})
    assert 3 <= len(days) <= 5
    assert days[-1] - days[0] == timedelta(days=len(days) - 1)  # consecutive


def test_expected_metadata_matches_pages(expected: dict) -> None:
    for path, a in expected["articles"].items():
        text = _text_of(path)
        assert f">{a['title']}</h1>" in text, path
        assert f'"og:site_name" content="{a["outlet"]}"' in text, path
        for author in a["authors"]:
            assert author in text, (path, author)
        assert f'content="{a["published"]}' in text or a["published"] in text, path
        assert f'<html lang="{a["language"]}">' in text, path
        assert a["first_sentence"] in text, path
        if a["kind"] == "full":
            assert 250 <= a["words"] <= 700, (path, a["words"])


def test_expected_stories_and_syndication(expected: dict) -> None:
    arts = expected["articles"]
    for story_id, paths in expected["multi_copy_stories"].items():
        assert len(paths) >= 2
        originals = [p for p in paths if arts[p]["wire_original"]]
        assert len(originals) == 1, story_id
        for p in paths:
            assert arts[p]["story_id"] == story_id
            if p not in originals:
                assert arts[p]["syndicated_from"] == originals[0]
    big = max(expected["multi_copy_stories"].values(), key=len)
    assert len(big) >= 5  # the wire story: original + 3 republished copies + 1 teaser
    assert len({arts[p]["title"] for p in big}) >= 3  # headline edits between copies
    assert any(arts[p]["kind"] == "teaser" for p in big)
    for a, b in expected["same_topic_different_stories"]:
        assert arts[a]["story_id"] != arts[b]["story_id"]
    for f in expected["follow_up"]:
        assert f["shared_paragraph"] in _text_of(f["path"])
        assert f["shared_paragraph"] in _text_of(f["background_from"])


def test_expected_junk_persons_places_occur_in_pages(expected: dict) -> None:
    # tags stripped: a junk line like "Read also: <a>Headline</a>" is one line of page text
    corpus = re.sub(r"<[^>]+>", "", "\n".join(_text_of(p) for p in expected["articles"]))
    for line in expected["junk_lines"]:
        assert line in corpus, line
    for variants in expected["persons_expected"].values():
        for v in variants:
            assert re.search(rf"\b{re.escape(v)}\b", corpus), v
    for place in expected["places_expected"]:
        assert place in corpus, place
    jsonld_pages = [p for p, a in expected["articles"].items() if a["has_jsonld"]]
    lds = "\n".join(_text_of(p) for p in jsonld_pages)
    assert len(jsonld_pages) >= 10
    assert '"isBasedOn"' in lds and '"sourceOrganization"' in lds
    assert '"@type": "Organization"' in lds


def test_broken_and_index_pages(site: DemoSite, client: httpx.Client, expected: dict) -> None:
    for path in expected["broken_paths"]:
        resp = client.get(site.url(path))
        assert resp.status_code == 200
        assert "<article" not in resp.text and "<p>" not in resp.text
    for path in expected["not_article_paths"]:
        body = client.get(site.url(path)).text
        assert "<article" not in body
        assert sum(1 for p in expected["articles"] if f'href="{p}"' in body) >= 3
