"""Real HTTP servers on loopback ports for the DAG tests: a webhook receiver and a data source."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server:
    handler: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.lock = threading.Lock()
        owner = self

        class Handler(self.handler):  # type: ignore[name-defined, misc]
            server_owner = owner

            def log_message(self, *args: Any) -> None:
                pass

            def handle(self) -> None:
                # The client may give up first (a timeout test): nothing left to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class _WebhookHandler(BaseHTTPRequestHandler):
    server_owner: WebhookReceiver

    def do_POST(self) -> None:
        owner = self.server_owner
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if owner.delay_s:
            time.sleep(owner.delay_s)
        with owner.lock:
            owner.received.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "json": json.loads(body),
                }
            )
        self.send_response(owner.status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")


class WebhookReceiver(_Server):
    """Records every JSON POST, like a Slack incoming webhook (answers ``ok``)."""

    handler = _WebhookHandler

    def __init__(self, status: int = 200, delay_s: float = 0.0) -> None:
        self.received: list[dict[str, Any]] = []
        self.status = status
        self.delay_s = delay_s
        super().__init__()

    @property
    def url(self) -> str:
        return f"{self.base_url}/services/T000/B000/secret-token"

    def messages(self) -> list[dict[str, Any]]:
        with self.lock:
            return [r["json"] for r in self.received]


class _SourceHandler(BaseHTTPRequestHandler):
    server_owner: FlakySource

    def do_GET(self) -> None:
        owner = self.server_owner
        with owner.lock:
            owner.requests += 1
            failing = owner.requests <= owner.fail_first
        if failing:
            body = b"temporarily unavailable"
            self.send_response(503)
            self.send_header("Content-Type", "text/plain")
        else:
            body = owner.body
            self.send_response(200)
            self.send_header("Content-Type", owner.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FlakySource(_Server):
    """Serves one document; the first ``fail_first`` requests get HTTP 503."""

    handler = _SourceHandler

    def __init__(self, body: bytes, content_type: str = "text/csv", fail_first: int = 0) -> None:
        self.body = body
        self.content_type = content_type
        self.fail_first = fail_first
        self.requests = 0
        super().__init__()
