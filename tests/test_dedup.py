"""Behaviour of the dedup stage that the pipeline and its users rely on (fast, no shared data)."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime

import duckdb
import pyarrow as pa
import pytest

from tasks.dedup import (
    FINGERPRINTS,
    TABLE_SPECS,
    DedupConfig,
    DedupResult,
    MemoryHistory,
    compare,
    dedup_batch,
    fingerprint,
    fingerprint_table,
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


def test_history_asked_in_small_chunks_gives_the_same_clusters(monkeypatch, tmp_path) -> None:
    import tasks.dedup as dedup_mod

    rows = _corpus()
    batch = _state([dedup_batch(table(rows), MemoryHistory(), "all")])
    monkeypatch.setattr(dedup_mod, "HISTORY_CHUNK", 2)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_tables(con)
    duck = []
    for i, day in enumerate(_by_day(rows)):
        r = dedup_batch(table(day), DuckDBHistory(con), f"d{i}")
        apply_result(con, r)
        duck.append(r)
    con.close()
    assert _state(duck) == batch


def test_history_candidates_are_limited_to_the_best_alike_in_memory_and_duckdb(tmp_path):
    """Both histories keep each new doc's best pairs (most shared keys, then earliest), never
    the doc itself, so the rows dedup reads stay bounded as history grows."""
    rows = _corpus()
    res = dedup_batch(table(rows), MemoryHistory(), "all")
    mem = MemoryHistory()
    mem.add(res.index_rows)
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_tables(con)
    apply_result(con, res)
    keys = pa.Table.from_pylist(res.index_rows["dedup_bands"].to_pylist()[:4000])
    keys = keys.select(["article_id", "band_key"])

    def pairs(hist, limit):
        t = hist.candidates(keys, limit=limit)
        return sorted(
            zip(
                t.column("article_id").to_pylist(),
                t.column("cand_id").to_pylist(),
                t.column("shared").to_pylist(),
                strict=True,
            )
        )

    full = pairs(mem, None)
    assert full == pairs(DuckDBHistory(con), None)
    assert all(a != c for a, c, _ in full)
    top = pairs(mem, 1)
    assert top == pairs(DuckDBHistory(con), 1)
    for aid in {a for a, _, _ in full}:
        best = max(n for a, _, n in full if a == aid)
        (kept,) = [(c, n) for a, c, n in top if a == aid]
        assert kept[1] == best
    assert len(top) < len(full)
    con.close()


def _tables(res: DedupResult) -> dict[str, list[dict]]:
    out = {
        "assignments": res.assignments.to_pylist(),
        "clusters": res.clusters.to_pylist(),
        "syndication": res.syndication.to_pylist(),
        "rejects": res.rejects.to_pylist(),
    }
    for name, t in res.index_rows.items():
        out[name] = sorted(t.to_pylist(), key=repr)
    return out


def test_supplied_fingerprints_give_the_same_result_and_stale_ones_are_recomputed() -> None:
    """Workers fingerprint the bodies in parallel; dedup must come out exactly as if it had
    fingerprinted them itself, and must not trust a row made from other content."""
    credited = A + ["Original article source: Headline of orig"]
    rows = _corpus() + [
        article("orig", "nbcnews.example", A, 6),
        article("copy", "herald.example", CHROME_HEAD + credited, 7),
        article("teaser", "digest.example", A[:1] + ["Read the full story at NBC."], 8),
        article("other", "nbcnews.example", B, 6),
    ]
    arts = table(rows)
    plain = dedup_batch(arts, MemoryHistory(), "r1")
    assert clusters_of(plain)["copy"] == clusters_of(plain)["teaser"] == "orig"
    fps = fingerprint_table(arts)
    assert fps.schema == FINGERPRINTS and fps.num_rows == arts.num_rows
    # every article has its row, so the bodies are not needed at all (footer credit included)
    supplied = dedup_batch(arts.drop_columns(["body"]), MemoryHistory(), "r1", fingerprints=fps)
    assert _tables(supplied) == _tables(plain)
    docs = {d["article_id"]: d for d in supplied.index_rows["dedup_docs"].to_pylist()}
    assert docs["copy"]["footer_credit"] == "Headline of orig"
    with pytest.raises(ValueError, match="no matching row"):  # nothing to fingerprint it from
        dedup_batch(arts.drop_columns(["body"]), MemoryHistory(), "r1", fingerprints=fps[1:])

    # give "copy" the fingerprint of "other": trusted when the content hash agrees ...
    by_id = {r["article_id"]: r for r in fps.to_pylist()}
    fields = ("exact_key", "n_shingles", "shingles", "keys", "bounds", "footer_credit")
    swapped = by_id["copy"] | {f: by_id["other"][f] for f in fields}

    def with_copy(row: dict) -> pa.Table:
        return pa.Table.from_pylist(
            [row if r["article_id"] == "copy" else r for r in fps.to_pylist()], schema=FINGERPRINTS
        )

    trusted = dedup_batch(arts, MemoryHistory(), "r1", fingerprints=with_copy(swapped))
    assert clusters_of(trusted)["copy"] == "other"
    # ... recomputed from the body when it does not (nor the headline, nor the config)
    for stale in (
        with_copy(swapped | {"content_hash": "edited since"}),
        with_copy(swapped | {"title_hash": 1}),
        fingerprint_table(arts, DedupConfig(shingle_size=4)),
    ):
        again = dedup_batch(arts, MemoryHistory(), "r1", fingerprints=stale)
        assert _tables(again) == _tables(plain)


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


# -- teasers whose page kept foreign text after them, and the guards around them ----------------
WIRE_TITLE = "Zelenskyy accuses Putin of stalling as envoys gather in London"


def cards(*stories: tuple[str, list[str]]) -> list[str]:
    """A site's related-story box as extraction keeps it: headline, meta line, first paragraphs."""
    out: list[str] = []
    for title, paras in stories:
        out += [title, "The Kyiv Ledger \u00b7 30 minutes ago", " ".join(paras[:2])]
    return out


