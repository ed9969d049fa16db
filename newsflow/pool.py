"""The process pool that CPU stages (extract, clean, enrich) run on.

Prefect's thread runner schedules one task per shard; each task hands its CPU work to this
pool so every core is used without paying Prefect's per-task cost per article. Under a Dask
task runner the work already runs in worker processes, so no pool is installed there.
"""

from __future__ import annotations

import importlib.abc
import logging
import multiprocessing as mp
import os
import sys
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

LOG = logging.getLogger(__name__)
_pool: ProcessPoolExecutor | None = None
_workers = 0
_frozen_after: set[str] = set()  # kinds of unit after whose first run this worker froze its heap


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
    keep_out_pandas()


class _NoPandas(importlib.abc.MetaPathFinder):
    """Refuses to import pandas; see ``keep_out_pandas``."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(
                f"{name} is not importable in newsflow's pool workers: nothing they run "
                "needs it (newsflow.pool.keep_out_pandas)",
                name=name,
            )
        return None


def keep_out_pandas() -> None:
    """Make pandas unimportable in this process (a worker, before it imports anything heavy).

    Nothing a worker runs uses pandas, yet pyarrow imports it on the first table built from
    Python objects (``Table.from_pylist``, ``pa.array``) just to recognise pandas values,
    whenever it is installed (GX needs it in the flow process). In each worker that cost
    0.2-0.4 s of CPU at start and about 29 MB of resident memory for the whole run. With
    the import refused, pyarrow treats pandas as absent: the same tables, built the same way.
    A worker that already has pandas keeps it.
    """
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


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
    return submit_cpu(fn, *args).result()


def submit_cpu(fn: Callable[..., Any], *args: Any) -> Future:
    """``run_cpu`` without waiting: the pool's future, or (no pool) a future already done,
    holding ``fn``'s result or its exception."""
    if _pool is not None:
        return _pool.submit(_run_and_trim, fn, *args)
    fut: Future = Future()
    try:
        fut.set_result(fn(*args))
    except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
        fut.set_exception(exc)
    return fut


def _run_and_trim(fn: Callable[..., Any], *args: Any) -> Any:
    """Run one unit in a worker, then hand the unit's freed memory back to the OS."""
    from newsflow.memory import release_free_memory

    try:
        return fn(*args)
    finally:
        freeze_after_first(fn)
        release_free_memory()


def freeze_after_first(fn: Callable[..., Any]) -> bool:
    """After the first unit of each kind in this worker, hide what is still alive from the
    cyclic garbage collector (``gc.freeze``); True if it did so now.

    Why: a first unit fills the libraries' lazily built, process-long tables (dateparser's
    locales, htmldate's month names, justext's stoplists, the stages' own caches): tens of
    thousands of containers that every full collection walked again, about 40 ms a time,
    one or two per 100-page unit. Collector time over 11 bench units went from 0.91 to
    0.41 ms/page. A full collection runs first, so only live objects are frozen; and it
    happens once per kind of unit, so what the collector can no longer reclaim is bounded
    by one unit's leftovers, not by the length of the run.
    """
    import gc

    kind = f"{fn.__module__}.{fn.__qualname__}"
    if kind in _frozen_after:
        return False
    _frozen_after.add(kind)
    gc.collect()
    gc.freeze()
    return True
