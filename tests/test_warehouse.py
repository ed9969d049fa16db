"""The warehouse: idempotent loads, all-or-nothing transactions, migrations, Parquet export."""

from __future__ import annotations

import datetime as dt

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.schema import rejects_table, stable_id
from warehouse.store import Warehouse
from warehouse.tables import ARTICLES


def _articles(run_id: str, bodies: dict[str, str]) -> pa.Table:
    rows = []
    for i, (url, body) in enumerate(sorted(bodies.items())):
        rows.append(
            {
                "article_id": stable_id(url),
                "url": url,
                "canonical_url": url,
                "outlet": "Kyiv Ledger",
                "title": f"Story {i}",
                "authors": ["Anna Koval"],
                "published": dt.date(2025, 1, 28 + i % 2),
                "language": "en",
                "body": body,
                "content_hash": stable_id(body),
                "cluster_id": stable_id(url),
                "dup_kind": "unique",
                "run_id": run_id,
            }
        )
    return pa.Table.from_pylist(rows, schema=ARTICLES)


def test_same_input_twice_adds_and_changes_nothing(tmp_path):
    wh = Warehouse(tmp_path)
    con = wh.connect()
    arts = {"http://a.test/1": "Body one.", "http://a.test/2": "Body two."}
    first = wh.load(con, {"articles": [_articles("r1", arts)]}, run_id="r1")
    assert first.changed_articles == 2
    # the load says where its time went (reported with the run's stage times)
    assert set(first.seconds) >= {"stage", "merge", "commit"}
    assert all(v >= 0 for v in first.seconds.values())
    second = wh.load(con, {"articles": [_articles("r2", arts)]}, run_id="r2")
    assert second.changed_articles == 0
    rows = con.execute("SELECT DISTINCT run_id FROM articles").fetchall()
    assert rows == [("r1",)]
    # a changed body replaces that article only, and the row says which run changed it
    arts["http://a.test/2"] = "Body two, corrected."
    third = wh.load(con, {"articles": [_articles("r3", arts)]}, run_id="r3")
    assert third.changed_articles == 1
    got = dict(con.execute("SELECT url, run_id FROM articles").fetchall())
    assert got == {"http://a.test/1": "r1", "http://a.test/2": "r3"}


def test_a_key_staged_twice_in_one_load_is_stored_once(tmp_path):
    """Two shards may carry one key (one article, one fetch log row): one row is kept, and a
    batch without repeats (the common case, loaded without the dedup copy) loses nothing."""
    wh = Warehouse(tmp_path)
    con = wh.connect()
    one = _articles("r1", {"http://a.test/1": "Body one.", "http://a.test/2": "Body two."})
    again = _articles("r1", {"http://a.test/2": "Body two."})
    log = rejects_table(
        [{"item_id": "i1", "url": "u", "stage": "clean", "reason": "x", "detail": "d"}], "r1"
    )
    stats = wh.load(con, {"articles": [one, again], "rejects": [log, log]}, run_id="r1")
    assert stats.changed_articles == 2
    assert stats.inserted["articles"] == 2 and stats.inserted["rejects"] == 1
    urls = [r[0] for r in con.execute("SELECT url FROM articles ORDER BY url").fetchall()]
    assert urls == ["http://a.test/1", "http://a.test/2"]
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 1
    fresh = _articles("r2", {"http://a.test/3": "Body three.", "http://a.test/4": "Body four."})
    assert wh.load(con, {"articles": [fresh]}, run_id="r2").inserted["articles"] == 2
    assert con.execute("SELECT count(*) FROM articles").fetchone()[0] == 4


def test_failed_load_leaves_previous_state(tmp_path):
    wh = Warehouse(tmp_path)
    con = wh.connect()
    wh.load(con, {"articles": [_articles("r1", {"http://a.test/1": "One."})]}, run_id="r1")
    bad = pa.table(
        {"stage": ["clean"], "reason": ["x"], "item_id": ["i"], "rejected_at": ["not a time"]}
    )
    with pytest.raises(duckdb.Error):
        wh.load(
            con,
            {
                "articles": [_articles("r2", {"http://a.test/9": "Nine."})],
                "rejects": [bad],
            },
            run_id="r2",
        )
    assert con.execute("SELECT count(*) FROM articles").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM rejects").fetchone()[0] == 0


