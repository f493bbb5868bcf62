"""Alert delivery: Slack-compatible JSON to a real HTTP server, bounded, and never failing the task."""

from __future__ import annotations

import json
import logging
import types

import pytest

from tests.dags.http_servers import WebhookReceiver
from tests.support import free_port

pytestmark = pytest.mark.airflow


def fake_ti(task_id: str = "validate", summaries: dict | None = None):
    summaries = summaries or {}
    return types.SimpleNamespace(
        dag_id="ml_pipeline",
        task_id=task_id,
        run_id="manual__2026-11-30T03:00:00+00:00",
        try_number=1,
        max_tries=3,
        log_url="http://airflow.example/dags/ml_pipeline/runs/manual__2026-11-30T03%3A00%3A00%2B00%3A00/tasks/validate",
        xcom_pull=lambda task_ids: summaries.get(task_ids),
    )


def test_send_posts_slack_compatible_json(mlp_env, caplog):
    from ml_pipeline_support import alerts

    with WebhookReceiver() as hook:
        mlp_env.setenv("MLP_ALERT_WEBHOOK_URL", hook.url)
        with caplog.at_level(logging.INFO):
            assert alerts.send(alerts.build_message("title", [("Run", "r1"), ("Skipped", None)])) is True
    (received,) = hook.received
    assert received["content_type"] == "application/json"
    assert received["json"]["text"] == "title\n*Run:* r1"
    assert received["json"]["blocks"][0]["text"]["type"] == "mrkdwn"
    assert "ALERT title" in caplog.text
    assert "secret-token" not in caplog.text  # the webhook URL is a secret


@pytest.mark.parametrize("problem", ["unset", "refused", "http-500", "slow", "not-http"])
def test_send_never_raises(mlp_env, problem, caplog):
    from ml_pipeline_support import alerts

    mlp_env.setenv("MLP_ALERT_TIMEOUT_S", "0.5")
    message = alerts.build_message("title", [])
    if problem == "unset":
        assert alerts.send(message) is False
    elif problem == "refused":
        mlp_env.setenv("MLP_ALERT_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/hook")
        assert alerts.send(message) is False
    elif problem == "not-http":
        mlp_env.setenv("MLP_ALERT_WEBHOOK_URL", "file:///etc/passwd")
        assert alerts.send(message) is False
    else:
        status, delay = (500, 0.0) if problem == "http-500" else (200, 2.0)
        with WebhookReceiver(status=status, delay_s=delay) as hook:
            mlp_env.setenv("MLP_ALERT_WEBHOOK_URL", hook.url)
            assert alerts.send(message) is False
    assert "ALERT title" in caplog.text  # the task log always has it


def test_failure_alert_names_step_error_and_links(mlp_env):
    from ml_pipeline_support import alerts
    from ml_pipeline_support.operators import step_failure

    mlp_env.setenv("MLP_MLFLOW_UI_URL", "http://mlflow.example/")
    error = step_failure("validate", 65, "ERROR column 'flipper_length_mm' broke 'max 250'")
    ti = fake_ti(summaries={"ingest": {"uri": "s3://x"}, "train": {"mlflow_run_id": "abc123"}})
    dag = types.SimpleNamespace(
        tasks=[types.SimpleNamespace(task_id=t) for t in ("ingest", "train", "validate")]
    )
    with WebhookReceiver() as hook:
        mlp_env.setenv("MLP_ALERT_WEBHOOK_URL", hook.url)
        alerts.failure_callback({"ti": ti, "exception": error, "dag": dag})
    (message,) = hook.messages()
    text = message["text"]
    assert "failed at step *validate*" in text
    assert "manual__2026-11-30T03:00:00+00:00" in text
    assert "exit code 65: bad input or failed validation, not retried" in text
    assert "column 'flipper_length_mm' broke 'max 250'" in text
    assert "<http://airflow.example/dags/ml_pipeline/runs/" in text
    assert "<http://mlflow.example/#/runs/abc123|MLflow run>" in text


def test_promotion_alert_only_when_promoted(mlp_env):
    from ml_pipeline_support import alerts

    mlp_env.setenv("MLP_MLFLOW_UI_URL", "http://mlflow.example")
    summary = {
        "promoted": True,
        "model_name": "penguins",
        "version": 3,
        "reason": "macro_f1 0.97 beats champion 0.95 by more than 0.005",
        "mlflow_run_id": "run42",
    }
    with WebhookReceiver() as hook:
        mlp_env.setenv("MLP_ALERT_WEBHOOK_URL", hook.url)
        alerts.promotion_alert({"ti": fake_ti("register")}, "register", {**summary, "promoted": False})
        alerts.promotion_alert({"ti": fake_ti("register")}, "register", summary)
    (message,) = hook.messages()
    assert "new champion: *penguins* version *3*" in message["text"]
    assert "beats champion 0.95" in message["text"]
    assert "<http://mlflow.example/#/models/penguins/versions/3|penguins v3>" in message["text"]
    assert "<http://mlflow.example/#/runs/run42|MLflow run>" in message["text"]


