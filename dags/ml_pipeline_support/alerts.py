"""Alerts: a Slack-compatible JSON message to a webhook, and the same text in the task log.

Everything here runs at run time, inside the task (or the DAG processor, for a run timeout):
``MLP_ALERT_WEBHOOK_URL`` and ``MLP_MLFLOW_UI_URL`` are read when an alert is sent, never at
parse time. Sending is bounded (``MLP_ALERT_TIMEOUT_S``, default 10 s) and never raises: an alert
that cannot be delivered is logged and the task's outcome is unchanged.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import re
import string
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

# The pipeline's one redaction (standard library only, installed in the Airflow image without the
# pipeline's dependencies, like pipeline.steps).
from pipeline.redaction import redact

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
BLOCK_LIMIT = 2900  # characters of a Slack section block's text (the API's limit is 3000)
_ENTITY_TAIL = re.compile(r"&[a-z]*$")  # an entity cut in two by the block limit


def _timeout_s() -> float:
    try:
        value = float(os.environ.get("MLP_ALERT_TIMEOUT_S", DEFAULT_TIMEOUT_S))
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if 0 < value <= 60 else DEFAULT_TIMEOUT_S


def mlflow_run_url(run_id: str | None) -> str | None:
    """Link to an MLflow run in the UI at ``MLP_MLFLOW_UI_URL`` (``#/runs/<id>`` redirects)."""
    base = os.environ.get("MLP_MLFLOW_UI_URL", "").strip().rstrip("/")
    if not base or not run_id:
        return None
    return f"{base}/#/runs/{quote(str(run_id), safe='')}"


def mlflow_model_url(model_name: str | None, version: Any) -> str | None:
    base = os.environ.get("MLP_MLFLOW_UI_URL", "").strip().rstrip("/")
    if not base or not model_name or version in (None, ""):
        return None
    return f"{base}/#/models/{quote(str(model_name), safe='')}/versions/{quote(str(version), safe='')}"


@dataclass(frozen=True)
class Link:
    """A link in an alert: ``<url|label>`` once escaped by :func:`build_message`."""

    url: str
    label: str


def escape(text: Any) -> str:
    """Slack's mrkdwn escaping: ``&``, ``<`` and ``>`` become entities, so ``<!channel>``,
    ``<!here>``, ``<@U123>`` and ``<https://x|click>`` inside a value arrive as literal text."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _value(value: Any) -> str:
    """Redacted (secrets masked, before escaping changes `&<>` a secret may contain), then escaped."""
    if isinstance(value, Link):
        return f"<{escape(redact(value.url))}|{escape(redact(value.label))}>"
    return escape(redact(value))


def build_message(title: str, fields: Iterable[tuple[str, str | None]] = (), **values: Any) -> dict[str, Any]:
    """The one place an alert's text is assembled: a message Slack, Mattermost and Rocket.Chat
    incoming webhooks all accept.

    ``title`` and each field's template are this module's own mrkdwn, with ``{name}``
    placeholders; ``values`` are everything else (run ids, step names, error text, data values
    quoted in it), each escaped here (:func:`escape`) before it is put in its placeholder, and a
    :class:`Link` rendered as ``<url|label>`` with both parts escaped. A field whose template is
    None, or whose placeholders are all None or empty, is left out. ``text`` carries everything
    (what most Slack-compatible receivers show and what notifications use); ``blocks`` lays the
    same content out for Slack.
    """
    # Every value is redacted and escaped once, here (:func:`_value`).
    safe = {name: _value(value) for name, value in values.items() if value not in (None, "")}

    def fill(template: str) -> str | None:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
        if names and not any(name in safe for name in names):
            return None
        return template.format_map(collections.defaultdict(str, safe))

    lines = [fill(title) or title.format_map(collections.defaultdict(str))]
    for label, template in fields:
        line = fill(template) if template else None
        if line:
            lines.append(f"*{escape(label)}:* {line}")
    text = "\n".join(lines)
    block = text if len(text) <= BLOCK_LIMIT else _ENTITY_TAIL.sub("", text[: BLOCK_LIMIT - 1]) + "…"
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": block}}],
    }


def link(url: str | None, label: str) -> Link | None:
    return Link(url, label) if url else None


def send(message: Mapping[str, Any], *, logger: logging.Logger | None = None) -> bool:
    """Log the alert, then POST it to ``MLP_ALERT_WEBHOOK_URL`` if set. Never raises."""
    logger = logger or log
    try:
        logger.warning("ALERT %s", message.get("text", ""))
        url = os.environ.get("MLP_ALERT_WEBHOOK_URL", "").strip()
        if not url:
            logger.info("MLP_ALERT_WEBHOOK_URL is not set: the alert went to the task log only")
            return False
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            logger.error("MLP_ALERT_WEBHOOK_URL is not an http(s) URL: alert not sent")
            return False
        body = json.dumps(message).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - scheme checked above
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        # The URL holds the webhook's secret token: log only its host.
        with urllib.request.urlopen(request, timeout=_timeout_s()) as response:  # noqa: S310
            status = response.status
        logger.info("Alert delivered to %s (HTTP %s)", parts.hostname, status)
        return True
    except urllib.error.HTTPError as exc:
        logger.error("Alert webhook answered HTTP %s: alert not delivered", exc.code)
    except Exception as exc:  # an alert must never fail the task
        logger.error("Alert not delivered: %s: %s", type(exc).__name__, exc)
    return False


def _log_url(ti: Any) -> str | None:
    try:
        return ti.log_url
    except Exception:
        return None


def _upstream_mlflow_run(ti: Any, step_names: Iterable[str]) -> str | None:
    """The MLflow run id reported by the latest earlier step of this run, if any."""
    for task_id in reversed(list(step_names)):
        if task_id == ti.task_id:
            continue
        try:
            summary = ti.xcom_pull(task_ids=task_id)
        except Exception as exc:
            log.debug("No summary of %s: %s", task_id, exc)
            continue
        if isinstance(summary, dict) and summary.get("mlflow_run_id"):
            return str(summary["mlflow_run_id"])
    return None


def one_line(text: str, limit: int = 600) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def failure_callback(context: Mapping[str, Any]) -> None:
    """Task ``on_failure_callback``: runs once, when a step has failed for good (no retry left)."""
    try:
        ti = context["ti"]
        exc = context.get("exception")
        step = getattr(exc, "step", None) or ti.task_id
        error = getattr(exc, "error_line", None) or (one_line(str(exc)) if exc else "unknown error")
        if type(exc).__name__ == "AirflowTaskTimeout":
            timeout = getattr(context.get("task"), "execution_timeout", None)
            error = f"the step ran longer than its execution timeout ({timeout}) and was stopped"
        exit_code = getattr(exc, "exit_code", None)
        retryable = getattr(exc, "retryable", True)
        try_number = getattr(ti, "try_number", None)
        max_tries = getattr(ti, "max_tries", None)
        if exit_code is not None and not retryable:
            outcome = f"exit code {exit_code}: bad input or failed validation, not retried"
        elif not retryable:
            outcome = "bad input, not retried"
        elif exit_code is not None:
            outcome = f"exit code {exit_code}, attempt {try_number} of {(max_tries or 0) + 1}"
        else:
            outcome = f"attempt {try_number} of {(max_tries or 0) + 1}"
        dag = context.get("dag")
        step_names = [t.task_id for t in dag.tasks] if dag is not None else []
        message = build_message(
            ":x: *{dag}* failed at step *{step}*",
            [
                ("Run", "`{run}`"),
                ("Step", "`{step}` ({outcome})"),
                ("Error", "{error}"),
                ("Task log", "{log}"),
                ("MLflow run", "{mlflow}"),
            ],
            dag=ti.dag_id,
            step=step,
            run=ti.run_id,
            outcome=outcome,
            error=one_line(error),
            log=link(_log_url(ti), "Airflow task log"),
            mlflow=link(mlflow_run_url(_upstream_mlflow_run(ti, step_names)), "MLflow run"),
        )
        send(message)
    except Exception:  # never let the callback itself fail
        log.exception("Could not build the failure alert")


def promotion_alert(context: Mapping[str, Any], step: str, summary: Mapping[str, Any]) -> None:
    """Alert when a step's summary says a new champion was promoted. Never raises."""
    try:
        if summary.get("promoted") is not True:
            return
        ti = context["ti"]
        model_name = summary.get("model_name")
        version = summary.get("version")
        message = build_message(
            ":trophy: *{dag}* promoted a new champion: *{model}* version *{version}*",
            [
                ("Run", "`{run}`"),
                ("Step", "`{step}`"),
                ("Reason", "{reason}"),
                ("Model version", "{model_link}"),
                ("Task log", "{log}"),
                ("MLflow run", "{mlflow}"),
            ],
            dag=ti.dag_id,
            model=model_name,
            version=version,
            run=ti.run_id,
            step=step,
            reason=one_line(str(summary.get("reason", ""))),
            model_link=link(mlflow_model_url(model_name, version), f"{model_name} v{version}"),
            log=link(_log_url(ti), "Airflow task log"),
            mlflow=link(mlflow_run_url(summary.get("mlflow_run_id")), "MLflow run"),
        )
        send(message)
    except Exception:
        log.exception("Could not build the promotion alert")


def dag_failure_callback(context: Mapping[str, Any]) -> None:
    """DAG ``on_failure_callback``: alerts only on a run timeout.

    A failed step already alerted from its own task; alerting again here would send two messages
    for one failure.
    """
    try:
        if context.get("reason") != "timed_out":
            return
        dag_run = context.get("dag_run")
        dag = context.get("dag")
        run_id = getattr(dag_run, "run_id", None) or context.get("run_id")
        timeout = getattr(dag, "dagrun_timeout", None)
        send(
            build_message(
                ":hourglass: *{dag}* run timed out",
                [
                    ("Run", "`{run}`"),
                    ("Error", "the run exceeded its timeout ({timeout}); unfinished steps were stopped"),
                ],
                dag=getattr(dag, "dag_id", "ml_pipeline"),
                run=run_id,
                timeout=timeout,
            )
        )
    except Exception:
        log.exception("Could not build the run-timeout alert")
