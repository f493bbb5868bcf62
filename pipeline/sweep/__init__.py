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

from pipeline.sweep.data import TRIAL_INPUTS, TrialData, load_trial_data, run_data_steps
from pipeline.sweep.objective import Objective, train_like_the_train_step, validation_scores
from pipeline.sweep.space import (
    LIST_SETTINGS,
    open_storage,
    overrides_for_params,
    settings_for_params,
    storage_url,
    study_name,
    suggest,
    train_settings_for,
    trial_reservation,
)
from pipeline.sweep.stages import REPORT_ARTIFACT, finalize, prepare, run_all, run_local_workers, work
from pipeline.sweep.study import (
    Counts,
    InterruptedTrials,
    counts,
    fail_running_trials,
    load_study,
    retry_later,
    stored_trial,
)

__all__ = [
    "LIST_SETTINGS",
    "REPORT_ARTIFACT",
    "TRIAL_INPUTS",
    "Counts",
    "InterruptedTrials",
    "Objective",
    "TrialData",
    "counts",
    "fail_running_trials",
    "finalize",
    "load_study",
    "load_trial_data",
    "open_storage",
    "overrides_for_params",
    "prepare",
    "retry_later",
    "run_all",
    "run_data_steps",
    "run_local_workers",
    "settings_for_params",
    "storage_url",
    "stored_trial",
    "study_name",
    "suggest",
    "train_like_the_train_step",
    "train_settings_for",
    "trial_reservation",
    "validation_scores",
    "work",
]
