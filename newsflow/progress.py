"""A tiny progress hook: the flow reports, whoever runs it (CLI, tests) decides how to show it.

Flow parameters must be serialisable, so the CLI installs a reporter here instead of passing
a callback through Prefect.
"""

from __future__ import annotations

from collections.abc import Callable

Reporter = Callable[[str, int, int | None], None]  # (stage, advance_by, total_or_None)
_reporter: Reporter | None = None


def set_reporter(reporter: Reporter | None) -> None:
    global _reporter
    _reporter = reporter


def report(stage: str, advance: int = 0, total: int | None = None) -> None:
    if _reporter is not None:
        _reporter(stage, advance, total)
