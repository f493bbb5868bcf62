"""For each service account, what the rendered RBAC lets it do (tests/charts/rbac.py, evaluated
over the rendered Roles and bindings) is exactly the list docs/kubernetes.md documents
("Service accounts"), in the shared and in a separate steps namespace."""

from __future__ import annotations

import re

import pytest

from tests.charts import rbac
from tests.charts.chart_utils import (
    NAMESPACE,
    PROFILES,
    REDIS_VALUES,
    REPO,
    TASK_NAMESPACE_VALUES,
    WORKLOAD_KINDS,
    pod_spec,
    pod_template,
    render_chart,
)

pytestmark = pytest.mark.charts

DOC = (REPO / "docs" / "kubernetes.md").read_text()
IDENTITIES = ("scheduler", "worker", "api-server", "dag-processor", "triggerer", "migrate")


def documented() -> dict[str, set[tuple[str, str]]]:
    """identity -> {(resource, verb)} from the table between the rbac-contract markers."""
    block = DOC.split("<!-- rbac-contract:begin -->")[1].split("<!-- rbac-contract:end -->")[0]
    out = {}
    for line in block.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = re.match(r"`([a-z-]+)`", cells[0]) if cells and cells[0] else None
        if not match:
            continue
        may = set()
        if cells[1] != "nothing":
            for part in cells[1].split(";"):
                resource, verbs = part.split(":")
                may |= {(resource.strip().strip("`"), v.strip()) for v in verbs.split(",")}
        out[match.group(1)] = may
    return out


def account(identity: str, namespace: str) -> tuple[str, str]:
    if identity == "pipeline":
        return namespace, "mlp-pipeline"
    return namespace, f"mlp-airflow-{identity}"


LAYOUTS = {"shared": ({}, NAMESPACE), "separate-steps-namespace": (TASK_NAMESPACE_VALUES, "ml-steps")}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_each_service_account_may_do_exactly_what_the_docs_list(layout):
    values, steps = LAYOUTS[layout]
    objects = render_chart(values)
    contract = documented()
    assert set(contract) == {*IDENTITIES, "pipeline"}
    rendered_accounts = {
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects if o["kind"] == "ServiceAccount"
    }
    for identity, may in contract.items():
        home = steps if identity in ("worker", "pipeline") else NAMESPACE
        assert account(identity, home) in rendered_accounts, identity
        grants = rbac.grants_of(objects, *account(identity, home))
        assert {g.namespace for g in grants} <= {steps}, (identity, "granted outside the pipeline namespace")
        assert {(g.resource, g.verb) for g in grants} == may, identity
        assert all(g.api_group == "" and not g.names for g in grants), identity


def test_no_other_account_gets_anything_and_no_binding_dangles():
    for profile, values in PROFILES.items():
        objects = render_chart(values)
        assert rbac.dangling_bindings(objects) == [], profile
        assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")], profile
        airflow = {f"mlp-airflow-{i}" for i in ("scheduler", "worker", "api-server")}
        for obj in objects:
            if obj["kind"] != "ServiceAccount" or obj["metadata"]["name"] in airflow:
                continue
            grants = rbac.grants_of(objects, obj["metadata"]["namespace"], obj["metadata"]["name"])
            assert grants == set(), (profile, obj["metadata"]["name"])


def test_the_pods_run_as_the_identity_the_contract_is_about():
    objects = render_chart(REDIS_VALUES)
    names = {
        o["metadata"]["name"]: pod_spec(o)["serviceAccountName"]
        for o in objects
        if o["kind"] in WORKLOAD_KINDS and o["metadata"]["name"].startswith("mlp-airflow")
    }
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert names[f"mlp-airflow-{component}"] == f"mlp-airflow-{component}"
    assert names["mlp-airflow-celery-worker"] == "mlp-airflow-worker"  # it launches step pods too
    (migrate,) = [n for n in names if n.startswith("mlp-airflow-migrate")]
    assert names[migrate] == "mlp-airflow-migrate"
    assert pod_template(objects)["spec"]["serviceAccountName"] == "mlp-airflow-worker"
    # Celery workers run in the release namespace: the worker Role binds the account there too
    grants = rbac.grants_of(objects, NAMESPACE, "mlp-airflow-worker")
    assert rbac.can(grants, "create", "pods/exec", NAMESPACE)


