"""Extract stage: PAGES (raw HTML) -> article records (title, authors, date, body, hints).

Why this shape: the HTML is parsed once; metadata is read from that tree (tasks.metadata) and
the same tree is handed to trafilatura for the body, so extraction costs one parse and one
trafilatura run per page. Structured declarations (JSON-LD, OpenGraph) win over guesses for
title/authors/date because publishers state them explicitly; the body comes from trafilatura,
completed where a template split the article into sibling containers, trimmed where the
publisher's own JSON-LD articleBody agrees on what the article is, and is made publishable
by tasks.clean. A page that hangs the parser is cut off by a timer and
rejected as 'timeout'; every other failure is a counted reject with the exception text, never
a silent drop. No Prefect and no DuckDB here.
"""

from __future__ import annotations

import gc
import json
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import date
from multiprocessing import get_context
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from courlan.meta import clear_caches as clear_courlan_caches
from htmldate import find_date
from htmldate.meta import reset_caches as reset_htmldate_caches
from lxml import etree
from lxml.html import HtmlComment, HtmlElement, HtmlEntity, HtmlProcessingInstruction
from trafilatura import bare_extraction
from trafilatura import deduplication as tf_dedup
from trafilatura.metadata import extract_author, extract_title
from trafilatura.settings import set_date_params
from trafilatura.utils import (
    HTML_PARSER,
    line_processing,
    load_html,
    return_printables_and_spaces,
    trim,
)

from tasks import attempt_reuse, date_languages, escalation, html_repair, xpath_guards
from tasks import metadata as md
from tasks.clean import choose_authors, choose_title, fold_text, normalize_url
from tasks.language import looks_english
from tasks.schema import ARTICLES_CORE, conform, rejects_table, stable_id

LOG = logging.getLogger(__name__)
STAGE = "extract"
RESET_EVERY = 200  # pages between trafilatura/htmldate/courlan cache resets (flat memory)
MIN_BODY_CHARS = 40  # below this the "article" is a teaser/paywall stub or a parse failure
MAX_HTML_CHARS = 8_000_000  # larger documents are not articles and would stall the parser

# trafilatura logs every discarded page at WARNING; our rejects already record that.
logging.getLogger("trafilatura").setLevel(logging.ERROR)
logging.getLogger("htmldate").setLevel(logging.ERROR)


def use_plain_element_classes() -> None:
    """Have trafilatura's parser build every element as a plain ``HtmlElement``.

    lxml.html's default class lookup calls back into Python each time an element is touched
    from Python, only to give form fields their own classes (``InputElement.value`` and the
    like), which neither trafilatura, htmldate nor this module uses: about a million calls
    over the 282 corpus pages. The lookup in C is 1.5 ms of a 26 ms page (measured
    interleaved over 800 bench pages), with every extracted record unchanged.
    """
    HTML_PARSER.set_element_class_lookup(
        etree.ElementDefaultClassLookup(
            element=HtmlElement,
            comment=HtmlComment,
            pi=HtmlProcessingInstruction,
            entity=HtmlEntity,
        )
    )


use_plain_element_classes()
xpath_guards.install()  # trafilatura's rules, equivalent but with fewer Python callbacks
escalation.install()  # lets the fast attempt run without trafilatura's recall escalation
attempt_reuse.install()  # the full cascade after a rejected fast attempt reuses its work
html_repair.install()  # the page-wide regex for XML-invalid characters only where one is
date_languages.install()  # htmldate's dateparser fallback reads a page in its own language


class PageTimeout(BaseException):
    """Raised inside a page's extraction when its time limit is exceeded.

    A BaseException (like KeyboardInterrupt) so that the broad ``except Exception`` blocks
    inside trafilatura/htmldate cannot swallow it and carry on with the slow page.
    """


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


_BODY_OPTIONS = {
    "with_metadata": False,
    "include_comments": False,
    "include_tables": True,
    "output_format": "python",
}
# trafilatura's fast mode (no readability/jusText comparison) is kept when its text is within
# these shares of the page's paragraph text, and its usual length floor is met
FAST_BODY_SHARE = (0.5, 2.0)
FAST_BODY_MIN_CHARS = 250


