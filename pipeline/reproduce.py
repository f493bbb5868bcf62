"""Reproduce a registered model version: fetch exactly its raw data through DVC, retrain with the
recorded configuration in a scratch sandbox, and compare the test metrics.

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

import yaml

from pipeline.errors import BadInputError
from pipeline.names import RAW_SHA256_TAG
from pipeline.settings import Settings

logger = logging.getLogger(__name__)

RECORDED_SECTIONS = ("data", "preprocess", "train", "evaluate", "gate", "seed")


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
    import mlflow

    from pipeline.lineage import fetch_version_data
    from pipeline.runner import run_pipeline
    from pipeline.tracking import configure

    client = configure(settings)
    run = client.get_run(version.run_id)
    original = {k: v for k, v in run.data.metrics.items() if k.startswith("test_")}
    expected_sha = run.data.tags.get(RAW_SHA256_TAG)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        root = Path(tmp)
        config_path = Path(
            mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path="config/resolved_config.yaml", dst_path=str(root)
            )
        )
        recorded = yaml.safe_load(config_path.read_text())
        data_file = fetch_version_data(settings, version, root / "data", "raw")
        sha = hashlib.sha256(data_file.read_bytes()).hexdigest()
        if expected_sha and sha != expected_sha:
            raise BadInputError(
                f"fetched data {data_file.name} has sha256 {sha}, the run recorded {expected_sha}"
            )
        overrides = {k: recorded[k] for k in RECORDED_SECTIONS if k in recorded}
        overrides["data"]["source"]["uri"] = str(data_file)
        overrides["data"]["source"]["kind"] = "file"
        sandbox = Settings.load(
            settings.config_file,
            **overrides,
            home=root / "home",
            tracking_uri=f"sqlite:///{root / 'home' / 'mlflow.db'}",
            artifact_root=str(root / "home" / "artifacts"),
            feature_store_url=f"sqlite:///{root / 'home' / 'features.db'}",
            dvc_remote=str(root / "home" / "dvc-remote"),
        )
        run_id = f"reproduce-{version.name}-v{version.version}"
        manifests = run_pipeline(sandbox, run_id, stop_after="evaluate")
        reproduced = {f"test_{k}": v for k, v in manifests["evaluate"].summary["test"].items()}
        configure(settings)  # point MLflow back at the real store
    return Reproduction(version.name, str(version.version), sha, original, reproduced, tolerance)
