"""The guarded copies of trafilatura's XPath rules must select exactly what the rules do."""

from __future__ import annotations

import importlib.util
from copy import deepcopy
from pathlib import Path

import pytest
from lxml.etree import XPath
from trafilatura.htmlprocessing import convert_tags, tree_cleaning
from trafilatura.settings import Extractor
from trafilatura.utils import load_html

import tasks.extract  # noqa: F401  (installs the guarded rules)
from tasks import xpath_guards
from tasks.rule_matchers import SELECTION_RULES, FirstMatch, RuleMatcher
from tasks.xpath_guards import attribute_guard, cheaper, guarded

ROOT = Path(__file__).resolve().parent.parent
settings, rules, baseline = xpath_guards.trafilatura_modules()
ATTRIBUTES = ("id", "class", "style", "role", "itemprop", "data-component", "aria-hidden")


def _synthetic_page() -> str:
    """Every tag the rules name, with each attribute alone, empty, or matching a rule."""
    values = (
        "",
        "comments",
        "footer",
        "nav",
        "sidebar",
        "article-body",
        "cookie-banner",
        "display:none",
        "author",
        "hidden",
        "teaser",
        "main-content",
        "caption",
        "true",
    )
    tags = ("div", "section", "span", "p", "a", "aside", "article", "main", "h1", "ul", "ol")
    cells = [f"<{t}>bare {t}</{t}>" for t in tags]
    for tag in tags:
        for attribute in ATTRIBUTES:
            for value in values:
                cells.append(f'<{tag} {attribute}="{value}">{tag} {attribute} {value}</{tag}>')
    # a union such as @id|@class reads as whichever of the two comes first on the element
    for first, second in (("id", "class"), ("class", "id"), ("id", "style"), ("style", "id")):
        for a, b in (("reply-1", "hidden"), ("hidden", "comments-title"), ("cookie", "nav")):
            cells.append(f'<div {first}="{a}" {second}="{b}">pair {first} {a} {second} {b}</div>')
            cells.append(f'<span {first}="{a}" {second}="{b}">pair in a span</span>')
    # containers with and without a heading, and lists, for the rules that look inside
    cells.append('<div class="infinite-scroll"><h1>kept: holds the headline</h1></div>')
    cells.append('<section id="infinite-scroll"><p>appended story</p></section>')
    cells.append('<ul class="comment-list"><li>c</li></ul><ol id="comments"><li>d</li></ol>')
    cells.append('<div role="Navigation">n</div><p data-component="MostPopularStories">m</p>')
    cells.append('<div class="TEASER box">t</div><span data-lp-replacement-content="">r</span>')
    body = "".join(cells)
    return f"<html><head><title>t</title></head><body><div>{body}</div></body></html>"


def _pages() -> list:
    files = sorted(ROOT.glob("tests/fixtures/**/*.html")) + sorted(
        ROOT.glob("newsflow/demo/site/**/*.html")
    )
    trees = [load_html(f.read_bytes()) for f in files]
    return [t for t in trees if t is not None] + [load_html(_synthetic_page())]


def _fresh_rules():
    """trafilatura's rules module loaded afresh: its own rules, not the installed copies."""
    spec = importlib.util.spec_from_file_location("fresh_xpaths", rules.__file__)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    return fresh


def _originals() -> list[XPath]:
    fresh = _fresh_rules()
    exprs = [x for name in xpath_guards.rule_lists(rules) for x in getattr(fresh, name)]
    return [*exprs, settings.BASIC_CLEAN_XPATH]


def test_every_guarded_rule_selects_the_same_elements_as_the_rule():
    originals = _originals()
    assert len(originals) > 30
    pages = _pages()
    assert len(pages) > 20
    matched = 0
    for original in originals:
        copy = cheaper(original)
        for tree in pages:
            selected = original(tree)
            assert copy(tree) == selected, original.path[:120]
            matched += len(selected)
    assert matched > 500  # the pages exercise the rules, not only their misses


def test_the_installed_pruning_rules_select_what_trafilatura_s_own_rules_do_in_order():
    """The pruning lists run as compiled Python (tasks.rule_matchers) where a rule can be
    translated; what each selects, in the order trafilatura deletes it, must not change."""
    fresh = _fresh_rules()
    pages = _pages()
    compiled = matched = rules_seen = 0
    for name in sorted(SELECTION_RULES):
        installed = getattr(rules, name)
        assert len(installed) == len(getattr(fresh, name))
        for original, rule in zip(getattr(fresh, name), installed, strict=True):
            compiled += isinstance(rule, RuleMatcher)
            rules_seen += 1
            for tree in pages:
                selected = original(tree)
                assert rule(tree) == selected, original.path[:120]
                for element in selected[:3]:  # and inside a subtree, as prune calls them
                    assert rule(element) == original(element), original.path[:120]
                matched += len(selected)
    assert compiled == rules_seen > 15  # every one of them is in the translated subset
    assert matched > 500


