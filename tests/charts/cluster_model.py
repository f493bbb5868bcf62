"""The rendered chart as a cluster would see it: the pods it starts (with the worker and step pods
Airflow starts), its Services, the addresses it hands to those pods, and Kubernetes DNS.

- :func:`resolve_service` applies the cluster DNS rules a pod's resolv.conf sets
  (``search <ns>.svc.<domain> svc.<domain> <domain>``, ``options ndots:5``) to a host name.
- :func:`addresses` collects every URL / host a pod is handed: its env (values, and the
  ConfigMaps and Secrets it takes with envFrom or key references), its command and arguments, and
  the ConfigMaps it mounts; the DAG's step pods get what MLP_DAG_* names (env ConfigMaps and
  Secrets, the config ConfigMap) in MLP_DAG_NAMESPACE.
- :func:`service_backends` follows a Service to the pods and container ports a connection lands
  on (what NetworkPolicies see).
- What operators create from the chart's custom resources is modelled too: a CloudNativePG
  ``Cluster`` becomes its instance pods and its ``-rw`` / ``-ro`` / ``-r`` Services
  (:func:`cnpg_objects`), labelled and ported as CloudNativePG does.
- The profiles the chart tests render (:data:`STEPS`, :func:`merged`, :func:`overlay`,
  :func:`rendered`) and :func:`in_cluster_addresses` (every in-cluster address with the Service
  it resolves to) are shared by tests/charts/test_service_dns.py and test_network_policies.py.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from tests.charts.chart_utils import REPO, render_chart
from tests.charts.netpol import Pod, selector_matches

POD_OWNERS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod")
# Labels the DAG puts on every step pod (dags/ml_pipeline_support/tasks.py, pod_step_kwargs) and the
# KubernetesPodOperator adds; tests/charts/test_network_policies.py checks them against the real DAG.
STEP_POD_LABELS = {
    "app.kubernetes.io/name": "ml-pipeline",
    "app.kubernetes.io/component": "pipeline-step",
    "ml-pipeline/step": "train",
    "kubernetes_pod_operator": "True",
    "dag_id": "ml_pipeline",
    "task_id": "train",
    "airflow_version": "3",
    "already_checked": "True",
}
# Where a URL's port is not written, the scheme's.
DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "postgresql": 5432,
    "postgres": 5432,
    "redis": 6379,
    "rediss": 6379,
}
# Schemes whose "host" is a bucket or a name, not a network address.
NOT_NETWORK_SCHEMES = {"s3", "s3a", "gs", "file", "pkg", "models", "runs", "mlflow-artifacts"}
URL = re.compile(r"\b([a-z][a-z0-9+.\-]*)://([^\s\"'/?#,;\\]+)")
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}  # noqa: S104 - names to skip, not a bind
# Strings that name Services without being addresses: MLflow's allow-list of Host headers.
NOT_ADDRESSES = (re.compile(r"^--allowed-hosts="),)


def _template(obj: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    if obj["kind"] == "Pod":
        return obj["metadata"], obj["spec"]
    if obj["kind"] == "CronJob":
        template = obj["spec"]["jobTemplate"]["spec"]["template"]
    else:
        template = obj["spec"]["template"]
    return template.get("metadata") or {}, template["spec"]


def pod_of(obj: Mapping[str, Any], node: str = "node-1", ip: str = "") -> Pod:
    """The pod a workload (or a Pod object) starts: its template's labels and named ports."""
    metadata, spec = _template(obj)
    ports: dict[str, tuple[int, str]] = {}
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        for entry in container.get("ports") or []:
            if entry.get("name"):
                ports[entry["name"]] = (int(entry["containerPort"]), entry.get("protocol", "TCP"))
    return Pod(
        name=obj["metadata"]["name"],
        namespace=obj["metadata"].get("namespace") or metadata.get("namespace", ""),
        labels={k: str(v) for k, v in (metadata.get("labels") or {}).items()},
        ip=ip,
        node=node,
        ports=ports,
    )


