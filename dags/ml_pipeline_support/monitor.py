"""The loop's wiring: the retrain Asset, the monitor's alerts, and the cause a training run records.

* :data:`RETRAIN_ASSET` — the Airflow Asset the monitor DAG (``ml_pipeline_monitor``) updates when
  ``pipeline monitor`` decides to retrain; the training DAG (``ml_pipeline``) is scheduled on its
  timetable *or* this asset. The event's ``extra`` carries the cause (:func:`retrain_extra`).
* :func:`monitor_alerts` — the alerts the monitor's summary lists (one per episode opened: the
  monitor records its episodes, so persistent drift alerts once), sent through the same webhook and
  message builder as step failures (:mod:`ml_pipeline_support.alerts`).
* :func:`trigger_env` — the ``PIPELINE_TRIGGER__*`` variables every step gets at render time: the
  triggering asset event's cause, else ``schedule`` for a scheduled run and ``manual`` otherwise.
  The register step records them as ``trigger.*`` tags on the run and on the model version.

Everything here runs at run time, inside a task; nothing at parse time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from airflow.sdk import Asset

from ml_pipeline_support.alerts import build_message, link, mlflow_run_url, one_line, send

log = logging.getLogger(__name__)

RETRAIN_ASSET = Asset(name="ml_pipeline_retrain", uri="mlp://ml-pipeline/retrain")
CAUSES = frozenset({"drift", "degradation"})  # the causes an asset event may carry
TRIGGER_ENV = {
    "cause": "PIPELINE_TRIGGER__CAUSE",
    "monitor_run_id": "PIPELINE_TRIGGER__MONITOR_RUN_ID",
    "drifted_columns": "PIPELINE_TRIGGER__DRIFTED_COLUMNS",
    "window": "PIPELINE_TRIGGER__WINDOW",
}
MAX_VALUE = 4000  # characters of one variable taken from an event's extra


def retrain_extra(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The asset event's ``extra`` for a monitor summary that triggered a retrain."""
    return {
        "cause": summary.get("retrain_cause") or "drift",
        "monitor_run_id": summary.get("monitor_run_id"),
        "drifted_columns": summary.get("drifted_columns") or {},
        "window": summary.get("window") or {},
        "model": summary.get("model"),
        "champion_version": summary.get("champion_version"),
    }


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:MAX_VALUE]


def _events(context: Mapping[str, Any]) -> list[Any]:
    events = context.get("triggering_asset_events") or {}
    try:
        return [event for group in events.values() for event in group]
    except Exception:  # an accessor that cannot be read: the run records no asset cause
        log.warning("could not read the triggering asset events", exc_info=True)
        return []


def trigger_env(context: Mapping[str, Any]) -> dict[str, str]:
    """``PIPELINE_TRIGGER__*`` for the run in ``context`` (see the module docstring)."""
    for event in reversed(_events(context)):
        extra = getattr(event, "extra", None) or {}
        cause = extra.get("cause")
        if cause in CAUSES:
            env = {TRIGGER_ENV["cause"]: cause}
            for key in ("monitor_run_id", "drifted_columns", "window"):
                if extra.get(key):
                    env[TRIGGER_ENV[key]] = _text(extra[key])
            return env
    run_type = str(getattr(context.get("dag_run"), "run_type", "") or "").lower()
    if not run_type:  # no DAG run in the context: its id says how it was started (scheduled__...)
        run_type = str(context.get("run_id") or "").split("__", 1)[0].lower()
    return {TRIGGER_ENV["cause"]: "schedule" if run_type.endswith("scheduled") else "manual"}


def monitor_alerts(context: Mapping[str, Any], summary: Mapping[str, Any]) -> int:
    """Send the alerts of a monitor summary; how many were sent (or logged). Never raises."""
    sent = 0
    try:
        ti = context["ti"]
        for alert in summary.get("alerts") or []:
            message = build_message(
                ":warning: *{dag}*: {text}",
                [
                    ("Run", "`{run}`"),
                    ("Retrain", "{retrain}"),
                    ("Monitoring run", "{mlflow}"),
                    ("Report", "{report}"),
                ],
                dag=ti.dag_id,
                text=one_line(str(alert.get("text", ""))),
                run=ti.run_id,
                retrain=(
                    f"triggered ({summary.get('retrain_cause')})"
                    if summary.get("retrain_triggered")
                    else summary.get("retrain_skipped") or "not needed"
                ),
                mlflow=link(mlflow_run_url(summary.get("monitor_run_id")), "MLflow monitoring run"),
                report=(summary.get("report") or {}).get("artifact"),
            )
            send(message)
            sent += 1
    except Exception:
        log.exception("Could not build the monitor alert")
    return sent
