"""The throughput benchmark's page copies must be distinct articles to the pipeline.

A copy that kept its original's canonical URL is folded into the first copy by the run-wide
canonical dedup (and, inside a unit, never enriched), so the benchmark would time less work
than a real crawl of distinct pages needs.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
from trafilatura.utils import load_html

from tasks import metadata as md

BENCH = Path(__file__).resolve().parent.parent / "bench" / "throughput.py"
ORIGINAL = "https://news.example.org/2024/05/story.html"
HEADS = {
    "quoted link": f'<link rel="canonical" href="{ORIGINAL}">',
    "unquoted link": f"<link href={ORIGINAL} rel=canonical>",
    "quoted og:url": f'<meta property="og:url" content="{ORIGINAL}">',
    "unquoted og:url": f"<meta property=og:url content={ORIGINAL}>",
    "og:url after content": f"<meta content={ORIGINAL} property=og:url>",
    "JSON-LD url": (
        '<script type="application/ld+json">'
        f'{{"@type": "NewsArticle", "headline": "H", "url": "{ORIGINAL}"}}</script>'
    ),
    "JSON-LD url list": (
        '<script type="application/ld+json">'
        f'{{"@type": "NewsArticle", "headline": "H", "url": ["{ORIGINAL}", "{ORIGINAL}?amp"]}}'
        "</script>"
    ),
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("head", list(HEADS.values()), ids=list(HEADS))
def test_a_copy_declares_its_own_url_not_the_original(bench, head):
    page = (
        f"<html><head><title>H</title>{head}</head>"
        "<body><article><p>Story text that is long enough to be a paragraph.</p></article>"
        "</body></html>"
    ).encode()
    before = md.canonical_url(md.read_page_meta(load_html(page.decode())), "http://x.example/")
    assert before is not None and before.startswith(ORIGINAL)  # the page does declare it
    url = "http://site3.bench.example/news/0/story-3.html"
    copy = bench.distinct_copy(page, 3, random.Random(7), url).decode()
    assert md.canonical_url(md.read_page_meta(load_html(copy)), url) in (url, None)
    assert "Copy 3 notes" in copy
