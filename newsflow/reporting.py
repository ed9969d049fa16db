"""Read the latest run's data-quality results back out of the warehouse."""

from __future__ import annotations

from pathlib import Path

from warehouse.store import Warehouse


def data_docs_index(gx_dir: Path) -> Path | None:
    found = sorted(gx_dir.rglob("data_docs/**/index.html")) if gx_dir.exists() else []
    return found[0] if found else None


def latest_report(home: Path) -> dict:
    wh = Warehouse(home)
    con = wh.connect(read_only=True)
    try:
        run = (
            con.execute("SELECT * FROM runs ORDER BY started_at DESC LIMIT 1")
            .to_arrow_table()
            .to_pylist()
        )
        if not run:
            raise FileNotFoundError(f"no runs recorded in {wh.db_path}")
        results = (
            con.execute(
                'SELECT stage, expectation, "column", severity, success, observed FROM dq_results '
                "WHERE run_id = ? ORDER BY stage, success, expectation",
                [run[0]["run_id"]],
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    docs = data_docs_index(wh.gx_dir)
    return {
        "run": run[0],
        "results": results,
        "passed": sum(1 for r in results if r["success"]),
        "failed_critical": sum(
            1 for r in results if not r["success"] and r["severity"] == "critical"
        ),
        "failed_warning": sum(
            1 for r in results if not r["success"] and r["severity"] != "critical"
        ),
        "data_docs": str(docs) if docs else None,
    }
