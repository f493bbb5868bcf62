"""Compressed sources: gzip, bz2, xz and zstd files read by suffix or by magic bytes, from local
paths, ``pkg://`` resources, ``s3://`` objects (moto's real server) and HTTP (a real local server:
a compressed file as the body, or a Content-Encoding); the byte caps bound the decompressed data
(a decompression bomb is refused early, without inflating it in memory); corrupt or truncated data
is bad input naming the source and the codec."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pandas as pd
import pytest
import zstandard

from pipeline.errors import EXIT_BAD_INPUT, BadInputError
from pipeline.settings import CsvOptions, HttpOptions, S3Settings, SourceSettings
from pipeline.sources import fetch, resolve_package_uri
from pipeline.tabular import TableLimits, detect_format, read_table_bytes
from tests.support import Route, Server

PENGUINS = resolve_package_uri("pkg://palmerpenguins/data/penguins.csv").read_bytes()
PLAIN = pd.read_csv(io.BytesIO(PENGUINS))
CODECS = ["gzip", "bz2", "xz", "zstd"]
SUFFIX = {"gzip": ".gz", "bz2": ".bz2", "xz": ".xz", "zstd": ".zst"}


def compress(codec: str, data: bytes) -> bytes:
    if codec == "gzip":
        return gzip.compress(data)
    if codec == "bz2":
        return bz2.compress(data)
    if codec == "xz":
        return lzma.compress(data)
    return zstandard.ZstdCompressor(write_checksum=True).compress(data)


def bomb(codec: str, inflated: int) -> bytes:
    """Compressed zeros that inflate to ``inflated`` bytes: one 16 MiB stream (member, frame),
    repeated (every codec reads concatenated streams as one)."""
    block = compress(codec, bytes(16 << 20))
    return block * (inflated // (16 << 20))


def read(raw) -> pd.DataFrame:
    return read_table_bytes(raw.data, raw.label, raw.format, CsvOptions())


def local(path: Path, **settings) -> SourceSettings:
    return SourceSettings(uri=str(path), **settings)


# --------------------------------------------------------------------------------------------
# Local files and pkg:// resources: by suffix, by magic bytes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_a_compressed_csv_is_read_by_its_suffix(codec: str, tmp_path: Path) -> None:
    path = tmp_path / f"penguins.csv{SUFFIX[codec]}"
    path.write_bytes(compress(codec, PENGUINS))
    raw = fetch(local(path), S3Settings())
    assert raw.format == "csv"
    assert raw.data == PENGUINS, "the snapshot is the decompressed file"
    assert raw.details["compression"] == codec
    assert raw.details["compressed_bytes"] == path.stat().st_size
    pd.testing.assert_frame_equal(read(raw), PLAIN, check_dtype=False)


@pytest.mark.parametrize("codec", CODECS)
def test_a_compressed_file_is_recognised_by_its_magic_bytes(codec: str, tmp_path: Path) -> None:
    """A name that says nothing of the compression (penguins.csv), or nothing at all with the
    format declared (the issue: format=csv on a gzip file was advised to change its encoding)."""
    for name, settings in (("penguins.csv", {}), ("export", {"format": "csv"})):
        path = tmp_path / name
        path.write_bytes(compress(codec, PENGUINS))
        raw = fetch(local(path, **settings), S3Settings())
        assert raw.data == PENGUINS and raw.details["compression"] == codec, name
        assert len(read(raw)) == len(PLAIN)
    if codec == "bz2":  # bz2's signature starts with text; a CSV that starts alike stays plain
        path = tmp_path / "bzh.csv"
        path.write_bytes(b"BZh9,b\n1,2\n")
        raw = fetch(local(path), S3Settings())
        assert "compression" not in raw.details and read(raw).columns.tolist() == ["BZh9", "b"]


def test_the_format_is_told_through_the_compression_suffix() -> None:
    assert detect_format("s3://bucket/tips.csv.gz") == "csv"
    assert detect_format("/data/x.TSV.BZ2") == "csv"
    assert detect_format("https://h/a.parquet.zst?sig=1") == "parquet"
    assert detect_format("b.pq.xz") == "parquet"
    with pytest.raises(BadInputError, match=r"'data\.gz'.*data\.source\.format.*data\.csv\.gz"):
        detect_format("data.gz")


def test_parquet_inside_gzip(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    PLAIN.to_parquet(buffer, index=False)
    path = tmp_path / "penguins.parquet.gz"
    path.write_bytes(gzip.compress(buffer.getvalue()))
    raw = fetch(local(path), S3Settings())
    assert raw.format == "parquet" and raw.details["compression"] == "gzip"
    pd.testing.assert_frame_equal(read(raw), PLAIN)


def test_a_compressed_file_shipped_in_a_package() -> None:
    """The issue's tips.csv.gz, as plotly ships it."""
    uri = "pkg://plotly/package_data/datasets/tips.csv.gz"
    raw = fetch(SourceSettings(uri=uri), S3Settings())
    assert raw.data == gzip.decompress(resolve_package_uri(uri).read_bytes())
    frame = read(raw)
    assert len(frame) == 244 and {"total_bill", "tip", "day"} <= set(frame.columns)


