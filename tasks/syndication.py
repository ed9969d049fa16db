"""Who published a story first: attribution of the original inside one dedup cluster.

Why a separate module: dedup decides *which* copies tell the same story; this module decides
*who* the original is and writes the edges republisher -> original. It works on per-article
metadata only (outlet, URLs, dates, credits, JSON-LD hints) so the warehouse can recompute a
touched cluster from its index rows without reading article bodies.

Signals, strongest first (the first one that names a member of the cluster wins):

1. ``is_based_on``: JSON-LD ``isBasedOn`` URL of a copy equals a member's URL;
2. ``canonical``: a copy's rel=canonical points to another host, at a member's URL;
3. ``origin_credit``: a credit line ("Originally published on X", "Original article source: X")
   captured by the clean stage (``origin_credit``) or still at the end of the body (dedup's
   ``footer_credit``) names a member's outlet, or a member's *headline* (syndication footers
   often name the original by its headline); a headline names the member carrying it that
   credits no one else itself, full copies before teasers;
4. ``source_organization``: JSON-LD ``sourceOrganization`` names a member's outlet;
5. ``agency_credit``: "(AP)", "Reuters" credit names a member's outlet;
6. ``earliest``: earliest publication date (then the exact publication time when known, then
   first seen, then article id).

When copies credit an outlet that is not in the warehouse, that outlet is still reported as
``original_outlet`` and the edges point to no article (``original_article_id`` null); a credit
that matches nothing and reads like a headline (more than ``_MAX_OUTLET_WORDS`` words) names no
outlet and is ignored. No Prefect and no DuckDB here.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import cache, lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DATA = Path(__file__).parent / "data"

# Signal names, strongest first; also the accepted values of article_syndication.signal.
SIGNALS = (
    "is_based_on",
    "canonical",
    "origin_credit",
    "source_organization",
    "agency_credit",
    "earliest",
)
_AGENCY = re.compile(
    r"^\(?(ap|afp|reuters|dpa|kna|epd|apa|efe|ansa|kyodo|xinhua|upi|bloomberg|yonhap)\)?$",
    re.IGNORECASE,
)
_GENERIC_LABELS = {"www", "m", "amp", "mobile", "news", "com", "org", "net", "co", "uk", "de"}
_MAX_OUTLET_WORDS = 6  # longer credits are headlines, not outlet names
# a credit footer left at the end of the body (sometimes glued to the last sentence:
# "... in recent weeks.Original article source: <headline>"); the value runs to the line end
_FOOTER_CREDIT = re.compile(
    r"(?:^|(?<=[.!?\"\u201d\u2019]))\s*"
    r"(?:original article source|(?:this |the )?(?:article|story) (?:was )?(?:originally|first) "
    r"(?:published|appeared) (?:on|in|at|by)|originally published (?:on|in|at|by))"
    r"\s*:?\s*(?P<v>[^\n]{2,200}?)[\s.]*$",
    re.IGNORECASE,
)


@cache
def _aliases() -> dict[str, str]:
    """Outlet alias -> canonical key (data file: one 'alias<TAB>name' per line)."""
    out: dict[str, str] = {}
    path = DATA / "dedup_outlet_aliases.tsv"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            alias, _, name = line.partition("\t")
            out[_squash(alias)] = _squash(name)
    return out


def _squash(text: str) -> str:
    text = text.casefold().strip()
    text = re.sub(r"^the\s+", "", text)
    return re.sub(r"[\W_]+", "", text)


@lru_cache(maxsize=65536)
def outlet_keys(name: str | None) -> frozenset[str]:
    """Comparable keys of an outlet name, host or URL ("NBCNews.com" ~ "nbcnews.example").

    Why several keys: credits name outlets loosely (brand, domain, "The X"), so a name matches
    when any key matches: the squashed name, the host without its TLD, and its distinctive labels.
    """
    if not name:
        return frozenset()
    raw = name.strip()
    keys: set[str] = set()
    host = ""
    if "://" in raw:
        host = urlsplit(raw).netloc.lower()
    elif re.fullmatch(r"[\w-]+(\.[\w-]+)+", raw):
        host = raw.lower()
    if host:
        host = host.split("@")[-1].split(":")[0].removeprefix("www.")
        labels = host.split(".")
        core = labels[:-1] if len(labels) > 1 else labels
        if len(core) > 1 and core[-1] in {"co", "com", "org", "net", "gov", "ac"}:
            core = core[:-1]
        if core:
            keys.add(_squash("".join(core)))
        keys.update(_squash(lab) for lab in core if len(lab) >= 3 and lab not in _GENERIC_LABELS)
    else:
        keys.add(_squash(raw))
    keys.discard("")
    aliases = _aliases()
    keys |= {aliases[k] for k in list(keys) if k in aliases}
    return frozenset(keys)


def _norm_url(url: str | None) -> str:
    if not url:
        return ""
    parts = urlsplit(url.strip())
    host = parts.netloc.lower().removeprefix("www.")
    return f"{host}{parts.path.rstrip('/')}"


def _host(url: str | None) -> str:
    return urlsplit(url).netloc.lower().removeprefix("www.") if url else ""


def parse_hints(hints: str | dict | None) -> dict[str, list[str]]:
    """JSON-LD syndication hints -> {'is_based_on': [urls], 'source_organization': [names],
    'canonical': [urls]}; tolerant of the shapes publishers use (str, dict, list)."""
    out: dict[str, list[str]] = {"is_based_on": [], "source_organization": [], "canonical": []}
    if not hints:
        return out
    obj: Any = hints
    if isinstance(hints, str):
        try:
            obj = json.loads(hints)
        except ValueError:
            return out
    if not isinstance(obj, dict):
        return out

    def values(v: Any, fields: tuple[str, ...]) -> Iterable[str]:
        if isinstance(v, str):
            yield v
        elif isinstance(v, dict):
            for f in fields:
                if isinstance(v.get(f), str):
                    yield v[f]
                    break
        elif isinstance(v, list):
            for x in v:
                yield from values(x, fields)

    for k, v in obj.items():
        lk = re.sub(r"[^a-z]", "", k.lower())
        if lk in ("isbasedon", "isbasedonurl", "basedon"):
            out["is_based_on"].extend(values(v, ("url", "@id", "sameAs")))
        elif lk in ("originalsource", "syndicationsource"):  # <meta name=original-source>
            out["is_based_on"].extend(u for u in values(v, ("url", "@id")) if "://" in u)
        elif lk in ("sourceorganization", "sourceorg", "provider"):
            out["source_organization"].extend(values(v, ("name", "legalName", "url")))
        elif lk in ("canonical", "canonicalurl", "canonicalhost"):
            out["canonical"].extend(values(v, ("url", "@id")))
    return out


def footer_credit(body: str | None) -> str | None:
    """The credit named by a syndication footer on the last line of ``body`` (an outlet or
    the original's headline), e.g. "Original article source: <headline>"; None if none."""
    if not body:
        return None
    last = body[-600:].rstrip()[-400:].rsplit("\n", 1)[-1]
    m = _FOOTER_CREDIT.search(last)
    if m is None:
        return None
    return m.group("v").strip(" \"'\u201c\u201d") or None


_NO_TIME = datetime.max.replace(tzinfo=UTC)


def _aware(t: Any) -> datetime:
    if not isinstance(t, datetime):
        return _NO_TIME
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _order_key(m: dict) -> tuple:
    pub = m.get("published")
    return (
        pub if isinstance(pub, date) else date.max,
        _aware(m.get("published_at")),
        _aware(m.get("first_seen")),
        m.get("article_id") or "",
    )


def _title_key(text: str | None) -> tuple[str, ...]:
    return tuple(re.findall(r"\w+", (text or "").casefold()))


def _same_title(credit: tuple[str, ...], title: tuple[str, ...]) -> bool:
    """A credited headline names this title: equal words, or one cut short / suffixed."""
    if not credit or not title:
        return False
    if credit == title:
        return True
    short, long_ = (credit, title) if len(credit) <= len(title) else (title, credit)
    return len(short) >= 6 and long_[: len(short)] == short


def _claims(m: dict) -> list[tuple[str, str, str]]:
    """(signal, kind, value) credit claims one copy makes about its original; kind 'url' (a
    member's URL), 'name' (an outlet) or 'credit' (an outlet or a member's headline)."""
    out: list[tuple[str, str, str]] = []
    hints = parse_hints(m.get("syndication_hints"))
    out += [("is_based_on", "url", u) for u in hints["is_based_on"]]
    own_host = _host(m.get("url"))
    for c in hints["canonical"] + [m.get("canonical_url") or ""]:
        if c and _host(c) and own_host and _host(c) != own_host:
            out.append(("canonical", "url", c))
    credits = [m.get("origin_credit"), m.get("footer_credit")]
    for credit in dict.fromkeys((c or "").strip() for c in credits):
        if credit:
            sig = "agency_credit" if _AGENCY.match(credit) else "origin_credit"
            out.append((sig, "credit", credit))
    out += [("source_organization", "name", n) for n in hints["source_organization"]]
    return out


def _credits_other(m: dict, claims: list[tuple[str, str, str]]) -> bool:
    """Does this copy credit someone else (a claim that does not name its own page or outlet)?"""
    own_urls = {_norm_url(m.get("url")), _norm_url(m.get("canonical_url"))} - {""}
    own_keys = outlet_keys(m.get("outlet")) | outlet_keys(_host(m.get("url")))
    own_title = _title_key(m.get("title"))
    for _signal, kind, value in claims:
        if kind == "url":
            if _norm_url(value) not in own_urls:
                return True
        elif not (outlet_keys(value) & own_keys) and not (
            kind == "credit" and _same_title(_title_key(value), own_title)
        ):
            return True
    return False


def attribute(members: list[dict]) -> tuple[dict, list[dict]]:
    """Decide the original of one cluster.

    ``members``: dicts with article_id, cluster_id, outlet, url, canonical_url, published,
    first_seen, origin_credit, syndication_hints, dup_kind, similarity, dup_of.
    Returns (cluster row, one article_syndication row per member: the original gets a row
    pointing to itself with is_original true, so upserts by article replace stale edges).
    """
    members = sorted(members, key=_order_key)
    by_url: dict[str, dict] = {}
    for m in members:  # a member's own URLs (a cross-domain canonical names someone else)
        own = _host(m.get("url"))
        for u in (m.get("url"), m.get("canonical_url")):
            if u and (u == m.get("url") or _host(u) == own):
                by_url.setdefault(_norm_url(u), m)
    # earliest member of each outlet key (credits name outlets, not articles)
    by_outlet: dict[str, dict] = {}
    for m in members:
        for k in outlet_keys(m.get("outlet")) | outlet_keys(_host(m.get("url"))):
            by_outlet.setdefault(k, m)

    claims = {m["article_id"]: _claims(m) for m in members}
    # who may be named by its headline: a copy crediting someone else is not an original,
    # and a teaser is never the original of a full story
    by_title = sorted(
        members,
        key=lambda m: (
            _credits_other(m, claims[m["article_id"]]),
            m.get("dup_kind") == "teaser",
            _order_key(m),
        ),
    )
    resolved: dict[str, list[dict]] = {s: [] for s in SIGNALS}
    external: dict[str, Counter] = {s: Counter() for s in SIGNALS}
    for m in members:
        for signal, kind, value in claims[m["article_id"]]:
            target = None
            if kind == "url":
                target = by_url.get(_norm_url(value))
                label = _host(value)
            else:
                for k in sorted(outlet_keys(value)):
                    if k in by_outlet:
                        target = by_outlet[k]
                        break
                label = value.strip()
                if target is None and kind == "credit":
                    words = _title_key(value)
                    target = next(
                        (
                            t
                            for t in by_title
                            if t is not m and _same_title(words, _title_key(t.get("title")))
                        ),
                        None,
                    )
                    if len(words) > _MAX_OUTLET_WORDS:
                        label = ""  # a headline of no member: it names no outlet
            if target is not None and target is not m:
                resolved[signal].append(target)
            elif target is None and label:
                external[signal][label] += 1

    original: dict | None = None
    original_outlet: str | None = None
    signal = "earliest"
    for s in SIGNALS[:-1]:
        if resolved[s]:
            # the most credited member; ties -> earliest
            counts = Counter(t["article_id"] for t in resolved[s])
            original = min(resolved[s], key=lambda t: (-counts[t["article_id"]], _order_key(t)))
            signal = s
            break
    if original is None:
        for s in SIGNALS[:-1]:
            if external[s]:
                original_outlet = sorted(external[s].items(), key=lambda x: (-x[1], x[0]))[0][0]
                signal = s
                break
    canonical = original or _representative(members)
    if original is None and original_outlet is None:
        original = members[0]
    if original is not None:
        original_outlet = original.get("outlet") or _host(original.get("url"))

    outlet_counts = Counter((m.get("outlet") or _host(m.get("url")) or "?") for m in members)
    first_seen = [m["first_seen"] for m in members if m.get("first_seen") is not None]
    published = [m["published"] for m in members if m.get("published") is not None]
    cluster_id = members[0]["cluster_id"]
    row = {
        "cluster_id": cluster_id,
        "canonical_article_id": canonical["article_id"],
        "size": len(members),
        "first_seen": min(first_seen) if first_seen else None,
        "first_published": min(published) if published else None,
        "original_outlet": original_outlet,
        "original_article_id": original["article_id"] if original else None,
        "attribution_signal": signal,
        "outlet_counts": json.dumps(dict(sorted(outlet_counts.items())), ensure_ascii=False),
    }
    edges = []
    for m in members:
        is_orig = original is not None and m["article_id"] == original["article_id"]
        edges.append(
            {
                "republisher_article_id": m["article_id"],
                "original_article_id": original["article_id"] if original else None,
                "cluster_id": cluster_id,
                "republisher_outlet": m.get("outlet") or _host(m.get("url")),
                "original_outlet": original_outlet,
                "is_original": is_orig,
                "signal": signal,
                "dup_kind": m.get("dup_kind"),
                "similarity": m.get("similarity"),
            }
        )
    return row, edges


def _representative(members: list[dict]) -> dict:
    """The copy to show for a story with an external original: earliest full (non-teaser) one."""
    full = [m for m in members if m.get("dup_kind") != "teaser"]
    return (full or members)[0]
