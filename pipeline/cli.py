"""The ``pipeline`` command line (also ``python -m pipeline``).

Heavy libraries are imported inside the commands that need them, so ``pipeline --help`` and the
Airflow DAG's parse stay fast.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from pipeline import steps as registry
from pipeline.errors import EXIT_BAD_INPUT, EXIT_RETRYABLE, PipelineError, exit_code_for, one_line
from pipeline.redaction import redact
from pipeline.steps import STEP_NAMES, describe

app = typer.Typer(
    name="pipeline",
    help="End-to-end ML training pipeline: ingest, validate, preprocess, features, version, train, "
    "evaluate, register.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True)
logger = logging.getLogger("pipeline")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config (dataset, contract, hyperparameters). Default: PIPELINE_CONFIG "
        "or the packaged penguins config.",
        exists=False,
        dir_okay=False,
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one setting, e.g. --set train.max_epochs=5 (repeatable)."),
]


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["train.max_epochs=5", "data.source.uri=x.csv"]`` -> nested dict (values parsed as YAML)."""
    from pipeline.errors import ConfigError

    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.max_epochs=5")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = result
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is set twice")
        node[parts[-1]] = value
    return result


def load_settings(config: Path | None, overrides: list[str] | None):
    from pydantic import ValidationError

    from pipeline.errors import ConfigError
    from pipeline.settings import Settings

    try:
        settings = Settings.load(config, **parse_overrides(overrides))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise ConfigError(
            f"invalid configuration ({config or os.environ.get('PIPELINE_CONFIG') or 'default'}): {problems}"
        ) from None
    if _COMMAND_LEVEL is None:  # a command that fixes its own level (e.g. `config`) keeps it
        logging.getLogger().setLevel(settings.log_level)
    return settings


_COMMAND_LEVEL: str | None = None


def _prepare(level: str | None = None) -> None:
    """Logging, telemetry and signals for a command. ``level`` fixes the command's log level;
    without it the level is ``PIPELINE_LOG_LEVEL`` until the settings load, then ``log_level``."""
    from pipeline.logs import setup_logging
    from pipeline.tracking import quiet_telemetry

    global _COMMAND_LEVEL
    _COMMAND_LEVEL = level
    setup_logging(level or os.environ.get("PIPELINE_LOG_LEVEL", "INFO"))
    quiet_telemetry()

    def on_sigterm(signum, frame):  # let finally-blocks run: MLflow runs end as KILLED, temp dirs go
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_sigterm)


def fail(exc: BaseException, context: str = "") -> typer.Exit:
    """Print a clear error and map it to the exit-code contract."""
    code = exit_code_for(exc)
    if isinstance(exc, KeyboardInterrupt):
        message = f"interrupted ({exc or 'Ctrl-C'})"
    elif isinstance(exc, PipelineError):
        message = str(exc)
    else:
        logger.error("unexpected error", exc_info=exc)
        message = f"{type(exc).__name__}: {exc}"
    kind = "bad input" if code == EXIT_BAD_INPUT else "failed (retryable)"
    message = redact(message)
    console.print(f"[bold red]{context}{kind}:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    # The last line of stderr is always one line: what an alert or a task log shows.
    print(
        f"pipeline: error: {context}{one_line(message)}",
        file=sys.stderr,
        flush=True,
    )
    return typer.Exit(code)


@contextlib.contextmanager
def reported(context: str = "", resume: Callable[[], str | None] | None = None) -> Iterator[None]:
    """Every command's error path: any failure inside is printed once, redacted, and mapped to the
    exit-code contract by :func:`fail`; ``resume`` names the command that resumes the work when
    the failure is worth a retry."""
    try:
        yield
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        hint = resume() if resume is not None else None
        if hint and exit_code_for(exc) == EXIT_RETRYABLE:
            console.print(f"Resume with: [bold]{hint}[/]")
        raise fail(exc, context) from None


# --------------------------------------------------------------------------------------------
# run / step
# --------------------------------------------------------------------------------------------


@app.command()
def run(
    config: ConfigOption = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Resume or name a run (default: a new id).")
    ] = None,
    overrides: SetOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Re-run every step, even those already done.")
    ] = False,
) -> None:
    """Run every step on this machine, resuming a run id where it stopped."""
    _prepare()
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pipeline.runner import new_run_id, run_pipeline

    run_id = run_id or new_run_id()
    with reported():
        settings = load_settings(config, overrides)
    console.print(f"[bold]Run[/] {run_id}  dataset [bold]{settings.data.name}[/]  home {settings.home}")
    current = {"step": None}
    started = time.monotonic()
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks = {
            s.name: progress.add_task(f"[dim]{s.name:<11}[/] waiting", total=1, start=False)
            for s in registry.STEPS
        }

        def on_step(name: str, event: str, manifest) -> None:
            task = tasks[name]
            if event == "started":
                current["step"] = name
                progress.start_task(task)
                progress.update(task, description=f"[cyan]{name:<11}[/] running")
            elif event == "kept":
                progress.update(task, description=f"[green]{name:<11}[/] already done (kept)", completed=1)
            else:
                progress.update(
                    task,
                    description=f"[green]{name:<11}[/] {describe(name, manifest.summary)}",
                    completed=1,
                )
                progress.stop_task(task)

        error: BaseException | None = None
        try:
            manifests = run_pipeline(settings, run_id, force=force, on_step=on_step)
        except (Exception, KeyboardInterrupt) as exc:
            error = exc
            failed = current["step"]
            for name, task in tasks.items():
                if name == failed:
                    progress.update(task, description=f"[red]{name:<11}[/] failed")
                elif not progress.tasks[task].finished:
                    progress.update(task, description=f"[dim]{name:<11}[/] not run", completed=1)
                progress.stop_task(task)
    if error is not None:
        step = current["step"]
        console.print(f"Resume with: [bold]pipeline run --run-id {run_id}[/]")
        raise fail(error, f"step {step}: " if step else "") from None
    _closing_summary(settings, run_id, manifests, time.monotonic() - started)


