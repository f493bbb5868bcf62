"""Peak memory of ingest -> validate -> preprocess at 1M rows, each step run exactly as a pod
runs it (``python -m pipeline step ...`` in its own process), against a baseline measured in the
same run: a bare process that only reads the same CSV into a DataFrame with pandas.

    python benchmarks/ingest_memory.py              # 1M rows x 12 columns
    python benchmarks/ingest_memory.py --rows 200000

Prints each step's peak RSS, its ratio to the baseline's peak, and the DataFrame's in-memory size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

NUMERIC = [f"x{i}" for i in range(9)]


def make_data(rows: int, path: Path) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({name: rng.normal(size=rows).round(5) for name in NUMERIC})
    frame.loc[rng.random(rows) < 0.01, "x0"] = np.nan
    frame["color"] = rng.choice(["red", "green", "blue", "black"], size=rows)
    frame["size"] = rng.choice(["S", "M", "L"], size=rows)
    frame["label"] = np.where(frame["x1"] + (frame["color"] == "red") > 0.2, "yes", "no")
    frame.to_csv(path, index=False)
    return frame


def config(path: Path, data: Path) -> None:
    columns = {name: {"type": "float", "min": -10, "max": 10} for name in NUMERIC}
    columns["x0"]["max_null_fraction"] = 0.05
    columns["color"] = {"type": "category", "allowed": ["red", "green", "blue", "black"]}
    columns["size"] = {"type": "category", "allowed": ["S", "M", "L"]}
    columns["label"] = {"type": "category", "role": "target", "allowed": ["yes", "no"]}
    path.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "name": "bench",
                    "source": {"uri": str(data)},
                    "target": "label",
                    "task": "classification",
                    "min_rows": 10,
                    "columns": columns,
                }
            }
        )
    )


def peak_rss_mib(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    return usage.ru_maxrss / 1024, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "bench.csv"
        frame = make_data(args.rows, data)
        frame_mib = frame.memory_usage(deep=True).sum() / 2**20
        del frame
        config(root / "bench.yaml", data)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "MLFLOW_"))}
        env.update(PIPELINE_HOME=str(root / "home"), PIPELINE_CONFIG=str(root / "bench.yaml"))
        baseline, base_time = peak_rss_mib(
            [sys.executable, "-c", f"import pandas as pd; pd.read_csv({str(data)!r})"], env
        )
        print(
            f"rows={args.rows}  csv={data.stat().st_size / 2**20:.0f} MiB  "
            f"DataFrame in memory={frame_mib:.0f} MiB"
        )
        print(f"{'baseline: pandas.read_csv':<28} peak {baseline:7.0f} MiB  {base_time:6.1f} s  ratio 1.00")
        for step in ("ingest", "validate", "preprocess"):
            peak, elapsed = peak_rss_mib(
                [sys.executable, "-m", "pipeline", "step", step, "--run-id", "bench"], env
            )
            print(
                f"{'step ' + step:<28} peak {peak:7.0f} MiB  {elapsed:6.1f} s  ratio {peak / baseline:.2f}"
                f"  ({peak / frame_mib:.1f}x the DataFrame)"
            )


if __name__ == "__main__":
    main()
