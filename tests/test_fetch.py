"""The fetcher against a real local server that misbehaves on purpose.

Every failure must come back as a FETCHES row with a reason (never an exception), pages must
only be emitted for new or changed 200 HTML, and politeness must hold. Timeouts and backoffs
are tiny so the whole file runs in a few seconds.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pyarrow as pa
import pytest
from pytest_httpserver import HTTPServer
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter
from werkzeug.wrappers import Request, Response

from tasks.fetch import (
    FETCH_REASONS,
    FETCH_STATE,
    FETCHES,
    TABLE_SPECS,
    HttpFetcher,
    fetch_shard,
    state_dict,
)
from tasks.robots import HostGate
from tasks.schema import ARTICLES_CORE, PAGES, REJECTS, utcnow
from tasks.sources import FetchSettings, Shard, Source, discover

RUSSIAN = (
    "<html><head><title>Новости дня</title></head><body><p>Правительство объявило о новых "
    "мерах поддержки малого бизнеса. Эксперты считают, что это поможет экономике.</p>"
    "</body></html>"
)
HTML = "<html><head><title>{t}</title></head><body><p>{t} body text.</p></body></html>"


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """Serve on 127.0.0.1 (not 'localhost') so the SSRF allow-list names exactly one host."""
    return ("127.0.0.1", 0)


@pytest.fixture
def settings(tmp_path: Path) -> FetchSettings:
    return FetchSettings(
        connect_timeout=1.0,
        read_timeout=0.5,
        total_timeout=5.0,
        max_bytes=1_000_000,
        retries=2,
        backoff=0.02,
        max_retry_after=0.3,
        per_host_delay_s=0.0,
        allow_private_hosts={"127.0.0.1"},
        host_state_dir=str(tmp_path / "hosts"),
        revisit_after_s=0.0,
    )


@pytest.fixture
def server(httpserver: HTTPServer) -> HTTPServer:
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    return httpserver


def run(
    server: HTTPServer,
    settings: FetchSettings,
    tmp_path: Path,
    *paths: str,
    state: dict | None = None,
    run_id: str = "r1",
    **shard_kw: object,
):
    shard = Shard(
        "shard1", "test", "urls", "Test Outlet", [server.url_for(p) for p in paths], **shard_kw
    )  # type: ignore[arg-type]
    return fetch_shard(shard, settings, state or {}, run_id, tmp_path / "archive")


def reasons(result) -> dict[str, str]:
    out = {r["url"].rsplit("/", 1)[-1]: r["reason"] for r in result.fetches.to_pylist()}
    assert set(out.values()) <= set(FETCH_REASONS), "reasons form a closed vocabulary"
    return out


def paths_requested(server: HTTPServer) -> list[str]:
    return [req.path for req, _ in server.log]


def test_tables_have_declared_schemas(server, settings, tmp_path):
    server.expect_request("/a").respond_with_data(HTML.format(t="A"), content_type="text/html")
    res = run(server, settings, tmp_path, "/a")
    assert res.pages.schema.equals(PAGES)
    assert res.fetches.schema.equals(FETCHES)
    assert res.state.schema.equals(FETCH_STATE)
    assert res.rejects.schema.equals(REJECTS)
    assert {s.name for s in TABLE_SPECS} == {"fetches", "fetch_state", "warc_index"}
    for spec in TABLE_SPECS:
        assert set(spec.columns) == set(spec.schema.names), spec.name
    page = res.pages.to_pylist()[0]
    assert page["outlet"] == "Test Outlet" and "A body text" in page["html"]


def test_429_with_retry_after_is_honoured_and_capped(server, settings, tmp_path):
    server.expect_oneshot_request("/busy").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "30"}
    )
    server.expect_request("/busy").respond_with_data(HTML.format(t="B"), content_type="text/html")
    t0 = time.monotonic()
    res = run(server, settings, tmp_path, "/busy")
    took = time.monotonic() - t0
    row = res.fetches.to_pylist()[0]
    assert row["reason"] == "ok" and row["attempts"] == 2
    assert settings.max_retry_after - 0.05 <= took < 5  # waited, but capped far below 30 s
    assert res.pages.num_rows == 1


def test_500_then_200_retries(server, settings, tmp_path):
    server.expect_oneshot_request("/flaky").respond_with_data("oops", status=500)
    server.expect_request("/flaky").respond_with_data(HTML.format(t="F"), content_type="text/html")
    res = run(server, settings, tmp_path, "/flaky")
    assert res.fetches.column("attempts").to_pylist() == [2]
    assert res.pages.num_rows == 1


def test_persistent_500_gives_up_and_is_due_again(server, settings, tmp_path):
    server.expect_request("/down").respond_with_data("oops", status=503)
    res = run(server, settings, tmp_path, "/down")
    row = res.fetches.to_pylist()[0]
    assert row["reason"] == "http_error" and row["attempts"] == settings.retries + 1
    assert res.rejects.column("reason").to_pylist() == ["http_error"]
    st = res.state.to_pylist()[0]
    assert st["next_due"] <= utcnow()  # a transient failure is retried next run


def test_slow_response_times_out(server, settings, tmp_path):
    done = threading.Event()

    def slow(_req: Request) -> Response:
        time.sleep(3.0)
        done.set()
        return Response("late", content_type="text/html")

    server.expect_request("/slow").respond_with_handler(slow)
    t0 = time.monotonic()
    res = run(server, settings, tmp_path, "/slow")
    # gave up at read_timeout (0.5 s), did not wait the 3 s for the body (slack for a busy CI)
    assert time.monotonic() - t0 < 2.5
    assert reasons(res) == {"slow": "timeout"}
    assert res.pages.num_rows == 0
    done.wait(4)  # the test server is single-threaded: let it finish before the next test


def test_redirect_loop_detected(server, settings, tmp_path):
    server.expect_request("/loop1").respond_with_data(
        "", status=302, headers={"Location": "/loop2"}
    )
    server.expect_request("/loop2").respond_with_data(
        "", status=301, headers={"Location": "/loop1"}
    )
    res = run(server, settings, tmp_path, "/loop1")
    assert reasons(res) == {"loop1": "redirect_loop"}


def test_redirect_followed_and_final_url_kept(server, settings, tmp_path):
    server.expect_request("/old").respond_with_data("", status=301, headers={"Location": "/new"})
    server.expect_request("/new").respond_with_data(HTML.format(t="N"), content_type="text/html")
    res = run(server, settings, tmp_path, "/old")
    page = res.pages.to_pylist()[0]
    assert page["url"].endswith("/old") and page["final_url"].endswith("/new")
    assert res.fetches.column("redirects").to_pylist() == [1]


def test_huge_streamed_body_stops_reading_early(server, settings, tmp_path):
    produced = []

    def huge(_req: Request) -> Response:
        def gen():
            for _ in range(50):  # 50 MB, chunked (no Content-Length to refuse it up front)
                produced.append(1)
                yield b"<p>" + b"x" * (1_000_000 - 3)

        return Response(gen(), content_type="text/html")

    server.expect_request("/huge").respond_with_handler(huge)
    server.expect_request("/declared").respond_with_data(
        "x", content_type="text/html", headers={"Content-Length": str(50_000_000)}
    )
    res = run(server, settings, tmp_path, "/huge")
    row = res.fetches.to_pylist()[0]
    assert row["reason"] == "too_large"
    assert row["bytes"] <= 2 * settings.max_bytes
    assert len(produced) < 50
    assert res.pages.num_rows == 0


def test_declared_content_length_too_large_is_refused_without_reading(server, settings, tmp_path):
    def declared(_req: Request) -> Response:
        r = Response(b"<html>" + b"x" * 100, content_type="text/html")
        r.headers["Content-Length"] = "50000000"
        return r

    server.expect_request("/declared").respond_with_handler(declared)
    res = run(server, settings, tmp_path, "/declared")
    row = res.fetches.to_pylist()[0]
    assert row["reason"] == "too_large" and row["bytes"] == 0


def test_gzip_bomb_refused(server, settings, tmp_path):
    bomb = gzip.compress(b"<html>" + b"\0" * 30_000_000, compresslevel=9)
    assert len(bomb) < 100_000
    server.expect_request("/bomb").respond_with_data(
        bomb, content_type="text/html", headers={"Content-Encoding": "gzip"}
    )
    res = run(server, settings, tmp_path, "/bomb")
    row = res.fetches.to_pylist()[0]
    assert row["reason"] == "gzip_bomb"
    assert row["bytes"] <= len(bomb)


def test_gzip_page_decoded(server, settings, tmp_path):
    server.expect_request("/gz").respond_with_data(
        gzip.compress(HTML.format(t="Zipped").encode()),
        content_type="text/html",
        headers={"Content-Encoding": "gzip"},
    )
    res = run(server, settings, tmp_path, "/gz")
    assert "Zipped body text" in res.pages.column("html")[0].as_py()


def test_windows_1251_page_declared_utf8_decodes_right(server, settings, tmp_path):
    server.expect_request("/ru").respond_with_data(
        RUSSIAN.encode("cp1251"), content_type="text/html; charset=utf-8"
    )
    res = run(server, settings, tmp_path, "/ru")
    assert "Правительство объявило" in res.pages.column("html")[0].as_py()


def test_pdf_recorded_and_skipped(server, settings, tmp_path):
    server.expect_request("/doc.pdf").respond_with_data(
        b"%PDF-1.7 ...", content_type="application/pdf"
    )
    res = run(server, settings, tmp_path, "/doc.pdf")
    row = res.fetches.to_pylist()[0]
    assert row["reason"] == "content_type" and row["content_type"] == "application/pdf"
    assert res.pages.num_rows == 0


def test_robots_disallow_and_crawl_delay(httpserver, settings, tmp_path):
    httpserver.expect_request("/robots.txt").respond_with_data(
        "User-agent: *\nDisallow: /private\nCrawl-delay: 0.3\n", content_type="text/plain"
    )
    times: list[float] = []

    def page(req: Request) -> Response:
        times.append(time.monotonic())
        return Response(HTML.format(t=req.path), content_type="text/html")

    for p in ("/a", "/b", "/c", "/private/x"):
        httpserver.expect_request(p).respond_with_handler(page)
    res = run(httpserver, settings, tmp_path, "/a", "/private/x", "/b", "/c")
    assert reasons(res)["x"] == "robots_disallowed"
    assert "/private/x" not in paths_requested(httpserver)
    assert paths_requested(httpserver).count("/robots.txt") == 1  # cached per host per run
    # the gate's start stamps honour Crawl-delay exactly; server arrivals only as a whole
    # (an in-process server's timing jitters on a loaded machine)
    starts = sorted(t.timestamp() for t in res.pages.column("fetched_at").to_pylist())
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert len(gaps) == 2 and min(gaps) >= 0.3 * 0.99
    assert len(times) == 3 and times[-1] - times[0] >= 0.5


def test_robots_5xx_means_disallow_all(httpserver, settings, tmp_path):
    httpserver.expect_request("/robots.txt").respond_with_data("err", status=500)
    httpserver.expect_request("/a").respond_with_data(HTML.format(t="A"), content_type="text/html")
    res = run(httpserver, settings, tmp_path, "/a")
    assert reasons(res) == {"a": "robots_unavailable"}
    assert "/a" not in paths_requested(httpserver)


def test_etag_and_last_modified_second_run_304(server, settings, tmp_path):
    lm = "Wed, 21 Oct 2026 07:28:00 GMT"

    def etag_page(req: Request) -> Response:
        if req.headers.get("If-None-Match") == '"v1"':
            return Response(status=304, headers={"ETag": '"v1"'})
        return Response(HTML.format(t="E"), content_type="text/html", headers={"ETag": '"v1"'})

    def lm_page(req: Request) -> Response:
        if req.headers.get("If-Modified-Since") == lm:
            return Response(status=304)
        return Response(HTML.format(t="L"), content_type="text/html", headers={"Last-Modified": lm})

    server.expect_request("/etag").respond_with_handler(etag_page)
    server.expect_request("/lm").respond_with_handler(lm_page)
    first = run(server, settings, tmp_path, "/etag", "/lm")
    assert first.pages.num_rows == 2
    state = state_dict(first.state)
    second = run(server, settings, tmp_path, "/etag", "/lm", state=state, run_id="r2")
    assert reasons(second) == {"etag": "not_modified", "lm": "not_modified"}
    assert second.pages.num_rows == 0 and second.rejects.num_rows == 0
    assert all(second.fetches.column("conditional").to_pylist())
    # validators survive the 304 so the third run is conditional too
    st = state_dict(second.state)
    assert {r["etag"] for r in st.values()} == {'"v1"', None}
    assert {r["last_modified"] for r in st.values()} == {lm, None}


def test_unchanged_body_without_validators_emits_no_page(server, settings, tmp_path):
    server.expect_request("/same").respond_with_data(HTML.format(t="S"), content_type="text/html")
    first = run(server, settings, tmp_path, "/same")
    second = run(server, settings, tmp_path, "/same", state=state_dict(first.state), run_id="r2")
    assert reasons(second) == {"same": "unchanged"} and second.pages.num_rows == 0
    # unchanged pages back off: the revisit interval doubles (from the floor)
    assert second.state.column("revisit_s")[0].as_py() >= first.state.column("revisit_s")[0].as_py()


def test_not_due_makes_no_request(server, settings, tmp_path):
    server.expect_request("/later").respond_with_data(HTML.format(t="x"), content_type="text/html")
    url = server.url_for("/later")
    state = {
        url: {
            "canonical_url": url,
            "next_due": utcnow() + timedelta(hours=1),
            "content_hash": "abc",
        }
    }
    res = run(server, settings, tmp_path, "/later", state=state)
    assert reasons(res) == {"later": "not_due"}
    assert res.fetches.column("from_cache").to_pylist() == [True]
    assert paths_requested(server) == []


def _verified(url: str, last_fetched, reason: str = "ok") -> dict:
    return {
        url: {
            "canonical_url": url,
            "next_due": utcnow() - timedelta(minutes=1),
            "last_fetched": last_fetched,
            "last_reason": reason,
            "etag": '"v1"',
            "content_hash": "abc",
        }
    }


def test_sitemap_lastmod_before_last_fetch_makes_no_request(server, settings, tmp_path):
    server.expect_request("/kept").respond_with_data(HTML.format(t="x"), content_type="text/html")
    url = server.url_for("/kept")
    fetched = utcnow() - timedelta(hours=2)
    res = run(
        server,
        settings,
        tmp_path,
        "/kept",
        state=_verified(url, fetched),
        modified={url: (fetched - timedelta(days=1)).isoformat()},
    )
    assert reasons(res) == {"kept": "lastmod_unchanged"}
    assert res.fetches.column("from_cache").to_pylist() == [True]
    assert paths_requested(server) == [] and res.rejects.num_rows == 0


@pytest.mark.parametrize(
    "case", ["changed_after_fetch", "within_clock_slack", "last_fetch_failed", "too_long_ago"]
)
def test_lastmod_does_not_skip_when_it_cannot_vouch(server, settings, tmp_path, case):
    """A newer lastmod (or one within clock-skew slack of our fetch), a copy we never
    verified, or a copy older than max_revisit_s: ask."""
    server.expect_request("/p").respond_with_data(HTML.format(t="P"), content_type="text/html")
    url = server.url_for("/p")
    fetched = utcnow() - timedelta(hours=2)
    lastmod = fetched - timedelta(days=1)
    reason = "ok"
    if case == "changed_after_fetch":
        lastmod = fetched + timedelta(minutes=5)
    elif case == "within_clock_slack":
        lastmod = fetched - timedelta(minutes=1)
    elif case == "last_fetch_failed":
        reason = "timeout"
    else:
        settings.max_revisit_s = 3600.0
    res = run(
        server,
        settings,
        tmp_path,
        "/p",
        state=_verified(url, fetched, reason),
        modified={url: lastmod.isoformat()},
    )
    assert reasons(res) == {"p": "ok"} and "/p" in paths_requested(server)


def test_ssrf_blocked_without_allow_list(server, settings, tmp_path):
    server.expect_request("/internal").respond_with_data("secret", content_type="text/html")
    settings.allow_private_hosts = set()
    res = run(server, settings, tmp_path, "/internal")
    assert reasons(res) == {"internal": "ssrf_blocked"}
    assert paths_requested(server) == []
    # a source may opt in explicitly
    ok = run(server, settings, tmp_path, "/internal", allow_private=True, run_id="r2")
    assert reasons(ok) == {"internal": "ok"}


def test_ssrf_checked_on_every_redirect_hop(server, settings, tmp_path):
    server.expect_request("/jump").respond_with_data(
        "", status=302, headers={"Location": "http://localhost:1/admin"}
    )
    res = run(server, settings, tmp_path, "/jump")
    assert reasons(res) == {"jump": "ssrf_blocked"}


def test_ssrf_rechecked_at_connect_time(server, settings, tmp_path, monkeypatch):
    """DNS rebinding: the name looked public when checked, but the connect goes to loopback."""
    server.expect_request("/rebind").respond_with_data("secret", content_type="text/html")
    settings.allow_private_hosts = set()
    settings.respect_robots = False
    monkeypatch.setattr(HttpFetcher, "ssrf_reason", lambda *_a, **_k: None)
    res = run(server, settings, tmp_path, "/rebind")
    assert reasons(res) == {"rebind": "ssrf_blocked"}
    assert paths_requested(server) == []


def test_host_gate_concurrency_cap(tmp_path):
    gate = HostGate(tmp_path, concurrency=2)
    inflight, peak = [0], [0]
    lock = threading.Lock()

    def work() -> None:
        with gate.request("h:80", 0.0):
            with lock:
                inflight[0] += 1
                peak[0] = max(peak[0], inflight[0])
            time.sleep(0.05)
            with lock:
                inflight[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 2


def test_per_host_gate_holds_across_threads(server, settings, tmp_path):
    """Two shards of one host fetched in parallel still start requests delay apart."""
    times: list[float] = []
    lock = threading.Lock()

    def page(req: Request) -> Response:
        with lock:
            times.append(time.monotonic())
        return Response(HTML.format(t=req.path), content_type="text/html")

    for i in range(6):
        server.expect_request(f"/p{i}").respond_with_handler(page)
    settings.per_host_delay_s = 0.15
    shards = [
        Shard(
            f"s{k}", "t", "urls", None, [server.url_for(f"/p{i}") for i in range(k * 3, k * 3 + 3)]
        )
        for k in range(2)
    ]
    results = []
    threads = [
        threading.Thread(
            target=lambda s=s: results.append(
                fetch_shard(s, settings, {}, "par", tmp_path / "arch")
            )
        )
        for s in shards
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.pages.num_rows for r in results) == 6
    # the gate's own start stamps are exact: every start is a full delay after the one before
    starts = sorted(
        t.timestamp() for r in results for t in r.pages.column("fetched_at").to_pylist()
    )
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 0.15 * 0.99
    # arrivals timed by the in-process server carry scheduling jitter on a loaded machine (one
    # late arrival can sit next to the following one), so check them only as a whole: ungated,
    # six requests from two threads would all land within a few milliseconds
    times.sort()
    assert times[-1] - times[0] >= 4 * 0.15


def test_connection_refused_is_a_row_not_a_crash(settings, tmp_path):
    shard = Shard("s", "t", "urls", None, ["http://127.0.0.1:9/nothing", "not a url"])
    settings.respect_robots = False
    res = fetch_shard(shard, settings, {}, "r", tmp_path / "a")
    assert res.fetches.column("reason").to_pylist() == ["connection_error", "bad_url"]


# --- local kinds ----------------------------------------------------------------------------
def test_html_dir_pages_use_canonical_or_file_uri(settings, tmp_path):
    d = tmp_path / "site"
    d.mkdir()
    (d / "a.html").write_text(HTML.format(t="A"), encoding="utf-8")
    (d / "b.html").write_text(
        '<html><head><link rel="canonical" href="https://ex.com/b"></head><body>B</body></html>',
        encoding="utf-8",
    )
    shard = Shard("s", "dir", "html_dir", "Dir", [str(d / "a.html"), str(d / "b.html")])
    res = fetch_shard(shard, settings, {}, "r", tmp_path / "arch")
    urls = sorted(res.pages.column("url").to_pylist())
    assert urls == [(d / "a.html").resolve().as_uri(), "https://ex.com/b"]
    again = fetch_shard(shard, settings, state_dict(res.state), "r2", tmp_path / "arch")
    assert again.pages.num_rows == 0  # same bytes, nothing new


def _cc_news_warc(path: Path) -> None:
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for url, ctype, body, status in [
            ("https://news.example/a", "text/html; charset=utf-8", HTML.format(t="WA"), "200 OK"),
            ("https://news.example/logo.png", "image/png", "PNG", "200 OK"),
            ("https://news.example/gone", "text/html", "gone", "404 Not Found"),
            ("https://news.example/b", "text/html", HTML.format(t="WB"), "200 OK"),
        ]:
            data = body.encode()
            http = StatusAndHeaders(
                status,
                [("Content-Type", ctype), ("Content-Length", str(len(data)))],
                protocol="HTTP/1.1",
            )
            w.write_record(
                w.create_warc_record(url, "response", payload=io.BytesIO(data), http_headers=http)
            )


def test_warc_source_streams_response_records(settings, tmp_path):
    path = tmp_path / "CC-NEWS-sample.warc.gz"
    _cc_news_warc(path)
    shard = Shard("s", "ccnews", "warc", "CC", [str(path)])
    res = fetch_shard(shard, settings, {}, "r", tmp_path / "arch")
    assert sorted(res.pages.column("url").to_pylist()) == [
        "https://news.example/a",
        "https://news.example/b",
    ]
    assert reasons(res) == {"a": "ok", "logo.png": "content_type", "gone": "http_error", "b": "ok"}
    assert set(res.pages.column("source").to_pylist()) == {"ccnews"}
    assert res.warc_index.num_rows == 2


def test_jsonl_source_yields_articles(settings, tmp_path):
    path = tmp_path / "articles.jsonl"
    lines = [
        {
            "url": "https://ex.com/1",
            "title": "One",
            "text": "Body one.",
            "published": "2026-11-20T10:00:00Z",
            "authors": "Ann",
        },
        {"url": "https://ex.com/2", "title": "Two", "text": "Body two.", "language": "de"},
        {"title": "no url"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n", encoding="utf-8")
    shard = Shard("s", "dump", "jsonl", "Dump", [str(path)], language="en")
    res = fetch_shard(shard, settings, {}, "r", tmp_path / "arch")
    assert res.articles is not None and res.articles.schema.equals(ARTICLES_CORE)
    arts = res.articles.to_pylist()
    assert [a["title"] for a in arts] == ["One", "Two"]
    assert arts[0]["body"] == "Body one." and arts[0]["authors"] == ["Ann"]
    assert str(arts[0]["published"]) == "2026-11-20"
    assert [a["language"] for a in arts] == ["en", "de"]
    assert res.pages.num_rows == 0
    assert sorted(res.rejects.column("reason").to_pylist()) == ["bad_json", "missing_field"]


def test_fetch_result_tables_concatenate_across_shards(server, settings, tmp_path):
    server.expect_request("/a").respond_with_data(HTML.format(t="A"), content_type="text/html")
    a = run(server, settings, tmp_path, "/a")
    b = run(server, settings, tmp_path, "/a", run_id="r9")
    assert pa.concat_tables([a.fetches, b.fetches]).num_rows == 2


def _write_pairs(path, n: int, gzip: bool) -> None:
    """n request/response record pairs, as a WARC writer stores them."""
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=gzip)
        for i in range(n):
            data = HTML.format(t=f"W{i}").encode()
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            w.write_record(
                w.create_warc_record(
                    f"https://ex.com/{i}", "request", payload=io.BytesIO(b"GET / HTTP/1.1\r\n\r\n")
                )
            )
            w.write_record(
                w.create_warc_record(
                    f"https://ex.com/{i}", "response", payload=io.BytesIO(data), http_headers=http
                )
            )


def _pages_of(shards, settings, tmp_path) -> list[str]:
    results = [fetch_shard(s, settings, {}, "r", tmp_path / "arch") for s in shards]
    assert not [r for r in results if r.rejects.num_rows]
    return sorted(u for r in results for u in r.pages.column("url").to_pylist())


def test_big_warc_and_jsonl_split_into_seekable_shards(settings, tmp_path):
    warc = tmp_path / "big.warc.gz"
    _write_pairs(warc, 7, gzip=True)
    every = sorted(f"https://ex.com/{i}" for i in range(7))
    jsonl = tmp_path / "big.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"url": f"https://ex.com/j{i}", "text": f"T{i}"}) + "\n" for i in range(5)
        ),
        encoding="utf-8",
    )
    settings.split_files_over_bytes = 0
    settings.file_shard_records = 3
    # a record-gzipped WARC is cut into byte ranges: whatever the cut, every record is read
    # by exactly one shard (ranges that start inside a record find the next one themselves)
    size = warc.stat().st_size
    starts = []  # a cut exactly at a record's start is where both sides of it look
    with open(warc, "rb") as f:
        it = ArchiveIterator(f)
        for rec in it:
            it.read_to_end(rec)
            starts.append(it.get_record_offset())
    for step in (97, 700, starts[5], size // 3, size):
        settings.file_shard_bytes = step
        shards, _ = discover([Source("w", "warc", str(warc))], settings)
        assert len(shards) == -(-size // step)
        assert _pages_of(shards, settings, tmp_path) == every, step
    shards, _ = discover([Source("j", "jsonl", str(jsonl))], settings)
    assert [s.kind for s in shards] == ["jsonl", "jsonl"]
    results = [fetch_shard(s, settings, {}, "r", tmp_path / "arch") for s in shards]
    arts = [
        u for r in results if r.articles is not None for u in r.articles.column("url").to_pylist()
    ]
    assert sorted(arts) == [f"https://ex.com/j{i}" for i in range(5)]


def test_warcs_that_cannot_be_cut_into_byte_ranges(settings, tmp_path):
    """A plain WARC is split by records. One gzipped as a single stream stays one shard,
    which warcio cannot read record by record: the shard reports why instead of guessing."""
    settings.split_files_over_bytes = 0
    settings.file_shard_records = 3
    settings.file_shard_bytes = 500
    every = sorted(f"https://ex.com/{i}" for i in range(7))
    plain = tmp_path / "plain.warc"
    _write_pairs(plain, 7, gzip=False)
    shards, _ = discover([Source("p", "warc", str(plain))], settings)
    assert len(shards) == 3  # 7 responses, 3 per shard
    assert _pages_of(shards, settings, tmp_path) == every
    stream = tmp_path / "stream.warc.gz"
    stream.write_bytes(gzip.compress(plain.read_bytes()))
    shards, _ = discover([Source("s", "warc", str(stream))], settings)
    assert len(shards) == 1
    res = fetch_shard(shards[0], settings, {}, "r", tmp_path / "arch")
    assert res.pages.num_rows == 0
    assert res.rejects.column("reason").to_pylist() == ["warc_error"]
    assert "single gzip" in res.rejects.column("detail")[0].as_py()


def test_too_many_redirects(server, settings, tmp_path):
    settings.max_redirects = 2
    for i in range(4):
        server.expect_request(f"/hop{i}").respond_with_data(
            "", status=302, headers={"Location": f"/hop{i + 1}"}
        )
    res = run(server, settings, tmp_path, "/hop0")
    assert reasons(res) == {"hop0": "too_many_redirects"}
    assert res.fetches.column("redirects").to_pylist() == [2]


def test_raw_deflate_and_retry_after_date(server, settings, tmp_path):
    import zlib

    from tasks.fetch import _retry_after

    comp = zlib.compressobj(wbits=-15)
    raw = comp.compress(HTML.format(t="Deflated").encode()) + comp.flush()
    server.expect_request("/deflate").respond_with_data(
        raw, content_type="text/html", headers={"Content-Encoding": "deflate"}
    )
    res = run(server, settings, tmp_path, "/deflate")
    assert "Deflated body text" in res.pages.column("html")[0].as_py()
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 10) == 0.0  # in the past
    assert _retry_after("120", 10) == 10 and _retry_after("junk", 10) is None


def test_5xx_body_is_archived_but_no_page(server, settings, tmp_path):
    settings.retries = 0
    server.expect_request("/err").respond_with_data(
        "<html>oops</html>", status=500, content_type="text/html"
    )
    res = run(server, settings, tmp_path, "/err")
    assert res.pages.num_rows == 0 and res.warc_index.column("status").to_pylist() == [500]
    assert res.fetches.column("warc_file").to_pylist()[0] is not None


def test_host_gate_defer_applies_to_every_worker(tmp_path):
    """A 429's Retry-After, recorded by one worker, delays the next request of any worker."""
    HostGate(tmp_path).defer("h:80", 0.2)
    t0 = time.monotonic()
    with HostGate(tmp_path).request("h:80", 0.0):
        assert time.monotonic() - t0 >= 0.18


