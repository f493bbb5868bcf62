"""scripts/promote moves the chart revision, the image digests and the pipeline configuration one
environment along, and nothing else. The model's copy between registries is tested against real
MLflow servers in tests/integration/test_promote_registries.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "promote"
ENVS = REPO / "k8s" / "envs"
ARGOCD = REPO / "k8s" / "argocd"
COMMIT = "0123456789abcdef0123456789abcdef01234567"

pytest.importorskip("ruamel.yaml", reason="scripts/promote needs ruamel.yaml (the dev extra)")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): node}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(ENVS, tmp_path / "envs")
    shutil.copytree(ARGOCD, tmp_path / "argocd")
    dev_app = tmp_path / "argocd" / "ml-pipeline-dev.yaml"
    dev_app.write_text(
        dev_app.read_text().replace("targetRevision: ml-pipeline-0.1.0", f"targetRevision: {COMMIT}")
    )
    return tmp_path


def promote(repo: Path, *args: str, model: bool = False) -> subprocess.CompletedProcess[str]:
    extra = [] if model else ["--no-model"]
    return subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *args,
            *extra,
            "--envs-dir",
            str(repo / "envs"),
            "--argocd-dir",
            str(repo / "argocd"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def test_dev_to_staging_changes_only_the_intended_keys(repo):
    staging = repo / "envs" / "staging" / "values.yaml"
    before_text = staging.read_text()
    before = flatten(yaml.safe_load(before_text))
    dev = flatten(yaml.safe_load((repo / "envs" / "dev" / "values.yaml").read_text()))

    result = promote(repo, "dev", "staging")
    assert result.returncode == 0, result.stderr

    after_text = staging.read_text()
    after = flatten(yaml.safe_load(after_text))
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert changed == {
        "global.images.pipeline.digest",
        "global.images.airflow.digest",
        "global.images.mlflow.digest",
    }
    for key in changed:
        assert after[key] == dev[key]
    # A minimal, reviewable diff: only those lines differ, every comment survives.
    old_lines, new_lines = before_text.splitlines(), after_text.splitlines()
    assert len(old_lines) == len(new_lines)
    differing = [(o, n) for o, n in zip(old_lines, new_lines, strict=True) if o != n]
    assert len(differing) == len(changed)
    assert comments(before_text) == comments(after_text)
    assert 'version: "3"' in after_text  # the model is left alone with --no-model, its quoting kept
    assert result.stdout.startswith("--- a/")
    assert "+      digest: sha256:4444" in result.stdout


def test_the_chart_revision_moves_with_the_images(repo):
    app_file = repo / "argocd" / "ml-pipeline-staging.yaml"
    before = app_file.read_text()
    result = promote(repo, "dev", "staging")
    assert result.returncode == 0, result.stderr
    after = app_file.read_text()
    chart, values = yaml.safe_load(after)["spec"]["sources"]
    assert chart["targetRevision"] == COMMIT
    assert values["targetRevision"] == "main"  # the overlay source: where promotions are merged
    assert comments(before) == comments(after)
    differing = [(o, n) for o, n in zip(before.splitlines(), after.splitlines(), strict=True) if o != n]
    assert differing == [("      targetRevision: ml-pipeline-0.1.0", f"      targetRevision: {COMMIT}")]
    assert f"+      targetRevision: {COMMIT}" in result.stdout


@pytest.mark.parametrize("revision", ["main", "HEAD", "release/1.x", "0123abc"])
def test_a_chart_revision_that_can_move_is_refused(repo, revision):
    dev_app = repo / "argocd" / "ml-pipeline-dev.yaml"
    dev_app.write_text(
        dev_app.read_text().replace(f"targetRevision: {COMMIT}", f"targetRevision: {revision}")
    )
    staging = (repo / "envs" / "staging" / "values.yaml").read_text()
    result = promote(repo, "dev", "staging")
    assert result.returncode == 2
    assert "targetRevision" in result.stderr and revision in result.stderr
    assert (repo / "envs" / "staging" / "values.yaml").read_text() == staging


def test_the_pipeline_configuration_moves(repo):
    dev = repo / "envs" / "dev" / "values.yaml"
    dev.write_text(
        dev.read_text().replace(
            "  logLevel: DEBUG\n",
            '  logLevel: DEBUG\n  env:\n    PIPELINE_TRAIN__MAX_EPOCHS: "20"\n'
            "  config: |\n    data:\n      name: penguins\n",
        )
    )
    staging = repo / "envs" / "staging" / "values.yaml"
    assert promote(repo, "dev", "staging").returncode == 0
    after = yaml.safe_load(staging.read_text())["pipeline"]
    assert after["env"] == {"PIPELINE_TRAIN__MAX_EPOCHS": "20"}
    assert after["config"] == "data:\n  name: penguins\n"
    assert "logLevel" not in after  # environment-specific settings stay where they are
    assert "  config: |\n" in staging.read_text()  # still a literal block: a readable diff
    # And a configuration the source drops is dropped in the target too.
    dev.write_text(dev.read_text().replace('  env:\n    PIPELINE_TRAIN__MAX_EPOCHS: "20"\n', ""))
    assert promote(repo, "dev", "staging").returncode == 0
    assert "env" not in yaml.safe_load(staging.read_text())["pipeline"]


def test_promotion_is_idempotent(repo):
    assert promote(repo, "dev", "staging").returncode == 0
    text = (repo / "envs" / "staging" / "values.yaml").read_text()
    again = promote(repo, "dev", "staging")
    assert again.returncode == 0
    assert "nothing to promote" in again.stderr
    assert (repo / "envs" / "staging" / "values.yaml").read_text() == text


def test_dry_run_changes_nothing(repo):
    text = (repo / "envs" / "staging" / "values.yaml").read_text()
    app = (repo / "argocd" / "ml-pipeline-staging.yaml").read_text()
    result = promote(repo, "dev", "staging", "--dry-run")
    assert result.returncode == 0
    assert "+      digest: sha256:5555" in result.stdout
    assert (repo / "envs" / "staging" / "values.yaml").read_text() == text
    assert (repo / "argocd" / "ml-pipeline-staging.yaml").read_text() == app


def test_selected_images(repo):
    result = promote(repo, "dev", "staging", "--images", "pipeline", "--no-chart")
    assert result.returncode == 0, result.stderr
    after = flatten(yaml.safe_load((repo / "envs" / "staging" / "values.yaml").read_text()))
    assert after["global.images.pipeline.digest"].startswith("sha256:4444")
    assert after["global.images.airflow.digest"].startswith("sha256:2222")
    assert after["pipeline.model.version"] == "3"


def test_unpinned_image_is_refused(repo):
    dev = repo / "envs" / "dev" / "values.yaml"
    dev.write_text(dev.read_text().replace("sha256:" + "4" * 64, '""'))
    text = (repo / "envs" / "staging" / "values.yaml").read_text()
    result = promote(repo, "dev", "staging")
    assert result.returncode == 2
    assert "global.images.pipeline.digest" in result.stderr
    assert (repo / "envs" / "staging" / "values.yaml").read_text() == text


def test_the_model_needs_both_registries(repo, monkeypatch):
    monkeypatch.delenv("PROMOTE_DEV_TRACKING_URI", raising=False)
    monkeypatch.delenv("PROMOTE_STAGING_TRACKING_URI", raising=False)
    result = promote(repo, "dev", "staging", model=True)
    assert result.returncode == 2
    assert "--source-tracking-uri" in result.stderr


def test_only_one_step_along_the_chain(repo):
    result = promote(repo, "dev", "prod")
    assert result.returncode == 2
    assert "one step" in result.stderr


def test_promoted_overlay_still_renders(repo):
    assert promote(repo, "dev", "staging").returncode == 0
    promoted = yaml.safe_load((repo / "envs" / "staging" / "values.yaml").read_text())
    assert promoted["global"]["networkPolicy"]["enabled"] is True
    assert promoted["airflow"]["dag"]["gpu"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_ci_writes_the_built_digests_and_commit_into_dev(repo):
    """What .github/workflows/images.yml runs after pushing the images."""
    digest = "sha256:" + "a" * 64
    result = promote(
        repo, "build", "dev", "--image-digest", f"pipeline={digest}", "--image-tag", "0.2.0",
        "--chart-revision", "fedcba9876543210fedcba9876543210fedcba98",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    dev = yaml.safe_load((repo / "envs" / "dev" / "values.yaml").read_text())
    assert dev["global"]["images"]["pipeline"] == {
        "repository": "registry.example.com/ml-pipeline/pipeline",
        "tag": "0.2.0",
        "digest": digest,
    }
    assert dev["global"]["images"]["airflow"]["digest"].startswith("sha256:5555")  # not built: unchanged
    app = yaml.safe_load((repo / "argocd" / "ml-pipeline-dev.yaml").read_text())
    assert app["spec"]["sources"][0]["targetRevision"] == "fedcba9876543210fedcba9876543210fedcba98"
    refused = promote(repo, "build", "dev", "--image-digest", "pipeline=latest", "--no-chart")
    assert refused.returncode == 2
    assert "global.images.pipeline.digest" in refused.stderr
    assert promote(repo, "build", "staging", "--image-digest", f"pipeline={digest}").returncode == 2


# --- credentials: each registry gets its own environment's, and nothing prints them ----------------


class BasicAuthRegistry:
    """A stand-in MLflow server requiring one basic-auth credential: it answers the registry
    search with no models when the credential is right, 401 otherwise, and records what it got."""

    def __init__(self, username: str, password: str) -> None:
        import base64
        import http.server
        import threading

        expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.seen: list[str | None] = []
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                got = self.headers.get("Authorization")
                seen.append(got)
                ok = got == expected
                body = b'{"registered_models": []}' if ok else b'{"error_code": "UNAUTHENTICATED"}'
                self.send_response(200 if ok else 401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def promote_module():
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.SourceFileLoader("promote_script", str(SCRIPT))
    spec = importlib.util.spec_from_loader("promote_script", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["promote_script"] = module  # dataclasses look their module up there
    try:
        loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("promote_script", None)


@pytest.fixture
def registries():
    servers = {
        "dev": BasicAuthRegistry("promoter", "dev-Secret-1"),
        "staging": BasicAuthRegistry("promoter", "stg-Secret-2"),
    }
    yield servers
    for server in servers.values():
        server.close()


def test_each_registry_gets_its_own_environments_credential(promote_module, registries, monkeypatch):
    pytest.importorskip("mlflow")
    import base64

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("PROMOTE_DEV_TRACKING_USERNAME", "promoter")
    monkeypatch.setenv("PROMOTE_DEV_TRACKING_PASSWORD", "dev-Secret-1")
    monkeypatch.setenv("PROMOTE_STAGING_TRACKING_USERNAME", "promoter")
    monkeypatch.setenv("PROMOTE_STAGING_TRACKING_PASSWORD", "stg-Secret-2")
    # an ambient credential (e.g. the user's own for dev) must reach neither server
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "someone")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "ambient-Secret-3")
    dev = promote_module.Registry("dev", registries["dev"].url)
    staging = promote_module.Registry("staging", registries["staging"].url)
    with dev.client() as client:
        assert client.search_registered_models() == []
    with staging.client() as client:
        assert client.search_registered_models() == []
    with dev.client() as client:
        assert client.search_registered_models() == []
    sent = {
        name: {base64.b64decode(h.split()[1]).decode() for h in server.seen if h}
        for name, server in registries.items()
    }
    assert sent == {"dev": {"promoter:dev-Secret-1"}, "staging": {"promoter:stg-Secret-2"}}
    # the ambient credential is back once the promotion is done with a registry
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "ambient-Secret-3"


def test_an_environment_without_credentials_sends_none(promote_module, registries, monkeypatch):
    """Not the other environment's and not an ambient one: the server answers 401."""
    pytest.importorskip("mlflow")
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("PROMOTE_DEV_TRACKING_USERNAME", "promoter")
    monkeypatch.setenv("PROMOTE_DEV_TRACKING_PASSWORD", "dev-Secret-1")
    monkeypatch.delenv("PROMOTE_STAGING_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("PROMOTE_STAGING_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "promoter")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "stg-Secret-2")
    registry = promote_module.Registry("staging", registries["staging"].url)
    with registry.client() as client, pytest.raises(MlflowException):
        client.search_registered_models()
    assert registries["staging"].seen and set(registries["staging"].seen) == {None}


