"""The pipeline image, built on this machine by `make image-pipeline`, running steps like a pod.

A step pod runs the image's entrypoint with arguments only (`step <name> --run-id <id>`), as UID
and GID 10001, without capabilities or privilege escalation, an emptyDir on PIPELINE_HOME, its
settings from PIPELINE_* variables, and /airflow/xcom shared with the XCom sidecar. The tests run
the container the same way (stricter still: a read-only root file system with /tmp on tmpfs),
with --network host so the step reaches services on the host.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
import tomllib
import uuid
from pathlib import Path

import pytest

from tests.images.conftest import REPO, Docker, Image, S3Endpoint

pytestmark = pytest.mark.docker

UID = 10001
EXIT_BAD_INPUT = 65


def pod_args(image: Image, xcom: Path | None, env: dict[str, str], *volumes: str) -> list[str]:
    """`docker run` arguments equivalent to the step pod's securityContext and volumes."""
    args = [
        "run", "--rm", "--network", "host", "--user", f"{UID}:{UID}",
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--tmpfs", "/tmp",
        "--tmpfs", f"/var/lib/ml-pipeline:uid={UID},gid={UID},mode=0750",
    ]  # fmt: skip
    if xcom is not None:
        args += ["-v", f"{xcom}:/airflow/xcom"]
    for volume in volumes:
        args += ["-v", volume]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    return [*args, image.ref]


def run_step(
    docker: Docker,
    image: Image,
    step: str,
    run_id: str,
    env: dict[str, str],
    xcom: Path | None,
    *volumes: str,
) -> subprocess.CompletedProcess[str]:
    args = pod_args(image, xcom, env, *volumes)
    return docker.run(*args, "step", step, "--run-id", run_id, timeout=600, check=False)


