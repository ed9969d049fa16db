"""Dedup stage: group copies of the same story into clusters with a stable ``cluster_id``.

Why this shape:

* **Copies, not topics.** A syndicated copy keeps the reporting and changes the chrome around it
  (site header/footer, "Read also" links, newsletter prompts, credits), the headline, quotes and
  spelling, and sometimes cuts the story to a teaser. So documents are compared on their
  *content lines* (chrome-like lines removed, see ``tasks/data/dedup_boilerplate.txt``) as sets of
  word 5-gram hashes; the headline is ignored because different stories share generic ones.
* **Two ways to be a copy.** Jaccard >= ``near_jaccard`` (full copies with edits), or the smaller
  text contained in the larger one (>= ``containment``) *and* starting where the larger one
  starts (teasers and briefs are leads of their story). The lead condition is what keeps
  follow-ups apart: they re-use the *background* paragraphs of an earlier story, not its lead.
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
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from functools import cache
from pathlib import Path
from typing import Protocol

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
    num_perm: int = 60  # MinHash permutations = bands * band_rows
    band_rows: int = 3  # 20 bands of 3 rows: J=0.5 found with p~0.93 (leads cover teasers)
    lead_window: int = 40  # first content shingles that can become lead keys
    lead_mod: int = 2  # content-defined sampling of lead shingles (same rule on every doc)
    band_cap: int = 64  # documents stored per key: chrome keys cannot blow up the join
    fingerprint_cap: int = 1024  # shingles stored per document (its first distinct ones)
    near_jaccard: float = 0.5  # full copies
    containment: float = 0.7  # smaller text inside the larger one (teasers, trimmed copies)
    lead_probe: int = 16  # first shingles of the smaller text that must appear ...
    lead_span: int = 64  # ... among the first shingles of the larger one
    min_overlap: int = 6  # shared shingles needed for any match
    teaser_ratio: float = 0.5  # size ratio under which a contained copy is called a teaser
    max_verify: int = 32  # candidates verified per document, most shared keys first
    boilerplate_max_words: int = 60  # longer lines/sentences are never treated as chrome
    min_line_words: int = 6  # shorter lines are chrome (bylines, dates, "Share", captions)
    title_like_words: int = 15  # lines this short without end punctuation are headlines/links

    @property
    def bands(self) -> int:
        return self.num_perm // self.band_rows


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
        ("outlet", pa.string()),
        ("url", pa.string()),
        ("canonical_url", pa.string()),
        ("published", pa.date32()),
        ("origin_credit", pa.string()),
        ("syndication_hints", pa.string()),
        ("content_hash", pa.string()),
        ("first_seen", TS),
        ("run_id", pa.string()),
    ]
)
META_COLUMNS = [f.name for f in DEDUP_DOCS if f.name != "shingles"]

DEDUP_BANDS = pa.schema([("band_key", pa.int64()), ("article_id", pa.string())])

CANDIDATES = pa.schema(
    [
        ("article_id", pa.string()),  # the new document
        ("cand_id", pa.string()),  # a stored document sharing >= 1 key with it
        ("shared", pa.int32()),  # number of keys they share
        ("cluster_id", pa.string()),
        ("exact_key", pa.int64()),
        ("shingles", pa.binary()),
        ("published", pa.date32()),
    ]
)
KEYS = pa.schema([("article_id", pa.string()), ("band_key", pa.int64())])
KEY_COUNTS = pa.schema([("band_key", pa.int64()), ("n", pa.int64())])

TABLE_SPECS: list[TableSpec] = [
    TableSpec(
        name="clusters",
        schema=CLUSTERS,
        key=("cluster_id",),
        mode="upsert",
        description="One row per story: every copy of it shares the cluster_id.",
        columns={
            "cluster_id": "Story id: article_id of the story's first copy; never changes.",
            "canonical_article_id": "Copy to show: the original if known, else the earliest full copy.",
            "original_article_id": "Copy attributed as the original (null if the credited "
            "original is not in the warehouse).",
            "original_outlet": "Outlet that published the story first (may be outside the warehouse).",
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
            "outlet": "Outlet of the article.",
            "url": "URL of the article.",
            "canonical_url": "Canonical URL of the article.",
            "published": "Publication date.",
            "origin_credit": "Credited original outlet captured by the clean stage.",
            "syndication_hints": "JSON-LD syndication hints (isBasedOn, sourceOrganization).",
            "content_hash": "content_hash of the article when it was indexed.",
            "first_seen": "Fetch time of the article (UTC).",
            "run_id": "Run that indexed the article.",
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

    def candidates(self, keys: pa.Table) -> pa.Table:
        """``keys`` (KEYS: article_id, band_key of new docs) -> CANDIDATES rows: one per
        (new doc, stored doc) pair sharing keys, with the stored doc's fingerprint."""
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

    def candidates(self, keys: pa.Table) -> pa.Table:
        shared: Counter = Counter()
        for aid, k in zip(
            keys.column("article_id").to_pylist(), keys.column("band_key").to_pylist(), strict=True
        ):
            for cid in self.bands.get(k, ()):
                shared[(aid, cid)] += 1
        rows = []
        for (aid, cid), n in shared.items():
            d = self.docs[cid]
            rows.append(
                {
                    "article_id": aid,
                    "cand_id": cid,
                    "shared": n,
                    "cluster_id": d["cluster_id"],
                    "exact_key": d["exact_key"],
                    "shingles": d["shingles"],
                    "published": d["published"],
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
_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
_SENT_END = re.compile(r"[.!?\u2026\u3002][\"'\u201d\u2019\u00bb)\]]*$")
_SENT_SPLIT = re.compile(r"(?<=[.!?])[\"'\u201d\u2019]?\s+")
_ABBREV_DOT = re.compile(r"(?<=\b\w)\.")
_DATELINE = re.compile(
    r"^[A-Z\u00c0-\u00dd][\w .,'\u2019-]{0,60}?\((?:AP|AFP|Reuters|dpa|UPI|EFE|ANSA|Kyodo|"
    r"Xinhua|Bloomberg|Yonhap|KNA|epd|APA)\)\s*[-\u2013\u2014]+\s*"
)
_MASK64 = (1 << 64) - 1
_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xBF58476D1CE4E5B9)
_P3 = np.uint64(0x94D049BB133111EB)
_SALT_BAND = 0x1B873593
_SALT_LEAD = 0x5BD1E995
_SALT_EXACT = 0x27D4EB2F


@cache
def _boilerplate() -> re.Pattern[str]:
    lines = (DATA / "dedup_boilerplate.txt").read_text(encoding="utf-8").splitlines()
    pats = [p for p in lines if p.strip() and not p.startswith("#")]
    return re.compile("|".join(f"(?:{p})" for p in pats), re.IGNORECASE)


@cache
def _spelling() -> dict[str, str]:
    """Variant spelling -> one form (data file), so UK/US spellings do not break shingles."""
    out: dict[str, str] = {}
    for line in (DATA / "dedup_spelling.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            a, _, b = line.partition("\t")
            out[a.strip()] = b.strip()
    return out


class _TokenHashes(dict):
    """Token -> stable 64-bit hash, memoised (tokens repeat a lot; Python's hash() is salted)."""

    def __missing__(self, token: str) -> int:
        if len(self) > 2_000_000:  # bounded: a long run must not grow memory without limit
            self.clear()
        v = xxhash.xxh3_64_intdigest(_spelling().get(token, token).encode("utf-8"))
        self[token] = v
        return v


_TOKEN_HASHES = _TokenHashes()


def content_lines(body: str | None, config: DedupConfig | None = None) -> list[str]:
    """The lines of ``body`` that carry reporting: drops bylines, dates, headlines, captions,
    related links and chrome sentences, and agency datelines ("LONDON (AP) --")."""
    cfg = config or DedupConfig()
    if not body:
        return []
    bp = _boilerplate()
    out: list[str] = []
    for raw in body.replace("\u00a0", " ").split("\n"):
        line = raw.strip()
        if not line:
            continue
        n = line.count(" ") + 1
        if n < cfg.min_line_words and not any("\u3040" <= ch <= "\u9fff" for ch in line[:8]):
            continue
        if n <= cfg.title_like_words and not _SENT_END.search(line):
            continue
        if bp.search(line):
            if n <= cfg.boilerplate_max_words:
                continue
            sents = [
                s
                for s in _SENT_SPLIT.split(line)
                if not (s.count(" ") < cfg.boilerplate_max_words and bp.search(s))
            ]
            line = " ".join(sents)
            if not line:
                continue
        if not out:
            line = _DATELINE.sub("", line)
        out.append(line)
    return out


def tokens(text: str) -> list[str]:
    """Comparable words: case, accents-as-typed, quotes, dashes, "U.S."/"US" all folded."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = _ABBREV_DOT.sub("", t.replace("per cent", "percent"))
    return _TOKEN.findall(t)


@dataclass
class Fingerprint:
    """What dedup compares: exact hash, ordered distinct shingle hashes, lookup keys."""

    exact_key: int  # signed 64-bit
    shingles: np.ndarray  # uint32, distinct, in text order, capped
    n_shingles: int
    keys: np.ndarray  # int64, distinct


@cache
def _perms(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(20250106)
    a = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    return a, b


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _P2
    x = x ^ (x >> np.uint64(27))
    x = x * _P3
    return x ^ (x >> np.uint64(31))


def _signed(v: int) -> int:
    v &= _MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


def fingerprint(body: str | None, config: DedupConfig | None = None) -> Fingerprint:
    """Fingerprint one body (pure; the same text always gives the same fingerprint)."""
    cfg = config or DedupConfig()
    lines = content_lines(body, cfg)
    toks = tokens("\n".join(lines)) if lines else []
    if not toks and body:  # all chrome-like (a very short item): use everything it has
        toks = tokens(body)
    if not toks:
        return Fingerprint(0, np.zeros(0, np.uint32), 0, np.zeros(0, np.int64))
    th = _TOKEN_HASHES
    h = np.fromiter((th[t] for t in toks), dtype=np.uint64, count=len(toks))
    exact = _signed(xxhash.xxh3_64_intdigest(h.tobytes()) ^ _SALT_EXACT)
    k = cfg.shingle_size
    with np.errstate(over="ignore"):
        if len(h) >= k:
            m = len(h) - k + 1
            s = h[:m].copy()
            for j in range(1, k):
                s = s * _P1 + h[j : j + m]
        else:
            s = np.array([np.bitwise_xor.reduce(h * _P1)], dtype=np.uint64)
        s = _mix(s)
    s32 = (s >> np.uint64(32)).astype(np.uint32)
    _, first = np.unique(s32, return_index=True)
    n_distinct = len(first)
    first.sort()
    sh = s32[first[: cfg.fingerprint_cap]]
    keys = _keys(sh, cfg)
    keys = np.unique(np.append(keys, np.int64(exact)))
    return Fingerprint(exact, sh, n_distinct, keys)


def _keys(sh: np.ndarray, cfg: DedupConfig) -> np.ndarray:
    """MinHash band keys + content-defined lead keys of one shingle array."""
    a, b = _perms(cfg.num_perm)
    x = sh.astype(np.uint64)
    with np.errstate(over="ignore"):
        sig = ((a[:, None] * x[None, :] + b[:, None]) >> np.uint64(32)).min(axis=1)
        sig = sig.reshape(cfg.bands, cfg.band_rows)
        kb = np.arange(cfg.bands, dtype=np.uint64) * _P1 + np.uint64(_SALT_BAND)
        for r in range(cfg.band_rows):
            kb = (kb ^ sig[:, r]) * _P2
        kb = _mix(kb)
        lead = sh[: cfg.lead_window]
        lead = lead[lead % np.uint32(cfg.lead_mod) == 0].astype(np.uint64)
        kl = _mix(lead * _P3 + np.uint64(_SALT_LEAD))
    return np.concatenate([kb, kl]).view(np.int64)


def compare(a: np.ndarray, b: np.ndarray, config: DedupConfig | None = None) -> tuple[str | None, float]:
    """Verify a candidate pair from their shingle arrays: ('near'|'contained'|None, score)."""
    cfg = config or DedupConfig()
    na, nb = len(a), len(b)
    if not na or not nb:
        return None, 0.0
    inter = int(np.intersect1d(a, b, assume_unique=True).size)
    if inter < min(cfg.min_overlap, na, nb):
        return None, 0.0
    jac = inter / (na + nb - inter)
    if jac >= cfg.near_jaccard:
        return "near", jac
    small, big = (a, b) if na <= nb else (b, a)
    cont = inter / len(small)
    if cont >= cfg.containment:
        probe = small[: cfg.lead_probe]
        hits = int(np.isin(probe, big[: cfg.lead_span], assume_unique=True).sum())
        if hits >= min(2, len(probe)):
            return "contained", cont
    return None, 0.0


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


def _order_key(published: date | None, article_id: str) -> tuple[date, str]:
    return (published or date.max, article_id)


def _first_seen(fetched: datetime | None, published: date | None) -> datetime | None:
    if fetched is not None:
        return fetched if fetched.tzinfo else fetched.replace(tzinfo=timezone.utc)
    if published is not None:
        return datetime.combine(published, time(0), tzinfo=timezone.utc)
    return None


def _col(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist() if name in table.column_names else [None] * len(table)


def _as_u32(blob: bytes | None) -> np.ndarray:
    return np.frombuffer(blob, dtype="<u4") if blob else np.zeros(0, np.uint32)


def dedup_batch(
    articles: pa.Table,
    history: History,
    run_id: str,
    config: DedupConfig | None = None,
) -> DedupResult:
    """Assign every article of ``articles`` (ARTICLES_CORE) to a story cluster.

    Articles already indexed with the same content keep their cluster and produce no rows;
    changed ones keep their cluster and get a fresh fingerprint. Near-duplicates are kept (they
    get the cluster_id); only a repeated article_id inside the batch is rejected.
    """
    cfg = config or DedupConfig()
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
                {"item_id": a, "url": urls[i], "stage": STAGE, "reason": "duplicate_article_id",
                 "detail": "same article id twice in one batch; first row kept"}
            )
            continue
        seen.add(a)
        keep_rows.append(i)
    if len(keep_rows) < n_in:
        articles = articles.take(keep_rows)
        ids = _col(articles, "article_id")
    bodies = _col(articles, "body")
    published = _col(articles, "published")
    hashes = _col(articles, "content_hash")
    fetched = _col(articles, "fetched_at")
    meta_src = {c: _col(articles, c) for c in
                ("url", "canonical_url", "outlet", "origin_credit", "syndication_hints")}

    # -- already indexed?
    known = {r["article_id"]: r for r in history.lookup(ids).to_pylist()}
    out_assign: dict[str, dict] = {}
    todo: list[int] = []
    changed: dict[int, dict] = {}
    fps: dict[int, Fingerprint] = {}
    for i, a in enumerate(ids):
        old = known.get(a)
        if old is not None and hashes[i] is not None and old["content_hash"] == hashes[i]:
            out_assign[a] = {k: old[k] for k in ("cluster_id", "dup_kind", "dup_of", "similarity")}
            continue
        fp = fingerprint(bodies[i], cfg)
        if old is not None and (hashes[i] is None and old["exact_key"] == fp.exact_key):
            out_assign[a] = {k: old[k] for k in ("cluster_id", "dup_kind", "dup_of", "similarity")}
            continue
        fps[i] = fp
        todo.append(i)
        if old is not None:
            changed[i] = old
    todo.sort(key=lambda i: _order_key(published[i], ids[i]))

    # -- candidates from history: one join for the whole batch
    key_ids: list[str] = []
    key_vals: list[np.ndarray] = []
    for i in todo:
        key_vals.append(fps[i].keys)
        key_ids.extend([ids[i]] * len(fps[i].keys))
    keys_tbl = pa.table(
        {"article_id": pa.array(key_ids, pa.string()),
         "band_key": pa.array(np.concatenate(key_vals) if key_vals else np.zeros(0, np.int64))},
        schema=KEYS,
    )
    hist_cands: dict[str, list[tuple]] = defaultdict(list)
    hist_counts: dict[int, int] = {}
    if todo:
        ct = history.candidates(keys_tbl)
        for r in zip(*(ct.column(c).to_pylist() for c in CANDIDATES.names), strict=True):
            aid, cid, shared, cl, ek, sh, pub = r
            if cid == aid:
                continue
            hist_cands[aid].append((shared, _order_key(pub, cid), cid, cl, ek, sh, None))
        kc = history.key_counts(keys_tbl)
        hist_counts = dict(
            zip(kc.column("band_key").to_pylist(), kc.column("n").to_pylist(), strict=True)
        )

    # -- sequential assignment in (published, article_id) order
    held: dict[int, list[int]] = defaultdict(list)
    band_rows_k: list[np.ndarray] = []
    band_rows_a: list[str] = []
    kinds: Counter = Counter()
    for i in todo:
        a = ids[i]
        fp = fps[i]
        cands = list(hist_cands.get(a, ()))
        klist = fp.keys.tolist()
        local: Counter = Counter()
        for k in klist:
            for j in held.get(k, ()):
                local[j] += 1
        for j, n in local.items():
            cands.append((n, _order_key(published[j], ids[j]), ids[j],
                          out_assign[ids[j]]["cluster_id"], fps[j].exact_key, None, fps[j].shingles))
        cands.sort(key=lambda c: (-c[0], c[1]))
        best: tuple | None = None  # (rank, score, order, cand_id, cluster, kind)
        for shared, order, cid, cl, ek, blob, arr in cands[: cfg.max_verify]:
            if ek == fp.exact_key and fp.n_shingles:
                cand = (2, 1.0, order, cid, cl, "exact")
            else:
                other = arr if arr is not None else _as_u32(blob)
                kind, score = compare(fp.shingles, other, cfg)
                if kind is None:
                    continue
                if kind == "contained":
                    small = len(fp.shingles) <= len(other)
                    ratio = min(len(fp.shingles), len(other)) / max(len(fp.shingles), len(other))
                    kind = "teaser" if small and ratio < cfg.teaser_ratio else "near"
                cand = (1, score, order, cid, cl, kind)
            if best is None or (cand[0], cand[1]) > (best[0], best[1]) or (
                (cand[0], cand[1]) == (best[0], best[1]) and cand[2] < best[2]
            ):
                best = cand
        if i in changed:  # a changed article keeps its story
            old = changed[i]
            out_assign[a] = {k: old[k] for k in ("cluster_id", "dup_kind", "dup_of", "similarity")}
        elif best is None:
            out_assign[a] = {"cluster_id": a, "dup_kind": "unique", "dup_of": None, "similarity": None}
        else:
            out_assign[a] = {"cluster_id": best[4], "dup_kind": best[5], "dup_of": best[3],
                             "similarity": float(best[1])}
        kinds[out_assign[a]["dup_kind"]] += 1
        # this document now holds the keys that still have room
        mine = []
        for k in klist:
            lst = held[k]
            if hist_counts.get(k, 0) + len(lst) < cfg.band_cap:
                lst.append(i)
                mine.append(k)
        band_rows_k.append(np.array(mine, dtype=np.int64))
        band_rows_a.extend([a] * len(mine))

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
                "outlet": meta_src["outlet"][i],
                "url": meta_src["url"][i],
                "canonical_url": meta_src["canonical_url"][i],
                "published": published[i],
                "origin_credit": meta_src["origin_credit"][i],
                "syndication_hints": meta_src["syndication_hints"][i],
                "content_hash": hashes[i],
                "first_seen": _first_seen(fetched[i], published[i]),
                "run_id": run_id,
            }
        )
    docs_tbl = pa.Table.from_pylist(doc_rows, schema=DEDUP_DOCS)
    bands_tbl = pa.table(
        {"band_key": pa.array(np.concatenate(band_rows_k) if band_rows_k else np.zeros(0, np.int64)),
         "article_id": pa.array(band_rows_a, pa.string())},
        schema=DEDUP_BANDS,
    )

    # -- clusters touched by this batch: re-attribute from index metadata only
    touched = sorted({out_assign[ids[i]]["cluster_id"] for i in todo})
    clusters_tbl, synd_tbl = _attribute(touched, history, doc_rows, run_id)

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
