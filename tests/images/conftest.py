"""Fixtures for the image tests: a Docker engine, a base image, the images built by the Makefile.

The images are built exactly as a user builds them (`make image-<name>`), tagged
``ml-pipeline/<name>:test`` so a developer's ``:latest`` is left alone. Docker's layer cache makes a
second session reuse an up-to-date image in seconds; a fresh machine builds it cold.

Which base: ``ML_PIPELINE_TEST_BASE_IMAGE`` when set (``default`` for the Dockerfiles' own
digest-pinned base, which needs a registry), else the local debootstrap base of ``make
local-base`` (needs root, debootstrap and Debian's mirrors, no registry). Build logs go to
``<tmp>/image-builds/<name>.log``; a failed build shows its tail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port, unavailable

REPO = Path(__file__).resolve().parents[2]
LOCAL_BASE = "ml-pipeline/local-base:bookworm"
TAG = os.environ.get("ML_PIPELINE_TEST_IMAGE_TAG", "test")  # separate tags for builds side by side
DOCKER_HINT = "apt-get install -y docker.io debootstrap, then `make dockerd` (see docs/images.md)"

# What the session built, printed at the end of the run (sizes are part of the report).
BUILD_REPORT: list[str] = []


def docker_executable() -> str | None:
    """Debian's client (it speaks BuildKit to the engine), else whatever `docker` is on PATH."""
    configured = os.environ.get("DOCKER")
    if configured:
        return configured
    if Path("/usr/bin/docker").exists():
        return "/usr/bin/docker"
    return shutil.which("docker")


@dataclass(frozen=True)
class Docker:
    executable: str

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.executable, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"docker {' '.join(args[:3])} ... exited {proc.returncode}:\n{proc.stderr[-3000:]}",
                pytrace=False,
            )
        return proc

    def inspect(self, image: str) -> dict:
        return json.loads(self.run("image", "inspect", image).stdout)[0]


@dataclass(frozen=True)
class Image:
    name: str
    ref: str
    size_bytes: int


@pytest.fixture(scope="session")
def docker() -> Docker:
    executable = docker_executable()
    if executable is None:
        unavailable("a Docker client", DOCKER_HINT)
    try:
        info = subprocess.run([executable, "info"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        unavailable(f"the Docker client {executable} ({exc})", DOCKER_HINT)
    if info.returncode != 0:
        unavailable(f"a running Docker engine ({info.stderr.strip()[:200]})", DOCKER_HINT)
    return Docker(executable)


def _make(target: str, log: Path, **variables: str) -> None:
    args = ["make", "--no-print-directory", target, *(f"{k}={v}" for k, v in variables.items())]
    with log.open("w") as out:
        proc = subprocess.run(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        pytest.fail(f"`{' '.join(args)}` failed (log: {log}):\n" + "\n".join(tail), pytrace=False)


@pytest.fixture(scope="session")
def build_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image-builds")


@pytest.fixture(scope="session")
def base_image(docker: Docker, build_logs: Path) -> str:
    """The BASE_IMAGE the images are built from ('' = the Dockerfiles' default)."""
    wanted = os.environ.get("ML_PIPELINE_TEST_BASE_IMAGE")
    if wanted:
        return "" if wanted == "default" else wanted
    if docker.run("image", "inspect", LOCAL_BASE, check=False).returncode != 0:
        if os.geteuid() != 0 or shutil.which("debootstrap") is None:
            unavailable(
                f"the local base image {LOCAL_BASE}",
                "run `sudo make local-base` (needs debootstrap), or set ML_PIPELINE_TEST_BASE_IMAGE=default "
                "to build from the registry's python image",
            )
        _make("local-base", build_logs / "local-base.log", DOCKER=docker.executable)
    return LOCAL_BASE


def build(docker: Docker, base: str, logs: Path, name: str) -> Image:
    started = time.monotonic()
    _make(
        f"image-{name}",
        logs / f"{name}.log",
        BASE_IMAGE=base,
        IMAGE_TAG=TAG,
        DOCKER=docker.executable,
        PYTHON=sys.executable,  # this interpreter's pip stages torch's CPU wheel (its own config)
    )
    seconds = time.monotonic() - started
    ref = f"ml-pipeline/{name}:{TAG}"
    size = docker.inspect(ref)["Size"]
    source = base or "the default base"
    BUILD_REPORT.append(f"{ref}: {size / 1e6:,.0f} MB (built or refreshed in {seconds:.0f} s from {source})")
    return Image(name, ref, size)


@pytest.fixture(scope="session")
def pipeline_image(docker: Docker, base_image: str, build_logs: Path) -> Image:
    return build(docker, base_image, build_logs, "pipeline")


@pytest.fixture(scope="session")
def airflow_image(docker: Docker, base_image: str, build_logs: Path) -> Image:
    return build(docker, base_image, build_logs, "airflow")


@pytest.fixture(scope="session")
def mlflow_image(docker: Docker, base_image: str, build_logs: Path) -> Image:
    return build(docker, base_image, build_logs, "mlflow")


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str
    key: str = "images-test"
    secret: str = "images-test-secret"

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory):
    """A real S3 endpoint on the host (moto's server on a free loopback port)."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        unavailable("moto's S3 server", "pip install -e '.[dev]' (moto[server])")
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = S3Endpoint(f"http://127.0.0.1:{port}", "ml-pipeline")
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"moto server exited {proc.returncode}: {log.read_text()[-2000:]}", pytrace=False)
            try:
                endpoint.client().create_bucket(Bucket=endpoint.bucket)
                break
            except Exception:  # not listening yet
                time.sleep(0.2)
        else:
            pytest.fail(f"no answer from moto on {endpoint.url}: {log.read_text()[-2000:]}", pytrace=False)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def pytest_terminal_summary(terminalreporter) -> None:
    if BUILD_REPORT:
        terminalreporter.section("container images")
        for line in BUILD_REPORT:
            terminalreporter.write_line(line)
