"""Helpers of the tests that reach a real `python -m pipeline serve` subprocess over HTTP
(tests/e2e/test_serve.py, and the closed loop of tests/e2e/test_monitor.py): starting and stopping
the server, the penguins features as request records, and client threads that keep posting while
the registry changes and check every answer against the version it names; and the monitor tests'
windows (the champion's predictions logged directly, the drifted penguins), which the report's and
the monitor DAG's tests use too."""

from __future__ import annotations

import functools
import itertools
import json
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import requests

from tests.conftest import clean_env

NAME = "penguins"
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # the undrifted hour of the monitor tests, logged directly


def registry(home: Path):
    """An MlflowClient on the home's embedded tracking store and registry."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@dataclass
class Server:
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)
    _url: str | None = None

    @property
    def url(self) -> str:
        """The server's URL: its first stdout line, printed once it listens (waited for here)."""
        if self._url is None:
            first = self.proc.stdout.readline()
            if not first:
                _out, err = self.proc.communicate(timeout=60)
                pytest.fail(f"serve exited {self.proc.returncode}: {err[-4000:]}")
            self.lines.append(first)
            self._url = json.loads(first)["url"]
        return self._url

    def post(self, body: dict | bytes, **headers: str) -> requests.Response:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(
            f"{self.url}/invocations",
            data=data,
            headers={"Content-Type": "application/json", **headers},
            timeout=60,
        )

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}{path}", timeout=60)

    def stop(self) -> tuple[int, dict, str]:
        """SIGTERM; the exit code, the shutdown report (last stdout line) and stderr."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=120)
        lines = [*self.lines, *out.splitlines()]
        return self.proc.returncode, json.loads(lines[-1]), err

    def kill(self) -> None:
        """The teardown of a test that did not stop its server."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def start(home: Path, *args: str, wait: bool = True) -> Server:
    """`pipeline serve` on ``home`` on a free port; ``wait``: until it listens (else the first use
    of its URL waits, and the caller does something else meanwhile)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "serve",
            "--port",
            "0",
            "--set",
            "serve.poll_interval_s=0.3",
            "--set",
            "serve.log_flush_s=0.2",
            *args,
        ],
        cwd=home,
        env=clean_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    server = Server(proc)
    if wait:
        assert server.url
    return server


def as_records(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame[FEATURES].to_dict("records")
    ]


def same(got: list[dict], expected: list[dict]) -> bool:
    """Same labels, same keys, probabilities equal to the model's float32 precision: the last bits of
    a float32 forward pass change with the number of intra-op threads (the server may run with
    another count than this process), while another version's probabilities differ far more."""
    return len(got) == len(expected) and all(
        g.keys() == e.keys()
        and g["prediction"] == e["prediction"]
        and all(g[k] == pytest.approx(e[k], rel=1e-5, abs=1e-7) for k in e if k != "prediction")
        for g, e in zip(got, expected, strict=True)
    )


@dataclass
class Answer:
    thread: int
    request_id: str
    frame: str  # the key of the rows sent (see Load)
    version: str
    predictions: list[dict]


