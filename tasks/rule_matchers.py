"""trafilatura's tree rules (pruning, content, byline) as compiled Python selections.

Why: libxml2 evaluates a rule such as ``.//*[self::div or self::section][re:test(@id, ...)
or contains(@class, ...)]`` by building a node-set for each step of each predicate on every
element, and calls back into Python for each ``re:test``: the pruning rules took 2.7 of
~15 ms a page (600 bench pages). Most are a tag test plus tests on a few attributes, which
Python answers with one ``iterdescendants`` over the wanted tags (filtered in C) and a few
``get`` calls and regex searches an element: about half the time per rule, and extraction
14.77 -> 13.17 ms a page (interleaved A/B, 1,200 bench pages), every record unchanged.

A rule is translated only if it is a union of paths ``.//*`` or ``.//name`` (or all from
the root: ``//``) followed by predicates built from ``self::name``, ``.//name`` (a
descendant exists), ``name = 'literal'`` (a child with that text), ``@a`` and ``@a|@b``
(present, compared with ``=`` to a literal, or read as a string by ``re:test``,
``contains``, ``starts-with`` or ``translate``), ``and``, ``or``, ``not()`` and brackets;
rules read only for their first element (FirstMatch) may also use ``[1]``. XPath 1.0's
rules are kept: a missing attribute reads as the empty string and compares unequal to
everything, an attribute union reads as its first attribute in the element's own order,
``re:test`` is Python's ``re.search`` (as in lxml's EXSLT functions), results come in
document order without repeats. Anything else stays an XPath.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree
from lxml.etree import XPath

# trafilatura's rule lists that it calls on an element and reads every returned element of,
# in order: ``prune_unwanted_nodes`` deletes them, ``extract_metainfo`` (AUTHOR_XPATHS) takes
# the first with usable text. That is a RuleMatcher's whole contract.
SELECTION_RULES = frozenset(
    {
        "AUTHOR_XPATHS",
        "RAW_TREE_PRUNE_XPATH",
        "REMOVE_COMMENTS_AND_LISTS_XPATH",
        "REMOVE_COMMENTS_XPATH",
        "OVERALL_DISCARD_XPATH",
        "DISCARD_IMAGE_ELEMENTS",
        "TEASER_DISCARD_XPATH",
        "PRECISION_DISCARD_XPATH",
        "COMMENTS_DISCARD_XPATH",
        "AUTHOR_DISCARD_XPATHS",
    }
)

_TOKEN = re.compile(
    r"""\s*(?:(?P<lit>'[^']*'|"[^"]*")|(?P<op>\.//|//|::|[@()\[\]|=,*])|(?P<num>\d+)"""
    r"""|(?P<name>[A-Za-z_][\w.-]*(?::[A-Za-z_][\w.-]*)?))"""
)


class Untranslatable(ValueError):
    """The rule uses XPath outside the translated subset."""


