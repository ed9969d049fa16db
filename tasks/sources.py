"""The publisher registry (``sources.yaml``) and URL discovery: sources in, shards out.

``load_sources`` turns the yaml file into typed ``Source`` entries plus one ``FetchSettings``;
every mistake is a ``SourcesError`` naming the file, the entry and the problem, because a typo in
a registry edited by hand should stop a run before any request is made, not half-way through.

``discover`` expands each source (feed, sitemap, URL list, folder, WARC, JSONL) into ``Shard``s
of at most ``shard_size`` items. URL shards hold a single host each so that the per-host
politeness gate (``tasks.robots.HostGate``) serialises only what must be serialised and shards of
different hosts run in parallel. Every URL that discovery drops is a row of the fetch log
(``tasks.fetch.FETCHES``) with a reason, never a silent drop.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urljoin, urlsplit, urlunsplit
from xml.etree import ElementTree as ET

import pyarrow as pa
import yaml

from tasks.http_cache import CachedDoc
from tasks.schema import stable_id, utcnow

if TYPE_CHECKING:
    import httpx

    from tasks.fetch import HttpFetcher

KINDS = ("feed", "sitemap", "urls", "html_dir", "warc", "jsonl")
URL_KINDS = ("feed", "sitemap", "urls")


class SourcesError(ValueError):
    """A bad ``sources.yaml``: says which file, which entry and what is wrong."""

    def __init__(
        self, path: str | Path, problem: str, index: int | None = None, name: str | None = None
    ) -> None:
        where = str(path)
        if index is not None:
            where += f": sources[{index}]"
            if name:
                where += f" ({name!r})"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.index = index
        self.problem = problem


@dataclass
class FetchSettings:
    """How politely and defensively we fetch; defaults are safe for the open web."""

    user_agent: str = "newsflow/0.1 (+https://example.org/newsflow; batch news research crawler)"
    connect_timeout: float = 10.0
    read_timeout: float = 20.0
    total_timeout: float = 60.0  # wall-clock budget for one URL incl. body and retries' requests
    max_bytes: int = 5_000_000  # decoded body cap; also the decompression cap (gzip bombs)
    retries: int = 3  # extra attempts on 429/5xx/connection errors
    backoff: float = 1.0  # base seconds: backoff * 2**attempt * (1 + jitter)
    max_retry_after: float = 60.0  # cap on a server's Retry-After
    per_host_delay_s: float = 1.0  # minimum gap between request starts to one host
    per_host_concurrency: int = 1  # requests in flight per host, across threads and processes
    max_crawl_delay: float = 30.0  # robots.txt Crawl-delay is honoured up to this
    allow_private_hosts: set[str] = field(default_factory=set)  # SSRF allow-list (host names/IPs)
    max_redirects: int = 5
    respect_robots: bool = True
    revisit_after_s: float = 6 * 3600.0  # a fetched URL is not due again before this
    max_revisit_s: float = 7 * 86400.0  # unchanged pages back off (doubling) up to this
    shard_size: int = 50
    max_sitemap_depth: int = 3  # sitemap index nesting
    # A file shard is one Prefect task to read it and one to process its units (each task
    # run costs ~22 ms of flow and server CPU): ~400 pages a shard keeps that under 0.1 ms a
    # page while the pool still starts on the first units within a second of reading.
    file_shard_records: int = 400  # JSONL lines (or records of a plain WARC) per shard
    file_shard_bytes: int = 16_000_000  # compressed bytes per shard of a record-gzipped WARC
    split_files_over_bytes: int = 16_000_000  # smaller WARC/JSONL files are one shard
    host_state_dir: str | None = None  # shared dir for per-host locks; default: system temp
    # listings (feeds, sitemaps, URL lists) and robots.txt kept between runs with their
    # validators (tasks.http_cache); the flow points it into the warehouse home. None: no cache
    cache_dir: str | None = None
    robots_max_age_s: float = 86400.0  # RFC 9309: a cached robots.txt is good for 24 hours

    def host_dir(self) -> Path:
        """Directory shared by every task on this machine that holds the per-host gates."""
        base = self.host_state_dir or os.path.join(
            os.environ.get("TMPDIR", "/tmp"), "newsflow-hosts"
        )
        p = Path(base)
        p.mkdir(parents=True, exist_ok=True)
        return p


@dataclass
class Source:
    """One entry of the registry: where a publisher's URLs (or files) come from."""

    name: str
    kind: str
    location: str  # URL, or absolute path (resolved against the yaml file's folder)
    outlet: str | None = None
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    language: str | None = None
    max_age_days: float | None = None
    allow_private: bool = False
    user_agent: str | None = None
    delay_s: float | None = None
    max_pages: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept for other stages

    def is_url(self) -> bool:
        return self.location.startswith(("http://", "https://"))


