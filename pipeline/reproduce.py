"""Reproduce a registered model version: fetch exactly its raw data through DVC, retrain with the
recorded configuration (its MLflow run's resolved config: dataset, contract, task, training,
seed; nothing of the default or current config) in a scratch sandbox, and compare the test
metrics.

The sandbox (its own home: SQLite tracking, feature store, artifacts) keeps the reproduction
away from the real registry, feature store and champion; only the DVC remote is read.
"""

from __future__ import annotations

import hashlib
import logging
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import BadInputError
from pipeline.names import RAW_SHA256_TAG, RESOLVED_CONFIG_ARTIFACT, UPSTREAM_STEPS_ARTIFACT
from pipeline.recorded import in_training_order, mlflow_run_config, rebuild
from pipeline.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Reproduction:
    model: str
    version: str
    data_sha256: str
    original: dict[str, float]
    reproduced: dict[str, float]
    tolerance: float

    @property
    def differences(self) -> dict[str, float]:
        return {
            k: abs(self.reproduced.get(k, math.nan) - v)
            for k, v in self.original.items()
            if not abs(self.reproduced.get(k, math.nan) - v) <= self.tolerance
        }

    @property
    def matches(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "data_sha256": self.data_sha256,
            "original": self.original,
            "reproduced": self.reproduced,
            "tolerance": self.tolerance,
            "matches": self.matches,
            "differences": self.differences,
        }


def reproduce(
    settings: Settings, version, tolerance: float = 1e-6, workdir: Path | None = None
) -> Reproduction:
    from pipeline.lineage import fetch_version_data
    from pipeline.runner import run_pipeline
    from pipeline.tracking import configure

    client = configure(settings)
    run = client.get_run(version.run_id)
    original = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    expected_sha = run.data.tags.get(RAW_SHA256_TAG)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        recorded = mlflow_run_config(version.run_id, str(root / "record"))
        if recorded is None:
            raise BadInputError(
                f"{version.name} v{version.version}: its MLflow run {version.run_id} recorded no "
                f"{RESOLVED_CONFIG_ARTIFACT}: it cannot be reproduced from its record"
            )
        recorded = in_training_order(recorded, _trained_features(version.run_id, root / "record"))
        data_file = fetch_version_data(settings, version, root / "data", "raw")
        sha = hashlib.sha256(data_file.read_bytes()).hexdigest()
        if expected_sha and sha != expected_sha:
            raise BadInputError(
                f"fetched data {data_file.name} has sha256 {sha}, the run recorded {expected_sha}"
            )
        source = dict(recorded["data"]["source"], uri=str(data_file), kind="file")
        sandbox = rebuild(
            {**recorded, "data": {**recorded["data"], "source": source}},
            settings,
            home=root / "home",
            tracking_uri=f"sqlite:///{root / 'home' / 'mlflow.db'}",
            artifact_root=str(root / "home" / "artifacts"),
            feature_store_url=f"sqlite:///{root / 'home' / 'features.db'}",
            feature_store_password=None,
            dvc_remote=str(root / "home" / "dvc-remote"),
        )
        run_id = f"reproduce-{version.name}-v{version.version}"
        manifests = run_pipeline(sandbox, run_id, stop_after="evaluate", use_cache=False)  # retrain, always
        reproduced = {f"test_{k}": v for k, v in manifests["evaluate"].summary["test"].items()}
        configure(settings)  # point MLflow back at the real store
    return Reproduction(version.name, str(version.version), sha, original, reproduced, tolerance)


def _trained_features(run_id: str, dst: Path) -> list[str]:
    """The model's input columns in order, from the preprocess summary recorded on the run."""
    import json

    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=UPSTREAM_STEPS_ARTIFACT, dst_path=str(dst)
        )
        summary = json.loads(Path(path).read_text())["preprocess"]
        return [*summary["numeric_features"], *summary["categorical_features"]]
    except (MlflowException, OSError, ValueError, KeyError, TypeError):
        return []
