"""The shipped regression example (`pipeline/configs/diabetes.yaml`, scikit-learn's bundled diabetes
data) end to end: a regression model is registered with rmse/mae/r2 on its run, and the gate
compares rmse as lower-is-better: a lower error beats the champion, a higher one is rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.names import CHAMPION_SCORE, CHAMPION_VERSION, DECISION, GATE_METRIC, GATE_SCORE
from tests.conftest import REPO, run_cli

pytestmark = pytest.mark.slow

CONFIG = ["--config", str(REPO / "pipeline" / "configs" / "diabetes.yaml")]
QUICK = ["--set", "evaluate.permutation_repeats=1"]
# A deliberately weak model (a few epochs) measured against the training mean instead of the
# config's ridge baseline, so that it can become a first champion that the real model then beats.
WEAK = ["--set", "train.max_epochs=3", "--set", "evaluate.baseline=majority"]


def test_diabetes_regression_is_registered_and_gated_lower_is_better(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runs = []
    # weak champion, the config as shipped, weak again (trained again: --no-cache)
    for extra in (WEAK, [], [*WEAK, "--no-cache"]):
        result = run_cli(["run", *CONFIG, *QUICK, *extra], home)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.json["model_name"] == "diabetes"
        runs.append(result.json)

    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = [client.get_model_version("diabetes", r["version"]) for r in runs]
    assert [str(v.version) for v in versions] == ["1", "2", "3"]
    for version in versions:
        run = client.get_run(version.run_id)
        assert run.data.params["data.task"] == "regression"
        assert {"test_rmse", "test_mae", "test_r2"} <= set(run.data.metrics), sorted(run.data.metrics)
        assert version.tags[GATE_METRIC] == "rmse"
    shipped = client.get_run(versions[1].run_id).data.metrics
    assert shipped["test_r2"] > 0.3, shipped  # it learned something: the shipped example is a real model
    assert shipped["test_rmse"] < shipped["baseline_rmse"], shipped

    first, second, third = (v.tags for v in versions)
    assert first[DECISION] == "promoted", runs[0]["reason"]  # the first model, under the rmse ceiling

    # the shipped config's model has the LOWER rmse: promoted over the weak champion
    assert second[DECISION] == "promoted", runs[1]["reason"]
    assert second[CHAMPION_VERSION] == "1"
    assert float(second[GATE_SCORE]) < float(second[CHAMPION_SCORE]) - 0.5, second  # margin 0.5, downwards

    # the weak model again has the HIGHER rmse: rejected, the shipped model stays champion
    assert third[DECISION] == "rejected", runs[2]["reason"]
    assert third[CHAMPION_VERSION] == "2"
    assert float(third[GATE_SCORE]) > float(third[CHAMPION_SCORE]), third
    assert "does not beat champion v2" in runs[2]["reason"], runs[2]["reason"]
    assert str(client.get_model_version_by_alias("diabetes", "champion").version) == "2"


def test_unknown_sklearn_dataset_is_a_configuration_error_naming_the_bundled_ones() -> None:
    from pipeline.errors import ConfigError
    from pipeline.settings import S3Settings, SourceSettings
    from pipeline.sources.files import _fetch_file

    with pytest.raises(ConfigError) as raised:
        _fetch_file(SourceSettings(uri="sklearn://boston"), S3Settings())
    assert "unknown scikit-learn dataset 'boston'" in str(raised.value)
    assert "sklearn://diabetes" in str(raised.value)
