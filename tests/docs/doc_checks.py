"""How the docs' commands are run or checked: shell sessions, servers, make, helm, the chart, CLIs.

Every function here either runs a documented command for real or checks it against what the
repository really has (a make target, a chart object, a CLI option, a settings field). Failures
name the document, the line and the command (:meth:`Command.where`).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tests.conftest import FAST, clean_env
from tests.docs.doc_commands import REPO, Command, split_words
from tests.support import free_port

VENV_BIN = Path(sys.executable).parent
CONFIG_HOME = Path(tempfile.mkdtemp(prefix="docs-config-home-"))
atexit.register(shutil.rmtree, CONFIG_HOME, ignore_errors=True)
FAST_TEXT = " ".join(FAST)
# a sweep as small as one that still runs every stage: two trials of three epochs
SWEEP_FAST = f"--set sweep.max_epochs=3 {FAST_TEXT}"


# ---- shell sessions ------------------------------------------------------------------------------


@dataclass
class UserEnv:
    """A user's account: HOME (the default PIPELINE_HOME ~/.local/share/ml-pipeline lies in it), a
    PATH whose `pipeline`, `mlflow` and `dvc` are this interpreter's, and no pipeline settings."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, home: Path) -> UserEnv:
        home.mkdir(parents=True, exist_ok=True)
        env = clean_env(home)
        env.pop("PIPELINE_HOME")  # the documented default, under HOME
        for key in [k for k in env if k.startswith(("XDG_", "DVC_"))]:
            env.pop(key)
        env.update(
            HOME=str(home),
            PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
            MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false",
            DVC_NO_ANALYTICS="1",
            DVC_NO_UPDATER="1",
        )
        return cls(home, env)

    @property
    def pipeline_home(self) -> Path:
        return self.home / ".local" / "share" / "ml-pipeline"


def checkout(folder: Path) -> set[str]:
    """A folder standing for the source checkout the README's commands run in: ``pipeline/``
    (the configs) and ``.venv/bin/pipeline`` (what `make run` installs, here a shim to this
    interpreter's CLI). Returns the names placed there, so a test can see what commands add."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline").symlink_to(REPO / "pipeline", target_is_directory=True)
    shim = folder / ".venv" / "bin" / "pipeline"
    shim.parent.mkdir(parents=True)
    shim.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m pipeline "$@"\n')
    shim.chmod(0o755)
    return {"pipeline", ".venv"}


@dataclass
class Step:
    command: Command
    text: str  # what runs: the command itself, or its written-down mapping


class SessionFailedError(AssertionError):
    pass


def run_session(steps: list[Step], cwd: Path, user: UserEnv, timeout: int = 900) -> str:
    """Run ``steps`` in one bash process, in order, as a reader pasting them would (``cd`` and
    ``export`` carry over); stop at the first that fails and say which, with its output."""
    script = ["set -o pipefail"]
    for index, step in enumerate(steps):
        script += [
            f"echo '::doc-step {index}'",
            step.text,
            f"__rc=$?; if [ $__rc -ne 0 ]; then echo '::doc-failed {index}'; exit $__rc; fi",
        ]
    log = cwd.parent / f".{cwd.name}-session.log"
    with open(log, "w") as out:
        proc = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=cwd,
            env=user.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    output = log.read_text(errors="replace")
    if proc.returncode:
        started = re.findall(r"^::doc-step (\d+)$", output, flags=re.MULTILINE)
        index = int(started[-1]) if started else 0
        step = steps[index]
        tail = output.split(f"::doc-step {index}\n", 1)[-1][-4000:]
        mapped = "" if step.text == step.command.text else f"\n(run as: {step.text})"
        raise SessionFailedError(
            f"{step.command.where()}\nexited {proc.returncode} when run as documented{mapped}; "
            f"output:\n{tail}"
        )
    return output


def step_output(output: str, index: int) -> str:
    """What step ``index`` of a session printed."""
    return output.split(f"::doc-step {index}\n", 1)[1].split("::doc-step ", 1)[0]


# ---- servers ------------------------------------------------------------------------------------


def serve_and_probe(command: Command, user: UserEnv, cwd: Path, timeout: float = 240) -> str:
    """Start a documented server command on a free port, wait until it answers HTTP 200 on /,
    stop it. Returns what it printed."""
    port = free_port()
    text = f"{command.code} --port {port}"
    log = cwd.parent / f".server-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {text}"],
            cwd=cwd,
            env=user.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(
                    f"{command.where()}\nexited {proc.returncode} before answering (run as: {text}):\n"
                    f"{log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{command.where()}\nno answer on port {port} within {timeout:.0f} s")
            time.sleep(1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return log.read_text()


# ---- make ---------------------------------------------------------------------------------------


def make_dry_run(command: Command) -> str:
    """`make -n` of the documented make invocation, in the repository: the target exists and its
    recipe expands (nothing is executed). Returns the recipe make would run."""
    words = [w for w in split_words(command.text) if w != "sudo"]
    assert words[0] == "make", command.where()
    proc = subprocess.run(
        ["make", "-n", "-C", str(REPO), *words[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
    )
    assert proc.returncode == 0, f"{command.where()}\n`make -n` failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


# ---- CLIs ---------------------------------------------------------------------------------------


def long_options(command: Command) -> list[str]:
    return sorted({w.split("=", 1)[0] for w in split_words(command.text) if re.match(r"^--[a-z]", w)})


@cache
def help_text(*argv: str) -> str:
    proc = subprocess.run(
        [*argv, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**clean_env(Path("/nonexistent")), "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, f"{' '.join(argv)} --help failed:\n{proc.stderr[-2000:]}"
    return proc.stdout


def assert_options_exist(command: Command, argv: tuple[str, ...], options: list[str]) -> None:
    text = help_text(*argv)
    missing = [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", text)]
    assert not missing, f"{command.where()}\n{' '.join(argv)} has no option {', '.join(missing)}"


def pipeline_config(
    command: Command, args: list[str], env: dict[str, str], default_home: bool = False
) -> str:
    """`pipeline config` with the command's configuration arguments: they resolve to a valid
    configuration (an unknown key or a bad value fails). Returns the resolved configuration.
    ``default_home``: no PIPELINE_HOME, the default one under HOME. It writes nothing: one
    scratch home serves every call, and the same arguments resolve once."""
    returncode, output = _pipeline_config(tuple(args), tuple(sorted(env.items())), default_home)
    assert returncode == 0, (
        f"{command.where()}\nits configuration does not resolve (pipeline config {shlex.join(args)}):\n"
        f"{output[-3000:]}"
    )
    return output


@cache
def _pipeline_config(
    args: tuple[str, ...], env: tuple[tuple[str, str], ...], default_home: bool
) -> tuple[int, str]:
    environment = {**clean_env(CONFIG_HOME), **dict(env)}
    if default_home:
        environment.pop("PIPELINE_HOME")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "config", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
        env=environment,
    )
    return proc.returncode, proc.stdout + proc.stderr


def config_arguments(words: list[str], replace: dict[str, str] | None = None) -> list[str]:
    """The -c/--config and --set arguments of a pipeline command line (``replace``: placeholder
    file names -> real files)."""
    replace = replace or {}
    args: list[str] = []
    for index, word in enumerate(words[:-1]):
        if word in ("-c", "--config", "--set", "-s"):
            args += [word, replace.get(words[index + 1], words[index + 1])]
    return args


AIRFLOW_PARSE = """
import json, sys
from airflow.cli.cli_parser import get_parser
from airflow.configuration import conf
result = {"argv": {}, "options": {}}
for argv in json.loads(sys.argv[1]):
    try:
        get_parser().parse_args(argv)
        result["argv"][" ".join(argv)] = ""
    except SystemExit as exc:
        result["argv"][" ".join(argv)] = f"argparse refused it (exit {exc.code})"
