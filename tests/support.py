"""Helpers shared by the test suite.

A test that needs a tool or a service which is not there must not pass silently. On a developer's
laptop it is skipped with a message saying what to install; in CI (``CI`` set, as ``.ci/run``
does) it fails loudly, because there a missing service is a broken setup, not a choice.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def unavailable(what: str, how_to_install: str) -> None:
    """Skip (laptop) or fail (CI) because ``what`` is missing."""
    message = f"{what} is not available: {how_to_install}"
    if in_ci():
        pytest.fail(f"{message} (required in CI)", pytrace=False)
    pytest.skip(message)


def need_executable(name: str, how_to_install: str, path: str | None = None) -> str:
    """Return the path of an executable or skip/fail saying how to install it."""
    found = shutil.which(name, path=path)
    if not found:
        unavailable(f"the `{name}` executable", how_to_install)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


Route = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """An HTTP server on ``host`` that records every request's path and headers."""

    def __init__(self, host: str, routes: dict[str, Route]):
        self.routes = routes
        self.requests: list[dict] = []
        self.finished = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.requests.append({"path": self.path, "headers": dict(self.headers)})
                route = owner.routes.get(self.path.split("?", 1)[0])
                try:
                    if route is None:
                        self.send_response(404)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (what a cap or a deadline does)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
