"""Fetch a shard: polite, incremental, fault-tolerant HTTP (and local files) -> PAGES.

``fetch_shard`` never raises for a URL: every URL attempted or skipped is one ``FETCHES`` row
with a machine-readable ``reason`` ('ok', 'not_modified', 'not_due', 'timeout', 'too_large',
'ssrf_blocked', ...), because a batch run over thousands of publishers must finish and say
what went wrong, not stop at the first odd server.

Incremental: the lead passes the warehouse's ``fetch_state`` as a dict. A URL whose
``next_due`` is in the future is skipped without a request ('not_due'), and so is a URL whose
sitemap ``<lastmod>`` dates its last change (minus clock slack) before our last verified copy
('lastmod_unchanged'; a real request still happens at least every ``max_revisit_s``).
Otherwise we send ``If-None-Match``/``If-Modified-Since`` and a 304 yields no page
('not_modified'): cheaper than a download, but it still costs the host a request and us the
per-host delay, which is why lastmod comes first. A 200 whose
bytes hash like last time yields no page either ('unchanged'). Unchanged pages are revisited
less and less often (the revisit interval doubles up to ``max_revisit_s``).

Politeness: robots.txt (incl. Crawl-delay) and the machine-wide per-host gate live in
``tasks.robots``; one ``HttpFetcher`` is the only HTTP client of the project (discovery uses
it too) so every request passes through the same checks.

Local kinds share the interface (``Shard`` in, ``FetchResult`` out): ``html_dir`` reads files,
``warc`` streams response records (CC-NEWS compatible), ``jsonl`` yields pre-extracted
``ARTICLES_CORE`` rows in ``FetchResult.articles`` so the lead can skip extraction for them.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import certifi
import httpcore
import httpx
import pyarrow as pa

from tasks.archive import (
    WarcWriter,
    content_hash,
    is_html,
    iter_warc_records,
    mime_type,
    page_row,
    record_page,
    record_start_in,
)
from tasks.http_cache import DocCache
from tasks.robots import HostGate, RobotsCache, RobotsRules
from tasks.schema import (
    ARTICLES_CORE,
    PAGES,
    REJECTS,
    TS,
    TableSpec,
    rejects_table,
    stable_id,
    to_rows,
    utcnow,
)
from tasks.sources import (
    FetchSettings,
    Shard,
    canonical_url,
    file_signature,
    host_key,
    split_item,
)

# --- tables ---------------------------------------------------------------------------------
FETCHES = pa.schema(
    [
        ("fetch_id", pa.string()),
        ("url", pa.string()),
        ("canonical_url", pa.string()),
        ("final_url", pa.string()),
        ("source", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("status", pa.int32()),
        ("content_type", pa.string()),
        ("bytes", pa.int64()),
        ("elapsed_s", pa.float64()),
        ("attempts", pa.int32()),
        ("redirects", pa.int32()),
        ("conditional", pa.bool_()),
        ("from_cache", pa.bool_()),
        ("warc_file", pa.string()),
        ("warc_offset", pa.int64()),
        ("warc_length", pa.int64()),
        ("fetched_at", TS),
        ("run_id", pa.string()),
    ]
)
FETCH_STATE = pa.schema(
    [
        ("canonical_url", pa.string()),
        ("url", pa.string()),
        ("source", pa.string()),
        ("etag", pa.string()),
        ("last_modified", pa.string()),
        ("content_hash", pa.string()),
        ("last_status", pa.int32()),
        ("last_reason", pa.string()),
        ("last_fetched", TS),
        ("revisit_s", pa.float64()),
        ("next_due", TS),
    ]
)
WARC_INDEX = pa.schema(
    [
        ("url", pa.string()),
        ("final_url", pa.string()),
        ("status", pa.int32()),
        ("content_type", pa.string()),
        ("warc_file", pa.string()),
        ("offset", pa.int64()),
        ("length", pa.int64()),
        ("fetched_at", TS),
        ("run_id", pa.string()),
        ("source", pa.string()),
    ]
)

TABLE_SPECS: list[TableSpec] = [
    TableSpec(
        "fetches",
        FETCHES,
        ("fetch_id",),
        "Fetch log: one row per URL attempted, skipped or dropped at discovery, per run.",
        {
            "fetch_id": "stable_id(run_id, stage, url)",
            "url": "URL as discovered (or file path / file:// URI for local kinds)",
            "canonical_url": "courlan-normalised URL; key of fetch_state",
            "final_url": "URL after redirects",
            "source": "sources.yaml entry name",
            "stage": "discover | fetch",
            "reason": "ok, unchanged, not_modified, not_due, robots_disallowed, timeout, ...",
            "detail": "human-readable detail (exception text, sizes, limits)",
            "status": "HTTP status of the last response (null when no response)",
            "content_type": "Content-Type of the last response",
            "bytes": "body bytes read from the wire (compressed size)",
            "elapsed_s": "wall time spent on this URL incl. retries and politeness waits",
            "attempts": "requests sent for this URL (retries included, robots.txt excluded)",
            "redirects": "redirect hops followed",
            "conditional": "request carried If-None-Match / If-Modified-Since",
            "from_cache": "content already in the warehouse (not_due / not_modified)",
            "warc_file": "WARC file holding the final response (null if not archived)",
            "warc_offset": "byte offset of the record in warc_file",
            "warc_length": "byte length of the (gzip member) record",
            "fetched_at": "when the URL was processed",
            "run_id": "run that processed it",
        },
        mode="log",
    ),
    TableSpec(
        "fetch_state",
        FETCH_STATE,
        ("canonical_url",),
        "Latest fetch state per URL; drives conditional GETs and revisit scheduling.",
        {
            "canonical_url": "courlan-normalised URL",
            "url": "URL as last discovered",
            "source": "source that last fetched it",
            "etag": "ETag of the last stored 200 page",
            "last_modified": "Last-Modified of the last stored 200 page",
            "content_hash": "hash of the last stored page bytes",
            "last_status": "HTTP status of the last attempt",
            "last_reason": "fetch reason of the last attempt",
            "last_fetched": "time of the last attempt",
            "revisit_s": "current revisit interval (doubles while unchanged)",
            "next_due": "URL is not requested again before this time",
        },
        mode="upsert",
    ),
    TableSpec(
        "warc_index",
        WARC_INDEX,
        ("warc_file", "offset"),
        "Where each archived HTTP response lives, for reprocessing without the network.",
        {
            "url": "URL as discovered",
            "final_url": "URL of this response (WARC-Target-URI)",
            "status": "HTTP status",
            "content_type": "Content-Type",
            "warc_file": "path of the .warc.gz file",
            "offset": "byte offset of the record",
            "length": "byte length of the record",
            "fetched_at": "fetch time",
            "run_id": "run that archived it",
            "source": "sources.yaml entry name",
        },
        mode="log",
    ),
]

# The closed vocabulary of FETCHES.reason (expectations/fetch.json should list these keys).
FETCH_REASONS: dict[str, str] = {
    # normal outcomes (not rejects)
    "ok": "200 HTML page, new or changed: a PAGES row (or an ARTICLES_CORE row for jsonl)",
    "unchanged": "200 but the same bytes as last time: no page",
    "not_modified": "304 to a conditional GET: no page",
    "not_due": "fetch_state.next_due is in the future: no request made",
    "lastmod_unchanged": "sitemap <lastmod> not after our last verified fetch: no request made",
    # discovery (stage='discover')
    "duplicate": "URL already discovered in this run (after canonicalisation)",
    "filtered_include": "URL matches none of the source's include patterns",
    "filtered_exclude": "URL matches one of the source's exclude patterns",
    "too_old": "feed/sitemap date older than the source's max_age_days",
    "max_pages": "over the source's max_pages",
    "discovery_error": "feed/sitemap/list could not be read or parsed",
    "sitemap_too_deep": "sitemap index nesting over max_sitemap_depth",
    # politeness and safety
    "robots_disallowed": "robots.txt disallows the URL for our user agent",
    "robots_unavailable": "robots.txt answered 5xx or not at all: host skipped this run",
    "ssrf_blocked": "host resolves to a private/loopback/link-local address, not allow-listed",
    "bad_url": "not an http(s) URL",
    "dns_error": "host name does not resolve",
    # transport and response
    "timeout": "read or total timeout",
    "connection_error": "connect failed/refused/reset (after retries)",
    "http_error": "4xx/5xx response (status column has the code; 429/5xx after retries)",
    "redirect_loop": "a redirect came back to a URL already visited",
    "too_many_redirects": "more than max_redirects hops",
    "redirect": "archived redirect response (warc sources)",
    "too_large": "body (or declared Content-Length) over max_bytes; reading stopped",
    "gzip_bomb": "compressed body inflates past max_bytes",
    "content_type": "not HTML (PDF, image...): recorded, body not read",
    "content_encoding": "unsupported Content-Encoding",
    "decode_error": "corrupt compressed body",
    # local kinds
    "read_error": "file could not be read",
    "warc_error": "WARC file truncated or corrupt (records before it are kept)",
    "bad_json": "jsonl line is not a JSON object",
    "missing_field": "jsonl line lacks url or text",
    "shard_error": "unexpected failure of a whole shard (bug): see detail",
    "error": "unexpected failure for one URL (bug): see detail",
}
# reasons after which the URL is tried again next run (the failure is probably temporary)
TRANSIENT = {"timeout", "connection_error", "robots_unavailable", "dns_error", "error"}
# reasons that are normal outcomes, not rejects
NORMAL = {"ok", "unchanged", "not_modified", "not_due", "lastmod_unchanged", "duplicate"}
# a publisher's clock may run behind ours: a lastmod this close to our fetch proves nothing
LASTMOD_SLACK = timedelta(minutes=5)
# outcomes after which we hold the page's current content (a later lastmod can be compared)
VERIFIED = {"ok", "unchanged", "not_modified"}


@dataclass
class FetchResult:
    """Everything one shard produced; every table has its declared schema, maybe empty."""

    pages: pa.Table
    fetches: pa.Table
    state: pa.Table
    rejects: pa.Table
    articles: pa.Table | None = None  # jsonl sources only: ARTICLES_CORE rows
    warc_index: pa.Table = field(default_factory=WARC_INDEX.empty_table)


def fetch_row(
    url: str,
    source: str | None,
    run_id: str,
    *,
    reason: str,
    detail: str | None = None,
    status: int | None = None,
    stage: str = "fetch",
    **kw: Any,
) -> dict[str, Any]:
    """A FETCHES row; discovery uses it too so the log has one shape."""
    canon = canonical_url(url) if url else None
    row: dict[str, Any] = {f.name: None for f in FETCHES}
    row.update(
        fetch_id=stable_id(run_id, stage, url),
        url=url,
        canonical_url=canon,
        source=source,
        stage=stage,
        reason=reason,
        detail=detail,
        status=status,
        fetched_at=utcnow(),
        run_id=run_id,
        attempts=0,
        redirects=0,
        conditional=False,
        from_cache=False,
    )
    row.update({k: v for k, v in kw.items() if k in row})
    return row


# --- HTTP -----------------------------------------------------------------------------------
class FetchError(Exception):
    """A URL failed for a known reason; becomes a FETCHES row, never a crash."""

    def __init__(
        self,
        reason: str,
        detail: str = "",
        status: int | None = None,
        retry_after: float | None = None,
        content_type: str | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        self.content_type = content_type


@dataclass
class Hop:
    """One HTTP response as received (body still content-encoded), for the archive."""

    url: str
    status: int
    reason_phrase: str
    http_version: str
    headers: list[tuple[str, str]]
    raw: bytes
    fetched_at: datetime


@dataclass
class Response:
    """Outcome of ``HttpFetcher.get``: a body, a 304, or a failure ``reason``."""

    url: str
    final_url: str
    status: int | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # decoded (decompressed) body
    reason: str | None = None  # None on success
    detail: str | None = None
    attempts: int = 0
    redirects: int = 0
    bytes: int = 0
    elapsed: float = 0.0
    conditional: bool = False
    hops: list[Hop] = field(default_factory=list)


class _Decoder:
    """Streaming Content-Encoding decoder that never inflates past ``cap`` bytes at once."""

    def __init__(self, encoding: str, cap: int) -> None:
        enc = encoding.strip().lower()
        self.cap = cap
        self.total = 0
        self.out = bytearray()
        if enc in ("", "identity"):
            self.d = None
        elif enc in ("gzip", "x-gzip"):
            self.d = zlib.decompressobj(wbits=31)
        elif enc == "deflate":
            self.d = zlib.decompressobj(wbits=15)
            self.raw_deflate_fallback = True
        else:
            raise FetchError("content_encoding", f"unsupported Content-Encoding {encoding!r}")
        self.encoded = self.d is not None
        self._first = True

    def _emit(self, data: bytes) -> None:
        self.total += len(data)
        if self.total > self.cap:
            if self.encoded:
                raise FetchError("gzip_bomb", f"inflates past {self.cap} bytes")
            raise FetchError("too_large", f"body over {self.cap} bytes")
        self.out += data

    def feed(self, chunk: bytes) -> None:
        if self.d is None:
            self._emit(chunk)
            return
        try:
            data = self.d.decompress(chunk, self.cap - self.total + 1)
        except zlib.error:
            if self._first and getattr(self, "raw_deflate_fallback", False):
                self.d = zlib.decompressobj(wbits=-15)  # servers that send raw deflate
                data = self.d.decompress(chunk, self.cap - self.total + 1)
            else:
                raise
        self._first = False
        self._emit(data)
        while self.d.unconsumed_tail:
            self._emit(self.d.decompress(self.d.unconsumed_tail, self.cap - self.total + 1))
        if self.d.eof and self.d.unused_data and self.d.unused_data.startswith(b"\x1f\x8b"):
            rest = self.d.unused_data  # multi-member gzip
            self.d = zlib.decompressobj(wbits=31)
            self.feed(rest)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_global and not ip.is_multicast


class SsrfBlocked(OSError):
    """Raised at connect time when a host resolves to a non-public address."""


class _GuardedBackend(httpcore.SyncBackend):
    """Connects only to the public address it has just checked.

    The check in ``HttpFetcher.ssrf_reason`` runs before the request, but httpx resolves the
    name again when it connects; a DNS answer that changes in between (DNS rebinding) would
    slip through. Resolving, checking and connecting to the same address here closes that gap.
    """

    def __init__(self, private_ok: Callable[[str], bool]) -> None:
        self.private_ok = private_ok

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        if self.private_ok(host):
            return super().connect_tcp(host, port, timeout, local_address, socket_options)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise httpcore.ConnectError(f"cannot resolve {host}: {e}") from e
        addresses = [str(info[4][0]) for info in infos]
        if not addresses or not all(_public(a) for a in addresses):
            raise SsrfBlocked(f"{host} resolves to a non-public address")
        return super().connect_tcp(addresses[0], port, timeout, local_address, socket_options)


def _retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    try:
        secs = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        secs = (when - utcnow()).total_seconds()
    return max(0.0, min(secs, cap))


@lru_cache(maxsize=1)
def _tls_context() -> ssl.SSLContext:
    """One verified TLS context per process: building one (loading the CA bundle) costs
    20-40 ms, paid by every fetcher a shard or a discovery thread creates. Contexts are safe
    to share between clients and threads."""
    return ssl.create_default_context(cafile=certifi.where())


class HttpFetcher:
    """The project's one HTTP client: SSRF, robots, host gate, retries, caps, decoding."""

    def __init__(
        self, settings: FetchSettings, run_id: str = "", client: httpx.Client | None = None
    ) -> None:
        self.s = settings
        self.run_id = run_id
        self._own = client is None
        self._private_now = False  # allow_private of the request in flight
        if client is None:
            transport = httpx.HTTPTransport(
                verify=_tls_context(),
                limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
            )
            pool = getattr(transport, "_pool", None)
            if pool is not None and hasattr(pool, "_network_backend"):
                pool._network_backend = _GuardedBackend(self._private_ok)
            client = httpx.Client(transport=transport, follow_redirects=False, trust_env=False)
        self.client = client
        hd = settings.host_dir()
        self.gate = HostGate(hd, settings.per_host_concurrency)
        # listings and robots.txt kept between runs (tasks.http_cache), when configured
        self.cache = DocCache(Path(settings.cache_dir) / "http") if settings.cache_dir else None
        # robots.txt is shared through files only within a named run (see tasks.robots)
        self.robots = RobotsCache(
            hd if run_id else None,
            run_id,
            self._fetch_robots,
            persist=self.cache,
            max_age_s=settings.robots_max_age_s,
        )
        self._dns: dict[str, str | None] = {}
        self._robots_private = False
        self.requests = 0  # every HTTP request sent, robots.txt included

    def close(self) -> None:
        if self._own:
            self.client.close()

    # -- checks --
    def _private_ok(self, host: str) -> bool:
        host = host.lower().strip("[]")
        return self._private_now or host in self.s.allow_private_hosts

    def ssrf_reason(self, url: str, allow_private: bool = False) -> str | None:
        """'ssrf_blocked' when the host resolves to a non-public address and is not allowed."""
        p = urlsplit(url)
        host = (p.hostname or "").lower()
        if not host:
            return "bad_url"
        if (
            allow_private
            or host in self.s.allow_private_hosts
            or (host_key(url) in self.s.allow_private_hosts)
        ):
            return None
        if host in self._dns:
            return self._dns[host]
        reason: str | None = None
        try:
            infos = socket.getaddrinfo(host, p.port or 80, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError):
            reason = "dns_error"
            infos = []
        if any(not _public(str(info[4][0])) for info in infos):
            reason = "ssrf_blocked"
        self._dns[host] = reason
        return reason

    def _origin(self, url: str) -> str:
        p = urlsplit(url)
        return f"{p.scheme}://{p.netloc}"

    def _fetch_robots(self, url: str) -> tuple[int | None, bytes | None, str | None]:
        res = self.get(
            url,
            accept_any_type=True,
            check_robots=False,
            retries=1,
            max_bytes=500_000,
            allow_private=self._robots_private,
        )
        if res.reason == "http_error" and res.status is not None:
            return res.status, b"" if res.status < 500 else None, res.detail
        if res.reason:
            return None, None, f"{res.reason}: {res.detail}"
        return res.status, res.body, None

    def robot_rules(self, url: str, allow_private: bool = False) -> RobotsRules:
        if not self.s.respect_robots:
            return RobotsRules()
        if self.ssrf_reason(url, allow_private):
            return RobotsRules()  # the URL itself will be refused; do not probe the host
        self._robots_private = allow_private  # the robots.txt GET gets the URL's SSRF policy
        return self.robots.rules(self._origin(url))

    def robots_allowed(
        self, url: str, user_agent: str | None = None, allow_private: bool = False
    ) -> tuple[bool, str | None]:
        """(allowed, reason): 'robots_disallowed' or 'robots_unavailable' when not."""
        rules = self.robot_rules(url, allow_private)
        if rules.allowed(url, user_agent or self.s.user_agent):
            return True, None
        return False, "robots_unavailable" if rules.deny_all else "robots_disallowed"

    def host_delay(
        self, url: str, delay_s: float | None, user_agent: str | None, allow_private: bool
    ) -> float:
        delay = max(self.s.per_host_delay_s, delay_s or 0.0)
        if self.s.respect_robots and not url.endswith("/robots.txt"):
            cd = self.robot_rules(url, allow_private).crawl_delay(user_agent or self.s.user_agent)
            if cd:
                delay = max(delay, min(cd, self.s.max_crawl_delay))
        return delay

    # -- one request --
    def _once(
        self,
        url: str,
        headers: dict[str, str],
        delay: float,
        accept_any_type: bool,
        max_bytes: int,
        res: Response,
    ) -> Hop:
        timeout = httpx.Timeout(
            connect=self.s.connect_timeout,
            read=self.s.read_timeout,
            write=self.s.read_timeout,
            pool=self.s.connect_timeout,
        )
        with self.gate.request(host_key(url), delay) as started:
            # the total budget starts once the gate lets us go: politeness waits are ours,
            # not the server's slowness
            deadline = time.monotonic() + self.s.total_timeout
            res.attempts += 1
            self.requests += 1
            fetched_at = datetime.fromtimestamp(started, UTC)
            try:
                with self.client.stream("GET", url, headers=headers, timeout=timeout) as r:
                    return self._read(url, r, deadline, accept_any_type, max_bytes, res, fetched_at)
            except SsrfBlocked as e:
                raise FetchError("ssrf_blocked", str(e)) from e
            except httpx.TimeoutException as e:
                if isinstance(e, httpx.ConnectTimeout):
                    raise FetchError("connection_error", f"connect timeout: {e}") from e
                raise FetchError("timeout", f"{type(e).__name__}: {e}") from e
            except (httpx.TransportError, OSError) as e:
                raise FetchError("connection_error", f"{type(e).__name__}: {e}") from e

    def _read(
        self,
        url: str,
        r: httpx.Response,
        deadline: float,
        accept_any_type: bool,
        max_bytes: int,
        res: Response,
        fetched_at: datetime,
    ) -> Hop:
        status = r.status_code
        ctype = r.headers.get("content-type")
        res.status, res.content_type = status, ctype
        res.headers = {k.lower(): v for k, v in r.headers.items()}
        cl = r.headers.get("content-length")
        if 200 <= status < 300 and not accept_any_type and ctype and not is_html(ctype):
            raise FetchError(
                "content_type", f"not HTML: {mime_type(ctype)}", status, content_type=ctype
            )
        is_redirect = 300 <= status < 400 and "location" in r.headers
        cap = 65_536 if (is_redirect or status >= 400) else max_bytes
        if cl and cl.isdigit() and int(cl) > max_bytes and 200 <= status < 300:
            raise FetchError(
                "too_large", f"Content-Length {cl} > {max_bytes}", status, content_type=ctype
            )
        dec = _Decoder(r.headers.get("content-encoding", ""), cap)
        raw = bytearray()
        for chunk in r.iter_raw():
            raw += chunk
            res.bytes = len(raw)
            if len(raw) > cap:
                if cap < max_bytes:
                    break  # error/redirect bodies: keep the first 64 KB, they are not pages
                raise FetchError(
                    "too_large",
                    f"body over {max_bytes} bytes (stopped reading)",
                    status,
                    content_type=ctype,
                )
            try:
                dec.feed(chunk)
            except FetchError as e:
                if cap < max_bytes:
                    break
                e.status, e.content_type = status, ctype
                raise
            except zlib.error as e:
                raise FetchError(
                    "decode_error",
                    f"bad {r.headers.get('content-encoding')} body: {e}",
                    status,
                    content_type=ctype,
                ) from e
            if time.monotonic() > deadline:
                raise FetchError(
                    "timeout",
                    f"total timeout {self.s.total_timeout}s while reading body",
                    status,
                    content_type=ctype,
                )
            if (
                200 <= status < 300
                and not accept_any_type
                and not ctype
                and len(dec.out) >= 1024
                and not is_html(ctype, bytes(dec.out[:1024]))
            ):
                raise FetchError("content_type", "no Content-Type and not HTML", status)
        if (
            200 <= status < 300
            and not accept_any_type
            and not ctype
            and not is_html(ctype, bytes(dec.out[:1024]))
        ):
            raise FetchError("content_type", "no Content-Type and not HTML", status)
        res.body = bytes(dec.out)
        return Hop(
            url,
            status,
            r.reason_phrase,
            r.http_version or "HTTP/1.1",
            list(r.headers.multi_items()),
            bytes(raw),
            fetched_at,
        )

    # -- full get with redirects and retries --
    def get(
        self,
        url: str,
        *,
        allow_private: bool = False,
        user_agent: str | None = None,
        delay_s: float | None = None,
        etag: str | None = None,
        last_modified: str | None = None,
        accept_any_type: bool = False,
        check_robots: bool = True,
        retries: int | None = None,
        max_bytes: int | None = None,
    ) -> Response:
        """GET ``url`` politely; failures come back as ``Response.reason``, never raised."""
        t0 = time.monotonic()
        res = Response(url=url, final_url=url)
        ua = user_agent or self.s.user_agent
        headers = {
            "User-Agent": ua,
            "Accept-Encoding": "gzip, deflate",
            "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5",
        }
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        res.conditional = bool(etag or last_modified)
        n_retries = self.s.retries if retries is None else retries
        self._private_now = allow_private
        cap = max_bytes or self.s.max_bytes
        attempt = 0
        try:
            while True:
                try:
                    self._chain(
                        url,
                        headers,
                        accept_any_type,
                        cap,
                        res,
                        allow_private,
                        ua,
                        delay_s,
                        check_robots,
                    )
                    if res.status is not None and (res.status == 429 or res.status >= 500):
                        ra = _retry_after(res.headers.get("retry-after"), self.s.max_retry_after)
                        raise FetchError(
                            "http_error",
                            f"HTTP {res.status}",
                            res.status,
                            retry_after=ra,
                            content_type=res.content_type,
                        )
                    break
                except FetchError as e:
                    retryable = e.reason == "connection_error" or (
                        e.reason == "http_error"
                        and e.status is not None
                        and (e.status == 429 or e.status >= 500)
                    )
                    if not retryable or attempt >= n_retries:
                        raise
                    wait = e.retry_after
                    if wait is None:
                        wait = min(
                            self.s.backoff * (2**attempt) * (1 + 0.5 * random.random()),
                            self.s.max_retry_after,
                        )
                    if e.retry_after is not None:
                        self.gate.defer(host_key(res.final_url), wait)  # all workers back off
                    time.sleep(wait)
                    attempt += 1
                    res.hops.clear()
            if res.status is not None and res.status >= 400:
                res.reason = "http_error"
                res.detail = f"HTTP {res.status}"
            elif res.status == 304:
                res.reason = None
        except FetchError as e:
            res.reason, res.detail = e.reason, e.detail
            if e.status is not None:
                res.status = e.status
            if e.content_type is not None:
                res.content_type = e.content_type
            res.body = None
        except Exception as e:  # noqa: BLE001 - an unexpected failure is still only one URL
            res.reason, res.detail, res.body = "error", f"{type(e).__name__}: {e}", None
        res.elapsed = time.monotonic() - t0
        return res

    def _chain(
        self,
        url: str,
        headers: dict[str, str],
        accept_any_type: bool,
        cap: int,
        res: Response,
        allow_private: bool,
        ua: str,
        delay_s: float | None,
        check_robots: bool,
    ) -> None:
        seen = {canonical_url(url)}
        current = url
        res.redirects = 0
        while True:
            if urlsplit(current).scheme not in ("http", "https"):
                raise FetchError("bad_url", f"scheme not allowed: {current}")
            why = self.ssrf_reason(current, allow_private)
            if why:
                raise FetchError(
                    why,
                    f"{urlsplit(current).hostname} is not a public address"
                    if why == "ssrf_blocked"
                    else "cannot resolve host",
                )
            if check_robots:
                ok, why = self.robots_allowed(current, ua, allow_private)
                if not ok:
                    raise FetchError(why or "robots_disallowed", current)
            delay = self.host_delay(current, delay_s, ua, allow_private)
            res.final_url = current
            hop = self._once(current, headers, delay, accept_any_type, cap, res)
            res.hops.append(hop)
            loc = res.headers.get("location")
            if not (300 <= hop.status < 400 and loc and hop.status != 304):
                return
            nxt = urljoin(current, loc.strip())
            key = canonical_url(nxt)
            if key in seen:
                raise FetchError("redirect_loop", f"{current} -> {nxt}", hop.status)
            if res.redirects >= self.s.max_redirects:
                raise FetchError(
                    "too_many_redirects", f"more than {self.s.max_redirects}", hop.status
                )
            seen.add(key)
            res.redirects += 1
            current = nxt


