"""The whole pipeline on embedded defaults (SQLite, local folders), through the real CLI, checked
with the tools a user would use: the ``mlflow`` client and the ``dvc`` command."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import FAST, REPO, CliResult, clean_env, run_cli

pytestmark = pytest.mark.slow


@dataclass
class TwoRuns:
    home: Path
    first: CliResult
    second: CliResult


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    home = tmp_path_factory.mktemp("embedded") / "home"
    workdir = tmp_path_factory.mktemp("cwd")
    first = run_cli(["run", *FAST], home, cwd=workdir)
    assert first.returncode == 0, first.stderr[-4000:]
    # --no-cache: the same data and settings again would reuse every step (tests/e2e/test_step_cache.py);
    # here a second model is trained, for the gate to judge.
    second = run_cli(["run", *FAST, "--no-cache"], home, cwd=workdir)
    assert second.returncode == 0, second.stderr[-4000:]
    # Nothing is written into the working directory or the source tree: state lives in the home.
    assert list(workdir.iterdir()) == []
    return TwoRuns(home, first, second)


@pytest.fixture(scope="module")
def client(two_runs: TwoRuns):
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{two_runs.home / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # an in-process test before this one may have left its own
    yield MlflowClient(tracking_uri=uri, registry_uri=uri)
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_first_run_prints_run_version_alias_and_ui_command(two_runs: TwoRuns) -> None:
    summary = two_runs.first.json
    assert summary["run_id"].startswith("local-")
    assert summary["model_name"] == "penguins"
    assert summary["version"] == "1"
    assert set(summary["aliases"]) == {"challenger", "champion"}
    assert summary["promoted"] is True
    assert "pipeline ui" in two_runs.first.stderr
    assert summary["run_id"] in two_runs.first.stderr


def test_second_run_registers_version_two_and_the_gate_says_why(two_runs: TwoRuns) -> None:
    summary = two_runs.second.json
    assert summary["version"] == "2"
    assert summary["run_id"] != two_runs.first.json["run_id"]
    # Same data, same seed: the same score, which does not beat the champion by the margin.
    assert summary["promoted"] is False
    assert "does not beat champion v1" in summary["reason"]
    assert "margin" in summary["reason"]
    assert "does not beat champion v1" in two_runs.second.stderr


def test_mlflow_client_sees_params_metrics_model_plots_docs_and_lineage(two_runs: TwoRuns, client) -> None:
    import mlflow

    version = client.get_model_version_by_alias("penguins", "champion")
    assert str(version.version) == "1"
    run = client.get_run(version.run_id)
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["train.max_epochs"] == "12"
    assert params["data.target"] == "species"
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert len(history) == int(metrics["epochs_trained"]) >= 1
    assert sorted(m.step for m in history) == list(range(1, len(history) + 1))
    for key in ("test_accuracy", "test_macro_f1", "test_roc_auc", "test_log_loss", "baseline_macro_f1"):
        assert key in metrics, key
    assert metrics["test_macro_f1"] > metrics["baseline_macro_f1"]

    for key in (
        "pipeline.run_id",
        "data.raw.sha256",
        "data.raw.dvc_md5",
        "data.processed.dvc_md5",
        "feature_set.version",
        "code.git_commit",
        "seed",
        "validation.success",
        "env.torch",
        "env.mlflow",
    ):
        assert tags.get(key), key
    assert tags["pipeline.run_id"] == two_runs.first.json["run_id"]
    assert tags["validation.success"] == "true"

    def files(path: str) -> set[str]:
        return {item.path for item in client.list_artifacts(run.info.run_id, path)}

    assert "evaluation/plots/confusion_matrix.png" in files("evaluation/plots")
    assert {"evaluation/plots/roc_curve.png", "evaluation/plots/pr_curve.png"} <= files("evaluation/plots")
    assert "validation/data_docs/index.html" in files("validation/data_docs")
    assert "validation/validation.json" in files("validation")
    assert {"lineage/dvc/raw.dvc", "lineage/dvc/processed.dvc"} <= files("lineage/dvc")
    assert "config/resolved_config.yaml" in files("config")
    assert "preprocessing/transformer.json" in files("preprocessing")

    info = mlflow.models.get_model_info(f"models:/penguins/{version.version}")
    assert info.signature is not None
    assert "island" in info.signature.inputs.input_names()
    assert info.saved_input_example_info is not None

    model = mlflow.pyfunc.load_model("models:/penguins@champion")
    import pandas as pd

    rows = pd.DataFrame(
        {
            "island": ["Biscoe", "Dream"],
            "bill_length_mm": [47.5, 39.0],
            "bill_depth_mm": [14.8, 18.5],
            "flipper_length_mm": [215.0, 190.0],
            "body_mass_g": [5200.0, 3700.0],
            "sex": ["male", None],
        }
    )
    predictions = model.predict(rows.astype({"island": object, "sex": object}))
    assert list(predictions["prediction"]) == ["Gentoo", "Adelie"]


def test_gate_decision_and_lineage_are_tags_on_every_version(two_runs: TwoRuns, client) -> None:
    first = client.get_model_version("penguins", "1")
    second = client.get_model_version("penguins", "2")
    assert first.tags["gate.decision"] == "promoted"
    assert second.tags["gate.decision"] == "rejected"
    assert second.tags["gate.champion_version"] == "1"
    assert second.tags["data.raw.dvc_md5"] == first.tags["data.raw.dvc_md5"]
    assert "challenger" in second.aliases


def test_dvc_command_fetches_the_exact_raw_data_of_a_version(
    two_runs: TwoRuns, client, tmp_path: Path
) -> None:
    dvc = shutil.which("dvc", path=os.path.dirname(sys.executable)) or shutil.which("dvc")
    assert dvc, "the dvc command ships with the package's dependencies"
    version = client.get_model_version_by_alias("penguins", "champion")
    target = tmp_path / "fetch"
    target.mkdir()
    import mlflow

    dvc_file = Path(
        mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path="lineage/dvc/raw.dvc", dst_path=str(tmp_path)
        )
    )
    env = clean_env(two_runs.home, DVC_NO_ANALYTICS="1")

    def dvc_run(*args: str) -> None:
        proc = subprocess.run([dvc, *args], cwd=target, env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr

    dvc_run("init", "--no-scm")
    dvc_run("remote", "add", "-d", "store", str(two_runs.home / "dvc-remote"))
    shutil.copyfile(dvc_file, target / "penguins.csv.dvc")
    dvc_run("pull", "penguins.csv.dvc")

    run = client.get_run(version.run_id)
    snapshot = _published(two_runs.home, run.data.tags["pipeline.run_id"], "ingest", "penguins.csv")
    assert filecmp.cmp(target / "penguins.csv", snapshot, shallow=False)
    import hashlib

    assert (
        hashlib.sha256((target / "penguins.csv").read_bytes()).hexdigest() == run.data.tags["data.raw.sha256"]
    )


def test_fetch_data_command_and_show_print_the_lineage(two_runs: TwoRuns, tmp_path: Path) -> None:
    shown = run_cli(["show", "penguins@champion", "--json"], two_runs.home)
    assert shown.returncode == 0, shown.stderr
    lineage = json.loads(shown.stdout)
    assert lineage["model"]["version"] == "1"
    assert lineage["data"]["data.raw.dvc_md5"]
    assert lineage["gate"]["decision"] == "promoted"
    fetched = run_cli(["fetch-data", "penguins/2", "--dest", str(tmp_path / "v2")], two_runs.home)
    assert fetched.returncode == 0, fetched.stderr
    path = Path(fetched.stdout.strip().splitlines()[-1])
    assert path.read_bytes().startswith(b"species,island")


def test_steps_publish_manifests_and_each_step_runs_alone(two_runs: TwoRuns) -> None:
    run_id = two_runs.first.json["run_id"]
    again = run_cli(["step", "evaluate", "--run-id", run_id, *FAST], two_runs.home)
    assert again.returncode == 0, again.stderr
    summary = again.json
    assert summary["step"] == "evaluate" and summary["status"] == "succeeded"
    assert summary["outputs"]["evaluation"].endswith("evaluation.json")
    attempts = list((two_runs.home / "artifacts" / "runs" / run_id / "evaluate" / "attempts").iterdir())
    assert len(attempts) == 1, "a re-run replaces its outputs, older attempts are removed"


def _published(home: Path, run_id: str, step: str, name: str) -> Path:
    manifest = json.loads((home / "artifacts" / "runs" / run_id / step / "manifest.json").read_text())
    uri = next(o["uri"] for o in manifest["outputs"].values() if o["uri"].endswith(name))
    return Path(uri)


def test_no_source_tree_pollution() -> None:
    generated = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--ignored", "--", "pipeline"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "mlruns" not in generated and "mlflow.db" not in generated and ".dvc" not in generated


def test_reproduce_fetches_the_data_retrains_and_matches(two_runs: TwoRuns) -> None:
    before = sorted(p.name for p in (two_runs.home / "artifacts" / "runs").iterdir())
    result = run_cli(["reproduce", "penguins@champion", *FAST], two_runs.home)
    assert result.returncode == 0, result.stderr[-3000:]
    report = result.json
    assert report["matches"] is True, report
    assert report["version"] == "1"
    assert report["reproduced"]["test_macro_f1"] == report["original"]["test_macro_f1"]
    # The reproduction ran in a sandbox: no new run, version or feature set in the real stores.
    assert sorted(p.name for p in (two_runs.home / "artifacts" / "runs").iterdir()) == before
