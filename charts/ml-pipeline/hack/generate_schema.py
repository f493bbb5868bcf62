"""Write charts/ml-pipeline/values.schema.json from the documented values files.

The values files are the source of truth: every key carries the comment lines right above it,
and that text becomes the key's ``description``; its value becomes the ``default``. The subcharts'
values.yaml are merged under their names (the umbrella's own keys win). Types are inferred from
the defaults, plus a short table of what inference cannot know (enums, bounds, free-form maps,
shared definitions). Every ``$ref`` is local (``#/definitions/...``): helm validates offline.

    python charts/ml-pipeline/hack/generate_schema.py          # rewrite the schema
    python charts/ml-pipeline/hack/generate_schema.py --check  # exit 1 if it is out of date

tests/charts/test_schema.py checks the result independently (descriptions, defaults, strictness).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1]
SUBCHARTS = ("postgresql", "minio", "mlflow", "airflow", "redis")
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(?:\s|$)")

STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
STRING_LIST = {"type": "array", "items": {"type": "string"}}
CIDR = {"type": "string", "pattern": r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"}
PORT_LIST = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1, "maximum": 65535}}
K8S_NAME = {"type": "string", "pattern": r"^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253}

DEFS: dict[str, Any] = {
    "quantity": {"type": ["string", "integer", "number"], "description": "A Kubernetes quantity."},
    "resources": {
        "type": "object",
        "description": "Requests and limits of a container (Kubernetes ResourceRequirements).",
        "additionalProperties": False,
        "properties": {
            "requests": {
                "type": "object",
                "description": "Resources the scheduler reserves.",
                "additionalProperties": {"$ref": "#/definitions/quantity"},
            },
            "limits": {
                "type": "object",
                "description": "Resources the container may not exceed.",
                "additionalProperties": {"$ref": "#/definitions/quantity"},
            },
        },
    },
    "tolerations": {
        "type": "array",
        "description": "Kubernetes tolerations.",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "key": {"type": "string"},
                "operator": {"enum": ["Exists", "Equal"]},
                "value": {"type": "string"},
                "effect": {"enum": ["", "NoSchedule", "PreferNoSchedule", "NoExecute"]},
                "tolerationSeconds": {"type": "integer"},
            },
        },
    },
    "image": {
        "type": "object",
        "description": "An image: repository plus tag, or a digest that wins over the tag.",
        "additionalProperties": False,
        "required": ["repository", "tag", "digest", "pullPolicy"],
        "properties": {
            "repository": {"type": "string", "minLength": 1},
            "tag": {"type": "string"},
            "digest": {"type": "string", "pattern": r"^$|^sha256:[0-9a-f]{64}$"},
            "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        },
    },
    "optionalImage": {
        "type": "object",
        "description": "An optional image (empty repository: none); a digest wins over the tag.",
        "additionalProperties": False,
        "properties": {
            "repository": {"type": "string"},
            "tag": {"type": "string"},
            "digest": {"type": "string", "pattern": r"^$|^sha256:[0-9a-f]{64}$"},
        },
    },
    "pdb": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"maxUnavailable": {"type": ["integer", "string"]}},
    },
}

# What inference cannot know, by dotted path ("*" matches one key).
OVERRIDES: dict[str, dict[str, Any]] = {
    "global.imagePullSecrets": {"type": "array", "items": K8S_NAME},
    "global.labels": STRING_MAP,
    "global.s3.clientSecrets": {
        "type": "object",
        "propertyNames": {"enum": ["pipeline", "mlflow", "airflow-logs"]},
        "additionalProperties": {"type": "string"},
    },
    "global.clusterDomain": {
        "type": "string",
        "pattern": r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\.?$",
    },
    "global.networkPolicy.apiServer.cidrs": {"type": "array", "minItems": 1, "items": CIDR},
    "global.networkPolicy.apiServer.ports": PORT_LIST,
    "global.networkPolicy.externalEgress": {
        "type": "array",
        "items": {
            "type": "object",
            "additionalProperties": False,
            "required": ["cidr", "ports"],
            "properties": {
                "cidr": CIDR,
                "except": {"type": "array", "items": CIDR},
                "ports": PORT_LIST,
            },
        },
    },
    "global.networkPolicy.uiIngressFrom": {
        "type": "array",
        "items": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "namespaceSelector": {"type": "object"},
                "podSelector": {"type": "object"},
                "ipBlock": {"type": "object", "required": ["cidr"]},
            },
        },
    },
    "global.networkPolicy.dns.podLabels": STRING_MAP,
    "global.postgresql.port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "global.redis.port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "global.s3.endpoint": {"type": "string", "pattern": r"^$|^https?://[^/\s]+/?$"},
    "global.s3.bucket": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$"},
    "global.mlflow.trackingUri": {"type": "string", "pattern": r"^$|^https?://\S+$"},
    "global.postgresql.existingSecret": K8S_NAME,
    "global.s3.existingSecret": K8S_NAME,
    "global.airflow.existingSecret": K8S_NAME,
    "global.redis.existingSecret": K8S_NAME,
    "global.pipeline.existingSecret": K8S_NAME,
    "global.pipeline.existingConfigMap": K8S_NAME,
    "global.pipeline.serviceAccountName": K8S_NAME,
    "global.pipeline.namespace": {"type": "string", "pattern": r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    "pipeline.env": {
        "type": "object",
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    },
    "pipeline.serviceAccount.annotations": STRING_MAP,
    "pipeline.logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
    "pipeline.config": {"type": "string", "minLength": 1},
    "pipeline.model.version": {"type": "string", "pattern": r"^$|^[0-9]+$"},
    "pipeline.artifactRoot": {"type": "string", "pattern": r"^$|^(s3|gs|file)://\S+$"},
    "pipeline.dvcRemote": {"type": "string", "pattern": r"^$|^(s3|gs|file)://\S+$"},
    "global.secretRotation.epoch": {"type": "string"},
    "global.secretRotation.revisions": {
        "type": "object",
        "propertyNames": K8S_NAME,
        "additionalProperties": {"type": "string"},
    },
    "ingress.annotations": STRING_MAP,
    "ingress.controller.podLabels": STRING_MAP,
    "cnpg.operator.podLabels": STRING_MAP,
    "ingress.*.host": {"type": "string", "pattern": r"^$|^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
    "ingress.*.tlsSecret": K8S_NAME,
    "ingress.className": K8S_NAME,
    "cnpg.instances": {"type": "integer", "minimum": 1},
    "cnpg.imageName": {"type": "string", "minLength": 1},
    "cnpg.storage.size": {"$ref": "#/definitions/quantity"},
    "cnpg.roleSecrets.*": K8S_NAME,
    "cnpg.backup.destinationPath": {
        "type": "string",
        "pattern": r"^$|^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/\S*)?$",
    },
    "cnpg.backup.endpointURL": {"type": "string", "pattern": r"^$|^https?://[^/\s]+/?$"},
    "cnpg.backup.existingSecret": K8S_NAME,
    "cnpg.backup.retentionPolicy": {"type": "string", "pattern": r"^[1-9][0-9]*[dwm]$"},
    "cnpg.backup.schedule": {"type": "string", "pattern": r"^\S+( \S+){5}$"},
    "*.persistence.accessModes": {
        "type": "array",
        "items": {"enum": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"]},
    },
    "*.uid": {"type": "integer", "minimum": 1},
    "airflow.gid": {"type": "integer", "minimum": 0},
    "postgresql.settings": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
    "mlflow.allowedHosts": STRING_LIST,
    "mlflow.corsAllowedOrigins": STRING_LIST,
    "mlflow.extraArgs": STRING_LIST,
    "mlflow.replicas": {"type": "integer", "minimum": 1},
    "mlflow.workers": {"type": "integer", "minimum": 1},
    "mlflow.service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "airflow.apiServer.service.type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
    "airflow.executor": {"enum": ["KubernetesExecutor", "CeleryExecutor,KubernetesExecutor"]},
    "airflow.config": {
        "type": "object",
        "additionalProperties": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
    },
    "airflow.env": {"type": "array", "items": {"type": "object", "required": ["name"]}},
    "airflow.workers.annotations": STRING_MAP,
    "airflow.serviceAccount.annotations": STRING_MAP,
    "airflow.serviceAccount.names": {
        "type": "object",
        "propertyNames": {
            "enum": ["api-server", "scheduler", "dag-processor", "triggerer", "migrate", "worker"]
        },
        "additionalProperties": K8S_NAME,
    },
    "airflow.dag.gpu.image": {"$ref": "#/definitions/optionalImage"},
    "airflow.dag.xcomSidecarImage": {"$ref": "#/definitions/optionalImage"},
    "airflow.*.replicas": {"type": "integer", "minimum": 1},
    "airflow.apiServer.workers": {"type": "integer", "minimum": 1},
    "airflow.celeryWorker.concurrency": {"type": "integer", "minimum": 1},
    "airflow.parallelism": {"type": "integer", "minimum": 1},
    "airflow.gitSync.repo": {"type": "string", "pattern": r"^$|^(https://|ssh://|git@)\S+$"},
    "airflow.gitSync.credentialsSecret": K8S_NAME,
    "airflow.dag.taskRunner": {"enum": ["kubernetes", "local"]},
    "airflow.dag.schedule": {"type": "string", "minLength": 1},
    "airflow.dag.onFinishAction": {"enum": ["delete_pod", "delete_succeeded_pod", "keep_pod"]},
    "airflow.dag.stepTimeoutSeconds": {
        "oneOf": [
            {"type": "integer", "minimum": 1},
            {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
        ]
    },
    "airflow.dag.resources": {
        "type": "object",
        "required": ["default"],
        "additionalProperties": {"$ref": "#/definitions/resources"},
    },
    "airflow.dag.gpu.count": {"type": "integer", "minimum": 1},
    "airflow.dag.gpu.resource": {"type": "string", "pattern": r"^[a-z0-9.\-]+/[a-z0-9.\-_]+$"},
    "airflow.dag.gpu.nodeSelector": STRING_MAP,
    "airflow.dag.retries": {"type": "integer", "minimum": 0},
    "airflow.dag.runAsUser": {"type": "integer", "minimum": 1},
    "airflow.dag.sweepSlots": {"type": "integer", "minimum": 1},
    "airflow.dag.sweepWorkerTimeoutSeconds": {"type": "integer", "minimum": 1},
    "airflow.dag.triggerAllowedKeys": {
        "type": "array",
        "items": {"type": "string", "pattern": r"^[A-Za-z0-9_*]+(\.[A-Za-z0-9_*]+)*$"},
        "uniqueItems": True,
    },
    "airflow.dag.extraEnvConfigMaps": {"type": "array", "items": K8S_NAME},
    "airflow.dag.extraEnvSecrets": {"type": "array", "items": K8S_NAME},
    "airflow.dag.alerts.webhookSecret": K8S_NAME,
    "airflow.dag.mlflowUiUrl": {"type": "string", "pattern": r"^$|^https?://\S+$"},
    "*.nodeSelector": STRING_MAP,
    "*.*.nodeSelector": STRING_MAP,
    "*.affinity": {"type": "object"},
    "*.tolerations": {"$ref": "#/definitions/tolerations"},
    "*.*.tolerations": {"$ref": "#/definitions/tolerations"},
    "*.*.*.tolerations": {"$ref": "#/definitions/tolerations"},
    "*.resources": {"$ref": "#/definitions/resources"},
    "*.*.resources": {"$ref": "#/definitions/resources"},
    "*.podDisruptionBudget": {"$ref": "#/definitions/pdb"},
    "*.*.podDisruptionBudget": {"$ref": "#/definitions/pdb"},
    "*.image": {"$ref": "#/definitions/image"},
    "*.*.image": {"$ref": "#/definitions/image"},
    "global.images.*": {"$ref": "#/definitions/image"},
}
# Whole subtrees described by one override: their keys are not walked.
LEAF_SUFFIXES = ("resources", "image", "podDisruptionBudget", "tolerations")


def comments(path: Path) -> dict[tuple[str, ...], str]:
    """Dotted key path -> the comment lines right above the key (two-space indentation)."""
    found: dict[tuple[str, ...], str] = {}
    stack: list[str] = []
    pending: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if not match or stripped.startswith("-"):
            pending = []
            continue
        depth = len(match["indent"]) // 2
        stack = [*stack[:depth], match["key"]]
        if pending:
            found[tuple(stack)] = " ".join(p for p in pending if p)
        pending = []
    return found


def override_for(path: tuple[str, ...]) -> dict[str, Any] | None:
    for pattern, schema in OVERRIDES.items():
        parts = pattern.split(".")
        if len(parts) == len(path) and all(p in ("*", k) for p, k in zip(parts, path, strict=True)):
            return schema
    return None


def infer(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array"}
    return {"type": "object"}


def build(value: Any, path: tuple[str, ...], docs: dict[tuple[str, ...], str]) -> dict[str, Any]:
    description = docs.get(path)
    if description is None:
        raise SystemExit(f"{'.'.join(path)} has no comment above it in its values.yaml")
    schema: dict[str, Any] = {"description": description}
    special = override_for(path)
    walk = isinstance(value, dict) and special is None and path[-1] not in LEAF_SUFFIXES
    if walk:
        schema["type"] = "object"
        schema["additionalProperties"] = False
        schema["properties"] = {k: build(v, (*path, k), docs) for k, v in value.items()}
    else:
        schema.update(special or infer(value))
    schema["default"] = value
    return schema


def merged() -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    docs = comments(CHART / "values.yaml")
    for name in SUBCHARTS:
        sub_file = CHART / "charts" / name / "values.yaml"
        sub_values = yaml.safe_load(sub_file.read_text())
        section = values.get(name) or {}
        values[name] = {**sub_values, **section}
        for key, text in comments(sub_file).items():
            docs.setdefault((name, *key), text)
    return values, docs


# Keys Helm itself adds while rendering: a copy of `global` inside each subchart's section, and an
# (empty) section for the library chart. They are allowed, not documented as values.
HELM_GLOBAL_COPY = {
    "type": "object",
    "description": "Set by Helm while rendering: a copy of the top-level `global` (do not set).",
}
HELM_LIBRARY = {"type": "object", "description": "Set by Helm: the `common` library chart's (empty) values."}


def schema() -> dict[str, Any]:
    values, docs = merged()
    properties = {k: build(v, (k,), docs) for k, v in values.items()}
    for name in SUBCHARTS:
        properties[name]["properties"]["global"] = HELM_GLOBAL_COPY
    properties["common"] = HELM_LIBRARY
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "ml-pipeline",
        "description": "Values of the ml-pipeline umbrella chart and its subcharts.",
        "type": "object",
        "additionalProperties": False,
        "definitions": DEFS,
        "properties": properties,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the schema file is out of date")
    args = parser.parse_args()
    text = json.dumps(schema(), indent=2) + "\n"
    target = CHART / "values.schema.json"
    if args.check:
        if target.read_text() != text:
            print(f"{target} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
