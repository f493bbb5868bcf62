"""The experiment report: one self-contained, interactive HTML file (``pipeline report``).

It answers "which hyperparameters and which data produced our best model, and how do the
experiments compare?" from what MLflow already holds:

* a sortable leaderboard of the runs (sweep trials and pipeline runs);
* parallel coordinates of the parameters against the validation loss and the primary metric;
* learning curves of the best runs overlaid (click the legend to add or hide runs);
* the validation loss against each parameter;
* confusion matrices of the best runs side by side;
* the model-version history: each version's gate decision and score, the champion over time and
  the data (DVC hash, feature-set version) behind each version;
* monitoring, once ``pipeline monitor`` has run (:mod:`pipeline.report.monitoring`): each column's
  drift score over time with its threshold, the live metric against the champion's recorded test
  metric, the served versions on a timeline (from the prediction log) and a table of the checks.

The Plotly library is embedded in the file: it opens from disk with no server and no network.
:func:`collect` and the ``figure_*`` functions are also what the analysis notebook uses.
"""

from pipeline.report.data import KIND_COLORS, ReportData, collect
from pipeline.report.figures import (
    figure_confusions,
    figure_learning_curves,
    figure_metric_vs_params,
    figure_parallel,
    figure_versions,
)
from pipeline.report.html import leaderboard_columns, render_html, write_report
from pipeline.report.monitoring import MonitoringData
from pipeline.report.monitoring_figures import (
    figure_monitor_drift,
    figure_monitor_live,
    figure_monitor_served,
)

__all__ = [
    "KIND_COLORS",
    "MonitoringData",
    "ReportData",
    "collect",
    "figure_confusions",
    "figure_learning_curves",
    "figure_metric_vs_params",
    "figure_monitor_drift",
    "figure_monitor_live",
    "figure_monitor_served",
    "figure_parallel",
    "figure_versions",
    "leaderboard_columns",
    "render_html",
    "write_report",
]
