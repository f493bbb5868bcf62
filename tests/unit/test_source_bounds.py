"""Bounded, well-behaved sources, against real local HTTP servers, real files and a real SQLite
database: credentials only to the configured origin, an optional host allow-list, byte caps and one
deadline per fetch, a JSON nesting bound, unsupported schemes as bad input; row and column caps
checked before a table is materialised; read-only, time-limited queries; no path leaving its folder
(``pkg://``, a ``.dvc`` file's output); colliding feature-set names refused."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import EXIT_BAD_INPUT, BadInputError, ConfigError, RetryableError
from pipeline.settings import CsvOptions, DataSettings, HttpOptions, SourceSettings
from pipeline.sources import fetch, json_depth, resolve_package_uri
from pipeline.tabular import TableLimits, read_table_bytes
from tests.support import Route, Server

# --------------------------------------------------------------------------------------------
# A real HTTP server whose answers each test scripts
# --------------------------------------------------------------------------------------------


def send_json(body: object, status: int = 200, **headers: str) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        payload = json.dumps(body).encode() if not isinstance(body, bytes) else body
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(payload)

    return route


def redirect(location: str) -> Route:
    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(host: str = "127.0.0.1", **routes: Route) -> Server:
        server = Server(host, {f"/{name}": route for name, route in routes.items()})
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def other_host() -> str:
    """A second host name for the same machine: 127.0.0.2 (Linux answers all of 127/8)."""
    return "127.0.0.2"


def source(url: str, **http) -> SourceSettings:
    return SourceSettings(uri=url, http=HttpOptions(backoff_s=0.01, max_retries=1, **http))


def frame_of(raw) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(raw.data))


CREDENTIALS = {"X-API-Key": "key-0123456789", "Authorization": "Bearer token-0123456789"}


def credential_headers(request: dict) -> dict[str, str]:
    wanted = {name.lower() for name in CREDENTIALS}
    return {k: v for k, v in request["headers"].items() if k.lower() in wanted}


# --------------------------------------------------------------------------------------------
# Credentials go to the configured origin only; allowed hosts; redirects
# --------------------------------------------------------------------------------------------


def test_a_next_link_to_another_host_gets_no_credentials(servers, monkeypatch) -> None:
    monkeypatch.setenv("SOURCE_TOKEN", "token-0123456789")
    other = servers(other_host(), page2=send_json({"items": [{"v": 2}], "next": None}))
    origin = servers(page1=send_json({"items": [{"v": 1}], "next": f"{other.url}/page2"}))
    raw = fetch(
        source(
            f"{origin.url}/page1",
            records_path="items",
            pagination="next_link",
            headers={"X-API-Key": "key-0123456789"},
            bearer_token_env="SOURCE_TOKEN",
        ),
        None,
    )
    assert frame_of(raw)["v"].tolist() == [1, 2]
    assert credential_headers(origin.requests[0]) == CREDENTIALS
    assert credential_headers(other.requests[0]) == {}, "a pagination link to another host got credentials"


def test_a_redirect_to_another_host_gets_no_credentials(servers) -> None:
    other = servers(other_host(), data=send_json([{"v": 1}]))
    origin = servers(data=redirect(f"{other.url}/data"))
    raw = fetch(source(f"{origin.url}/data", headers=dict(CREDENTIALS)), None)
    assert frame_of(raw)["v"].tolist() == [1]
    assert credential_headers(origin.requests[0]) == CREDENTIALS
    assert len(other.requests) == 1 and credential_headers(other.requests[0]) == {}


def test_a_redirect_within_the_origin_keeps_the_credentials(servers) -> None:
    origin = servers(old=redirect("/new"), new=send_json([{"v": 1}]))
    fetch(source(f"{origin.url}/old", headers=dict(CREDENTIALS)), None)
    assert [credential_headers(r) for r in origin.requests] == [CREDENTIALS, CREDENTIALS]


def test_headers_by_reference_are_read_from_the_environment(servers, monkeypatch) -> None:
    origin = servers(data=send_json([{"v": 1}]))
    monkeypatch.setenv("MY_API_KEY", "key-0123456789")
    fetch(source(f"{origin.url}/data", headers_from_env={"X-API-Key": "MY_API_KEY"}), None)
    assert credential_headers(origin.requests[0]) == {"X-API-Key": "key-0123456789"}
    monkeypatch.delenv("MY_API_KEY")
    with pytest.raises(ConfigError) as info:
        fetch(source(f"{origin.url}/data", headers_from_env={"X-API-Key": "MY_API_KEY"}), None)
    assert "'X-API-Key'" in str(info.value) and "'MY_API_KEY'" in str(info.value)
    assert len(origin.requests) == 1, "nothing is fetched without the credential"
    with pytest.raises(ValueError, match="must name an environment variable"):
        HttpOptions(headers_from_env={"X-API-Key": "key value, not a name"})


def test_allowed_hosts_refuse_a_link_to_another_host_as_bad_input(servers) -> None:
    other = servers(other_host(), page2=send_json({"items": [{"v": 2}]}))
    origin = servers(page1=send_json({"items": [{"v": 1}], "next": f"{other.url}/page2?sig=s3cr3t"}))
    options = {"records_path": "items", "pagination": "next_link", "allowed_hosts": ["127.0.0.1"]}
    with pytest.raises(BadInputError) as info:
        fetch(source(f"{origin.url}/page1", **options), None)
    message = str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "'127.0.0.2'" in message and "data.source.http.allowed_hosts" in message
    assert "s3cr3t" not in message, "a URL in an error message has no query string"
    assert other.requests == [], "a host outside the allow-list is never contacted"
    with pytest.raises(ConfigError, match="allowed_hosts"):
        fetch(source(f"{origin.url}/page1", allowed_hosts=["api.example.com"]), None)


def test_a_redirect_to_a_host_not_allowed_is_refused(servers) -> None:
    other = servers(other_host(), data=send_json([{"v": 1}]))
    origin = servers(data=redirect(f"{other.url}/data"))
    with pytest.raises(BadInputError, match=r"redirect.*'127.0.0.2'.*allowed_hosts"):
        fetch(source(f"{origin.url}/data", allowed_hosts=["127.0.0.1"]), None)
    assert other.requests == []


def test_page_pagination_after_a_redirect_asks_the_configured_url(servers) -> None:
    def paged(handler: BaseHTTPRequestHandler) -> None:
        page = int(handler.path.split("page=", 1)[1])
        send_json({"data": [{"v": page}] if page <= 2 else []})(handler)

    def moved(handler: BaseHTTPRequestHandler) -> None:
        redirect(f"/items?{handler.path.split('?', 1)[1]}")(handler)

    origin = servers(old=moved, items=paged)
    raw = fetch(source(f"{origin.url}/old", records_path="data", pagination="page"), None)
    assert frame_of(raw)["v"].tolist() == [1, 2]
    assert [r["path"] for r in origin.requests] == [
        "/old?page=1",
        "/items?page=1",
        "/old?page=2",
        "/items?page=2",
        "/old?page=3",
        "/items?page=3",
    ]


def test_redirects_are_bounded(servers) -> None:
    origin = servers(loop=redirect("/loop"))
    with pytest.raises(BadInputError, match="max_redirects=3"):
        fetch(source(f"{origin.url}/loop", max_redirects=3), None)
    assert len(origin.requests) == 4


@pytest.mark.parametrize(
    ("uri", "kind"),
    [("ftp://example.com/data.csv", "http"), ("gopher://example.com/data.csv", "auto")],
)
def test_an_unsupported_scheme_is_a_configuration_error(uri: str, kind: str) -> None:
    with pytest.raises(ConfigError, match=r"scheme .* is not supported") as info:
        fetch(SourceSettings(uri=uri, kind=kind), None)
    assert info.value.exit_code == EXIT_BAD_INPUT


def test_a_link_or_redirect_to_another_scheme_is_bad_input(servers) -> None:
    origin = servers(
        page1=send_json({"items": [{"v": 1}], "next": "file:///etc/passwd"}),
        moved=redirect("ftp://127.0.0.1/data"),
        odd=send_json({"items": [{"v": 1}], "next": {"href": "/x"}}),
    )
    with pytest.raises(BadInputError, match="scheme 'file' is not supported"):
        fetch(source(f"{origin.url}/page1", records_path="items", pagination="next_link"), None)
    with pytest.raises(BadInputError, match="scheme 'ftp' is not supported"):
        fetch(source(f"{origin.url}/moved"), None)
    with pytest.raises(BadInputError, match="holds a dict, not a URL"):
        fetch(source(f"{origin.url}/odd", records_path="items", pagination="next_link"), None)


# --------------------------------------------------------------------------------------------
# Byte caps, the deadline, JSON nesting
# --------------------------------------------------------------------------------------------


def stream_bytes(total: int, declare_length: bool, chunk: int = 1 << 16) -> Route:
    """A JSON list of ``total`` bytes; without Content-Length, the end is the connection's close."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declare_length:
            handler.send_header("Content-Length", str(total))
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(b"[")
        sent = 1
        while sent < total - 1:
            piece = b" " * min(chunk, total - 1 - sent)
            handler.wfile.write(piece)
            sent += len(piece)
        handler.wfile.write(b"]")

    return route