# --- state helpers --------------------------------------------------------------------------
def _ts(v: Any) -> datetime | None:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=UTC)
    if hasattr(v, "to_pydatetime"):
        return _ts(v.to_pydatetime())
    if isinstance(v, str):
        try:
            return _ts(datetime.fromisoformat(v.replace("Z", "+00:00")))
        except ValueError:
            return None
    return None


def _state_row(
    canon: str,
    url: str,
    source: str,
    prev: dict[str, Any],
    now: datetime,
    reason: str,
    status: int | None,
    s: FetchSettings,
    **new: Any,
) -> dict[str, Any]:
    """Next fetch_state for a URL: keep validators, schedule the next visit by outcome."""
    revisit = float(prev.get("revisit_s") or s.revisit_after_s)
    if reason in ("unchanged", "not_modified"):
        revisit = min(revisit * 2, s.max_revisit_s)
        wait = revisit
    elif reason == "ok":
        revisit = s.revisit_after_s
        wait = revisit
    elif reason in TRANSIENT or (
        reason == "http_error" and (status is None or status == 429 or status >= 500)
    ):
        wait = 0.0
    else:
        wait = s.max_revisit_s
    row = {
        "canonical_url": canon,
        "url": url,
        "source": source,
        "etag": prev.get("etag"),
        "last_modified": prev.get("last_modified"),
        "content_hash": prev.get("content_hash"),
        "last_status": status,
        "last_reason": reason,
        "last_fetched": now,
        "revisit_s": revisit,
        "next_due": now + timedelta(seconds=wait),
    }
    row.update({k: v for k, v in new.items() if v is not None})
    return row


