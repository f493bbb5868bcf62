"""Adding a step is one entry in the registry plus its module: a throwaway step, registered here
and nowhere else, shows in the CLI, runs in the local run in its place, and becomes a task of
the DAG chained after the step before it. Nothing else is edited (the CLI, the runner and the DAG
read the registry when they run, never a copy of it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import steps
from pipeline.steps import StepSpec
from tests.dags.conftest import load_dag
from tests.unit.test_step_functions import tiny_frame, tiny_settings

pytestmark = [pytest.mark.airflow, pytest.mark.slow]

AUDIT = StepSpec(
    "audit",
    "tests.throwaway_step",
    "Check the evaluation once more (a step that exists only in this test).",
    inputs=("evaluate",),
    outputs=("audit",),
    kind="model",
)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> tuple[StepSpec, ...]:
    """The one edit: the registry gains the step, between evaluate and register."""
    index = [s.name for s in steps.STEPS].index("register")
    patched = (*steps.STEPS[:index], AUDIT, *steps.STEPS[index:])
    monkeypatch.setattr(steps, "STEPS", patched)
    return patched


def test_the_cli_lists_and_runs_the_new_step_and_the_dag_schedules_it(
    registered: tuple[StepSpec, ...], mlp_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pipeline import cli, runner

    listed = CliRunner().invoke(cli.app, ["steps"])
    assert listed.exit_code == 0, listed.output
    assert "audit" in listed.output and AUDIT.summary in listed.output
    assert steps.STEP_NAMES.index("audit") == steps.STEP_NAMES.index("register") - 1

    source = tmp_path / "tiny.csv"
    tiny_frame().to_csv(source, index=False)
    home = tmp_path / "home"
    home.mkdir()
    for key in list(os.environ):
        if key.startswith(("PIPELINE_", "MLFLOW_")):
            mlp_env.delenv(key)
    mlp_env.setenv("PIPELINE_HOME", str(home))
    seen: list[tuple[str, str]] = []
    manifests = runner.run_pipeline(
        tiny_settings(source), "with-audit", on_step=lambda n, e, m: seen.append((n, e))
    )
    assert list(manifests) == [s.name for s in registered]
    assert [n for n, e in seen if e == "succeeded"] == [s.name for s in registered]
    audit = manifests["audit"]
    assert audit.summary == {"audited": "macro_f1"}
    assert json.loads(Path(audit.uri("audit")).read_text())["metric"] == "macro_f1"
    assert steps.describe("audit", audit.summary) == "audited macro_f1"

    dag = load_dag()
    assert dag.get_task("audit").upstream_task_ids == {"evaluate"}
    assert dag.get_task("register").upstream_task_ids == {"audit"}
    assert dag.get_task("audit").doc_md == AUDIT.summary
    assert dag.get_task("audit").arguments == ["step", "audit", "--run-id", "{{ run_id }}"]
    import mlflow

    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
