"""Write charts/ml-pipeline/values.schema.json from the documented values files and the settings.

The values files are the source of truth of the chart's own keys: every key carries the comment
lines right above it, and that text becomes the key's ``description``; its value becomes the
``default``. The subcharts' values.yaml are merged under their names (the umbrella's own keys win).
Types are inferred from the defaults, plus a short table of what inference cannot know (enums,
bounds, free-form maps, shared definitions). Every ``$ref`` is local (``#/definitions/...``): helm
validates offline.

The values that mirror a setting are derived from the setting's one declaration instead: the DAG's
``DagSettings`` (``dags/ml_pipeline_support/settings.py``: ``Setting.chart``, the parser's
``json_schema``) and the pipeline's ``Settings`` (``pipeline/settings.py``: a field's
``json_schema_extra={"chart": ...}``, its type, bounds and description). Such a value's schema
(type, enum, bounds, pattern) is the setting's, its description the comment or else the setting's
doc, naming the variable it sets; and the generator refuses to write (``drift``) when the values and
the settings disagree: a setting's chart value that does not exist, a default that differs from the
declared one, or a key under ``SETTINGS_SUBTREES`` that no setting declares and ``CHART_ONLY`` does
not name. It also writes the step pods' ConfigMap lines of the pipeline settings the chart passes
verbatim (``templates/pipeline/pipeline-env-configmap.yaml``, between its markers), and the
inference container's ``PIPELINE_SERVE__*`` entries of the ``serve.*`` settings named in
``SERVE_VALUES`` (``templates/inference/inference-deployment.yaml``, between its markers).

    python charts/ml-pipeline/hack/generate_schema.py          # rewrite the schema and those lines
    python charts/ml-pipeline/hack/generate_schema.py --check  # exit 1 if either is out of date

tests/charts/test_schema.py checks the result independently (descriptions, defaults, strictness)
and tests/charts/test_dag_settings.py the settings' side (a throwaway setting, drifted defaults).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1]
REPO = CHART.parents[1]
SUBCHARTS = ("postgresql", "minio", "mlflow", "airflow", "redis")
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.\-/]+):(?:\s|$)")

STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
STRING_LIST = {"type": "array", "items": {"type": "string"}}
CIDR = {"type": "string", "pattern": r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"}
PORT_LIST = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 1, "maximum": 65535}}
# NetworkPolicy peers a user adds to an ingress rule (the UIs', the inference Service's)
PEERS = {
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
}
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
    "global.networkPolicy.uiIngressFrom": PEERS,
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
    "inference.model.name": {"type": "string", "pattern": r"^$|^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
    "inference.model.alias": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
    "inference.port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "inference.replicas": {"type": "integer", "minimum": 1},
    "inference.autoscaling.minReplicas": {"type": "integer", "minimum": 1},
    "inference.autoscaling.maxReplicas": {"type": "integer", "minimum": 1},
    "inference.autoscaling.targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
    "inference.startupTimeoutSeconds": {"type": "integer", "minimum": 30},
    "trainJob.numNodes": {"type": "integer", "minimum": 1},
    "trainJob.gpusPerNode": {"type": "integer", "minimum": 0},
    "trainJob.resources.requests": STRING_MAP,
    "trainJob.resources.limits": STRING_MAP,
    "trainJob.shmSize": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"},
    "inference.env": {
        "type": "object",
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    },
    "inference.serviceAccount.name": K8S_NAME,
    "inference.serviceAccount.annotations": STRING_MAP,
    "inference.networkPolicy.clientPodLabels": STRING_MAP,
    "inference.networkPolicy.ingressFrom": PEERS,
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

# The values that exist to set the pipeline's and the DAG's settings: every key below these is a
# setting's chart value (or lies below one), or is named in CHART_ONLY with the reason it is none.
SETTINGS_SUBTREES = ("pipeline", "airflow.dag")
CHART_ONLY = {
    "pipeline.serviceAccount": "the chart creates the step pods' service account (MLP_DAG_SERVICE_ACCOUNT)",
    "pipeline.env": "free-form extra PIPELINE_* variables of the step pods' ConfigMap",
    "pipeline.config": "the text of the mounted config file (PIPELINE_CONFIG names the file)",
    "pipeline.model": "the model-release ConfigMap for downstream consumers, read by no setting",
    "airflow.dag.xcomSidecarImage": "the image of the kubernetes_default connection's XCom sidecar",
    "airflow.dag.mlflowUiUrl": "MLP_MLFLOW_UI_URL, read by the alerts (no DagSettings field)",
    "airflow.dag.alerts": "MLP_ALERT_WEBHOOK_URL, from this Secret at run time (no DagSettings field)",
}


@dataclass(frozen=True)
class ChartSetting:
    """A setting as the chart sees it: the values key it is set from and the variable it sets."""

    path: str  # the values key (dotted, the umbrella's view: `airflow.dag.retries`)
    env: str  # the variable the chart renders from it
    doc: str  # the setting's own description
    verbatim: bool  # the chart renders the variable from exactly this value (no default of its own)
    default: Any  # the setting's default in the values' form ("" for unset, lists for tuples)
    schema: dict[str, Any] | None  # the value's JSON schema from the declaration; None: the chart shapes it
    secret: bool = False  # the pipeline Secret holds the variable (the path names the Secret it comes from)

    @property
    def derived(self) -> bool:
        """Whether the values hold the setting's own value, so its schema and default are the setting's."""
        return self.verbatim and self.schema is not None


def _importable() -> None:
    for folder in (REPO / "scripts", REPO):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))


def _config_docs() -> ModuleType:
    """scripts/generate_config_docs.py: the walk over the settings models and their variables."""
    _importable()
    return importlib.import_module("generate_config_docs")


def _values_form(value: Any) -> Any:
    """A declared default as a values file holds it: ``None`` is ``""``, tuples are lists."""
    return "" if value is None else json.loads(json.dumps(value))


def dag_settings(dag_settings_cls: Any = None) -> Iterator[ChartSetting]:
    """The chart values of ``DagSettings`` (each ``Setting`` with a ``chart`` path)."""
    cls = dag_settings_cls or _config_docs()._dag_settings_module().DagSettings
    for spec in cls.declared().values():
        if spec.chart:
            schema = getattr(spec.parse, "json_schema", None)
            default = _values_form(spec.default)
            yield ChartSetting(spec.chart, spec.env, spec.doc, spec.chart_default, default, schema)


_SCHEMA_KEYS = (
    "type",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "pattern",
    "minLength",
    "maxLength",
    "items",
)


def _field_schema(root: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The JSON schema pydantic writes for the field at ``path`` (nested models through $defs)."""
    node = root
    prop: dict[str, Any] = {}
    for part in path:
        while "$ref" in node or "allOf" in node:
            ref = node["$ref"] if "$ref" in node else node["allOf"][0]["$ref"]
            node = root["$defs"][ref.rsplit("/", 1)[-1]]
        prop = node["properties"][part]
        node = prop
    return prop


