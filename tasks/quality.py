"""Data-quality gate: run a stage's Great Expectations suite over the stage's output.

Every stage is followed by a check so that a broken extractor or cleaner stops the run before
bad rows reach the warehouse, instead of being found later by a reader. The checks themselves
are data (``expectations/<stage>.json``, each with a severity and a reason); this module only
turns them into GX expectations, runs them through GX's pandas datasource (its DuckDB/SQL
datasource is broken upstream) and returns one row per expectation in ``DQ_RESULTS`` plus
human sentences for the flow's log and the quality-gate error.

No Prefect and no DuckDB here. GX itself is imported lazily because importing it costs
several seconds and ``warehouse.tables`` imports this module just for ``TABLE_SPECS``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.compute as pc

from tasks.schema import TS, TableSpec, utcnow

if TYPE_CHECKING:
    import pandas as pd

# GX must never phone home; the env var is read when a context is created, so set it before
# any GX import can happen in this process. The context config is also switched off below.
os.environ["GX_ANALYTICS_ENABLED"] = "False"

SEVERITIES = ("critical", "warning")
DATASOURCE = "newsflow"
BATCH_DEFINITION = "whole"
TABLE_LEVEL = "(table)"  # `column` value for expectations about the whole table
# Kwargs that tune how strict a check is rather than what it checks: kept out of labels so
# that loosening `mostly` does not rename the expectation in dq_results history.
_MODIFIER_KWARGS = frozenset(
    {
        "mostly",
        "ignore_row_if",
        "or_equal",
        "strict_min",
        "strict_max",
        "match_on",
        "result_format",
        "catch_exceptions",
    }
)
_COLUMN_KWARGS = ("column", "column_A", "column_B", "column_list")
_SAMPLE_CHARS = 80

DQ_RESULTS = pa.schema(
    [
        ("run_id", pa.string()),
        ("stage", pa.string()),
        ("suite", pa.string()),
        ("expectation", pa.string()),
        ("column", pa.string()),
        ("severity", pa.string()),
        ("success", pa.bool_()),
        ("observed", pa.string()),
        ("element_count", pa.int64()),
        ("checked_at", TS),
    ]
)

TABLE_SPECS: list[TableSpec] = [
    TableSpec(
        name="dq_results",
        schema=DQ_RESULTS,
        key=("run_id", "stage", "suite", "expectation", "column"),
        mode="log",
        description="One row per data-quality expectation checked after each stage of a run.",
        columns={
            "run_id": "Run whose stage output was checked.",
            "stage": "Stage whose output was checked (fetch, extract, clean, dedup, ...).",
            "suite": "GX suite name: the stage, or '<stage>.<table>' for a stage's extra table.",
            "expectation": "Expectation type with its arguments, e.g. "
            "\"expect_column_values_to_not_match_regex(body, 'Read also:')\".",
            "column": "Column(s) checked, comma-separated; '(table)' for table-level checks.",
            "severity": "'critical' failures stop the run; 'warning' failures are reported.",
            "success": "Whether the expectation held.",
            "observed": "JSON summary of the GX result: unexpected_count/percent, "
            "observed_value, a few unexpected values, or the reason it was not run.",
            "element_count": "Rows checked.",
            "checked_at": "When the check ran (UTC).",
        },
    )
]

log = logging.getLogger(__name__)


class QualityGateError(Exception):
    """A stage's output failed critical expectations; the run must not go on or publish."""

    def __init__(self, failures: Sequence[str] | str, stage: str | None = None) -> None:
        self.failures = [failures] if isinstance(failures, str) else list(failures)
        self.stage = stage
        where = f" after {stage}" if stage else ""
        lines = "\n".join(f"- {f}" for f in self.failures)
        super().__init__(
            f"quality gate failed{where}: {len(self.failures)} critical failure(s)\n{lines}"
        )


