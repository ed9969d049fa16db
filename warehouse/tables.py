"""The registry of published tables: every stage declares its tables, the warehouse builds them.

Core tables (articles, rejects, runs) are declared here because they are assembled from
several stages; stage-owned tables come from each stage module's ``TABLE_SPECS``.
"""

from __future__ import annotations

import pyarrow as pa

from tasks.schema import ARTICLES_CORE, REJECTS, TS, TableSpec

ARTICLES = pa.schema(
    list(ARTICLES_CORE)
    + [
        pa.field("cluster_id", pa.string()),
        pa.field("dup_kind", pa.string()),
        pa.field("dup_of", pa.string()),
        pa.field("word_count", pa.int32()),
        pa.field("reading_time_min", pa.float32()),
        pa.field("enrichment_status", pa.string()),
    ]
)

ARTICLES_SPEC = TableSpec(
    name="articles",
    schema=ARTICLES,
    key=("article_id",),
    mode="article",
    description="One row per article copy (a URL), cleaned, with its story cluster and stats.",
    columns={
        "article_id": "Stable id of the article: hash of its canonical URL.",
        "page_id": "Id of the fetched page the article came from (hash of the fetched URL).",
        "url": "URL the page was fetched from.",
        "canonical_url": "Canonical URL (rel=canonical, normalised with courlan).",
        "source": "Name of the sources.yaml entry that found the page.",
        "outlet": "Publisher of this copy (site name, declared outlet, or host).",
        "title": "Headline as printed, without site-name suffixes or kickers.",
        "authors": "People credited as authors (organisations removed).",
        "published": "Publication date in the publisher's local time.",
        "published_at": "Exact publication time (UTC), when the page states a time of day with "
        "a UTC offset (JSON-LD datePublished, article:published_time, <time datetime>); null "
        "for a bare date or a time without an offset.",
        "language": "ISO 639-1 language code of the body.",
        "description": "Page summary (meta description / og:description).",
        "body": "Cleaned article text; paragraphs separated by a blank line.",
        "origin_credit": "Outlet credited as original ('Originally published on X', '(AP)').",
        "syndication_hints": "JSON of syndication metadata (isBasedOn, sourceOrganization, ...).",
        "content_hash": "Hash of the normalised body: equal hashes are exact duplicates.",
        "fetched_at": "When the page was fetched (UTC).",
        "run_id": "Run that produced this row.",
        "cluster_id": "Story id shared by every copy of the same story; stable across runs.",
        "dup_kind": "How the article joined its cluster: unique, exact, near, teaser.",
        "dup_of": "Article this one duplicates (null for the first copy).",
        "word_count": "Words in the body.",
        "reading_time_min": "Estimated reading time in minutes.",
        "enrichment_status": "'enriched' or 'not_enriched:<why>' (e.g. language without a model).",
    },
)

REJECTS_SPEC = TableSpec(
    name="rejects",
    schema=REJECTS,
    key=("stage", "item_id", "reason"),
    mode="log",
    description=(
        "Every row a stage dropped, with the stage and the reason: nothing is lost silently."
    ),
    columns={
        "item_id": "Id of the dropped row (page_id, article_id or URL hash).",
        "url": "URL of the dropped row.",
        "stage": "Stage that dropped it.",
        "reason": "Machine-readable reason.",
        "detail": "Human-readable detail (exception text, sizes).",
        "run_id": "Run that first recorded the reject.",
        "rejected_at": "When it was rejected (UTC).",
    },
)

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("started_at", TS),
        ("finished_at", TS),
        ("status", pa.string()),
        ("sources", pa.string()),
        ("counts", pa.string()),
        ("stage_seconds", pa.string()),
        ("message", pa.string()),
    ]
)

RUNS_SPEC = TableSpec(
    name="runs",
    schema=RUNS,
    key=("run_id",),
    mode="upsert",
    description="One row per pipeline run: status, per-stage counts and timings.",
    columns={
        "run_id": "Run id (UTC timestamp + random suffix).",
        "started_at": "Start time (UTC).",
        "finished_at": "End time (UTC), null while running or if killed.",
        "status": "running | published | failed | nothing_new.",
        "sources": "Path of the sources file (or 'demo').",
        "counts": "JSON: per stage in/out/rejected by reason.",
        "stage_seconds": "JSON: wall seconds per stage.",
        "message": "Error or quality-gate message for failed runs.",
    },
)


def all_specs() -> list[TableSpec]:
    """Every table the warehouse publishes, core first."""
    from tasks import dedup, enrich, fetch, quality

    specs = [ARTICLES_SPEC, REJECTS_SPEC, RUNS_SPEC]
    for mod in (fetch, dedup, enrich, quality):
        specs.extend(getattr(mod, "TABLE_SPECS", []))
    seen: dict[str, TableSpec] = {}
    for s in specs:
        seen.setdefault(s.name, s)
    return list(seen.values())
