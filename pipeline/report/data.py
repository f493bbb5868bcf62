"""Reading what the report shows from MLflow: runs, trials, histories, confusions, versions."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.names import (
    BEST_TRIAL_TAG,
    CHAMPION_SCORE,
    CHAMPION_VERSION,
    DECISION,
    FEATURE_SET_VERSION_TAG,
    GATE_METRIC,
    GATE_SCORE,
    OBJECTIVE,
    RAW_DVC_MD5_TAG,
    REASON,
    REGISTRY_VERSION_TAG,
    RESOLVED_CONFIG_ARTIFACT,
    ROLE_TAG,
    RUN_TAG,
    STUDY_TAG,
    SWEEP_STATE_TAG,
    TRAIN_PARAM_PREFIX,
    TRIAL_NUMBER_TAG,
)
from pipeline.report.monitoring import MonitoringData, collect_monitoring, finite_number
from pipeline.settings import CLASSIFICATION_METRICS, REGRESSION_METRICS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from pipeline.settings import Settings

logger = logging.getLogger(__name__)

KIND_COLORS = {"best": "#d62728", "pipeline": "#1f77b4", "trial": "#7f7f7f", "other": "#9467bd"}


@dataclass
class ReportData:
    """Everything the report shows, read through the MLflow client."""

    experiments: list[str]
    primary_metric: str
    model_name: str
    runs: pd.DataFrame  # one row per training run (sweep parents excluded)
    params: list[str]  # parameter columns that vary between runs
    log_params: set[str] = field(default_factory=set)
    sweeps: pd.DataFrame | None = None  # one row per sweep (parent run)
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)  # run id -> epoch metrics
    confusions: list[dict[str, Any]] = field(default_factory=list)
    versions: pd.DataFrame | None = None  # registry history
    generated_at: str = ""
    task: str = "classification"
    metrics: list[str] = field(default_factory=list)  # the task's test metrics shown, primary first
    monitoring: MonitoringData = field(default_factory=MonitoringData)  # pipeline monitor's checks

    def higher_is_better(self, metric: str) -> bool:
        from pipeline.metrics import higher_is_better

        return higher_is_better(metric)


# --------------------------------------------------------------------------------------------
# Reading MLflow
# --------------------------------------------------------------------------------------------


def _kind(tags: dict[str, str]) -> str:
    role = tags.get(ROLE_TAG)
    if role in ("trial", "best", "parent"):
        return role
    return "pipeline" if RUN_TAG in tags else "other"


def collect(
    settings: Settings,
    experiments: list[str] | None = None,
    *,
    client: MlflowClient | None = None,
    curves: int = 10,
    confusions: int = 4,
    max_runs: int = 2000,
) -> ReportData:
    """Read the runs of ``experiments`` (default: the configured one) and the model's registry.

    What the runs are (task, primary metric, registered model, search space) comes from the
    configuration recorded on the newest pipeline run of the first experiment, so that a report of
    any experiment shows its own model and metrics; ``settings`` supplies the backends, and
    everything when no run recorded a configuration."""
    import os

    import pandas as pd

    from pipeline.tracking import configure

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs or notebooks
    client = client or configure(settings)
    names = experiments or [settings.resolved_experiment_name]
    found = {name: client.get_experiment_by_name(name) for name in names}
    missing = [name for name, exp in found.items() if exp is None]
    if missing:
        from pipeline.errors import ConfigError

        known = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise ConfigError(f"no MLflow experiment named {', '.join(missing)} (experiments: {known})")
    ids = {exp.experiment_id: name for name, exp in found.items()}
    runs = client.search_runs(list(ids), max_results=max_runs, order_by=["attributes.start_time ASC"])
    settings = _recorded_settings(client, settings, runs, found[names[0]].experiment_id) or settings
    primary = settings.primary_metric
    task_metrics = sorted(
        CLASSIFICATION_METRICS if settings.data.task == "classification" else REGRESSION_METRICS
    )
    others = [m for m in task_metrics if m != primary]
    rows, sweeps = [], []
    for run in runs:
        tags, metrics, params = run.data.tags, run.data.metrics, run.data.params
        kind = _kind(tags)
        base = {
            "run_id": run.info.run_id,
            "run": run.info.run_name or run.info.run_id[:8],
            "experiment": ids.get(run.info.experiment_id, run.info.experiment_id),
            "status": run.info.status,
            "started": datetime.fromtimestamp(run.info.start_time / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        }
        if kind == "parent":
            sweeps.append(
                {
                    **base,
                    "study": tags.get(STUDY_TAG, ""),
                    "trials": finite_number(metrics.get("trials_finished")),
                    "best_trial": tags.get(BEST_TRIAL_TAG, ""),
                    OBJECTIVE: finite_number(metrics.get(OBJECTIVE)),
                    f"test_{primary}": finite_number(metrics.get(f"test_{primary}")),
                    "version": tags.get(REGISTRY_VERSION_TAG, ""),
                    "decision": tags.get(DECISION, ""),
                    "data_md5": tags.get(RAW_DVC_MD5_TAG, ""),
                    "feature_set_version": tags.get(FEATURE_SET_VERSION_TAG, ""),
                }
            )
            continue
        row = {
            **base,
            "kind": kind,
            "state": tags.get(SWEEP_STATE_TAG, run.info.status),
            "sweep": tags.get(STUDY_TAG, ""),
            "trial": finite_number(tags.get(TRIAL_NUMBER_TAG)),
            OBJECTIVE: finite_number(metrics.get(OBJECTIVE)),
            f"val_{primary}": finite_number(metrics.get(f"best_val_{primary}")),
            f"test_{primary}": finite_number(metrics.get(f"test_{primary}")),
            f"baseline_{primary}": finite_number(metrics.get(f"baseline_{primary}")),
            **{f"test_{m}": finite_number(metrics.get(f"test_{m}")) for m in others},
            "epochs": finite_number(metrics.get("epochs_trained")),
            "version": tags.get(REGISTRY_VERSION_TAG, ""),
            "decision": tags.get(DECISION, ""),
            "data_md5": tags.get(RAW_DVC_MD5_TAG, ""),
            "feature_set_version": tags.get(FEATURE_SET_VERSION_TAG, ""),
        }
        for key, value in params.items():
            if key.startswith(TRAIN_PARAM_PREFIX):
                row[key] = value
        rows.append(row)
    frame = pd.DataFrame(rows)
    param_columns = [c for c in frame.columns if c.startswith(TRAIN_PARAM_PREFIX)] if len(frame) else []
    varying = [c for c in param_columns if frame[c].nunique(dropna=True) > 1]
    for column in varying:  # numbers where every value is a number
        converted = pd.to_numeric(frame[column], errors="coerce")
        if converted.notna().sum() == frame[column].notna().sum():
            frame[column] = converted
    log_params = {
        f"train.{name}"
        for name, dim in settings.sweep.space.items()
        if dim.log and f"train.{name}" in varying
    }
    if len(frame):
        repeated = frame["run"].duplicated(keep=False)
        frame.loc[repeated, "run"] = (
            frame.loc[repeated, "run"] + " · " + frame.loc[repeated, "run_id"].str[:6]
        )
        frame = frame.sort_values(OBJECTIVE, na_position="last", kind="stable").reset_index(drop=True)
        frame.insert(0, "rank", range(1, len(frame) + 1))
    shown = [primary] + [m for m in others if len(frame) and frame[f"test_{m}"].notna().any()]
    data = ReportData(
        experiments=names,
        primary_metric=primary,
        model_name=settings.resolved_model_name,
        runs=frame,
        params=varying,
        log_params=log_params,
        sweeps=pd.DataFrame(sweeps),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        task=settings.data.task,
        metrics=shown,
    )
    if len(frame):
        ranked = frame[frame[OBJECTIVE].notna()]
        for run_id in ranked["run_id"].head(curves):
            history = _history(client, run_id)
            if history is not None:
                data.histories[run_id] = history
        data.confusions = _confusions(client, ranked, confusions)
    data.versions = _versions(client, settings.resolved_model_name)
    data.monitoring = collect_monitoring(client, settings, names, settings.resolved_model_name)
    return data


def _recorded_settings(client: MlflowClient, settings: Settings, runs, experiment_id: str, tries: int = 5):
    """Settings rebuilt from the resolved configuration recorded on the newest pipeline run of
    ``experiment_id`` (None when none of its newest runs recorded one)."""
    from mlflow.exceptions import MlflowException

    from pipeline.errors import ConfigError
    from pipeline.recorded import rebuild

    candidates = [
        r for r in reversed(runs) if r.info.experiment_id == experiment_id and RUN_TAG in r.data.tags
    ]
    with tempfile.TemporaryDirectory(prefix="mlp-report-") as tmp:
        for run in candidates[:tries]:
            try:
                local = client.download_artifacts(run.info.run_id, RESOLVED_CONFIG_ARTIFACT, tmp)
                recorded = yaml.safe_load(Path(local).read_text())
                return rebuild(recorded, settings)
            except (MlflowException, OSError, ValueError, AttributeError, yaml.YAMLError, ConfigError) as exc:
                logger.debug("run %s: no usable recorded configuration (%s)", run.info.run_id, exc)
    return None


def _history(client: MlflowClient, run_id: str):
    import pandas as pd

    series = {}
    for key in ("val_loss", "train_loss"):
        points = client.get_metric_history(run_id, key)
        if points:
            series[key] = pd.Series({p.step: p.value for p in points})
    if "val_loss" not in series:
        return None
    return pd.DataFrame(series).rename_axis("epoch").reset_index()


def _confusions(client: MlflowClient, ranked, limit: int) -> list[dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mlp-report-") as tmp:
        for _, row in ranked.iterrows():
            if len(out) >= limit:
                break
            if row["kind"] == "trial":
                path, split = "evaluation/val_confusion_matrix.json", "val"
            else:
                path, split = "evaluation/evaluation.json", "test"
            try:
                local = client.download_artifacts(row["run_id"], path, tmp)
                content = json.loads(Path(local).read_text())
            except (MlflowException, OSError, ValueError):
                continue
            matrix = content.get("matrix") or content.get("confusion_matrix")
            if not matrix:
                continue
            out.append(
                {
                    "run": row["run"],
                    "split": split,
                    "classes": [str(c) for c in content["classes"]],
                    "matrix": matrix,
                }
            )
    return out


def _versions(client: MlflowClient, name: str):
    """The registry history: one row per version, with the champion after each registration."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return pd.DataFrame()
    aliases_of: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases_of.setdefault(str(version), []).append(alias)
    rows = []
    for version in sorted(versions, key=lambda v: int(v.version)):
        tags = version.tags or {}
        rows.append(
            {
                "version": int(version.version),
                "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).strftime(
                    "%Y-%m-%d %H:%M:%S"
                ),
                "decision": tags.get(DECISION, ""),
                "metric": tags.get(GATE_METRIC, ""),
                "score": finite_number(tags.get(GATE_SCORE)),
                "champion_before": tags.get(CHAMPION_VERSION, ""),
                "champion_score": finite_number(tags.get(CHAMPION_SCORE)),
                "reason": tags.get(REASON, ""),
                "data_md5": tags.get(RAW_DVC_MD5_TAG, ""),
                "feature_set_version": tags.get(FEATURE_SET_VERSION_TAG, ""),
                "pipeline_run": tags.get(RUN_TAG, ""),
                "run_id": version.run_id or "",
                "aliases": ", ".join(sorted(aliases_of.get(str(version.version), []))),
            }
        )
    frame = pd.DataFrame(rows)
    champion, after = None, []
    for _, row in frame.iterrows():
        if row["decision"] == "promoted":
            champion = int(row["version"])
        after.append(champion)
    if len(frame):
        frame["champion_after"] = after
    return frame
