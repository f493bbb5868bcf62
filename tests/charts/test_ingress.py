"""The optional Ingress of the Airflow and MLflow UIs: TLS, the right Service and port, and a host
MLflow's Host-header check accepts. Rendered and schema-validated; no controller has run it here."""

from __future__ import annotations

import pytest
import yaml

from tests.charts.chart_utils import REPO, HelmFailedError, get, render_chart

pytestmark = pytest.mark.charts

PROD = yaml.safe_load((REPO / "k8s" / "envs" / "prod" / "values.yaml").read_text())
VALUES = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt-prod"},
        "airflow": {"host": "airflow.example.com"},
        "mlflow": {"host": "mlflow.example.com", "tlsSecret": "mlflow-cert"},
    },
    "mlflow": {"allowedHosts": ["mlflow.example.com"]},
}


def ingresses(values):
    return {o["metadata"]["name"]: o for o in render_chart(values) if o["kind"] == "Ingress"}


def test_off_by_default():
    assert ingresses({}) == {}


def test_each_ui_gets_a_tls_ingress_to_its_service():
    import kubernetes_validate

    objects = render_chart(VALUES)
    found = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Ingress"}
    assert sorted(found) == ["mlp-airflow", "mlp-mlflow"]
    expected = {
        "mlp-airflow": ("airflow.example.com", "mlp-airflow-tls", "mlp-airflow-api-server"),
        "mlp-mlflow": ("mlflow.example.com", "mlflow-cert", "mlp-mlflow"),
    }
    for name, ingress in found.items():
        kubernetes_validate.validate(ingress, "1.33.0", strict=True)
        host, secret, service_name = expected[name]
        spec = ingress["spec"]
        assert spec["ingressClassName"] == "nginx"
        assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt-prod"}
        assert spec["tls"] == [{"hosts": [host], "secretName": secret}]
        (rule,) = spec["rules"]
        assert rule["host"] == host
        (path,) = rule["http"]["paths"]
        backend = path["backend"]["service"]
        # The backend names a Service the chart renders, by one of its port names.
        service = get(objects, "Service", backend["name"])
        assert service_name == backend["name"]
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}


def test_mlflow_host_must_pass_mlflows_host_check():
    values = {**VALUES, "mlflow": {"allowedHosts": []}}
    with pytest.raises(HelmFailedError, match=r"mlflow\.allowedHosts"):
        render_chart(values)
    # And what the chart does accept reaches the server's command line.
    mlflow = get(render_chart(VALUES), "Deployment", "mlp-mlflow")
    args = " ".join(mlflow["spec"]["template"]["spec"]["containers"][0].get("args", []))
    command = " ".join(mlflow["spec"]["template"]["spec"]["containers"][0].get("command", []))
    assert "mlflow.example.com" in args + command


def test_enabled_without_a_host_is_refused():
    with pytest.raises(HelmFailedError, match="no UI has a host"):
        render_chart({"ingress": {"enabled": True}})


def test_tls_can_end_before_the_controller():
    values = {**VALUES, "ingress": {**VALUES["ingress"], "tls": False}}
    assert all("tls" not in i["spec"] for i in ingresses(values).values())


def test_prod_overlay_serves_both_uis_over_tls():
    found = {
        o["metadata"]["name"]: o for o in render_chart(PROD, namespace="ml-prod") if o["kind"] == "Ingress"
    }
    assert sorted(found) == ["mlp-airflow", "mlp-mlflow"]
    for ingress in found.values():
        assert ingress["spec"]["tls"][0]["secretName"].endswith("-tls")
        assert "cert-manager.io/cluster-issuer" in ingress["metadata"]["annotations"]
