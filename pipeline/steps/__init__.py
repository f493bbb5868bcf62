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
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.context import StepContext, StepResult


@dataclass(frozen=True)
class StepSpec:
    """One step of the pipeline, and its whole contract with the others.

    Attributes:
        name: the step's name, used in URIs (``runs/<run id>/<name>/``), task ids and the CLI.
        module: the module holding ``run(ctx) -> StepResult``.
        summary: one line for ``--help`` and the DAG's task documentation.
        inputs: what the step reads from earlier steps of its run: ``"step"`` (that step's
            manifest and summary) or ``"step.output"`` (one published output, which implies the
            manifest). :class:`pipeline.context.StepContext` refuses any other read.
        outputs: the names of what it publishes; the runner refuses a result with others, or
            a successful one without all of them.
        kind: ``data`` (ingest .. version: what a sweep prepares once for all its trials) or
            ``model`` (trains on, scores or registers a model).
        uses_gpu: whether the step can use an accelerator (the DAG gives only these pods a GPU).
        settings_read: the settings the step reads, as dotted paths of the resolved configuration
            (a section covers what is under it): what its step-cache key takes from the
            configuration (:mod:`pipeline.cache`; tests/e2e/test_step_cache.py records every
            setting each step reads and fails on one not declared here).
    """

    name: str
    module: str
    summary: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    kind: Literal["data", "model"] = "data"
    uses_gpu: bool = False
    settings_read: tuple[str, ...] = ()

    @property
    def needs(self) -> tuple[str, ...]:
        """The earlier steps this one reads from, in the order first declared."""
        return tuple(dict.fromkeys(item.partition(".")[0] for item in self.inputs))

    def reads(self, step: str, output: str | None = None) -> bool:
        """Whether the step declared that read (a whole-manifest read, or one output)."""
        if output is None:
            return step in self.needs
        return f"{step}.{output}" in self.inputs


def under(section: str, *fields: str) -> tuple[str, ...]:
    """Dotted setting paths: ``fields`` of ``section`` (none: the whole section)."""
    return tuple(f"{section}.{field}" for field in fields) or (section,)


# What reading the raw snapshot against the data contract takes (ingest refuses a header that cannot
# make a table, validate applies the whole contract).
CONTRACT = under(
    "data",
    "name",
    "columns",
    "target",
    "task",
    "min_rows",
    "max_rows",
    "max_columns",
    "allow_extra_columns",
    "strict",
    "max_duplicate_fraction",
)
S3_LOCATION = under("s3", "endpoint_url", "region")

STEPS: tuple[StepSpec, ...] = (
    StepSpec(
        "ingest",
        "pipeline.steps.ingest",
        "Read the source (file, HTTP API or SQL) into an immutable raw snapshot with its hash.",
        outputs=("raw",),
        settings_read=(*CONTRACT, *under("data", "source"), *S3_LOCATION),
    ),
    StepSpec(
        "validate",
        "pipeline.steps.validate",
        "Run the data contract (Great Expectations) on the raw snapshot; stop on failure.",
        inputs=("ingest.raw",),
        outputs=("report", "data_docs"),
        settings_read=(
            *CONTRACT,
            *under(
                "data",
                "source.uri",
                "source.csv",
                "unique_together",
                "formula_values",
                "validation_batch_rows",
            ),
        ),
    ),
    StepSpec(
        "preprocess",
        "pipeline.steps.preprocess",
        "De-duplicate, split, refuse target leakage, impute, encode and scale; save the fitted transformer.",
        inputs=("ingest.raw", "validate"),
        outputs=("features", "test_raw", "transformer"),
        settings_read=(
            *under("data", "source.uri", "source.csv", "columns", "target", "task", "leakage"),
            *under("preprocess"),
            "seed",
        ),
    ),
    StepSpec(
        "features",
        "pipeline.steps.features",
        "Write the processed features to the feature store as a new feature-set version.",
        inputs=("preprocess.features",),
        settings_read=(*under("data", "name"), "feature_store_url"),
    ),
    StepSpec(
        "version",
        "pipeline.steps.version",
        "Track raw and processed data with DVC and push them to the remote.",
        inputs=("ingest.raw", "preprocess.features"),
        outputs=("raw_dvc", "processed_dvc"),
        settings_read=("dvc_remote", *S3_LOCATION),
    ),
    StepSpec(
        "train",
        "pipeline.steps.train",
        "Train the PyTorch model with early stopping and checkpoints, tracked in MLflow.",
        inputs=(
            "ingest",
            "validate.report",
            "validate.data_docs",
            "preprocess.transformer",
            "preprocess.test_raw",
            "preprocess.features",  # read when it is the feature-set version's content
            "features",
            "version.raw_dvc",
            "version.processed_dvc",
        ),
        outputs=("weights", "model_spec", "history"),
        kind="model",
        uses_gpu=True,
        settings_read=(
            *under("data", "name", "source.uri", "target", "task", "columns", "leakage"),
            *under("preprocess"),  # logged as parameters of the run
            *under("train"),
            "seed",
            *under("evaluate", "primary_metric"),
            *under("gate", "margin"),
            "experiment_name",
            "tracking_uri",
            "feature_store_url",
        ),
    ),
    StepSpec(
        "evaluate",
        "pipeline.steps.evaluate",
        "Score the model and a baseline on the held-out test set; log metrics and plots.",
        inputs=("preprocess.test_raw", "preprocess.features", "train.history"),
        outputs=("evaluation", "plots"),
        kind="model",
        settings_read=(
            *under("data", "columns", "target", "task"),
            *under("evaluate"),
            "seed",
            "tracking_uri",
        ),
    ),
    StepSpec(
        "register",
        "pipeline.steps.register",
        "Register the model version as challenger; promote to champion if the gate passes.",
        inputs=("preprocess.test_raw", "train", "evaluate"),
        kind="model",
        settings_read=(
            *under("data", "name", "columns", "target", "task"),
            *under("gate"),
            "model_name",
            "tracking_uri",
        ),
    ),
)


def __getattr__(name: str) -> tuple[str, ...]:
    """``STEP_NAMES`` and ``DATA_STEPS``, derived from :data:`STEPS` each time they are read, so
    that nothing holds a copy of the registry: whoever reads ``pipeline.steps.STEP_NAMES`` sees
    the steps registered now (a step added to ``STEPS`` reaches every consumer)."""
    if name == "STEP_NAMES":
        return tuple(step.name for step in STEPS)
    if name == "DATA_STEPS":
        return tuple(step.name for step in STEPS if step.kind == "data")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_step(name: str) -> StepSpec:
    """Return the step called ``name`` or raise ``KeyError`` listing the valid names."""
    for step in STEPS:
        if step.name == name:
            return step
    raise KeyError(f"unknown step {name!r}; valid steps: {', '.join(s.name for s in STEPS)}")


def load_step(name: str) -> Callable[[StepContext], StepResult]:
    """Import the step's module and return its ``run`` function."""
    module = importlib.import_module(get_step(name).module)
    return module.run


def describe(name: str, summary: dict[str, Any]) -> str:
    """One line about a step's result, from its module's ``describe(summary)`` ("done" without)."""
    module = importlib.import_module(get_step(name).module)
    function = getattr(module, "describe", None)
    return function(summary) if function is not None else "done"
