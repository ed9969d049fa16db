"""Great Expectations suites, one JSON file per pipeline stage, kept as data.

A suite lives here under the stage's name (``clean.json`` checks what ``clean`` produced) so
that a reader finds a stage's checks next to the other published-table docs, and so that a
check is tuned by editing data, not code. ``tasks.quality`` loads and runs them.
"""

from __future__ import annotations

from importlib import resources

STAGES: tuple[str, ...] = ("fetch", "extract", "clean", "dedup", "enrich", "publish")


def available() -> list[str]:
    """Stages that have a suite file: read from the package so it works installed or in-repo."""
    return sorted(
        p.name.removesuffix(".json")
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".json")
    )
