"""Fixtures shared by every test: an isolated pipeline home and a way to run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FAST = [
    "--set",
    "train.max_epochs=12",
    "--set",
    "train.patience=5",
    "--set",
    "evaluate.permutation_repeats=1",
]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The current environment without any pipeline/MLflow settings, pointed at ``home``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIPELINE_", "MLFLOW_", "AWS_", "MLP_")) and k != "DVC_NO_ANALYTICS"
    }
    env.update({"PIPELINE_HOME": str(home), "PYTHONUNBUFFERED": "1", "GIT_PYTHON_REFRESH": "quiet"})
    env.update(extra)
    return env


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        """The JSON summary: the last line of stdout."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        assert lines, f"no stdout; stderr:\n{self.stderr[-3000:]}"
        return json.loads(lines[-1])


def run_cli(
    args: list[str], home: Path, cwd: Path | None = None, timeout: int = 600, **env: str
) -> CliResult:
    """Run ``python -m pipeline`` exactly as a user or a pod would."""
    home.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd or home,
        env=clean_env(home, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated pipeline home; the process environment carries no other pipeline settings."""
    folder = tmp_path / "home"
    folder.mkdir()
    for key in list(os.environ):
        if key.startswith(("PIPELINE_", "MLFLOW_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIPELINE_HOME", str(folder))
    return folder


@pytest.fixture(autouse=True, scope="module")
def _mlflow_uris_stay_in_their_module():
    """`tracking.configure` sets MLflow's process-wide tracking and registry URIs, as the pipeline's
    one process should. A test module that runs steps in this process must not hand them to the
    next module, where a client built with a tracking URI alone would silently use that registry."""
    yield
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
