"""`newsflow extract`: one page through the pipeline's own extract and clean code."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tasks.clean import clean_record
from tasks.extract import extract_html

PUBLIC_FIELDS = (
    "title",
    "authors",
    "published",
    "body",
    "language",
    "url",
    "canonical_url",
    "outlet",
    "site_name",
    "description",
    "origin_credit",
)


def _load(item: str) -> tuple[str, str | None]:
    if item.startswith(("http://", "https://")):
        import httpx

        resp = httpx.get(
            item,
            follow_redirects=True,
            timeout=20.0,
            headers={"User-Agent": "newsflow/0.1 (+extract)"},
        )
        resp.raise_for_status()
        return resp.text, str(resp.url)
    path = Path(item)
    raw = path.read_bytes()
    from charset_normalizer import from_bytes

    best = from_bytes(raw).best()
    return (str(best) if best else raw.decode("utf-8", "replace")), None


def extract_one(item: str) -> tuple[dict | None, str | None]:
    """Return (record, None) or (None, reject reason) for one file path or URL."""
    try:
        html, url = _load(item)
    except Exception as exc:
        return None, f"load_error: {type(exc).__name__}: {exc}"
    record, reason, detail = extract_html(html, url=url)
    if record is None:
        return None, f"{reason}: {detail}" if detail else reason
    cleaned, reason = clean_record(record)
    if cleaned is None:
        return None, reason
    pub = cleaned.get("published")
    if isinstance(pub, dt.date):
        cleaned["published"] = pub.isoformat()
    return {k: cleaned.get(k) for k in PUBLIC_FIELDS}, None