def test_unchanged_warc_slice_is_not_read_again(settings, tmp_path):
    from tasks.fetch import state_dict

    path = tmp_path / "CC-NEWS-sample.warc.gz"
    _cc_news_warc(path)
    shard = Shard("s", "ccnews", "warc", "CC", [str(path)])
    first = fetch_shard(shard, settings, {}, "r1", tmp_path / "arch")
    state = state_dict(first.state)
    second = fetch_shard(shard, settings, state, "r2", tmp_path / "arch")
    assert second.pages.num_rows == 0
    assert second.fetches.select(["url", "reason"]).to_pylist() == [
        {"url": str(path), "reason": "unchanged"}
    ]
    # a rewritten file (new size/mtime) is read again; its known pages are still 'unchanged'
    os.utime(path, ns=(1, 1))
    third = fetch_shard(shard, settings, state, "r3", tmp_path / "arch")
    assert third.pages.num_rows == 0
    assert reasons(third) == {
        "a": "unchanged",
        "logo.png": "content_type",
        "gone": "http_error",
        "b": "unchanged",
    }


def asked_ever(site, suffix: str) -> set[str]:
    return {urlsplit(p).path for _, p in site.requests if urlsplit(p).path.endswith(suffix)}


def test_demo_rerun_requests_only_what_the_sitemap_says_changed(tmp_path):
    """Second visit to the demo site: an edited page (the CMS moved its <lastmod>) is fetched
    again, pages the sitemap dates before our copy get no request, pages without a
    <lastmod> are asked conditionally (304)."""
    from dataclasses import replace

    from newsflow.demo.server import DemoSite, sources_yaml
    from tasks.fetch import shard_state
    from tasks.sources import load_sources

    with DemoSite(port=0) as site:
        (tmp_path / "sources.yaml").write_text(sources_yaml(site.base_url), encoding="utf-8")
        sources, settings = load_sources(tmp_path / "sources.yaml")
        settings = replace(
            settings, host_state_dir=str(tmp_path / "hosts"), cache_dir=str(tmp_path / "cache")
        )  # as the flow sets it

        def visit(state: dict, run_id: str) -> tuple[dict, dict[str, str]]:
            shards, _ = discover(sources, settings, run_id=run_id)
            results = [
                fetch_shard(s, settings, shard_state(s, state), run_id, tmp_path / "arch")
                for s in shards
            ]
            new = dict(state)
            for r in results:
                new.update(state_dict(r.state))
            why = {row["url"]: row["reason"] for r in results for row in r.fetches.to_pylist()}
            return new, why

        state, first = visit({}, "r1")
        assert set(first.values()) == {"ok"}
        edited = next(u for u in first if "/northwire/" in u)
        site.set_page(urlsplit(edited).path, HTML.format(t="Edited story"))
        n_before = len(site.requests)
        _, second = visit(state, "r2")
        asked = {p for _, p in site.requests[n_before:]}
        children = {
            p: httpx.get(site.url(p)).text
            for p in asked_ever(site, ".xml")
            if p.startswith("/sitemaps/")
        }
    # listings: robots.txt is reused (< 24 h), the index is asked, and of its children only
    # those that list the edited page (their index <lastmod> moved) are read again
    assert "/robots.txt" not in asked and "/sitemap.xml" in asked
    assert {p for p in children if p in asked} == {
        p for p, text in children.items() if edited in text
    }
    assert second[edited] == "ok"
    assert set(second.values()) == {"ok", "lastmod_unchanged", "not_modified"}
    skipped = [u for u, r in second.items() if r == "lastmod_unchanged"]
    assert len(skipped) > len(second) // 2
    assert not {urlsplit(u).path for u in skipped} & asked


