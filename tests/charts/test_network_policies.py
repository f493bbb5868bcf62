"""Opt-in NetworkPolicies: default deny in the release and pipeline namespaces, then only the
flows the pipeline needs (task pods -> Airflow API server among them)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.charts.chart_utils import NETWORK_POLICY_VALUES, render_chart

pytestmark = pytest.mark.charts

WITH_TASK_NAMESPACE = {"global": {"networkPolicy": {"enabled": True}, "pipeline": {"namespace": "ml-steps"}}}


def policies(values) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in render_chart(values)
        if o["kind"] == "NetworkPolicy"
    }


def selects(policy, labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return wanted.items() <= labels.items()


def peer_allows(peer, namespace: str, labels: dict[str, str]) -> bool:
    ns = peer.get("namespaceSelector", {}).get("matchLabels", {})
    pods = peer.get("podSelector", {}).get("matchLabels", {})
    return ns.get("kubernetes.io/metadata.name", namespace) == namespace and pods.items() <= labels.items()


def ingress_allowed(pols, to_ns, to_labels, from_ns, from_labels, port) -> bool:
    for (ns, _), policy in pols.items():
        if ns != to_ns or not selects(policy, to_labels):
            continue
        for rule in policy["spec"].get("ingress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if port in ports and any(peer_allows(p, from_ns, from_labels) for p in rule.get("from", [])):
                return True
    return False


def egress_allowed(pols, from_ns, from_labels, to_ns, to_labels, port) -> bool:
    for (ns, _), policy in pols.items():
        if ns != from_ns or not selects(policy, from_labels):
            continue
        for rule in policy["spec"].get("egress", []):
            ports = {p["port"] for p in rule.get("ports", [])}
            if port in ports and any(peer_allows(p, to_ns, to_labels) for p in rule.get("to", [])):
                return True
    return False


def app(name, component):
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": "mlp",
        "app.kubernetes.io/component": component,
    }


STEP = {"kubernetes_pod_operator": "True", "dag_id": "ml_pipeline"}
WORKER = app("airflow", "worker")
API = app("airflow", "api-server")


def test_off_by_default():
    assert not policies({})


@pytest.mark.parametrize("values", [NETWORK_POLICY_VALUES, WITH_TASK_NAMESPACE], ids=["same-ns", "task-ns"])
def test_default_deny_and_dns_in_every_namespace(values):
    pols = policies(values)
    namespaces = {"ml"} | ({"ml-steps"} if values is WITH_TASK_NAMESPACE else set())
    for ns in namespaces:
        deny = pols[(ns, "mlp-default-deny")]["spec"]
        assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        dns = pols[(ns, "mlp-allow-dns")]["spec"]["egress"][0]
        assert {p["port"] for p in dns["ports"]} == {53}


@pytest.mark.parametrize("values", [NETWORK_POLICY_VALUES, WITH_TASK_NAMESPACE], ids=["same-ns", "task-ns"])
def test_needed_flows_are_open_both_ways(values):
    pols = policies(values)
    tns = "ml-steps" if values is WITH_TASK_NAMESPACE else "ml"
    flows = [
        # task pods (the executor's worker pods) -> Airflow API server (Execution API)
        (tns, WORKER, "ml", API, 8080),
        # API server -> worker pods (logs of running tasks)
        ("ml", API, tns, WORKER, 8793),
        # Airflow -> PostgreSQL
        ("ml", app("airflow", "scheduler"), "ml", app("postgresql", "database"), 5432),
        # MLflow -> PostgreSQL and MinIO
        ("ml", app("mlflow", "tracking-server"), "ml", app("postgresql", "database"), 5432),
        ("ml", app("mlflow", "tracking-server"), "ml", app("minio", "object-store"), 9000),
        # step pods -> MLflow, MinIO, PostgreSQL (feature store)
        (tns, STEP, "ml", app("mlflow", "tracking-server"), 5000),
        (tns, STEP, "ml", app("minio", "object-store"), 9000),
        (tns, STEP, "ml", app("postgresql", "database"), 5432),
        # the bucket Job -> MinIO
        ("ml", app("minio", "bucket-job"), "ml", app("minio", "object-store"), 9000),
    ]
    for from_ns, from_labels, to_ns, to_labels, port in flows:
        assert egress_allowed(pols, from_ns, from_labels, to_ns, to_labels, port), (
            from_labels,
            to_labels,
            port,
        )
        assert ingress_allowed(pols, to_ns, to_labels, from_ns, from_labels, port), (
            from_labels,
            to_labels,
            port,
        )


def test_unneeded_flows_stay_closed():
    pols = policies(NETWORK_POLICY_VALUES)
    # step pods never talk to Airflow's API or Redis, nobody calls the step pods
    assert not ingress_allowed(pols, "ml", API, "ml", STEP, 8080)
    assert not ingress_allowed(pols, "ml", app("postgresql", "database"), "ml", {"app": "other"}, 5432)
    steps = pols[("ml", "mlp-pipeline-steps")]["spec"]
    assert steps["ingress"] == []


def test_redis_accepts_airflow_only():
    pols = policies(
        {
            **NETWORK_POLICY_VALUES,
            "redis": {"enabled": True},
            "airflow": {"executor": "CeleryExecutor,KubernetesExecutor"},
        }
    )
    redis = app("redis", "broker")
    assert ingress_allowed(pols, "ml", redis, "ml", app("airflow", "celery-worker"), 6379)
    assert egress_allowed(pols, "ml", app("airflow", "celery-worker"), "ml", redis, 6379)
    assert not ingress_allowed(pols, "ml", redis, "ml", STEP, 6379)


def test_external_egress_is_configurable():
    values = {
        "global": {
            "networkPolicy": {"enabled": True, "externalEgress": [{"cidr": "10.0.0.1/32", "ports": [6443]}]}
        }
    }
    airflow = policies(values)[("ml", "mlp-airflow")]["spec"]["egress"]
    assert {
        "to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}],
        "ports": [{"protocol": "TCP", "port": 6443}],
    } in airflow