def value_schema(field: dict[str, Any], where: str) -> dict[str, Any]:
    """A pydantic field's JSON schema as a chart value's: its type, enum, bounds and pattern; an
    optional field's empty string (the chart's "unset") allowed."""
    branches = field.get("anyOf", [])
    kept = [b for b in branches if b.get("type") != "null"]
    if len(kept) > 1:
        raise SystemExit(f"{where}: a union of {len(kept)} types has no chart value form")
    base = {**(kept[0] if kept else {}), **field}
    schema = {key: base[key] for key in _SCHEMA_KEYS if key in base}
    if "type" not in schema and "enum" not in schema:
        raise SystemExit(f"{where}: no JSON type to derive its chart value's schema from")
    if len(kept) < len(branches):  # optional: "" leaves it unset
        if "pattern" in schema:
            schema["pattern"] = "^$|" + schema["pattern"]
        if "enum" in schema:
            schema["enum"] = ["", *schema["enum"]]
    return schema


def pipeline_settings(model: Any = None) -> Iterator[ChartSetting]:
    """The chart values of the pipeline's settings: fields whose ``json_schema_extra`` names a
    ``chart`` path (``chart_default: False``: the chart computes a value of its own when it is
    empty; ``chart_secret: True``: the pipeline Secret holds the variable and ``chart`` names the
    values key of the Secret it comes from)."""
    docs = _config_docs()
    if model is None:
        from pipeline.settings import Settings as model  # noqa: N813
    root = model.model_json_schema()
    for where, info in docs.leaves(model):
        meta = docs.chart_metadata(info)
        if "chart" not in meta:
            continue
        secret = bool(meta.get("chart_secret"))
        verbatim = not secret and bool(meta.get("chart_default", True))
        dotted = ".".join(where)
        schema = value_schema(_field_schema(root, where), dotted) if verbatim else None
        default = None if info.default_factory is not None else info.default
        env = docs.env_names(where, info)[0]
        doc = docs.one_line(info.description)
        yield ChartSetting(meta["chart"], env, doc, verbatim, _values_form(default), schema, secret)


