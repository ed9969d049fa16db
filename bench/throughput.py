#!/usr/bin/env python3
"""End-to-end throughput: newsflow (WARC source -> published tables) vs bare trafilatura.

Builds a WARC of N pages from any folder of HTML pages (each copy gets a distinct URL and a
distinct sentence in its text, so neither raw-HTML hashing nor exact-text dedup can skip work
a real, mostly-distinct crawl needs), then side by side on the same pages and cores:

* bare ``trafilatura.extract(html, with_metadata=True)`` on a process pool of --workers;
* ``newsflow run --sources`` with a ``warc`` source into a fresh home (every stage and check);
* the same newsflow run again with nothing new (the incremental case);
* bare trafilatura again: its pages/s comes from the mean time of its runs before and after
  newsflow's, so a drift in the machine's speed during the benchmark is not charged to one side.

Both newsflow runs talk to one real ``prefect server`` started for the benchmark and warmed by
one trivial flow run (as scheduled runs talk to a long-running server);
``--ephemeral-prefect`` makes each run start its own temporary server instead.

Prints pages/s, the ratio, newsflow's per-stage seconds and memory peaks: the whole process
tree (RSS and PSS), the orchestrator (the flow's own process: its peak must stay flat as N
grows, since it is the one process that sees the whole run) and the largest worker. The
first run also writes the flow's per-phase peak RSS (``NEWSFLOW_MEMLOG``) to
``<work>/n<N>/memlog.tsv``, which names the phase when the orchestrator's peak moves.

    python bench/throughput.py ../shared/corpus/extraction --n 2000 --n 20000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

REPO = Path(__file__).resolve().parent.parent
_P = re.compile(rb"<p(\s[^>]*)?>", re.I)
# Copies must be distinct articles: the original's canonical URL (link rel=canonical, og:url,
# JSON-LD "url") would (rightly) make the pipeline treat every copy as one article, so each copy
# declares its own URL instead. Attribute values may be unquoted and a JSON-LD "url" a list.
_CANON = re.compile(
    rb"<link[^>]+rel=[\"']?canonical[^>]*>|<meta[^>]+property=[\"']?og:url[^>]*>", re.I
)
_JSONLD_URL = re.compile(rb'"url"\s*:\s*(?:"[^"]*"|\[\s*"[^"]*"(?:\s*,\s*"[^"]*")*\s*\])')


def load_pages(folder: Path) -> list[bytes]:
    files = sorted(folder.rglob("*.html"))
    if not files:
        sys.exit(f"no .html files under {folder}")
    return [f.read_bytes() for f in files]


def distinct_copy(html: bytes, k: int, rng: random.Random, url: str) -> bytes:
    """Put one new sentence into the first paragraph so every copy's text differs."""
    words = ["harbour", "council", "budget", "river", "station", "market", "festival", "bridge"]
    sentence = (
        f"Copy {k} notes that the {rng.choice(words)} report number {k} was filed on day "
        f"{k % 28 + 1}. "
    ).encode()
    html = _CANON.sub(b"", html)
    html = _JSONLD_URL.sub(b'"url": "' + url.encode() + b'"', html)
    m = _P.search(html)
    if not m:
        return html.replace(b"<body>", b"<body><p>" + sentence + b"</p>", 1)
    return html[: m.end()] + sentence + html[m.end() :]


def build_warc(pages: list[bytes], n: int, path: Path, seed: int = 7) -> None:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        writer = WARCWriter(fh, gzip=True)
        for k in range(n):
            url = f"http://site{k % 97}.bench.example/news/{k // 97}/story-{k}.html"
            html = distinct_copy(pages[k % len(pages)], k, rng, url)
            headers = StatusAndHeaders(
                "200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1"
            )
            rec = writer.create_warc_record(
                url, "response", payload=io.BytesIO(html), http_headers=headers
            )
            writer.write_record(rec)


def iter_warc_html(path: Path):
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as fh:
        for rec in ArchiveIterator(fh):
            if rec.rec_type == "response":
                yield rec.content_stream().read().decode("utf-8", "replace")


def _bare(html: str) -> int:
    import trafilatura

    out = trafilatura.extract(html, with_metadata=True, output_format="json")
    return len(out or "")


