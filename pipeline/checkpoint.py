"""Training checkpoints as data only: a JSON document (``state.json``: epoch, early-stopping state,
history, the training fingerprint, the tensors' sha256) and a file of tensors loaded with
``torch.load(weights_only=True)`` only after its digest matches. Nothing in a checkpoint is
executed or unpickled; a checkpoint for another configuration or data is ignored."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import torch

from pipeline.model import Training, TrainState
from pipeline.storage import ArtifactStore

logger = logging.getLogger(__name__)

CHECKPOINT = "state.json"
TENSOR_FILES = ("state.pt", "state.alt.pt")  # alternate: the one state.json names stays whole
CHECKPOINT_FORMAT = 1
TENSOR_KEYS = ("model", "optimizer", "generator", "torch_rng")
MLFLOW_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Checkpoint:
    """A training state read back from the store: counters, MLflow run, tensors."""

    state: TrainState
    mlflow_run_id: str
    tensors: dict[str, Any]

    def restore(self, training: Training) -> None:
        """Raises ``RuntimeError`` (or ``TypeError``...) when the tensors do not fit the model."""
        if self.state.best_state is not None:  # checked now, loaded again when training ends
            training.model.load_state_dict(self.state.best_state)
        training.model.load_state_dict(self.tensors["model"])
        training.optimizer.load_state_dict(self.tensors["optimizer"])
        training.generator.set_state(self.tensors["generator"])
        torch.set_rng_state(self.tensors["torch_rng"])


class Checkpointer:
    """The training state in the artifact store, stored as data and checked before it is read.

    ``state.json`` holds the format, the fingerprint of the data and settings, the MLflow run,
    the counters and history of :class:`TrainState`, and the name and sha256 of the tensor file.
    The tensors (model and optimizer state dicts, RNG states, the best epoch's weights) go to one
    of two files that alternate, written before ``state.json``: a save interrupted between the
    two leaves ``state.json`` naming the previous, complete file.

    ``load`` reads ``state.json`` first and checks the format and the fingerprint; only then does
    it read the tensor file it names, compare its sha256, and ``torch.load(weights_only=True)``
    it (tensors and plain containers only: no pickled object is ever run). A checkpoint that
    fails any check is logged, removed and ignored, and training starts from epoch 0.
    """

    def __init__(self, store: ArtifactStore, run_id: str, step: str, fingerprint: str):
        self.store = store
        self.run_id = run_id
        self.folder = store.checkpoint_path(run_id, step)
        self.fingerprint = fingerprint
        self._current: str | None = None  # the tensor file state.json names

    def _path(self, name: str) -> str:
        return f"{self.folder}/{name}"

    def load(self) -> Checkpoint | None:
        raw = self.store.read_bytes(self._path(CHECKPOINT))
        if raw is None:
            if self.store.fs.exists(self.folder):
                self.discard(f"it has no {CHECKPOINT} (an older format, or not written by this pipeline)")
            return None
        try:
            meta = json.loads(raw)
            if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"not a format-{CHECKPOINT_FORMAT} checkpoint")
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
            self.discard(f"{CHECKPOINT} is unreadable ({exc})")
            return None
        if meta.get("fingerprint") != self.fingerprint:
            self.discard("it was made with other data or settings (fingerprint differs)")
            return None
        name, mlflow_run_id = meta.get("tensors"), meta.get("mlflow_run_id")
        if (
            name not in TENSOR_FILES
            or not isinstance(mlflow_run_id, str)
            or not MLFLOW_RUN_ID.match(mlflow_run_id)
        ):
            self.discard(f"{CHECKPOINT} names no valid tensor file or MLflow run")
            return None
        try:
            state = TrainState.from_counters(meta["state"], best_state=None)
        except (KeyError, TypeError, ValueError) as exc:
            self.discard(f"the training counters in {CHECKPOINT} are malformed ({exc!r})")
            return None
        data = self.store.read_bytes(self._path(name))
        if data is None or hashlib.sha256(data).hexdigest() != meta.get("tensors_sha256"):
            self.discard(f"{name} is missing or differs from the sha256 recorded in {CHECKPOINT}")
            return None
        try:
            tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            if not isinstance(tensors, dict) or not all(key in tensors for key in TENSOR_KEYS):
                raise ValueError(f"expected the keys {', '.join(TENSOR_KEYS)}")
        except Exception as exc:  # UnpicklingError (a pickled object), RuntimeError, ValueError, ...
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self.discard(f"{name} was refused by torch.load(weights_only=True) or is malformed: {first_line}")
            return None
        state.best_state = tensors.get("best_state")
        self._current = name
        return Checkpoint(state, mlflow_run_id, tensors)

    def save(
        self, model, optimizer, generator: torch.Generator, state: TrainState, mlflow_run_id: str
    ) -> None:
        name = TENSOR_FILES[1] if self._current == TENSOR_FILES[0] else TENSOR_FILES[0]
        tensors: dict[str, Any] = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if state.best_state is not None:
            tensors["best_state"] = state.best_state
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        data = buffer.getvalue()
        meta = {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.fingerprint,
            "mlflow_run_id": mlflow_run_id,
            "tensors": name,
            "tensors_sha256": hashlib.sha256(data).hexdigest(),
            "state": state.counters(),
        }
        self.store.write_bytes(self._path(name), data)  # tmp file + rename, or one PUT
        self.store.write_bytes(self._path(CHECKPOINT), json.dumps(meta, indent=1).encode())
        self._current = name

    def discard(self, reason: str) -> None:
        logger.warning(
            "not resuming run %s from the checkpoint in %s: %s; it is removed and training starts "
            "from epoch 0",
            self.run_id,
            self.store.to_uri(self.folder),
            reason,
        )
        self.clear()

    def clear(self) -> None:
        self.store.remove(self.folder)
        self._current = None
