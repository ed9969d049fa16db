"""Dedup stage: group copies of the same story into clusters with a stable ``cluster_id``.

Why this shape:

* **Copies, not topics.** A syndicated copy keeps the reporting and changes the chrome around it
  (site header/footer, "Read also" links, newsletter prompts, credits), the headline, quotes and
  spelling, and sometimes cuts the story to a teaser. So documents are compared on their
  *content lines* (chrome-like lines removed, see ``tasks/data/dedup_boilerplate.txt``) as sets of
  word 5-gram hashes; the headline is ignored because different stories share generic ones.
* **Three ways to be a copy.** Jaccard >= ``near_jaccard`` (full copies with edits) *and* the
  opening of one text found in the other (two short pages of one site carrying the same box of
  related-story cards share most of their text, but each opens with its own story); or the
  smaller text contained in the larger one (>= ``containment``) *and* starting where the larger
  one starts (teasers and briefs are leads of their story) *and* sharing whole sentences. The
  lead condition keeps follow-ups apart (they re-use the *background* of an earlier story, not
  its lead); the sentence condition keeps apart stories that share half a sentence or a quote.
  Third, a teaser whose page left foreign text after it (related-story cards, most-read boxes
  kept by extraction) is not "contained" any more, so an *opening* match counts too: both texts
  open with the same run of whole sentences (``lead_min_shingles``, ``lead_min_sentences``, at
  least ``lead_min_share`` of the smaller text) *and* their headlines agree. The headline is
  only a guard there, never evidence: pages of one site opening with the same surviving chrome
  paragraph carry different headlines; across sites (chrome is a site's own) a rewritten
  headline only needs to keep some key words.
* **Incremental without loading history.** Every document gets lookup keys: MinHash band hashes,
  a few content-defined lead shingles (to find teasers, which Jaccard bands miss) and its exact
  text hash. Keys are persisted (``dedup_bands``, at most ``band_cap`` documents per key, so a
  key made of leftover chrome cannot explode the join); a new batch finds its candidates with
  one join on that table and verifies them against the stored shingle fingerprints
  (``dedup_docs``). Nothing else of the history is read.
* **Order defines the result.** Documents are processed in (published, article_id) order and
  each joins the cluster of its best verified earlier match, or starts its own cluster named
  after itself. Clusters never merge, so a cluster_id never changes; and because the candidates
  of a document are exactly "earlier documents holding one of its keys" whether they sit in
  the warehouse or in the same batch, running day by day equals running everything at once.

No Prefect and no DuckDB here: ``warehouse.dedup_index.DuckDBHistory`` implements ``History``
over the warehouse, ``MemoryHistory`` does it in memory for tests and the CLI.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import cache
from pathlib import Path
from time import perf_counter
from typing import NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import xxhash

from tasks import syndication
from tasks.schema import TS, TableSpec, rejects_table

STAGE = "dedup"
DATA = Path(__file__).parent / "data"


# ------------------------------------------------------------------------------ config
@dataclass
class DedupConfig:
    """Knobs of the dedup stage; the defaults are the tuned ones (see bench/dedup.py)."""

    shingle_size: int = 5  # words per shingle: long enough that topics do not match
    bands: int = 21  # one-permutation MinHash: bands * band_rows hash bins
    band_rows: int = 3  # 21 bands of 3 rows: J=0.5 found with p~0.94 (lead keys cover teasers)
    lead_window: int = 40  # first content shingles that can become lead keys
    lead_mod: int = 2  # content-defined sampling of lead shingles (same rule on every doc)
    band_cap: int = 64  # documents stored per key: chrome keys cannot blow up the join
    fingerprint_cap: int = 1024  # shingles stored per document (its first distinct ones)
    max_chars: int = 50_000  # content characters fingerprinted (keeps huge pages cheap)
    near_jaccard: float = 0.5  # full copies
    containment: float = 0.7  # smaller text inside the larger one (teasers, trimmed copies)
    weak_containment: float = 0.5  # ... counting short inserted stretches out (inline chrome)
    lead_offset: int = 12  # shared text must start within this many shingles of the smaller
    lead_span: int = 64  # ... and within max(lead_span, 1/8) of the larger text
    min_overlap: int = 6  # shared shingles needed for any match
    min_contained: int = 6  # ... and for a containment match
    teaser_ratio: float = 0.5  # size ratio under which a contained copy is called a teaser
    lead_min_shingles: int = 30  # opening match: shared opening run of at least this many ...
    lead_min_sentences: int = 2  # ... whole sentences ...
    lead_min_share: float = 0.1  # ... covering this share of the smaller text ...
    lead_title_share: float = 0.6  # ... and this share of the shorter headline's words
    lead_title_share_other_site: float = 0.3  # ... or this share when the sites differ
    max_verify: int = 32  # candidates verified per document, most shared keys first
    boilerplate_max_words: int = 60  # longer lines/sentences are never treated as chrome
    min_line_words: int = 6  # shorter lines are chrome (bylines, dates, "Share", captions)
    title_like_words: int = 15  # lines this short without end punctuation are headlines/links
    workers: int = 1  # processes that fingerprint a large batch (the assignment is sequential)


# ------------------------------------------------------------------------------ schemas
ASSIGNMENTS = pa.schema(
    [
        ("article_id", pa.string()),
        ("cluster_id", pa.string()),
        ("dup_kind", pa.string()),
        ("dup_of", pa.string()),
        ("similarity", pa.float32()),
    ]
)

CLUSTERS = pa.schema(
    [
        ("cluster_id", pa.string()),
        ("canonical_article_id", pa.string()),
        ("original_article_id", pa.string()),
        ("original_outlet", pa.string()),
        ("attribution_signal", pa.string()),
        ("size", pa.int32()),
        ("first_seen", TS),
        ("first_published", pa.date32()),
        ("outlet_counts", pa.string()),
        ("run_id", pa.string()),
    ]
)

ARTICLE_SYNDICATION = pa.schema(
    [
        ("republisher_article_id", pa.string()),
        ("original_article_id", pa.string()),
        ("cluster_id", pa.string()),
        ("republisher_outlet", pa.string()),
        ("original_outlet", pa.string()),
        ("is_original", pa.bool_()),
        ("signal", pa.string()),
        ("dup_kind", pa.string()),
        ("similarity", pa.float32()),
        ("run_id", pa.string()),
    ]
)

# per-document index: everything needed to verify a candidate and to re-attribute its cluster
DEDUP_DOCS = pa.schema(
    [
        ("article_id", pa.string()),
        ("cluster_id", pa.string()),
        ("dup_kind", pa.string()),
        ("dup_of", pa.string()),
        ("similarity", pa.float32()),
        ("exact_key", pa.int64()),
        ("n_shingles", pa.int32()),
        ("shingles", pa.binary()),
        ("bounds", pa.binary()),
        ("outlet", pa.string()),
        ("url", pa.string()),
        ("canonical_url", pa.string()),
        ("published", pa.date32()),
        ("origin_credit", pa.string()),
        ("syndication_hints", pa.string()),
        ("content_hash", pa.string()),
        ("first_seen", TS),
        ("run_id", pa.string()),
        ("title", pa.string()),
        ("footer_credit", pa.string()),
        ("published_at", TS),
    ]
)
META_COLUMNS = [f.name for f in DEDUP_DOCS if f.name not in ("shingles", "bounds")]

DEDUP_BANDS = pa.schema([("band_key", pa.int64()), ("article_id", pa.string())])

CANDIDATES = pa.schema(
    [
        ("article_id", pa.string()),  # the new document
        ("cand_id", pa.string()),  # a stored document sharing >= 1 key with it
        ("shared", pa.int32()),  # number of keys they share
        ("cluster_id", pa.string()),
        ("exact_key", pa.int64()),
        ("shingles", pa.binary()),
        ("bounds", pa.binary()),
        ("published", pa.date32()),
        ("title", pa.string()),  # headline: an opening-only match needs agreeing headlines
        ("outlet", pa.string()),  # ... and where it was published (site chrome is per site)
        ("url", pa.string()),
    ]
)
KEYS = pa.schema([("article_id", pa.string()), ("band_key", pa.int64())])
KEY_COUNTS = pa.schema([("band_key", pa.int64()), ("n", pa.int64())])

# what dedup derives from a body, computed where the bodies are (``fingerprint_table``, in the
# CPU workers) and handed to ``dedup_batch(fingerprints=...)`` so the stage need not hold them
FINGERPRINTS = pa.schema(
    [
        ("article_id", pa.string()),
        ("content_hash", pa.string()),  # a row is used only for an article with this hash ...
        ("title_hash", pa.int64()),  # ... and this headline (null: none), which edits lines ...
        ("config_key", pa.int64()),  # ... under the same DedupConfig (``_config_key``)
        ("exact_key", pa.int64()),
        ("n_shingles", pa.int32()),
        ("shingles", pa.binary()),  # uint32 little-endian, text order (as in dedup_docs)
        ("keys", pa.binary()),  # int64 little-endian lookup keys, sorted
        ("bounds", pa.binary()),
        ("footer_credit", pa.string()),  # syndication.footer_credit(body)
    ]
)

TABLE_SPECS: list[TableSpec] = [
    TableSpec(
        name="clusters",
        schema=CLUSTERS,
        key=("cluster_id",),
        mode="upsert",
        description="One row per story: every copy of it shares the cluster_id.",
        columns={
            "cluster_id": "Story id: article_id of the story's first copy; never changes.",
            "canonical_article_id": "Copy to show: the original if known, else the earliest "
            "full copy.",
            "original_article_id": "Copy attributed as the original (null if the credited "
            "original is not in the warehouse).",
            "original_outlet": "Outlet that published the story first (may be outside the "
            "warehouse).",
            "attribution_signal": "Evidence for the original: is_based_on | canonical | "
            "origin_credit | source_organization | agency_credit | earliest.",
            "size": "Number of copies (articles) in the cluster.",
            "first_seen": "When the first copy was fetched (UTC).",
            "first_published": "Earliest publication date among the copies.",
            "outlet_counts": "JSON object: outlet -> number of copies.",
            "run_id": "Run that last changed the cluster.",
        },
    ),
    TableSpec(
        name="article_syndication",
        schema=ARTICLE_SYNDICATION,
        key=("republisher_article_id",),
        mode="upsert",
        description="One row per clustered article: which copy it republishes and why we think so.",
        columns={
            "republisher_article_id": "The article (a copy of the story).",
            "original_article_id": "Article attributed as the original; equals the article "
            "itself on the original's row; null when the original is external.",
            "cluster_id": "Story cluster of both.",
            "republisher_outlet": "Outlet of the article.",
            "original_outlet": "Outlet of the original.",
            "is_original": "True on the original's own row.",
            "signal": "Evidence used (see clusters.attribution_signal).",
            "dup_kind": "How the article joined the cluster: unique, exact, near, teaser.",
            "similarity": "Similarity to the copy it matched (Jaccard or containment).",
            "run_id": "Run that last changed the row.",
        },
    ),
    TableSpec(
        name="dedup_docs",
        schema=DEDUP_DOCS,
        key=("article_id",),
        mode="article",
        description="Dedup index: per-article fingerprint and metadata, so new runs verify "
        "candidates and re-attribute clusters without reading bodies.",
        columns={
            "article_id": "Article id.",
            "cluster_id": "Story cluster assigned when the article was first deduplicated.",
            "dup_kind": "unique | exact | near | teaser.",
            "dup_of": "Article it matched best (null for the first copy).",
            "similarity": "Similarity to dup_of.",
            "exact_key": "Hash of the normalised content words (equal = exact duplicate).",
            "n_shingles": "Distinct content 5-gram shingles in the article.",
            "shingles": "First distinct shingle hashes (uint32 little-endian, text order).",
            "bounds": "Per shingle: starts / ends a sentence (two numpy packbits arrays).",
            "outlet": "Outlet of the article.",
            "url": "URL of the article.",
            "canonical_url": "Canonical URL of the article.",
            "published": "Publication date.",
            "origin_credit": "Credit captured by the clean stage: the original's outlet, or "
            "its headline when the credit names only that.",
            "syndication_hints": "JSON-LD syndication hints (isBasedOn, sourceOrganization).",
            "content_hash": "content_hash of the article when it was indexed.",
            "first_seen": "Fetch time of the article (UTC).",
            "run_id": "Run that indexed the article.",
            "title": "Headline of the article (opening matches and headline credits use it).",
            "footer_credit": "Credit footer still at the end of the body ('Original article "
            "source: X', 'Originally published on X', also glued to the last sentence): X names "
            "the original's outlet or its headline.",
            "published_at": "Exact publication time (UTC) when the record carries one "
            "(published_at); orders same-day copies for the 'earliest' signal.",
        },
    ),
    TableSpec(
        name="dedup_bands",
        schema=DEDUP_BANDS,
        key=("band_key", "article_id"),
        mode="article",
        description="Dedup index: lookup keys (MinHash bands, lead shingles, exact hash) of "
        "the first documents holding each key; joined with a new batch's keys to find candidates.",
        columns={
            "band_key": "Lookup key (64-bit hash, kind and band number mixed in).",
            "article_id": "Article holding the key.",
        },
    ),
]


# ------------------------------------------------------------------------------ history
class History(Protocol):
    """What dedup needs to know about articles already deduplicated (earlier runs)."""

    def candidates(self, keys: pa.Table, limit: int | None = None) -> pa.Table:
        """``keys`` (KEYS: article_id, band_key of new docs) -> CANDIDATES rows: one per
        (new doc, other stored doc) pair sharing keys, with the stored doc's fingerprint.

        With ``limit``, only each new doc's ``limit`` best pairs: most shared keys first, then
        earliest (published, article id), the order dedup verifies them in. Dedup never looks
        past its first ``max_verify``, and without the limit the rows (each with a fingerprint)
        would grow with history as common keys fill up to ``band_cap`` holders."""
        ...

    def key_counts(self, keys: pa.Table) -> pa.Table:
        """KEY_COUNTS: how many stored docs hold each of the given band keys."""
        ...

    def lookup(self, article_ids: Sequence[str]) -> pa.Table:
        """META_COLUMNS rows of ``dedup_docs`` for these article ids (already indexed)."""
        ...

    def members(self, cluster_ids: Sequence[str]) -> pa.Table:
        """META_COLUMNS rows of ``dedup_docs`` for every article of these clusters."""
        ...


class MemoryHistory:
    """``History`` held in Python dicts: for tests, the CLI and benchmarks."""

    def __init__(self, band_cap: int = DedupConfig.band_cap) -> None:
        self.docs: dict[str, dict] = {}
        self.bands: dict[int, list[str]] = defaultdict(list)
        self.by_cluster: dict[str, list[str]] = defaultdict(list)
        self.band_cap = band_cap

    def candidates(self, keys: pa.Table, limit: int | None = None) -> pa.Table:
        shared: Counter = Counter()
        seen: set[tuple[str, int]] = set()  # a (doc, key) pair counts once
        for aid, k in zip(
            keys.column("article_id").to_pylist(), keys.column("band_key").to_pylist(), strict=True
        ):
            holders = self.bands.get(k)
            if not holders or (aid, k) in seen:
                continue
            seen.add((aid, k))
            for cid in holders:
                if cid != aid:
                    shared[(aid, cid)] += 1
        pairs = sorted(
            shared.items(),
            key=lambda p: (p[0][0], -p[1], _order_key(self.docs[p[0][1]]["published"], p[0][1])),
        )
        if limit is not None:
            kept: Counter = Counter()
            top = []
            for pair in pairs:
                if kept[pair[0][0]] < limit:
                    kept[pair[0][0]] += 1
                    top.append(pair)
            pairs = top
        rows = []
        for (aid, cid), n in pairs:
            d = self.docs[cid]
            rows.append(
                {
                    "article_id": aid,
                    "cand_id": cid,
                    "shared": n,
                    "cluster_id": d["cluster_id"],
                    "exact_key": d["exact_key"],
                    "shingles": d["shingles"],
                    "bounds": d["bounds"],
                    "published": d["published"],
                    "title": d.get("title"),
                    "outlet": d.get("outlet"),
                    "url": d.get("url"),
                }
            )
        return pa.Table.from_pylist(rows, schema=CANDIDATES)

    def key_counts(self, keys: pa.Table) -> pa.Table:
        ks = set(keys.column("band_key").to_pylist())
        rows = [{"band_key": k, "n": len(self.bands[k])} for k in ks if k in self.bands]
        return pa.Table.from_pylist(rows, schema=KEY_COUNTS)

    def lookup(self, article_ids: Sequence[str]) -> pa.Table:
        rows = [self.docs[a] for a in article_ids if a in self.docs]
        return pa.Table.from_pylist(rows, schema=DEDUP_DOCS).select(META_COLUMNS)

    def members(self, cluster_ids: Sequence[str]) -> pa.Table:
        rows = [self.docs[a] for c in cluster_ids for a in self.by_cluster.get(c, ())]
        return pa.Table.from_pylist(rows, schema=DEDUP_DOCS).select(META_COLUMNS)

    def add(self, index_rows: dict[str, pa.Table]) -> None:
        """Apply a batch's index rows the way the warehouse does (replace per article_id)."""
        docs = index_rows["dedup_docs"].to_pylist()
        replaced = {d["article_id"] for d in docs if d["article_id"] in self.docs}
        if replaced:
            for k in list(self.bands):
                self.bands[k] = [a for a in self.bands[k] if a not in replaced]
        for d in docs:
            old = self.docs.get(d["article_id"])
            if old is None or old["cluster_id"] != d["cluster_id"]:
                self.by_cluster[d["cluster_id"]].append(d["article_id"])
            self.docs[d["article_id"]] = d
        bt = index_rows["dedup_bands"]
        for k, a in zip(
            bt.column("band_key").to_pylist(), bt.column("article_id").to_pylist(), strict=True
        ):
            self.bands[k].append(a)


