"""A tiny static HTTP server for the bundled demo news site (``newsflow/demo/site``).

Why a real server rather than mocked responses: the scraper's politeness (robots.txt), discovery
(RSS feed, sitemap index, Google News sitemap) and incremental mode (ETag / Last-Modified
conditional requests answered with 304) are only exercised honestly over real HTTP.

Every outlet of the demo lives under its own path prefix on ONE host, so the port can be chosen
freely: site files contain the placeholder ``{{BASE}}`` wherever an absolute URL is needed
(canonical links, feed and sitemap locations) and it is replaced with ``http://HOST:PORT`` at
serve time. ETags are hashes of the bytes actually served, so they change with the port but are
stable across re-runs on the same port (``DEFAULT_PORT`` is fixed for that reason).

Run by hand with ``python -m newsflow.demo.server [--port N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import mimetypes
import re
import threading
import time
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

DEFAULT_PORT = 8765  # fixed default so re-runs keep the same URLs (and the same fetch state)
SITE_DIR: Path = Path(__file__).resolve().parent / "site"
EXPECTED_PATH: Path = Path(__file__).resolve().parent / "expected.json"
PLACEHOLDER = "{{BASE}}"

# A fixed Last-Modified for the shipped files: deterministic across checkouts (file mtimes are
# not), and in the demo's news cycle (the newest story is from 2025-03-13).
SITE_LAST_MODIFIED = 1741892400.0  # 2025-03-13T19:00:00Z

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".xml": "application/xml; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
_TEXT_SUFFIXES = {".html", ".xml", ".txt", ".css", ".svg", ".json"}
_SERVED_SUFFIXES = _TEXT_SUFFIXES


def _content_type(path: Path) -> str:
    """Content-Type by suffix; the RSS feed gets its own type as feed readers expect."""
    if path.name == "feed.xml":
        return "application/rss+xml; charset=utf-8"
    guessed = mimetypes.guess_type(path.name)[0]
    return _TYPES.get(path.suffix) or guessed or "application/octet-stream"


class _Handler(BaseHTTPRequestHandler):
    """Serves files from SITE_DIR with {{BASE}} substituted and conditional-GET support."""

    server: _DemoHTTPServer
    server_version = "newsflow-demo/1.0"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: without
    # this, delayed ACKs add ~40 ms to every response on loopback

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default stderr access log; requests are recorded on the DemoSite."""

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        site = self.server.demo
        site._record(self.command, self.path)
        found = site._resolve(self.path)
        if found is None:
            self._send_plain(HTTPStatus.NOT_FOUND, b"Not found\n", head)
            return
        if isinstance(found, str):  # directory without its trailing slash
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", site.url(found))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, ctype, mtime = found
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        last_modified = formatdate(mtime, usegmt=True)
        if self._not_modified(etag, mtime):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        self.send_header("Cache-Control", "max-age=60")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _not_modified(self, etag: str, mtime: float) -> bool:
        """RFC 9110: If-None-Match wins over If-Modified-Since when both are sent."""
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            return "*" in tags or etag in tags
        ims = self.headers.get("If-Modified-Since")
        if ims:
            try:
                since = parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError, IndexError):
                return False
            return int(mtime) <= int(since)
        return False

    def _send_plain(self, status: HTTPStatus, body: bytes, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)


class _DemoHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its DemoSite (for file lookup and request logging)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], demo: DemoSite) -> None:
        self.demo = demo
        super().__init__(addr, _Handler)


