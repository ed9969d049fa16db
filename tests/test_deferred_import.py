"""Modules GX imports but newsflow never uses stay unloaded until something reads them."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tasks.deferred_import import DeferredModule, defer

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter: this test process may have the modules loaded."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_gx_checks_and_data_docs_run_without_the_deferred_modules(tmp_path: Path) -> None:
    out = _run(
        f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, "tests")
        from test_quality import articles
        from tasks import quality

        gx_dir = Path({str(tmp_path / "gx")!r})
        quality.warm_up(gx_dir)
        report = quality.validate("clean", articles(), run_id="r1", context_dir=gx_dir)
        docs = quality.build_data_docs(gx_dir)
        print(report.ok, docs.exists())
        print(sorted(m for m in ("scipy.stats._stats_py", "altair.vegalite") if m in sys.modules))
        """
    )
    assert out.splitlines() == ["True True", "[]"]


def test_gx_still_runs_the_expectation_that_uses_the_deferred_modules() -> None:
    out = _run(
        """
        import sys
        from tasks import quality

        quality.warm_up(None)
        print("scipy.stats._stats_py" in sys.modules)
        import great_expectations as gx
        import pandas as pd

        ctx = gx.get_context(mode="ephemeral")
        asset = ctx.data_sources.add_pandas("p").add_dataframe_asset("t")
        batch = asset.add_batch_definition_whole_dataframe("b").get_batch(
            batch_parameters={"dataframe": pd.DataFrame({"x": [0.2, 0.4, 0.6, 0.8] * 25})}
        )
        res = batch.validate(
            gx.expectations.ExpectColumnKLDivergenceToBeLessThan(
                column="x",
                partition_object={"bins": [0, 0.5, 1], "weights": [0.5, 0.5]},
                threshold=0.1,
            )
        )
        print(res.success, round(res.result["observed_value"], 6))
        from scipy import stats
        import altair
        print(round(stats.entropy([1, 1], [1, 3]), 6), altair.Chart.__name__)
        """
    )
    # deferred until the expectation computes its statistic; then the real scipy answers
    assert out.splitlines() == ["False", "True 0.0", "0.143841 Chart"]


def test_defer_leaves_imported_and_missing_modules_alone() -> None:
    assert defer("json") is False  # imported already: the real module stays
    assert not isinstance(sys.modules["json"], DeferredModule)
    assert defer("newsflow_no_such_module") is False
    assert defer("newsflow_no_such_package.sub") is False
    assert "newsflow_no_such_package.sub" not in sys.modules


def test_a_module_that_fails_to_import_raises_on_use_and_stays_deferred(tmp_path: Path) -> None:
    pkg = tmp_path / "nf_broken_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "broken.py").write_text("raise RuntimeError('broken on import')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        assert defer("nf_broken_pkg.broken") is True
        stand_in = sys.modules["nf_broken_pkg.broken"]
        with pytest.raises(RuntimeError, match="broken on import"):
            stand_in.anything  # noqa: B018 - the read is the point
        assert sys.modules["nf_broken_pkg.broken"] is stand_in
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("nf_broken_pkg.broken", "nf_broken_pkg"):
            sys.modules.pop(name, None)
