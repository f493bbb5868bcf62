"""Every address the chart hands to a pod resolves, by Kubernetes DNS rules, from the namespace that
pod runs in, to a Service the chart renders, in the namespace the name says, on a port that
Service exposes and with pods behind it. Step and worker pods may run in another namespace
(`global.pipeline.namespace`), where a short Service name resolves to nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.charts.chart_utils import EXTERNAL_VALUES, KIND_VALUES, NAMESPACE, REDIS_VALUES, RELEASE
from tests.charts.cluster_model import (
    OTHER_PORTS,
    STEPS,
    RenderedCluster,
    addresses,
    in_cluster_addresses,
    merged,
    overlay,
    rendered,
    resolve_service,
)

pytestmark = pytest.mark.charts

# profile -> (values, release namespace, the cluster's DNS domain)
PROFILES: dict[str, tuple[dict[str, Any], str, str]] = {
    "shared-namespace": ({}, NAMESPACE, "cluster.local"),
    "steps-namespace": (STEPS, NAMESPACE, "cluster.local"),
    "steps-namespace-celery": (merged(REDIS_VALUES, STEPS), NAMESPACE, "cluster.local"),
    "steps-namespace-other-ports": (merged(STEPS, OTHER_PORTS), NAMESPACE, "cluster.local"),
    "steps-namespace-cluster-domain": (
        merged(STEPS, {"global": {"clusterDomain": "corp.example"}}),
        NAMESPACE,
        "corp.example",
    ),
    "steps-namespace-search-path": (
        merged(STEPS, {"global": {"clusterDomain": ""}}),
        NAMESPACE,
        "cluster.local",
    ),
    "steps-namespace-local-runner": (
        merged(STEPS, {"airflow": {"dag": {"taskRunner": "local"}}}),
        NAMESPACE,
        "cluster.local",
    ),
    "kind": (KIND_VALUES, "ml-pipeline", "cluster.local"),
    "kind-steps-namespace": (merged(KIND_VALUES, STEPS), "ml-pipeline", "cluster.local"),
    "dev": (overlay("dev"), "ml-dev", "cluster.local"),
    "staging": (overlay("staging"), "ml-staging", "cluster.local"),
    "prod-steps-namespace": (merged(overlay("prod"), STEPS), "ml-prod", "cluster.local"),
}


def cluster(profile: str) -> tuple[RenderedCluster, str]:
    values, namespace, domain = PROFILES[profile]
    return rendered(values, namespace), domain


def test_the_resolver_follows_the_pod_search_path():
    services = {("ml", "mlp-mlflow")}
    # a short name: only from its own namespace
    assert resolve_service("mlp-mlflow", "ml", services) == ("ml", "mlp-mlflow")
    assert resolve_service("mlp-mlflow", "ml-steps", services) is None
    # <svc>.<ns> and <svc>.<ns>.svc: the search path's svc.<domain> and <domain> complete them
    for host in (
        "mlp-mlflow.ml",
        "mlp-mlflow.ml.svc",
        "mlp-mlflow.ml.svc.cluster.local",
        "mlp-mlflow.ml.svc.cluster.local.",
    ):
        assert resolve_service(host, "ml-steps", services) == ("ml", "mlp-mlflow"), host
    # another cluster domain: the names of this one do not exist there
    assert resolve_service("mlp-mlflow.ml.svc.cluster.local.", "ml", services, "corp.example") is None
    assert resolve_service("mlp-mlflow.ml.svc.corp.example", "ml-steps", services, "corp.example") == (
        "ml",
        "mlp-mlflow",
    )
    assert resolve_service("mlp-mlflow.ml.svc", "ml-steps", services, "corp.example") == ("ml", "mlp-mlflow")
    # no such Service, or an outside name
    assert resolve_service("mlp-minio.ml.svc.cluster.local", "ml", services) is None
    assert resolve_service("s3.eu-west-1.amazonaws.com", "ml", services) is None


def test_a_host_and_its_port_in_two_variables_are_one_address():
    """libpq's PGHOST / PGPORT (and any FOO_HOST / FOO_PORT pair) name one address."""
    env = [
        {"name": "PGHOST", "value": "mlp-postgresql.ml.svc.cluster.local"},
        {"name": "PGPORT", "value": "6543"},
        {"name": "CACHE_HOST", "value": "mlp-redis"},
    ]
    pod = {
        "kind": "Pod",
        "metadata": {"name": "client", "namespace": "ml", "labels": {}},
        "spec": {"containers": [{"name": "c", "env": env}]},
    }
    services = [
        {"kind": "Service", "metadata": {"name": n, "namespace": "ml"}, "spec": {"ports": [{"port": 1}]}}
        for n in ("mlp-postgresql", "mlp-redis")
    ]
    found = {(a.host, a.port) for a in addresses(RenderedCluster([pod, *services], RELEASE, "ml"))}
    assert found == {("mlp-postgresql.ml.svc.cluster.local", 6543), ("mlp-redis", None)}


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_in_cluster_address_resolves_from_the_pod_that_gets_it(profile):
    rendered_cluster, domain = cluster(profile)
    problems = []
    checked = 0
    for address, resolved in in_cluster_addresses(rendered_cluster, domain):
        checked += 1
        where = (
            f"{address.pod} (namespace {address.namespace}), {address.where}: {address.host}:{address.port}"
        )
        if resolved is None:
            problems.append(f"{where} resolves to no Service from namespace {address.namespace}")
            continue
        namespace, name = resolved
        if not address.host.startswith(f"{name}.{namespace}.svc"):
            problems.append(f"{where} does not name its namespace ({name}.{namespace}.svc...)")
        service = rendered_cluster.service(namespace, name)
        exposed = {int(p["port"]) for p in service["spec"]["ports"]}
        if address.port is None or address.port not in exposed:
            problems.append(
                f"{where}: Service {namespace}/{name} exposes {sorted(exposed)}, not {address.port}"
            )
        elif not rendered_cluster.backends(namespace, name, address.port):
            problems.append(f"{where}: Service {namespace}/{name} selects no pod listening on its port")
    assert checked, "no in-cluster address found: the collection is broken"
    assert not problems, "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("profile", ["shared-namespace", "steps-namespace", "steps-namespace-other-ports"])
