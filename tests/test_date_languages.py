"""htmldate's dateparser fallback reads a page in its language (and English), not in all ~200."""

from __future__ import annotations

from datetime import datetime

import htmldate.extractors as hx
import pytest

import tasks.extract as extract
from tasks import date_languages

# reaches dateparser: htmldate's own patterns do not know Italian month names
ITALIAN = "3 marzo 2019 alle 12:00"
EARLIEST, LATEST = datetime(1995, 1, 1), datetime(2030, 1, 1)


def _expr(string: str, lang: str | None) -> str | None:
    with date_languages.page_language(lang):
        return hx.try_date_expr(string, "%Y-%m-%d", True, EARLIEST, LATEST)


def test_importing_extraction_installs_it():
    assert hx._external_date is date_languages._external_date


def test_languages_for_a_page():
    assert date_languages.dateparser_languages("it") == ("it", "en")
    assert date_languages.dateparser_languages(" DE ") == ("de", "en")
    assert date_languages.dateparser_languages("en") == ("en",)
    # no language, or one dateparser does not know: every locale, as htmldate does
    assert date_languages.dateparser_languages(None) is None
    assert date_languages.dateparser_languages("") is None
    assert date_languages.dateparser_languages("xx") is None


def test_a_string_is_read_in_the_pages_language_or_in_all_without_one():
    assert _expr(ITALIAN, "it") == "2019-03-03"
    assert _expr(ITALIAN, None) == "2019-03-03"  # htmldate's own behaviour
    assert _expr(ITALIAN, "en") is None  # an English page's strings are not read as Italian


def test_an_outcome_is_not_reused_for_another_language():
    """htmldate caches outcomes by string alone: a change of language empties that cache."""
    assert _expr(ITALIAN, "it") == "2019-03-03"
    assert _expr(ITALIAN, "en") is None
    assert _expr(ITALIAN, "it") == "2019-03-03"


def _page(lang: str | None, text: str) -> str:
    attr = f' lang="{lang}"' if lang else ""
    return (
        f"<html{attr}><head><title>Budget approved</title></head><body><article>"
        f"<h1>Budget approved</h1><p>{text}</p><p>{text}</p>"
        f'<div class="date">{ITALIAN}</div></article></body></html>'
    )


@pytest.mark.parametrize(
    ("lang", "text", "seen"),
    [
        ("it", "Il governo ha approvato ieri la nuova legge sul bilancio. " * 8, ("it", "en")),
        # undeclared, English text: the language enrichment records for it
        (None, "The government said on Tuesday that the budget was approved. " * 8, ("en",)),
        # undeclared, not English: every locale
        (None, "Il governo ha approvato ieri la nuova legge sul bilancio. " * 8, None),
    ],
)
def test_extraction_hands_the_page_language_to_the_fallback(monkeypatch, lang, text, seen):
    calls: list[tuple[str, ...] | None] = []
    real = hx._external_date

    def spy(string: str):
        calls.append(date_languages._PAGE.get())
        return real(string)

    monkeypatch.setattr(hx, "_external_date", spy)
    hx.try_date_expr.cache_clear()  # an outcome cached by an earlier test would skip the call
    record, reason, _ = extract.extract_html(_page(lang, text), "https://example.org/a/b", None)
    assert reason is None and record is not None
    assert calls and set(calls) == {seen}
