"""A rotated Secret restarts exactly its consumers, under Argo CD (no cluster access) as under Helm.

Argo CD renders like `helm template`: `lookup` finds nothing, so a checksum of the Secret's data
in the cluster never changes there. What changes is the values: the Secret's name and
`global.secretRotation` (a per-Secret revision, or one epoch for all). These tests render before
and after a rotation and compare the pod templates of every long-running workload.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from tests.charts.chart_utils import (
    LONG_RUNNING_KINDS,
    REPO,
    containers,
    pod_metadata,
    pod_spec,
    render_chart,
)

pytestmark = pytest.mark.charts

PROFILES = {
    "defaults": {},
    "prod": yaml.safe_load((REPO / "k8s" / "envs" / "prod" / "values.yaml").read_text()),
    "redis": {"redis": {"enabled": True}, "airflow": {"executor": "CeleryExecutor,KubernetesExecutor"}},
}


def secrets_read(spec: dict[str, Any]) -> set[str]:
    """Names of the Secrets a pod reads (env, envFrom, volumes, projected volumes)."""
    names: set[str] = set()
    for container in containers(spec):
        for env in container.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


def consumers(values: dict[str, Any]) -> dict[str, tuple[set[str], dict[str, str]]]:
    """workload -> (Secrets it reads, its pod template annotations). The prod overlay is rendered
    into its own namespace, which its database host names."""
    found = {}
    namespace = "ml-prod" if (values.get("cnpg") or {}).get("enabled") else "ml"
    for obj in render_chart(values, namespace=namespace):
        if obj["kind"] in LONG_RUNNING_KINDS:
            ann = pod_metadata(obj).get("annotations") or {}
            found[f"{obj['kind']}/{obj['metadata']['name']}"] = (secrets_read(pod_spec(obj)), ann)
    return found


def with_rotation(values: dict[str, Any], **rotation: Any) -> dict[str, Any]:
    out = copy.deepcopy(values)
    out.setdefault("global", {})["secretRotation"] = rotation
    return out


def missed_restarts(values: dict[str, Any]) -> set[tuple[str, str]]:
    """(workload, Secret) pairs where rotating the Secret does not restart a reader of it; raises on
    a restart of a workload that does not read the rotated Secret."""
    before = consumers(values)
    secrets = sorted(set().union(*(read for read, _ in before.values())))
    assert secrets, "no workload reads a Secret?"
    missed = set()
    for secret in secrets:
        after = consumers(with_rotation(values, revisions={secret: "2026-12-02"}))
        assert after.keys() == before.keys()
        for workload, (read, ann) in before.items():
            restarted = after[workload][1] != ann
            assert not restarted or secret in read, (
                f"rotating {secret} restarts {workload}, which reads {read}"
            )
            if secret in read and not restarted:
                missed.add((workload, secret))
    return missed


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_rotating_one_secret_restarts_exactly_its_consumers(profile):
    assert missed_restarts(PROFILES[profile]) == set()


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_the_rotation_epoch_restarts_every_consumer_of_a_secret(profile):
    values = PROFILES[profile]
    before = consumers(values)
    after = consumers(with_rotation(values, epoch="1"))
    for workload, (read, ann) in before.items():
        assert (after[workload][1] != ann) == bool(read), workload


def test_switching_to_an_existing_secret_restarts_its_consumers():
    before = consumers({})
    after = consumers({"global": {"airflow": {"existingSecret": "team-airflow"}}})
    changed = {w for w, (_, ann) in before.items() if after[w][1] != ann}
    readers = {w for w, (read, _) in after.items() if "team-airflow" in read}
    assert readers and changed >= readers


def test_same_values_render_the_same_checksums():
    """Under Argo CD an unchanged commit must not restart anything (no random input)."""
    a = consumers(with_rotation({}, epoch="x"))
    b = consumers(with_rotation({}, epoch="x", revisions={}))
    assert {w: ann for w, (_, ann) in a.items()} == {w: ann for w, (_, ann) in b.items()}
