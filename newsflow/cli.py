"""`newsflow`: run the pipeline, query the warehouse, inspect single pages and data quality."""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from newsflow import env

env.apply()

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)
out = Console()

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", envvar="NEWSFLOW_HOME", help="Warehouse folder (default ./data)."),
]


def _home(home: Path | None) -> Path:
    return (home or Path("data")).resolve()


@app.command()
def run(
    demo: Annotated[
        bool, typer.Option("--demo", help="Serve the bundled demo site and ingest it.")
    ] = False,
    sources: Annotated[
        Path | None, typer.Option("--sources", help="sources.yaml to ingest.")
    ] = None,
    home: HomeOpt = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: all cores).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Demo site port (default 8765).")] = None,
) -> None:
    """Run every stage (fetch, extract, clean, dedup, enrich, checks, load, publish)."""
    if demo == (sources is not None):
        raise typer.BadParameter("give exactly one of --demo or --sources FILE")
    home_dir = _home(home)
    home_dir.mkdir(parents=True, exist_ok=True)
    from newsflow.runner import run_pipeline

    summary = run_pipeline(sources=sources, demo=demo, home=home_dir, workers=workers, port=port)
    _print_summary(summary)
    if summary["status"] == "failed":
        raise typer.Exit(1)


@app.command()
def reprocess(
    home: HomeOpt = None,
    into: Annotated[Path | None, typer.Option(help="Build a new warehouse here instead.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
) -> None:
    """Re-run every stage after fetch from the raw WARC archive: zero network requests."""
    from newsflow.runner import reprocess_archive

    summary = reprocess_archive(_home(home), into.resolve() if into else None, workers)
    _print_summary(summary)
    if summary["status"] == "failed":
        raise typer.Exit(1)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="SQL to run (read-only).")],
    home: HomeOpt = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json")] = "table",
    limit: Annotated[int, typer.Option(help="Max rows shown in table format.")] = 100,
) -> None:
    """Run ad-hoc SQL on the warehouse through a read-only connection."""
    import duckdb

    from warehouse.store import Warehouse

    try:
        result = Warehouse(_home(home)).query(query)
    except (duckdb.Error, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if fmt == "json":
        out.print_json(json.dumps(result.to_pylist(), default=str))
    elif fmt == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(result.column_names)
        for row in result.to_pylist():
            w.writerow(row.values())
    else:
        t = Table(*result.column_names, show_lines=False)
        for row in result.slice(0, limit).to_pylist():
            t.add_row(*("" if v is None else _short(v) for v in row.values()))
        out.print(t)
        if result.num_rows > limit:
            console.print(f"({result.num_rows} rows, first {limit} shown)")


def _short(v: object, n: int = 80) -> str:
    s = str(v)
    return s if len(s) <= n else s[: n - 1] + "…"


@app.command()
def extract(
    inputs: Annotated[list[str], typer.Argument(help="HTML files or URLs.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write DIR/<stem>.json.")] = None,
) -> None:
    """Run extract+clean on single pages and print (or write) the article record."""
    from newsflow.single import extract_one

    failed = 0
    for item in inputs:
        record, reason = extract_one(item)
        payload = record if record is not None else {"input": item, "rejected": reason}
        if record is None:
            failed += 1
            console.print(f"[yellow]{item}: rejected ({reason})[/yellow]")
        if out_dir:
            out_dir.mkdir(parents=True, exist_ok=True)
            stem = Path(item.rstrip("/").split("?")[0]).stem or "page"
            (out_dir / f"{stem}.json").write_text(
                json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8"
            )
        else:
            out.print_json(json.dumps(payload, ensure_ascii=False))
    if failed == len(inputs):
        raise typer.Exit(1)


@app.command()
def report(home: HomeOpt = None) -> None:
    """Print the latest run's data-quality results and where the Data Docs are."""
    from newsflow.reporting import latest_report

    try:
        rep = latest_report(_home(home))
    except FileNotFoundError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    run = rep["run"]
    out.print(f"run {run['run_id']}  status={run['status']}  started={run['started_at']}")
    t = Table("stage", "expectation", "column", "severity", "result", "observed")
    for r in rep["results"]:
        t.add_row(
            r["stage"],
            r["expectation"],
            r["column"] or "",
            r["severity"],
            "[green]pass[/green]" if r["success"] else "[red]FAIL[/red]",
            _short(r["observed"] or "", 60),
        )
    out.print(t)
    out.print(
        f"{rep['passed']} passed, {rep['failed_critical']} critical failures, "
        f"{rep['failed_warning']} warnings"
    )
    out.print(f"Data Docs: {rep['data_docs'] or '(not built yet)'}")


@app.command()
def dedup(
    docs: Annotated[Path, typer.Argument(help="JSONL: doc_id, url, title, text, published.")],
    out_path: Annotated[Path, typer.Option("--out", help="JSONL of {doc_id, cluster_id}.")],
) -> None:
    """Deduplicate pre-extracted articles with the pipeline's own clean and dedup code."""
    from newsflow.dedup_cmd import dedup_jsonl

    stats = dedup_jsonl(docs, out_path)
    console.print(json.dumps(stats, default=str))


@app.command()
def ner(
    sents: Annotated[Path, typer.Argument(help="JSONL with pre-tokenised sentences ('tokens').")],
    out_path: Annotated[Path, typer.Option("--out", help="JSONL of {spans: [[s, e, label]]}.")],
) -> None:
    """Run the enrich stage's entity recogniser on pre-tokenised sentences."""
    from newsflow.ner_cmd import ner_jsonl

    stats = ner_jsonl(sents, out_path)
    console.print(json.dumps(stats, default=str))


@app.command("serve-demo")
def serve_demo(port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765) -> None:
    """Serve the bundled demo site until interrupted (for trying sources.yaml by hand)."""
    import time

    from newsflow.demo.server import DemoSite

    with DemoSite(port=port) as site:
        console.print(f"demo site at {site.base_url} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


def _print_summary(summary: dict) -> None:
    t = Table("stage", "in", "out", "rejected (by reason)", title=f"run {summary['run_id']}")
    for stage, c in summary.get("counts", {}).items():
        rej = ", ".join(f"{k}: {v}" for k, v in sorted(c.get("rejected", {}).items())) or "-"
        t.add_row(stage, str(c.get("in", "")), str(c.get("out", "")), rej)
    out.print(t)
    secs = summary.get("stage_seconds", {})
    if secs:
        out.print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in secs.items()))
    if summary.get("inserted"):
        out.print(
            "rows added: " + ", ".join(f"{k}={v}" for k, v in summary["inserted"].items() if v)
        )
    for w in summary.get("warnings", [])[:20]:
        out.print(f"[yellow]warning:[/yellow] {w}")
    colour = {"published": "green", "nothing_new": "cyan"}.get(summary["status"], "red")
    out.print(f"status: [{colour}]{summary['status']}[/{colour}]  warehouse: {summary['home']}")
    if summary.get("message"):
        out.print(summary["message"])
    if summary.get("data_docs"):
        out.print(f"Data Docs: {summary['data_docs']}")


_exit_status: int | None = None  # set once the command has finished


def main() -> None:
    """Console entry point: run the command, then end the process without tearing it down.

    After a run the interpreter's own finalization (freeing, one by one, the objects of every
    library a run loads: Prefect, GX, pandas, spaCy, DuckDB) took about 1 s of CPU with
    nothing left to do: under strace, no system call between the last exit handler and
    ``exit_group``. Registered first, ``_exit_now`` runs after every other exit handler
    (logging's flush, Prefect's log and event senders, temporary-file cleanup), so only that
    teardown is skipped. An exception other than ``SystemExit`` leaves the normal shutdown.
    """
    global _exit_status
    atexit.register(_exit_now)
    try:
        app()
    except SystemExit as exc:
        code = exc.code
        _exit_status = code if isinstance(code, int) else (0 if code is None else 1)
        raise


def _exit_now() -> None:
    if _exit_status is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)


if __name__ == "__main__":
    main()
