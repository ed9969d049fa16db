"""htmldate's last-resort date parsing (dateparser), told which language the page is in.

For an undated page, htmldate hands date-like strings its own patterns cannot read to
dateparser with no language, and dateparser then tries its locales one by one, in its
order of ~200, until one can read the string. A string none can read ("March 18 at 3:57":
no year, so strict parsing fails everywhere) makes it load and compile all of them: 1.0-1.5 s
of CPU and ~41 MB in every worker process, the first time it happens (measured on a fresh
process: ``_external_date('Posted 12 Foo 2023 xyzzy')``), which a crawl of real news pages
meets within its first units. A page in a known language (declared by ``<html lang>``,
og:locale, ..., or English when its text reads so: what enrichment records for it) is read in
that language and in English (the language of most date boilerplate), in dateparser's own
order; a page of unknown language, or of one dateparser does not know, still gets every
locale, as before. Reading a German page's date string as, say, Swahili was never the point
of the fallback.

htmldate caches each string's outcome (``try_date_expr``) with no language in the key, so
the cache is emptied when the language changes from one page to the next: an outcome for
one language is never reused for another.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from functools import lru_cache
from typing import Any

import htmldate.extractors as _hx

_ORIGINAL = _hx._external_date
# dateparser's languages for the page being read; None: every locale (htmldate's default)
_PAGE: ContextVar[tuple[str, ...] | None] = ContextVar("dateparser_languages", default=None)
_last: tuple[str, ...] | None = None  # languages the try_date_expr cache was filled for


@lru_cache(maxsize=1)
def _supported() -> frozenset[str]:
    from dateparser.data import language_order

    return frozenset(language_order)


def dateparser_languages(lang: str | None) -> tuple[str, ...] | None:
    """The languages dateparser tries for a page in ``lang`` (an ISO 639-1 code, as
    ``metadata.language`` gives), or None for all of them (no or unknown language)."""
    code = (lang or "").strip().lower()
    if not code or code not in _supported():
        return None
    return (code,) if code == "en" else (code, "en")


@contextmanager
def page_language(lang: str | None) -> Iterator[None]:
    """Within the block, htmldate's dateparser fallback reads strings as ``lang`` or English."""
    global _last
    langs = dateparser_languages(lang)
    if langs != _last:
        _hx.try_date_expr.cache_clear()  # its outcomes were for the previous languages
        _last = langs
    token = _PAGE.set(langs)
    try:
        yield
    finally:
        _PAGE.reset(token)


@lru_cache(maxsize=64)
def _parser(langs: tuple[str, ...]) -> Any:
    """A parser for ``langs`` with htmldate's own settings object (strict parsing, past
    dates, ...), so only the languages differ; None if htmldate's parser has no settings
    object to share (then every string goes to htmldate's parser, as without this module)."""
    settings = getattr(_hx.get_external_parser(), "_settings", None)
    if settings is None:
        return None
    from dateparser import DateDataParser

    return DateDataParser(languages=list(langs), settings=settings)


def _external_date(string: str) -> datetime | None:
    """htmldate's ``_external_date``, with the page's languages when it has some."""
    langs = _PAGE.get()
    parser = _parser(langs) if langs is not None else None
    if parser is None:
        return _ORIGINAL(string)
    try:
        return parser.get_date_data(string)["date_obj"]
    except (OverflowError, ValueError):  # what htmldate's own wrapper treats as "no date"
        return None


def install() -> bool:
    """Route htmldate's dateparser calls through ``_external_date``; False (and nothing
    changed) if htmldate no longer has the function this module stands in for."""
    if getattr(_hx, "_external_date", None) not in (_ORIGINAL, _external_date):
        return False
    _hx._external_date = _external_date
    return True
