"""Training with ``train.processes: N`` > 1: one DistributedDataParallel group on this machine.

The train step's own process is rank 0, and it launches ranks 1..N-1 itself (``spawn`` start
method, one process per rank, rendezvous on a free local TCP port), as ``torchrun --standalone
--nproc-per-node N`` would. Rank 0 keeps everything the step owns: the one MLflow run, the one
checkpoint, the outputs and the exit code. The other ranks only compute: they read the job
(tensors of the splits, the model spec, rank 0's starting weights and optimizer state, the
counters of a resumed run) from a file in the step's scratch folder, train their shard, and log
and write nothing. The same command serves a laptop (gloo on CPU) and a multi-GPU machine (NCCL,
rank ``r`` on ``cuda:r``).

Under torchrun (the DAG's multi-GPU train pod, or a multi-node TrainJob) nothing is spawned: every
rank runs the step command, rank 0 runs the step as above and sends the job to the others over the
process group, rank ``r`` trains on ``cuda:LOCAL_RANK`` (:mod:`pipeline.torchrun`).

A rank that dies makes the step fail, never hang: rank 0's collectives raise when a peer's
connection closes (or after ``train.process_group_timeout_s``), a watchdog notices a rank that
exits early, and the step raises :class:`pipeline.errors.RetryableError` (exit code 75). The
checkpoint rank 0 wrote at the last epoch boundary is resumed by the next attempt.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from pipeline.errors import RetryableError

logger = logging.getLogger(__name__)

# Test-only fault injection: rank 1 SIGKILLs itself once it has finished this epoch.
KILL_RANK1_AFTER_EPOCH_ENV = "MLP_TEST_KILL_RANK1_AFTER_EPOCH"
JOIN_TIMEOUT_S = 30.0


class World:
    """This process's place in the group: what :func:`pipeline.model.fit` asks of it."""

    def __init__(self, rank: int, size: int, seed: int, device: torch.device, group: Any = None):
        self.rank, self.size, self.seed, self.device = rank, size, seed, device
        self.group = group  # the training collectives' process group (None: the default group)

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP over ``model`` (its construction broadcasts rank 0's weights to every rank)."""
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, process_group=self.group)

    @staticmethod
    def unwrap(model: nn.Module) -> nn.Module:
        return model.module if isinstance(model, DistributedDataParallel) else model

    def shard(self, epoch: int, n: int) -> torch.Tensor:
        """This rank's rows for ``epoch``: a seeded shuffle, padded to equal shares (so every rank
        runs the same number of batches), every ``size``-th index from ``rank``."""
        sampler = DistributedSampler(range(n), num_replicas=self.size, rank=self.rank, seed=self.seed)
        sampler.set_epoch(epoch)
        return torch.tensor(list(iter(sampler)), dtype=torch.long)

    def rank_batch_size(self, batch_size: int) -> int:
        return max(1, -(-batch_size // self.size))

    def mean(self, total: float, count: int) -> float:
        """``sum(total) / sum(count)`` over the ranks."""
        both = torch.tensor([total, float(count)], dtype=torch.float64, device=self.device)
        dist.all_reduce(both, group=self.group)
        return float(both[0] / max(float(both[1]), 1.0))

    def from_rank0(self, loss: float, accuracy: float | None) -> tuple[float, float | None]:
        """Rank 0's validation metrics on every rank."""
        values = torch.tensor(
            [loss, math_nan if accuracy is None else accuracy], dtype=torch.float64, device=self.device
        )
        dist.broadcast(values, src=0, group=self.group)
        return float(values[0]), (None if accuracy is None else float(values[1]))


math_nan = float("nan")


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def rank_device(device: torch.device, rank: int) -> torch.device:
    if device.type != "cuda":
        return device
    if rank >= torch.cuda.device_count():
        from pipeline.errors import ConfigError

        raise ConfigError(
            f"train.processes asks for a rank on cuda:{rank} but {torch.cuda.device_count()} CUDA "
            "device(s) are visible: one process per GPU"
        )
    return torch.device("cuda", rank)


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def threads(processes: int, num_threads: int | None) -> int:
    """torch threads per rank: the configured number, or this machine's cores shared out."""
    return num_threads or max(1, (os.cpu_count() or 1) // processes)


def _init(rank: int, size: int, port: int, device: torch.device, timeout_s: float) -> None:
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend_for(device),
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=size,
        timeout=timedelta(seconds=timeout_s),
    )


class Group:
    """Rank 0's side: launch ranks 1..N-1, join the group, watch them, tear everything down.

    Use as a context manager around the training; inside it :attr:`world` is rank 0's
    :class:`World`. Any failure of the group (a rank that died, a collective that raised or
    timed out) leaves as :class:`RetryableError`.
    """

    def __init__(self, training, cfg, seed: int, task: str, state, scratch: Path):
        self.training, self.cfg, self.seed, self.task, self.state = training, cfg, seed, task, state
        self.size = cfg.processes
        self.scratch = scratch
        self.processes: list[Any] = []
        self.world: World | None = None
        self.failed: str | None = None  # set by the watchdog
        self._done = threading.Event()
        self._threads_before = torch.get_num_threads()

    def _job(self) -> dict[str, Any]:
        training = self.training
        return {
            "spec": json.dumps(training.spec.to_dict()),
            "cfg": json.dumps(self.cfg.model_dump()),
            "seed": self.seed,
            "task": self.task,
            "counters": json.dumps(self.state.counters()),
            "device": str(training.device.type),
            "model": {k: v.detach().cpu() for k, v in training.model.state_dict().items()},
            "optimizer": training.optimizer.state_dict(),
            "splits": {
                name: [split.x_num.cpu(), split.x_cat.cpu(), split.y.cpu()]
                for name, split in training.splits.items()
                if name in ("train", "val")
            },
        }

    def _write_job(self) -> Path:
        path = self.scratch / "ddp_job.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self._job(), path)
        return path

    def _enter_launched(self, launch) -> Group:
        """Rank 0 under torchrun: join the group torchrun formed and send the job to the others."""
        from pipeline import torchrun

        device = self.training.device
        torch.set_num_threads(threads(launch.local_world, self.cfg.num_threads))
        try:
            torchrun.join(launch, device, self.cfg.process_start_timeout_s)
            torchrun.send_job(self._job(), device)
            torchrun.SENT["job"] = True
            group = torchrun.training_group(self.cfg)
        except Exception as exc:
            self._stop()
            raise RetryableError(f"the {self.size} training ranks could not form a group: {exc}") from exc
        self.world = World(0, self.size, self.seed, device, group)
        logger.info(
            "training with %d ranks started by torchrun (DistributedDataParallel, %s backend)",
            self.size,
            backend_for(device),
        )
        return self

    def __enter__(self) -> Group:
        import multiprocessing

        from pipeline.torchrun import launched

        launch = launched()
        if launch is not None:
            self.size = launch.size
            return self._enter_launched(launch)
        rank_device(self.training.device, self.size - 1)  # a GPU for every rank, before any starts
        job = self._write_job()
        port = _free_port()
        context = multiprocessing.get_context("spawn")
        for rank in range(1, self.size):
            process = context.Process(
                target=worker, args=(rank, self.size, port, str(job)), name=f"train-rank-{rank}"
            )
            process.start()
            self.processes.append(process)
        threading.Thread(target=self._watch, name="train-ranks-watchdog", daemon=True).start()
        device = self.training.device
        torch.set_num_threads(threads(self.size, self.cfg.num_threads))
        try:
            _init(0, self.size, port, device, self.cfg.process_group_timeout_s)
        except Exception as exc:
            self._stop()
            raise RetryableError(f"the {self.size} training processes could not form a group: {exc}") from exc
        self.world = World(0, self.size, self.seed, device)
        logger.info(
            "training with %d processes (DistributedDataParallel, %s backend, ranks 1-%d are pids %s)",
            self.size,
            backend_for(device),
            self.size - 1,
            ", ".join(str(p.pid) for p in self.processes),
        )
        return self

    def _watch(self) -> None:
        """Note the first rank that exits before the group is done (its collectives then fail)."""
        while not self._done.wait(0.5):
            for rank, process in enumerate(self.processes, start=1):
                if process.exitcode is not None and process.exitcode != 0 and self.failed is None:
                    self.failed = (
                        f"training rank {rank} (pid {process.pid}) exited with code {process.exitcode}"
                    )
                    logger.error("%s; the step fails", self.failed)

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None:
            for process in self.processes:
                process.join(JOIN_TIMEOUT_S)
            codes = [p.exitcode for p in self.processes]
            self._stop()
            if any(code != 0 for code in codes):
                raise RetryableError(f"training ranks 1-{self.size - 1} exited with codes {codes}")
            return False
        failed = isinstance(exc, RuntimeError)  # DistBackendError, a gloo/NCCL timeout or a closed peer
        if failed and not self.processes:  # under torchrun: its agent knows which rank died
            self._stop()
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RetryableError(
                f"distributed training failed: a training rank stopped answering ({first})"
            ) from exc
        cause = (self.failed or self._dead_rank() if failed else None) or "a training rank stopped answering"
        self._stop()
        if failed:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RetryableError(f"distributed training failed: {cause} ({first})") from exc
        return False

    def _dead_rank(self) -> str | None:
        """The first rank that has exited with an error, waiting a moment for its exit code."""
        for _ in range(20):
            for rank, process in enumerate(self.processes, start=1):
                if process.exitcode not in (None, 0):
                    return f"training rank {rank} (pid {process.pid}) exited with code {process.exitcode}"
            time.sleep(0.1)
        return None

    def _stop(self) -> None:
        self._done.set()
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join(JOIN_TIMEOUT_S)
        if dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(self._threads_before)


def worker(rank: int, size: int, port: int, job_path: str) -> None:
    """Ranks 1..N-1 spawned by rank 0: train the shard of this rank; log and write nothing."""
    from pipeline.settings import TrainSettings

    job = torch.load(job_path, map_location="cpu", weights_only=True)
    cfg = TrainSettings.model_validate(json.loads(job["cfg"]))
    device = rank_device(torch.device(job["device"]), rank)
    torch.set_num_threads(threads(size, cfg.num_threads))
    _init(rank, size, port, device, cfg.process_group_timeout_s)
    try:
        train_rank(job, cfg, World(rank, size, job["seed"], device))
    finally:
        dist.destroy_process_group()


def train_rank(job: dict[str, Any], cfg, world: World) -> None:
    from pipeline.model import ModelSpec, Split, TabularNet, Training, TrainState, make_optimizer

    rank, device = world.rank, world.device
    state = TrainState.from_counters(json.loads(job["counters"]), best_state=None)
    torch.manual_seed(job["seed"] + 7919 * rank + state.epoch)  # this rank's own dropout masks
    spec = ModelSpec(**json.loads(job["spec"]))
    model = TabularNet(spec).to(device)
    model.load_state_dict(job["model"])
    optimizer = make_optimizer(model, cfg.learning_rate, cfg.weight_decay)
    optimizer.load_state_dict(job["optimizer"])
    splits = {name: Split(*tensors).to(device) for name, tensors in job["splits"].items()}
    training = Training(model, optimizer, torch.Generator(), device, splits, spec)
    die_after = int(os.environ.get(KILL_RANK1_AFTER_EPOCH_ENV) or 0) if rank == 1 else 0

    def on_epoch(epoch, *_) -> None:
        if die_after and epoch >= die_after:
            os.kill(os.getpid(), signal.SIGKILL)

    training.fit(cfg, job["task"], state=state, on_epoch=on_epoch, world=world)
