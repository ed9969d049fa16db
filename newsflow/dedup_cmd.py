"""`newsflow dedup DOCS.jsonl --out CLUSTERS.jsonl`: story clustering of pre-extracted articles.

Why: benchmarks and ad-hoc corpora come as JSONL (doc_id, url, title, text, published), not as
fetched pages. This runs exactly the pipeline's clean text-normalisation/credit capture and dedup
stage on them (in memory, no warehouse) and writes one {"doc_id", "cluster_id"} line per input
document, the format score_dedup.py reads.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa

from tasks.dedup import DedupConfig, MemoryHistory, dedup_batch
from tasks.schema import ARTICLES_CORE, conform, stable_id

try:  # the pipeline's own clean stage (text normalisation + origin_credit capture)
    from tasks.clean import clean_record as _clean_record
except ImportError:  # pragma: no cover - only while tasks/clean.py does not exist
    _clean_record = None


def _parse_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value if not isinstance(value, datetime) else value.date()
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def doc_to_row(doc: dict, counts: Counter | None = None) -> dict:
    """One JSONL document -> one ARTICLES_CORE row (cleaned by tasks.clean when available)."""
    url = doc.get("url") or ""
    host = urlsplit(url).netloc.lower().removeprefix("www.") if "://" in url else ""
    record = {
        "url": url,
        "canonical_url": doc.get("canonical_url") or url,
        "title": doc.get("title"),
        "authors": doc.get("authors") or [],
        "published": _parse_date(doc.get("published")),
        "language": doc.get("language"),
        "description": doc.get("description"),
        "site_name": doc.get("site_name") or doc.get("outlet"),
        "body": doc.get("text") or doc.get("body") or "",
        "syndication_hints": doc.get("syndication_hints"),
    }
    cleaned = None
    if _clean_record is not None:
        try:
            cleaned, reason = _clean_record(dict(record))
        except Exception as exc:  # a clean bug must not lose the document from the clusters
            cleaned, reason = None, f"clean_error:{type(exc).__name__}"
        if cleaned is None and counts is not None:
            counts[f"clean_rejected:{reason}"] += 1
    rec = cleaned or record
    hints = rec.get("syndication_hints")
    if isinstance(hints, dict):
        hints = json.dumps(hints, ensure_ascii=False)
    return {
        "article_id": str(doc["doc_id"]),
        "url": url,
        "canonical_url": rec.get("canonical_url") or url,
        "outlet": doc.get("outlet") or rec.get("site_name") or host or None,
        "title": rec.get("title"),
        "published": _parse_date(rec.get("published")) or _parse_date(doc.get("published")),
        "body": rec.get("body") or record["body"],
        "origin_credit": rec.get("origin_credit"),
        "syndication_hints": hints,
        "content_hash": rec.get("content_hash") or stable_id(record["body"], n=32),
        "fetched_at": _parse_time(doc.get("published")),
    }


def dedup_jsonl(
    docs_path: str | Path, out_path: str | Path, config: DedupConfig | None = None
) -> dict:
    """Cluster the documents of ``docs_path``; write {"doc_id", "cluster_id"} lines to
    ``out_path``; return stats (counts per dup kind, clusters, seconds, docs/s)."""
    t0 = time.perf_counter()
    counts: Counter = Counter()
    rows = []
    with open(docs_path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(doc_to_row(json.loads(line), counts))
    t1 = time.perf_counter()
    table = conform(pa.Table.from_pylist(rows), ARTICLES_CORE)
    res = dedup_batch(table, MemoryHistory(), run_id="cli", config=config)
    t2 = time.perf_counter()
    cluster = dict(
        zip(
            res.assignments.column("article_id").to_pylist(),
            res.assignments.column("cluster_id").to_pylist(),
            strict=True,
        )
    )
    with open(out_path, "w", encoding="utf-8") as f:
        for r in rows:
            a = r["article_id"]
            f.write(json.dumps({"doc_id": a, "cluster_id": cluster.get(a, a)}) + "\n")
    return {
        "docs": len(rows),
        "clusters": len(set(cluster.values())),
        "dup_kind": res.stats.get("dup_kind", {}),
        "rejected": res.stats.get("rejected", 0),
        "clean": dict(counts),
        "clean_used": _clean_record is not None,
        "seconds_prepare": round(t1 - t0, 3),
        "seconds_dedup": round(t2 - t1, 3),
        "docs_per_s_dedup": round(len(rows) / max(t2 - t1, 1e-9), 1),
    }
