"""Artifacts are data, end to end: whoever can write to the artifact store or the registry cannot
make a later run execute code, and a champion whose files changed after training is not loaded.

One pipeline home: run 1 makes the champion; then a pickle is planted as run 1's training
checkpoint and its train step re-run; then the champion's stored code is replaced and a new run
registers; then the champion's weights are replaced and another run registers.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, CliResult, run_cli

pytestmark = pytest.mark.slow

RUN_ID = "hostile-1"
NAME = "penguins"


class Planted:
    """Creates ``marker`` when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def planted_torch_file(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save({"model": Planted(marker)}, buffer)
    return buffer.getvalue()


@dataclass
class Home:
    path: Path
    first: CliResult

    def client(self):
        from mlflow import MlflowClient

        uri = f"sqlite:///{self.path / 'mlflow.db'}"
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def champion_files(self) -> Path:
        """Where the registry keeps version 1's files (its logged model's artifacts)."""
        return Path(self.client().get_model_version_download_uri(NAME, "1").removeprefix("file://"))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    path = tmp_path_factory.mktemp("hostile") / "home"
    first = run_cli(["run", "--run-id", RUN_ID, *FAST], path)
    assert first.returncode == 0, first.stderr[-4000:]
    assert first.json["version"] == "1" and first.json["promoted"] is True
    return Home(path, first)


def test_a_pickle_planted_as_the_training_checkpoint_never_runs(
    home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.cli import load_settings
    from pipeline.steps.train import training_fingerprint

    for key in list(os.environ):
        if key.startswith(("PIPELINE_", "MLFLOW_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIPELINE_HOME", str(home.path))
    settings = load_settings(None, FAST[1::2])
    features = json.loads((home.path / "artifacts/runs" / RUN_ID / "features/manifest.json").read_text())
    fingerprint = training_fingerprint(settings, features["summary"]["content_hash"])

    marker = tmp_path / "pwned"
    payload = planted_torch_file(marker)
    checkpoints = home.path / "artifacts/runs" / RUN_ID / "train/_checkpoints"
    checkpoints.mkdir(parents=True)
    for name in ("state.pt", "state.alt.pt"):
        (checkpoints / name).write_bytes(payload)
    # A JSON document that passes every check: only torch.load(weights_only=True) stands in the way.
    mlflow_run_id = home.first.json["mlflow_run_id"]
    (checkpoints / "state.json").write_text(
        json.dumps(
            {
                "format": 1,
                "fingerprint": fingerprint,
                "mlflow_run_id": mlflow_run_id,
                "tensors": "state.pt",
                "tensors_sha256": hashlib.sha256(payload).hexdigest(),
                "state": {
                    "epoch": 3,
                    "best_val_loss": 0.5,
                    "best_epoch": 3,
                    "epochs_without_improvement": 0,
                    "history": [],
                    "stopped_early": False,
                },
            }
        )
    )

    result = run_cli(["step", "train", "--run-id", RUN_ID, *FAST], home.path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert not marker.exists(), "the planted checkpoint was unpickled"
    assert "refused by torch.load(weights_only=True)" in result.stderr
    assert "resuming training" not in result.stderr
    assert not checkpoints.exists()


def test_tampered_champion_code_never_runs_and_the_champion_is_scored_from_its_data_files(
    home: Home, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    hostile = f"open({str(marker)!r}, 'w').close()\n"
    files = home.champion_files()
    for code_file in ("mlflow_model.py", "code/pipeline/serving.py", "code/pipeline/__init__.py"):
        path = files / code_file
        assert path.is_file(), code_file
        path.write_text(hostile + path.read_text())

    result = run_cli(["run", *FAST, "--no-cache"], home.path)  # a new model, scored against the champion
    assert result.returncode == 0, result.stderr[-4000:]
    assert not marker.exists(), "code stored with the champion ran"
    summary = result.json
    assert summary["promoted"] is False
    assert "does not beat champion v1" in summary["reason"]
    assert "could not be scored" not in summary["reason"], "the champion was scored on this snapshot"
    version = home.client().get_model_version(NAME, summary["version"])
    recorded = home.client().get_model_version(NAME, "1").tags
    assert version.tags["gate.champion_score"] == recorded["gate.score"], "same data and seed: same score"
    assert version.tags["model.files_sha256"] == recorded["model.files_sha256"]


def test_a_champion_whose_weights_changed_is_not_loaded(home: Home, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (home.champion_files() / "artifacts/model.pt").write_bytes(planted_torch_file(marker))

    result = run_cli(["run", *FAST, "--no-cache"], home.path)  # a new model, scored against the champion
    assert result.returncode == 0, result.stderr[-4000:]
    assert not marker.exists()
    reason = result.json["reason"]
    assert f"{NAME} v1: artifacts/model.pt failed its digest check" in reason
    assert "its recorded score was used" in reason
    assert "the champion is not loaded" in result.stderr
    # The challenger itself was loaded from its own, intact, files.
    assert home.client().get_model_version(NAME, result.json["version"]).tags["gate.decision"] == "rejected"
