"""The data-quality gate, run through real Great Expectations (no mocks).

These pin what the flow relies on: clean output passes, boilerplate left in a body stops the
run with a sentence a person can act on, warnings never stop a run, a renamed column is
reported instead of crashing, and Data Docs show what was checked.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

import expectations
from tasks.quality import (
    DQ_RESULTS,
    TABLE_SPECS,
    QualityGateError,
    build_data_docs,
    load_suite,
    validate,
)
from tasks.schema import ARTICLES_CORE, conform

BODY = (
    "The city council approved the new budget on Tuesday after a long debate.\n\n"
    "Opponents said the plan cut too deeply into public transport, while supporters "
    "argued it kept the city solvent for the next three years."
)


def articles(n: int = 20, **changes: dict[int, object]) -> pa.Table:
    """A clean ARTICLES_CORE table; ``changes={"body": {3: "..."}}`` edits single cells."""
    rows = []
    for i in range(n):
        row = {
            "article_id": f"a{i:04d}",
            "page_id": f"p{i:04d}",
            "url": f"https://news.example/{i}",
            "title": f"Council approves budget ({i})",
            "language": "en",
            "published": date(2024, 5, 1),
            "body": BODY,
            "content_hash": f"h{i:04d}",
            "fetched_at": datetime(2024, 5, 2, tzinfo=UTC),
            "run_id": "run-test",
        }
        for column, cells in changes.items():
            if i in cells:
                row[column] = cells[i]
        rows.append(row)
    return conform(pa.Table.from_pylist(rows), ARTICLES_CORE)


def rows_by_expectation(report) -> dict[str, dict]:
    return {r["expectation"]: r for r in report.results.to_pylist()}


def test_clean_articles_pass_every_check():
    report = validate("clean", articles(), run_id="r1")
    assert report.ok, report.critical_failures
    assert report.warnings == []
    assert report.results.schema == DQ_RESULTS
    assert report.results.num_rows == len(load_suite("clean")["expectations"])
    assert all(report.results.column("success").to_pylist())


def test_read_also_left_in_body_fails_critically_with_a_clear_sentence():
    dirty = BODY + "\n\nRead also: Mayor resigns after budget vote"
    report = validate("clean", articles(41, body={3: dirty}), run_id="r1")
    assert not report.ok
    assert len(report.critical_failures) == 1
    sentence = report.critical_failures[0]
    assert sentence.startswith(
        "clean: expect_column_values_to_not_match_regex(body, 'Read also:') failed: 1 of 41 rows"
    )
    assert "Read also: Mayor resigns" in sentence  # the excerpt shows the offending line
    with pytest.raises(QualityGateError, match="Read also:"):
        report.raise_for_critical()


def test_junk_is_expected_before_clean_but_not_after():
    dirty = BODY + "\n\nDOWNLOAD THE APP"
    assert validate("extract", articles(body={0: dirty}), run_id="r1").ok
    assert not validate("clean", articles(body={0: dirty}), run_id="r1").ok


def test_warning_failure_is_recorded_but_does_not_stop_the_run():
    # 5 of 20 bodies under 200 characters: more than the 10% the suite tolerates.
    short = {i: "Too short to be an article." for i in range(5)}
    report = validate("clean", articles(body=short), run_id="r1")
    assert report.ok
    assert len(report.warnings) == 1
    assert "expect_column_value_lengths_to_be_between(body, min_value=200)" in report.warnings[0]
    assert "5 of 20 rows" in report.warnings[0]
    row = rows_by_expectation(report)[
        "expect_column_value_lengths_to_be_between(body, min_value=200)"
    ]
    assert row["severity"] == "warning" and row["success"] is False
    assert json.loads(row["observed"])["unexpected_count"] == 5


def test_missing_column_is_a_column_missing_warning_not_a_crash():
    report = validate("clean", articles().drop(["content_hash"]), run_id="r1")
    assert report.ok  # the not-null check on content_hash is critical, but it could not run
    row = rows_by_expectation(report)["expect_column_values_to_not_be_null(content_hash)"]
    assert row["severity"] == "warning" and row["success"] is False
    assert json.loads(row["observed"])["reason"] == "column_missing"
    assert any("content_hash" in w and "missing" in w for w in report.warnings)


def test_missing_second_table_is_reported_per_expectation():
    entities = pa.table(
        {
            "article_id": ["a1", "a1"],
            "entity_id": ["e1", "e2"],
            "mention": ["Kyiv", "NATO"],
            "label": ["LOC", "ORG"],
            "start": [0, 10],
            "end": [4, 14],
        }
    )
    report = validate("enrich", entities, run_id="r1")
    assert report.ok
    stats_rows = [r for r in report.results.to_pylist() if r["suite"] == "enrich.article_stats"]
    assert stats_rows and all(
        json.loads(r["observed"])["reason"] == "table_missing" for r in stats_rows
    )

    bad = entities.set_column(5, "end", pa.array([4, 10]))  # second span ends where it starts
    stats = pa.table({"article_id": ["a1"], "word_count": [-1]})
    report = validate("enrich", bad, run_id="r1", tables={"article_stats": stats})
    assert any("greater_than_b(end, start)" in f for f in report.critical_failures)
    assert any("word_count" in f for f in report.critical_failures)


def test_dates_are_checked_against_the_day_of_the_check_and_extremes_do_not_crash():
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    ok = validate("clean", articles(published={0: tomorrow}), run_id="r1")
    assert ok.warnings == []
    odd = {0: date(1985, 1, 1), 1: date(3000, 1, 1)}  # 3000 is outside pandas' ns range
    report = validate("clean", articles(published=odd), run_id="r1")
    assert any("published" in w and "2 of 20 rows" in w for w in report.warnings)


def test_a_check_that_cannot_run_is_reported_not_passed():
    # Dates as text (a stage that forgot to parse them) cannot be compared with the bounds.
    table = articles()
    table = table.set_column(
        table.column_names.index("published"), "published", pa.array(["2024-05-01"] * 20)
    )
    report = validate("clean", table, run_id="r1")
    (sentence,) = [w for w in report.warnings if "published" in w]
    assert "could not run" in sentence


def test_pandas_input_and_empty_publish():
    assert validate("clean", articles().to_pandas(), run_id="r1").ok
    empty = validate("publish", articles(0), run_id="r1")
    assert any("row_count" in f for f in empty.critical_failures)


def test_result_keys_are_unique_as_the_log_table_requires():
    (spec,) = TABLE_SPECS
    assert spec.name == "dq_results" and spec.mode == "log"
    assert set(spec.key) <= set(DQ_RESULTS.names) and set(spec.columns) == set(DQ_RESULTS.names)
    report = validate("clean", articles(), run_id="r1")
    keys = {tuple(r[k] for k in spec.key) for r in report.results.to_pylist()}
    assert len(keys) == report.results.num_rows


def test_data_docs_show_the_suite(tmp_path: Path):
    context_dir = tmp_path / "gx"
    validate("clean", articles(), run_id="run-docs", context_dir=context_dir)
    validate("clean", articles(), run_id="run-docs-2", context_dir=context_dir)
    index = build_data_docs(context_dir)
    assert index.name == "index.html" and index.is_file()
    assert index.is_relative_to(context_dir)
    html = index.read_text(encoding="utf-8")
    assert "expectations/clean.html" in html
    assert "run-docs-2" in html  # validations accumulate across runs

    # Later builds render only the new run's pages, but the index still lists everything.
    validate("clean", articles(), run_id="run-docs-3", context_dir=context_dir)
    assert build_data_docs(context_dir) == index
    html = index.read_text(encoding="utf-8")
    assert "run-docs-2" in html and "run-docs-3" in html
    assert list((index.parent / "validations" / "clean" / "run-docs-3").glob("*/*.html"))


def test_every_suite_loads_and_names_real_expectations():
    import great_expectations as gx

    assert set(expectations.available()) == set(expectations.STAGES)
    for stage in expectations.available():
        suite = load_suite(stage)
        assert suite["name"] == stage
        for exp in suite["expectations"]:
            class_name = "".join(p.capitalize() for p in exp["type"].split("_"))
            cls = getattr(gx.expectations, class_name)
            cls(**exp["kwargs"], severity=exp["severity"])  # raises on a bad kwarg
            assert exp["why"].strip()


def test_unknown_stage_names_the_known_suites():
    with pytest.raises(ValueError, match="known suites are .*clean"):
        load_suite("cleaning")


def test_fetch_suite_reason_vocabulary_is_the_fetchers():
    """The fetch suite's closed set of reasons must be exactly what the fetcher can emit."""
    import json
    from pathlib import Path

    from tasks.fetch import FETCH_REASONS

    suite = json.loads(
        (Path(__file__).parents[1] / "expectations" / "fetch.json").read_text(encoding="utf-8")
    )
    sets = [
        x["kwargs"]["value_set"]
        for x in suite["expectations"]
        if x["type"] == "expect_column_values_to_be_in_set" and x["kwargs"]["column"] == "reason"
    ]
    assert sets and set(sets[0]) == set(FETCH_REASONS)


