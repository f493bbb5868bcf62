"""Step cache: `pipeline run` on unchanged data and configuration against a full run, same machine,
same data, each a fresh `python -m pipeline` process as a user runs it.

    python benchmarks/rerun_cache.py                      # the shipped penguins config, 3 repeats
    python benchmarks/rerun_cache.py --repeats 1 --set train.max_epochs=12

Prints the ratio measured in this run (target <= 0.10): the median wall time of a fully cached
`pipeline run` (every step reused, nothing registered) over the median of a full run
(`pipeline run --no-cache` after the first, cold one: every step runs, a new model version is
registered). Runs alternate (full, cached, full, cached ...) in one throwaway pipeline home. The
floor is printed too: the CLI's start (`pipeline steps`, the same imports) and a SHA-256 of the
source file, which a cached run cannot avoid.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "MLFLOW_", "AWS_"))}
    env.update({"PIPELINE_HOME": str(home), "PYTHONUNBUFFERED": "1", "GIT_PYTHON_REFRESH": "quiet"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


def timed(args: list[str], home: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=home,
        env=environment(home),
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"pipeline {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return took, json.loads(lines[-1]) if lines else {}


def source_hash_time(home: Path, overrides: list[str]) -> tuple[float, int]:
    """Seconds to SHA-256 the configured source file (resolved as the pipeline resolves it)."""
    sys.path.insert(0, str(REPO))
    os.environ["PIPELINE_HOME"] = str(home)
    from pipeline.cache import _package_file
    from pipeline.cli import parse_overrides
    from pipeline.settings import Settings

    settings = Settings.load(**parse_overrides(overrides))
    uri = settings.data.source.uri
    path = _package_file(uri) if uri.startswith("pkg://") else Path(uri)
    started = time.perf_counter()
    hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return time.perf_counter() - started, Path(path).stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="full/cached pairs (default 3)")
    parser.add_argument(
        "--set", action="append", default=[], dest="overrides", help="a setting, as for pipeline run"
    )
    args = parser.parse_args()
    sets = [word for item in args.overrides for word in ("--set", item)]

    with tempfile.TemporaryDirectory(prefix="rerun-cache-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        full, cached = [], []
        for repeat in range(args.repeats):
            took, summary = timed(["run", *sets, *(["--no-cache"] if repeat else [])], home)
            assert not summary.get("cached"), summary
            full.append(took)
            took, summary = timed(["run", *sets], home)
            assert summary.get("cached") is True, f"the rerun was not fully cached: {summary}"
            cached.append(took)
            print(f"repeat {repeat + 1}: full {full[-1]:6.2f} s   cached {cached[-1]:5.2f} s", flush=True)
        start = [timed(["steps"], home)[0] for _ in range(3)]
        hash_s, size = source_hash_time(home, args.overrides)

    ratio = statistics.median(cached) / statistics.median(full)
    print(f"full run (every step)    : median {statistics.median(full):6.2f} s  of {len(full)}")
    print(f"rerun, all steps cached  : median {statistics.median(cached):6.2f} s  of {len(cached)}")
    print(f"ratio cached / full      : {ratio:8.3f}   target <= 0.10  {'OK' if ratio <= 0.10 else 'MISSED'}")
    floor = f"floor: CLI start (`pipeline steps`) {statistics.median(start):.2f} s"
    print(f"{floor}, sha256 of the source ({size} bytes) {hash_s * 1000:.1f} ms")


if __name__ == "__main__":
    main()
