"""The data a sweep's trials share: the data steps of its run, loaded once per worker."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline import steps
from pipeline.names import (
    DATASET_TAG,
    FEATURE_SET_HASH_TAG,
    FEATURE_SET_NAME_TAG,
    FEATURE_SET_VERSION_TAG,
    GIT_COMMIT_TAG,
    PROCESSED_DVC_MD5_TAG,
    RAW_DVC_MD5_TAG,
    TASK_TAG,
)
from pipeline.settings import Settings
from pipeline.steps import StepSpec

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.model import Split
    from pipeline.storage import ArtifactStore
    from pipeline.transform import TabularTransformer

logger = logging.getLogger(__name__)

# What the trials read from the data steps' outputs (declared like a step's, and enforced alike).
TRIAL_INPUTS = StepSpec(
    "sweep", "pipeline.sweep", "trials", inputs=("features", "version", "preprocess.transformer")
)


def run_data_steps(settings: Settings, run_id: str) -> dict[str, Any]:
    """The data steps (ingest .. version) for the run id, keeping what already succeeded: the
    local runner's own resume loop, stopped after the last data step."""
    from pipeline.runner import run_pipeline

    def log(name: str, event: str, manifest: Any) -> None:
        if event != "succeeded":
            done = {"kept": "already done (kept)", "reused": "reused from an earlier run (step cache)"}
            logger.info("step %s of run %s: %s", name, run_id, done.get(event, "running"))

    return run_pipeline(settings, run_id, stop_after=steps.DATA_STEPS[-1], on_step=log)


@dataclass
class TrialData:
    splits: dict[str, Split]
    transformer: TabularTransformer
    tags: dict[str, str]  # which data the trials saw


def load_trial_data(settings: Settings, run_id: str, store: ArtifactStore) -> TrialData:
    from pipeline.context import StepContext
    from pipeline.splits import read_splits
    from pipeline.tracking import git_commit
    from pipeline.transform import TabularTransformer

    with store.workdir(run_id, "sweep") as workdir:
        ctx = StepContext(
            settings=settings, run_id=run_id, step="sweep", store=store, workdir=workdir, spec=TRIAL_INPUTS
        )
        features = ctx.upstream("features").summary
        sizes = ctx.upstream("preprocess").summary.get("rows_per_split")
        version = ctx.upstream("version").summary
        transformer = TabularTransformer.from_json(ctx.input_path("preprocess", "transformer").read_text())
    splits = read_splits(settings.resolved_feature_store_url, features, transformer, sizes)
    tags = {
        DATASET_TAG: settings.data.name,
        TASK_TAG: settings.data.task,
        RAW_DVC_MD5_TAG: version["raw"]["md5"],
        PROCESSED_DVC_MD5_TAG: version["processed"]["md5"],
        FEATURE_SET_NAME_TAG: features["feature_set"],
        FEATURE_SET_VERSION_TAG: str(features["feature_set_version"]),
        FEATURE_SET_HASH_TAG: features["content_hash"],
        "seed": str(settings.seed),
        GIT_COMMIT_TAG: git_commit(settings) or "unknown",
    }
    return TrialData(splits, transformer, tags)
