"""The process pool that CPU stages (extract, clean, enrich) run on.

Prefect's thread runner schedules one task per shard; each task hands its CPU work to this
pool so every core is used without paying Prefect's per-task cost per article. Under a Dask
task runner the work already runs in worker processes, so no pool is installed there.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

LOG = logging.getLogger(__name__)
_pool: ProcessPoolExecutor | None = None
_workers = 0


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


def start(workers: int | None = None) -> ProcessPoolExecutor:
    """Start the pool; 'spawn' because forking a process with Prefect's threads can deadlock."""
    global _pool, _workers
    if _pool is None:
        _workers = workers or default_workers()
        _pool = ProcessPoolExecutor(
            max_workers=_workers,
            mp_context=mp.get_context("spawn"),
            max_tasks_per_child=200,  # bounds any slow growth in parser caches
            initializer=_init_worker,
        )
    return _pool


def _init_worker() -> None:
    from newsflow.memory import map_large_blocks, setup_process

    setup_process()
    map_large_blocks()


def warm() -> None:
    """Have each worker load the CPU stages' code and models now, without waiting for it.

    A worker's first unit otherwise starts with about 3 s of CPU for imports and the NER
    pipeline, after the flow process has spent its own first seconds importing Prefect and
    creating the flow run on one core while the other idled. Started before that, the
    loading overlaps it. A run that ends up with nothing to extract pays the loading for
    nothing (about 3 s per worker, in parallel; the 20k bench's nothing-new run took 19.5 s
    with it, against 13.6 s in an earlier benchmark without it).
    """
    if _pool is None:
        return
    for _ in range(_workers):
        _pool.submit(_warm_worker).add_done_callback(_report_warm_failure)


def _report_warm_failure(fut: Future) -> None:
    """A failed warm-up fails again, and is reported, in the first unit; say it here too."""
    if not fut.cancelled() and fut.exception() is not None:
        LOG.warning("worker warm-up failed: %r", fut.exception())


def _warm_worker() -> None:
    from tasks.shards import warm_up

    warm_up()


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
