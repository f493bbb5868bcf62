"""Hyperparameter search: an Optuna study over ``sweep.space``, each trial a nested MLflow run.

A sweep belongs to a pipeline run id and has three stages (``pipeline sweep --stage ...``):

``prepare``
    Run the data steps (ingest .. version) for the run id, exactly as ``pipeline run`` would,
    create or load the study ``sweep-<run id>`` in the shared storage, and the MLflow parent run.
``worker``
    Run trials until the study holds ``sweep.n_trials`` finished (completed or pruned) trials.
    Several workers (local processes, or pods of the sweep DAG) share one study: TPE with the
    constant liar, the median pruner on the per-epoch validation loss, heartbeats so that a trial
    whose worker died is failed and retried with the same parameters.
``finalize``
    Put the best trial's parameters through the train, evaluate and register steps of the same
    run id: the same promotion gate and the same lineage as a normal run, on the data the trials
    saw. Then write the experiment report, attach it to the parent run and close it.

``all`` (the default) does the three in a row on this machine. Restarting an interrupted sweep
with the same run id continues the same study: finished trials are kept, the trials the dead
process left running are failed and retried.

A trial trains exactly as the train step does (same seed, same data, same loop, same order of
random draws), so training the best trial's parameters again reproduces its validation loss.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import BadInputError, RetryableError, UpstreamMissingError
from pipeline.locks import shared_lock
from pipeline.names import (
    BEST_RUN_TAG,
    BEST_TRIAL_RUN_TAG,
    BEST_TRIAL_TAG,
    DATASET_TAG,
    DECISION,
    FEATURE_SET_HASH_TAG,
    FEATURE_SET_NAME_TAG,
    FEATURE_SET_VERSION_TAG,
    GIT_COMMIT_TAG,
    N_TRIALS_TAG,
    OBJECTIVE,
    PARENT_TAG,
    PROCESSED_DVC_MD5_TAG,
    PRUNED_BECAUSE_TAG,
    RAW_DVC_MD5_TAG,
    REASON,
    REGISTRY_MODEL_TAG,
    REGISTRY_VERSION_TAG,
    RETRY_OF_TRIAL_TAG,
    ROLE_TAG,
    STUDY_TAG,
    SWEEP_MAX_EPOCHS_PARAM,
    SWEEP_OBJECTIVE_PARAM,
    SWEEP_PARENT_RUN_TAG,
    SWEEP_PRUNER_PARAM,
    SWEEP_RUN_TAG,
    SWEEP_SAMPLER_PARAM,
    SWEEP_SPACE_PARAM,
    SWEEP_STATE_TAG,
    SWEEP_STORAGE_TAG,
    TASK_TAG,
    TRIAL_NUMBER_TAG,
    TRIAL_PARAMS,
    WORKER_SLOT_TAG,
)
from pipeline.settings import Settings, TrainSettings, redact_url, url_with_password
from pipeline.steps import DATA_STEPS, StepSpec

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    from mlflow.tracking import MlflowClient

    from pipeline.model import Split
    from pipeline.storage import ArtifactStore
    from pipeline.transform import TabularTransformer

logger = logging.getLogger(__name__)

REPORT_ARTIFACT = "report/experiment_report.html"
# What the trials read from the data steps' outputs (declared like a step's, and enforced alike).
TRIAL_INPUTS = StepSpec("sweep", __name__, "trials", inputs=("features", "version", "preprocess.transformer"))
LIST_SETTINGS = {"hidden_sizes"}


# --------------------------------------------------------------------------------------------
# Names, storage, search space
# --------------------------------------------------------------------------------------------


def study_name(settings: Settings, run_id: str) -> str:
    return settings.sweep.study_name or f"sweep-{run_id}"


def storage_url(settings: Settings) -> str:
    """The study's storage: ``sweep.storage_url``; else the feature store's PostgreSQL database
    (the cluster); else a SQLite file in the pipeline home."""
    sweep = settings.sweep
    if sweep.storage_url:
        secret = sweep.storage_password.get_secret_value() if sweep.storage_password else None
        return url_with_password(sweep.storage_url, secret)
    features = settings.resolved_feature_store_url
    if features.startswith(("postgresql", "postgres")):
        return features
    return f"sqlite:///{settings.home / 'optuna.db'}"


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Heartbeats and stale-trial failing are stable in use but still flagged experimental."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def open_storage(settings: Settings, on_interrupted: Callable | None = None):
    """An Optuna RDB storage with heartbeats: a trial silent for ``sweep.stale_after_s`` is failed."""
    import optuna

    url = storage_url(settings)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        from pipeline.tracking import prepare_sqlite

        prepare_sqlite(url)  # WAL: workers read while another writes
        engine_kwargs["connect_args"] = {"timeout": 60}
    try:
        with _quiet_experimental():
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=settings.sweep.heartbeat_s,
                grace_period=settings.sweep.stale_after_s,
                failed_trial_callback=on_interrupted,
            )
    except Exception as exc:  # unreachable server, bad credentials, locked file
        raise RetryableError(f"study storage {redact_url(url)} failed: {exc}") from exc


def trial_reservation(settings: Settings, name: str) -> contextlib.AbstractContextManager[None]:
    """Makes "count the study's trials, then start one" atomic across the workers of study
    ``name``, so that shared workers never start more trials than the budget. A worker holds it
    from the count until Optuna has created the new trial as RUNNING: an advisory lock per study
    on the study's PostgreSQL (pods on any node), else a file lock beside the SQLite study."""
    url = storage_url(settings)
    if url.startswith("sqlite:///"):
        lock_file = Path(f"{url.removeprefix('sqlite:///')}.{name}.lock")
    else:
        lock_file = settings.home / "locks" / f"{name}.lock"
    key, what = f"ml-pipeline/sweep/{name}", f"the trial reservation of {name!r}"
    return shared_lock(url, key, lock_file, settings.sweep.lock_timeout_s, what)