def test_rejects_are_kept_once_with_first_run(tmp_path):
    wh = Warehouse(tmp_path)
    con = wh.connect()
    r = [{"item_id": "p1", "url": "http://a.test/x", "stage": "extract", "reason": "empty_page"}]
    wh.load(con, {"rejects": [rejects_table(r, "r1")]})
    wh.load(con, {"rejects": [rejects_table(r, "r2")]})
    assert con.execute("SELECT run_id FROM rejects").fetchall() == [("r1",)]


def test_migration_adds_new_columns(tmp_path):
    path = tmp_path / "newsflow.duckdb"
    raw = duckdb.connect(str(path))
    raw.execute("CREATE TABLE articles (article_id VARCHAR, url VARCHAR)")
    raw.close()
    con = Warehouse(tmp_path).connect()
    cols = {r[0] for r in con.execute("DESCRIBE articles").fetchall()}
    assert {"cluster_id", "body", "published"} <= cols
    assert con.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] > 0


def test_export_is_partitioned_and_readable(tmp_path):
    wh = Warehouse(tmp_path)
    con = wh.connect()
    arts = {"http://a.test/1": "One.", "http://a.test/2": "Two."}
    wh.load(con, {"articles": [_articles("r1", arts)]}, run_id="r1")
    wh.export_parquet(con, "r1")
    parts = sorted(p.name for p in (wh.parquet_dir / "articles").iterdir())
    assert parts == ["published_date=2025-01-28", "published_date=2025-01-29"]
    wh.export_parquet(con, "r2")  # a second export swaps the link and drops the old version
    t = pq.read_table(wh.parquet_dir / "articles")
    assert t.num_rows == 2
    assert len(list((wh.parquet_dir / ".versions").glob("articles-*"))) == 1
    con.close()
    assert wh.query("SELECT count(*) AS n FROM articles").to_pylist() == [{"n": 2}]
    with pytest.raises(duckdb.Error):
        wh.query("DELETE FROM articles")


def test_export_in_date_batches_keeps_one_file_per_date(tmp_path, monkeypatch):
    """Batches of whole dates (two articles a batch here) write the same partitions as one
    COPY: every date one folder with one file, undated articles under 'unknown', no row lost."""
    import warehouse.store as store

    monkeypatch.setattr(store, "EXPORT_BATCH_ROWS", 2)
    wh = Warehouse(tmp_path)
    con = wh.connect()
    arts = _articles("r1", {f"http://a.test/{i}": f"Body {i}." for i in range(7)})
    days = [dt.date(2025, 2, 1 + i % 3) for i in range(6)] + [None]  # 3 dates of 2, 1 undated
    arts = arts.set_column(
        arts.schema.get_field_index("published"), "published", pa.array(days, pa.date32())
    )
    wh.load(con, {"articles": [arts]}, run_id="r1")
    wh.export_parquet(con, "r1")
    root = wh.parquet_dir / "articles"
    parts = sorted(p.name for p in root.iterdir())
    assert parts == [
        "published_date=2025-02-01",
        "published_date=2025-02-02",
        "published_date=2025-02-03",
        "published_date=unknown",
    ]
    assert all(len(list((root / p).glob("*.parquet"))) == 1 for p in parts)
    t = pq.read_table(root)
    assert sorted(t.column("url").to_pylist()) == sorted(arts.column("url").to_pylist())
    con.close()


def test_to_rows_matches_to_pylist_with_time_zones():
    from datetime import UTC, datetime

    from tasks.schema import to_rows

    ts = pa.timestamp("us", tz="UTC")
    t = pa.table(
        {
            "u": ["a", None],
            "at": pa.array([datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC), None], ts),
            "n": [1, 2],
        }
    )
    assert to_rows(t) == t.to_pylist()


def test_a_staged_table_larger_than_a_row_group_arrives_whole(tmp_path):
    """DuckDB 1.5.5 drops the rows of a table created inside a transaction once more than one
    row group (122,880 rows) is appended to it; staging tables used to be created inside the
    load's transaction, and a 20k-page run published no dedup_bands or article_entities."""
    wh = Warehouse(tmp_path)
    con = wh.connect()
    articles = _articles("r1", {f"http://a.test/{k}": f"Body {k}." for k in range(7)})
    ids = articles.column("article_id").to_pylist()
    n = 70_000  # rows per file: two files exceed one row group together, not alone
    files = []
    for i in range(2):
        bands = pa.table(
            {
                "band_key": pa.array(range(i * n, (i + 1) * n), pa.int64()),
                "article_id": pa.array([ids[k % 7] for k in range(n)], pa.string()),
            },
            schema=wh.spec("dedup_bands").schema,
        )
        files.append(tmp_path / f"bands-{i}.parquet")
        pq.write_table(bands, files[-1])
    stats = wh.load(con, {"articles": [articles], "dedup_bands": files}, run_id="r1")
    assert stats.inserted["dedup_bands"] == 2 * n
    assert con.execute("SELECT count(*) FROM dedup_bands").fetchone()[0] == 2 * n


