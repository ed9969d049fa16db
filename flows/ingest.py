"""The ingest flow: sources -> fetch -> extract/clean/enrich -> dedup -> checks -> load -> publish.

Only composition lives here. The unit of parallel work is a shard (a batch of URLs, a folder
slice, one WARC file): Prefect schedules one task per shard and stage, CPU work goes to the
process pool (or Dask workers), and one load step is the single DuckDB writer.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from newsflow import memory, pool
from newsflow.progress import report
from tasks import dedup as dedup_stage
from tasks import quality
from tasks.canonical import drop_duplicate_ids
from tasks.fetch import shard_state
from tasks.robots import forget_run
from tasks.schema import REJECTS, conform, rejects_table, stable_id, utcnow
from tasks.shards import (
    fetch_units,
    process_shard,
    read_table,
    reason_counts,
    write_known_hashes,
    write_table,
)
from tasks.sources import URL_KINDS, Shard, discover, load_sources
from warehouse.dedup_index import DuckDBHistory
from warehouse.store import Warehouse
from warehouse.tables import ARTICLES


@dataclass
class RunSummary:
    run_id: str
    status: str
    home: str
    counts: dict = field(default_factory=dict)
    stage_seconds: dict = field(default_factory=dict)
    inserted: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    message: str | None = None
    data_docs: str | None = None

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def new_run_id() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


# --- tasks: thin wrappers, the logic is in tasks/ ---------------------------------------
@task(cache_policy=NO_CACHE, retries=0)
def fetch_task(
    shard: Shard,
    settings,
    known: KnownState | str,
    run_id: str,
    archive_dir: str,
    out_dir: str,
    unit_rows: int,
):
    """Fetch one shard into CPU units of ``unit_rows`` pages, its last up to a quarter more.

    A file shard is read on the process pool (``known`` is then the path of the run's
    known-hashes file): its reading is CPU work. A network shard is fetched here, in the
    flow's threads, which mostly wait on servers.
    """
    state = known.state if isinstance(known, KnownState) else known
    if shard.kind in URL_KINDS:
        res = fetch_units(shard, settings, state, run_id, archive_dir, out_dir, unit_rows)
        memory.release_free_memory()  # the shard's pages are on disk now; give the RAM back
        del res["seconds"]  # this process's CPU: already in the report as the orchestrator's
    else:
        res = pool.run_cpu(
            fetch_units, shard, settings, state, run_id, archive_dir, out_dir, unit_rows
        )
    report("fetch", len(shard.items))
    return res


UNIT_ROWS = 100  # pages per pool job: small enough to spread over cores, big enough to amortise
# The last shard's units are smaller: processing ends when the last unit does, and with
# 100-page units (3-7 s each) one core idled for about half a unit while the other finished.
LAST_SHARD_UNIT_ROWS = UNIT_ROWS // 2
URL_AHEAD = 8  # network fetch shards in flight at once
FILE_AHEAD = 2  # file shards (WARC/JSONL slices, folders) in flight at once


@task(cache_policy=NO_CACHE)
def process_task(units: list[dict], out_dir: str, run_id: str) -> list[dict]:
    """Extract, clean and enrich one shard's units on the process pool.

    One Prefect task per shard, not per unit: every task run costs the flow and the Prefect
    server about 22 ms of CPU (measured on a real server), and the pool's workers, not
    Prefect, spread the units over the cores: all of a shard's units are queued at once.
    """
    futures = [
        pool.submit_cpu(process_shard, u["pages"], u["articles"], out_dir, u["shard_id"], run_id)
        for u in units
    ]
    results, failures = [], []
    for u, fut in zip(units, futures, strict=True):
        try:
            res = fut.result()
        except Exception as exc:  # every unit is waited for; each failure is reported
            failures.append((u["shard_id"], exc))
            continue
        report("extract", res["extract"]["in"])
        report("enrich", res["extract"]["in"])  # pages through the unit, so both bars end full
        results.append(res)
    if failures:
        for unit_id, exc in failures[1:]:
            get_run_logger().error("unit %s failed too: %r", unit_id, exc)
        raise failures[0][1]
    return results


class Handoff:
    """Tables handed to one task, which takes them out: Prefect keeps a task's parameters
    until the flow run ends (measured: a 95 MB table passed to a task stays allocated after
    the call and after ``del``), so a check's table (the run's clean bodies, every entity
    row) would otherwise stay in memory for the rest of the run."""

    def __init__(self, table: pa.Table | None, tables: dict | None = None) -> None:
        self._content: tuple | None = (table, tables)

    def take(self) -> tuple[pa.Table | None, dict | None]:
        content, self._content = self._content, None
        if content is None:
            raise RuntimeError("handoff already taken (a retried task must be handed anew)")
        return content

    def __repr__(self) -> str:
        return "Handoff()" if self._content is None else "Handoff(pending)"


@task(cache_policy=NO_CACHE)
def check_task(stage: str, handoff: Handoff, run_id: str, gx_dir: str) -> quality.QualityReport:
    table, tables = handoff.take()
    return quality.validate(stage, table, run_id, context_dir=Path(gx_dir), tables=tables)


class KnownState:
    """The fetch state a shard may need, passed to its task as one opaque object.

    Prefect walks every task parameter that is a collection (looking for futures to wait on),
    so handing the warehouse's whole fetch state to each task as a dict costs that walk over
    every known URL, per task: with 20k URLs and 100 shards it took minutes. Wrapped, it is
    one object; threads share it, nothing is copied.
    """

    def __init__(self, state: dict) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"KnownState({len(self.state)} URLs)"


def _state_for(shard: Shard, state: dict, known_file: str) -> KnownState | str:
    """A URL shard gets only its URLs' fetch state; a file shard (WARC, JSONL, folder) holds
    URLs only known once read, so it needs all of it: the path of the run's known-hashes
    file, which its pool worker loads once."""
    return KnownState(shard_state(shard, state)) if shard.kind in URL_KINDS else known_file


def _start_data_docs(gx_dir: Path) -> Future:
    """Render the Data Docs in a thread; the future holds the site's index path."""
    runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="data-docs")
    try:
        return runner.submit(quality.build_data_docs, gx_dir)
    finally:
        runner.shutdown(wait=False)  # the thread ends when the render does