def suggest(trial: optuna.Trial, space: dict) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, dim in space.items():
        if dim.type == "float":
            params[name] = trial.suggest_float(name, dim.low, dim.high, step=dim.step, log=dim.log)
        elif dim.type == "int":
            step = int(dim.step) if dim.step else 1
            params[name] = trial.suggest_int(name, int(dim.low), int(dim.high), step=step, log=dim.log)
        else:
            params[name] = trial.suggest_categorical(name, dim.choices)
    return params


def train_settings_for(settings: Settings, params: dict[str, Any]) -> TrainSettings:
    """The train settings of one trial: the configured ones, the trial's parameters, the sweep's
    epoch budget."""
    values = settings.train.model_dump()
    for name, value in params.items():
        if name in LIST_SETTINGS and not isinstance(value, list):
            value = [int(part) for part in str(value).split(",") if part.strip()]
        values[name] = value
    values["max_epochs"] = settings.sweep.max_epochs or settings.train.max_epochs
    return TrainSettings.model_validate(values)


def settings_for_params(settings: Settings, params: dict[str, Any]) -> Settings:
    """The whole settings of a run that trains with these trial parameters."""
    return settings.model_copy(update={"train": train_settings_for(settings, params)})


def overrides_for_params(settings: Settings, params: dict[str, Any]) -> list[str]:
    """The same as ``--set`` options, e.g. to retrain a trial with ``pipeline run``."""
    train = train_settings_for(settings, params)
    names = [*params, "max_epochs"]
    return [f"train.{name}={json.dumps(getattr(train, name))}" for name in names]


# --------------------------------------------------------------------------------------------
# Data of a run, loaded once per worker
# --------------------------------------------------------------------------------------------


def run_data_steps(settings: Settings, run_id: str) -> dict[str, Any]:
    """The data steps (ingest .. version) for the run id, keeping what already succeeded: the
    local runner's own resume loop, stopped after the last data step."""
    from pipeline.runner import run_pipeline

    def log(name: str, event: str, manifest: Any) -> None:
        if event != "succeeded":
            logger.info(
                "step %s of run %s: %s", name, run_id, "already done (kept)" if event == "kept" else "running"
            )

    return run_pipeline(settings, run_id, stop_after=DATA_STEPS[-1], on_step=log)


