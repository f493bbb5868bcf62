"""The pipeline's MLflow credentials (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, from the
pipeline Secret): the password is masked wherever the pipeline writes, and ``pipeline doctor``
sends them to the tracking server."""

from __future__ import annotations

import base64
import logging

import pytest

from pipeline.doctor import Report, check_mlflow, tracking_auth
from pipeline.redaction import REDACTOR, is_secret_name, redact, register_environment
from tests.canary import Canaries


@pytest.fixture(autouse=True)
def _fresh_registry():
    REDACTOR.forget_all()
    yield
    REDACTOR.forget_all()


def test_the_tracking_password_is_a_secret_and_masked_everywhere() -> None:
    canary = Canaries().new("MLFLOW_TRACKING_PASSWORD")
    assert is_secret_name("MLFLOW_TRACKING_PASSWORD")
    assert not is_secret_name("MLFLOW_TRACKING_USERNAME")
    register_environment({"MLFLOW_TRACKING_USERNAME": "pipeline", "MLFLOW_TRACKING_PASSWORD": canary})
    header = base64.b64encode(f"pipeline:{canary}".encode()).decode()
    text = redact(
        f"password={canary} url=http://pipeline:{canary}@mlflow:5000 raw {canary}\n"
        f"Authorization: Basic {header}"
    )
    assert canary not in text
    assert header not in text
    assert "pipeline" in text  # the user name stays readable


def test_tracking_auth_needs_both_variables() -> None:
    assert tracking_auth({}) is None
    assert tracking_auth({"MLFLOW_TRACKING_USERNAME": "pipeline"}) is None
    assert tracking_auth({"MLFLOW_TRACKING_USERNAME": "u", "MLFLOW_TRACKING_PASSWORD": "p"}) == ("u", "p")


class _Answer:
    def __init__(self, status_code: int, text: str = "") -> None:
        self.status_code, self.text = status_code, text


def test_doctor_sends_basic_auth_and_names_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that wants credentials: with them the API answers; without, one clear line."""
    import requests

    seen: list[object] = []

    def fake_get(self, url, **kwargs):
        seen.append(self.auth)
        if url.endswith("/health"):
            return _Answer(200, "OK")
        return _Answer(200 if self.auth == ("pipeline", "s3cret-pw") else 401, "Unauthorized")

    monkeypatch.setattr(requests.Session, "get", fake_get)
    monkeypatch.setattr("pipeline.doctor.mlflow_server.check_mlflow_artifacts", lambda *a, **k: None)

    class _Settings:
        resolved_tracking_uri = "http://mlp-mlflow.ml.svc:5000"
        uses_embedded_tracking = False

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    report = Report()
    check_mlflow(_Settings(), report, {})
    assert [c.status for c in report.checks] == ["problem"]
    assert "MLFLOW_TRACKING_USERNAME" in report.checks[0].message

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "pipeline")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cret-pw")
    report = Report()
    check_mlflow(_Settings(), report, {})
    assert report.checks == []  # the API accepted it; the artifact check (stubbed) comes next
    assert seen[-1] == ("pipeline", "s3cret-pw")
    logging.getLogger(__name__).debug("done")