def _check(timings: dict, stage: str, table: pa.Table, run_id: str, gx: str, tables=None):
    t0 = time.perf_counter()
    try:
        return check_task(stage, Handoff(table, tables), run_id, gx)
    finally:
        timings["checks"] = timings.get("checks", 0.0) + time.perf_counter() - t0


def _read_dir(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    """All unit files of one staged table as one table; with ``columns``, only those a file
    has (unit files of one table may differ, e.g. the discovery log among the fetches)."""
    files = sorted(path.glob("*.parquet")) if path.exists() else []
    if not files:
        return None
    parts = []
    for f in files:
        with pq.ParquetFile(f) as pf:
            have = set(pf.schema_arrow.names)
            parts.append(
                pf.read(columns=None if columns is None else [c for c in columns if c in have])
            )
    return pa.concat_tables(parts, promote_options="default")


def _merge_counts(parts: list[dict], key: str) -> dict:
    total: dict = {"in": 0, "out": 0, "rejected": Counter()}
    for p in parts:
        c = p.get(key)
        if not c:
            continue
        total["in"] += c["in"]
        total["out"] += c["out"]
        total["rejected"].update(c["rejected"])
    total["rejected"] = dict(total["rejected"])
    return total


# --- the flow ---------------------------------------------------------------------------
@flow(name="newsflow-ingest", task_runner=ThreadPoolTaskRunner(max_workers=16), log_prints=True)
def ingest(
    sources_path: str,
    home: str = "data",
    workers: int | None = None,
    run_id: str | None = None,
    use_pool: bool = True,
) -> dict:
    """Run every stage over the sources and publish the result atomically."""
    log = get_run_logger()
    run_id = run_id or new_run_id()
    wh = Warehouse(home)
    stage_dir = wh.staging_dir / run_id
    gx = str(wh.gx_dir)
    started = utcnow()
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}  # CPU seconds per stage, summed over worker processes
    summary = RunSummary(run_id=run_id, status="running", home=str(wh.home))
    wh.record_run(
        {"run_id": run_id, "started_at": started, "status": "running", "sources": str(sources_path)}
    )
    reports: list[quality.QualityReport] = []
    docs: Future | None = None  # Data Docs, rendered once every check has run
    counts: dict = summary.counts
    settings = None
    memory.setup_process()
    if use_pool:
        pool.start(workers)
    # GX (2-3 s of imports and its memory, first needed by the checks) is imported in a
    # thread once the first units are queued on the pool. After processing, its imports ran
    # on one core while the other idled and held the GIL against the reads and dedup there
    # (read clean + dedup: 5.1-5.5 s with the import alongside, 1.4 s without, 2k pages on
    # this 2-core machine); during processing the cores are busy anyway, so it costs about
    # half its CPU time in wall time (2k, interleaved runs: tail 10.4-11.1 -> 5.6-6.6 s,
    # processing +2.4 s, median wall 74.6 -> 72.4 s). Its memory now adds to the workers'
    # peak, which keeping pandas out of the workers (newsflow.pool.keep_out_pandas) lowered
    # by about 60 MB; deferring GX's unused scipy.stats and altair (tasks.deferred_import)
    # takes 76 MB off the flow process: the 20k bench's tree peaked at 1,351 MB RSS
    # (1,195 MB PSS), against 1,412 (1,255) without the deferral.
    # The warm-up also stores the checks' suites and validation definitions (0.3 s that the
    # checks paid one after another at the end of the run).
    gx_warm = threading.Thread(
        target=quality.warm_up, args=(wh.gx_dir, _CHECKED_STAGES), daemon=True
    )
    try:
        # fetch: discover shards, then one IO task per shard
        memory.mark("fetch+process")
        t0 = time.perf_counter()
        sources, settings = load_sources(sources_path)
        if settings.cache_dir is None:  # listings and robots.txt kept with the warehouse
            settings.cache_dir = str(wh.home / "cache")
        state = wh.fetch_state()
        shards, discovery_log = discover(sources, settings, run_id=run_id)
        # only file shards read it; a run of network sources would write every known URL
        known_file = (
            write_known_hashes(state, stage_dir / "known_hashes.parquet")
            if any(s.kind not in URL_KINDS for s in shards)
            else ""
        )
        discovery_rejects = _log_to_rejects(discovery_log, "discover", run_id)
        write_table(discovery_log, stage_dir / "fetches" / "discover.parquet")
        write_table(discovery_rejects, stage_dir / "rejects" / "discover.parquet")
        if discovery_rejects.num_rows:
            kept = sum(len(s.items) for s in shards)
            counts["discover"] = {
                "in": kept + discovery_rejects.num_rows,
                "out": kept,
                "rejected": reason_counts(discovery_rejects),
            }
        report("fetch", 0, sum(len(s.items) for s in shards))
        archive = str(wh.archive_dir)
        # Each fetched shard's units go to the CPU pool as soon as the shard lands, so
        # extraction and enrichment overlap with fetching. File shards are read on the pool
        # too, queued in order with the units: FILE_AHEAD of them in flight keeps the next
        # shard's read ahead of the workers (one alone left a worker idle while it was read)
        # without staging far more pages on disk than the workers can take; network shards
        # wait on servers, so more may be in flight.
        pending = list(shards)
        window: dict = {}  # future -> is a file shard
        fetched, unit_futures = [], []
        queued = 0
        while pending or window:
            while pending and len(window) < URL_AHEAD:
                is_file = pending[0].kind not in URL_KINDS
                if is_file and sum(window.values()) >= FILE_AHEAD:
                    break
                s = pending.pop(0)
                fut = fetch_task.submit(
                    s,
                    settings,
                    _state_for(s, state, known_file),
                    run_id,
                    archive,
                    str(stage_dir),
                    UNIT_ROWS if pending else LAST_SHARD_UNIT_ROWS,
                )
                window[fut] = is_file
            fut = next(as_completed(list(window)))
            del window[fut]
            f = fut.result()
            fetched.append(f)
            for k, v in f.get("seconds", {}).items():  # file shards: read on the pool
                cpu[k] = cpu.get(k, 0.0) + v
            queued += f["fetch"]["out"]
            report("extract", 0, queued)
            report("enrich", 0, queued)
            if f["units"]:
                unit_futures.append(process_task.submit(f["units"], str(stage_dir), run_id))
                if gx_warm.ident is None:
                    gx_warm.start()  # the workers have a queue now
        counts["fetch"] = _merge_counts(fetched, "fetch")
        timings["fetch"] = time.perf_counter() - t0

        # extract + clean + enrich: CPU, one task per shard, its units on the process pool
        processed = [res for shard_results in _results(unit_futures) for res in shard_results]
        if use_pool:
            # each worker holds the NER models (0.6-0.8 GB) and nothing after this point
            # needs them: stopping them here keeps them out of the peak of dedup and load
            pool.shutdown()
        if gx_warm.ident is None:  # no unit was queued: nothing overlaps it now
            gx_warm.start()
        counts["extract"] = _merge_counts(processed, "extract")
        counts["clean"] = _merge_counts(processed, "clean")
        counts["enrich"] = _merge_counts(processed, "enrich")
        for p in processed:  # CPU seconds summed over workers
            for k, v in p.get("seconds", {}).items():
                cpu[k] = cpu.get(k, 0.0) + v
        timings["fetch+process (wall)"] = time.perf_counter() - t0
        shard_ids = [p["shard_id"] for p in processed]
        memory.mark("read clean")
        # only what the clean checks and dedup read: the rest of an article (authors,
        # description, ...) goes from the unit files straight into the published table
        clean_columns = sorted(
            set(quality.needed_columns("clean"))
            | set(dedup_stage.INPUT_COLUMNS)
            | {"article_id", "url", "fetched_at"}
        )
        clean = _read_dir(stage_dir / "clean", clean_columns)
        canon_rejects = REJECTS.empty_table()
        if clean is not None:
            # two URLs declaring one canonical URL are one article: keep one, reject the rest
            clean, canon_rejects = _drop_duplicate_ids(clean, run_id)
            write_table(canon_rejects, stage_dir / "rejects" / "dedup-canonical.parquet")
        kept_urls = clean.column("url") if clean is not None else None
        local_dups = sum(p.get("canonical_rejects", 0) for p in processed)
        dedup_files: dict[str, list[Path]] | None = None
        article_files: list[Path] | None = None
        assignments: pa.Table | None = None
        n_final = 0
        con = wh.connect()
        try:
            if clean is not None and clean.num_rows:
                # dedup: one process, against the warehouse's band index (incremental)
                memory.mark("dedup")
                t0 = time.perf_counter()
                fingerprints = _read_dir(stage_dir / "fingerprints")
                to_dedup = clean
                if fingerprints is not None and dedup_stage.covers(fingerprints, clean):
                    to_dedup = clean.drop_columns(["body"])  # the workers fingerprinted them all
                result = dedup_stage.dedup_batch(
                    to_dedup, DuckDBHistory(con), run_id, fingerprints=fingerprints
                )
                del fingerprints, to_dedup
                assignments = result.assignments
                kinds = Counter(assignments.column("dup_kind").to_pylist())
                counts["dedup"] = {
                    "in": assignments.num_rows + canon_rejects.num_rows + local_dups,
                    "out": assignments.num_rows,
                    "rejected": _add_counts(
                        reason_counts(result.rejects) | reason_counts(canon_rejects),
                        {"duplicate_canonical_url": local_dups} if local_dups else {},
                    ),
                    "kinds": dict(kinds),
                    "clusters": len(set(assignments.column("cluster_id").to_pylist())),
                }
                # the index rows (a fingerprint per article) wait for the load on disk
                dedup_files = _write_dedup_result(stage_dir, result)
                del result
                memory.release_free_memory()
                timings["dedup"] = time.perf_counter() - t0

            memory.mark("fetch, clean and enrich checks")
            fetches = _read_dir(stage_dir / "fetches", quality.needed_columns("fetch"))
            if fetches is not None:
                reports.append(_check(timings, "fetch", fetches, run_id, gx))
            del fetches
            if clean is not None:
                reports.append(_check(timings, "clean", clean, run_id, gx))
            del clean
            memory.release_free_memory()  # the check's pandas copy of the bodies is gone
            owners: dict[str, set[str]] = {}
            if canon_rejects.num_rows and kept_urls is not None:
                owners = _owners(stage_dir, shard_ids, set(kept_urls.to_pylist()))
            stats = _filter_owned(stage_dir / "enrich" / "article_stats", owners)
            ents = _filter_owned(stage_dir / "enrich" / "article_entities", owners)
            if ents is not None or stats is not None:
                reports.append(
                    _check(
                        timings,
                        "enrich",
                        ents if ents is not None else stats,
                        run_id,
                        gx,
                        tables={"article_stats": stats} if stats is not None else None,
                    )
                )
            _raise_on_critical(reports)
            del ents  # checked; the load reads the unit files

            if assignments is not None:
                memory.mark("assemble")
                article_files, view = _assemble_articles(
                    stage_dir, shard_ids, assignments, stats, kept_urls
                )
                del assignments, kept_urls
                n_final = view.num_rows
                memory.mark("dedup+publish checks")
                reports.append(_check(timings, "dedup", view, run_id, gx))
                reports.append(_check(timings, "publish", view, run_id, gx))
                del view
                _raise_on_critical(reports)
            del stats
            memory.release_free_memory()

            # Every check has passed: Data Docs can render now, in a thread, while the load
            # and export run in DuckDB (which releases the GIL) instead of after them.
            docs = _start_data_docs(wh.gx_dir)
            # load + publish: the single writer, one transaction, then the Parquet swap
            memory.mark("load")
            t0 = time.perf_counter()
            staged = _staged_tables(stage_dir, dedup_files, article_files, reports, owners)
            load = wh.load(con, staged, run_id=run_id)
            timings["load"] = time.perf_counter() - t0
            for step, secs in load.seconds.items():  # where the single writer's time goes
                timings[f"load {step}"] = secs
            memory.mark("export")
            t0 = time.perf_counter()
            # the load is committed; a fresh connection starts the export with an empty
            # buffer pool instead of on top of the load's (up to its memory limit)
            con.close()
            con = wh.connect()
            wh.export_parquet(con, run_id)
            timings["publish"] = time.perf_counter() - t0
            summary.inserted = load.inserted
            counts["load"] = {
                "in": n_final,
                "out": load.changed_articles,
                "rejected": {},
            }
            summary.status = "published" if load.changed_articles else "nothing_new"
        finally:
            con.close()
    except quality.QualityGateError as exc:
        summary.status, summary.message = "failed", str(exc)
        log.error("%s", exc)
        _record_checks_only(wh, reports)
    except Exception as exc:
        summary.status, summary.message = "failed", f"{type(exc).__name__}: {exc}"
        summary.stage_seconds = _stage_seconds(timings, cpu)
        wh.record_run(_run_row(summary, started, summary.stage_seconds, sources_path))
        raise
    finally:
        if use_pool:
            pool.shutdown()
        if settings is not None:
            forget_run(settings.host_dir(), run_id)  # the run's shared robots.txt files
    memory.mark("data docs")
    summary.warnings = [w for r in reports for w in r.warnings]
    t0 = time.perf_counter()
    if docs is None:  # a failed or gated run: render what its checks recorded now
        docs = _start_data_docs(wh.gx_dir)
    try:
        summary.data_docs = str(docs.result())
    except Exception as exc:  # docs are a view of results already stored; say so, don't fail
        summary.warnings.append(f"data docs not rebuilt: {exc}")
    timings["data_docs"] = time.perf_counter() - t0  # what is left of it after the load
    memory.mark("end")
    timings["total"] = time.perf_counter() - t_start
    # this process's own CPU (fetch threads, Prefect, checks, dedup, load): it competes with
    # the pool's workers for the same cores, so it is part of the stage report
    cpu["orchestrator"] = time.process_time() - cpu_start
    summary.stage_seconds = _stage_seconds(timings, cpu)
    wh.record_run(_run_row(summary, started, summary.stage_seconds, sources_path))
    if summary.status in ("published", "nothing_new"):
        shutil.rmtree(stage_dir, ignore_errors=True)
    return summary.to_dict()


