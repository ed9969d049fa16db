"""The whole flow over a WARC source: file shards are read on the process pool.

A WARC of the fixture pages, split into several slices, goes through real Prefect runs with
a two-worker pool into a real DuckDB file; then the same, unchanged WARC again.
"""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import duckdb
import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

PAGES = Path(__file__).parent / "fixtures" / "pages"


def _write_warc(path: Path) -> dict[str, dict]:
    """One response record per fixture page; returns url -> expected extraction."""
    expected = {}
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for page in sorted(PAGES.glob("*.html")):
            url = f"https://news.test/{page.stem}"
            expected[url] = json.loads(page.with_suffix(".expected.json").read_text("utf-8"))
            http = StatusAndHeaders(
                "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
            )
            w.write_record(
                w.create_warc_record(
                    url, "response", payload=io.BytesIO(page.read_bytes()), http_headers=http
                )
            )
    return expected


@pytest.fixture(scope="module")
def warc_runs(prefect_harness, tmp_path_factory):
    from flows.ingest import ingest

    root = tmp_path_factory.mktemp("warc")
    expected = _write_warc(root / "pages.warc.gz")
    sources = root / "sources.yaml"
    sources.write_text(
        "settings: {split_files_over_bytes: 0, file_shard_bytes: 1500}\n"
        "sources:\n  - {name: archive, kind: warc, location: pages.warc.gz}\n",
        encoding="utf-8",
    )
    home = root / "home"
    # whether the pool was still up when the flow started importing GX (a module-scoped
    # fixture cannot use monkeypatch)
    from newsflow import pool
    from tasks import quality
    from warehouse.store import Warehouse

    gx_warm_ups: list[bool] = []
    warmed_stages: list[tuple[str, ...]] = []  # the suites each warm-up defined ahead
    # when each Data Docs render started, in which thread, and when each load ended
    events: list[tuple[str, str]] = []
    real_warm_up, real_docs, real_load = quality.warm_up, quality.build_data_docs, Warehouse.load

    def recording_warm_up(context_dir, stages=()):
        gx_warm_ups.append(pool._pool is not None)
        warmed_stages.append(tuple(stages))
        real_warm_up(context_dir, stages)

    docs_started = threading.Event()

    def recording_docs(context_dir, **kw):
        events.append(("docs", threading.current_thread().name.split("_")[0]))
        docs_started.set()
        return real_docs(context_dir, **kw)

    def recording_load(self, *args, **kw):
        # Docs that render beside the load have their thread started before it: give that
        # thread time to begin, since this tiny load can end before a busy machine schedules
        # it. Docs rendered only after the load never begin here, and the order shows it.
        docs_started.wait(timeout=10)
        try:
            return real_load(self, *args, **kw)
        finally:
            events.append(("load done", threading.current_thread().name))
            docs_started.clear()

    quality.warm_up, quality.build_data_docs = recording_warm_up, recording_docs
    Warehouse.load = recording_load
    try:
        first = ingest(sources_path=str(sources), home=str(home), workers=2)
        second = ingest(sources_path=str(sources), home=str(home), workers=2)
    finally:
        quality.warm_up, quality.build_data_docs = real_warm_up, real_docs
        Warehouse.load = real_load
    con = duckdb.connect(str(home / "newsflow.duckdb"), read_only=True)
    yield {
        "first": first,
        "second": second,
        "con": con,
        "expected": expected,
        "home": home,
        "gx_warm_ups": gx_warm_ups,
        "warmed_stages": warmed_stages,
        "events": events,
    }
    con.close()


def test_every_article_of_the_warc_is_published(warc_runs):
    first, con = warc_runs["first"], warc_runs["con"]
    assert first["status"] == "published", first.get("message")
    articles = dict(con.execute("SELECT url, title FROM articles").fetchall())
    want = {u: e["title"] for u, e in warc_runs["expected"].items() if e.get("body")}
    assert articles == want
    rejected = {
        r[0]
        for r in con.execute(
            "SELECT url FROM rejects WHERE run_id = ? AND stage = 'extract'", [first["run_id"]]
        ).fetchall()
    }
    assert rejected == {u for u, e in warc_runs["expected"].items() if not e.get("body")}


def test_reading_the_warc_is_pool_cpu_and_nothing_is_left_staged(warc_runs):
    con, first = warc_runs["con"], warc_runs["first"]
    sql = "SELECT stage_seconds FROM runs WHERE run_id = ?"
    stages = json.loads(con.execute(sql, [first["run_id"]]).fetchone()[0])
    assert stages["fetch (cpu)"] > 0  # reported from the workers that read the slices
    # the single writer's steps, within the load's own time
    steps = [stages[f"load {k}"] for k in ("stage", "merge", "related", "commit")]
    assert 0 < sum(steps) <= stages["load"]
    assert first["counts"]["fetch"]["in"] > 1  # byte-range slices of the one WARC
    assert not (warc_runs["home"] / "staging" / first["run_id"]).exists()


