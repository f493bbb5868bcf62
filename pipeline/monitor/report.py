"""The drift report: one plain, self-contained HTML page (no script, no remote asset), every value
escaped, saved under the home and logged to the monitoring run."""

from __future__ import annotations

import html
import json
from typing import Any

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.drift { background: #fde2e2; }
.muted { color: #777; }
code { font-size: .9em; }
"""


def _cell(value: Any) -> str:
    if value is None:
        return '<span class="muted">-</span>'
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "<code>" + html.escape(json.dumps(value, sort_keys=True)) + "</code>"
    return html.escape(str(value))


def render(summary: dict[str, Any]) -> str:
    """The page for one check's summary (the JSON ``pipeline monitor`` prints)."""
    e = html.escape
    head = [
        ("model", f"{summary['model']} v{summary.get('champion_version')}"),
        ("window", json.dumps(summary.get("window"), sort_keys=True)),
        ("judged", summary["judged"]),
        ("reason", summary.get("reason")),
        ("drift detected", summary["drift_detected"]),
        ("share of drifted columns", summary.get("drift_share")),
        ("degraded", summary["degraded"]),
        ("retrain triggered", summary["retrain_triggered"]),
        ("retrain skipped", summary.get("retrain_skipped")),
        ("monitoring run", summary.get("monitor_run_id")),
    ]
    rows = "".join(f"<tr><th>{e(k)}</th><td>{_cell(v)}</td></tr>" for k, v in head)
    columns = [
        "column",
        "kind",
        "test",
        "score",
        "threshold",
        "drifted",
        "judged",
        "reference_rows",
        "current_rows",
        "reference_summary",
        "current_summary",
        "reason",
    ]
    body = []
    for item in [
        *summary.get("columns", []),
        *([summary["prediction_drift"]] if summary.get("prediction_drift") else []),
    ]:
        css = ' class="drift"' if item.get("drifted") else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{_cell(item.get(c))}</td>" for c in columns) + "</tr>")
    live = summary.get("live") or {}
    live_rows = "".join(f"<tr><th>{e(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in live.items())
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Drift report: {e(str(summary['model']))}</title><style>{STYLE}</style></head><body>"
        f"<h1>Drift report: {e(str(summary['model']))}</h1>"
        f"<table>{rows}</table>"
        "<h2>Columns (and the prediction)</h2>"
        "<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>" + "".join(body) + "</table>"
        f"<h2>Live metric</h2><table>{live_rows}</table>"
        '<p class="muted">Tests: scipy.stats with Evidently\'s default selection '
        "(KS / normed Wasserstein for numeric, chi-square / Jensen-Shannon for categorical columns).</p>"
        "</body></html>\n"
    )
