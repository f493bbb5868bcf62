"""The report's Plotly figures (also what the analysis notebook shows)."""

from __future__ import annotations

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


def layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0.01},
        height=height,
        margin={"l": 60, "r": 30, "t": 60, "b": 50},
        template="plotly_white",
        legend={"itemclick": "toggle", "itemdoubleclick": "toggleothers"},
    )
    return fig


def empty_figure(title: str, message: str) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return layout(fig, title, height=260)


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
        return empty_figure(title, "No runs with varying parameters yet: run `pipeline sweep`.")
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
    layout(fig, title, height=480)
    fig.update_layout(margin={"t": 110})  # room for the axis labels above the plot
    return fig


def figure_metric_vs_params(data: ReportData) -> go.Figure:
    """The validation loss against each parameter, one panel per parameter."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = "Validation loss against each parameter"
    runs = _trained(data)
    if not len(runs) or not data.params:
        return empty_figure(title, "No runs with varying parameters yet: run `pipeline sweep`.")
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
    return layout(fig, title, height=380)


def figure_learning_curves(data: ReportData, visible: int = 5) -> go.Figure:
    """Validation loss per epoch of the best runs; the next ones are one legend click away."""
    import plotly.graph_objects as go

    title = "Learning curves (validation loss per epoch) of the best runs"
    if not data.histories:
        return empty_figure(title, "No per-epoch metrics logged yet.")
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
    return layout(fig, title)


def figure_confusions(data: ReportData) -> go.Figure:
    """Confusion matrices of the best runs side by side (validation for trials, test otherwise)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = "Confusion matrices of the best runs"
    if not data.confusions:
        return empty_figure(title, "No confusion matrix logged (regression, or no run evaluated yet).")
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
    return layout(fig, title, height=380)


def figure_versions(data: ReportData) -> go.Figure:
    """Each model version's gate score and decision; the champion's score as a step line."""
    import plotly.graph_objects as go

    title = f"Model versions of {data.model_name}: gate decisions and the champion"
    versions = data.versions
    if versions is None or not len(versions):
        return empty_figure(title, f"No version of {data.model_name} is registered yet.")
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
    return layout(fig, title)
