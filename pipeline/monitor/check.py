"""One monitoring check, end to end: the champion, its reference, the current window, the drift and
live-metric verdicts, the episode and retrain decision, the MLflow monitoring run and the report.

The check's own failures follow the exit-code contract: no champion, a bad window file or a model
without recorded lineage are bad input (65); a store that cannot be reached is retryable (75).
Finding drift is not a failure: the summary says so.
"""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline import names as n
from pipeline.errors import BadInputError
from pipeline.monitor import data as d
from pipeline.monitor.drift import column_drift, dataset_drift
from pipeline.monitor.episodes import State, decide, utcnow
from pipeline.monitor.live import live_metric
from pipeline.monitor.report import render

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import Settings

logger = logging.getLogger("pipeline.monitor")

ALERT_TITLES = {
    "drift": "Data drift on {model}: {columns}",
    "degradation": "{model} degraded: live {metric} {live} against test {test}",
    "invalid_data": "{model}: the drifted window fails the data contract; no retrain",
}


def monitoring_experiment(settings: Settings) -> str:
    return settings.resolved_experiment_name + n.MONITOR_EXPERIMENT_SUFFIX


def previous_state(client, experiment_id: str, model: str) -> State:
    """The state the last finished check of ``model`` recorded."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{n.MONITOR_MODEL_TAG}` = '{model}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return State.parse(runs[0].data.tags.get(n.MONITOR_STATE_TAG)) if runs else State()


def window_contract(settings: Settings):
    """The data contract restricted to the model's features: a window holds no target."""
    data = settings.data
    features = {k: v for k, v in data.columns.items() if k in data.feature_columns()}
    return data.model_copy(
        update={
            "columns": features,
            "target": next(iter(features), data.target),
            "task": "regression",  # no distinct-class rule on a target the window does not have
            "min_rows": 1,
            "max_rows": None,
            "unique_together": [],
            "strict": False,
        }
    )


def validate_window(settings: Settings, frame) -> dict[str, Any]:
    from pipeline.contract import validate_frame

    features = [c for c in settings.data.feature_columns() if c in frame.columns]
    outcome = validate_frame(frame[features], window_contract(settings), "the current window")
    return {"success": outcome.success, "failures": outcome.failures[:20]}


def run_check(
    settings: Settings,
    *,
    current_file: Path | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
    act: bool = False,
) -> tuple[dict[str, Any], Settings | None]:
    """Run one check. Returns the summary and, when a retrain is triggered, the settings a
    retraining run takes (its ``trigger`` section filled in). ``act``: the caller acts on a
    triggered retrain (see :func:`pipeline.monitor.episodes.decide`)."""
    from mlflow.exceptions import MlflowException

    from pipeline.registry import champion
    from pipeline.tracking import configure, ensure_experiment, wrap_unreachable

    now = now or utcnow()
    name = settings.resolved_model_name
    try:
        client = configure(settings)
        version = champion(client, name)
        if version is None:
            raise BadInputError(
                f"model {name!r} has no @champion in the registry at {settings.resolved_tracking_uri}: "
                "train and promote one first (pipeline run)"
            )
        champion_run = client.get_run(version.run_id)
        experiment_id = ensure_experiment(
            client, settings.model_copy(update={"experiment_name": monitoring_experiment(settings)})
        )
        state = previous_state(client, experiment_id, name)
        run = client.create_run(
            experiment_id,
            tags={n.MONITOR_MODEL_TAG: name, n.MONITOR_VERSION_TAG: str(version.version)},
            run_name=f"monitor-{name}-v{version.version}",
        )
    except MlflowException as exc:
        raise wrap_unreachable(exc, settings) from None
    run_id = run.info.run_id
    status = "FAILED"
    try:
        summary, retrain_settings = _check(
            settings, client, version, champion_run, state, run_id, current_file, since, until, now, act
        )
        summary["report"] = {
            "path": str(save_report(settings, summary)),
            "artifact": f"runs:/{run_id}/{n.MONITOR_REPORT_ARTIFACT}",
        }
        _record(client, run_id, summary)
        status = "FINISHED"
        return summary, retrain_settings
    except MlflowException as exc:
        raise wrap_unreachable(exc, settings) from None
    finally:
        try:
            client.set_terminated(run_id, status)
        except MlflowException:
            logger.warning("could not end the monitoring run %s", run_id)


