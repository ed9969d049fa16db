"""Extract stage: PAGES (raw HTML) -> article records (title, authors, date, body, hints).

Why this shape: the HTML is parsed once; metadata is read from that tree (tasks.metadata) and
the same tree is handed to trafilatura for the body, so extraction costs one parse and one
trafilatura run per page. Structured declarations (JSON-LD, OpenGraph) win over guesses for
title/authors/date because publishers state them explicitly; the body comes from trafilatura
and is made publishable by tasks.clean. A page that hangs the parser is cut off by a timer and
rejected as 'timeout'; every other failure is a counted reject with the exception text, never
a silent drop. No Prefect and no DuckDB here.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from datetime import date
from multiprocessing import get_context
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from htmldate import find_date
from trafilatura import bare_extraction
from trafilatura.meta import reset_caches
from trafilatura.metadata import extract_author, extract_title
from trafilatura.settings import set_date_params
from trafilatura.utils import load_html

from tasks import metadata as md
from tasks.clean import choose_title, normalize_url
from tasks.schema import ARTICLES_CORE, conform, rejects_table, stable_id

LOG = logging.getLogger(__name__)
STAGE = "extract"
RESET_EVERY = 200  # pages between trafilatura/htmldate/courlan cache resets (flat memory)
MIN_BODY_CHARS = 40  # below this the "article" is a teaser/paywall stub or a parse failure
MAX_HTML_CHARS = 8_000_000  # larger documents are not articles and would stall the parser

# trafilatura logs every discarded page at WARNING; our rejects already record that.
logging.getLogger("trafilatura").setLevel(logging.ERROR)
logging.getLogger("htmldate").setLevel(logging.ERROR)


class PageTimeout(Exception):
    """Raised inside a page's extraction when its time limit is exceeded."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the enclosed code after ``seconds`` with PageTimeout.

    Uses a real-time interval timer, which only works in the main thread of a process;
    extract_batch moves work into a child process when called from any other thread.
    """
    usable = bool(seconds) and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _raise(signum: int, frame: Any) -> None:
        raise PageTimeout(f"page exceeded {seconds:.1f}s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, float(seconds or 0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _host(url: str | None) -> str:
    return urlsplit(url).netloc.lower().removeprefix("www.") if url else ""


def extract_html(
    html: str, url: str | None = None, outlet: str | None = None
) -> tuple[dict | None, str | None, str | None]:
    """Extract one page: (record, reject_reason, detail), exactly one of record/reason set.

    ``outlet`` is the publisher declared for the source; it helps strip the site name from
    the title when the page itself does not state it.
    """
    if not html or not html.strip():
        return None, "empty_page", "no HTML"
    if len(html) > MAX_HTML_CHARS:
        return None, "too_large", f"{len(html)} characters"
    tree = load_html(html)
    if tree is None or len(tree) == 0:
        return None, "empty_page", "HTML could not be parsed into a document"

    pm = md.read_page_meta(tree)  # read-only: must happen before trafilatura prunes the tree
    # trafilatura copies an lxml input before pruning it, so `tree` stays intact for us.
    # Metadata comes from our own reading of the tree; trafilatura's metadata pass (htmldate
    # above all) costs as much as the body extraction and only runs below as a fallback.
    doc = bare_extraction(tree, url=url, with_metadata=False, include_comments=True,
                          include_tables=True, output_format="python")
    text = (getattr(doc, "text", None) or "") if doc is not None else ""
    site = md.site_name(pm) or (outlet or "")
    title = choose_title(pm, None, site, outlet, _host(url)) or (extract_title(tree) or "")

    authors = md.jsonld_authors(pm) or md.meta_authors(pm)
    if not authors:
        fallback_author = extract_author(tree)
        authors = [a for a in (fallback_author or "").split(";") if a.strip()]
    published = md.published_date(pm)
    if not published:
        published = md.iso_date(find_date(tree, url=url, **set_date_params(True)))
    canonical = md.canonical_url(pm, url)
    if canonical:
        canonical = normalize_url(canonical)
    lang = md.language(pm)
    hints = md.syndication_hints(pm, url, canonical)

    body = "\n\n".join(line.strip() for line in text.splitlines() if line.strip())
    if not body:
        types = pm.types()
        if types & md.NON_ARTICLE_TYPES and not types & md.ARTICLE_TYPES:
            return None, "not_article", f"JSON-LD types {sorted(types)}"
        return None, "no_body", "no main text found"
    if len(body) < MIN_BODY_CHARS:
        return None, "too_short", f"{len(body)} characters of text"

    record = {
        "url": url,
        "canonical_url": canonical,
        "title": title or None,
        "authors": authors,
        "published": published,
        "language": lang,
        "description": md.jsonld_field(pm, "description")
        or pm.first("og:description", "description", "twitter:description")
        or None,
        "site_name": site or None,
        "body": body,
        "syndication_hints": (json.dumps(hints, ensure_ascii=False, sort_keys=True)
                              if hints else None),
    }
    return record, None, None


def _to_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    iso = md.iso_date(value)
    return date.fromisoformat(iso) if iso else None


def _extract_rows(
    rows: list[dict[str, Any]], time_limit_s: float | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Extract page rows; runs in the main thread of whichever process owns the timer."""
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for i, page in enumerate(rows):
        if i and i % RESET_EVERY == 0:
            reset_caches()
        url = page.get("final_url") or page.get("url")
        try:
            with time_limit(time_limit_s):
                record, reason, detail = extract_html(page.get("html") or "", url,
                                                      page.get("outlet"))
        except PageTimeout as exc:
            record, reason, detail = None, "timeout", str(exc)
        except Exception as exc:  # a broken page must not stop the batch; it becomes a reject
            record, reason, detail = None, "parse_error", f"{type(exc).__name__}: {exc}"
        if record is None:
            rejected.append({"item_id": page.get("page_id"), "url": url, "stage": STAGE,
                             "reason": reason, "detail": detail})
            continue
        outlet = page.get("outlet") or record.get("site_name") or _host(url) or None
        kept.append(
            {
                **{k: record[k] for k in ("url", "canonical_url", "title", "authors", "language",
                                          "description", "body", "syndication_hints")},
                "article_id": stable_id(record["canonical_url"] or url),
                "page_id": page.get("page_id"),
                "source": page.get("source"),
                "outlet": outlet,
                "published": _to_date(record["published"]),
                "fetched_at": page.get("fetched_at"),
            }
        )
    reset_caches()
    return kept, rejected


