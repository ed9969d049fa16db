"""A compiled rule must answer exactly as libxml2 does on the same XPath, edge cases included."""

from __future__ import annotations

import pytest
from lxml import etree
from lxml.etree import XPath
from trafilatura.utils import load_html

from tasks.rule_matchers import (
    RuleMatcher,
    Untranslatable,
    compile_first,
    compile_rule,
    translated,
)

NS = {"re": "http://exslt.org/regular-expressions"}
PAGE = load_html(
    "<html><body><div id='main'>"
    "<div>no attributes</div>"
    "<div id=''>empty id</div>"
    "<div id='reply-1' class='box'>id first</div>"
    "<div class='box' id='reply-2'>class first</div>"
    "<div class='reply-3' id='x'>class first, class matches</div>"
    "<span class='Hidden Nav'>caps</span>"
    "<section role='NAVIGATION'>role</section>"
    "<section><h1>headline</h1><p class='infinite-scroll'>inside</p></section>"
    "<aside class='infinite-scroll'><p>no heading</p></aside>"
    "<ul class='comments'><li>a</li></ul><ol id='comments'><li>b</li></ol>"
    "<p aria-hidden='true'>hidden</p><p aria-hidden='false'>shown</p>"
    "<p style='display: none'>styled</p>"
    "<section class='wrap'><div class='inner'><div class='deeper'>nested</div></div></section>"
    "<span><rel>me</rel></span><div><rel>m<b>e</b></rel></div><p><rel>not me</rel></p>"
    "<author>A. Writer</author>"
    "</div></body></html>"
)
RULES = [
    ".//*[starts-with(@id|@class, 'reply-')]",  # a union reads its first attribute
    ".//*[re:test(@class|@id, '^reply-')]",
    ".//*[@id|@class='box']",  # a union compared: any attribute may equal
    ".//*[@id='']",  # present and empty, not missing
    ".//*[not(@id)]",
    ".//*[contains(@id, '')]",  # true on every element: a missing attribute reads as ''
    ".//*[re:test(@class, 'hidden', 'i')]",
    ".//*[re:test(@class, 'hidden')]",
    ".//*[contains(translate(@role, 'NAVIGTO', 'navigt'), 'naviati')]",  # O deletes
    ".//*[self::div or self::section or self::aside][not(.//h1) or re:test(@class, 'x')]",
    ".//*[self::section or self::aside][.//h1 and @class or not(@role)]",
    ".//*[self::ul or self::ol][(@id or @class) and not(self::ol and @class)]",
    ".//p[@aria-hidden='true' or contains(@style, 'display: none')]",
    ".//*[self::p][@aria-hidden]",
    ".//*[rel='me' or @id='x']",  # a child element's whole text, markup inside included
    "//*[self::p or self::span][@aria-hidden or rel='me']|//author",  # from the root, a union
    "//*[@class]",
]


@pytest.mark.parametrize("rule", RULES)
def test_a_compiled_rule_selects_what_its_xpath_does(rule):
    xpath = XPath(rule, namespaces=NS)
    compiled = compile_rule(xpath)
    for context in (PAGE, *PAGE.iter("div", "section")):
        assert compiled(context) == xpath(context), rule


def test_the_rules_are_not_trivially_empty_or_everything():
    sizes = {len(XPath(r, namespaces=NS)(PAGE)) for r in RULES}
    assert len(sizes) > 5
    assert [e.text for e in compile_rule(XPath(RULES[0]))(PAGE)] == [
        "id first",
        "class first, class matches",
    ]


@pytest.mark.parametrize(
    "rule",
    [
        "(.//p)[1]",  # a position on a whole path
        ".//*[@class][1]",  # a position
        ".//p[re:test(text(), 'x')]",  # text, not an attribute
        ".//*[count(p) > 1]",
        ".//div/p",  # a child step
        "//div|.//p",  # from the root and from the element in one union
        "./div",  # a child step
    ],
)
def test_what_is_outside_the_subset_stays_an_xpath(rule):
    xpath = XPath(rule, namespaces=NS)
    with pytest.raises(Untranslatable):
        compile_rule(xpath)
    assert translated(xpath) is xpath


def test_a_path_from_the_root_on_an_inner_element_goes_to_the_xpath():
    """``//`` means the whole document wherever it is called from."""
    xpath = XPath("//*[@class]")
    compiled = compile_rule(xpath)
    inner = next(PAGE.iter("section"))
    assert compiled(inner) == xpath(inner) == xpath(PAGE) == compiled(PAGE)
    assert set(compiled(inner)) - set(inner.iter())  # elements outside the section too


def test_a_document_or_variables_go_to_the_xpath():
    rule = XPath(".//*[self::div][@id]")
    fallback = XPath(".//*[self::div][@id]")
    compiled = compile_rule(rule, fallback)
    assert isinstance(compiled, RuleMatcher) and compiled.path == fallback.path
    document = etree.ElementTree(PAGE)
    assert compiled(document) == fallback(document)  # the root itself is a candidate there
    assert compiled(PAGE) == rule(PAGE)


FIRST_RULES = [
    ".//*[self::div or self::section][@class][1]",  # [1] is per parent: many, first read
    "(.//*[self::p][@aria-hidden])[1]",
    "(.//aside)[1]|(.//section)[1]",  # a union: whichever comes first in the document
    "(.//aside)[1]|(.//*[self::ul or self::ol][@id])[1]",
    ".//*[@data-none][1]",  # no match at all
]


@pytest.mark.parametrize("rule", FIRST_RULES)
def test_a_first_match_is_the_first_element_its_xpath_selects(rule):
    xpath = XPath(rule, namespaces=NS)
    compiled = compile_first(xpath)
    for context in (PAGE, *PAGE.iter("div", "section")):
        assert compiled(context) == xpath(context)[:1], rule


def test_first_match_rules_have_more_than_one_answer_in_xpath():
    """So the tests above check the choice of the first, not an only element."""
    assert len(XPath(FIRST_RULES[0])(PAGE)) > 2
    assert len(XPath(FIRST_RULES[2])(PAGE)) == 2
    with pytest.raises(Untranslatable):
        compile_first(XPath("(.//p)[2]"))  # a position other than the first
    with pytest.raises(Untranslatable):
        compile_rule(XPath(FIRST_RULES[0]))  # [1] means nothing to a full selection
