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
and a 5xx or unreachable one means "disallow all" for this run. With a cross-run cache
(``tasks.http_cache``), a 2xx/4xx answer is also reused by later runs for ``max_age_s`` (24 h by
default, the RFC's limit), so an unchanged re-run does not start with a robots.txt request
per host; a 5xx or unreachable answer is never carried over.
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

from tasks.http_cache import CachedDoc, DocCache

_STAMP_WIDTH = 32  # bytes of a ``.next`` file: a float's repr, space-padded
MAX_WAIT_S = 300.0  # longest politeness wait (Retry-After and Crawl-delay are capped below it)


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

    def _update_next(
        self, host: str, fn: Callable[[float, float], tuple[float, float]], keep_later: bool = False
    ) -> float:
        """Under the host's lock: read next-allowed time, ``fn(now, next) -> (sleep, delay)``.

        Sleeps (holding the lock, so waiters queue) and writes ``wake time + delay``: measuring
        from the actual wake-up, not the planned one, keeps oversleeping on a loaded machine
        from shrinking the next gap. Returns the wake time, i.e. the request's start.
        """
        with self._locked(self.dir / f"{_fname(host)}.next") as fd:
            assert fd is not None
            raw = os.pread(fd, 64, 0)
            try:
                nxt = float(raw.decode().strip() or 0)
            except ValueError:
                nxt = 0.0
            sleep, delay = fn(time.time(), nxt)
            if sleep > 0:
                # a stamp far ahead means a clock step, not a real wait; never hang on it
                time.sleep(min(sleep, MAX_WAIT_S))
            start = time.time()
            new = max(nxt, start + delay) if keep_later else start + delay
            # fixed width, overwritten in place: truncating to 0 and rewriting makes ext4 flush
            # the file on close (auto_da_alloc), milliseconds per request on a busy disk
            data = repr(new).encode().ljust(_STAMP_WIDTH)
            if len(data) > _STAMP_WIDTH:
                os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            return start

    @contextlib.contextmanager
    def request(self, host: str, delay: float) -> Iterator[float]:
        """Hold a slot for ``host``, start >= ``delay`` after the last start; yield start time."""
        with self._slot(host):
            yield self._update_next(host, lambda now, nxt: (nxt - now, max(0.0, delay)))

    def defer(self, host: str, seconds: float) -> None:
        """Push the host's next start back (Retry-After / 429) for every worker, not just us."""
        self._update_next(host, lambda now, nxt: (0.0, max(0.0, seconds)), keep_later=True)


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

    def __init__(
        self,
        directory: Path | None,
        run_id: str,
        fetch: RobotsFetch,
        persist: DocCache | None = None,
        max_age_s: float = 86400.0,
    ) -> None:
        self.dir = Path(directory) / "robots" / _fname(run_id or "run") if directory else None
        self.fetch = fetch
        self.mem: dict[str, RobotsRules] = {}
        self.persist = persist
        self.max_age_s = max_age_s

    def _fetch(self, origin: str) -> tuple[int | None, bytes | None, str | None]:
        """robots.txt from the cross-run cache while fresh, else from the host (then kept)."""
        url = origin + "/robots.txt"
        if self.persist is not None:
            doc = self.persist.get(url)
            if doc is not None and 0 <= doc.age_s() < self.max_age_s:
                return doc.status, doc.body, None
        status, body, detail = self.fetch(url)
        if self.persist is not None and status is not None and status < 500:
            self.persist.put(url, CachedDoc(body or b"", status, verified_at=time.time()))
        return status, body, detail

    def _load(self, origin: str) -> tuple[int | None, bytes, str | None]:
        if self.dir is None:
            status, body, detail = self._fetch(origin)
            return status, body or b"", detail
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{_fname(origin)}.txt"
        # one worker fetches while the others of this run wait for its answer
        fd = os.open(self.dir / f"{_fname(origin)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if path.exists():
                head, _, body = path.read_bytes().partition(b"\n")
                return int(head), body, None
            status, body, detail = self._fetch(origin)
            if status is not None:  # unreachable: not cached, the next worker tries again
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(str(status).encode() + b"\n" + (body or b""))
                os.replace(tmp, path)
            return status, body or b"", detail
        finally:
            os.close(fd)

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


def forget_run(directory: Path, run_id: str) -> None:
    """Drop a finished run's robots.txt cache (the lead calls this when the run ends)."""
    import shutil

    shutil.rmtree(Path(directory) / "robots" / _fname(run_id or "run"), ignore_errors=True)