def paragraph_texts(tree: HtmlElement) -> list[tuple[HtmlElement, str]]:
    """Each ``<p>`` of the page with its text, whitespace-normalised.

    Read twice per page, by the fast-body gate and by the split-body rescue, on a tree
    nothing changes in between (trafilatura and htmldate work on copies): computed once.
    """
    return [(p, " ".join(p.text_content().split())) for p in tree.iter("p")]


def extract_body(
    tree: HtmlElement,
    url: str | None,
    paragraphs: list[tuple[HtmlElement, str]] | None = None,
) -> Any:
    """trafilatura's body, running its fallback extractors only where they can change it.

    The comparison with readability and jusText is about 40 % of extraction time, and it only
    replaces trafilatura's own text when that text is short or missing next to theirs (under
    half of it). Both fallbacks score paragraph-like blocks, so when trafilatura's fast text
    already covers at least half of all the text in the page's ``<p>`` elements (and is not
    mostly from outside them: over twice that text means tables, ``<div>`` prose or lists,
    where the fallbacks do matter), the full cascade would keep it: on the extraction corpus,
    84 % of pages take this path and their bodies match the full cascade's except for two
    pages that differ by under 2 % in length. Every other page pays for the full cascade,
    which starts from the attempt's prepared tree and main text (tasks.attempt_reuse).
    """
    if paragraphs is None:
        paragraphs = paragraph_texts(tree)
    in_paragraphs = sum(len(text) for _, text in paragraphs)
    lo, hi = FAST_BODY_SHARE
    # with under FAST_BODY_MIN_CHARS / hi of paragraph text no fast text can pass both tests
    # (2.5 % of corpus pages): those go straight to the full cascade
    if hi * in_paragraphs >= FAST_BODY_MIN_CHARS:
        # no recall escalation in this attempt (tasks.escalation, 1.1 ms a page): a text
        # the gate rejects gets the full cascade, which escalates as trafilatura does
        with escalation.measure_off(), attempt_reuse.recording() as attempt:
            doc = bare_extraction(tree, url=url, fast=True, **_BODY_OPTIONS)
        n = len(getattr(doc, "text", None) or "") if doc is not None else 0
        if n >= FAST_BODY_MIN_CHARS and lo * in_paragraphs <= n <= hi * in_paragraphs:
            return doc
        # the cascade starts from the attempt's prepared tree and main text (tasks.attempt_reuse)
        with attempt_reuse.replaying(attempt):
            return bare_extraction(tree, url=url, **_BODY_OPTIONS)
    return bare_extraction(tree, url=url, **_BODY_OPTIONS)


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
    listing = md.listing_reason(pm, url)
    if listing:
        return None, "not_article", listing
    # trafilatura copies an lxml input before pruning it, so `tree` stays intact for us.
    # Metadata comes from our own reading of the tree; trafilatura's metadata pass (htmldate
    # above all) costs as much as the body extraction and only runs below as a fallback.
    paragraphs = paragraph_texts(tree)
    doc = extract_body(tree, url, paragraphs)
    text = (getattr(doc, "text", None) or "") if doc is not None else ""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    published = md.published_date(pm)
    if not published:  # undated: maybe a section front; judged before htmldate's guess
        listing = teaser_listing_reason(tree, pm, lines)
        if listing:
            return None, "not_article", listing
    site = md.site_name(pm) or (outlet or "")
    jl_people, jl_orgs = md.jsonld_authors(pm)
    authors = choose_authors([jl_people, md.meta_authors(pm)], jl_orgs, site)
    if not authors:  # no declared byline: trafilatura's visible-byline heuristics
        authors = [a for a in (extract_author(tree) or "").split(";") if a.strip()]
    title = choose_title(pm, None, site, outlet, _host(url), authors) or (extract_title(tree) or "")
    lang = md.language(pm)
    if not published:
        # the language enrichment will record: declared, else English if the text reads so
        guess = lang or ("en" if looks_english("\n".join(lines)) else None)
        with date_languages.page_language(guess):
            published = md.iso_date(find_date(tree, url=url, **set_date_params(True)))
    published_at = md.published_time(pm, published, tree)  # UTC; only a declared time+offset
    canonical = md.canonical_url(pm, url)
    if canonical:
        canonical = normalize_url(canonical)
    hints = md.syndication_hints(pm, url, canonical)

    lines = rescue_split_body(tree, lines, paragraphs)
    lines = trim_to_article_body(lines, md.jsonld_field(pm, "articleBody"))
    body = "\n\n".join(lines)
    if not body:
        return None, "no_body", "no main text found"
    if len(body) < MIN_BODY_CHARS:
        return None, "too_short", f"{len(body)} characters of text"

    record = {
        "url": url,
        "canonical_url": canonical,
        "title": title or None,
        "authors": authors,
        "published": published,
        "published_at": published_at,
        "language": lang,
        "description": md.jsonld_field(pm, "description")
        or pm.first("og:description", "description", "twitter:description")
        or None,
        "site_name": site or None,
        "body": body,
        "syndication_hints": (
            json.dumps(hints, ensure_ascii=False, sort_keys=True) if hints else None
        ),
    }
    return record, None, None


