"""The full cascade starts from where extract's fast attempt left off.

Why: ``tasks.extract.extract_body`` runs trafilatura in fast mode first and, when the fast-body
gate rejects that text (about one page in seven), runs the full cascade on the same page. The
cascade then repeats, on the same input, the work the attempt has just done: the tree's
cleaning and tag conversion (two copies of the page) and the main extractor (another copy and
every rule), ~3 % of a worker's time, before the part that differs: the comparison with
readability and jusText, the rescues and the recall escalation.

The repeated work gives the same result: nothing before the main extractor reads
``options.fast``, and the main extractor reads it in one place only, the wild-text recovery it
falls back on for short texts (whether teaser blocks are kept). So the attempt records the
prepared tree's pristine backup and the main extractor's result, unless the wild-text
recovery ran, and the cascade that follows uses them instead of computing them again. Only
the first preparation and extraction of that cascade are replaced; the recall retry it may
start prepares and extracts its own tree as always.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from copy import deepcopy
from dataclasses import dataclass
from typing import Any


class _Prepared:
    """Stands for the cleaned tree the cascade would have built: only ``extract_content``
    receives it, and answers with the attempt's result."""

    __slots__ = ()


_PREPARED = _Prepared()


@dataclass
class Attempt:
    """What the fast attempt leaves for the full cascade (empty if it cannot be reused)."""

    backup: Any = None  # the prepared tree before tag conversion, as the comparison needs it
    result: tuple[Any, str] | None = None  # the main extractor's (body, text)
    wild: bool = False  # the wild-text recovery ran: its result depends on the mode
    options_key: tuple = ()
    mode: str = "record"
    replayed: bool = False  # the cascade's first preparation got the attempt's tree

    @property
    def reusable(self) -> bool:
        return self.backup is not None and self.result is not None and not self.wild


_CURRENT: ContextVar[Attempt | None] = ContextVar("newsflow_fast_attempt", default=None)
_real: dict[str, Callable[..., Any]] = {}


def _key(options: Any) -> tuple:
    """Everything the preparation and the main extractor read, except ``fast``."""
    return tuple(
        (k, repr(getattr(options, k, None)))
        for k in sorted(type(options).__slots__)
        if k not in ("fast", "config", "date_params")
    )


def _replayable(att: Attempt | None, options: Any) -> bool:
    return (
        att is not None
        and att.mode == "replay"
        and att.reusable
        and not options.comments
        and options.focus == "balanced"
        and _key(options) == att.options_key
    )


def _prepare_tree(tree: Any, options: Any, url: str | None) -> tuple[Any, Any]:
    att = _CURRENT.get()
    if _replayable(att, options) and not att.replayed:
        att.replayed = True
        return _PREPARED, att.backup
    cleaned, backup = _real["prepare"](tree, options, url)
    if att is not None and att.mode == "record" and att.backup is None:
        att.backup = backup
        att.options_key = _key(options)
    return cleaned, backup


def _extract_content(cleaned_tree: Any, options: Any) -> tuple[Any, str]:
    att = _CURRENT.get()
    if cleaned_tree is _PREPARED:  # handed out once (``replayed``): no copy needed
        assert att is not None and att.result is not None
        return att.result
    body, text = _real["extract"](cleaned_tree, options)
    if att is not None and att.mode == "record" and att.result is None:
        # a copy, so nothing the rest of the attempt does to its body reaches the cascade
        att.result = (deepcopy(body), text)
    return body, text


def _recover_wild_text(*args: Any, **kwargs: Any) -> Any:
    att = _CURRENT.get()
    if att is not None and att.mode == "record":
        att.wild = True
    return _real["wild"](*args, **kwargs)


def install() -> None:
    """Route trafilatura's preparation, main extractor and wild-text recovery through this
    module; outside ``recording()`` / ``replaying()`` each calls the original unchanged."""
    core = importlib.import_module("trafilatura.core")
    main = importlib.import_module("trafilatura.main_extractor")
    if core._prepare_tree is _prepare_tree:
        return
    _real.update(
        prepare=core._prepare_tree,
        extract=core.extract_content,
        wild=main.recover_wild_text,
    )
    core._prepare_tree = _prepare_tree
    core.extract_content = _extract_content
    main.recover_wild_text = _recover_wild_text


@contextmanager
def recording() -> Iterator[Attempt]:
    """Run the fast attempt inside: what the full cascade can reuse is kept in the result."""
    att = Attempt()
    token = _CURRENT.set(att)
    try:
        yield att
    finally:
        _CURRENT.reset(token)


@contextmanager
def replaying(att: Attempt) -> Iterator[Attempt]:
    """Run the full cascade on the same tree inside: it starts from the attempt's work."""
    att.mode = "replay"
    token = _CURRENT.set(att)
    try:
        yield att
    finally:
        _CURRENT.reset(token)