def _warc_of(path: Path, n: int) -> Path:
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        for i in range(n):
            http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            data = io.BytesIO(HTML.format(t=f"W{i}").encode())
            w.write_record(
                w.create_warc_record(
                    f"https://ex.com/{i}", "response", payload=data, http_headers=http
                )
            )
    return path


def test_page_sink_streams_a_shard_in_bounded_tables(settings, tmp_path):
    """With a sink, pages leave in tables of at most sink_rows and the result holds none:
    the same pages, in the same order, as without one."""
    warc = _warc_of(tmp_path / "s.warc.gz", 7)
    shard = Shard("s", "w", "warc", None, [str(warc)])
    whole = fetch_shard(shard, settings, {}, "r", tmp_path / "arch")
    chunks: list[pa.Table] = []
    streamed = fetch_shard(
        shard, settings, {}, "r", tmp_path / "arch", page_sink=chunks.append, sink_rows=3
    )
    assert [c.num_rows for c in chunks] == [3, 3, 1]
    assert streamed.pages.num_rows == 0 and all(c.schema.equals(PAGES) for c in chunks)
    assert (
        pa.concat_tables(chunks).column("url").to_pylist() == whole.pages.column("url").to_pylist()
    )
    assert streamed.fetches.num_rows == whole.fetches.num_rows == 7