@dataclass
class QualityReport:
    """The outcome of one stage's checks: rows for dq_results plus sentences for people."""

    stage: str
    results: pa.Table  # DQ_RESULTS
    critical_failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no critical expectation failed (warnings do not stop a run)."""
        return not self.critical_failures

    def raise_for_critical(self) -> None:
        """Raise QualityGateError listing the critical failures, if any."""
        if self.critical_failures:
            raise QualityGateError(self.critical_failures, stage=self.stage)

    def summary(self) -> str:
        """One line for the flow log."""
        return (
            f"{self.stage}: {self.results.num_rows} checks, "
            f"{len(self.critical_failures)} critical failure(s), "
            f"{len(self.warnings)} warning(s) in {self.seconds:.2f}s"
        )


# --- suites ------------------------------------------------------------------------------
@cache
def _read_suite(stage: str) -> dict:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", stage):
        raise ValueError(f"not a stage name: {stage!r}")
    path = resources.files("expectations") / f"{stage}.json"
    if not path.is_file():
        import expectations

        raise ValueError(
            f"no expectation suite for stage {stage!r}: known suites are "
            f"{', '.join(expectations.available())}"
        )
    suite = json.loads(path.read_text(encoding="utf-8"))
    _check_suite(stage, suite)
    return suite


def _check_suite(stage: str, suite: dict) -> None:
    """Fail on load, with the file named, rather than mid-run on a typo in a suite file."""
    where = f"expectations/{stage}.json"
    for key in ("name", "table", "expectations"):
        if key not in suite:
            raise ValueError(f"{where}: missing top-level key {key!r}")
    seen: set[tuple[str, str, str]] = set()
    for i, exp in enumerate(suite["expectations"]):
        for key in ("type", "kwargs", "severity", "why"):
            if key not in exp:
                raise ValueError(f"{where}: expectation #{i} has no {key!r}")
        if exp["severity"] not in SEVERITIES:
            raise ValueError(
                f"{where}: expectation #{i} severity {exp['severity']!r} not in {SEVERITIES}"
            )
        ident = (exp.get("table", suite["table"]), _label(exp), _columns_of(exp))
        if ident in seen:
            raise ValueError(f"{where}: expectation #{i} duplicates {ident[1]}")
        seen.add(ident)


def load_suite(stage: str) -> dict:
    """The suite for ``stage`` as stored in ``expectations/<stage>.json`` (a private copy)."""
    return copy.deepcopy(_read_suite(stage))


# --- labels and sentences ----------------------------------------------------------------
def _fmt_value(v: Any) -> str:
    if isinstance(v, dict) and "$PARAMETER" in v:
        return f"${v['$PARAMETER']}"
    return repr(v)


def _label(exp: Mapping[str, Any]) -> str:
    """``type(column, main-args)``: stable across runs, so dq_results rows line up."""
    kwargs = exp["kwargs"]
    parts = [str(c) for c in _needed_columns(exp)]
    rest = {
        k: v for k, v in kwargs.items() if k not in _COLUMN_KWARGS and k not in _MODIFIER_KWARGS
    }
    if len(rest) == 1 and not next(iter(rest)).startswith(("min_", "max_")):
        parts.append(_fmt_value(next(iter(rest.values()))))
    else:
        parts.extend(f"{k}={_fmt_value(v)}" for k, v in rest.items())
    return f"{exp['type']}({', '.join(parts)})"


def _columns_of(exp: Mapping[str, Any]) -> str:
    cols = _needed_columns(exp)
    return ",".join(cols) if cols else TABLE_LEVEL


def _needed_columns(exp: Mapping[str, Any]) -> list[str]:
    kwargs = exp["kwargs"]
    cols: list[str] = []
    for k in _COLUMN_KWARGS:
        if k in kwargs:
            v = kwargs[k]
            cols.extend(v if isinstance(v, list) else [v])
    return cols


# expectations that look only at whether a value is null, never at the value itself
_VALIDITY_ONLY = frozenset(
    {"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"}
)


def _main_expectations(stages: Iterable[str]) -> list[dict]:
    out = []
    for stage in stages:
        suite = _read_suite(stage)
        main = suite["table"]
        out += [e for e in suite["expectations"] if e.get("table", main) == main]
    return out


def needed_columns(stage: str) -> list[str]:
    """Columns the suite of ``stage`` reads from its main table, in suite order.

    A caller reading a stage's output from disk only for its checks reads just these.
    """
    exps = _main_expectations([stage])
    return list(dict.fromkeys(c for e in exps for c in _needed_columns(e)))


def _validity_only(exps: Iterable[Mapping[str, Any]]) -> set[str]:
    """Columns that these expectations only test for nulls."""
    types: dict[str, set[str]] = {}
    for e in exps:
        for c in _needed_columns(e):
            types.setdefault(c, set()).add(e["type"])
    return {c for c, ts in types.items() if ts <= _VALIDITY_ONLY}


def _as_validity(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """The same nulls with every value emptied: what a null check needs of a text column.

    An article body is most of the run's memory, and the dedup and publish suites only ask
    whether it is there; as empty strings their pandas copy costs nothing.
    """
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return col
    return pc.if_else(pc.is_valid(col), pa.scalar("", col.type), pa.scalar(None, col.type))


def _narrow(table: pa.Table, exps: list[dict]) -> pa.Table:
    """``table`` reduced to what ``exps`` read: the needed columns, null-checked-only text
    columns emptied (one column stays so table-level checks still see the row count)."""
    present = set(table.column_names)
    needed = [c for c in dict.fromkeys(c for e in exps for c in _needed_columns(e)) if c in present]
    out = table.select(needed or table.column_names[:1])
    for c in _validity_only(exps) & set(needed):
        out = out.set_column(out.schema.get_field_index(c), c, _as_validity(out.column(c)))
    return out


def check_view(stages: Sequence[str], table: pa.Table) -> pa.Table:
    """What the main-table suites of ``stages`` read from ``table``, and no more.

    Validating the view gives the same results as validating ``table`` itself, so a caller
    can build the view piece by piece (unit by unit) and never hold the full table.
    """
    return _narrow(table, _main_expectations(stages))


def _sample(value: Any, regex: str | None) -> str:
    """A short excerpt of an offending value, centred on the regex match when there is one."""
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= _SAMPLE_CHARS else text[:_SAMPLE_CHARS] + "..."
    text = value
    if regex:
        m = re.search(regex, value)
        if m:
            start = max(0, m.start() - 20)
            text = ("..." if start else "") + value[start : start + _SAMPLE_CHARS]
    if len(text) > _SAMPLE_CHARS + 3:
        text = text[:_SAMPLE_CHARS] + "..."
    return repr(text)


def _plain(v: Any) -> Any:
    """JSON-ready copy of a GX result value (numpy scalars, NaN, tuples, long strings)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, str):
        return v if len(v) <= 200 else v[:200] + "..."
    if isinstance(v, datetime | date):
        return v.isoformat()
    if hasattr(v, "item") and not isinstance(v, bytes):
        try:
            v = v.item()
        except (ValueError, TypeError):
            return str(v)
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is None or isinstance(v, bool | int | float):
        return v
    return str(v)