def _stage_seconds(timings: dict, cpu: dict) -> dict:
    """Wall seconds for the flow's own steps, CPU seconds (summed over workers) for pool stages.

    The pool stages overlap each other and fetching, so their wall times would not add up;
    CPU seconds show which stage costs most, which is what the next optimisation needs.
    """
    out = {k: round(v, 3) for k, v in timings.items()}
    out.update({f"{k} (cpu)": round(v, 3) for k, v in cpu.items()})
    return out


def _results(futures: list) -> list:
    return [f.result() for f in futures]


def _record_checks_only(wh: Warehouse, reports: list[quality.QualityReport]) -> None:
    """A stopped run publishes no data, but its check results must still be queryable."""
    con = wh.connect()
    try:
        wh.load(con, {"dq_results": [r.results for r in reports]})
    finally:
        con.close()


def _run_row(summary: RunSummary, started, timings: dict, sources_path: str) -> dict:
    return {
        "run_id": summary.run_id,
        "started_at": started,
        "finished_at": utcnow(),
        "status": summary.status,
        "sources": str(sources_path),
        "counts": json.dumps(summary.counts, sort_keys=True, default=str),
        "stage_seconds": json.dumps({k: round(v, 3) for k, v in timings.items()}),
        "message": summary.message,
    }


