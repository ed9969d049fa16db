"""Cleaning behaviour: junk kinds removed, credits captured, titles and bylines normalised."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.clean import (  # noqa: E402
    LineRule,
    clean_batch,
    clean_record,
    junk_rules,
    split_authors,
    strip_site_name,
)
from tasks.schema import ARTICLES_CORE, REJECTS  # noqa: E402

PROSE = (
    "The council voted on Tuesday to build twelve kilometres of new cycle lanes in the "
    "eastern districts, with most of the cost covered by the regional government."
)


def _record(body: str, title: str = "Council approves new cycle lanes", **kw: object) -> dict:
    return {
        "url": "https://news.example.org/a",
        "canonical_url": None,
        "title": title,
        "authors": [],
        "published": "2025-03-04",
        "language": "en",
        "description": None,
        "site_name": "Example Times",
        "body": body,
        "syndication_hints": None,
        **kw,
    }


def test_junk_lines_of_every_kind_are_removed_and_prose_kept() -> None:
    junk = [
        "Read also: Bridge closed again",
        "Lesen Sie auch: Warum die Brücke gesperrt ist",
        "Lea también: El puente vuelve a cerrar",
        "Story continues below advertisement",
        "Photo: Reuters/John Doe",
        "Sign up for our newsletter to get the morning briefing.",
        "Consider supporting the Kyiv Independent.",
    ]
    body = "\n\n".join([PROSE, *junk, PROSE.replace("Tuesday", "Wednesday")])
    cleaned, reason = clean_record(_record(body))
    assert reason is None
    assert cleaned["body"].split("\n\n") == [PROSE, PROSE.replace("Tuesday", "Wednesday")]


def test_app_and_related_trailers_end_the_article() -> None:
    second = PROSE.replace("Tuesday", "Wednesday")
    body = "\n\n".join(
        [
            PROSE,
            second,
            "DOWNLOAD THE APP",
            "Ready to dive into the world of global news? Download our app today.",
        ]
    )
    cleaned, _ = clean_record(_record(body))
    assert cleaned["body"] == f"{PROSE}\n\n{second}"


def test_a_paragraph_printed_twice_is_kept_once() -> None:
    cleaned, _ = clean_record(_record(f"{PROSE}\n\n{PROSE}"))
    assert cleaned["body"] == PROSE


def test_origin_credit_is_captured_before_its_line_is_removed() -> None:
    body = f"{PROSE}\n\nThis article was originally published on NBCNews.com"
    cleaned, _ = clean_record(_record(body))
    assert cleaned["origin_credit"] == "NBCNews.com"
    assert "originally published" not in cleaned["body"]


def test_wire_copyright_is_a_credit_but_own_copyright_is_not() -> None:
    wire, _ = clean_record(_record(f"{PROSE}\n\n© 2019 Associated Press. All Rights Reserved."))
    assert wire["origin_credit"] == "Associated Press" and "©" not in wire["body"]
    own, _ = clean_record(_record(f"{PROSE}\n\n© 2025 Example Times. All rights reserved."))
    assert own["origin_credit"] is None and own["body"] == PROSE


@pytest.mark.parametrize(
    ("dateline", "agency"),
    [
        ("OTTAWA (AP) — ", "AP"),
        ("WASHINGTON (AP) -- ", "AP"),
        ("LONDON (Reuters) - ", "Reuters"),
        ("LONDON, March 10 (Reuters) - ", "Reuters"),
        ("ST. JOSEPH, Mich. (AP) — ", "AP"),
        ("Berlin (dpa) - ", "dpa"),
        ("Rio de Janeiro (Reuters) – ", "Reuters"),
        ("(AFP) — ", "AFP"),
        ("KYIV, Ukraine (Northwire) — ", "Northwire"),
        ("HARBOR CITY (Coastal Press Service) —", "Coastal Press Service"),
    ],
)
def test_agency_dateline_is_credited_and_kept_in_the_lede(dateline: str, agency: str) -> None:
    cleaned, _ = clean_record(_record(f"{dateline}{PROSE}\n\n{PROSE.upper()}"))
    assert cleaned["origin_credit"] == agency
    first = cleaned["body"].split("\n\n")[0]
    assert first.startswith(dateline.strip()) and first.endswith(PROSE)


@pytest.mark.parametrize(
    "opening",
    [
        "WASHINGTON — ",  # a dateline without agency names no syndication source
        "The agency (AP) — ",  # not a place
        "Officials said (Reuters) - ",
        "Amigo & amigo (Australia) – ",
    ],
)
def test_text_that_is_not_an_agency_dateline_is_kept(opening: str) -> None:
    cleaned, _ = clean_record(_record(f"{opening}{PROSE}"))
    assert cleaned["body"] == f"{opening}{PROSE}"
    assert cleaned["origin_credit"] is None


def test_a_dateline_printed_as_its_own_line_is_dropped() -> None:
    cleaned, _ = clean_record(_record(f"KYIV, Ukraine (Northwire) —\n\n{PROSE}"))
    assert cleaned["body"] == PROSE and cleaned["origin_credit"] == "Northwire"


def test_source_footer_glued_to_the_last_paragraph_is_split_off() -> None:
    body = f"{PROSE}Original article source: Council backs cycle lanes in eastern districts"
    cleaned, _ = clean_record(_record(body))
    assert cleaned["body"] == PROSE
    assert cleaned["origin_credit"] == "Council backs cycle lanes in eastern districts"
    glued = f"{PROSE} This article was originally published on The Conversation."
    cleaned, _ = clean_record(_record(glued))
    assert cleaned["body"] == PROSE and cleaned["origin_credit"] == "The Conversation"


def test_credit_like_words_inside_prose_are_kept() -> None:
    body = (
        f"{PROSE} The study was originally published in Nature. Its original article "
        "source: the city archive."
    )
    cleaned, _ = clean_record(_record(body))
    assert cleaned["body"] == body and cleaned["origin_credit"] is None


CLEAN_FIXTURES = sorted((Path(__file__).parent / "fixtures" / "clean").glob("*.json"))


@pytest.mark.parametrize("path", CLEAN_FIXTURES, ids=[p.stem for p in CLEAN_FIXTURES])
def test_clean_golden_fixture(path: Path) -> None:
    """tests/fixtures/clean/<name>.json: a record (overrides of _record) and the expected
    cleaned fields."""
    case = json.loads(path.read_text(encoding="utf-8"))
    rec = dict(case["record"])
    cleaned, reason = clean_record(_record(rec.pop("body"), **rec))
    assert reason is None
    assert {k: cleaned[k] for k in case["expected"]} == case["expected"]


def test_headline_repeated_as_first_body_line_is_dropped() -> None:
    cleaned, _ = clean_record(_record(f"Council approves new cycle lanes\n\n{PROSE}"))
    assert cleaned["body"] == PROSE


def test_site_name_suffix_is_stripped_from_titles() -> None:
    assert (
        strip_site_name("Council approves lanes | Example Times", "Example Times", None, None)
        == "Council approves lanes"
    )
    assert (
        strip_site_name("Council approves lanes - example.com", None, None, "example.com")
        == "Council approves lanes"
    )
    # a dash inside the headline is not a site name
    assert (
        strip_site_name("Ukraine - Russia talks resume", "Example Times", None, None)
        == "Ukraine - Russia talks resume"
    )


def test_bylines_are_split_and_organisations_dropped_next_to_people() -> None:
    assert split_authors(["By Anna Koval and Petro Lys"]) == ["Anna Koval", "Petro Lys"]
    assert split_authors(["Von Anna Schmidt und Jan Meier"]) == ["Anna Schmidt", "Jan Meier"]
    assert split_authors(["Kari Nordmann og Ola Nordmann"]) == ["Kari Nordmann", "Ola Nordmann"]
    assert split_authors(["di Mario Rossi e Da Silva"]) == ["Mario Rossi", "Da Silva"]
    assert split_authors(
        ["https://example.com/staff/anna", "Anna Koval, Example Times"], site="Example Times"
    ) == ["Anna Koval"]
    # an article credited only to an outlet keeps that credit
    assert split_authors(["Example Times Staff"]) == ["Example Times Staff"]


def test_a_body_that_is_only_junk_is_rejected() -> None:
    cleaned, reason = clean_record(_record("Read also: something\n\nAdvertisement"))
    assert cleaned is None and reason == "empty_after_clean"


def test_content_hash_ignores_formatting_differences() -> None:
    a, _ = clean_record(_record(PROSE))
    b, _ = clean_record(_record(PROSE.upper().replace(",", " ,")))
    assert a["content_hash"] == b["content_hash"]


def test_clean_batch_keeps_the_contract_schema_and_reports_rejects() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [
        {
            **_record(PROSE),
            "article_id": "a1",
            "page_id": "p1",
            "outlet": "Example Times",
            "published": date(2025, 3, 4),
            "fetched_at": now,
        },
        {
            **_record("Advertisement"),
            "article_id": "a2",
            "page_id": "p2",
            "published": None,
            "fetched_at": now,
        },
    ]
    for r in rows:
        r.pop("site_name")
    table = pa.Table.from_pylist(
        [{f.name: r.get(f.name) for f in ARTICLES_CORE} for r in rows], schema=ARTICLES_CORE
    )
    kept, rejects = clean_batch(table, "run-2")
    assert kept.schema == ARTICLES_CORE and rejects.schema == REJECTS
    assert kept.num_rows == 1 and kept.column("content_hash")[0].as_py()
    assert kept.column("published")[0].as_py() == date(2025, 3, 4)
    rej = rejects.to_pylist()[0]
    assert (rej["item_id"], rej["reason"], rej["stage"]) == ("a2", "empty_after_clean", "clean")


# Lines that probe how LineRule evaluates rules: phrases at the start, in the middle and at the
# end, case variants (including the Unicode ones re folds: long s, Kelvin sign, dotless i),
# decoration, newlines, empty and letterless lines.
_PROBES = [
    "",
    "--",
    "• • •",
    "Read also: Bridge closed again",
    "READ ALSO: BRIDGE CLOSED AGAIN",
    "Lesen Sie auch: Warum die Brücke gesperrt ist",
    "Photo: Reuters/John Doe",
    "(Photo by Jane Roe)",
    "Sign up for our newsletter to get the morning briefing.",
    "Get the morning briefing: subscribe to one of our newsletters today",
    "Subscribe to the newsletter\nand more",
    "This page is powered by Example.",
    "Powered by wind, the ferry crosses the bay in an hour.",
    "Diese Seite enthält Affiliate-Links.",
    "[LIVE] | ",
    "Comments (12)",
    "By Anna Koval and Petro Lys",
    "Updated: 22.04.2024, 06:00 Uhr",
    "2024年4月22日 06:00",
    "関連記事: 橋が再び閉鎖",
    "会員登録はこちら",
    "Reuters 12.03.2024",
    "Chapters, selected",
    "ſign up for our newſletter",
    "\u212aommentare",
    "ıf you enjoyed this story, please subscribe",
    "readMore:",
    "Advertisement",
    "advertisement\n",
    "Noticias relacionadas con el puente",
    "Related stories",
    "More stories from Example Times",
    "- 12/50 The bridge at night",
    PROSE,
]


@pytest.mark.parametrize("kind", ["drop_line", "drop_any", "cut_tail"])
def test_line_rules_answer_exactly_as_their_plain_union(kind: str) -> None:
    rule = junk_rules()[kind]
    lines = [v for p in _PROBES for v in (p, p.upper(), p.lower(), f"» {p} «", f"x {p}")]
    got = [rule.fullmatch(x) for x in lines]
    assert got == [bool(rule.union.fullmatch(x)) for x in lines]
    assert any(got) and not all(got)


@pytest.mark.parametrize(
    "patterns",
    [
        # `.*`-led rules become searches; the others are grouped by their first character
        [r".*\bfoo\b.*", r".*bar", r"(?-i:[a-z]+)X", r"[^a]bc", r"\W*", r"(?:ab)?cd", "ſtop", "k"],
        [r".*a|.*b", r".*", r"\d+ min", r"(?i:x)y", r"(?=q)\w+", r"(?<=^)z"],
        # back-references count groups across the union: such a set is evaluated whole
        [r"(a)b", r"(\w)\1+", r".*\bfoo\b.*", r"(x)?(?(1)y|z)"],
    ],
)
def test_line_rule_is_the_union_of_its_patterns(patterns: list[str]) -> None:
    union = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    rule = LineRule(patterns)
    words = ["", "foo", "afoob", "a foo b", "bar", "barx", "abcX", "ABCX", "bbc", "abc", "cd"]
    words += ["abcd", "stop", "STOP", "\u212a", "K", "kk", "aa", "xy", "Xy", "xY", "z", "y"]
    words += ["xz", "q1", "12 min", "--", "foo\nbar", "x\nfoo", "bar\n", "\nbar", "a\nb"]
    lines = words + [f"{a} {b}" for a in words[:12] for b in words[:12]]
    assert [rule.fullmatch(x) for x in lines] == [bool(union.fullmatch(x)) for x in lines]


def test_a_phrase_rule_led_by_dot_star_drops_the_phrase_anywhere_within_its_reach() -> None:
    mid = "Get the morning briefing: subscribe to one of our newsletters today"
    far = (
        "Readers subscribe to the weekly printed bulletin, the district magazine or the newsletters"
    )
    end = "This page is powered by Example."
    not_end = "Powered by wind, the ferry crosses the bay in an hour."
    body = "\n\n".join([PROSE, mid, far, end, not_end])
    cleaned, _ = clean_record(_record(body))
    assert cleaned["body"].split("\n\n") == [PROSE, far, not_end]


def test_inline_teaser_tails_are_cut_whatever_their_case() -> None:
    second = "THE WORKS START IN MAY."
    body = f"{PROSE} READ ALSO: Bridge closed again\n\n{second} read more : the plan"
    cleaned, _ = clean_record(_record(body))
    assert cleaned["body"] == f"{PROSE}\n\n{second}"