# --- GX contexts -------------------------------------------------------------------------
_LOCK = threading.RLock()  # GX contexts are not thread-safe; Prefect may run tasks in threads
_CONTEXTS: dict[str, Any] = {}
# (context key, suite name) -> (labels in the stored suite, ValidationDefinition)
_DEFINITIONS: dict[tuple[str, str], tuple[tuple[str, ...], Any]] = {}
# context key -> GX resource identifiers (results, suites) validated since the last docs build
_PENDING_DOCS: dict[str, list[Any]] = {}


def _quiet_gx() -> None:
    for name in ("great_expectations", "great_expectations.core", "tqdm"):
        logging.getLogger(name).setLevel(logging.ERROR)


def warm_up(context_dir: Path | None, stages: Iterable[str] = ()) -> None:
    """Import GX and open the context ahead of the first check (2-3 s of imports), and store
    the suites and validation definitions of ``stages`` (0.3 s for the flow's five).

    The flow calls this in a background thread while its workers process the first units,
    so the work overlaps with work on busy cores instead of stalling the checks, which run
    one after another once processing ends. A check whose table lacks a column an
    expectation reads defines its own, smaller suite then, as without this.
    """
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx_key, ctx = _context(context_dir)
        for stage in stages:
            suite = _read_suite(stage)
            for table, exps in _by_table(suite).items():
                name = _suite_name(stage, suite, exps[0])
                _validation_definition(ctx_key, ctx, name, exps, table)


