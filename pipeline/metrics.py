"""Test-set metrics, baselines and the evaluation plots.

Metrics where higher is better are compared with ``>``; for the error metrics of regression
(``rmse``, ``mae``, ``log_loss``) lower is better: :func:`higher_is_better` says which.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

LOWER_IS_BETTER = {"rmse", "mae", "log_loss", "mse"}


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def improvement(metric: str, new: float, old: float) -> float:
    """How much ``new`` beats ``old`` (positive: better), whatever the metric's direction."""
    return new - old if higher_is_better(metric) else old - new


def classification_metrics(y_true: np.ndarray, proba: np.ndarray, n_classes: int) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    predicted = proba.argmax(axis=1)
    labels = list(range(n_classes))
    metrics = {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "macro_f1": float(f1_score(y_true, predicted, average="macro", labels=labels, zero_division=0)),
        "log_loss": float(log_loss(y_true, np.clip(proba, 1e-12, 1), labels=labels)),
    }
    try:
        if n_classes == 2:
            metrics["roc_auc"] = float(roc_auc_score(y_true, proba[:, 1]))
        else:
            metrics["roc_auc"] = float(
                roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
            )
    except ValueError as exc:  # a class absent from the test split
        logger.warning("ROC AUC undefined on this test split: %s", exc)
    return metrics


def regression_metrics(y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    return {
        "rmse": float(np.sqrt(mean_squared_error(y_true, predicted))),
        "mae": float(mean_absolute_error(y_true, predicted)),
        "r2": float(r2_score(y_true, predicted)),
    }


def score(task: str, y_true: np.ndarray, outputs: np.ndarray, n_classes: int) -> dict[str, float]:
    if task == "classification":
        return classification_metrics(y_true, outputs, n_classes)
    return regression_metrics(y_true, outputs)


def baseline_outputs(
    kind: str,
    task: str,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    n_classes: int,
    seed: int,
) -> np.ndarray:
    """Predictions of a simple baseline fitted on the training split."""
    if kind == "linear":
        from sklearn.linear_model import LogisticRegression, Ridge

        if task == "classification":
            model = LogisticRegression(max_iter=2000, random_state=seed).fit(train_x, train_y)
            proba = np.zeros((len(test_x), n_classes))
            proba[:, model.classes_.astype(int)] = model.predict_proba(test_x)
            return proba
        return Ridge(random_state=seed).fit(train_x, train_y).predict(test_x)
    if task == "classification":
        counts = np.bincount(train_y.astype(int), minlength=n_classes).astype(float)
        prior = counts / counts.sum()
        proba = np.full((len(test_x), n_classes), 1e-6)
        proba[:, int(prior.argmax())] = 1.0
        return proba / proba.sum(axis=1, keepdims=True)
    return np.full(len(test_x), float(np.mean(train_y)))


def design_matrix(frame: pd.DataFrame, n_categories: dict[str, int]) -> np.ndarray:
    """Numeric columns plus one-hot categorical codes: the linear baseline's inputs."""
    parts = [frame[[c for c in frame.columns if c.startswith("num__")]].to_numpy(dtype=float)]
    for column, size in n_categories.items():
        codes = frame[column].to_numpy(dtype=int)
        parts.append(np.eye(size)[codes])
    return np.hstack(parts) if parts else np.zeros((len(frame), 0))


# plots ----------------------------------------------------------------------------------------


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(y_true, predicted, classes: list[Any], path: Path) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    plt = _figure()
    matrix = confusion_matrix(y_true, predicted, labels=list(range(len(classes))))
    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(classes), 3.5 + 0.4 * len(classes)))
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), [str(c) for c in classes], rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), [str(c) for c in classes])
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                int(matrix[i, j]),
                ha="center",
                va="center",
                color="white" if matrix[i, j] > matrix.max() / 2 else "black",
            )
    fig.colorbar(image, ax=ax)
    ax.set_title("Confusion matrix (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return matrix


def plot_roc_pr(y_true, proba, classes: list[Any], roc_path: Path, pr_path: Path) -> None:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    plt = _figure()
    fig_roc, ax_roc = plt.subplots(figsize=(5, 4.5))
    fig_pr, ax_pr = plt.subplots(figsize=(5, 4.5))
    for i, label in enumerate(classes):
        positives = (y_true == i).astype(int)
        if positives.sum() == 0 or positives.sum() == len(positives):
            continue
        fpr, tpr, _ = roc_curve(positives, proba[:, i])
        precision, recall, _ = precision_recall_curve(positives, proba[:, i])
        ax_roc.plot(fpr, tpr, label=f"{label} (AUC {auc(fpr, tpr):.3f})")
        ax_pr.plot(recall, precision, label=str(label))
    ax_roc.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (one vs rest, test)")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall (one vs rest, test)")
    for fig, ax, path in ((fig_roc, ax_roc, roc_path), (fig_pr, ax_pr, pr_path)):
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def plot_calibration(y_true, proba, classes: list[Any], path: Path) -> None:
    from sklearn.calibration import calibration_curve

    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for i, label in enumerate(classes):
        positives = (y_true == i).astype(int)
        if positives.sum() == 0 or positives.sum() == len(positives):
            continue
        observed, predicted = calibration_curve(positives, proba[:, i], n_bins=8, strategy="quantile")
        ax.plot(predicted, observed, marker="o", label=str(label))
    ax.plot([0, 1], [0, 1], "k--", linewidth=0.8)
    ax.set(xlabel="mean predicted probability", ylabel="observed frequency", title="Calibration (test)")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_prediction_distribution(task: str, y_true, outputs, classes: list[Any], path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if task == "classification":
        confidence = outputs.max(axis=1)
        correct = outputs.argmax(axis=1) == y_true
        ax.hist(
            [confidence[correct], confidence[~correct]], bins=20, stacked=True, label=["correct", "wrong"]
        )
        ax.set(
            xlabel="predicted probability of the chosen class",
            ylabel="test rows",
            title="Prediction confidence (test)",
        )
        ax.legend()
    else:
        ax.scatter(y_true, outputs, s=8, alpha=0.6)
        low, high = float(np.min(y_true)), float(np.max(y_true))
        ax.plot([low, high], [low, high], "k--", linewidth=0.8)
        ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(history: list[dict[str, float]], path: Path) -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    ax.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    if history and "val_accuracy" in history[0]:
        twin = ax.twinx()
        twin.plot(
            epochs, [h["val_accuracy"] for h in history], color="tab:green", alpha=0.6, label="val accuracy"
        )
        twin.set_ylabel("validation accuracy")
    ax.set(xlabel="epoch", ylabel="loss", title="Learning curves")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_importance(importance: dict[str, float], metric: str, path: Path) -> None:
    plt = _figure()
    items = sorted(importance.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(items) + 1.5))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set(xlabel=f"drop in test {metric} when shuffled", title="Permutation feature importance")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
