"""The WARC archive: every response kept, pages rebuilt identically with no network at all."""

from __future__ import annotations

import gzip
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from warcio.archiveiterator import ArchiveIterator

from tasks.archive import WarcWriter, decode_html, is_html, read_pages_from_archive
from tasks.fetch import fetch_shard
from tasks.schema import PAGES
from tasks.sources import FetchSettings, Shard

HTML = "<html><head><title>{t}</title></head><body><p>Le {t} café. Ça va.</p></body></html>"


@pytest.fixture
def settings(tmp_path: Path) -> FetchSettings:
    return FetchSettings(
        connect_timeout=1,
        read_timeout=1,
        total_timeout=5,
        retries=0,
        per_host_delay_s=0.0,
        allow_private_hosts={"127.0.0.1"},
        host_state_dir=str(tmp_path / "hosts"),
        revisit_after_s=0,
    )


def test_writer_offsets_address_single_records(tmp_path):
    t = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
    w = WarcWriter(tmp_path, "shard-a", "run-1")
    locs = [
        w.write_response(
            url=f"https://ex.com/{i}",
            target_uri=f"https://ex.com/{i}",
            status=200,
            reason="OK",
            headers=[("Content-Type", "text/html"), ("Transfer-Encoding", "chunked")],
            body=HTML.format(t=i).encode(),
            fetched_at=t,
            source="s",
            outlet=None,
        )
        for i in range(3)
    ]
    assert not w.final.exists() and w.tmp.exists()  # readers never see a half-written file
    final = w.close()
    assert final is not None and final.exists() and not w.tmp.exists()
    assert final == tmp_path / "run-1" / "shard-a.warc.gz"
    with open(final, "rb") as f:
        for i, loc in enumerate(locs):
            f.seek(loc.offset)
            rec = next(iter(ArchiveIterator(f)))
            assert rec.rec_headers.get_header("WARC-Target-URI") == f"https://ex.com/{i}"
            assert rec.http_headers.get_header("Transfer-Encoding") is None
    pages = read_pages_from_archive([loc.__dict__ for loc in locs])
    assert pages.num_rows == 3 and pages.column("fetched_at")[0].as_py() == t


def test_empty_writer_leaves_no_file(tmp_path):
    w = WarcWriter(tmp_path, "empty", "r")
    assert w.close() is None and list(tmp_path.rglob("*.warc*")) == []


@pytest.mark.parametrize(
    ("body", "ctype", "expected"),
    [
        ("Ελληνικά νέα σήμερα από την Αθήνα".encode("cp1253"), "text/html; charset=utf-8", "Αθήνα"),
        ("Überraschung für München".encode(), "text/html; charset=iso-8859-1", "München"),
        (
            '<meta charset="windows-1252"><p>naïve café</p>'.encode("cp1252"),
            "text/html",
            "naïve café",
        ),
        ("\ufeffBOM text é".encode(), "text/html; charset=latin-1", "BOM text é"),
        (b"<p>ascii only</p>", None, "ascii only"),
    ],
)
def test_decode_html_survives_lying_charsets(body, ctype, expected):
    text, _ = decode_html(body, ctype)
    assert expected in text


def test_is_html_sniffs_missing_type():
    assert is_html("text/html; charset=utf-8")
    assert is_html(None, b"  <!DOCTYPE html><html>")
    assert not is_html("application/pdf", b"<html>")
    assert not is_html(None, b"%PDF-1.7")


def test_round_trip_pages_identical_with_zero_network(
    httpserver: HTTPServer, settings, tmp_path, monkeypatch
):
    httpserver.expect_request("/robots.txt").respond_with_data("", status=404)
    httpserver.expect_request("/a").respond_with_data(
        HTML.format(t="A"), content_type="text/html; charset=utf-8"
    )
    httpserver.expect_request("/b").respond_with_data(
        gzip.compress(HTML.format(t="B").encode("cp1252")),
        content_type="text/html",
        headers={"Content-Encoding": "gzip"},
    )
    httpserver.expect_request("/old").respond_with_data("", status=301, headers={"Location": "/a2"})
    httpserver.expect_request("/a2").respond_with_data(
        HTML.format(t="A2"), content_type="text/html"
    )
    httpserver.expect_request("/pdf").respond_with_data(b"%PDF", content_type="application/pdf")
    httpserver.expect_request("/gone").respond_with_data("gone", status=404)
    urls = [httpserver.url_for(p) for p in ("/a", "/b", "/old", "/pdf", "/gone")]
    res = fetch_shard(
        Shard("sh1", "src", "urls", "Outlet", urls), settings, {}, "run-7", tmp_path / "archive"
    )
    assert res.pages.num_rows == 3
    assert list((tmp_path / "archive").rglob("*.open")) == []
    # 404 and the redirect hop are archived too; the PDF body was never read
    assert sorted(res.warc_index.column("status").to_pylist()) == [200, 200, 200, 301, 404]

    def no_network(*_a, **_k):
        raise AssertionError("reprocess must not touch the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)

    def key(t):
        return t.sort_by("page_id")

    by_index = read_pages_from_archive(res.warc_index)
    assert by_index.schema.equals(PAGES)
    assert key(by_index).equals(key(res.pages))
    files = sorted(set(res.warc_index.column("warc_file").to_pylist()))
    by_file = read_pages_from_archive(files)
    assert key(by_file).equals(key(res.pages))
    rerun = read_pages_from_archive(files, run_id="reprocess-1")
    assert set(rerun.column("run_id").to_pylist()) == {"reprocess-1"}
    a2 = [p for p in by_file.to_pylist() if p["final_url"].endswith("/a2")][0]
    assert a2["url"].endswith("/old")  # the discovered URL survives the redirect


def test_foreign_warc_gets_source_filled_in(tmp_path):
    import io

    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    path = tmp_path / "CC-NEWS-20261125.warc.gz"
    with open(path, "wb") as f:
        w = WARCWriter(f, gzip=True)
        data = HTML.format(t="CC").encode()
        http = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        w.write_record(
            w.create_warc_record(
                "https://news.example/cc", "response", payload=io.BytesIO(data), http_headers=http
            )
        )
    pages = read_pages_from_archive([path], source="ccnews", outlet="CC", run_id="r")
    row = pages.to_pylist()[0]
    assert (row["url"], row["source"], row["outlet"]) == ("https://news.example/cc", "ccnews", "CC")
    assert "Le CC café" in row["html"]
