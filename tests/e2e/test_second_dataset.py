"""The same pipeline, pointed by configuration alone at another real dataset with another target."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow


def test_wine_dataset_runs_end_to_end_by_configuration_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = run_cli(
        [
            "run",
            "--config",
            str(REPO / "pipeline" / "configs" / "wine.yaml"),
            "--set",
            "train.max_epochs=40",
            "--set",
            "evaluate.permutation_repeats=1",
        ],
        home,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = result.json
    assert summary["model_name"] == "wine"
    assert summary["promoted"] is True, summary["reason"]

    from mlflow import MlflowClient

    client = MlflowClient(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}", registry_uri=f"sqlite:///{home / 'mlflow.db'}"
    )
    version = client.get_model_version_by_alias("wine", "champion")
    run = client.get_run(version.run_id)
    assert run.data.params["data.target"] == "cultivar"
    assert run.data.metrics["test_macro_f1"] > 0.85
    assert run.data.tags["data.raw.rows"] == "178"


def test_regression_task_by_configuration_only(tmp_path: Path) -> None:
    """Penguin body mass as a regression target: a different task, still no code change."""
    home = tmp_path / "home"
    result = run_cli(
        [
            "run",
            "--set",
            "data.name=penguin_mass",
            "--set",
            "data.target=body_mass_g",
            "--set",
            "data.task=regression",
            "--set",
            "data.columns.species.role=feature",
            "--set",
            "data.columns.body_mass_g.role=target",
            "--set",
            "data.columns.body_mass_g.max_null_fraction=0.01",
            "--set",
            "evaluate.primary_metric=rmse",
            "--set",
            "train.max_epochs=60",
            "--set",
            "gate.min_score=null",
            "--set",
            "evaluate.permutation_repeats=1",
        ],
        home,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    from mlflow import MlflowClient

    client = MlflowClient(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}", registry_uri=f"sqlite:///{home / 'mlflow.db'}"
    )
    run = client.get_run(client.get_model_version("penguin_mass", "1").run_id)
    assert run.data.tags["evaluate.primary_metric"] == "rmse"
    assert run.data.metrics["test_rmse"] < run.data.metrics["baseline_rmse"]
    assert run.data.metrics["test_r2"] > 0.5
