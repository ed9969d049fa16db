"""Clean stage: make extracted records publishable and comparable.

Why: extractors keep the chrome that sits between paragraphs (read-also links, newsletter and
donation prompts, photo credits, app adverts, syndication footers) and publishers decorate
titles with site names and kickers. Dedup and enrichment need the article as printed, so this
stage removes those KINDS of junk. The phrases live in tasks/data/junk_patterns.yaml (data, per
language), the logic here is generic. Syndication credits ("Originally published on X",
"Original article source: X", the agency of a "WASHINGTON (AP) —" dateline) are captured as
origin_credit before their line is removed (a dateline opening the lede stays in the text),
because dedup attributes syndicated copies with them. No Prefect and no DuckDB here.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from datetime import date
from functools import cache
from pathlib import Path
from re import _constants as _sre
from re import _parser as _sre_parse
from typing import Any
from urllib.parse import urlsplit

import courlan
import pyarrow as pa
import yaml

from tasks.metadata import PageMeta, norm_space
from tasks.schema import ARTICLES_CORE, conform, rejects_table, stable_id

STAGE = "clean"
DATA = Path(__file__).parent / "data"
MIN_BODY_CHARS = 40
TAIL_MIN_CHARS = 600  # prose needed before a trailer heading may end the article
DUP_MIN_CHARS = 80  # shorter repeats are legitimate (code lines, refrains, list labels)

# ------------------------------------------------------------------------------ patterns
_ZERO_WIDTH = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_WORDS = re.compile(r"\w+")
_LINE_BREAKS = re.compile(r"\n\s*\n|\n")
_DECORATION = " \t*•·-–—|>»:()[]"
_GROUPREFS = (_sre.GROUPREF, _sre.GROUPREF_IGNORE, _sre.GROUPREF_EXISTS)


def _union(patterns: Iterable[str], suffix: str = "") -> str:
    """Regex source of the alternatives, each grouped so that a `|` inside one stays inside."""
    return "|".join(f"(?:{p}){suffix}" for p in patterns)


def _refers_to_groups(node: Any) -> bool:
    """Back-references and conditionals count groups across the whole union: keep it whole."""
    if isinstance(node, tuple) and node and any(node[0] is op for op in _GROUPREFS):
        return True
    if isinstance(node, tuple | list | _sre_parse.SubPattern):
        return any(_refers_to_groups(x) for x in node)
    return False


def _leads_with_any(pattern: str) -> bool:
    """Only a greedy `.*` opening the whole pattern lets `.*X` run as a search for `X\\Z`.

    A top-level `|` would parse as one branch here (a `.*` item never compares equal, so the
    parser cannot factor it out of several branches).
    """
    if not pattern.startswith(".*"):
        return False
    items = _sre_parse.parse(pattern, re.IGNORECASE)
    op, av = items[0]
    return (
        op is _sre.MAX_REPEAT
        and av[:2] == (0, _sre.MAXREPEAT)
        and list(av[2]) == [(_sre.ANY, None)]
    )


class LineRule:
    """Case-insensitive alternatives that must match a whole line, as one union would.

    Why: a `.*`-led alternative makes a fullmatch of the union rescan the line from every
    position for every short line (most of the clean stage's time). `.*X` must match a whole
    line exactly when `X\\Z` is found somewhere in it (a line has no newline), so those run as
    one search and the rest as a plain union. Empty lines, lines with a newline and rule sets
    with back-references (a split union would renumber their groups) use the plain union.
    """

    def __init__(self, patterns: list[str]) -> None:
        self.union = re.compile(_union(patterns), re.IGNORECASE)
        self._split = not any(
            _refers_to_groups(_sre_parse.parse(p, re.IGNORECASE)) for p in patterns
        )
        anywhere = [p[2:] for p in patterns if self._split and _leads_with_any(p)]
        anchored = [p for p in patterns if not (self._split and _leads_with_any(p))]
        self._anchored = re.compile(_union(anchored), re.IGNORECASE) if anchored else None
        self._search = re.compile(_union(anywhere, r"\Z"), re.IGNORECASE) if anywhere else None

    def fullmatch(self, line: str) -> bool:
        if not self._split or not line or "\n" in line:
            return bool(self.union.fullmatch(line))
        if self._anchored is not None and self._anchored.fullmatch(line):
            return True
        return self._search is not None and bool(self._search.search(line))


def _glued(starts: list[str] | None) -> re.Pattern[str] | None:
    """Where a credit phrase starts right after a sentence end inside a paragraph."""
    if not starts:
        return None
    alt = "|".join(f"(?:{p})" for p in starts)
    return re.compile(rf"(?<=[.!?\"”’)])\s*(?=(?i:{alt}))")


@cache
def junk_rules() -> dict[str, Any]:
    """Compile the YAML junk patterns once per process."""
    raw = yaml.safe_load((DATA / "junk_patterns.yaml").read_text(encoding="utf-8"))

    def union(groups: Any) -> LineRule | None:
        pats: list[str] = []
        if isinstance(groups, dict):
            for lst in groups.values():
                pats.extend(lst or [])
        elif isinstance(groups, list):
            pats.extend(groups)
        if not pats:
            return None
        return LineRule(pats)

    return {
        "max_words": int(raw.get("max_words", 30)),
        "tail_fraction": float(raw.get("tail_fraction", 0.5)),
        "drop_line": union(raw.get("drop_line")),
        "drop_any": union(raw.get("drop_any")),
        "cut_tail": union(raw.get("cut_tail")),
        "credit": [re.compile(p, re.IGNORECASE) for p in raw.get("credit", [])],
        "credit_glued": _glued(raw.get("credit_glued")),
        "dateline_credit": [re.compile(p) for p in raw.get("dateline_credit", [])],
        "teaser_label": re.compile(raw["teaser_label"]) if raw.get("teaser_label") else None,
    }


def normalize_text(text: str) -> str:
    """NFC, no zero-width characters, single spaces: identical text must compare identical."""
    text = unicodedata.normalize("NFC", text)
    text = _ZERO_WIDTH.sub("", text)
    return _SPACES.sub(" ", text).strip()


def _fold(text: str) -> str:
    """Comparison key: case-folded word characters (punctuation and quotes vary across copies)."""
    return " ".join(_WORDS.findall(unicodedata.normalize("NFKC", text).casefold()))


def _fullmatch(rule: LineRule | None, line: str) -> bool:
    """Match the whole line, with or without its bullets/decoration."""
    if rule is None:
        return False
    if rule.fullmatch(line):
        return True
    bare = line.strip(_DECORATION)
    return bare != line and rule.fullmatch(bare)


def _word_count(line: str) -> int:
    n = len(line.split())
    # CJK lines have no spaces: count characters instead, roughly two per word.
    return max(n, len(line) // 4) if n <= 2 else n


CREDIT_MAX_CHARS = 300  # a credit footer is one short sentence; longer tails are prose


def find_credit(
    lines: Iterable[str], own_keys: set[str] | None = None
) -> tuple[str | None, str | None, set[int]]:
    """Origin credits named in syndication lines, and the indices of credit lines to drop.

    Returns (outlet credit, headline credit, indices): most credit lines name the original
    outlet; a few footers ("Original article source: X") name the original's headline.
    A line crediting the page's own outlet (``own_keys``) is dropped but is no credit.
    """
    rules = junk_rules()
    credit: str | None = None
    headline: str | None = None
    drop: set[int] = set()
    for i, line in enumerate(lines):
        if len(line) > CREDIT_MAX_CHARS:
            continue
        stripped = line.strip(" \t*•·-–—|>»()[]")
        for pat in rules["credit"]:
            m = pat.fullmatch(stripped)
            if m:
                groups = m.groupdict()
                name = norm_space(groups.get("outlet") or groups.get("headline") or "")
                name = name.strip(" .:;,\"'")
                if groups.get("outlet") is None:
                    headline = headline or name or None
                elif name and not (own_keys and _is_site_segment(name, own_keys)):
                    credit = credit or name
                drop.add(i)
                break
    return credit, headline, drop


def split_glued_credits(lines: list[str]) -> list[str]:
    """Split a credit footer that a template glued onto the end of a paragraph.

    "... in recent weeks.Original article source: X" is the paragraph plus the syndication
    footer; the tail becomes a line of its own (so find_credit captures and drops it) when
    it starts after a sentence end and is, as a whole, a credit line.
    """
    rules = junk_rules()
    glued = rules["credit_glued"]
    if glued is None:
        return lines
    out: list[str] = []
    for line in lines:
        start = max(0, len(line) - CREDIT_MAX_CHARS)
        for m in glued.finditer(line, start):
            tail = line[m.end() :]
            if m.start() > 0 and any(p.fullmatch(tail.rstrip()) for p in rules["credit"]):
                out.extend([line[: m.start()], tail])
                break
        else:
            out.append(line)
    return out


def strip_dateline(
    lines: list[str], own_keys: set[str] | None = None
) -> tuple[list[str], str | None]:
    """Read the agency of a wire dateline ('WASHINGTON (AP) —') opening one of the first paragraphs.

    The agency is a syndication signal, returned as the credit (unless it is the page's own
    outlet). A dateline that opens a sentence is part of the story's lede as published (news
    corpora and our extraction benchmark keep it), so the text is left alone; only a dateline
    printed as a paragraph of its own is furniture and is dropped.
    """
    for i, line in enumerate(lines[:3]):
        for pat in junk_rules()["dateline_credit"]:
            m = pat.match(line)
            if m:
                name = norm_space(m.group("outlet"))
                out = list(lines)
                if not line[m.end() :].strip():
                    out[i] = ""
                own = bool(own_keys and _is_site_segment(name, own_keys))
                return out, None if own else name
    return lines, None


def clean_body(
    body: str, title: str | None, own_keys: set[str] | None = None
) -> tuple[str, str | None]:
    """Drop junk lines and a repeated headline; returns (body, origin_credit)."""
    rules = junk_rules()
    lines = [normalize_text(x) for x in _LINE_BREAKS.split(body or "")]
    lines = split_glued_credits([x for x in lines if x])
    credit, headline, drop_idx = find_credit(lines, own_keys)
    lines, agency = strip_dateline(lines, own_keys)
    # an outlet is what dedup can attribute to; a headline only when nothing names one
    credit = credit or agency or headline
    # the headline printed again as the first body line (or after a kicker/logo line)
    if title:
        t = _fold(title)
        for i in range(min(3, len(lines))):
            if t and _fold(lines[i]) == t:
                drop_idx.add(i)
                break
    # trailer: a section heading in the last part of the body starts related/comments/app chrome
    # (after the first part of the body, or after enough prose when comments outgrow it)
    cut = len(lines)
    start_tail = int(len(lines) * rules["tail_fraction"])
    before = 0
    for i, line in enumerate(lines):
        if (i >= max(1, start_tail) or (i >= 3 and before >= TAIL_MIN_CHARS)) and _fullmatch(
            rules["cut_tail"], line
        ):
            cut = i
            break
        before += len(line)
    kept: list[str] = []
    seen_long: set[str] = set()
    for i, line in enumerate(lines[:cut]):
        if i in drop_idx or not line:
            continue
        # a long paragraph printed twice is a template/structured-data duplicate, not prose
        if len(line) >= DUP_MIN_CHARS:
            key = _fold(line)
            if key in seen_long:
                continue
            seen_long.add(key)
        if _fullmatch(rules["drop_any"], line):
            continue
        if _word_count(line) <= rules["max_words"] and _fullmatch(rules["drop_line"], line):
            continue
        kept.append(line)
    # trailing run of labelled related-story teasers
    label = rules["teaser_label"]
    if label is not None:
        n = 0
        while n < len(kept) - 1 and label.match(kept[len(kept) - 1 - n]):
            n += 1
        if n >= 2:
            kept = kept[: len(kept) - n]
    return "\n\n".join(kept), credit


# ------------------------------------------------------------------------------ titles
_TITLE_SEPS = re.compile(r"\s+(?:\||-|–|—|::|·|•|«|»|/|~)\s+|\s*[|｜：]\s*")


def _site_keys(*names: str | None) -> set[str]:
    keys: set[str] = set()
    for n in names:
        if not n:
            continue
        k = _fold(n)
        if k:
            keys.add(k)
            keys.add(k.replace(" ", ""))
        host = n.lower().removeprefix("www.")
        if "." in host and " " not in host:
            base = host.split(".")[0]
            keys.add(base)
    return keys


def _is_site_segment(seg: str, keys: set[str], tail: bool = True) -> bool:
    """Is this title segment the publisher's name (or its domain)?

    Trailing segments are matched more loosely than leading ones, because a leading segment
    that merely ends with the site's name is usually a blog or section title.
    """
    f = _fold(seg)
    if not f:
        return True
    flat = f.replace(" ", "")
    for k in keys:
        if f == k or flat == k:
            return True
        # "Globalnews.ca" vs "Global News", "Merkur.de" vs "Merkur"
        if len(k) >= 3 and flat.startswith(k) and len(flat) - len(k) <= 4:
            return True
        if len(flat) >= 4 and k.startswith(flat) and len(k) - len(flat) <= 4:
            return True
        # "Die Neue Südtiroler Tageszeitung" on tageszeitung.it
        if tail and len(k) >= 6 and flat.endswith(k) and len(f.split()) <= 5:
            return True
    return False


def strip_site_name(
    title: str,
    site: str | None,
    outlet: str | None,
    host: str | None,
    authors: list[str] | None = None,
) -> str:
    """Remove ' | Site Name' style prefixes/suffixes naming the publisher (or blog author)."""
    title = norm_space(title)
    keys = _site_keys(site, outlet, host, *(authors or []))
    parts = _TITLE_SEPS.split(title)
    if len(parts) > 1 and keys:
        while len(parts) > 1 and _is_site_segment(parts[-1], keys):
            parts.pop()
        while len(parts) > 1 and _is_site_segment(parts[0], keys, tail=False):
            parts.pop(0)
        # rejoin with the separators that were there
        if len(parts) >= 1:
            start = title.find(parts[0])
            end = title.rfind(parts[-1]) + len(parts[-1])
            if start >= 0 and end > start:
                title = title[start:end]
    return title.strip()


def choose_title(
    pm: PageMeta,
    fallback: str | None,
    site: str | None,
    outlet: str | None,
    host: str | None,
    authors: list[str] | None = None,
) -> str:
    """Headline as printed, chosen by a vote between the places a page states it.

    JSON-LD headline, og:title, the first <h1>, twitter:title, <title> and the JSON-LD name
    differ mostly by decoration (site-name or author suffixes, SEO rewrites). After
    stripping site names, the text most sources agree on wins; ties go to the most
    explicit declaration (JSON-LD, then og:title).
    """
    from tasks.metadata import jsonld_field  # local: metadata imports nothing from here

    h1 = pm.h1[0] if pm.h1 else ""
    raw = [
        jsonld_field(pm, "headline"),
        pm.first("og:title"),
        h1 if len(_fold(h1)) >= 4 else "",
        pm.first("twitter:title"),
        pm.title_tag,
        jsonld_field(pm, "name") or fallback or "",
    ]
    return vote_title(raw, site, outlet, host, authors)


# Trust in each title source (JSON-LD headline, og:title, <h1>, twitter:title, <title>,
# JSON-LD name). twitter:title and <title> mostly copy og:title, so they count less.
TITLE_WEIGHTS = (1.5, 1.4, 1.0, 0.3, 0.3, 0.6)


def vote_title(
    raw: list[str],
    site: str | None,
    outlet: str | None,
    host: str | None,
    authors: list[str] | None = None,
) -> str:
    """Weighted vote; a decorated variant ("Kicker: X | Site") also supports its core X."""
    cands = [
        strip_site_name(html.unescape(c), site, outlet, host, authors) if c else "" for c in raw
    ]
    folded = [_fold(c) for c in cands]
    weights = list(TITLE_WEIGHTS)
    if not (raw[0] or raw[1] or raw[3]):
        # A page that declares no title metadata is usually not a news template: its <h1> is
        # as often the site's logo or blog name as the headline, so <title> is safer there.
        weights[2] = weights[4] * 0.3
    best, best_votes = "", 0.0
    for i, c in enumerate(cands):
        fi = folded[i]
        if not fi:
            continue
        votes = 0.0
        for j, fj in enumerate(folded):
            if not fj:
                continue
            if fj == fi:
                votes += weights[j]
            elif len(fi) >= 0.5 * len(fj) and f" {fi} " in f" {fj} ":
                votes += 0.5 * weights[j]
        if votes > best_votes + 1e-9:
            best, best_votes = c, votes
    return best


# ------------------------------------------------------------------------------ authors
# Byline prefixes. "di"/"da"/"de" only in lower case: capitalised they start surnames
# (Di Maria, Da Silva, De Jong).
_BY = re.compile(
    r"^(?:(?i:by|from|von|vom|par|por|door|av|af|ved|por:|text:|texto:|text von|"
    r"written by|reported by|autor(?:in)?:?|author:?|redacción:?)|di|da|de)\s+"
)
_AUTHOR_SPLIT = re.compile(
    r"\s*(?:,|;|&|\+|/|\||\band\b|\bund\b|\bog\b|\boch\b|\ben\b|\bet\b|\by\b|\be\b|\bi\b|"
    r"\bu\.|、|・|，)\s*",
    re.IGNORECASE,
)
_ORG_WORDS = re.compile(
    r"\b(news|redaktion|editorial|staff|team|desk|agency|agencies|agentur|online|media|press|"
    r"newsroom|zeitung|redacción|rédaction|redazione|presse|nachrichten|reporter|"
    r"ap|afp|dpa|reuters|kna|epd|apa|efe|ansa|ntb|ritzau|xinhua|kyodo|yonhap|upi|pa|sda)\b|"
    r"^[\w-]+\.(?:com|net|org|de|at|ch|is|uk|fr|es|it|jp|in|co|lu|nl|no|se|dk|pl|ru|cn)$",
    re.IGNORECASE,
)
_AUTHOR_TAIL = re.compile(
    r"\s*(?:\(.*?\)|\|.*|,?\s*(?:for|für|pour|para|per) .*|\s+-\s+.*"
    r"|\d{1,2}[./]\d{1,2}[./]\d{2,4}.*)$",
    re.IGNORECASE,
)


_NOT_NAMES = {
    "organization",
    "organisation",
    "person",
    "admin",
    "administrator",
    "unknown",
    "anonymous",
    "author",
    "editor",
    "guest",
    "none",
    "null",
}


def _author_names(values: Iterable[str] | str | None) -> list[str]:
    """Split byline strings into names: "By X and Y", "Von X und Y", "X, Y"."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        value = normalize_text(html.unescape(value or ""))
        if not value or value.startswith(("http://", "https://", "www.")):
            continue
        value = _BY.sub("", value)
        for part in _AUTHOR_SPLIT.split(value):
            name = _AUTHOR_TAIL.sub("", _BY.sub("", part.strip())).strip(" .,:;-–—|\"'")
            if not name or "@" in name or "/" in name or any(ch.isdigit() for ch in name):
                continue
            # lone initials from "Last, F." bylines and schema type names are not people
            if sum(ch.isalpha() for ch in name) < 2 or name.lower() in _NOT_NAMES:
                continue
            if len(name) > 60 or len(name.split()) > 5:
                continue
            if name not in out:
                out.append(name)
    return out


