"""Extraction behaviour users rely on, checked against golden pages the project owns.

Each ``tests/fixtures/pages/<name>.html`` is a hand-written page in the style of the news and
aggregator pages we scrape; ``<name>.expected.json`` holds the reviewed output of
extract + clean. When a change to the output is intended, regenerate and review the diff:

    .venv/bin/python tests/test_extract.py --update
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import extract as extract_mod  # noqa: E402
from tasks.clean import clean_record  # noqa: E402
from tasks.extract import extract_batch, extract_html  # noqa: E402
from tasks.schema import ARTICLES_CORE, PAGES, REJECTS, stable_id  # noqa: E402

PAGES_DIR = Path(__file__).parent / "fixtures" / "pages"
GOLDEN_FIELDS = ("title", "authors", "published", "language", "canonical_url", "site_name",
                 "origin_credit", "syndication_hints", "body")


def _url(name: str) -> str:
    return f"https://news.example.org/2025/{name}"


def run_page(name: str) -> dict:
    """extract + clean one fixture page into the golden-file shape."""
    html = (PAGES_DIR / f"{name}.html").read_text(encoding="utf-8")
    record, reason, _ = extract_html(html, _url(name))
    if record is None:
        return {"reject_reason": reason}
    cleaned, reason = clean_record(record)
    if cleaned is None:
        return {"reject_reason": reason}
    out = {k: cleaned.get(k) for k in GOLDEN_FIELDS}
    out["published"] = str(out["published"]) if out["published"] else None
    return out


CASES = sorted(p.name.removesuffix(".html") for p in PAGES_DIR.glob("*.html"))


@pytest.mark.parametrize("name", CASES)
def test_page_matches_golden_file(name: str) -> None:
    expected = json.loads((PAGES_DIR / f"{name}.expected.json").read_text(encoding="utf-8"))
    assert run_page(name) == expected


def _pages(rows: list[dict]) -> pa.Table:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    full = [{"page_id": stable_id(r["url"]), "final_url": r["url"], "source": "test",
             "status": 200, "content_type": "text/html", "fetched_at": now, "run_id": "r0",
             **r} for r in rows]
    return pa.Table.from_pylist(full, schema=PAGES)


def test_batch_outputs_contract_tables_and_rejects_empty_pages() -> None:
    html = (PAGES_DIR / "wire_ca.html").read_text(encoding="utf-8")
    pages = _pages([
        {"url": _url("wire_ca"), "html": html, "outlet": "Capital Courier"},
        {"url": _url("empty"), "html": "   ", "outlet": None},
    ])
    articles, rejects = extract_batch(pages, "run-1")
    assert articles.schema == ARTICLES_CORE and rejects.schema == REJECTS
    assert articles.num_rows == 1
    row = articles.to_pylist()[0]
    assert row["article_id"] == stable_id(row["canonical_url"] or row["url"])
    assert row["outlet"] == "Capital Courier" and row["run_id"] == "run-1"
    assert str(row["published"]) == "2025-02-12"
    assert rejects.to_pylist()[0]["reason"] == "empty_page"
    assert rejects.to_pylist()[0]["stage"] == "extract"


def test_a_page_that_raises_is_a_parse_error_reject(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(html: str, url: str | None = None, outlet: str | None = None) -> None:
        raise RuntimeError("parser exploded")

    monkeypatch.setattr(extract_mod, "extract_html", boom)
    _, rejects = extract_batch(_pages([{"url": _url("x"), "html": "<p>x</p>"}]), "r")
    rej = rejects.to_pylist()[0]
    assert rej["reason"] == "parse_error" and "parser exploded" in rej["detail"]
    assert rej["item_id"] == stable_id(_url("x")) and rej["url"] == _url("x")


def test_a_page_that_hangs_times_out_and_the_batch_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = extract_mod.extract_html

    def slow_then_real(html: str, url: str | None = None, outlet: str | None = None):
        if "hang" in (url or ""):
            time.sleep(5)
        return real(html, url, outlet)

    monkeypatch.setattr(extract_mod, "extract_html", slow_then_real)
    html = (PAGES_DIR / "wire_ca.html").read_text(encoding="utf-8")
    pages = _pages([{"url": _url("hang"), "html": html}, {"url": _url("ok"), "html": html}])
    started = time.monotonic()
    articles, rejects = extract_batch(pages, "r", time_limit_s=0.3)
    assert time.monotonic() - started < 3
    assert [r["reason"] for r in rejects.to_pylist()] == ["timeout"]
    assert articles.num_rows == 1


def test_batch_called_from_a_worker_thread_still_enforces_the_time_limit() -> None:
    """Prefect runs tasks in threads, where signals cannot be used; a child process is."""
    html = (PAGES_DIR / "wire_ca.html").read_text(encoding="utf-8")
    pages = _pages([{"url": _url("ok"), "html": html}])
    with ThreadPoolExecutor(1) as pool:
        articles, rejects = pool.submit(extract_batch, pages, "r", time_limit_s=5).result()
    assert articles.num_rows == 1 and rejects.num_rows == 0


def update_golden_files() -> None:
    for name in CASES:
        path = PAGES_DIR / f"{name}.expected.json"
        path.write_text(json.dumps(run_page(name), ensure_ascii=False, indent=2) + "\n",
                        encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__" and "--update" in sys.argv:
    update_golden_files()