def test_page_sink_failure_fails_the_shard(settings, tmp_path):
    """A page table that cannot be written is lost data: the shard raises, instead of the
    WARC reader logging it as a damaged file and carrying on."""
    warc = _warc_of(tmp_path / "s.warc.gz", 4)
    shard = Shard("s", "w", "warc", None, [str(warc)])

    def full_disk(table: pa.Table) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        fetch_shard(shard, settings, {}, "r", tmp_path / "arch", page_sink=full_disk, sink_rows=2)


def test_fetch_units_writes_units_and_reads_known_hashes_from_file(settings, tmp_path):
    """The pool-side fetch: units of at most unit_rows pages on disk, and a page whose bytes
    the warehouse already has (known through the run's hashes file) is not a unit page."""
    import pyarrow.parquet as pq

    from tasks.shards import fetch_units, write_known_hashes

    warc = _warc_of(tmp_path / "s.warc.gz", 5)
    shard = Shard("s", "w", "warc", None, [str(warc)])
    first = fetch_units(shard, settings, {}, "r1", str(tmp_path / "arch"), str(tmp_path / "o1"), 2)
    assert first["fetch"]["out"] == 5
    assert [pq.read_metadata(u["pages"]).num_rows for u in first["units"]] == [2, 2, 1]
    state = pq.read_table(tmp_path / "o1" / "fetch_state" / "s.parquet").to_pylist()
    known = {r["canonical_url"]: r for r in state if r["canonical_url"] != "https://ex.com/4"}
    known.pop(str(warc))  # the whole-file signature would skip the file unread
    path = write_known_hashes(known, tmp_path / "known.parquet")
    again = fetch_units(shard, settings, path, "r2", str(tmp_path / "arch"), str(tmp_path / "o2"))
    assert again["fetch"]["out"] == 1
    pages = pq.read_table(again["units"][0]["pages"]).column("url").to_pylist()
    assert pages == ["https://ex.com/4"]


