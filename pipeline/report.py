"""The experiment report: one self-contained, interactive HTML file (``pipeline report``).

It answers "which hyperparameters and which data produced our best model, and how do the
experiments compare?" from what MLflow already holds:

* a sortable leaderboard of the runs (sweep trials and pipeline runs);
* parallel coordinates of the parameters against the validation loss and the primary metric;
* learning curves of the best runs overlaid (click the legend to add or hide runs);
* the validation loss against each parameter;
* confusion matrices of the best runs side by side;
* the model-version history: each version's gate decision and score, the champion over time and
  the data (DVC hash, feature-set version) behind each version.

The Plotly library is embedded in the file: it opens from disk with no server and no network.
:func:`collect` and the ``figure_*`` functions are also what the analysis notebook uses.
"""

from __future__ import annotations

import html
import json
import logging
import math
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    ROLE_TAG,
    RUN_TAG,
    STUDY_TAG,
    SWEEP_STATE_TAG,
    TRAIN_PARAM_PREFIX,
    TRIAL_NUMBER_TAG,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go
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


# --------------------------------------------------------------------------------------------
# Reading MLflow
# --------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


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
    """Read the runs of ``experiments`` (default: the configured one) and the model's registry."""
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
    primary = settings.primary_metric
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
                    "trials": _number(metrics.get("trials_finished")),
                    "best_trial": tags.get(BEST_TRIAL_TAG, ""),
                    OBJECTIVE: _number(metrics.get(OBJECTIVE)),
                    f"test_{primary}": _number(metrics.get(f"test_{primary}")),
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
            "trial": _number(tags.get(TRIAL_NUMBER_TAG)),
            OBJECTIVE: _number(metrics.get(OBJECTIVE)),
            f"val_{primary}": _number(metrics.get(f"best_val_{primary}")),
            f"test_{primary}": _number(metrics.get(f"test_{primary}")),
            f"baseline_{primary}": _number(metrics.get(f"baseline_{primary}")),
            "epochs": _number(metrics.get("epochs_trained")),
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
    data = ReportData(
        experiments=names,
        primary_metric=primary,
        model_name=settings.resolved_model_name,
        runs=frame,
        params=varying,
        log_params=log_params,
        sweeps=pd.DataFrame(sweeps),
        generated_at=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    if len(frame):
        ranked = frame[frame[OBJECTIVE].notna()]
        for run_id in ranked["run_id"].head(curves):
            history = _history(client, run_id)
            if history is not None:
                data.histories[run_id] = history
        data.confusions = _confusions(client, ranked, confusions)
    data.versions = _versions(client, settings.resolved_model_name)
    return data


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
                "score": _number(tags.get(GATE_SCORE)),
                "champion_before": tags.get(CHAMPION_VERSION, ""),
                "champion_score": _number(tags.get(CHAMPION_SCORE)),
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


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        height=height,
        margin={"l": 60, "r": 30, "t": 60, "b": 50},
        template="plotly_white",
        legend={"itemclick": "toggle", "itemdoubleclick": "toggleothers"},
    )
    return fig


def _empty(title: str, message: str) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title, height=260)


def _trained(data: ReportData):
    runs = data.runs
    if not len(runs):
        return runs
    return runs[runs[OBJECTIVE].notna()]


def figure_parallel(data: ReportData) -> go.Figure:
    """Parallel coordinates: each varying parameter, then the validation loss and metric."""
    import numpy as np
    import plotly.graph_objects as go

    title = "Parameters against the validation loss and the primary metric"
    runs = _trained(data)
    if not len(runs) or not data.params:
        return _empty(title, "No runs with varying parameters yet: run `pipeline sweep`.")
    dimensions = []
    for column in data.params:
        values = runs[column]
        label = column.removeprefix(TRAIN_PARAM_PREFIX)
        if values.dtype.kind in "if":
            if column in data.log_params:
                dimensions.append({"label": f"log10 {label}", "values": np.log10(values.astype(float))})
            else:
                dimensions.append({"label": label, "values": values.astype(float)})
        else:
            categories = sorted(values.astype(str).unique())
            codes = values.astype(str).map({c: i for i, c in enumerate(categories)})
            dimensions.append(
                {
                    "label": label,
                    "values": codes,
                    "tickvals": list(range(len(categories))),
                    "ticktext": categories,
                }
            )
    dimensions.append({"label": "val loss", "values": runs[OBJECTIVE]})
    metric = f"val_{data.primary_metric}"
    if runs[metric].notna().any():
        dimensions.append(
            {"label": f"val {data.primary_metric}", "values": runs[metric].fillna(runs[metric].min())}
        )
    fig = go.Figure(
        go.Parcoords(
            line={
                "color": runs[OBJECTIVE],
                "colorscale": "Viridis",
                "reversescale": True,
                "showscale": True,
                "colorbar": {"title": {"text": "val loss"}},
            },
            dimensions=dimensions,
        )
    )
    _layout(fig, title, height=480)
    fig.update_layout(margin={"t": 110})  # room for the axis labels above the plot
    return fig


