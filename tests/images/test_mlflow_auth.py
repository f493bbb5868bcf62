"""MLflow authentication as the chart deploys it, by behaviour: the BUILT MLflow image runs the
chart's RENDERED init container, server command, environment and auth ini file against a real
PostgreSQL and a real S3 endpoint on the host, then the rendered users Job creates the pipeline
user. Unauthenticated requests get 401; the pipeline credential creates an experiment, registers a
model and moves an alias; a pipeline run from the host authenticates with
MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD, as the step pods do from the pipeline Secret.

What differs from a pod, and why: the kubelet's work is done here (``$(VAR)`` expansion,
``secretKeyRef`` values, the ConfigMap mounted as files), the container shares the host's network
(PostgreSQL and S3 listen on loopback) and the server's ``--port`` is moved to a free port (the
host's 5000 may be taken); ``mlflow.allowedHosts`` adds that port's Host header.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.charts.chart_utils import get, render_chart
from tests.conftest import FAST, run_cli
from tests.images.conftest import Docker, Image, S3Endpoint
from tests.services import PostgresServer, postgres_server
from tests.support import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

RELEASE = "mlp"
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex
PIPELINE_PASSWORD = "pipeline-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        conn = server.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE ROLE mlflow LOGIN PASSWORD 'unused-trust-auth'")
            cur.execute("CREATE DATABASE mlflow OWNER mlflow")
        conn.close()
        yield server


def _resolve_env(container: dict[str, Any], secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """The container's environment as the kubelet makes it: secretKeyRef values, $(VAR) expanded."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[(ref["name"], ref["key"])]
        else:
            env[item["name"]] = _expand([item["value"]], env)[0]
    return env


def _expand(args: list[str], env: dict[str, str]) -> list[str]:
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def _docker_args(container: dict[str, Any], env: dict[str, str], mounts: dict[str, Path]) -> list[str]:
    out = ["--network", "host", "--read-only", "--tmpfs", "/tmp:uid=10001,gid=10001", "--cap-drop", "ALL"]
    user = container["securityContext"]
    out += ["--user", f"{user['runAsUser']}:{user.get('runAsGroup', user['runAsUser'])}"]
    for key, value in env.items():
        out += ["-e", f"{key}={value}"]
    for mount in container.get("volumeMounts", []):
        if mount["name"] in mounts:
            out += ["-v", f"{mounts[mount['name']]}:{mount['mountPath']}:ro"]
    return out


