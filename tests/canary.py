"""Canary secrets: a distinct, searchable value in every secret-bearing setting, an HTTP source that
checks they arrive, and a search of every byte a run wrote for any of them.

A canary is found in any of the forms a sink could hold it in: raw, URL-encoded (``quote`` and
``quote_plus``) and inside an HTTP Basic ``Authorization`` header (base64 of ``user:password``).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

SOURCE_USER = "reader"


def _canary(name: str) -> str:
    # Characters that URL-encoding changes ('@', '/', '&', '+') make encoded leaks count too.
    return f"CANARY{name}x{secrets.token_hex(6)}"


@dataclass
class Canaries:
    """One canary per secret-bearing setting; ``values`` names each by the setting it went into."""

    values: dict[str, str] = field(default_factory=dict)

    def new(self, setting: str) -> str:
        value = _canary(str(len(self.values)))
        self.values[setting] = value
        return value

    def forms(self) -> dict[bytes, str]:
        """Every byte string whose presence is a leak -> the setting it came from."""
        out: dict[bytes, str] = {}
        for setting, value in self.values.items():
            for form in {value, quote(value, safe=""), quote_plus(value)}:
                out[form.encode()] = setting
            basic = base64.b64encode(f"{SOURCE_USER}:{value}".encode())
            out[basic] = f"{setting} (in a Basic Authorization header)"
        return out

    def leaks_in(self, data: bytes, where: str) -> list[str]:
        return [f"{where}: {setting}" for form, setting in self.forms().items() if form in data]

    def leaks_in_tree(self, *roots: Path) -> list[str]:
        found: list[str] = []
        for root in roots:
            if root.is_file():
                found += self.leaks_in(root.read_bytes(), str(root))
                continue
            for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
                found += self.leaks_in(path.read_bytes(), str(path))
        return found


def penguins_csv() -> bytes:
    return resources.files("palmerpenguins").joinpath("data/penguins.csv").read_bytes()


class _SourceHandler(BaseHTTPRequestHandler):
    owner: CanarySource

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        owner = self.owner
        query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        with owner.lock:
            owner.requests.append({"path": self.path, "query": query, "headers": headers})
        expected_auth = "Basic " + base64.b64encode(f"{SOURCE_USER}:{owner.password}".encode()).decode()
        authorised = (
            headers.get("authorization") == expected_auth
            and all(query.get(k) == v for k, v in owner.query.items())
            and all(headers.get(k.lower()) == v for k, v in owner.headers.items())
        )
        if not authorised:
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = owner.body
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class CanarySource:
    """An HTTP CSV source on loopback that answers only when every credential arrives as set."""

    def __init__(self, password: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> None:
        self.password, self.query, self.headers, self.body = password, query, headers, body
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        handler = type("Handler", (_SourceHandler,), {"owner": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True

    def url(self, path: str = "/penguins.csv") -> str:
        query = "&".join(f"{k}={quote_plus(v)}" for k, v in self.query.items())
        return (
            f"http://{SOURCE_USER}:{quote(self.password, safe='')}@127.0.0.1:{self.httpd.server_port}"
            f"{path}?{query}"
        )


@contextlib.contextmanager
def canary_source(canaries: Canaries, body: bytes | None = None) -> Iterator[CanarySource]:
    source = CanarySource(
        password=canaries.new("data.source.uri (URL user-info password)"),
        query={
            "api_key": canaries.new("data.source.uri (?api_key=)"),
            "password": canaries.new("data.source.uri (?password=)"),
        },
        headers={
            "X-API-Key": canaries.new("data.source.http.headers.X-API-Key"),
            "X-Tenant-Sig": canaries.new("data.source.http.headers.X-Tenant-Sig (marked secret)"),
        },
        body=penguins_csv() if body is None else body,
    )
    thread = threading.Thread(target=source.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield source
    finally:
        source.httpd.shutdown()
        source.httpd.server_close()
        thread.join(timeout=5)


def source_env(source: CanarySource, canaries: Canaries) -> dict[str, str]:
    """Pipeline settings reading ``source`` with every credential, plus canaries in the settings
    that hold secrets the embedded run does not use (they must not be recorded either)."""
    import json

    return {
        "PIPELINE_DATA__SOURCE__URI": source.url(),
        "PIPELINE_DATA__SOURCE__HTTP__HEADERS": json.dumps(source.headers),
        "PIPELINE_SECRET_SETTINGS": json.dumps(["data.source.http.headers.X-Tenant-Sig"]),
        "PIPELINE_SWEEP__STORAGE_PASSWORD": canaries.new("sweep.storage_password"),
        "MLFLOW_TRACKING_USERNAME": "pipeline",
        "MLFLOW_TRACKING_PASSWORD": canaries.new("MLFLOW_TRACKING_PASSWORD"),
        # A secret by reference: the setting names the variable, the value must not be recorded.
        "PIPELINE_DATA__SOURCE__HTTP__BEARER_TOKEN_ENV": "SOURCE_READER_CRED",
        "SOURCE_READER_CRED": canaries.new("data.source.http.bearer_token_env's variable"),
    }


def every_credential_arrived(source: CanarySource) -> bool:
    return any(
        all(r["query"].get(k) == v for k, v in source.query.items())
        and all(r["headers"].get(k.lower()) == v for k, v in source.headers.items())
        for r in source.requests
    )


def assert_no_leak(found: Iterable[str]) -> None:
    found = sorted(set(found))
    assert not found, "secrets recorded or printed:\n  " + "\n  ".join(found[:40])