def trainjob_pods(runtime: Mapping[str, Any], nodes: int | None = None) -> dict[str, dict[str, Any]]:
    """The pods Kubeflow Trainer (through a JobSet) starts for a TrainJob naming ``runtime``: one
    per node of each replicated job, named as JobSet names them (``<job>-<replicated>-0-<i>``), with
    the template's labels and spec. ``nodes``: the TrainJob's numNodes (default: the runtime's)."""
    count = nodes or int(runtime["spec"].get("mlPolicy", {}).get("numNodes", 1))
    pods: dict[str, dict[str, Any]] = {}
    for job in runtime["spec"]["template"]["spec"]["replicatedJobs"]:
        template = job["template"]["spec"]["template"]
        for index in range(count):
            name = f"{runtime['metadata']['name']}-{job['name']}-0-{index}"
            pods[name] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": runtime["metadata"]["namespace"],
                    "labels": dict(template.get("metadata", {}).get("labels") or {}),
                    "annotations": dict(template.get("metadata", {}).get("annotations") or {}),
                },
                "spec": template["spec"],
            }
    return pods


# A CloudNativePG instance pod's container ports (the operator's pod spec: PostgreSQL, the instance
# manager's status endpoint the operator polls, the metrics exporter).
CNPG_INSTANCE_PORTS = {"postgresql": (5432, "TCP"), "status": (8000, "TCP"), "metrics": (9187, "TCP")}


def cnpg_objects(cluster: Mapping[str, Any]) -> tuple[list[Pod], list[dict[str, Any]]]:
    """The instance pods (the first one primary) and the Services the CloudNativePG operator
    creates for a ``Cluster``: ``<name>-rw`` (the primary), ``-ro`` (the replicas), ``-r`` (any
    instance), each on port 5432 named ``postgres``."""
    name = cluster["metadata"]["name"]
    namespace = cluster["metadata"]["namespace"]
    pods = []
    for number in range(1, int(cluster["spec"].get("instances", 1)) + 1):
        role = "primary" if number == 1 else "replica"
        labels = {
            "cnpg.io/cluster": name,
            "cnpg.io/instanceName": f"{name}-{number}",
            "cnpg.io/podRole": "instance",
            "cnpg.io/instanceRole": role,
            "role": role,
        }
        pods.append(
            Pod(
                f"{name}-{number}", namespace, labels, ip=f"10.244.2.{10 + number}", ports=CNPG_INSTANCE_PORTS
            )
        )
    selectors = {
        "rw": {"cnpg.io/cluster": name, "cnpg.io/instanceRole": "primary"},
        "ro": {"cnpg.io/cluster": name, "cnpg.io/instanceRole": "replica"},
        "r": {"cnpg.io/cluster": name, "cnpg.io/podRole": "instance"},
    }
    services = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"{name}-{suffix}", "namespace": namespace},
            "spec": {
                "selector": selector,
                "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432, "protocol": "TCP"}],
            },
        }
        for suffix, selector in selectors.items()
    ]
    return pods, services


