"""The one place that opens DuckDB: schema, migrations, idempotent atomic loads, Parquet export.

A DuckDB file allows one writer, so workers hand their output over as Arrow tables or Parquet
files and this module loads everything from one run in a single transaction: a killed or
failed run leaves the previous published state untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from tasks.schema import TableSpec, to_rows, utcnow
from warehouse.tables import all_specs

DB_NAME = "newsflow.duckdb"
# Columns that say which run wrote a row: not part of a row's content when deciding whether a
# re-run changed anything (re-running the same input must change nothing).
_PROVENANCE = {"run_id"}


def default_home() -> Path:
    return Path(os.environ.get("NEWSFLOW_HOME", "data")).resolve()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class LoadStats:
    inserted: dict[str, int] = field(default_factory=dict)
    changed_articles: int = 0
    unchanged_articles: int = 0
    # wall seconds of the load's steps (staging, merges, related articles, commit): the load
    # is one of the largest serial steps of a big run, and its parts cost very differently
    seconds: dict[str, float] = field(default_factory=dict)


WRITER_MEMORY_LIMIT = os.environ.get("NEWSFLOW_DUCKDB_MEMORY", "512MB")
MAX_FEATURE_DF = 200  # a feature shared by more articles than this relates nothing useful
RELATED_CHUNK = 2000  # changed articles whose related articles are derived in one statement
EXPORT_BATCH_ROWS = 5000  # articles per partitioned COPY (whole dates): 20k exported in 256 MB


class Warehouse:
    """A warehouse home directory: DuckDB file, Parquet exports, raw archive, GX, staging."""

    def __init__(self, home: Path | str | None = None) -> None:
        self.home = Path(home).resolve() if home else default_home()
        self.db_path = self.home / DB_NAME
        self.parquet_dir = self.home / "parquet"
        self.archive_dir = self.home / "archive"
        self.gx_dir = self.home / "gx"
        self.staging_dir = self.home / "staging"
        self._specs: list[TableSpec] | None = None

    # -- connections ---------------------------------------------------------------------
    @property
    def specs(self) -> list[TableSpec]:
        if self._specs is None:
            self._specs = all_specs()
        return self._specs

    def spec(self, name: str) -> TableSpec:
        for s in self.specs:
            if s.name == name:
                return s
        raise KeyError(f"no published table named {name!r}")

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        if read_only:
            if not self.db_path.exists():
                raise FileNotFoundError(
                    f"no warehouse at {self.db_path}: run `newsflow run` first or pass --home"
                )
            return duckdb.connect(str(self.db_path), read_only=True)
        for d in (self.home, self.parquet_dir, self.archive_dir, self.staging_dir):
            d.mkdir(parents=True, exist_ok=True)
        # The writer shares the machine with the CPU workers: cap DuckDB's buffer pool (it
        # spills to the home's temp dir past it) instead of its default of 80% of RAM.
        con = duckdb.connect(
            str(self.db_path),
            config={
                "memory_limit": WRITER_MEMORY_LIMIT,
                "temp_directory": str(self.home / ".duckdb-tmp"),
            },
        )
        self.migrate(con)
        return con

    # -- schema --------------------------------------------------------------------------
    def migrate(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        """Create missing tables and add missing columns; every change is recorded."""
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(applied_at TIMESTAMPTZ, statement VARCHAR)"
        )
        # every table's columns in one catalogue query: a run connects four times, and a
        # query per table took 46 ms a connection (19 tables), one query 5 ms
        existing: dict[str, set[str]] = {}
        for table, column in con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema='main' AND table_catalog=current_database()"
        ).fetchall():
            existing.setdefault(table, set()).add(column)
        applied: list[str] = []
        for spec in self.specs:
            if spec.name not in existing:
                empty = spec.schema.empty_table()  # noqa: F841 - referenced by DuckDB
                con.execute(f"CREATE TABLE {_ident(spec.name)} AS SELECT * FROM empty")
                applied.append(f"create table {spec.name}")
                continue
            cols = existing[spec.name]
            for f in spec.schema:
                if f.name in cols:
                    continue
                probe = pa.schema([f]).empty_table()  # noqa: F841 - referenced by DuckDB
                ddl_type = con.execute(
                    "SELECT column_type FROM (DESCRIBE SELECT * FROM probe)"
                ).fetchone()
                stmt = f"ALTER TABLE {_ident(spec.name)} ADD COLUMN {_ident(f.name)} {ddl_type[0]}"
                con.execute(stmt)
                applied.append(stmt)
        for stmt in applied:
            con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [utcnow(), stmt])
        return applied

    # -- reads used by the flow ----------------------------------------------------------
    def fetch_state(self) -> dict[str, dict]:
        """canonical_url -> last fetch state, for conditional and due-based re-fetching."""
        if not self.db_path.exists():
            return {}
        con = self.connect(read_only=True)
        try:
            tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
            if "fetch_state" not in tables:
                return {}
            t = con.execute("SELECT * FROM fetch_state").to_arrow_table()
        finally:
            con.close()
        return {r["canonical_url"]: r for r in to_rows(t)}

    def query(self, sql: str) -> pa.Table:
        con = self.connect(read_only=True)
        try:
            return con.execute(sql).to_arrow_table()
        finally:
            con.close()

    # -- the load ------------------------------------------------------------------------
    def load(
        self,
        con: duckdb.DuckDBPyConnection,
        staged: dict[str, Sequence[pa.Table | Path | str]],
        run_row: dict | None = None,
        run_id: str | None = None,
    ) -> LoadStats:
        """Load one run's output in ONE transaction (all or nothing), idempotently.

        ``articles`` decides what changed: an article whose ``content_hash`` equals the stored
        one is left as it is, and so are its child rows (tables with mode "article"). Upsert
        tables replace a row only when its content differs; log tables add only new keys.
        """
        stats = LoadStats()
        try:
            # Staging first, outside the transaction: DuckDB (1.5.5) loses the rows of a table
            # created inside a transaction once more than one row group (122,880 rows) is
            # appended to it, so a staging table created in the transaction came back empty at
            # scale (no dedup_bands, article_entities, ... in a 20k-page run). Staging tables
            # are temporary and only read by the merge, so the load stays all or nothing.
            t0 = time.perf_counter()
            for spec in self.specs:
                self._stage(con, spec, staged.get(spec.name) or [])
            stats.seconds["stage"] = time.perf_counter() - t0
            con.execute("BEGIN TRANSACTION")
            try:
                self._merge_all(con, staged, stats, run_row, run_id)
                t0 = time.perf_counter()
                con.execute("COMMIT")
                stats.seconds["commit"] = time.perf_counter() - t0
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            for spec in self.specs:
                con.execute(f"DROP TABLE IF EXISTS {_ident('_s_' + spec.name)}")
        return stats

    def _merge_all(
        self,
        con: duckdb.DuckDBPyConnection,
        staged: dict[str, Sequence[pa.Table | Path | str]],
        stats: LoadStats,
        run_row: dict | None,
        run_id: str | None,
    ) -> None:
        """The transaction's body: decide what changed, then merge every staged table."""
        if "articles" in staged:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _changed AS "
                "SELECT DISTINCT s.article_id FROM _s_articles s LEFT JOIN articles a "
                "ON a.article_id = s.article_id "
                "WHERE a.article_id IS NULL OR a.content_hash IS DISTINCT FROM s.content_hash"
            )
        else:
            con.execute("CREATE OR REPLACE TEMP TABLE _changed (article_id VARCHAR)")
        stats.changed_articles = con.execute("SELECT count(*) FROM _changed").fetchone()[0]
        t0 = time.perf_counter()
        for spec in self.specs:
            if spec.name not in staged:
                continue
            stats.inserted[spec.name] = self._merge(con, spec)
        stats.seconds["merge"] = time.perf_counter() - t0
        if run_id is not None and {"article_entities", "related_articles"} <= self._names():
            t0 = time.perf_counter()
            stats.inserted["related_articles"] = self._derive_related(con, run_id)
            stats.seconds["related"] = time.perf_counter() - t0
        if run_row is not None:
            self._upsert_run(con, run_row)

    def _stage(self, con: duckdb.DuckDBPyConnection, spec: TableSpec, parts: Iterable) -> None:
        name = _ident("_s_" + spec.name)
        empty = spec.schema.empty_table()  # noqa: F841 - referenced by DuckDB
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM empty")
        files: list[str] = []
        for part in parts:
            if isinstance(part, pa.Table):
                if part.num_rows == 0:
                    continue
                arrow_part = part  # noqa: F841 - referenced by DuckDB
                con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM arrow_part")
            else:
                files.append(str(part))
        if files:
            con.execute(
                f"INSERT INTO {name} BY NAME SELECT * FROM read_parquet(?, union_by_name=true)",
                [files],
            )

    def _merge(self, con: duckdb.DuckDBPyConnection, spec: TableSpec) -> int:
        t, s = _ident(spec.name), _ident("_s_" + spec.name)
        key_eq = " AND ".join(f"t.{_ident(k)} IS NOT DISTINCT FROM s.{_ident(k)}" for k in spec.key)
        key_cols = ", ".join(_ident(k) for k in spec.key)
        # A batch may carry the same key twice (e.g. two shards): keep one row per key. The
        # copy that drops them is made only when there are any; looking costs one GROUP BY,
        # a fraction of copying a table that almost never has them.
        has_dups = con.execute(
            f"SELECT EXISTS (SELECT 1 FROM {s} GROUP BY {key_cols} HAVING count(*) > 1)"
        ).fetchone()[0]
        if has_dups:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _dedup AS SELECT * FROM {s} "
                f"QUALIFY row_number() OVER (PARTITION BY {key_cols}) = 1"
            )
            con.execute(f"DELETE FROM {s}")
            con.execute(f"INSERT INTO {s} SELECT * FROM _dedup")
            con.execute("DROP TABLE _dedup")
        before = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        if spec.mode == "article":
            con.execute(
                f"DELETE FROM {s} WHERE article_id NOT IN (SELECT article_id FROM _changed)"
            )
            con.execute(f"DELETE FROM {t} WHERE article_id IN (SELECT article_id FROM _changed)")
            con.execute(f"INSERT INTO {t} BY NAME SELECT * FROM {s}")
        elif spec.mode == "upsert":
            content = [f.name for f in spec.schema if f.name not in _PROVENANCE]
            differs = " OR ".join(f"t.{_ident(c)} IS DISTINCT FROM s.{_ident(c)}" for c in content)
            con.execute(
                f"DELETE FROM {t} AS t WHERE EXISTS "
                f"(SELECT 1 FROM {s} s WHERE {key_eq} AND ({differs}))"
            )
            con.execute(
                f"INSERT INTO {t} BY NAME SELECT s.* FROM {s} s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE {key_eq})"
            )
        elif spec.mode == "log":
            con.execute(
                f"INSERT INTO {t} BY NAME SELECT s.* FROM {s} s "
                f"WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE {key_eq})"
            )
        else:
            raise ValueError(f"table {spec.name}: unknown mode {spec.mode!r}")
        after = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        return after - before

    def _names(self) -> set[str]:
        return {s.name for s in self.specs}

    def _derive_related(self, con: duckdb.DuckDBPyConnection, run_id: str, top_k: int = 5) -> int:
        """Related articles for the articles this run changed, against the whole warehouse.

        Features are the entities (weight 1) and keywords (weight 0.5) of each article,
        idf-weighted, scored by cosine similarity; copies of the same story (same cluster) are
        never related to each other (so their pairs are not even formed). Features carried by
        a large share of all articles, or by more than ``MAX_FEATURE_DF`` of them, say little
        and would make the pair join grow with the square of the warehouse, so they are left
        out: with the cap, pairs grow linearly with articles.
        """
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _feats_named AS
            WITH raw AS (
                SELECT DISTINCT ae.article_id,
                       'e:' || coalesce(e.canonical_name, ae.entity_id) AS f,
                       1.0 AS w
                FROM article_entities ae LEFT JOIN entities e USING (entity_id)
                WHERE ae.entity_id IS NOT NULL
                UNION ALL
                SELECT DISTINCT article_id, 'k:' || lower(keyword) AS f, 0.5 AS w
                FROM article_keywords WHERE keyword IS NOT NULL
            ), dedup AS (
                SELECT article_id, f, max(w) AS w FROM raw GROUP BY ALL
            ), n AS (SELECT count(DISTINCT article_id) AS n FROM dedup),
            df AS (SELECT f, count(*) AS df FROM dedup GROUP BY f)
            SELECT d.article_id, d.f, d.w * ln((n.n + 1.0) / df.df) AS w, a.cluster_id
            FROM dedup d JOIN df USING (f) JOIN articles a USING (article_id), n
            WHERE df.df > 1 AND df.df <= least(greatest(50, 0.05 * n.n), ?)
            """,
            [MAX_FEATURE_DF],
        )
        # The pair join and its GROUP BY are the load's heaviest statements (tens of millions
        # of rows at 20,000 articles with big syndication clusters): on integer keys instead
        # of article ids, feature strings and cluster ids they take half the time. Numbers
        # follow the strings' order, so every ORDER BY on them ranks exactly as on the strings.
        for table, col, where in (
            ("_aid", "article_id", ""),
            ("_fid", "f", ""),
            ("_cid", "cluster_id", "WHERE cluster_id IS NOT NULL"),
        ):
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT {col}, "
                f"CAST(row_number() OVER (ORDER BY {col}) AS INTEGER) AS n "
                f"FROM (SELECT DISTINCT {col} FROM _feats_named {where})"
            )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _feats AS "
            "SELECT a.n AS a, f.n AS fid, s.w, c.n AS c FROM _feats_named s "
            "JOIN _aid a USING (article_id) JOIN _fid f USING (f) "
            "LEFT JOIN _cid c USING (cluster_id)"
        )
        con.execute("DROP TABLE _feats_named")
        con.execute(
            "DELETE FROM related_articles WHERE article_id IN (SELECT article_id FROM _changed)"
        )
        before = con.execute("SELECT count(*) FROM related_articles").fetchone()[0]
        # Scoring every (changed article, candidate) pair is the one part of the load whose
        # size grows with the run (pairs ~ articles x candidates), so: the changed articles
        # are taken a slice at a time (an article's ranking only involves its own pairs), and
        # the list of shared features, an aggregate state DuckDB cannot spill, is built only
        # for the top_k pairs kept per article. One statement with lists for every pair ran
        # out of the writer's memory at 5,000 pages.
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _norms AS "
            "SELECT a, sqrt(sum(w * w)) AS nrm FROM _feats GROUP BY 1"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _rel_todo AS SELECT x.n AS a, "
            "(row_number() OVER (ORDER BY x.n) - 1) // ? AS part "
            "FROM _changed JOIN _aid x USING (article_id)",
            [RELATED_CHUNK],
        )
        parts = con.execute("SELECT coalesce(max(part) + 1, 0) FROM _rel_todo").fetchone()[0]
        for part in range(parts):
            self._insert_related(con, part, run_id, top_k)
        for name in (
            "_rel_top",
            "_rel_fa",
            "_rel_todo",
            "_norms",
            "_feats",
            "_aid",
            "_fid",
            "_cid",
        ):
            con.execute(f"DROP TABLE IF EXISTS {name}")
        return con.execute("SELECT count(*) FROM related_articles").fetchone()[0] - before

    def _insert_related(
        self, con: duckdb.DuckDBPyConnection, part: int, run_id: str, top_k: int
    ) -> None:
        """Related articles of one slice (``_rel_todo.part``) of the changed articles.

        First the ``top_k`` pairs per article by cosine score (a plain sum per pair, which
        DuckDB spills when it must), kept in ``_rel_top`` (created whole by one statement:
        see ``load`` on appending to tables created in the transaction); then the shared
        features of those pairs only, strongest first. The slice's features are materialised
        first: filtered inside the pair join, DuckDB built the pairs of the whole warehouse
        for every slice (23 s a slice, 510 s in all at 20,000 articles; 3 s this way).
        Ranks and shared-feature order break ties on a rounded score and then by id: a float
        sum's last bits depend on the order DuckDB's threads add it up, so the same warehouse
        gave different ranks run to run.
        """
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _rel_fa AS SELECT f.* FROM _feats f "
            "JOIN _rel_todo t USING (a) WHERE t.part = ?",
            [part],
        )
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE _rel_top AS
            WITH pairs AS (
                SELECT x.a, y.a AS b, sum(x.w * y.w) AS dot
                FROM _rel_fa x JOIN _feats y ON x.fid = y.fid
                WHERE x.a <> y.a AND x.c IS DISTINCT FROM y.c
                GROUP BY 1, 2
            ), scored AS (
                SELECT p.a, p.b, p.dot / (na.nrm * nb.nrm) AS score
                FROM pairs p JOIN _norms na ON na.a = p.a JOIN _norms nb ON nb.a = p.b
            )
            SELECT a, b, score,
                   CAST(row_number() OVER (PARTITION BY a
                        ORDER BY round(score, 9) DESC, b) AS INTEGER) AS rank
            FROM scored
            QUALIFY rank <= ?
            """,
            [int(top_k)],
        )
        con.execute(
            """
            INSERT INTO related_articles BY NAME
            WITH shared AS (
                SELECT t.a, t.b, t.rank, t.score, x.fid, x.w * y.w AS sw
                FROM _rel_top t
                JOIN _rel_fa x ON x.a = t.a
                JOIN _feats y ON y.a = t.b AND y.fid = x.fid
                QUALIFY row_number() OVER (
                    PARTITION BY t.a, t.b ORDER BY x.w * y.w DESC, x.fid
                ) <= 8
            )
            SELECT xa.article_id, xb.article_id AS related_article_id, s.rank,
                   round(s.score, 6) AS score,
                   list(f.f[3:] ORDER BY s.sw DESC, s.fid) AS shared,
                   ? AS run_id
            FROM shared s
            JOIN _aid xa ON xa.n = s.a
            JOIN _aid xb ON xb.n = s.b
            JOIN _fid f ON f.n = s.fid
            GROUP BY xa.article_id, xb.article_id, s.rank, s.score
            """,
            [run_id],
        )

    def _upsert_run(self, con: duckdb.DuckDBPyConnection, row: dict) -> None:
        con.execute("DELETE FROM runs WHERE run_id = ?", [row["run_id"]])
        norm = {f.name: row.get(f.name) for f in self.spec("runs").schema}
        for k in ("counts", "stage_seconds"):
            if norm[k] is not None and not isinstance(norm[k], str):
                norm[k] = json.dumps(norm[k], sort_keys=True)
        run_tbl = pa.Table.from_pylist([norm], schema=self.spec("runs").schema)  # noqa: F841
        con.execute("INSERT INTO runs BY NAME SELECT * FROM run_tbl")

    def record_run(self, row: dict) -> None:
        """Write the run's status outside the data load (e.g. 'running', 'failed')."""
        con = self.connect()
        try:
            con.execute("BEGIN TRANSACTION")
            self._upsert_run(con, row)
            con.execute("COMMIT")
        finally:
            con.close()

    # -- publish -------------------------------------------------------------------------
    def _export_by_date(self, con: duckdb.DuckDBPyConnection, target: Path) -> None:
        """Articles into one folder per publication date, EXPORT_BATCH_ROWS articles at a time.

        A partitioned COPY keeps every partition's rows in memory until it ends and cannot
        spill: the whole table at once ran out of a 256 MB writer limit at 20,000 articles
        (172 dates), so the memory it needs grew with the warehouse. Whole dates are grouped
        into batches, so each date is still one file and the batches never write to the same
        folder; the memory needed is now that of one batch (or of the largest single date).
        """
        day = "coalesce(strftime(published, '%Y-%m-%d'), 'unknown')"
        counts = con.execute(
            f"SELECT {day} AS d, count(*) FROM articles GROUP BY 1 ORDER BY 1"
        ).fetchall()
        batches: list[list[str]] = []
        rows = 0
        for d, n in counts:
            if not batches or rows + n > EXPORT_BATCH_ROWS:
                batches.append([])
                rows = 0
            batches[-1].append(d)
            rows += n
        for dates in batches:
            con.execute(
                f"COPY (SELECT *, {day} AS published_date FROM articles "
                f"WHERE {day} IN (SELECT unnest(?::VARCHAR[]))) TO '{target}' "
                "(FORMAT parquet, PARTITION_BY (published_date), OVERWRITE_OR_IGNORE)",
                [dates],
            )

    def export_parquet(self, con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Path]:
        """Export every table to Parquet; readers never see a half-written export.

        Each export is written to a fresh version folder and then a symlink named after the
        table is swapped to it with one atomic rename.
        """
        versions = self.parquet_dir / ".versions"
        versions.mkdir(parents=True, exist_ok=True)
        out: dict[str, Path] = {}
        for spec in self.specs:
            target = versions / f"{spec.name}-{run_id}"
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            if spec.name == "articles":
                self._export_by_date(con, target)
            else:
                con.execute(
                    f"COPY {_ident(spec.name)} TO '{target / 'data.parquet'}' (FORMAT parquet)"
                )
            link = self.parquet_dir / spec.name
            tmp_link = self.parquet_dir / f".{spec.name}.tmp"
            if tmp_link.is_symlink() or tmp_link.exists():
                tmp_link.unlink()
            os.symlink(os.path.relpath(target, self.parquet_dir), tmp_link)
            if link.exists() and not link.is_symlink():
                shutil.rmtree(link)
            old = os.path.realpath(link) if link.is_symlink() else None
            os.replace(tmp_link, link)
            if old and Path(old) != target.resolve() and Path(old).exists():
                shutil.rmtree(old, ignore_errors=True)
            out[spec.name] = link
        return out
