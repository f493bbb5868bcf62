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
    if "PYTEST_XDIST_WORKER" in os.environ:
        # Each of the parallel workers runs its own pipeline processes: one intra-op thread each
        # (torch's default is one per core), or the workers' threads fight over the same cores.
        env.setdefault("OMP_NUM_THREADS", "1")
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


# `make test` runs the suite on two pytest-xdist workers. A group runs on one worker, so what it
# shares is built once: a file is a group (its module fixtures), and so is each folder whose session
# or package fixtures are expensive (the images are built once, the Airflow databases migrated once,
# the analysis package's sweep run once). The groups are handed out in the order below, the long
# ones first, so the run does not end with one worker busy and the other idle.
WHOLE_FOLDER_GROUPS = ("dags", "images", "analysis")
FOLDER_ORDER = (*WHOLE_FOLDER_GROUPS, "e2e", "integration", "docs", "charts", "unit")


def worker_group(nodeid: str) -> str:
    """The group of a test id: its folder (one of WHOLE_FOLDER_GROUPS) or its file."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    if len(parts) > 2 and parts[0] == "tests" and parts[1] in WHOLE_FOLDER_GROUPS:
        return "/".join(parts[:2])
    return path


def _folder_rank(item: pytest.Item) -> int:
    parts = item.nodeid.split("/")
    folder = parts[1] if len(parts) > 2 and parts[0] == "tests" else ""
    return FOLDER_ORDER.index(folder) if folder in FOLDER_ORDER else len(FOLDER_ORDER)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_folder_rank)  # stable: a file's (and a package's) tests stay together, in order


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist (the dev extra); absent without it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's scope scheduling with our groups as the scopes, in collection order."""

        def __init__(self, config: pytest.Config, log=None) -> None:
            super().__init__(config, log)
            config.option.loadscopereorder = False  # it would order the groups by test count

        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return GroupScheduling(config, log)
