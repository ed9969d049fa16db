"""NER behaviour the enrich stage relies on: outlets as ORG, unusual surnames as PER, places."""

from __future__ import annotations

import json
from typing import Any

from newsflow.ner_cmd import ner_jsonl
from tasks.ner import recognise, recognise_tokens

TEXT = (
    "Ukrainian President Volodymyr Zelenskyy has accused Vladimir Putin of being afraid. "
    "Keir Giles, a defense analyst at London's Chatham House think tank, told NBC News. "
    "Kellogg spoke to Fox News last month, and Russian troops advanced near Kharkiv and Kherson."
)


def _found(text: str) -> set[tuple[str, str]]:
    return {(text[s:e], lab) for s, e, lab in recognise([text])[0]}


def test_outlets_and_think_tanks_are_organisations() -> None:
    found = _found(TEXT)
    for name in ("NBC News", "Chatham House", "Fox News"):
        assert (name, "ORG") in found


def test_people_keep_names_without_titles() -> None:
    found = _found(TEXT)
    assert ("Volodymyr Zelenskyy", "PER") in found
    assert ("Vladimir Putin", "PER") in found
    assert ("Keir Giles", "PER") in found


def test_places_are_loc_and_adjectives_are_not() -> None:
    found = _found(TEXT)
    assert {("London", "LOC"), ("Kharkiv", "LOC"), ("Kherson", "LOC")} <= found
    assert not any(m == "Ukrainian" for m, _ in found)


def test_spans_strip_determiner_and_possessive() -> None:
    text = "Officials at the Kremlin denied it, and Ukraine's Ground Forces said so."
    found = _found(text)
    assert ("Kremlin", "ORG") in found
    assert ("Ground Forces", "ORG") in found


def test_token_spans_align_with_given_tokens() -> None:
    toks = ["Sergei", "Ryabkov", "told", "reporters", "in", "Moscow", "on", "Monday", "."]
    assert recognise_tokens([toks, []]) == [[(0, 2, "PER"), (5, 6, "LOC")], []]


def test_ner_jsonl_writes_one_line_per_sentence(tmp_path) -> None:
    src = tmp_path / "sents.jsonl"
    src.write_text(
        "\n".join(
            json.dumps({"doc": 0, "sent": i, "tokens": t})
            for i, t in enumerate([["NATO", "met", "in", "Brussels", "."], ["no", "names"]])
        )
    )
    out = tmp_path / "pred.jsonl"
    info = ner_jsonl(src, out)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert info["sentences"] == 2 and len(lines) == 2
    assert lines[0]["spans"] == [[0, 1, "ORG"], [3, 4, "LOC"]]
    assert lines[1]["spans"] == []


def test_batched_decoder_matches_spacy_ner() -> None:
    """analyse() decodes NER itself; its entities must be exactly what spaCy's component gives."""
    from tasks.ner import analyse, nlp

    pipe = nlp()
    texts = [
        TEXT,
        "",
        "   ",
        "Hello",
        "The Kremlin said so.\n\n  NATO met in Brussels.  Chatham House and Fox News agreed.",
        " ".join([TEXT] * 6),  # long enough to decode alone for many steps
        "Sergei Ryabkov told reporters in Moscow on Monday. Volodymyr Zelenskyy replied.",
        "IBM and Apple Inc. hired 3,000 people in New York City last year, the Times said.",
    ]
    ours = analyse(pipe, [pipe.make_doc(t) for t in texts], prune=False)
    theirs = list(pipe.pipe(texts))  # spaCy runs the same components, NER included

    def ents(doc):
        return [(e.start, e.end, e.label_) for e in doc.ents], [t.ent_iob_ for t in doc]

    assert [ents(d) for d in ours] == [ents(d) for d in theirs]
    assert [d.text for d in ours] == texts


