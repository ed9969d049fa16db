"""Page metadata read from an already parsed lxml tree: JSON-LD, OpenGraph/meta tags, <h1>, <title>.

Why a module of its own: publishers state title, authors, dates and canonical URL in several
machine-readable places that usually agree with each other and are more reliable than anything
guessed from the visible text. Reading them once from the same tree that trafilatura extracts
from keeps extraction to a single HTML parse. Nothing here mutates the tree (trafilatura prunes
it afterwards) and nothing here knows about Arrow, Prefect or DuckDB.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urljoin, urlsplit

from lxml.html import HtmlElement

# JSON-LD types whose headline/author/date describe the article shown on the page.
ARTICLE_TYPES = {
    "article",
    "newsarticle",
    "reportagenewsarticle",
    "analysisnewsarticle",
    "opinionnewsarticle",
    "reviewnewsarticle",
    "backgroundnewsarticle",
    "askpublicnewsarticle",
    "blogposting",
    "liveblogposting",
    "socialmediaposting",
    "scholarlyarticle",
    "techarticle",
    "report",
    "videoobject",
    "webpage",
    "itempage",
    "medicalwebpage",
}
# Types that say "this page is a list/section/profile, not one article".
LISTING_TYPES = {"collectionpage", "searchresultspage", "profilepage"}
GENERIC_PAGE_TYPES = {"webpage", "itempage", "medicalwebpage", "videoobject"}
ORG_TYPES = {"organization", "newsmediaorganization", "corporation", "website", "brand"}

_WS = re.compile(r"\s+")
_ISO_DATE = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})")
_COMPACT_DATE = re.compile(r"^\s*(\d{4})(\d{2})(\d{2})(?:T|\d|$)")


def norm_space(text: str | None) -> str:
    """Collapse whitespace and NFC-normalise: titles and names arrive with NBSPs/newlines."""
    if not text:
        return ""
    return _WS.sub(" ", unicodedata.normalize("NFC", text)).strip()


@dataclass
class PageMeta:
    """Everything machine-readable the page says about itself."""

    meta: dict[str, list[str]] = field(default_factory=dict)  # lowercased name/property -> values
    jsonld: list[dict[str, Any]] = field(default_factory=list)  # flattened JSON-LD objects
    title_tag: str = ""
    h1: list[str] = field(default_factory=list)
    canonical_link: str = ""
    lang: str = ""
    time_datetimes: list[str] = field(default_factory=list)  # <time itemprop=datePublished>

    def first(self, *names: str) -> str:
        """First non-empty meta value among ``names`` (in order of trust)."""
        for n in names:
            for v in self.meta.get(n, ()):
                v = norm_space(v)
                if v:
                    return v
        return ""

    def articles(self) -> list[dict[str, Any]]:
        """JSON-LD objects describing an article, most specific type first."""
        scored = []
        for i, obj in enumerate(self.jsonld):
            types = _types(obj)
            if types & ARTICLE_TYPES:
                generic = types <= GENERIC_PAGE_TYPES
                scored.append((1 if generic else 0, i, obj))
        return [o for _, _, o in sorted(scored, key=lambda t: (t[0], t[1]))]

    def types(self) -> set[str]:
        out: set[str] = set()
        for obj in self.jsonld:
            out |= _types(obj)
        return out


def _types(obj: dict[str, Any]) -> set[str]:
    t = obj.get("@type")
    if isinstance(t, str):
        return {t.lower()}
    if isinstance(t, list):
        return {x.lower() for x in t if isinstance(x, str)}
    return set()


def _flatten_jsonld(data: Any, out: list[dict[str, Any]], depth: int = 0) -> None:
    """Collect every typed object, including those nested in @graph or mainEntity."""
    if depth > 6:
        return
    if isinstance(data, list):
        for item in data:
            _flatten_jsonld(item, out, depth + 1)
    elif isinstance(data, dict):
        if "@type" in data:
            out.append(data)
        for key in ("@graph", "mainEntity", "itemListElement"):
            if key in data:
                _flatten_jsonld(data[key], out, depth + 1)


_JSON_COMMENT = re.compile(r"^\s*(?:<!--|(?://\s*)?<!\[CDATA\[)|(?:-->|(?://\s*)?\]\]>)\s*$")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _load_json(text: str) -> Any:
    """Publishers' JSON-LD is often slightly broken (CDATA, raw newlines, trailing commas)."""
    text = _JSON_COMMENT.sub("", text.strip())
    try:
        return json.loads(text, strict=False)
    except ValueError:
        try:
            return json.loads(_TRAILING_COMMA.sub(r"\1", text), strict=False)
        except ValueError:
            return None