def summary_of(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    report = f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report
    assert lines, report
    return json.loads(lines[-1])


def new_xcom(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / f"xcom-{name}"
    folder.mkdir()
    folder.chmod(0o777)  # the pod's shared emptyDir: the step (UID 10001) writes return.json there
    return folder


def test_steps_run_against_s3_on_the_host(
    docker: Docker, pipeline_image: Image, s3_endpoint: S3Endpoint, tmp_path: Path
) -> None:
    """ingest -> validate -> preprocess, each in a fresh container: data flows only through S3."""
    run_id = f"image-test-{uuid.uuid4().hex[:8]}"
    root = f"s3://{s3_endpoint.bucket}/artifacts"
    env = {
        "PIPELINE_ARTIFACT_ROOT": root,
        "PIPELINE_S3__ENDPOINT_URL": s3_endpoint.url,
        "PIPELINE_S3__ACCESS_KEY_ID": s3_endpoint.key,
        "PIPELINE_S3__SECRET_ACCESS_KEY": s3_endpoint.secret,
        "PIPELINE_LOG_LEVEL": "INFO",
    }
    client = s3_endpoint.client()
    for step in ("ingest", "validate", "preprocess"):
        xcom = new_xcom(tmp_path, step)
        proc = run_step(docker, pipeline_image, step, run_id, env, xcom)
        summary = summary_of(proc)
        assert (summary["step"], summary["run_id"], summary["status"]) == (step, run_id, "succeeded")

        # What the XCom sidecar reads is the summary on stdout, written by the step's own user.
        returned = xcom / "return.json"
        assert json.loads(returned.read_text()) == summary
        assert returned.stat().st_uid == UID

        prefix = f"{root}/runs/{run_id}/{step}/"
        assert summary["outputs"], summary
        for name, uri in summary["outputs"].items():
            assert uri.startswith(prefix), (name, uri)
            key = uri[len(f"s3://{s3_endpoint.bucket}/") :].rstrip("/")
            listed = client.list_objects_v2(Bucket=s3_endpoint.bucket, Prefix=key)
            keys = [item["Key"] for item in listed.get("Contents", [])]
            if key not in keys:  # a folder output (e.g. data docs): objects under it
                assert any(k.startswith(f"{key}/") for k in keys), (name, uri)
                continue
            body = client.get_object(Bucket=s3_endpoint.bucket, Key=key)["Body"].read()
            assert body, uri
            if name in summary.get("hashes", {}):
                assert hashlib.sha256(body).hexdigest() == summary["hashes"][name], name
        # No credential leaks into what the step prints or logs.
        assert s3_endpoint.secret not in proc.stdout + proc.stderr


def test_host_folder_artifact_root_and_bad_input_exit_code(
    docker: Docker, pipeline_image: Image, tmp_path: Path
) -> None:
    """A host folder as the artifact root; a missing upstream is bad input (65), never retried."""
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    artifacts.chmod(0o777)
    env = {"PIPELINE_ARTIFACT_ROOT": "/data/artifacts"}
    volume = f"{artifacts}:/data/artifacts"
    run_id = f"image-test-{uuid.uuid4().hex[:8]}"

    early = run_step(docker, pipeline_image, "validate", run_id, env, None, volume)
    assert early.returncode == EXIT_BAD_INPUT, early.stderr[-3000:]
    assert "ingest" in early.stderr

    summary = summary_of(run_step(docker, pipeline_image, "ingest", run_id, env, None, volume))
    raw = artifacts / Path(summary["outputs"]["raw"]).relative_to("/data/artifacts")
    assert raw.is_file()
    assert raw.stat().st_uid == UID
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == summary["hashes"]["raw"]


def test_runs_as_uid_10001_with_pipeline_home(docker: Docker, pipeline_image: Image) -> None:
    code = (
        "import json, os, pathlib; home = pathlib.Path(os.environ['PIPELINE_HOME']); st = home.stat()\n"
        "print(json.dumps([os.getuid(), os.getgid(), str(home), os.getcwd(), st.st_uid, st.st_gid]))"
    )
    proc = docker.run("run", "--rm", "--entrypoint", "python", pipeline_image.ref, "-c", code)
    home = "/var/lib/ml-pipeline"
    assert json.loads(proc.stdout) == [UID, UID, home, home, UID, UID]


def test_tini_forwards_sigterm_to_the_step(docker: Docker, pipeline_image: Image) -> None:
    """PID 1 is tini: `docker stop` (a pod's SIGTERM) reaches the Python process, which exits."""
    config = docker.inspect(pipeline_image.ref)["Config"]
    assert config["Entrypoint"] == ["/usr/bin/tini", "-g", "--", "python", "-m", "pipeline"]
    # The same entrypoint, with a stand-in for a long step that reports SIGTERM and exits 143.
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('SIGTERM', flush=True), sys.exit(143)))\n"
        "print(open('/proc/1/cmdline').read().split(chr(0))[0], flush=True)\n"
        "time.sleep(600)\n"
    )
    name = f"ml-pipeline-sigterm-{uuid.uuid4().hex[:8]}"
    docker.run(
        "run", "-d", "--name", name, "--entrypoint", "/usr/bin/tini", pipeline_image.ref,
        "-g", "--", "python", "-c", code,
    )  # fmt: skip
    try:
        for _ in range(300):
            if "/usr/bin/tini" in docker.run("logs", name).stdout:
                break
            time.sleep(0.1)
        docker.run("stop", "--time", "60", name)
        state = docker.run("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
        logs = docker.run("logs", name).stdout
    finally:
        docker.run("rm", "-f", name, check=False)
    assert logs.splitlines()[:2] == ["/usr/bin/tini", "SIGTERM"], logs
    assert state == "143"  # the step's own exit, not the SIGKILL after the grace period (137)


def test_cpu_image_carries_no_cuda(docker: Docker, pipeline_image: Image) -> None:
    script = (
        "pip list --format=freeze | grep -iE '^(nvidia-|triton)' || true; "
        "find / -xdev \\( -name 'libcudart*' -o -name 'libcudnn*' -o -name 'libnccl*' "
        "-o -name 'libcublas*' -o -name 'libcuda.so*' \\) -print 2>/dev/null || true"
    )
    found = docker.run("run", "--rm", "--entrypoint", "bash", pipeline_image.ref, "-c", script).stdout.strip()
    assert found == "", f"CUDA in the CPU image:\n{found}"
    probe = "import torch; print(torch.__version__, torch.version.cuda)"
    version, cuda = docker.run(
        "run", "--rm", "--entrypoint", "python", pipeline_image.ref, "-c", probe
    ).stdout.split()
    assert version.endswith("+cpu")
    assert cuda == "None"


def test_labels_and_commit(docker: Docker, pipeline_image: Image) -> None:
    config = docker.inspect(pipeline_image.ref)["Config"]
    labels = config["Labels"]
    env = dict(item.split("=", 1) for item in config["Env"])
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert labels["org.opencontainers.image.version"] == version
    assert labels["io.ml-pipeline.torch-variant"] == "cpu"
    commit = labels["org.opencontainers.image.revision"]
    assert env["PIPELINE_GIT_COMMIT"] == commit
    match = re.fullmatch(r"([0-9a-f]{40})(-dirty)?", commit)
    assert match, commit
    known = subprocess.run(["git", "cat-file", "-e", f"{match.group(1)}^{{commit}}"], cwd=REPO, check=False)
    assert known.returncode == 0, f"{commit} is not a commit of this repository"
    assert env["PIPELINE_HOME"] == "/var/lib/ml-pipeline"
    assert config["User"] == f"{UID}:{UID}"
    # No credential-looking variable is baked in.
    assert not [key for key in env if re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", key)]


def test_image_size_is_reported(pipeline_image: Image) -> None:
    print(f"{pipeline_image.ref}: {pipeline_image.size_bytes / 1e6:,.0f} MB")
    assert pipeline_image.size_bytes > 0