def test_teaser_followed_by_related_cards_joins_its_full_story() -> None:
    box = cards(
        ("Russian drones hit Kharkiv energy facility", B), ("Trump weighs sanctions", C[:1])
    )
    rows = [
        article("wire", "northwire.example", A, 6, title=WIRE_TITLE),
        article("b", "ledger.example", B, 5, title="Russian drones hit Kharkiv energy facility"),
        article("c", "harbor.example", C, 5, title="Trump weighs sanctions"),
        # the teaser: the story's first paragraphs, "Read more", then the site's cards
        article("teaser", "meridian.example", A[:2] + ["Read more"] + box, 7, title=WIRE_TITLE),
    ]
    res = dedup_batch(table(rows), MemoryHistory(), "r1")
    cl = clusters_of(res)
    assert cl["teaser"] == cl["wire"] == "wire"
    assert cl["b"] == "b" and cl["c"] == "c"  # the cards quote their leads: no merge there
    kinds = {r["article_id"]: r["dup_kind"] for r in res.assignments.to_pylist()}
    assert kinds["teaser"] == "teaser"
    # the same holds when the full story arrives after its teaser (incremental runs)
    hist = MemoryHistory()
    hist.add(dedup_batch(table([rows[3]]), hist, "r1").index_rows)
    later = dedup_batch(table([rows[0]]), hist, "r2")
    assert clusters_of(later) == {"wire": "teaser"}