def test_the_pods_without_api_access_mount_no_token():
    objects = render_chart()
    for obj in objects:
        if obj["kind"] in WORKLOAD_KINDS and obj["metadata"]["name"].startswith(
            ("mlp-airflow-dag-processor", "mlp-airflow-triggerer", "mlp-airflow-migrate")
        ):
            assert pod_spec(obj)["automountServiceAccountToken"] is False, obj["metadata"]["name"]


# The evaluator itself, on hand-written objects.


def _binding(kind, name, role_kind, role, subjects, namespace=None):
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "kind": kind,
        "metadata": meta,
        "roleRef": {"kind": role_kind, "name": role},
        "subjects": subjects,
    }


def test_evaluator_cluster_role_binding_grants_everywhere_and_groups_count():
    objects = [
        {
            "kind": "ClusterRole",
            "metadata": {"name": "read"},
            "rules": [{"apiGroups": [""], "resources": ["*/log"], "verbs": ["get"]}],
        },
        _binding(
            "ClusterRoleBinding",
            "all",
            "ClusterRole",
            "read",
            [{"kind": "Group", "name": "system:serviceaccounts:a"}],
        ),
    ]
    grants = rbac.grants_of(objects, "a", "x")
    assert rbac.can(grants, "get", "pods/log", "anywhere")
    assert not rbac.can(grants, "get", "pods", "anywhere")
    assert not rbac.grants_of(objects, "b", "x")


def test_evaluator_role_binding_limits_a_cluster_role_to_its_namespace():
    objects = [
        {
            "kind": "ClusterRole",
            "metadata": {"name": "all"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        },
        _binding(
            "RoleBinding", "b", "ClusterRole", "all", [{"kind": "ServiceAccount", "name": "x"}], namespace="n"
        ),
    ]
    grants = rbac.grants_of(objects, "n", "x")
    assert rbac.can(grants, "delete", "secrets", "n")
    assert not rbac.can(grants, "delete", "secrets", "other")


def test_evaluator_resource_names_and_dangling_bindings():
    objects = [
        {
            "kind": "Role",
            "metadata": {"name": "r", "namespace": "n"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["one"], "verbs": ["get"]}
            ],
        },
        _binding(
            "RoleBinding",
            "b",
            "Role",
            "r",
            [{"kind": "ServiceAccount", "name": "x", "namespace": "n"}],
            namespace="n",
        ),
        _binding(
            "RoleBinding",
            "ghost",
            "Role",
            "missing",
            [{"kind": "ServiceAccount", "name": "x"}],
            namespace="n",
        ),
    ]
    grants = rbac.grants_of(objects, "n", "x")
    assert not rbac.can(grants, "get", "configmaps", "n")  # only the named one
    assert rbac.summary(grants) == {("n", "configmaps[one]"): {"get"}}
    assert rbac.dangling_bindings(objects) == ["RoleBinding/ghost"]


def test_renamed_accounts_keep_their_permissions_and_typos_are_refused():
    from tests.charts.chart_utils import HelmFailedError

    objects = render_chart({"airflow": {"serviceAccount": {"names": {"worker": "team-worker"}}}})
    grants = rbac.grants_of(objects, NAMESPACE, "team-worker")
    assert rbac.can(grants, "create", "pods/exec", NAMESPACE)
    assert pod_template(objects)["spec"]["serviceAccountName"] == "team-worker"
    with pytest.raises(HelmFailedError, match="wroker"):
        render_chart({"airflow": {"serviceAccount": {"names": {"wroker": "x"}}}})
