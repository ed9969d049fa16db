"""Benchmark: first run vs unchanged re-runs against N local hosts, politeness checked.

Starts one threaded HTTP server per host on 127.0.0.<i> (all loopback, distinct host names),
each serving ``--pages`` HTML pages with ETag/Last-Modified and a small artificial latency. The
URL list goes through ``discover`` and the shards are fetched by a *process* pool, so several
processes hit the same host at once and only the file-lock gate keeps them polite. Three runs:

1. first run (revisit interval 0, so everything is due again at once): every page is new;
2. second run, same content, state from run 1: conditional GETs -> 304s, no pages; this run
   schedules the next visit an hour ahead;
3. third run, state from run 2: every URL 'not_due', zero requests.

For each run it prints wall time, requests seen by the servers, pages emitted, pages/s, and the
smallest gap between request starts at any one host and the largest in-flight count per host,
which must respect ``--delay`` and ``per_host_concurrency`` (1).

    .venv/bin/python bench/fetch.py --hosts 4 --pages 30 --delay 0.05 --workers 8
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.fetch import FetchResult, fetch_shard, shard_state, state_dict  # noqa: E402
from tasks.sources import FetchSettings, Shard, Source, discover  # noqa: E402

LAST_MODIFIED = "Wed, 25 Nov 2026 10:00:00 GMT"


class Log:
    """Per-host request log kept by the servers: start times and in-flight high-water mark."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.starts: dict[str, list[float]] = defaultdict(list)
        self.inflight: dict[str, int] = defaultdict(int)
        self.max_inflight: dict[str, int] = defaultdict(int)
        self.statuses: dict[int, int] = defaultdict(int)

    def reset(self) -> None:
        with self.lock:
            self.starts.clear()
            self.max_inflight.clear()
            self.statuses.clear()


