"""Memory over a long extraction: does extract+clean stay flat over 100k pages?

    python bench/extract_memory.py CORPUS_DIR --pages 100000 [--every 5000] [--batch 100]
    python bench/extract_memory.py CORPUS_DIR --pages 10000 --every 500 --enrich  # + enrich

Why: one worker process extracts shard after shard for the whole run, and trafilatura,
htmldate and courlan keep module-level caches that grow with every new URL and date string
unless they are reset (tasks.extract resets them every RESET_EVERY pages). A leak shows up only
after tens of thousands of pages, long after any unit test ends. This runs the pipeline's own
``extract_batch`` + ``clean_batch`` in one process over distinct copies of the corpus pages
(own URL, one new sentence each, as bench/throughput.py builds them, so no cache can be hit by
a repeat) in batches the size of the flow's CPU units, with the workers' malloc settings, and
prints the process's RSS every
``--every`` pages. Flat means: the RSS after warm-up does not trend upward.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import distinct_copy, load_pages  # noqa: E402

from newsflow import memory  # noqa: E402
from tasks.clean import clean_batch  # noqa: E402
from tasks.extract import extract_batch  # noqa: E402
from tasks.schema import PAGES, utcnow  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def peak_mb() -> float:
    """Highest RSS so far (VmHWM): the transient peak inside a batch, which sets how much
    memory a worker really needs, not just what it keeps between batches."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1e3
    return 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", type=Path)
    ap.add_argument("--pages", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=5_000)
    ap.add_argument("--batch", type=int, default=100, help="pages per extract_batch call")
    ap.add_argument(
        "--enrich",
        action="store_true",
        help="also enrich each batch: a pool worker's whole unit of work",
    )
    a = ap.parse_args(argv)
    memory.setup_process()  # as the flow's workers run
    pages = load_pages(a.corpus)
    rng = random.Random(7)
    now = utcnow()
    print(f"{len(pages)} corpus pages, {a.pages} distinct copies, batches of {a.batch}")
    print("pages | rss_mb | peak_mb | articles | pages_per_s (since last line)")
    t_last, n_last, articles, samples = time.perf_counter(), 0, 0, []
    for start in range(0, a.pages, a.batch):
        rows = []
        for k in range(start, min(start + a.batch, a.pages)):
            url = f"http://site{k % 97}.bench.example/news/{k // 97}/story-{k}.html"
            html = distinct_copy(pages[k % len(pages)], k, rng, url)
            rows.append(
                {
                    "page_id": f"p{k}",
                    "url": url,
                    "final_url": url,
                    "source": "bench",
                    "outlet": None,
                    "html": html.decode("utf-8", "replace"),
                    "fetched_at": now,
                }
            )
        table = pa.Table.from_pylist(
            rows,
            schema=pa.schema(
                [
                    PAGES.field(n)
                    for n in (
                        "page_id",
                        "url",
                        "final_url",
                        "source",
                        "outlet",
                        "html",
                        "fetched_at",
                    )
                ]
            ),
        )
        extracted, _ = extract_batch(table, "mem")
        cleaned, _ = clean_batch(extracted, "mem") if extracted.num_rows else (extracted, None)
        articles += cleaned.num_rows
        if a.enrich and cleaned.num_rows:
            from tasks.enrich import enrich_batch

            enrich_batch(cleaned, "mem")
        del extracted, cleaned, table, rows
        memory.release_free_memory()  # as a pool worker does after each unit
        done = min(start + a.batch, a.pages)
        if done % a.every == 0 or done == a.pages:
            t = time.perf_counter()
            rss = rss_mb()
            samples.append((done, rss))
            print(
                f"{done} | {rss:.0f} | {peak_mb():.0f} | {articles} |"
                f" {(done - n_last) / (t - t_last):.1f}",
                flush=True,
            )
            t_last, n_last = t, done
    if len(samples) >= 3:
        warm = samples[len(samples) // 5]  # after the first fifth: caches and arenas warm
        last = samples[-1]
        print(
            f"RSS after warm-up ({warm[0]} pages): {warm[1]:.0f} MB; at {last[0]} pages:"
            f" {last[1]:.0f} MB; growth {last[1] - warm[1]:+.0f} MB"
            f" ({(last[1] - warm[1]) / max(1, last[0] - warm[0]) * 1e4:+.1f} MB per 10k"
            " pages)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
