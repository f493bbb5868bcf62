"""Two runs at once on one machine: SQLite tracking survives concurrent writers, DVC workspaces do
not collide, versions are not duplicated, and ``champion`` ends on the better model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import clean_env

pytestmark = pytest.mark.slow

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


def test_two_runs_at_once_leave_champion_on_the_better_model(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", *COMMON, *args],
            cwd=home,
            env=clean_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in (GOOD, WEAK)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr[-3000:]

    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    versions = client.search_model_versions("name = 'penguins'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert len({v.tags["pipeline.run_id"] for v in versions}) == 2, "one version per run, none duplicated"
    scores = {str(v.version): float(v.tags["gate.score"]) for v in versions}
    champion = client.get_model_version_by_alias("penguins", "champion")
    assert scores[str(champion.version)] == max(scores.values()), scores
    assert min(scores.values()) < max(scores.values()), "the weak run really is worse"
    # Both runs landed in the feature store as distinct versions.
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{home / 'features.db'}")
    with engine.connect() as connection:
        versions = (
            connection.execute(sa.text("SELECT version FROM feature_set_versions ORDER BY version"))
            .scalars()
            .all()
        )
    engine.dispose()
    assert versions == [1, 2]