@dataclass
class TrialData:
    splits: dict[str, Split]
    transformer: TabularTransformer
    tags: dict[str, str]  # which data the trials saw


def load_trial_data(settings: Settings, run_id: str, store: ArtifactStore) -> TrialData:
    from pipeline.context import StepContext
    from pipeline.featurestore import FeatureStore
    from pipeline.model import splits_from_frame
    from pipeline.tracking import git_commit
    from pipeline.transform import TabularTransformer

    with store.workdir(run_id, "sweep") as workdir:
        ctx = StepContext(
            settings=settings, run_id=run_id, step="sweep", store=store, workdir=workdir, spec=TRIAL_INPUTS
        )
        features = ctx.upstream("features").summary
        version = ctx.upstream("version").summary
        transformer = TabularTransformer.from_json(ctx.input_path("preprocess", "transformer").read_text())
    feature_store = FeatureStore(settings.resolved_feature_store_url)
    try:
        frame = feature_store.read(features["feature_set"], int(features["feature_set_version"]))
    finally:
        feature_store.close()
    tags = {
        DATASET_TAG: settings.data.name,
        TASK_TAG: settings.data.task,
        RAW_DVC_MD5_TAG: version["raw"]["md5"],
        PROCESSED_DVC_MD5_TAG: version["processed"]["md5"],
        FEATURE_SET_NAME_TAG: features["feature_set"],
        FEATURE_SET_VERSION_TAG: str(features["feature_set_version"]),
        FEATURE_SET_HASH_TAG: features["content_hash"],
        "seed": str(settings.seed),
        GIT_COMMIT_TAG: git_commit(settings) or "unknown",
    }
    return TrialData(splits_from_frame(frame, transformer), transformer, tags)


# --------------------------------------------------------------------------------------------
# One trial
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------


class InterruptedTrials:
    """What happens to a trial whose worker died: the trial is retried with the same parameters
    (``sweep.max_retries``) and its MLflow run is closed as KILLED."""

    def __init__(self, settings: Settings, client: MlflowClient, retry: bool = True):
        self.client = client
        self.retry = retry
        self.max_retries = settings.sweep.max_retries

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from optuna.storages import RetryFailedTrialCallback

        logger.warning("trial %d was interrupted (its worker stopped); failing it", trial.number)
        if self.retry and self.max_retries > 0:
            RetryFailedTrialCallback(max_retry=self.max_retries)(study, trial)
        close_killed_run(self.client, trial)


def retry_later(trial: optuna.Trial, max_retries: int) -> None:
    """Queue the same parameters again for a trial stopped from outside, with the bookkeeping of
    Optuna's ``RetryFailedTrialCallback`` (which handles the trials whose worker died)."""
    import optuna
    from optuna.storages import RetryFailedTrialCallback

    stored = stored_trial(trial.storage, trial.study, trial.number)
    history = [*RetryFailedTrialCallback.retry_history(stored), trial.number]
    if len(history) > max_retries:
        return
    first = RetryFailedTrialCallback.retried_trial_number(stored)
    trial.study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={"failed_trial": trial.number if first is None else first, "retry_history": history},
        )
    )


def close_killed_run(client: MlflowClient, trial) -> None:
    run_id = trial.user_attrs.get("mlflow_run_id")
    if not run_id:
        return
    run = client.get_run(run_id)
    if run.info.status == "RUNNING":
        client.set_tag(run_id, SWEEP_STATE_TAG, "FAIL")
        client.set_terminated(run_id, status="KILLED")


def _sampler_seed(settings: Settings, slot: int, existing: int) -> int:
    """Workers and restarts draw different random candidates: the seed mixes the slot and the
    number of trials already in the study (a deterministic function of the study's history)."""
    import numpy as np

    return int(np.random.SeedSequence([settings.seed, slot, existing]).generate_state(1)[0])