# --- shard runners --------------------------------------------------------------------------
class _Out:
    """Accumulates the rows of one shard.

    With a ``page_sink``, pages leave in tables of ``sink_rows`` as soon as that many are
    read, instead of the whole shard's HTML waiting as Python rows for the end of the shard
    (a 200-record WARC slice held about 5x its HTML size at its peak).
    """

    def __init__(
        self,
        shard: Shard,
        run_id: str,
        page_sink: Callable[[pa.Table], None] | None = None,
        sink_rows: int = 100,
    ) -> None:
        self.shard, self.run_id = shard, run_id
        self.page_sink, self.sink_rows = page_sink, sink_rows
        self.sink_error: Exception | None = None
        self.pages: list[dict[str, Any]] = []
        self.fetches: list[dict[str, Any]] = []
        self.state: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self.index: list[dict[str, Any]] = []
        self.articles: list[dict[str, Any]] | None = None

    def log(self, url: str, reason: str, detail: str | None = None, **kw: Any) -> None:
        self.fetches.append(
            fetch_row(url, self.shard.source, self.run_id, reason=reason, detail=detail, **kw)
        )
        if reason not in NORMAL:
            self.rejects.append(
                {
                    "item_id": stable_id(url),
                    "url": url,
                    "stage": "fetch",
                    "reason": reason,
                    "detail": detail,
                }
            )

    def add_page(self, row: dict[str, Any]) -> None:
        if self.sink_error is not None:  # a reader caught it: stop reading, nothing lands
            raise self.sink_error
        self.pages.append(row)
        if self.page_sink is not None and len(self.pages) >= self.sink_rows:
            self._flush_pages()

    def _flush_pages(self) -> None:
        if self.pages and self.page_sink is not None:
            table = pa.Table.from_pylist(self.pages, schema=PAGES)
            self.pages = []
            try:
                self.page_sink(table)
            except Exception as e:
                # the readers catch per-record errors as data (a truncated WARC keeps what
                # was read); a failed write is not data, so result() raises it again
                self.sink_error = e
                raise

    def result(self) -> FetchResult:
        """The shard's tables; with a page sink, ``pages`` is empty (every page went out).

        Raises the page sink's error, if it had one: pages that could not be written are
        lost, which must fail the shard rather than be logged as a reader problem.
        """
        if self.sink_error is not None:
            raise self.sink_error
        self._flush_pages()
        return FetchResult(
            pages=pa.Table.from_pylist(self.pages, schema=PAGES),
            fetches=pa.Table.from_pylist(self.fetches, schema=FETCHES),
            state=pa.Table.from_pylist(self.state, schema=FETCH_STATE),
            rejects=rejects_table(self.rejects, self.run_id)
            if self.rejects
            else REJECTS.empty_table(),
            articles=(
                pa.Table.from_pylist(self.articles, schema=ARTICLES_CORE)
                if self.articles is not None
                else None
            ),
            warc_index=pa.Table.from_pylist(self.index, schema=WARC_INDEX),
        )