# Wire agencies are credited next to reporters ("By Adam Vidler and AP"); that credit is
# attribution, so it is kept with the people rather than dropped as an organisation.
_AGENCY = re.compile(
    r"^(ap|afp|dpa|reuters|kna|epd|apa|efe|ansa|ntb|ritzau|xinhua|kyodo|yonhap|upi|pa|sda|"
    r"associated press|agence france-presse|deutsche presse-agentur)$",
    re.IGNORECASE,
)


def _is_org(name: str, site_keys: set[str]) -> bool:
    if _AGENCY.match(name):
        return False
    return bool(_ORG_WORDS.search(name)) or bool(site_keys and _is_site_segment(name, site_keys))


def split_authors(values: Iterable[str] | str | None, site: str | None = None) -> list[str]:
    """Person names from bylines; organisations only when no person is named.

    An article credited only to its outlet or an agency ("dpa", "ORF.at") keeps that credit,
    because it is the attribution readers see; next to named people it is noise.
    """
    names = _author_names(values)
    keys = _site_keys(site) if site else set()
    return _people(names, keys) or names


def _people(names: list[str], keys: set[str]) -> list[str]:
    """Named people (with the wire agencies credited beside them); [] if there are none."""
    people = [n for n in names if not _is_org(n, keys)]
    if all(_AGENCY.match(n) for n in people):
        return []  # only agencies: an organisational credit, kept whole by the callers
    return people


