"""HTTP APIs: one deadline, byte caps, JSON depth bound, credentials only to the origin."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlparse, urlsplit, urlunsplit

from pipeline.compression import (
    ACCEPT_ENCODING,
    CONTENT_ENCODINGS,
    MAGIC_BYTES,
    codec_from_content_type,
    codec_from_magic,
    decompressed_too_big,
    read_decompressed,
    refuse_unsupported,
    strip_suffix,
)
from pipeline.errors import BadInputError, ConfigError, RetryableError
from pipeline.settings import redact_url
from pipeline.sources.base import HTTP_SCHEMES, READ_CHUNK, RETRYABLE_STATUS, RawData, to_parquet, too_big
from pipeline.tabular import CSV_SUFFIXES, NO_LIMITS, TableLimits, read_table_bytes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from pipeline.settings import HttpOptions, SourceSettings

logger = logging.getLogger(__name__)

# HTTP ---------------------------------------------------------------------------------------


def safe_url(url: str) -> str:
    """``url`` as an error message may show it: no user-info, no query string, no fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<an unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _check_url(url: str, options: HttpOptions, what: str) -> None:
    """Refuse a URL the source must not fetch: another scheme, no host, a host not allowed."""
    error = ConfigError if what == "data.source.uri" else BadInputError
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise error(f"{what} {safe_url(url)}: not a valid URL") from None
    if parts.scheme.lower() not in HTTP_SCHEMES:
        raise error(
            f"{what} {safe_url(url)}: scheme {parts.scheme or '(none)'!r} is not supported (rule: an HTTP "
            "source fetches http:// and https:// URLs only)"
        )
    if not host:
        raise error(f"{what} {safe_url(url)}: the URL has no host")
    if options.allowed_hosts is not None and host not in options.allowed_hosts:
        raise error(
            f"{what} {safe_url(url)}: host {host!r} is not in data.source.http.allowed_hosts "
            f"{options.allowed_hosts} (rule: the source contacts only the allowed hosts)"
        )


_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _credentials(options: HttpOptions) -> dict[str, str]:
    """The configured headers, by value and by reference (environment variables): sent to the
    source URI's origin only. Errors name headers and variables, never values."""
    from pipeline import redaction

    headers = dict(options.headers)
    for header, variable in options.headers_from_env.items():
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(
                f"data.source.http.headers_from_env: header {header!r} is read from the environment "
                f"variable {variable!r}, which is not set"
            )
        redaction.register_secret(value)
        headers[header] = value
    if options.bearer_token_env:
        token = os.environ.get(options.bearer_token_env)
        if not token:
            raise ConfigError(
                f"data.source.http.bearer_token_env names {options.bearer_token_env!r}, which is not set"
            )
        redaction.register_secret(token)
        headers["Authorization"] = f"Bearer {token}"
    for header, value in headers.items():
        if not _HEADER_NAME.match(header) or any(c in value for c in "\r\n\0") or value != value.strip():
            raise ConfigError(
                f"data.source.http: header {header!r} has an invalid name or value (rule: a token as "
                "the name; a value without line breaks or surrounding whitespace)"
            )
    return headers


class _Budget:
    """What one HTTP fetch may still spend: time until its deadline, and bytes."""

    def __init__(self, options: HttpOptions, max_bytes: int):
        self.deadline_s = options.deadline_s
        self.end = time.monotonic() + options.deadline_s
        self.max_bytes = self.bytes_left = max_bytes

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, url: str) -> None:
        if self.remaining() <= 0:
            raise RetryableError(
                f"source {safe_url(url)}: the fetch did not finish within data.source.http.deadline_s="
                f"{self.deadline_s:g}s (rule: every page, redirect, retry and byte within the deadline)"
            )

    def timeout(self, timeout_s: float) -> float:
        return max(0.01, min(timeout_s, self.remaining()))