# The inference server's values that set a `serve.*` setting of the pipeline (values key -> field of
# ServeSettings). Its host, port and alias are the Deployment's command line instead (`--host`,
# `inference.port`, `inference.model.alias`).
SERVE_VALUES = {
    "inference.serve.pollIntervalSeconds": "poll_interval_s",
    "inference.serve.maxRequestBytes": "max_request_bytes",
    "inference.serve.logPredictions": "log_predictions",
    "inference.serve.logQueueMax": "log_queue_max",
    "inference.serve.logBatchRows": "log_batch_rows",
    "inference.serve.logFlushSeconds": "log_flush_s",
    "inference.serve.shutdownFlushSeconds": "shutdown_flush_s",
}


def serve_settings(model: Any = None) -> Iterator[ChartSetting]:
    """The inference server's chart values (:data:`SERVE_VALUES`): each passed verbatim as the
    setting's variable (``PIPELINE_SERVE__*``) on the inference container, its schema, default and
    doc the setting's."""
    docs = _config_docs()
    if model is None:
        from pipeline.settings import Settings as model  # noqa: N813
    root = model.model_json_schema()
    fields = {where[1]: (where, info) for where, info in docs.leaves(model) if where[0] == "serve"}
    for path, name in SERVE_VALUES.items():
        if name not in fields:
            raise SystemExit(f"{path}: the pipeline has no setting serve.{name} (SERVE_VALUES)")
        where, info = fields[name]
        schema = value_schema(_field_schema(root, where), ".".join(where))
        env = docs.env_names(where, info)[0]
        doc = docs.one_line(info.description)
        yield ChartSetting(path, env, doc, True, _values_form(info.default), schema)


def declared_settings(model: Any = None, dag_settings_cls: Any = None) -> list[ChartSetting]:
    return [*pipeline_settings(model), *dag_settings(dag_settings_cls), *serve_settings(model)]


def _lookup(values: dict[str, Any], path: str) -> Any:
    node: Any = values
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(path)
        node = node[key]
    return node


def _keys(values: dict[str, Any], prefix: str) -> Iterator[str]:
    for key, value in values.items():
        where = f"{prefix}.{key}"
        yield where
        if isinstance(value, dict):
            yield from _keys(value, where)


def _under(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root + ".") for root in roots)