class PeakRSS:
    """Samples a process tree (the bench process excluded) every 0.2 s.

    ``peak`` is the summed RSS, which counts pages shared between processes (libraries, the
    parent's pages in forked children) once per process; ``peak_pss`` is the summed PSS, which
    splits each shared page between its users, i.e. what the tree really holds. Both are kept
    so the table can show the conservative number. ``peak_root`` / ``peak_child`` are the
    largest RSS of the orchestrator and of any one worker. ``cpu`` keeps each process's last
    seen CPU seconds (user + system), so the run's CPU splits into orchestrator and workers.

    Reading PSS makes the kernel walk a process's page tables: about 11 ms of CPU per 500 MB
    process, so every 0.2 s over the whole tree it took ~9 % of two cores from the run it
    measured (and none from bare trafilatura, which is not sampled). It is read at most every
    PSS_EVERY seconds, and only when the tree's RSS, which bounds its PSS from above, could
    hold a new PSS peak. The process tree is listed again every TREE_EVERY seconds (listing
    children reads every process on the machine); RSS and CPU times are read every 0.2 s.
    ``sampler_cpu`` is what the sampling itself cost.
    """

    PSS_EVERY = 2.0
    TREE_EVERY = 1.0

    def __init__(self, root_pid: int) -> None:
        self.root = root_pid
        self.cpu: dict[int, float] = {}
        self.peak = 0
        self.peak_pss = 0
        self.peak_root = 0
        self.peak_child = 0
        self.sampler_cpu = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t_cpu = time.thread_time()
        last_pss = 0.0
        procs: list[psutil.Process] = []
        last_tree = -1e9
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now - last_tree >= self.TREE_EVERY:
                    # listing children scans every process on the machine: not every sample
                    root = psutil.Process(self.root)
                    procs = [root] + root.children(recursive=True)
                    last_tree = now
                rss = 0
                for p in procs:
                    try:
                        info = p.memory_info()
                        times = p.cpu_times()
                    except psutil.Error:
                        continue
                    self.cpu[p.pid] = times.user + times.system
                    rss += info.rss
                    if p.pid == self.root:
                        self.peak_root = max(self.peak_root, info.rss)
                    else:
                        self.peak_child = max(self.peak_child, info.rss)
                self.peak = max(self.peak, rss)
                if rss > self.peak_pss and now - last_pss >= self.PSS_EVERY:
                    last_pss = now
                    pss = 0
                    for p in procs:
                        try:
                            full = p.memory_full_info()
                        except psutil.Error:
                            continue
                        pss += getattr(full, "pss", full.rss)
                    self.peak_pss = max(self.peak_pss, pss)
            except psutil.Error:
                pass
            self.sampler_cpu = time.thread_time() - t_cpu
            time.sleep(0.2)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()


def run_bare(warc: Path, workers: int) -> tuple[float, int]:
    htmls = list(iter_warc_html(warc))
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as p:
        list(p.imap_unordered(_bare, htmls, chunksize=16))
    return time.perf_counter() - t0, len(htmls)