def read_page_meta(tree: HtmlElement) -> PageMeta:
    """Read metadata from the parsed page without modifying it."""
    pm = PageMeta()
    for el in tree.iter("meta"):
        content = el.get("content")
        if content is None:
            continue
        for attr in ("property", "name", "itemprop", "http-equiv"):
            key = el.get(attr)
            if key:
                pm.meta.setdefault(key.strip().lower(), []).append(content)
    for el in tree.iter("script"):
        if (el.get("type") or "").strip().lower() != "application/ld+json":
            continue
        data = _load_json(el.text or "")
        if data is not None:
            _flatten_jsonld(data, pm.jsonld)
    titles = tree.xpath("//head/title | //title")
    if titles:
        pm.title_tag = norm_space(titles[0].text_content())
    pm.h1 = [t for t in (norm_space(h.text_content()) for h in tree.iter("h1")) if t][:5]
    for link in tree.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        if "canonical" in rel and link.get("href"):
            pm.canonical_link = link.get("href", "").strip()
            break
    root = tree.getroottree().getroot()
    pm.lang = (root.get("lang") or root.get("xml:lang") or "").strip()
    for el in tree.xpath('//*[@itemprop="datePublished"]'):
        v = el.get("datetime") or el.get("content")
        if v:
            pm.time_datetimes.append(v)
    return pm


_PUB_MARK = re.compile(r"publish(?!er)|pubdate|pub[-_]date|date[-_]?pub|posted", re.IGNORECASE)
_UPDATE_MARK = re.compile(r"updat|modif|edited|revis", re.IGNORECASE)
_NOT_ARTICLE_TAGS = {"nav", "footer", "aside"}


def pub_time_tags(tree: HtmlElement) -> list[str]:
    """datetime values of <time> tags that give the article's publication time.

    A tag counts when it has the old HTML5 ``pubdate`` attribute or the nearest of itself,
    its parent and grandparent whose class/id/itemprop says "published" (WordPress'
    "entry-date published", "date-published", microformats' "dt-published") before
    anything says "updated"/"modified"; or when it is the page's only <time datetime>,
    outside nav/footer/aside and not marked as an update. itemprop=datePublished tags are
    already in PageMeta.time_datetimes. published_date() does not read these tags.
    """
    tags = [el for el in tree.iter("time") if el.get("datetime")]
    out: list[str] = []
    for el in tags:
        if el.get("itemprop") == "datePublished":
            continue
        verdict = True if el.get("pubdate") is not None else None
        node: HtmlElement | None = el
        for _ in range(3):
            if verdict is not None or node is None:
                break
            marks = f"{node.get('class') or ''} {node.get('id') or ''} {node.get('itemprop') or ''}"
            if _PUB_MARK.search(marks):
                verdict = True
            elif _UPDATE_MARK.search(marks):
                verdict = False
            node = node.getparent()
        if verdict is None and len(tags) == 1:
            verdict = not any(a.tag in _NOT_ARTICLE_TAGS for a in el.iterancestors())
        if verdict:
            out.append(el.get("datetime", ""))
    return out