def test_a_check_view_gives_the_same_results_as_the_whole_table():
    """The flow validates a narrow view built unit by unit (bodies reduced to their nulls for
    suites that only null-check them); every result row must equal the full table's."""
    from tasks.quality import check_view, needed_columns
    from warehouse.tables import ARTICLES

    t = articles(30, body={2: None, 5: None}, title={7: None})
    t = conform(
        t.append_column("cluster_id", pa.array([f"c{i % 4}" for i in range(30)]))
        .append_column("dup_kind", pa.array(["unique", "near", "bogus"] * 10))
        .append_column("word_count", pa.array([120] * 29 + [-1], pa.int32()))
        .append_column("enrichment_status", pa.array(["enriched"] * 30)),
        ARTICLES,
    )
    halves = [t.slice(0, 13), t.slice(13)]
    view = pa.concat_tables([check_view(("dedup", "publish"), h) for h in halves])
    assert "description" not in view.column_names  # what no check reads is left out
    assert set(view.column("body").drop_null().to_pylist()) == {""}
    for stage in ("dedup", "publish"):
        full = validate(stage, t, "r").results.drop_columns(["checked_at"])
        narrow = validate(stage, view, "r").results.drop_columns(["checked_at"])
        assert narrow.to_pylist() == full.to_pylist()
    assert "body" in needed_columns("clean")


