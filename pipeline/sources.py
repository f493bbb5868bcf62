"""Data sources for the ingest step: files (local, ``pkg://``, ``s3://``), HTTP APIs and SQL queries.

Each source returns a :class:`RawData`: the exact bytes to snapshot and the format to read them
with. A file is snapshotted byte for byte as received; an API or a query is materialised as
Parquet (typed, compact, deterministic for the same rows).
"""

from __future__ import annotations

import io
import logging
import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from pipeline.errors import BadInputError, ConfigError, RetryableError
from pipeline.settings import redact_url
from pipeline.tabular import detect_format, read_table_bytes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pipeline.settings import HttpOptions, S3Settings, SourceSettings

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}


@dataclass
class RawData:
    data: bytes
    format: str  # "csv" or "parquet"
    label: str  # how error messages name the source
    details: dict[str, Any]


def source_kind(source: SourceSettings) -> str:
    if source.kind != "auto":
        return source.kind
    scheme = urlparse(source.uri).scheme
    if scheme in ("http", "https"):
        return "http"
    if source.query:
        return "sql"
    return "file"


def fetch(source: SourceSettings, s3: S3Settings) -> RawData:
    kind = source_kind(source)
    if kind == "file":
        return _fetch_file(source, s3)
    if kind == "http":
        return _fetch_http(source)
    if kind == "sql":
        return _fetch_sql(source)
    raise ConfigError(f"unknown data.source.kind {kind!r}")


# files --------------------------------------------------------------------------------------


def resolve_package_uri(uri: str) -> Path:
    """``pkg://<package>/<path>`` -> the file shipped inside an installed package."""
    rest = uri[len("pkg://") :]
    package, _, inner = rest.partition("/")
    if not package or not inner or ".." in Path(inner).parts:
        raise ConfigError(f"data.source.uri {uri!r}: use pkg://<package>/<path inside the package>")
    try:
        path = Path(str(resources.files(package) / inner))
    except ModuleNotFoundError:
        raise ConfigError(f"data.source.uri {uri!r}: package {package!r} is not installed") from None
    return path