# ------------------------------------------------------------------------------ text -> fingerprint
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_NON_ALNUM = re.compile(r"[\W_]+")
_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)]*\s+")


def _has_trigger(line: str) -> bool:
    """Cheap test before splitting a long line into sentences: chrome sentences contain one of
    these (plain ``in`` tests: a regex or a generator here costs more than the split saves)."""
    return (
        ": " in line
        or "read" in line
        or "photo" in line
        or "click" in line
        or " app" in line
        or "sign up" in line
        or "subscri" in line
        or "updated" in line
        or "\u00a9" in line
    )


_SENT_END = re.compile(r"[.!?\u2026\u3002][\"'\u201d\u2019\u00bb)\]]*$")
_LEAD_PUNCT = " \t\"'([*\u2022\u00b7\u201c\u2018-\u2013\u2014>|"
_DATELINE = re.compile(
    r"^[^\W\d][\w .,'\u2019-]{0,60}?\((?:ap|afp|reuters|dpa|upi|efe|ansa|kyodo|"
    r"xinhua|bloomberg|yonhap|kna|epd|apa)\)\s*[-\u2013\u2014]+\s*"
)
# unicode punctuation whose style copies change (quotes, dashes, ellipsis) -> ASCII-level
_UNI_PUNCT = (
    ("\u201c", " "),
    ("\u201d", " "),
    ("\u201e", " "),
    ("\u00ab", " "),
    ("\u00bb", " "),
    ("\u2018", ""),
    ("\u2019", ""),
    ("\u201a", ""),
    ("\u00b4", ""),
    ("\u2013", " "),
    ("\u2014", " "),
    ("\u2015", " "),
    ("\u2026", " "),
    ("\u2022", " "),
    ("\u00b7", " "),
    ("\u3001", " "),
    ("\u3002", ". "),
    ("\uff0c", " "),
    ("\u300c", " "),
    ("\u300d", " "),
)
_ASCII_PUNCT = b'"#$%&()*+,/:;<=>@[\\]^_`{|}~-\t\r\x0b\x0c'
# punctuation -> space; "." -> \x01 (a sentence mark, or deleted when a word continues right
# after it: "U.S." = "US", "3.5" = "35"); "!", "?" and line breaks -> \x02 (always a mark)
_BYTE_TABLE = bytes.maketrans(
    _ASCII_PUNCT + b".!?\n", b" " * len(_ASCII_PUNCT) + b"\x01\x02\x02\x02"
)
_MASK64 = (1 << 64) - 1
_MASK32 = np.uint64(0xFFFFFFFF)
_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xBF58476D1CE4E5B9)
_P3 = np.uint64(0x94D049BB133111EB)
_PB = 0x100000001B3  # odd: invertible modulo 2**64, so substring hashes come from prefixes
_SALT_BAND = 0x1B873593
_SALT_LEAD = 0x5BD1E995
_SALT_EXACT = 0x27D4EB2F