def extract_batch(
    pages: pa.Table, run_id: str, *, time_limit_s: float = 10.0
) -> tuple[pa.Table, pa.Table]:
    """PAGES -> (ARTICLES_CORE without clean-only fields, REJECTS with stage='extract').

    The per-page timer needs the main thread; from a worker thread (e.g. Prefect's thread
    pool) the batch runs in one spawned child process instead, so the limit still holds.
    """
    cols = [c for c in ("page_id", "url", "final_url", "source", "outlet", "html", "fetched_at")
            if c in pages.column_names]
    rows = pages.select(cols).to_pylist()
    started = time.monotonic()
    if threading.current_thread() is threading.main_thread() or not time_limit_s:
        kept, rejected = _extract_rows(rows, time_limit_s)
    else:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            kept, rejected = pool.submit(_extract_rows, rows, time_limit_s).result()
    for r in kept:
        r["run_id"] = run_id
    LOG.info("extract: %d pages -> %d articles, %d rejects in %.1fs", len(rows), len(kept),
             len(rejected), time.monotonic() - started)
    articles = conform(pa.Table.from_pylist(kept, schema=_partial_schema()), ARTICLES_CORE)
    return articles, rejects_table(rejected, run_id)


def _partial_schema() -> pa.Schema:
    """ARTICLES_CORE minus the fields only clean fills, so from_pylist needs no placeholders."""
    return pa.schema([f for f in ARTICLES_CORE if f.name not in ("origin_credit", "content_hash")])
