"""The fast attempt's recall escalation, switched off.

Why: after its cascade, trafilatura retries a text shorter than ``ESCALATION_MAX_LENGTH`` in
recall mode when it covers under ``ESCALATION_PAGE_SHARE`` of the page's text. Measuring the
page for that test (``html2txt``: a copy of the tree, the page-cleaning rule, the text) costs
about 3 ms whatever the answer, and news texts are mostly under that length, so in extract's
fast attempt (tasks.extract.extract_body) the measure and the retries it started cost about
1.1 ms a page, 4 % of a worker's time, without changing one kept text on the 282 corpus
pages or the 1,200 bench pages. That attempt only exists to be kept or thrown away by the
fast-body gate, whose lower bound (half the page's paragraph text) already rejects the
under-extraction the escalation looks for; a rejected text goes to the full cascade, which
escalates as trafilatura always does.

Deciding the escalation exactly afterwards (a bound on the page's text, then the measure,
then the attempt again where both left it open) was measured too: it cost as much as it
saved (1.05 of 1.13 ms a page), so the attempt simply runs without it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_MEASURE_OFF: ContextVar[bool] = ContextVar("newsflow_escalation_off", default=False)
_real_html2txt: Callable[..., str] | None = None


def _page_text(content: Any, clean: bool = True) -> str:
    """trafilatura's page measure, or nothing inside ``measure_off()``: no text is shorter
    than a share of an empty page, so nothing escalates."""
    if _MEASURE_OFF.get():
        return ""
    assert _real_html2txt is not None
    return _real_html2txt(content, clean)


def install() -> None:
    """Route trafilatura's escalation test (``trafilatura.core``'s only use of
    ``html2txt``) through ``_page_text``; outside ``measure_off()`` nothing changes."""
    global _real_html2txt
    core = importlib.import_module("trafilatura.core")
    if core.html2txt is _page_text:
        return
    _real_html2txt = core.html2txt
    core.html2txt = _page_text


@contextmanager
def measure_off() -> Iterator[None]:
    """trafilatura calls made in this block (this thread or task only) do not escalate."""
    token = _MEASURE_OFF.set(True)
    try:
        yield
    finally:
        _MEASURE_OFF.reset(token)
