"""Loading a feature set into PostgreSQL: the project's COPY path against ``DataFrame.to_sql`` and
against a raw ``COPY FROM STDIN`` of the same data already prepared as CSV (the practical limit),
all into the same PostgreSQL, measured in the same run.

    python benchmarks/feature_store_load.py                      # 1M rows x 20 columns
    python benchmarks/feature_store_load.py --rows 200000 --repeats 1
    python benchmarks/feature_store_load.py --dsn postgresql://user@host:5432/db   # an existing server

The frame: 15 float, 3 int (one of them the ``row_id`` key) and 2 short text columns. Each variant
runs in its own process (a fresh interpreter, like a pod) that builds the same frame, then loads
it while a thread samples its RSS; the peak during the load is reported next to the DataFrame's
in-memory size. Variants:

* ``project``: ``FeatureStore.write`` — COPY into a staging table streamed from pyarrow CSV chunks,
  primary key, attached as a partition together with the version row, one transaction.
* ``to_sql``: ``DataFrame.to_sql(..., method=None)`` through SQLAlchemy and psycopg2. It takes about
  100 s at 1M rows, so by default it loads ``--to-sql-rows`` rows and its rows/s is extrapolated
  (it is linear in the row count); the output says so.
* ``raw_copy``: the CSV text prepared in memory beforehand (not timed), then one
  ``COPY ... FROM STDIN`` into a plain table with the same typed columns: the issue's baseline.
* ``raw_binary``: the same with the binary COPY bytes the project's path sends, prepared
  beforehand: the limit of the wire format the project uses (reported, no target).

Prints rows/s per variant (median of ``--repeats``), the ratios ``project/to_sql`` (target >= 20)
and ``project/raw_copy`` (target >= 0.7), and the project's peak process memory over the
DataFrame's size (target <= 3; the process peak includes the interpreter, the libraries and the
frame itself). ``to_sql``'s peak is that of the rows it loaded.
Without ``--dsn`` a throwaway PostgreSQL cluster is started from the machine's server binaries
(``tests/services.py``) and removed afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def make_frame(rows: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    data: dict[str, object] = {"row_id": np.arange(rows, dtype="int64")}
    for i in range(15):
        data[f"f{i}"] = rng.normal(size=rows)
    data["i1"] = rng.integers(0, 1_000_000, size=rows)
    data["i2"] = rng.integers(-50, 50, size=rows)
    words = np.array(["red", "green", "blue", "black", "white"], dtype=object)
    data["t0"] = rng.choice(words, size=rows)
    data["t1"] = rng.choice(np.array(["S", "M", "L", "XL"], dtype=object), size=rows)
    frame = pd.DataFrame(data)
    frame["t0"] = frame["t0"].astype("str")
    frame["t1"] = frame["t1"].astype("str")
    return frame


class RssSampler:
    """Peak resident set size of this process while the block runs (sampled every 5 ms)."""

    def __init__(self) -> None:
        import psutil

        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self._stop.wait(0.005)

    def __enter__(self) -> RssSampler:
        self.before = self.process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)


def sql_columns(frame) -> str:
    from pipeline.featurestore import sql_type

    return ", ".join(f'"{c}" {sql_type(frame[c].dtype)}' for c in frame.columns)


def worker(variant: str, rows: int, dsn: str, table: str) -> dict[str, float]:
    """Run one variant in this process; return rows, seconds, peak RSS and the frame's size."""
    import psycopg2
    import sqlalchemy as sa

    frame = make_frame(rows)
    frame_bytes = int(frame.memory_usage(deep=True).sum())
    url = dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
    prepared = None
    if variant == "raw_copy":
        import pyarrow as pa
        import pyarrow.csv as pacsv

        sink = io.BytesIO()
        pacsv.write_csv(
            pa.Table.from_pandas(frame, preserve_index=False),
            sink,
            write_options=pacsv.WriteOptions(include_header=False),
        )
        prepared = sink.getvalue()
        with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE TABLE "{table}" ({sql_columns(frame)})')
            conn.commit()
    if variant == "raw_binary":
        from pipeline.featurestore import _CopyStream, schema_of

        stream = _CopyStream(frame, schema_of(frame))
        prepared = b"".join(iter(lambda: stream.read(1 << 20), b""))
        stream.close()
        with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE TABLE "{table}" ({sql_columns(frame)})')
            conn.commit()
    if variant == "project":
        import pgpq  # noqa: F401 - imported before the measurement, like the other variants' libraries

        import pipeline.featurestore  # noqa: F401
    engine = sa.create_engine(url)
    with RssSampler() as rss:
        start = time.perf_counter()
        if variant == "project":
            from pipeline.featurestore import FeatureStore

            store = FeatureStore(url)
            store.write(frame, table, content_hash="0" * 64, run_id="bench")
            store.close()
        elif variant == "to_sql":
            frame.to_sql(table, engine, index=False, method=None, chunksize=10_000)
        elif variant in ("raw_copy", "raw_binary"):
            assert prepared is not None
            kind = "csv" if variant == "raw_copy" else "binary"
            with contextlib.closing(psycopg2.connect(dsn)) as conn, conn.cursor() as cur:
                cur.copy_expert(f'COPY "{table}" FROM STDIN WITH (FORMAT {kind})', io.BytesIO(prepared))
                conn.commit()
        else:
            raise SystemExit(f"unknown variant {variant!r}")
        seconds = time.perf_counter() - start
    engine.dispose()
    return {
        "rows": rows,
        "seconds": seconds,
        "peak_rss": rss.peak,
        "rss_before": rss.before,
        "frame_bytes": frame_bytes,
    }