def _lookup(state: dict[str, dict[str, Any]], canon: str, url: str) -> dict[str, Any]:
    return state.get(canon) or state.get(url) or {}


def _unchanged_by_lastmod(
    shard: Shard, url: str, prev: dict[str, Any], now: datetime, s: FetchSettings
) -> str | None:
    """Why no request is needed, or None: the sitemap dates the page's last change before our
    last verified copy. Polite crawlers trust <lastmod>; a conditional GET still costs the
    host a request and us the per-host delay. Pages are re-verified by a real request at least
    every ``max_revisit_s`` in case a publisher's lastmod lies."""
    if not shard.modified or prev.get("last_reason") not in VERIFIED:
        return None
    mod = _ts(shard.modified.get(url))
    last = _ts(prev.get("last_fetched"))
    if mod is None or last is None or mod + LASTMOD_SLACK > last:
        return None
    if (now - last).total_seconds() >= s.max_revisit_s:
        return None
    return f"lastmod {mod.isoformat()} <= last fetched {last.isoformat()}"


def _fetch_http(
    shard: Shard,
    settings: FetchSettings,
    state: dict[str, dict[str, Any]],
    run_id: str,
    archive_dir: Path,
    out: _Out,
    client: httpx.Client | None,
) -> None:
    due: list[tuple[str, str, dict[str, Any]]] = []
    now = utcnow()
    for url in shard.items:
        canon = canonical_url(url)
        prev = _lookup(state, canon, url)
        next_due = _ts(prev.get("next_due"))
        if next_due is not None and next_due > now:
            out.log(
                url,
                "not_due",
                f"next due {next_due.isoformat()}",
                from_cache=True,
                status=prev.get("last_status"),
            )
        elif (why := _unchanged_by_lastmod(shard, url, prev, now, settings)) is not None:
            out.log(url, "lastmod_unchanged", why, from_cache=True, status=prev.get("last_status"))
        else:
            due.append((url, canon, prev))
    if not due:
        return  # an unchanged re-run costs no client, no file, no request
    fetcher = HttpFetcher(settings, run_id, client)
    writer = WarcWriter(archive_dir, shard.shard_id, run_id)
    try:
        for url, canon, prev in due:
            try:
                res = fetcher.get(
                    url,
                    allow_private=shard.allow_private,
                    user_agent=shard.user_agent,
                    delay_s=shard.delay_s,
                    etag=prev.get("etag"),
                    last_modified=prev.get("last_modified"),
                )
                _record(url, canon, prev, res, shard, settings, run_id, writer, out)
            except Exception as e:  # noqa: BLE001 - belt and braces: one URL, one row
                out.log(url, "error", f"{type(e).__name__}: {e}")
    finally:
        writer.close()
        fetcher.close()


