"""``train.processes: 2``: the train step under DistributedDataParallel (2 gloo ranks on CPU).

Three CLI runs in one home: a 1-process reference, a 2-process run whose rank 1 is SIGKILLed after
epoch 2 (the step fails as retryable and leaves rank 0's checkpoint), and its re-run, which resumes
from that checkpoint with 2 processes and must reach the reference's quality."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipeline.distributed import KILL_RANK1_AFTER_EPOCH_ENV
from pipeline.errors import EXIT_RETRYABLE
from tests.conftest import FAST, run_cli

pytestmark = pytest.mark.slow

DDP = ["--set", "train.processes=2"]


def test_two_processes_train_as_well_as_one_and_resume_after_a_rank_is_killed(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    home = tmp_path / "home"
    reference = run_cli(["run", "--run-id", "one", *FAST], home)
    assert reference.returncode == 0, reference.stderr[-3000:]

    # Rank 1 dies (SIGKILL, no clean-up) after epoch 2: the step fails retryably, not hangs.
    killed = run_cli(
        ["run", "--run-id", "two", "--rerun", "train", *FAST, *DDP],
        home,
        **{KILL_RANK1_AFTER_EPOCH_ENV: "2"},
    )
    assert killed.returncode == EXIT_RETRYABLE, killed.stderr[-3000:]
    assert "training with 2 processes (DistributedDataParallel, gloo backend" in killed.stderr
    assert "distributed training failed: training rank 1" in killed.stderr
    assert "exited with code -9" in killed.stderr
    train_dir = home / "artifacts" / "runs" / "two" / "train"
    assert (train_dir / "_checkpoints" / "state.json").exists(), "rank 0 checkpointed before the kill"
    assert not (train_dir / "manifest.json").exists(), "a failed step publishes nothing"

    resumed = run_cli(["run", "--run-id", "two", "--rerun", "train", *FAST, *DDP], home)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming training of run two from epoch 2" in resumed.stderr
    assert not (train_dir / "_checkpoints").exists()

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("penguins")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`pipeline.run_id` = 'two'")
    assert len(runs) == 1, "one MLflow run for the killed attempt and its resumption"
    run = runs[0]
    assert run.data.params["train.processes"] == "2"
    assert run.data.tags["train.resumed_from_epoch"] == "2"
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == list(range(1, 13)), "each epoch logged once, by rank 0"
    one = client.get_run(reference.json["mlflow_run_id"])

    # Same quality as one process, within a tolerance.
    for metric, tolerance in (("test_macro_f1", 0.05), ("test_accuracy", 0.05)):
        assert abs(run.data.metrics[metric] - one.data.metrics[metric]) <= tolerance, metric
    assert run.data.metrics["best_val_loss"] <= max(2 * one.data.metrics["best_val_loss"], 0.1)

    # The model artifact has the single-process format: the unwrapped module's state.
    weights = {
        name: torch.load(
            next((home / "artifacts" / "runs" / name / "train").glob("attempts/*/model.pt")),
            weights_only=True,
        )
        for name in ("one", "two")
    }
    assert list(weights["two"]) == list(weights["one"])
    assert all(weights["two"][k].shape == v.shape for k, v in weights["one"].items())