def run_worker(variant: str, rows: int, dsn: str, table: str) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        variant,
        "--rows",
        str(rows),
        "--dsn",
        dsn,
        "--table",
        table,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(value: float) -> str:
    return f"{value / 2**20:7.0f} MiB"


@contextlib.contextmanager
def database(dsn: str | None):
    if dsn:
        yield dsn
        return
    sys.path.insert(0, str(REPO))
    from tests.services import postgres_server

    with postgres_server() as server:
        url = server.create_database("bench")
        yield url.replace("postgresql+psycopg2://", "postgresql://", 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--to-sql-rows", type=int, default=100_000, help="rows loaded by to_sql (0: --rows)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dsn", help="an existing PostgreSQL (default: a throwaway cluster)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--table", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.dsn, args.table)))
        return

    to_sql_rows = args.to_sql_rows or args.rows
    results: dict[str, list[dict[str, float]]] = {
        "raw_copy": [],
        "raw_binary": [],
        "project": [],
        "to_sql": [],
    }
    with database(args.dsn) as dsn:
        for repeat in range(args.repeats):
            for variant in ("raw_copy", "raw_binary", "project"):
                results[variant].append(run_worker(variant, args.rows, dsn, f"bench_{variant}_{repeat}"))
            if repeat == 0 or args.repeats <= 3:
                results["to_sql"].append(run_worker("to_sql", to_sql_rows, dsn, f"bench_to_sql_{repeat}"))

    def rate(variant: str) -> float:
        return statistics.median(r["rows"] / r["seconds"] for r in results[variant])

    def peak(variant: str) -> dict[str, float]:
        return max(results[variant], key=lambda r: r["peak_rss"])

    frame_bytes = results["project"][0]["frame_bytes"]
    print(
        f"PostgreSQL load of {args.rows:,} rows x 20 columns (15 float, 3 int, 2 text); "
        f"DataFrame {mib(frame_bytes).strip()} in memory; median of {args.repeats}"
    )
    labels = (
        ("raw_copy", "raw COPY (CSV)"),
        ("raw_binary", "raw COPY (binary)"),
        ("project", "project COPY path"),
        ("to_sql", "DataFrame.to_sql"),
    )
    for variant, label in labels:
        rows = results[variant][0]["rows"]
        seconds = statistics.median(r["seconds"] for r in results[variant])
        top = peak(variant)
        note = f"  ({rows:,} rows, rows/s extrapolated to {args.rows:,})" if rows != args.rows else ""
        print(
            f"  {label:<20} {seconds:8.2f} s  {rate(variant):12,.0f} rows/s  peak {mib(top['peak_rss'])}"
            f" (+{mib(top['peak_rss'] - top['rss_before']).strip()} during the load){note}"
        )
    speedup = rate("project") / rate("to_sql")
    share = rate("project") / rate("raw_copy")
    top = peak("project")
    memory = top["peak_rss"] / frame_bytes
    print(f"  project / to_sql    : {speedup:8.1f}x   target >= 20    {'OK' if speedup >= 20 else 'MISSED'}")
    print(f"  project / raw COPY  : {share:8.2f}    target >= 0.70  {'OK' if share >= 0.7 else 'MISSED'}")
    binary = rate("project") / rate("raw_binary")
    print(f"  project / raw binary: {binary:8.2f}    (same wire format as the project; no target)")
    print(
        f"  project peak memory : {memory:8.2f}x the DataFrame (process peak {mib(top['peak_rss']).strip()}, "
        f"of which {mib(top['rss_before']).strip()} interpreter, libraries and the frame itself)   "
        f"target <= 3    {'OK' if memory <= 3 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
