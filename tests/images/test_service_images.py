"""The Airflow and MLflow images, built by `make image-airflow` / `make image-mlflow`."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest

from tests.images.conftest import Docker, Image
from tests.support import free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DAGS = "/opt/airflow/dags"


def test_airflow_image_has_providers_and_only_the_step_registry(docker: Docker, airflow_image: Image) -> None:
    probe = (
        "import importlib.util, json, os\n"
        "import airflow, pipeline.steps, pipeline.redaction\n"
        "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator\n"
        "import airflow.providers.postgres\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'airflow': airflow.__version__,\n"
        "  'steps': list(pipeline.steps.STEP_NAMES),\n"
        "  'heavy': [m for m in ('torch', 'mlflow', 'great_expectations', 'dvc', 'pandas')\n"
        "            if importlib.util.find_spec(m)]}))\n"
    )
    proc = docker.run("run", "--rm", airflow_image.ref, "python", "-c", probe)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (found["uid"], found["gid"]) == (50000, 0)
    assert found["airflow"].startswith("3.3.")
    assert found["steps"][0] == "ingest"
    assert "train" in found["steps"]
    # `pip install --no-deps`: the pipeline's ML dependencies stay in the pipeline image. (pandas
    # may come with an Airflow provider; torch, MLflow, GX and DVC must not.)
    assert not {"torch", "mlflow", "great_expectations", "dvc"} & set(found["heavy"])


def test_airflow_image_parses_the_baked_in_dags(docker: Docker, airflow_image: Image) -> None:
    """As the chart's migration Job and dag-processor would: migrate a database, parse dags/."""
    script = (
        "airflow db migrate >/dev/null"
        " && airflow dags list-import-errors --local --output json"
        " && airflow dags list --local --output json"
    )
    proc = docker.run("run", "--rm", airflow_image.ref, "bash", "-c", script)
    # Airflow logs warnings to stdout as well; the JSON documents are the lines that are lists.
    documents = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(documents) == 2, proc.stdout[-3000:]
    import_errors, dags = documents
    assert import_errors == []
    assert sorted((dag["dag_id"], dag["fileloc"]) for dag in dags) == [
        ("ml_pipeline", f"{DAGS}/ml_pipeline.py"),
        ("ml_pipeline_monitor", f"{DAGS}/ml_pipeline_monitor.py"),
        ("ml_pipeline_sweep", f"{DAGS}/ml_pipeline_sweep.py"),
    ]


def test_mlflow_image_serves_as_non_root(docker: Docker, mlflow_image: Image) -> None:
    port = free_port()
    name = f"ml-pipeline-mlflow-{uuid.uuid4().hex[:8]}"
    docker.run(
        "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--tmpfs", "/var/lib/mlflow:uid=10001,gid=10001", "--cap-drop", "ALL", mlflow_image.ref,
        "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", "sqlite:////var/lib/mlflow/mlflow.db",
        "--artifacts-destination", "/var/lib/mlflow/artifacts",
    )  # fmt: skip
    try:
        health = None
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    health = response.read().decode()
                    break
            except OSError:
                if docker.run("inspect", "--format", "{{.State.Running}}", name).stdout.strip() != "true":
                    break
                time.sleep(0.5)
        logs = docker.run("logs", name).stderr
        assert health == "OK", logs[-3000:]
        probe = "import os, psycopg2, boto3, mlflow; print(os.getuid(), mlflow.__version__)"
        uid, version = docker.run("exec", name, "python", "-c", probe).stdout.split()
        assert uid == "10001"
        assert version.startswith("3.")
        assert docker.run("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")[0] == "/usr/bin/tini"
    finally:
        docker.run("rm", "-f", name, check=False)