def make_handler(log: Log, host: str, latency: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes

        def log_message(self, *_a: object) -> None:  # keep the bench output readable
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            with log.lock:
                log.starts[host].append(time.monotonic())
                log.inflight[host] += 1
                log.max_inflight[host] = max(log.max_inflight[host], log.inflight[host])
            try:
                time.sleep(latency)
                if self.path == "/robots.txt":
                    self._send(404, b"", {})
                    return
                body = (f"<html><head><title>{host}{self.path}</title></head><body>"
                        f"<p>Article {self.path} on {host}. " + "Text. " * 200
                        + "</p></body></html>").encode()
                etag = '"' + hashlib.md5(body).hexdigest()[:12] + '"'  # noqa: S324
                if self.headers.get("If-None-Match") == etag:
                    self._send(304, b"", {"ETag": etag})
                    return
                self._send(200, body, {"Content-Type": "text/html; charset=utf-8",
                                       "ETag": etag, "Last-Modified": LAST_MODIFIED})
            finally:
                with log.lock:
                    log.inflight[host] -= 1

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            with log.lock:
                log.statuses[status] += 1
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _fetch(args: tuple[Shard, FetchSettings, dict, str, str]) -> FetchResult:
    shard, settings, state, run_id, archive = args
    return fetch_shard(shard, settings, state, run_id, Path(archive))


def _warm(_: int) -> int:
    """Import the fetch stack in a worker so the runs time fetching, not process start-up."""
    import tasks.fetch  # noqa: F401

    time.sleep(0.2)  # keep this worker busy so every worker gets one warm-up call
    return 0


def run_once(label: str, shards: list[Shard], settings: FetchSettings, state: dict,
             run_id: str, archive: Path, pool: ProcessPoolExecutor, log: Log,
             ) -> tuple[dict, dict]:
    log.reset()
    t0 = time.monotonic()
    results = list(pool.map(_fetch, [(s, settings, shard_state(s, state), run_id,
                                      str(archive)) for s in shards]))
    wall = time.monotonic() - t0
    fetches = pa.concat_tables([r.fetches for r in results])
    pages = sum(r.pages.num_rows for r in results)
    states = pa.concat_tables([r.state for r in results])
    reasons: dict[str, int] = defaultdict(int)
    for r in fetches.column("reason").to_pylist():
        reasons[r] += 1
    gaps = []  # as seen by the servers (includes connection/scheduling jitter)
    for starts in log.starts.values():
        s = sorted(starts)
        gaps.extend(b - a for a, b in zip(s, s[1:], strict=False))
    # as released by the gate: hop start times recorded by the fetchers (warc_index)
    idx = pa.concat_tables([r.warc_index for r in results])
    by_host: dict[str, list[float]] = defaultdict(list)
    for u, t in zip(idx.column("final_url").to_pylist(), idx.column("fetched_at").to_pylist(),
                    strict=True):
        by_host[u.split("/")[2]].append(t.timestamp())
    client_gaps = []
    for starts in by_host.values():
        s = sorted(starts)
        client_gaps.extend(b - a for a, b in zip(s, s[1:], strict=False))
    gaps.sort()
    row = {
        "run": label,
        "wall_s": round(wall, 2),
        "requests": sum(len(v) for v in log.starts.values()),
        "status": dict(sorted(log.statuses.items())),
        "pages": pages,
        "pages_per_s": round(pages / wall, 1) if wall else 0.0,
        "urls_per_s": round(fetches.num_rows / wall, 1) if wall else 0.0,
        "reasons": dict(sorted(reasons.items())),
        "gate_min_gap_s": round(min(client_gaps), 3) if client_gaps else None,
        "server_gap_p5_p50": (round(gaps[len(gaps) // 20], 3), round(gaps[len(gaps) // 2], 3))
        if gaps else None,
        "max_inflight": max(log.max_inflight.values(), default=0),
    }
    new_state = dict(state)
    new_state.update(state_dict(states))
    return row, new_state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=4)
    ap.add_argument("--pages", type=int, default=30, help="pages per host")
    ap.add_argument("--delay", type=float, default=0.05, help="per-host delay (s)")
    ap.add_argument("--latency", type=float, default=0.01, help="server latency (s)")
    ap.add_argument("--workers", type=int, default=8, help="fetch processes")
    ap.add_argument("--shard-size", type=int, default=10)
    a = ap.parse_args()

    log = Log()
    servers = []
    urls = []
    for i in range(a.hosts):
        host = f"127.0.0.{i + 1}"
        srv = ThreadingHTTPServer((host, 0), make_handler(log, host, a.latency))
        srv.daemon_threads = True
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        urls += [f"http://{host}:{srv.server_port}/news/{j}" for j in range(a.pages)]
    tmp = Path(tempfile.mkdtemp(prefix="nf-bench-fetch-"))
    try:
        (tmp / "urls.txt").write_text("\n".join(urls) + "\n", encoding="utf-8")
        settings = FetchSettings(
            per_host_delay_s=a.delay, per_host_concurrency=1, retries=1, backoff=0.05,
            allow_private_hosts={f"127.0.0.{i + 1}" for i in range(a.hosts)},
            host_state_dir=str(tmp / "hosts"), revisit_after_s=0.0,
        )
        shards, dropped = discover([Source("bench", "urls", str(tmp / "urls.txt"))], settings,
                                   run_id="discover", shard_size=a.shard_size)
        print(f"{a.hosts} hosts x {a.pages} pages, {len(shards)} shards of <= {a.shard_size},"
              f" {a.workers} worker processes, per-host delay {a.delay}s, concurrency 1,"
              f" server latency {a.latency}s; discovery dropped {dropped.num_rows}")
        rows = []
        with ProcessPoolExecutor(max_workers=a.workers) as pool:
            list(pool.map(_warm, range(a.workers)))
            r1, state = run_once("1 first", shards, settings, {}, "run1", tmp / "warc", pool,
                                 log)
            rows.append(r1)
            # run 2 schedules with a real revisit interval, so run 3 finds nothing due
            later = replace(settings, revisit_after_s=3600.0)
            r2, state = run_once("2 unchanged (304)", shards, later, state, "run2",
                                 tmp / "warc", pool, log)
            rows.append(r2)
            r3, _ = run_once("3 not due", shards, later, state, "run3", tmp / "warc", pool,
                             log)
            rows.append(r3)
        cols = ["run", "wall_s", "requests", "pages", "pages_per_s", "urls_per_s",
                "gate_min_gap_s", "server_gap_p5_p50", "max_inflight", "status", "reasons"]
        print(" | ".join(cols))
        for r in rows:
            print(" | ".join(str(r[c]) for c in cols))
        floor = a.delay * a.pages
        print(f"per-host floor for run 1: {a.pages} requests x {a.delay}s = {floor:.2f}s"
              f" (+ robots.txt); min gap must be >= {a.delay}s, max in-flight <= 1")
        ok = all(r["gate_min_gap_s"] is None or r["gate_min_gap_s"] >= a.delay * 0.99
                 for r in rows)
        ok = ok and all(r["max_inflight"] <= 1 for r in rows)
        print("per-host limit held" if ok else "PER-HOST LIMIT VIOLATED")
        if not ok:
            sys.exit(1)
    finally:
        for srv in servers:
            srv.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
