"""The monitor of the served champion as an Airflow DAG: drift and live performance, on a schedule.

Wiring only, beside ``ml_pipeline.py`` and built from the same helpers (pods, settings, alerts):

* ``monitor``: ``python -m pipeline monitor --trigger`` in a pod of the pipeline image (the evaluate step's
  resources; ``MLP_DAG_TASK_RUNNER=local``: a local subprocess). It compares the prediction log's
  last ``monitor.window_hours`` with the champion's reference data and writes its JSON summary as the
  task's XCom (``/airflow/xcom/return.json``, read by the XCom sidecar). Exit 65 (no champion, bad
  input) fails at once; 75 (a store unreachable) is retried.
* ``alerts``: the summary's alerts (one per episode the check opened: drift, degradation, a window
  that fails the data contract) through the same webhook as step failures.
* ``retrain``: when the check triggered a retrain, an event of the retrain asset, its ``extra``
  carrying the cause, the monitoring run, the drifted columns and the window; the training DAG
  (``ml_pipeline``) is scheduled on that asset and records the cause on the run and the version it
  registers. Skipped when no retrain is triggered (no event).

It runs on ``MLP_DAG_MONITOR_SCHEDULE`` (``@hourly`` by default; ``none``: only when triggered).
The monitor's own guard rails decide: a cool-down between retrains (``monitor.cooldown_hours``) and no
retrain on a window that fails the data contract. See docs/serving.md ("Monitoring").
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, CronTriggerTimetable, task

from pipeline.steps import STEP_NAMES, get_step

# Make the helpers next to this file importable (see ml_pipeline.py).
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from ml_pipeline_support.alerts import dag_failure_callback
from ml_pipeline_support.monitor import RETRAIN_ASSET
from ml_pipeline_support.operators import KubernetesStepOperator, LocalStepOperator
from ml_pipeline_support.settings import DagSettings
from ml_pipeline_support.tasks import default_task_args, pod_step_kwargs

DAG_ID = "ml_pipeline_monitor"
MONITOR_TASK_ID = "monitor"
MONITOR_TIMEOUT_S = 1800
# --trigger: this DAG acts on a triggered retrain (the asset event below), so the cool-down starts.
MONITOR_ARGUMENTS = [MONITOR_TASK_ID, "--trigger"]
RESOURCES_OF = "evaluate"  # the monitor loads the model and scores the reference, like evaluate

settings = DagSettings.from_env(STEP_NAMES)

# MLP_DAG_MONITOR_SCHEDULE (default @hourly: the check is cheap; the window it judges is
# monitor.window_hours), in UTC like the training DAG's; none: only when triggered.
schedule = (
    CronTriggerTimetable(settings.monitor_schedule, timezone="UTC") if settings.monitor_schedule else None
)

with DAG(
    dag_id=DAG_ID,
    description="Drift and live performance of the champion; emits the retrain asset on evidence.",
    doc_md=__doc__,
    schedule=schedule,
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args=default_task_args(settings),
    on_failure_callback=dag_failure_callback,
    tags=["ml-pipeline", "monitoring", settings.task_runner],
) as dag:
    if settings.task_runner == "local":
        check = LocalStepOperator(
            task_id=MONITOR_TASK_ID,
            step=MONITOR_TASK_ID,
            doc_md="pipeline monitor: drift and live metric of the champion.",
            arguments=MONITOR_ARGUMENTS,
            execution_timeout=timedelta(seconds=MONITOR_TIMEOUT_S),
        )
    else:
        kwargs = pod_step_kwargs(
            get_step(RESOURCES_OF),
            settings,
            task_id=MONITOR_TASK_ID,
            arguments=MONITOR_ARGUMENTS,
            timeout_s=MONITOR_TIMEOUT_S,
        )
        kwargs["doc_md"] = "pipeline monitor: drift and live metric of the champion."
        check = KubernetesStepOperator(**kwargs)

    @task(task_id="alerts")
    def alerts(summary: dict) -> int:
        """Send the alerts of the episodes this check opened."""
        from airflow.sdk import get_current_context
        from ml_pipeline_support.monitor import monitor_alerts

        return monitor_alerts(get_current_context(), summary or {})

    @task(task_id="retrain", outlets=[RETRAIN_ASSET])
    def retrain(summary: dict, *, outlet_events=None) -> dict:
        """An event of the retrain asset when the check triggered a retrain; skipped otherwise."""
        from airflow.sdk.exceptions import AirflowSkipException
        from ml_pipeline_support.monitor import retrain_extra

        summary = summary or {}
        if not summary.get("retrain_triggered"):
            raise AirflowSkipException(
                f"no retrain: {summary.get('retrain_skipped') or 'no drift or degradation found'}"
            )
        extra = retrain_extra(summary)
        outlet_events[RETRAIN_ASSET].extra = extra
        return extra

    alerts(check.output)
    retrain(check.output)
