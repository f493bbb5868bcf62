"""The report's Plotly figures (also what the analysis notebook shows)."""

from __future__ import annotations

import html
import logging
import math
from typing import TYPE_CHECKING

from pipeline.names import (
    OBJECTIVE,
    TRAIN_PARAM_PREFIX,
)
from pipeline.report.data import KIND_COLORS, ReportData

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go


logger = logging.getLogger(__name__)

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
        worst = runs[metric].min() if data.higher_is_better(data.primary_metric) else runs[metric].max()
        dimensions.append({"label": f"val {data.primary_metric}", "values": runs[metric].fillna(worst)})
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
# Monitoring (pipeline monitor's checks, the prediction log)
# --------------------------------------------------------------------------------------------

FAMILY_AXES = {
    "p-value": ("p-value (KS, chi-square): drifts below the threshold", "log"),
    "distance": ("distance (Wasserstein / std, Jensen-Shannon): drifts at or above", "linear"),
    "score": ("score (test not recorded: the check's summary is unreadable)", "linear"),
}
P_VALUE_FLOOR = 1e-12  # a p-value drawn on a log axis: smaller ones (and 0) sit on the floor


def figure_monitor_drift(data: ReportData) -> go.Figure:
    """Each column's drift score per check, one series per column (and the model's output), one
    panel per kind of test with its threshold; a drifted check is marked with a cross."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = "Drift score per column over time"
    drift = data.monitoring.drift
    if drift is None or not len(drift) or drift["score"].notna().sum() == 0:
        return _empty(title, "No check scored a column yet (windows too small to judge).")
    families = [f for f in FAMILY_AXES if f in set(drift["family"])]
    fig = make_subplots(
        rows=len(families),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=[FAMILY_AXES[f][0] for f in families],
    )
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
    colors = {c: palette[i % len(palette)] for i, c in enumerate(sorted(set(drift["column"])))}
    shown: set[str] = set()
    for row, family in enumerate(families, start=1):
        part = drift[drift["family"] == family]
        for column, group in part.groupby("column", sort=True):
            scores = group["score"].astype(float)
            drawn = scores.clip(lower=P_VALUE_FLOOR) if family == "p-value" else scores
            fig.add_trace(
                go.Scatter(
                    x=group["time"],
                    y=drawn,
                    mode="lines+markers",
                    name=str(column),
                    legendgroup=str(column),
                    showlegend=column not in shown,
                    line={"color": colors[column]},
                    marker={
                        "color": colors[column],
                        "size": 9,
                        "symbol": ["x" if d else "circle" for d in group["drifted"].fillna(False)],
                    },
                    customdata=list(zip(scores, group["test"], group["drifted"].astype(str), strict=True)),
                    hovertemplate="%{fullData.name}<br>%{x}<br>%{customdata[1]} score "
                    "%{customdata[0]:.4g}<br>drifted: %{customdata[2]}<extra></extra>",
                ),
                row=row,
                col=1,
            )
            shown.add(column)
        thresholds = part.dropna(subset=["threshold"]).groupby("time", sort=True)["threshold"].first()
        if len(thresholds):
            fig.add_trace(
                go.Scatter(
                    x=list(thresholds.index),
                    y=list(thresholds.values),
                    mode="lines+markers",  # a single check still shows its threshold
                    line={"color": "#d62728", "dash": "dash", "shape": "hv"},
                    marker={"symbol": "line-ew-open", "size": 16, "color": "#d62728"},
                    name=f"threshold ({family})",
                    hovertemplate="threshold %{y:.4g}<extra></extra>",
                ),
                row=row,
                col=1,
            )
        fig.update_yaxes(type=FAMILY_AXES[family][1], title_text=family, row=row, col=1)
    fig.update_xaxes(title_text="check (UTC)", row=len(families), col=1)
    return _layout(fig, title, height=260 + 200 * len(families))


def figure_monitor_live(data: ReportData) -> go.Figure:
    """The champion's live metric on the labelled rows of each check, against the test metric its
    run recorded (what the monitor held it against); a degraded check is drawn in red."""
    import plotly.graph_objects as go

    monitoring = data.monitoring
    metric = monitoring.metric or data.primary_metric
    title = f"Live {metric} against the champion's recorded test {metric}"
    checks = monitoring.checks
    if checks is None or not len(checks) or checks["live"].notna().sum() == 0:
        return _empty(
            title,
            "No check had enough labelled rows yet (monitor.min_labelled): send late labels with "
            "`pipeline feedback FILE`.",
        )
    live = checks[checks["live"].notna()]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=live["time"],
            y=live["live"],
            mode="lines+markers",
            name=f"live {metric}",
            marker={
                "size": 10,
                "color": ["#d62728" if d else "#1f77b4" for d in live["degraded"].fillna(False)],
            },
            line={"color": "#1f77b4"},
            customdata=list(
                zip(live["version"], live["labelled_rows"], live["degraded"].astype(str), strict=True)
            ),
            hovertemplate="%{x}<br>v%{customdata[0]}: live %{y:.4f}<br>%{customdata[1]} labelled rows"
            "<br>degraded: %{customdata[2]}<extra></extra>",
        )
    )
    tested = checks[checks["test"].notna()]
    if len(tested):
        x, y, text = [], [], []  # one step line per champion version, a gap where it changes
        for index, (_, check) in enumerate(tested.iterrows()):
            if index and check["version"] != tested["version"].iloc[index - 1]:
                x, y, text = [*x, None], [*y, None], [*text, ""]
            x, y, text = [*x, check["time"]], [*y, check["test"]], [*text, f"v{check['version']}"]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=f"test {metric} (champion's run)",
                line={"color": "#2ca02c", "dash": "dot", "shape": "hv"},
                marker={"symbol": "diamond", "size": 7},
                text=text,
                hovertemplate="%{x}<br>%{text}: test %{y:.4f}<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="check (UTC)")
    fig.update_yaxes(title_text=metric)
    return _layout(fig, title, height=380)


def _lane_order(lane: str) -> tuple[bool, int, str]:
    number = lane.removeprefix("v")
    return (not number.isdigit(), int(number) if number.isdigit() else 0, lane)


def figure_monitor_served(data: ReportData) -> go.Figure:
    """The versions that answered requests, as stretches on a timeline (from the prediction log),
    and the champion version each check judged."""
    import plotly.graph_objects as go

    title = f"Served versions of {data.model_name} over time"
    monitoring = data.monitoring
    served, checks = monitoring.served, monitoring.checks
    has_served = served is not None and len(served)
    if not has_served and (checks is None or not len(checks)):
        return _empty(title, monitoring.served_note or "Nothing was served yet.")
    fig = go.Figure()
    lanes: set[str] = set()
    if has_served:
        times = [*served["start"], *served["end"], *([] if checks is None else checks["time"])]
        span = (max(times) - min(times)).total_seconds() * 1000
        least = max(span / 150, 1000.0)  # a short stretch (one request) still shows on the axis
        durations = [
            max((end - start).total_seconds() * 1000, least)
            for start, end in zip(served["start"], served["end"], strict=True)
        ]
        lanes |= {f"v{v}" for v in served["version"]}
        fig.add_trace(
            go.Bar(
                orientation="h",
                base=[s.isoformat() for s in served["start"]],
                x=durations,
                y=[f"v{v}" for v in served["version"]],
                name="served (prediction log)",
                marker={"color": "#1f77b4", "opacity": 0.7},
                customdata=list(
                    zip(
                        [s.strftime("%Y-%m-%d %H:%M:%S") for s in served["start"]],
                        [e.strftime("%Y-%m-%d %H:%M:%S") for e in served["end"]],
                        served["requests"],
                        strict=True,
                    )
                ),
                hovertemplate="%{y}: %{customdata[0]} to %{customdata[1]} UTC"
                "<br>%{customdata[2]} requests<extra></extra>",
            )
        )
    if checks is not None and len(checks):
        lanes |= {f"v{v}" for v in checks["version"]}
        fig.add_trace(
            go.Scatter(
                x=checks["time"],
                y=[f"v{v}" for v in checks["version"]],
                mode="markers",
                name="monitor check (champion judged)",
                marker={
                    "symbol": "diamond",
                    "size": 11,
                    "color": ["#d62728" if d else "#2ca02c" for d in checks["drift_detected"].fillna(False)],
                },
                text=checks["run"],
                hovertemplate="%{text}<br>%{x}<br>judged %{y}<extra></extra>",
            )
        )
    order = sorted(lanes, key=_lane_order)
    fig.update_xaxes(type="date", title_text="time (UTC)")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=order, title_text="model version")
    if not has_served and monitoring.served_note:
        fig.add_annotation(
            text=html.escape(monitoring.served_note),
            showarrow=False,
            x=0.5,
            y=1.08,
            xref="paper",
            yref="paper",
        )
    return _layout(fig, title, height=220 + 40 * len(order))
