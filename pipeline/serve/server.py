"""The HTTP server of ``pipeline serve``: MLflow's scoring protocol on the stdlib
:class:`~http.server.ThreadingHTTPServer`, with a model holder that follows an alias.

Endpoints: ``POST /invocations`` (``{"dataframe_split": ...}`` or ``{"dataframe_records": ...}``,
answered with ``{"predictions": [...]}``), ``GET /ping`` (200 once a model is loaded, else 503),
``GET /version`` (the served model, its version and alias, refusals and prediction-log counters)
and ``GET /stats`` (the counters alone).

Models are loaded only through :func:`pipeline.serving.load_trusted_predictor`. A background
poller resolves the alias every ``serve.poll_interval_s``; a new version is loaded beside the
served one and swapped in with one reference assignment under a lock. Each request takes one
snapshot of the reference, so its predictions, its response headers and its log rows name one
version.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd

from pipeline.serve.predlog import Entry, PredictionLogger, json_rows, now

logger = logging.getLogger("pipeline.serve")


class PayloadError(ValueError):
    """A request the server refuses with 400: the message names the field or column."""


@dataclass(frozen=True)
class Served:
    """One loaded version: what a request snapshots."""

    name: str
    version: str
    alias: str | None
    predictor: Any  # pipeline.serving.Predictor

    @property
    def required_columns(self) -> list[str]:
        t = self.predictor.transformer
        return [*t.numeric, *t.categorical]


class ModelHolder:
    """The served version, replaced atomically when the alias moves."""

    def __init__(self, client: Any, name: str, alias: str | None, version: str | None = None):
        self.client = client
        self.name = name
        self.alias = alias
        self.pinned = version
        self._lock = threading.Lock()
        self._served: Served | None = None
        self.refused: dict[str, str] = {}  # version -> why (digest check failed, ...)
        self.refusals = 0
        self.switches = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current(self) -> Served | None:
        with self._lock:
            return self._served

    def target_version(self) -> str:
        if self.pinned is not None:
            return self.pinned
        return str(self.client.get_model_version_by_alias(self.name, self.alias).version)

    def refresh(self) -> bool:
        """Resolve the alias; load and swap in a new version. True when the served version changed."""
        from pipeline.modelfiles import ModelFilesError
        from pipeline.serving import load_trusted_predictor

        try:
            version = self.target_version()
        except Exception as exc:
            self._note_error(f"cannot resolve {self._label()}: {type(exc).__name__}: {exc}")
            return False
        current = self.current()
        if (current is not None and current.version == version) or version in self.refused:
            return False
        try:
            predictor = load_trusted_predictor(self.client, f"models:/{self.name}/{version}")
        except ModelFilesError as exc:
            with self._lock:
                self.refused[version] = str(exc)
                self.refusals += 1
            served = f"; still serving v{current.version}" if current is not None else "; no model is served"
            logger.error("refused %s v%s: %s%s", self.name, version, exc, served)
            return False
        except Exception as exc:  # transient (registry or artifact store unreachable): retried next poll
            self._note_error(f"cannot load {self.name} v{version}: {type(exc).__name__}: {exc}")
            return False
        new = Served(self.name, version, self.alias, predictor)
        with self._lock:
            old, self._served = self._served, new
            if old is not None:
                self.switches += 1
        logger.info(
            "serving %s v%s%s%s",
            self.name,
            version,
            f" ({self._label()})" if self.alias else "",
            f", was v{old.version}" if old is not None else "",
        )
        return True

    def _label(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.pinned}"

    def _note_error(self, message: str) -> None:
        if message != self.last_error:
            logger.error("%s", message)
        self.last_error = message

    def start_polling(self, interval_s: float) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                self.refresh()

        self._thread = threading.Thread(target=loop, name="alias-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def describe(self) -> dict[str, Any]:
        served = self.current()
        with self._lock:
            refused = dict(self.refused)
        return {
            "model_name": self.name,
            "model_version": served.version if served else None,
            "alias": self.alias,
            "model_uri": f"models:/{self.name}/{served.version}" if served else None,
            "switches": self.switches,
            "refused_versions": refused,
            "refusals": self.refusals,
        }


# ---- payloads -------------------------------------------------------------------------------


def parse_payload(body: bytes, content_type: str | None) -> pd.DataFrame:
    """MLflow's JSON input: ``dataframe_split`` (``columns``, ``data``, optional ``index``) or
    ``dataframe_records``."""
    if content_type is not None and content_type.split(";")[0].strip().lower() != "application/json":
        raise PayloadError(f"Content-Type must be application/json, got {content_type!r}")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise PayloadError("the body must be a JSON object with 'dataframe_split' or 'dataframe_records'")
    keys = [k for k in ("dataframe_split", "dataframe_records") if k in payload]
    if len(keys) != 1:
        raise PayloadError(
            "the body must have exactly one of 'dataframe_split' or 'dataframe_records'"
            f" (got keys {sorted(payload)})"
        )
    if keys[0] == "dataframe_records":
        records = payload["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise PayloadError("'dataframe_records' must be a list of JSON objects (one per row)")
        return pd.DataFrame.from_records(records)
    split = payload["dataframe_split"]
    if not isinstance(split, dict):
        raise PayloadError("'dataframe_split' must be an object with 'columns' and 'data'")
    columns, data = split.get("columns"), split.get("data")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise PayloadError("'dataframe_split.columns' must be a list of column names")
    if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
        raise PayloadError("'dataframe_split.data' must be a list of rows (lists)")
    for i, row in enumerate(data):
        if len(row) != len(columns):
            raise PayloadError(
                f"'dataframe_split.data' row {i} has {len(row)} values for {len(columns)} columns"
            )
    return pd.DataFrame(data, columns=columns)


def check_frame(frame: pd.DataFrame, served: Served) -> pd.DataFrame:
    """The columns the model needs, present and of the right kind (numbers where numeric)."""
    if frame.empty:
        raise PayloadError("the request has no rows")
    missing = [c for c in served.required_columns if c not in frame.columns]
    if missing:
        raise PayloadError(f"missing column(s) {missing}: the model needs {served.required_columns}")
    for column in served.predictor.transformer.numeric:
        values = frame[column]
        coerced = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & coerced.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise PayloadError(f"column {column!r} row {row}: {values.iloc[row]!r} is not a number")
    return frame[served.required_columns]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    from pipeline.serve.predlog import _plain

    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


# ---- the HTTP server ------------------------------------------------------------------------


class ScoringServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], holder: ModelHolder, log: PredictionLogger | None, max_bytes: int
    ):
        self.holder = holder
        self.log = log
        self.max_bytes = max_bytes
        super().__init__(address, Handler)


class Handler(BaseHTTPRequestHandler):
    server: ScoringServer
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without TCP_NODELAY, Nagle's algorithm and the client's
    # delayed ACK hold every keep-alive response back by tens of milliseconds.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, allow_nan=False, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, headers: dict[str, str]) -> None:
        code = "BAD_REQUEST" if status == 400 else HTTPStatus(status).phrase.upper().replace(" ", "_")
        self._send(status, {"error_code": code, "message": message}, headers)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path in ("/ping", "/health"):
            served = self.server.holder.current()
            if served is None:
                self._send(503, {"status": "no model loaded", **self.server.holder.describe()})
            else:
                self._send(200, {"status": "ok", "model_name": served.name, "model_version": served.version})
        elif path == "/version":
            self._send(200, {**self.server.holder.describe(), "prediction_log": self._log_stats()})
        elif path == "/stats":
            self._send(200, {"prediction_log": self._log_stats(), **self.server.holder.describe()})
        else:
            self._error(
                404, f"no such endpoint {path!r}: use POST /invocations, GET /ping, /version, /stats", {}
            )

    def _log_stats(self) -> dict[str, Any] | None:
        return self.server.log.stats() if self.server.log is not None else None

    def do_POST(self) -> None:
        request_id = (self.headers.get("X-Request-ID") or "").strip()[:128] or str(uuid.uuid4())
        headers = {"X-Request-ID": request_id}
        path = self.path.split("?")[0]
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if path != "/invocations":
            self._drain(length)
            self._error(404, f"no such endpoint {path!r}: POST /invocations", headers)
            return
        if length < 0 or length > self.server.max_bytes:
            self.close_connection = True
            self._error(
                413 if length > 0 else 400, f"Content-Length must be 0..{self.server.max_bytes}", headers
            )
            return
        body = self.rfile.read(length)
        served = self.server.holder.current()  # one snapshot for the whole request
        if served is None:
            self._error(503, "no model is loaded yet", headers)
            return
        headers.update({"X-Model-Name": served.name, "X-Model-Version": served.version})
        try:
            frame = check_frame(parse_payload(body, self.headers.get("Content-Type")), served)
        except PayloadError as exc:
            self._error(400, str(exc), headers)
            return
        try:
            result = served.predictor.predict(frame.reset_index(drop=True))
        except (ValueError, TypeError) as exc:
            self._error(400, f"cannot predict on this input: {exc}", headers)
            return
        except Exception as exc:
            logger.exception("prediction failed (request %s)", request_id)
            self._error(500, f"prediction failed: {type(exc).__name__}", headers)
            return
        if self.server.log is not None:  # the rows' JSON, encoded by pandas, not per value in Python
            self.server.log.submit(
                Entry(request_id, now(), served.name, served.version, json_rows(frame), json_rows(result))
            )
        self._send(200, {"predictions": records(result)}, headers)

    def _drain(self, length: int) -> None:
        if 0 < length <= self.server.max_bytes:
            self.rfile.read(length)
        else:
            self.close_connection = True
