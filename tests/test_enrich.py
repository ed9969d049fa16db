"""Enrichment facts a reader of the warehouse relies on, from seed-style news text."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tasks.enrich import TABLE_SPECS, enrich_batch, related_articles
from tasks.schema import REJECTS

BODY = (
    "Ukrainian President Volodymyr Zelenskyy has accused Vladimir Putin of being 'afraid' to "
    "negotiate after his Russian counterpart refused to engage in peace talks.\n\n"
    "Writing late Tuesday in a post on X, Zelenskyy said that 'Putin once again confirmed that "
    "he is afraid of negotiations, afraid of strong leaders.'\n\n"
    "He made the comment after Putin told state broadcaster Rossiya 1 that the Ukrainian leader "
    "'has no right to sign anything' because of his 'illegitimacy.'\n\n"
    "Putin said Tuesday that negotiators from Kyiv should be 'verified by lawyers.' Drones hit "
    "Kharkiv and Moscow overnight.\n\n"
    'Even so, "what looks like a growing consensus in the West that some form of peace talks is '
    "coming closer doesn't always take account of Russia,\" Keir Giles, a defense analyst at "
    "London's Chatham House think tank, told NBC News.\n\n"
    'That shift is a "wildcard" in efforts to end the war, Giles said. President Volodymyr '
    "Zelensky later told Fox News that talks were possible.\n\n"
    "Meanwhile, Russian troops captured the village of Dvorichna in northeastern Kharkiv, the "
    "army said Tuesday."
)


def _article(aid: str, body: str, language: str | None = "en") -> dict:
    return {
        "article_id": aid,
        "body": body,
        "title": "Zelenskyy accuses Putin",
        "language": language,
        "url": f"https://example.org/{aid}",
    }


@pytest.fixture(scope="module")
def result():
    arts = pa.Table.from_pylist(
        [
            _article("a1", BODY),
            _article(
                "de", "Der Bundeskanzler sagte heute in Berlin, die Regierung werde handeln.", "de"
            ),
            _article(
                "ga",
                "Atlanta, Georgia, and Savannah voted on Tuesday. Georgia's governor "
                "spoke in Atlanta about the election in the state.",
            ),
            _article(
                "ge",
                "Russian troops remain in Georgia, and officials in Tbilisi asked Moscow "
                "and Armenia for talks on Tuesday about the border.",
            ),
        ]
    )
    return enrich_batch(arts, "run-test")


def _entities(result, aid: str) -> dict[str, set[str]]:
    ents = {e["entity_id"]: e for e in result.tables["entities"].to_pylist()}
    out: dict[str, set[str]] = {}
    for m in result.tables["article_entities"].to_pylist():
        if m["article_id"] == aid:
            out.setdefault(ents[m["entity_id"]]["canonical_name"], set()).add(m["mention"])
    return out


def test_zelenskyy_spellings_are_one_entity(result) -> None:
    ents = _entities(result, "a1")
    assert {"Zelenskyy", "Volodymyr Zelenskyy", "Volodymyr Zelensky"} <= ents["Volodymyr Zelenskyy"]
    assert "the Ukrainian leader" in ents["Volodymyr Zelenskyy"]


def test_surname_resolves_to_full_name(result) -> None:
    ents = _entities(result, "a1")
    assert "Putin" in ents["Vladimir Putin"]
    assert "Giles" in ents["Keir Giles"]


def test_outlets_are_organisations(result) -> None:
    labels = {(e["canonical_name"], e["label"]) for e in result.tables["entities"].to_pylist()}
    assert {("NBC News", "ORG"), ("Chatham House", "ORG"), ("Fox News", "ORG")} <= labels


def test_offsets_point_into_body(result) -> None:
    for name in ("article_entities", "article_places"):
        for m in result.tables[name].to_pylist():
            if m["article_id"] == "a1":
                assert BODY[m["start"] : m["end"]] == m["mention"]
    for q in result.tables["article_quotes"].to_pylist():
        if q["article_id"] == "a1":
            assert BODY[q["start"] : q["end"]] == q["quote"]


def test_places_geocoded_with_country(result) -> None:
    places = {
        (p["mention"], p["country_code"], p["place_type"])
        for p in result.tables["article_places"].to_pylist()
        if p["article_id"] == "a1"
    }
    assert {("Kyiv", "UA", "city"), ("Moscow", "RU", "city"), ("London", "GB", "city")} <= places
    assert ("Kharkiv", "UA", "city") in places  # "Drones hit Kharkiv"
    assert ("Kharkiv", "UA", "region") in places  # "in northeastern Kharkiv"


def test_georgia_read_from_context(result) -> None:
    rows = result.tables["article_places"].to_pylist()
    ga = {p["place_type"] for p in rows if p["article_id"] == "ga" and p["mention"] == "Georgia"}
    ge = {p["place_type"] for p in rows if p["article_id"] == "ge" and p["mention"] == "Georgia"}
    assert ga == {"us_state"}
    assert ge == {"country"}


def test_quote_attributed_to_giles(result) -> None:
    quotes = [q for q in result.tables["article_quotes"].to_pylist() if q["article_id"] == "a1"]
    giles = [q for q in quotes if q["quote"].startswith("what looks like")]
    assert giles and giles[0]["speaker"] == "Keir Giles" and giles[0]["speaker_entity_id"]
    assert not any(q["quote"] == "wildcard" for q in quotes)  # scare quotes are not quotes


def test_non_english_article_is_marked_not_enriched(result) -> None:
    stats = {s["article_id"]: s for s in result.article_stats.to_pylist()}
    assert stats["de"]["enrichment_status"] == "not_enriched:language"
    assert stats["de"]["language"] == "de"
    assert stats["a1"]["enrichment_status"] == "enriched"
    assert stats["a1"]["word_count"] > 100
    assert stats["a1"]["reading_time_min"] == pytest.approx(
        stats["a1"]["word_count"] / 230, abs=0.01
    )
    for name, table in result.tables.items():
        if "article_id" in table.column_names:
            assert "de" not in table.column("article_id").to_pylist(), name


def test_keywords_and_tone_per_enriched_article(result) -> None:
    kw = [k for k in result.tables["article_keywords"].to_pylist() if k["article_id"] == "a1"]
    assert kw and [k["rank"] for k in kw] == list(range(1, len(kw) + 1))
    tone = [t for t in result.tables["article_tone"].to_pylist() if t["article_id"] == "a1"]
    assert len(tone) == 1 and -1 <= tone[0]["compound"] <= 1


def test_failures_become_rejects_not_silence(monkeypatch) -> None:
    import tasks.enrich as enrich

    def boom(*args, **kwargs):
        raise ValueError("broken article")

    monkeypatch.setattr(enrich, "enrich_article", boom)
    res = enrich.enrich_batch(pa.Table.from_pylist([_article("x", BODY)]), "r")
    assert res.rejects.schema == REJECTS
    rej = res.rejects.to_pylist()
    assert rej[0]["item_id"] == "x" and rej[0]["stage"] == "enrich"
    assert "broken article" in rej[0]["detail"]
    assert res.article_stats.column("enrichment_status").to_pylist() == ["not_enriched:error"]


def test_entity_ids_are_deterministic(result) -> None:
    again = enrich_batch(pa.Table.from_pylist([_article("a1", BODY)]), "other-run")
    ids = set(again.tables["entities"].column("entity_id").to_pylist())
    assert ids <= set(result.tables["entities"].column("entity_id").to_pylist())


def test_related_articles_excludes_same_cluster() -> None:
    ents = pa.Table.from_pylist(
        [
            {"article_id": a, "entity_id": e}
            for a, es in {
                "a": ["z", "p", "k"],
                "b": ["z", "p", "k"],
                "c": ["z", "p"],
                "d": ["q"],
            }.items()
            for e in es
        ]
    )
    clusters = pa.Table.from_pylist(
        [
            {"article_id": "a", "cluster_id": "c1"},
            {"article_id": "b", "cluster_id": "c1"},
            {"article_id": "c", "cluster_id": "c2"},
        ]
    )
    rel = related_articles(ents, None, clusters, top_k=5).to_pylist()
    pairs = {(r["article_id"], r["related_article_id"]) for r in rel}
    assert ("a", "b") not in pairs and ("b", "a") not in pairs
    assert ("a", "c") in pairs and ("c", "a") in pairs
    assert not any("d" in p for p in pairs)


def test_table_specs_cover_every_table() -> None:
    names = {s.name for s in TABLE_SPECS}
    assert names == {
        "article_stats",
        "entities",
        "article_entities",
        "article_places",
        "article_keywords",
        "article_tone",
        "article_quotes",
        "related_articles",
    }
    for s in TABLE_SPECS:
        assert set(s.columns) == set(s.schema.names), s.name
        assert s.mode == ("upsert" if s.name == "entities" else "article")


def test_geocoding_reads_the_words_around_a_name() -> None:
    from tasks.geo import Mention, geocode_article

    def read(text: str, name: str) -> tuple[str, str | None]:
        i = text.index(name)
        ((_, place),) = geocode_article(text, [Mention(name, i, i + len(name))])
        return place.kind, place.country_code

    assert read("Lawmakers in the US state of Georgia voted.", "Georgia") == ("us_state", "US")
    assert read("Russian troops remain in Georgia.", "Georgia") == ("country", "GE")
    assert read("Shelling hit the Kharkiv region overnight.", "Kharkiv") == ("region", "UA")
    assert read("Shelling hit Kharkiv overnight.", "Kharkiv") == ("city", "UA")
    assert read("Crowds gathered in Kiev.", "Kiev") == ("city", "UA")  # old spelling


def test_acronym_defined_in_text_is_the_same_organisation() -> None:
    body = (
        "Economists at the Harbor Institute of Policy (HIP) said prices rose. HIP expects "
        "inflation to slow, the Harbor Institute of Policy added."
    )
    res = enrich_batch(pa.Table.from_pylist([_article("h", body)]), "r")
    orgs = {e["canonical_name"]: e for e in res.tables["entities"].to_pylist()}
    assert "HIP" in orgs["Harbor Institute of Policy"]["aliases"]


def test_quote_speakers_from_pronouns_and_leading_attribution() -> None:
    body = (
        'Maria Delgado, a city councillor, spoke after the vote. "The technology is simply not '
        'ready for our streets," she told reporters.\n\n'
        'Police Chief Tom Brennan said: "We will comply with the ordinance in full."'
    )
    res = enrich_batch(pa.Table.from_pylist([_article("q", body)]), "r")
    speakers = {q["quote"][:15]: q["speaker"] for q in res.tables["article_quotes"].to_pylist()}
    assert speakers == {"The technology ": "Maria Delgado", "We will comply ": "Tom Brennan"}


def test_keywords_are_yakes() -> None:
    """_keywords re-implements YAKE's statistics; scores and order must be the library's."""
    from tasks.enrich import _keywords, _yake

    texts = [
        BODY,
        "Zelenskyy accuses Putin\n\n" + BODY[:700],
        "The U.S. and the E.U. agreed on 2024 tariffs of 3.5% on steel; steel makers' shares "
        "fell. Apple's apples: APPLES and Apple, again and again. Very very good good.",
        "the of and to",
        "",
    ]
    for top, n in ((10, 3), (5, 2), (3, 1)):
        for text in texts:
            expected = [(k, float(s)) for k, s in _yake(top, n).extract_keywords(text)]
            assert [(k, float(s)) for k, s in _keywords(text, top, n)] == expected


def test_polarity_is_vaders() -> None:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from tasks.enrich import _polarity

    library = SentimentIntensityAnalyzer()
    for sentence in (
        "Drones hit Kharkiv and Moscow overnight.",
        "The talks were held in Geneva on Tuesday.",  # no lexicon word: the shortcut
        "Officials said the attack was a terrible, cowardly crime!",
        "No deal, no peace :)",
        "Fans cheered \U0001f600 as the team won",
        "...",
        "  It was not good, but it was never so bad and without doubt kind of great.  ",
        "Good luck: he is the least bad, not the best; yeah right, cut the mustard!!",
        "Happy days. I do not like it at all. It isn't terrible?? No, never this horrible.",
        "the bomb was a hit, HUGELY GOOD, sort of nice and very very sad",
        "Great",
        # the negation check's branches, one to three words before a lexicon word
        "It is not good. Never so good. Never this bad, without doubt, without any doubt sad.",
        "Nothing good came; it wasn't nice, they won't win, nor hope, despite a great win.",
        "We don't love it, I cannot like it, he aint happy, uh-uh good, rarely so happy.",
        "NOT GOOD at all, never really this great, they said it was kind of bad, no good",
        "Not a very good deal: no, no one is happy, no or nor good, at least good, least bad.",
        # an emoji sends the sentence to the library's own code path (\u00a9 is one)
        "\u00a9 BAD!! ass happy, but NOT so GOOD",
        "the BAD ass kind of GOOD, sort of nice, but NO. bad ass!!",
    ):
        assert _polarity(sentence) == library.polarity_scores(sentence), sentence


def test_yake_sentences_are_the_librarys() -> None:
    """_sentences rebuilds yake's tokenize_sentences (segtok) from cached pieces: same lists."""
    import random

    from yake.data.utils import pre_filter, tokenize_sentences

    from tasks.enrich import _sentences

    texts = [
        "Kyiv's mayor said: \"we won't leave\". The U.S. and U.K. agreed, i.e. the E.U. too.",
        "See https://example.com/a?b=1&c=2 or mail news@example.org; it's 12:30, 1,000 km\u00b2.",
        "Prices rose 5.2%... Then fell!! Dr. Smith (of Kyiv) said it's O.K.; 'quoted' words,",
        "H\u2082O and 5'-ACGT-3' strands, dogs' toys, rock 'n' roll, can't, shouldn't've.",
        "Hyphen- \r\n ated text &amp; entities &#8217; \u2018curly\u2019 \u201cquotes\u201d: a,b;c",
        "Mr. Brown met Gen. Zaluzhnyi on Jan. 5. He said no. A. B. Smith wrote it, etc.",
        "",
        "   ",
        "...",
    ]
    rng = random.Random(7)
    pieces = [
        *"aAzZ .,;:!?'\"\u2019-\u2013&#()[]/@",
        "U.S.",
        "don't",
        "it\u2019s",
        "&amp;",
        "http://x.org/p",
        "e@x.io",
        "12:30",
        "Dr.",
        "...",
        "dogs'",
        " And",
        "1,000",
    ]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 30))) for _ in range(800)]
    for text in texts:
        text = pre_filter(text.replace("\n", " "))
        assert _sentences(text) == tokenize_sentences(text), text