# --------------------------------------------------------------------------------------------
# The caps bound the decompressed data
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_a_decompression_bomb_is_refused_early(codec: str, tmp_path: Path) -> None:
    """10 GiB of zeros (1 GiB for gzip, which compresses at most ~1000:1) in a file far under
    the cap: refused once the decompressed data passes data.source.max_bytes, naming the file and
    the setting, with no more than a few times the cap in memory."""
    cap = 4 << 20
    path = tmp_path / f"bomb.csv{SUFFIX[codec]}"
    path.write_bytes(bomb(codec, (1 if codec == "gzip" else 10) << 30))
    assert path.stat().st_size < cap
    tracemalloc.start()
    try:
        with pytest.raises(BadInputError) as info:
            fetch(local(path, max_bytes=cap), S3Settings())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert str(path) in message and codec in message and f"data.source.max_bytes={cap}" in message
    assert peak < 16 * cap, f"{peak} bytes held while refusing a bomb"


def test_the_row_cap_applies_to_the_decompressed_rows(tmp_path: Path) -> None:
    path = tmp_path / "many.csv.xz"
    path.write_bytes(lzma.compress(b"a,b\n" + b"1,2\n" * 5000))
    raw = fetch(local(path), S3Settings())
    rule = r"many\.csv\.xz: at least \d+ rows, more than data\.max_rows=100"
    with pytest.raises(BadInputError, match=rule):
        read_table_bytes(raw.data, raw.label, raw.format, CsvOptions(), TableLimits(max_rows=100))


# --------------------------------------------------------------------------------------------
# Corrupt and truncated data
# --------------------------------------------------------------------------------------------


def truncated(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def corrupted(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 64]) + data[middle + 64 :]


@pytest.mark.parametrize("damage", [truncated, corrupted])
@pytest.mark.parametrize("codec", CODECS)
def test_corrupt_or_truncated_data_is_bad_input_naming_the_codec(codec: str, damage, tmp_path: Path) -> None:
    path = tmp_path / f"penguins.csv{SUFFIX[codec]}"
    path.write_bytes(damage(compress(codec, PENGUINS)))
    with pytest.raises(BadInputError) as info:
        fetch(local(path), S3Settings())
    message = str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert str(path) in message and f"cannot be decompressed as {codec}" in message
    if damage is truncated:
        assert "truncated" in message


def test_a_file_named_compressed_that_is_not_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "penguins.csv.gz"
    path.write_bytes(PENGUINS)
    with pytest.raises(BadInputError, match=r"penguins\.csv\.gz: cannot be decompressed as gzip"):
        fetch(local(path), S3Settings())


