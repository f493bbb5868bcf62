"""The rendered NetworkPolicies, evaluated (tests/charts/netpol.py) over the pods each profile
starts: the flows the pipeline needs are allowed, following the addresses the chart hands to each
pod through its Service to the pod and port it lands on, and the rest is denied."""

from __future__ import annotations

from typing import Any

import pytest

from tests.charts.chart_utils import (
    EXTERNAL_VALUES,
    KIND_VALUES,
    NAMESPACE,
    REDIS_VALUES,
    RELEASE,
    REPO,
    render_chart,
)
from tests.charts.cluster_model import (
    OTHER_PORTS,
    STEP_POD_LABELS,
    STEPS,
    RenderedCluster,
    in_cluster_addresses,
    merged,
    overlay,
    rendered,
)
from tests.charts.netpol import External, Node, Pod, Policies, selector_matches
from tests.support import unavailable

pytestmark = pytest.mark.charts

# The API server as pods reach it after the `kubernetes` Service: kind/kubeadm (the control-plane
# node, 6443) and a private managed endpoint (443).
KUBE_API = [(External("172.18.0.2"), 6443), (External("10.0.0.1"), 443)]
INTERNET = External("93.184.216.34")
NODE = Node("node-1", "172.18.0.3")  # every modelled pod runs there
DNS = Pod("coredns", "kube-system", {"k8s-app": "kube-dns"}, ip="10.244.9.2")
INTRUDER = Pod("intruder", "other", {"app": "intruder"}, ip="10.244.9.3")
# The CloudNativePG operator and the ingress controller, as their charts label them (the defaults of
# cnpg.operator and ingress.controller).
CNPG_OPERATOR = Pod(
    "cnpg-operator", "cnpg-system", {"app.kubernetes.io/name": "cloudnative-pg"}, ip="10.244.7.2"
)
INGRESS_CONTROLLER = Pod(
    "ingress-controller", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, ip="10.244.8.2"
)

# profile -> (values, release namespace)
PROFILES: dict[str, tuple[dict[str, Any], str]] = {
    "defaults": ({}, NAMESPACE),
    "steps-namespace": (STEPS, NAMESPACE),
    "celery-steps-namespace": (merged(REDIS_VALUES, STEPS), NAMESPACE),
    "other-ports-steps-namespace": (merged(STEPS, OTHER_PORTS), NAMESPACE),
    # multi-node training: the TrainJob's pods (tests/charts/test_trainjob.py), steps namespace
    "trainjob-steps-namespace": (merged(STEPS, {"trainJob": {"enabled": True}}), NAMESPACE),
    "kind": (KIND_VALUES, "ml-pipeline"),
    "dev": (overlay("dev"), "ml-dev"),
    "staging": (overlay("staging"), "ml-staging"),
    "prod": (overlay("prod"), "ml-prod"),
    "prod-steps-namespace": (merged(overlay("prod"), STEPS), "ml-prod"),
}


