"""The ordered step registry: the single source of truth for the pipeline's shape.

The CLI (``pipeline step <name>``), the local runner (``pipeline run``) and the Airflow DAG are all
built from :data:`STEPS`. Adding a step is one entry here plus its module.

This module is deliberately light: it imports no ML library, so the Airflow DAG can read the step
names at parse time without paying for pandas, torch or MLflow. A step's module is imported only
when the step runs (:func:`load_step`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import StepContext


@dataclass(frozen=True)
class StepSpec:
    """One step of the pipeline.

    Attributes:
        name: the step's name, used in URIs (``runs/<run id>/<name>/``), task ids and the CLI.
        module: the module holding ``run(ctx) -> dict``.
        summary: one line for ``--help`` and the DAG's task documentation.
        needs: names of earlier steps whose published outputs this step reads.
        uses_gpu: whether the step can use an accelerator (the DAG gives only these pods a GPU).
    """

    name: str
    module: str
    summary: str
    needs: tuple[str, ...] = ()
    uses_gpu: bool = False


STEPS: tuple[StepSpec, ...] = (
    StepSpec(
        "ingest",
        "pipeline.steps.ingest",
        "Read the source (file, HTTP API or SQL) into an immutable raw snapshot with its hash.",
    ),
    StepSpec(
        "validate",
        "pipeline.steps.validate",
        "Run the data contract (Great Expectations) on the raw snapshot; stop on failure.",
        needs=("ingest",),
    ),
    StepSpec(
        "preprocess",
        "pipeline.steps.preprocess",
        "De-duplicate, impute, encode, scale and split; save the fitted transformer.",
        needs=("ingest", "validate"),
    ),
    StepSpec(
        "features",
        "pipeline.steps.features",
        "Write the processed features to the feature store as a new feature-set version.",
        needs=("preprocess",),
    ),
    StepSpec(
        "version",
        "pipeline.steps.version",
        "Track raw and processed data with DVC and push them to the remote.",
        needs=("ingest", "preprocess"),
    ),
    StepSpec(
        "train",
        "pipeline.steps.train",
        "Train the PyTorch model with early stopping and checkpoints, tracked in MLflow.",
        needs=("ingest", "validate", "preprocess", "features", "version"),
        uses_gpu=True,
    ),
    StepSpec(
        "evaluate",
        "pipeline.steps.evaluate",
        "Score the model and a baseline on the held-out test set; log metrics and plots.",
        needs=("preprocess", "train"),
    ),
    StepSpec(
        "register",
        "pipeline.steps.register",
        "Register the model version as challenger; promote to champion if the gate passes.",
        needs=("preprocess", "train", "evaluate"),
    ),
)

STEP_NAMES: tuple[str, ...] = tuple(step.name for step in STEPS)


def get_step(name: str) -> StepSpec:
    """Return the step called ``name`` or raise ``KeyError`` listing the valid names."""
    for step in STEPS:
        if step.name == name:
            return step
    raise KeyError(f"unknown step {name!r}; valid steps: {', '.join(STEP_NAMES)}")


def load_step(name: str) -> Callable[[StepContext], dict[str, Any]]:
    """Import the step's module and return its ``run`` function."""
    module = importlib.import_module(get_step(name).module)
    return module.run