def test_the_installed_content_rules_find_the_element_trafilatura_s_rules_find_first():
    """trafilatura reads each BODY_XPATH rule as ``next(s for s in rule(tree) if s is not
    None)``; the compiled ones stop at that element, which must be the same one."""
    fresh = _fresh_rules()
    pages = _pages()
    opts = Extractor()
    # the rules run on cleaned, converted trees; the raw ones exercise them too
    trees = pages + [convert_tags(tree_cleaning(deepcopy(t), opts), opts) for t in pages]
    found = 0
    installed = rules.BODY_XPATH
    assert all(isinstance(rule, FirstMatch) for rule in installed)
    for original, rule in zip(fresh.BODY_XPATH, installed, strict=True):
        for tree in trees:
            expected = next((s for s in original(tree) if s is not None), None)
            got = rule(tree)
            assert got == ([expected] if expected is not None else []), original.path[:120]
            found += expected is not None
    assert found > 40


def test_the_installed_rules_are_guarded_and_installing_again_changes_nothing():
    guarded_now = [x.path for value in xpath_guards.rule_lists(rules).values() for x in value]
    assert baseline.BASIC_CLEAN_XPATH.path.count("[@class or @id]") == 2
    assert settings.BASIC_CLEAN_XPATH.path.count("[@class or @id]") == 0
    assert sum("[@class or @id]" in p for p in guarded_now) > 10
    xpath_guards.install()
    assert [
        x.path for value in xpath_guards.rule_lists(rules).values() for x in value
    ] == guarded_now


@pytest.mark.parametrize(
    ("predicate", "guard"),
    [
        ("[re:test(@id, 'foo') or contains(@class, 'bar')]", "[@class or @id]"),
        (
            "[starts-with(@id|@class, 'reply-') or @aria-hidden='true']",
            "[@aria-hidden or @class or @id]",
        ),
        ("[contains(translate(@id, 'T', 't'), 'teaser')]", "[@id]"),
        ("[re:test(@class, 'fulltext', 'i')]", "[@class]"),
        # not a test on attributes alone: a missing attribute can make it true, or a child can
        ("[not(contains(@class, 'x'))]", None),
        ("[contains(@class, 'x') or rel='me']", None),
        ("[self::div or contains(@class, 'x')]", None),
        ("[translate(@id, 'a', 'b')='']", None),
        ("[re:test(@class, 'x?')]", None),  # matches the empty string
        ("[@class='post']", None),  # no function call, nothing to save
        ("[1]", None),
    ],
)
def test_a_guard_is_only_added_where_a_missing_attribute_fails_the_predicate(predicate, guard):
    assert attribute_guard(predicate) == guard


def test_the_guard_goes_right_before_its_predicate_so_positions_keep_their_meaning():
    path = ".//*[self::div][contains(@class, 'x')][1]"
    assert guarded(path) == ".//*[self::div][@class][contains(@class, 'x')][1]"
    tree = load_html(
        "<html><body><div class='y'>a</div><div>b</div><div class='x'>c</div></body></html>"
    )
    assert [e.text for e in XPath(guarded(path))(tree)] == ["c"]
    assert guarded(guarded(path)) == guarded(path)


@pytest.mark.parametrize(
    ("predicate", "expected"),
    [
        ("[re:test(@id, 'foo')]", "[(@id and re:test(@id, 'foo'))]"),
        (
            "[re:test(@id|@class, '^reply-') or contains(@style, 'x')]",
            "[(@id|@class and re:test(@id|@class, '^reply-')) or contains(@style, 'x')]",
        ),
        ("[re:test(@class, 'a?', 'i')]", "[re:test(@class, 'a?', 'i')]"),  # matches ''
        ("[re:test(text(), 'foo')]", "[re:test(text(), 'foo')]"),  # not an attribute
    ],
)
def test_an_attribute_regex_test_is_only_called_when_the_attribute_is_there(predicate, expected):
    assert xpath_guards.guarded_tests(predicate) == expected
    assert xpath_guards.guarded_tests(expected) == expected  # once


def test_a_guarded_regex_test_keeps_its_answer_for_missing_empty_and_present_attributes():
    ns = {"re": xpath_guards.REGEXP_NS}
    html = "<html><body><p>a</p><p id=''>b</p><p id='xfoo'>c</p><p class='foo'>d</p></body></html>"
    tree = load_html(html)
    for rule in (".//p[re:test(@id, 'foo')]", ".//p[not(re:test(@id, 'foo'))]"):
        plain = XPath(rule, namespaces=ns)(tree)
        assert XPath(guarded(rule), namespaces=ns)(tree) == plain
        assert plain


def test_the_page_cleaning_that_runs_is_the_guarded_rule():
    """What html2txt (trafilatura's page-length measure) runs, not just a name that is set."""
    calls = []
    installed = baseline.BASIC_CLEAN_XPATH

    class Spy:
        def __call__(self, tree):
            calls.append(tree)
            return installed(tree)

    baseline.BASIC_CLEAN_XPATH = Spy()
    try:
        html = "<html><body><div id='cookie-banner'>Accept</div><p>Story text.</p></body></html>"
        assert baseline.html2txt(html) == "Story text."
    finally:
        baseline.BASIC_CLEAN_XPATH = installed
    assert len(calls) == 1
    assert "[@class or @id]" in installed.path
