"""checkov on the rendered manifests of every profile, each profile scanned ALONE: no failed check
outside the skip list (documented in docs/kubernetes.md, "checkov skip list").

Each profile (tests/charts/chart_utils.py PROFILES, and the k8s/envs dev, staging and prod
overlays) is rendered into its own folder and scanned by its own checkov run, so checkov's graph
checks (CKV2_*: e.g. CKV2_K8S_6, every pod has a NetworkPolicy) see one installation at a time:
one profile's objects never satisfy another's check.

checkov's dependencies pin old versions of packages Airflow and MLflow need (packaging, boto3,
networkx...), so it lives in its own virtual environment, `.tools/checkov-venv` (git ignored),
created on first use with the pinned version below. `BC_SKIP_MAPPING=TRUE` keeps it offline.
It scans the YAML that `helm template` writes (checkov's own Helm runner needs helm on PATH and
silently scans nothing without it).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.charts.chart_utils import PROFILES, REPO, TOOLS, render_chart
from tests.support import unavailable

pytestmark = [pytest.mark.charts]

CHECKOV = "checkov==3.3.30"
CHECKOV_VENV = TOOLS / "checkov-venv"

# The skip list: check -> (why it does not apply, which resources it may fail on).
SKIPS: dict[str, tuple[str, str]] = {
    "CKV_K8S_15": (
        "Image pull policy Always: images are pinned by digest outside development (an immutable "
        "reference makes IfNotPresent exact), and kind needs IfNotPresent/Never for loaded images.",
        r".*",
    ),
    "CKV_K8S_43": (
        "Image digest: our own images get their digest when they are built and pushed; the "
        "staging/prod overlays pin digests (tests/charts/test_environments.py asserts every image "
        "there is digest-pinned), third-party images are pinned by default.",
        r".*",
    ),
    "CKV_K8S_35": (
        "Secrets as environment variables: Airflow, MLflow, MinIO and PostgreSQL read credentials "
        "from the environment, and connection URLs are assembled from them with $(VAR) references.",
        r".*",
    ),
    "CKV_K8S_38": (
        "Service account token: mounted only where the Kubernetes API is called (the scheduler "
        "starts worker pods, the API server reads pod logs, the triggerer and Celery workers watch "
        "step pods); test_security pins exactly these.",
        r"^Deployment\.[a-z0-9-]+\.mlp-airflow-(scheduler|api-server|triggerer|celery-worker)$",
    ),
    "CKV_K8S_40": (
        "High UID: the official PostgreSQL image's user is 999 (its entrypoint and data directory "
        "expect it); it still runs as non-root with every capability dropped.",
        r"^StatefulSet\.[a-z0-9-]+\.mlp-postgresql$",
    ),
}


@pytest.fixture(scope="session")
def checkov() -> str:
    executable = CHECKOV_VENV / "bin" / "checkov"
    marker = CHECKOV_VENV / ".installed"
    if executable.exists() and marker.exists() and marker.read_text() == CHECKOV:
        return str(executable)
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(CHECKOV_VENV)
        subprocess.run(
            [str(CHECKOV_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", CHECKOV],
            check=True,
            capture_output=True,
            text=True,
            timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        unavailable(f"checkov ({CHECKOV}) in {CHECKOV_VENV}", f"pip install failed: {detail[-2000:]}")
    marker.write_text(CHECKOV)
    return str(executable)


def test_skip_list_is_short_and_explained():
    assert len(SKIPS) <= 6
    for check, (reason, pattern) in SKIPS.items():
        assert re.fullmatch(r"CKV2?_K8S_\d+", check)
        assert len(reason) > 40
        re.compile(pattern)


def scanned_profiles() -> dict[str, tuple[dict, str]]:
    """profile -> (values, release namespace): the chart's test profiles and the environment overlays."""
    profiles = {name: (values, "ml") for name, values in PROFILES.items()}
    for env in ("dev", "staging", "prod"):
        overlay = yaml.safe_load((REPO / "k8s" / "envs" / env / "values.yaml").read_text())
        profiles[f"env-{env}"] = (overlay, f"ml-{env}")
    return profiles


def run_checkov(checkov: str, folder: Path) -> list[dict]:
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(
        [
            checkov,
            "--directory",
            str(folder),
            "--framework",
            "kubernetes",
            "--quiet",
            "--compact",
            "--output",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode in (0, 1), f"{folder.name}: {result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    assert reports[0]["summary"]["resource_count"] > 0, f"checkov scanned nothing in {folder.name}"
    assert reports[0]["summary"]["parsing_errors"] == 0, folder.name
    return [f for r in reports for f in r["results"]["failed_checks"]]


@pytest.fixture(scope="module")
def findings(checkov, tmp_path_factory) -> dict[str, list[dict]]:
    """profile -> checkov's failed checks on that profile's rendered objects alone."""
    root = tmp_path_factory.mktemp("rendered")
    folders = {}
    for profile, (values, namespace) in scanned_profiles().items():
        folder = root / profile
        folder.mkdir()
        objects = render_chart(values, namespace=namespace)
        (folder / "manifests.yaml").write_text(yaml.safe_dump_all(objects, sort_keys=False))
        folders[profile] = folder
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        results = dict(
            zip(folders, pool.map(lambda f: run_checkov(checkov, f), folders.values()), strict=True)
        )
    return results


def test_every_profile_is_scanned_alone(findings):
    assert {"defaults", "kind", "env-dev", "env-staging", "env-prod"} <= set(findings)


def test_no_failed_check_outside_the_skip_list(findings):
    unexpected = []
    for profile, failed in findings.items():
        for finding in failed:
            skip = SKIPS.get(finding["check_id"])
            if skip is None or not re.match(skip[1], finding["resource"]):
                unexpected.append(
                    f"{profile}: {finding['check_id']} {finding['check_name']}: {finding['resource']}"
                )
    assert not unexpected, "\n".join(sorted(set(unexpected)))


def test_every_skip_is_still_needed(findings):
    """A skip that no longer matches anything should be removed from the list."""
    used = {f["check_id"] for failed in findings.values() for f in failed}
    assert set(SKIPS) <= used, f"unused skips: {set(SKIPS) - used}"


def test_the_skip_list_is_documented():
    docs = (REPO / "docs" / "kubernetes.md").read_text()
    section = docs.split("### checkov skip list", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| (CKV2?_K8S_\d+)", section, re.MULTILINE))
    assert documented == set(SKIPS)


if __name__ == "__main__":  # pragma: no cover - print the skip list for the docs
    for check, (reason, _) in SKIPS.items():
        sys.stdout.write(f"- {check}: {reason}\n")