def test_step_doctor_and_worker_pods_are_handed_every_backing_service(profile):
    """The collection really reaches the step pods' environment (ConfigMap, Secret, config file),
    the doctor pod and the worker pod template, and finds what they call."""
    rendered, domain = cluster(profile)
    services = rendered.services()

    def resolved(pod: str) -> set[str]:
        found = set()
        for address in addresses(rendered, [pod]):
            target = resolve_service(address.host, address.namespace, services, domain)
            if target:
                found.add(target[1])
        return found

    backing = {f"{RELEASE}-mlflow", f"{RELEASE}-minio", f"{RELEASE}-postgresql"}
    assert backing <= resolved("step")
    assert backing <= resolved(f"{RELEASE}-pipeline-doctor")
    assert f"{RELEASE}-airflow-api-server" in resolved("worker")
    assert f"{RELEASE}-postgresql" in resolved(f"{RELEASE}-mlflow")
    assert f"{RELEASE}-postgresql" in resolved(f"{RELEASE}-airflow-scheduler")


def test_external_services_are_handed_out_as_configured():
    hosts = {a.host for a in addresses(rendered(merged(EXTERNAL_VALUES, STEPS), NAMESPACE), ["step"])}
    assert {
        "db.example.internal",
        "s3.eu-west-1.amazonaws.com",
        f"{RELEASE}-mlflow.ml.svc.cluster.local",
    } <= hosts


def _mlflow_profiles():
    yield from ("shared-namespace", "steps-namespace", "steps-namespace-other-ports", "kind")
    yield "steps-namespace-cluster-domain"


@pytest.mark.parametrize("profile", _mlflow_profiles())
def test_mlflow_accepts_the_host_header_of_every_address_it_is_reached_at(profile):
    """MLflow answers 403 to a Host header outside --allowed-hosts: every MLflow address handed
    to a pod must be in that list, as the client sends it (no port when it is the scheme's)."""
    rendered, domain = cluster(profile)
    services = rendered.services()
    mlflow = rendered.find("Deployment", f"{RELEASE}-mlflow")
    args = [a for c in mlflow["spec"]["template"]["spec"]["containers"] for a in c.get("args", [])]
    (allowed,) = [a.split("=", 1)[1] for a in args if a.startswith("--allowed-hosts=")]
    accepted = set(allowed.split(","))
    sent = set()
    for address in addresses(rendered):
        if resolve_service(address.host, address.namespace, services, domain) == (
            rendered.namespace,
            f"{RELEASE}-mlflow",
        ):
            default = {"http": 80, "https": 443}.get(address.scheme)
            sent.add(address.host if address.port == default else f"{address.host}:{address.port}")
    assert sent
    assert sent <= accepted, sorted(sent - accepted)