def test_entity_token_state_matches_spacy() -> None:
    """annotate() and the rulers leave every token's entity fields as spaCy's pipeline does
    (annotate writes them as arrays), and token_spans reads the entities doc.ents holds."""
    from tasks.ner import _entities, analyse, nlp

    pipe = nlp()
    texts = [
        TEXT,
        "",
        "The Kremlin said so.\n\n  NATO met in Brussels.  Chatham House and Fox News agreed.",
        "IBM and Apple Inc. hired 3,000 people in New York City last year, the Times said.",
        "Prime Minister Keir Starmer met the BBC in the Soviet Union on 3 May 2024.",
    ]
    ours = analyse(pipe, [pipe.make_doc(t) for t in texts], prune=False)
    theirs = list(pipe.pipe(texts))

    def state(doc: Any) -> list[tuple[str, str, int, int]]:
        return [(t.ent_iob_, t.ent_type_, t.ent_kb_id, t.ent_id) for t in doc]

    assert [state(d) for d in ours] == [state(d) for d in theirs]
    for doc in ours:
        assert _entities(doc) == [(e.start, e.end, e.label_) for e in doc.ents]


def _units(text: str) -> tuple[object, list[tuple[int, int, int]]]:
    """The Doc after the components before NER, and the stretches pruning sends to the net."""
    from tasks.ner import _decoder, nlp

    pipe = nlp()
    doc = pipe.make_doc(text)
    for name, proc in pipe.pipeline:
        if name == "ner":
            break
        doc = proc(doc)
    dec = _decoder(pipe.get_pipe("ner"))
    dec._tables()
    dec._setup()
    return doc, dec._units([dec._arrays(doc)], prune=True)


def test_sentence_without_candidates_is_not_sent_to_the_network() -> None:
    text = (
        "the talks dragged on for hours and nothing was agreed. "
        "But nobody was surprised by that. Officials in Kyiv said so."
    )
    doc, units = _units(text)
    sents = list(doc.sents)
    covered = {t for _, a, b in units for t in range(a, b)}
    assert not covered & set(range(sents[0].start, sents[0].end))  # all lower case
    assert not covered & set(range(sents[1].start, sents[1].end))  # only "But" is capitalised
    kyiv = next(t.i for t in doc if t.text == "Kyiv")
    assert kyiv in covered
    assert len(covered) < len(doc) // 2


def test_names_at_sentence_start_are_still_found() -> None:
    text = (
        "the market fell on monday. Apple said it would cut prices. "
        "The Kremlin denied it. Zelenskyy replied from Kyiv."
    )
    found = _found(text)
    assert {("Apple", "ORG"), ("Kremlin", "ORG"), ("Zelenskyy", "PER"), ("Kyiv", "LOC")} <= found


def test_pruned_decoding_matches_the_full_decode() -> None:
    """The network reads the full context of every decoded token: same entities here."""
    from tasks.ner import analyse, nlp

    pipe = nlp()
    texts = [
        TEXT,
        "The Kremlin said so.\n\n  NATO met in Brussels.  Chatham House and Fox News agreed.",
        "Sergei Ryabkov told reporters in Moscow on Monday. Volodymyr Zelenskyy replied.",
        "IBM and Apple Inc. hired 3,000 people in New York City last year, the Times said.",
        "prices rose again. nothing changed at all, officials said.",
    ]

    def ents(docs):
        return [[(e.start, e.end, e.label_) for e in d.ents] for d in docs]

    pruned = analyse(pipe, [pipe.make_doc(t) for t in texts])
    full = analyse(pipe, [pipe.make_doc(t) for t in texts], prune=False)
    assert ents(pruned) == ents(full)


def test_sentencize_matches_spacys_sentencizer() -> None:
    from spacy.attrs import SENT_START

    from tasks.ner import nlp, sentencize

    pipe = nlp()
    component = pipe.get_pipe("sentencizer")
    for text in (
        TEXT,
        "Hello",
        "...",
        'Dr. Smith went home. Then!! "Yes?" he said... ok. (Really.) Done',
        "Hi.\n\nThere . . x ! ?",
    ):
        ours, theirs = pipe.make_doc(text), component(pipe.make_doc(text))
        sentencize(ours, frozenset(component.punct_chars))
        assert ours.to_array([SENT_START]).tolist() == theirs.to_array([SENT_START]).tolist()


def test_find_names_matches_the_alternation_regex() -> None:
    """propagate() finds names with str.find: same matches as one longest-first regex."""
    import re

    from tasks.ner import _find_names

    text = (
        "Keir Giles met Giles-Smith and Giles_2 in Kyiv. Giles, Keir Giles's aide, and "
        "Kyivstar's Giles said: Keir Gilesian? Kyiv-based KSE (Kyiv School) and Kyiv."
    )
    for names in (
        ["Giles", "Keir Giles", "Kyiv", "Kyiv School", "KSE"],
        ["Kyiv", "Giles"],
        ["aide", "Keir"],
        ["said: Keir", "Keir Gilesian"],
    ):
        pattern = re.compile(
            r"(?<![\w-])(?:"
            + "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
            + r")(?![\w-])"
        )
        expected = [(m.start(), m.end()) for m in pattern.finditer(text)]
        assert _find_names(text, names) == expected, names


