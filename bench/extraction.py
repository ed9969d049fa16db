"""Extraction benchmark: newsflow extract+clean vs bare trafilatura, side by side.

    python bench/extraction.py CORPUS_DIR [--out DIR] [--workers N] [--scorer PATH]

Why: quality and speed must be measured on the same pages, the same cores and in the same
run, or the comparison says more about the machine's load than about the code. For every
``<case>/page.html`` (URL from ``expected.json`` when present) it writes one prediction JSON
per case for newsflow (tasks.extract.extract_html + tasks.clean.clean_record, the functions
the pipeline runs) and for bare ``trafilatura.extract(..., with_metadata=True,
output_format='json')``, scores both folders with the shared scorer and prints both tables
and pages per CPU-second. Pages are interleaved (newsflow then trafilatura per page) so
both sides see the same cache and load conditions.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _newsflow(html: str, url: str | None) -> tuple[dict, str | None]:
    from tasks.clean import clean_record
    from tasks.extract import extract_html

    record, reason, detail = extract_html(html, url)
    if record is None:
        return {"title": None, "authors": None, "published": None, "body": None}, reason
    cleaned, reason = clean_record(record)
    if cleaned is None:
        return {
            "title": record.get("title"),
            "authors": None,
            "published": None,
            "body": None,
        }, reason
    return {
        "title": cleaned["title"],
        "authors": cleaned["authors"],
        "published": cleaned["published"],
        "body": cleaned["body"],
        "origin_credit": cleaned.get("origin_credit"),
    }, None


def _trafilatura(html: str, url: str | None) -> dict:
    import trafilatura

    out = trafilatura.extract(html, url=url, with_metadata=True, output_format="json")
    j = json.loads(out) if out else {}
    return {
        "title": j.get("title"),
        "authors": j.get("author"),
        "published": j.get("date"),
        "body": j.get("text"),
    }


def _run_case(case_dir: str) -> tuple[str, dict, dict, float, float, str | None]:
    """Both extractors on one page; returns predictions and CPU seconds of each."""
    d = Path(case_dir)
    html = (d / "page.html").read_text(encoding="utf-8", errors="replace")
    exp_path = d / "expected.json"
    url = json.loads(exp_path.read_text(encoding="utf-8")).get("url") if exp_path.exists() else None
    t0 = time.process_time()
    try:
        nf, reason = _newsflow(html, url)
    except Exception as exc:  # reported, scored as empty: the bench must show failures
        nf, reason = {"title": None, "authors": None, "published": None, "body": None}, repr(exc)
    t1 = time.process_time()
    tr = _trafilatura(html, url)
    t2 = time.process_time()
    return d.name, nf, tr, t1 - t0, t2 - t1, reason


def _warm(_: int) -> None:
    """Import both stacks before timing, so import cost is not billed to the first pages."""
    import trafilatura  # noqa: F401

    import tasks.clean
    import tasks.extract  # noqa: F401

    tasks.clean.junk_rules()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("corpus", type=Path, help="folder of <case>/page.html (+ expected.json)")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "extraction")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--scorer", type=Path, default=REPO.parent / "shared" / "bench" / "score_extraction.py"
    )
    args = ap.parse_args(argv)

    cases = sorted(str(p.parent) for p in args.corpus.glob("*/page.html"))
    if not cases:
        print(f"no <case>/page.html under {args.corpus}", file=sys.stderr)
        return 2
    nf_dir, tr_dir = args.out / "newsflow", args.out / "trafilatura"
    for d in (nf_dir, tr_dir):
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("*.json"):
            old.unlink()

    cpu_nf = cpu_tr = 0.0
    rejects: dict[str, str] = {}
    wall = time.monotonic()
    with get_context("spawn").Pool(args.workers) as pool:
        pool.map(_warm, range(args.workers))
        for name, nf, tr, c_nf, c_tr, reason in pool.imap_unordered(_run_case, cases, chunksize=4):
            cpu_nf += c_nf
            cpu_tr += c_tr
            if reason:
                rejects[name] = reason
            (nf_dir / f"{name}.json").write_text(
                json.dumps(nf, ensure_ascii=False, default=str), encoding="utf-8"
            )
            (tr_dir / f"{name}.json").write_text(
                json.dumps(tr, ensure_ascii=False), encoding="utf-8"
            )
    wall = time.monotonic() - wall

    for label, d in (("newsflow (extract+clean)", nf_dir), ("trafilatura 2 bare", tr_dir)):
        print(f"\n== {label}: {d}")
        sys.stdout.flush()
        subprocess.run(
            [
                sys.executable,
                str(args.scorer),
                str(d),
                str(args.corpus),
                "--json-out",
                str(d.parent / f"{d.name}.score.json"),
            ],
            check=False,
        )
    n = len(cases)
    print(f"\npages: {n}  workers: {args.workers}  wall: {wall:.1f}s (both sides)")
    print(f"newsflow    : {n / cpu_nf:6.1f} pages/CPU-s  ({cpu_nf:.1f} CPU-s)")
    print(f"trafilatura : {n / cpu_tr:6.1f} pages/CPU-s  ({cpu_tr:.1f} CPU-s)")
    print(f"speed ratio newsflow/trafilatura: {cpu_tr / cpu_nf:.2f}")
    if rejects:
        print(
            f"newsflow rejects ({len(rejects)}): "
            + ", ".join(f"{k}={v}" for k, v in sorted(rejects.items()))
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