HEADLINE_LINK_MIN_WORDS = 4  # link texts this long are headlines, not navigation
LISTING_MIN_TEASERS = 3  # distinct headline links whose headline or teaser is in the body
LISTING_TEASER_SHARE = 0.6  # share of the body's characters in headline/teaser lines
TEASER_MIN_CHARS = 40  # a card's summary is a sentence; shorter lines are labels ("Next")
TEASER_MAX_CHARS = 300  # a summary printed under a headline link
CARD_MAX_CHARS = 600  # a teaser card: one headline link plus a short summary/byline/date
_BULLET = re.compile(r"^[-•*·]\s+")


def _headline_cards(tree: HtmlElement) -> tuple[dict[str, set[str]], dict[str, str]]:
    """Headline links of the page and the teaser cards around them.

    Returns ({first words: link texts}, {card text: link text}), all folded. A card is the
    nearest ancestor (up to three levels) of a headline link that holds more text than
    the link, if it is short and holds no other headline link: the <li>/<article>/<div>
    of a teaser list. A paragraph with an inline link is such a "card" too, but its text
    contains the link text, which a teaser summary does not.
    """
    k = HEADLINE_LINK_MIN_WORDS
    heads: dict[str, set[str]] = {}
    cards: dict[str, str] = {}
    for a in tree.iter("a"):
        words = fold_text(a.text_content()).split()
        if len(words) < k:
            continue
        link = " ".join(words)
        heads.setdefault(" ".join(words[:k]), set()).add(link)
        node = a
        for _ in range(3):
            node = node.getparent()
            if node is None:
                break
            text = fold_text(node.text_content())
            if len(text) <= len(link) + 20:
                continue
            if (
                len(text) <= CARD_MAX_CHARS
                and sum(len(x.text_content().split()) >= k for x in node.iter("a")) == 1
            ):
                cards[text] = link
            break
    return heads, cards


def teaser_listing_reason(tree: HtmlElement, pm: md.PageMeta, lines: list[str]) -> str | None:
    """Why the extracted "body" is a list of story teasers, i.e. a section/front page.

    Section and index pages that carry no listing JSON-LD and no tell-tale URL (see
    md.listing_reason) still look like one to the extractor: a river of teaser cards, each
    a headline link with a one-line summary, and the extractor keeps the headlines, the
    summaries or both. A page that declares itself an article (article JSON-LD or
    og:type article) or states a publication date is never judged here; for the others
    the body is a listing when most of its text is headline links and teaser summaries
    (text of a card around a headline link, text printed right under a headline link or
    cut off with an ellipsis) drawn from several different cards.
    """
    if not lines or pm.types() & (md.ARTICLE_TYPES - md.GENERIC_PAGE_TYPES):
        return None
    if pm.first("og:type").lower().startswith("article"):
        return None
    heads, cards = _headline_cards(tree)
    if len(heads) < LISTING_MIN_TEASERS:
        return None
    blob = "\x00".join(cards)
    k = HEADLINE_LINK_MIN_WORDS
    teaser_chars = total = 0
    hit: set[str] = set()  # headline links whose headline or summary is in the body
    after_head = False
    for line in lines:
        total += len(line)
        words = fold_text(_BULLET.sub("", line)).split()
        folded = " ".join(words)
        head = next((h for h in heads.get(" ".join(words[:k]), ()) if folded.startswith(h)), None)
        if head is not None:
            hit.add(head)
            teaser_chars += len(line)
            after_head = True
            continue
        card_link = None
        if len(folded) >= TEASER_MIN_CHARS and folded in blob:
            card_link = next(
                (lk for c, lk in cards.items() if folded in c and lk not in folded), None
            )
        if card_link is not None:
            hit.add(card_link)
            teaser_chars += len(line)
        elif (after_head and len(line) <= TEASER_MAX_CHARS) or line.endswith(("…", "...")):
            teaser_chars += len(line)
        after_head = False
    share = teaser_chars / total if total else 0.0
    if len(hit) >= LISTING_MIN_TEASERS and share >= LISTING_TEASER_SHARE:
        return (
            f"teaser listing: {len(hit)} headline links, {share:.0%} of the text in "
            "headlines/teasers, no article declaration or date"
        )
    return None


