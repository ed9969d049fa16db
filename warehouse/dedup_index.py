"""Dedup's view of the warehouse: ``History`` over the persisted dedup index tables.

Why here: only ``warehouse/`` opens DuckDB. A new batch's lookup keys go into a temp table and
one join against ``dedup_bands`` (at most ``band_cap`` rows per key) returns the candidate
documents with their stored fingerprints, so memory holds the batch and its candidates, never
the history. The tables themselves are declared in ``tasks.dedup.TABLE_SPECS`` and created by
the warehouse migration; ``ensure_tables``/``apply_result`` are a minimal stand-alone writer for
tests and benchmarks (the flow loads ``DedupResult`` with the run's single transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import count

import duckdb
import pyarrow as pa

from tasks.dedup import CANDIDATES, KEY_COUNTS, META_COLUMNS, TABLE_SPECS, DedupResult

_SEQ = count()
_DUCK_TYPES = {
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float32(): "REAL",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.binary(): "BLOB",
    pa.date32(): "DATE",
}


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ"
    return _DUCK_TYPES[t]


class DuckDBHistory:
    """``tasks.dedup.History`` over a DuckDB connection (read-only use of the index tables)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def _register(self, table: pa.Table) -> str:
        name = f"_dedup_in_{next(_SEQ)}"
        self.con.register(name, table)
        return name

    def candidates(self, keys: pa.Table, limit: int | None = None) -> pa.Table:
        name = self._register(keys.select(["article_id", "band_key"]))
        try:
            # distinct (new doc, key) pairs first: a doc never lists a key twice, but be safe.
            # Rank before fetching fingerprints, so only the kept pairs carry their blobs.
            out = self.con.execute(
                f"""
                WITH k AS (SELECT DISTINCT article_id, band_key FROM {name}),
                pairs AS (
                    SELECT k.article_id, b.article_id AS cand_id, count(*)::INTEGER AS shared
                    FROM k JOIN dedup_bands b USING (band_key)
                    WHERE b.article_id <> k.article_id
                    GROUP BY ALL
                ),
                ranked AS (
                    SELECT p.article_id, p.cand_id, p.shared, row_number() OVER (
                        PARTITION BY p.article_id
                        ORDER BY p.shared DESC, coalesce(d.published, DATE '9999-12-31'),
                                 p.cand_id) AS rn
                    FROM pairs p JOIN dedup_docs d ON d.article_id = p.cand_id
                )
                SELECT r.article_id, r.cand_id, r.shared, d.cluster_id, d.exact_key, d.shingles,
                       d.bounds, d.published, d.title, d.outlet, d.url
                FROM ranked r JOIN dedup_docs d ON d.article_id = r.cand_id
                WHERE r.rn <= $limit
                """,
                {"limit": limit if limit is not None else 2**62},
            ).to_arrow_table()
        finally:
            self.con.unregister(name)
        return out.cast(CANDIDATES)

    def key_counts(self, keys: pa.Table) -> pa.Table:
        name = self._register(keys.select(["band_key"]))
        try:
            out = self.con.execute(
                f"""
                SELECT b.band_key, count(*) AS n
                FROM (SELECT DISTINCT band_key FROM {name}) k JOIN dedup_bands b USING (band_key)
                GROUP BY ALL
                """
            ).to_arrow_table()
        finally:
            self.con.unregister(name)
        return out.cast(KEY_COUNTS)

    def _meta_where(self, column: str, values: Sequence[str]) -> pa.Table:
        name = self._register(pa.table({"v": pa.array(list(values), pa.string())}))
        cols = ", ".join(f"d.{c}" for c in META_COLUMNS)
        try:
            out = self.con.execute(
                f"SELECT {cols} FROM dedup_docs d JOIN (SELECT DISTINCT v FROM {name}) x "
                f"ON d.{column} = x.v"
            ).to_arrow_table()
        finally:
            self.con.unregister(name)
        return out

    def lookup(self, article_ids: Sequence[str]) -> pa.Table:
        return self._meta_where("article_id", article_ids)

    def members(self, cluster_ids: Sequence[str]) -> pa.Table:
        return self._meta_where("cluster_id", cluster_ids)


def ensure_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the dedup tables if missing and add missing (nullable) columns to older ones
    (stand-alone use; the warehouse migrates normally)."""
    for spec in TABLE_SPECS:
        cols = ", ".join(f'"{f.name}" {_duck_type(f.type)}' for f in spec.schema)
        con.execute(f'CREATE TABLE IF NOT EXISTS "{spec.name}" ({cols})')
        have = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                [spec.name],
            ).fetchall()
        }
        for f in spec.schema:
            if f.name not in have:
                con.execute(f'ALTER TABLE "{spec.name}" ADD COLUMN "{f.name}" {_duck_type(f.type)}')


def apply_result(con: duckdb.DuckDBPyConnection, result: DedupResult) -> None:
    """Write one DedupResult in one transaction: index rows replace per article_id, clusters
    and syndication rows upsert by key (what the warehouse loader does for these specs)."""
    specs = {s.name: s for s in TABLE_SPECS}
    parts = {
        "dedup_docs": result.index_rows["dedup_docs"],
        "dedup_bands": result.index_rows["dedup_bands"],
        "clusters": result.clusters,
        "article_syndication": result.syndication,
    }
    con.execute("BEGIN TRANSACTION")
    try:
        for table, rows in parts.items():
            spec = specs[table]
            name = f"_dedup_load_{next(_SEQ)}"
            con.register(name, rows)
            try:
                if spec.mode == "article":
                    keyset = result.index_rows["dedup_docs"].select(["article_id"])
                    kname = f"_dedup_keys_{next(_SEQ)}"
                    con.register(kname, keyset)
                    con.execute(
                        f'DELETE FROM "{table}" WHERE article_id IN '
                        f"(SELECT article_id FROM {kname})"
                    )
                    con.unregister(kname)
                else:
                    cond = " AND ".join(f't."{k}" = s."{k}"' for k in spec.key)
                    con.execute(f'DELETE FROM "{table}" t USING {name} s WHERE {cond}')
                cols = ", ".join(f'"{f.name}"' for f in spec.schema)
                con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM {name}')
            finally:
                con.unregister(name)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