# Imported at module level by GX, only for the KL-divergence expectation (its statistic and
# its chart), which no suite here uses: 1.7 s of GX's 4.1 s import and 76 MB of the flow
# process. They load on first use (tasks.deferred_import).
DEFERRED_MODULES = ("scipy.stats", "altair")


def _context(context_dir: Path | None) -> tuple[str, Any]:
    """One GX context per directory per process: creating one costs far more than a check."""
    key = str(Path(context_dir).resolve()) if context_dir is not None else ":ephemeral:"
    if key in _CONTEXTS:
        return key, _CONTEXTS[key]
    from tasks.deferred_import import defer

    for name in DEFERRED_MODULES:
        defer(name)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _quiet_gx()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if context_dir is None:
            ctx = gx.get_context(mode="ephemeral")
        else:
            Path(context_dir).mkdir(parents=True, exist_ok=True)
            ctx = gx.get_context(mode="file", context_root_dir=str(context_dir))
    changed = False
    if ctx.variables.analytics_enabled is not False:
        ctx.variables.analytics_enabled = False
        changed = True
    bars = ctx.variables.progress_bars
    if not bars or bars.get("globally") is not False:
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        changed = True
    if changed and context_dir is not None:
        ctx.variables.save()  # persisted once, so later processes start quiet too
    _CONTEXTS[key] = ctx
    return key, ctx


def _batch_definition(ctx: Any, asset_name: str) -> Any:
    """Get-or-add: GX 1.x raises when adding a name that exists, and add_or_update rewrites
    great_expectations.yml on every call."""
    try:
        ds = ctx.data_sources.get(DATASOURCE)
    except KeyError:
        ds = ctx.data_sources.add_pandas(DATASOURCE)
    try:
        asset = ds.get_asset(asset_name)
    except LookupError:
        asset = ds.add_dataframe_asset(asset_name)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)


def _gx_expectation(exp: Mapping[str, Any], label: str, table: str) -> Any:
    from great_expectations.expectations.registry import get_expectation_impl

    cls = get_expectation_impl(exp["type"])
    return cls(
        **exp["kwargs"],
        severity=exp["severity"],
        notes=exp["why"],
        meta={"label": label, "table": table, "why": exp["why"]},
    )


def _validation_definition(
    ctx_key: str, ctx: Any, suite_name: str, exps: list[dict], table: str
) -> Any:
    """Store the suite and its validation definition once per process (and again only when
    the set of runnable expectations changes), so repeated checks cost only the validation."""
    labels = tuple(_label(e) for e in exps)
    cached = _DEFINITIONS.get((ctx_key, suite_name))
    if cached and cached[0] == labels:
        return cached[1]
    import great_expectations as gx

    suite = ctx.suites.add_or_update(
        gx.ExpectationSuite(
            name=suite_name,
            expectations=[
                _gx_expectation(e, lab, table) for e, lab in zip(exps, labels, strict=True)
            ],
            meta={"newsflow_table": table},
        )
    )
    vd = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(
            name=suite_name, data=_batch_definition(ctx, suite_name), suite=suite
        )
    )
    _DEFINITIONS[(ctx_key, suite_name)] = (labels, vd)
    return vd


# --- data --------------------------------------------------------------------------------
# pandas datetime64[ns] only spans 1677..2262; clamping keeps an absurd date absurd (it still
# fails the range check) instead of crashing the conversion.
_NS_MIN = datetime(1678, 1, 1)
_NS_MAX = datetime(2261, 12, 31)


def _to_ns(col: pa.ChunkedArray, tz: str | None) -> pa.ChunkedArray:
    """Cast to pandas' nanosecond timestamps for GX; out-of-range values are clamped.

    pandas cannot hold dates outside 1678-2261 in ns; such a value (a parser's year 1 or
    9999) would make the cast raise and the whole check fail to run. Clamped, it still fails
    any date-range expectation it breaks, which is what the check is for.
    """
    target = pa.timestamp("ns", tz=tz)
    try:
        return col.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        wide = col.cast(pa.timestamp("us", tz=tz))
        lo = pa.scalar(_NS_MIN, type=pa.timestamp("us")).cast(wide.type)
        hi = pa.scalar(_NS_MAX, type=pa.timestamp("us")).cast(wide.type)
        return pc.min_element_wise(pc.max_element_wise(wide, lo), hi).cast(target)