def _closing_summary(settings, run_id: str, manifests, elapsed: float) -> None:
    register = manifests["register"].summary
    train = manifests["train"].summary
    evaluate = manifests["evaluate"].summary
    metric = evaluate["primary_metric"]
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # ids, URIs and paths are copied: folded, never cut short
    table.add_row("run id", run_id)
    table.add_row("model", f"{register['model_name']} version {register['version']}")
    table.add_row("aliases", ", ".join(register["aliases"]) or "-")
    table.add_row(
        "gate", f"{'promoted to champion' if register['promoted'] else 'not promoted'}: {register['reason']}"
    )
    table.add_row(
        f"test {metric}", f"{evaluate['test'][metric]:.4f} (baseline {evaluate['baseline'][metric]:.4f})"
    )
    table.add_row("mlflow run", train["mlflow_run_id"])
    table.add_row(
        "tracking", settings.resolved_tracking_uri if settings.uses_embedded_tracking else "(server)"
    )
    table.add_row("artifacts", f"{settings.resolved_artifact_root}/runs/{run_id}")
    table.add_row("took", f"{elapsed:.0f}s")
    console.rule("[bold green]pipeline finished")
    console.print(table)
    model, version = register["model_name"], register["version"]
    hints = [
        (f"pipeline show {model}@champion", "lineage of the champion"),
        ("pipeline ui", "open the MLflow UI (http://127.0.0.1:5000)"),
        (f"pipeline fetch-data {model}/{version} --dest ./data-v{version}", "the data behind this version"),
    ]
    width = max(len(command) for command, _ in hints)
    console.print("\nNext:", highlight=False)
    for command, comment in hints:
        # soft_wrap: a command is copied from the screen, so it is never broken across lines
        console.print(f"  {command:<{width}}  # {comment}", soft_wrap=True, highlight=False, markup=False)
    # Machine-readable, on stdout.
    print(
        json.dumps(
            {
                "run_id": run_id,
                "model_name": register["model_name"],
                "version": register["version"],
                "aliases": register["aliases"],
                "promoted": register["promoted"],
                "reason": register["reason"],
                "mlflow_run_id": train["mlflow_run_id"],
            },
            sort_keys=True,
        ),
        flush=True,
    )