def _record(
    url: str,
    canon: str,
    prev: dict[str, Any],
    res: Response,
    shard: Shard,
    settings: FetchSettings,
    run_id: str,
    writer: WarcWriter,
    out: _Out,
) -> None:
    now = utcnow()
    loc = None
    for hop in res.hops:  # archive every complete response, redirects and errors included
        loc = writer.write_response(
            url=url,
            target_uri=hop.url,
            status=hop.status,
            reason=hop.reason_phrase,
            headers=hop.headers,
            body=hop.raw,
            fetched_at=hop.fetched_at,
            source=shard.source,
            outlet=shard.outlet,
            http_version=hop.http_version,
        )
        out.index.append(
            {
                "url": url,
                "final_url": hop.url,
                "status": hop.status,
                "content_type": dict((k.lower(), v) for k, v in hop.headers).get("content-type"),
                "warc_file": loc.warc_file,
                "offset": loc.offset,
                "length": loc.length,
                "fetched_at": hop.fetched_at,
                "run_id": run_id,
                "source": shard.source,
            }
        )
    common = {
        "final_url": res.final_url,
        "status": res.status,
        "content_type": res.content_type,
        "bytes": res.bytes,
        "elapsed_s": res.elapsed,
        "attempts": res.attempts,
        "redirects": res.redirects,
        "conditional": res.conditional,
    }
    if loc is not None:
        common.update(warc_file=loc.warc_file, warc_offset=loc.offset, warc_length=loc.length)
    reason = res.reason
    if reason is None and res.status == 304:
        reason = "not_modified"
        common["from_cache"] = True
    elif reason is None and res.body is not None and res.status == 200:
        h = content_hash(res.body)
        reason = "unchanged" if h == prev.get("content_hash") else "ok"
        if reason == "ok":
            fetched_at = res.hops[-1].fetched_at if res.hops else now
            out.add_page(
                page_row(
                    url=url,
                    final_url=res.final_url,
                    source=shard.source,
                    outlet=shard.outlet,
                    status=200,
                    content_type=res.content_type,
                    fetched_at=fetched_at,
                    body=res.body,
                    run_id=run_id,
                )
            )
        out.state.append(
            _state_row(
                canon,
                url,
                shard.source,
                prev,
                now,
                reason,
                200,
                settings,
                etag=res.headers.get("etag"),
                last_modified=res.headers.get("last-modified"),
                content_hash=h,
            )
        )
        out.log(url, reason, None, **common)
        return
    elif reason is None:
        reason = "http_error"
    detail = res.detail
    out.state.append(
        _state_row(
            canon,
            url,
            shard.source,
            prev,
            now,
            reason,
            res.status,
            settings,
            etag=res.headers.get("etag") if res.status == 304 else None,
        )
    )
    out.log(url, reason, detail, **common)


