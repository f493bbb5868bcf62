"""The study's bookkeeping: loading it, counting its trials, failing and retrying interrupted ones."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import UpstreamMissingError
from pipeline.names import (
    SWEEP_STATE_TAG,
)
from pipeline.settings import Settings
from pipeline.sweep.space import study_name

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    from mlflow.tracking import MlflowClient


logger = logging.getLogger(__name__)


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


def study_info(study) -> dict[str, str]:
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
