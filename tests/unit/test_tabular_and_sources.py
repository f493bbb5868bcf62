"""Strict reading of files and the HTTP / SQL sources, against a real local HTTP server and a
real SQLite database."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from pipeline.errors import BadInputError, RetryableError
from pipeline.settings import CsvOptions, HttpOptions, SourceSettings
from pipeline.sources import fetch, resolve_package_uri, source_kind
from pipeline.tabular import detect_format, read_csv_bytes

OPTIONS = CsvOptions()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"  \n\n", "the file is empty"),
        (b"a,b\n", "header but no data rows"),
        (b"a,b\n1,2\n3,4,5\n", "line 3 has 3 fields, expected 2"),
        (b"a,b\n1,2\n3\n", "line 3 has 1 fields, expected 2"),
        (b"a,a\n1,2\n", "duplicated column names ['a']"),
        (b"a,b\n1,caf\xe9\n", "line 2, column 6: bytes b'\\xe9' are not valid utf-8"),
    ],
)
def test_malformed_csv_is_refused_with_location(data: bytes, message: str) -> None:
    with pytest.raises(BadInputError) as info:
        read_csv_bytes(data, "input.csv", OPTIONS)
    assert message in str(info.value)
    assert str(info.value).startswith("input.csv")


def test_csv_types_nulls_and_non_finite_values() -> None:
    frame = read_csv_bytes(b"x,y,z\n1,a,inf\n2,,NA\n", "f.csv", OPTIONS)
    assert frame["x"].dtype.kind == "i"
    assert frame["y"].isna().tolist() == [False, True]
    assert frame["z"].tolist()[0] == float("inf") and pd.isna(frame["z"].tolist()[1])


def test_csv_options_skip_rows_and_names() -> None:
    options = CsvOptions(skip_rows=1, header=False, column_names=["a", "b"])
    frame = read_csv_bytes(b"2,2,class0\n1,2\n3,4\n", "f.csv", options)
    assert list(frame.columns) == ["a", "b"] and frame["a"].tolist() == [1, 3]


def test_detect_format_and_package_uris() -> None:
    assert detect_format("s3://b/k/data.parquet") == "parquet"
    assert detect_format("x.CSV") == "csv"
    with pytest.raises(BadInputError, match=r"data\.source\.format"):
        detect_format("data.bin")
    assert resolve_package_uri("pkg://palmerpenguins/data/penguins.csv").is_file()
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError):
        resolve_package_uri("pkg://palmerpenguins/../etc/passwd")


class Api(BaseHTTPRequestHandler):
    """A paginated JSON API that fails the first ``failures`` requests with 503."""

    failures = 0
    calls = 0
    status = 503

    def do_GET(self) -> None:
        type(self).calls += 1
        if type(self).calls <= type(self).failures:
            self.send_response(type(self).status)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        url = urlparse(self.path)
        if url.path == "/missing":
            self.send_response(404)
            self.end_headers()
            return
        if url.path == "/links":
            page = int(parse_qs(url.query).get("p", ["1"])[0])
            body = {"items": [{"v": page}], "next": f"/links?p={page + 1}" if page < 3 else None}
        else:
            page = int(parse_qs(url.query).get("page", ["1"])[0])
            items = [{"id": (page - 1) * 2 + i, "nested": {"k": "x"}} for i in range(2)] if page <= 2 else []
            body = {"data": {"items": items}}
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def api():
    Api.failures, Api.calls, Api.status = 0, 0, 503
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def http_source(url: str, **http) -> SourceSettings:
    return SourceSettings(uri=url, http=HttpOptions(backoff_s=0.01, **http))


def test_http_page_pagination_and_retries(api: str) -> None:
    Api.failures = 2
    raw = fetch(
        http_source(f"{api}/items", records_path="data.items", pagination="page", max_retries=3), None
    )
    assert raw.format == "parquet"
    frame = pd.read_parquet(__import__("io").BytesIO(raw.data))
    assert frame["id"].tolist() == [0, 1, 2, 3]
    assert "nested.k" in frame.columns
    assert Api.calls == 2 + 3  # two failures, then pages 1, 2 and the empty page 3


def test_http_next_link_pagination(api: str) -> None:
    raw = fetch(http_source(f"{api}/links?p=1", records_path="items", pagination="next_link"), None)
    assert pd.read_parquet(__import__("io").BytesIO(raw.data))["v"].tolist() == [1, 2, 3]


def test_http_gives_up_after_bounded_retries(api: str) -> None:
    Api.failures, Api.status = 100, 429
    with pytest.raises(RetryableError, match="gave up after 3 attempts: HTTP 429"):
        fetch(http_source(f"{api}/items", records_path="data.items", max_retries=2), None)
    assert Api.calls == 3


def test_http_client_errors_are_bad_input(api: str) -> None:
    with pytest.raises(BadInputError, match="HTTP 404"):
        fetch(http_source(f"{api}/missing"), None)
    assert Api.calls == 1, "a 404 is not retried"


def test_http_timeout_is_bounded_and_retryable() -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts, never answers
    port = listener.getsockname()[1]
    try:
        with pytest.raises(RetryableError, match=r"Timeout"):
            fetch(http_source(f"http://127.0.0.1:{port}/x", timeout_s=0.3, max_retries=1), None)
    finally:
        listener.close()


def test_sql_source(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "src.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE t (a INTEGER, b TEXT)")
        connection.executemany("INSERT INTO t VALUES (?, ?)", [(1, "x"), (2, "y")])
    source = SourceSettings(uri=f"sqlite:///{db}", query="SELECT a, b FROM t ORDER BY a")
    assert source_kind(source) == "sql"
    raw = fetch(source, None)
    frame = pd.read_parquet(__import__("io").BytesIO(raw.data))
    assert frame.to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}
    with pytest.raises(BadInputError, match="the query failed"):
        fetch(SourceSettings(uri=f"sqlite:///{db}", query="SELECT nope FROM t"), None)
    with pytest.raises(BadInputError, match="no rows"):
        fetch(SourceSettings(uri=f"sqlite:///{db}", query="SELECT a FROM t WHERE a > 5"), None)


class CsvFile(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")  # a bare file server: only the URL says CSV
        self.end_headers()
        self.wfile.write(b"a,b\n1,x\n2,y\n")

    def log_message(self, *args) -> None:
        pass


def test_http_csv_is_recognised_from_the_url() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CsvFile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        raw = fetch(SourceSettings(uri=f"http://127.0.0.1:{server.server_address[1]}/data.csv"), None)
    finally:
        server.shutdown()
    assert pd.read_parquet(__import__("io").BytesIO(raw.data)).to_dict("list") == {
        "a": [1, 2],
        "b": ["x", "y"],
    }


def test_source_uri_from_yaml_overrides_stays_text() -> None:
    assert SourceSettings(uri=2024).uri == "2024"