@app.command()
def step(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(STEP_NAMES)}.")],
    run_id: Annotated[str, typer.Option("--run-id", help="The run this step belongs to.")],
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Run one step for a run id (what each Airflow task runs); prints a JSON summary on stdout."""
    _prepare()
    from pipeline.errors import ConfigError
    from pipeline.runner import emit_summary, execute_step, step_summary

    with reported(f"step {name}: "):
        if name not in registry.STEP_NAMES:
            raise ConfigError(f"unknown step {name!r}; valid steps: {', '.join(registry.STEP_NAMES)}")
        settings = load_settings(config, overrides)
        manifest = execute_step(settings, run_id, name)
    emit_summary(step_summary(manifest))


@app.command("steps")
def list_steps() -> None:
    """List the steps in order."""
    for index, spec in enumerate(registry.STEPS, 1):
        typer.echo(f"{index}. {spec.name:<11} {spec.summary}")


@app.command("config")
def show_config(config: ConfigOption = None, overrides: SetOption = None) -> None:
    """Print the resolved configuration (secrets masked)."""
    with reported():
        settings = load_settings(config, overrides)
    typer.echo(yaml.safe_dump(settings.redacted(), sort_keys=False))


@app.command()
def doctor(
    config: ConfigOption = None,
    overrides: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON on stdout.")] = False,
) -> None:
    """Check every configured backend (S3, DVC remote, feature store, MLflow, GPU); one line per
    problem. Exit 0 when all pass, 65 when a setting must change, 75 when a backend did not answer."""
    _prepare("WARNING")
    from pipeline.doctor import run_checks

    with reported("doctor: "):
        settings = load_settings(config, overrides)
        report = run_checks(settings)
    if as_json:  # one JSON line on stdout (and /airflow/xcom/return.json in a pod), like a step
        from pipeline.runner import emit_summary

        emit_summary(report.to_dict())
    else:
        for check in report.checks:
            typer.echo(check.line())
    problems = report.problems
    if problems:
        print(
            f"pipeline: error: doctor: {len(problems)} problem(s): "
            + " | ".join(f"{c.name}: {c.message}" for c in problems),
            file=sys.stderr,
            flush=True,
        )
    raise typer.Exit(report.exit_code)


# --------------------------------------------------------------------------------------------
# lineage
# --------------------------------------------------------------------------------------------

ModelRef = Annotated[str, typer.Argument(help="NAME, NAME@ALIAS (e.g. penguins@champion) or NAME/VERSION.")]


@app.command()
def show(
    model: ModelRef,
    config: ConfigOption = None,
    overrides: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the lineage as JSON.")] = False,
) -> None:
    """Print the lineage of a registered model version: data, code, config, metrics, gate."""
    _prepare("WARNING")
    from pipeline.lineage import describe, resolve_version

    with reported():
        settings = load_settings(config, overrides)
        version = resolve_version(settings, model)
        lineage = describe(settings, version)
    if as_json:
        typer.echo(json.dumps(lineage, indent=2, sort_keys=True, default=str))
        return
    from pipeline.lineage import render

    render(lineage, console=Console())


@app.command("fetch-data")
def fetch_data(
    model: ModelRef,
    dest: Annotated[Path, typer.Option("--dest", help="An empty or new folder to fetch into.")],
    which: Annotated[str, typer.Option("--which", help="raw or processed")] = "raw",
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Fetch the exact data behind a model version from the DVC remote."""
    _prepare("WARNING")
    from pipeline.lineage import fetch_version_data, resolve_version

    with reported():
        settings = load_settings(config, overrides)
        version = resolve_version(settings, model)
        path = fetch_version_data(settings, version, dest, which)
    typer.echo(str(path))


