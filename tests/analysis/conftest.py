"""One small sweep shared by the analysis tests, and a normal run with its best parameters.

The package-scoped fixture runs ``pipeline sweep`` once (10 trials of at most 6 epochs on the
Palmer penguins) in an isolated home, then retrains the best trial's parameters with a plain
``pipeline run`` in a second experiment: the report and the notebook then have two experiments,
several model versions and a gate rejection to show.

``monitored`` adds what ``pipeline monitor`` records on that home, with no training: the champion's
predictions on real penguins rows written to the prediction log by the real logger (an undrifted
hour, whose late labels arrive through the real feedback writer, and a drifted hour), then two real
checks, one per hour, into the ``penguins-monitoring`` experiment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult, clean_env, run_cli

SWEEP_RUN_ID = "sweep-analysis"
REPLAY_RUN_ID = "replay-analysis"
REPLAY_EXPERIMENT = "penguins-replay"
N_TRIALS = 10
# A small budget: a trial trains at most 6 epochs and may be pruned after 2.
SWEEP_FAST = [
    "--set",
    "sweep.max_epochs=6",
    "--set",
    "sweep.pruner_warmup_epochs=2",
    "--set",
    "sweep.pruner_startup_trials=3",
    "--set",
    "evaluate.permutation_repeats=1",
]


@dataclass
class Swept:
    home: Path
    summary: dict[str, Any]  # the JSON summary of `pipeline sweep`
    replay: dict[str, Any]  # the JSON summary of `pipeline run` with the best parameters
    sweep_result: CliResult

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    @property
    def storage_uri(self) -> str:
        return f"sqlite:///{self.home / 'optuna.db'}"

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


def best_overrides(summary: dict[str, Any]) -> list[str]:
    from pipeline.settings import Settings
    from pipeline.sweep import overrides_for_params

    settings = Settings.load(sweep={"max_epochs": 6})
    args: list[str] = []
    for item in overrides_for_params(settings, summary["best_params"]):
        args += ["--set", item]
    return args


@pytest.fixture(scope="package")
def swept(tmp_path_factory: pytest.TempPathFactory) -> Swept:
    home = tmp_path_factory.mktemp("analysis") / "home"
    result = run_cli(
        ["sweep", "--run-id", SWEEP_RUN_ID, "--trials", str(N_TRIALS), *SWEEP_FAST], home, timeout=900
    )
    assert result.returncode == 0, result.stderr[-5000:]
    summary = result.json
    replay = run_cli(
        [
            "run",
            "--run-id",
            REPLAY_RUN_ID,
            "--set",
            f"experiment_name={REPLAY_EXPERIMENT}",
            "--set",
            "evaluate.permutation_repeats=1",
            *best_overrides(summary),
        ],
        home,
        timeout=600,
    )
    assert replay.returncode == 0, replay.stderr[-5000:]
    return Swept(home=home, summary=summary, replay=replay.json, sweep_result=result)


def manifest(home: Path, run_id: str, step: str) -> dict[str, Any]:
    return json.loads((home / "artifacts" / "runs" / run_id / step / "manifest.json").read_text())


@dataclass
class Monitored:
    checks: list[dict[str, Any]]  # the summaries of the two checks: the labelled hour, the drifted one


@pytest.fixture(scope="package")
def monitored(swept: Swept) -> Monitored:
    import os

    import mlflow
    from palmerpenguins import load_penguins

    from pipeline.monitor.check import run_check
    from pipeline.serve.predlog import create_engine, write_feedback
    from pipeline.settings import Settings
    from tests.e2e.served import T0, drifted_penguins, log_predictions

    assert swept.client().get_registered_model("penguins").aliases["champion"] == 1  # what the log names
    undrifted = load_penguins().sample(150, random_state=1)
    log_predictions(swept.home, undrifted, T0)
    log_predictions(swept.home, drifted_penguins(), T0 + timedelta(hours=2))
    labels = [  # log_predictions' request ids: req-<hour>-<i>, 25 rows each
        {"request_id": f"req-{T0:%H}-{i // 25}", "row": i % 25, "label": json.dumps(species)}
        for i, species in enumerate(undrifted["species"])
    ]
    engine = create_engine(f"sqlite:///{swept.home / 'features.db'}")
    try:
        assert write_feedback(engine, labels)["unmatched"] == 0
    finally:
        engine.dispose()
    environment = dict(os.environ)  # the checks run here, in the environment a CLI process gets
    try:
        os.environ.clear()
        os.environ.update(clean_env(swept.home))
        settings = Settings.load()
        hour = timedelta(hours=1)
        checks = [
            run_check(settings, since=T0, until=T0 + hour)[0],
            run_check(settings, since=T0 + 2 * hour, until=T0 + 3 * hour)[0],
        ]
    finally:
        os.environ.clear()
        os.environ.update(environment)
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    assert checks[0]["live"]["judged"] and checks[1]["drift_detected"]
    return Monitored(checks=checks)