def test_unit_files_split_batches_across_units_and_abort_leaves_nothing(tmp_path):
    import pyarrow.parquet as pq

    from tasks.shards import _UnitFiles

    t = pa.table({"n": list(range(8))})
    units = _UnitFiles(tmp_path / "pages", "s", 3)
    for i in range(0, 8, 2):  # batches of 2 pages; a unit boundary falls inside a batch
        units.write(t.slice(i, 2))
    units.close()
    assert [uid for uid, _ in units.units] == ["s-p0", "s-p1", "s-p2"]
    got = [pq.read_table(p).column("n").to_pylist() for _, p in units.units]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7]] and units.rows == 8
    # a tail of up to a quarter unit joins the last unit instead of being a stub of its own
    for n, sizes in ((8, [4, 4]), (9, [4, 5]), (10, [4, 4, 2]), (11, [4, 4, 3]), (2, [2])):
        folder = tmp_path / f"tail{n}"
        units = _UnitFiles(folder, "t", 4)
        for i in range(0, n, 3):
            units.write(pa.table({"n": list(range(i, min(i + 3, n)))}))
        units.close()
        got = [pq.read_table(p).column("n").to_pylist() for _, p in units.units]
        assert [len(g) for g in got] == sizes, n
        assert sum(got, []) == list(range(n)) and units.rows == n
        assert sorted(f.name for f in folder.iterdir()) == [
            f"t-p{i}.parquet" for i in range(len(sizes))
        ]
    broken = _UnitFiles(tmp_path / "other", "b", 5)
    broken.write(t.slice(0, 2))
    broken.abort()  # the shard failed half-way: no torn unit file is left behind
    assert list((tmp_path / "other").iterdir()) == []