def load_study(settings: Settings, run_id: str, storage, slot: int = 0, create: bool = False):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = study_name(settings, run_id)
    if create:
        optuna.create_study(study_name=name, storage=storage, direction="minimize", load_if_exists=True)
    try:
        existing = len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        raise UpstreamMissingError(
            f"no study {name!r} in the sweep storage: "
            f"run `pipeline sweep --stage prepare --run-id {run_id}` first"
        ) from None
    n_trials = settings.sweep.n_trials
    sampler = optuna.samplers.TPESampler(
        seed=_sampler_seed(settings, slot, existing),
        n_startup_trials=min(10, max(2, n_trials // 3)),
        constant_liar=True,
    )
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=settings.sweep.pruner_startup_trials,
        n_warmup_steps=settings.sweep.pruner_warmup_epochs,
    )
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


@dataclass
class Counts:
    complete: int = 0
    pruned: int = 0
    running: int = 0
    waiting: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def counts(study) -> Counts:
    from optuna.trial import TrialState

    result = Counts()
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.COMPLETE:
            result.complete += 1
        elif trial.state == TrialState.PRUNED:
            result.pruned += 1
        elif trial.state == TrialState.RUNNING:
            result.running += 1
        elif trial.state == TrialState.WAITING:
            result.waiting += 1
        else:
            result.failed += 1
    return result


def _trial_id(storage, study: optuna.Study, number: int) -> int:
    """The storage's id of trial ``number``, through Optuna's public storage API only."""
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


def stored_trial(storage, study: optuna.Study, number: int) -> optuna.trial.FrozenTrial:
    """Trial ``number`` of ``study`` as stored (its system attributes included)."""
    return storage.get_trial(_trial_id(storage, study, number))


def fail_running_trials(study, storage, handler: InterruptedTrials) -> list[int]:
    """Fail every RUNNING trial now (their workers are known to be gone) and hand them to
    ``handler`` (retry, close the MLflow run)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            trial_id = _trial_id(storage, study, trial.number)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                failed.append(trial.number)
                handler(study, storage.get_trial(trial_id))
        except UpdateFinishedTrialError:
            continue  # it finished in the meantime
    return failed


def _study_info(study) -> dict[str, str]:
    attrs = study.user_attrs
    missing = {"parent_run_id", "experiment_id", "run_id"} - set(attrs)
    if missing:
        raise UpstreamMissingError(f"study {study.study_name!r} was not prepared (missing {sorted(missing)})")
    return {
        "parent_run_id": attrs["parent_run_id"],
        "experiment_id": attrs["experiment_id"],
        "run_id": attrs["run_id"],
        "study": study.study_name,
        "n_trials": str(attrs.get("n_trials", "")),
    }


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


def prepare(settings: Settings, run_id: str, n_trials: int | None = None) -> dict[str, Any]:
    """Data steps, study and MLflow parent run. Safe to repeat: everything is kept or reused."""
    from mlflow.entities import Param

    from pipeline.context import check_run_id
    from pipeline.tracking import configure, ensure_experiment, git_commit

    check_run_id(run_id)
    if n_trials is not None:
        settings = settings.model_copy(
            update={"sweep": settings.sweep.model_copy(update={"n_trials": n_trials})}
        )
    manifests = run_data_steps(settings, run_id)
    client = configure(settings)
    experiment_id = ensure_experiment(client, settings)
    storage = open_storage(settings)
    study = load_study(settings, run_id, storage, create=True)
    attrs = study.user_attrs
    parent_run_id = attrs.get("parent_run_id")
    if parent_run_id is None:
        version = manifests["version"].summary
        features = manifests["features"].summary
        parent = client.create_run(
            experiment_id,
            run_name=f"sweep-{run_id}",
            tags={
                ROLE_TAG: "parent",
                SWEEP_RUN_TAG: run_id,
                STUDY_TAG: study.study_name,
                SWEEP_STORAGE_TAG: redact_url(storage_url(settings)),
                DATASET_TAG: settings.data.name,
                RAW_DVC_MD5_TAG: version["raw"]["md5"],
                FEATURE_SET_VERSION_TAG: str(features["feature_set_version"]),
                GIT_COMMIT_TAG: git_commit(settings) or "unknown",
            },
        )
        parent_run_id = parent.info.run_id
        space = {name: dim.model_dump(exclude_none=True) for name, dim in settings.sweep.space.items()}
        client.log_batch(
            parent_run_id,
            params=[
                Param(SWEEP_SPACE_PARAM, json.dumps(space, sort_keys=True)[:6000]),
                Param(SWEEP_OBJECTIVE_PARAM, f"minimise {OBJECTIVE} (validation)"),
                Param(SWEEP_SAMPLER_PARAM, "TPESampler(constant_liar)"),
                Param(SWEEP_PRUNER_PARAM, f"MedianPruner(warmup={settings.sweep.pruner_warmup_epochs})"),
                Param(SWEEP_MAX_EPOCHS_PARAM, str(settings.sweep.max_epochs or settings.train.max_epochs)),
                Param("seed", str(settings.seed)),
            ],
        )
        study.set_user_attr("parent_run_id", parent_run_id)
        study.set_user_attr("experiment_id", experiment_id)
        study.set_user_attr("run_id", run_id)
        logger.info("study %s created; MLflow parent run %s", study.study_name, parent_run_id)
    else:
        parent = client.get_run(parent_run_id)
        finalized = parent.data.tags.get(BEST_RUN_TAG)
        if finalized and settings.sweep.n_trials > counts(study).finished:
            raise BadInputError(
                f"sweep {run_id!r} is finished: its best trial was trained, evaluated and registered "
                f"(model version {parent.data.tags.get(REGISTRY_VERSION_TAG)}), and a run id registers one "
                f"version; start a new sweep (another --run-id) to search further"
            )
        if parent.info.status != "RUNNING" and not finalized:
            client.update_run(parent_run_id, status="RUNNING")  # the sweep goes on
        logger.info("study %s resumed; MLflow parent run %s", study.study_name, parent_run_id)
    budget = settings.sweep.n_trials
    study.set_user_attr("n_trials", budget)
    client.set_tag(parent_run_id, N_TRIALS_TAG, str(budget))
    now = counts(study)
    return {
        "run_id": run_id,
        "study": study.study_name,
        "storage": redact_url(storage_url(settings)),
        "parent_run_id": parent_run_id,
        "experiment_id": experiment_id,
        "n_trials": budget,
        "finished": now.finished,
        "running": now.running,
        "remaining": max(0, budget - now.finished),
    }


def work(
    settings: Settings,
    run_id: str,
    *,
    slot: int = 0,
    max_trials: int | None = None,
    owner: bool = False,
) -> dict[str, Any]:
    """Run trials until the study holds its budget of finished trials.

    ``owner``: this process is the only worker (``pipeline sweep`` on one machine), so trials
    still RUNNING are leftovers of an interrupted attempt and are failed (and retried) at once;
    shared workers wait for the heartbeat to go stale instead.
    """
    import optuna

    from pipeline.runner import make_store
    from pipeline.tracking import configure

    client = configure(settings)
    handler = InterruptedTrials(settings, client)
    storage = open_storage(settings, on_interrupted=handler)
    study = load_study(settings, run_id, storage, slot=slot)
    info = _study_info(study)
    budget = int(study.user_attrs.get("n_trials") or settings.sweep.n_trials)
    if owner:
        interrupted = fail_running_trials(study, storage, handler)
        if interrupted:
            logger.warning(
                "failed %d trial(s) left running by an interrupted sweep: %s", len(interrupted), interrupted
            )
    data = load_trial_data(settings, run_id, make_store(settings))
    objective = Objective(settings, data, client, info, slot=slot)
    deadline = time.monotonic() + settings.sweep.timeout_s if settings.sweep.timeout_s else None
    reservation = contextlib.ExitStack()

    def reserved_objective(trial) -> float:
        reservation.close()  # the trial exists (RUNNING): other workers now count it
        return objective(trial)

    ran = 0
    while True:
        if max_trials is not None and ran >= max_trials:
            break
        if deadline is not None and time.monotonic() > deadline:
            logger.info("sweep.timeout_s reached: no new trial")
            break
        reservation.enter_context(trial_reservation(settings, study.study_name))
        try:
            with _quiet_experimental():
                optuna.storages.fail_stale_trials(study)
            now = counts(study)
            if now.finished + now.running >= budget and now.waiting == 0:
                break
            if now.failed > 2 * budget:
                raise RetryableError(f"study {study.study_name}: {now.failed} trials failed; giving up")
            study.optimize(reserved_objective, n_trials=1, catch=(), gc_after_trial=False)
        finally:
            reservation.close()
        ran += 1
        last = study.get_trials(deepcopy=False)[-1]
        logger.info(
            "trial %d %s (%d/%d finished)",
            last.number,
            last.state.name.lower() if last.value is None else f"{OBJECTIVE}={last.value:.4f}",
            counts(study).finished,
            budget,
        )
    final = counts(study)
    best = _best(study)
    return {
        "run_id": run_id,
        "study": study.study_name,
        "slot": slot,
        "trials_run": ran,
        "finished": final.finished,
        "n_trials": budget,
        "best_trial": best.number if best else None,
        "best_value": best.value if best else None,
    }


def _best(study):
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=lambda t: (t.value, t.number)) if complete else None


def finalize(settings: Settings, run_id: str, report: bool = True) -> dict[str, Any]:
    """The best trial's parameters through train, evaluate and register of the same run id."""
    from pipeline.runner import run_pipeline
    from pipeline.tracking import configure

    client = configure(settings)
    storage = open_storage(settings)
    study = load_study(settings, run_id, storage)
    info = _study_info(study)
    # Every worker has stopped: what still runs is an orphan; close it without a retry.
    orphans = fail_running_trials(study, storage, InterruptedTrials(settings, client, retry=False))
    if orphans:
        logger.warning("closed trial(s) %s left running by a worker that stopped", orphans)
    best = _best(study)
    final = counts(study)
    if best is None:
        raise BadInputError(
            f"study {study.study_name}: no trial completed ({final.pruned} pruned, {final.failed} failed); "
            "widen sweep.space or raise sweep.max_epochs"
        )
    best_settings = settings_for_params(settings, best.params)
    trial_run_id = best.user_attrs.get("mlflow_run_id")
    logger.info(
        "best trial %d (%s=%.5f, params %s): train, evaluate and register it",
        best.number,
        OBJECTIVE,
        best.value,
        json.dumps(best.params, sort_keys=True),
    )

    kept = run_store_manifest(settings, run_id, "train")
    if kept is not None and kept.succeeded:
        trained = client.get_run(kept.summary["mlflow_run_id"]).data.tags.get(BEST_TRIAL_TAG)
        if trained is not None and trained != str(best.number):
            raise BadInputError(
                f"run {run_id!r} already trained trial {trained}, but the study's best is now trial "
                f"{best.number}: start a new sweep (another --run-id) to train and register it"
            )

    def on_step(name: str, event: str, manifest) -> None:
        if name == "train" and manifest is not None:
            mlflow_run_id = manifest.summary["mlflow_run_id"]
            for key, value in {
                ROLE_TAG: "best",
                SWEEP_PARENT_RUN_TAG: info["parent_run_id"],
                STUDY_TAG: study.study_name,
                BEST_TRIAL_TAG: str(best.number),
                BEST_TRIAL_RUN_TAG: trial_run_id or "",
                TRIAL_PARAMS: json.dumps(best.params, sort_keys=True),
            }.items():
                client.set_tag(mlflow_run_id, key, value)
        if event != "kept":
            logger.info("step %s: %s", name, event)

    manifests = run_pipeline(best_settings, run_id, on_step=on_step)
    train = manifests["train"].summary
    evaluate = manifests["evaluate"].summary
    register = manifests["register"].summary
    parent = info["parent_run_id"]
    metric = evaluate["primary_metric"]
    client.log_metric(parent, OBJECTIVE, float(best.value))  # of the best trial
    client.log_metric(parent, f"test_{metric}", float(evaluate["test"][metric]))  # best trial, retrained
    client.log_metric(parent, "trials_finished", final.finished)
    for key, value in {
        BEST_TRIAL_TAG: str(best.number),
        BEST_TRIAL_RUN_TAG: trial_run_id or "",
        BEST_RUN_TAG: train["mlflow_run_id"],
        REGISTRY_MODEL_TAG: register["model_name"],
        REGISTRY_VERSION_TAG: str(register["version"]),
        DECISION: "promoted" if register["promoted"] else "rejected",
        REASON: register["reason"],
    }.items():
        client.set_tag(parent, key, value)
    report_path = None
    if report:
        report_path = attach_report(settings, client, parent)
    client.set_terminated(parent, status="FINISHED")
    return {
        "run_id": run_id,
        "study": study.study_name,
        "parent_run_id": parent,
        "trials_finished": final.finished,
        "trials_pruned": final.pruned,
        "trials_failed": final.failed,
        "best_trial": best.number,
        "best_params": best.params,
        "best_value": best.value,
        "objective": OBJECTIVE,
        "mlflow_run_id": train["mlflow_run_id"],
        "retrained_best_val_loss": train["best_val_loss"],
        "primary_metric": metric,
        "test": evaluate["test"],
        "model_name": register["model_name"],
        "version": register["version"],
        "promoted": register["promoted"],
        "reason": register["reason"],
        "report": str(report_path) if report_path else None,
    }


def run_store_manifest(settings: Settings, run_id: str, step: str):
    from pipeline.runner import make_store

    return make_store(settings).read_manifest(run_id, step)


def attach_report(settings: Settings, client: MlflowClient, parent_run_id: str):
    """Write the experiment's HTML report and log it on the sweep's parent run."""
    from pipeline.report import write_report

    folder, name = REPORT_ARTIFACT.rsplit("/", 1)
    path = write_report(settings, settings.home / "reports" / parent_run_id / name, client=client)
    client.log_artifact(parent_run_id, str(path), folder)
    return path


def run_all(
    settings: Settings,
    run_id: str,
    *,
    n_trials: int | None = None,
    workers: int = 1,
    worker_command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Prepare, run the trials (in this process, or ``workers`` local worker processes), finalize."""
    if n_trials is not None:
        settings = settings.model_copy(
            update={"sweep": settings.sweep.model_copy(update={"n_trials": n_trials})}
        )
    prepared = prepare(settings, run_id)
    logger.info(
        "study %s: %d of %d trials finished, %d to go",
        prepared["study"],
        prepared["finished"],
        prepared["n_trials"],
        prepared["remaining"],
    )
    if workers <= 1 or worker_command is None:
        work(settings, run_id, owner=True)
    else:
        _close_leftovers(settings, run_id)
        run_local_workers(worker_command, workers)
    return finalize(settings, run_id)


def _close_leftovers(settings: Settings, run_id: str) -> None:
    from pipeline.tracking import configure

    client = configure(settings)
    handler = InterruptedTrials(settings, client)
    storage = open_storage(settings, on_interrupted=handler)
    study = load_study(settings, run_id, storage)
    fail_running_trials(study, storage, handler)


def run_local_workers(command: Sequence[str], workers: int) -> None:
    """``workers`` processes of ``command --slot <i>`` sharing the study; all must succeed."""
    processes = [
        subprocess.Popen(
            [*command, "--slot", str(slot)],
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        for slot in range(workers)
    ]
    try:
        codes = [process.wait() for process in processes]
    except BaseException:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait()
        raise
    failed = [code for code in codes if code != 0]
    if failed:
        raise RetryableError(f"{len(failed)} of {workers} sweep workers failed (exit codes {failed})")