@dataclass
class Shard:
    """A unit of fetch work: URLs of one host, files of a folder, or one WARC/JSONL path."""

    shard_id: str
    source: str
    kind: str
    outlet: str | None
    items: list[str]
    language: str | None = None
    allow_private: bool = False
    user_agent: str | None = None
    delay_s: float | None = None
    # URL -> the sitemap's <lastmod> (ISO): a page whose publisher says it has not changed
    # since our last verified fetch needs no request at all, not even a conditional one
    modified: dict[str, str] | None = None


# --- loading --------------------------------------------------------------------------------
_SETTING_ALIASES = {
    "allow_hosts": "allow_private_hosts",
    "timeout": "total_timeout",
    "delay_s": "per_host_delay_s",
}
_TIMEOUT_KEYS = {"connect": "connect_timeout", "read": "read_timeout", "total": "total_timeout"}


def _coerce(
    path: Path, key: str, value: Any, like: Any, index: int | None = None, name: str | None = None
) -> Any:
    """Cast a yaml value to the type of a dataclass default, or say clearly why not."""
    try:
        if isinstance(like, bool):
            if isinstance(value, bool):
                return value
            raise TypeError
        if isinstance(like, int) and not isinstance(like, bool):
            if isinstance(value, bool):
                raise TypeError
            return int(value)
        if isinstance(like, float):
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if isinstance(like, set):
            if isinstance(value, str):
                return {value}
            return {str(v) for v in value}
        if isinstance(like, str) or like is None:
            return None if value is None else str(value)
    except (TypeError, ValueError):
        pass
    raise SourcesError(path, f"{key}: expected {type(like).__name__}, got {value!r}", index, name)


def _settings(path: Path, raw: Any) -> FetchSettings:
    s = FetchSettings()
    if raw is None:
        return s
    if not isinstance(raw, dict):
        raise SourcesError(path, "settings: must be a mapping")
    names = {f.name for f in fields(FetchSettings)}
    for key, value in raw.items():
        if key == "timeouts":
            if not isinstance(value, dict):
                raise SourcesError(path, "settings.timeouts: must be a mapping connect/read/total")
            for k, v in value.items():
                if k not in _TIMEOUT_KEYS:
                    raise SourcesError(path, f"settings.timeouts: unknown key {k!r}")
                setattr(s, _TIMEOUT_KEYS[k], _coerce(path, f"timeouts.{k}", v, 1.0))
            continue
        attr = _SETTING_ALIASES.get(key, key)
        if attr not in names:
            raise SourcesError(path, f"settings: unknown key {key!r}")
        setattr(s, attr, _coerce(path, f"settings.{key}", value, getattr(s, attr)))
    if s.per_host_concurrency < 1:
        raise SourcesError(path, "settings.per_host_concurrency: must be >= 1")
    if s.max_bytes < 1 or s.shard_size < 1:
        raise SourcesError(path, "settings.max_bytes and shard_size must be >= 1")
    return s


