"""``pipeline sweep``: an Optuna study of nested MLflow runs whose best trial goes through the gate.

Checked through the tools a user has: the JSON summary, the MLflow client, the Optuna storage and
the run's manifests.
"""

from __future__ import annotations

import json

import pytest

from tests.analysis.conftest import (
    N_TRIALS,
    REPLAY_EXPERIMENT,
    REPLAY_RUN_ID,
    SWEEP_RUN_ID,
    manifest,
)

LINEAGE_PREFIXES = ("pipeline.", "data.", "feature_set.", "validation.", "code.", "env.", "seed")


def load_study(swept):
    import optuna

    return optuna.load_study(study_name=f"sweep-{SWEEP_RUN_ID}", storage=swept.storage_uri)


def sweep_runs(swept):
    client = swept.client()
    experiment = client.get_experiment_by_name("penguins")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    return client, runs


def test_the_mlflow_client_shows_one_parent_with_a_child_per_trial(swept):
    from optuna.trial import TrialState

    client, runs = sweep_runs(swept)
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.run_id == swept.summary["parent_run_id"]
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        max_results=500,
    )
    assert len(children) == N_TRIALS
    assert {r.info.run_id for r in runs if r.data.tags.get("sweep.role") == "trial"} == {
        c.info.run_id for c in children
    }

    study = load_study(swept)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == N_TRIALS == swept.summary["trials_finished"]
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in study.trials}
    for child in children:
        trial = by_run[child.info.run_id]
        assert child.info.status == "FINISHED"
        assert child.data.tags["sweep.state"] == trial.state.name
        assert child.data.tags["sweep.trial_number"] == str(trial.number)
        # the trial's parameters, under the names of a normal run's parameters
        params = json.loads(child.data.params["sweep.trial_params"])
        assert params == trial.params
        assert float(child.data.params["train.learning_rate"]) == pytest.approx(trial.params["learning_rate"])
        assert child.data.params["train.max_epochs"] == "6"
        # per-epoch metrics, one point per epoch trained, and the final validation metric
        history = client.get_metric_history(child.info.run_id, "val_loss")
        epochs = int(child.data.metrics["epochs_trained"])
        assert [p.step for p in sorted(history, key=lambda p: p.step)] == list(range(1, epochs + 1))
        assert len(client.get_metric_history(child.info.run_id, "train_loss")) == epochs
        assert child.data.metrics["best_val_loss"] == pytest.approx(min(p.value for p in history))
        if trial.state == TrialState.COMPLETE:
            assert trial.value == pytest.approx(child.data.metrics["best_val_loss"])
            assert epochs == 6
            assert 0 <= child.data.metrics["best_val_macro_f1"] <= 1
        else:  # pruned by the median rule after the warm-up
            assert 2 <= epochs < 6 or child.data.tags.get("sweep.pruned_because") == "diverged"
        # which data the trial saw
        assert child.data.tags["feature_set.version"] == "1"
        assert (
            child.data.tags["data.raw.dvc_md5"]
            == manifest(swept.home, SWEEP_RUN_ID, "version")["summary"]["raw"]["md5"]
        )


def test_the_study_is_minimised_with_tpe_and_median_pruning_in_the_sqlite_file(swept):
    study = load_study(swept)
    assert study.direction.name == "MINIMIZE"
    assert study.user_attrs["parent_run_id"] == swept.summary["parent_run_id"]
    assert study.user_attrs["n_trials"] == N_TRIALS
    best = min((t for t in study.trials if t.value is not None), key=lambda t: t.value)
    assert swept.summary["best_trial"] == best.number
    assert swept.summary["best_params"] == best.params
    # pruning acts on the reported per-epoch validation losses
    for trial in study.trials:
        assert sorted(trial.intermediate_values) == list(range(1, len(trial.intermediate_values) + 1))
    _, runs = sweep_runs(swept)
    parent = next(r for r in runs if r.data.tags.get("sweep.role") == "parent")
    assert parent.data.params["sweep.sampler"].startswith("TPESampler")
    assert parent.data.params["sweep.pruner"].startswith("MedianPruner")
    assert json.loads(parent.data.params["sweep.space"]).keys() == {
        "learning_rate",
        "dropout",
        "batch_size",
        "hidden_sizes",
    }