def _content_encodings(response) -> list[str]:
    codings = [c.strip() for c in response.headers.get("Content-Encoding", "").lower().split(",")]
    return [c for c in codings if c and c != "identity"]


def _read_body(response, url: str, options: HttpOptions, budget: _Budget) -> bytes:
    """The body, read in pieces against the byte caps and the deadline (a server that drips its
    answer is cut off at the deadline, one that sends too much at the cap), then decoded from
    its Content-Encoding here, under the same caps (not by urllib3, which would hand a truncated
    stream on as if it were whole)."""
    per_response = options.max_response_bytes

    def check(size: int) -> None:
        if size > per_response:
            raise too_big(safe_url(url), size, per_response, "data.source.http.max_response_bytes")
        if size > budget.bytes_left:
            spent = budget.max_bytes - budget.bytes_left
            raise too_big(
                f"{safe_url(url)} (all pages)", spent + size, budget.max_bytes, "data.source.max_bytes"
            )

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit():
        check(int(declared))
    chunks: list[bytes] = []
    total = 0
    while True:
        budget.check(url)
        chunk = response.raw.read1(READ_CHUNK, decode_content=False)
        if not chunk:
            break
        total += len(chunk)
        check(total)
        chunks.append(chunk)
    body = b"".join(chunks)
    for coding in reversed(_content_encodings(response)):  # the last one applied is undone first
        codec = CONTENT_ENCODINGS.get(coding)
        if codec is None:
            raise BadInputError(
                f"source {safe_url(url)}: Content-Encoding {coding!r} is not supported (rule: the "
                f"server answers in one of {sorted(CONTENT_ENCODINGS)}, as the request asked)"
            )
        body = _decompress(body, codec, f"{safe_url(url)} (Content-Encoding {coding})", options, budget)
    budget.bytes_left -= len(body)
    return body


def _decompress(content: bytes, codec: str, label: str, options: HttpOptions, budget: _Budget) -> bytes:
    """``content`` decompressed, refused once it passes the caps a body has (the response's and
    what is left of the fetch's)."""

    def left(size: int) -> None:
        if size > budget.bytes_left:
            raise decompressed_too_big(
                f"{label} (all pages)", codec, budget.max_bytes, "data.source.max_bytes"
            )

    return read_decompressed(
        io.BytesIO(content),
        codec,
        label,
        options.max_response_bytes,
        "data.source.http.max_response_bytes",
        on_output=left,
    )


def _unpack(
    content: bytes, response, url: str, options: HttpOptions, budget: _Budget
) -> tuple[bytes, str | None]:
    """A body that is a compressed file (a .csv.gz served as it is, or Content-Type
    application/gzip and the like), decompressed; its codec, or None. What the body starts with
    decides; the Content-Type only when no Content-Encoding was decoded (a server that serves a
    .gz file with both headers means one compression, not two)."""
    codec = codec_from_magic(content[:MAGIC_BYTES])
    if codec is None and not _content_encodings(response):
        codec = codec_from_content_type(response.headers.get("Content-Type", ""))
    if codec is None:
        refuse_unsupported(content[:512], safe_url(url))
        return content, None
    budget.bytes_left += len(content)  # counted again, decompressed
    data = _decompress(content, codec, safe_url(url), options, budget)
    budget.bytes_left -= len(data)
    refuse_unsupported(data[:512], f"{safe_url(url)} (decompressed)")
    return data, codec


def _connection_problem(exc: Exception) -> str:
    """What went wrong with a connection, without the request's URL (its query may hold secrets):
    urllib3's reason names only the host and port."""
    first = exc.args[0] if exc.args else ""
    reason = getattr(first, "reason", None)
    return f"{type(exc).__name__}: {redact_url(str(reason if reason is not None else first))}"


