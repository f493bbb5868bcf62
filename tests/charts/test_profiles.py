"""Each profile renders, every object validates strictly against Kubernetes 1.33, and
`helm lint --strict` is clean."""

from __future__ import annotations

import json

import pytest

from tests.charts.chart_utils import CHART, PROFILES, pod_template, render_chart, run_helm
from tests.support import unavailable

pytestmark = pytest.mark.charts


def validator():
    try:
        import kubernetes_validate
    except ImportError:
        unavailable("kubernetes-validate", "pip install kubernetes-validate")
    return kubernetes_validate


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_object_validates_strictly(profile):
    kv = validator()
    objects = render_chart(PROFILES[profile])
    assert objects
    for obj in objects:
        kv.validate(obj, "1.33.0", strict=True)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_worker_pod_template_validates_strictly(profile):
    objects = render_chart(PROFILES[profile])
    validator().validate(pod_template(objects), "1.33.0", strict=True)


@pytest.mark.parametrize(
    "profile", ["defaults", "gpu", "external-postgresql-s3", "redis-celery", "network-policies"]
)
def test_helm_lint_strict_is_clean(profile, tmp_path):
    values = tmp_path / "values.json"
    values.write_text(json.dumps(PROFILES[profile]))
    result = run_helm("lint", "--strict", str(CHART), "--values", str(values))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout


def test_values_kind_overlay_lints(tmp_path):
    result = run_helm("lint", "--strict", str(CHART), "--values", str(CHART / "values-kind.yaml"))
    assert "0 chart(s) failed" in result.stdout
