"""The whole flow on the bundled demo site: what a user checks in the published tables.

One real Prefect run (ephemeral server via the session harness) against the demo site on
127.0.0.1, into a real DuckDB file; then a second run over the same, unchanged site.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from newsflow.cli import app
from newsflow.demo.server import EXPECTED_PATH, DemoSite
from newsflow.runner import demo_sources

EXPECTED = json.loads(Path(EXPECTED_PATH).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def demo_runs(prefect_harness, tmp_path_factory):
    from flows.ingest import ingest

    home = tmp_path_factory.mktemp("home")
    with DemoSite(port=0) as site:
        sources = demo_sources(site.base_url, home)
        first = ingest(sources_path=str(sources), home=str(home), workers=2)
        requests_first = list(site.requests)
        second = ingest(sources_path=str(sources), home=str(home), workers=2)
        requests_second = list(site.requests[len(requests_first) :])
    con = duckdb.connect(str(home / "newsflow.duckdb"), read_only=True)
    yield {
        "home": home,
        "base": site.base_url,
        "first": first,
        "second": second,
        "requests_first": requests_first,
        "requests_second": requests_second,
        "con": con,
    }
    con.close()


def _by_path(con, base: str) -> dict[str, dict]:
    rows = con.execute("SELECT * FROM articles").to_arrow_table().to_pylist()
    return {r["url"].removeprefix(base): r for r in rows}


def test_first_run_publishes(demo_runs):
    assert demo_runs["first"]["status"] == "published", demo_runs["first"].get("message")
    n = demo_runs["con"].execute("SELECT count(*) FROM articles").fetchone()[0]
    assert n >= 30


def test_syndicated_copies_share_one_cluster(demo_runs):
    arts = _by_path(demo_runs["con"], demo_runs["base"])
    for story, paths in EXPECTED["multi_copy_stories"].items():
        clusters = {arts[p]["cluster_id"] for p in paths if p in arts}
        assert len([p for p in paths if p in arts]) == len(paths), f"{story}: copies missing"
        assert len(clusters) == 1, f"{story} split into {clusters}"


def test_same_topic_different_stories_stay_apart(demo_runs):
    arts = _by_path(demo_runs["con"], demo_runs["base"])
    for a, b in EXPECTED["same_topic_different_stories"]:
        assert arts[a]["cluster_id"] != arts[b]["cluster_id"], (a, b)
    for f in EXPECTED["follow_up"]:
        assert arts[f["path"]]["cluster_id"] != arts[f["background_from"]]["cluster_id"]


def test_wire_original_is_attributed(demo_runs):
    con, base = demo_runs["con"], demo_runs["base"]
    arts = _by_path(con, base)
    for paths in EXPECTED["multi_copy_stories"].values():
        original = [p for p in paths if EXPECTED["articles"][p]["wire_original"]]
        if not original:
            continue
        cid = arts[original[0]]["cluster_id"]
        outlet = con.execute(
            "SELECT original_outlet FROM clusters WHERE cluster_id = ?", [cid]
        ).fetchone()[0]
        assert outlet == EXPECTED["articles"][original[0]]["outlet"]


def test_junk_lines_are_gone(demo_runs):
    bodies = [r[0] for r in demo_runs["con"].execute("SELECT body FROM articles").fetchall()]
    left = [j for j in EXPECTED["junk_lines"] if any(j in b for b in bodies)]
    assert left == []


def test_disallowed_page_never_fetched(demo_runs):
    fetched = {p for _, p in demo_runs["requests_first"] + demo_runs["requests_second"]}
    for path in EXPECTED["disallowed_paths"]:
        assert path not in fetched
    reasons = (
        demo_runs["con"]
        .execute(
            "SELECT reason FROM rejects WHERE url LIKE ?", ["%" + EXPECTED["disallowed_paths"][0]]
        )
        .fetchall()
    )
    assert reasons and "robots" in reasons[0][0]


def test_broken_and_non_article_pages_are_rejected_with_reason(demo_runs):
    con, base = demo_runs["con"], demo_runs["base"]
    for path in EXPECTED["broken_paths"] + EXPECTED["not_article_paths"]:
        rows = con.execute(
            "SELECT stage, reason FROM rejects WHERE url = ?", [base + path]
        ).fetchall()
        assert rows, f"{path} not in rejects"
        assert all(reason for _, reason in rows)
    assert not set(_by_path(con, base)) & set(
        EXPECTED["broken_paths"] + EXPECTED["not_article_paths"]
    )


def test_entities_group_name_variants(demo_runs):
    con = demo_runs["con"]
    for canonical, variants in EXPECTED["persons_expected"].items():
        ids = {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT entity_id FROM article_entities "
                f"WHERE label = 'PER' AND mention IN ({','.join('?' * len(variants))})",
                variants,
            ).fetchall()
        }
        assert len(ids) == 1, f"{canonical}: {len(ids)} entities"
        name = con.execute(
            "SELECT canonical_name FROM entities WHERE entity_id = ?", [ids.pop()]
        ).fetchone()[0]
        assert name == canonical


def test_entity_offsets_point_at_mentions(demo_runs):
    rows = (
        demo_runs["con"]
        .execute(
            'SELECT a.body, e.mention, e.start, e."end" FROM article_entities e '
            "JOIN articles a USING (article_id) LIMIT 500"
        )
        .fetchall()
    )
    assert rows
    for body, mention, start, end in rows:
        assert body[start:end] == mention


def test_second_run_adds_nothing(demo_runs):
    con = demo_runs["con"]
    second = demo_runs["second"]
    assert second["status"] == "nothing_new", second.get("message")
    run2 = second["run_id"]
    for table in ("articles", "clusters", "article_entities", "entities", "rejects"):
        n = con.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", [run2]).fetchone()[0]
        assert n == 0, f"{table} changed on an unchanged re-run"
    # the re-run made no full download: pages the sitemap dates before our copy were not
    # requested at all, the one page only the news sitemap and feed list (no <lastmod>) was
    # asked conditionally and answered 304
    reasons = dict(
        con.execute(
            "SELECT reason, count(*) FROM fetches WHERE run_id = ? AND stage = 'fetch' GROUP BY 1",
            [run2],
        ).fetchall()
    )
    assert set(reasons) == {"lastmod_unchanged", "not_modified"}, reasons


def test_every_run_and_check_is_recorded(demo_runs):
    con = demo_runs["con"]
    runs = dict(con.execute("SELECT run_id, status FROM runs").fetchall())
    assert runs[demo_runs["first"]["run_id"]] == "published"
    stages = {r[0] for r in con.execute("SELECT DISTINCT stage FROM dq_results").fetchall()}
    assert {"fetch", "clean", "dedup", "enrich", "publish"} <= stages
    assert Path(demo_runs["first"]["data_docs"]).exists()


def test_parquet_export_partitioned_by_date(demo_runs):
    parts = {p.name for p in (demo_runs["home"] / "parquet" / "articles").iterdir()}
    assert {f"published_date={d}" for d in EXPECTED["dates"]} <= parts


def test_cli_sql_and_report_read_the_warehouse(demo_runs):
    runner = CliRunner()
    home = str(demo_runs["home"])
    res = runner.invoke(
        app, ["sql", "SELECT count(*) AS n FROM articles", "--home", home, "--format", "json"]
    )
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["n"] >= 30
    res = runner.invoke(app, ["sql", "DROP TABLE articles", "--home", home])
    assert res.exit_code != 0
    res = runner.invoke(app, ["report", "--home", home])
    assert res.exit_code == 0, res.output
    assert "Data Docs:" in res.stdout and "passed" in res.stdout
