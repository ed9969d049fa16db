"""The fast attempt runs without trafilatura's recall escalation, and nothing else changes."""

from __future__ import annotations

import importlib

import pytest
from trafilatura import bare_extraction
from trafilatura.utils import load_html

from tasks import escalation
from tasks import extract as extract_mod

STORY = "".join(
    f"<p>The mayor said on Monday that repairs to the old bridge number {i} would start soon.</p>"
    for i in range(5)
)
FILLER = "".join(
    f"<div class='item'>Archive entry {i}: residents of the district met to talk about "
    "parking, trees and the library's opening hours.</div>"
    for i in range(80)
)
# a short story (under trafilatura's escalation length) on a page with far more other text:
# the escalation test runs on it
SHORT_STORY_LONG_PAGE = (
    f"<html><body><article><h1>Bridge</h1>{STORY}</article>"
    f"<div class='archive'>{FILLER}</div></body></html>"
)


@pytest.fixture
def measures(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records each time trafilatura's page measure really runs."""
    calls: list[int] = []
    real = escalation._real_html2txt
    assert real is not None

    def recording(content, clean=True):
        calls.append(1)
        return real(content, clean)

    monkeypatch.setattr(escalation, "_real_html2txt", recording)
    return calls


def test_trafilatura_measures_the_page_through_the_switch_and_gets_the_same_text():
    core = importlib.import_module("trafilatura.core")
    baseline = importlib.import_module("trafilatura.baseline")
    assert core.html2txt is escalation._page_text
    assert escalation._real_html2txt is baseline.html2txt
    tree = load_html(SHORT_STORY_LONG_PAGE)
    assert core.html2txt(tree) == baseline.html2txt(tree)
    assert "Archive entry 79" in core.html2txt(tree)
    escalation.install()  # installing again keeps the original behind the switch
    assert escalation._real_html2txt is baseline.html2txt


def test_outside_the_block_the_escalation_test_runs(measures: list[int]):
    bare_extraction(load_html(SHORT_STORY_LONG_PAGE), fast=True, **extract_mod._BODY_OPTIONS)
    assert measures == [1]


def test_in_the_block_nothing_escalates_as_with_trafilaturas_own_switch(
    measures: list[int], monkeypatch: pytest.MonkeyPatch
):
    def fast():
        return bare_extraction(
            load_html(SHORT_STORY_LONG_PAGE), fast=True, **extract_mod._BODY_OPTIONS
        )

    with escalation.measure_off():
        off = fast()
    assert measures == []
    monkeypatch.setattr(importlib.import_module("trafilatura.core"), "ESCALATION_MAX_LENGTH", 0)
    never = fast()
    assert off.text == never.text
    assert "repairs to the old bridge number 4" in off.text


def test_the_switch_is_back_after_the_block_even_when_it_raises(measures: list[int]):
    with pytest.raises(RuntimeError), escalation.measure_off():
        raise RuntimeError("extraction failed")
    assert escalation._page_text(load_html(SHORT_STORY_LONG_PAGE)) != ""
    assert measures == [1]


def test_the_fast_attempt_does_not_measure_the_page(measures: list[int], cascade_calls: list[bool]):
    """A short story the gate keeps: one fast run, no page measure."""
    html = f"<html><body><article><h1>Bridge</h1>{STORY}</article></body></html>"
    doc = extract_mod.extract_body(load_html(html), None)
    assert cascade_calls == [True]
    assert measures == []
    assert "repairs to the old bridge number 4" in doc.text