def test_teaser_seen_first_still_collects_copies_with_rewritten_headlines() -> None:
    """Copies of one day are processed in id order: when the teaser comes first, a trimmed copy
    of another site under a rewritten headline must still join it (clusters never merge)."""
    box = cards(
        ("Russian drones hit Kharkiv energy facility", B), ("Trump weighs sanctions", C[:1])
    )
    rows = [
        article("t1", "meridian.example", A[:2] + box, 6, title=WIRE_TITLE),
        article(
            "t2",
            "harbor.example",
            ["Kyiv, Ukraine — " + A[0]] + A[1:-1],
            6,
            title="Ukraine's president accuses Putin of stalling on peace talks",
        ),
        article("t3", "northwire.example", A, 6, title=WIRE_TITLE),
    ]
    assert set(clusters_of(dedup_batch(table(rows), MemoryHistory(), "r1")).values()) == {"t1"}


def test_short_briefs_sharing_site_chrome_stay_apart() -> None:
    x, y = story(21, 3), story(22, 3)
    box = cards(("Russian drones hit Kharkiv energy facility", B), ("Trump weighs sanctions", C))
    promo = (
        "Our journalism is funded by readers like you and every contribution helps us keep "
        "reporting from the places that matter most. Become a member today and get unlimited "
        "access to every story and invitations to live events with our reporters."
    )
    rows = [
        article("b", "ledger.example", B, 5, title="Russian drones hit Kharkiv energy facility"),
        # two briefs of different stories carrying the same box of cards: they share most of
        # their text, but each opens with its own story
        article("brief_x", "meridian.example", x[:1] + box, 7, title="Grain exports climb"),
        article("brief_y", "meridian.example", y[:1] + box, 7, title="Council bans cameras"),
        # two stories opening with the same promo paragraph of their site
        article("promo_x", "meridian.example", [promo] + x, 8, title="Grain exports climb"),
        article("promo_y", "meridian.example", [promo] + y, 8, title="Council bans cameras"),
        # a follow-up re-using the *background* of b under b's headline still stays apart
        article(
            "followup",
            "ledger.example",
            story(23, 2) + B[-1:] + story(24, 3),
            9,
            title="Russian drones hit Kharkiv energy facility",
        ),
    ]
    cl = clusters_of(dedup_batch(table(rows), MemoryHistory(), "r1"))
    assert cl["brief_x"] != cl["brief_y"]
    assert cl["b"] == "b" and cl["followup"] == "followup"
    assert cl["brief_x"] != "b" and cl["brief_y"] != "b"
    assert cl["promo_x"] != cl["promo_y"]
    assert cl["promo_x"] != cl["brief_y"] and cl["promo_y"] != cl["brief_x"]


def test_opening_match_needs_agreeing_headlines() -> None:
    teaser = fingerprint("\n\n".join(A[:2] + C[:3]))
    full = fingerprint("\n\n".join(A))
    args = (teaser.shingles, full.shingles, None, teaser.bounds, full.bounds)
    assert compare(*args, WIRE_TITLE, "BREAKING: " + WIRE_TITLE + " | Herald")[0] == "lead"
    assert compare(*args, WIRE_TITLE, "Markets rally as talks resume")[0] is None
    assert compare(*args, None, WIRE_TITLE)[0] is None


# -- attribution ---------------------------------------------------------------------------------
OIL_TITLE = "Oil prices slip as traders weigh sanctions talk and soft demand"


def _oil_wire(**extra: object) -> dict:
    """The wire original of the oil story: its own headline, fetched after its copy."""
    return article(
        "wire",
        "northwire.example",
        A,
        6,
        title=OIL_TITLE,
        fetched_at=datetime(2025, 1, 6, 12, tzinfo=UTC),
        **extra,
    )


def _oil_copy(paras: list[str], **extra: object) -> dict:
    """A same-day copy with a rewritten headline, fetched first."""
    return article(
        "copy",
        "meridian.example",
        paras,
        6,
        title="Oil slips as sanctions talk meets soft demand",
        fetched_at=datetime(2025, 1, 6, 9, tzinfo=UTC),
        **extra,
    )