def _http_get(session, url: str, params: dict[str, Any], headers: dict[str, str], options, budget):
    """One GET with bounded retries, no redirect followed: (response, body; empty for a redirect)."""
    import requests
    import urllib3

    delay = options.backoff_s
    last_problem = ""
    shown = safe_url(url)
    for attempt in range(options.max_retries + 1):
        budget.check(url)
        timeout = budget.timeout(options.timeout_s)
        try:
            response = session.get(
                url, params=params, headers=headers, timeout=timeout, stream=True, allow_redirects=False
            )
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
            raise BadInputError(f"source {shown}: cannot be fetched ({type(exc).__name__})") from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            last_problem = _connection_problem(exc)
        else:
            with response:
                if response.status_code < 400:
                    if response.is_redirect:
                        return response, b""
                    try:
                        return response, _read_body(response, url, options, budget)
                    except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as exc:
                        last_problem = f"reading the body: {type(exc).__name__}"
                elif response.status_code not in RETRYABLE_STATUS:
                    raise BadInputError(
                        f"source {shown}: HTTP {response.status_code} {response.reason} (not retryable: "
                        "check the URL, parameters and credentials)"
                    )
                else:
                    last_problem = f"HTTP {response.status_code} {response.reason}"
                    retry_after = response.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        delay = max(delay, min(float(retry_after), 60.0))
        if attempt < options.max_retries:
            if delay >= budget.remaining():
                budget.end = time.monotonic()  # no time left for the retry: fail now, not after
                budget.check(url)
            logger.warning(
                "GET %s failed (%s); retry %d/%d in %.1fs",
                shown,
                last_problem,
                attempt + 1,
                options.max_retries,
                delay,
            )
            time.sleep(delay)
            delay *= 2
    raise RetryableError(f"source {shown}: gave up after {options.max_retries + 1} attempts: {last_problem}")


