"""The ML training pipeline as an Airflow DAG: one task per step of ``pipeline.steps.STEPS``.

Wiring only. The tasks, their order and their documentation come from the step registry, so a new
step needs no edit here; a ``preflight`` task (``pipeline doctor``) checks every backend first
(``MLP_DAG_PREFLIGHT``, on by default). Each step task runs
``python -m pipeline step <name> --run-id {{ run_id }}`` in a pod of the pipeline image
(``MLP_DAG_TASK_RUNNER=kubernetes``, the default) or as a local subprocess (``local``,
one-machine mode). The DAG runs on its timetable (``MLP_DAG_SCHEDULE``) or when the monitor DAG
(``ml_pipeline_monitor``) updates the retrain asset; each run records its cause (``trigger.cause``:
schedule, manual, drift, degradation). Pod settings come from the ``MLP_DAG_*`` environment variables
(docs/configuration.md); the pipeline's own configuration reaches the pods at run time.
See docs/airflow.md for how to trigger, pause and backfill it.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, AssetOrTimeSchedule, CronTriggerTimetable, Param, chain

from pipeline.steps import STEP_NAMES, STEPS

# Airflow puts a DAG bundle's folder on sys.path when it parses or runs it (BundleDagBag); a plain
# DagBag (`airflow dags list-import-errors --local`, tests) does not. Make the helpers next to this
# file importable either way.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from ml_pipeline_support.alerts import dag_failure_callback
from ml_pipeline_support.monitor import RETRAIN_ASSET
from ml_pipeline_support.settings import DagSettings
from ml_pipeline_support.tasks import check_params_task, default_task_args, preflight_task, step_task

DAG_ID = "ml_pipeline"

settings = DagSettings.from_env(STEP_NAMES)

default_args = default_task_args(settings)

# On its timetable, or when the monitor (ml_pipeline_monitor) decides to retrain: an event of
# RETRAIN_ASSET, whose extra (the cause, the monitoring run, the drifted columns) every step gets
# as PIPELINE_TRIGGER__* (ml_pipeline_support/monitor.py). MLP_DAG_SCHEDULE=none: the asset only.
if settings.schedule:
    schedule = AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(settings.schedule, timezone="UTC"), assets=[RETRAIN_ASSET]
    )
else:
    schedule = [RETRAIN_ASSET]

with DAG(
    dag_id=DAG_ID,
    description="Ingest, validate, preprocess, features, version, train, evaluate, register.",
    doc_md=__doc__,
    schedule=schedule,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(seconds=settings.run_timeout_s),
    default_args=default_args,
    on_failure_callback=dag_failure_callback,
    tags=["ml-pipeline", settings.task_runner],
    params={
        "source": Param(
            None,
            type=["null", "string"],
            title="Source URI",
            description="Read this source instead of the configured one (data.source.uri): a path, "
            "file://, s3:// or http(s):// URL. Empty: the configured source. Refused unless "
            "MLP_DAG_TRIGGER_ALLOWED_KEYS allows data.source.uri.",
        ),
        "overrides": Param(
            [],
            type="array",
            items={"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*=.*$"},
            title="Config overrides",
            description="key=value settings for this run, passed to every step as --set "
            "(e.g. train.max_epochs=20). Only keys matching MLP_DAG_TRIGGER_ALLOWED_KEYS are accepted "
            "(by default train.*, evaluate.permutation_repeats and the sweep's size and search space).",
        ),
    },
) as dag:
    preflight = [preflight_task(STEPS[0], settings)] if settings.preflight else []
    chain(check_params_task(settings), *preflight, *(step_task(step, settings) for step in STEPS))