ARTICLE_BODY_MIN_WORDS = 80  # shorter JSON-LD articleBody values are teasers/paywall stubs


def trim_to_article_body(lines: list[str], article_body: str) -> list[str]:
    """Drop extracted lines that the publisher's own JSON-LD articleBody does not contain.

    Only when the two agree: the articleBody is substantial, at least half as long as the
    extraction, and nearly all of it was extracted, so the extra lines are page chrome
    (teasers, appeals, captions) rather than text the declaration left out. Short lines
    (sub-headings) are kept: articleBody often omits them.
    """
    words = fold_text(article_body).split() if article_body else []
    if len(words) < ARTICLE_BODY_MIN_WORDS or not lines:
        return lines
    vocab = set(words)
    extracted_words = [w for line in lines for w in fold_text(line).split()]
    extracted = set(extracted_words)
    # a truncated articleBody (teaser, paywall) says nothing about the rest of the text
    if len(words) < 0.5 * len(extracted_words) or len(vocab & extracted) < 0.9 * len(vocab):
        return lines
    kept = []
    for line in lines:
        toks = fold_text(line).split()
        if len(toks) < 12 or sum(t in vocab for t in toks) >= 0.5 * len(toks):
            kept.append(line)
    return kept


RESCUE_MIN_CHARS = 80  # only prose-length paragraphs are worth rescuing


def rescue_split_body(
    tree: HtmlElement,
    lines: list[str],
    paragraphs: list[tuple[HtmlElement, str]] | None = None,
) -> list[str]:
    """Add paragraphs from sibling copies of the article container trafilatura chose.

    Some templates cut one article into several containers with the same tag and class
    (one per block between ads); the extractor keeps the first and drops the rest. A prose
    paragraph in another container of the very class that already held two or more
    extracted paragraphs is the same article's text. Paragraphs inside an extracted
    container that trafilatura dropped stay dropped: that was a judgement, not a split.
    """
    if not lines:
        return lines
    folded_lines = [fold_text(x) for x in lines]
    candidates = []  # (p text, parent, signature, line index or None)
    for p, txt in paragraphs if paragraphs is not None else paragraph_texts(tree):
        if len(txt) < RESCUE_MIN_CHARS:
            continue
        parent = p.getparent()
        if parent is None:
            continue
        # inline headings ("<b>Title</b> text") become separate lines in trafilatura's
        # output, so a paragraph counts as extracted when its head or its tail is found
        folded = fold_text(txt)
        head, tail = folded[:60], folded[-60:]
        idx = next(
            (
                i
                for i, fl in enumerate(folded_lines)
                if (head and head in fl) or (tail and tail in fl)
            ),
            None,
        )
        candidates.append((txt, parent, (parent.tag, parent.get("class", "")), idx))
    matched_parents: dict[tuple[str, str], set[int]] = {}
    for _, parent, sig, idx in candidates:
        if idx is not None and sig[1]:
            matched_parents.setdefault(sig, set()).add(id(parent))
    sigs = set()
    for sig in matched_parents:
        same = [c for c in candidates if c[2] == sig]
        hits = sum(1 for c in same if c[3] is not None)
        # the class must really be the article's: several extracted paragraphs, and a fair
        # share of all paragraphs of that class (teaser lists repeat one class many times)
        if hits >= 3 and hits >= 0.25 * len(same):
            sigs.add(sig)
    if not sigs:
        return lines
    inserts: dict[int, list[str]] = {}
    last = -1
    for txt, parent, sig, idx in candidates:
        if idx is not None:
            last = idx
        elif (
            sig in sigs
            and id(parent) not in matched_parents[sig]
            and txt.rstrip("\"'”’)»").endswith((".", "!", "?", "。", "！", "？"))
        ):
            inserts.setdefault(last, []).append(txt)
    if not inserts:
        return lines
    out = list(inserts.get(-1, []))
    for i, line in enumerate(lines):
        out.append(line)
        out.extend(inserts.get(i, []))
    return out