def _request(url: str, auth: tuple[str, str] | None = None, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310
    if auth:
        import base64

        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:  # not listening (yet)
        return 0


def test_the_chart_s_mlflow_refuses_anonymous_and_serves_the_pipeline_user(
    docker: Docker,
    mlflow_image: Image,
    s3_endpoint: S3Endpoint,
    postgres: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()
    values = {
        "postgresql": {"enabled": False},
        "minio": {"enabled": False},
        "global": {
            "postgresql": {"host": "127.0.0.1", "port": postgres.port, "existingSecret": "pg-auth"},
            "s3": {"endpoint": s3_endpoint.url, "existingSecret": "s3-auth", "bucket": s3_endpoint.bucket},
            "pipeline": {"existingSecret": "pipeline-env"},
        },
        "mlflow": {"allowedHosts": [f"127.0.0.1:{port}"]},
    }
    objects = render_chart(values)
    deployment = get(objects, "Deployment", f"{RELEASE}-mlflow")
    users_job = get(objects, "Job", f"{RELEASE}-mlflow-users")
    config_map = get(objects, "ConfigMap", f"{RELEASE}-mlflow-auth")
    secrets = {
        ("pg-auth", "mlflow-password"): "unused-trust-auth",
        ("s3-auth", "access-key-id"): s3_endpoint.key,
        ("s3-auth", "secret-access-key"): s3_endpoint.secret,
        (f"{RELEASE}-mlflow-auth", "admin-password"): ADMIN_PASSWORD,
        (f"{RELEASE}-mlflow-auth", "pipeline-password"): PIPELINE_PASSWORD,
        (f"{RELEASE}-mlflow-auth", "flask-secret-key"): uuid.uuid4().hex,
    }
    files = tmp_path / "auth-config"
    files.mkdir()
    for key, text in config_map["data"].items():
        (files / key).write_text(text)
    files.chmod(0o755)
    for path in files.iterdir():
        path.chmod(0o644)
    mounts = {"auth-config": files, "scripts": files}
    pod = deployment["spec"]["template"]["spec"]

    # The init container waits for PostgreSQL (up already: it returns at once).
    (init,) = pod["initContainers"]
    env = _resolve_env(init, secrets)
    init_args = _docker_args(init, env, mounts)
    proc = docker.run("run", "--rm", *init_args, mlflow_image.ref, *init["args"], timeout=240)
    assert "accepts connections" in proc.stdout

    (server,) = pod["containers"]
    assert "--app-name=basic-auth" in server["args"]
    env = _resolve_env(server, secrets)
    args = [f"--port={port}" if a == "--port=5000" else a for a in _expand(server["args"], env)]
    name = f"mlp-mlflow-auth-{uuid.uuid4().hex[:8]}"
    docker.run("run", "-d", "--name", name, *_docker_args(server, env, mounts), mlflow_image.ref, *args)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240  # a liveness bound: migrations on a loaded 2-core machine are slow
        while _request(f"{base}/health") != 200:
            running = docker.run("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            if running != "true" or time.monotonic() > deadline:
                pytest.fail(f"server did not become healthy:\n{docker.run('logs', name).stderr[-4000:]}")
            time.sleep(0.5)

        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _request(search) == 401
        assert _request(search, ("pipeline", PIPELINE_PASSWORD)) == 401  # not created yet
        assert _request(search, ("admin", ADMIN_PASSWORD)) == 200

        # The rendered users Job, twice: it creates the user, then finds it and keeps it.
        (job,) = users_job["spec"]["template"]["spec"]["containers"]
        job_env = _resolve_env(job, secrets) | {"MLFLOW_URL": base}
        for expected in ("user pipeline created", "user pipeline exists"):
            job_args = _docker_args(job, job_env, mounts)
            proc = docker.run("run", "--rm", *job_args, mlflow_image.ref, *job["args"])
            assert expected in proc.stdout, proc.stdout + proc.stderr
        pipeline = ("pipeline", PIPELINE_PASSWORD)
        assert _request(search, pipeline) == 200
        assert _request(search, ("pipeline", "wrong")) == 401
        # Not an admin: it cannot create users.
        body = b'{"username": "intruder", "password": "intruder-password"}'
        assert _request(f"{base}/api/2.0/mlflow/users/create", pipeline, body) == 403

        # The pipeline credential registers a model and moves an alias through MLflow's client.
        import mlflow
        from mlflow import MlflowClient

        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "pipeline")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PIPELINE_PASSWORD)
        client = MlflowClient(tracking_uri=base, registry_uri=base)
        experiment = client.create_experiment(f"auth-{uuid.uuid4().hex[:6]}")
        run = client.create_run(experiment)
        artifact = tmp_path / "model.txt"
        artifact.write_text("model bytes")
        client.log_artifact(run.info.run_id, str(artifact))
        client.set_terminated(run.info.run_id)
        model = f"auth-model-{uuid.uuid4().hex[:6]}"
        client.create_registered_model(model)
        source = f"runs:/{run.info.run_id}/model.txt"
        version = client.create_model_version(model, source, run_id=run.info.run_id)
        client.set_registered_model_alias(model, "champion", version.version)
        client.set_model_version_tag(model, version.version, "gate", "passed")
        assert client.get_model_version_by_alias(model, "champion").version == version.version
        assert mlflow.__version__.startswith("3.")
        # ... and an anonymous client cannot move it.
        alias = f'{{"name": "{model}", "alias": "champion", "version": "{version.version}"}}'.encode()
        assert _request(f"{base}/api/2.0/mlflow/registered-models/alias", None, alias) == 401

        # A whole (small) pipeline run through the server, credentials from the environment.
        home = tmp_path / "home"
        result = run_cli(
            ["run", *FAST],
            home,
            MLFLOW_TRACKING_URI=base,
            MLFLOW_TRACKING_USERNAME="pipeline",
            MLFLOW_TRACKING_PASSWORD=PIPELINE_PASSWORD,
            PIPELINE_EXPERIMENT_NAME="auth-run",
            PIPELINE_MODEL_NAME="auth-run",
        )
        assert result.returncode == 0, result.stderr[-4000:]
        assert result.json["model_name"] == "auth-run"
        assert PIPELINE_PASSWORD not in result.stdout + result.stderr
        assert client.get_model_version_by_alias("auth-run", "champion").version == result.json["version"]
    finally:
        docker.run("rm", "-f", name, check=False)