def _follow(session, url: str, params, credentials, origin, options: HttpOptions, budget: _Budget, what: str):
    """GET ``url``, following redirects here: each hop is checked (scheme, allowed hosts) and the
    credentials go only to the source's origin. Returns (response, body, final URL)."""
    for hop in range(options.max_redirects + 1):
        _check_url(url, options, what if hop == 0 else "the source's redirect to")
        headers = credentials if _origin(url) == origin else {}
        response, body = _http_get(session, url, params, headers, options, budget)
        if not response.is_redirect:
            return response, body, url
        url = urljoin(response.url or url, response.headers["Location"])
        params = {}  # the Location is the whole next URL
    raise BadInputError(
        f"source {safe_url(url)}: more than data.source.http.max_redirects={options.max_redirects} redirects"
    )


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, counted without parsing it (so a
    body nested too deep for the parser is measured, not crashed on)."""
    import numpy as np

    codes = np.frombuffer(_JSON_STRING.sub(b'""', body), dtype=np.uint8)
    depth = deepest = 0
    for start in range(0, len(codes), 1 << 20):
        chunk = codes[start : start + (1 << 20)]
        steps = (chunk == 0x5B).astype(np.int32) + (chunk == 0x7B) - (chunk == 0x5D) - (chunk == 0x7D)
        levels = np.cumsum(steps, dtype=np.int64) + depth
        deepest = max(deepest, int(levels.max()))
        depth = int(levels[-1])
    return deepest


def _parse_json(body: bytes, label: str, options: HttpOptions) -> Any:
    depth = json_depth(body)
    if depth > options.max_json_depth:
        raise BadInputError(
            f"source {label}: the JSON body nests {depth} levels deep, more than "
            f"data.source.http.max_json_depth={options.max_json_depth}"
        )
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise BadInputError(f"source {label}: the response is not valid JSON") from None


def _dig(body: Any, dotted: str | None) -> Any:
    if not dotted:
        return body
    for key in dotted.split("."):
        if not isinstance(body, dict) or key not in body:
            return None
        body = body[key]
    return body


def _body_format(declared: str, url: str, response, content: bytes, compressed: bool) -> str:
    if declared != "auto":
        return declared
    content_type = response.headers.get("Content-Type", "").lower()
    path = strip_suffix(urlparse(url).path.lower())
    if "csv" in content_type or path.endswith(CSV_SUFFIXES):
        return "csv"
    if compressed and "json" not in content_type and not path.endswith(".json"):
        # the Content-Type named the compressed file, not what it holds: look at what it holds
        return "json" if content.lstrip()[:1] in (b"[", b"{") else "csv"
    return "json"


def _fetch_http(source: SourceSettings, limits: TableLimits = NO_LIMITS) -> RawData:
    import pandas as pd
    import requests

    options = source.http
    _check_url(source.uri, options, "data.source.uri")
    credentials = _credentials(options)
    origin = _origin(source.uri)
    budget = _Budget(options, source.max_bytes)
    shown = safe_url(source.uri)
    frames: list[pd.DataFrame] = []
    rows = 0
    url: str | None = source.uri
    page = options.first_page
    pages = 0
    codecs: set[str] = set()
    encodings: set[str] = set()
    with requests.Session() as session:
        session.headers["Accept-Encoding"] = ACCEPT_ENCODING
        while url is not None:
            if pages >= options.max_pages:
                raise BadInputError(
                    f"source {shown}: more than data.source.http.max_pages={options.max_pages} pages"
                )
            params: dict[str, Any] = {}
            if options.pagination == "page":
                params[options.page_param] = page
                if options.page_size_param:
                    params[options.page_size_param] = options.page_size
            what = "data.source.uri" if pages == 0 else "the source's next-page link"
            response, content, final_url = _follow(
                session, url, params, credentials, origin, options, budget, what
            )
            pages += 1
            label = f"{safe_url(final_url)} (page {pages})"
            content, codec = _unpack(content, response, final_url, options, budget)
            encodings.update(_content_encodings(response))
            if codec:
                codecs.add(codec)
            packed = codec is not None or codec_from_content_type(response.headers.get("Content-Type", ""))
            body_format = _body_format(options.format, final_url, response, content, bool(packed))
            if body_format == "csv":
                frame = (
                    read_table_bytes(content, label, "csv", source.csv, limits) if content.strip() else None
                )
                records_empty = frame is None or frame.empty
            else:
                body = _parse_json(content, label, options)
                records = _dig(body, options.records_path)
                if records is None or not isinstance(records, list):
                    raise BadInputError(
                        f"source {label}: no list of records at data.source.http.records_path="
                        f"{options.records_path!r}"
                    )
                records_empty = not records
                limits.check_rows(rows + len(records), f"source {shown}", so_far=True)
                frame = pd.json_normalize(records) if records else None
            if frame is not None and not frame.empty:
                limits.check_columns(frame.shape[1], label)
                rows += len(frame)
                limits.check_rows(rows, f"source {shown}", so_far=True)
                frames.append(frame)
            if options.pagination == "page":
                url = None if records_empty else url
                page += 1
            elif options.pagination == "next_link":
                next_url = None if body_format == "csv" else _dig(body, options.next_path)
                if next_url is not None and not isinstance(next_url, str):
                    raise BadInputError(
                        f"source {label}: data.source.http.next_path={options.next_path!r} holds a "
                        f"{type(next_url).__name__}, not a URL"
                    )
                if not next_url and "next" in response.links:
                    next_url = response.links["next"]["url"]
                url = urljoin(final_url, next_url) if next_url else None
            else:
                url = None
    if not frames:
        raise BadInputError(f"source {shown}: the API returned no records (rule: at least one row)")
    frame = pd.concat(frames, ignore_index=True)
    limits.check_columns(frame.shape[1], f"source {shown}")
    details: dict[str, Any] = {"uri": redact_url(source.uri), "pages": pages, "rows": len(frame)}
    if codecs:
        details["compression"] = ",".join(sorted(codecs))
    if encodings:
        details["content_encoding"] = ",".join(sorted(encodings))
    return RawData(to_parquet(frame), "parquet", shown, details)