def _to_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    iso = md.iso_date(value)
    return date.fromisoformat(iso) if iso else None


def reset_caches() -> None:
    """Empty the extraction libraries' growing caches so a worker's memory stays flat.

    This is ``trafilatura.meta.reset_caches`` minus its clearing of justext's stoplist cache:
    that cache holds one frozen set per stoplist (a fixed, small set), and the one used for
    pages without a known language is the union of all of them, 154k words that took ~49 ms
    to rebuild after every reset (~0.5 ms a page at one reset per 100-page batch). A test
    checks that every other cache trafilatura's reset empties is emptied here too.
    """
    reset_htmldate_caches()
    clear_courlan_caches()
    tf_dedup.is_similar_domain.cache_clear()
    tf_dedup._vector_to_add.cache_clear()
    tf_dedup.LRU_TEST.clear()
    line_processing.cache_clear()
    return_printables_and_spaces.cache_clear()
    trim.cache_clear()
    gc.collect()


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
                record, reason, detail = extract_html(
                    page.get("html") or "", url, page.get("outlet")
                )
        except PageTimeout as exc:
            record, reason, detail = None, "timeout", str(exc)
        except Exception as exc:  # a broken page must not stop the batch; it becomes a reject
            record, reason, detail = None, "parse_error", f"{type(exc).__name__}: {exc}"
        if record is None:
            rejected.append(
                {
                    "item_id": page.get("page_id"),
                    "url": url,
                    "stage": STAGE,
                    "reason": reason,
                    "detail": detail,
                }
            )
            continue
        outlet = page.get("outlet") or record.get("site_name") or _host(url) or None
        kept.append(
            {
                **{
                    k: record[k]
                    for k in (
                        "url",
                        "canonical_url",
                        "title",
                        "authors",
                        "language",
                        "description",
                        "body",
                        "syndication_hints",
                    )
                },
                "article_id": stable_id(record["canonical_url"] or url),
                "page_id": page.get("page_id"),
                "source": page.get("source"),
                "outlet": outlet,
                "published": _to_date(record["published"]),
                "published_at": record.get("published_at"),
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
    cols = [
        c
        for c in ("page_id", "url", "final_url", "source", "outlet", "html", "fetched_at")
        if c in pages.column_names
    ]
    rows = pages.select(cols).to_pylist()
    started = time.monotonic()
    if threading.current_thread() is threading.main_thread() or not time_limit_s:
        kept, rejected = _extract_rows(rows, time_limit_s)
    else:
        try:
            with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
                kept, rejected = pool.submit(_extract_rows, rows, time_limit_s).result()
        except BrokenProcessPool as exc:  # the child died (e.g. a parser crash): no timer
            LOG.warning("extract child process died (%s); extracting in-thread", exc)
            kept, rejected = _extract_rows(rows, None)
    for r in kept:
        r["run_id"] = run_id
    LOG.info(
        "extract: %d pages -> %d articles, %d rejects in %.1fs",
        len(rows),
        len(kept),
        len(rejected),
        time.monotonic() - started,
    )
    articles = conform(pa.Table.from_pylist(kept, schema=_partial_schema()), ARTICLES_CORE)
    return articles, rejects_table(rejected, run_id)


def _partial_schema() -> pa.Schema:
    """ARTICLES_CORE minus the fields only clean fills, so from_pylist needs no placeholders."""
    return pa.schema([f for f in ARTICLES_CORE if f.name not in ("origin_credit", "content_hash")])
