"""Keep the orchestrating process's resident memory close to what it actually holds.

The flow's fetch tasks run in threads and each builds a shard of pages (large strings) that
is written to Parquet and dropped. glibc gives every thread its own malloc arena and keeps
freed blocks in them, so without care the process's RSS grows towards "every shard ever
fetched", not "the shards in flight". Capping the arenas and trimming after a shard is the
standard remedy (the same as MALLOC_ARENA_MAX / malloc_trim); on other C libraries it is a
no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time
from functools import lru_cache

_M_ARENA_MAX = -8  # mallopt parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
WORKER_MMAP_THRESHOLD = 4 * 1024 * 1024


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.mallopt  # noqa: B018 - glibc only
        lib.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return lib


def map_large_blocks(threshold: int = WORKER_MMAP_THRESHOLD) -> bool:
    """Serve blocks of ``threshold`` bytes and more with their own mappings, returned on free.

    An extraction worker allocates and frees a page's HTML, its decoded text and the parser's
    buffers (hundreds of kB each) page after page; glibc's heap keeps the freed blocks
    resident between other live objects, so a worker's RSS climbed through each unit of
    pages until the trim at its end. Mapped blocks go back to the OS when freed. Measured
    over 2,000 bench pages in one worker: peak RSS 641 -> 549 MB at 1 MB (544 at 256 kB);
    user CPU unchanged, system CPU +1.8 s (+2.6 s at 256 kB) of ~97 s, from page faults.
    At 4 MB the peak is the same (548 MB over 600 pages, units as in a run) and the system
    CPU a tenth to a fifth lower than at 1 MB (1.18 against 1.29 ms a page, interleaved
    unit by unit; 0.74-0.91 against 0.97-1.18 in separate runs): blocks of 1-4 MB
    are reused from the heap instead of being mapped and faulted in afresh.
    """
    lib = _libc()
    return bool(lib and lib.mallopt(_M_MMAP_THRESHOLD, threshold))


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas; call before the flow's threads start allocating."""
    lib = _libc()
    return bool(lib and lib.mallopt(_M_ARENA_MAX, n))


def use_system_arrow_pool() -> None:
    """Allocate Arrow buffers with the C library's malloc instead of pyarrow's bundled mimalloc.

    mimalloc keeps freed pages for reuse and ``malloc_trim`` cannot reach them, so a process
    that builds and drops one large table after another (a shard, a unit, a dedup batch)
    shows an RSS that ratchets up run after run. Through malloc the same pages are trimmed
    with the rest of the heap (measured on bench/dedup.py scale, 4 x 50k docs: RSS after each
    slice 683 -> 1372 MB with mimalloc, 649 -> 971 MB with the system pool, same speed).
    """
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())


def setup_process() -> None:
    """Memory settings for every long-lived newsflow process (the flow and pool workers)."""
    limit_malloc_arenas()
    use_system_arrow_pool()


def release_free_memory() -> bool:
    """Return freed heap memory to the OS (glibc's malloc_trim)."""
    lib = _libc()
    return bool(lib and lib.malloc_trim(0))


class PhaseLog:
    """Peak and current RSS (and CPU seconds) of this process per flow phase, to a file.

    "Peak memory flat as pages grow" is a claim about phases (reading the run's clean
    articles, dedup, checks, load), and a tree-wide sampler only sees the sum. With the
    ``NEWSFLOW_MEMLOG`` environment variable set to a path, each ``mark`` writes the previous
    phase's peak RSS (the kernel's high-water mark, reset at every mark through
    ``/proc/self/clear_refs``) and the RSS at the mark, so the phase that grows with the run is
    named, not guessed. Without the variable (or off Linux) it does nothing.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path if path is not None else os.environ.get("NEWSFLOW_MEMLOG")
        self.phase = "start"
        self._cpu = time.process_time()
        if self.path:
            self._reset_peak()

    @staticmethod
    def _status() -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            with open("/proc/self/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        key, value = line.split(":", 1)
                        out[key] = int(value.split()[0]) // 1024  # kB -> MB
        except OSError:
            pass
        return out

    @staticmethod
    def _reset_peak() -> None:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
        except OSError:
            pass

    def mark(self, phase: str) -> None:
        """End the current phase (log its peak) and start ``phase``."""
        if not self.path:
            return
        import pyarrow as pa

        st = self._status()
        arrow_mb = pa.total_allocated_bytes() // 2**20
        cpu = time.process_time()
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(
                f"{time.time():.1f}\t{self.phase}\tpeak_mb={st.get('VmHWM', -1)}\t"
                f"rss_at_end_mb={st.get('VmRSS', -1)}\tarrow_mb={arrow_mb}\t"
                f"cpu_s={cpu - self._cpu:.1f}\n"
            )
        self._cpu = cpu
        self.phase = phase
        self._reset_peak()


_PHASES: PhaseLog | None = None


def mark(phase: str) -> None:
    """``PhaseLog.mark`` on the process-wide log (created on first use)."""
    global _PHASES
    if _PHASES is None:
        _PHASES = PhaseLog()
    _PHASES.mark(phase)
