"""Cheaper, equivalent copies of trafilatura's XPath rules.

Why: trafilatura tests element attributes with EXSLT ``re:test``, which lxml runs as a Python
callback, once per element and per call. Its page-cleaning rule (``BASIC_CLEAN_XPATH``) makes
two such calls on every element of every page, its pruning rules several more on every
``div``/``span``/``p``; together about 4 ms of a 20 ms extraction. Three rewrites cut that
without changing what any rule selects:

- an attribute guard: before a predicate that can only hold on an element carrying one of
  its attributes (every test in it is false on a missing attribute), ``[@id or @class]`` is
  inserted; libxml2 checks it in C, so elements with neither attribute never reach Python;
- a presence test per regex test: ``re:test(@id, ...)`` becomes ``(@id and re:test(@id, ...))``
  (the same answer when its pattern cannot match an empty string), so an element with a
  class and no id makes one call where ``re:test(@id, ...) or re:test(@class, ...)`` made two;
- plain strings: the callbacks' arguments are built as ``str`` instead of "smart" strings
  that remember their parent element; the rules return elements, so results are unchanged.

A predicate gets a guard only if it is built from attribute references, non-empty literals,
``re:test``/``contains``/``starts-with``/``translate``, ``=``, ``and``/``or`` and brackets,
and no regular expression in it matches the empty string: then a missing attribute (an
empty node-set, the empty string once converted) makes every test false. Anything else
(``not()``, a child element's name, ``self::``, positions) is left as it was.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from lxml.etree import XPath

from tasks.rule_matchers import (
    FIRST_MATCH_RULES,
    SELECTION_RULES,
    RuleMatcher,
    translated,
)

REGEXP_NS = "http://exslt.org/regular-expressions"
_LITERAL = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_ATTRIBUTE = re.compile(r"@([\w.:-]+)")
_ALLOWED_REST = re.compile(r"(?:re:test|contains|starts-with|translate|and|or|[\0=(),|\s])*")
# re:test(argument, 'pattern'[, 'flags']): group 1 the argument, 2 the pattern, 3 the flags
_RE_TEST = re.compile(r"re:test\(\s*([^,()]+?)\s*,\s*'([^']*)'\s*(?:,\s*'([^']*)'\s*)?\)")
_ATTRIBUTES_ONLY = re.compile(r"@[\w.:-]+(?:\s*\|\s*@[\w.:-]+)*")


def predicate_spans(path: str) -> list[tuple[int, int]]:
    """(start, end) of every outermost ``[...]`` in ``path``, brackets inside literals ignored."""
    spans, depth, start, quote = [], 0, 0, ""
    for i, ch in enumerate(path):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
            if depth == 1:
                start = i
        elif ch == "]":
            depth -= 1
            if depth == 0:
                spans.append((start, i + 1))
    return spans


def attribute_guard(predicate: str) -> str | None:
    """``[@a or @b]`` implied by ``predicate`` (with its brackets), or None if none is."""
    inner = predicate[1:-1]
    literals = [a or b for a, b in _LITERAL.findall(inner)]
    if any(not lit for lit in literals) or "(" not in inner:
        return None  # an empty literal can equal a missing attribute; no call, nothing to save
    bare = _LITERAL.sub("\0", inner)  # a character no XPath name can contain
    attributes = sorted(set(_ATTRIBUTE.findall(bare)))
    if not attributes or not _ALLOWED_REST.fullmatch(_ATTRIBUTE.sub("", bare)):
        return None
    tests = _RE_TEST.findall(inner)
    if len(tests) != inner.count("re:test("):
        return None  # an argument shape we do not read: leave the predicate alone
    if any(_matches_empty(pattern, flags) for _, pattern, flags in tests):
        return None
    return "[" + " or ".join("@" + a for a in attributes) + "]"


def _matches_empty(pattern: str, flags: str | None) -> bool:
    return re.search(pattern, "", re.IGNORECASE if flags and "i" in flags else 0) is not None


def guarded_tests(text: str) -> str:
    """Each ``re:test(@a, ...)`` as ``(@a and re:test(@a, ...))``: no call without ``@a``.

    A missing attribute reaches the callback as the empty string, so this is the same test
    whenever the pattern cannot match an empty string (other patterns are left as they are).
    An element with a class and no id then makes one call where ``re:test(@id, ...) or
    re:test(@class, ...)`` made two.
    """

    def wrap(m: re.Match[str]) -> str:
        arg, pattern, flags = m.group(1), m.group(2), m.group(3)
        if (
            not _ATTRIBUTES_ONLY.fullmatch(arg)
            or _matches_empty(pattern, flags)
            or text[: m.start()].endswith(f"({arg} and ")
        ):
            return m.group(0)
        return f"({arg} and {m.group(0)})"

    return _RE_TEST.sub(wrap, text)


def guarded(path: str) -> str:
    """``path`` with an attribute guard before each predicate that implies one, and each
    attribute ``re:test`` in a predicate behind its attribute's presence."""
    out, last = [], 0
    for start, end in predicate_spans(path):
        predicate = path[start:end]
        guard = attribute_guard(predicate)
        out.append(path[last:start])
        if guard is not None and not path[:start].endswith(guard):  # not guarded already
            out.append(guard)
        out.append(guarded_tests(predicate))
        last = end
    out.append(path[last:])
    return "".join(out)


def cheaper(expression: XPath | RuleMatcher) -> XPath | RuleMatcher:
    """A guarded, plain-string recompilation of ``expression`` (a compiled rule as it is)."""
    if isinstance(expression, RuleMatcher):
        return expression
    return XPath(guarded(expression.path), namespaces={"re": REGEXP_NS}, smart_strings=False)


def rule_lists(module: Any) -> dict[str, list[XPath | RuleMatcher]]:
    """The module's rule lists by name: its upper-case globals that are lists of XPaths
    (or of rules already compiled by ``install``)."""
    return {
        name: value
        for name, value in vars(module).items()
        if name.isupper()
        and isinstance(value, list)
        and value
        and all(isinstance(x, XPath | RuleMatcher) for x in value)
    }


def trafilatura_modules() -> tuple[Any, Any, Any]:
    """trafilatura's ``settings``, ``xpaths`` and ``baseline`` modules, looked up by path.

    Not ``from trafilatura import baseline``: the package binds that name to its function
    ``baseline``, and a rule set on the function is one that nothing reads.
    """
    return tuple(
        importlib.import_module(f"trafilatura.{name}")
        for name in ("settings", "xpaths", "baseline")
    )


def install() -> None:
    """Swap trafilatura's rules for their cheaper copies, in place (idempotent).

    The rule lists are shared by every trafilatura module that imported them, so they are
    refilled rather than rebound; the page-cleaning rule is rebound in the one module that
    calls it (``settings`` keeps the original).
    """
    settings, rules, baseline = trafilatura_modules()
    for name, value in rule_lists(rules).items():
        # the lists whose use a compiled rule fits run as Python where they can, else guarded
        first = name in FIRST_MATCH_RULES
        if first or name in SELECTION_RULES:
            value[:] = [translated(x, cheaper(x), first=first) for x in value]
        else:
            value[:] = [cheaper(x) for x in value]
    baseline.BASIC_CLEAN_XPATH = cheaper(settings.BASIC_CLEAN_XPATH)