# ------------------------------------------------------------------------------ field pickers
def _names(value: Any, orgs: list[str] | None = None) -> list[str]:
    """Person names from a JSON-LD author value; organisation names go to ``orgs``."""
    out: list[str] = []
    if isinstance(value, list):
        for v in value:
            out.extend(_names(v, orgs))
    elif isinstance(value, dict):
        name = value.get("name")
        if isinstance(name, list):
            name = " ".join(str(n) for n in name)
        if not isinstance(name, str) and (value.get("givenName") or value.get("familyName")):
            name = f"{value.get('givenName', '')} {value.get('familyName', '')}"
        if isinstance(name, str):
            if _types(value) & ORG_TYPES:
                if orgs is not None and norm_space(name):
                    orgs.append(norm_space(name))
            else:
                out.append(name)
    elif isinstance(value, str):
        out.append(value)
    return [n for n in (norm_space(x) for x in out) if n]


def jsonld_authors(pm: PageMeta) -> tuple[list[str], list[str]]:
    """(person names, organisation names) credited as authors of the article."""
    for obj in pm.articles():
        orgs: list[str] = []
        names = _names(obj.get("author"), orgs) or _names(obj.get("creator"), orgs)
        if names or orgs:
            return names, orgs
    return [], []


def meta_authors(pm: PageMeta) -> list[str]:
    """Author names from meta tags; article:author is often a profile URL, skipped then."""
    for key in (
        "author",
        "article:author",
        "parsely-author",
        "sailthru.author",
        "dc.creator",
        "byl",
        "cxenseparse:author",
        "twitter:creator",
    ):
        vals = [norm_space(v) for v in pm.meta.get(key, ())]
        vals = [v for v in vals if v and not v.startswith(("http", "@", "www."))]
        if vals:
            return vals
    return []


def iso_date(value: Any) -> str | None:
    """'YYYY-MM-DD' as written (no timezone conversion: the publisher's local date is wanted)."""
    if not isinstance(value, str):
        return None
    m = _ISO_DATE.match(value) or _COMPACT_DATE.match(value)
    if not m:
        return None
    y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
    if not (1990 <= y <= 2100 and 1 <= mo <= 12 and 1 <= d <= 31):
        return None
    return f"{y:04d}-{mo:02d}-{d:02d}"


# meta names/properties that state the publication date, in order of trust
_PUBLISHED_KEYS = (
    "article:published_time",
    "og:article:published_time",
    "datepublished",
    "published_time",
    "article.published",
    "publishdate",
    "publish-date",
    "pubdate",
    "dc.date.issued",
    "dcterms.date",
    "dc.date",
    "date",
    "sailthru.date",
    "parsely-pub-date",
    "dcterms.created",
    "article:published",
    "og:published_time",
)


def published_date(pm: PageMeta) -> str | None:
    """Original publication date from the most explicit declarations, in order of trust."""
    for obj in pm.articles():
        d = iso_date(obj.get("datePublished")) or iso_date(obj.get("dateCreated"))
        if d:
            return d
    for key in _PUBLISHED_KEYS:
        for v in pm.meta.get(key, ()):
            d = iso_date(v)
            if d:
                return d
    for v in pm.time_datetimes:
        d = iso_date(v)
        if d:
            return d
    return None


