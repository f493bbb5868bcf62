"""Training throughput with ``train.processes: 2`` (DistributedDataParallel, 2 gloo ranks on CPU)
against one process, on the same synthetic tensors, model, global batch size and epochs.

    python benchmarks/train_ddp.py                    # 200k synthetic rows, 3 epochs, 2 repeats
    python benchmarks/train_ddp.py --rows 50000 --epochs 2 --repeats 1 --batch-size 256

Prints samples/s for each and the ratio 2 processes / 1 measured in the same run (ideal: the
number of free cores). Both use the train step's code: ``Training.fit`` alone for 1 process (torch
threads: every core), and under ``pipeline.distributed.Group`` for 2 (the step's launcher: each
rank gets half the cores). ``in fit`` times the epochs only; ``with start-up`` adds launching
rank 1 and forming the group. Runs alternate (1 2 2 1 ...) to spread machine noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_overhead import synthetic


def one_run(processes: int, rows: int, epochs: int, batch_size: int, scratch: Path) -> tuple[float, float]:
    from pipeline.distributed import Group
    from pipeline.model import TabularNet, Training, TrainState, make_optimizer
    from pipeline.settings import TrainSettings

    train, val, spec = synthetic(rows)
    cfg = TrainSettings(
        processes=processes, max_epochs=epochs, patience=epochs + 1, batch_size=batch_size, num_threads=None
    )
    threads_before = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = TabularNet(spec)
    training = Training(
        model,
        make_optimizer(model, cfg.learning_rate, cfg.weight_decay),
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
        {"train": train, "val": val},
        spec,
    )
    start = time.perf_counter()
    if processes == 1:
        fit_start = time.perf_counter()
        training.fit(cfg, "classification", state=TrainState())
        fit = time.perf_counter() - fit_start
    else:
        with Group(training, cfg, 0, "classification", TrainState(), scratch) as group:
            fit_start = time.perf_counter()
            training.fit(cfg, "classification", state=TrainState(), world=group.world)
            fit = time.perf_counter() - fit_start
    total = time.perf_counter() - start
    torch.set_num_threads(threads_before)
    samples = len(train) * epochs
    return samples / fit, samples / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    order = [1, 2, 2, 1] * args.repeats
    with tempfile.TemporaryDirectory() as scratch:
        for processes in order[: 2 * args.repeats]:
            results[processes].append(
                one_run(processes, args.rows, args.epochs, args.batch_size, Path(scratch))
            )
    median = {
        p: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
        for p, rs in results.items()
    }
    print(f"rows {args.rows} x {args.epochs} epochs, global batch {args.batch_size}, cores {os.cpu_count()}")
    for processes, (fit, total) in median.items():
        print(f"{processes} process(es): {fit:10.0f} samples/s (in fit) {total:10.0f} (start-up incl.)")
    print(
        f"ratio 2 processes / 1: {median[2][0] / median[1][0]:.2f} (in fit)   "
        f"{median[2][1] / median[1][1]:.2f} (with start-up)   ideal: the free cores"
    )


if __name__ == "__main__":
    main()
