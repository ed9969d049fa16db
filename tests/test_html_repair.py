"""The checked removal of XML-invalid characters must give what trafilatura's regex gives."""

from __future__ import annotations

import re

from lxml import etree
from trafilatura import utils
from trafilatura.utils import load_html

import tasks.extract  # noqa: F401  (installs it)
from tasks.html_repair import KNOWN_PATTERN, CheckedSub, install

ORIGINAL = re.compile(KNOWN_PATTERN)


def test_it_is_installed_and_lists_every_character_the_pattern_matches():
    checked = utils.INVALID_XML_CHARS
    assert isinstance(checked, CheckedSub)
    assert install() is True and utils.INVALID_XML_CHARS is checked  # idempotent
    matched = ORIGINAL.findall("".join(map(chr, range(0x110000))))
    assert sorted(checked.chars) == sorted(matched)
    assert len(matched) == 31


def test_the_same_string_comes_out_with_and_without_such_characters():
    checked = utils.INVALID_XML_CHARS
    page = "<html><body><p>caf\u00e9 \u201cquoted\u201d\ttab\r\n</p></body></html>"
    assert checked.sub("", page) is page  # nothing to remove: not even copied
    for c in checked.chars:
        for dirty in (c + page, page.replace("tab", "t" + c + "ab"), page + c * 3):
            assert checked.sub("", dirty) == ORIGINAL.sub("", dirty) != dirty


def test_a_page_with_control_characters_parses_as_before():
    page = "<html><body><p>form\x0cfeed and \x00null \ufffe kept out</p></body></html>"
    tree = load_html(page)
    assert tree is not None
    assert etree.tostring(tree) == etree.tostring(load_html(ORIGINAL.sub("", page)))
    assert "formfeed and null  kept out" in tree.text_content()
