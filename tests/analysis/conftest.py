"""One small sweep shared by the analysis tests, and a normal run with its best parameters.

The package-scoped fixture runs ``pipeline sweep`` once (10 trials of at most 6 epochs on the
Palmer penguins) in an isolated home, then retrains the best trial's parameters with a plain
``pipeline run`` in a second experiment: the report and the notebook then have two experiments,
several model versions and a gate rejection to show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult, run_cli

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