def _log_to_rejects(log: pa.Table, stage: str, run_id: str) -> pa.Table:
    """URLs dropped before fetching (robots, filters) are rejects too: nothing vanishes."""
    rows = [
        {
            "item_id": stable_id(r["url"]),
            "url": r["url"],
            "stage": stage,
            "reason": r["reason"],
            "detail": r.get("detail"),
        }
        for r in log.select(["url", "reason", "detail"]).to_pylist()
        if r["reason"]
    ]
    return rejects_table(rows, run_id)


def _raise_on_critical(reports: list[quality.QualityReport]) -> None:
    failures = [f for r in reports for f in r.critical_failures]
    if failures:
        raise quality.QualityGateError(failures)


def _assemble_articles(
    stage_dir: Path,
    shard_ids: list[str],
    assignments: pa.Table,
    stats: pa.Table | None,
    kept_urls: pa.ChunkedArray,
) -> tuple[list[Path], pa.Table]:
    """Join clean articles with their cluster and enrichment stats into the published shape.

    One unit at a time: each unit's published rows go to ``articles/<unit>.parquet`` for the
    load, and only what the dedup and publish checks read stays in memory (bodies reduced to
    whether they are null), so the run's bodies are never all held at once.
    Returns the written files (in unit order) and that check view.
    """
    files: list[Path] = []
    views: list[pa.Table] = []
    assign = assignments.select(["article_id", "cluster_id", "dup_kind", "dup_of"])
    kept = pa.concat_arrays(kept_urls.chunks) if kept_urls.num_chunks else pa.array([], pa.string())
    cols = ["article_id", "word_count", "reading_time_min", "enrichment_status"]
    stat_cols = stats.select(cols) if stats is not None else None
    for sid in shard_ids:
        t = read_table(stage_dir / "clean" / f"{sid}.parquet")
        t = t.filter(pc.is_in(t.column("url"), value_set=kept))
        t = _attach(t, assign)
        if stat_cols is not None:
            t = _attach(t, stat_cols)
        t = conform(t, ARTICLES)
        if t.num_rows:
            files.append(write_table(t, stage_dir / "articles" / f"{sid}.parquet"))
        views.append(quality.check_view(_ARTICLE_CHECKS, t))
    if not views:
        return files, quality.check_view(_ARTICLE_CHECKS, ARTICLES.empty_table())
    return files, pa.concat_tables(views)


