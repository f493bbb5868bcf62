"""Step 5, version: track the raw snapshot and the processed features with DVC and push them.

The step publishes the two ``.dvc`` files (md5, size, path); the train step records them on the
MLflow run, so the exact bytes behind any model version can be fetched with the ``dvc`` command.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from pipeline.context import StepContext, StepResult
from pipeline.dvcstore import track_and_push
from pipeline.settings import redact_url

logger = logging.getLogger(__name__)


def run(ctx: StepContext) -> StepResult:
    settings = ctx.settings
    files = {
        "raw": ctx.input_path("ingest", "raw"),
        "processed": ctx.input_path("preprocess", "features"),
    }
    remote = settings.resolved_dvc_remote
    tracked = track_and_push(files, ctx.scratch / "dvc", remote, settings.s3)
    outputs = {}
    summary = {"remote": redact_url(remote)}
    for name, info in tracked.items():
        target = ctx.staging / f"{name}.dvc"
        shutil.copyfile(info["dvc_file"], target)
        outputs[f"{name}_dvc"] = target.name
        summary[name] = {"md5": info["md5"], "size": info["size"], "path": info["path"]}
    return StepResult(outputs=outputs, summary=summary)


def describe(summary: dict[str, Any]) -> str:
    """One line for the progress display of ``pipeline run``."""
    return f"raw md5 {summary.get('raw', {}).get('md5', '')[:12]}, pushed to {summary.get('remote')}"