@pytest.mark.parametrize("declare_length", [True, False], ids=["content-length", "no-length"])
def test_a_body_over_the_response_cap_is_refused(servers, declare_length: bool) -> None:
    origin = servers(big=stream_bytes(8 << 20, declare_length))
    with pytest.raises(BadInputError) as info:
        fetch(source(f"{origin.url}/big", max_response_bytes=1 << 20), None)
    message = str(info.value)
    assert "data.source.http.max_response_bytes=1048576" in message and "/big" in message
    assert len(origin.requests) == 1, "a body over the cap is bad input, not retried"


def test_all_pages_together_are_capped_by_max_bytes(servers) -> None:
    page = {"items": [{"v": "x" * 4000}], "next": "/page"}
    origin = servers(page=send_json(page))
    settings = source(f"{origin.url}/page", records_path="items", pagination="next_link")
    settings.max_bytes = 20_000
    with pytest.raises(BadInputError, match=r"more than data\.source\.max_bytes=20000"):
        fetch(settings, None)
    assert 4 <= len(origin.requests) <= 6


def drip(done: threading.Event, total: int = 2000, pause_s: float = 0.02) -> Route:
    """Answers at once, then sends its body one byte at a time: every read is quick, the whole
    body takes ``total * pause_s`` seconds; ``done`` is set when the handler stops."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(total))
            handler.end_headers()
            handler.wfile.write(b"[")
            handler.wfile.flush()
            for _ in range(total - 2):
                time.sleep(pause_s)
                handler.wfile.write(b" ")
                handler.wfile.flush()
            handler.wfile.write(b"]")
            handler.server_owner_completed = True  # type: ignore[attr-defined]
        finally:
            done.set()

    return route


def test_a_dripping_server_is_cut_off_at_the_deadline(servers) -> None:
    done = threading.Event()
    completed: list[bool] = []
    route = drip(done)

    def recorded(handler: BaseHTTPRequestHandler) -> None:
        route(handler)
        completed.append(True)

    origin = servers(slow=recorded)
    with pytest.raises(RetryableError, match=r"data\.source\.http\.deadline_s=1s"):
        fetch(source(f"{origin.url}/slow", deadline_s=1.0, timeout_s=30.0), None)
    assert done.wait(timeout=60), "the server's handler ended (the client hung up)"
    assert completed == [], "the client stopped reading before the body was complete"


def test_deeply_nested_json_is_bad_input_not_a_crash(servers) -> None:
    origin = servers(
        deep=send_json(b"[" * 100_000 + b"]" * 100_000),
        nested=send_json({"items": [{"a": json.loads("[" * 80 + "1" + "]" * 80)}]}),
    )
    with pytest.raises(BadInputError, match=r"nests 100000 levels deep.*max_json_depth=64") as info:
        fetch(source(f"{origin.url}/deep"), None)
    assert info.value.exit_code == EXIT_BAD_INPUT
    with pytest.raises(BadInputError, match="nests 83 levels"):
        fetch(source(f"{origin.url}/nested", records_path="items"), None)
    assert fetch(source(f"{origin.url}/nested", records_path="items", max_json_depth=100), None)


def test_json_depth_ignores_brackets_inside_strings() -> None:
    assert json_depth(b'{"a": "[[[[{{{{", "b": [1, "\\"]]]["]}') == 2
    assert json_depth(b"[]") == 1 and json_depth(b"1") == 0


# --------------------------------------------------------------------------------------------
# Row and column caps, checked before the table is materialised
# --------------------------------------------------------------------------------------------


def unreadable_rows_parquet(rows: int, columns: int = 1) -> bytes:
    """A Parquet file whose footer is intact but whose data pages are garbage: reading any row
    fails, so a cap error proves that the cap was checked from the footer alone."""
    table = pa.table({f"c{i}": pa.array(np.zeros(rows, dtype="int8")) for i in range(columns)})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    data = bytearray(buffer.getvalue())
    footer = int.from_bytes(data[-8:-4], "little")
    data[4 : len(data) - 8 - footer] = b"\xff" * (len(data) - 12 - footer)
    return bytes(data)


def test_parquet_row_and_column_caps_come_from_the_footer() -> None:
    data = unreadable_rows_parquet(2_000_000, columns=3)
    assert len(data) < 100_000, "a tiny file with many rows"
    with pytest.raises(BadInputError, match="not a readable Parquet file"):
        read_table_bytes(data, "big.parquet", "parquet", CsvOptions())  # the rows really are unreadable
    with pytest.raises(BadInputError) as info:
        read_table_bytes(data, "big.parquet", "parquet", CsvOptions(), TableLimits(max_rows=1000))
    assert str(info.value).startswith("big.parquet: 2000000 rows, more than data.max_rows=1000")
    with pytest.raises(BadInputError, match=r"big\.parquet: 3 columns, more than data\.max_columns=2"):
        read_table_bytes(data, "big.parquet", "parquet", CsvOptions(), TableLimits(max_columns=2))


def test_csv_row_and_column_caps_are_checked_while_streaming() -> None:
    text = "a,b,c\n" + "".join(f"{i},{i},x\n" for i in range(5000))
    data = text.encode()
    with pytest.raises(BadInputError) as info:
        read_table_bytes(data, "f.csv", "csv", CsvOptions(), TableLimits(max_rows=1000))
    assert "f.csv: at least " in str(info.value) and "more than data.max_rows=1000" in str(info.value)
    with pytest.raises(BadInputError, match=r"f\.csv: 3 columns, more than data\.max_columns=2"):
        read_table_bytes(data, "f.csv", "csv", CsvOptions(), TableLimits(max_columns=2))
    frame = read_table_bytes(data, "f.csv", "csv", CsvOptions(), TableLimits(max_rows=5000, max_columns=3))
    assert frame.shape == (5000, 3)
    ragged = data + b"1,2,3,4\n"  # the strict parse would stop here: the cap is checked before it
    with pytest.raises(BadInputError, match=r"more than data\.max_rows=1000"):
        read_table_bytes(ragged, "f.csv", "csv", CsvOptions(), TableLimits(max_rows=1000))
    with pytest.raises(BadInputError, match="line 5002 has 4 fields"):
        read_table_bytes(ragged, "f.csv", "csv", CsvOptions(), TableLimits(max_rows=10_000))
    quoted = b'a,b\n"1\n2\n3",x\n'  # newlines inside a quoted field are not rows
    assert len(read_table_bytes(quoted, "q.csv", "csv", CsvOptions(), TableLimits(max_rows=1))) == 1


def test_the_caps_have_defaults() -> None:
    data = DataSettings()
    assert data.max_rows == 10_000_000 and data.max_columns == 10_000
    assert SourceSettings().max_bytes == 1 << 30
    options = HttpOptions()
    assert options.deadline_s == 600 and options.max_response_bytes == 100 << 20
    assert options.max_json_depth == 64 and options.allowed_hosts is None


def test_a_file_over_max_bytes_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"a\n" + b"1\n" * 1000)
    with pytest.raises(BadInputError) as info:
        fetch(SourceSettings(uri=str(path), max_bytes=100), None)
    assert str(path) in str(info.value) and "2002 bytes, more than data.source.max_bytes=100" in str(
        info.value
    )


def test_api_rows_and_columns_are_capped_across_pages(servers) -> None:
    items = {str(page): [{"id": page * 10 + i} for i in range(3)] for page in range(1, 4)}

    def paged(handler: BaseHTTPRequestHandler) -> None:
        page = handler.path.split("page=", 1)[1].split("&", 1)[0]
        send_json({"data": items.get(page, [])})(handler)

    origin = servers(items=paged, wide=send_json([{f"c{i}": i for i in range(20)}]))
    settings = source(f"{origin.url}/items", records_path="data", pagination="page")
    with pytest.raises(BadInputError, match=r"at least 6 rows, more than data\.max_rows=5"):
        fetch(settings, None, TableLimits(max_rows=5))
    assert len(origin.requests) == 2, "no page is fetched after the cap is passed"
    with pytest.raises(BadInputError, match=r"20 columns, more than data\.max_columns=10"):
        fetch(source(f"{origin.url}/wide"), None, TableLimits(max_columns=10))


# --------------------------------------------------------------------------------------------
# SQL: one statement, read-only, time-limited, capped (SQLite here; PostgreSQL in integration)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Path:
    db = tmp_path / "src.db"
    with contextlib.closing(sqlite3.connect(db)) as connection:
        connection.execute("CREATE TABLE t (a INTEGER)")
        connection.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
        connection.commit()
    return db


def table_names(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as connection:
        return [r[0] for r in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


@pytest.mark.parametrize("query", ["DROP TABLE t", "CREATE TABLE evil (x)", "DELETE FROM t"])
def test_a_sqlite_query_cannot_write(database: Path, query: str) -> None:
    with pytest.raises(BadInputError, match="the query failed"):
        fetch(SourceSettings(uri=f"sqlite:///{database}", query=query), None)
    assert table_names(database) == ["t"]
    with contextlib.closing(sqlite3.connect(database)) as connection:
        assert connection.execute("SELECT count(*) FROM t").fetchone()[0] == 100


@pytest.mark.parametrize(
    "query", ["DELETE FROM t; SELECT 1", "SELECT 1; COMMIT; DROP TABLE t", "SELECT 1;\nSELECT 2"]
)
def test_more_than_one_statement_is_refused(database: Path, query: str) -> None:
    with pytest.raises(ConfigError, match=r"holds [23] statements"):
        fetch(SourceSettings(uri=f"sqlite:///{database}", query=query), None)
    assert table_names(database) == ["t"]


def test_one_statement_with_semicolons_inside_and_comments_is_fine(database: Path) -> None:
    query = "SELECT a, ';' AS s FROM t -- first rows; ordered\nWHERE a < 2 ORDER BY a; -- done"
    raw = fetch(SourceSettings(uri=f"sqlite:///{database}", query=query), None)
    assert frame_of(raw).to_dict("list") == {"a": [0, 1], "s": [";", ";"]}


def test_a_sqlite_query_is_bounded_in_time_and_rows(database: Path) -> None:
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) "
        "SELECT count(*) FROM c"
    )
    with pytest.raises(RetryableError, match=r"data\.source\.statement_timeout_s=0\.5s"):
        fetch(SourceSettings(uri=f"sqlite:///{database}", query=endless, statement_timeout_s=0.5), None)
    query = "SELECT a FROM t"
    with pytest.raises(BadInputError, match=r"at least 100 rows, more than data\.max_rows=10"):
        fetch(SourceSettings(uri=f"sqlite:///{database}", query=query), None, TableLimits(max_rows=10))


def test_a_missing_sqlite_database_is_a_configuration_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    with pytest.raises(ConfigError, match="does not exist"):
        fetch(SourceSettings(uri=f"sqlite:///{missing}", query="SELECT 1"), None)
    assert not missing.exists(), "no empty database is created"


# --------------------------------------------------------------------------------------------
# Paths that would leave their folder
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        "pkg://palmerpenguins//etc/passwd",
        "pkg://palmerpenguins/../etc/passwd",
        "pkg://palmerpenguins/data/../../../../etc/passwd",
    ],
)
def test_a_package_uri_cannot_leave_its_package(uri: str) -> None:
    with pytest.raises(ConfigError, match="pkg://<package>/<path inside the package>"):
        resolve_package_uri(uri)


def test_a_package_uri_through_a_symbolic_link_cannot_leave_its_package(tmp_path, monkeypatch) -> None:
    package = tmp_path / "linkpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "out").symlink_to("/etc")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="leads outside the package"):
        resolve_package_uri("pkg://linkpkg/out/passwd")


DVC_TEXT = """outs:
- md5: 0123456789abcdef0123456789abcdef
  size: 3
  hash: md5
  path: {path}
