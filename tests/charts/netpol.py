"""A small evaluator of Kubernetes NetworkPolicies (networking.k8s.io/v1), for rendered charts.

It answers one question: may ``src`` open a connection to ``dst`` on ``port``? Semantics, as the
Kubernetes documentation states them (concepts/services-networking/network-policies):

- A pod is isolated for a direction (Ingress, Egress) when at least one policy in its namespace
  selects it (``spec.podSelector``) and lists that direction in ``policyTypes`` (absent:
  ``Ingress``, plus ``Egress`` when the policy has an ``egress`` section). A pod that no policy
  isolates for a direction allows everything in it.
- An isolated pod allows a connection when any rule of any policy selecting it matches: the
  union of all of them, never an intersection, and order does not matter.
- A connection needs both ends: egress allowed at the source *and* ingress at the destination.
- A rule matches when its peers match (``from``/``to`` absent or empty: every peer) and its
  ports match (``ports`` absent or empty: every port). A peer is ``podSelector`` (pods of the
  policy's namespace), ``namespaceSelector`` (every pod of the selected namespaces), both (the
  selected pods in the selected namespaces), or ``ipBlock`` (a CIDR minus ``except``). Empty
  selectors (``{}``) select everything. A port is a number (with ``endPort``: a range), a name
  (the destination pod's container port of that name) or absent (every port of the protocol,
  TCP by default).
- Traffic from the node a pod runs on is always allowed into it (kubelet probes, and
  ``kubectl port-forward``, which the kubelet/container runtime opens from the node into the pod's
  network namespace).
- ``ipBlock`` is meant for addresses outside the cluster; whether it also matches pod addresses
  is up to the network plugin. ``ipblock_matches_pods=True`` evaluates the plugins that do, so a
  test can require a flow to be denied under both readings.

Ports are the ones the destination pod listens on: a connection to a Service is translated to a
backend pod's container port before any policy sees it (:func:`service_backends`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DIRECTIONS = ("Ingress", "Egress")


@dataclass(frozen=True)
class Pod:
    """A pod: where it runs, its labels, its address and its named container ports."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    ip: str = ""
    node: str = "node-1"
    ports: Mapping[str, tuple[int, str]] = field(default_factory=dict)  # name -> (number, protocol)


@dataclass(frozen=True)
class Node:
    """A node (the kubelet, host-network processes, `kubectl port-forward`'s entry point)."""

    name: str
    ip: str


@dataclass(frozen=True)
class External:
    """An address outside the cluster's pod network (the internet, a VM, the API server's endpoint)."""

    ip: str


Endpoint = Pod | Node | External


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector against labels: matchLabels and matchExpressions, all of them."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != str(value):
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = [str(v) for v in expression.get("values") or []]
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown label selector operator {operator!r}")
    return True


def policy_types(policy: Mapping[str, Any]) -> list[str]:
    spec = policy.get("spec") or {}
    types = spec.get("policyTypes")
    if types:
        return list(types)
    return ["Ingress", *(["Egress"] if "egress" in spec else [])]


