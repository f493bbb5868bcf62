"""The PyTorch model for tabular data and its training loop.

``TabularNet`` is an MLP over standardised numeric columns concatenated with one learned embedding
per categorical column. ``fit`` trains it with early stopping on the validation loss. It takes
tensors already in memory and slices batches from a seeded permutation (much faster on CPU than a
per-sample ``DataLoader``), and calls back once per epoch for logging and checkpointing, so the
same loop serves the train step, the sweep and the benchmark.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from pipeline.distributed import World

logger = logging.getLogger(__name__)


def embedding_dim(cardinality: int, max_dim: int) -> int:
    """A common rule of thumb (fast.ai): grows sub-linearly with the number of categories."""
    return int(min(max_dim, max(2, round(1.6 * cardinality**0.56))))


@dataclass
class ModelSpec:
    task: str
    n_numeric: int
    cardinalities: list[int]
    embedding_dims: list[int]
    hidden_sizes: list[int]
    dropout: float
    n_outputs: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TabularNet(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.embeddings = nn.ModuleList(
            nn.Embedding(card, dim) for card, dim in zip(spec.cardinalities, spec.embedding_dims, strict=True)
        )
        layers: list[nn.Module] = []
        width = spec.n_numeric + sum(spec.embedding_dims)
        for hidden in spec.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(spec.dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, spec.n_outputs)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        parts = [x_num] if self.spec.n_numeric else []
        parts += [emb(x_cat[:, i]) for i, emb in enumerate(self.embeddings)]
        return self.head(self.body(torch.cat(parts, dim=1)))


@dataclass
class Split:
    """One split as tensors: numeric features, categorical codes, target."""

    x_num: torch.Tensor
    x_cat: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device) -> Split:
        return Split(self.x_num.to(device), self.x_cat.to(device), self.y.to(device))

    @classmethod
    def from_owned(cls, x_num: np.ndarray, x_cat: np.ndarray, y: np.ndarray, task: str) -> Split:
        """A split over arrays nothing else holds (no copy)."""
        kind = np.int64 if task == "classification" else np.float32
        return cls(
            torch.from_numpy(x_num), torch.from_numpy(x_cat), torch.from_numpy(y.astype(kind, copy=False))
        )

    @classmethod
    def from_arrays(cls, x_num: np.ndarray, x_cat: np.ndarray, y: np.ndarray, task: str) -> Split:
        target = torch.as_tensor(np.array(y), dtype=torch.long if task == "classification" else torch.float32)
        return cls(
            torch.from_numpy(np.array(x_num, dtype=np.float32, copy=True)),
            torch.from_numpy(np.array(x_cat, dtype=np.int64, copy=True)),
            target,
        )


def splits_from_frame(frame, transformer) -> dict[str, Split]:
    """Tensors per split from a processed feature frame (``num__*``, ``cat__*``, ``target``), columns
    in the transformer's order (the order inference uses)."""
    from pipeline.splits import splits_from_chunks

    return splits_from_chunks([frame], transformer)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pick_device(preference: str) -> torch.device:
    if preference == "cuda" or (preference == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from pipeline.errors import ConfigError

            raise ConfigError("train.device is 'cuda' (or train.gpus is set) but no CUDA device is visible")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def loss_function(task: str) -> nn.Module:
    return nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()


@torch.no_grad()
def evaluate_loss(
    model: nn.Module, split: Split, task: str, batch_size: int = 65_536
) -> tuple[float, float | None]:
    """Mean loss over ``split`` and, for classification, accuracy."""
    model.eval()
    criterion = loss_function(task)
    total, correct, count = 0.0, 0, len(split)
    if count == 0:
        return float("nan"), None
    for start in range(0, count, batch_size):
        end = min(start + batch_size, count)
        out = model(split.x_num[start:end], split.x_cat[start:end])
        target = split.y[start:end]
        if task == "classification":
            total += float(criterion(out, target)) * (end - start)
            correct += int((out.argmax(dim=1) == target).sum())
        else:
            total += float(criterion(out.squeeze(1), target)) * (end - start)
    return total / count, (correct / count if task == "classification" else None)


@dataclass
class TrainState:
    """Everything needed to continue training exactly where it stopped."""

    epoch: int = 0  # epochs completed
    best_val_loss: float = math.inf
    best_epoch: int = 0
    epochs_without_improvement: int = 0
    best_state: dict[str, Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False

    def counters(self) -> dict[str, Any]:
        """Everything but the tensors (``best_state``), as JSON-ready values."""
        return {
            "epoch": self.epoch,
            "best_val_loss": None if math.isinf(self.best_val_loss) else self.best_val_loss,
            "best_epoch": self.best_epoch,
            "epochs_without_improvement": self.epochs_without_improvement,
            "history": self.history,
            "stopped_early": self.stopped_early,
        }

    @classmethod
    def from_counters(cls, data: dict[str, Any], best_state: dict[str, Any] | None) -> TrainState:
        """The inverse of :meth:`counters`; raises ``TypeError``/``ValueError`` on a malformed one."""
        history = data["history"]
        if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
            raise TypeError("history must be a list of objects")
        best = data["best_val_loss"]
        return cls(
            epoch=_int(data["epoch"]),
            best_val_loss=math.inf if best is None else float(best),
            best_epoch=_int(data["best_epoch"]),
            epochs_without_improvement=_int(data["epochs_without_improvement"]),
            best_state=best_state,
            history=history,
            stopped_early=bool(data["stopped_early"]),
        )


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


EpochCallback = Callable[
    [int, dict[str, float], nn.Module, torch.optim.Optimizer, torch.Generator, TrainState], None
]


def make_optimizer(model: nn.Module, learning_rate: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split,
    val: Split,
    *,
    task: str,
    batch_size: int,
    max_epochs: int,
    patience: int,
    min_delta: float,
    generator: torch.Generator,
    state: TrainState | None = None,
    on_epoch: EpochCallback | None = None,
    should_prune: Callable[[int, float], bool] | None = None,
    world: World | None = None,
) -> TrainState:
    """Train until ``max_epochs`` or ``patience`` epochs without a validation improvement.

    ``state`` continues an interrupted run (with ``generator`` and the optimizer restored).
    ``on_epoch`` runs after each epoch (logging, checkpointing); ``should_prune`` lets a
    hyperparameter search stop an unpromising trial.

    ``world`` (:mod:`pipeline.distributed`) trains one rank of a DistributedDataParallel group:
    ``model`` is then the DDP wrapper, each rank takes its shard of the epoch's order
    (``DistributedSampler``) in batches of ``batch_size / world size`` (the global batch stays
    ``batch_size``), the train loss is all-reduced and rank 0's validation metrics are broadcast,
    so every rank makes the same early-stopping decision. ``on_epoch`` gets the unwrapped module.
    """
    state = state or TrainState()
    criterion = loss_function(task)
    n = len(train)
    net = model if world is None else world.unwrap(model)
    while state.epoch < max_epochs and not state.stopped_early:
        model.train()
        if world is None:
            order = torch.randperm(n, generator=generator).to(train.y.device)
            step = batch_size
        else:
            order = world.shard(state.epoch, n).to(train.y.device)
            step = world.rank_batch_size(batch_size)
        running, seen = 0.0, 0
        for start in range(0, len(order), step):
            index = order[start : start + step]
            out = model(train.x_num[index], train.x_cat[index])
            target = train.y[index]
            loss = criterion(out, target) if task == "classification" else criterion(out.squeeze(1), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            running += float(loss.detach()) * len(index)
            seen += len(index)
        state.epoch += 1
        val_loss, val_accuracy = evaluate_loss(net, val, task)
        train_loss = running / max(seen, 1)
        if world is not None:
            train_loss = world.mean(running, seen)
            val_loss, val_accuracy = world.from_rank0(val_loss, val_accuracy)
        metrics = {"train_loss": train_loss, "val_loss": val_loss}
        if val_accuracy is not None:
            metrics["val_accuracy"] = val_accuracy
        state.history.append({"epoch": state.epoch, **metrics})
        if val_loss < state.best_val_loss - min_delta:
            state.best_val_loss = val_loss
            state.best_epoch = state.epoch
            state.epochs_without_improvement = 0
            state.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in net.state_dict().items()})
        else:
            state.epochs_without_improvement += 1
            if state.epochs_without_improvement >= patience:
                state.stopped_early = True
        if on_epoch is not None:
            on_epoch(state.epoch, metrics, net, optimizer, generator, state)
        if should_prune is not None and should_prune(state.epoch, val_loss):
            break
    return state


def build_spec(transformer, hidden_sizes: list[int], dropout: float, embedding_dim_max: int) -> ModelSpec:
    cards = transformer.cardinalities
    return ModelSpec(
        task=transformer.task,
        n_numeric=len(transformer.numeric),
        cardinalities=cards,
        embedding_dims=[embedding_dim(c, embedding_dim_max) for c in cards],
        hidden_sizes=list(hidden_sizes),
        dropout=dropout,
        n_outputs=transformer.n_outputs,
    )


@dataclass
class Training:
    """A model ready to train: what the train step and every sweep trial set up identically
    (device, threads, seed, initialisation, optimizer, batch-order generator)."""

    model: TabularNet
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    device: torch.device
    splits: dict[str, Split]
    spec: ModelSpec

    @classmethod
    def create(cls, cfg, seed: int, transformer, splits: dict[str, Split]) -> Training:
        """``cfg`` is a :class:`pipeline.settings.TrainSettings`."""
        device = pick_device(cfg.device_preference)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        spec = build_spec(transformer, cfg.hidden_sizes, cfg.dropout, cfg.embedding_dim_max)
        seed_everything(seed)
        model = TabularNet(spec).to(device)
        return cls(
            model=model,
            optimizer=make_optimizer(model, cfg.learning_rate, cfg.weight_decay),
            generator=torch.Generator().manual_seed(seed),
            device=device,
            splits={name: split.to(device) for name, split in splits.items()},
            spec=spec,
        )

    def fit(
        self,
        cfg,
        task: str,
        state: TrainState | None = None,
        on_epoch: EpochCallback | None = None,
        should_prune: Callable[[int, float], bool] | None = None,
        world: World | None = None,
    ) -> TrainState:
        """Train with ``cfg``'s schedule, then keep the best epoch's weights in ``self.model``
        (under ``world``, as one rank of a DistributedDataParallel group)."""
        state = fit(
            self.model if world is None else world.wrap(self.model),
            self.optimizer,
            self.splits["train"],
            self.splits["val"],
            task=task,
            batch_size=cfg.batch_size,
            max_epochs=cfg.max_epochs,
            patience=cfg.patience,
            min_delta=cfg.min_delta,
            generator=self.generator,
            state=state,
            on_epoch=on_epoch,
            should_prune=should_prune,
            world=world,
        )
        if state.best_state is not None:
            self.model.load_state_dict(state.best_state)
        return state


def model_input_frame(frame, columns: list[str]):
    """Raw feature columns in the schema the model is logged with: text as object dtype, integers
    as float64. An integer column can hold a missing value at inference time (it then arrives as
    floats), so the signature declares it double, as MLflow advises; the transformer reads both
    the same way (numbers as float64, category keys with ``1.0`` read as ``1``)."""
    out = frame[columns].copy()
    for column in out.columns:
        kind = out[column].dtype.kind
        if kind in "iu":
            out[column] = out[column].astype("float64")
        elif kind not in "bf":
            out[column] = out[column].astype(object)
    return out.reset_index(drop=True)
