"""Politeness that holds across threads, Prefect tasks and processes: robots.txt and host gates.

Why file locks: the lead maps ``fetch_shard`` over shards with any executor (threads, Dask
processes). An in-memory limiter would only be polite per worker, so N workers would hit one
host N times as often. Each host instead has small files in a shared directory
(``FetchSettings.host_dir()``):

* ``<host>.next`` holds the earliest time the next request may *start*. A worker takes an
  exclusive ``flock`` on it, sleeps until that time while holding the lock (so waiters queue in
  order), writes ``start + delay`` and releases. Request starts to one host are therefore at
  least ``delay`` apart machine-wide, whatever the number of workers.
* ``<host>.slot<i>`` (``i < per_host_concurrency``) are held for the whole request, bounding the
  requests in flight per host.

``flock`` is released by the kernel when a process dies, so a crashed worker cannot wedge a host.
The scope is one machine; a multi-machine deployment would need a shared store instead.

robots.txt is fetched once per host per run and cached in ``<dir>/robots/<run_id>/`` so that
parallel workers of the same run reuse it. Per RFC 9309, a 4xx robots.txt means "allow all"
and a 5xx or unreachable one means "disallow all" for this run.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from protego import Protego


def _fname(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", host)[:200]


class HostGate:
    """Machine-wide per-host rate limit and concurrency cap (see module doc)."""

    def __init__(self, directory: Path, concurrency: int = 1) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.concurrency = max(1, concurrency)

    @contextlib.contextmanager
    def _locked(self, path: Path, blocking: bool = True) -> Iterator[int | None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield None
                return
            yield fd
        finally:
            os.close(fd)  # closing releases the flock

    @contextlib.contextmanager
    def _slot(self, host: str) -> Iterator[None]:
        base = _fname(host)
        if self.concurrency == 1:
            with self._locked(self.dir / f"{base}.slot0"):
                yield
            return
        while True:
            for i in range(self.concurrency):
                with self._locked(self.dir / f"{base}.slot{i}", blocking=False) as fd:
                    if fd is not None:
                        yield
                        return
            time.sleep(0.005)

    def _update_next(self, host: str, fn: Callable[[float, float], tuple[float, float]]) -> None:
        """Under the host's lock: read next-allowed time, ``fn(now, next) -> (sleep, new)``."""
        with self._locked(self.dir / f"{_fname(host)}.next") as fd:
            assert fd is not None
            raw = os.pread(fd, 64, 0)
            try:
                nxt = float(raw.decode() or 0)
            except ValueError:
                nxt = 0.0
            sleep, new = fn(time.time(), nxt)
            if sleep > 0:
                time.sleep(sleep)
            data = repr(new).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)

    @contextlib.contextmanager
    def request(self, host: str, delay: float) -> Iterator[None]:
        """Hold a slot for ``host`` and start no sooner than ``delay`` after the last start."""
        with self._slot(host):

            def step(now: float, nxt: float) -> tuple[float, float]:
                start = max(now, nxt)
                return start - now, start + max(0.0, delay)

            self._update_next(host, step)
            yield

    def defer(self, host: str, seconds: float) -> None:
        """Push the host's next start back (Retry-After / 429) for every worker, not just us."""
        self._update_next(host, lambda now, nxt: (0.0, max(nxt, now + max(0.0, seconds))))


@dataclass
class RobotsRules:
    """robots.txt of one origin: ``deny_all`` when it could not be fetched (5xx/timeout)."""

    parser: Protego | None = None
    deny_all: bool = False
    detail: str | None = None

    def allowed(self, url: str, user_agent: str) -> bool:
        if self.deny_all:
            return False
        return True if self.parser is None else bool(self.parser.can_fetch(url, user_agent))

    def crawl_delay(self, user_agent: str) -> float | None:
        if self.parser is None:
            return None
        d = self.parser.crawl_delay(user_agent)
        return None if d is None else float(d)


# fetch(url) -> (status or None on failure, body or None, failure detail)
RobotsFetch = Callable[[str], tuple[int | None, bytes | None, str | None]]


class RobotsCache:
    """robots.txt per origin, once per run, shared through files by parallel workers."""

    def __init__(self, directory: Path | None, run_id: str, fetch: RobotsFetch) -> None:
        self.dir = Path(directory) / "robots" / _fname(run_id or "run") if directory else None
        self.fetch = fetch
        self.mem: dict[str, RobotsRules] = {}

    def _load(self, origin: str) -> tuple[int | None, bytes, str | None]:
        path = self.dir / f"{_fname(origin)}.txt" if self.dir else None
        if path is not None and path.exists():
            head, _, body = path.read_bytes().partition(b"\n")
            status = int(head) if head.strip().lstrip(b"-").isdigit() else None
            return (None if status == -1 else status), body, None
        status, body, detail = self.fetch(origin + "/robots.txt")
        if path is not None and status is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(str(status).encode() + b"\n" + (body or b""))
            os.replace(tmp, path)
        return status, body or b"", detail

    def rules(self, origin: str) -> RobotsRules:
        """Rules for ``scheme://host:port``; computed at most once per run per origin."""
        if origin in self.mem:
            return self.mem[origin]
        status, body, detail = self._load(origin)
        if status is None or status >= 500:
            rules = RobotsRules(deny_all=True, detail=detail or f"robots.txt status {status}")
        elif status >= 400:
            rules = RobotsRules()
        elif status >= 300:  # redirects already followed by the fetcher; treat leftovers as none
            rules = RobotsRules()
        else:
            rules = RobotsRules(Protego.parse(body.decode("utf-8", "replace")))
        self.mem[origin] = rules
        return rules