def test_the_best_trial_goes_through_the_same_gate_with_the_same_lineage(swept):
    client, runs = sweep_runs(swept)
    summary = swept.summary
    best_runs = [r for r in runs if r.data.tags.get("sweep.role") == "best"]
    assert [r.info.run_id for r in best_runs] == [summary["mlflow_run_id"]]
    best = best_runs[0]
    assert best.data.tags["sweep.parent_run_id"] == summary["parent_run_id"]
    assert "mlflow.parentRunId" not in best.data.tags  # a normal top-level run, not a trial
    assert best.data.tags["pipeline.run_id"] == SWEEP_RUN_ID
    # trained by the train step with the best parameters and the sweep's epoch budget
    assert json.loads(best.data.tags["sweep.trial_params"]) == summary["best_params"]
    assert float(best.data.params["train.learning_rate"]) == pytest.approx(
        summary["best_params"]["learning_rate"]
    )
    assert best.data.params["train.max_epochs"] == "6"
    # every step of the run id published; data steps ran once, for the trials and the final model
    for step in ("ingest", "validate", "preprocess", "features", "version", "train", "evaluate", "register"):
        assert manifest(swept.home, SWEEP_RUN_ID, step)["status"] == "succeeded"
    version_md5 = manifest(swept.home, SWEEP_RUN_ID, "version")["summary"]["raw"]["md5"]
    assert best.data.tags["data.raw.dvc_md5"] == version_md5
    # the same lineage tags as a normal `pipeline run` (the replay run, another experiment)
    replay = client.get_run(swept.replay["mlflow_run_id"])
    lineage = {k for k in replay.data.tags if k.startswith(LINEAGE_PREFIXES)}
    assert lineage <= set(best.data.tags), lineage - set(best.data.tags)
    assert {k for k in best.data.tags if k.startswith(LINEAGE_PREFIXES)} == lineage
    # registered behind the promotion gate: first model, so champion, with the gate's evidence
    version = client.get_model_version(summary["model_name"], summary["version"])
    assert version.run_id == best.info.run_id
    assert version.tags["gate.decision"] == "promoted"
    assert version.tags["data.raw.dvc_md5"] == version_md5
    assert version.tags["feature_set.version"] == "1"
    assert "champion" in version.aliases
    assert summary["promoted"] is True
    assert best.data.metrics["test_macro_f1"] == pytest.approx(summary["test"]["macro_f1"])


def test_rerunning_the_best_trials_parameters_reproduces_its_metric(swept):
    """Twice: the sweep's own retraining through the train step, and an independent
    ``pipeline run`` (new run id, other experiment; its data steps reused from the sweep's run by the
    step cache: the same feature-set version)."""
    client = swept.client()
    summary = swept.summary
    best_trial_run = client.get_run(
        next(
            r.info.run_id
            for r in sweep_runs(swept)[1]
            if r.data.tags.get("sweep.trial_number") == str(summary["best_trial"])
            and r.data.tags.get("sweep.role") == "trial"
        )
    )
    trial_metric = best_trial_run.data.metrics["best_val_loss"]
    assert summary["best_value"] == pytest.approx(trial_metric, rel=1e-9)
    assert summary["retrained_best_val_loss"] == pytest.approx(trial_metric, rel=1e-6)

    replay = client.get_run(swept.replay["mlflow_run_id"])
    assert replay.data.tags["pipeline.run_id"] == REPLAY_RUN_ID
    assert client.get_experiment(replay.info.experiment_id).name == REPLAY_EXPERIMENT
    assert replay.data.tags["feature_set.version"] == "1"  # the same content: no new version
    assert (
        replay.data.tags["feature_set.content_hash"] == best_trial_run.data.tags["feature_set.content_hash"]
    )
    assert replay.data.metrics["best_val_loss"] == pytest.approx(trial_metric, rel=1e-6)
    assert replay.data.metrics["best_epoch"] == best_trial_run.data.metrics["best_epoch"]
    # the replay is model version 2, judged against champion v1 by the same gate
    version = client.get_model_version("penguins", swept.replay["version"])
    assert version.tags["gate.champion_version"] == str(summary["version"])


def test_a_finished_sweep_refuses_more_trials_instead_of_registering_twice(swept):
    from pipeline.errors import EXIT_BAD_INPUT
    from tests.conftest import run_cli

    before = len(load_study(swept).trials)
    result = run_cli(["sweep", "--run-id", SWEEP_RUN_ID, "--trials", str(N_TRIALS + 2)], swept.home)
    assert result.returncode == EXIT_BAD_INPUT
    assert f"sweep {SWEEP_RUN_ID!r} is finished" in result.stderr
    assert "start a new sweep (another --run-id)" in result.stderr.splitlines()[-1]
    assert len(load_study(swept).trials) == before
