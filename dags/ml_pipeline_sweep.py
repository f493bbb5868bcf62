"""Hyperparameter sweep as an Airflow DAG: trials run in parallel pods, mapped over trial slots.

Wiring only, beside ``ml_pipeline.py`` and built from the same helpers (operators, pod settings,
alerts). Each task runs one stage of ``python -m pipeline sweep --run-id {{ run_id }}``
(pipeline/sweep.py, docs/experiments.md):

* ``check_params``: the run's params may set only the allow-listed keys (ml_pipeline_support/trigger.py);
* ``sweep_prepare``: the data steps (ingest .. version) of the run, the Optuna study in the shared
  storage (PostgreSQL on the cluster) and the MLflow parent run; returns how many trials remain;
* ``trial_slots``: one slot per worker, ``min(MLP_DAG_SWEEP_SLOTS, remaining trials)``;
* ``sweep_trials``: dynamic task mapping over the slots, one pod (the train step's resources, and
  its GPU when ``MLP_DAG_GPU_ENABLED``) per slot; each worker pulls trials from the shared study
  until its budget is spent, so a slow or retried pod never leaves a hole;
* ``sweep_finalize``: trains the best trial's parameters through train, evaluate and register of
  the same run (the promotion gate of a normal run; promotion alerts as in ``ml_pipeline``),
  writes the experiment report and attaches it to the parent run.

Trigger it by hand (no schedule), with ``overrides`` such as ``sweep.n_trials=40``; as in
``ml_pipeline``, a first ``check_params`` task refuses keys outside ``MLP_DAG_TRIGGER_ALLOWED_KEYS``.
A run that failed resumes its study when cleared: finished trials are kept.
"""

from __future__ import annotations

import dataclasses
import sys
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, Param, chain, task

from pipeline.steps import DATA_STEPS, STEP_NAMES, get_step

# Make the helpers next to this file importable (see ml_pipeline.py).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from ml_pipeline_support.alerts import dag_failure_callback
from ml_pipeline_support.operators import KubernetesStepOperator, LocalStepOperator
from ml_pipeline_support.settings import DagSettings
from ml_pipeline_support.tasks import check_params_task, default_task_args, pod_step_kwargs

DAG_ID = "ml_pipeline_sweep"
FINAL_STEPS = tuple(name for name in STEP_NAMES if name not in DATA_STEPS)  # train, evaluate, register

settings = DagSettings.from_env(STEP_NAMES)
# How many trial pods run at once (the study's budget is the pipeline's sweep.n_trials).
SLOTS = settings.sweep_slots
# Execution timeout of one worker pod, which runs several trials.
WORKER_TIMEOUT_S = settings.sweep_worker_timeout_s
PREPARE_TIMEOUT_S = sum(settings.step_timeouts_s[s] for s in DATA_STEPS)
FINALIZE_TIMEOUT_S = sum(settings.step_timeouts_s[s] for s in FINAL_STEPS)


def sweep_arguments(stage: str) -> list[str]:
    return ["sweep", "--stage", stage, "--run-id", "{{ run_id }}"]


def stage_task(task_id: str, stage: str, profile: str, summary: str, timeout_s: int, **extra):
    """One sweep stage in a pod shaped like the ``profile`` step's (or a local subprocess)."""
    if settings.task_runner == "local":
        return LocalStepOperator(
            task_id=task_id,
            step=task_id,
            allowed_keys=settings.trigger_allowed_keys,
            doc_md=summary,
            arguments=sweep_arguments(stage),
            execution_timeout=timedelta(seconds=timeout_s),
            **extra,
        )
    spec = dataclasses.replace(get_step(profile), summary=summary)
    kwargs = pod_step_kwargs(
        spec, settings, task_id=task_id, arguments=sweep_arguments(stage), timeout_s=timeout_s
    )
    return KubernetesStepOperator(**kwargs, **extra)


def mapped_trials_task(slot_arguments):
    """``sweep_trials``: one worker per slot, mapped over the slots' argument lists."""
    summary = "Run trials of the shared study until its budget is spent (one worker per slot)."
    if settings.task_runner == "local":
        return LocalStepOperator.partial(
            task_id="sweep_trials",
            step="sweep_trials",
            allowed_keys=settings.trigger_allowed_keys,
            doc_md=summary,
            execution_timeout=timedelta(seconds=WORKER_TIMEOUT_S),
            max_active_tis_per_dagrun=SLOTS,
        ).expand(arguments=slot_arguments)
    kwargs = pod_step_kwargs(
        dataclasses.replace(get_step("train"), summary=summary),
        settings,
        task_id="sweep_trials",
        timeout_s=WORKER_TIMEOUT_S,
    )
    kwargs.pop("arguments")
    return KubernetesStepOperator.partial(**kwargs, max_active_tis_per_dagrun=SLOTS).expand(
        arguments=slot_arguments
    )


@task(multiple_outputs=False)
def trial_slots(prepared: dict) -> list[list[str]]:
    """The worker arguments of each slot: as many slots as trials remain, at most SLOTS."""
    remaining = int(prepared.get("remaining") or 0)
    run_id = str(prepared["run_id"])
    return [
        ["sweep", "--stage", "worker", "--run-id", run_id, "--slot", str(slot)]
        for slot in range(min(SLOTS, remaining))
    ]


default_args = default_task_args(settings)

with DAG(
    dag_id=DAG_ID,
    description="Hyperparameter sweep: prepare, trials in parallel pods, best trial through the gate.",
    doc_md=__doc__,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(seconds=PREPARE_TIMEOUT_S + WORKER_TIMEOUT_S + FINALIZE_TIMEOUT_S),
    default_args=default_args,
    on_failure_callback=dag_failure_callback,
    tags=["ml-pipeline", "sweep", settings.task_runner],
    params={
        "source": Param(
            None,
            type=["null", "string"],
            title="Source URI",
            description="Read this source instead of the configured one (data.source.uri).",
        ),
        "overrides": Param(
            [],
            type="array",
            items={"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=.*$"},
            title="Config overrides",
            description="key=value settings passed to every stage as --set (e.g. sweep.n_trials=40, "
            "sweep.max_epochs=50).",
        ),
    },
) as dag:
    prepare = stage_task(
        "sweep_prepare",
        "prepare",
        "version",
        "Data steps of the run, the Optuna study and the MLflow parent run.",
        PREPARE_TIMEOUT_S,
    )
    slots = trial_slots(prepare.output)
    trials = mapped_trials_task(slots)
    finalize = stage_task(
        "sweep_finalize",
        "finalize",
        "train",
        "Train, evaluate and register the best trial (the promotion gate); write the report.",
        FINALIZE_TIMEOUT_S,
        trigger_rule="none_failed",  # no slot left to map (a resumed, finished study) is fine
    )
    chain(check_params_task(settings), prepare, slots, trials, finalize)
