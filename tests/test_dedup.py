"""Behaviour of the dedup stage that the pipeline and its users rely on (fast, no shared data)."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pytest

from tasks.dedup import (
    TABLE_SPECS,
    DedupResult,
    MemoryHistory,
    compare,
    dedup_batch,
    fingerprint,
)
from tasks.schema import ARTICLES_CORE, stable_id
from warehouse.dedup_index import DuckDBHistory, apply_result, ensure_tables

# One topic, one small vocabulary: different stories share most of their words but not their
# word sequences, like real coverage of the same war / election / match.
TOPIC = (
    "president minister government officials said ukraine russia kyiv moscow talks peace war "
    "troops border missile strike attack drone city region forces army military defense "
    "sanctions tuesday wednesday week month year people country talks security council vote "
    "leaders meeting statement according report spokesperson agency news conference energy "
    "prices gas oil exports ports grain deal agreement ceasefire front line villages shelling "
    "civilians killed injured rescue workers hospital school power plant water supplies winter"
).split()


def story(seed: int, n_paras: int = 6, words: int = 45) -> list[str]:
    rng = random.Random(seed)
    paras = []
    for _ in range(n_paras):
        sents = []
        for _ in range(3):
            w = [rng.choice(TOPIC) for _ in range(words // 3)]
            sents.append(" ".join(w).capitalize() + ".")
        paras.append(" ".join(sents))
    return paras


def article(aid: str, outlet: str, paras: list[str], day: int, **extra: object) -> dict:
    row = {
        "article_id": aid,
        "url": f"https://{outlet}/news/{aid}",
        "canonical_url": f"https://{outlet}/news/{aid}",
        "outlet": outlet,
        "title": extra.pop("title", f"Headline of {aid}"),
        "published": date(2025, 1, day),
        "body": "\n\n".join(paras),
        "content_hash": stable_id(*paras),
        "fetched_at": datetime(2025, 1, day, 12, tzinfo=UTC),
    }
    row.update(extra)
    return row


def table(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(
        [{f: r.get(f) for f in ARTICLES_CORE.names} for r in rows], schema=ARTICLES_CORE
    )


def clusters_of(res: DedupResult) -> dict[str, str]:
    return dict(
        zip(
            res.assignments.column("article_id").to_pylist(),
            res.assignments.column("cluster_id").to_pylist(),
            strict=True,
        )
    )


A = story(1)
B = story(2)
C = story(3)
CHROME_HEAD = ["Advertisement", "Skip to content", "January 7, 2025"]
CHROME_FOOT = [
    "Sign up for our daily newsletter to get the latest headlines delivered to your inbox.",
    "Subscribe now for unlimited access. Already a subscriber? Log in.",
    "Have a news tip? Email us at tips@herald.example",
]


def test_syndicated_copies_share_a_cluster_despite_chrome_headline_and_teaser_edits() -> None:
    copy_chrome = CHROME_HEAD + A + ["Read also: Markets rally as talks resume"] + CHROME_FOOT
    flattened = [" ".join(A).replace("'", "\u2019").replace(" said ", " sadi ", 1)]
    teaser = A[:1] + ["Read the full story at NBCNews.com"]
    rows = [
        article("orig", "nbcnews.example", A, 6),
        article("copy1", "herald.example", copy_chrome, 7, title="BREAKING: Headline of orig"),
        article("copy2", "yahoo.example", flattened, 7),
        article("teaser", "digest.example", teaser, 8),
        article("other", "nbcnews.example", B, 6),
    ]
    res = dedup_batch(table(rows), MemoryHistory(), "r1")
    cl = clusters_of(res)
    assert cl["copy1"] == cl["copy2"] == cl["teaser"] == cl["orig"] == "orig"
    assert cl["other"] == "other"
    kinds = dict(
        zip(
            res.assignments.column("article_id").to_pylist(),
            res.assignments.column("dup_kind").to_pylist(),
            strict=True,
        )
    )
    assert kinds["orig"] == "unique" and kinds["teaser"] == "teaser"
    assert kinds["copy1"] in ("near", "exact") and kinds["copy2"] == "near"
    assert res.rejects.num_rows == 0  # near-duplicates are kept, they only share the cluster


def test_hard_negatives_stay_apart() -> None:
    # a follow-up re-using A's last paragraph as background, in its middle
    followup = story(7, 2) + A[-1:] + story(8, 4)
    brief_a = CHROME_HEAD + A[:1] + CHROME_FOOT
    brief_b = CHROME_HEAD + B[:1] + CHROME_FOOT
    rows = [
        article("a", "wire.example", A, 6),
        article("b", "wire.example", B, 6),
        article("followup", "wire.example", followup, 9),
        article("brief_a", "herald.example", brief_a, 10, title="What we know so far"),
        article("brief_b", "herald.example", brief_b, 10, title="What we know so far"),
        article("c_generic", "herald.example", C, 5, title="What we know so far"),
        article("chrome_only", "herald.example", CHROME_HEAD + CHROME_FOOT, 10),
        article("chrome_only2", "herald.example", CHROME_HEAD + CHROME_FOOT, 11),
    ]
    cl = clusters_of(dedup_batch(table(rows), MemoryHistory(), "r1"))
    assert cl["followup"] == "followup"
    assert cl["brief_a"] == "a" and cl["brief_b"] == "b"  # briefs join their own stories only
    assert cl["c_generic"] == "c_generic"
    assert len({cl["a"], cl["b"], cl["c_generic"], cl["followup"]}) == 4
    assert cl["chrome_only"] != cl["chrome_only2"]  # site chrome says nothing about a story


def test_background_reuse_is_not_containment() -> None:
    small = A[-2:]  # shares its text with A's tail, not A's lead
    kind, _ = compare(
        fingerprint("\n\n".join(small)).shingles,
        fingerprint("\n\n".join(C[:2] + small + C[2:])).shingles,
    )
    assert kind is None


def test_original_attributed_from_credit_hints_and_dates() -> None:
    rows = [
        article("orig", "nbcnews.example", A, 7),
        article("yahoo", "news.yahoo.example", A, 6, origin_credit="NBCNews.com"),
        article("b1", "apnews.example", B, 8),
        article(
            "b2",
            "partner.example",
            B,
            8,
            syndication_hints=json.dumps({"isBasedOn": "https://apnews.example/news/b1"}),
        ),
        article("c1", "one.example", C, 9),
        article("c2", "two.example", C, 8),
        article("d1", "three.example", story(5), 9, origin_credit="AP"),
        article("e1", "four.example", story(6), 9),
        article("e2", "five.example", story(6), 8, canonical_url="https://four.example/news/e1"),
    ]
    res = dedup_batch(table(rows), MemoryHistory(), "r1")
    cl = {r["cluster_id"]: r for r in res.clusters.to_pylist()}
    orig_cluster = clusters_of(res)["orig"]
    assert cl[orig_cluster]["original_article_id"] == "orig"  # credit beats the earlier date
    assert cl[orig_cluster]["attribution_signal"] == "origin_credit"
    assert cl[clusters_of(res)["b1"]]["original_article_id"] == "b1"
    assert cl[clusters_of(res)["b1"]]["attribution_signal"] == "is_based_on"
    assert cl[clusters_of(res)["c1"]]["original_article_id"] == "c2"
    assert cl[clusters_of(res)["c1"]]["attribution_signal"] == "earliest"
    assert cl[clusters_of(res)["e1"]]["original_article_id"] == "e1"  # cross-domain canonical
    assert cl[clusters_of(res)["e1"]]["attribution_signal"] == "canonical"
    d = cl[clusters_of(res)["d1"]]
    assert d["original_outlet"] == "AP" and d["original_article_id"] is None
    edges = {e["republisher_article_id"]: e for e in res.syndication.to_pylist()}
    assert edges["yahoo"]["original_article_id"] == "orig" and not edges["yahoo"]["is_original"]
    assert edges["orig"]["is_original"]
    assert json.loads(cl[orig_cluster]["outlet_counts"]) == {
        "news.yahoo.example": 1,
        "nbcnews.example": 1,
    }


def _corpus() -> list[dict]:
    rows = []
    for s in range(12):
        paras = story(100 + s, 4 + s % 4)
        rows.append(article(f"s{s}", "origin.example", paras, 1 + s % 5))
        for c in range(s % 4):
            body = paras[: 1 + c] + ["Read more"] if c == 2 else CHROME_HEAD + paras + CHROME_FOOT
            rows.append(article(f"s{s}c{c}", f"copy{c}.example", body, 2 + s % 5 + c))
    rows.append(
        article("f", "origin.example", story(300, 3) + story(100, 4)[-1:] + story(301, 3), 4)
    )
    return rows


def _state(results: list[DedupResult]) -> tuple[dict, dict, dict]:
    assign, clusters, synd = {}, {}, {}
    for r in results:
        assign.update({a["article_id"]: a for a in r.assignments.to_pylist()})
        for c in r.clusters.to_pylist():
            c.pop("run_id")
            clusters[c["cluster_id"]] = c
        for s in r.syndication.to_pylist():
            s.pop("run_id")
            synd[s["republisher_article_id"]] = s
    return assign, clusters, synd


def _by_day(rows: list[dict]) -> list[list[dict]]:
    days = sorted({r["published"] for r in rows})
    return [[r for r in rows if r["published"] == d] for d in days]


def test_incremental_day_by_day_equals_batch_in_memory_and_duckdb(tmp_path) -> None:
    rows = _corpus()
    batch = _state([dedup_batch(table(rows), MemoryHistory(), "all")])

    hist = MemoryHistory()
    mem = []
    for i, day in enumerate(_by_day(rows)):
        r = dedup_batch(table(day), hist, f"d{i}")
        hist.add(r.index_rows)
        mem.append(r)
    assert _state(mem) == batch

    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_tables(con)
    duck = []
    for i, day in enumerate(_by_day(rows)):
        r = dedup_batch(table(day), DuckDBHistory(con), f"d{i}")
        apply_result(con, r)
        duck.append(r)
    assert _state(duck) == batch
    # re-running an already loaded day changes nothing
    again = dedup_batch(table(_by_day(rows)[-1]), DuckDBHistory(con), "again")
    assert again.index_rows["dedup_docs"].num_rows == 0 and again.clusters.num_rows == 0
    assert {a["article_id"]: a["cluster_id"] for a in again.assignments.to_pylist()} == {
        k: v["cluster_id"]
        for k, v in batch[0].items()
        if k in set(again.assignments.column("article_id").to_pylist())
    }
    con.close()


def test_cluster_id_is_stable_when_a_later_copy_arrives() -> None:
    hist = MemoryHistory()
    first = dedup_batch(table([article("orig", "a.example", A, 6)]), hist, "r1")
    hist.add(first.index_rows)
    assert clusters_of(first) == {"orig": "orig"}
    later = dedup_batch(table([article("late", "b.example", CHROME_HEAD + A, 9)]), hist, "r2")
    assert clusters_of(later) == {"late": "orig"}
    # the touched cluster is re-attributed from the index (bodies are not re-read)
    (row,) = later.clusters.to_pylist()
    assert row["size"] == 2 and row["original_article_id"] == "orig"


def test_exact_duplicates_and_repeated_ids() -> None:
    rows = [
        article("x", "a.example", A, 6),
        article("y", "b.example", A, 6),
        article("x", "a.example", A, 6),
    ]
    res = dedup_batch(table(rows), MemoryHistory(), "r1")
    assert clusters_of(res) == {"x": "x", "y": "x"}
    assert res.assignments.to_pylist()[1]["dup_kind"] == "exact"
    assert res.rejects.column("reason").to_pylist() == ["duplicate_article_id"]
    assert set(res.rejects.column("stage").to_pylist()) == {"dedup"}


@pytest.mark.parametrize("spec", TABLE_SPECS, ids=lambda s: s.name)
def test_table_specs_document_every_column(spec) -> None:
    assert set(spec.columns) == set(spec.schema.names)
    assert set(spec.key) <= set(spec.schema.names)