_CANONICAL = re.compile(rb"""<link\b[^>]*\brel\s*=\s*["']?canonical["']?[^>]*>""", re.I)
_HREF = re.compile(rb"""\bhref\s*=\s*["']([^"']+)["']""", re.I)


def _canonical_link(body: bytes) -> str | None:
    m = _CANONICAL.search(body[:200_000])
    if not m:
        return None
    h = _HREF.search(m.group(0))
    if not h:
        return None
    href = h.group(1).decode("utf-8", "replace").strip()
    return href if href.startswith(("http://", "https://")) else None


def _fetch_html_dir(
    shard: Shard, settings: FetchSettings, state: dict[str, dict[str, Any]], run_id: str, out: _Out
) -> None:
    for item in shard.items:
        path = Path(item)
        uri = path.resolve().as_uri()
        now = utcnow()
        try:
            size = path.stat().st_size
            if size > settings.max_bytes:
                out.log(uri, "too_large", f"{size} bytes > {settings.max_bytes}", bytes=size)
                continue
            body = path.read_bytes()
        except OSError as e:
            out.log(uri, "read_error", str(e))
            continue
        url = _canonical_link(body) or uri
        canon = canonical_url(url)
        prev = _lookup(state, canon, url)
        h = content_hash(body)
        reason = "unchanged" if h == prev.get("content_hash") else "ok"
        if reason == "ok":
            out.add_page(
                page_row(
                    url=url,
                    final_url=uri,
                    source=shard.source,
                    outlet=shard.outlet,
                    status=200,
                    content_type="text/html",
                    fetched_at=now,
                    body=body,
                    run_id=run_id,
                )
            )
        out.state.append(
            _state_row(canon, url, shard.source, prev, now, reason, 200, settings, content_hash=h)
            | {"next_due": None}
        )
        out.log(
            url, reason, None, final_url=uri, status=200, content_type="text/html", bytes=len(body)
        )


