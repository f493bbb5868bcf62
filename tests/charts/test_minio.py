"""The bundled MinIO: pinned and swappable image, credentials from the S3 Secret, a bucket Job."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.charts.chart_utils import env_of, get, pod_spec, render_chart

pytestmark = pytest.mark.charts


def deployment(values=None):
    return get(render_chart(values), "Deployment", "mlp-minio")


def test_image_is_pinned_by_digest():
    image = pod_spec(deployment())["containers"][0]["image"]
    assert image == (
        "quay.io/minio/minio@sha256:14cea493d9a34af32f524e538b8346cf79f3321eff8e708c1e2960462bd8936e"
    )


def test_image_is_swappable():
    values = {
        "minio": {"image": {"repository": "registry.example.com/s3/server", "tag": "1.2", "digest": ""}}
    }
    assert pod_spec(deployment(values))["containers"][0]["image"] == "registry.example.com/s3/server:1.2"


def test_root_credentials_come_from_the_s3_secret():
    env = env_of(pod_spec(deployment())["containers"][0])
    assert env["MINIO_ROOT_USER"] == {"secretKeyRef": {"name": "mlp-s3-credentials", "key": "access-key-id"}}
    assert env["MINIO_ROOT_PASSWORD"] == {
        "secretKeyRef": {"name": "mlp-s3-credentials", "key": "secret-access-key"}
    }


def test_console_port_follows_the_value():
    ports = {p["name"] for p in get(render_chart(), "Service", "mlp-minio")["spec"]["ports"]}
    assert ports == {"s3", "console"}
    off = render_chart({"minio": {"console": {"enabled": False}}})
    assert {p["name"] for p in get(off, "Service", "mlp-minio")["spec"]["ports"]} == {"s3"}
    args = pod_spec(get(off, "Deployment", "mlp-minio"))["containers"][0]["args"]
    assert not any(a.startswith("--console-address") for a in args)


def test_bucket_job_is_a_post_install_hook_creating_the_configured_bucket():
    objects = render_chart({"global": {"s3": {"bucket": "team-ml"}}})
    job = get(objects, "Job", "mlp-minio-bucket")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    env = env_of(pod_spec(job)["initContainers"][0])
    assert env["BUCKETS"] == "team-ml,airflow-logs"
    assert env["S3_ENDPOINT"] == "http://mlp-minio.ml.svc.cluster.local:9000"
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "mlp-s3-credentials", "key": "access-key-id"}
    }
    script = get(objects, "ConfigMap", "mlp-minio-bucket")["data"]["create_bucket.py"]
    compile(script, "create_bucket.py", "exec")
    assert "create_bucket(Bucket=bucket)" in script


# ------------------------------------------------------------------------------------------
# Per-client users: the rendered policies, evaluated (a small evaluator of S3 policy JSON)
# ------------------------------------------------------------------------------------------


def _matches(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)  # S3 wildcards: * and ?


def allowed(policy: dict, action: str, resource: str) -> bool:
    """IAM semantics for Allow/Deny statements with Action/Resource wildcards (no conditions:
    the chart's policies use none, and a condition makes this evaluator refuse)."""
    verdict = False
    for statement in policy["Statement"]:
        assert "Condition" not in statement, "the evaluator does not know conditions"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        if any(_matches(a, action) for a in actions) and any(_matches(r, resource) for r in resources):
            if statement["Effect"] == "Deny":
                return False
            verdict = True
    return verdict


def test_the_evaluator_knows_wildcards_and_deny():
    policy = {
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": ["arn:aws:s3:::b/a/*"]},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/a/secret"},
        ]
    }
    assert allowed(policy, "s3:GetObject", "arn:aws:s3:::b/a/x/y")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::b/a/secret")
    assert not allowed(policy, "s3:PutObject", "arn:aws:s3:::b/a/x")
    assert not allowed(policy, "s3:GetObject", "arn:aws:s3:::b/ab")


def _policies(values=None) -> dict[str, dict]:
    data = get(render_chart(values or {}), "ConfigMap", "mlp-minio-bucket")["data"]
    return {
        k[len("policy-") : -len(".json")]: json.loads(v) for k, v in data.items() if k.startswith("policy-")
    }


B = "arn:aws:s3:::ml-pipeline"
LOGS = "arn:aws:s3:::airflow-logs"
RW = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject")

MUST = {
    "pipeline": [
        *[(a, f"{B}/artifacts/runs/r1/train/model.pt") for a in RW],
        *[(a, f"{B}/dvc/files/md5/ab/cdef") for a in RW],
        ("s3:ListBucket", B),  # HeadBucket (doctor) and listing the prefixes
        ("s3:GetObject", f"{B}/mlflow/_doctor/probe-1"),  # the doctor's probe through MLflow's proxy
    ],
    "mlflow": [*[(a, f"{B}/mlflow/1/abc/artifacts/model/MLmodel") for a in RW], ("s3:ListBucket", B)],
    "airflow-logs": [
        *[(a, f"{LOGS}/dag_id=ml_pipeline/run_id=r/task_id=train/attempt=1.log") for a in RW],
        ("s3:ListBucket", LOGS),
    ],
}
MUST_NOT = {
    "pipeline": [
        ("s3:PutObject", f"{B}/mlflow/1/abc/artifacts/model/MLmodel"),  # models only through MLflow
        ("s3:GetObject", f"{B}/mlflow/1/abc/artifacts/model/MLmodel"),
        ("s3:DeleteObject", f"{B}/mlflow/_doctor/probe-1"),
        ("s3:GetObject", f"{LOGS}/x.log"),
        ("s3:DeleteBucket", B),
        ("s3:PutBucketPolicy", B),
        ("s3:CreateBucket", "arn:aws:s3:::other"),
        ("s3:GetObject", "arn:aws:s3:::other/artifacts/x"),
        ("admin:CreateUser", "arn:aws:s3:::*"),
    ],
    "mlflow": [
        ("s3:GetObject", f"{B}/artifacts/runs/r1/x"),
        ("s3:PutObject", f"{B}/dvc/files/md5/ab/cdef"),
        ("s3:GetObject", f"{LOGS}/x.log"),
        ("s3:DeleteBucket", B),
        ("s3:PutBucketPolicy", B),
    ],
    "airflow-logs": [
        ("s3:GetObject", f"{B}/artifacts/x"),
        ("s3:PutObject", f"{B}/mlflow/x"),
        ("s3:ListBucket", B),
        ("s3:DeleteBucket", LOGS),
        ("s3:PutBucketPolicy", LOGS),
    ],
}


@pytest.mark.parametrize("client", sorted(MUST))
def test_each_client_policy_allows_what_it_needs_and_nothing_else(client):
    policy = _policies()[client]
    for action, resource in MUST[client]:
        assert allowed(policy, action, resource), (client, action, resource)
    for action, resource in MUST_NOT[client]:
        assert not allowed(policy, action, resource), (client, action, resource)


def test_policies_follow_the_bucket_and_the_pipeline_prefixes():
    policies = _policies(
        {
            "global": {"s3": {"bucket": "team", "airflowLogsBucket": "team-logs"}},
            "minio": {"bucketJob": {"pipelinePrefixes": ["ml/runs"]}},
        }
    )
    assert allowed(policies["pipeline"], "s3:PutObject", "arn:aws:s3:::team/ml/runs/x")
    assert not allowed(policies["pipeline"], "s3:PutObject", "arn:aws:s3:::team/artifacts/x")
    assert allowed(policies["airflow-logs"], "s3:PutObject", "arn:aws:s3:::team-logs/x")
    assert allowed(policies["mlflow"], "s3:PutObject", "arn:aws:s3:::team/mlflow/x")


def test_no_client_gets_the_root_credentials():
    """The step pods (pipeline Secret) and the MLflow server read their own S3 users' Secrets."""
    objects = render_chart({})
    pipeline = get(objects, "Secret", "mlp-pipeline")["data"]
    client = get(objects, "Secret", "mlp-s3-pipeline")["data"]
    root = get(objects, "Secret", "mlp-s3-credentials")["data"]
    assert pipeline["PIPELINE_S3__ACCESS_KEY_ID"] == client["access-key-id"]
    assert pipeline["PIPELINE_S3__SECRET_ACCESS_KEY"] == client["secret-access-key"]
    assert client["access-key-id"] != root["access-key-id"]
    env = env_of(pod_spec(get(objects, "Deployment", "mlp-mlflow"))["containers"][0])
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "mlp-s3-mlflow", "key": "access-key-id"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "mlp-s3-mlflow", "key": "secret-access-key"}
    }
    for name in ("mlp-s3-pipeline", "mlp-s3-mlflow", "mlp-s3-airflow-logs"):
        secret = get(objects, "Secret", name)
        assert set(secret["data"]) == {"access-key-id", "secret-access-key"}
        assert secret["metadata"]["annotations"]["ml-pipeline/generated"] == "true"
    users = env_of(pod_spec(get(objects, "Job", "mlp-minio-bucket"))["containers"][0])
    for var, name in (
        ("PIPELINE", "mlp-s3-pipeline"),
        ("MLFLOW", "mlp-s3-mlflow"),
        ("AIRFLOW_LOGS", "mlp-s3-airflow-logs"),
    ):
        assert users[f"{var}_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": name, "key": "access-key-id"}}


def _fake_mc(folder: Path) -> Path:
    """An `mc` stand-in recording its calls, refusing a second attach as MinIO does."""
    log = folder / "calls.log"
    mc = folder / "mc"
    mc.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'if [ "$2" = policy ] && [ "$3" = attach ]; then\n'
        f'  if grep -q "attached $4 $6" {log}.state 2>/dev/null; then\n'
        '    echo "mc: <ERROR> Unable to attach: The specified policy change is already in effect." >&2\n'
        "    exit 1\n"
        "  fi\n"
        f'  echo "attached $4 $6" >> {log}.state\n'
        "fi\n"
    )
    mc.chmod(0o755)
    return log


def test_the_users_script_is_idempotent_and_sets_every_client(tmp_path: Path):
    """The rendered create_users.sh with a recording `mc` (MinIO's client is not available
    here): each client gets its policy file, its user and the attachment; a second run (every
    upgrade) succeeds and sets the same again."""
    objects = render_chart({})
    data = get(objects, "ConfigMap", "mlp-minio-bucket")["data"]
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    for key, text in data.items():
        (scripts / key).write_text(text)
    script = (
        data["create_users.sh"].replace("/scripts/", f"{scripts}/").replace("/tmp/mc", str(tmp_path / "mc"))
    )
    (scripts / "run.sh").write_text(script)
    log = _fake_mc(tmp_path)
    env = {
        "PATH": f"{tmp_path}:/usr/bin:/bin",
        "POLICY_PREFIX": "mlp",
        "MC_HOST_store": "http://r:s@minio:9000",
        "ROOT_ACCESS_KEY_ID": "root-key",
    }
    for var in ("PIPELINE", "MLFLOW", "AIRFLOW_LOGS"):
        env[f"{var}_ACCESS_KEY_ID"] = f"key-{var.lower()}"
        env[f"{var}_SECRET_ACCESS_KEY"] = f"secret-{var.lower()}"
    for _ in range(2):
        proc = subprocess.run(
            ["sh", str(scripts / "run.sh")], env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines()
    for client, var in (("pipeline", "pipeline"), ("mlflow", "mlflow"), ("airflow-logs", "airflow_logs")):
        assert calls.count(f"admin policy create store mlp-{client} {scripts}/policy-{client}.json") == 2
        assert calls.count(f"admin user add store key-{var} secret-{var}") == 2
        assert calls.count(f"admin policy attach store mlp-{client} --user key-{var}") == 2
    # A client sharing the root credentials (existingSecret, no clientSecrets) gets no user.
    shared = {**env, "ROOT_ACCESS_KEY_ID": "key-mlflow"}
    before = len(log.read_text().splitlines())
    proc = subprocess.run(
        ["sh", str(scripts / "run.sh")], env=shared, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "mlflow uses the root credentials" in proc.stdout
    assert not [c for c in log.read_text().splitlines()[before:] if "key-mlflow" in c or "mlp-mlflow" in c]
    # A real failure of an attach is not swallowed.
    (tmp_path / "mc").write_text(
        "#!/bin/sh\n[ \"$3\" = attach ] && { echo 'mc: <ERROR> no such user' >&2; exit 1; }\nexit 0\n"
    )
    proc = subprocess.run(
        ["sh", str(scripts / "run.sh")], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1 and "no such user" in proc.stderr


def test_the_bucket_script_creates_both_buckets_idempotently(tmp_path: Path):
    """The rendered create_bucket.py against a real S3 endpoint (moto's server), twice."""
    from tests.services import s3_server

    script = get(render_chart({}), "ConfigMap", "mlp-minio-bucket")["data"]["create_bucket.py"]
    (tmp_path / "create_bucket.py").write_text(script)
    with s3_server(tmp_path, buckets=()) as s3:
        env = {**os.environ, **s3.server_env(), "BUCKETS": "ml-pipeline,airflow-logs", "S3_ENDPOINT": s3.url,
               "S3_REGION": "us-east-1", "WAIT_S": "20"}  # fmt: skip
        outputs = []
        for _ in range(2):
            proc = subprocess.run(
                [sys.executable, str(tmp_path / "create_bucket.py")], env=env, capture_output=True, text=True,
                timeout=60, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr
            outputs.append(proc.stdout)
        names = {b["Name"] for b in s3.client().list_buckets()["Buckets"]}
    assert {"ml-pipeline", "airflow-logs"} <= names
    assert "bucket airflow-logs created" in outputs[0]
    assert "bucket airflow-logs exists" in outputs[1] and "bucket ml-pipeline exists" in outputs[1]


def test_data_volume_is_kept_on_uninstall():
    pvc = get(render_chart({"minio": {"persistence": {"size": "7Gi"}}}), "PersistentVolumeClaim", "mlp-minio")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "7Gi"
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
