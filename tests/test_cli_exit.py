"""The console entry point ends the process itself once the command is done (newsflow.cli.main):
what it printed must all arrive and its exit status must be the command's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from warehouse.store import Warehouse


def _newsflow(*args: str) -> subprocess.CompletedProcess:
    # block-buffered stdout, as in a real pipe: what is still buffered at the end is only
    # written if the exit flushes it
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run(
        [sys.executable, "-m", "newsflow", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_piped_output_arrives_whole_and_the_status_is_the_commands(tmp_path: Path) -> None:
    Warehouse(tmp_path).connect().close()  # an empty, migrated warehouse
    n = 20_000  # far more than one stdout buffer: the last block is written at exit
    done = _newsflow(
        "sql", f"SELECT i FROM range({n}) t(i)", "--format", "csv", "--home", str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "i"
    assert lines[1:] == [str(i) for i in range(n)]

    failed = _newsflow("sql", "SELECT * FROM no_such_table", "--home", str(tmp_path))
    assert failed.returncode == 2
    assert "no_such_table" in failed.stdout + failed.stderr

    usage = _newsflow("run")  # neither --demo nor --sources
    assert usage.returncode == 2
    assert "exactly one of" in usage.stderr
