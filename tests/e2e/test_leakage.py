"""Target leakage through the real CLI: a declared feature that gives the target away stops the
run at preprocess (exit 65, the column and its evidence named, nothing written downstream, the
champion untouched), for classification and regression; downgraded to a warning, it trains and
the warning is recorded on the MLflow run."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.errors import EXIT_BAD_INPUT
from pipeline.names import (
    LEAKAGE_CHECKED_METRIC,
    LEAKAGE_DOWNGRADED_TAG,
    LEAKAGE_MAX_SCORE_COLUMN_TAG,
    LEAKAGE_MAX_SCORE_METRIC,
    LEAKAGE_STATUS_TAG,
    LEAKAGE_WARNED_METRIC,
    LEAKAGE_WARNED_TAG,
)
from pipeline.sources import resolve_package_uri
from tests.conftest import FAST, run_cli

pytestmark = pytest.mark.slow

COPY = ["--set", 'data.columns.species_copy={"type": "category"}']


def client(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def state(home: Path) -> dict:
    """What a refused input must leave as it was: registered versions and aliases, feature-set
    versions, and the published steps downstream of validation."""
    import sqlalchemy as sa

    mlflow = client(home)
    models = {
        m.name: (
            sorted(str(v.version) for v in mlflow.search_model_versions(f"name = '{m.name}'")),
            sorted(m.aliases),
        )
        for m in mlflow.search_registered_models()
    }
    features = []
    if (home / "features.db").exists():
        engine = sa.create_engine(f"sqlite:///{home / 'features.db'}")
        with engine.connect() as connection:
            if sa.inspect(connection).has_table("feature_set_versions"):
                features = sorted(
                    map(
                        tuple,
                        connection.execute(sa.text("SELECT feature_set, version FROM feature_set_versions")),
                    )
                )
        engine.dispose()
    runs = home / "artifacts" / "runs"
    downstream = sorted(
        f"{run.name}/{step}"
        for run in (runs.iterdir() if runs.is_dir() else [])
        for step in ("preprocess", "features", "version", "train", "evaluate", "register")
        if (run / step / "manifest.json").exists()
    )
    return {"models": models, "features": features, "downstream": downstream}


def assert_refused(result, column: str, rule: str, source: Path) -> None:
    output = result.stderr
    assert result.returncode == EXIT_BAD_INPUT, output[-3000:]
    for text in (f"column {column!r}", f"rule: {rule}", f"data.columns.{column}.leakage=warn", str(source)):
        assert text in output, f"{text!r} not in:\n{output[-3000:]}"
    assert output.strip().splitlines()[-1].startswith("pipeline: error:")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("leakage") / "home"


@pytest.fixture(scope="module")
def leaky_penguins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    frame = pd.read_csv(
        io.BytesIO(resolve_package_uri("pkg://palmerpenguins/data/penguins.csv").read_bytes())
    )
    frame["species_copy"] = frame["species"]
    path = tmp_path_factory.mktemp("data") / "penguins_leaky.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_feature_copying_the_class_is_refused_and_kept_when_downgraded(
    home: Path, leaky_penguins: Path
) -> None:
    source = ["--set", f"data.source.uri={leaky_penguins}"]
    refused = run_cli(["run", *FAST, *source, *COPY], home)
    assert_refused(refused, "species_copy", "predicts-target", leaky_penguins)
    assert state(home) == {"models": {}, "features": [], "downstream": []}

    kept = run_cli(["run", *FAST, *source, *COPY, "--set", "data.columns.species_copy.leakage=warn"], home)
    assert kept.returncode == 0, kept.stderr[-3000:]
    assert "'species_copy'" in kept.stderr and "kept because" in kept.stderr
    mlflow = client(home)
    run = mlflow.get_run(mlflow.get_model_version("penguins", "1").run_id)
    tags, metrics = run.data.tags, run.data.metrics
    assert tags[LEAKAGE_STATUS_TAG] == "warned"
    assert tags[LEAKAGE_WARNED_TAG] == "species_copy"
    assert tags[LEAKAGE_DOWNGRADED_TAG] == "species_copy=warn"
    assert tags[LEAKAGE_MAX_SCORE_COLUMN_TAG] == "species_copy"
    assert metrics[LEAKAGE_WARNED_METRIC] == 1 and metrics[LEAKAGE_MAX_SCORE_METRIC] == 1.0
    assert metrics[LEAKAGE_CHECKED_METRIC] == 7  # six real features and the copy
    assert run.data.params["data.leakage.max_score"] == "0.99"

    # Refused again with a champion in place: nothing moves.
    before = state(home)
    assert before["models"]["penguins"][0] == ["1"] and "champion" in before["models"]["penguins"][1]
    assert_refused(
        run_cli(["run", *FAST, *source, *COPY], home), "species_copy", "predicts-target", leaky_penguins
    )
    assert state(home) == before


def test_a_regression_feature_scaling_the_target_is_refused(home: Path, tmp_path: Path) -> None:
    """The diabetes data (scikit-learn) with the target times 100 as a feature."""
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    frame["progression_x100"] = frame["progression"] * 100
    source = tmp_path / "diabetes_leaky.csv"
    frame.to_csv(source, index=False)
    columns = {name: {"type": "float"} for name in frame.columns}
    columns["progression"]["role"] = "target"
    config = tmp_path / "diabetes.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {
                    "name": "diabetes",
                    "source": {"uri": str(source)},
                    "target": "progression",
                    "task": "regression",
                    "min_rows": 100,
                    "columns": columns,
                },
                "evaluate": {"primary_metric": "rmse"},
            }
        )
    )
    before = state(home)
    result = run_cli(["run", "--config", str(config), *FAST], home)
    assert_refused(result, "progression_x100", "predicts-target", source)
    assert "R²" in result.stderr or "Spearman" in result.stderr
    for honest in ("'bmi'", "'s5'"):
        assert honest not in result.stderr.split("pipeline: error:")[-1]
    assert state(home) == before
