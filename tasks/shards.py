"""Per-shard work units that run inside worker processes.

Each function reads one shard's Parquet input, runs plain stage functions over it and writes
Parquet outputs, returning only small counts. Passing paths instead of tables keeps the
parent process's memory flat whatever the run size, and keeps Prefect/DuckDB out of workers.
"""

from __future__ import annotations

import time
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.schema import ARTICLES_CORE, REJECTS, conform

if TYPE_CHECKING:
    from tasks.sources import FetchSettings, Shard


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """One staged Parquet file as a table.

    ``pq.read_table`` goes through the dataset layer (path discovery, partitioning, a
    fragment scan), about 0.6 ms a small file and 12 ms on a 100-page unit of HTML over
    reading the file itself, with the same table as the result; staged files are always
    single files.
    """
    with pq.ParquetFile(path) as f:
        return f.read(columns=columns)


def write_table(table: pa.Table, path: Path) -> Path:
    """Write atomically (temp file + rename) so a killed worker never leaves a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def write_known_hashes(state: dict[str, dict[str, Any]], path: Path) -> str:
    """The warehouse's fetch state as (key, content_hash): all a file shard's reader needs.

    File shards (WARC, JSONL, folders) only learn their URLs as they read, so each needs
    the whole state; written once per run, workers load it once instead of each task
    pickling every known URL to a worker process.
    """
    keys = [k for k, v in state.items() if v.get("content_hash")]
    table = pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "content_hash": pa.array([state[k]["content_hash"] for k in keys], pa.string()),
        }
    )
    return str(write_table(table, path))


@lru_cache(maxsize=2)
def _known_hashes(path: str) -> dict[str, dict[str, Any]]:
    t = read_table(path)
    return {
        k: {"content_hash": h}
        for k, h in zip(
            t.column("key").to_pylist(), t.column("content_hash").to_pylist(), strict=True
        )
    }


PAGE_BATCH = 25  # pages a reader holds as Python rows before they go to the unit file
# Unit files of raw HTML live only until their unit is processed, and are written and read
# once each: LZ4 keeps them as small as the default Snappy does, for about 0.3 ms less CPU
# per page (write + read of a 100-page unit of real pages, measured 0.41 + 0.27 ms/page
# with Snappy against 0.29 + 0.09 with LZ4).
PAGE_COMPRESSION = "lz4"


class _UnitFiles:
    """Pages into unit files of ``unit_rows`` rows, appended in small row groups.

    A reader hands over a few pages at a time and a unit file grows as they come, so the
    pages of a whole unit are never held as Python rows (several times their Arrow size)
    at once. Each file is written under a temporary name and renamed when complete.

    A shard's last unit would often be a stub (a byte-range shard of a WARC holds whatever
    number of pages fits its bytes), and every unit costs the same fixed work (a Prefect
    task, cache resets, a dozen output files). So the rows after a full unit are held back,
    up to a quarter of a unit: if the shard ends there, they join the full unit (so a unit
    holds at most 1.25 times ``unit_rows``: a worker's memory grows with its unit); if more
    come, the held rows start the next unit.
    """

    def __init__(self, folder: Path, prefix: str, unit_rows: int) -> None:
        self.folder, self.prefix, self.unit_rows = folder, prefix, unit_rows
        self.slack = unit_rows // 4  # rows a full unit may still take at the shard's end
        self.units: list[tuple[str, str]] = []  # (unit id, path) of complete files
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._tmp: Path | None = None
        self._in_unit = 0
        self._held: list[pa.Table] = []  # rows after a full unit, not yet placed
        self._held_rows = 0

    def write(self, table: pa.Table) -> None:
        done = 0
        while done < table.num_rows:
            if self._writer is not None and self._in_unit >= self.unit_rows:
                take = min(self.slack + 1 - self._held_rows, table.num_rows - done)
                self._held.append(table.slice(done, take))
                self._held_rows += take
                done += take
                if self._held_rows > self.slack:  # more than a tail: a new unit begins
                    self._finish()
                    self._place_held()
                continue
            take = min(self.unit_rows - self._in_unit, table.num_rows - done)
            self._append(table.slice(done, take))
            done += take

    def _append(self, table: pa.Table) -> None:
        if self._writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._tmp = self.folder / f"{self.prefix}-p{len(self.units)}.tmp"
            self._writer = pq.ParquetWriter(self._tmp, table.schema, compression=PAGE_COMPRESSION)
        self._writer.write_table(table)
        self._in_unit += table.num_rows
        self.rows += table.num_rows

    def _place_held(self) -> None:
        held, self._held, self._held_rows = self._held, [], 0
        for t in held:
            self._append(t)

    def _finish(self) -> None:
        if self._writer is None or self._tmp is None:
            return
        self._writer.close()
        uid = f"{self.prefix}-p{len(self.units)}"
        path = self._tmp.with_name(f"{uid}.parquet")
        self._tmp.replace(path)
        self.units.append((uid, str(path)))
        self._writer, self._tmp, self._in_unit = None, None, 0

    def close(self) -> None:
        """The shard is read: the held tail joins the last unit, which is renamed into place."""
        self._place_held()
        self._finish()

    def abort(self) -> None:
        """Drop an unfinished unit file (its shard failed; no unit lists it)."""
        self._held, self._held_rows = [], 0
        if self._writer is not None and self._tmp is not None:
            self._writer.close()
            self._tmp.unlink(missing_ok=True)
            self._writer, self._tmp, self._in_unit = None, None, 0


def fetch_units(
    shard: Shard,
    settings: FetchSettings,
    state: dict[str, dict[str, Any]] | str | None,
    run_id: str,
    archive_dir: str,
    out_dir: str,
    unit_rows: int = 100,
) -> dict:
    """Fetch one shard, writing its pages as CPU units of at most ``unit_rows`` as they come.

    Runs where the shard's bytes are: in the flow's threads for network shards (they wait
    on servers), in a pool worker for file shards (reading a WARC is decompression,
    decoding and hashing: CPU work, which in the flow process competed with the workers and
    held each shard's HTML in the flow's memory). ``state`` is the fetch state, or the path
    of a ``write_known_hashes`` file. Returns only the unit paths and counts.
    """
    from tasks.fetch import fetch_shard

    t0 = time.thread_time()  # this thread's CPU: right in a pool worker and in a flow thread
    if isinstance(state, str):
        state = _known_hashes(state)
    out = Path(out_dir)
    pages = _UnitFiles(out / "pages", shard.shard_id, unit_rows)
    try:
        res = fetch_shard(
            shard,
            settings,
            state or {},
            run_id,
            Path(archive_dir),
            page_sink=pages.write,
            sink_rows=min(unit_rows, PAGE_BATCH),
        )
        pages.close()
    finally:
        pages.abort()  # after close() a no-op; else drops the half-written unit file
    units = [{"shard_id": uid, "articles": None, "pages": p} for uid, p in pages.units]
    n_pages = pages.rows
    articles = res.articles
    if articles is not None:
        for i in range(0, articles.num_rows, unit_rows):
            uid = f"{shard.shard_id}-a{i // unit_rows}"
            path = write_table(articles.slice(i, unit_rows), out / "pre" / f"{uid}.parquet")
            units.append({"shard_id": uid, "pages": None, "articles": str(path)})
    write_table(res.fetches, out / "fetches" / f"{shard.shard_id}.parquet")
    write_table(res.state, out / "fetch_state" / f"{shard.shard_id}.parquet")
    if res.warc_index is not None and res.warc_index.num_rows:
        write_table(res.warc_index, out / "warc_index" / f"{shard.shard_id}.parquet")
    write_table(conform(res.rejects, REJECTS), out / "rejects" / f"fetch-{shard.shard_id}.parquet")
    counts = {
        "in": len(shard.items),
        "out": n_pages + (articles.num_rows if articles is not None else 0),
        "rejected": reason_counts(res.rejects),
    }
    return {
        "shard_id": shard.shard_id,
        "units": units,
        "fetch": counts,
        "seconds": {"fetch": time.thread_time() - t0},
    }


def reason_counts(rejects: pa.Table) -> dict[str, int]:
    if rejects.num_rows == 0:
        return {}
    return dict(Counter(rejects.column("reason").to_pylist()))


def extract_clean_shard(
    pages_path: str, articles_path: str | None, out_dir: str, shard_id: str, run_id: str
) -> tuple[dict, pa.Table]:
    """Extract + clean one shard: pages (and pre-extracted articles) in, clean articles out
    (written, and returned with the counts for the rest of the unit)."""
    from tasks.clean import clean_batch
    from tasks.extract import extract_batch

    out = Path(out_dir)
    pages = read_table(pages_path) if pages_path else None
    n_pages = pages.num_rows if pages is not None else 0
    parts = []
    ex_rejects = REJECTS.empty_table()
    t0 = time.process_time()
    if pages is not None and n_pages:
        extracted, ex_rejects = extract_batch(pages, run_id)
        parts.append(conform(extracted, ARTICLES_CORE))
    n_pre = 0
    if articles_path:
        pre = conform(read_table(articles_path), ARTICLES_CORE)
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
    counts = {
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
    return counts, cleaned


def enrich_shard(articles: pa.Table, out_dir: str, shard_id: str, run_id: str) -> dict:
    """Enrich one shard of clean articles; each output table goes to its own Parquet file."""
    from tasks.enrich import enrich_batch

    out = Path(out_dir)
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


_WARM_BODY = (
    "Mayor Jane Smith told reporters in Chicago on Monday that the city council would vote "
    'on the budget. "We have waited long enough," she said. The Associated Press reported '
    "that the plan adds money for schools in Illinois."
)


def warm_up() -> None:
    """Load what a worker's first unit would: the stage modules and enrichment's models.

    Enriching one small article runs every lazily loaded piece (the NER pipeline, the tone
    lexicon, the gazetteers) exactly as a real unit does.
    """
    import tasks.clean  # noqa: F401
    import tasks.dedup  # noqa: F401
    import tasks.extract  # noqa: F401
    from tasks.enrich import enrich_batch

    article = {"article_id": "warm-up", "body": _WARM_BODY, "language": "en", "title": "Budget"}
    enrich_batch(conform(pa.Table.from_pylist([article]), ARTICLES_CORE), "warm-up")


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

    res, cleaned = extract_clean_shard(pages_path, articles_path, out_dir, shard_id, run_id)
    t1 = time.process_time()
    out = Path(out_dir)
    clean_path = out / "clean" / f"{shard_id}.parquet"
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
        res.update(enrich_shard(kept, out_dir, shard_id, run_id))
    else:
        res["enrich"] = {"in": 0, "out": 0, "rejected": {}}
        res["tables"] = {}
    res["seconds"]["enrich"] = time.process_time() - t1
    return res
