"""``notebooks/experiment_analysis.ipynb`` is committed without outputs and runs without errors.

The notebook is executed with nbclient against the shared sweep's home (``PIPELINE_HOME``), the
way a user runs it, so a change in the runs' layout that breaks it fails here.
"""

from __future__ import annotations

from pathlib import Path

from tests.analysis.conftest import N_TRIALS, REPLAY_EXPERIMENT, SWEEP_RUN_ID
from tests.support import unavailable

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "experiment_analysis.ipynb"


def read_notebook():
    try:
        import nbformat
    except ImportError:
        unavailable("nbformat", "pip install -e '.[dev]'")
    return nbformat.read(NOTEBOOK, as_version=4)


def test_the_committed_notebook_has_no_outputs():
    notebook = read_notebook()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [], cell.source[:80]
        assert cell.execution_count is None, cell.source[:80]
    assert "widgets" not in notebook.metadata
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def text_of(outputs) -> str:
    parts = []
    for output in outputs:
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "data" in output:
            parts.append(str(output["data"].get("text/plain", "")))
            parts.append(str(output["data"].get("text/html", "")))
    return "\n".join(parts)


def test_the_notebook_executes_against_a_sweep(swept, tmp_path, monkeypatch):
    try:
        from nbclient import NotebookClient
    except ImportError:
        unavailable("nbclient and ipykernel", "pip install -e '.[dev]'")
    notebook = read_notebook()
    for key in ("MLFLOW_TRACKING_URI", "PIPELINE_TRACKING_URI", "PIPELINE_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PIPELINE_HOME", str(swept.home))
    monkeypatch.setenv("EXPERIMENTS", f"penguins,{REPLAY_EXPERIMENT}")
    monkeypatch.setenv("PLOTLY_RENDERER", "plotly_mimetype")  # figures as JSON, no embedded library
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [text_of(cell.outputs) for cell in notebook.cells if cell.cell_type == "code"]
    everything = "\n".join(outputs)
    assert f"tracking sqlite:///{swept.home / 'mlflow.db'}" in everything
    assert REPLAY_EXPERIMENT in outputs[1]  # the comparison table names both experiments
    assert f"sweep sweep-{SWEEP_RUN_ID}: {N_TRIALS} trials, status FINISHED" in everything
    figures = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "application/vnd.plotly.v1+json" in output.get("data", {})
    ]
    assert len(figures) == 6  # box plot, parallel, metric vs params, curves, confusions, versions
    for figure in figures:
        assert figure["data"]["application/vnd.plotly.v1+json"]["data"], "a figure without traces"
    assert not any(o.get("output_type") == "error" for c in notebook.cells for o in c.get("outputs", []))
