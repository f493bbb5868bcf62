"""One trial: Optuna's objective, training exactly as the train step does, one nested MLflow run."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pipeline.names import (
    OBJECTIVE,
    PARENT_TAG,
    PRUNED_BECAUSE_TAG,
    RETRY_OF_TRIAL_TAG,
    ROLE_TAG,
    STUDY_TAG,
    SWEEP_RUN_TAG,
    SWEEP_STATE_TAG,
    TRIAL_NUMBER_TAG,
    TRIAL_PARAMS,
    WORKER_SLOT_TAG,
)
from pipeline.settings import Settings, TrainSettings
from pipeline.sweep.space import suggest, train_settings_for
from pipeline.sweep.study import retry_later, stored_trial

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    from mlflow.tracking import MlflowClient

    from pipeline.model import Split
    from pipeline.sweep.data import TrialData

logger = logging.getLogger(__name__)


def train_like_the_train_step(
    settings: Settings,
    train: TrainSettings,
    data: TrialData,
    on_epoch: Callable | None = None,
    should_prune: Callable[[int, float], bool] | None = None,
):
    """Train with ``train`` settings through the same :class:`pipeline.model.Training` the train
    step uses: same device, threads, seed, initialisation, optimizer and batch order. Returns the
    model, its state and the splits on the device."""
    from pipeline.model import Training

    training = Training.create(train, settings.seed, data.transformer, data.splits)
    state = training.fit(train, settings.data.task, on_epoch=on_epoch, should_prune=should_prune)
    return training.model.eval(), state, training.splits


def validation_scores(settings: Settings, model, split: Split, transformer) -> tuple[dict[str, float], Any]:
    """Metrics of the best epoch's model on the validation split, and its confusion matrix."""
    import numpy as np
    import torch

    from pipeline import metrics as m

    with torch.no_grad():
        out = model(split.x_num, split.x_cat)
    y = split.y.cpu().numpy()
    if settings.data.task == "classification":
        proba = torch.softmax(out.double(), dim=1).cpu().numpy()
        scores = m.score("classification", y, proba, len(transformer.classes))
        from sklearn.metrics import confusion_matrix

        matrix = confusion_matrix(y, proba.argmax(axis=1), labels=list(range(len(transformer.classes))))
        return scores, matrix
    predicted = transformer.decode_regression(out.squeeze(1).cpu().numpy().astype(np.float64))
    actual = transformer.decode_regression(y.astype(np.float64))
    return m.score("regression", actual, predicted, 0), None


class Objective:
    """Optuna's objective: one nested MLflow run per trial, per-epoch metrics, median pruning."""

    def __init__(
        self,
        settings: Settings,
        data: TrialData,
        client: MlflowClient,
        study_info: dict[str, str],
        slot: int = 0,
    ):
        self.settings = settings
        self.data = data
        self.client = client
        self.info = study_info
        self.slot = slot

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna
        from mlflow.entities import Metric, Param, RunTag

        params = suggest(trial, self.settings.sweep.space)
        train = train_settings_for(self.settings, params)
        from optuna.storages import RetryFailedTrialCallback

        retry_of = RetryFailedTrialCallback.retried_trial_number(
            stored_trial(trial.storage, trial.study, trial.number)
        )
        tags = {
            PARENT_TAG: self.info["parent_run_id"],
            ROLE_TAG: "trial",
            SWEEP_RUN_TAG: self.info["run_id"],
            STUDY_TAG: self.info["study"],
            TRIAL_NUMBER_TAG: str(trial.number),
            WORKER_SLOT_TAG: str(self.slot),
            **self.data.tags,
        }
        if retry_of is not None:
            tags[RETRY_OF_TRIAL_TAG] = str(retry_of)
        run = self.client.create_run(
            self.info["experiment_id"], run_name=f"trial-{trial.number:03d}", tags=tags
        )
        run_id = run.info.run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        logged = {f"train.{k}": v for k, v in train.model_dump().items()}
        self.client.log_batch(
            run_id,
            params=[Param(k, str(v)) for k, v in sorted(logged.items())]
            + [Param(TRIAL_PARAMS, json.dumps(params, sort_keys=True))],
        )

        def on_epoch(epoch, metrics, *_):
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id, metrics=[Metric(k, float(v), now, epoch) for k, v in metrics.items()]
            )

        pruned = {"value": False, "why": ""}

        def should_prune(epoch: int, val_loss: float) -> bool:
            if not math.isfinite(val_loss):
                pruned.update(value=True, why="diverged")
                return True
            trial.report(val_loss, epoch)
            if epoch >= train.max_epochs:
                return False  # the budget is spent: the trial completed
            if trial.should_prune():
                pruned.update(value=True, why="median")
                return True
            return False

        try:
            model, state, splits = train_like_the_train_step(
                self.settings, train, self.data, on_epoch=on_epoch, should_prune=should_prune
            )
            finals = {
                OBJECTIVE: state.best_val_loss,
                "best_epoch": state.best_epoch,
                "epochs_trained": state.epoch,
            }
            matrix = None
            if state.best_state is not None and math.isfinite(state.best_val_loss):
                scores, matrix = validation_scores(self.settings, model, splits["val"], self.data.transformer)
                finals.update({f"best_val_{k}": v for k, v in scores.items()})
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now, 0) for k, v in finals.items() if math.isfinite(float(v))],
                tags=[RunTag(SWEEP_STATE_TAG, "PRUNED" if pruned["value"] else "COMPLETE")]
                + ([RunTag(PRUNED_BECAUSE_TAG, pruned["why"])] if pruned["value"] else []),
            )
            if matrix is not None:
                self.client.log_dict(
                    run_id,
                    {"split": "val", "classes": self.data.transformer.classes, "matrix": matrix.tolist()},
                    "evaluation/val_confusion_matrix.json",
                )
            for key in ("best_epoch", "epochs_trained"):
                trial.set_user_attr(key, int(finals[key]))
            if "best_val_" + self.settings.primary_metric in finals:
                trial.set_user_attr(
                    "val_" + self.settings.primary_metric, finals["best_val_" + self.settings.primary_metric]
                )
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (a pod stopped): not the trial's fault
            self.client.set_tag(run_id, SWEEP_STATE_TAG, "FAIL")
            self.client.set_terminated(run_id, status="KILLED")
            retry_later(trial, self.settings.sweep.max_retries)
            raise
        except BaseException:
            self.client.set_tag(run_id, SWEEP_STATE_TAG, "FAIL")
            self.client.set_terminated(run_id, status="FAILED")
            raise
        self.client.set_terminated(run_id, status="FINISHED")
        if pruned["value"]:
            raise optuna.TrialPruned(f"pruned at epoch {state.epoch} ({pruned['why']})")
        return float(state.best_val_loss)
