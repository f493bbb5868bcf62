"""`pipeline run` against a minimal hand-written script doing the same work with the same
libraries, on the same data (default 1M rows x 20 columns, benchmarks/scale.py's generator and
configuration), each in a fresh process, alternating, on the embedded defaults.

    python benchmarks/pipeline_overhead.py                 # 1M rows, 2 epochs, 2 repeats
    python benchmarks/pipeline_overhead.py --rows 200000 --repeats 3

The script (benchmarks/handwritten_pipeline.py) is what a data scientist would write without the
project: pandas
`read_csv`; a Great Expectations 1.x suite of the same kinds of checks the contract builds (each
column present and typed, its nulls bounded, its range or its allowed set, the row count);
drop rows without a label and duplicates; a seeded stratified train/validation/test split;
median imputation, standardisation and category codes fitted on the training split; the rows
written to SQLite (`DataFrame.to_sql`, the embedded feature store's engine); the same network
(embeddings for the categories, the same hidden sizes, AdamW, batch size and epochs) trained on
the training split with the validation loss each epoch; MLflow parameters, per-epoch metrics and
the weights as an artifact in a SQLite-backed MLflow store.

`pipeline run` does that and more: the raw snapshot and its hash, Data Docs, the leakage check,
DVC versions of the raw and processed data, checkpoints each epoch, the pyfunc model, evaluation
against a baseline with permutation importance, registration behind the gate. Both ratios are
printed: the whole run, and its ingest-to-train steps alone (from the steps' manifests), against
the script. Target: <= 1.3.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scale

SCRIPT = Path(__file__).resolve().parent / "handwritten_pipeline.py"

THROUGH_TRAIN = ["ingest", "validate", "preprocess", "features", "version", "train"]
STEPS = [*THROUGH_TRAIN, "evaluate", "register"]


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ... failed:\n{result.stderr[-3000:]}")
    return elapsed


def step_seconds(home: Path, run_id: str, steps: list[str]) -> float:
    total = 0.0
    for step in steps:
        manifest = json.loads((home / "artifacts" / "runs" / run_id / step / "manifest.json").read_text())
        started, finished = (
            datetime.fromisoformat(manifest[k].replace("Z", "+00:00")) for k in ("started_at", "finished_at")
        )
        total += (finished - started).total_seconds()
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data, config = root / "scale.csv", root / "scale.yaml"
        scale.write_csv(args.rows, data)
        scale.write_config(config, data, args.epochs)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "MLFLOW_"))}
        env.update(PIPELINE_CONFIG=str(config), GX_ANALYTICS_ENABLED="false")
        runs: dict[str, list[float]] = {"pipeline": [], "through_train": [], "script": []}
        per_step: dict[str, list[float]] = {step: [] for step in STEPS}
        for repeat in range(args.repeats):
            order = ("pipeline", "script") if repeat % 2 == 0 else ("script", "pipeline")
            for which in order:
                work = root / f"{which}-{repeat}"
                work.mkdir()
                if which == "pipeline":
                    home_env = {**env, "PIPELINE_HOME": str(work)}
                    runs["pipeline"].append(
                        timed(
                            [sys.executable, "-m", "pipeline", "run", "--run-id", "bench", "--no-cache"],
                            home_env,
                        )
                    )
                    runs["through_train"].append(step_seconds(work, "bench", THROUGH_TRAIN))
                    for step in STEPS:
                        per_step[step].append(step_seconds(work, "bench", [step]))
                else:
                    runs["script"].append(timed([sys.executable, str(SCRIPT), str(config), str(work)], env))
                print(f"repeat {repeat + 1}: {which:<8} {runs[which][-1]:7.1f} s", flush=True)
    script = statistics.median(runs["script"])
    whole = statistics.median(runs["pipeline"])
    through = statistics.median(runs["through_train"])
    print(f"\n{args.rows:,} rows x 20 columns, {args.epochs} epochs, medians of {args.repeats}")
    print(f"hand-written script          : {script:7.1f} s")
    verdict = "OK" if whole / script <= 1.3 else "over"
    print(f"pipeline run (all 8 steps)   : {whole:7.1f} s   ratio {whole / script:5.2f}", end="")
    print(f"   target <= 1.3  {verdict}")
    print(f"  its ingest..train steps    : {through:7.1f} s   ratio {through / script:5.2f}", end="")
    print("   (the script's work, plus DVC)")
    print(
        "  each step (median)         : "
        + ", ".join(f"{s} {statistics.median(v):.1f} s" for s, v in per_step.items())
    )


if __name__ == "__main__":
    main()
