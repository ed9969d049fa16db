"""Benchmark of the dedup stage: quality on generated syndication sets, speed at scale, and
the incremental-equals-batch property.

Why a script and not a test: it needs the shared benchmark tools and minutes of CPU.

  # quality: B-cubed F1 / wrong merges / docs/s on make_syndication.py sets + real negatives
  python bench/dedup.py quality --make-syndication /work/shared/bench/make_syndication.py \
      --source /work/shared/corpus/extraction --seeds 1 2 3 --n-docs 2000
  # incremental (day slices, in memory and through DuckDB) must equal one batch
  python bench/dedup.py incremental --make-syndication /work/shared/bench/make_syndication.py \
      --source /work/shared/corpus/extraction --seed 7 --days 10
  # throughput on synthetic news-like documents (one batch, one core), then day slices in DuckDB
  python bench/dedup.py scale --n 200000 [--duckdb --days 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from newsflow import memory  # noqa: E402
from newsflow.dedup_cmd import dedup_jsonl, doc_to_row  # noqa: E402
from tasks.dedup import DedupConfig, DedupResult, MemoryHistory, dedup_batch  # noqa: E402
from tasks.schema import ARTICLES_CORE, conform  # noqa: E402

SHARED = Path("/work/shared/bench")


def _run(cmd: list[str]) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _score(score_py: Path, gold: Path, pred: Path, out_json: Path) -> dict:
    _run(
        [
            sys.executable,
            str(score_py),
            "--gold",
            str(gold),
            "--pred",
            str(pred),
            "--json",
            str(out_json),
        ]
    )
    return json.loads(out_json.read_text())


def _syndication_set(args: argparse.Namespace, d: Path, seed: int) -> Path:
    """Generate (once) a make_syndication.py set for ``seed`` into ``d``."""
    if not (d / "docs.jsonl").exists():
        cmd = [
            sys.executable,
            args.make_syndication,
            "--out-dir",
            str(d),
            "--seed",
            str(seed),
            "--n-docs",
            str(args.n_docs),
        ]
        for s in args.source:
            cmd += ["--source", s]
        _run(cmd)
    return d


# ----------------------------------------------------------------------------- quality
def quality(args: argparse.Namespace) -> int:
    work = Path(args.work or tempfile.mkdtemp(prefix="dedup-bench-"))
    score_py = Path(args.score)
    rows = []
    sets: list[tuple[str, Path]] = []
    for seed in args.seeds:
        d = _syndication_set(args, work / f"synd-{args.n_docs}-s{seed}", seed)
        sets.append((f"syndication seed={seed}", d))
    if args.make_realneg:
        d = work / "realneg"
        cmd = [sys.executable, args.make_realneg, "--out-dir", str(d)]
        for t in args.realneg_txt_dir:
            cmd += ["--txt-dir", t]
        for same in args.realneg_same:
            cmd += ["--same", same]
        _run(cmd)
        sets.append(("real negatives", d))
    for name, d in sets:
        stats = dedup_jsonl(d / "docs.jsonl", d / "pred.jsonl")
        res = _score(score_py, d / "gold.jsonl", d / "pred.jsonl", d / "score.json")
        rows.append((name, res, stats))
    print(
        f"{'set':28} {'docs':>6} {'B3-P':>7} {'B3-R':>7} {'B3-F1':>7} {'wrong':>6} "
        f"{'hardneg':>8} {'docs/s':>8}"
    )
    ok = True
    for name, res, stats in rows:
        hn = sum(res["hard_negative_docs_wrongly_merged"].values())
        print(
            f"{name:28} {res['n_docs']:6d} {res['bcubed_precision']:7.4f} "
            f"{res['bcubed_recall']:7.4f} {res['bcubed_f1']:7.4f} "
            f"{res['wrongly_merged_stories']:6d} {hn:8d} {stats['docs_per_s_dedup']:8.0f}"
        )
        ok &= res["wrongly_merged_stories"] == 0
        if name.startswith("syndication"):
            ok &= res["bcubed_f1"] >= 0.98
    print(f"work dir: {work}")
    return 0 if ok else 1


# ----------------------------------------------------------------------------- incremental
def _table(docs: list[dict]) -> pa.Table:
    return conform(pa.Table.from_pylist([doc_to_row(d) for d in docs]), ARTICLES_CORE)


def _state(results: list[DedupResult]) -> tuple[dict, dict, dict]:
    """Final warehouse state after applying results in order (upserts), minus run ids."""
    assign: dict = {}
    clusters: dict = {}
    synd: dict = {}
    for r in results:
        for a in r.assignments.to_pylist():
            assign[a["article_id"]] = (a["cluster_id"], a["dup_kind"], a["dup_of"])
        for c in r.clusters.to_pylist():
            c.pop("run_id")
            clusters[c["cluster_id"]] = c
        for s in r.syndication.to_pylist():
            s.pop("run_id")
            synd[s["republisher_article_id"]] = s
    return assign, clusters, synd


def incremental(args: argparse.Namespace) -> int:
    import duckdb

    from warehouse.dedup_index import DuckDBHistory, apply_result, ensure_tables

    work = Path(args.work or tempfile.mkdtemp(prefix="dedup-incr-"))
    d = _syndication_set(args, work / f"synd-s{args.seed}", args.seed)
    docs = [json.loads(x) for x in open(d / "docs.jsonl", encoding="utf-8") if x.strip()]
    by_day: dict[str, list[dict]] = defaultdict(list)
    for doc in docs:
        by_day[(doc.get("published") or "9999")[:10]].append(doc)
    days = sorted(by_day)
    # group consecutive days into --days slices
    k = max(1, -(-len(days) // args.days))
    slices = [[x for day in days[i : i + k] for x in by_day[day]] for i in range(0, len(days), k)]

    t0 = time.perf_counter()
    batch = _state([dedup_batch(_table(docs), MemoryHistory(), "all")])
    t1 = time.perf_counter()
    mem_hist = MemoryHistory()
    mem_results = []
    for i, sl in enumerate(slices):
        r = dedup_batch(_table(sl), mem_hist, f"day{i}")
        mem_hist.add(r.index_rows)
        mem_results.append(r)
    mem = _state(mem_results)
    t2 = time.perf_counter()
    db = work / "incr.duckdb"
    if db.exists():
        db.unlink()
    con = duckdb.connect(str(db))
    ensure_tables(con)
    duck_results = []
    for i, sl in enumerate(slices):
        r = dedup_batch(_table(sl), DuckDBHistory(con), f"day{i}")
        apply_result(con, r)
        duck_results.append(r)
    # re-running the last slice must change nothing
    rerun = dedup_batch(_table(slices[-1]), DuckDBHistory(con), "rerun")
    con.close()
    duck = _state(duck_results)
    t3 = time.perf_counter()
    names = ("assignments", "clusters", "syndication")
    ok = True
    for label, state in (("memory", mem), ("duckdb", duck)):
        for name, a, b in zip(names, batch, state, strict=True):
            same = a == b
            ok &= same
            diff = sum(1 for key in set(a) | set(b) if a.get(key) != b.get(key))
            print(
                f"{label:7} day-by-day == batch  {name:12} {'OK' if same else 'DIFF'}"
                f" ({len(a)} rows, {diff} differ)"
            )
    unchanged = rerun.index_rows["dedup_docs"].num_rows == 0 and rerun.clusters.num_rows == 0
    ok &= unchanged
    print(f"re-run of the last slice writes nothing: {'OK' if unchanged else 'NO'}")
    print(
        f"{len(docs)} docs, {len(slices)} slices; batch {t1 - t0:.1f}s, memory incremental "
        f"{t2 - t1:.1f}s, duckdb incremental {t3 - t2:.1f}s"
    )
    return 0 if ok else 1


# ----------------------------------------------------------------------------- scale
class SyntheticNews:
    """News-like documents at any scale without a corpus: stories of Zipf-distributed words in
    paragraphs, each republished 0-5 times with chrome lines, typos, truncation and dropped
    paragraphs; deterministic per (seed, index)."""

    def __init__(self, seed: int = 1, vocab: int = 60_000) -> None:
        rng = np.random.default_rng(seed)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        lens = rng.integers(2, 11, size=vocab)
        self.vocab = np.array(["".join(rng.choice(letters, n)) for n in lens], dtype=object)
        w = 1.0 / np.arange(1, vocab + 1) ** 1.05
        self.cdf = np.cumsum(w / w.sum())
        self.seed = seed
        self.chrome = [
            "Sign up for our newsletter to get the latest headlines every morning.",
            "Copyright 2025 Example Media. All rights reserved.",
            "Share",
            "Advertisement",
            "Read more: " + " ".join(self.vocab[:6]),
        ]

    def story(self, s: int) -> list[str]:
        rng = np.random.default_rng((self.seed, s))
        paras = []
        for _ in range(int(rng.integers(3, 12))):
            u = rng.random(int(rng.integers(40, 100)))
            words = self.vocab[np.searchsorted(self.cdf, u).clip(0, len(self.vocab) - 1)]
            paras.append(" ".join(words).capitalize() + ".")
        return paras

    def docs(self, start: int, n: int, day0: date) -> list[dict]:
        out = []
        s = start
        while len(out) < n:
            rng = np.random.default_rng((self.seed, s, 7))
            paras = self.story(s)
            day = day0 + timedelta(days=int(rng.integers(0, 10)))
            copies = 0 if rng.random() < 0.3 else int(rng.integers(1, 6))
            for c in range(copies + 1):
                p = list(paras)
                if c:
                    r = rng.random()
                    if r < 0.15:
                        p = p[: int(rng.integers(1, 3))] + ["Read the full story at example.com"]
                    elif r < 0.4 and len(p) > 3:
                        p = p[:-1]
                    if rng.random() < 0.3:
                        j = int(rng.integers(0, len(p)))
                        ws = p[j].split()
                        ws[int(rng.integers(0, len(ws)))] += "x"
                        p[j] = " ".join(ws)
                    p = [self.chrome[int(rng.integers(0, 5))]] + p + self.chrome[:2]
                d = day + timedelta(days=int(c > 0 and rng.integers(0, 2)))
                out.append(
                    {
                        "doc_id": f"s{s}c{c}",
                        "url": f"https://outlet{c}.example/{s}",
                        "title": f"story {s}",
                        "text": "\n\n".join(p),
                        "published": d.isoformat(),
                    }
                )
            s += 1
        return out[:n]


def _synthetic_table(docs: list[dict]) -> pa.Table:
    """Synthetic docs straight to ARTICLES_CORE (no clean stage: that is not what we time)."""
    return conform(
        pa.table(
            {
                "article_id": [d["doc_id"] for d in docs],
                "url": [d["url"] for d in docs],
                "canonical_url": [d["url"] for d in docs],
                "outlet": [d["url"].split("/")[2] for d in docs],
                "title": [d["title"] for d in docs],
                "body": [d["text"] for d in docs],
                "published": pa.array(
                    [date.fromisoformat(d["published"]) for d in docs], pa.date32()
                ),
            }
        ),
        ARTICLES_CORE,
    )


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def scale(args: argparse.Namespace) -> int:
    gen = SyntheticNews(seed=args.seed)
    cfg = DedupConfig(workers=args.workers)
    day0 = date(2025, 1, 1)
    if not args.duckdb:
        t0 = time.perf_counter()
        docs = gen.docs(0, args.n, day0)
        table = _synthetic_table(docs)
        del docs
        t1 = time.perf_counter()
        res = dedup_batch(table, MemoryHistory(), "scale", cfg)
        t2 = time.perf_counter()
        print(
            f"one batch of {args.n} docs, workers={args.workers}: {t2 - t1:.1f}s = "
            f"{args.n / (t2 - t1):.0f} docs/s (generation {t1 - t0:.1f}s); "
            f"kinds={res.stats['dup_kind']}; band rows={res.stats['band_rows']}; "
            f"peak RSS {_rss_mb():.0f} MB"
        )
        return 0
    import duckdb

    from warehouse.dedup_index import DuckDBHistory, apply_result, ensure_tables

    memory.setup_process()  # as the flow's process runs
    db = Path(args.work or tempfile.mkdtemp(prefix="dedup-scale-")) / "scale.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    if db.exists():
        db.unlink()
    con = duckdb.connect(str(db))
    con.execute(f"SET memory_limit = '{args.duckdb_memory}'")
    ensure_tables(con)
    per = -(-args.n // args.days)
    total = 0.0
    for i in range(args.days):
        docs = gen.docs(i * per * 10, per, day0 + timedelta(days=20 * i))
        table = _synthetic_table(docs)
        t0 = time.perf_counter()
        res = dedup_batch(table, DuckDBHistory(con), f"day{i}", cfg)
        t1 = time.perf_counter()
        apply_result(con, res)
        t2 = time.perf_counter()
        total += t2 - t0
        del docs, table, res
        memory.release_free_memory()  # what the flow does after each step: RSS is then held
        duck = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()[0]
        print(
            f"slice {i}: {per} docs dedup {t1 - t0:.1f}s ({per / (t1 - t0):.0f} docs/s) + "
            f"load {t2 - t1:.1f}s; RSS now {_rss_now_mb():.0f} MB (DuckDB buffers"
            f" {(duck or 0) / 2**20:.0f} MB), peak {_rss_mb():.0f} MB",
            flush=True,
        )
    n_bands = con.execute("SELECT count(*) FROM dedup_bands").fetchone()[0]
    con.close()
    print(
        f"{args.n} docs in {args.days} slices through DuckDB: {total:.1f}s = "
        f"{args.n / total:.0f} docs/s; band rows {n_bands}; db {os.path.getsize(db) >> 20} MB"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--make-syndication", default=str(SHARED / "make_syndication.py"))
    q.add_argument("--make-realneg", default=str(SHARED / "make_realneg.py"))
    q.add_argument("--realneg-txt-dir", action="append", default=[])
    q.add_argument("--realneg-same", action="append", default=[], help="ids of one real story, +")
    q.add_argument("--score", default=str(SHARED / "score_dedup.py"))
    q.add_argument("--source", action="append", default=[])
    q.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    q.add_argument("--n-docs", type=int, default=2000)
    q.add_argument("--work")
    i = sub.add_parser("incremental")
    i.add_argument("--make-syndication", default=str(SHARED / "make_syndication.py"))
    i.add_argument("--source", action="append", default=[])
    i.add_argument("--seed", type=int, default=7)
    i.add_argument("--n-docs", type=int, default=2000)
    i.add_argument("--days", type=int, default=10)
    i.add_argument("--work")
    s = sub.add_parser("scale")
    s.add_argument("--n", type=int, default=200_000)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--duckdb", action="store_true")
    s.add_argument("--days", type=int, default=10)
    s.add_argument("--duckdb-memory", default="2GB", help="DuckDB buffer pool limit")
    s.add_argument("--work")
    args = ap.parse_args(argv)
    for name in ("source",):
        if hasattr(args, name) and not getattr(args, name):
            setattr(args, name, ["/work/shared/corpus/extraction"])
    return {"quality": quality, "incremental": incremental, "scale": scale}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