def _related_inputs(run_id: str) -> dict[str, list[pa.Table]]:
    """60 articles in 20 stories of 3 copies; each story names its own people and a shared
    topic name with its neighbours, so every article has candidates in other stories; one
    place is named everywhere (a feature in every article, which relates nothing)."""
    from tasks.enrich import ARTICLE_ENTITIES

    bodies = {f"http://r.test/{i}": f"Story {i // 3}, copy {i % 3}." for i in range(60)}
    arts = _articles(run_id, bodies)
    url_to_story = {u: int(u.rsplit("/", 1)[1]) // 3 for u in bodies}
    arts = arts.set_column(
        arts.schema.get_field_index("cluster_id"),
        "cluster_id",
        pa.array([f"c{url_to_story[u]}" for u in arts.column("url").to_pylist()]),
    )
    rows = []
    pairs = zip(arts.column("article_id").to_pylist(), arts.column("url").to_pylist(), strict=True)
    for aid, url in pairs:
        s = url_to_story[url]
        names = (f"person-{s}", f"topic-{s // 2}", f"topic-{(s + 1) // 2}", "place-x")
        for k, name in enumerate(
            names
        ):  # each mention at its own offsets: (id, start, end) is the key
            rows.append(
                {
                    "article_id": aid,
                    "entity_id": name,
                    "mention": name,
                    "start": 10 * k,
                    "end": 10 * k + 5,
                    "run_id": run_id,
                }
            )
    ents = pa.Table.from_pylist(rows, schema=ARTICLE_ENTITIES)
    return {"articles": [arts], "article_entities": [ents]}


def test_related_articles_same_in_slices_and_never_within_a_story(tmp_path, monkeypatch):
    import warehouse.store as store

    got = {}
    for chunk in (1000, 7):  # one slice, then nine
        monkeypatch.setattr(store, "RELATED_CHUNK", chunk)
        wh = Warehouse(tmp_path / str(chunk))
        con = wh.connect()
        stats = wh.load(con, _related_inputs("r1"), run_id="r1")
        assert stats.inserted["related_articles"] > 0
        got[chunk] = con.execute(
            "SELECT article_id, related_article_id, rank, score, shared "
            "FROM related_articles ORDER BY ALL"
        ).fetchall()
        same_story = con.execute(
            "SELECT count(*) FROM related_articles r "
            "JOIN articles a USING (article_id) "
            "JOIN articles b ON b.article_id = r.related_article_id "
            "WHERE a.cluster_id = b.cluster_id"
        ).fetchone()[0]
        assert same_story == 0
        con.close()
    assert got[1000] == got[7]
    assert {r[2] for r in got[7]} <= {1, 2, 3, 4, 5}


def test_related_articles_in_sql_match_the_python_scoring(tmp_path):
    """The load's SQL derivation (integer-keyed pair join, slices) ranks, scores and explains
    each pair exactly as the reference Python scoring on the same entities, where both keep
    the same features (here: a name in every article is dropped by both)."""
    from tasks.enrich import related_articles

    inputs = _related_inputs("r1")
    wh = Warehouse(tmp_path)
    con = wh.connect()
    wh.load(con, inputs, run_id="r1")
    got = con.execute(
        "SELECT article_id, related_article_id, rank, score, shared "
        "FROM related_articles ORDER BY ALL"
    ).fetchall()
    arts = inputs["articles"][0]
    clusters = arts.select(["article_id", "cluster_id"])
    want = related_articles(inputs["article_entities"][0], None, clusters, top_k=5)
    want_rows = sorted(
        (r["article_id"], r["related_article_id"], r["rank"], r["score"], r["shared"])
        for r in want.to_pylist()
    )
    assert len(got) == len(want_rows) > 100
    assert got == want_rows