class DemoSite:
    """The demo site served on a local port in a daemon thread; use as a context manager.

    ``port=0`` picks a free port (tests); the default port keeps URLs stable between runs so
    the warehouse's fetch state (ETags, URLs) stays meaningful for incremental re-runs.
    ``requests`` records ``(method, path)`` of every request, e.g. to assert that a path
    disallowed by robots.txt was never fetched.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, site_dir: Path | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.site_dir = (site_dir or SITE_DIR).resolve()
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._overrides: dict[str, tuple[bytes, float]] = {}
        self._httpd: _DemoHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://host:port`` of the running server (the real port when port=0 was asked)."""
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL of a site path such as ``/feed.xml``."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def start(self) -> DemoSite:
        """Bind and serve in a daemon thread; returns self so ``DemoSite().start()`` chains."""
        if self._httpd is not None:
            return self
        self._httpd = _DemoHTTPServer((self.host, self.port), self)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"newsflow-demo-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> DemoSite:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- test helpers ----------------------------------------------------------------------
    def set_page(self, path: str, html: str | None) -> None:
        """Replace (or with None restore) the content served at ``path``.

        Lets incremental-mode tests simulate a publisher editing a page: the override gets a
        new ETag and a Last-Modified of "now", so conditional requests return 200 again.
        """
        with self._lock:
            if html is None:
                self._overrides.pop(path, None)
            else:
                self._overrides[path] = (html.encode("utf-8"), time.time())

    def paths_requested(self) -> list[str]:
        """Just the paths (query stripped) of all requests so far, in order."""
        with self._lock:
            return [urlsplit(p).path for _, p in self.requests]

    # --- internals -------------------------------------------------------------------------
    def _record(self, method: str, raw_path: str) -> None:
        with self._lock:
            self.requests.append((method, raw_path))

    def _resolve(self, raw_path: str) -> tuple[bytes, str, float] | str | None:
        """Map a request path to (body, content type, mtime), a redirect path, or None (404).

        Directory paths serve their index.html (without the trailing slash: the path to
        redirect to, as real servers do); anything outside SITE_DIR or with an unexpected
        suffix is a 404 so the server cannot leak other files.
        """
        path = unquote(urlsplit(raw_path).path) or "/"
        with self._lock:
            override = self._overrides.get(path)
        if override is not None:
            return override[0], _TYPES[".html"], override[1]
        rel = path.lstrip("/")
        target = (self.site_dir / rel).resolve()
        if not target.is_relative_to(self.site_dir):
            return None
        if target.is_dir():
            if not path.endswith("/"):
                return path + "/" if (target / "index.html").is_file() else None
            target = target / "index.html"
        if not target.is_file() or target.suffix not in _SERVED_SUFFIXES:
            return None
        data = target.read_bytes()
        mtime = SITE_LAST_MODIFIED
        if target.suffix in _TEXT_SUFFIXES:
            data = data.replace(PLACEHOLDER.encode(), self.base_url.encode())
        if target.suffix == ".xml":
            data, mtime = self._restamp_sitemap(data, mtime)
        return data, _content_type(target), mtime

    def _restamp_sitemap(self, data: bytes, mtime: float) -> tuple[bytes, float]:
        """Give edited pages a fresh ``<lastmod>``, as a publisher's CMS would, and the index
        entry of every child sitemap that lists one of them (crawlers skip unchanged children
        by that date)."""
        with self._lock:
            edits = dict(self._overrides)
        for path, (_, when) in edits.items():
            loc = f"<loc>{self.base_url}{path}</loc>".encode()
            data = self._stamp(data, loc, when)
            mtime = max(mtime, when)
        if b"<sitemapindex" in data:
            for m in re.finditer(rb"<loc>([^<]+)</loc>", data):
                child = m.group(1).decode()
                rel = child.removeprefix(self.base_url).lstrip("/")
                target = (self.site_dir / rel).resolve()
                if not (target.is_relative_to(self.site_dir) and target.is_file()):
                    continue
                text = target.read_bytes().replace(PLACEHOLDER.encode(), self.base_url.encode())
                times = [
                    when
                    for path, (_, when) in edits.items()
                    if f"<loc>{self.base_url}{path}</loc>".encode() in text
                ]
                if times:
                    data = self._stamp(data, m.group(0), max(times))
        return data, mtime

    @staticmethod
    def _stamp(data: bytes, loc: bytes, when: float) -> bytes:
        """Set the ``<lastmod>`` that follows ``loc`` to ``when``."""
        tag = f"<lastmod>{datetime.fromtimestamp(when, UTC).isoformat(timespec='seconds')}"
        return re.sub(
            re.escape(loc) + rb"(\s*)<lastmod>[^<]*</lastmod>",
            lambda m: loc + m.group(1) + tag.encode() + b"</lastmod>",
            data,
        )


def sources_yaml(base_url: str) -> str:
    """Text of a ``sources.yaml`` pointing at the demo's RSS feed and sitemap index.

    ``allow_private`` is set because the demo runs on 127.0.0.1, which the fetcher's SSRF guard
    refuses by default; ``delay_s: 0`` (global and per source) keeps the demo fast, matching the
    site's robots.txt, which sets no Crawl-delay. ``revisit_after_s: 0`` makes every re-run ask
    again, so a second demo run shows conditional GETs answered 304 rather than "not due".
    """
    base = base_url.rstrip("/")
    return (
        "# sources.yaml for the bundled demo site (newsflow.demo); generated by sources_yaml()\n"
        "settings:\n"
        "  delay_s: 0\n"
        "  revisit_after_s: 0\n"
        "sources:\n"
        "  - name: demo-feed\n"
        "    kind: feed\n"
        f"    location: {base}/feed.xml\n"
        "    allow_private: true\n"
        "    delay_s: 0\n"
        "  - name: demo-sitemap\n"
        "    kind: sitemap\n"
        f"    location: {base}/sitemap.xml\n"
        "    allow_private: true\n"
        "    delay_s: 0\n"
    )


def main(argv: list[str] | None = None) -> None:
    """Serve the demo site in the foreground until Ctrl-C (for poking at it by hand)."""
    ap = argparse.ArgumentParser(description="Serve the newsflow demo news site.")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    args = ap.parse_args(argv)
    with DemoSite(args.host, args.port) as site:
        print(f"demo site at {site.base_url}/ (feed: /feed.xml, sitemap: /sitemap.xml)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