# ISO 8601 date-time (extended or basic form) with an optional UTC designator or offset.
_ISO_DATETIME = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})[T ]\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?\s*$",
    re.IGNORECASE,
)
_COMPACT_DATETIME = re.compile(
    r"^\s*(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(?:(\d{2})(?:[.,](\d+))?)?"
    r"(Z|[+-]\d{2}(?::?\d{2})?)?\s*$",
    re.IGNORECASE,
)
# RFC 2822 / HTTP date with an explicit zone: "Mon, 05 Aug 2024 12:47:21 GMT", "... +0200".
_RFC_DATETIME = re.compile(
    r"^\s*(?:[A-Za-z]{3},?\s+)?(\d{1,2})\s+([A-Za-z]{3})[a-z]*\.?\s+(\d{4})\s+"
    r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s+(Z|UTC?|GMT|[+-]\d{4})\s*$"
)
# JavaScript Date.toString(): "Tue Nov 19 2019 03:05:46 GMT+0000 (Coordinated Universal Time)".
_JS_DATETIME = re.compile(
    r"^\s*[A-Za-z]{3}\s+([A-Za-z]{3})\s+(\d{1,2})\s+(\d{4})\s+(\d{1,2}):(\d{2}):(\d{2})\s+"
    r"GMT([+-]\d{4})(?:\s+\([^)]*\))?\s*$"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
MAX_UTC_OFFSET = timedelta(hours=14)


def _offset(zone: str | None) -> timezone | None:
    """A fixed UTC offset from 'Z'/'UTC'/'GMT'/'+hh[:mm]'; None when no zone is stated."""
    if not zone:
        return None
    if zone.upper() in ("Z", "UT", "UTC", "GMT"):
        return UTC
    digits = zone[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if minutes >= 60:
        return None
    delta = timedelta(hours=hours, minutes=minutes)
    if delta > MAX_UTC_OFFSET:
        return None
    return timezone(-delta if zone[0] == "-" else delta)


def local_datetime(value: Any) -> datetime | None:
    """The publisher's stated local date-time with its UTC offset, or None.

    None unless the value states a time of day *and* an offset (or Z/UTC/GMT): a bare date
    has no time, a time without an offset has no known instant and no zone is guessed. A
    time of exactly 00:00:00 is how CMSs serialise a bare date ("2024-10-16T00:00:00+08:00"),
    so it counts as no time of day.
    """
    if not isinstance(value, str):
        return None
    if m := _ISO_DATETIME.match(value) or _COMPACT_DATETIME.match(value):
        y, mo, d, hh, mi, ss, frac, zone = m.groups()
        month = int(mo)
    elif m := _RFC_DATETIME.match(value):
        d, mon, y, hh, mi, ss, zone = m.groups()
        frac = None
        month = _MONTHS.get(mon.lower(), 0)
    elif m := _JS_DATETIME.match(value):
        mon, d, y, hh, mi, ss, zone = m.groups()
        frac = None
        month = _MONTHS.get(mon.lower(), 0)
    else:
        return None
    tz = _offset(zone)
    if tz is None or not 1990 <= int(y) <= 2100:
        return None
    micro = int((frac + "000000")[:6]) if frac else 0
    try:
        dt = datetime(
            int(y), month, int(d), int(hh), int(mi), min(int(ss or 0), 59), micro, tzinfo=tz
        )
    except ValueError:  # month 13, 25:00, February 30...
        return None
    if (dt.hour, dt.minute, dt.second, dt.microsecond) == (0, 0, 0, 0):
        return None
    return dt


def published_time(
    pm: PageMeta, published: str | None, tree: HtmlElement | None = None
) -> datetime | None:
    """Exact publication time (UTC) from the declarations published_date() reads, or None.

    Sources are tried in the same order of trust as for the date, then (when ``tree`` is
    given) <time> tags that give the publication time (pub_time_tags); the first that
    states a time of day with a UTC offset (see local_datetime) *and* whose local date is
    ``published`` wins, so that the time always belongs to the publication the date
    describes (a declaration without a usable time defers to the next one, never the date
    to the time).
    """
    if not published:
        return None

    def first(values: Iterable[Any]) -> datetime | None:
        for v in values:
            dt = local_datetime(v)
            if dt is not None and dt.date().isoformat() == published:
                return dt.astimezone(UTC)
        return None

    declared = [
        v for obj in pm.articles() for v in (obj.get("datePublished"), obj.get("dateCreated"))
    ]
    declared += [v for key in _PUBLISHED_KEYS for v in pm.meta.get(key, ())]
    declared += pm.time_datetimes
    found = first(declared)
    if found is None and tree is not None:  # the <time> scan walks the tree: only if needed
        found = first(pub_time_tags(tree))
    return found


def jsonld_field(pm: PageMeta, key: str) -> str:
    for obj in pm.articles():
        v = obj.get(key)
        if isinstance(v, list) and v:
            v = v[0]
        if isinstance(v, str) and v.strip():
            return norm_space(v)
    return ""


def site_name(pm: PageMeta) -> str:
    name = pm.first(
        "og:site_name", "application-name", "apple-mobile-web-app-title", "twitter:site"
    )
    if name:
        return name.lstrip("@")
    for obj in pm.articles():
        pub = obj.get("publisher")
        if isinstance(pub, list) and pub:
            pub = pub[0]
        if isinstance(pub, dict) and isinstance(pub.get("name"), str):
            return norm_space(pub["name"])
    for obj in pm.jsonld:
        if _types(obj) & {"newsmediaorganization", "organization", "website"}:
            if isinstance(obj.get("name"), str):
                return norm_space(obj["name"])
    return ""


def canonical_url(pm: PageMeta, url: str | None) -> str | None:
    """Canonical URL from <link rel=canonical>, og:url or JSON-LD url, resolved against the URL.

    A canonical that points at a site's front page is a template bug, not a statement about
    the article, so it is ignored.
    """
    for cand in (pm.canonical_link, pm.first("og:url"), jsonld_field(pm, "url")):
        if not cand or cand.startswith(("javascript:", "#")):
            continue
        full = urljoin(url, cand) if url else cand
        parts = urlsplit(full)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            continue
        if parts.path in ("", "/") and not parts.query:
            continue
        return full
    return None


def syndication_hints(pm: PageMeta, url: str | None, canonical: str | None) -> dict[str, Any]:
    """Signals that this copy was syndicated from elsewhere; dedup uses them for attribution."""
    hints: dict[str, Any] = {}
    for obj in pm.articles():
        for key in (
            "isBasedOn",
            "isBasedOnUrl",
            "sourceOrganization",
            "provider",
            "copyrightHolder",
        ):
            v = obj.get(key)
            if isinstance(v, dict):
                v = v.get("name") or v.get("url") or v.get("@id")
            if isinstance(v, list):
                v = [x.get("name") if isinstance(x, dict) else x for x in v]
            if v and key not in hints:
                hints[key] = v
    original = pm.first("original-source", "syndication-source", "dc.source")
    if original:
        hints["original_source"] = original
    if url and canonical:
        h_url = urlsplit(url).netloc.lower().removeprefix("www.")
        h_can = urlsplit(canonical).netloc.lower().removeprefix("www.")
        if h_url and h_can and h_url != h_can:
            hints["canonical_host"] = h_can
    return hints


def language(pm: PageMeta) -> str | None:
    """ISO 639-1 code from <html lang>, og:locale or content-language."""
    for cand in (
        pm.lang,
        pm.first("og:locale", "content-language", "language", "dc.language"),
        jsonld_field(pm, "inLanguage"),
    ):
        m = re.match(r"^\s*([a-zA-Z]{2})(?:[-_]|$)", cand or "")
        if m:
            return m.group(1).lower()
    return None


_LISTING_PATH = re.compile(
    r"/(tag|tags|category|categories|author|authors|autor|topic|topics|themen|search|suche|"
    r"archive|archiv)(/[^/]*)?/?$|/page/\d+/?$",
    re.IGNORECASE,
)


def listing_reason(pm: PageMeta, url: str | None) -> str | None:
    """Why this page is a section/tag/author listing rather than an article (None if not).

    Listing pages reach us through sitemaps and feeds; their "body" is a run of teasers
    that would pollute dedup and enrichment, so they are rejected as not_article.
    """
    types = pm.types()
    if types & ARTICLE_TYPES - GENERIC_PAGE_TYPES:
        return None
    if types & LISTING_TYPES:
        return f"JSON-LD types {sorted(types & LISTING_TYPES)}"
    path = urlsplit(url).path if url else ""
    if path and _LISTING_PATH.search(path):
        return f"listing URL path {path}"
    return None
