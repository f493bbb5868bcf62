"""Killing ``pipeline run`` during training, then re-running the same run id: training resumes from
its last checkpoint, and no later step ever sees partial output."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.errors import EXIT_BAD_INPUT, EXIT_RETRYABLE
from tests.conftest import FAST, clean_env, run_cli

pytestmark = pytest.mark.slow

RUN_ID = "resume-1"
LONG = [
    "--set",
    "train.max_epochs=60",
    "--set",
    "train.patience=60",
    "--set",
    "train.batch_size=8",
    "--set",
    "evaluate.permutation_repeats=1",
    # a checkpoint every 3rd epoch: a kill usually lands after epochs that were logged but not
    # checkpointed, which the resumed attempt trains again and must not log twice
    "--set",
    "train.checkpoint_every=3",
]


def start_run(home: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--run-id", RUN_ID, *LONG],
        cwd=home,
        env=clean_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(process: subprocess.Popen, checkpoint: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not checkpoint.exists():
        assert process.poll() is None, (
            f"the run ended before training started:\n{process.communicate()[1][-3000:]}"
        )
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.2)
    time.sleep(1.0)  # a few more epochs


def mlflow_runs(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("penguins")
    return client, client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`pipeline.run_id` = '{RUN_ID}'"
    )


def test_killed_training_resumes_and_nothing_partial_is_visible(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    run_dir = home / "artifacts" / "runs" / RUN_ID
    checkpoint = run_dir / "train" / "_checkpoints" / "state.pt"

    # 1. SIGKILL in the middle of training: no chance to clean up.
    process = start_run(home)
    wait_for_checkpoint(process, checkpoint)
    process.kill()
    process.communicate()
    assert not (run_dir / "train" / "manifest.json").exists(), "an interrupted step publishes nothing"
    blocked = run_cli(["step", "evaluate", "--run-id", RUN_ID, *LONG], home)
    assert blocked.returncode == EXIT_BAD_INPUT
    assert "needs the outputs of step 'train'" in blocked.stderr

    # 2. SIGTERM (what Kubernetes sends) on the re-run: it resumes, then stops cleanly as retryable.
    process = start_run(home)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        client, runs = mlflow_runs(home)
        if any("train.resumed_from_epoch" in r.data.tags for r in runs):
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_RETRYABLE, stderr[-3000:]
    client, runs = mlflow_runs(home)
    assert len(runs) == 1, "the resumed attempt continues the same MLflow run"
    assert runs[0].info.status != "RUNNING", "a terminated step does not leave its MLflow run RUNNING"
    assert not (run_dir / "train" / "manifest.json").exists()

    # 3. The third attempt finishes the run from the checkpoint.
    done = run_cli(["run", "--run-id", RUN_ID, *LONG], home)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "already done (kept)" in done.stderr  # ingest .. version were not redone
    client, runs = mlflow_runs(home)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert int(run.data.tags["train.resumed_from_epoch"]) >= 1
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert sorted(m.step for m in history) == list(range(1, 61)), "every epoch logged once"
    assert not checkpoint.parent.exists(), "checkpoints are removed once the outputs are published"
    assert done.json["version"] == "1"


HINTED = "hinted-1"


def test_the_resume_hint_resumes_with_the_recorded_configuration(tmp_path: Path) -> None:
    """A run whose --set source is not there yet fails; its "Resume with" hint, followed literally
    (no --set), resumes with the recorded source and settings. A resume with another configuration
    is refused with the difference, and proceeds with --allow-config-change."""
    from mlflow import MlflowClient

    from pipeline.sources import resolve_package_uri

    home = tmp_path / "home"
    source = tmp_path / "incoming" / "birds.csv"
    given = ["--set", f"data.source.uri={source}", *FAST]
    first = run_cli(["run", "--run-id", HINTED, *given], home)
    assert first.returncode == EXIT_BAD_INPUT, first.stderr[-3000:]
    assert str(source) in first.stderr, "the error names the configured source"
    hint = re.search(r"Resume with: (pipeline run .*)", first.stderr)
    assert hint, first.stderr[-3000:]
    command = hint.group(1).strip().split()
    assert command == ["pipeline", "run", "--run-id", HINTED]

    changed = run_cli(["run", "--run-id", HINTED, *given, "--set", "train.max_epochs=13"], home)
    assert changed.returncode == EXIT_BAD_INPUT, changed.stderr[-3000:]
    assert "train.max_epochs: 12 -> 13" in changed.stderr
    assert "--allow-config-change" in changed.stderr
    assert not (home / "artifacts" / "runs" / HINTED / "ingest" / "manifest.json").exists()

    source.parent.mkdir()
    source.write_bytes(resolve_package_uri("pkg://palmerpenguins/data/penguins.csv").read_bytes())
    resumed = run_cli(command[1:], home)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(resumed.json["mlflow_run_id"])
    assert run.data.tags["data.source"] == str(source)
    assert run.data.params["train.max_epochs"] == "12"

    allowed = run_cli(
        ["run", "--run-id", HINTED, "--set", "train.max_epochs=13", "--allow-config-change"], home
    )
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "changed configuration" in allowed.stderr and "train.max_epochs: 12 -> 13" in allowed.stderr
    assert allowed.json["version"] == resumed.json["version"], "every step was kept"