@cache
def _boilerplate() -> re.Pattern[str]:
    lines = (DATA / "dedup_boilerplate.txt").read_text(encoding="utf-8").splitlines()
    pats = [p for p in lines if p.strip() and not p.startswith("#")]
    return re.compile("|".join(f"(?:{p})" for p in pats))


class _Powers:
    """P**j and P**-j modulo 2**64 for j < n, grown on demand (shared by every document)."""

    def __init__(self) -> None:
        self.pw = np.ones(1, np.uint64)
        self.ipw = np.ones(1, np.uint64)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self.pw) < n:
            m = max(n, 2 * len(self.pw))
            with np.errstate(over="ignore"):
                inv = pow(_PB, -1, 1 << 64)
                self.pw = np.concatenate(
                    (np.ones(1, np.uint64), np.cumprod(np.full(m - 1, _PB, np.uint64)))
                )
                self.ipw = np.concatenate(
                    (np.ones(1, np.uint64), np.cumprod(np.full(m - 1, inv, np.uint64)))
                )
                self.pw = self.pw.astype(np.uint64)
                self.ipw = self.ipw.astype(np.uint64)
        return self.pw[:n], self.ipw[:n]


_POWERS = _Powers()


def _token_array(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Stable 64-bit hashes of the words of lower-cased ``text`` and, per word, whether it ends
    a sentence or line. Vectorised (no Python loop per word: this is the hot path at 2,000
    docs/s). Apostrophes and in-word dots are deleted ("U.S." = "US"), other punctuation
    separates words; CJK characters are words of their own."""
    if not text.isascii():
        for a, b in _UNI_PUNCT:
            if a in text:
                text = text.replace(a, b)
        if _CJK_CHAR.search(text):
            text = _CJK_CHAR.sub(r" \g<0> ", text)
    if "per cent" in text:
        text = text.replace("per cent", "percent")
    raw = text.encode("utf-8").translate(_BYTE_TABLE, b"'")
    arr = np.frombuffer(raw, dtype=np.uint8)
    if not len(arr):
        return np.zeros(0, np.uint64), np.zeros(0, bool)
    dot = arr == 1
    if dot.any():
        nxt = np.empty_like(arr)
        nxt[:-1] = arr[1:]
        nxt[-1] = 32
        inword = dot & (nxt > 2) & (nxt != 32)
        if inword.any():
            arr = arr[~inword]
    mark = arr <= 2
    n = len(arr)
    padded = np.zeros(n + 2, bool)
    padded[1:-1] = (arr != 32) & ~mark
    change = np.flatnonzero(padded[1:] != padded[:-1])  # word starts and ends, alternating
    starts = change[0::2]
    ends = change[1::2]
    if not len(starts):
        return np.zeros(0, np.uint64), np.zeros(0, bool)
    # a word ends a sentence when a sentence mark follows it, directly or after one space
    # ('said."' and '(AP).' both become 'word' + mark after translation)
    pad = np.empty(n + 2, np.uint8)
    pad[:n] = arr
    pad[n:] = 2  # the end of the text ends a sentence
    sent_end = (pad[ends] <= 2) | ((pad[ends] == 32) & (pad[ends + 1] <= 2))
    pw, ipw = _POWERS.get(n + 1)
    pref = np.zeros(n + 1, np.uint64)
    np.cumsum((arr.astype(np.uint64) + np.uint64(1)) * pw[:n], out=pref[1:])
    tok = (pref[ends] - pref[starts]) * ipw[starts]
    tok = _mix(tok ^ (ends - starts).astype(np.uint64) * _P1)
    sp_from, sp_to = _spelling()
    if len(sp_from):
        idx = np.minimum(np.searchsorted(sp_from, tok), len(sp_from) - 1)
        hit = sp_from[idx] == tok
        if hit.any():
            tok[hit] = sp_to[idx[hit]]
    return tok, sent_end


@cache
def _spelling() -> tuple[np.ndarray, np.ndarray]:
    """Variant spelling hash -> canonical spelling hash (data file), so UK/US spellings of a
    word do not break shingles."""
    pairs = []
    for line in (DATA / "dedup_spelling.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            a, _, b = line.partition("\t")
            pairs.append((a.strip().lower(), b.strip().lower()))
    if not pairs:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    src = np.array([_single(a) for a, _ in pairs], np.uint64)
    dst = np.array([_single(b) for _, b in pairs], np.uint64)
    order = np.argsort(src)
    return src[order], dst[order]


def _single(word: str) -> int:
    """Hash of one word exactly as ``_token_array`` computes it (without the spelling map)."""
    raw = np.frombuffer(word.encode("utf-8"), np.uint8).astype(np.uint64) + np.uint64(1)
    pw, _ = _POWERS.get(len(raw) + 1)
    with np.errstate(over="ignore"):
        h = np.array([(raw * pw[: len(raw)]).sum()], np.uint64)
        return int(_mix(h ^ np.uint64(len(raw)) * _P1)[0])


def _squash(text: str) -> str:
    return _NON_ALNUM.sub("", text.lower())


def content_lines(
    body: str | None, config: DedupConfig | None = None, title: str | None = None
) -> list[str]:
    """The lower-cased lines of ``body`` that carry reporting: drops bylines, dates, headlines
    (and lines repeating ``title``), captions, related links and chrome lines, and strips agency
    datelines ("LONDON (AP) --")."""
    cfg = config or DedupConfig()
    if not body:
        return []
    bp = _boilerplate()
    title_sq = _squash(title) if title else ""
    title_words = title.count(" ") + 1 if title else 0
    out: list[str] = []
    any_cjk = _CJK_CHAR.search(body) is not None
    for raw in body.lower().split("\n"):
        line = raw.strip()
        if not line:
            continue
        n = line.count(" ") + 1
        if any_cjk and _CJK_CHAR.search(line):  # no spaces between words: count characters
            n = max(n, len(line) // 3)
        if n < cfg.min_line_words:
            continue
        if n <= cfg.title_like_words and not _SENT_END.search(line):
            continue
        if n <= cfg.boilerplate_max_words:
            if bp.match(line.lstrip(_LEAD_PUNCT)):
                continue
        elif _has_trigger(line):
            # a flattened page: chrome lines became sentences inside one long line
            kept = [
                x
                for x in _SENT_SPLIT.split(line)
                if x.count(" ") >= cfg.boilerplate_max_words or not bp.match(x.lstrip(_LEAD_PUNCT))
            ]
            line = " ".join(kept)
            if not line:
                continue
        # a line repeating (part of) the headline: site headers print it, the original does
        # not ("title in line" would also drop lead paragraphs that start like the headline)
        if title_sq and n <= title_words + 2:
            sq = _squash(line)
            if len(sq) >= 12 and sq in title_sq:
                continue
        if not out:  # copies add their own dateline in front of the original's one
            for _ in range(3):
                stripped = _DATELINE.sub("", line, count=1)
                if stripped == line:
                    break
                line = stripped
        out.append(line)
    return out


@dataclass
class Fingerprint:
    """What dedup compares: exact hash, ordered distinct shingle hashes, lookup keys."""

    exact_key: int  # signed 64-bit
    shingles: np.ndarray  # uint32, distinct, in text order, capped
    n_shingles: int
    keys: np.ndarray  # int64, distinct
    bounds: bytes = b""  # packbits(starts a sentence) + packbits(ends a sentence), per shingle
    _sort: SortIndex | None = field(default=None, init=False, repr=False, compare=False)

    def sort_index(self) -> SortIndex:
        """``shingles`` sorted, kept with the document: a batch document is verified against
        up to ``max_verify`` later ones, and sorting is most of what a membership test costs."""
        if self._sort is None:
            self._sort = sort_index(self.shingles)
        return self._sort


class SortIndex(NamedTuple):
    """A shingle array's argsort and its values in that order (the values are distinct, so
    both are unique): membership and positions by binary search instead of ``np.isin``."""

    order: np.ndarray
    values: np.ndarray


def sort_index(shingles: np.ndarray) -> SortIndex:
    order = np.argsort(shingles)
    return SortIndex(order, shingles[order])


_S27, _S30, _S31, _S32 = np.uint64(27), np.uint64(30), np.uint64(31), np.uint64(32)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (arrays only: numpy wraps uint64 array arithmetic silently)."""
    x = (x ^ (x >> _S30)) * _P2
    x = (x ^ (x >> _S27)) * _P3
    return x ^ (x >> _S31)


