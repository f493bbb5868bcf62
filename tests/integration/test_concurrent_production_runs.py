"""Two pipeline runs started at the same moment against the same production backends (one
PostgreSQL feature store, one MLflow server, one bucket): both complete, the registry holds one
version per run with consistent aliases, and ``champion`` ends on the better model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import Backends

pytestmark = pytest.mark.integration

NAME = "race"
COMMON = ["--set", "gate.min_score=0", "--set", "gate.margin=0.0", "--set", "evaluate.permutation_repeats=1"]
GOOD = ["--set", "train.max_epochs=25", "--set", "seed=1"]
WEAK = [
    "--set",
    "train.max_epochs=1",
    "--set",
    "train.learning_rate=0.00005",
    "--set",
    "train.hidden_sizes=[4]",
    "--set",
    "seed=2",
]


def test_two_runs_at_once_on_shared_backends(
    backends: Backends, tmp_path: Path, mlflow_client_env: str
) -> None:
    processes = []
    for index, args in enumerate((GOOD, WEAK)):
        home = tmp_path / f"pod-{index}"  # each run is its own pod: nothing local is shared
        home.mkdir()
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "pipeline", "run", *COMMON, *args],
                cwd=home,
                env=backends.process_env(home, NAME),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-4000:]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_client_env, registry_uri=mlflow_client_env)
    versions = client.search_model_versions(f"name = '{NAME}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert len({v.tags["pipeline.run_id"] for v in versions}) == 2, "one version per run, none duplicated"
    assert all(v.tags.get("gate.decision") in ("promoted", "rejected") for v in versions)
    scores = {str(v.version): float(v.tags["gate.score"]) for v in versions}
    assert min(scores.values()) < max(scores.values()), "the weak run really is worse"
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert scores[str(champion.version)] == max(scores.values()), scores
    challenger = client.get_model_version_by_alias(NAME, "challenger")
    assert str(challenger.version) in scores
    # Every run of the experiment finished; none was left RUNNING.
    experiment = client.get_experiment_by_name(NAME)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]

    # Both runs landed in the one feature store as distinct versions.
    rows = backends.postgres.query(
        f"features_{NAME}", "SELECT version, run_id FROM feature_set_versions ORDER BY version"
    )
    assert [r[0] for r in rows] == [1, 2]
    assert len({r[1] for r in rows}) == 2