def test_dag_callback_alerts_only_on_run_timeout(mlp_env):
    from ml_pipeline_support import alerts

    dag = types.SimpleNamespace(dag_id="ml_pipeline", dagrun_timeout="6:00:00")
    run = types.SimpleNamespace(run_id="scheduled__x")
    with WebhookReceiver() as hook:
        mlp_env.setenv("MLP_ALERT_WEBHOOK_URL", hook.url)
        alerts.dag_failure_callback({"reason": "task_failure", "dag": dag, "dag_run": run})
        alerts.dag_failure_callback({"reason": "timed_out", "dag": dag, "dag_run": run})
    (message,) = hook.messages()
    assert "run timed out" in message["text"]
    assert "scheduled__x" in message["text"]


def test_error_line_prefers_the_pipeline_summary_line():
    from ml_pipeline_support.operators import last_error_line

    log = [
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "ValueError: boom",
        "step ingest: failed (retryable): source http://x: gave up after 1 attempts: HTTP 503",
        "pipeline: error: step ingest: source http://x: gave up after 1 attempts: HTTP 503",
        "Calculating Metrics: 10%\rCalculating Metrics: 100%",
    ]
    assert last_error_line(log) == "step ingest: source http://x: gave up after 1 attempts: HTTP 503"
    # Without the pipeline's line (a crash): the last line naming an error, not a traceback frame.
    assert last_error_line([*log[:3], '  File "y.py", line 2']) == "ValueError: boom"
    assert last_error_line(["Killed"]) == "Killed"
    assert last_error_line([]) == ""


def test_untrusted_text_cannot_ping_the_channel_or_hide_a_link(mlp_env):
    """Data values and error text reach Slack as literal text: mrkdwn's `&`, `<`, `>` escaped."""
    from ml_pipeline_support import alerts
    from ml_pipeline_support.operators import step_failure

    error = step_failure(
        "validate",
        65,
        "column 'island': 1 of 344 rows violate it, e.g. ['<!channel> & <!here> <https://evil.example|click>'"
        " '<@U024BE7LH>'] (rule: values in ['Biscoe', 'Dream'])",
    )
    ti = fake_ti()
    ti.run_id = "manual__<!everyone>"
    with WebhookReceiver() as hook:
        mlp_env.setenv("MLP_ALERT_WEBHOOK_URL", hook.url)
        alerts.failure_callback({"ti": ti, "exception": error, "dag": None})
        alerts.promotion_alert(
            {"ti": fake_ti("register")},
            "register",
            {"promoted": True, "model_name": "<!subteam^S1>", "version": 1, "reason": "a <b> & c"},
        )
    failure, promotion = hook.messages()
    for message in (failure, promotion):
        for text in (message["text"], message["blocks"][0]["text"]["text"]):
            # Slack's only control characters in mrkdwn text: no `<` from a value survives
            assert "<!" not in text and "<@" not in text and "<https://evil" not in text, text
    text = failure["text"]
    assert "&lt;!channel&gt; &amp; &lt;!here&gt; &lt;https://evil.example|click&gt;" in text
    assert "&lt;@U024BE7LH&gt;" in text
    assert "`manual__&lt;!everyone&gt;`" in text
    # our own formatting and links are still mrkdwn
    assert text.startswith(":x: *ml_pipeline* failed at step *validate*")
    assert "|Airflow task log>" in text
    assert "*&lt;!subteam^S1&gt;* version *1*" in promotion["text"]
    assert "a &lt;b&gt; &amp; c" in promotion["text"]


def test_an_alert_carries_no_secret(mlp_env, caplog):
    """The last stderr line of a failed pod may quote a URL or a header with credentials; the
    Airflow process never knew those values, so the shapes are what the redaction catches."""
    from ml_pipeline_support import alerts
    from ml_pipeline_support.operators import step_failure

    canaries = [f"CANARYalert{i}x9f2c" for i in range(4)]
    error = step_failure(
        "ingest",
        75,
        f"source https://reader:{canaries[0]}@api.example/x?api_key={canaries[1]}&page=2 failed; "
        f"feature store postgresql://:{canaries[2]}@db/features; sent Authorization: Bearer {canaries[3]}",
    )
    with WebhookReceiver() as hook, caplog.at_level("WARNING"):
        mlp_env.setenv("MLP_ALERT_WEBHOOK_URL", hook.url)
        alerts.failure_callback({"ti": fake_ti(), "exception": error, "dag": None})
    (failure,) = hook.messages()
    payload = json.dumps(failure) + caplog.text
    assert not [c for c in canaries if c in payload], payload
    assert "api.example" in failure["text"] and "***" in failure["text"]


def test_a_long_message_is_cut_between_entities():
    from ml_pipeline_support import alerts

    message = alerts.build_message("t", [("Error", "{error}")], error="&" * 3000)
    block = message["blocks"][0]["text"]["text"]
    assert len(block) <= alerts.BLOCK_LIMIT
    assert block.endswith("&amp;…")
    assert message["text"].endswith("&amp;" * 3)