class PrefectServer:
    """A real ``prefect server start`` for the benchmark's runs, as scheduled runs have.

    Without one, every ``newsflow run`` starts (and pays for) a temporary server: 10-20 s here,
    which would swamp the second, nothing-new run. The server's own memory is not part of the
    measured process tree, as in production, where it is a long-running service.
    """

    def __init__(self, work: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/api"
        self.env = dict(
            os.environ,
            PREFECT_HOME=str(work / "prefect-home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
        )
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> PrefectServer:
        import urllib.request

        prefect = Path(sys.executable).with_name("prefect")
        self.proc = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        self._warm()
                        return self
            except OSError:
                time.sleep(0.5)
        raise SystemExit("prefect server did not start within 120 s")

    def _warm(self) -> None:
        """Have the new server handle one flow run with one task before the measured runs.

        A server answers its first flow and task runs slowly (a trivial flow's creation took
        0.99 s on a just-started server, 0.19-0.23 s on later runs, with 0.9 s more server
        CPU): a cost of the server's start, which the long-running server scheduled runs talk
        to paid long before, not of the run measured after it.
        """
        code = (
            "from prefect import flow, task\n"
            "@task\ndef warm_task(): return 1\n"
            "@flow(name='bench-server-warm-up')\ndef warm(): return warm_task()\n"
            "warm()\n"
        )
        subprocess.run(
            [sys.executable, "-c", code],
            env=dict(self.env, PREFECT_API_URL=self.url, PREFECT_LOGGING_LEVEL="WARNING"),
            stdout=subprocess.DEVNULL,
            check=True,
            timeout=120,
        )

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds so far of a process and its children (the Prefect server)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


def run_newsflow(
    sources: Path,
    home: Path,
    workers: int,
    api_url: str | None = None,
    memlog: Path | None = None,
    server_pid: int | None = None,
) -> tuple[float, int, dict]:
    cmd = [
        sys.executable,
        "-m",
        "newsflow",
        "run",
        "--sources",
        str(sources),
        "--home",
        str(home),
        "--workers",
        str(workers),
    ]
    env = dict(os.environ, COLUMNS="200")
    if memlog is not None:
        env["NEWSFLOW_MEMLOG"] = str(memlog)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    server_cpu = _cpu_seconds(server_pid)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    with PeakRSS(proc.pid) as peak:
        out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    server_cpu = _cpu_seconds(server_pid) - server_cpu
    if proc.returncode != 0:
        sys.stderr.write(out.decode("utf-8", "replace")[-4000:])
        raise SystemExit(f"newsflow run failed ({proc.returncode})")
    import duckdb

    con = duckdb.connect(str(home / "newsflow.duckdb"), read_only=True)
    row = con.execute(
        "SELECT stage_seconds, counts, status FROM runs ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    n_articles = con.execute("SELECT count(*) FROM articles").fetchone()[0]
    con.close()
    info = {
        "stage_seconds": json.loads(row[0] or "{}"),
        "counts": json.loads(row[1] or "{}"),
        "status": row[2],
        "articles": n_articles,
    }
    info["memory_mb"] = {
        "rss_sum": peak.peak / 2**20,
        "pss_sum": peak.peak_pss / 2**20,
        "orchestrator_rss": peak.peak_root / 2**20,  # peak over the run, not the end value
        "largest_worker_rss": peak.peak_child / 2**20,
    }
    # where the cores went: a total well under wall x cores means idle cores, not slow code
    orchestrator = peak.cpu.get(proc.pid, 0.0)
    children = sum(v for k, v in peak.cpu.items() if k != proc.pid)
    total = orchestrator + children + server_cpu
    info["cpu_s"] = {
        "orchestrator": orchestrator,
        "workers": children,
        "prefect_server": server_cpu,
        "total": total,
        "core_use": total / (wall * workers),
        "bench_sampler": peak.sampler_cpu,
    }
    return wall, peak.peak, info


def measure(warc: Path, sources: Path, work: Path, args: argparse.Namespace) -> dict:
    """One side-by-side measurement: bare, newsflow (first and nothing-new runs), bare again."""
    bare_before_s, n_pages = run_bare(warc, args.workers)
    server = contextlib.nullcontext() if args.ephemeral_prefect else PrefectServer(work)
    with server as srv:
        api = srv.url if srv is not None else None
        home = work / "home"
        shutil.rmtree(home, ignore_errors=True)  # a repetition starts from nothing too
        server_pid = srv.proc.pid if srv is not None and srv.proc is not None else None
        memlog = work / "memlog.tsv"
        memlog.unlink(missing_ok=True)  # the phases of this repetition's first run only
        first_s, first_rss, first = run_newsflow(
            sources, home, args.workers, api, memlog=memlog, server_pid=server_pid
        )
        second_s, second_rss, second = run_newsflow(sources, home, args.workers, api)
    # again after newsflow (and with the Prefect server stopped, as before): this
    # machine's speed drifts by 10-20 % within minutes, and one bare run before a long
    # newsflow run would charge that drift to one side of the ratio
    bare_after_s, _ = run_bare(warc, args.workers)
    bare_s = (bare_before_s + bare_after_s) / 2
    r = {
        "n": n_pages,
        "bare_pages_s": n_pages / bare_s,
        "bare_pages_s_before_after": [n_pages / bare_before_s, n_pages / bare_after_s],
        "newsflow_pages_s": n_pages / first_s,
        "ratio": bare_s / first_s,
        "first_wall_s": first_s,
        # the newsflow process's life outside its flow body: start-up (Python, imports,
        # Prefect's flow-run creation) and exit (the engine's teardown), fixed per run
        "outside_flow_s": first_s - first["stage_seconds"].get("total", first_s),
        "second_wall_s": second_s,
        "second_vs_first": second_s / first_s,
        "peak_rss_mb": first_rss / 2**20,
        "second_peak_rss_mb": second_rss / 2**20,
        "memory_mb": first["memory_mb"],
        "cpu_s": first["cpu_s"],
        "stage_seconds": first["stage_seconds"],
        "articles": first["articles"],
        "second_status": second["status"],
        "second_stage_seconds": second["stage_seconds"],
        "prefect": "ephemeral" if args.ephemeral_prefect else "server",
    }
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("pages_dir", type=Path, help="folder of HTML pages (searched recursively)")
    ap.add_argument("--n", type=int, action="append", help="pages in the WARC (repeatable)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--work", type=Path, default=REPO / "bench" / "out" / "throughput")
    ap.add_argument("--json-out", type=Path)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each N this many times (fresh warehouse each time) and print the median "
        "ratio: this machine's speed drifts by 10-20%% within minutes",
    )
    ap.add_argument(
        "--ephemeral-prefect",
        action="store_true",
        help="let each run start its own temporary Prefect server instead of sharing a real one",
    )
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    sizes = args.n or [2000]
    pages = load_pages(args.pages_dir)
    results = []
    for n in sizes:
        work = args.work / f"n{n}"
        shutil.rmtree(work, ignore_errors=True)
        warc = work / "pages.warc.gz"
        build_warc(pages, n, warc)
        sources = work / "sources.yaml"
        sources.write_text(
            "sources:\n  - name: bench\n    kind: warc\n    location: pages.warc.gz\n",
            encoding="utf-8",
        )
        for rep in range(args.repeat):
            r = measure(warc, sources, work, args)
            r["repetition"] = rep + 1
            results.append(r)
            print(json.dumps(r, indent=1), file=sys.stderr)
    print()
    mode = "temporary per run" if args.ephemeral_prefect else "one real server"
    print(f"workers={args.workers}  pages from {args.pages_dir}  Prefect: {mode}")
    print(
        "| N | bare trafilatura p/s (before, after) | newsflow p/s | ratio | 2nd run s (vs 1st) | "
        "tree peak RSS MB | tree peak PSS MB | orchestrator peak RSS MB | largest worker MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        m = r["memory_mb"]
        before, after = r["bare_pages_s_before_after"]
        label = f"{r['n']} #{r['repetition']}" if args.repeat > 1 else f"{r['n']}"
        print(
            f"| {label} | {r['bare_pages_s']:.1f} ({before:.1f}, {after:.1f}) | "
            f"{r['newsflow_pages_s']:.1f} | "
            f"{r['ratio']:.2f} | {r['second_wall_s']:.1f} ({r['second_vs_first']:.1%}) | "
            f"{r['peak_rss_mb']:.0f} | {m['pss_sum']:.0f} | {m['orchestrator_rss']:.0f} | "
            f"{m['largest_worker_rss']:.0f} |"
        )
    if args.repeat > 1:
        print()
        for n in sorted({r["n"] for r in results}):
            reps = [r for r in results if r["n"] == n]
            ratios = ", ".join(f"{r['ratio']:.2f}" for r in reps)
            print(
                f"N={n}: median of {len(reps)} repetitions: ratio "
                f"{statistics.median(r['ratio'] for r in reps):.2f} ({ratios}), newsflow "
                f"{statistics.median(r['newsflow_pages_s'] for r in reps):.1f} p/s, bare "
                f"{statistics.median(r['bare_pages_s'] for r in reps):.1f} p/s"
            )
    print()
    for r in results:
        tag = f"N={r['n']}" + (f" #{r['repetition']}" if args.repeat > 1 else "")
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in r["stage_seconds"].items())
        print(
            f"{tag}: first run {r['first_wall_s']:.1f}s wall, of which "
            f"{r['outside_flow_s']:.1f}s outside the flow body (process start-up, flow-run "
            f"creation, exit); stages: {stages}; articles={r['articles']}"
        )
        m = r["memory_mb"]
        print(
            f"{tag}: memory peaks (MB): tree RSS sum {m['rss_sum']:.0f}, tree PSS sum "
            f"{m['pss_sum']:.0f}, orchestrator RSS {m['orchestrator_rss']:.0f}, largest worker "
            f"RSS {m['largest_worker_rss']:.0f}"
        )
        c = r["cpu_s"]
        print(
            f"{tag}: CPU s: orchestrator {c['orchestrator']:.1f}, workers {c['workers']:.1f}, "
            f"Prefect server {c['prefect_server']:.1f}, total {c['total']:.1f} = "
            f"{c['core_use']:.0%} of wall x {args.workers} cores; the bench's own sampling "
            f"{c['bench_sampler']:.1f}"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