def _fetch_warc(
    shard: Shard, settings: FetchSettings, state: dict[str, dict[str, Any]], run_id: str, out: _Out
) -> None:
    seen: set[str] = set()
    for item in shard.items:
        path, offset, count, end = split_item(item)
        try:
            sig = file_signature(path)
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            out.log(item, "read_error", str(e))
            continue
        if state.get(item, {}).get("content_hash") == sig:
            # Every record of this slice was read by an earlier, published run and the file
            # has not changed since: nothing in it can be new, so it is not read.
            f.close()
            out.log(item, "unchanged", "WARC slice unchanged since it was last loaded")
            continue
        n_before = len(out.fetches)
        with f:
            try:
                if end is not None:
                    first = record_start_in(f, offset, end)
                    if first is None:  # a record longer than the range starts before it
                        continue
                    offset = first
                f.seek(offset)
                for n, r in enumerate(iter_warc_records(f, settings.max_bytes)):
                    if (count is not None and n >= count) or (end is not None and r.offset >= end):
                        break  # the next shard's records start here
                    kw = {
                        "final_url": r.final_url,
                        "status": r.status or None,
                        "content_type": r.content_type,
                        "warc_file": path,
                        "warc_offset": r.offset,
                        "warc_length": r.length,
                    }
                    canon = canonical_url(r.url)
                    if r.body is None:
                        out.log(r.url, "too_large", f"record over {settings.max_bytes}", **kw)
                        continue
                    row = record_page(r, source=shard.source, outlet=shard.outlet, run_id=run_id)
                    if row is None:
                        why = (
                            "content_type"
                            if r.status == 200
                            else "redirect"
                            if 300 <= r.status < 400
                            else "http_error"
                        )
                        out.log(r.url, why, None, **kw)
                        continue
                    prev = _lookup(state, canon, r.url)
                    if canon in seen or row["content_hash"] == prev.get("content_hash"):
                        out.log(r.url, "unchanged", "same bytes already loaded", **kw)
                        continue
                    seen.add(canon)
                    out.add_page(row)
                    out.index.append(
                        {
                            "url": r.url,
                            "final_url": r.final_url,
                            "status": r.status,
                            "content_type": r.content_type,
                            "warc_file": path,
                            "offset": r.offset,
                            "length": r.length,
                            "fetched_at": r.fetched_at,
                            "run_id": run_id,
                            "source": shard.source,
                        }
                    )
                    out.state.append(
                        {
                            "canonical_url": canon,
                            "url": r.url,
                            "source": shard.source,
                            "content_hash": row["content_hash"],
                            "last_status": 200,
                            "last_reason": "ok",
                            "last_fetched": r.fetched_at,
                        }
                    )
                    out.log(r.url, "ok", None, bytes=len(r.body), **kw)
            except Exception as e:  # noqa: BLE001 - a truncated WARC keeps what was read
                out.log(str(item), "warc_error", f"{type(e).__name__}: {e}")
                continue
        if len(out.fetches) > n_before:  # the slice was read to its end: remember it whole
            out.state.append(
                {
                    "canonical_url": item,
                    "url": item,
                    "source": shard.source,
                    "content_hash": sig,
                    "last_status": None,
                    "last_reason": "ok",
                    "last_fetched": datetime.now(UTC),
                }
            )


