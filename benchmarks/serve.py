"""Serving throughput: `pipeline serve` (prediction logging on) against a bare `mlflow models serve`
of the same model version, in one run, at batch sizes 1 and 100; then the alias switch under load.

    python benchmarks/serve.py --home /path/to/pipeline-home      # a home with a champion
    python benchmarks/serve.py --home H --duration 20 --clients 8

Both servers run as their own process on this machine, one worker each (`mlflow models serve
-w 1 --env-manager local`); the same client threads (keep-alive sessions) send the same
`dataframe_split` payload to each for ``--duration`` seconds, the two servers alternating per
batch size. Prints requests/s, rows/s and p50/p99 latency of each, and the throughput ratio at
batch 100 (target >= 0.9). Then, with clients running against `pipeline serve`, it moves
``@champion`` to another version (training one with another seed when the home has only one) and
reports how long the switch took to show in responses and how many requests failed (target 0);
the alias is put back afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
FAST = [
    "--set",
    "train.max_epochs=12",
    "--set",
    "train.patience=5",
    "--set",
    "evaluate.permutation_repeats=1",
]


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "MLFLOW_"))}
    env.update({"PIPELINE_HOME": str(home), "PYTHONUNBUFFERED": "1", "PIPELINE_LOG_LEVEL": "WARNING"})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited {proc.returncode} before it was ready")
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    sys.exit(f"{url} not ready after {timeout_s}s")


def start_pipeline(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "serve",
            "--port",
            str(port),
            "--set",
            "serve.poll_interval_s=0.5",
        ],
        env=env_for(home),
        stdout=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def start_mlflow(home: Path, name: str, version: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**env_for(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # its uvicorn
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(mlflow),
            "models",
            "serve",
            "-m",
            f"models:/{name}/{version}",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    return proc, url


def payload(batch: int) -> bytes:
    from palmerpenguins import load_penguins

    frame = load_penguins()[FEATURES].dropna()
    rows = [list(r) for r in frame.itertuples(index=False)]
    data = [rows[i % len(rows)] for i in range(batch)]
    return json.dumps({"dataframe_split": {"columns": FEATURES, "data": data}}, default=float).encode()


class Load:
    """``clients`` threads posting ``body`` to ``url`` until stopped; latencies and outcomes."""

    def __init__(self, url: str, body: bytes, clients: int):
        self.url, self.body = f"{url}/invocations", body
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.versions: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client) for _ in range(clients)]

    def _client(self) -> None:
        session = requests.Session()
        headers = {"Content-Type": "application/json"}
        while not self.stop.is_set():
            t0 = time.perf_counter()
            try:
                response = session.post(self.url, data=self.body, headers=headers, timeout=60)
            except requests.RequestException as exc:
                self.failures.append(repr(exc))
                continue
            elapsed = time.perf_counter() - t0
            if response.status_code != 200:
                self.failures.append(f"{response.status_code}: {response.text[:200]}")
                continue
            self.latencies.append(elapsed)
            self.versions.append((time.monotonic(), response.headers.get("X-Model-Version", "")))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(120)


def measure(url: str, batch: int, clients: int, duration: float) -> dict[str, float]:
    body = payload(batch)
    with Load(url, body, clients) as warm:  # warm-up: connections, first-call costs
        time.sleep(min(2.0, duration / 5))
    del warm
    with Load(url, body, clients) as load:
        time.sleep(duration)
    lat = sorted(load.latencies)
    n = len(lat)
    return {
        "requests_per_s": n / duration,
        "rows_per_s": n * batch / duration,
        "p50_ms": 1000 * statistics.median(lat) if lat else float("nan"),
        "p99_ms": 1000 * lat[min(n - 1, int(0.99 * n))] if lat else float("nan"),
        "failed": len(load.failures),
    }


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, required=True, help="pipeline home with a registered champion")
    parser.add_argument("--model", default="penguins")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--batches", default="1,100")
    parser.add_argument("--no-switch", action="store_true", help="skip the alias-switch measurement")
    args = parser.parse_args()

    from mlflow import MlflowClient

    uri = f"sqlite:///{args.home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = str(client.get_model_version_by_alias(args.model, "champion").version)

    results: dict[tuple[str, int], dict[str, float]] = {}
    for batch in [int(b) for b in args.batches.split(",")]:
        for which in ("mlflow", "pipeline") if batch % 2 else ("pipeline", "mlflow"):
            proc, url = (
                start_pipeline(args.home)
                if which == "pipeline"
                else start_mlflow(args.home, args.model, champion)
            )
            try:
                results[(which, batch)] = measure(url, batch, args.clients, args.duration)
            finally:
                stop(proc)
            r = results[(which, batch)]
            print(
                f"{which:9s} batch {batch:4d}: {r['requests_per_s']:8.1f} req/s "
                f"{r['rows_per_s']:9.0f} rows/s "
                f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  failed {r['failed']}",
                flush=True,
            )
    for batch in sorted({b for _, b in results}):
        ratio = results[("pipeline", batch)]["requests_per_s"] / results[("mlflow", batch)]["requests_per_s"]
        target = "  target >= 0.9 " + ("OK" if ratio >= 0.9 else "MISSED") if batch == 100 else ""
        print(f"throughput ratio (pipeline / mlflow), batch {batch}: {ratio:.3f}{target}")

    if args.no_switch:
        return
    versions = [str(v.version) for v in client.search_model_versions(f"name='{args.model}'")]
    others = [v for v in versions if v != champion]
    if not others:
        run = subprocess.run(
            [sys.executable, "-m", "pipeline", "run", *FAST, "--set", "seed=7"],
            env=env_for(args.home),
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            sys.exit(f"training a second version failed:\n{run.stderr[-3000:]}")
        client.set_registered_model_alias(args.model, "champion", champion)  # the gate may have moved it
        others = [str(json.loads(run.stdout.splitlines()[-1])["version"])]
    other = max(others, key=int)
    proc, url = start_pipeline(args.home)
    try:
        with Load(url, payload(100), args.clients) as load:
            time.sleep(2)
            moved = time.monotonic()
            client.set_registered_model_alias(args.model, "champion", other)
            deadline = moved + 120
            while (
                not any(v == other for _, v in load.versions[-args.clients :]) and time.monotonic() < deadline
            ):
                time.sleep(0.01)
            time.sleep(2)
        first_new = next((t for t, v in load.versions if v == other), None)
        served = [v for _, v in load.versions]
        print(
            f"alias switch v{champion} -> v{other} under load: visible after "
            f"{(first_new - moved) if first_new else float('nan'):.2f} s (poll interval 0.5 s), "
            f"{len(served)} requests, failed {len(load.failures)} (target 0)"
        )
    finally:
        stop(proc)
        client.set_registered_model_alias(args.model, "champion", champion)


if __name__ == "__main__":
    main()
