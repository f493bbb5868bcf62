"""The train step under torchrun: each rank's place, rank 0's job for the others, and the launcher.

``python -m pipeline.torchrun [torchrun options] -m pipeline step train ...`` is torchrun itself
(``torch.distributed.run``, the same options, ``PET_*`` variables and elastic agent), except for
its exit code. torchrun exits 1 whenever a rank fails, which would turn the step's exit-code
contract into "retry everything": a refused input (65) or a bad configuration (2) would be retried
like a lost rank. This launcher exits with the failing rank's own code instead: rank 0's (the rank
that runs the step and says why it failed) when it failed with one, else the first rank's that
did, else :data:`pipeline.errors.EXIT_RETRYABLE` (every failed rank was killed by a signal: a lost
node, the OOM killer). The DAG's multi-GPU train pod runs it (``airflow.dag.gpu.count`` above 1),
and so does a multi-node TrainJob (the chart's trainJob values, scripts/trainjob).

Every rank runs ``pipeline step train``; :func:`launched` reads its place from torchrun's
variables. Rank 0 runs the step (:class:`pipeline.distributed.Group` joins the group and sends the
job over it: on several nodes the ranks share no folder); the others run :func:`follow` in place
of the step. A rank 0 that finishes without training releases them (:func:`release_followers`).
torch is imported only where a rank needs it: the CLI asks :func:`step_launch` first.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pipeline.errors import EXIT_RETRYABLE, ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import torch

logger = logging.getLogger(__name__)


class Launch:
    """This process's place in a group that torchrun started (every rank runs the step command)."""

    def __init__(self, rank: int, size: int, local_rank: int, local_world: int):
        self.rank, self.size, self.local_rank, self.local_world = rank, size, local_rank, local_world

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:LOCAL_RANK`` on a GPU node, else ``device``."""
        from pipeline.distributed import rank_device

        return rank_device(device, self.local_rank)


TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched() -> Launch | None:
    """This process's place when torchrun (or a TrainJob/PyTorchJob's torchrun) started it as one of
    several ranks, from the variables torchrun sets; None otherwise (and for a world of one)."""
    env = os.environ
    if not all(env.get(name) for name in TORCHRUN_ENV):
        return None
    try:
        rank, size = int(env["RANK"]), int(env["WORLD_SIZE"])
        local_rank = int(env.get("LOCAL_RANK") or 0)
        local_world = int(env.get("LOCAL_WORLD_SIZE") or size)
    except ValueError:
        raise ConfigError(
            f"RANK={env['RANK']!r} and WORLD_SIZE={env['WORLD_SIZE']!r} (set by torchrun) are not numbers"
        ) from None
    return Launch(rank, size, local_rank, local_world) if size > 1 else None


def step_launch(step_name: str) -> Launch | None:
    """This rank's :class:`Launch` when torchrun started the ``step`` command as one of several
    ranks (only the train step may run so); None otherwise. Cheap when torchrun is not involved."""
    if int(os.environ.get("WORLD_SIZE") or 1) <= 1:
        return None
    launch = launched()
    if launch is not None and step_name != "train":
        raise ConfigError(
            f"step {step_name!r} was started by torchrun as rank {launch.rank} of {launch.size}: only "
            "the train step runs as several ranks (run the other steps as one process)"
        )
    return launch


def world_size(cfg) -> int:
    """DistributedDataParallel ranks of a training with ``cfg`` (:class:`TrainSettings`): torchrun's
    world when it started the step, else ``train.gpus`` or ``train.processes``."""
    launch = launched()
    if launch is None:
        return cfg.ranks
    if cfg.ranks not in (1, launch.size):
        raise ConfigError(
            f"torchrun started {launch.size} ranks but train.gpus/train.processes asks for {cfg.ranks}: "
            "set them to the same number (or leave them at 0/1 under torchrun)"
        )
    return launch.size


def join(launch: Launch, device: torch.device, start_timeout_s: float) -> None:
    """Join torchrun's group (``env://``: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE). The default
    group only carries the job, so it may wait as long as rank 0 takes to reach the training."""
    import torch
    import torch.distributed as dist

    from pipeline.distributed import backend_for

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend_for(device),
        init_method="env://",
        rank=launch.rank,
        world_size=launch.size,
        timeout=timedelta(seconds=start_timeout_s),
    )


def training_group(cfg) -> Any:
    """The group the training's collectives use, with the step's own timeout (every rank calls it)."""
    import torch.distributed as dist

    return dist.new_group(timeout=timedelta(seconds=cfg.process_group_timeout_s))


def send_job(job: dict[str, Any] | None, device: torch.device) -> None:
    """Rank 0: the job to every other rank over the default group (length first; 0: no training)."""
    import io

    import torch
    import torch.distributed as dist

    payload = b""
    if job is not None:
        buffer = io.BytesIO()
        torch.save(job, buffer)
        payload = buffer.getvalue()
    length = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(length, src=0)
    if payload:
        data = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
        dist.broadcast(data, src=0)


def _receive_job(device: torch.device) -> dict[str, Any] | None:
    """Ranks 1..N-1: rank 0's job (tensors and JSON text only: loaded with ``weights_only``)."""
    import io

    import torch
    import torch.distributed as dist

    length = torch.zeros(1, dtype=torch.int64, device=device)
    dist.broadcast(length, src=0)
    if int(length.item()) == 0:
        return None
    data = torch.empty(int(length.item()), dtype=torch.uint8, device=device)
    dist.broadcast(data, src=0)
    return torch.load(io.BytesIO(data.cpu().numpy().tobytes()), map_location="cpu", weights_only=True)