def _date(v: Any) -> date | None:
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    s = str(v).strip()
    try:
        return date.fromisoformat(s[:10])
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(s).date()
    except (TypeError, ValueError):
        return None


def _fetch_jsonl(shard: Shard, run_id: str, out: _Out) -> None:
    out.articles = []
    seen: set[str] = set()
    now = utcnow()
    for item in shard.items:
        path, offset, count, _ = split_item(item)  # JSONL files are cut by lines only
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
            f.seek(offset)
        except OSError as e:
            out.log(item, "read_error", str(e))
            continue
        with f:
            n = 0
            for raw in f:
                if not raw.strip():
                    continue
                if count is not None and n >= count:
                    break  # the next shard's lines start here
                n += 1
                line = raw.decode("utf-8", "replace")
                where = f"{path}@{offset}+{n}"
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    out.log(where, "bad_json", str(e))
                    continue
                if not isinstance(rec, dict):
                    out.log(where, "bad_json", "line is not an object")
                    continue
                url = rec.get("url")
                body = rec.get("text", rec.get("body"))
                if not url or not body:
                    out.log(url or where, "missing_field", "needs url and text")
                    continue
                canon = rec.get("canonical_url") or canonical_url(str(url))
                if canon in seen:
                    out.log(str(url), "duplicate", "URL repeated in the file")
                    continue
                seen.add(canon)
                authors = rec.get("authors", rec.get("author"))
                if isinstance(authors, str):
                    authors = [authors]
                out.articles.append(
                    {
                        "article_id": stable_id(canon or str(url)),
                        "page_id": stable_id(str(url)),
                        "url": str(url),
                        "canonical_url": canon,
                        "source": shard.source,
                        "outlet": rec.get("outlet") or shard.outlet,
                        "title": rec.get("title"),
                        "authors": [str(a) for a in authors] if authors else None,
                        "published": _date(rec.get("published", rec.get("date"))),
                        "language": rec.get("language") or shard.language,
                        "description": rec.get("description"),
                        "body": str(body),
                        "fetched_at": now,
                        "run_id": run_id,
                    }
                )
                out.log(
                    str(url),
                    "ok",
                    None,
                    final_url=str(url),
                    status=200,
                    content_type="application/jsonl",
                    bytes=len(line),
                )


def fetch_shard(
    shard: Shard,
    settings: FetchSettings,
    state: dict[str, dict[str, Any]],
    run_id: str,
    archive_dir: Path,
    *,
    client: httpx.Client | None = None,
    page_sink: Callable[[pa.Table], None] | None = None,
    sink_rows: int = 100,
) -> FetchResult:
    """Fetch one shard; ``state`` maps canonical_url -> last fetch_state row (may be empty).

    Never raises for a URL or a file: failures are FETCHES rows (and REJECTS with
    stage='fetch'). ``client`` is for tests/injection; by default one is created and closed.
    ``page_sink`` receives the pages in tables of at most ``sink_rows`` while the shard is
    read (the result's ``pages`` is then empty), so a shard's HTML is never all in memory.
    """
    out = _Out(shard, run_id, page_sink, sink_rows)
    try:
        if shard.kind == "html_dir":
            _fetch_html_dir(shard, settings, state, run_id, out)
        elif shard.kind == "warc":
            _fetch_warc(shard, settings, state, run_id, out)
        elif shard.kind == "jsonl":
            _fetch_jsonl(shard, run_id, out)
        else:
            _fetch_http(shard, settings, state, run_id, Path(archive_dir), out, client)
    except Exception as e:  # noqa: BLE001 - the shard reports instead of failing the flow
        out.log(shard.shard_id, "shard_error", f"{type(e).__name__}: {e}")
    return out.result()


def shard_state(shard: Shard, state: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The part of ``state`` a shard needs: pass this, not the whole warehouse, to a task."""
    out: dict[str, dict[str, Any]] = {}
    for item in shard.items:
        for key in (canonical_url(item), item):
            if key in state:
                out[key] = state[key]
    return out


def state_dict(table: pa.Table | None) -> dict[str, dict[str, Any]]:
    """fetch_state table (from the warehouse) -> the ``state`` argument of fetch_shard."""
    if table is None or table.num_rows == 0:
        return {}
    return {r["canonical_url"]: r for r in to_rows(table)}


def fetches_to_rejects(fetches: pa.Table) -> pa.Table:
    """Discovery drops as REJECTS (stage='fetch') for callers that only keep one reject log."""
    rows = [
        {
            "item_id": stable_id(r["url"] or ""),
            "url": r["url"],
            "stage": "fetch",
            "reason": r["reason"],
            "detail": r["detail"],
            "run_id": r["run_id"],
        }
        for r in fetches.to_pylist()
        if r["reason"] not in NORMAL
    ]
    return rejects_table(rows) if rows else REJECTS.empty_table()


__all__ = [
    "FETCHES",
    "FETCH_REASONS",
    "FETCH_STATE",
    "TABLE_SPECS",
    "WARC_INDEX",
    "FetchResult",
    "HttpFetcher",
    "fetch_row",
    "fetch_shard",
    "fetches_to_rejects",
    "shard_state",
    "state_dict",
]
