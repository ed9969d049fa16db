"""Per-shard work units that run inside worker processes.

Each function reads one shard's Parquet input, runs plain stage functions over it and writes
Parquet outputs, returning only small counts. Passing paths instead of tables keeps the
parent process's memory flat whatever the run size, and keeps Prefect/DuckDB out of workers.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.schema import ARTICLES_CORE, REJECTS, conform


def write_table(table: pa.Table, path: Path) -> Path:
    """Write atomically (temp file + rename) so a killed worker never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def reason_counts(rejects: pa.Table) -> dict[str, int]:
    if rejects.num_rows == 0:
        return {}
    return dict(Counter(rejects.column("reason").to_pylist()))


def extract_clean_shard(
    pages_path: str, articles_path: str | None, out_dir: str, shard_id: str, run_id: str
) -> dict:
    """Extract + clean one shard: pages (and pre-extracted articles) in, clean articles out."""
    from tasks.clean import clean_batch
    from tasks.extract import extract_batch

    out = Path(out_dir)
    pages = pq.read_table(pages_path) if pages_path else None
    n_pages = pages.num_rows if pages is not None else 0
    parts = []
    ex_rejects = REJECTS.empty_table()
    t0 = time.process_time()
    if pages is not None and n_pages:
        extracted, ex_rejects = extract_batch(pages, run_id)
        parts.append(conform(extracted, ARTICLES_CORE))
    n_pre = 0
    if articles_path:
        pre = conform(pq.read_table(articles_path), ARTICLES_CORE)
        n_pre = pre.num_rows
        parts.append(pre)
    raw = pa.concat_tables(parts) if parts else ARTICLES_CORE.empty_table()
    t1 = time.process_time()
    cleaned, cl_rejects = clean_batch(raw, run_id) if raw.num_rows else (raw, REJECTS.empty_table())
    cleaned = conform(cleaned, ARTICLES_CORE)
    t2 = time.process_time()
    write_table(cleaned, out / "clean" / f"{shard_id}.parquet")
    write_table(conform(ex_rejects, REJECTS), out / "rejects" / f"extract-{shard_id}.parquet")
    write_table(conform(cl_rejects, REJECTS), out / "rejects" / f"clean-{shard_id}.parquet")
    return {
        "shard_id": shard_id,
        "extract": {
            "in": n_pages + n_pre,
            "out": raw.num_rows,
            "rejected": reason_counts(ex_rejects),
        },
        "clean": {
            "in": raw.num_rows,
            "out": cleaned.num_rows,
            "rejected": reason_counts(cl_rejects),
        },
        "seconds": {"extract": t1 - t0, "clean": t2 - t1},
    }


def enrich_shard(clean_path: str, out_dir: str, shard_id: str, run_id: str) -> dict:
    """Enrich one shard of clean articles; each output table goes to its own Parquet file."""
    from tasks.enrich import enrich_batch

    out = Path(out_dir)
    articles = pq.read_table(clean_path)
    result = enrich_batch(articles, run_id)
    write_table(result.article_stats, out / "enrich" / "article_stats" / f"{shard_id}.parquet")
    for name, table in result.tables.items():
        write_table(table, out / "enrich" / name / f"{shard_id}.parquet")
    write_table(conform(result.rejects, REJECTS), out / "rejects" / f"enrich-{shard_id}.parquet")
    return {
        "shard_id": shard_id,
        "enrich": {
            "in": articles.num_rows,
            "out": result.article_stats.num_rows,
            "rejected": reason_counts(result.rejects),
        },
        "tables": {k: v.num_rows for k, v in result.tables.items()},
    }


def process_shard(
    pages_path: str | None, articles_path: str | None, out_dir: str, shard_id: str, run_id: str
) -> dict:
    """Extract, clean, fingerprint (for dedup) and enrich one shard in one worker visit.

    Enrichment does not depend on dedup (related articles are derived later, in SQL), so a
    shard goes straight from clean to enrich in the same process: no second round trip
    through Parquet and the pool, and every core stays busy while other shards are still
    being fetched. Two copies of one canonical URL inside the shard are resolved here, by the
    same rule the run applies across shards, so enrichment never runs twice for one article.
    ``seconds`` is CPU time per stage in this worker, summed by the flow into the stage report.
    """
    from tasks.canonical import drop_duplicate_ids
    from tasks.dedup import fingerprint_table

    res = extract_clean_shard(pages_path, articles_path, out_dir, shard_id, run_id)
    t1 = time.process_time()
    out = Path(out_dir)
    clean_path = out / "clean" / f"{shard_id}.parquet"
    cleaned = pq.read_table(clean_path)
    kept, dup = drop_duplicate_ids(cleaned, run_id)
    if dup.num_rows:
        write_table(kept, clean_path)
        write_table(conform(dup, REJECTS), out / "rejects" / f"dedup-local-{shard_id}.parquet")
    res["canonical_rejects"] = dup.num_rows
    if kept.num_rows:
        # dedup's CPU-bound half (shingling and MinHash keys) runs here, in parallel, where
        # the bodies already are; the flow's single dedup step only matches fingerprints
        write_table(fingerprint_table(kept), out / "fingerprints" / f"{shard_id}.parquet")
    t2 = time.process_time()
    res["seconds"]["dedup fingerprints"] = t2 - t1
    t1 = t2
    if kept.num_rows:
        res.update(enrich_shard(str(clean_path), out_dir, shard_id, run_id))
    else:
        res["enrich"] = {"in": 0, "out": 0, "rejected": {}}
        res["tables"] = {}
    res["seconds"]["enrich"] = time.process_time() - t1
    return res
