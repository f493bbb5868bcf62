"""The stages of a sweep (prepare, worker, finalize, all) and the local worker processes.

Why one module of this size: the four stages share the study's bookkeeping and read in the order
they run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pipeline.errors import BadInputError, RetryableError
from pipeline.names import (
    BEST_RUN_TAG,
    BEST_TRIAL_RUN_TAG,
    BEST_TRIAL_TAG,
    DATASET_TAG,
    DECISION,
    FEATURE_SET_VERSION_TAG,
    GIT_COMMIT_TAG,
    N_TRIALS_TAG,
    OBJECTIVE,
    RAW_DVC_MD5_TAG,
    REASON,
    REGISTRY_MODEL_TAG,
    REGISTRY_VERSION_TAG,
    ROLE_TAG,
    STUDY_TAG,
    SWEEP_MAX_EPOCHS_PARAM,
    SWEEP_OBJECTIVE_PARAM,
    SWEEP_PARENT_RUN_TAG,
    SWEEP_PRUNER_PARAM,
    SWEEP_RUN_TAG,
    SWEEP_SAMPLER_PARAM,
    SWEEP_SPACE_PARAM,
    SWEEP_STORAGE_TAG,
    TRIAL_PARAMS,
)
from pipeline.settings import Settings, redact_url
from pipeline.sweep.data import load_trial_data, run_data_steps
from pipeline.sweep.objective import Objective
from pipeline.sweep.space import (
    open_storage,
    quiet_experimental,
    settings_for_params,
    storage_url,
    trial_reservation,
)
from pipeline.sweep.study import InterruptedTrials, counts, fail_running_trials, load_study, study_info

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient


logger = logging.getLogger(__name__)

REPORT_ARTIFACT = "report/experiment_report.html"


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
    info = study_info(study)
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
            with quiet_experimental():
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
    info = study_info(study)
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
        if name == "train" and manifest is not None and not manifest.reused_from:  # never another run's
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
