"""The champion's live metric: its primary metric on the window's labelled predictions (late
feedback), against the test metric its run recorded. Degraded when worse by more than
``monitor.degradation_threshold`` (in the metric's own direction, :func:`pipeline.metrics.improvement`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline import metrics as m


def live_metric(
    frame: pd.DataFrame,
    label_column: str,
    task: str,
    metric: str,
    test_score: float | None,
    min_labelled: int,
    threshold: float,
) -> dict[str, Any]:
    """``{"judged", "reason"?, "metric", "live", "test", "labelled_rows", "degraded"}``."""
    result: dict[str, Any] = {"metric": metric, "test": test_score, "live": None, "degraded": False}
    labelled = frame[frame[label_column].notna()] if label_column in frame.columns else frame.iloc[:0]
    result["labelled_rows"] = len(labelled)
    if len(labelled) < min_labelled:
        return {
            **result,
            "judged": False,
            "reason": f"{len(labelled)} labelled row(s) in the window, fewer than "
            f"monitor.min_labelled={min_labelled}",
        }
    if test_score is None:
        return {**result, "judged": False, "reason": f"the champion's run recorded no test_{metric}"}
    if task == "classification":
        columns = [c for c in labelled.columns if str(c).startswith("probability_")]
        classes = [str(c).removeprefix("probability_") for c in columns]
        index = {c: i for i, c in enumerate(classes)}
        labels = labelled[label_column].astype(str)
        known = labels.isin(index)
        if known.sum() < min_labelled:
            return {**result, "judged": False, "reason": "too few labels name a class the model knows"}
        proba = labelled.loc[known, columns].to_numpy(dtype=float)
        proba = proba / np.clip(proba.sum(axis=1, keepdims=True), 1e-12, None)  # float32 softmax sums
        y_true = labels[known].map(index).to_numpy()
        scores = m.classification_metrics(y_true, proba, len(classes))
        result["unknown_labels"] = int((~known).sum())
    else:
        y_true = pd.to_numeric(labelled[label_column], errors="coerce").to_numpy(dtype=float)
        predicted = pd.to_numeric(labelled["prediction"], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(y_true) & np.isfinite(predicted)
        scores = m.regression_metrics(y_true[ok], predicted[ok])
    if metric not in scores:
        return {**result, "judged": False, "reason": f"{metric} is undefined on the labelled rows"}
    live = float(scores[metric])
    return {
        **result,
        "judged": True,
        "live": live,
        "degraded": m.improvement(metric, live, float(test_score)) < -threshold,
    }