def figure_metric_vs_params(data: ReportData) -> go.Figure:
    """The validation loss against each parameter, one panel per parameter."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = "Validation loss against each parameter"
    runs = _trained(data)
    if not len(runs) or not data.params:
        return _empty(title, "No runs with varying parameters yet: run `pipeline sweep`.")
    columns = data.params
    fig = make_subplots(
        rows=1,
        cols=len(columns),
        shared_yaxes=True,
        subplot_titles=[c.removeprefix(TRAIN_PARAM_PREFIX) for c in columns],
    )
    for kind, group in runs.groupby("kind", sort=False):
        for index, column in enumerate(columns, start=1):
            fig.add_trace(
                go.Scatter(
                    x=group[column] if group[column].dtype.kind in "if" else group[column].astype(str),
                    y=group[OBJECTIVE],
                    mode="markers",
                    name=str(kind),
                    legendgroup=str(kind),
                    showlegend=index == 1,
                    marker={"color": KIND_COLORS.get(str(kind), "#333"), "size": 9, "opacity": 0.8},
                    text=group["run"],
                    hovertemplate="%{text}<br>%{x}<br>val loss %{y:.4f}<extra></extra>",
                ),
                row=1,
                col=index,
            )
            if column in data.log_params:
                fig.update_xaxes(type="log", row=1, col=index)
            if group[column].dtype.kind not in "if":
                fig.update_xaxes(type="category", row=1, col=index)
    fig.update_yaxes(title_text="val loss (best epoch)", row=1, col=1)
    return _layout(fig, title, height=380)


def figure_learning_curves(data: ReportData, visible: int = 5) -> go.Figure:
    """Validation loss per epoch of the best runs; the next ones are one legend click away."""
    import plotly.graph_objects as go

    title = "Learning curves (validation loss per epoch) of the best runs"
    if not data.histories:
        return _empty(title, "No per-epoch metrics logged yet.")
    names = dict(zip(data.runs["run_id"], data.runs["run"], strict=False))
    fig = go.Figure()
    for index, (run_id, history) in enumerate(data.histories.items()):
        fig.add_trace(
            go.Scatter(
                x=history["epoch"],
                y=history["val_loss"],
                mode="lines",
                name=names.get(run_id, run_id[:8]),
                visible=True if index < visible else "legendonly",
                hovertemplate="epoch %{x}<br>val loss %{y:.4f}<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text="validation loss", type="log")
    return _layout(fig, title)


def figure_confusions(data: ReportData) -> go.Figure:
    """Confusion matrices of the best runs side by side (validation for trials, test otherwise)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = "Confusion matrices of the best runs"
    if not data.confusions:
        return _empty(title, "No confusion matrix logged (regression, or no run evaluated yet).")
    fig = make_subplots(
        rows=1,
        cols=len(data.confusions),
        subplot_titles=[f"{c['run']} ({c['split']})" for c in data.confusions],
        horizontal_spacing=0.08,
    )
    for index, item in enumerate(data.confusions, start=1):
        fig.add_trace(
            go.Heatmap(
                z=item["matrix"],
                x=item["classes"],
                y=item["classes"],
                colorscale="Blues",
                showscale=False,
                text=item["matrix"],
                texttemplate="%{text}",
                hovertemplate="actual %{y}<br>predicted %{x}<br>%{z} rows<extra></extra>",
            ),
            row=1,
            col=index,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=index)
        fig.update_xaxes(title_text="predicted", row=1, col=index)
    fig.update_yaxes(title_text="actual", row=1, col=1)
    return _layout(fig, title, height=380)