def test_a_checked_table_is_not_kept_by_gx(tmp_path):
    """GX caches each suite's last batch in its execution engine; validate drops it, so a
    stage's checked table (the run's entity rows, say) is freed once the caller lets go."""
    import gc

    from newsflow.memory import use_system_arrow_pool
    from tasks.quality import validate

    use_system_arrow_pool()
    n = 200_000
    table = pa.table(
        {
            "article_id": pa.array([f"a{i}" for i in range(n)]),
            "entity_id": pa.array([f"e{i % 97}" for i in range(n)]),
            "start": pa.array(range(n), pa.int32()),
            "end": pa.array(range(1, n + 1), pa.int32()),
        }
    )
    gc.collect()
    base = pa.total_allocated_bytes() - table.nbytes
    validate("enrich", table, "r1", context_dir=tmp_path / "gx")
    del table
    gc.collect()
    assert pa.total_allocated_bytes() - base < 2**20


def test_a_table_read_unit_by_unit_is_checked_as_one_chunk_with_the_same_results():
    """The flow reads a stage's output as one chunk per unit file; GX filters the frame once
    per metric, and Arrow-backed strings gather across chunks at every filter, so the frame
    GX gets holds each column in one chunk, and the results are those of the table."""
    from tasks.quality import _to_pandas

    t = articles(40, body={3: "Read also: the mayor's plan"}, title={9: None})
    units = pa.concat_tables([t.slice(i, 7) for i in range(0, 40, 7)])
    assert units.column("body").num_chunks == 6
    frame = _to_pandas(units)
    body = frame["body"].array
    assert getattr(body, "_pa_array", None) is None or body._pa_array.num_chunks == 1
    assert frame["body"].tolist() == t.column("body").to_pylist()
    whole = validate("clean", t, "r").results.drop_columns(["checked_at"])
    by_unit = validate("clean", units, "r").results.drop_columns(["checked_at"])
    assert by_unit.to_pylist() == whole.to_pylist()
    assert not all(whole.column("success").to_pylist())  # the junk line was found in both


def test_warm_up_stores_the_suites_a_full_check_then_uses(tmp_path):
    """The flow's warm-up thread defines the checks' suites while the workers process, so a
    check at the end of the run only validates. A table missing a column still gets the
    smaller suite it needs (the missing expectation is reported, not run)."""
    from tasks import quality

    gx_dir = tmp_path / "gx"
    quality.warm_up(gx_dir, ["clean", "enrich"])
    key = str(gx_dir.resolve())
    stored = {name: quality._DEFINITIONS[(key, name)][1] for name in ("clean", "enrich")}
    assert "enrich.article_stats" in {n for k, n in quality._DEFINITIONS if k == key}
    assert {p.stem for p in (gx_dir / "expectations").glob("*.json")} >= {"clean", "enrich"}

    report = validate("clean", articles(), run_id="r1", context_dir=gx_dir)
    assert report.ok and report.results.num_rows == len(load_suite("clean")["expectations"])
    assert quality._DEFINITIONS[(key, "clean")][1] is stored["clean"]

    narrow = validate("clean", articles().drop(["content_hash"]), run_id="r2", context_dir=gx_dir)
    assert narrow.ok
    assert quality._DEFINITIONS[(key, "clean")][1] is not stored["clean"]