_ARTICLE_CHECKS = ("dedup", "publish")  # the suites run on the assembled articles
_CHECKED_STAGES = ("fetch", "clean", "enrich", *_ARTICLE_CHECKS)  # every suite a run checks


def _drop_duplicate_ids(clean: pa.Table, run_id: str) -> tuple[pa.Table, pa.Table]:
    """``drop_duplicate_ids`` on the columns it decides by, so the bodies are copied (by the
    final ``take``) only when a duplicate is actually dropped; same rows, same order."""
    narrow = clean.select(["article_id", "fetched_at", "url"]).append_column(
        "_row", pa.array(range(clean.num_rows), pa.int64())
    )
    kept, rejects = drop_duplicate_ids(narrow, run_id)
    if kept.num_rows == clean.num_rows:
        return clean, rejects
    return clean.take(kept.column("_row")), rejects


def _write_dedup_result(stage_dir: Path, result: dedup_stage.DedupResult) -> dict[str, list[Path]]:
    """Stage dedup's output tables as Parquet (table name -> files) so the result, which holds
    a fingerprint per article, is not kept in memory until the load reads it back."""
    out = stage_dir / "dedup"
    tables = {
        "clusters": result.clusters,
        "article_syndication": result.syndication,
        "rejects": conform(result.rejects, REJECTS),
        **result.index_rows,
    }
    return {name: [write_table(t, out / f"{name}.parquet")] for name, t in tables.items()}