def figure_versions(data: ReportData) -> go.Figure:
    """Each model version's gate score and decision; the champion's score as a step line."""
    import plotly.graph_objects as go

    title = f"Model versions of {data.model_name}: gate decisions and the champion"
    versions = data.versions
    if versions is None or not len(versions):
        return _empty(title, f"No version of {data.model_name} is registered yet.")
    fig = go.Figure()
    hover = (
        "v%{x}: %{customdata[0]}<br>score %{y:.4f}<br>data md5 %{customdata[1]}<br>"
        "feature set v%{customdata[2]}<br>%{customdata[3]}<extra></extra>"
    )
    for decision, color, symbol in (("promoted", "#2ca02c", "star"), ("rejected", "#d62728", "x")):
        group = versions[versions["decision"] == decision]
        if not len(group):
            continue
        fig.add_trace(
            go.Scatter(
                x=group["version"],
                y=group["score"],
                mode="markers",
                name=decision,
                marker={"color": color, "symbol": symbol, "size": 14},
                customdata=list(
                    zip(
                        group["decision"],
                        group["data_md5"].str[:12],
                        group["feature_set_version"],
                        group["reason"].str.slice(0, 120),
                        strict=True,
                    )
                ),
                hovertemplate=hover,
            )
        )
    score_of = dict(zip(versions["version"], versions["score"], strict=True))
    champion_scores = [score_of.get(c) if c is not None else None for c in versions["champion_after"]]
    fig.add_trace(
        go.Scatter(
            x=versions["version"],
            y=champion_scores,
            mode="lines",
            line={"shape": "hv", "color": "#2ca02c", "dash": "dot"},
            name="champion",
            text=[f"champion v{c}" if c is not None else "no champion" for c in versions["champion_after"]],
            hovertemplate="after v%{x}: %{text}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=versions["version"],
            y=[None if math.isnan(v) else v for v in versions["score"].astype(float)],
            mode="text",
            text=[f"fs v{f}" for f in versions["feature_set_version"]],
            textposition="top center",
            name="feature set",
            hoverinfo="skip",
        )
    )
    metric = versions["metric"].iloc[-1] if len(versions) else ""
    fig.update_xaxes(title_text="model version", dtick=1)
    fig.update_yaxes(title_text=f"test {metric} (gate score)")
    return _layout(fig, title)


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { margin-bottom: 4px; } .meta { color: #666; margin-top: 0; }
section { margin: 28px 0; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; white-space: nowrap; }
th { background: #f4f6f8; position: sticky; top: 0; }
table.sortable th { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; }
th[aria-sort="descending"]::after { content: " \\25BC"; }
tr.best td { background: #fff4e5; } .scroll { overflow-x: auto; max-height: 540px; overflow-y: auto; }
.note { color: #666; font-size: 13px; }
"""

_SORTER = """
(function () {
  function key(cell, numeric) {
    var raw = cell.getAttribute("data-value");
    if (raw === null) raw = cell.textContent.trim();
    if (raw === "") return null;
    if (numeric) { var n = parseFloat(raw); return isNaN(n) ? null : n; }
    return raw.toLowerCase();
  }
  function sortBy(table, index, header) {
    var numeric = header.getAttribute("data-type") === "number";
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a.cells[index], numeric), y = key(b.cells[index], numeric);
      if (x === null && y === null) return 0;
      if (x === null) return 1;   // empty cells last, whatever the direction
      if (y === null) return -1;
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) { h.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    rows.forEach(function (row) { body.appendChild(row); });
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, index) {
      header.title = "Click to sort";
      header.addEventListener("click", function () { sortBy(table, index, header); });
    });
  });
})();
"""


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '<td data-value=""></td>'
    if isinstance(value, float):
        shown = f"{value:.4g}" if abs(value) < 1e-3 and value != 0 else f"{value:.4f}".rstrip("0").rstrip(".")
        return f'<td data-value="{value!r}">{html.escape(shown)}</td>'
    if isinstance(value, int):
        return f'<td data-value="{value}">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(frame, columns: list[tuple[str, str]], table_id: str, highlight: str | None = None) -> str:
    """An HTML table; ``columns`` are (column, header) pairs. Numeric columns sort as numbers."""
    import numpy as np

    heads = []
    for column, header in columns:
        numeric = column in frame and frame[column].dtype.kind in "if"
        kind = "number" if numeric else "text"
        heads.append(f'<th data-type="{kind}" data-column="{html.escape(column)}">{html.escape(header)}</th>')
    body = []
    for _, row in frame.iterrows():
        cells = []
        for column, _header in columns:
            value = row.get(column)
            if isinstance(value, np.generic):
                value = value.item()
            cells.append(_cell(value))
        css = ' class="best"' if highlight and row.get("kind") == highlight else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table id="{table_id}" class="sortable">'
        f"<thead><tr>{''.join(heads)}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def leaderboard_columns(data: ReportData) -> list[tuple[str, str]]:
    primary = data.primary_metric
    columns = [
        ("rank", "#"),
        ("run", "run"),
        ("kind", "kind"),
        ("state", "state"),
        ("experiment", "experiment"),
    ]
    columns += [(c, c.removeprefix(TRAIN_PARAM_PREFIX)) for c in data.params]
    columns += [
        (OBJECTIVE, "val loss"),
        (f"val_{primary}", f"val {primary}"),
        (f"test_{primary}", f"test {primary}"),
        ("epochs", "epochs"),
        ("version", "model version"),
        ("decision", "gate"),
        ("feature_set_version", "feature set"),
        ("data_md5", "data md5"),
        ("sweep", "sweep"),
        ("started", "started (UTC)"),
    ]
    return [(c, h) for c, h in columns if c in data.runs]


def render_html(data: ReportData) -> str:
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    charts = [
        ("parallel", "Parameters", figure_parallel(data)),
        ("metric-vs-params", "Metric against each parameter", figure_metric_vs_params(data)),
        ("learning-curves", "Learning curves", figure_learning_curves(data)),
        ("confusions", "Confusion matrices", figure_confusions(data)),
        ("versions", "Model-version history", figure_versions(data)),
    ]
    config = {"displaylogo": False, "responsive": True}
    sections = []
    runs = data.runs
    if len(runs):
        board = _table(
            data.runs.assign(data_md5=runs["data_md5"].str[:12]),
            leaderboard_columns(data),
            "leaderboard",
            "best",
        )
    else:
        board = '<p class="note">No runs in this experiment yet.</p>'
    sections.append(
        '<section><h2>Leaderboard</h2><p class="note">One row per training run: sweep trials (validation '
        "metrics of their best epoch) and pipeline runs (also scored on the held-out test set). Click a "
        "header to sort; the sweep's winner, retrained and put through the promotion gate, is highlighted."
        f"</p>{board}</section>"
    )
    for div_id, heading, fig in charts:
        body = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=config)
        sections.append(
            f'<section class="chart" data-chart="{div_id}"><h2>{html.escape(heading)}</h2>{body}</section>'
        )
        if div_id == "versions" and data.versions is not None and len(data.versions):
            columns = [
                ("version", "version"),
                ("created", "registered (UTC)"),
                ("decision", "gate"),
                ("score", "score"),
                ("champion_before", "champion before"),
                ("champion_score", "champion's score"),
                ("champion_after", "champion after"),
                ("aliases", "aliases now"),
                ("feature_set_version", "feature set"),
                ("data_md5", "data md5 (DVC)"),
                ("pipeline_run", "pipeline run"),
                ("reason", "reason"),
            ]
            sections.append(_table(data.versions, columns, "versions-table"))
    if data.sweeps is not None and len(data.sweeps):
        primary = data.primary_metric
        columns = [
            ("run", "sweep"),
            ("status", "status"),
            ("trials", "trials"),
            ("best_trial", "best trial"),
            (OBJECTIVE, "best val loss"),
            (f"test_{primary}", f"test {primary} (retrained)"),
            ("version", "model version"),
            ("decision", "gate"),
            ("feature_set_version", "feature set"),
            ("started", "started (UTC)"),
        ]
        sections.insert(
            1, f"<section><h2>Sweeps</h2>{_table(data.sweeps, columns, 'sweeps-table')}</section>"
        )
    title = f"Experiment report: {', '.join(data.experiments)}"
    meta = (
        f"Model {html.escape(data.model_name)} · primary metric {html.escape(data.primary_metric)} · "
        f"{len(data.runs)} runs · generated {html.escape(data.generated_at)}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f'<h1>{html.escape(title)}</h1><p class="meta">{meta}</p>'
        + "".join(sections)
        + f"<script>{_SORTER}</script></body></html>\n"
    )


def write_report(
    settings: Settings,
    output: Path,
    experiments: list[str] | None = None,
    *,
    client: MlflowClient | None = None,
) -> Path:
    """Collect, render and write the report atomically; returns its path."""
    data = collect(settings, experiments, client=client)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    partial.write_text(render_html(data), encoding="utf-8")
    partial.replace(output)
    logger.info("report of %s (%d runs) written to %s", ", ".join(data.experiments), len(data.runs), output)
    return output