"""


@pytest.mark.parametrize("make_path", [lambda t: "../../escaped.csv", lambda t: str(t / "abs" / "x.csv")])
def test_a_dvc_file_cannot_write_outside_the_destination(tmp_path: Path, make_path) -> None:
    from pipeline.dvcstore import fetch as dvc_fetch
    from pipeline.settings import S3Settings

    outside = tmp_path / "outside"
    destination = tmp_path / "a" / "b" / "dest"
    path = make_path(outside)
    with pytest.raises(BadInputError, match=r"outs\[0\]\.path .* leads outside the destination"):
        dvc_fetch(DVC_TEXT.format(path=path), destination, str(tmp_path / "remote"), S3Settings())
    assert not destination.exists(), "nothing is created for a refused .dvc file"
    assert not list(tmp_path.rglob("*.dvc")) and not list(tmp_path.rglob("escaped*"))


def test_a_malformed_dvc_file_is_bad_input(tmp_path: Path) -> None:
    from pipeline.dvcstore import described_output

    for text in ("outs: []", "just text", "outs:\n- path: x.csv\n"):
        with pytest.raises(BadInputError, match="malformed"):
            described_output(text, tmp_path)


# --------------------------------------------------------------------------------------------
# Feature-set names that share tables (SQLite; PostgreSQL in integration)
# --------------------------------------------------------------------------------------------


def test_feature_set_names_that_share_tables_are_refused_up_front(tmp_path: Path) -> None:
    from pipeline.featurestore import FeatureStore

    store = FeatureStore(f"sqlite:///{tmp_path / 'features.db'}")
    frame = pd.DataFrame({"row_id": np.arange(3, dtype="int64"), "x": [0.1, 0.2, 0.3]})
    try:
        store.write(frame, "wine-x", content_hash="a" * 64, run_id="r1")
        for name in ("wine_x", "Wine_X", "wine.x"):
            with pytest.raises(BadInputError, match=r"collides with the existing feature set 'wine-x'"):
                store.write(frame, name, content_hash="b" * 64, run_id="r2")
        assert [(v.feature_set, v.version) for v in store.versions()] == [("wine-x", 1)]
        assert store.write(frame, "wine-x", content_hash="c" * 64, run_id="r3").version == 2
    finally:
        store.close()


def test_a_transient_failure_names_the_host_not_the_query() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: connections are refused
    with pytest.raises(RetryableError) as info:
        fetch(source(f"http://127.0.0.1:{port}/data?sig=s3cr3t-signature"), None)
    message = str(info.value)
    assert f"127.0.0.1:{port}/data" in message and "Connection refused" in message
    assert "s3cr3t" not in message