def drift(values: dict[str, Any], settings: list[ChartSetting]) -> list[str]:
    """Where the values and the settings disagree (empty: they agree)."""
    problems = []
    for setting in settings:
        try:
            value = _lookup(values, setting.path)
        except KeyError:
            problems.append(
                f"{setting.env}: the chart has no value {setting.path} (its declared chart value)"
            )
            continue
        if setting.derived and value != setting.default:
            problems.append(
                f"{setting.path}: values.yaml has {json.dumps(value)}, but {setting.env} declares the "
                f"default {json.dumps(setting.default)}: change one of them"
            )
    declared = {setting.path for setting in settings}
    for subtree in SETTINGS_SUBTREES:
        for path in _keys(_lookup(values, subtree), subtree):
            above_one = any(d.startswith(path + ".") for d in declared)
            if not _under(path, declared) and not _under(path, CHART_ONLY) and not above_one:
                problems.append(
                    f"{path}: a chart value that no setting declares (give the setting a chart path, "
                    "or name the key in CHART_ONLY of generate_schema.py with the reason)"
                )
    try:
        serve_values = _lookup(values, "inference.serve")
    except KeyError:
        serve_values = {}
    for path in _keys(serve_values, "inference.serve"):
        if path not in SERVE_VALUES:
            problems.append(f"{path}: a serve value that SERVE_VALUES of generate_schema.py does not map")
    for path in CHART_ONLY:
        if _under(path, declared):
            problems.append(f"{path}: named in CHART_ONLY, but a setting declares it")
    return problems


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


def described(comment: str | None, settings: list[ChartSetting]) -> str | None:
    """A value's description: its comment, else its setting's doc; naming the variables it sets."""
    text = comment or (settings[0].doc if settings else None)
    if text is None:
        return None
    unnamed = [s.env for s in settings if s.env not in text]
    if unnamed:
        text = f"{text.rstrip()} Sets {', '.join(f'`{name}`' for name in unnamed)}."
    return text


def build(
    value: Any,
    path: tuple[str, ...],
    docs: dict[tuple[str, ...], str],
    by_path: dict[str, list[ChartSetting]],
) -> dict[str, Any]:
    dotted = ".".join(path)
    settings = by_path.get(dotted, [])
    description = described(docs.get(path), settings)
    if description is None:
        raise SystemExit(f"{dotted} has no comment above it in its values.yaml (nor a setting's doc)")
    schema: dict[str, Any] = {"description": description}
    derived = next((s.schema for s in settings if s.derived), None)
    if derived is not None and dotted in OVERRIDES:
        raise SystemExit(f"{dotted}: its schema is its setting's; remove it from OVERRIDES")
    special = derived or override_for(path)
    walk = isinstance(value, dict) and special is None and path[-1] not in LEAF_SUFFIXES
    if walk:
        schema["type"] = "object"
        schema["additionalProperties"] = False
        schema["properties"] = {k: build(v, (*path, k), docs, by_path) for k, v in value.items()}
    else:
        schema.update(special or infer(value))
    schema["default"] = value
    return schema


def _resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = document["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def schema_at(document: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The schema of the value at ``path`` in a values schema, through local ``$ref``s."""
    node = document
    for key in path.split("."):
        node = _resolve(document, node).get("properties", {}).get(key)
        if node is None:
            return None
    return _resolve(document, node)


def misplaced(document: dict[str, Any], settings: list[ChartSetting]) -> list[str]:
    """Derived settings whose value's schema, where it ended up (a shared definition), is not theirs."""
    problems = []
    for setting in settings:
        if not setting.derived:
            continue
        found = schema_at(document, setting.path) or {}
        differs = {k: v for k, v in (setting.schema or {}).items() if found.get(k) != v}
        if differs:
            problems.append(f"{setting.path}: its schema there is not {setting.env}'s ({differs})")
    return problems


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


def schema(settings: list[ChartSetting] | None = None) -> dict[str, Any]:
    values, docs = merged()
    settings = declared_settings() if settings is None else settings
    problems = drift(values, settings)
    if problems:
        raise SystemExit("the chart's values and the settings disagree:\n  " + "\n  ".join(problems))
    by_path: dict[str, list[ChartSetting]] = {}
    for setting in settings:
        by_path.setdefault(setting.path, []).append(setting)
    properties = {k: build(v, (k,), docs, by_path) for k, v in values.items()}
    for name in SUBCHARTS:
        properties[name]["properties"]["global"] = HELM_GLOBAL_COPY
    properties["common"] = HELM_LIBRARY
    document = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "ml-pipeline",
        "description": "Values of the ml-pipeline umbrella chart and its subcharts.",
        "type": "object",
        "additionalProperties": False,
        "definitions": DEFS,
        "properties": properties,
    }
    problems = misplaced(document, settings)
    if problems:
        raise SystemExit("the values schema and the settings disagree:\n  " + "\n  ".join(problems))
    return document