def _check(settings, client, version, champion_run, state, run_id, current_file, since, until, now, act):
    monitor = settings.monitor
    predictor = d.load_predictor(client, version.name, str(version.version))
    with tempfile.TemporaryDirectory(prefix="monitor-") as tmp:
        reference = d.reference_frame(settings, version, Path(tmp))
    if current_file is not None:
        window = d.window_from_file(settings, current_file, predictor)
    else:
        until = until or now
        since = since or until - timedelta(hours=monitor.window_hours)
        window = d.window_from_log(settings, since, until, version.name)
    features = predictor.transformer.numeric + predictor.transformer.categorical
    declared = {c: (settings.data.columns[c].type if c in settings.data.columns else None) for c in features}
    current = window.frame
    for column in features:  # a window with no rows has no columns
        if column not in current.columns:
            current[column] = None
    drift = dataset_drift(reference, current, declared, monitor, monitor.drift_share)

    task = predictor.transformer.task
    prediction = None
    if drift.judged and "prediction" in current.columns:
        kind = "category" if task == "classification" else "float"
        prediction = column_drift(
            "prediction", d.score_reference(predictor, reference), current["prediction"], kind, monitor
        ).to_dict()

    metric = champion_run.data.tags.get(n.PRIMARY_METRIC_TAG) or settings.primary_metric
    test = champion_run.data.metrics.get(f"test_{metric}")
    live = live_metric(
        current, d.LABEL, task, metric, test, monitor.min_labelled, monitor.degradation_threshold
    )

    judged = drift.judged or live["judged"]
    problems = {"drift": drift.drift_detected, "degradation": live["degraded"]}
    validation = None
    if any(problems.values()):
        validation = validate_window(settings, current)
    decision = decide(
        state,
        judged=judged,
        problems=problems,
        valid=validation is None or validation["success"],
        now=now,
        cooldown_hours=monitor.cooldown_hours,
        run_id=run_id,
        act=act,
    )
    drifted = dict(drift.drifted)
    reasons = [r for r in (drift.reason, None if live["judged"] else live.get("reason")) if r]
    summary: dict[str, Any] = {
        "model": version.name,
        "champion_version": str(version.version),
        "monitor_run_id": run_id,
        "window": window.describe(),
        "judged": judged,
        "reason": "; ".join(reasons) if not judged else None,
        "drift_judged": drift.judged,
        "drift_reason": drift.reason,
        "drift_detected": drift.drift_detected,
        "drift_share": drift.share,
        "drifted_columns": drifted,
        "columns": [c.to_dict() for c in drift.columns],
        "prediction_drift": prediction,
        "live": live,
        "degraded": live["degraded"],
        "validation": validation,
        "retrain_triggered": decision.retrain_triggered,
        "retrain_cause": decision.cause if decision.retrain_triggered else None,
        "retrain_skipped": decision.retrain_skipped,
        "retrain_acted_on": decision.retrain_triggered and act,
        "episodes": {
            "opened": decision.opened,
            "closed": decision.closed,
            "open": sorted(decision.state.open),
        },
        "state": json.loads(decision.state.dump()),
        "reference_rows": len(reference),
    }
    summary["alerts"] = [_alert(kind, summary) for kind in decision.opened]
    for alert in summary["alerts"]:
        logger.warning("ALERT %s", alert["text"])
    retrain_settings = None
    if decision.retrain_triggered:
        trigger = settings.trigger.model_copy(
            update={
                "cause": decision.cause,
                "monitor_run_id": run_id,
                "drifted_columns": json.dumps(drifted, sort_keys=True),
                "window": json.dumps(window.describe(), sort_keys=True),
            }
        )
        retrain_settings = settings.model_copy(update={"trigger": trigger})
    return summary, retrain_settings


def _alert(kind: str, summary: dict[str, Any]) -> dict[str, Any]:
    live = summary["live"]
    values = {
        "model": f"{summary['model']} v{summary['champion_version']}",
        "columns": ", ".join(f"{k} ({v:.3g})" for k, v in summary["drifted_columns"].items()) or "-",
        "metric": live.get("metric"),
        "live": f"{live['live']:.4f}" if live.get("live") is not None else "-",
        "test": f"{live['test']:.4f}" if live.get("test") is not None else "-",
    }
    text = ALERT_TITLES[kind].format(**values)
    if kind == "invalid_data" and summary.get("validation"):
        text += ": " + "; ".join(summary["validation"]["failures"][:5])
    return {"kind": kind, "text": text, "monitor_run_id": summary["monitor_run_id"]}


def _record(client, run_id: str, summary: dict[str, Any]) -> None:
    """Metrics, tags, the report and the summary on the monitoring run."""
    from mlflow.entities import Metric, RunTag

    from pipeline.redaction import redact_data

    stamp = int(utcnow().timestamp() * 1000)
    values: dict[str, float] = {n.WINDOW_ROWS_METRIC: summary["window"]["rows"]}
    values[n.LABELLED_ROWS_METRIC] = summary["live"]["labelled_rows"]
    if summary["drift_share"] is not None:
        values[n.DRIFT_SHARE_METRIC] = summary["drift_share"]
        values[n.DRIFTED_COLUMNS_METRIC] = len(summary["drifted_columns"])
    for column in summary["columns"]:
        if column["score"] is not None:
            values[n.DRIFT_SCORE_METRIC_PREFIX + column["column"]] = column["score"]
    if summary["prediction_drift"] and summary["prediction_drift"]["score"] is not None:
        values[n.PREDICTION_DRIFT_METRIC] = summary["prediction_drift"]["score"]
    if summary["live"]["live"] is not None:
        values[n.LIVE_METRIC_PREFIX + summary["live"]["metric"]] = summary["live"]["live"]
    tags = {
        n.MONITOR_JUDGED_TAG: str(summary["judged"]).lower(),
        n.MONITOR_DRIFT_TAG: str(summary["drift_detected"]).lower(),
        n.MONITOR_DEGRADED_TAG: str(summary["degraded"]).lower(),
        n.MONITOR_RETRAIN_TAG: str(summary["retrain_triggered"]).lower(),
        n.MONITOR_DRIFTED_COLUMNS_TAG: json.dumps(summary["drifted_columns"], sort_keys=True),
        n.MONITOR_STATE_TAG: json.dumps(summary["state"], sort_keys=True),
    }
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), stamp, 0) for k, v in values.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    with tempfile.TemporaryDirectory(prefix="monitor-record-") as tmp:
        (Path(tmp) / n.MONITOR_REPORT_ARTIFACT).write_text(render(summary))
        (Path(tmp) / n.MONITOR_SUMMARY_ARTIFACT).write_text(
            json.dumps(redact_data(summary), indent=2, sort_keys=True, default=str)
        )
        client.log_artifacts(run_id, tmp)


def save_report(settings: Settings, summary: dict[str, Any]) -> Path:
    """The report under the home: ``<home>/monitoring/<model>/<monitor run id>/drift_report.html``."""
    folder = settings.home / "monitoring" / summary["model"] / summary["monitor_run_id"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / n.MONITOR_REPORT_ARTIFACT
    path.write_text(render(summary))
    return path
