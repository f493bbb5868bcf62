"""The cluster's arrangement on one machine: the study in PostgreSQL, shared by two workers.

MLflow tracks into a PostgreSQL database and the feature store is another database of the same
server, as the Helm chart sets them up. With no ``sweep.storage_url``, the study goes into the
feature store's database (not MLflow's: both keep an Alembic ``alembic_version`` table), and two
worker processes of ``pipeline sweep --workers 2`` pull trials from it.
"""

from __future__ import annotations

import pytest

from tests.conftest import run_cli
from tests.services import postgres_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_TRIALS = 8


def test_two_workers_share_one_study_in_postgresql(tmp_path):
    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState

    home = tmp_path / "home"
    with postgres_server() as server:
        tracking = server.create_database("mlflow").replace("postgresql+psycopg2://", "postgresql://")
        features = server.create_database("features")
        result = run_cli(
            [
                "sweep",
                "--run-id",
                "sweep-pg",
                "--trials",
                str(N_TRIALS),
                "--workers",
                "2",
                "--set",
                "sweep.max_epochs=6",
                "--set",
                "sweep.pruner_warmup_epochs=2",
                "--set",
                "train.num_threads=1",
                "--set",
                "evaluate.permutation_repeats=1",
            ],
            home,
            timeout=900,
            MLFLOW_TRACKING_URI=tracking,
            PIPELINE_FEATURE_STORE_URL=features,
        )
        assert result.returncode == 0, result.stderr[-5000:]
        summary = result.json
        # the workers reserve each trial under an advisory lock: never more than the budget
        assert summary["trials_finished"] == N_TRIALS
        assert not (home / "optuna.db").exists()  # no SQLite fallback

        study = optuna.load_study(study_name="sweep-sweep-pg", storage=features)
        finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
        assert len(finished) == summary["trials_finished"]
        # Optuna's tables live beside the feature store's, MLflow's database has none of them
        assert server.query("features", "SELECT count(*) FROM trials")[0][0] == len(study.trials)
        assert server.query(
            "mlflow", "SELECT count(*) FROM information_schema.tables WHERE table_name = 'trials'"
        ) == [(0,)]

        client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
        children = client.search_runs(
            [client.get_run(summary["parent_run_id"]).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{summary['parent_run_id']}'",
            max_results=100,
        )
        assert len(children) == len(study.trials)
        slots = {c.data.tags["sweep.worker_slot"] for c in children}
        assert slots == {"0", "1"}, "both workers should have run trials of the one study"
        version = client.get_model_version(summary["model_name"], summary["version"])
        assert version.tags["gate.decision"] in ("promoted", "rejected")
        assert version.run_id == summary["mlflow_run_id"]