def _release_batches(ctx: Any) -> None:
    """Drop the validated data from GX's execution engines.

    Each engine caches the last batch of every batch id (one per suite here) for later metric
    calls, so without this a stage's whole checked table (as pandas, sharing the Arrow
    buffers) stays in memory for the rest of the run: the run's entity rows through dedup
    and load, for instance. Results are computed by then; nothing reads the batch again.
    """
    for ds in ctx.data_sources.all().values():
        manager = ds.get_execution_engine().batch_manager
        manager.reset_batch_cache()
        manager.batch_data_cache.clear()


def _to_pandas(data: pa.Table | pd.DataFrame) -> pd.DataFrame:
    """Arrow -> pandas with dates and timestamps as datetime64[ns]: GX's pandas range checks
    only parse string bounds for ns columns, and pandas refuses date-vs-datetime compares."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        try:
            data = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError):
            return data  # unusual objects: validate as given
    cols = []
    for f in data.schema:
        col = data.column(f.name)
        if pa.types.is_date(f.type):
            col = _to_ns(col.cast(pa.timestamp("ms")), None)
        elif pa.types.is_timestamp(f.type) and f.type.unit != "ns":
            col = _to_ns(col, f.type.tz)
        cols.append(col)
    # one chunk per column: GX filters the whole frame by a row mask for each metric, and
    # pandas' Arrow-backed strings gather across chunks at every filter
    return pa.Table.from_arrays(cols, names=data.column_names).combine_chunks().to_pandas()


def _parameters() -> dict[str, str]:
    """Values for ``{"$PARAMETER": ...}`` in suites: dates relative to the check's own day."""
    today = utcnow().date()
    return {
        "today": f"{today.isoformat()}T00:00:00",
        "today_plus_2d": f"{(today + timedelta(days=2)).isoformat()}T23:59:59",
    }


# --- running -----------------------------------------------------------------------------
def _exceptions(er: Any) -> list[str]:
    info = getattr(er, "exception_info", None) or {}
    entries: Iterable[Any] = [info] if "raised_exception" in info else info.values()
    return [
        str(e.get("exception_message") or "unknown error")
        for e in entries
        if isinstance(e, dict) and e.get("raised_exception")
    ]


def _row(
    base: dict,
    exp: dict,
    label: str,
    suite_name: str,
    success: bool,
    observed: dict,
    element_count: int | None,
    severity: str | None = None,
) -> dict:
    return {
        **base,
        "suite": suite_name,
        "expectation": label,
        "column": _columns_of(exp),
        "severity": severity or exp["severity"],
        "success": success,
        "observed": json.dumps(_plain(observed), sort_keys=True, ensure_ascii=False),
        "element_count": element_count,
    }


def _sentence(stage: str, label: str, exp: dict, res: dict, errors: list[str], n: int) -> str:
    if errors:
        return f"{stage}: {label} could not run: {errors[0]}"
    if "unexpected_count" in res:
        total = res.get("element_count", n)
        text = f"{stage}: {label} failed: {res['unexpected_count']} of {total} rows"
        mostly = exp["kwargs"].get("mostly")
        if mostly is not None:
            text += f" (at most {1 - mostly:.0%} allowed)"
        # Strings stay whole so the excerpt can centre on the match; the rest become plain.
        sample = [
            v if isinstance(v, str) else _plain(v) for v in res.get("partial_unexpected_list") or []
        ]
        if sample and sample[0] is not None:  # not-null failures only sample nulls
            text += f", e.g. {_sample(sample[0], exp['kwargs'].get('regex'))}"
        return text
    return f"{stage}: {label} failed: observed {res.get('observed_value')!r}"


def _by_table(suite: dict) -> dict[str, list[dict]]:
    """A stage's expectations grouped by the table they read, in suite order: GX runs one
    suite per table."""
    groups: dict[str, list[dict]] = {}
    for exp in suite["expectations"]:
        groups.setdefault(exp.get("table", suite["table"]), []).append(exp)
    return groups