@app.command()
def reproduce(
    model: ModelRef,
    tolerance: Annotated[float, typer.Option(help="Largest accepted difference of a test metric.")] = 1e-6,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Fetch a version's data through DVC, retrain it with its recorded configuration in a scratch
    sandbox, and say whether the test metrics match (exit 0 if they do, 1 if not)."""
    _prepare("WARNING")
    from pipeline.lineage import resolve_version
    from pipeline.reproduce import reproduce as run_reproduction

    with reported():
        settings = load_settings(config, overrides)
        version = resolve_version(settings, model)
        result = run_reproduction(settings, version, tolerance)
    table = Table(title=f"{result.model} v{result.version} (data sha256 {result.data_sha256[:12]})")
    for column in ("metric", "original", "reproduced", "match"):
        table.add_column(column)
    for key, value in sorted(result.original.items()):
        again = result.reproduced.get(key, float("nan"))
        table.add_row(key, f"{value:.6f}", f"{again:.6f}", "yes" if key not in result.differences else "NO")
    console.print(table)
    verdict = "reproduced" if result.matches else "NOT reproduced"
    console.print(f"[bold]{verdict}[/] within tolerance {tolerance}")
    print(json.dumps(result.to_dict(), sort_keys=True), flush=True)
    raise typer.Exit(0 if result.matches else 1)


@app.command()
def ui(
    port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Open the MLflow UI on the embedded store (for a server, browse to it instead)."""
    from pipeline.tracking import prepare_sqlite, quiet_telemetry

    with reported("ui: "):
        settings = load_settings(config, overrides)
    quiet_telemetry()
    if not settings.uses_embedded_tracking:
        typer.echo(f"Tracking is on a server: open {settings.resolved_tracking_uri} in a browser.")
        raise typer.Exit(0)
    uri = settings.resolved_tracking_uri
    prepare_sqlite(uri)
    typer.echo(f"MLflow UI on http://{host}:{port}  (store {uri}; Ctrl-C to stop)", err=True)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    os.execvp(command[0], command)  # noqa: S606 - replaces this process with the MLflow UI


# --------------------------------------------------------------------------------------------
# experiments: sweep and report (pipeline/sweep.py, pipeline/report.py, docs/experiments.md)
# --------------------------------------------------------------------------------------------

SWEEP_STAGES = ("all", "prepare", "worker", "finalize")


@app.command()
def sweep(
    config: ConfigOption = None,
    overrides: SetOption = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="The run the sweep belongs to; the same id resumes its study."),
    ] = None,
    stage: Annotated[
        str,
        typer.Option(
            "--stage",
            help="all: prepare, run the trials, finalize; prepare: data steps, study, parent run; "
            "worker: run trials of the study (one per pod); finalize: train, evaluate and register the "
            "best trial, write the report.",
        ),
    ] = "all",
    trials: Annotated[
        int | None,
        typer.Option(
            "--trials",
            min=1,
            help="all/prepare: trials of the study in total (default sweep.n_trials); worker: at most "
            "this many trials by this worker.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="all: local worker processes (default sweep.workers)."),
    ] = None,
    slot: Annotated[
        int, typer.Option("--slot", min=0, help="worker: this worker's slot (seeds its sampler apart).")
    ] = 0,
) -> None:
    """Hyperparameter search (Optuna, nested MLflow runs); the best trial goes through the gate."""
    _prepare()
    from pipeline.errors import ConfigError
    from pipeline.runner import emit_summary, new_run_id

    with reported(f"sweep {stage}: ", resume=lambda: run_id and f"pipeline sweep --run-id {run_id}"):
        if stage not in SWEEP_STAGES:
            raise ConfigError(f"--stage {stage!r}: use one of {', '.join(SWEEP_STAGES)}")
        if stage != "all" and run_id is None:
            raise ConfigError(f"--stage {stage} needs the --run-id of the sweep")
        run_id = run_id or new_run_id()
        settings = load_settings(config, overrides)
        from pipeline import sweep as sweeping

        if stage == "prepare":
            summary = sweeping.prepare(settings, run_id, n_trials=trials)
        elif stage == "worker":
            summary = sweeping.work(settings, run_id, slot=slot, max_trials=trials)
        elif stage == "finalize":
            summary = sweeping.finalize(settings, run_id)
        else:
            count = workers or settings.sweep.workers
            command = [sys.executable, "-m", "pipeline", "sweep", "--stage", "worker", "--run-id", run_id]
            if config is not None:
                command += ["--config", str(config)]
            for item in overrides or []:
                command += ["--set", item]
            console.print(f"[bold]Sweep[/] {run_id}  dataset [bold]{settings.data.name}[/]  workers {count}")
            summary = sweeping.run_all(
                settings, run_id, n_trials=trials, workers=count, worker_command=command
            )
    if stage in ("all", "finalize"):
        console.print(
            f"best trial {summary['best_trial']} ({summary['objective']} {summary['best_value']:.4f}) -> "
            f"{summary['model_name']} v{summary['version']} "
            f"{'promoted to champion' if summary['promoted'] else 'not promoted'}: {summary['reason']}"
        )
        if summary.get("report"):
            console.print(f"report: {summary['report']}")
    emit_summary(summary)


@app.command()
def report(
    config: ConfigOption = None,
    overrides: SetOption = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="HTML file to write.", dir_okay=False)
    ] = Path("experiment-report.html"),
    experiments: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment", "-e", help="MLflow experiment (repeatable; default the configured one)."
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML dashboard of an experiment (opens from the file, no server)."""
    _prepare("WARNING")
    from pipeline.report import write_report

    with reported("report: "):
        settings = load_settings(config, overrides)
        path = write_report(settings, output, experiments)
    typer.echo(str(path.resolve()))


def main() -> None:
    from pipeline.redaction import install_stream_redaction, register_environment

    # Everything this process prints goes through the one redaction (pipeline.redaction): the
    # environment's secrets are known before the settings are even read.
    register_environment()
    install_stream_redaction()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_RETRYABLE)


if __name__ == "__main__":
    main()