def _attach(left: pa.Table, right: pa.Table) -> pa.Table:
    """Left-join ``right``'s columns on article_id (Acero's join cannot carry list columns)."""
    idx = pc.index_in(left.column("article_id"), value_set=right.column("article_id"))
    for name in right.column_names:
        if name == "article_id":
            continue
        col = right.column(name).take(idx)
        if name in left.column_names:
            left = left.set_column(left.schema.get_field_index(name), name, col)
        else:
            left = left.append_column(name, col)
    return left


def _owners(stage_dir: Path, shard_ids: list[str], kept_urls: set[str]) -> dict[str, set[str]]:
    """For each unit that lost an article to the run-wide canonical dedup, the article ids
    whose kept copy is there; a unit that is not listed owns all its articles.

    Only needed when one canonical URL was fetched in two units: both units enriched their
    copy, and only the kept copy's rows may be published.
    """
    owners = {}
    for sid in shard_ids:
        t = read_table(stage_dir / "clean" / f"{sid}.parquet", columns=["article_id", "url"])
        pairs = zip(t.column("article_id").to_pylist(), t.column("url").to_pylist(), strict=True)
        kept = {a for a, u in pairs if u in kept_urls}
        if len(kept) < t.num_rows:
            owners[sid] = kept
    return owners


