"""The report's monitoring section: what ``pipeline monitor`` recorded, and what was served.

* The checks: the MLflow runs of ``<experiment>-monitoring`` (one per ``pipeline monitor``), their
  metrics (``drift.score.<column>``, ``drift.prediction_score``, ``live.<metric>``, ``drift.share``),
  their ``monitor.*`` tags, and the summary each logged (``monitor_summary.json``): the test and
  threshold behind each column's score and the champion's recorded test metric the live metric was
  held against. A check whose summary cannot be read still shows its metrics (no threshold, no test
  metric for it).
* The served versions: the prediction log (``prediction_log`` in the feature store's database) names
  the model version that answered each request, with its time. It is read, never created: a store
  where nothing was served shows a note instead.

:func:`checks_frame`, :func:`drift_frame` and :func:`served_segments` are pure functions over MLflow
runs, summaries and logged requests.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.names import (
    DRIFT_SCORE_METRIC_PREFIX,
    DRIFT_SHARE_METRIC,
    LABELLED_ROWS_METRIC,
    LIVE_METRIC_PREFIX,
    MONITOR_DEGRADED_TAG,
    MONITOR_DRIFT_TAG,
    MONITOR_DRIFTED_COLUMNS_TAG,
    MONITOR_EXPERIMENT_SUFFIX,
    MONITOR_JUDGED_TAG,
    MONITOR_MODEL_TAG,
    MONITOR_RETRAIN_TAG,
    MONITOR_SUMMARY_ARTIFACT,
    MONITOR_VERSION_TAG,
    PREDICTION_DRIFT_METRIC,
    WINDOW_ROWS_METRIC,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from pipeline.settings import Settings

logger = logging.getLogger(__name__)

PREDICTION_SERIES = "(prediction)"  # the series of the model's output (drift.prediction_score)
# A p-value test drifts below its threshold; a distance drifts at or above it (pipeline.monitor.drift).
FAMILIES = {"ks": "p-value", "chisquare": "p-value", "wasserstein": "distance", "jensenshannon": "distance"}
UNKNOWN_FAMILY = "score"  # a check whose summary (and so its tests) could not be read


@dataclass
class MonitoringData:
    """The monitoring checks of the report's model and the versions its server answered with."""

    experiments: list[str] = field(default_factory=list)  # the monitoring experiments found
    checks: pd.DataFrame | None = None  # one row per check, oldest first
    drift: pd.DataFrame | None = None  # one row per check and column (and the prediction)
    served: pd.DataFrame | None = None  # one row per stretch of requests answered by one version
    served_note: str | None = None  # why there is no served timeline, when there is none
    metric: str | None = None  # the live metric's name

    @property
    def empty(self) -> bool:
        return self.checks is None or not len(self.checks)


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None (missing, not a number, NaN or infinite)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _flag(value: str | None) -> bool | None:
    return None if value is None else value == "true"


def _started(run) -> datetime:
    return datetime.fromtimestamp(run.info.start_time / 1000, UTC)


