"""The NetworkPolicy evaluator (tests/charts/netpol.py) on hand-written policies, one rule of the
Kubernetes semantics at a time, before it judges the chart's policies."""

from __future__ import annotations

import pytest

from tests.charts.cluster_model import service_backends
from tests.charts.netpol import External, Node, Pod, Policies, selector_matches

pytestmark = pytest.mark.charts

WEB = Pod("web", "shop", {"app": "web"}, ip="10.244.1.2", node="n1", ports={"http": (8080, "TCP")})
DB = Pod("db", "shop", {"app": "db", "tier": "data"}, ip="10.244.1.3", node="n2")
OTHER_NS_WEB = Pod("web", "lab", {"app": "web"}, ip="10.244.2.2")
INTERNET = External("93.184.216.34")


def policy(namespace: str, spec: dict, name: str = "p") -> dict:
    return {"kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def deny_all(namespace: str = "shop") -> dict:
    return policy(namespace, {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, "deny")


def test_without_policies_everything_is_allowed():
    evaluator = Policies([])
    assert evaluator.allowed(WEB, DB, 5432)
    assert evaluator.allowed(INTERNET, WEB, 8080)


def test_a_selected_pod_is_isolated_only_in_the_listed_directions():
    evaluator = Policies(
        [policy("shop", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"]})]
    )
    assert not evaluator.allowed(WEB, DB, 5432)  # DB isolated for ingress, no rule
    assert evaluator.allowed(DB, WEB, 8080)  # DB's egress is not isolated, WEB is not selected
    assert evaluator.allowed(WEB, OTHER_NS_WEB, 8080)


def test_policy_types_default_to_ingress_plus_egress_when_an_egress_section_exists():
    ingress_only = Policies([policy("shop", {"podSelector": {}})])
    assert not ingress_only.allowed(DB, WEB, 8080)  # WEB's ingress is isolated
    assert ingress_only.egress_allowed(WEB, INTERNET, 443)
    with_egress = Policies([policy("shop", {"podSelector": {}, "egress": []})])
    assert not with_egress.egress_allowed(WEB, INTERNET, 443)
    assert not with_egress.ingress_allowed(INTERNET, WEB, 8080)


def test_a_connection_needs_egress_at_the_source_and_ingress_at_the_destination():
    open_egress = policy(
        "shop",
        {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"], "egress": [{}]},
        "web-out",
    )
    evaluator = Policies([deny_all(), open_egress])
    assert evaluator.egress_allowed(WEB, DB, 5432)
    assert not evaluator.ingress_allowed(WEB, DB, 5432)
    assert not evaluator.allowed(WEB, DB, 5432)


def test_rules_of_all_selecting_policies_are_a_union():
    to_db = policy(
        "shop",
        {
            "podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}
            ],
        },
        "db-in",
    )
    web_out = policy(
        "shop",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}]}],
        },
        "web-out",
    )
    evaluator = Policies([deny_all(), to_db, web_out])
    assert evaluator.allowed(WEB, DB, 5432)
    assert not evaluator.allowed(WEB, DB, 5433)  # the port list of db-in
    assert not evaluator.allowed(DB, WEB, 8080)  # nothing opens that direction


def test_a_pod_selector_alone_means_the_policys_namespace():
    evaluator = Policies(
        [
            policy(
                "shop",
                {
                    "podSelector": {"matchLabels": {"app": "db"}},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}],
                },
            )
        ]
    )
    assert evaluator.allowed(WEB, DB, 5432)
    assert not evaluator.allowed(OTHER_NS_WEB, DB, 5432)


def test_namespace_and_pod_selector_in_one_peer_is_an_and_in_two_peers_an_or():
    lab = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "lab"}}}
    web = {"podSelector": {"matchLabels": {"app": "web"}}}
    lab_db = Pod("db", "lab", {"app": "db"})
    one_peer = Policies(
        [
            policy(
                "shop",
                {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [{**lab, **web}]}]},
            )
        ]
    )
    assert one_peer.allowed(OTHER_NS_WEB, DB, 5432)
    assert not one_peer.allowed(lab_db, DB, 5432)  # in lab, but not web
    assert not one_peer.allowed(WEB, DB, 5432)  # web, but not in lab
    two_peers = Policies(
        [policy("shop", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [lab, web]}]})]
    )
    assert two_peers.allowed(lab_db, DB, 5432)
    assert two_peers.allowed(WEB, DB, 5432)


