"""What rendered RBAC lets a service account do, evaluated like the API server's authorizer.

Over the rendered Roles, ClusterRoles, RoleBindings and ClusterRoleBindings: a RoleBinding grants
its Role's (or a ClusterRole's) rules in the binding's namespace; a ClusterRoleBinding grants a
ClusterRole's rules in every namespace (``*``). Subjects may be ServiceAccounts, or the groups
``system:serviceaccounts``, ``system:serviceaccounts:<namespace>`` and ``system:authenticated``.
Wildcards (``*`` verbs, resources, API groups) are kept and matched by :func:`can`; a rule with
``resourceNames`` grants only on those names (kept in the grant). A binding to a role the chart
does not render grants nothing here (it would grant whatever that role holds in the cluster, so
:func:`dangling_bindings` lists them for a test to refuse).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

ALL = "*"


@dataclass(frozen=True, order=True)
class Grant:
    namespace: str  # "*" for every namespace
    api_group: str
    resource: str  # "pods", "pods/log", ... or "*"
    verb: str
    names: tuple[str, ...] = ()  # resourceNames; empty: any name

    def matches(self, namespace: str, resource: str, verb: str, api_group: str = "") -> bool:
        return (
            self.namespace in (ALL, namespace)
            and self.api_group in (ALL, api_group)
            and _resource_matches(self.resource, resource)
            and self.verb in (ALL, verb)
        )


def _resource_matches(granted: str, wanted: str) -> bool:
    """Kubernetes' ResourceMatches: ``*``, the exact ``resource[/subresource]``, or ``*/<sub>``."""
    if granted in (ALL, wanted):
        return True
    _, _, subresource = wanted.partition("/")
    return bool(subresource) and granted == f"*/{subresource}"


def _rules(role: dict[str, Any]) -> list[dict[str, Any]]:
    if role.get("aggregationRule"):
        raise ValueError(f"aggregated ClusterRole {role['metadata']['name']}: not evaluated")
    return role.get("rules") or []


def _subjects(binding: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind, identity): ("sa", "ns/name") or ("group", name)."""
    out = []
    for subject in binding.get("subjects") or []:
        if subject["kind"] == "ServiceAccount":
            namespace = subject.get("namespace") or binding["metadata"].get("namespace", "")
            out.append(("sa", f"{namespace}/{subject['name']}"))
        elif subject["kind"] == "Group":
            out.append(("group", subject["name"]))
        else:
            out.append(("user", subject["name"]))
    return out


def _role_index(objects: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    index = {}
    for obj in objects:
        if obj["kind"] == "Role":
            index[("Role", obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        elif obj["kind"] == "ClusterRole":
            index[("ClusterRole", "", obj["metadata"]["name"])] = obj
    return index


def _bindings(objects: Iterable[dict[str, Any]]):
    """(binding, role or None, namespace of the grant)."""
    objects = list(objects)
    roles = _role_index(objects)
    for obj in objects:
        if obj["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        ref = obj["roleRef"]
        if obj["kind"] == "RoleBinding":
            namespace = obj["metadata"]["namespace"]
            key = (ref["kind"], namespace if ref["kind"] == "Role" else "", ref["name"])
        else:
            namespace = ALL
            key = ("ClusterRole", "", ref["name"]) if ref["kind"] == "ClusterRole" else None
        yield obj, roles.get(key) if key else None, namespace


def dangling_bindings(objects: Iterable[dict[str, Any]]) -> list[str]:
    return [f"{b['kind']}/{b['metadata']['name']}" for b, role, _ in _bindings(objects) if role is None]


def grants_of(objects: Iterable[dict[str, Any]], namespace: str, name: str) -> set[Grant]:
    """Everything the ServiceAccount ``namespace/name`` may do, from the rendered objects."""
    me = f"{namespace}/{name}"
    groups = {"system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"}
    out: set[Grant] = set()
    for binding, role, where in _bindings(objects):
        if role is None:
            continue
        subjects = _subjects(binding)
        if ("sa", me) not in subjects and not any(k == "group" and g in groups for k, g in subjects):
            continue
        for rule in _rules(role):
            if rule.get("nonResourceURLs"):
                for verb in rule.get("verbs", []):
                    for url in rule["nonResourceURLs"]:
                        out.add(Grant(ALL, "nonResourceURL", url, verb))
                continue
            names = tuple(sorted(rule.get("resourceNames") or ()))
            for group in rule.get("apiGroups", [""]):
                for resource in rule.get("resources", []):
                    for verb in rule.get("verbs", []):
                        out.add(Grant(where, group, resource, verb, names))
    return out


def can(grants: Iterable[Grant], verb: str, resource: str, namespace: str, api_group: str = "") -> bool:
    """May the holder of ``grants`` do ``verb`` on any object of ``resource`` in ``namespace``?"""
    return any(g.matches(namespace, resource, verb, api_group) and not g.names for g in grants)


def summary(grants: Iterable[Grant]) -> dict[tuple[str, str], set[str]]:
    """(namespace, resource) -> verbs, core API group written as the bare resource."""
    out: dict[tuple[str, str], set[str]] = {}
    for g in grants:
        resource = g.resource if g.api_group == "" else f"{g.api_group}/{g.resource}"
        if g.names:
            resource += "[" + ",".join(g.names) + "]"
        out.setdefault((g.namespace, resource), set()).add(g.verb)
    return out
