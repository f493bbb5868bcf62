"""Sweep throughput: trials per minute with 2 parallel workers against 1, on one shared study storage.

    python benchmarks/sweep_parallel.py                      # 12 trials of 40 epochs, 1 repeat
    python benchmarks/sweep_parallel.py --trials 16 --epochs 30 --repeats 2
    python benchmarks/sweep_parallel.py --storage postgresql+psycopg2://user:pw@host/optuna

Each configuration runs a fresh study of the same size in the same storage (SQLite in a temporary
pipeline home unless ``--storage`` is given), with workers started exactly as the sweep DAG's pods
run them: ``pipeline sweep --stage worker --slot <i>`` processes pulling trials from the shared
study until its budget is spent. The data steps run once, beforehand; each study gets its own
MLflow parent run.

Every trial costs the same: pruning and early stopping are off, only ``learning_rate`` and
``dropout`` are searched (batch size and width would make trials of different cost; the batch size
is fixed, small by default so that a trial is mostly training, not logging), and each
worker trains with one torch thread (``train.num_threads=1``), so two workers use two cores.

Prints, per configuration, the wall time from starting the workers to the last one exiting
(worker start-up included, as for pods) and the rate inside the study (first trial start to last
trial end), the workers' CPU time per trial (equal in both configurations when the shared storage
adds no contention), then the ratio of 2 workers over 1. Configurations alternate when repeated.
On a shared machine, other jobs take cores: the load average before each measurement is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN_ID = "bench-sweep"
SPACE = (
    "{learning_rate: {type: float, low: 0.0001, high: 0.03, log: true}, "
    "dropout: {type: float, low: 0.0, high: 0.4}}"
)


def environment(home: Path, storage: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "MLFLOW_"))}
    env.update({"PIPELINE_HOME": str(home), "PIPELINE_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"})
    if storage:
        env["PIPELINE_SWEEP__STORAGE_URL"] = storage
    return env


def overrides(study: str, trials: int, epochs: int, batch_size: int = 8) -> list[str]:
    items = [
        f"sweep.study_name={study}",
        f"sweep.n_trials={trials}",
        f"sweep.max_epochs={epochs}",
        f"sweep.pruner_warmup_epochs={epochs}",  # no pruning: every trial trains every epoch
        f"train.patience={epochs}",  # no early stopping either
        "train.num_threads=1",
        f"train.batch_size={batch_size}",
        f"sweep.space={SPACE}",
    ]
    return [arg for item in items for arg in ("--set", item)]


def pipeline(args: list[str], env: dict[str, str], cwd: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"pipeline {' '.join(args[:3])} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def study_span(storage: str, study: str) -> tuple[int, float]:
    """Finished trials and seconds from the first trial's start to the last one's end."""
    import optuna
    from optuna.trial import TrialState

    loaded = optuna.load_study(study_name=study, storage=storage)
    done = [t for t in loaded.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    start = min(t.datetime_start for t in done)
    end = max(t.datetime_complete for t in done)
    return len(done), (end - start).total_seconds()


def measure(workers: int, study: str, args: argparse.Namespace, env: dict[str, str], home: Path) -> dict:
    common = ["--run-id", RUN_ID, *overrides(study, args.trials, args.epochs, args.batch_size)]
    pipeline(["sweep", "--stage", "prepare", *common], env, home)
    load = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", "sweep", "--stage", "worker", "--slot", str(slot), *common],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for slot in range(workers)
    ]
    for process in processes:
        _, err = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a worker failed:\n{err[-3000:]}")
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    storage = env.get("PIPELINE_SWEEP__STORAGE_URL") or f"sqlite:///{home / 'optuna.db'}"
    finished, span = study_span(storage, study)
    return {"finished": finished, "wall": wall, "span": span, "cpu": cpu, "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12, help="trials per study (default 12)")
    parser.add_argument("--epochs", type=int, default=40, help="epochs per trial (default 40)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size of every trial (default 8)")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per configuration")
    parser.add_argument("--storage", default=None, help="shared Optuna storage URL (default SQLite)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary pipeline home")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="mlp-bench-sweep-"))
    env = environment(home, args.storage)
    try:
        # the data steps once, shared by every study (their own study, unmeasured)
        pipeline(
            ["sweep", "--stage", "prepare", "--run-id", RUN_ID, *overrides("bench-data", 1, 1)], env, home
        )
        results: dict[int, list[dict]] = {1: [], 2: []}
        for repeat in range(args.repeats):
            for workers in (1, 2) if repeat % 2 == 0 else (2, 1):
                study = f"bench-{workers}w-{repeat}-{int(time.time())}"
                result = measure(workers, study, args, env, home)
                results[workers].append(result)
                print(
                    f"  {workers} worker(s), repeat {repeat + 1}: {result['finished']} trials, "
                    f"wall {result['wall']:.1f} s, in-study {result['span']:.1f} s, "
                    f"worker CPU {result['cpu']:.1f} s, load average before {result['load']:.2f}",
                    flush=True,
                )
        rates = {}
        print(
            f"\n{args.trials} trials x {args.epochs} epochs, storage {args.storage or 'SQLite (shared file)'}"
        )
        for workers, runs in results.items():
            wall = statistics.median(r["wall"] for r in runs)
            span = statistics.median(r["span"] for r in runs)
            finished = statistics.median(r["finished"] for r in runs)
            cpu = statistics.median(r["cpu"] / r["finished"] for r in runs)
            rates[workers] = (finished / wall * 60, finished / span * 60)
            print(
                f"{workers} worker(s): {rates[workers][0]:6.2f} trials/min (wall, start-up included)"
                f"   {rates[workers][1]:6.2f} trials/min (in-study)   {cpu:.2f} CPU s/trial"
            )
        print(
            f"ratio 2 workers / 1 worker: {rates[2][0] / rates[1][0]:.2f} (wall)   "
            f"{rates[2][1] / rates[1][1]:.2f} (in-study)   cores: {os.cpu_count()}"
        )
    finally:
        if args.keep:
            print(f"home kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