class Load:
    """``threads`` client threads posting to ``server``: first, once each, the requests of
    ``window`` (request id -> rows, shared out among the threads), then, once :meth:`resume` is
    called, ``body`` again and again (``pause_s`` apart) until :meth:`stop`. A request that fails
    or is not a 200 is a failure; every answer is kept, with the version its header names, for
    :meth:`mismatches` to check against that version's own predictions."""

    def __init__(
        self,
        server: Server,
        body: pd.DataFrame,
        *,
        window: dict[str, pd.DataFrame] | None = None,
        threads: int = 1,
        pause_s: float = 0.0,
    ):
        self.server = server
        self.frames = {"body": body, **(window or {})}
        self._bodies = {
            k: json.dumps({"dataframe_records": as_records(f)}).encode() for k, f in self.frames.items()
        }
        self.answers: list[Answer] = []
        self.failures: list[str] = []
        self._window: queue.SimpleQueue[str] = queue.SimpleQueue()
        for request_id in window or {}:
            self._window.put(request_id)
        self._pending = len(window or {})
        self._lock = threading.Lock()
        self.window_sent = threading.Event()
        if not self._pending:
            self.window_sent.set()
        self._resume = threading.Event()
        self._stop = threading.Event()
        self.pause_s = pause_s
        self._counter = itertools.count()
        self._threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def _post(self, thread: int, request_id: str, key: str) -> None:
        try:
            response = self.server.post(self._bodies[key], **{"X-Request-ID": request_id})
        except requests.RequestException as exc:
            self.failures.append(f"{request_id}: {exc!r}")
            return
        if response.status_code != 200:
            self.failures.append(f"{request_id}: {response.status_code} {response.text}")
            return
        answer = Answer(
            thread, request_id, key, response.headers["X-Model-Version"], response.json()["predictions"]
        )
        with self._lock:
            self.answers.append(answer)

    def _client(self, thread: int) -> None:
        while True:
            try:
                request_id = self._window.get_nowait()
            except queue.Empty:
                break
            self._post(thread, request_id, request_id)
            with self._lock:
                self._pending -= 1
                if self._pending == 0:
                    self.window_sent.set()
        self._resume.wait()
        while not self._stop.is_set():
            self._post(thread, f"load-{thread}-{next(self._counter)}", "body")
            self._stop.wait(self.pause_s)

    def resume(self) -> None:
        self._resume.set()

    def stop(self) -> None:
        self._stop.set()
        self._resume.set()
        for thread in self._threads:
            thread.join(120)

    def versions(self, thread: int | None = None) -> list[str]:
        """The versions answered (by one thread), in the order its answers came."""
        with self._lock:
            return [a.version for a in self.answers if thread is None or a.thread == thread]

    def mismatches(self, predict) -> list[str]:
        """Answers whose predictions are not those of the version they name:
        ``predict(version, frame)`` gives that version's own predictions as records."""
        expected: dict[tuple[str, str], list[dict]] = {}
        wrong = []
        for a in self.answers:
            if (a.version, a.frame) not in expected:
                expected[(a.version, a.frame)] = predict(a.version, self.frames[a.frame])
            if not same(a.predictions, expected[(a.version, a.frame)]):
                wrong.append(f"{a.request_id}: the answer of v{a.version} is not v{a.version}'s predictions")
        return wrong


@functools.cache
def _predictor(home: Path, version: str):
    from pipeline.serving import load_trusted_predictor

    return load_trusted_predictor(registry(home), f"models:/{NAME}/{version}")


def predict_in_process(home: Path, version: str, frame: pd.DataFrame) -> list[dict]:
    """``version``'s own predictions on ``frame``, by the trusted loader in this process (each
    version is loaded once)."""
    return _predictor(home, version).predict(frame[FEATURES]).to_dict(orient="records")


# The monitor's windows (tests/e2e/test_monitor.py, tests/analysis's report, tests/dags' monitor DAG)


def log_predictions(home: Path, frame: pd.DataFrame, start: datetime) -> None:
    """The champion's predictions on ``frame``, logged as the server logs them, at ``start`` + i s."""
    from pipeline.serve.predlog import Entry, PredictionLogger, create_engine, json_rows
    from pipeline.serving import load_trusted_predictor

    predictor = load_trusted_predictor(registry(home), f"models:/{NAME}@champion")
    logger = PredictionLogger(create_engine(f"sqlite:///{home / 'features.db'}"), flush_s=0.1)
    for i, chunk in enumerate(range(0, len(frame), 25)):
        rows = frame.iloc[chunk : chunk + 25][FEATURES]
        outputs = predictor.predict(rows)
        entry = Entry(
            f"req-{start:%H}-{i}",
            start + timedelta(seconds=i),
            NAME,
            "1",
            json_rows(rows),
            json_rows(outputs),
        )
        assert logger.submit(entry)
    report = logger.close()
    assert report["unwritten_rows"] == 0, report


def drifted_penguins() -> pd.DataFrame:
    """150 penguins with one numeric feature shifted (bill_length_mm) and one category's mix
    changed (island): the drift the monitor must find on exactly those two columns."""
    from palmerpenguins import load_penguins

    drifted = load_penguins().sample(150, random_state=2).copy()
    drifted["bill_length_mm"] += 8.0
    drifted["island"] = drifted["island"].where(drifted.index % 5 == 0, "Dream")
    return drifted
