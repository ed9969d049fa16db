"""Arrow schemas shared by every stage: the contract between tasks/, flows/ and warehouse/.

Stages exchange Arrow tables with these schemas so that any stage can be run, tested or
replaced alone. Each published table is declared once here (or in the stage module that
produces it, via ``TableSpec``) with its key and a description of every column; the
warehouse builds its DDL from these specs, so schema and documentation cannot drift.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    """A published table: name, Arrow schema, primary key and column docs."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    description: str
    columns: dict[str, str] = field(default_factory=dict)
    # "article" tables are replaced per article_id when an article is (re)loaded;
    # "upsert" tables are replaced per key; "log" tables only append new keys.
    mode: str = "upsert"


def stable_id(*parts: str | None, n: int = 16) -> str:
    """Deterministic id so that parallel shards and later runs agree without coordination."""
    h = hashlib.blake2b("\x1f".join(p or "" for p in parts).encode("utf-8"), digest_size=16)
    return h.hexdigest()[:n]


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- fetch output / extract input -------------------------------------------------------
PAGES = pa.schema(
    [
        ("page_id", pa.string()),  # stable_id(url)
        ("url", pa.string()),  # URL as discovered (feed/sitemap/list) or file path URI
        ("final_url", pa.string()),  # after redirects
        ("source", pa.string()),  # sources.yaml entry name
        ("outlet", pa.string()),  # publisher name declared for the source (nullable)
        ("status", pa.int32()),
        ("content_type", pa.string()),
        ("fetched_at", TS),
        ("html", pa.large_string()),  # decoded text of the page
        ("content_hash", pa.string()),  # hash of the raw bytes
        ("run_id", pa.string()),
    ]
)

# --- extract output / clean in+out / dedup input ----------------------------------------
ARTICLES_CORE = pa.schema(
    [
        ("article_id", pa.string()),  # stable_id(canonical_url or url)
        ("page_id", pa.string()),
        ("url", pa.string()),
        ("canonical_url", pa.string()),
        ("source", pa.string()),
        ("outlet", pa.string()),  # publisher of this copy (site name or host)
        ("title", pa.string()),
        ("authors", pa.list_(pa.string())),
        ("published", pa.date32()),  # publisher-local publication date
        ("published_at", TS),  # exact publication time, only when declared with an offset
        ("language", pa.string()),  # ISO 639-1, nullable when unknown
        ("description", pa.string()),
        ("body", pa.large_string()),  # plain text, paragraphs separated by "\n\n"
        ("origin_credit", pa.string()),  # "Originally published on X" / "(AP)" etc. found by clean
        # JSON: isBasedOn, sourceOrganization, canonical host...
        ("syndication_hints", pa.string()),
        ("content_hash", pa.string()),  # hash of normalised body (set by clean)
        ("fetched_at", TS),
        ("run_id", pa.string()),
    ]
)

REJECTS = pa.schema(
    [
        ("item_id", pa.string()),  # page_id / article_id / url hash of the dropped row
        ("url", pa.string()),
        ("stage", pa.string()),  # fetch | extract | clean | dedup | enrich | ...
        ("reason", pa.string()),  # short machine-readable reason, e.g. "not_article"
        ("detail", pa.string()),  # human-readable detail (exception text, sizes...)
        ("run_id", pa.string()),
        ("rejected_at", TS),
    ]
)


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def rejects_table(rows: list[dict], run_id: str | None = None) -> pa.Table:
    """Build a REJECTS table from dicts (missing fields become null, time defaults to now)."""
    now = utcnow()
    norm = []
    for r in rows:
        norm.append(
            {
                "item_id": r.get("item_id"),
                "url": r.get("url"),
                "stage": r["stage"],
                "reason": r["reason"],
                "detail": r.get("detail"),
                "run_id": r.get("run_id", run_id),
                "rejected_at": r.get("rejected_at", now),
            }
        )
    return pa.Table.from_pylist(norm, schema=REJECTS)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Reorder/cast columns to ``schema``, adding missing nullable columns as nulls."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def to_rows(table: pa.Table) -> list[dict]:
    """``table.to_pylist()`` without its per-value time-zone cost (about 10x faster).

    pyarrow builds a tz-aware datetime value by value through the zone database; casting to
    naive UTC first and attaching UTC once per value is what the fetch state (tens of
    thousands of rows, read at the start of every run) needs to load quickly.
    """

    cols: dict[str, list] = {}
    for f in table.schema:
        col = table.column(f.name)
        if pa.types.is_timestamp(f.type) and f.type.tz:
            naive = col.cast(pa.timestamp(f.type.unit)).to_pylist()
            cols[f.name] = [v.replace(tzinfo=UTC) if v is not None else None for v in naive]
        else:
            cols[f.name] = col.to_pylist()
    names = list(cols)
    return [dict(zip(names, vals, strict=True)) for vals in zip(*cols.values(), strict=True)]