class Policies:
    """The NetworkPolicies of a cluster, and the namespaces' labels."""

    def __init__(
        self,
        policies: Iterable[Mapping[str, Any]],
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
        *,
        ipblock_matches_pods: bool = False,
    ) -> None:
        self.policies = [p for p in policies if p.get("kind", "NetworkPolicy") == "NetworkPolicy"]
        for policy in self.policies:
            if not policy["metadata"].get("namespace"):
                raise ValueError(f"NetworkPolicy {policy['metadata']['name']} has no namespace")
        self.namespace_labels = {k: dict(v) for k, v in (namespace_labels or {}).items()}
        self.ipblock_matches_pods = ipblock_matches_pods

    def labels_of_namespace(self, namespace: str) -> dict[str, str]:
        """A namespace's labels, with the kubernetes.io/metadata.name label every namespace carries."""
        return {**self.namespace_labels.get(namespace, {}), "kubernetes.io/metadata.name": namespace}

    def selecting(self, pod: Pod, direction: str) -> list[Mapping[str, Any]]:
        """The policies that isolate ``pod`` for ``direction``."""
        return [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == pod.namespace
            and direction in policy_types(p)
            and selector_matches(p["spec"].get("podSelector"), pod.labels)
        ]

    def allowed(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """May ``src`` connect to ``dst`` on ``port`` (the destination's own port, after any Service)?"""
        return self.egress_allowed(src, dst, port, protocol) and self.ingress_allowed(
            src, dst, port, protocol
        )

    def egress_allowed(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        return self.direction_allowed("Egress", src, dst, port, protocol)

    def ingress_allowed(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        return self.direction_allowed("Ingress", src, dst, port, protocol)

    def direction_allowed(
        self, direction: str, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP"
    ) -> bool:
        """One end of a connection: the source's egress (``Egress``) or the destination's ingress
        (``Ingress``). The end's pod is isolated by the policies selecting it for that direction;
        their rules' peers (``to`` / ``from``) are matched against the other end."""
        pod, peer = (src, dst) if direction == "Egress" else (dst, src)
        if not isinstance(pod, Pod):
            return True
        if direction == "Ingress" and isinstance(peer, Node) and peer.name == pod.node:
            return True
        isolating = self.selecting(pod, direction)
        if not isolating:
            return True
        rules_key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        return any(
            self._rule_matches(rule, peers_key, peer, policy["metadata"]["namespace"], dst, port, protocol)
            for policy in isolating
            for rule in policy["spec"].get(rules_key) or []
        )

    def _rule_matches(
        self,
        rule: Mapping[str, Any],
        peers_key: str,
        peer: Endpoint,
        policy_namespace: str,
        destination: Endpoint,
        port: int,
        protocol: str,
    ) -> bool:
        ports = rule.get("ports") or []
        if ports and not any(_port_matches(p, destination, port, protocol) for p in ports):
            return False
        peers = rule.get(peers_key) or []
        if not peers:
            return True
        return any(self._peer_matches(p, peer, policy_namespace) for p in peers)

    def _peer_matches(self, peer: Mapping[str, Any], endpoint: Endpoint, policy_namespace: str) -> bool:
        if "ipBlock" in peer:
            if isinstance(endpoint, Pod) and not self.ipblock_matches_pods:
                return False
            return bool(endpoint.ip) and ip_in_block(endpoint.ip, peer["ipBlock"])
        namespaces = peer.get("namespaceSelector")
        pods = peer.get("podSelector")
        if namespaces is None and pods is None:
            raise ValueError(f"a NetworkPolicy peer needs a selector or an ipBlock: {peer}")
        if not isinstance(endpoint, Pod):
            return False
        if namespaces is None:
            namespace_ok = endpoint.namespace == policy_namespace
        else:
            namespace_ok = selector_matches(namespaces, self.labels_of_namespace(endpoint.namespace))
        return namespace_ok and selector_matches(pods, endpoint.labels)


def ip_in_block(ip: str, block: Mapping[str, Any]) -> bool:
    address = ipaddress.ip_address(ip)
    network = ipaddress.ip_network(block["cidr"], strict=False)
    if address.version != network.version or address not in network:
        return False
    for excluded in block.get("except") or []:
        excluded_network = ipaddress.ip_network(excluded, strict=False)
        if address.version == excluded_network.version and address in excluded_network:
            return False
    return True


def _port_matches(entry: Mapping[str, Any], destination: Endpoint, port: int, protocol: str) -> bool:
    if entry.get("protocol", "TCP") != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str) and not wanted.isdigit():
        if not isinstance(destination, Pod) or wanted not in destination.ports:
            return False
        number, named_protocol = destination.ports[wanted]
        return number == port and named_protocol == protocol
    low = int(wanted)
    return low <= port <= int(entry.get("endPort", low))