def _signed(v: int) -> int:
    v &= _MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


_EMPTY = np.zeros(0, np.uint32)


def fingerprint(
    body: str | None, config: DedupConfig | None = None, title: str | None = None
) -> Fingerprint:
    """Fingerprint one body (pure; the same text always gives the same fingerprint)."""
    cfg = config or DedupConfig()
    lines = content_lines(body, cfg, title)
    # nothing but chrome: no fingerprint, so it matches nothing (two such items from one site
    # share all their text, and that text says nothing about the story)
    if not lines:
        return Fingerprint(0, _EMPTY, 0, np.zeros(0, np.int64), b"")
    # only the first fingerprint_cap distinct shingles are kept: a few pages of text suffice
    h, sent_end = _token_array("\n".join(lines)[: cfg.max_chars])
    if not len(h):
        return Fingerprint(0, _EMPTY, 0, np.zeros(0, np.int64), b"")
    exact = _signed(xxhash.xxh3_64_intdigest(h.tobytes()) ^ _SALT_EXACT)
    k = cfg.shingle_size
    if len(h) >= k:
        m = len(h) - k + 1
        s = h[:m].copy()
        for j in range(1, k):
            s = s * _P1 + h[j : j + m]
    else:
        s = np.array([np.bitwise_xor.reduce(h * _P1)], dtype=np.uint64)
    s32 = (_mix(s) >> _S32).astype(np.uint32)
    # sentence bounds per shingle: does its first word start / its last word end a sentence
    m = len(s32)
    s_end = sent_end[len(h) - m :] if len(h) >= k else np.ones(1, bool)
    s_start = np.ones(m, bool)
    if len(h) >= k and m > 1:
        s_start[1:] = sent_end[: m - 1]
    _, first = np.unique(s32, return_index=True)
    n_distinct = len(first)
    first.sort()
    first = first[: cfg.fingerprint_cap]
    sh = s32[first]
    bounds = np.packbits(s_start[first]).tobytes() + np.packbits(s_end[first]).tobytes()
    keys = np.unique(np.append(_keys(sh, cfg), np.int64(exact)))
    return Fingerprint(exact, sh, n_distinct, keys, bounds)


def _fingerprint_chunk(
    args: tuple[list[str | None], list[str | None], DedupConfig],
) -> list[Fingerprint]:
    bodies, titles, cfg = args
    return [fingerprint(b, cfg, t) for b, t in zip(bodies, titles, strict=True)]


def fingerprint_many(
    bodies: Sequence[str | None], titles: Sequence[str | None], config: DedupConfig
) -> list[Fingerprint]:
    """Fingerprints of many bodies, in ``config.workers`` processes when the batch is large
    (fingerprinting is most of the stage's time and embarrassingly parallel)."""
    if config.workers <= 1 or len(bodies) < 4000:
        return _fingerprint_chunk((list(bodies), list(titles), config))
    from concurrent.futures import ProcessPoolExecutor

    step = 2000
    chunks = [
        (list(bodies[i : i + step]), list(titles[i : i + step]), config)
        for i in range(0, len(bodies), step)
    ]
    with ProcessPoolExecutor(max_workers=config.workers) as pool:
        return [fp for part in pool.map(_fingerprint_chunk, chunks) for fp in part]


_EMPTY_BIN = np.uint64(1 << 32)