def _uncached_tokenizer(pipe: Any) -> Any:
    """A copy of the pipeline's tokenizer with caching off: the rules' own answer."""
    from spacy.tokenizer import Tokenizer

    uncached = Tokenizer(pipe.vocab)
    uncached.from_bytes(pipe.tokenizer.to_bytes())
    uncached.max_cache_size = 0
    return uncached


def test_tokenizer_cache_gives_the_rules_tokens() -> None:
    """nlp() raises the tokenizer's chunk cache limit; cached splits equal the rules' splits."""
    from spacy.attrs import NORM, ORTH, SHAPE, SPACY

    from tasks.ner import TOKENIZER_CACHE, nlp

    pipe = nlp()
    assert pipe.tokenizer.max_cache_size >= TOKENIZER_CACHE
    uncached = _uncached_tokenizer(pipe)
    texts = [
        "Ukraine's President Volodymyr Zelensky said: \"We won't stop.\" (Reuters) U.S.-led talks",
        "The 12:30 train to Kyiv, via Lviv; e-mail news@example.org or see https://x.org/a?b=1.",
        "Mr. Smith's dogs' toys -- don't! 5km, $3.5bn, 40% in mid-2024... Can't they?",
    ]
    attrs = [ORTH, NORM, SHAPE, SPACY]
    for _ in range(2):  # the second time from the cache
        for text in texts:
            got = pipe.tokenizer(text).to_array(attrs).tolist()
            assert got == uncached(text).to_array(attrs).tolist(), text


def test_make_doc_cached_is_make_doc() -> None:
    """Chunks tokenised alone first (so spaCy caches them): the same Docs as make_doc."""
    from spacy.attrs import IS_PUNCT, LOWER, NORM, ORTH, PREFIX, SHAPE, SPACY, SUFFIX

    from tasks.ner import make_doc_cached, nlp

    pipe = nlp()
    uncached = _uncached_tokenizer(pipe)
    texts = [
        # a special case first ("Mr.", "don't"), then chunks spaCy would not cache in this Doc
        "Mr. Smith's dogs don't (Reuters) U.S.-led talks; Kyiv's mayor said: \"No.\" 5km $3bn",
        "e-mail news@example.org, see https://x.org/a?b=1. It's 12:30... can't stop\n\n  end",
        "(Mr. Smith's) \u201cquoted\u201d \u2018words\u2019 U.S. a.m. 3 p.m. O'Neill \u2013 2024",
        "",
        "   ",
    ]
    attrs = [ORTH, NORM, LOWER, SHAPE, PREFIX, SUFFIX, IS_PUNCT, SPACY]
    for _ in range(2):
        for text in texts:
            got = make_doc_cached(pipe, text)
            assert got.text == text
            assert got.to_array(attrs).tolist() == uncached(text).to_array(attrs).tolist(), text


def test_ruler_patterns_are_only_tokenized() -> None:
    """The rulers' phrase patterns are the tokenizer's token sequences, made without running
    the components ahead of each ruler (the place ruler sits after the NER model: running it
    over ~1,100 place names cost every worker's start about 0.4 s)."""
    from tasks.ner import _entity_patterns, _place_patterns, nlp

    pipe = nlp()
    for name, patterns in (
        ("gazetteer_ruler", _entity_patterns()),
        ("place_ruler", _place_patterns()),
    ):
        ruler = pipe.get_pipe(name)
        docs = [d for per_label in ruler.phrase_patterns.values() for d in per_label]
        assert len(docs) == len(patterns) > 100, name
        got = sorted(tuple(t.text for t in d) for d in docs)
        want = sorted(tuple(t.text for t in pipe.make_doc(p["pattern"])) for p in patterns)
        assert got == want, name
        assert not any(d.ents for d in docs), f"{name}: a model ran over its patterns"
    # and the place ruler still finds what only it knows
    assert ("Kherson", "LOC") in _found("Troops advanced near Kherson on Monday.")
