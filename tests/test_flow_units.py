"""The flow's shard bookkeeping, without Prefect: which unit owns an article's enrichment."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flows.ingest import _filter_owned, _owned_parts, _owners
from tasks.schema import PAGES
from tasks.shards import reason_counts


def _write(path: Path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def test_enrichment_of_a_canonical_duplicate_is_published_once(tmp_path):
    # one canonical URL fetched in two units (two URLs declaring it), plus one article each
    _write(
        tmp_path / "clean" / "u1.parquet",
        pa.table({"article_id": ["A", "B"], "url": ["http://x/a?ref=1", "http://x/b"]}),
    )
    _write(
        tmp_path / "clean" / "u2.parquet",
        pa.table({"article_id": ["A", "C"], "url": ["http://x/a", "http://x/c"]}),
    )
    for unit, ids in (("u1", ["A", "A", "B"]), ("u2", ["A", "C"])):
        _write(
            tmp_path / "enrich" / "article_entities" / f"{unit}.parquet",
            pa.table({"article_id": ids, "entity_id": [f"{unit}-{i}" for i in range(len(ids))]}),
        )
    kept = {"http://x/a", "http://x/b", "http://x/c"}  # the run-wide dedup kept u2's copy of A
    owners = _owners(tmp_path, ["u1", "u2"], kept)
    assert owners == {"u1": {"B"}}  # only the unit that lost its copy of A is listed
    expected = [("A", "u2-0"), ("B", "u1-2"), ("C", "u2-1")]
    rows = _filter_owned(tmp_path / "enrich" / "article_entities", owners).to_pylist()
    assert sorted((r["article_id"], r["entity_id"]) for r in rows) == expected
    # what the load gets: u1's rows filtered in memory, u2's file left for DuckDB to scan
    parts = _owned_parts(tmp_path / "enrich" / "article_entities", owners)
    assert [type(p) for p in parts] == [pa.Table, type(tmp_path)]
    assert parts[1].name == "u2.parquet"
    loaded = pa.concat_tables([parts[0], pq.read_table(parts[1])]).to_pylist()
    assert sorted((r["article_id"], r["entity_id"]) for r in loaded) == expected


def test_without_duplicates_every_row_is_kept(tmp_path):
    _write(tmp_path / "enrich" / "t" / "u1.parquet", pa.table({"article_id": ["A", "A"]}))
    assert _filter_owned(tmp_path / "enrich" / "t", {}).num_rows == 2


def test_canonical_dedup_on_a_narrow_table_keeps_the_same_rows():
    """The flow decides canonical duplicates on three columns and copies the bodies only when
    a row goes; kept rows and rejects must equal the full-table function's."""
    from datetime import UTC, datetime

    from flows.ingest import _drop_duplicate_ids
    from tasks.canonical import drop_duplicate_ids

    t = pa.table(
        {
            "article_id": ["B", "A", "B", "C", "A"],
            "url": ["http://x/b2", "http://x/a", "http://x/b1", "http://x/c", "http://x/a?r"],
            "fetched_at": [datetime(2025, 1, d, tzinfo=UTC) for d in (2, 1, 2, 3, 1)],
            "body": ["b2", "a", "b1", "c", "a2"],
        }
    )
    kept, rejects = _drop_duplicate_ids(t, "r")
    want, want_rejects = drop_duplicate_ids(t, "r")
    assert kept.equals(want)
    assert rejects.drop_columns(["rejected_at"]).equals(want_rejects.drop_columns(["rejected_at"]))
    unique = t.slice(3, 1)
    assert _drop_duplicate_ids(unique, "r")[0] is unique  # nothing dropped: no copy


def test_warm_up_loads_enrichment_before_any_unit() -> None:
    """What a worker's first unit would load (NER pipeline included) is loaded by warm_up."""
    from tasks import ner
    from tasks.shards import warm_up

    ner.nlp.cache_clear()
    warm_up()
    assert ner.nlp.cache_info().currsize == 1