def _keys(sh: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """Band keys (one-permutation MinHash: the minimum of each of ``bands * band_rows`` hash
    bins; a band whose bins are not all filled gives no key) + content-defined lead keys."""
    nb = cfg.bands * cfg.band_rows
    v = _mix(sh.astype(np.uint64) * _P3 + np.uint64(_SALT_BAND))
    sig = np.full(nb, _EMPTY_BIN, np.uint64)
    np.minimum.at(sig, ((v >> _S32) % np.uint64(nb)).astype(np.intp), v & _MASK32)
    sig = sig.reshape(cfg.bands, cfg.band_rows)
    full = (sig != _EMPTY_BIN).all(axis=1)
    sig = sig[full]
    kb = np.flatnonzero(full).astype(np.uint64) * _P1 + np.uint64(_SALT_BAND)
    for r in range(cfg.band_rows):
        kb = (kb ^ sig[:, r]) * _P2
    kb = _mix(kb)
    lead = sh[: cfg.lead_window]
    lead = lead[lead % np.uint32(cfg.lead_mod) == 0].astype(np.uint64)
    kl = _mix(lead * _P3 + np.uint64(_SALT_LEAD))
    return np.concatenate([kb, kl]).view(np.int64)


def _unpack_bounds(bounds: bytes | None, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    if not bounds:
        return None
    bits = np.unpackbits(np.frombuffer(bounds, np.uint8))
    half = len(bits) // 2
    return bits[:n].astype(bool), bits[half : half + n].astype(bool)


def _clean_runs(
    mask: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    small: np.ndarray,
    big: np.ndarray,
    big_pos: np.ndarray,
    big_bounds: tuple[np.ndarray, np.ndarray] | None,
    cfg: DedupConfig,
) -> bool:
    """True when every shared run of the smaller text starts and ends at a sentence boundary,
    or close to another shared run (a typo, a caption or link inserted in between).

    Two different stories sharing half a sentence (a quote, a stock phrase, a spliced sentence)
    fail: their shared run stops in the middle of a sentence and never resumes. A typo in the
    first or last words of a teaser looks the same, so there the other text decides: the
    sentence must start (end) at the same distance from the shared run in both texts.
    """
    starts, ends = bounds
    gap = 3 * cfg.shingle_size
    k = cfg.shingle_size
    d = np.diff(mask.view(np.int8))
    run_ends = np.flatnonzero(d == -1)  # last shared shingle of a run (followed by unshared)
    run_starts = np.flatnonzero(d == 1) + 1  # first shared shingle after an unshared one
    bad_ends = bad_starts = np.zeros(0, np.int64)
    if len(run_ends):
        nxt = np.searchsorted(run_starts, run_ends)
        resumes = np.zeros(len(run_ends), bool)
        ok = nxt < len(run_starts)
        resumes[ok] = run_starts[nxt[ok]] - run_ends[ok] <= gap
        bad_ends = run_ends[~(ends[run_ends] | resumes)]
    if len(run_starts):
        prv = np.searchsorted(run_ends, run_starts) - 1
        resumed = np.zeros(len(run_starts), bool)
        ok = prv >= 0
        resumed[ok] = run_starts[ok] - run_ends[prv[ok]] <= gap
        bad_starts = run_starts[~(starts[run_starts] | resumed)]
    if not len(bad_ends) and not len(bad_starts):
        return True
    if big_bounds is None or len(bad_ends) + len(bad_starts) > 1:
        return False
    b_starts, b_ends = big_bounds
    n = len(small)
    for e in bad_ends.tolist():  # only the last run may end early (typo in the last words)
        t = n - 1 - e
        if len(run_starts) and run_starts[-1] > e or t > k:
            return False
        j = int(big_pos[e])
        if j + t >= len(big) or not b_ends[j + t] or b_ends[j : j + t].any():
            return False
    for s0 in bad_starts.tolist():  # only the first run may start late (typo in first words)
        if len(run_ends) and run_ends[0] < s0 or s0 > k:
            return False
        j = int(big_pos[s0])
        if j - s0 < 0 or not b_starts[j - s0] or b_starts[j - s0 + 1 : j + 1].any():
            return False
    return True


def compare(
    a: np.ndarray,
    b: np.ndarray,
    config: DedupConfig | None = None,
    a_bounds: bytes | None = None,
    b_bounds: bytes | None = None,
    a_title: str | None = None,
    b_title: str | None = None,
    same_site: bool = True,
    *,
    a_sort: SortIndex | None = None,
    b_sort: SortIndex | None = None,
) -> tuple[str | None, float]:
    """Verify a candidate pair from their shingle arrays: ('near'|'contained'|'lead'|None, score).

    'near': Jaccard >= near_jaccard. 'contained': the smaller text lies inside the larger one
    (>= ``containment``, or >= ``weak_containment`` when short inserted stretches such as inline
    links are not counted) AND the shared text starts at the beginning of both (a teaser is the
    lead of its story; a follow-up re-uses background from the middle or the end) AND every
    shared run starts and ends at a sentence boundary (``*_bounds``; two stories sharing half a
    sentence do not). 'lead': both texts open with the same whole sentences and the headlines
    (``*_title``) agree, less strictly across sites (``same_site`` false; see
    ``_opening_match``); the score is then the plain containment.

    ``a_sort`` / ``b_sort`` (``sort_index`` of ``a`` / ``b``) save re-sorting an array that is
    compared many times (dedup verifies a document against up to ``max_verify`` others).
    """
    cfg = config or DedupConfig()
    na, nb = len(a), len(b)
    if not na or not nb:
        return None, 0.0
    if na <= nb:
        small, big, small_bounds, big_bounds = a, b, a_bounds, b_bounds
        small_sort, big_sort = a_sort, b_sort
    else:
        small, big, small_bounds, big_bounds = b, a, b_bounds, a_bounds
        small_sort, big_sort = b_sort, a_sort
    if small_sort is None:
        small_sort = sort_index(small)
    if big_sort is None:
        big_sort = sort_index(big)
    # exact membership (shingles are distinct) by binary search of the sorted small array in
    # the sorted big one: sorted keys keep each search short and in cache, and np.isin, which
    # sorts both arrays again on every call, was most of the verification time
    at = np.searchsorted(big_sort.values, small_sort.values)
    np.minimum(at, len(big) - 1, out=at)
    hit = big_sort.values[at] == small_sort.values
    inter = int(np.count_nonzero(hit))
    if inter < cfg.min_overlap and not (inter == na == nb):
        return None, 0.0
    mask = np.empty(len(small), bool)
    mask[small_sort.order] = hit
    big_pos = np.empty(len(small), np.intp)  # where each small shingle sits in big (if shared)
    big_pos[small_sort.order] = big_sort.order[at]
    jac = inter / (na + nb - inter)
    if jac >= cfg.near_jaccard:
        if _open_alike(mask, big_pos, cfg):
            return "near", jac
        return None, 0.0  # shared text, different openings: a site box on two pages
    cont = inter / len(small)
    # containment needs substance: half a sentence shared by two stories is ~10 shingles
    if cont >= cfg.weak_containment and inter >= cfg.min_contained:
        kind, score = _contained(mask, inter, small, big, big_pos, small_bounds, big_bounds, cfg)
        if kind is not None:
            return kind, score
    if inter >= cfg.lead_min_shingles and _opening_match(
        mask, small, big_pos, small_bounds, (a_title, b_title), same_site, cfg
    ):
        return "lead", cont
    return None, 0.0


def _open_alike(mask: np.ndarray, big_pos: np.ndarray, cfg: DedupConfig) -> bool:
    """Is the opening of one text (its first ``lead_offset`` shingles) found in the other?

    Copies of a story keep its lead (one of them may have lost it, or carry chrome above it,
    but not both). Two short pages of one site that carry the same related-story cards or
    most-read box can share most of their text, yet each opens with its own story.
    """
    k = cfg.lead_offset + 1
    # an opening shingle of the larger text is in the smaller one iff a shared shingle sits there
    return bool(mask[:k].any() or (big_pos[mask] < k).any())


def _contained(
    mask: np.ndarray,
    inter: int,
    small: np.ndarray,
    big: np.ndarray,
    big_pos: np.ndarray,
    small_bounds: bytes | None,
    big_bounds: bytes | None,
    cfg: DedupConfig,
) -> tuple[str | None, float]:
    """The 'contained' test of ``compare`` (containment already >= ``weak_containment``)."""
    cont = inter / len(small)
    start_small = int(mask.argmax())
    if start_small > cfg.lead_offset:
        return None, 0.0
    span = max(cfg.lead_span, len(big) // 8)
    if not (big_pos[mask] < span).any():  # no shared shingle in the larger text's opening
        return None, 0.0
    bounds = _unpack_bounds(small_bounds, len(small))
    if bounds is not None and not _clean_runs(
        mask, bounds, small, big, big_pos, _unpack_bounds(big_bounds, len(big)), cfg
    ):
        return None, 0.0
    if cont >= cfg.containment:
        return "contained", cont
    # a teaser of a flattened page keeps inline chrome (links, captions) between its sentences:
    # short unshared stretches between shared runs are insertions, not different text
    d = np.diff(mask.view(np.int8))
    gap_starts = np.flatnonzero(d == -1) + 1
    gap_ends = np.flatnonzero(d == 1) + 1
    if len(gap_starts) and len(gap_ends):
        gap_ends = gap_ends[gap_ends > gap_starts[0]]
        lengths = gap_ends - gap_starts[: len(gap_ends)]
        inserted = int(lengths[lengths <= 3 * cfg.shingle_size].sum())
        adjusted = inter / (len(small) - inserted)
        if adjusted >= cfg.containment:
            return "contained", adjusted
    return None, 0.0


_TITLE_STOP = frozenset(
    "the and for with from that this into over after about than says said will are was has "
    "have its his her their not but who what how why when new".split()
)


def _title_words(title: str | None) -> set[str]:
    return {
        w
        for w in re.findall(r"\w+", (title or "").casefold())
        if len(w) > 2 and w not in _TITLE_STOP
    }


def _titles_agree(a: str | None, b: str | None, share: float) -> bool:
    """Do two headlines name the same story (``share`` of the shorter one's words, at least two,
    in the other)? Copies edit headlines (case, prefixes, site suffixes, shortening, rewrites)
    but keep their key words."""
    wa, wb = _title_words(a), _title_words(b)
    if len(wa) < 2 or len(wb) < 2:
        return False
    shared = len(wa & wb)
    return shared >= 2 and shared >= share * min(len(wa), len(wb))


def _opening_match(
    mask: np.ndarray,
    small: np.ndarray,
    big_pos: np.ndarray,
    small_bounds: bytes | None,
    titles: tuple[str | None, str | None],
    same_site: bool,
    cfg: DedupConfig,
) -> bool:
    """Both texts open with the same run of whole sentences and their headlines agree.

    For a teaser whose page appended foreign text after it (related-story cards with other
    stories' leads, most-read boxes): it is no longer contained in its story, but it still
    *opens* like it. The opening block is the shared text from the start of the smaller text
    up to its first unshared stretch longer than a few shingles; it must be substantial (whole
    sentences, ``lead_min_shingles``, ``lead_min_share`` of the smaller text), sit at the start
    of the larger text in the same order, and end where a sentence ends. Follow-ups re-use
    background, not the opening; a brief whose cards quote another story's lead shares that
    text in its middle; pages of one site opening with the same chrome have different
    headlines. Chrome is a site's own, so across sites a headline rewritten by the other
    outlet only needs to share its key words (``lead_title_share_other_site``).
    """
    k = cfg.shingle_size
    idx = np.flatnonzero(mask)
    if not len(idx) or idx[0] > cfg.lead_offset:
        return False
    breaks = np.flatnonzero(np.diff(idx) > 3 * k + 1)
    end = int(idx[breaks[0]]) + 1 if len(breaks) else int(idx[-1]) + 1
    block = idx[idx < end]
    n = len(block)
    if n < cfg.lead_min_shingles or n < cfg.lead_min_share * len(small):
        return False
    if n < cfg.containment * (end - int(block[0])):
        return False
    # in the larger text the block is its opening too, in the same order
    pos = big_pos[block]
    if int(pos.min()) > cfg.lead_offset or int(pos.max()) > 2 * end + cfg.lead_offset:
        return False
    if np.count_nonzero(np.diff(pos) > 0) < 0.9 * (n - 1):
        return False
    # whole sentences: the block ends where a sentence ends (its start may differ by an edited
    # first word, e.g. a dateline or "Ukraine's" for "Ukrainian")
    bounds = _unpack_bounds(small_bounds, len(small))
    if bounds is not None:
        ends = bounds[1]
        if not ends[end - 1] or int(ends[block].sum()) < cfg.lead_min_sentences:
            return False
    share = cfg.lead_title_share if same_site else cfg.lead_title_share_other_site
    return _titles_agree(titles[0], titles[1], share)


# ------------------------------------------------------------------------------ the stage
@dataclass
class DedupResult:
    """Output of ``dedup_batch``; the loader writes all of it in one transaction."""

    assignments: pa.Table  # ASSIGNMENTS: one row per input article kept
    clusters: pa.Table  # CLUSTERS rows of every touched cluster (upsert by cluster_id)
    syndication: pa.Table  # ARTICLE_SYNDICATION rows of touched clusters (upsert by article)
    index_rows: dict[str, pa.Table]  # new rows for dedup_docs and dedup_bands
    rejects: pa.Table  # REJECTS rows (stage 'dedup'): repeated article ids in one batch
    stats: dict = field(default_factory=dict)


# the ARTICLES_CORE columns ``dedup_batch`` reads: a caller holding a whole run's articles
# need not hold the others
INPUT_COLUMNS = (
    "article_id",
    "url",
    "canonical_url",
    "outlet",
    "title",
    "body",
    "published",
    "published_at",
    "origin_credit",
    "syndication_hints",
    "content_hash",
    "fetched_at",
)


def _order_key(published: date | None, article_id: str) -> tuple[date, str]:
    return (published or date.max, article_id)


def _first_seen(fetched: datetime | None, published: date | None) -> datetime | None:
    if fetched is not None:
        return fetched if fetched.tzinfo else fetched.replace(tzinfo=UTC)
    if published is not None:
        return datetime.combine(published, time(0), tzinfo=UTC)
    return None


def _site(outlet: str | None, url: str | None) -> str:
    """Which site published a copy: its outlet name, else the host of its URL."""
    if outlet:
        return _squash(outlet)
    host = url.split("://", 1)[-1].split("/", 1)[0] if url else ""
    return host.lower().removeprefix("www.")


def _utc(value: datetime | None) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


HISTORY_CHUNK = 10_000  # documents per history query in dedup_batch
STORED_SORTS = 4_096  # stored candidates' sorted shingles kept at once (~12 KB each at most)


def _history_for(
    docs: list[tuple[str, np.ndarray]], history: History, cfg: DedupConfig
) -> tuple[dict[str, list[tuple]], dict[int, int]]:
    """Stored candidates (best ``max_verify`` per doc) and holder counts of these docs' keys."""
    keys_tbl = pa.table(
        {
            "article_id": pa.array([a for a, ks in docs for _ in range(len(ks))], pa.string()),
            "band_key": pa.array(
                np.concatenate([ks for _, ks in docs]) if docs else np.zeros(0, np.int64)
            ),
        },
        schema=KEYS,
    )
    cands: dict[str, list[tuple]] = defaultdict(list)
    if not docs:
        return cands, {}
    ct = history.candidates(keys_tbl, limit=cfg.max_verify)
    for r in zip(*(ct.column(c).to_pylist() for c in CANDIDATES.names), strict=True):
        aid, cid, shared, cl, ek, sh, bd, pub, ttl, outlet, url = r
        if cid == aid:
            continue
        site = _site(outlet, url)
        cands[aid].append((shared, _order_key(pub, cid), cid, cl, ek, sh, bd, None, ttl, site))
    kc = history.key_counts(keys_tbl)
    counts = dict(zip(kc.column("band_key").to_pylist(), kc.column("n").to_pylist(), strict=True))
    return cands, counts


def _fingerprint_rows(
    body_col: pa.ChunkedArray | None, titles: list, rows: list[int], cfg: DedupConfig
) -> list[Fingerprint]:
    """Fingerprints of ``rows``, turning bodies into Python strings a slice at a time: the
    whole batch's bodies as str objects would be the stage's largest allocation."""
    out: list[Fingerprint] = []
    step = 20_000 if cfg.workers > 1 else 2_000  # the pool path wants big slices
    for lo in range(0, len(rows), step):
        part = rows[lo : lo + step]
        if body_col is None:
            bodies: list[str | None] = [None] * len(part)
        else:
            bodies = body_col.take(pa.array(part, pa.int64())).to_pylist()
        out.extend(fingerprint_many(bodies, [titles[i] for i in part], cfg))
    return out


def _col(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist() if name in table.column_names else [None] * len(table)


def _config_key(cfg: DedupConfig) -> int:
    """Hash of every knob but ``workers``: fingerprints made under other settings are not used
    (more knobs than the fingerprint reads, so a stale row can only cost time, never results)."""
    knobs = sorted((k, v) for k, v in vars(cfg).items() if k != "workers")
    return _signed(xxhash.xxh3_64_intdigest(repr(knobs).encode()))


def _title_hash(title: str | None) -> int | None:
    return None if title is None else _signed(xxhash.xxh3_64_intdigest(title.encode("utf-8")))


def fingerprint_table(articles: pa.Table, config: DedupConfig | None = None) -> pa.Table:
    """FINGERPRINTS rows of ``articles`` (``article_id``, ``body``, ``title``,
    ``content_hash``): exactly what ``dedup_batch`` would compute for them, so the CPU-bound
    part of the stage runs in parallel where the bodies already are."""
    cfg = config or DedupConfig()
    n = articles.num_rows
    body_col = articles.column("body") if "body" in articles.column_names else None
    titles = _col(articles, "title")
    fps = _fingerprint_rows(body_col, titles, list(range(n)), cfg)
    footers: list[str | None] = [None] * n
    if body_col is not None:
        for lo in range(0, n, 2_000):
            for j, b in enumerate(body_col.slice(lo, 2_000).to_pylist()):
                footers[lo + j] = syndication.footer_credit(b)
    return pa.table(
        {
            "article_id": pa.array(_col(articles, "article_id"), pa.string()),
            "content_hash": pa.array(_col(articles, "content_hash"), pa.string()),
            "title_hash": pa.array([_title_hash(t) for t in titles], pa.int64()),
            "config_key": pa.array([_config_key(cfg)] * n, pa.int64()),
            "exact_key": pa.array([fp.exact_key for fp in fps], pa.int64()),
            "n_shingles": pa.array([fp.n_shingles for fp in fps], pa.int32()),
            "shingles": pa.array([fp.shingles.astype("<u4").tobytes() for fp in fps], pa.binary()),
            "keys": pa.array([fp.keys.astype("<i8").tobytes() for fp in fps], pa.binary()),
            "bounds": pa.array([fp.bounds for fp in fps], pa.binary()),
            "footer_credit": pa.array(footers, pa.string()),
        },
        schema=FINGERPRINTS,
    )


def _matches(
    fingerprints: pa.Table,
    rows: list[int],
    ids: list,
    hashes: list,
    titles: list,
    cfg: DedupConfig,
) -> dict[int, int]:
    """Article row -> the first ``fingerprints`` row made from the same article, content
    hash, headline and config: the only rows that may stand in for fingerprinting here."""
    want = {ids[i]: i for i in rows if hashes[i] is not None}
    if not want or not fingerprints.num_rows:
        return {}
    ckey = _config_key(cfg)
    found: dict[int, int] = {}
    for r, (a, h, th, ck) in enumerate(
        zip(
            *(fingerprints.column(c).to_pylist() for c in FINGERPRINTS.names[:4]),
            strict=True,
        )
    ):
        i = want.get(a)
        if i is not None and i not in found and h == hashes[i] and ck == ckey:
            if th == _title_hash(titles[i]):
                found[i] = r
    return found


def covers(fingerprints: pa.Table, articles: pa.Table, config: DedupConfig | None = None) -> bool:
    """Whether ``dedup_batch(articles, ..., fingerprints=fingerprints)`` can do without the
    bodies: every article has a usable fingerprint row (the same rule dedup applies)."""
    ids = _col(articles, "article_id")
    rows = list(range(len(ids)))
    hashes = _col(articles, "content_hash")
    found = _matches(
        fingerprints, rows, ids, hashes, _col(articles, "title"), config or DedupConfig()
    )
    return len(found) == len(set(ids))


def _supplied(
    fingerprints: pa.Table,
    rows: list[int],
    ids: list,
    hashes: list,
    titles: list,
    cfg: DedupConfig,
) -> tuple[dict[int, Fingerprint], dict[int, str | None]]:
    """Fingerprints (and footer credits) of ``rows`` found in ``fingerprints`` for the same
    article, content hash, headline and config; other rows must be fingerprinted here."""
    found = _matches(fingerprints, rows, ids, hashes, titles, cfg)
    if not found:
        return {}, {}
    part = fingerprints.take(pa.array(list(found.values()), pa.int64()))
    cols = [part.column(c).to_pylist() for c in FINGERPRINTS.names[4:]]
    fps: dict[int, Fingerprint] = {}
    footers: dict[int, str | None] = {}
    for i, (ek, nsh, sh, ks, bd, fc) in zip(found, zip(*cols, strict=True), strict=True):
        fps[i] = Fingerprint(
            ek,
            np.frombuffer(sh or b"", "<u4").astype(np.uint32),
            nsh,
            np.frombuffer(ks or b"", "<i8").astype(np.int64),
            bd or b"",
        )
        footers[i] = fc
    return fps, footers


def _as_u32(blob: bytes | None) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u4") if blob else np.zeros(0, np.uint32)


def dedup_batch(
    articles: pa.Table,
    history: History,
    run_id: str,
    config: DedupConfig | None = None,
    fingerprints: pa.Table | None = None,
) -> DedupResult:
    """Assign every article of ``articles`` (ARTICLES_CORE) to a story cluster.

    Articles already indexed with the same content keep their cluster and produce no rows;
    changed ones keep their cluster and get a fresh fingerprint. Near-duplicates are kept (they
    get the cluster_id); only a repeated article_id inside the batch is rejected.

    ``fingerprints`` (FINGERPRINTS, from ``fingerprint_table``, e.g. made in parallel by the
    workers that hold the bodies) saves fingerprinting here: a row is used for an article with
    the same article_id, content_hash and title under the same config, and then that article's
    body is not read at all. Any other article is fingerprinted from its body as without it
    (so ``body`` may be left out only when every new or changed article has its row).
    """
    cfg = config or DedupConfig()
    clock = [("start", perf_counter())]
    n_in = articles.num_rows
    ids = _col(articles, "article_id")
    # -- repeated article ids inside the batch: keep the first row
    seen: set[str] = set()
    keep_rows: list[int] = []
    rejected: list[dict] = []
    urls = _col(articles, "url")
    for i, a in enumerate(ids):
        if a in seen:
            rejected.append(
                {
                    "item_id": a,
                    "url": urls[i],
                    "stage": STAGE,
                    "reason": "duplicate_article_id",
                    "detail": "same article id twice in one batch; first row kept",
                }
            )
            continue
        seen.add(a)
        keep_rows.append(i)
    if len(keep_rows) < n_in:
        articles = articles.take(keep_rows)
        ids = _col(articles, "article_id")
    body_col = articles.column("body") if "body" in articles.column_names else None
    published = _col(articles, "published")
    hashes = _col(articles, "content_hash")
    fetched = _col(articles, "fetched_at")
    meta_src = {
        c: _col(articles, c)
        for c in (
            "url",
            "canonical_url",
            "outlet",
            "origin_credit",
            "syndication_hints",
            "published_at",
        )
    }

    # -- already indexed?
    known = {r["article_id"]: r for r in history.lookup(ids).to_pylist()}
    need = [
        i
        for i, a in enumerate(ids)
        if not (a in known and hashes[i] is not None and known[a]["content_hash"] == hashes[i])
    ]
    titles = _col(articles, "title")
    sites = [_site(o, u) for o, u in zip(meta_src["outlet"], meta_src["url"], strict=True)]
    fps_all: dict[int, Fingerprint] = {}
    footers: dict[int, str | None] = {}
    if fingerprints is not None:
        fps_all, footers = _supplied(fingerprints, need, ids, hashes, titles, cfg)
    rest = [i for i in need if i not in fps_all]
    if rest and fingerprints is not None and body_col is None:
        # without a body the article would get an empty fingerprint and a cluster of its own
        # for good (cluster ids never change): refuse rather than store that
        raise ValueError(
            f"{len(rest)} articles (e.g. {ids[rest[0]]!r}) have no matching row in "
            "fingerprints and no body column to fingerprint them from"
        )
    fps_all.update(zip(rest, _fingerprint_rows(body_col, titles, rest, cfg), strict=True))
    out_assign: dict[str, dict] = {}
    todo: list[int] = []
    changed: dict[int, dict] = {}
    fps: dict[int, Fingerprint] = {}
    for i, a in enumerate(ids):
        old = known.get(a)
        if old is not None and hashes[i] is not None and old["content_hash"] == hashes[i]:
            out_assign[a] = {k: old[k] for k in ("cluster_id", "dup_kind", "dup_of", "similarity")}
            continue
        fp = fps_all[i]
        if old is not None and (hashes[i] is None and old["exact_key"] == fp.exact_key):
            out_assign[a] = {k: old[k] for k in ("cluster_id", "dup_kind", "dup_of", "similarity")}
            continue
        fps[i] = fp
        todo.append(i)
        if old is not None:
            changed[i] = old
    todo.sort(key=lambda i: _order_key(published[i], ids[i]))

    clock.append(("fingerprint", perf_counter()))
    # -- sequential assignment in (published, article_id) order; history is asked one chunk
    # of documents at a time (one join per chunk), so the candidate rows held at once, each
    # with a stored fingerprint, are bounded by the chunk, not by batch size x history
    held: dict[int, list[int]] = defaultdict(list)
    band_keys: list[int] = []
    band_ids: list[str] = []
    order_of = {i: _order_key(published[i], ids[i]) for i in todo}
    cap = cfg.band_cap
    hist_cands: dict[str, list[tuple]] = {}
    hist_counts: dict[int, int] = {}
    t_hist = 0.0
    # sorted shingles of stored candidates: one stored copy is often a candidate of many new ones
    stored: dict[str, tuple[np.ndarray, SortIndex]] = {}
    for pos, i in enumerate(todo):
        if pos % HISTORY_CHUNK == 0:
            t_q = perf_counter()
            hist_cands, hist_counts = _history_for(
                [(ids[j], fps[j].keys) for j in todo[pos : pos + HISTORY_CHUNK]], history, cfg
            )
            t_hist += perf_counter() - t_q
        a = ids[i]
        fp = fps[i]
        cands = list(hist_cands.get(a, ()))
        klist = fp.keys.tolist()
        local: dict[int, int] = {}
        for k in klist:
            for j in held.get(k, ()):
                local[j] = local.get(j, 0) + 1
        for j, n in local.items():
            cands.append(
                (
                    n,
                    order_of[j],
                    ids[j],
                    out_assign[ids[j]]["cluster_id"],
                    fps[j].exact_key,
                    None,
                    fps[j].bounds,
                    fps[j],
                    titles[j],
                    sites[j],
                )
            )
        cands.sort(key=lambda c: (-c[0], c[1]))
        best: tuple | None = None  # (rank, score, order, cand_id, cluster, kind)
        for _shared, order, cid, cl, ek, blob, bounds, cfp, ttl, site in cands[: cfg.max_verify]:
            if ek == fp.exact_key and fp.n_shingles:
                best = (2, 1.0, order, cid, cl, "exact")  # most shared keys: nothing beats it
                break
            if best is not None and best[4] == cl:
                continue  # this story already matched: a second look changes nothing
            if cfp is not None:
                other, other_sort = cfp.shingles, cfp.sort_index()
            else:
                got = stored.get(cid)
                if got is None:
                    if len(stored) >= STORED_SORTS:
                        stored.clear()
                    arr = _as_u32(blob)
                    got = stored[cid] = (arr, sort_index(arr))
                other, other_sort = got
            kind, score = compare(
                fp.shingles,
                other,
                cfg,
                fp.bounds,
                bounds,
                titles[i],
                ttl,
                sites[i] == site,
                a_sort=fp.sort_index(),
                b_sort=other_sort,
            )
            if kind is None:
                continue
            if kind == "lead":  # opening match: the shorter page is the teaser
                kind = "teaser" if len(fp.shingles) < len(other) else "near"
            elif kind == "contained":
                small = len(fp.shingles) <= len(other)
                ratio = min(len(fp.shingles), len(other)) / max(len(fp.shingles), len(other))
                kind = "teaser" if small and ratio < cfg.teaser_ratio else "near"
            if best is None or score > best[1] or (score == best[1] and order < best[2]):
                best = (1, score, order, cid, cl, kind)
        if i in changed:  # a changed article keeps its story
            old = changed[i]
            out_assign[a] = {k: old[k] for k in ("cluster_id", "dup_kind", "dup_of", "similarity")}
        elif best is None:
            out_assign[a] = {
                "cluster_id": a,
                "dup_kind": "unique",
                "dup_of": None,
                "similarity": None,
            }
        else:
            out_assign[a] = {
                "cluster_id": best[4],
                "dup_kind": best[5],
                "dup_of": best[3],
                "similarity": float(best[1]),
            }
        # this document now holds the keys that still have room (the first band_cap holders)
        for k in klist:
            lst = held[k]
            if len(lst) + hist_counts.get(k, 0) < cap:
                lst.append(i)
                band_keys.append(k)
                band_ids.append(a)

    clock.append(("assign", perf_counter()))
    # -- index rows
    doc_rows = []
    for i in todo:
        a = ids[i]
        asg = out_assign[a]
        doc_rows.append(
            {
                "article_id": a,
                "cluster_id": asg["cluster_id"],
                "dup_kind": asg["dup_kind"],
                "dup_of": asg["dup_of"],
                "similarity": asg["similarity"],
                "exact_key": fps[i].exact_key,
                "n_shingles": fps[i].n_shingles,
                "shingles": fps[i].shingles.astype("<u4").tobytes(),
                "bounds": fps[i].bounds,
                "outlet": meta_src["outlet"][i],
                "url": meta_src["url"][i],
                "canonical_url": meta_src["canonical_url"][i],
                "published": published[i],
                "origin_credit": meta_src["origin_credit"][i],
                "syndication_hints": meta_src["syndication_hints"][i],
                "content_hash": hashes[i],
                "first_seen": _first_seen(fetched[i], published[i]),
                "run_id": run_id,
                "title": titles[i],
                "footer_credit": footers[i]
                if i in footers
                else syndication.footer_credit(
                    body_col[i].as_py() if body_col is not None else None
                ),
                "published_at": _utc(meta_src["published_at"][i]),
            }
        )
    docs_tbl = pa.Table.from_pylist(doc_rows, schema=DEDUP_DOCS)
    bands_tbl = pa.table(
        {
            "band_key": pa.array(band_keys, pa.int64()),
            "article_id": pa.array(band_ids, pa.string()),
        },
        schema=DEDUP_BANDS,
    )

    clock.append(("index_rows", perf_counter()))
    # -- clusters touched by this batch: re-attribute from index metadata only
    touched = sorted({out_assign[ids[i]]["cluster_id"] for i in todo})
    clusters_tbl, synd_tbl = _attribute(touched, history, doc_rows, run_id)

    clock.append(("attribute", perf_counter()))
    assign_tbl = pa.Table.from_pylist(
        [{"article_id": a, **out_assign[a]} for a in ids], schema=ASSIGNMENTS
    )
    kinds_all = Counter(r["dup_kind"] for r in out_assign.values())
    stats = {
        "in": n_in,
        "kept": len(ids),
        "rejected": len(rejected),
        "indexed": len(todo),
        "unchanged": len(ids) - len(todo),
        "dup_kind": dict(kinds_all),
        "clusters_touched": len(touched),
        "band_rows": bands_tbl.num_rows,
        "seconds": {name: round(t - clock[i][1], 3) for i, (name, t) in enumerate(clock[1:])}
        | {"history queries (in assign)": round(t_hist, 3)},
    }
    return DedupResult(
        assignments=assign_tbl,
        clusters=clusters_tbl,
        syndication=synd_tbl,
        index_rows={"dedup_docs": docs_tbl, "dedup_bands": bands_tbl},
        rejects=rejects_table(rejected, run_id),
        stats=stats,
    )


def _attribute(
    touched: list[str], history: History, new_rows: list[dict], run_id: str
) -> tuple[pa.Table, pa.Table]:
    members: dict[str, dict[str, dict]] = defaultdict(dict)
    if touched:
        for r in history.members(touched).to_pylist():
            members[r["cluster_id"]][r["article_id"]] = r
    for r in new_rows:
        members[r["cluster_id"]][r["article_id"]] = r
    crow, srows = [], []
    for cid in touched:
        row, edges = syndication.attribute(list(members[cid].values()))
        row["run_id"] = run_id
        crow.append(row)
        for e in edges:
            e["run_id"] = run_id
        srows.extend(edges)
    return (
        pa.Table.from_pylist(crow, schema=CLUSTERS),
        pa.Table.from_pylist(srows, schema=ARTICLE_SYNDICATION),
    )


def assignments_by_id(results: Iterable[DedupResult]) -> dict[str, str]:
    """article_id -> cluster_id over several results (later results win)."""
    out: dict[str, str] = {}
    for r in results:
        out.update(
            zip(
                r.assignments.column("article_id").to_pylist(),
                r.assignments.column("cluster_id").to_pylist(),
                strict=True,
            )
        )
    return out