def _suite_name(stage: str, suite: dict, exp: Mapping[str, Any]) -> str:
    """GX runs one suite per table: the stage's main table keeps the stage's name."""
    table = exp.get("table", suite["table"])
    return stage if table == suite["table"] else f"{stage}.{table}"


def validate(
    stage: str,
    table: pa.Table | pd.DataFrame | None,
    run_id: str,
    context_dir: Path | None = None,
    tables: Mapping[str, pa.Table | pd.DataFrame] | None = None,
) -> QualityReport:
    """Run ``expectations/<stage>.json`` over a stage's output and report every expectation.

    ``table`` is the suite's main table (its ``"table"``); ``tables`` holds any other tables
    the suite names per expectation (e.g. ``{"article_stats": stats}`` for enrich). An
    expectation whose table or column is absent is recorded as a failed *warning*
    ('table_missing' / 'column_missing') rather than crashing, so a renamed column shows up
    in the report instead of killing the run. With ``context_dir`` the results are kept in a
    GX file context there (for Data Docs); without it an in-memory context is used.
    """
    started = time.perf_counter()
    suite = _read_suite(stage)
    checked_at = utcnow()
    base = {"run_id": run_id, "stage": stage, "checked_at": checked_at}
    available: dict[str, pa.Table | pd.DataFrame] = dict(tables or {})
    if table is not None:
        available[suite["table"]] = table

    rows: list[dict] = []
    critical: list[str] = []
    warns: list[str] = []

    def record(row: dict, sentence: str | None) -> None:
        rows.append(row)
        if sentence and not row["success"]:
            (critical if row["severity"] == "critical" else warns).append(sentence)

    def fail(
        exp: dict,
        suite_name: str,
        observed: dict,
        n: int | None,
        why: str,
        severity: str | None = None,
    ) -> None:
        """An expectation that could not be evaluated is a failed row, never a silent pass."""
        label = _label(exp)
        row = _row(base, exp, label, suite_name, False, observed, n, severity)
        record(row, f"{stage}: {label} {why}")

    for table_name, exps in _by_table(suite).items():
        suite_name = _suite_name(stage, suite, exps[0])
        data = available.get(table_name)
        if data is None:
            for exp in exps:
                fail(
                    exp,
                    suite_name,
                    {"reason": "table_missing", "table": table_name},
                    None,
                    f"skipped: table {table_name!r} was not given",
                    "warning",
                )
            continue
        present = set(map(str, data.column_names if isinstance(data, pa.Table) else data.columns))
        # only the columns some expectation reads go to pandas: the article tables carry
        # bodies and metadata no check looks at, and converting them would double the run's
        # peak memory for nothing; a column only checked for nulls goes as its nulls
        if isinstance(data, pa.Table):
            data = _narrow(data, exps)
        df = _to_pandas(data)
        runnable: list[dict] = []
        for exp in exps:
            missing = [c for c in _needed_columns(exp) if c not in present]
            if not missing:
                runnable.append(exp)
                continue
            fail(
                exp,
                suite_name,
                {"reason": "column_missing", "missing": missing},
                len(df),
                f"skipped: column(s) {', '.join(missing)} missing from {table_name}",
                "warning",
            )
        if not runnable:
            continue
        try:
            result = _run(context_dir, suite_name, runnable, table_name, df, run_id)
        except Exception as exc:  # reported per expectation below, at its own severity
            # A check that cannot run must not pass silently: each expectation fails at its
            # own severity, so a broken critical check still stops the run, with the cause.
            log.exception("GX could not validate %s for stage %s", suite_name, stage)
            why = f"{type(exc).__name__}: {exc}"
            for exp in runnable:
                fail(
                    exp,
                    suite_name,
                    {"reason": "gx_error", "exception": why},
                    len(df),
                    f"could not run: {why}",
                )
            continue
        by_label = {_label(e): e for e in runnable}
        for er in result.results:
            label = er.expectation_config.meta.get("label")
            exp = by_label[label]
            res = dict(er.result or {})
            errors = _exceptions(er)
            observed = {
                k: res[k]
                for k in (
                    "observed_value",
                    "unexpected_count",
                    "unexpected_percent",
                    "missing_count",
                    "partial_unexpected_list",
                )
                if k in res
            }
            if errors:
                observed["exception"] = errors[0]
            success = bool(er.success) and not errors
            record(
                _row(
                    base,
                    exp,
                    label,
                    suite_name,
                    success,
                    observed,
                    res.get("element_count", len(df)),
                ),
                None if success else _sentence(stage, label, exp, res, errors, len(df)),
            )

    # Rows in suite-file order (GX returns its own order), so a report reads like the file.
    order = {
        (_suite_name(stage, suite, e), _label(e)): i for i, e in enumerate(suite["expectations"])
    }
    rows.sort(
        key=lambda r: (
            r["suite"] != stage,
            r["suite"],
            order.get((r["suite"], r["expectation"]), 0),
        )
    )
    report = QualityReport(
        stage=stage,
        results=pa.Table.from_pylist(rows, schema=DQ_RESULTS),
        critical_failures=critical,
        warnings=warns,
        seconds=time.perf_counter() - started,
    )
    log.info(report.summary())
    return report


