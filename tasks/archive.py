"""WARC archive of every HTTP response, and pages rebuilt from it with zero network requests.

Why archive: extraction and cleaning improve over time; keeping the raw responses lets
``newsflow reprocess`` rerun every later stage on exactly what was fetched, without asking
publishers again. Each shard writes its own ``<run_id>/<shard_id>.warc.gz`` (one gzip member
per record, so any record can be read alone from ``(file, offset, length)``), under a temporary
name renamed into place when the shard ends, so a reader never sees a half-written file.

The bytes-to-page helpers (charset detection, HTML sniffing, hashing) live here as well because
the live fetcher and the archive reader must turn bytes into ``PAGES`` rows identically: a page
replayed from the archive is the page that was fetched.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from tasks.schema import PAGES, stable_id

HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_SINGLE_BYTE = {"latin-1", "iso8859-1", "cp1252", "ascii", "iso8859-15"}

# custom WARC headers make the archive self-describing, so reprocess needs no side table
H_URL = "WARC-Newsflow-Url"  # URL as discovered (WARC-Target-URI is the URL of this hop)
H_SOURCE = "WARC-Newsflow-Source"
H_OUTLET = "WARC-Newsflow-Outlet"
H_RUN = "WARC-Newsflow-Run-Id"
H_FETCHED = "WARC-Newsflow-Fetched-At"  # microsecond ISO time (WARC-Date is seconds only)


# --- bytes -> page --------------------------------------------------------------------------
def content_hash(body: bytes) -> str:
    """Hash of the decompressed body bytes; unchanged bytes mean no new page."""
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def mime_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_html(content_type: str | None, head: bytes = b"") -> bool:
    """HTML by declared type; a missing or generic type is sniffed from the first bytes."""
    mt = mime_type(content_type)
    if mt in HTML_TYPES:
        return True
    if mt in ("", "application/octet-stream", "text/plain"):
        h = head[:1024].lstrip().lower()
        return h.startswith((b"<!doctype html", b"<html")) or b"<html" in h
    return False


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip().strip("\"'")).name
    except LookupError:
        return None


def declared_charset(content_type: str | None, body: bytes) -> tuple[str | None, str | None]:
    """(charset from the HTTP header, charset from a ``<meta>`` in the first 4 KB)."""
    header = None
    m = re.search(r"charset\s*=\s*[\"']?([^;\"'\s]+)", content_type or "", re.I)
    if m:
        header = _codec(m.group(1))
    mm = _META_CHARSET.search(body[:4096])
    meta = _codec(mm.group(1).decode("ascii", "ignore")) if mm else None
    return header, meta


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Decode a page to text even when its declared charset lies; return (text, encoding).

    Order: BOM, then each declared charset that decodes strictly (a cp1251 page labelled UTF-8
    fails strict UTF-8 and falls through), then undeclared UTF-8, then charset-normalizer. A
    page declared single-byte (latin-1 decodes anything) that is valid UTF-8 is read as UTF-8.
    """
    for bom, enc in (
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return body.decode(enc, "replace"), enc
    header, meta = declared_charset(content_type, body)
    utf8_ok = None
    for enc in (header, meta, "utf-8"):
        if not enc:
            continue
        try:
            text = body.decode(enc)
        except (UnicodeDecodeError, LookupError):
            continue
        if enc in _SINGLE_BYTE and enc != "ascii":
            if utf8_ok is None:
                try:
                    body.decode("utf-8")
                    utf8_ok = not body.isascii()
                except UnicodeDecodeError:
                    utf8_ok = False
            if utf8_ok:
                return body.decode("utf-8"), "utf-8"
        return text, enc
    from charset_normalizer import from_bytes

    best = from_bytes(body[:200_000]).best()
    if best is not None and best.encoding:
        return body.decode(best.encoding, "replace"), best.encoding
    return body.decode("utf-8", "replace"), "utf-8"


def page_row(
    *,
    url: str,
    final_url: str,
    source: str | None,
    outlet: str | None,
    status: int,
    content_type: str | None,
    fetched_at: datetime,
    body: bytes,
    run_id: str | None,
) -> dict[str, Any]:
    """One ``PAGES`` row; the single place where fetched bytes become a page."""
    text, _ = decode_html(body, content_type)
    return {
        "page_id": stable_id(url),
        "url": url,
        "final_url": final_url,
        "source": source,
        "outlet": outlet,
        "status": status,
        "content_type": content_type,
        "fetched_at": fetched_at,
        "html": text,
        "content_hash": content_hash(body),
        "run_id": run_id,
    }


# --- writing --------------------------------------------------------------------------------
@dataclass(frozen=True)
class WarcLocation:
    """Where one record lives: enough to read it back alone."""

    warc_file: str
    offset: int
    length: int


class WarcWriter:
    """Append HTTP responses of one shard to ``<archive_dir>/<run_id>/<shard_id>.warc.gz``.

    Records are written to ``<name>.open`` and the file is renamed on ``close()`` (also on
    error, since every record already written is complete). The returned ``warc_file`` is the
    final name, valid once the shard has ended.
    """

    def __init__(self, archive_dir: str | Path, shard_id: str, run_id: str) -> None:
        folder = Path(archive_dir) / (run_id or "run")
        folder.mkdir(parents=True, exist_ok=True)
        self.final = folder / f"{shard_id}.warc.gz"
        self.tmp = folder / f"{shard_id}.warc.gz.open"
        self.run_id = run_id
        self._f: io.BufferedWriter | None = None
        self._w: WARCWriter | None = None
        self.records = 0

    def _open(self) -> WARCWriter:
        if self._w is None:
            self._f = open(self.tmp, "wb")  # noqa: SIM115 - lives until close()
            self._w = WARCWriter(self._f, gzip=True, warc_version="1.1")
            info = self._w.create_warcinfo_record(
                self.final.name,
                {"software": "newsflow", "format": "WARC File Format 1.1", "run-id": self.run_id},
            )
            self._w.write_record(info)
        return self._w

    def write_response(
        self,
        *,
        url: str,
        target_uri: str,
        status: int,
        reason: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        fetched_at: datetime,
        source: str | None,
        outlet: str | None,
        http_version: str = "HTTP/1.1",
    ) -> WarcLocation:
        """Archive one response as received (still content-encoded) and say where it went."""
        w = self._open()
        assert self._f is not None
        # httpx has already removed chunked framing; keep the header list truthful about it
        hdrs = [
            (k, v) for k, v in headers if k.lower() not in ("transfer-encoding", "content-length")
        ]
        hdrs.append(("Content-Length", str(len(body))))
        http = StatusAndHeaders(f"{status} {reason or 'OK'}".strip(), hdrs, protocol=http_version)
        extra = {H_URL: url, H_RUN: self.run_id, H_FETCHED: fetched_at.isoformat()}
        if source is not None:
            extra[H_SOURCE] = source
        if outlet is not None:
            extra[H_OUTLET] = outlet
        rec = w.create_warc_record(
            target_uri,
            "response",
            payload=io.BytesIO(body),
            length=len(body),
            http_headers=http,
            warc_headers_dict=extra,
        )
        offset = self._f.tell()
        w.write_record(rec)
        self._f.flush()
        self.records += 1
        return WarcLocation(str(self.final), offset, self._f.tell() - offset)

    def close(self) -> Path | None:
        """Finish the shard's file atomically; None when nothing was archived."""
        if self._f is None:
            return None
        self._f.close()
        self._f = self._w = None
        if self.records == 0:
            self.tmp.unlink(missing_ok=True)
            return None
        os.replace(self.tmp, self.final)
        return self.final

    def __enter__(self) -> WarcWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- reading --------------------------------------------------------------------------------
@dataclass
class WarcRecord:
    """A response record read back: enough for a page row or a fetch-log row."""

    url: str
    final_url: str
    status: int
    content_type: str | None
    fetched_at: datetime
    source: str | None
    outlet: str | None
    run_id: str | None
    body: bytes | None  # None when larger than max_bytes
    offset: int
    length: int


def _parse_time(value: str | None) -> datetime:
    if value:
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.now(UTC)


GZIP_MEMBER = b"\x1f\x8b\x08"  # magic and deflate method: the first bytes of a gzip member
_PROBE_BYTES = 4096  # compressed bytes read to check that a candidate member opens a record


def gzip_layout(path: str | Path) -> Literal["plain", "stream", "records"]:
    """How a WARC is compressed: not at all, as one gzip stream, or record by record.

    Record by record (each record its own gzip member) is the WARC standard's recommended
    form, written by warcio, wget and Common Crawl: only then may a reader start at a member
    boundary inside the file (``record_start_in``). A plain or one-stream file must be read
    from its start; so must one whose first member does not inflate to a record, whose
    reader then reports where it breaks.
    """
    with open(path, "rb") as f:
        if f.read(3) != GZIP_MEMBER:
            return "plain"
        f.seek(0)
        d = zlib.decompressobj(31)
        head = b""
        while not d.eof:
            chunk = d.unconsumed_tail or f.read(1 << 16)
            if not chunk:
                return "stream"  # the first member is truncated
            try:
                out = d.decompress(chunk, 1 << 16)
            except zlib.error:
                return "stream"
            if len(head) < 5:
                head += out[:5]
        after = d.unused_data + f.read(3)
    # a second member right after the first: one stream for the whole file ends at EOF
    return "records" if head.startswith(b"WARC/") and after[:3] == GZIP_MEMBER else "stream"


def _opens_record(f: Any, pos: int) -> bool:
    """A gzip member starts at ``pos`` and its first bytes are a WARC record's version line.

    Inside compressed data the magic bytes turn up by chance about once per 16 MB; a chance
    match that also inflates to "WARC/" does not happen in practice.
    """
    f.seek(pos)
    try:
        out = zlib.decompressobj(31).decompress(f.read(_PROBE_BYTES), 8)
    except zlib.error:
        return False
    return out.startswith(b"WARC/")


def record_start_in(f: Any, start: int, end: int) -> int | None:
    """Offset of the first record of a record-gzipped WARC that starts in ``[start, end)``.

    Lets a shard be a byte range of the file: its reader finds its first record here and
    reads records while they start before ``end``, so every record belongs to exactly one
    range and no pass over the whole file is needed to plan the shards.
    """
    if start == 0:
        return 0 if end > 0 else None
    pos = start
    while pos < end:
        f.seek(pos)
        chunk = f.read(1 << 16)
        if len(chunk) < len(GZIP_MEMBER):
            return None
        i = chunk.find(GZIP_MEMBER)
        while i != -1 and pos + i < end:
            if _opens_record(f, pos + i):
                return pos + i
            i = chunk.find(GZIP_MEMBER, i + 1)
        pos += len(chunk) - (len(GZIP_MEMBER) - 1)  # a magic cut by the chunk end is seen
    return None


def iter_warc_records(stream: Any, max_bytes: int = 50_000_000) -> Iterator[WarcRecord]:
    """Stream response records of a WARC (ours or CC-NEWS); bodies are size-capped."""
    it = ArchiveIterator(stream)
    for rec in it:
        if rec.rec_type != "response" or rec.http_headers is None:
            continue
        h = rec.rec_headers
        target = h.get_header("WARC-Target-URI") or ""
        try:
            status = int(rec.http_headers.get_statuscode() or 0)
        except ValueError:
            status = 0
        body: bytes | None = rec.content_stream().read(max_bytes + 1)
        if body is not None and len(body) > max_bytes:
            body = None
        it.read_to_end(rec)
        yield WarcRecord(
            url=h.get_header(H_URL) or target,
            final_url=target,
            status=status,
            content_type=rec.http_headers.get_header("Content-Type"),
            fetched_at=_parse_time(h.get_header(H_FETCHED) or h.get_header("WARC-Date")),
            source=h.get_header(H_SOURCE),
            outlet=h.get_header(H_OUTLET),
            run_id=h.get_header(H_RUN),
            body=body,
            offset=it.get_record_offset(),
            length=it.get_record_length(),
        )


def record_page(
    r: WarcRecord,
    *,
    source: str | None = None,
    outlet: str | None = None,
    run_id: str | None = None,
) -> dict[str, Any] | None:
    """A PAGES row for a 200 HTML record, else None; explicit arguments override headers."""
    if r.status != 200 or r.body is None or not is_html(r.content_type, r.body[:1024]):
        return None
    return page_row(
        url=r.url,
        final_url=r.final_url,
        source=source or r.source,
        outlet=outlet if outlet is not None else r.outlet,
        status=r.status,
        content_type=r.content_type,
        fetched_at=r.fetched_at,
        body=r.body,
        run_id=run_id or r.run_id,
    )


def _replay(
    r: WarcRecord, source: str | None, outlet: str | None, run_id: str | None
) -> dict[str, Any] | None:
    """Archived newsflow headers win; the arguments only fill in what a foreign WARC lacks."""
    return record_page(
        r,
        source=r.source or source,
        outlet=r.outlet if r.outlet is not None else outlet,
        run_id=run_id,
    )


def read_pages_from_archive(
    items: pa.Table | Iterable[dict[str, Any]] | Iterable[str | Path],
    *,
    run_id: str | None = None,
    source: str | None = None,
    outlet: str | None = None,
    max_bytes: int = 50_000_000,
) -> pa.Table:
    """Rebuild ``PAGES`` from archived responses with no network access.

    ``items`` is either the ``warc_index`` table / its rows (``warc_file`` plus ``offset`` and
    ``length``, or ``warc_offset``/``warc_length``), each read alone by seeking; or WARC file
    paths, read whole. ``run_id`` replaces the archived run id (reprocess is a new run);
    by default the original is kept. ``source``/``outlet`` fill in for WARCs we did not write
    (CC-NEWS has no newsflow headers). Only 200 HTML responses become pages.
    """
    if isinstance(items, pa.Table):
        items = items.to_pylist()
    rows: list[dict[str, Any]] = []
    handles: dict[str, Any] = {}
    try:
        for item in items:
            if isinstance(item, str | Path):
                with open(item, "rb") as f:
                    for r in iter_warc_records(f, max_bytes):
                        row = _replay(r, source, outlet, run_id)
                        if row:
                            rows.append(row)
                continue
            path = item["warc_file"]
            off = item.get("offset", item.get("warc_offset"))
            length = item.get("length", item.get("warc_length"))
            if path is None or off is None or length is None:
                continue
            f = handles.get(path)
            if f is None:
                f = handles[path] = open(path, "rb")  # noqa: SIM115 - closed in finally
            f.seek(int(off))
            chunk = io.BytesIO(f.read(int(length)))
            for r in iter_warc_records(chunk, max_bytes):
                row = _replay(r, source, outlet, run_id)
                if row:
                    rows.append(row)
    finally:
        for f in handles.values():
            f.close()
    return pa.Table.from_pylist(rows, schema=PAGES)
