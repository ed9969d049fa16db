"""Canonical-URL dedup: two fetched URLs that declare the same canonical URL are one article.

Runs before near-duplicate detection on the whole run's clean articles. The copy kept is the
first by fetch time then URL, so the choice is deterministic; the others become rejects.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tasks.schema import REJECTS, rejects_table


def drop_duplicate_ids(articles: pa.Table, run_id: str) -> tuple[pa.Table, pa.Table]:
    """Keep one row per article_id; the rest are rejected as 'duplicate_canonical_url'."""
    if articles.num_rows == 0:
        return articles, REJECTS.empty_table()
    order = pc.sort_indices(
        articles,
        sort_keys=[("article_id", "ascending"), ("fetched_at", "ascending"), ("url", "ascending")],
    )
    ids = articles.column("article_id").take(order).to_pylist()
    urls = articles.column("url").take(order).to_pylist()
    keep, rejects, prev = [], [], None
    kept_url: dict[str, str] = {}
    for pos, (aid, url) in enumerate(zip(ids, urls, strict=True)):
        if aid != prev:
            keep.append(order[pos].as_py())
            kept_url[aid] = url
            prev = aid
        else:
            rejects.append(
                {
                    "item_id": aid,
                    "url": url,
                    "stage": "dedup",
                    "reason": "duplicate_canonical_url",
                    "detail": f"same canonical URL as {kept_url[aid]}",
                }
            )
    kept = articles.take(pa.array(sorted(keep), pa.int64()))
    return kept, rejects_table(rejects, run_id)