def _regexes(path: Path, i: int, name: str, key: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SourcesError(path, f"{key}: must be a regex or a list of regexes", i, name)
    for v in value:
        try:
            re.compile(v)
        except re.error as e:
            raise SourcesError(path, f"{key}: bad regex {v!r}: {e}", i, name) from e
    return list(value)


def _source(path: Path, i: int, raw: Any) -> Source:
    if not isinstance(raw, dict):
        raise SourcesError(path, "must be a mapping with name, kind and location", i)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SourcesError(path, "missing or empty 'name'", i)
    kind = raw.get("kind")
    if kind not in KINDS:
        raise SourcesError(path, f"kind must be one of {', '.join(KINDS)}; got {kind!r}", i, name)
    loc = raw.get("location")
    if not isinstance(loc, str) or not loc.strip():
        raise SourcesError(path, "missing or empty 'location'", i, name)
    loc = loc.strip()
    scheme = urlsplit(loc).scheme.lower()
    if scheme in ("http", "https"):
        if kind in ("html_dir", "warc", "jsonl"):
            raise SourcesError(path, f"kind {kind!r} needs a local path, not a URL", i, name)
    elif scheme and len(scheme) > 1 and scheme != "file":
        raise SourcesError(path, f"location scheme {scheme!r} is not supported", i, name)
    else:
        p = Path(loc[7:] if loc.startswith("file://") else loc).expanduser()
        if not p.is_absolute():
            p = (path.parent / p).resolve()
        if kind == "html_dir" and not p.is_dir():
            raise SourcesError(path, f"html_dir location {str(p)!r} is not a directory", i, name)
        if kind != "html_dir" and not p.is_file():
            raise SourcesError(path, f"location {str(p)!r} does not exist", i, name)
        loc = str(p)
    src = Source(name=name.strip(), kind=kind, location=loc)
    src.outlet = None if raw.get("outlet") is None else str(raw["outlet"])
    src.include = _regexes(path, i, name, "include", raw.get("include"))
    src.exclude = _regexes(path, i, name, "exclude", raw.get("exclude"))
    src.language = None if raw.get("language") is None else str(raw["language"])
    for key, like in (("max_age_days", 1.0), ("delay_s", 1.0), ("max_pages", 1)):
        if raw.get(key) is not None:
            v = _coerce(path, key, raw[key], like, i, name)
            if v < 0:
                raise SourcesError(path, f"{key}: must be >= 0", i, name)
            setattr(src, key, v)
    if raw.get("allow_private") is not None:
        src.allow_private = _coerce(path, "allow_private", raw["allow_private"], False, i, name)
    if raw.get("user_agent") is not None:
        src.user_agent = str(raw["user_agent"])
    known = {f.name for f in fields(Source)} - {"options"}
    src.options = {k: v for k, v in raw.items() if k not in known}
    return src


def load_sources(path: str | Path) -> tuple[list[Source], FetchSettings]:
    """Read and validate ``sources.yaml``; raise ``SourcesError`` before any network use."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise SourcesError(path, f"cannot read: {e}") from e
    except yaml.YAMLError as e:
        raise SourcesError(path, f"not valid YAML: {e}") from e
    if not isinstance(doc, dict) or "sources" not in doc:
        raise SourcesError(path, "top level must be a mapping with a 'sources:' list")
    unknown = set(doc) - {"sources", "settings"}
    if unknown:
        raise SourcesError(path, f"unknown top-level keys: {sorted(unknown)}")
    raw = doc["sources"]
    if not isinstance(raw, list) or not raw:
        raise SourcesError(path, "'sources' must be a non-empty list")
    settings = _settings(path, doc.get("settings"))
    sources = [_source(path, i, r) for i, r in enumerate(raw)]
    seen: dict[str, int] = {}
    for i, s in enumerate(sources):
        if s.name in seen:
            raise SourcesError(path, f"duplicate name (also sources[{seen[s.name]}])", i, s.name)
        seen[s.name] = i
    return sources, settings


# --- URL helpers ----------------------------------------------------------------------------
def canonical_url(url: str) -> str:
    """The key we dedup and keep fetch state by: courlan normalisation, no fragment."""
    url = url.strip()
    if not url.lower().startswith(("http://", "https://")):
        return url
    try:
        from courlan import normalize_url

        url = normalize_url(url)
    except Exception:  # noqa: BLE001 - odd URLs keep their raw form rather than crash discovery
        pass
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, ""))


def host_key(url: str) -> str:
    """``host:port`` as one politeness unit (two ports on one machine are two sites)."""
    p = urlsplit(url)
    port = p.port or (443 if p.scheme == "https" else 80)
    return f"{(p.hostname or '').lower()}:{port}"


# --- sitemap / feed parsing (pure, unit-testable) -------------------------------------------
@dataclass
class Found:
    """A URL found in a feed or sitemap, with the date the publisher gave it (if any)."""

    url: str
    published: datetime | None = None
    language: str | None = None
    # sitemap <lastmod> as the latest instant it can mean: the end of its day for a bare date,
    # the next second otherwise (a page fetched at 10:00:00.7 and edited at 10:00:00.9 has
    # lastmod 10:00:00, which must not read as "older than our copy")
    modified: datetime | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].lower()


def _parse_date(text: str | None) -> datetime | None:
    if not text:
        return None
    t = text.strip()
    try:
        if len(t) == 10:
            d = date.fromisoformat(t)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _lastmod_bound(text: str | None) -> datetime | None:
    d = _parse_date(text)
    if d is None or text is None:
        return None
    return d + (timedelta(days=1) if len(text.strip()) == 10 else timedelta(seconds=1))


def parse_sitemap(data: bytes, base_url: str) -> tuple[list[Found], list[Found]]:
    """Return (pages, child sitemaps) of a urlset, sitemap index, news or text sitemap.

    Relative ``<loc>`` values are resolved against the sitemap's own URL; Google News
    ``<news:publication_date>`` wins over ``<lastmod>`` because it is the article's date. A
    child sitemap's ``modified`` is its index ``<lastmod>`` (upper bound, as for pages), which
    lets discovery reuse an unchanged child without asking for it.
    """
    head = data[:512].lstrip()
    if not head.startswith(b"<"):
        urls = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines()]
        return [Found(urljoin(base_url, u)) for u in urls if u and not u.startswith("#")], []
    pages: list[Found] = []
    children: list[Found] = []
    try:
        for _, el in ET.iterparse(io.BytesIO(data), events=("end",)):
            tag = _local(el.tag)
            if tag not in ("url", "sitemap"):
                continue
            loc = lastmod = pub = lang = None
            for child in el.iter():
                t = _local(child.tag)
                text = (child.text or "").strip()
                if t == "loc" and loc is None:
                    loc = text
                elif t == "lastmod":
                    lastmod = text
                elif t == "publication_date":
                    pub = text
                elif t == "language":
                    lang = text or None
            if loc:
                url = urljoin(base_url, loc)
                if tag == "sitemap":
                    children.append(Found(url, modified=_lastmod_bound(lastmod)))
                else:
                    pages.append(
                        Found(
                            url,
                            _parse_date(pub) or _parse_date(lastmod),
                            lang,
                            _lastmod_bound(lastmod),
                        )
                    )
            el.clear()
    except ET.ParseError:
        if not pages and not children:
            raise
    return pages, children


def parse_feed(data: bytes, base_url: str) -> list[Found]:
    """Entries of an RSS/Atom feed; relative links resolve against the feed URL."""
    import feedparser

    parsed = feedparser.parse(data, response_headers={"content-location": base_url})
    if parsed.bozo and not parsed.entries:
        raise ValueError(f"not a feed: {parsed.get('bozo_exception')}")
    # Atom's <updated> is "the most recent instant the entry was modified" (RFC 4287), as good
    # as a sitemap <lastmod>; RSS has only publication dates, which say nothing about edits
    atom = str(parsed.get("version") or "").startswith("atom")
    out = []
    for e in parsed.entries:
        link = e.get("link") or e.get("id")
        if not link:
            continue
        t = e.get("published_parsed") or e.get("updated_parsed")
        pub = datetime(*t[:6], tzinfo=UTC) if t else None
        u = e.get("updated_parsed") if atom else None
        modified = datetime(*u[:6], tzinfo=UTC) + timedelta(seconds=1) if u else None
        out.append(Found(urljoin(base_url, link), pub, modified=modified))
    return out


def maybe_gunzip(data: bytes, max_bytes: int) -> bytes:
    """Sitemaps are often served as ``.gz`` files; inflate with the same bomb cap as pages."""
    if data[:2] != b"\x1f\x8b":
        return data
    d = zlib.decompressobj(wbits=31)
    out = d.decompress(data, max_bytes + 1)
    if len(out) > max_bytes:
        raise ValueError(f"gzip_bomb: sitemap inflates past {max_bytes} bytes")
    return out


# --- discovery ------------------------------------------------------------------------------
def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


class _Discovery:
    """State of one ``discover`` call: the fetcher, the rows of dropped URLs, seen URLs."""

    def __init__(
        self, settings: FetchSettings, fetcher: HttpFetcher, run_id: str, now: datetime
    ) -> None:
        self.settings = settings
        self.fetcher = fetcher
        self.run_id = run_id
        self.now = now
        self.rows: list[dict[str, Any]] = []
        self.seen: set[str] = set()
        self.modified: dict[str, datetime] = {}  # canonical URL -> latest sitemap <lastmod>

    def log(
        self,
        src: Source,
        url: str,
        reason: str,
        detail: str | None = None,
        status: int | None = None,
    ) -> None:
        from tasks.fetch import fetch_row

        self.rows.append(
            fetch_row(
                url,
                src.name,
                self.run_id,
                reason=reason,
                detail=detail,
                status=status,
                stage="discover",
            )
        )

    def read(self, src: Source, location: str, modified: datetime | None = None) -> bytes | None:
        """Bytes of a feed/sitemap/list: local file, or one polite, SSRF-checked GET.

        With a cross-run cache (``settings.cache_dir``) a listing is asked for conditionally
        and a 304 reuses our copy; a child sitemap whose index ``<lastmod>`` (``modified``)
        predates our copy is not asked for at all, the same trust and the same re-verify
        bound (``max_revisit_s``) that pages get.
        """
        if not location.startswith(("http://", "https://")):
            try:
                return maybe_gunzip(Path(location).read_bytes(), self.settings.max_bytes)
            except (OSError, ValueError) as e:
                self.log(src, location, "discovery_error", str(e))
                return None
        from tasks.fetch import LASTMOD_SLACK

        cache = self.fetcher.cache
        doc = cache.get(location) if cache is not None else None
        body: bytes | None = None
        if doc is not None and modified is not None and doc.age_s() < self.settings.max_revisit_s:
            verified = datetime.fromtimestamp(doc.verified_at, UTC)
            if modified + LASTMOD_SLACK <= verified:
                body = doc.body
        if body is None:
            res = self.fetcher.get(
                location,
                allow_private=src.allow_private,
                user_agent=src.user_agent,
                delay_s=src.delay_s,
                accept_any_type=True,
                etag=doc.etag if doc is not None else None,
                last_modified=doc.last_modified if doc is not None else None,
            )
            if res.reason is None and res.status == 304 and doc is not None:
                body = doc.body
                if cache is not None:
                    cache.touch(location)
            elif res.reason or res.status != 200 or res.body is None:
                self.log(
                    src, location, res.reason or "http_error", res.detail or "discovery", res.status
                )
                return None
            else:
                body = res.body
                if cache is not None:
                    cache.put(
                        location,
                        CachedDoc(
                            body,
                            200,
                            res.headers.get("etag"),
                            res.headers.get("last-modified"),
                            time.time(),
                        ),
                    )
        try:
            return maybe_gunzip(body, self.settings.max_bytes)
        except ValueError as e:
            self.log(src, location, "gzip_bomb", str(e))
            return None

    def sitemap(
        self,
        src: Source,
        location: str,
        depth: int,
        visited: set[str],
        modified: datetime | None = None,
    ) -> list[Found]:
        if location in visited:
            return []
        visited.add(location)
        data = self.read(src, location, modified)
        if data is None:
            return []
        base = (
            location if location.startswith(("http://", "https://")) else (Path(location).as_uri())
        )
        try:
            pages, children = parse_sitemap(data, base)
        except ET.ParseError as e:
            self.log(src, location, "discovery_error", f"bad sitemap XML: {e}")
            return []
        for child in children:
            if depth >= self.settings.max_sitemap_depth:
                self.log(src, child.url, "sitemap_too_deep", f"depth > {depth}")
                continue
            loc = urlsplit(child.url).path if child.url.startswith("file://") else child.url
            pages.extend(self.sitemap(src, loc, depth + 1, visited, child.modified))
        return pages

    def found(self, src: Source) -> list[Found]:
        loc = src.location
        if src.kind == "sitemap":
            return self.sitemap(src, loc, 0, set())
        data = self.read(src, loc)
        if data is None:
            return []
        base = loc if src.is_url() else Path(loc).as_uri()
        if src.kind == "feed":
            try:
                return self._parsed_feed(data, base)
            except ValueError as e:
                self.log(src, loc, "discovery_error", str(e))
                return []
        lines = data.decode("utf-8", "replace").splitlines()
        return [
            Found(urljoin(base, u.strip()))
            for u in lines
            if u.strip() and not u.strip().startswith("#")
        ]

    def _parsed_feed(self, data: bytes, base: str) -> list[Found]:
        """``parse_feed``, remembered per feed body: feedparser spends milliseconds per item
        and an unchanged re-run would parse the very same bytes again."""
        cache = self.fetcher.cache
        if cache is None:
            return parse_feed(data, base)
        key = "parsed-feed:" + hashlib.sha256(base.encode() + b"\0" + data).hexdigest()
        doc = cache.get(key)
        if doc is not None:
            try:
                return [
                    Found(u, _parse_date(p), lang, _parse_date(m))
                    for u, p, lang, m in json.loads(doc.body)
                ]
            except (ValueError, TypeError):
                pass  # unreadable: parse again and overwrite
        found = parse_feed(data, base)
        rows = [
            [
                f.url,
                f.published and f.published.isoformat(),
                f.language,
                f.modified and f.modified.isoformat(),
            ]
            for f in found
        ]
        cache.put(key, CachedDoc(json.dumps(rows).encode(), verified_at=time.time()))
        return found

    def filter(self, src: Source, found: Iterable[Found]) -> list[str]:
        inc = [re.compile(r) for r in src.include]
        exc = [re.compile(r) for r in src.exclude]
        cutoff = (
            self.now - timedelta(days=src.max_age_days) if src.max_age_days is not None else None
        )
        kept: list[str] = []
        for f in found:
            url = canonical_url(f.url)
            if f.modified is not None:  # a duplicate's lastmod still tells when the page changed
                old = self.modified.get(url)
                self.modified[url] = f.modified if old is None else max(old, f.modified)
            if not url.startswith(("http://", "https://")):
                self.log(src, f.url, "bad_url", "not http(s)")
            elif url in self.seen:
                self.log(src, url, "duplicate", "URL already discovered in this run")
            elif inc and not any(r.search(url) for r in inc):
                self.log(src, url, "filtered_include")
            elif any(r.search(url) for r in exc):
                self.log(src, url, "filtered_exclude")
            elif cutoff is not None and f.published is not None and f.published < cutoff:
                self.log(src, url, "too_old", f"published {f.published.isoformat()}")
            elif src.max_pages is not None and len(kept) >= src.max_pages:
                self.log(src, url, "max_pages", f"source limit {src.max_pages}")
            else:
                allowed, why = self.fetcher.robots_allowed(
                    url, user_agent=src.user_agent, allow_private=src.allow_private
                )
                if not allowed:
                    self.log(src, url, why or "robots_disallowed")
                    continue
                self.seen.add(url)
                kept.append(url)
        return kept


class FileSlice(NamedTuple):
    """What one shard item of a file names: the whole file, ``count`` records from byte
    ``offset`` (``path::offset:count``), or the records that start in ``[offset, end)`` of a
    record-gzipped WARC (``path::@offset-end``)."""

    path: str
    offset: int = 0
    count: int | None = None
    end: int | None = None


def split_item(item: str) -> FileSlice:
    """Parse a shard item; anything that is not a slice is a whole file's path."""
    path, sep, rng = item.rpartition("::")
    if sep and (m := re.fullmatch(r"(\d+):(\d+)", rng)):
        return FileSlice(path, int(m.group(1)), count=int(m.group(2)))
    if sep and (m := re.fullmatch(r"@(\d+)-(\d+)", rng)):
        return FileSlice(path, int(m.group(1)), end=int(m.group(2)))
    return FileSlice(item)


def _record_starts(path: str, kind: str, per_shard: int) -> list[tuple[int, int]]:
    """(byte offset, count) of each run of ``per_shard`` records in a WARC or JSONL file.

    One sequential pass at discovery lets each shard seek straight to its records, so a
    multi-GB CC-NEWS file becomes many parallel shards instead of one huge one.
    """
    starts: list[int] = []
    n = 0
    with open(path, "rb") as f:
        if kind == "jsonl":
            offset = 0
            for line in f:
                if line.strip():
                    if n % per_shard == 0:
                        starts.append(offset)
                    n += 1
                offset += len(line)
        else:
            from warcio.archiveiterator import ArchiveIterator

            it = ArchiveIterator(f)
            for rec in it:
                # the same test as tasks.archive.iter_warc_records, so counts agree
                is_response = rec.rec_type == "response" and rec.http_headers is not None
                it.read_to_end(rec)
                if is_response:
                    if n % per_shard == 0:
                        starts.append(it.get_record_offset())
                    n += 1
    counts = [min(per_shard, n - i * per_shard) for i in range(len(starts))]
    return list(zip(starts, counts, strict=True))


def file_signature(path: str) -> str:
    """Size and mtime of a file: an unchanged signature means unchanged records."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def _cached_record_starts(path: str, kind: str, settings: FetchSettings) -> list[tuple[int, int]]:
    """_record_starts, remembered per file signature in the machine's newsflow temp dir.

    Finding record offsets decompresses the whole file; a daily run over the same archive
    would pay that again for nothing. The cache is derived data (losing it costs one pass).
    """
    import hashlib
    import json

    key = hashlib.sha1(
        f"{os.path.abspath(path)}|{file_signature(path)}|{kind}|{settings.file_shard_records}".encode()
    ).hexdigest()
    cache = settings.host_dir() / "record-starts" / f"{key}.json"
    try:
        return [tuple(x) for x in json.loads(cache.read_text(encoding="utf-8"))]
    except (OSError, ValueError):
        pass
    starts = _record_starts(path, kind, settings.file_shard_records)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(starts), encoding="utf-8")
    tmp.replace(cache)
    return starts


def _split_file(src: Source, settings: FetchSettings) -> list[list[str]]:
    """The shards of a big WARC or JSONL file, one item each.

    A record-gzipped WARC (the usual form) is cut into byte ranges straight from its size:
    each shard's reader finds its first record itself (``archive.record_start_in``), so
    planning costs nothing and all readers start at once. Finding record offsets instead
    meant inflating the whole file in this one process before any shard could start (9 s
    for a 20,000-page, 730 MB WARC, with every worker idle). Other files are split by
    records, from one pass that is cached per file; a WARC gzipped as one stream can only
    be read from its start, so it stays one shard.
    """
    from tasks.archive import gzip_layout

    if src.kind == "warc":
        layout = gzip_layout(src.location)
        if layout == "records":
            size = os.path.getsize(src.location)
            step = max(1, settings.file_shard_bytes)
            return [[f"{src.location}::@{a}-{min(a + step, size)}"] for a in range(0, size, step)]
        if layout == "stream":
            return [[src.location]]
    return [
        [f"{src.location}::{off}:{count}"]
        for off, count in _cached_record_starts(src.location, src.kind, settings)
    ]


def _file_shards(src: Source, settings: FetchSettings, shard_size: int) -> list[Shard]:
    inc = [re.compile(r) for r in src.include]
    exc = [re.compile(r) for r in src.exclude]
    if src.kind == "html_dir":
        root = Path(src.location)
        files = sorted(
            str(p)
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in (".html", ".htm", ".xhtml")
        )
        files = [
            f
            for f in files
            if (not inc or any(r.search(f) for r in inc)) and not any(r.search(f) for r in exc)
        ]
        if src.max_pages is not None:
            files = files[: src.max_pages]
        groups = list(_chunks(files, shard_size))
    elif os.path.getsize(src.location) > settings.split_files_over_bytes:
        groups = _split_file(src, settings)
    else:  # a small WARC / JSONL file is one shard; the reader streams it
        groups = [[src.location]]
    return [
        Shard(
            stable_id(src.name, src.kind, *g),
            src.name,
            src.kind,
            src.outlet,
            g,
            language=src.language,
        )
        for g in groups
        if g
    ]


def discover(
    sources: list[Source],
    settings: FetchSettings,
    client: httpx.Client | None = None,
    *,
    run_id: str = "",
    shard_size: int | None = None,
    now: datetime | None = None,
) -> tuple[list[Shard], pa.Table]:
    """Expand sources into shards of <= shard_size items and a FETCHES table of dropped URLs.

    URL shards hold one host each (see module doc) and are returned round-robin by host, so
    submitting them in order spreads workers over hosts. URLs are deduplicated across all sources
    by ``canonical_url``; the first source to list a URL owns it. A source that cannot be
    read (bad feed, 500 on the sitemap) is logged and skipped; it never fails the run.
    """
    from tasks.fetch import FETCHES, HttpFetcher

    size = shard_size or settings.shard_size
    now = now or utcnow()
    fetcher = HttpFetcher(settings, run_id=run_id, client=client)
    d = _Discovery(settings, fetcher, run_id, now)
    shards: list[Shard] = []
    try:
        listed = _read_listings(
            [s for s in sources if s.kind in URL_KINDS], settings, client, run_id, now
        )
        for src in sources:
            if src.kind not in URL_KINDS:
                try:
                    shards.extend(_file_shards(src, settings, size))
                except Exception as e:  # noqa: BLE001 - a corrupt file is logged, not fatal
                    d.log(src, src.location, "discovery_error", f"{type(e).__name__}: {e}")
                continue
            found, rows, error = listed[id(src)]
            d.rows.extend(rows)
            try:
                if error is None:
                    urls = d.filter(src, found)
            except Exception as e:  # noqa: BLE001 - one broken source must not stop the others
                error = e
            if error is not None:
                d.log(src, src.location, "discovery_error", f"{type(error).__name__}: {error}")
                continue
            by_host: dict[str, list[str]] = {}
            for u in urls:
                by_host.setdefault(host_key(u), []).append(u)
            for host in sorted(by_host):
                for g in _chunks(by_host[host], size):
                    shards.append(
                        Shard(
                            stable_id(src.name, host, *g),
                            src.name,
                            src.kind,
                            src.outlet,
                            g,
                            language=src.language,
                            allow_private=src.allow_private,
                            user_agent=src.user_agent,
                            delay_s=src.delay_s,
                        )
                    )
    finally:
        fetcher.close()
    for sh in shards:
        if sh.kind in URL_KINDS:
            mods = {u: d.modified[u].isoformat() for u in sh.items if u in d.modified}
            sh.modified = mods or None
    return _interleave_hosts(shards), pa.Table.from_pylist(d.rows, schema=FETCHES)


def _read_listings(
    sources: list[Source],
    settings: FetchSettings,
    client: httpx.Client | None,
    run_id: str,
    now: datetime,
) -> dict[int, tuple[list[Found], list[dict[str, Any]], Exception | None]]:
    """Read every source's feed/sitemap/list at once, one thread per source.

    Publishers are different hosts, so their per-host delays need not add up: read one after
    the other, N sitemaps cost N politeness waits before the first page is fetched, which
    dominates an unchanged re-run. Each thread has its own fetcher and log, so the rows come
    back in source order and the (order-dependent) URL dedup stays with the caller.
    """
    from tasks.fetch import HttpFetcher

    def one(src: Source) -> tuple[list[Found], list[dict[str, Any]], Exception | None]:
        sub = _Discovery(settings, HttpFetcher(settings, run_id=run_id, client=client), run_id, now)
        try:
            return sub.found(src), sub.rows, None
        except Exception as e:  # noqa: BLE001 - reported by the caller as discovery_error
            return [], sub.rows, e
        finally:
            sub.fetcher.close()

    if len(sources) <= 1:
        return {id(s): one(s) for s in sources}
    with ThreadPoolExecutor(max_workers=min(8, len(sources))) as ex:
        return {id(s): r for s, r in zip(sources, ex.map(one, sources), strict=True)}


def _interleave_hosts(shards: list[Shard]) -> list[Shard]:
    """Order shards round-robin by host so that N parallel workers start on N different
    hosts instead of queueing behind one host's politeness gate."""
    queues: dict[str, list[Shard]] = {}
    for sh in shards:
        key = host_key(sh.items[0]) if sh.kind in URL_KINDS else f"file:{sh.shard_id}"
        queues.setdefault(key, []).append(sh)
    out: list[Shard] = []
    lanes = list(queues.values())
    while lanes:
        out.extend(lane.pop(0) for lane in lanes)
        lanes = [lane for lane in lanes if lane]
    return out


__all__ = [
    "FetchSettings",
    "Found",
    "Shard",
    "Source",
    "SourcesError",
    "canonical_url",
    "discover",
    "host_key",
    "load_sources",
    "FileSlice",
    "split_item",
    "maybe_gunzip",
    "parse_feed",
    "parse_sitemap",
]
