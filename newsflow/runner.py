"""Glue between the CLI and the flow: demo site, progress display, archive reprocessing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from rich import get_console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from newsflow import progress as progress_hook
from newsflow.env import apply as apply_env

apply_env()


@contextlib.contextmanager
def _progress_display() -> Iterator[None]:
    """Show one bar per stage; the flow reports through newsflow.progress.

    Off a terminal (scheduled runs, logs, the benchmark) nobody sees the bars move: they are
    printed once, at the end, and the refresh thread that would rebuild them ten times a
    second (0.27 s of the flow process's CPU over a 2,000-page run) is not started.
    """
    bars = Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
        auto_refresh=get_console().is_terminal,
    )
    ids: dict[str, int] = {}

    def reporter(stage: str, advance: int, total: int | None) -> None:
        if stage not in ids:
            ids[stage] = bars.add_task(stage, total=total)
        if total is not None:
            bars.update(ids[stage], total=total)
        if advance:
            bars.advance(ids[stage], advance)

    progress_hook.set_reporter(reporter)
    try:
        with bars:
            yield
    finally:
        progress_hook.set_reporter(None)


def demo_sources(base_url: str, home: Path) -> Path:
    """Write the demo's sources.yaml into the home, allowing the loopback demo host."""
    from newsflow.demo.server import sources_yaml

    doc = yaml.safe_load(sources_yaml(base_url))
    settings = doc.setdefault("settings", {}) or {}
    allow = set(settings.get("allow_hosts") or [])
    allow.add("127.0.0.1")
    settings["allow_hosts"] = sorted(allow)
    doc["settings"] = settings
    path = home / "demo-sources.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def run_pipeline(
    sources: Path | None,
    demo: bool,
    home: Path,
    workers: int | None = None,
    port: int | None = None,
    show_progress: bool = True,
) -> dict:
    path: Path | None = None  # the demo writes its sources file once its site is up
    if not demo:
        assert sources is not None
        if not sources.exists():
            raise FileNotFoundError(f"sources file not found: {sources}")
        path = sources.resolve()
    display = _progress_display() if show_progress else contextlib.nullcontext()
    with _workers_loading(workers):
        from flows.ingest import ingest

        if path is not None:
            with display:
                return ingest(sources_path=str(path), home=str(home), workers=workers)
        from newsflow.demo.server import DEFAULT_PORT, DemoSite

        with DemoSite(port=DEFAULT_PORT if port is None else port) as site, display:
            path = demo_sources(site.base_url, home)
            return ingest(sources_path=str(path), home=str(home), workers=workers)


@contextlib.contextmanager
def _workers_loading(workers: int | None) -> Iterator[None]:
    """Start the flow's worker pool first, so the workers load the stages and models while
    this process imports Prefect and creates the flow run (the flow uses the started pool
    and shuts it down when its CPU stages are done)."""
    from newsflow import memory, pool

    memory.setup_process()
    pool.start(workers)
    pool.warm()
    try:
        yield
    finally:
        pool.shutdown()


def reprocess_archive(home: Path, into: Path | None, workers: int | None) -> dict:
    """Build a sources.yaml of `warc` sources from the archive and run every stage on it."""
    from flows.ingest import ingest
    from warehouse.store import Warehouse

    wh = Warehouse(home)
    warcs = sorted(p for p in wh.archive_dir.rglob("*.warc.gz"))
    if not warcs:
        raise FileNotFoundError(f"no WARC files in {wh.archive_dir}: nothing to reprocess")
    outlets = _outlets_by_warc(wh)
    target = into or home
    target.mkdir(parents=True, exist_ok=True)
    doc = {
        "sources": [
            {"name": outlets.get(p.name, "archive"), "kind": "warc", "location": str(p)}
            for p in warcs
        ]
    }
    path = target / "reprocess-sources.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with _progress_display():
        return ingest(sources_path=str(path), home=str(target), workers=workers)


def _outlets_by_warc(wh) -> dict[str, str]:
    """Keep each archived page's original source name where the warehouse knows it."""
    export = wh.parquet_dir / "warc_index"
    if not export.exists():
        return {}
    names: dict[str, str] = {}
    for f in export.rglob("*.parquet"):
        t = pq.read_table(f)
        if "source" in t.column_names and "warc_file" in t.column_names:
            for w, s in zip(
                t.column("warc_file").to_pylist(), t.column("source").to_pylist(), strict=False
            ):
                if w and s:
                    names[Path(w).name] = s
    return names
