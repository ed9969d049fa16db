"""The full cascade after a rejected fast attempt reuses the attempt's work and gives the text
trafilatura's own full cascade gives."""

from __future__ import annotations

import importlib
from copy import copy

import pytest
from trafilatura import bare_extraction
from trafilatura.utils import load_html

from tasks import attempt_reuse
from tasks import extract as extract_mod


def _paragraphs(sentence: str, n: int) -> str:
    return "".join(f"<p>{sentence.format(i=i)}</p>" for i in range(n))


STORY = _paragraphs(
    "The mayor said on Monday that repairs to the old bridge number {i} would start in the "
    "spring and that the river path would stay open while the work went on.",
    8,
)
# far more <p> text outside the story than in it: the fast text covers under half of the
# page's paragraph text, so the gate sends the page to the full cascade
SIDEBAR = _paragraphs(
    "Reader letter {i}: the library's opening hours, the parking rules near the market and "
    "the new trees on the high street were discussed at length by the residents.",
    30,
)
STORY_AND_LETTERS = (
    "<html><body><article><h1>Bridge</h1>"
    f"{STORY}</article><aside class='letters'>{SIDEBAR}</aside></body></html>"
)
# a story too short for the main extractor, which then falls back on the wild-text recovery
SHORT = (
    "<html><body><div class='c'><p>Repairs start soon, the mayor said.</p></div>"
    f"<aside>{SIDEBAR}</aside></body></html>"
)


@pytest.fixture
def real_runs(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the original preparation and main-extractor runs behind the hooks."""
    counts = {"prepare": 0, "extract": 0}
    for name in counts:
        real = attempt_reuse._real[name]

        def counting(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setitem(attempt_reuse._real, name, counting)
    return counts


def _full(html: str) -> str:
    doc = bare_extraction(load_html(html), **extract_mod._BODY_OPTIONS)
    return doc.text if doc is not None else ""


def test_hooks_are_installed_and_pass_through_outside_an_attempt(real_runs: dict[str, int]):
    core = importlib.import_module("trafilatura.core")
    main = importlib.import_module("trafilatura.main_extractor")
    assert core._prepare_tree is attempt_reuse._prepare_tree
    assert core.extract_content is attempt_reuse._extract_content
    assert main.recover_wild_text is attempt_reuse._recover_wild_text
    attempt_reuse.install()  # a second install keeps the originals behind the hooks
    assert attempt_reuse._real["prepare"].__name__ == "counting"
    text = _full(STORY_AND_LETTERS)
    assert real_runs == {"prepare": 1, "extract": 1}
    assert "bridge number 7" in text


def test_a_rejected_attempt_is_not_prepared_or_extracted_again(
    real_runs: dict[str, int], cascade_calls: list[bool]
):
    want = _full(STORY_AND_LETTERS)
    real_runs.update(prepare=0, extract=0)
    doc = extract_mod.extract_body(load_html(STORY_AND_LETTERS), None)
    assert cascade_calls == [True, False]  # the gate rejected the fast text
    assert real_runs == {"prepare": 1, "extract": 1}  # the attempt's only
    assert doc.text == want
    assert "bridge number 7" in doc.text


def test_after_the_wild_text_recovery_the_cascade_extracts_again(
    real_runs: dict[str, int], cascade_calls: list[bool]
):
    """The recovery keeps teaser blocks in fast mode and drops them otherwise: an attempt that
    used it is not reused."""
    want = _full(SHORT)
    real_runs.update(prepare=0, extract=0)
    with attempt_reuse.recording() as att:
        bare_extraction(load_html(SHORT), fast=True, **extract_mod._BODY_OPTIONS)
    assert att.wild and not att.reusable
    doc = extract_mod.extract_body(load_html(SHORT), None)
    assert cascade_calls == [True, False]
    assert real_runs["extract"] >= 3  # the attempt above, extract_body's attempt, the cascade
    assert (doc.text if doc is not None else "") == want


def test_only_the_cascades_first_preparation_is_replaced(
    real_runs: dict[str, int], monkeypatch: pytest.MonkeyPatch
):
    seen = []
    counting = attempt_reuse._real["prepare"]

    def keep_options(tree, options, url):
        seen.append(options)
        return counting(tree, options, url)

    monkeypatch.setitem(attempt_reuse._real, "prepare", keep_options)
    with attempt_reuse.recording() as att:
        bare_extraction(load_html(STORY_AND_LETTERS), fast=True, **extract_mod._BODY_OPTIONS)
    assert att.reusable
    options = copy(seen[0])
    options.fast = False  # the full cascade's options: the same but for the mode
    tree = load_html(STORY_AND_LETTERS)
    with attempt_reuse.replaying(att):
        first = attempt_reuse._prepare_tree(tree, options, None)
        second = attempt_reuse._prepare_tree(tree, options, None)
    assert first[0] is attempt_reuse._PREPARED and first[1] is att.backup
    assert second[0] is not attempt_reuse._PREPARED  # e.g. the recall retry's own tree
    assert real_runs["prepare"] == 2
    options.focus = "precision"  # options the attempt did not run with: never replayed
    att.replayed = False
    with attempt_reuse.replaying(att):
        assert attempt_reuse._prepare_tree(tree, options, None)[0] is not attempt_reuse._PREPARED
