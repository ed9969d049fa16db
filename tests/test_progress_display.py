"""The run's progress bars: live on a terminal, printed once when nobody watches them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_off_a_terminal_the_bars_print_once_without_a_refresh_thread() -> None:
    code = textwrap.dedent(
        """
        import threading
        from newsflow.progress import report
        from newsflow.runner import _progress_display

        with _progress_display():
            report("fetch", 0, 10)
            for _ in range(10):
                report("fetch", 1, None)
            names = sorted(type(t).__name__ for t in threading.enumerate())
        print("threads:", names)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == "threads: ['_MainThread']"
    bars = [line for line in lines if "fetch" in line]
    assert len(bars) == 1 and "10/10" in bars[0]