class Model:
    """A profile rendered, its pods placed, its policies loaded."""

    def __init__(self, values: dict[str, Any], namespace: str) -> None:
        self.cluster = rendered(values, namespace)
        self.namespace = namespace
        self.steps_namespace = self.cluster.pipeline_namespace
        self.pods = self.cluster.pods
        # the CloudNativePG instances, which the operator starts (empty without cnpg.enabled)
        self.instances = list(self.cluster.operator_pods.values())
        self.neighbour = Pod("neighbour", namespace, {"app": "neighbour"}, ip="10.244.9.4")
        policies = [o for o in self.cluster.objects if o["kind"] == "NetworkPolicy"]
        self.policies = Policies(policies)
        self.lenient = Policies(policies, ipblock_matches_pods=True)
        # the Service of the release's PostgreSQL: the bundled server, the CloudNativePG instances
        # (`-r`: every instance, since any of them may become the primary), or none (external)
        if self.has("postgresql"):
            self.database: str | None = "postgresql"
        elif self.instances:
            self.database = "postgres-r"
        else:
            self.database = None
        self.ingress_hosts = {
            o["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
            for o in self.cluster.objects
            if o["kind"] == "Ingress"
        }

    def pod(self, component: str) -> Pod:
        name = component if component in ("step", "worker") else f"{RELEASE}-{component}"
        return self.pods[name]

    def has(self, component: str) -> bool:
        return (component if component in ("step", "worker") else f"{RELEASE}-{component}") in self.pods

    def service_flows(self, src: Pod, service: str, port: int) -> list[tuple[Pod, int]]:
        landed = self.cluster.backends(self.namespace, f"{RELEASE}-{service}", port)
        assert landed, f"Service {service}:{port} selects no pod"
        return landed

    def reaches(self, src: Pod | Node, service: str, port: int) -> bool:
        """Every pod behind the Service accepts ``src`` on the port the Service translates to."""
        return all(
            self.policies.allowed(src, dst, target) for dst, target in self.service_flows(src, service, port)
        )

    def blocked(self, src: Pod | Node, service: str, port: int) -> bool:
        """No pod behind the Service accepts ``src``, whether or not ipBlocks match pod addresses."""
        return not any(
            evaluator.allowed(src, dst, target)
            for evaluator in (self.policies, self.lenient)
            for dst, target in self.service_flows(src, service, port)
        )

    @property
    def pg_port(self) -> int:
        if self.database == "postgres-r":
            return self.service_port("postgres-r", "postgres")
        return self.service_port("postgresql", "postgresql")

    def service_port(self, service: str, name: str) -> int:
        (entry,) = [
            p
            for p in self.cluster.service(self.namespace, f"{RELEASE}-{service}")["spec"]["ports"]
            if p["name"] == name
        ]
        return int(entry["port"])


_MODELS: dict[str, Model] = {}


def model(profile: str) -> Model:
    if profile not in _MODELS:
        _MODELS[profile] = Model(*PROFILES[profile])
    return _MODELS[profile]


def test_on_by_default_and_in_the_kind_overlay():
    assert model("defaults").policies.policies
    assert model("kind").policies.policies
    assert KIND_VALUES.get("global", {}).get("networkPolicy", {}).get("enabled", True) is True


def test_off_renders_none():
    objects = render_chart({"global": {"networkPolicy": {"enabled": False}}})
    assert not [o for o in objects if o["kind"] in ("NetworkPolicy", "CiliumNetworkPolicy")]


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_pod_of_the_release_is_isolated_both_ways(profile):
    m = model(profile)
    for name, pod in m.pods.items():
        for direction in ("Ingress", "Egress"):
            assert m.policies.selecting(pod, direction), (
                f"{name} ({pod.namespace}) is not isolated for {direction}"
            )
    # pods of other applications in the same namespaces are left alone
    assert not m.policies.selecting(m.neighbour, "Ingress")
    assert not m.policies.selecting(m.neighbour, "Egress")


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_address_a_pod_is_handed_is_reachable_from_it(profile):
    """The flows the pipeline needs, read off the rendered configuration: each in-cluster address
    of each pod (env, ConfigMaps, Secrets, config file; the step pods' from MLP_DAG_*), through
    its Service, to every pod behind it, on the port it lands on."""
    m = model(profile)
    problems, checked = [], set()
    for address, resolved in in_cluster_addresses(m.cluster):
        if address.port is None:
            continue
        assert resolved, address
        namespace, service = resolved
        src = m.pods[address.pod]
        for dst, port in m.cluster.backends(namespace, service, address.port):
            checked.add((address.pod, dst.name))
            if not m.policies.allowed(src, dst, port):
                problems.append(f"{address.pod} -> {dst.name}:{port} ({address.where})")
    assert ("step", f"{RELEASE}-mlflow") in checked or not m.has("mlflow")
    if m.instances:
        assert ("step", f"{RELEASE}-postgres-1") in checked  # the feature store, on the primary
    assert not problems, "denied:\n" + "\n".join(sorted(set(problems)))


@pytest.mark.parametrize("profile", list(PROFILES))
def test_needed_flows_are_allowed(profile):
    m = model(profile)
    db, pg_port = m.database, m.pg_port if m.database else 0
    pipeline_pods = [m.pod("pipeline-doctor")] + ([m.pod("step")] if m.has("step") else [m.pod("worker")])
    for pod in [*m.pods.values()]:
        for protocol in ("UDP", "TCP"):
            assert m.policies.allowed(pod, DNS, 53, protocol), f"{pod.name} -> DNS/{protocol}"
    for pod in pipeline_pods:
        if m.has("mlflow"):
            assert m.reaches(pod, "mlflow", m.service_port("mlflow", "http")), pod.name
        if m.has("minio"):
            assert m.reaches(pod, "minio", 9000), pod.name
        if db:
            assert m.reaches(pod, db, pg_port), pod.name
        assert m.policies.allowed(pod, INTERNET, 443), f"{pod.name} -> HTTPS data sources, external S3"
    api_port = m.service_port("airflow-api-server", "api")
    for component in ("airflow-scheduler", "airflow-triggerer", "airflow-api-server", "worker"):
        for endpoint, port in KUBE_API:
            assert m.policies.allowed(m.pod(component), endpoint, port), f"{component} -> Kubernetes API"
    for component in (
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-api-server",
    ):
        assert not db or m.reaches(m.pod(component), db, pg_port), component
    migrate = next(p for n, p in m.pods.items() if n.startswith(f"{RELEASE}-airflow-migrate"))
    assert not db or m.reaches(migrate, db, pg_port)
    assert m.reaches(m.pod("worker"), "airflow-api-server", api_port)  # the Execution API
    assert m.policies.allowed(m.pod("airflow-api-server"), m.pod("worker"), 8793)  # running tasks' logs
    assert m.policies.allowed(m.pod("airflow-api-server"), m.pod("airflow-triggerer"), 8794)
    if m.has("minio"):
        for component in ("worker", "airflow-api-server", "airflow-scheduler"):
            assert m.reaches(m.pod(component), "minio", 9000), f"{component} -> remote task logs"
        assert m.reaches(m.pod("mlflow"), "minio", 9000)
        assert m.reaches(m.pod("minio-bucket"), "minio", 9000)
    if m.has("mlflow"):
        assert not db or m.reaches(m.pod("mlflow"), db, pg_port)
        if m.has("mlflow-users"):  # the Job creating MLflow's basic-auth users calls the server
            assert m.reaches(m.pod("mlflow-users"), "mlflow", m.service_port("mlflow", "http"))
        for name, pod in m.pods.items():
            if name.startswith(f"{RELEASE}-mlflow-migrate"):
                assert not db or m.reaches(pod, db, pg_port), name
    if m.has("redis"):
        for component in ("airflow-scheduler", "airflow-celery-worker"):
            assert m.reaches(m.pod(component), "redis", 6379), component
        # Celery's result backend is Airflow's database
        assert not db or m.reaches(m.pod("airflow-celery-worker"), db, pg_port)
    # the UIs through `kubectl port-forward`: the kubelet connects from the pod's node
    assert m.reaches(NODE, "airflow-api-server", api_port)
    if m.has("mlflow"):
        assert m.reaches(NODE, "mlflow", m.service_port("mlflow", "http"))
    if m.has("minio"):
        assert m.reaches(NODE, "minio", 9001)
    # the UIs that have an Ingress, from the ingress controller
    for service, port in (("airflow-api-server", api_port), ("mlflow", 5000)):
        if f"{RELEASE}-{service}" in m.ingress_hosts:
            assert m.reaches(INGRESS_CONTROLLER, service, port), service
    # CloudNativePG: the operator polls each instance's status endpoint and connects to PostgreSQL;
    # the instances replicate from each other, call the Kubernetes API and archive WAL to S3
    for instance in m.instances:
        assert m.policies.allowed(CNPG_OPERATOR, instance, 8000), instance.name
        assert m.policies.allowed(CNPG_OPERATOR, instance, 5432), instance.name
        for other in m.instances:
            if other is not instance:
                assert m.policies.allowed(instance, other, 5432), (instance.name, other.name)
        for endpoint, port in KUBE_API:
            assert m.policies.allowed(instance, endpoint, port), f"{instance.name} -> Kubernetes API"
        assert m.policies.allowed(instance, External("52.95.0.1"), 443), f"{instance.name} -> S3 backups"
        for protocol in ("UDP", "TCP"):
            assert m.policies.allowed(instance, DNS, 53, protocol), f"{instance.name} -> DNS/{protocol}"


def test_the_managed_database_is_modelled_in_the_overlays_that_use_it():
    """The flows above cover CloudNativePG and the Ingress only where they are rendered."""
    for profile in ("staging", "prod", "prod-steps-namespace"):
        m = model(profile)
        assert m.database == "postgres-r" and len(m.instances) >= 2, profile
    assert model("prod").ingress_hosts == {f"{RELEASE}-airflow-api-server", f"{RELEASE}-mlflow"}
    assert not model("staging").ingress_hosts
    assert model("defaults").database == "postgresql" and not model("defaults").instances


@pytest.mark.parametrize("profile", list(PROFILES))
def test_unneeded_flows_are_denied(profile):
    m = model(profile)
    db, pg_port = m.database, m.pg_port if m.database else 0
    api_port = m.service_port("airflow-api-server", "api")
    pipeline_pods = [m.pod("pipeline-doctor"), *([m.pod("step")] if m.has("step") else [])]
    for pod in pipeline_pods:
        for endpoint, port in KUBE_API:
            assert not m.policies.allowed(pod, endpoint, port), f"{pod.name} -> Kubernetes API"
            assert not m.lenient.allowed(pod, endpoint, port), f"{pod.name} -> Kubernetes API"
        assert m.blocked(pod, "airflow-api-server", api_port), pod.name
        if m.has("redis"):
            assert m.blocked(pod, "redis", 6379), pod.name
    for component in ("mlflow", "airflow-dag-processor"):
        for endpoint, port in KUBE_API:
            assert not m.policies.allowed(m.pod(component), endpoint, port), f"{component} -> Kubernetes API"
    # worker pods talk to Airflow through the Execution API, never to its database
    assert not db or m.blocked(m.pod("worker"), db, pg_port)
    # nobody outside the release, in another namespace or in the same one
    for outsider in (INTRUDER, m.neighbour, CNPG_OPERATOR, INGRESS_CONTROLLER):
        if m.has("mlflow") and (
            f"{RELEASE}-mlflow" not in m.ingress_hosts or outsider is not INGRESS_CONTROLLER
        ):
            assert m.blocked(outsider, "mlflow", m.service_port("mlflow", "http")), outsider.name
        if db and not (outsider is CNPG_OPERATOR and m.instances):  # the operator connects (above)
            assert m.blocked(outsider, db, pg_port), outsider.name
        if m.has("minio"):
            assert m.blocked(outsider, "minio", 9000), outsider.name
            assert m.blocked(outsider, "minio", 9001), outsider.name
        if f"{RELEASE}-airflow-api-server" not in m.ingress_hosts or outsider is not INGRESS_CONTROLLER:
            assert m.blocked(outsider, "airflow-api-server", api_port), outsider.name
    # nothing calls the step pods; MLflow, PostgreSQL and MinIO call no private address
    if m.has("step"):
        assert not m.policies.allowed(m.pod("airflow-api-server"), m.pod("step"), 8080)
    for component in ("mlflow", "postgresql", "minio"):
        if m.has(component):
            assert not m.lenient.allowed(m.pod(component), External("10.1.2.3"), 443), component
    # CloudNativePG: only the operator reaches the status endpoint, nothing reaches the metrics
    # port, and the instances call no pod of the release but each other
    for instance in m.instances:
        for src in (*[p for n, p in m.pods.items()], INTRUDER, m.neighbour, INGRESS_CONTROLLER):
            assert not m.lenient.allowed(src, instance, 8000), (src.name, instance.name)
        for src in (CNPG_OPERATOR, *m.pods.values()):
            assert not m.lenient.allowed(src, instance, 9187), (src.name, instance.name)
        assert not m.policies.allowed(m.pod("worker"), instance, 5432)
        for name, pod in m.pods.items():
            for port in (5000, 8080, 9000):
                assert not m.policies.allowed(instance, pod, port), (instance.name, name, port)
        assert not m.policies.allowed(instance, INTERNET, 80), instance.name
    if m.instances:
        # the bundled server's policy is not rendered, and no policy admits the operator elsewhere
        assert not [p for p in m.policies.policies if p["metadata"]["name"] == f"{RELEASE}-postgresql"]
        for name, pod in m.pods.items():
            assert not m.lenient.allowed(CNPG_OPERATOR, pod, 8000), name


def test_the_real_dag_step_pods_are_the_ones_the_policies_select(monkeypatch):
    """Build the step pods with the DAG itself, fed the MLP_DAG_* the chart renders: their labels
    are the ones the evaluator models (STEP_POD_LABELS), which the step policy selects."""
    try:
        from tests.dags.conftest import require_airflow
        from tests.dags.test_pods import build_pods
    except ImportError as exc:
        unavailable(f"the DAG test helpers ({exc})", "pip install -e '.[airflow,dev]'")
    require_airflow()
    import os

    m = model("steps-namespace")
    for name in [n for n in os.environ if n.startswith("MLP_")]:
        monkeypatch.delenv(name)
    for name, value in (m.cluster.dag_settings() or {}).items():
        monkeypatch.setenv(name, value)
    pods = build_pods()
    assert pods
    (step_policy,) = [p for p in m.policies.policies if p["metadata"]["name"] == f"{RELEASE}-pipeline-steps"]
    modelled = {k: STEP_POD_LABELS[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/component")}
    for step, pod in pods.items():
        labels = pod["metadata"]["labels"]
        assert modelled.items() <= labels.items(), step
        assert pod["metadata"]["namespace"] == m.steps_namespace
        assert selector_matches(step_policy["spec"]["podSelector"], labels), step


def test_with_the_local_task_runner_worker_pods_get_the_step_flows():
    """airflow.dag.taskRunner=local runs the steps inside the worker pods (one-machine mode)."""
    m = Model(merged(STEPS, {"airflow": {"dag": {"taskRunner": "local"}}}), NAMESPACE)
    assert not m.has("step")
    worker = m.pod("worker")
    assert m.reaches(worker, "mlflow", 5000)
    assert m.reaches(worker, "postgresql", 5432)
    assert m.reaches(worker, "minio", 9000)
    assert m.blocked(m.pod("airflow-dag-processor"), "mlflow", 5000)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_every_ip_block_is_one_the_api_server_accepts(profile):
    """The API server refuses an ipBlock whose `except` is not strictly inside its `cidr`."""
    import ipaddress

    for policy in model(profile).policies.policies:
        for direction, key in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(direction) or []:
                for peer in rule.get(key) or []:
                    if "ipBlock" not in peer:
                        continue
                    cidr = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    for excluded in peer["ipBlock"].get("except") or []:
                        inner = ipaddress.ip_network(excluded)
                        assert inner.subnet_of(cidr) and inner != cidr, (policy["metadata"]["name"], excluded)


def test_external_services_are_reached_through_external_egress():
    """An external PostgreSQL on a private address (here db.example.internal, 10.20.0.5:6432)
    needs its own externalEgress entry, as docs/kubernetes.md says; the public HTTPS default
    covers an external S3 endpoint."""
    database = External("10.20.0.5")
    default = Model(EXTERNAL_VALUES, NAMESPACE)
    assert not default.policies.allowed(default.pod("step"), database, 6432)
    assert default.policies.allowed(default.pod("step"), External("52.95.0.1"), 443)  # S3
    egress = [
        {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"], "ports": [443]},
        {"cidr": "10.20.0.0/16", "ports": [6432]},
    ]
    m = Model(merged(EXTERNAL_VALUES, {"global": {"networkPolicy": {"externalEgress": egress}}}), NAMESPACE)
    for component in ("step", "pipeline-doctor", "mlflow", "airflow-scheduler", "airflow-api-server"):
        assert m.policies.allowed(m.pod(component), database, 6432), component
    assert not [name for name in m.pods if name.startswith(f"{RELEASE}-postgresql")]


def test_kube_api_egress_is_configurable():
    values = {"global": {"networkPolicy": {"apiServer": {"cidrs": ["172.18.0.2/32"], "ports": [6443]}}}}
    m = Model(values, NAMESPACE)
    scheduler = m.pod("airflow-scheduler")
    assert m.policies.allowed(scheduler, External("172.18.0.2"), 6443)
    assert not m.policies.allowed(scheduler, External("172.18.0.3"), 6443)
    assert not m.policies.allowed(scheduler, External("172.18.0.2"), 443)


def test_external_egress_and_ui_sources_are_configurable():
    ingress_nginx = Pod("controller", "ingress-nginx", {"app": "ingress-nginx"}, ip="10.244.8.2")
    values = {
        "global": {
            "networkPolicy": {
                "externalEgress": [{"cidr": "10.20.0.0/16", "ports": [5432]}],
                "uiIngressFrom": [
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
                ],
            }
        }
    }
    m = Model(values, NAMESPACE)
    assert m.policies.allowed(m.pod("step"), External("10.20.1.1"), 5432)  # a SQL data source
    assert not m.policies.allowed(m.pod("step"), INTERNET, 443)  # the default entry was replaced
    assert m.reaches(ingress_nginx, "airflow-api-server", 8080)
    assert m.reaches(ingress_nginx, "mlflow", 5000)
    assert m.blocked(ingress_nginx, "postgresql", 5432)
    default = model("defaults")
    assert default.blocked(ingress_nginx, "airflow-api-server", 8080)


def test_cilium_policy_selects_the_same_kube_api_clients():
    objects = render_chart(merged(STEPS, {"global": {"networkPolicy": {"cilium": {"enabled": True}}}}))
    cnps = [o for o in objects if o["kind"] == "CiliumNetworkPolicy"]
    nps = {
        o["metadata"]["namespace"]: o
        for o in objects
        if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == f"{RELEASE}-airflow-kube-api"
    }
    assert {c["metadata"]["namespace"] for c in cnps} == set(nps) == {"ml", "ml-steps"}
    pods = list(RenderedCluster(objects, RELEASE, NAMESPACE).pods.values())
    for cnp in cnps:
        assert cnp["apiVersion"] == "cilium.io/v2"
        (rule,) = cnp["spec"]["egress"]
        assert rule["toEntities"] == ["kube-apiserver"]
        assert {p["port"] for p in rule["toPorts"][0]["ports"]} == {"443", "6443"}
        namespace = cnp["metadata"]["namespace"]
        np = nps[namespace]
        in_ns = [p for p in pods if p.namespace == namespace]
        cilium_selected = {
            p.name for p in in_ns if selector_matches(cnp["spec"]["endpointSelector"], p.labels)
        }
        np_selected = {p.name for p in in_ns if selector_matches(np["spec"]["podSelector"], p.labels)}
        assert cilium_selected == np_selected
        assert cilium_selected
    assert not [o for o in render_chart({}) if o["kind"] == "CiliumNetworkPolicy"]


def test_the_kind_e2e_runs_with_network_policies_and_says_it_has_not_run():
    """The kind workflow deploys with the NetworkPolicies on and scripts/kind-e2e checks that
    they are installed and enforced (a pod of another namespace is refused); both say they were
    not run here."""
    import yaml

    workflow_text = (REPO / ".github" / "workflows" / "kind-e2e.yml").read_text()
    workflow = yaml.safe_load(workflow_text)
    runs = "\n".join(step.get("run", "") for step in workflow["jobs"]["kind-e2e"]["steps"])
    assert "global.networkPolicy.enabled=true" in runs
    assert "HAS NOT BEEN RUN" in workflow_text
    script = (REPO / "scripts" / "kind-e2e").read_text()
    assert "NetworkPolicies are not enforced" in script
    assert "has not been run" in script


def test_the_ranks_of_a_trainjob_reach_each_other_and_what_a_step_reaches():
    """torchrun's rendezvous on node 0 (29400, PET_MASTER_PORT) and NCCL's or gloo's own ports,
    between the TrainJob's pods; the step pods' services from each; nothing else to or from them."""
    m = model("trainjob-steps-namespace")
    ranks = [pod for name, pod in m.pods.items() if name.startswith(f"{RELEASE}-train-node-")]
    assert len(ranks) == 2
    first, second = ranks
    for port in (29400, 45678):
        assert m.policies.allowed(second, first, port), port
        assert m.policies.allowed(first, second, port), port
    for rank in ranks:
        assert m.reaches(rank, "mlflow", m.service_port("mlflow", "http"))
        assert m.reaches(rank, "minio", 9000)
        assert m.reaches(rank, m.database, m.pg_port)
        assert m.blocked(rank, "airflow-api-server", m.service_port("airflow-api-server", "api"))
        # a DAG step pod, another application, the Airflow workers: not to the ranks
        for outsider in (m.pod("step"), m.neighbour, INTRUDER, m.pod("worker")):
            assert not m.policies.allowed(outsider, rank, 29400), outsider.name
        assert not m.policies.allowed(rank, m.pod("step"), 29400)
