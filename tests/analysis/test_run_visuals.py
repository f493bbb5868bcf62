"""Custom MLflow visuals on every training run: the evaluate step's plots are real images.

Checked on a plain ``pipeline run`` (the replay) and on the sweep's retrained best trial.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

PLOTS = (
    "learning_curves.png",
    "calibration_curve.png",
    "permutation_importance.png",
    "prediction_distribution.png",
    "confusion_matrix.png",
    "roc_curve.png",
    "pr_curve.png",
)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    return width, height


@pytest.mark.parametrize("which", ["replay", "best"])
def test_every_run_logs_its_evaluation_plots(swept, tmp_path, which):
    client = swept.client()
    run_id = swept.replay["mlflow_run_id"] if which == "replay" else swept.summary["mlflow_run_id"]
    logged = {Path(a.path).name for a in client.list_artifacts(run_id, "evaluation/plots")}
    assert set(PLOTS) <= logged
    folder = Path(client.download_artifacts(run_id, "evaluation/plots", str(tmp_path)))
    for name in PLOTS:
        width, height = png_size(folder / name)
        assert width >= 300 and height >= 300, name
        assert (folder / name).stat().st_size > 10_000, f"{name} looks empty"
    # the learning curves plot the per-epoch metrics the run also logged as MLflow metrics
    history = client.get_metric_history(run_id, "val_loss")
    assert len(history) == int(client.get_run(run_id).data.metrics["epochs_trained"])