def _owned_parts(path: Path, owners: dict[str, set[str]]) -> list[pa.Table | Path]:
    """One enrich table's unit files, the few of units that lost an article read and
    filtered to the rows of articles they own, every other one left for the load to scan:
    the run's entity rows are not all read into this process because one article repeated."""
    parts: list[pa.Table | Path] = []
    for f in sorted(path.glob("*.parquet")):
        keep = owners.get(f.stem)
        if keep is None:
            parts.append(f)
            continue
        t = read_table(f)
        if "article_id" in t.column_names:
            t = t.filter(pc.is_in(t.column("article_id"), value_set=pa.array(sorted(keep))))
        parts.append(t)
    return parts


def _filter_owned(path: Path, owners: dict[str, set[str]]) -> pa.Table | None:
    """Read one enrich table's unit files, keeping only rows of articles each unit owns."""
    if not owners or not path.exists():
        return _read_dir(path)
    parts = [p if isinstance(p, pa.Table) else read_table(p) for p in _owned_parts(path, owners)]
    return pa.concat_tables(parts, promote_options="default") if parts else None


def _add_counts(a: dict, b: dict) -> dict:
    return dict(Counter(a) + Counter(b))


def _staged_tables(
    stage_dir: Path,
    dedup_files: dict[str, list[Path]] | None,
    article_files: list[Path] | None,
    reports: list[quality.QualityReport],
    owners: dict[str, set[str]] | None = None,
) -> dict[str, list]:
    """What the load reads, as Parquet paths wherever possible: DuckDB scans the files itself,
    so no table of the run has to be in this process's memory during the load."""
    staged: dict[str, list] = {}
    for name in ("fetches", "fetch_state", "warc_index"):
        files = sorted((stage_dir / name).glob("*.parquet"))
        if files:
            staged[name] = files
    staged["rejects"] = sorted((stage_dir / "rejects").glob("*.parquet"))
    if article_files is not None:
        staged["articles"] = list(article_files)
    for name, files in (dedup_files or {}).items():
        staged.setdefault(name, []).extend(files)
    enrich_dir = stage_dir / "enrich"
    if enrich_dir.exists():
        for d in sorted(enrich_dir.iterdir()):
            staged[d.name] = _owned_parts(d, owners) if owners else sorted(d.glob("*.parquet"))
    staged["dq_results"] = [r.results for r in reports]
    return staged