# The step pods' ConfigMap: the lines of the pipeline settings the chart passes verbatim are
# generated between these markers; the ones the chart computes (an empty value meaning its own
# default) are written by hand above them.
SCHEMA_FILE = CHART / "values.schema.json"
ENV_CONFIGMAP = CHART / "templates" / "pipeline" / "pipeline-env-configmap.yaml"
ENV_BEGIN = "  {{- /* BEGIN generated by hack/generate_schema.py: settings passed verbatim */}}"
ENV_END = "  {{- /* END generated */}}"
# The inference Deployment's `serve.*` variables, generated the same way (serve_settings).
INFERENCE_DEPLOYMENT = CHART / "templates" / "inference" / "inference-deployment.yaml"
SERVE_BEGIN = "            {{- /* BEGIN generated by hack/generate_schema.py: serve settings */}}"
SERVE_END = "            {{- /* END generated */}}"


def env_lines(settings: Iterable[ChartSetting]) -> str:
    """The ConfigMap lines of the pipeline settings whose chart value is passed verbatim; an
    optional one (unset by default) only when its value is not empty."""
    lines = []
    for setting in settings:
        if not setting.derived or not setting.env.startswith(("PIPELINE_", "MLFLOW_")):
            continue
        value = f".Values.{setting.path}"
        if setting.default == "":
            lines += [
                f"  {{{{- with {value} }}}}",
                f"  {setting.env}: {{{{ . | toString | quote }}}}",
                "  {{- end }}",
            ]
        else:
            lines.append(f"  {setting.env}: {{{{ {value} | toString | quote }}}}")
    return "\n".join(lines) + "\n"


def render_env_configmap(text: str, settings: Iterable[ChartSetting]) -> str:
    head, found, rest = text.partition(ENV_BEGIN + "\n")
    if not found or ENV_END not in rest:
        raise SystemExit(f"{ENV_CONFIGMAP}: the markers {ENV_BEGIN!r} ... {ENV_END!r} are missing")
    return head + ENV_BEGIN + "\n" + env_lines(settings) + rest[rest.index(ENV_END) :]


def serve_env_lines(settings: Iterable[ChartSetting]) -> str:
    """The inference container's env entries of the serve settings the chart passes verbatim."""
    lines = []
    for setting in settings:
        # Helm holds every number as a float: an integer would print as 1.6777216e+07
        integer = (setting.schema or {}).get("type") == "integer"
        cast = " | int64" if integer else ""
        lines += [
            f"            - name: {setting.env}",
            f"              value: {{{{ .Values.{setting.path}{cast} | toString | quote }}}}",
        ]
    return "\n".join(lines) + "\n"


def render_inference_deployment(text: str, settings: Iterable[ChartSetting]) -> str:
    head, found, rest = text.partition(SERVE_BEGIN + "\n")
    if not found or SERVE_END not in rest:
        raise SystemExit(f"{INFERENCE_DEPLOYMENT}: the markers {SERVE_BEGIN!r} ... {SERVE_END!r} are missing")
    return head + SERVE_BEGIN + "\n" + serve_env_lines(settings) + rest[rest.index(SERVE_END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a generated file is out of date")
    args = parser.parse_args(argv)
    settings = declared_settings()
    outputs = {
        SCHEMA_FILE: json.dumps(schema(settings), indent=2) + "\n",
        ENV_CONFIGMAP: render_env_configmap(ENV_CONFIGMAP.read_text(), pipeline_settings()),
        INFERENCE_DEPLOYMENT: render_inference_deployment(INFERENCE_DEPLOYMENT.read_text(), serve_settings()),
    }
    stale = [target for target, text in outputs.items() if target.read_text() != text]
    if args.check:
        for target in stale:
            print(f"{target} is out of date: run {Path(__file__).name}", file=sys.stderr)
        return 1 if stale else 0
    for target in stale:
        target.write_text(outputs[target])
    return 0


if __name__ == "__main__":
    sys.exit(main())