def test_a_warmed_pool_runs_units_and_shuts_down() -> None:
    from newsflow import pool

    table = pa.table({"reason": ["timeout", "timeout", "no_body"]})
    pool.start(1)
    try:
        pool.warm()  # queued ahead of the unit: the unit still runs, after it
        assert pool.run_cpu(reason_counts, table) == {"timeout": 2, "no_body": 1}
    finally:
        pool.shutdown()
    assert pool.run_cpu(reason_counts, table) == {"timeout": 2, "no_body": 1}  # in-process


def _unit_or_fail(reason: str) -> dict[str, int]:
    if reason == "fail":
        raise ValueError("a broken unit")
    return reason_counts(pa.table({"reason": [reason]}))


def test_a_shard_queues_all_its_units_at_once_and_a_failure_reaches_its_task() -> None:
    """``submit_cpu`` hands back futures (the shard's task waits on all of its units), the
    same with a pool or in this process, and a unit's exception is raised by ``result()``."""
    from newsflow import pool

    def run() -> tuple[list, Exception | None]:
        futs = [pool.submit_cpu(_unit_or_fail, r) for r in ("timeout", "fail", "no_body")]
        ok = [f.result() for f in (futs[0], futs[2])]
        try:
            futs[1].result()
        except ValueError as exc:
            return ok, exc
        return ok, None

    pool.start(2)
    try:
        in_pool, error = run()
    finally:
        pool.shutdown()
    assert in_pool == [{"timeout": 1}, {"no_body": 1}]
    assert isinstance(error, ValueError)
    inline, error = run()
    assert inline == in_pool
    assert isinstance(error, ValueError)


def _freeze_count() -> int:
    import gc

    return gc.get_freeze_count()


def test_a_worker_freezes_its_heap_once_after_the_first_unit_of_each_kind() -> None:
    """The first unit's leftovers (long-lived caches) leave the collector's view, once."""
    from newsflow import pool

    pool.start(1)
    try:
        before = pool.run_cpu(_freeze_count)  # the count inside the first unit
        after_first = pool.run_cpu(_freeze_count)
        after_second = pool.run_cpu(_freeze_count)
    finally:
        pool.shutdown()
    assert after_first > before  # frozen after the first unit
    assert after_second == after_first  # and not again: leftovers frozen are bounded


def test_a_shard_task_waits_for_all_its_units_and_raises_the_first_failure(
    prefect_harness, tmp_path
) -> None:
    """A unit that fails fails its shard's task with that unit's error, after every other
    unit of the shard has run: a later good unit's output is still written."""
    from prefect import flow

    from flows.ingest import process_task

    good = tmp_path / "good.parquet"
    pq.write_table(PAGES.empty_table(), good)
    units = [
        {"shard_id": "u-missing", "pages": str(tmp_path / "missing.parquet"), "articles": None},
        {"shard_id": "u-good", "pages": str(good), "articles": None},
        {"shard_id": "u-gone", "pages": str(tmp_path / "gone.parquet"), "articles": None},
    ]

    @flow
    def one_shard() -> list[dict]:
        return process_task(units, str(tmp_path / "out"), "r")

    with pytest.raises(Exception, match="missing.parquet"):
        one_shard()
    assert (tmp_path / "out" / "clean" / "u-good.parquet").exists()


def _arrow_in_worker() -> tuple[bool, int, str]:
    import sys

    table = pa.Table.from_pylist([{"a": 1, "b": "x"}])  # pyarrow used to import pandas here
    try:
        import pandas  # noqa: F401
    except ModuleNotFoundError as exc:
        refused = str(exc)
    else:
        refused = ""
    return "pandas" in sys.modules, table.num_rows, refused


def test_pool_workers_build_arrow_tables_without_importing_pandas() -> None:
    """Nothing a worker runs uses pandas; pyarrow imported it anyway (0.3-0.4 s and ~30 MB
    per worker). In a worker it is refused, with a message saying why; tables still build."""
    from newsflow import pool

    pool.start(1)
    try:
        has_pandas, rows, refused = pool.run_cpu(_arrow_in_worker)
    finally:
        pool.shutdown()
    assert (has_pandas, rows) == (False, 1)
    assert "keep_out_pandas" in refused
