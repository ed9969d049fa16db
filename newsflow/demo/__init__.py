"""The bundled demo news site: fictional outlets served from one local host.

The site under ``site/`` is a fixture the project owns, so the whole pipeline (discovery, robots,
incremental fetch, extraction, cleaning, dedup, enrichment, export) can be run and tested
end-to-end offline and deterministically. ``expected.json`` is the hand-checked ground truth the
tests assert against. All stories are invented; outlet names and domains are fictional.
"""

from newsflow.demo.server import DEFAULT_PORT, EXPECTED_PATH, SITE_DIR, DemoSite, sources_yaml

__all__ = ["DEFAULT_PORT", "EXPECTED_PATH", "SITE_DIR", "DemoSite", "sources_yaml"]
