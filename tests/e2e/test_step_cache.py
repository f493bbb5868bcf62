"""The step cache on the embedded defaults, through the real CLI: a second `pipeline run` on the same
data and configuration reuses every step and registers nothing; a setting only the train step reads
re-runs train, evaluate and register on the reused data steps; `--no-cache` re-runs everything.

The first run happens in this process with every settings read recorded (tests/settings_reads.py):
each step reads only settings its StepSpec declares (or that pipeline.cache exempts), so no
setting a step really reads can change without changing its key."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline import cache, steps
from pipeline.names import CACHE_REUSED_FROM_PREFIX
from tests.conftest import FAST, CliResult, run_cli
from tests.settings_reads import recording

pytestmark = pytest.mark.slow

FIRST = "first-run"
QUICK = [*FAST, "--set", "train.max_epochs=4"]  # the model's quality is not what is tested here
CHANGED = ["--set", "train.learning_rate=0.002"]  # read by the train step only


@dataclass
class Runs:
    home: Path
    reads: dict[str, set[str]]
    cached: CliResult
    changed: CliResult
    uncached: CliResult
    rerun: CliResult


def in_process_recorded_run(home: Path) -> dict[str, set[str]]:
    """``pipeline run --run-id first-run`` with QUICK, in this process, recording what each step reads."""
    from pipeline import runner
    from pipeline.cli import parse_overrides
    from pipeline.settings import Settings

    reads: dict[str, set[str]] = {}
    real = runner.load_step

    def load_step(name: str):
        function = real(name)

        def recorded(ctx):
            with recording(ctx.settings) as found:
                try:
                    return function(ctx)
                finally:
                    reads[name] = set(found)

        return recorded

    with pytest.MonkeyPatch.context() as patch:
        for key in list(os.environ):
            if key.startswith(("PIPELINE_", "MLFLOW_", "AWS_", "MLP_")):
                patch.delenv(key)
        patch.setenv("PIPELINE_HOME", str(home))
        patch.chdir(home)
        patch.setattr(runner, "load_step", load_step)
        settings = Settings.load(**parse_overrides([item for item in QUICK if item != "--set"]))
        runner.run_pipeline(settings, FIRST)
    return reads


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    home = tmp_path_factory.mktemp("cache") / "home"
    home.mkdir()
    reads = in_process_recorded_run(home)
    cached = run_cli(["run", *QUICK], home)
    assert cached.returncode == 0, cached.stderr[-4000:]
    changed = run_cli(["run", *QUICK, *CHANGED], home)
    assert changed.returncode == 0, changed.stderr[-4000:]
    uncached = run_cli(["run", *QUICK, "--no-cache"], home)
    assert uncached.returncode == 0, uncached.stderr[-4000:]
    rerun = run_cli(["run", *QUICK, "--rerun", "evaluate"], home)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    return Runs(home, reads, cached, changed, uncached, rerun)


@pytest.fixture(scope="module")
def client(runs: Runs):
    from mlflow import MlflowClient

    uri = f"sqlite:///{runs.home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def store(runs: Runs):
    from pipeline.settings import S3Settings
    from pipeline.storage import ArtifactStore

    return ArtifactStore(str(runs.home / "artifacts"), S3Settings(), scratch=runs.home / "tmp")


def feature_set_versions(home: Path) -> list[int]:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{home / 'features.db'}")
    try:
        with engine.connect() as connection:
            query = sa.text("SELECT version FROM feature_set_versions ORDER BY version")
            return list(connection.execute(query).scalars())
    finally:
        engine.dispose()


def reused_steps(result: CliResult, since: str = FIRST) -> list[str]:
    return [
        line.split()[0]
        for line in result.stderr.splitlines()
        if f"cached: reused from run {since}, step " in line and line.startswith("  ")
    ]


def test_each_step_reads_only_the_settings_it_declares(runs: Runs) -> None:
    assert set(runs.reads) == set(steps.STEP_NAMES)
    for spec in steps.STEPS:
        declared = (*spec.settings_read, *cache.EXEMPT_SETTINGS)
        undeclared = sorted(path for path in runs.reads[spec.name] if not cache.covered(path, declared))
        assert not undeclared, f"step {spec.name} reads settings its StepSpec does not declare: {undeclared}"
    # The recording is not vacuous: it sees the reads that matter.
    assert {"train.learning_rate", "seed"} <= runs.reads["train"]
    assert "data.source.uri" in runs.reads["ingest"]
    assert "feature_store_url" in runs.reads["features"]


def test_an_unchanged_rerun_reuses_every_step_and_registers_nothing(runs: Runs, client) -> None:
    summary = runs.cached.json
    assert summary["cached"] is True
    assert summary["reused_from"] == FIRST
    assert f"nothing changed since run {FIRST}; champion v1 stands" in runs.cached.stderr
    assert summary["version"] == "1" and summary["promoted"] is False
    assert reused_steps(runs.cached) == list(steps.STEP_NAMES)
    # Nothing was trained or registered by it: one training run and one version per other run.
    registered = sorted(v.tags["pipeline.run_id"] for v in client.search_model_versions("name = 'penguins'"))
    others = [FIRST, runs.changed.json["run_id"], runs.uncached.json["run_id"], runs.rerun.json["run_id"]]
    assert registered == sorted(others)
    experiment = client.get_experiment_by_name("penguins")
    trained = sorted(
        r.data.tags.get("pipeline.run_id") for r in client.search_runs([experiment.experiment_id])
    )
    assert trained == registered
    # Its manifests point at the first run's outputs: nothing copied.
    artifacts = store(runs)
    for name in steps.STEP_NAMES:
        manifest = artifacts.read_manifest(summary["run_id"], name)
        first = artifacts.read_manifest(FIRST, name)
        assert manifest.reused_from == {"run_id": FIRST, "step": name}
        assert manifest.outputs == first.outputs and manifest.cache_key == first.cache_key
        assert not (runs.home / "artifacts" / "runs" / summary["run_id"] / name / "attempts").exists()


def test_a_setting_read_by_train_reruns_train_evaluate_register_on_the_reused_data(
    runs: Runs, client
) -> None:
    summary = runs.changed.json
    assert "cached" not in summary
    assert reused_steps(runs.changed) == ["ingest", "validate", "preprocess", "features", "version"]
    assert summary["version"] == "2"
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.params["train.learning_rate"] == "0.002"
    for name in steps.DATA_STEPS:
        assert run.data.tags[f"{CACHE_REUSED_FROM_PREFIX}{name}"] == f"run {FIRST}, step {name}"
    assert run.data.tags["feature_set.version"] == "1", "no new feature-set version for identical content"


def test_no_cache_reruns_every_step(runs: Runs, client) -> None:
    summary = runs.uncached.json
    assert "cached:" not in runs.uncached.stderr
    assert summary["version"] == "3"
    tags = client.get_run(summary["mlflow_run_id"]).data.tags
    assert not [k for k in tags if k.startswith(CACHE_REUSED_FROM_PREFIX)]
    assert feature_set_versions(runs.home) == [1, 2], "only the uncached run wrote the features again"


def test_rerun_of_a_model_step_reruns_every_model_step_on_the_cached_data(runs: Runs, client) -> None:
    uncached_id = runs.uncached.json["run_id"]
    # The data steps come from the latest run that published them (the uncached one); evaluate
    # writes into its training's MLflow run, so train runs again with it.
    assert reused_steps(runs.rerun, since=uncached_id) == [
        "ingest",
        "validate",
        "preprocess",
        "features",
        "version",
    ]
    summary = runs.rerun.json
    assert summary["version"] == "4"
    assert summary["mlflow_run_id"] not in {
        runs.uncached.json["mlflow_run_id"],
        runs.changed.json["mlflow_run_id"],
    }