def _fetch_file(source: SourceSettings, s3: S3Settings) -> RawData:
    uri = source.uri
    fmt = detect_format(uri, source.format)
    if uri.startswith("s3://"):
        from pipeline.storage import filesystem_for

        fs, path = filesystem_for(uri, s3)
        try:
            with fs.open(path, "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            raise BadInputError(f"source {uri}: no such object") from None
        except PermissionError as exc:
            raise BadInputError(f"source {uri}: access denied ({exc})") from None
        except OSError as exc:
            raise RetryableError(f"source {uri}: cannot read from S3: {exc}") from exc
        return RawData(data, fmt, uri, {"uri": uri})
    if uri.startswith("pkg://"):
        path = resolve_package_uri(uri)
    else:
        path = Path(uri[len("file://") :] if uri.startswith("file://") else uri).expanduser()
    if not path.is_file():
        raise BadInputError(f"source {uri}: no such file ({path})")
    return RawData(path.read_bytes(), fmt, str(path), {"uri": uri, "path": str(path)})


# HTTP ---------------------------------------------------------------------------------------


def _dig(body: Any, dotted: str | None) -> Any:
    if not dotted:
        return body
    for key in dotted.split("."):
        if not isinstance(body, dict) or key not in body:
            return None
        body = body[key]
    return body


def _http_get(session, url: str, params: dict[str, Any], options: HttpOptions):
    import requests

    delay = options.backoff_s
    last_problem = ""
    for attempt in range(options.max_retries + 1):
        try:
            response = session.get(url, params=params, timeout=options.timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            last_problem = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 400:
                return response
            if response.status_code not in RETRYABLE_STATUS:
                raise BadInputError(
                    f"source {url}: HTTP {response.status_code} {response.reason} (not retryable: check "
                    "the URL, parameters and credentials)"
                )
            last_problem = f"HTTP {response.status_code} {response.reason}"
            retry_after = response.headers.get("Retry-After", "")
            if retry_after.isdigit():
                delay = max(delay, min(float(retry_after), 60.0))
        if attempt < options.max_retries:
            logger.warning(
                "GET %s failed (%s); retry %d/%d in %.1fs",
                url,
                last_problem,
                attempt + 1,
                options.max_retries,
                delay,
            )
            time.sleep(delay)
            delay *= 2
    raise RetryableError(f"source {url}: gave up after {options.max_retries + 1} attempts: {last_problem}")


def _body_format(declared: str, url: str, response) -> str:
    if declared != "auto":
        return declared
    content_type = response.headers.get("Content-Type", "").lower()
    if "csv" in content_type or urlparse(url).path.lower().endswith(".csv"):
        return "csv"
    return "json"


def _fetch_http(source: SourceSettings) -> RawData:
    import pandas as pd
    import requests

    options = source.http
    headers = dict(options.headers)
    if options.bearer_token_env:
        token = os.environ.get(options.bearer_token_env)
        if not token:
            raise ConfigError(
                f"data.source.http.bearer_token_env names {options.bearer_token_env!r}, which is not set"
            )
        headers["Authorization"] = f"Bearer {token}"
    frames: list[pd.DataFrame] = []
    url: str | None = source.uri
    page = options.first_page
    pages = 0
    with requests.Session() as session:
        session.headers.update(headers)
        while url is not None:
            if pages >= options.max_pages:
                raise BadInputError(
                    f"source {source.uri}: more than data.source.http.max_pages={options.max_pages} pages"
                )
            params: dict[str, Any] = {}
            if options.pagination == "page":
                params[options.page_param] = page
                if options.page_size_param:
                    params[options.page_size_param] = options.page_size
            response = _http_get(session, url, params, options)
            pages += 1
            label = f"{url} (page {pages})"
            body_format = _body_format(options.format, url, response)
            if body_format == "csv":
                frame = (
                    read_table_bytes(response.content, label, "csv", source.csv)
                    if response.content.strip()
                    else None
                )
                records_empty = frame is None or frame.empty
            else:
                try:
                    body = response.json()
                except ValueError:
                    raise BadInputError(f"source {label}: the response is not valid JSON") from None
                records = _dig(body, options.records_path)
                if records is None or not isinstance(records, list):
                    raise BadInputError(
                        f"source {label}: no list of records at data.source.http.records_path="
                        f"{options.records_path!r}"
                    )
                records_empty = not records
                frame = pd.json_normalize(records) if records else None
            if frame is not None and not frame.empty:
                frames.append(frame)
            if options.pagination == "page":
                url = None if records_empty else url
                page += 1
            elif options.pagination == "next_link":
                next_url = None if body_format == "csv" else _dig(body, options.next_path)
                if not next_url and "next" in response.links:
                    next_url = response.links["next"]["url"]
                url = requests.compat.urljoin(url, next_url) if next_url else None
            else:
                url = None
    if not frames:
        raise BadInputError(f"source {source.uri}: the API returned no records (rule: at least one row)")
    frame = pd.concat(frames, ignore_index=True)
    return RawData(
        _to_parquet(frame), "parquet", source.uri, {"uri": source.uri, "pages": pages, "rows": len(frame)}
    )


# SQL ----------------------------------------------------------------------------------------


def _fetch_sql(source: SourceSettings) -> RawData:
    import pandas as pd
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    if not source.query:
        raise ConfigError("data.source.kind is 'sql' but data.source.query is empty")
    label = f"{redact_url(source.uri)} query"
    try:
        engine = sa.create_engine(source.uri)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise ConfigError(f"data.source.uri is not a usable SQLAlchemy URL: {exc}") from None
    try:
        try:
            connection = engine.connect()
        except sa_exc.DBAPIError as exc:
            raise RetryableError(f"source {label}: database unreachable: {exc.orig}") from None
        with connection:
            try:
                result = connection.execute(sa.text(source.query))
                frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
            except sa_exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    raise RetryableError(f"source {label}: connection lost: {exc.orig}") from None
                raise BadInputError(f"source {label}: the query failed: {exc.orig}") from None
    finally:
        engine.dispose()
    if frame.empty:
        raise BadInputError(f"source {label}: the query returned no rows (rule: at least one row)")
    return RawData(_to_parquet(frame), "parquet", label, {"uri": redact_url(source.uri), "rows": len(frame)})


def _to_parquet(frame: pd.DataFrame) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()
