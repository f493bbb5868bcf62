"""The report's monitoring figures: drift per column over time, the live metric against the test
metric, and the served versions on a timeline (from pipeline monitor's checks and the prediction log)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from pipeline.report.data import ReportData
from pipeline.report.figures import empty_figure, layout

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go


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
        return empty_figure(title, "No check scored a column yet (windows too small to judge).")
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
    return layout(fig, title, height=260 + 200 * len(families))


def figure_monitor_live(data: ReportData) -> go.Figure:
    """The champion's live metric on the labelled rows of each check, against the test metric its
    run recorded (what the monitor held it against); a degraded check is drawn in red."""
    import plotly.graph_objects as go

    monitoring = data.monitoring
    metric = monitoring.metric or data.primary_metric
    title = f"Live {metric} against the champion's recorded test {metric}"
    checks = monitoring.checks
    if checks is None or not len(checks) or checks["live"].notna().sum() == 0:
        return empty_figure(
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
    return layout(fig, title, height=380)


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
        return empty_figure(title, monitoring.served_note or "Nothing was served yet.")
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
    return layout(fig, title, height=220 + 40 * len(order))