def _tokens(path: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    path = path.strip()
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None:
            raise Untranslatable(f"cannot read {path[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _xpath_translate(source: str, target: str) -> dict[int, int | None]:
    """XPath's translate(): the first mapping of a character wins, extra ones delete."""
    table: dict[int, int | None] = {}
    for i, ch in enumerate(source):
        table.setdefault(ord(ch), ord(target[i]) if i < len(target) else None)
    return table


@dataclass
class _Code:
    """What a selection's generated code reads: attributes (``a0``...) and constants (``k0``...)."""

    attributes: list[str]
    constants: list[object]

    def attr(self, name: str) -> str:
        if name not in self.attributes:
            self.attributes.append(name)
        return f"a{self.attributes.index(name)}"

    def const(self, value: object) -> str:
        self.constants.append(value)
        return f"k{len(self.constants) - 1}"


class _Parser:
    def __init__(self, path: str, code: _Code) -> None:
        self.toks = _tokens(path)
        self.i = 0
        self.code = code
        self.absolute: bool | None = None  # paths from the document root (//) or not (.//)

    # -- token helpers
    def peek(self, offset: int = 0) -> tuple[str, str]:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else ("", "")

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        k, v = self.peek()
        if (value is not None and v != value) or (kind is not None and k != kind) or not k:
            raise Untranslatable(f"expected {value or kind}, found {v!r}")
        self.i += 1
        return v

    def literal(self) -> str:
        return self.take(kind="lit")[1:-1]

    # -- grammar
    def rule(self) -> list[tuple[tuple[str, ...], list[str]]]:
        """A whole selection rule: a union of paths. One (tags, conditions) per path."""
        parts = [self.path()]
        while self.peek()[1] == "|":
            self.i += 1
            parts.append(self.path())
        self.end()
        return parts

    def first_rule(self) -> list[tuple[tuple[str, ...], list[str]]]:
        """A rule read for its first element only: a union of paths, each of which may be
        wrapped as ``(path)[1]`` or end in ``[1]``. One (tags, conditions) per path."""
        parts = []
        while True:
            if self.peek()[1] == "(":
                self.i += 1
                parts.append(self.path())
                self.take(")")
                self._first_position()
            else:
                parts.append(self.path(first=True))
            if self.peek()[1] != "|":
                break
            self.i += 1
        self.end()
        return parts

    def end(self) -> None:
        if self.i != len(self.toks):
            raise Untranslatable(f"unexpected {self.peek()[1]!r}")

    def _first_position(self) -> bool:
        """Take a ``[1]`` if one comes next."""
        if [v for _, v in self.toks[self.i : self.i + 3]] != ["[", "1", "]"]:
            return False
        self.i += 3
        return True

    def path(self, first: bool = False) -> tuple[tuple[str, ...], list[str]]:
        """``.//*`` or ``.//name``, then predicates: (tags, one condition per predicate).

        With ``first``, a last predicate ``[1]`` is allowed: it keeps, under each parent,
        the first child that passes the others, and the first of those in document order
        is the first element that passes them at all, which is all a first-match reads.
        """
        step = self.peek()[1]
        if step not in (".//", "//"):
            raise Untranslatable(f"a path must start with .// or //, not {step!r}")
        self.i += 1
        if self.absolute is None:
            self.absolute = step == "//"
        elif self.absolute != (step == "//"):
            raise Untranslatable("a union of paths from the root and from the element")
        tags: tuple[str, ...] = ()
        if self.peek()[1] == "*":
            self.take("*")
        else:
            tags = (self.take(kind="name"),)
        conditions = []
        while self.peek()[1] == "[":
            if first and self._first_position():
                break
            self.take("[")
            start = self.i
            only_tags = self._self_tags()
            if only_tags and not tags and not conditions and self.peek()[1] == "]":
                tags = only_tags  # a leading [self::a or self::b] is the tag filter
            else:
                self.i = start
                conditions.append(self.or_expr())
            self.take("]")
        return tags, conditions

    def _self_tags(self) -> tuple[str, ...]:
        """The names of a bare ``self::a or self::b ...`` disjunction, else ()."""
        names = []
        while self.peek()[1] == "self" and self.peek(1)[1] == "::":
            self.i += 2
            names.append(self.take(kind="name"))
            if self.peek()[1] != "or":
                break
            self.i += 1
        return tuple(names) if self.peek()[1] == "]" else ()

    def or_expr(self) -> str:
        return self._chain("or", self.and_expr)

    def and_expr(self) -> str:
        return self._chain("and", self.eq_expr)

    def _chain(self, word: str, operand: Callable[[], str]) -> str:
        """``operand (word operand)*`` as one bracketed Python expression."""
        parts = [operand()]
        while self.peek() == ("name", word):
            self.i += 1
            parts.append(operand())
        return parts[0] if len(parts) == 1 else "(" + f" {word} ".join(parts) + ")"

    def eq_expr(self) -> str:
        if self.peek()[1] == "@":
            names = self.attributes()
            if self.peek()[1] == "=":
                self.i += 1
                lit = self.code.const(self.literal())
                return "(" + " or ".join(f"{self.code.attr(n)} == {lit}" for n in names) + ")"
            return "(" + " or ".join(f"{self.code.attr(n)} is not None" for n in names) + ")"
        kind, value = self.peek()
        if kind == "name" and self.peek(1)[1] == "=":  # child elements compared: rel='me'
            self.i += 2
            return f"_child_equals(e, {value!r}, {self.code.const(self.literal())})"
        return self.primary()

    def attributes(self) -> list[str]:
        names = []
        while True:
            self.take("@")
            names.append(self.take(kind="name"))
            if self.peek()[1] != "|":
                return names
            self.i += 1

    def primary(self) -> str:
        kind, value = self.peek()
        if value == "(":
            self.i += 1
            inner = self.or_expr()
            self.take(")")
            return inner
        if value == ".//":
            self.i += 1
            name = self.take(kind="name")
            return f"(next(e.iterdescendants({name!r}), None) is not None)"
        if kind != "name":
            raise Untranslatable(f"unexpected {value!r}")
        self.i += 1
        if value == "self":
            self.take("::")
            return f"(e.tag == {self.take(kind='name')!r})"
        self.take("(")
        if value == "not":
            inner = self.or_expr()
            self.take(")")
            return f"(not {inner})"
        if value not in ("re:test", "contains", "starts-with"):
            raise Untranslatable(f"function {value}()")
        string = self.string_arg()
        self.take(",")
        lit = self.literal()
        if value == "re:test":
            flags = 0
            if self.peek()[1] == ",":
                self.i += 1
                flags = re.IGNORECASE if "i" in self.literal() else 0
            self.take(")")
            rx = self.code.const(re.compile(lit, flags))
            return f"({rx}.search({string}) is not None)"
        self.take(")")
        k = self.code.const(lit)
        return f"({k} in {string})" if value == "contains" else f"{string}.startswith({k})"

    def string_arg(self) -> str:
        """An attribute set read as a string: its first attribute present, or ''."""
        if self.peek() == ("name", "translate"):
            self.i += 1
            self.take("(")
            inner = self.string_arg()
            self.take(",")
            source = self.literal()
            self.take(",")
            target = self.literal()
            self.take(")")
            return f"{inner}.translate({self.code.const(_xpath_translate(source, target))})"
        names = self.attributes()
        if len(names) == 1:
            return f"({self.code.attr(names[0])} or '')"
        if len(names) == 2:  # inline: the attribute order only matters when both are there
            (a, b), (na, nb) = (self.code.attr(n) for n in names), names
            both = f"_first(e, ({a}, {na!r}), ({b}, {nb!r}))"
            return f"({b} or '' if {a} is None else {a} if {b} is None else {both})"
        args = ", ".join(f"({self.code.attr(n)}, {n!r})" for n in names)
        return f"_first(e, {args})"


def _first(element: etree._Element, *pairs: tuple[str | None, str]) -> str:
    """String value of ``@a|@b``: the value of the first present in attribute order."""
    present = [(value, name) for value, name in pairs if value is not None]
    if not present:
        return ""
    if len(present) == 1:
        return present[0][0]
    order = element.keys()
    return min(present, key=lambda p: order.index(p[1]))[0]


_STRING_VALUE = XPath("string()")


def _child_equals(element: etree._Element, tag: str, literal: str) -> bool:
    """XPath's ``tag = 'literal'``: some child ``tag`` has that string value."""
    return any(_STRING_VALUE(c) == literal for c in element.iterchildren(tag))


class RuleMatcher:
    """A translated rule: called like its XPath on an element, same elements, same order.

    Called on anything else (an ElementTree, a document), or with a path from the document
    root (``//``) on an element that is not the root, it runs the XPath it came from.
    """

    def __init__(
        self, xpath: XPath, select: Callable[[etree._Element], list], absolute: bool = False
    ) -> None:
        self.xpath = xpath
        self.path = xpath.path
        self.absolute = absolute
        self._select = select

    def __call__(self, tree, **variables):
        if (
            variables
            or not isinstance(tree, etree._Element)
            or (self.absolute and tree.getroottree().getroot() is not tree)
        ):
            return self.xpath(tree, **variables)
        return self._select(tree)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({' '.join(self.path.split())[:60]!r})"


def _compile(rule: XPath, first: bool) -> tuple[Callable[[etree._Element], list], bool]:
    """Generate and compile a rule's selection: one loop over the elements its paths can
    select (from the root itself for ``//``), their attribute reads, then the test."""
    code = _Code(attributes=[], constants=[])
    parser = _Parser(" ".join(rule.path.split()), code)
    parts = parser.first_rule() if first else parser.rule()
    tags = (
        () if any(not t for t, _ in parts) else tuple(dict.fromkeys(t for p in parts for t in p[0]))
    )
    tests = []
    for own_tags, conditions in parts:
        own = (
            [f"(e.tag in {code.const(frozenset(own_tags))})"] if own_tags and len(parts) > 1 else []
        )
        tests.append("(" + " and ".join(own + conditions or ["True"]) + ")")
    reads = "".join(f"        a{i} = g({n!r})\n" for i, n in enumerate(code.attributes))
    source = (
        "def select(tree):\n"
        "    out = []\n"
        + (
            "    for e in tree.iter(*TAGS):\n"
            if parser.absolute
            else "    for e in tree.iterdescendants(*TAGS):\n"
        )
        + "        g = e.get\n"
        + reads
        + f"        if {' or '.join(tests)}:\n"
        + ("            return [e]\n" if first else "            out.append(e)\n")
        + "    return out\n"
    )
    namespace: dict = {f"k{i}": v for i, v in enumerate(code.constants)}
    namespace.update(_first=_first, _child_equals=_child_equals, TAGS=tags or (etree.Element,))
    exec(compile(source, f"<rule {rule.path.strip()[:40]}>", "exec"), namespace)  # noqa: S102
    return namespace["select"], bool(parser.absolute)


def compile_rule(rule: XPath, fallback: XPath | None = None) -> RuleMatcher:
    """``rule`` as a RuleMatcher (raises Untranslatable); ``fallback`` is the XPath run where
    the compiled selection does not apply (default: ``rule`` itself)."""
    select, absolute = _compile(rule, first=False)
    return RuleMatcher(fallback or rule, select, absolute)


def compile_first(rule: XPath, fallback: XPath | None = None) -> FirstMatch:
    """``rule`` as a FirstMatch (raises Untranslatable), for callers that read only the
    first element it selects."""
    select, absolute = _compile(rule, first=True)
    return FirstMatch(fallback or rule, select, absolute)


class FirstMatch(RuleMatcher):
    """A translated rule that gives only the first element its XPath selects (in document
    order), or nothing: for trafilatura's content rules (``BODY_XPATH``), which it only
    reads with ``next(...)``, so the search can stop at the first hit (measured inside
    extraction: 0.65 -> 0.15 ms a page over 1,200 bench pages)."""


# trafilatura's rule lists it only reads through ``next(iter(rule(tree)))``: the first hit
FIRST_MATCH_RULES = frozenset({"BODY_XPATH"})


def translated(
    rule: XPath | RuleMatcher, fallback: XPath | None = None, first: bool = False
) -> RuleMatcher | XPath:
    """The rule compiled (a FirstMatch with ``first``), or ``fallback`` (else the rule) where
    it cannot be translated; a rule compiled already is returned as it is."""
    if isinstance(rule, RuleMatcher):
        return rule
    try:
        return compile_first(rule, fallback) if first else compile_rule(rule, fallback)
    except Untranslatable:
        return fallback or rule