def choose_authors(
    person_lists: list[list[str]], orgs: list[str], site: str | None = None
) -> list[str]:
    """First source naming people wins; otherwise the organisations credited."""
    keys = _site_keys(site) if site else set()
    for lst in person_lists:
        people = _people(_author_names(lst), keys)
        if people:
            return people
    first = person_lists[0] if person_lists else []
    for lst in [orgs + first, *person_lists[1:]]:
        names = _author_names(lst)
        if names:
            return names
    return []


# ------------------------------------------------------------------------------ urls/records
def normalize_url(url: str | None) -> str | None:
    """Canonical form for joins: courlan strips tracking parameters, fragments, default ports."""
    if not url:
        return None
    try:
        return courlan.normalize_url(url, strict=False)
    except Exception:  # a URL courlan cannot parse is kept as given rather than lost
        return url.strip()


def content_hash(body: str) -> str:
    """Hash of the case/punctuation-insensitive body, so re-formatted copies hash equal."""
    return stable_id(_fold(body), n=32)


def _host(url: str | None) -> str:
    return urlsplit(url).netloc.lower().removeprefix("www.") if url else ""


# Aggregators glue teaser links and donation appeals onto the end of a real paragraph (the
# seed page's "... Read also: <headline> We've been working hard ... Consider supporting X.").
# Such a tail is junk wherever it sits, so the paragraph is cut where it starts.
_INLINE_TAILS = (
    r"(?:Read also|Read more|Lesen Sie auch|Lire aussi|Lea también)\s*:.*$",
    r"We['’]ve been working hard to bring you.*$",
    r"Consider supporting [^.\n]*\.?\s*$",
)
_INLINE_TAIL = re.compile("|".join(rf"\s*{t}" for t in _INLINE_TAILS), re.IGNORECASE)
# Where _INLINE_TAIL matches, one of the phrases starts: a cheap test that skips the sub on
# paragraphs without any (nearly all of them), since the leading \s* makes the sub slow.
_INLINE_HINT = re.compile(_union(_INLINE_TAILS), re.IGNORECASE)


