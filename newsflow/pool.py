"""The process pool that CPU stages (extract, clean, enrich) run on.

Prefect's thread runner schedules one task per shard; each task hands its CPU work to this
pool so every core is used without paying Prefect's per-task cost per article. Under a Dask
task runner the work already runs in worker processes, so no pool is installed there.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_pool: ProcessPoolExecutor | None = None


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def start(workers: int | None = None) -> ProcessPoolExecutor:
    """Start the pool; 'spawn' because forking a process with Prefect's threads can deadlock."""
    global _pool
    if _pool is None:
        _pool = ProcessPoolExecutor(
            max_workers=workers or default_workers(),
            mp_context=mp.get_context("spawn"),
            max_tasks_per_child=200,  # bounds any slow growth in parser caches
            initializer=_init_worker,
        )
    return _pool


def _init_worker() -> None:
    from newsflow.memory import map_large_blocks, setup_process

    setup_process()
    map_large_blocks()


def shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=True, cancel_futures=True)
        _pool = None


def run_cpu(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn`` in the pool if one is started, else in this process (Dask workers, tests)."""
    if _pool is None:
        return fn(*args)
    return _pool.submit(_run_and_trim, fn, *args).result()


def _run_and_trim(fn: Callable[..., Any], *args: Any) -> Any:
    """Run one unit in a worker, then hand the unit's freed memory back to the OS."""
    from newsflow.memory import release_free_memory

    try:
        return fn(*args)
    finally:
        release_free_memory()