def test_yake_sentence_split_is_segtoks() -> None:
    """_split_multi is segtok's split_multi with a windowed abbreviation test: same sentences."""
    import random

    from segtok.segmenter import ABBREVIATIONS, split_multi

    from tasks.enrich import _ends_in_abbreviation, _split_multi

    rng = random.Random(11)
    pieces = [
        *"aAZ ,.-([)]!?\"'\u02b0",
        "Dr. ",
        "Mr. ",
        "e.g. ",
        "U.S. ",
        "by ",
        "Commander ",
        "Se\u00f1orita ",
        " and ",
        ", and ",
        "123",
        "Sept. ",
        "A.-B. ",
        ". ",
        "Kyiv ",
        "5. Jan ",
        " et al. ",
        "J. Smith ",
        "(2020) X. ",
        "\n\n",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 60)))
        assert _split_multi(text) == list(split_multi(text)), text
        prev = text.rstrip(". ")
        assert _ends_in_abbreviation(prev) == (ABBREVIATIONS.search(prev) is not None), prev
    long_digits = "1" * 50
    assert _ends_in_abbreviation(long_digits) == (ABBREVIATIONS.search(long_digits) is not None)


def test_yake_sentences_with_rare_spaces_links_and_linebreaks() -> None:
    """The shortcuts of _word_tokens and _sentences (str.split, skipped web and line-break
    passes) must give segtok's tokens when those characters do occur."""
    import random

    from yake.data.utils import pre_filter, tokenize_sentences

    from tasks.enrich import _sentences

    rng = random.Random(5)
    pieces = [
        *"aZ .,;:!?'-@/",
        "\x1c",
        "\x1f",
        "\u2028",
        "\r\n",
        "\t",
        "\u00a0",
        "\u3000",
        "Hel-\r\nlo",
        "a-\u2028 b",
        "http://x.org/p",
        "ftp://a.b/c?d",
        "e@x.io",
        "www.x.com",
        "Dr.",
        "it's",
    ]
    for _ in range(2000):
        text = pre_filter("".join(rng.choice(pieces) for _ in range(rng.randint(1, 40))))
        assert _sentences(text) == tokenize_sentences(text), text


def test_abbreviation_shortcut_is_segtoks() -> None:
    """_ends_in_abbreviation answers most strings without segtok's pattern: same answers."""
    from segtok.segmenter import ABBREVIATIONS

    from tasks.enrich import _abbreviation_endings, _ends_in_abbreviation

    endings = _abbreviation_endings()
    assert {"e.g", "eg", "fig", "figs", "U.S", "Z.b"} <= set(endings)
    chars = [chr(c) for c in range(0x250)] + ["\u02b0", "\u01c5", "\u2160", "\u0660"]
    for prefix in ("", "a", "x ", "Word ", "by ", "Commander ", ", and ", "(", "A.", "12 ", "\n"):
        for end in [*endings, *chars, *(e + c for e in endings for c in "sS.x \n")]:
            for text in (prefix + end, "word " + prefix + end, "x" * 40 + " " + prefix + end):
                expected = ABBREVIATIONS.search(text) is not None
                assert _ends_in_abbreviation(text) == expected, text
