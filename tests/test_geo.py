"""The geo gazetteer's pickle cache: same answers as a fresh build, and never a hard failure."""

from __future__ import annotations

import gc
import pickle

import pytest

from tasks import geo


@pytest.fixture(scope="module")
def fresh() -> geo.Gazetteer:
    return geo.Gazetteer()


def test_cached_gazetteer_answers_like_a_fresh_build(tmp_path, fresh) -> None:
    path = tmp_path / "geo.pickle"
    cached = geo._load_cached(path)  # builds in a child process, then loads
    assert path.exists() and not list(tmp_path.glob("*.tmp"))
    assert cached.index.keys() == fresh.index.keys()
    for name in ("Georgia", "Kharkiv", "Kupiansk", "Ukraine", "Atlanta"):
        assert cached.candidates(name) == fresh.candidates(name), name
    assert cached.country_by_code["UA"] == fresh.country_by_code["UA"]
    again = geo._load_cached(path)  # second use: read, not rebuilt
    assert again.index.keys() == cached.index.keys()
    assert gc.isenabled()  # the loader pauses the collector only while it unpickles


def test_every_place_is_indexed_under_its_own_name(fresh) -> None:
    """NER's place patterns look a name's places up in that name's bucket only."""
    places = 0
    for bucket in fresh.index.values():
        for place in bucket:
            assert place in fresh.index[geo.norm(place.name)], place
            places += 1
    assert places > 100_000


def test_a_place_pickles_to_an_equal_place() -> None:
    place = geo.Place(703448, "Kyiv", "UA", "12", 50.45, 30.52, "city", 2_797_553)
    assert pickle.loads(pickle.dumps(place)) == place
    assert (
        pickle.loads(
            pickle.dumps(geo.Place(None, "Europe", None, None, None, None, "continent"))
        ).population
        == 0
    )


def test_cache_key_follows_the_inputs(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NEWSFLOW_CACHE_DIR", str(tmp_path))
    path = geo._cache_path()
    assert path is not None and path.parent == tmp_path and path.name.startswith("geo-")
    monkeypatch.setenv("NEWSFLOW_CACHE_DIR", "off")
    assert geo._cache_path() is None


def test_corrupt_cache_falls_back_to_building(monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.setenv("NEWSFLOW_CACHE_DIR", str(tmp_path))
    path = geo._cache_path()
    assert path is not None
    path.write_bytes(b"not a pickle")
    geo.gazetteer.cache_clear()
    try:
        gz = geo.gazetteer()
        assert gz.candidates("Kyiv")
        assert "cache unusable" in caplog.text
    finally:
        geo.gazetteer.cache_clear()
