"""Cross-run cache of the documents that *list* pages: feeds, sitemaps, URL lists, robots.txt.

Why: once pages are skipped by their fetch state, an unchanged re-run's cost is the listings
themselves: robots.txt, a feed, a sitemap index and each child sitemap, every one a request
behind the host's politeness delay. Keeping each listing's body with its validators lets the
next run

* ask conditionally (``If-None-Match`` / ``If-Modified-Since``) and reuse the body on a 304;
* skip a child sitemap outright when its index's ``<lastmod>`` dates it before our copy;
* reuse robots.txt for up to 24 hours, as RFC 9309 (section 2.4) allows.

One file per URL (a JSON header line, then the raw body), replaced atomically, so parallel
discovery threads and a killed run never leave a half-written entry; a corrupt entry reads as
a miss. Pages are not kept here: their validators live in the warehouse's ``fetch_state`` and
their bodies in the WARC archive.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CachedDoc:
    """A listing as the server last vouched for it (200, or 304 to our validators)."""

    body: bytes
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    verified_at: float = 0.0  # epoch seconds of the last 200/304 (the file's mtime)

    def age_s(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.verified_at


class DocCache:
    """Listings by URL under ``directory``; see the module doc for what and why."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def _path(self, url: str) -> Path:
        return self.dir / f"{hashlib.sha256(url.encode()).hexdigest()[:32]}.doc"

    def get(self, url: str) -> CachedDoc | None:
        """The cached listing, or None when absent or unreadable (then we simply re-fetch)."""
        path = self._path(url)
        try:
            with open(path, "rb") as f:
                verified_at = os.fstat(f.fileno()).st_mtime
                raw = f.read()
            head, sep, body = raw.partition(b"\n")
            meta = json.loads(head)
            if not sep or meta.get("url") != url:  # truncated, or a hash collision
                return None
            return CachedDoc(
                body, int(meta["status"]), meta.get("etag"), meta.get("last_modified"), verified_at
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, url: str, doc: CachedDoc) -> None:
        """Store ``doc`` for ``url``; readers see the old entry or the new one, never a mix."""
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = {
            "url": url,
            "status": doc.status,
            "etag": doc.etag,
            "last_modified": doc.last_modified,
        }
        path = self._path(url)
        tmp = path.with_suffix(f".{os.getpid()}.{id(doc)}.tmp")
        tmp.write_bytes(json.dumps(meta).encode() + b"\n" + doc.body)
        os.utime(tmp, (doc.verified_at, doc.verified_at))
        os.replace(tmp, path)

    def touch(self, url: str) -> None:
        """The server vouched again (304) for our copy: only its date changes.

        The file's mtime is the verification time, so a 304 costs a ``utime`` rather than a
        rewrite (an in-place replace makes ext4 flush the data on every re-run).
        """
        with contextlib.suppress(FileNotFoundError):
            os.utime(self._path(url), None)