SENT: dict[str, bool] = {}  # rank 0: whether the job (or the release) went to the other ranks


def release_followers(cfg) -> None:
    """Rank 0 under torchrun that finished the step without training (a step-cache hit, a step
    already published): tell the waiting ranks there is nothing to do, so that they exit 0."""
    import torch.distributed as dist

    from pipeline.model import pick_device

    launch = launched()
    if launch is None or launch.rank != 0 or SENT.get("job"):
        return
    device = launch.device(pick_device(cfg.device_preference))
    join(launch, device, cfg.process_start_timeout_s)
    try:
        send_job(None, device)
        SENT["job"] = True
        logger.info("no training needed: released the other %d rank(s)", launch.size - 1)
    finally:
        dist.destroy_process_group()


def follow(cfg) -> None:
    """Ranks 1..N-1 under torchrun, in place of the train step: wait for rank 0's job, train this
    rank's shard, log and write nothing. ``cfg`` (this pod's :class:`TrainSettings`) gives the
    device and how long to wait for rank 0; the job's own settings govern the training."""
    import torch
    import torch.distributed as dist

    from pipeline.distributed import World, threads, train_rank
    from pipeline.model import pick_device
    from pipeline.settings import TrainSettings

    launch = launched()
    if launch is None or launch.rank == 0:
        raise RuntimeError("follow() is for ranks 1..N-1 started by torchrun")
    device = launch.device(pick_device(cfg.device_preference))
    torch.set_num_threads(threads(launch.local_world, cfg.num_threads))
    join(launch, device, cfg.process_start_timeout_s)
    try:
        job = _receive_job(device)
        if job is None:
            logger.info("rank %d: rank 0 needed no training; nothing to do", launch.rank)
            return
        job_cfg = TrainSettings.model_validate(json.loads(job["cfg"]))
        world = World(launch.rank, launch.size, job["seed"], device, training_group(job_cfg))
        logger.info("rank %d of %d: training on %s", launch.rank, launch.size, device)
        train_rank(job, job_cfg, world)
    finally:
        dist.destroy_process_group()


def exit_code(failures: dict[int, Any]) -> int:
    """The exit code for torchrun's ``ChildFailedError.failures`` (global rank -> ProcessFailure)."""
    if not failures:
        return EXIT_RETRYABLE
    first_rank = failures.get(0)
    if first_rank is not None and first_rank.exitcode > 0:
        return int(first_rank.exitcode)
    coded = sorted((f.timestamp, rank, f.exitcode) for rank, f in failures.items() if f.exitcode > 0)
    return int(coded[0][2]) if coded else EXIT_RETRYABLE


def main(argv: list[str] | None = None) -> int:
    """torchrun with ``argv`` (default: the command line); returns the exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ChildFailedError as exc:
        code = exit_code(exc.failures)
        codes = ", ".join(f"rank {rank}: {f.exitcode}" for rank, f in sorted(exc.failures.items()))
        print(f"torchrun: ranks failed ({codes}); exit code {code}", file=sys.stderr, flush=True)
        return code
    return 0


if __name__ == "__main__":  # pragma: no cover - the command line
    sys.exit(main())