def checks_frame(runs: list, summaries: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per monitoring run (oldest first): when, which champion version it judged, its
    verdicts, the live metric and the recorded test metric it was held against."""
    import pandas as pd

    rows = []
    for run in sorted(runs, key=lambda r: r.info.start_time):
        tags, metrics = run.data.tags, run.data.metrics
        summary = summaries.get(run.info.run_id) or {}
        live = summary.get("live") or {}
        live_keys = sorted(k for k in metrics if k.startswith(LIVE_METRIC_PREFIX))
        metric = live.get("metric") or (live_keys[0].removeprefix(LIVE_METRIC_PREFIX) if live_keys else None)
        try:
            drifted = ", ".join(sorted(json.loads(tags.get(MONITOR_DRIFTED_COLUMNS_TAG) or "{}")))
        except (ValueError, TypeError):
            drifted = ""
        started = _started(run)
        rows.append(
            {
                "run_id": run.info.run_id,
                "run": run.info.run_name or run.info.run_id[:8],
                "time": started,
                "checked": started.strftime("%Y-%m-%d %H:%M:%S"),
                "status": run.info.status,
                "model": tags.get(MONITOR_MODEL_TAG, ""),
                "version": tags.get(MONITOR_VERSION_TAG, "") or str(summary.get("champion_version") or ""),
                "judged": _flag(tags.get(MONITOR_JUDGED_TAG)),
                "drift_detected": _flag(tags.get(MONITOR_DRIFT_TAG)),
                "degraded": _flag(tags.get(MONITOR_DEGRADED_TAG)),
                "retrain_triggered": _flag(tags.get(MONITOR_RETRAIN_TAG)),
                "drifted_columns": drifted,
                "drift_share": finite_number(metrics.get(DRIFT_SHARE_METRIC)),
                "window_rows": finite_number(metrics.get(WINDOW_ROWS_METRIC)),
                "labelled_rows": finite_number(metrics.get(LABELLED_ROWS_METRIC)),
                "metric": metric or "",
                "live": finite_number(metrics.get(LIVE_METRIC_PREFIX + metric)) if metric else None,
                "test": finite_number(live.get("test")),
                "window": _window(summary.get("window")),
            }
        )
    return pd.DataFrame(rows)


def _window(window: Any) -> str:
    if not isinstance(window, dict):
        return ""
    if window.get("since") or window.get("until"):
        return f"{window.get('since') or '…'} to {window.get('until') or '…'}"
    return str(window.get("source") or "")


def drift_frame(runs: list, summaries: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per monitoring run and scored column (the model's output as ``(prediction)``): the
    score its metric recorded, and from the run's summary the test, its family (``p-value``: drifts
    below the threshold; ``distance``: at or above), the threshold and the verdict."""
    import pandas as pd

    rows = []
    for run in sorted(runs, key=lambda r: r.info.start_time):
        summary = summaries.get(run.info.run_id) or {}
        tested = {c.get("column"): c for c in summary.get("columns") or [] if isinstance(c, dict)}
        if isinstance(summary.get("prediction_drift"), dict):
            tested[PREDICTION_SERIES] = summary["prediction_drift"]
        for key, value in run.data.metrics.items():
            if key.startswith(DRIFT_SCORE_METRIC_PREFIX):
                column = key.removeprefix(DRIFT_SCORE_METRIC_PREFIX)
            elif key == PREDICTION_DRIFT_METRIC:
                column = PREDICTION_SERIES
            else:
                continue
            detail = tested.get(column) or {}
            test = detail.get("test")
            rows.append(
                {
                    "run_id": run.info.run_id,
                    "time": _started(run),
                    "column": column,
                    "score": finite_number(value),
                    "test": test or "",
                    "family": FAMILIES.get(test, UNKNOWN_FAMILY),
                    "threshold": finite_number(detail.get("threshold")),
                    "drifted": bool(detail.get("drifted")) if detail else None,
                }
            )
    frame = pd.DataFrame(
        rows, columns=["run_id", "time", "column", "score", "test", "family", "threshold", "drifted"]
    )
    return frame.sort_values(["time", "column"], kind="stable").reset_index(drop=True)


def served_segments(requests: pd.DataFrame) -> pd.DataFrame:
    """Stretches of consecutive logged requests (``logged_at``, ``model_version``) answered by one
    version: ``version``, ``start``, ``end``, ``requests``. A switch back and forth is as many
    stretches as it was."""
    import pandas as pd

    columns = ["version", "start", "end", "requests"]
    if requests is None or not len(requests):
        return pd.DataFrame(columns=columns)
    ordered = requests.sort_values("logged_at", kind="stable")
    versions = ordered["model_version"].astype(str)
    stretch = (versions != versions.shift()).cumsum()
    grouped = ordered.assign(version=versions).groupby(stretch, sort=True)
    return pd.DataFrame(
        {
            "version": grouped["version"].first(),
            "start": grouped["logged_at"].min(),
            "end": grouped["logged_at"].max(),
            "requests": grouped["logged_at"].size(),
        }
    ).reset_index(drop=True)[columns]


def _summaries(client: MlflowClient, runs: list) -> dict[str, dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    out: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mlp-report-monitor-") as tmp:
        for run in runs:
            try:
                local = client.download_artifacts(run.info.run_id, MONITOR_SUMMARY_ARTIFACT, tmp)
                content = json.loads(Path(local).read_text(encoding="utf-8"))
            except (MlflowException, OSError, ValueError) as exc:
                logger.debug("monitoring run %s: no readable summary (%s)", run.info.run_id, exc)
                continue
            if isinstance(content, dict):
                out[run.info.run_id] = content
    return out


def served_requests(
    settings: Settings, model_name: str, limit: int
) -> tuple[pd.DataFrame | None, str | None]:
    """The newest ``limit`` requests of ``model_name`` in the prediction log (first row of each:
    ``logged_at`` in UTC, ``model_version``), or None and why not. Never creates the tables."""
    import pandas as pd
    import sqlalchemy as sa

    from pipeline.redaction import redact
    from pipeline.serve.predlog import LOG_TABLE, create_engine, log_table

    url = settings.resolved_feature_store_url
    try:
        parsed = sa.engine.make_url(url)
        local = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
        if local and not Path(parsed.database).is_file():  # connecting would create the file
            return None, "the prediction log is empty: nothing was served with `pipeline serve` yet"
        engine = create_engine(url)
    except (sa.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        return None, f"the prediction log could not be opened: {redact(str(exc).splitlines()[0])}"
    try:
        if not sa.inspect(engine).has_table(LOG_TABLE):
            return None, "the prediction log is empty: nothing was served with `pipeline serve` yet"
        query = (
            sa.select(log_table.c.logged_at, log_table.c.model_version)
            .where(log_table.c.model_name == model_name)
            .where(log_table.c.row == 0)
            .order_by(log_table.c.logged_at.desc())
            .limit(limit)
        )
        with engine.connect() as connection:
            rows = connection.execute(query).all()
    except sa.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        return None, f"the prediction log could not be read: {redact(reason)}"
    finally:
        engine.dispose()
    if not rows:
        return None, f"the prediction log holds no request answered by {model_name}"
    frame = pd.DataFrame(rows, columns=["logged_at", "model_version"])
    frame["logged_at"] = pd.to_datetime(frame["logged_at"], utc=True)  # SQLite returns naive UTC
    return frame, None


def collect_monitoring(
    client: MlflowClient,
    settings: Settings,
    experiments: list[str],
    model_name: str,
    *,
    max_checks: int = 200,
    max_requests: int = 100_000,
) -> MonitoringData:
    """The newest ``max_checks`` finished checks of ``model_name`` in the monitoring experiments of
    ``experiments``, their summaries, and (when there are checks) the newest ``max_requests``
    requests of the prediction log."""
    data = MonitoringData()
    found = [client.get_experiment_by_name(name + MONITOR_EXPERIMENT_SUFFIX) for name in experiments]
    found = [exp for exp in found if exp is not None]
    data.experiments = [exp.name for exp in found]
    if not found:
        return data
    runs = client.search_runs(
        [exp.experiment_id for exp in found],
        # a failed or running check recorded no verdict (pipeline.monitor.check._record)
        filter_string=f"tags.`{MONITOR_MODEL_TAG}` = '{model_name}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=max_checks,
    )
    if not runs:
        return data
    summaries = _summaries(client, runs)
    data.checks = checks_frame(runs, summaries)
    data.drift = drift_frame(runs, summaries)
    metrics = [m for m in data.checks["metric"] if m]
    data.metric = metrics[-1] if metrics else None
    requests, data.served_note = served_requests(settings, model_name, max_requests)
    if requests is not None:
        data.served = served_segments(requests)
    return data