def test_an_archive_is_refused_as_what_it_is_not_as_an_encoding_problem(tmp_path: Path) -> None:
    import tarfile
    import zipfile

    with zipfile.ZipFile(tmp_path / "penguins.zip", "w") as archive:
        archive.writestr("penguins.csv", PENGUINS)
    with tarfile.open(tmp_path / "penguins.tar.gz", "w:gz") as archive:
        archive.add(resolve_package_uri("pkg://palmerpenguins/data/penguins.csv"), "penguins.csv")
    for name, what in (("penguins.zip", "a zip archive"), ("penguins.tar.gz", "a tar archive")):
        with pytest.raises(BadInputError) as info:
            fetch(local(tmp_path / name, format="csv"), S3Settings())
        message = str(info.value)
        assert f"{tmp_path / name}" in message and f"is {what}" in message, message
        assert "encoding" not in message


# --------------------------------------------------------------------------------------------
# HTTP: a compressed file as the body; a Content-Encoding (a real local server)
# --------------------------------------------------------------------------------------------


def answer(headers: dict[str, str], body: bytes) -> Route:
    """A route that answers with ``headers`` and ``body`` (the client may stop reading: a cap)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    return route


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(routes: dict[str, tuple[dict[str, str], bytes]]) -> Server:
        started.append(Server("127.0.0.1", {path: answer(*reply) for path, reply in routes.items()}))
        return started[-1]

    yield start
    for server in started:
        server.close()


def http(url: str, max_bytes: int = 1 << 30, **options) -> SourceSettings:
    return SourceSettings(
        uri=url, max_bytes=max_bytes, http=HttpOptions(backoff_s=0.01, max_retries=1, **options)
    )


def parquet_frame(raw) -> pd.DataFrame:
    assert raw.format == "parquet"
    return pd.read_parquet(io.BytesIO(raw.data))


RECORDS = [{"id": i, "name": f"n{i}", "value": i / 4} for i in range(200)]
RECORDS_JSON = json.dumps(RECORDS).encode()


@pytest.mark.parametrize("codec", CODECS)
def test_http_a_compressed_file_as_the_body(codec: str, serve) -> None:
    """A .csv.gz served as it is (Content-Type application/gzip), and a compressed JSON export
    whose URL and Content-Type say nothing of what it holds."""
    name = f"/penguins.csv{SUFFIX[codec]}"
    server = serve(
        {
            name: ({"Content-Type": "application/gzip"}, compress(codec, PENGUINS)),
            "/export": ({"Content-Type": "application/octet-stream"}, compress(codec, RECORDS_JSON)),
        }
    )
    raw = fetch(http(f"{server.url}{name}"), S3Settings())
    frame = parquet_frame(raw)
    assert len(frame) == len(PLAIN) and list(frame.columns) == list(PLAIN.columns)
    assert raw.details["compression"] == codec
    raw = fetch(http(f"{server.url}/export"), S3Settings())
    assert parquet_frame(raw).to_dict("records") == RECORDS
    assert raw.details["compression"] == codec


def test_http_a_gz_file_served_with_both_headers_is_decompressed_once(serve) -> None:
    """Content-Type application/gzip and Content-Encoding gzip on one gzip body (what a web
    server configured to serve .gz files often sends) is one compression, not two."""
    headers = {"Content-Type": "application/gzip", "Content-Encoding": "gzip"}
    server = serve({"/penguins.csv.gz": (headers, gzip.compress(PENGUINS))})
    raw = fetch(http(f"{server.url}/penguins.csv.gz"), S3Settings())
    assert len(parquet_frame(raw)) == len(PLAIN)
    assert raw.details["content_encoding"] == "gzip" and "compression" not in raw.details


def _deflate(data: bytes) -> bytes:
    return zlib.compress(data)


ENCODERS = {"gzip": gzip.compress, "deflate": _deflate, "zstd": zstandard.ZstdCompressor().compress}


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_http_content_encoding_is_decoded(coding: str, serve) -> None:
    server = serve(
        {
            "/api": (
                {"Content-Type": "application/json", "Content-Encoding": coding},
                ENCODERS[coding](RECORDS_JSON),
            )
        }
    )
    raw = fetch(http(f"{server.url}/api"), S3Settings())
    assert parquet_frame(raw).to_dict("records") == RECORDS
    assert raw.details["content_encoding"] == coding
    assert coding in server.requests[0]["headers"]["Accept-Encoding"], "the request offers the coding"


def test_http_a_truncated_content_encoding_is_bad_input_not_a_short_table(serve) -> None:
    body = gzip.compress(b"id,value\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(20000)))
    server = serve({"/data.csv": ({"Content-Type": "text/csv", "Content-Encoding": "gzip"}, truncated(body))})
    with pytest.raises(BadInputError) as info:
        fetch(http(f"{server.url}/data.csv"), S3Settings())
    message = str(info.value)
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert f"{server.url}/data.csv" in message and "gzip" in message and "truncated" in message
    assert len(server.requests) == 1, "bad data is not retried"


def test_http_decompression_bombs_are_refused_at_the_caps(serve) -> None:
    gigabyte = bomb("gzip", 1 << 30)
    server = serve(
        {
            "/encoded": ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, gigabyte),
            "/file.csv.gz": ({"Content-Type": "application/gzip"}, gigabyte),
        }
    )
    cap = 8 << 20
    with pytest.raises(BadInputError) as info:
        fetch(http(f"{server.url}/encoded", max_response_bytes=cap), S3Settings())
    message = str(info.value)
    assert "decompresses to more than" in message
    assert f"data.source.http.max_response_bytes={cap}" in message and f"{server.url}/encoded" in message
    with pytest.raises(BadInputError) as info:
        fetch(http(f"{server.url}/file.csv.gz", max_bytes=cap), S3Settings())
    message = str(info.value)
    assert "decompresses to more than" in message
    assert f"data.source.max_bytes={cap}" in message and f"{server.url}/file.csv.gz" in message


def test_http_an_unsupported_content_encoding_is_named(serve) -> None:
    server = serve({"/api": ({"Content-Type": "application/json", "Content-Encoding": "br"}, b"\x0b\x02")})
    with pytest.raises(BadInputError, match=r"Content-Encoding 'br' is not supported"):
        fetch(http(f"{server.url}/api"), S3Settings())


# --------------------------------------------------------------------------------------------
# S3 (moto's real server)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    from tests.services import s3_server

    with s3_server(tmp_path_factory.mktemp("moto"), buckets=("compressed",)) as server:
        yield server


def s3_settings(server) -> S3Settings:
    return S3Settings(
        endpoint_url=server.url,
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
    )


@pytest.mark.integration
def test_s3_objects_compressed_by_suffix_and_by_magic(s3) -> None:
    client = s3.client()
    client.put_object(Bucket="compressed", Key="penguins.csv.bz2", Body=bz2.compress(PENGUINS))
    client.put_object(Bucket="compressed", Key="exports/latest", Body=compress("zstd", PENGUINS))
    raw = fetch(SourceSettings(uri="s3://compressed/penguins.csv.bz2"), s3_settings(s3))
    assert raw.data == PENGUINS and raw.details["compression"] == "bz2"
    raw = fetch(SourceSettings(uri="s3://compressed/exports/latest", format="csv"), s3_settings(s3))
    assert raw.data == PENGUINS and raw.details["compression"] == "zstd"
    pd.testing.assert_frame_equal(read(raw), PLAIN, check_dtype=False)


@pytest.mark.integration
def test_s3_bombs_and_truncated_objects_are_refused(s3) -> None:
    client = s3.client()
    client.put_object(Bucket="compressed", Key="bomb.csv.xz", Body=bomb("xz", 10 << 30))
    client.put_object(Bucket="compressed", Key="cut.csv.gz", Body=truncated(gzip.compress(PENGUINS)))
    cap = 4 << 20
    with pytest.raises(BadInputError) as info:
        fetch(SourceSettings(uri="s3://compressed/bomb.csv.xz", max_bytes=cap), s3_settings(s3))
    message = str(info.value)
    assert "s3://compressed/bomb.csv.xz" in message and f"data.source.max_bytes={cap}" in message
    assert "xz" in message
    with pytest.raises(BadInputError) as info:
        fetch(SourceSettings(uri="s3://compressed/cut.csv.gz"), s3_settings(s3))
    assert info.value.exit_code == EXIT_BAD_INPUT
    assert "s3://compressed/cut.csv.gz: cannot be decompressed as gzip" in str(info.value)