def _run(
    context_dir: Path | None,
    suite_name: str,
    exps: list[dict],
    table: str,
    df: pd.DataFrame,
    run_id: str,
) -> Any:
    # GX is imported under the lock: the flow's warm-up thread may be importing it right now,
    # and GX's circular imports fail when a second thread enters them half-way.
    with _LOCK, warnings.catch_warnings():
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.resource_identifiers import (
            ExpectationSuiteIdentifier,
            ValidationResultIdentifier,
        )

        # GX and pandas emit deprecation chatter on every call; it is not actionable here.
        warnings.simplefilter("ignore")
        ctx_key, ctx = _context(context_dir)
        vd = _validation_definition(ctx_key, ctx, suite_name, exps, table)
        gx_run_id = RunIdentifier(run_name=run_id, run_time=utcnow())
        result = vd.run(
            batch_parameters={"dataframe": df},
            expectation_parameters=_parameters(),
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
            run_id=gx_run_id,
        )
        _release_batches(ctx)
        if context_dir is not None:
            # The same key ValidationDefinition.run stored the result under, so that Data Docs
            # can render just this run's pages instead of the whole history.
            suite_id = ExpectationSuiteIdentifier(name=suite_name)
            batch_id = (
                next(
                    (r.expectation_config.kwargs.get("batch_id") for r in result.results),
                    None,
                )
                or f"{DATASOURCE}-{suite_name}"
            )
            _PENDING_DOCS.setdefault(ctx_key, []).extend(
                [
                    ValidationResultIdentifier(
                        expectation_suite_identifier=suite_id,
                        run_id=gx_run_id,
                        batch_identifier=batch_id,
                    ),
                    suite_id,
                ]
            )
        return result


def build_data_docs(context_dir: Path, *, full: bool = False) -> Path:
    """Render Data Docs (HTML) for the validations stored under ``context_dir``.

    Results accumulate in the file context across runs, so the site shows history, not just
    the last run. Rendering every stored result takes ~40 ms per page and grows with every run,
    so only pages for checks run by this process since the last build are rendered (plus the
    index, which always lists everything); the whole site is rendered when it does not exist
    yet or when ``full`` is set (e.g. after results were written by another process).
    Returns the path of the site's index.html.
    """
    with _LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctx_key, ctx = _context(Path(context_dir))
        pending = _PENDING_DOCS.pop(ctx_key, [])
        index = _site_index(ctx)
        if full or index is None or not index.is_file():
            ctx.build_data_docs()
        elif pending:  # an empty list would mean "everything" to GX
            ctx.build_data_docs(resource_identifiers=list(dict.fromkeys(pending)))
        index = _site_index(ctx)
    if index is None:
        raise RuntimeError(f"GX context at {context_dir} has no local Data Docs site")
    return index


def _site_index(ctx: Any) -> Path | None:
    """Where the site's index.html is (or will be), from the context's own site config."""
    urls = ctx.get_docs_sites_urls(only_if_exists=False)
    for site in urls:
        url = site.get("site_url")
        if url and url.startswith("file://"):
            return Path(unquote(urlparse(url).path))
    return None