def test_namespace_labels_and_empty_selectors():
    everyone = {"namespaceSelector": {}}
    team = {"namespaceSelector": {"matchLabels": {"team": "ml"}}}
    evaluator = Policies(
        [
            policy(
                "shop",
                {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [everyone]}]},
                "db",
            ),
            policy(
                "shop", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [team]}]}, "web"
            ),
        ],
        namespace_labels={"lab": {"team": "ml"}},
    )
    assert evaluator.allowed(OTHER_NS_WEB, DB, 5432)  # {} selects every namespace
    assert not evaluator.allowed(INTERNET, DB, 5432)  # ... but only pods
    assert evaluator.allowed(OTHER_NS_WEB, WEB, 8080)
    assert not evaluator.allowed(DB, WEB, 8080)  # shop has no team label


def test_an_empty_or_absent_peer_list_allows_every_source_including_outside():
    evaluator = Policies([policy("shop", {"podSelector": {}, "ingress": [{"ports": [{"port": 8080}]}]})])
    assert evaluator.allowed(INTERNET, WEB, 8080)
    assert evaluator.allowed(OTHER_NS_WEB, WEB, 8080)
    assert not evaluator.allowed(INTERNET, WEB, 8081)


def test_ip_blocks_with_exceptions_and_pod_addresses():
    spec = {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.1.0/24"]}}],
                "ports": [{"port": 443}],
            }
        ],
    }
    strict = Policies([policy("shop", spec)])
    assert strict.allowed(WEB, External("10.1.2.3"), 443)
    assert not strict.allowed(WEB, External("10.244.1.9"), 443)  # excepted
    assert not strict.allowed(WEB, External("192.168.1.1"), 443)
    assert not strict.allowed(WEB, External("10.1.2.3"), 80)
    assert not strict.allowed(WEB, OTHER_NS_WEB, 443)  # a pod is not matched by ipBlock ...
    lenient = Policies([policy("shop", spec)], ipblock_matches_pods=True)
    assert lenient.allowed(WEB, OTHER_NS_WEB, 443)  # ... unless the plugin matches pod IPs
    assert not lenient.allowed(WEB, DB, 443)  # 10.244.1.3 is in the except


def test_ports_protocols_ranges_and_names():
    spec = {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [
            {"ports": [{"port": "http"}, {"protocol": "UDP", "port": 53}, {"port": 9000, "endPort": 9010}]}
        ],
    }
    evaluator = Policies([policy("shop", spec)])
    assert evaluator.allowed(DB, WEB, 8080)  # the container port named http
    assert not evaluator.allowed(DB, WEB, 8081)
    assert evaluator.allowed(DB, WEB, 53, "UDP")
    assert not evaluator.allowed(DB, WEB, 53, "TCP")
    assert evaluator.allowed(DB, WEB, 9010)
    assert not evaluator.allowed(DB, WEB, 9011)
    any_tcp = Policies([policy("shop", {"podSelector": {}, "ingress": [{"ports": [{"protocol": "TCP"}]}]})])
    assert any_tcp.allowed(DB, WEB, 12345)
    assert not any_tcp.allowed(DB, WEB, 12345, "UDP")


def test_the_pods_own_node_is_always_allowed_in():
    evaluator = Policies([deny_all()])
    assert evaluator.allowed(Node("n1", "172.18.0.2"), WEB, 8080)  # probes, port-forward
    assert not evaluator.allowed(Node("n2", "172.18.0.3"), WEB, 8080)
    assert not evaluator.allowed(WEB, Node("n1", "172.18.0.2"), 10250)  # egress is still isolated


def test_match_expressions():
    labels = {"app": "airflow", "component": "scheduler"}
    assert selector_matches(
        {"matchExpressions": [{"key": "component", "operator": "In", "values": ["scheduler"]}]}, labels
    )
    assert not selector_matches(
        {"matchExpressions": [{"key": "component", "operator": "NotIn", "values": ["scheduler"]}]}, labels
    )
    assert selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]}, labels
    )
    assert selector_matches({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, labels)
    assert not selector_matches({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, labels)
    assert not selector_matches(
        {"matchLabels": {"app": "airflow"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
        labels,
    )
    assert selector_matches({}, labels)


def test_service_backends_resolve_the_target_port():
    service = {
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"port": 80, "targetPort": "http"}, {"port": 81, "targetPort": 9000}],
        },
    }
    assert service_backends([service], [WEB, DB, OTHER_NS_WEB], "shop", "web", 80) == [(WEB, 8080)]
    assert service_backends([service], [WEB], "shop", "web", 81) == [(WEB, 9000)]
    assert service_backends([service], [WEB], "shop", "web", 8080) == []  # not a port of the Service
    assert service_backends([service], [WEB], "lab", "web", 80) == []