def test_headline_credit_names_the_original() -> None:
    """A copy's footer names the original by its headline ('Original article source: <title>'),
    glued to its last sentence; the copy was published the same day and fetched first."""
    copy_body = A[:-1] + [A[-1] + "Original article source: " + OIL_TITLE]
    rows = [
        _oil_wire(),
        _oil_copy(copy_body),
    ]
    res = dedup_batch(table(rows), MemoryHistory(), "r1")
    (row,) = res.clusters.to_pylist()
    assert row["original_article_id"] == "wire" and row["original_outlet"] == "northwire.example"
    assert row["attribution_signal"] == "origin_credit"
    edges = {e["republisher_article_id"]: e for e in res.syndication.to_pylist()}
    assert edges["copy"]["original_article_id"] == "wire" and edges["wire"]["is_original"]

    # the same credit captured by the clean stage (origin_credit) instead of left in the body;
    # a copy that kept the original's headline but credits someone else is not the original
    # (the original naming itself as source organization still is)
    rows = [
        _oil_wire(syndication_hints=json.dumps({"sourceOrganization": "Northwire"})),
        _oil_copy(A, origin_credit=OIL_TITLE),
        article(
            "same_title",
            "brightline.example",
            CHROME_HEAD + A,
            6,
            title=OIL_TITLE,
            syndication_hints=json.dumps({"sourceOrganization": "Reuters"}),
            fetched_at=datetime(2025, 1, 6, 8, tzinfo=UTC),
        ),
    ]
    (row,) = dedup_batch(table(rows), MemoryHistory(), "r2").clusters.to_pylist()
    assert row["original_article_id"] == "wire" and row["attribution_signal"] == "origin_credit"


def test_headline_credit_of_no_member_names_no_outlet() -> None:
    rows = [
        article("first", "one.example", A, 6),
        article(
            "second", "two.example", A, 7, origin_credit="A headline that no copy here carries"
        ),
    ]
    (row,) = dedup_batch(table(rows), MemoryHistory(), "r1").clusters.to_pylist()
    assert row["original_article_id"] == "first" and row["attribution_signal"] == "earliest"


def test_earliest_uses_publication_time_when_the_record_has_one() -> None:
    rows = [
        article(
            "wire",
            "northwire.example",
            A,
            6,
            fetched_at=datetime(2025, 1, 6, 12, tzinfo=UTC),
            published_at=datetime(2025, 1, 6, 11, 30, tzinfo=UTC),
        ),
        article(
            "copy",
            "meridian.example",
            A,
            6,
            fetched_at=datetime(2025, 1, 6, 9, tzinfo=UTC),
            published_at=datetime(2025, 1, 6, 12, 15, tzinfo=UTC),
        ),
    ]
    (row,) = dedup_batch(table(rows), MemoryHistory(), "r1").clusters.to_pylist()
    assert row["original_article_id"] == "wire" and row["attribution_signal"] == "earliest"
    # without the time, same-day copies fall back to the fetch order
    untimed = [{k: v for k, v in r.items() if k != "published_at"} for r in rows]
    (row,) = dedup_batch(table(untimed), MemoryHistory(), "r2").clusters.to_pylist()
    assert row["original_article_id"] == "copy"


def test_index_tables_gain_new_columns(tmp_path) -> None:
    con = duckdb.connect(str(tmp_path / "old.duckdb"))
    con.execute("CREATE TABLE dedup_docs (article_id VARCHAR, cluster_id VARCHAR)")
    ensure_tables(con)
    cols = {r[0] for r in con.execute("DESCRIBE dedup_docs").fetchall()}
    assert {"title", "footer_credit", "published_at", "shingles"} <= cols
    con.close()


def test_covers_follows_the_rule_dedup_applies() -> None:
    from tasks.dedup import covers, fingerprint_table

    arts = table(_corpus())
    fps = fingerprint_table(arts)
    assert covers(fps, arts)
    assert not covers(fps.slice(1), arts)  # one article without a row
    retitled = arts.set_column(
        arts.schema.get_field_index("title"),
        "title",
        pa.array(["Another headline"] * arts.num_rows),
    )
    assert not covers(fps, retitled)  # a row made under another headline is not used