@pytest.mark.parametrize("where", ["a wrong password", "an unreachable server named with user-info"])
def test_a_registry_error_is_reported_without_the_credential(repo, registries, where):
    """Exit 1, the overlay untouched, and no credential in what is printed."""
    pytest.importorskip("mlflow")
    before = (repo / "envs" / "staging" / "values.yaml").read_text()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PROMOTE_", "AWS_"))}
    env.update(
        {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "PROMOTE_DEV_TRACKING_URI": registries["dev"].url,
            "PROMOTE_DEV_TRACKING_USERNAME": "promoter",
            "PROMOTE_DEV_TRACKING_PASSWORD": "wrong-Secret-4",
            "PROMOTE_STAGING_TRACKING_URI": registries["staging"].url,
        }
    )
    if where != "a wrong password":
        env["PROMOTE_DEV_TRACKING_URI"] = "http://promoter:dev-Secret-1@127.0.0.1:9"
    dirs = ["--envs-dir", str(repo / "envs"), "--argocd-dir", str(repo / "argocd")]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "dev", "staging", *dirs],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 1, result.stderr
    assert "error:" in result.stderr
    for secret in ("dev-Secret-1", "wrong-Secret-4"):
        assert secret not in result.stdout + result.stderr
    assert (repo / "envs" / "staging" / "values.yaml").read_text() == before
