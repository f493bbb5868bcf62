"""Step 7, evaluate: score the logged model on the held-out test split, with a baseline.

The model is loaded back from MLflow (the artifact that will be registered, not the in-memory
network), from its data files only and after checking them against the digests the train step
recorded (:func:`pipeline.serving.load_trusted_predictor`), and scored on ``test_raw.parquet``,
the frozen test snapshot of this run. Logged on the training run: test metrics (classification:
accuracy, macro F1, ROC AUC, log loss; regression: RMSE, MAE, R²), the same metrics of a baseline
(majority class / mean, or a linear model), a per-class report, and plots: confusion matrix, ROC
and precision-recall curves, calibration, prediction distribution, learning curves and permutation
feature importance.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from pipeline import metrics as m
from pipeline.context import StepContext, StepResult
from pipeline.model import model_input_frame
from pipeline.modelfiles import ModelFilesError
from pipeline.names import PRIMARY_METRIC_TAG
from pipeline.serving import load_trusted_predictor
from pipeline.tracking import configure

logger = logging.getLogger(__name__)


def permutation_importance(
    predictor, frame, y_true, task, n_classes, metric, repeats, seed, max_rows=None
) -> tuple[dict[str, float], int]:
    """Drop of the primary metric when one raw feature column is shuffled (mean over repeats),
    on a seeded sample of ``max_rows`` rows when the split is larger (as scikit-learn's
    ``max_samples``): each column costs ``repeats`` full scorings, so a large test split would
    dominate the step. See :func:`importance_sample`. Returns the importances and the number of
    rows they were computed on."""
    rng = np.random.default_rng(seed)
    if max_rows is not None and len(frame) > max_rows:
        keep = importance_sample(np.asarray(y_true), task, max_rows, rng)
        frame = frame.iloc[keep].reset_index(drop=True)
        y_true = np.asarray(y_true)[keep]
    reference = m.score(task, y_true, predictor.raw_outputs(frame), n_classes)[metric]
    importance = {}
    for column in frame.columns:
        drops = []
        for _ in range(repeats):
            shuffled = frame.copy()
            shuffled[column] = rng.permutation(shuffled[column].to_numpy())
            value = m.score(task, y_true, predictor.raw_outputs(shuffled), n_classes)[metric]
            drops.append(m.improvement(metric, reference, value))
        importance[column] = float(np.mean(drops))
    return importance, len(frame)


def importance_sample(y_true: np.ndarray, task: str, max_rows: int, rng) -> np.ndarray:
    """Sorted row positions: ``max_rows`` drawn at random, plus (classification) one row of each
    class the draw missed, so that every metric of the full split (ROC AUC needs each class) can
    be computed on the sample."""
    keep = rng.choice(len(y_true), size=max_rows, replace=False)
    if task == "classification":
        missed = np.setdiff1d(np.unique(y_true), np.unique(y_true[keep]))
        extra = [rng.choice(np.flatnonzero(y_true == c)) for c in missed]
        keep = np.concatenate([keep, np.asarray(extra, dtype=keep.dtype)])
    return np.sort(keep)


def baseline_outputs(ctx: StepContext, settings, transformer, test_raw: pd.DataFrame) -> np.ndarray:
    """The baseline's predictions on the test rows, fitted on the training split of the processed
    features. The majority/mean baseline reads only the split and target columns; the linear one
    reads the model-ready columns too."""
    import pyarrow.parquet as pq

    kind = settings.evaluate.baseline
    path = ctx.input_path("preprocess", "features")
    n_classes = len(transformer.classes)
    if kind != "linear":
        table = pq.read_table(path, columns=["split", "target"])
        in_train = table.column("split").to_numpy(zero_copy_only=False) == "train"
        train_y = table.column("target").to_numpy()[in_train]
        no_columns = np.zeros((len(test_raw), 0))
        return m.baseline_outputs(
            kind, settings.data.task, no_columns[:0], train_y, no_columns, n_classes, settings.seed
        )
    processed = pd.read_parquet(path)
    train_part = processed[processed["split"] == "train"]
    test_part = processed.set_index("row_id").loc[test_raw["row_id"]]  # same rows, same order
    sizes = {
        c: transformer.cardinalities[i] for i, c in enumerate(f"cat__{c}" for c in transformer.categorical)
    }
    return m.baseline_outputs(
        kind,
        settings.data.task,
        m.design_matrix(train_part, sizes),
        train_part["target"].to_numpy(),
        m.design_matrix(test_part, sizes),
        n_classes,
        settings.seed,
    )


def run(ctx: StepContext) -> StepResult:
    settings = ctx.settings
    data = settings.data
    task = data.task
    train = ctx.upstream("train")
    client = configure(settings)
    import mlflow

    try:
        predictor = load_trusted_predictor(client, train.summary["model_uri"], ctx.scratch)
    except ModelFilesError as exc:
        raise ModelFilesError(
            f"{exc}; log it again with `pipeline step train --run-id {ctx.run_id}`, then re-run evaluate"
        ) from None
    transformer = predictor.transformer
    n_classes = len(transformer.classes)
    test_raw = pd.read_parquet(ctx.input_path("preprocess", "test_raw"))
    features = model_input_frame(test_raw, data.feature_columns())
    y_true = transformer.target_for_metrics(test_raw[data.target])
    outputs = predictor.raw_outputs(features)
    metric = settings.primary_metric
    test_metrics = m.score(task, y_true, outputs, n_classes)
    if metric not in test_metrics:
        from pipeline.errors import ConfigError

        raise ConfigError(f"evaluate.primary_metric {metric!r} is not one of {sorted(test_metrics)}")

    baseline = baseline_outputs(ctx, settings, transformer, test_raw)
    if task == "regression":
        baseline = transformer.decode_regression(baseline)
    baseline_metrics = m.score(task, y_true, baseline, n_classes)

    plots = ctx.staging / "plots"
    plots.mkdir()
    history = json.loads(ctx.input_path("train", "history").read_text())
    m.plot_learning_curves(history, plots / "learning_curves.png")
    m.plot_prediction_distribution(
        task, y_true, outputs, transformer.classes, plots / "prediction_distribution.png"
    )
    report: dict = {}
    confusion = None
    if task == "classification":
        from sklearn.metrics import classification_report

        predicted = outputs.argmax(axis=1)
        confusion = m.plot_confusion_matrix(
            y_true, predicted, transformer.classes, plots / "confusion_matrix.png"
        )
        m.plot_roc_pr(y_true, outputs, transformer.classes, plots / "roc_curve.png", plots / "pr_curve.png")
        m.plot_calibration(y_true, outputs, transformer.classes, plots / "calibration_curve.png")
        report = classification_report(
            y_true,
            predicted,
            labels=list(range(n_classes)),
            target_names=[str(c) for c in transformer.classes],
            output_dict=True,
            zero_division=0,
        )
    importance, importance_rows = permutation_importance(
        predictor,
        features,
        y_true,
        task,
        n_classes,
        metric,
        settings.evaluate.permutation_repeats,
        settings.seed,
        settings.evaluate.importance_max_rows,
    )
    m.plot_importance(importance, metric, plots / "permutation_importance.png")
    evaluation = {
        "primary_metric": metric,
        "test": test_metrics,
        "baseline": {"kind": settings.evaluate.baseline, **baseline_metrics},
        "per_class": report,
        "confusion_matrix": confusion.tolist() if confusion is not None else None,
        "classes": transformer.classes,
        "permutation_importance": importance,
        "permutation_importance_rows": importance_rows,
        "test_rows": len(test_raw),
    }
    (ctx.staging / "evaluation.json").write_text(json.dumps(evaluation, indent=2, default=str))

    with mlflow.start_run(run_id=train.summary["mlflow_run_id"]):
        mlflow.log_metrics({f"test_{k}": v for k, v in test_metrics.items()})
        mlflow.log_metrics({f"baseline_{k}": v for k, v in baseline_metrics.items()})
        mlflow.log_artifact(str(ctx.staging / "evaluation.json"), "evaluation")
        if report:
            mlflow.log_dict(report, "evaluation/per_class_report.json")
        mlflow.log_artifacts(str(plots), "evaluation/plots")
        mlflow.set_tag(PRIMARY_METRIC_TAG, metric)
    logger.info("test %s=%.4f (baseline %.4f)", metric, test_metrics[metric], baseline_metrics[metric])
    return StepResult(
        outputs={"evaluation": "evaluation.json", "plots": "plots"},
        summary={
            "primary_metric": metric,
            "test": test_metrics,
            "baseline": baseline_metrics,
            "mlflow_run_id": train.summary["mlflow_run_id"],
        },
    )


def describe(summary: dict[str, Any]) -> str:
    """One line for the progress display of ``pipeline run``."""
    metric = summary.get("primary_metric")
    test = summary.get("test", {}).get(metric, float("nan"))
    baseline = summary.get("baseline", {}).get(metric, float("nan"))
    return f"test {metric} {test:.4f} (baseline {baseline:.4f})"
