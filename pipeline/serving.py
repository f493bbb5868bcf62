"""Inference: the fitted transform plus the network, as a plain predictor and as an MLflow pyfunc.

The registered model takes the raw feature columns (as in the source data, missing values
allowed) and applies the saved transform itself, so callers never re-implement preprocessing.
The pipeline loads models with :func:`load_trusted_predictor`: only the data files, each checked
against the digest recorded at train time (:mod:`pipeline.modelfiles`), parsed by this code::

    predictor = load_trusted_predictor(client, "models:/penguins@champion")
    predictor.predict(raw_rows)  # -> prediction (+ probability_<class> columns)

The pyfunc flavour is for people who choose to trust the stored model and its code
(``mlflow.pyfunc.load_model("models:/penguins@champion")``); the pipeline never loads it.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

from pipeline import modelfiles
from pipeline.model import ModelSpec, TabularNet
from pipeline.transform import TabularTransformer

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient


class Predictor:
    def __init__(self, transformer: TabularTransformer, net: TabularNet):
        self.transformer = transformer
        self.net = net.eval()

    @classmethod
    def from_files(cls, transformer_path: Path, spec_path: Path, weights_path: Path) -> Predictor:
        transformer = TabularTransformer.from_json(Path(transformer_path).read_text())
        spec = ModelSpec(**json.loads(Path(spec_path).read_text()))
        net = TabularNet(spec)
        net.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        return cls(transformer, net)

    @torch.no_grad()
    def raw_outputs(self, frame: pd.DataFrame) -> np.ndarray:
        x_num = torch.as_tensor(self.transformer.transform_numeric(frame))
        x_cat = torch.as_tensor(self.transformer.transform_categorical(frame))
        out = self.net(x_num, x_cat)
        if self.transformer.task == "classification":
            return torch.softmax(out, dim=1).numpy()
        return self.transformer.decode_regression(out.squeeze(1).numpy().astype(np.float64))

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        outputs = self.raw_outputs(frame)
        if self.transformer.task == "classification":
            classes = self.transformer.classes
            result = pd.DataFrame(
                {f"probability_{c}": outputs[:, i].astype(np.float64) for i, c in enumerate(classes)},
                index=frame.index,
            )
            labels = np.asarray(classes, dtype=object)[outputs.argmax(axis=1)]
            result.insert(0, "prediction", labels.astype(str))
            return result
        return pd.DataFrame({"prediction": outputs}, index=frame.index)


class TabularModel(mlflow.pyfunc.PythonModel):
    """The pyfunc flavour: raw feature columns in, predictions out."""

    def load_context(self, context) -> None:
        self.predictor = Predictor.from_files(
            context.artifacts["transformer"], context.artifacts["model_spec"], context.artifacts["weights"]
        )

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        return self.predictor.predict(model_input)


def load_trusted_predictor(client: MlflowClient, model_uri: str, workdir: Path | None = None) -> Predictor:
    """Load a logged or registered model from its data files only, after checking their digests.

    ``model_uri`` is ``models:/<name>/<version>``, ``models:/<name>@<alias>`` or
    ``models:/<model id>``. Raises :class:`pipeline.modelfiles.ModelFilesError` (naming the model
    and the file) when a file differs from what was recorded at train time, or nothing was
    recorded. No code stored with the model (``mlflow_model.py``, ``code/``) is read.
    """
    with tempfile.TemporaryDirectory(prefix="model-", dir=workdir) as folder:
        files = modelfiles.fetch_verified(client, model_uri, Path(folder))
        return Predictor.from_files(
            files[modelfiles.TRANSFORMER], files[modelfiles.MODEL_SPEC], files[modelfiles.WEIGHTS]
        )