def test_a_corrupt_stretch_of_a_warc_loses_only_its_own_shard(settings, tmp_path):
    """Byte-range shards read around damage: the shards before and after a corrupt record
    are read whole, the damaged one reports a warc_error and keeps what it read."""
    warc = tmp_path / "damaged.warc.gz"
    _write_pairs(warc, 7, gzip=True)
    data = bytearray(warc.read_bytes())
    size = len(data)
    mid = size // 2
    data[mid : mid + 40] = bytes(40)
    warc.write_bytes(bytes(data))
    settings.split_files_over_bytes = 0
    settings.file_shard_bytes = -(-size // 3)
    shards, log = discover([Source("w", "warc", str(warc))], settings)
    assert len(shards) == 3 and log.num_rows == 0
    results = [fetch_shard(s, settings, {}, "r", tmp_path / "arch") for s in shards]
    reasons = [x for r in results for x in r.rejects.column("reason").to_pylist()]
    assert reasons == ["warc_error"]
    assert results[1].rejects.num_rows == 1  # the middle range holds the damage
    pages = {u for r in results for u in r.pages.column("url").to_pylist()}
    assert pages < {f"https://ex.com/{i}" for i in range(7)}
    first, last = (set(r.pages.column("url").to_pylist()) for r in (results[0], results[2]))
    assert first and last and not first & last  # both sides read, nothing read twice


def test_a_warc_damaged_in_its_first_record_is_one_shard_that_reports_it(settings, tmp_path):
    warc = tmp_path / "head.warc.gz"
    _write_pairs(warc, 7, gzip=True)
    data = bytearray(warc.read_bytes())
    data[30:70] = bytes(40)  # inside the first gzip member, after its header
    warc.write_bytes(bytes(data))
    settings.split_files_over_bytes = 0
    settings.file_shard_bytes = 500
    shards, log = discover([Source("w", "warc", str(warc))], settings)
    assert len(shards) == 1 and log.num_rows == 0  # not cut: nothing vouches for its members
    res = fetch_shard(shards[0], settings, {}, "r", tmp_path / "arch")
    assert res.rejects.column("reason").to_pylist() == ["warc_error"]
