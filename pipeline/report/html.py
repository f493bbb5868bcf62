"""The self-contained HTML page: tables, figures, the CSS and the sorter script (static/)."""

from __future__ import annotations

import html
import logging
import math
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.names import OBJECTIVE, TRAIN_PARAM_PREFIX
from pipeline.report.data import ReportData, collect
from pipeline.report.figures import (
    figure_confusions,
    figure_learning_curves,
    figure_metric_vs_params,
    figure_parallel,
    figure_versions,
)
from pipeline.report.monitoring_figures import (
    figure_monitor_drift,
    figure_monitor_live,
    figure_monitor_served,
)

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

    from pipeline.settings import Settings

logger = logging.getLogger(__name__)


def _static(name: str) -> str:
    """A file of the report's static assets (CSS, JavaScript), shipped as package data."""
    return resources.files("pipeline.report").joinpath("static", name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------


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
        *[(f"test_{m}", f"test {m}") for m in data.metrics if m != primary],
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

    def chart(div_id: str, heading: str, fig) -> str:
        body = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id, config=config)
        return f'<section class="chart" data-chart="{div_id}"><h2>{html.escape(heading)}</h2>{body}</section>'

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
        sections.append(chart(div_id, heading, fig))
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
    sections.append(_monitoring_section(data, chart))
    title = f"Experiment report: {', '.join(data.experiments)}"
    direction = "higher" if data.higher_is_better(data.primary_metric) else "lower"
    meta = (
        f"Model {html.escape(data.model_name)} · {html.escape(data.task)} · primary metric "
        f"{html.escape(data.primary_metric)} ({direction} is better) · "
        f"{len(data.runs)} runs · generated {html.escape(data.generated_at)}"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_static('report.css')}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f'<h1>{html.escape(title)}</h1><p class="meta">{meta}</p>'
        + "".join(sections)
        + f"<script>{_static('sorter.js')}</script></body></html>\n"
    )


MONITOR_COLUMNS = [
    ("checked", "checked (UTC)"),
    ("version", "champion judged"),
    ("judged", "judged"),
    ("drift_detected", "drift"),
    ("drift_share", "drifted share"),
    ("drifted_columns", "drifted columns"),
    ("metric", "metric"),
    ("live", "live"),
    ("test", "test (recorded)"),
    ("degraded", "degraded"),
    ("retrain_triggered", "retrain triggered"),
    ("window_rows", "window rows"),
    ("labelled_rows", "labelled rows"),
    ("window", "window"),
    ("run", "monitoring run"),
]


def _monitoring_section(data: ReportData, chart) -> str:
    """Drift per column over time, the live metric against the test metric, the served versions,
    and a table of the checks; one line when ``pipeline monitor`` has not run yet."""
    monitoring = data.monitoring
    where = ", ".join(f"{name}-monitoring" for name in data.experiments)
    if monitoring.empty:
        return (
            '<section id="monitoring"><h2>Monitoring</h2><p class="note" id="monitoring-none">'
            f"No monitoring runs yet for {html.escape(data.model_name)} (experiment "
            f"{html.escape(where)}): run <code>pipeline monitor</code>.</p></section>"
        )
    checks = monitoring.checks
    served = (
        "The served versions come from the prediction log (the version that answered each request)"
        + (f"; {html.escape(monitoring.served_note)}" if monitoring.served_note else "")
        + "; the diamonds are the champion version each check judged."
    )
    intro = (
        f'<p class="note">{len(checks)} check(s) of {html.escape(data.model_name)} by '
        f"<code>pipeline monitor</code>, from the MLflow experiment(s) "
        f"{html.escape(', '.join(monitoring.experiments))}. {served}</p>"
    )
    parts = [
        chart("monitor-drift", "Drift per column", figure_monitor_drift(data)),
        chart("monitor-live", "Live metric against test metric", figure_monitor_live(data)),
        chart("monitor-served", "Served versions", figure_monitor_served(data)),
    ]
    shown = checks.iloc[::-1].assign(
        **{
            c: checks[c].map(lambda v: "" if v is None else str(v).lower())
            for c in ("judged", "drift_detected", "degraded", "retrain_triggered")
        }
    )
    table = _table(shown, MONITOR_COLUMNS, "monitoring-table")
    return f'<section id="monitoring"><h2>Monitoring</h2>{intro}{"".join(parts)}{table}</section>'


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