def test_unchanged_warc_is_not_read_again(warc_runs):
    con, second = warc_runs["con"], warc_runs["second"]
    assert second["status"] == "nothing_new", second.get("message")
    reasons = {
        r[0]
        for r in con.execute(
            "SELECT reason FROM fetches WHERE run_id = ? AND stage = 'fetch'", [second["run_id"]]
        ).fetchall()
    }
    assert reasons == {"unchanged"}


def test_a_failed_check_loads_nothing_but_its_results(prefect_harness, tmp_path, monkeypatch):
    """A critical failure in the clean checks (which run after dedup, beside GX's import)
    stops the run: no article, no dedup index row, only the check results are stored."""
    from flows.ingest import ingest
    from tasks import quality

    read_suite = quality._read_suite

    def failing_clean(stage: str) -> dict:
        suite = json.loads(json.dumps(read_suite(stage)))
        if stage == "clean":  # every article has a URL: "all URLs null" must fail
            suite["expectations"].append(
                {
                    "type": "expect_column_values_to_be_null",
                    "kwargs": {"column": "url"},
                    "severity": "critical",
                    "why": "test: a critical failure",
                }
            )
        return suite

    monkeypatch.setattr(quality, "_read_suite", failing_clean)
    _write_warc(tmp_path / "pages.warc.gz")
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "sources:\n  - {name: archive, kind: warc, location: pages.warc.gz}\n", encoding="utf-8"
    )
    home = tmp_path / "home"
    out = ingest(sources_path=str(sources), home=str(home), workers=0, use_pool=False)
    assert out["status"] == "failed"
    assert "expect_column_values_to_be_null(url)" in out["message"]
    assert out["counts"]["dedup"]["out"] > 0  # dedup ran, and its result was thrown away
    con = duckdb.connect(str(home / "newsflow.duckdb"), read_only=True)
    try:
        for table in ("articles", "dedup_docs", "dedup_bands", "article_entities"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table
        failed = con.execute(
            "SELECT stage, expectation FROM dq_results WHERE run_id = ? AND NOT success",
            [out["run_id"]],
        ).fetchall()
        assert ("clean", "expect_column_values_to_be_null(url)") in failed
        assert {r[0] for r in con.execute("SELECT DISTINCT stage FROM dq_results").fetchall()} >= {
            "fetch",
            "clean",
            "enrich",
        }
    finally:
        con.close()


def test_gx_is_imported_while_the_workers_process(warc_runs):
    """GX's imports (2-4 s of CPU) overlap the pool's work instead of running alone on one
    core after it; the run's checks still ran (and passed) with them. The second run has
    nothing to process, so it starts the import once its pool is gone. The warm-up also
    defines the suite of every stage the runs then checked, so the checks only validate."""
    assert warc_runs["gx_warm_ups"] == [True, False]
    assert warc_runs["first"]["status"] == "published"
    checked = warc_runs["con"].execute("SELECT DISTINCT stage FROM dq_results").fetchall()
    assert {"fetch", "clean", "enrich", "dedup", "publish"} <= {r[0] for r in checked}
    assert [set(s) for s in warc_runs["warmed_stages"]] == [{r[0] for r in checked}] * 2


RUNS = ("first", "second")


def test_data_docs_render_beside_the_load_and_show_the_run(warc_runs):
    """Once every check has passed, the docs render in their own thread while DuckDB loads
    and exports (not after, on one core); the site still lists both runs' checks."""
    assert warc_runs["events"] == [("docs", "data-docs"), ("load done", "MainThread")] * 2
    index = Path(warc_runs["second"]["data_docs"])
    assert index.is_file()
    site = index.parent / "validations"  # <stage>/<run id>/<time>/<page>.html
    pages = {run: list(site.glob(f"*/{warc_runs[run]['run_id']}/*/*.html")) for run in RUNS}
    assert {"fetch", "clean", "enrich", "dedup", "publish"} <= {p.parts[-4] for p in pages["first"]}
    assert pages["second"]


def test_the_last_shard_is_cut_into_smaller_units(prefect_harness, tmp_path, monkeypatch):
    """Processing ends when its last unit does: the last shard's units are half size, so a
    core is idle for less of the end; earlier shards keep the full size."""
    import flows.ingest as ingest_module

    asked: list[tuple[str, int]] = []
    real_fetch_units = ingest_module.fetch_units

    def recording_fetch_units(shard, *args):
        asked.append((shard.shard_id, args[-1]))
        return real_fetch_units(shard, *args)

    monkeypatch.setattr(ingest_module, "fetch_units", recording_fetch_units)
    _write_warc(tmp_path / "pages.warc.gz")
    sources = tmp_path / "sources.yaml"
    sources.write_text(
        "settings: {split_files_over_bytes: 0, file_shard_bytes: 1500}\n"
        "sources:\n  - {name: archive, kind: warc, location: pages.warc.gz}\n",
        encoding="utf-8",
    )
    out = ingest_module.ingest(
        sources_path=str(sources), home=str(tmp_path / "home"), workers=0, use_pool=False
    )
    assert out["status"] == "published", out.get("message")
    assert len(asked) > 2  # several shards, fetched in order
    rows = [n for _, n in asked]
    assert rows == [ingest_module.UNIT_ROWS] * (len(asked) - 1) + [ingest_module.UNIT_ROWS // 2]
