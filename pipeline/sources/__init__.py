"""Data sources for the ingest step: files (local, ``pkg://``, ``s3://``), HTTP APIs and SQL queries.

Each source returns a :class:`RawData`: the exact bytes to snapshot and the format to read them
with. A file is snapshotted byte for byte as received (a gzip, bz2, xz or zstd file as its
decompressed bytes, see :mod:`pipeline.compression`); an API or a query is materialised as
Parquet (typed, compact, deterministic for the same rows).

Every source is bounded: a file or object over ``data.source.max_bytes`` is refused before it is
read, a compressed one again as soon as its decompressed data passes the cap; an HTTP fetch has
one deadline for all of it (``http.deadline_s``), a byte cap per body and in total (decoded), a
nesting bound on JSON, follows redirects itself and sends its configured headers and credentials
to the URI's origin only (and, with ``http.allowed_hosts``, contacts no other host); a query is
one statement, run read-only under a statement timeout, fetched in batches up to
``data.max_rows``. What the input or the configuration causes is bad input (exit 65); only
transient faults (unreachable, timed out, 5xx) are retryable (75).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pipeline.errors import ConfigError
from pipeline.sources.base import FILE_SCHEMES, HTTP_SCHEMES, RETRYABLE_STATUS, RawData
from pipeline.sources.files import _fetch_file, resolve_package_uri
from pipeline.sources.http import _fetch_http, json_depth, safe_url
from pipeline.sources.sql import _fetch_sql
from pipeline.tabular import NO_LIMITS, TableLimits

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import S3Settings, SourceSettings

__all__ = [
    "FILE_SCHEMES",
    "HTTP_SCHEMES",
    "RETRYABLE_STATUS",
    "RawData",
    "fetch",
    "json_depth",
    "resolve_package_uri",
    "safe_url",
    "source_kind",
]


def source_kind(source: SourceSettings) -> str:
    if source.kind != "auto":
        return source.kind
    scheme = urlparse(source.uri).scheme
    if scheme in ("http", "https"):
        return "http"
    if source.query:
        return "sql"
    return "file"


def fetch(source: SourceSettings, s3: S3Settings, limits: TableLimits = NO_LIMITS) -> RawData:
    """Read the source within its bounds; ``limits`` (rows, columns) apply to what an API or a
    query returns (a file's rows are counted when it is read, see :mod:`pipeline.tabular`)."""
    kind = source_kind(source)
    if kind == "file":
        return _fetch_file(source, s3)
    if kind == "http":
        return _fetch_http(source, limits)
    if kind == "sql":
        return _fetch_sql(source, limits)
    raise ConfigError(f"unknown data.source.kind {kind!r}")
