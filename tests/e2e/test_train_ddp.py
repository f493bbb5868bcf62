"""``train.processes: 2``: the train step under DistributedDataParallel (2 gloo ranks on CPU).

Three CLI runs in one home: a 1-process reference, a 2-process run whose rank 1 is SIGKILLed after
epoch 2 (the step fails as retryable and leaves rank 0's checkpoint), and its re-run, which resumes
from that checkpoint with 2 processes and must reach the reference's quality."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipeline.distributed import KILL_RANK1_AFTER_EPOCH_ENV
from pipeline.errors import EXIT_BAD_INPUT, EXIT_RETRYABLE
from pipeline.steps import STEP_NAMES
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


def torchrun_cli(args: list[str], home: Path, **env: str):
    """``python -m pipeline.torchrun --standalone --nproc-per-node 2 -m pipeline ...``: what the
    DAG's multi-GPU train pod runs, here with 2 gloo ranks on CPU."""
    import subprocess
    import sys

    from tests.conftest import CliResult, clean_env

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.torchrun",
            "--standalone",
            "--nproc-per-node",
            "2",
            "-m",
            "pipeline",
            *args,
        ],
        cwd=home,
        env=clean_env(home, **env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def two_nodes(args: list[str], home: Path):
    """Two torchrun agents on this machine as two nodes of one job: ``--nnodes``, ``--node-rank``,
    ``--nproc-per-node``, ``--master-addr`` and ``--master-port`` all come from ``PET_*``."""
    import socket
    import subprocess
    import sys

    from tests.conftest import CliResult, clean_env

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline.torchrun", "-m", "pipeline", *args],
            cwd=home,
            env=clean_env(
                home,
                PET_NNODES="2",
                PET_NPROC_PER_NODE="1",
                PET_NODE_RANK=str(node),
                PET_MASTER_ADDR="127.0.0.1",
                PET_MASTER_PORT=str(port),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for node in (0, 1)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        results.append(CliResult(proc.returncode, out, err))
    return results


def test_under_torchrun_rank0_runs_the_step_and_the_exit_code_is_the_steps(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    home = tmp_path / "home"
    # The steps before train, for run "tr", each one process (as the DAG's other pods run them).
    for step in STEP_NAMES[: STEP_NAMES.index("train")]:
        before = run_cli(["step", step, "--run-id", "tr", *FAST], home)
        assert before.returncode == 0, before.stderr[-3000:]

    # torchrun's rank 0 runs the step; rank 1 trains its shard and records nothing.
    killed = torchrun_cli(
        ["step", "train", "--run-id", "tr", *FAST], home, **{KILL_RANK1_AFTER_EPOCH_ENV: "2"}
    )
    assert killed.returncode == EXIT_RETRYABLE, killed.stderr[-3000:]
    assert "2 ranks started by torchrun (DistributedDataParallel, gloo backend)" in killed.stderr
    train_dir = home / "artifacts" / "runs" / "tr" / "train"
    assert (train_dir / "_checkpoints" / "state.json").exists(), "rank 0 checkpointed before the kill"
    assert not (train_dir / "manifest.json").exists()
    # Rank 1 dies after epoch 2: rank 0 has saved epoch 1 (it cannot start epoch 2's collectives
    # before), and epoch 2's save races the agent stopping it; it cannot have reached epoch 3.
    saved = json.loads((train_dir / "_checkpoints" / "state.json").read_text())["state"]["epoch"]
    assert saved in (1, 2)

    resumed = torchrun_cli(["step", "train", "--run-id", "tr", *FAST], home)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming training of run tr from epoch {saved}" in resumed.stderr
    assert "rank 1 of 2: training on cpu" in resumed.stderr
    summary = [line for line in resumed.stdout.splitlines() if line.startswith("{")]
    assert len(summary) == 1, "one JSON summary, from rank 0 alone"
    assert '"processes": 2' in summary[0]
    assert (train_dir / "manifest.json").exists()

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("penguins")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.`pipeline.run_id` = 'tr'")
    assert len(runs) == 1, "one MLflow run for both attempts, rank 0's"
    assert runs[0].data.tags["train.ranks"] == "2"
    history = client.get_metric_history(runs[0].info.run_id, "val_loss")
    assert sorted(m.step for m in history) == list(range(1, 13)), "each epoch logged once"

    # Another run on the same data and settings: rank 0 reuses run tr's training from the step
    # cache (a model step is reused with the model steps after it) and releases rank 1, which
    # must not wait for a job that never comes.
    for step in STEP_NAMES[STEP_NAMES.index("train") + 1 :]:
        finished = run_cli(["step", step, "--run-id", "tr", *FAST], home)
        assert finished.returncode == 0, finished.stderr[-3000:]
    for step in STEP_NAMES[: STEP_NAMES.index("train")]:
        assert run_cli(["step", step, "--run-id", "tr2", *FAST], home).returncode == 0
    again = torchrun_cli(["step", "train", "--run-id", "tr2", *FAST], home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "rank 0 needed no training; nothing to do" in again.stderr
    assert "no training needed: released the other 1 rank(s)" in again.stderr

    # A step that refuses its input exits with its own code (not torchrun's 1), and the waiting
    # rank is stopped rather than left to wait: here, a run whose upstream steps never ran.
    refused = torchrun_cli(["step", "train", "--run-id", "never-ran", *FAST], home)
    assert refused.returncode not in (0, 1), refused.stderr[-3000:]
    assert f"exit code {refused.returncode}" in refused.stderr
    plain = run_cli(["step", "train", "--run-id", "never-ran", *FAST], home)
    assert refused.returncode == plain.returncode, "the same code as the step run as one process"

    # Two "nodes": two torchrun agents, one rank each, configured only by the PET_* variables a
    # Kubeflow Trainer TrainJob sets (scripts/trainjob). Rank 1's node trains from the job rank 0
    # sends over the group; it never reads rank 0's folders for it. (Run tr2 again, trained this
    # time: --no-cache.)
    nodes = two_nodes(["step", "train", "--run-id", "tr2", "--no-cache", *FAST], home)
    assert [node.returncode for node in nodes] == [0, 0], nodes[0].stderr[-3000:] + nodes[1].stderr[-3000:]
    assert "2 ranks started by torchrun" in nodes[0].stderr
    assert "rank 1 of 2: training on cpu" in nodes[1].stderr
    assert [line for line in nodes[1].stdout.splitlines() if line.startswith("{")] == []
    trained = json.loads((home / "artifacts" / "runs" / "tr2" / "train" / "manifest.json").read_text())
    assert trained["reused_from"] is None, "trained by the two nodes, not reused"

    # Any step but train refuses to run as several ranks.
    other = torchrun_cli(["step", "evaluate", "--run-id", "tr", *FAST], home)
    assert other.returncode == EXIT_BAD_INPUT, other.stderr[-3000:]
    assert "only the train step runs as several ranks" in other.stderr