for section, key in json.loads(sys.argv[2]):
    result["options"][f"{section}.{key}"] = conf.has_option(section, key)
print("::result " + json.dumps(result))
"""


@cache
def airflow_parse(argvs: tuple[tuple[str, ...], ...], options: tuple[tuple[str, str], ...]) -> dict:
    """Parse Airflow command lines with Airflow's own CLI parser (nothing runs) and look up config
    options, all in one process (Airflow takes seconds to import)."""
    with tempfile.TemporaryDirectory() as airflow_home:
        proc = subprocess.run(
            [sys.executable, "-c", AIRFLOW_PARSE, json.dumps(argvs), json.dumps(options)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**clean_env(Path(airflow_home)), "AIRFLOW_HOME": airflow_home},
        )
    found = [line for line in proc.stdout.splitlines() if line.startswith("::result ")]
    assert found, f"Airflow's CLI parser did not run:\n{proc.stderr[-3000:]}"
    return json.loads(found[-1][len("::result ") :])


def airflow_argv(words: list[str]) -> list[str]:
    """The arguments after `airflow` (also inside `kubectl exec ... -- airflow ...`)."""
    return words[words.index("airflow") + 1 :]


# ---- the repository -----------------------------------------------------------------------------


@cache
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def markers() -> set[str]:
    return {m.split(":", 1)[0].strip() for m in pyproject()["tool"]["pytest"]["ini_options"]["markers"]}


def dockerfile_args(path: Path) -> set[str]:
    return set(re.findall(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)", path.read_text(), flags=re.MULTILINE))


def mentioned_in(name: str, *folders: str) -> bool:
    """Whether ``name`` occurs in a file under ``folders`` (templates, values, code)."""
    for folder in folders:
        for path in (REPO / folder).rglob("*"):
            if (
                path.is_file()
                and path.suffix in (".yaml", ".yml", ".tpl", ".py", ".txt", "")
                and name in (path.read_text(errors="ignore"))
            ):
                return True
    return False