def _strip_inline_junk(body: str) -> str:
    out = []
    for para in body.split("\n"):
        cut = _INLINE_TAIL.sub("", para) if _INLINE_HINT.search(para) else para
        if cut.strip() or not para.strip():
            out.append(cut)
    return "\n".join(out)


def clean_record(record: dict) -> tuple[dict | None, str | None]:
    """Clean one extracted record; returns (cleaned, None) or (None, reject_reason)."""
    rec = dict(record)
    url = rec.get("url")
    site = rec.get("site_name") or rec.get("outlet")
    host = _host(url)
    title = rec.get("title")
    if title:
        title = strip_site_name(normalize_text(title), site, rec.get("outlet"), host) or None
    rec["title"] = title
    body, credit = clean_body(
        _strip_inline_junk(rec.get("body") or ""), title, _site_keys(site, rec.get("outlet"), host)
    )
    if len(body) < MIN_BODY_CHARS:
        return None, "empty_after_clean"
    rec["body"] = body
    rec["origin_credit"] = credit
    rec["authors"] = split_authors(rec.get("authors") or [], site)
    rec["canonical_url"] = normalize_url(rec.get("canonical_url")) or None
    for key in ("description", "site_name"):
        if rec.get(key):
            rec[key] = normalize_text(rec[key]) or None
    pub = rec.get("published")
    if isinstance(pub, str):
        rec["published"] = pub[:10] or None
    elif isinstance(pub, date):
        rec["published"] = pub
    rec["content_hash"] = content_hash(body)
    return rec, None


def clean_batch(articles: pa.Table, run_id: str) -> tuple[pa.Table, pa.Table]:
    """ARTICLES_CORE -> (ARTICLES_CORE cleaned, REJECTS with stage='clean')."""
    kept: list[dict] = []
    rejected: list[dict] = []
    for row in articles.to_pylist():
        try:
            rec, reason = clean_record(row)
            detail = None
        except Exception as exc:  # one bad record must not sink the batch: count it
            rec, reason, detail = None, "clean_error", f"{type(exc).__name__}: {exc}"
        if rec is None:
            rejected.append(
                {
                    "item_id": row.get("article_id"),
                    "url": row.get("url"),
                    "stage": STAGE,
                    "reason": reason,
                    "detail": detail,
                }
            )
            continue
        rec["article_id"] = stable_id(rec.get("canonical_url") or rec.get("url"))
        rec["run_id"] = run_id
        kept.append({f.name: rec.get(f.name) for f in ARTICLES_CORE})
    table = pa.Table.from_pylist(kept, schema=ARTICLES_CORE)
    return conform(table, ARTICLES_CORE), rejects_table(rejected, run_id)


def fold_text(text: str) -> str:
    """Public comparison key (see _fold) for other stages matching text across sources."""
    return _fold(text)