@dataclass
class RenderedCluster:
    """One rendered profile: its objects, release and pipeline namespaces, and the pods it runs."""

    objects: list[dict[str, Any]]
    release: str
    namespace: str

    def __post_init__(self) -> None:
        self.pods: dict[str, Pod] = {}
        self.pod_objects: dict[str, dict[str, Any]] = {}
        # what the CloudNativePG operator creates (its pods are not the chart's: no pod_objects entry)
        self.operator_pods: dict[str, Pod] = {}
        for obj in [
            o
            for o in self.objects
            if o["kind"] == "Cluster" and o["apiVersion"].startswith("postgresql.cnpg.io/")
        ]:
            pods, services = cnpg_objects(obj)
            self.objects.extend(services)
            self.operator_pods.update({pod.name: pod for pod in pods})
        for index, obj in enumerate(o for o in self.objects if o["kind"] in POD_OWNERS):
            name = obj["metadata"]["name"]
            self.pods[name] = pod_of(obj, ip=f"10.244.0.{10 + index}")
            self.pod_objects[name] = obj
        for runtime in (o for o in self.objects if o["kind"] == "TrainingRuntime"):
            for name, pod in trainjob_pods(runtime).items():
                self.pods[name] = pod_of(pod, ip=f"10.244.3.{10 + len(self.pods) % 200}")
                self.pod_objects[name] = pod
        template = self.worker_pod_template()
        if template is not None:
            template["metadata"]["name"] = "worker"
            self.pods["worker"] = pod_of(template, ip="10.244.1.10")
            self.pod_objects["worker"] = template
        settings = self.dag_settings()
        if settings is not None and settings.get("MLP_DAG_TASK_RUNNER", "kubernetes") == "kubernetes":
            self.pods["step"] = Pod(
                "step", settings["MLP_DAG_NAMESPACE"], dict(STEP_POD_LABELS), ip="10.244.1.11"
            )

    @property
    def pipeline_namespace(self) -> str:
        settings = self.dag_settings()
        if settings is not None:
            return settings["MLP_DAG_NAMESPACE"]
        return self.pods[f"{self.release}-pipeline-doctor"].namespace

    def find(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        for obj in self.objects:
            same = obj["kind"] == kind and obj["metadata"]["name"] == name
            if same and namespace in (None, obj["metadata"].get("namespace")):
                return obj
        return None

    def dag_settings(self) -> dict[str, str] | None:
        config = self.find("ConfigMap", f"{self.release}-dag-settings", self.namespace)
        return None if config is None else dict(config["data"])

    def worker_pod_template(self) -> dict[str, Any] | None:
        config = self.find("ConfigMap", f"{self.release}-airflow-config", self.namespace)
        if config is None:
            return None
        return yaml.safe_load(config["data"]["pod_template_file.yaml"])

    def services(self) -> set[tuple[str, str]]:
        return {
            (o["metadata"]["namespace"], o["metadata"]["name"])
            for o in self.objects
            if o["kind"] == "Service"
        }

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.find("Service", name, namespace)

    def backends(self, namespace: str, name: str, port: int) -> list[tuple[Pod, int]]:
        pods = [*self.pods.values(), *self.operator_pods.values()]
        return service_backends(self.objects, pods, namespace, name, port)


def service_backends(
    objects: Iterable[Mapping[str, Any]], pods: Iterable[Pod], namespace: str, name: str, port: int
) -> list[tuple[Pod, int]]:
    """Where a connection to Service ``name``.``namespace`` on ``port`` lands: (pod, container port)
    for every pod the Service selects, after resolving its targetPort (a number or a port name)."""
    services = [
        o
        for o in objects
        if o["kind"] == "Service"
        and o["metadata"]["name"] == name
        and o["metadata"].get("namespace") == namespace
    ]
    if not services:
        return []
    (service,) = services
    entries = [p for p in service["spec"].get("ports", []) if int(p["port"]) == port]
    if not entries:
        return []
    (entry,) = entries
    selector = service["spec"].get("selector") or {}
    target = entry.get("targetPort", entry["port"])
    landed: list[tuple[Pod, int]] = []
    for pod in pods:
        if pod.namespace != namespace or not selector:
            continue
        if not selector_matches({"matchLabels": selector}, pod.labels):
            continue
        if isinstance(target, str) and not target.isdigit():
            if target in pod.ports:
                landed.append((pod, pod.ports[target][0]))
        else:
            landed.append((pod, int(target)))
    return landed


# --- DNS ----------------------------------------------------------------------------------------


def dns_candidates(host: str, client_namespace: str, cluster_domain: str) -> list[str]:
    """The names a pod's resolver asks for, in order (resolv.conf search path, ndots:5)."""
    if host.endswith("."):
        return [host[:-1]]
    search = [f"{client_namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
    expanded = [f"{host}.{suffix}" for suffix in search]
    return [host, *expanded] if host.count(".") >= 5 else [*expanded, host]


def resolve_service(
    host: str, client_namespace: str, services: set[tuple[str, str]], cluster_domain: str = "cluster.local"
) -> tuple[str, str] | None:
    """(namespace, name) of the Service ``host`` resolves to from a pod in ``client_namespace``,
    or None (NXDOMAIN for every candidate: the cluster DNS answers only `<svc>.<ns>.svc.<domain>`
    for Services that exist)."""
    suffix = f".svc.{cluster_domain}"
    for candidate in dns_candidates(host.lower(), client_namespace, cluster_domain):
        if not candidate.endswith(suffix):
            continue
        labels = candidate[: -len(suffix)].split(".")
        if len(labels) == 2 and (labels[1], labels[0]) in services:
            return labels[1], labels[0]
    return None


# --- addresses handed to pods --------------------------------------------------------------------


@dataclass(frozen=True)
class Address:
    """A host (and port) some pod is handed, and where it was found."""

    pod: str
    namespace: str
    where: str
    host: str
    port: int | None
    scheme: str


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def urls_in(text: str) -> Iterator[tuple[str, str, int | None]]:
    """(scheme, host, port) of every URL with a network host in ``text``."""
    for match in URL.finditer(text):
        scheme, netloc = match.group(1), match.group(2)
        base = scheme.split("+")[-1] if scheme.startswith("db+") else scheme.split("+")[0]
        if base in NOT_NETWORK_SCHEMES:
            continue
        hostport = netloc.rsplit("@", 1)[-1]
        if hostport.startswith("["):
            continue
        host, _, port = hostport.partition(":")
        if not host or "$" in host or "{" in host:
            continue
        yield base, host, int(port) if port.isdigit() else DEFAULT_PORTS.get(base)


def _data(obj: Mapping[str, Any] | None) -> dict[str, str]:
    if obj is None:
        return {}
    if obj["kind"] == "Secret":
        decoded = {
            k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()
        }
        return {**decoded, **(obj.get("stringData") or {})}
    return dict(obj.get("data") or {})


def pod_inputs(cluster: RenderedCluster, name: str) -> list[tuple[str, str]]:
    """(where, text) of everything a pod is handed that may hold an address."""
    found: list[tuple[str, str]] = []
    if name == "step":
        settings = cluster.dag_settings() or {}
        namespace = settings["MLP_DAG_NAMESPACE"]
        for config in filter(None, settings.get("MLP_DAG_ENV_CONFIGMAPS", "").split(",")):
            for key, text in _data(cluster.find("ConfigMap", config, namespace)).items():
                found.append((f"ConfigMap {config} {key}", text))
        for secret in filter(None, settings.get("MLP_DAG_ENV_SECRETS", "").split(",")):
            for key, text in _data(cluster.find("Secret", secret, namespace)).items():
                found.append((f"Secret {secret} {key}", text))
        config_map = settings.get("MLP_DAG_CONFIG_CONFIGMAP")
        if config_map:
            for key, text in _data(cluster.find("ConfigMap", config_map, namespace)).items():
                found.append((f"ConfigMap {config_map} {key}", text))
        return found
    obj = cluster.pod_objects[name]
    namespace = cluster.pods[name].namespace
    _, spec = _template(obj)
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        label = f"container {container['name']}"
        values = {e["name"]: str(e["value"]) for e in container.get("env") or [] if "value" in e}
        for env in container.get("env") or []:
            if "value" in env:
                text = str(env["value"])
                # a host and its port in two variables (libpq's PGHOST / PGPORT, FOO_HOST / FOO_PORT)
                port = (
                    values.get(env["name"].removesuffix("HOST") + "PORT")
                    if env["name"].endswith("HOST")
                    else None
                )
                if port and port.isdigit() and ":" not in text:
                    text = f"{text}:{port}"
                found.append((f"{label} env {env['name']}", text))
            ref = (env.get("valueFrom") or {}).get("configMapKeyRef") or (env.get("valueFrom") or {}).get(
                "secretKeyRef"
            )
            if ref:
                kind = "ConfigMap" if "configMapKeyRef" in env["valueFrom"] else "Secret"
                text = _data(cluster.find(kind, ref["name"], namespace)).get(ref["key"])
                if text is not None:
                    found.append((f"{label} env {env['name']} ({kind} {ref['name']})", text))
        for source in container.get("envFrom") or []:
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key in source:
                    ref_name = source[key]["name"]
                    for data_key, text in _data(cluster.find(kind, ref_name, namespace)).items():
                        found.append((f"{label} envFrom {kind} {ref_name} {data_key}", text))
        for part in ("command", "args"):
            for text in container.get(part) or []:
                found.append((f"{label} {part}", str(text)))
    for volume in spec.get("volumes") or []:
        if "configMap" in volume:
            ref_name = volume["configMap"]["name"]
            for key, text in _data(cluster.find("ConfigMap", ref_name, namespace)).items():
                found.append((f"volume ConfigMap {ref_name} {key}", text))
        if "secret" in volume:
            ref_name = volume["secret"]["secretName"]
            for key, text in _data(cluster.find("Secret", ref_name, namespace)).items():
                found.append((f"volume Secret {ref_name} {key}", text))
    return found


def addresses(cluster: RenderedCluster, pods: Iterable[str] | None = None) -> list[Address]:
    """Every URL host handed to the pods (all of them by default), with where it was found; plus
    bare occurrences of a rendered Service's name (a host without a scheme)."""
    service_names = {name for _, name in cluster.services()}
    bare = (
        re.compile(
            r"(?<![\w.\-/@])(" + "|".join(map(re.escape, sorted(service_names, key=len, reverse=True))) + r")"
            r"((?:\.[a-z0-9\-]+)*)(?::(\d+))?(?![\w\-])"
        )
        if service_names
        else None
    )
    found: list[Address] = []
    for name in pods if pods is not None else list(cluster.pods):
        namespace = cluster.pods[name].namespace
        for where, text in pod_inputs(cluster, name):
            if any(pattern.match(text) for pattern in NOT_ADDRESSES):
                continue
            seen: set[tuple[str, int | None]] = set()
            for scheme, host, port in urls_in(text):
                seen.add((host, port))
                found.append(Address(name, namespace, where, host, port, scheme))
            if bare is None:
                continue
            for match in bare.finditer(text):
                host = match.group(1) + match.group(2)
                port = int(match.group(3)) if match.group(3) else None
                if (host, port) in seen or any(h == host for h, _ in seen):
                    continue
                found.append(Address(name, namespace, where, host, port, ""))
    return found


def is_in_cluster_name(host: str, service_names: set[str]) -> bool:
    """Whether a host names (or tries to name) a Service of the cluster rather than an outside host."""
    if host in LOCAL_HOSTS:
        return False
    first = host.split(".", 1)[0]
    return "." not in host or first in service_names or ".svc" in host or host.endswith(".cluster.local")


# --- the profiles the chart tests render ---------------------------------------------------------

# Step and worker pods in a namespace of their own.
STEPS: dict[str, Any] = {"global": {"pipeline": {"namespace": "ml-steps"}}}
# Every port a value can move, moved.
OTHER_PORTS: dict[str, Any] = {
    "global": {"postgresql": {"port": 6543}},
    "mlflow": {"service": {"port": 80}},
    "airflow": {"apiServer": {"service": {"port": 8081}}},
}


def merged(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Values layered as `helm -f a -f b` does: maps merge, everything else is replaced."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), dict):
                out[key] = merged(out[key], value)
            else:
                out[key] = value
    return out


def overlay(env: str) -> dict[str, Any]:
    """An environment's values file (k8s/envs/<env>/values.yaml)."""
    return yaml.safe_load((REPO / "k8s" / "envs" / env / "values.yaml").read_text())


def rendered(values: Mapping[str, Any], namespace: str, release: str = "mlp") -> RenderedCluster:
    """The chart rendered with ``values`` into ``namespace`` (chart_utils caches each helm run)."""
    return RenderedCluster(render_chart(dict(values), name=release, namespace=namespace), release, namespace)


def in_cluster_addresses(
    cluster: RenderedCluster, domain: str = "cluster.local"
) -> Iterator[tuple[Address, tuple[str, str] | None]]:
    """Every address handed to a pod that names (or tries to name) a Service of the cluster, with
    the (namespace, Service) it resolves to from that pod, or None."""
    services = cluster.services()
    names = {name for _, name in services}
    for address in addresses(cluster):
        if is_in_cluster_name(address.host, names):
            yield address, resolve_service(address.host, address.namespace, services, domain)
