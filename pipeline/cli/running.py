"""Running the pipeline: `run`, `step`, `steps`, and the checks around it: `config`, `doctor`."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer
import yaml
from rich.table import Table

from pipeline import steps as registry
from pipeline.cli import (
    ConfigOption,
    SetOption,
    _prepare,
    app,
    console,
    fail,
    load_settings,
    reported,
    saved_outputs,
)
from pipeline.errors import EXIT_BAD_INPUT, exit_code_for
from pipeline.steps import STEP_NAMES, describe

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
    allow_config_change: Annotated[
        bool,
        typer.Option(
            "--allow-config-change",
            help="Resume a run id with a configuration other than the one it recorded.",
        ),
    ] = False,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache", help="Run every step, reusing nothing from earlier runs (the step cache)."
        ),
    ] = False,
    rerun: Annotated[
        str | None,
        typer.Option(
            "--rerun",
            help="Run this step and every step after it again, even if cached (a model step: from train).",
        ),
    ] = None,
) -> None:
    """Run every step on this machine, resuming a run id where it stopped (with the configuration
    it recorded: a different --config/--set is refused without --allow-config-change). A step whose
    inputs, code and settings have not changed since an earlier run reuses that run's outputs."""
    _prepare()
    from pipeline.runner import make_store, new_run_id, run_pipeline
    from pipeline.storage import utcnow

    resuming = run_id is not None
    run_id = run_id or new_run_id()
    with reported():
        if rerun is not None and rerun not in registry.STEP_NAMES:
            from pipeline.errors import ConfigError

            raise ConfigError(
                f"--rerun: unknown step {rerun!r}; valid steps: {', '.join(registry.STEP_NAMES)}"
            )
        settings = load_settings(config, overrides)
        if resuming:
            from pipeline.context import check_run_id
            from pipeline.recorded import settings_for_resume

            settings = settings_for_resume(
                make_store(settings),
                check_run_id(run_id),
                settings,
                explicit=config is not None or bool(overrides),
                allow_change=allow_config_change,
            )
    console.print(
        f"Run {run_id}  dataset {settings.data.name}  home {settings.home}", highlight=False, markup=False
    )
    started, since = time.monotonic(), utcnow()
    with _step_display() as display:
        try:
            manifests = run_pipeline(
                settings,
                run_id,
                force=force,
                on_step=display.on_step,
                use_cache=False if no_cache else None,
                rerun_from=rerun,
            )
            error = None
        except (Exception, KeyboardInterrupt) as exc:
            error = exc
            display.failed()
    if error is not None:
        step = display.current
        raise fail(
            error,
            f"step {step}: " if step else "",
            details=saved_outputs(settings, run_id, step, since) if step else None,
            resume=f"pipeline run --run-id {run_id}" if _resume_can_help(error, step) else None,
        ) from None
    if all(m.reused_from for m in manifests.values()):
        _nothing_changed(run_id, manifests, time.monotonic() - started)
    else:
        _closing_summary(settings, run_id, manifests, time.monotonic() - started)


def _nothing_changed(run_id: str, manifests, elapsed: float) -> None:
    """Every step reused an earlier run's outputs: nothing was trained or registered."""
    register = manifests["register"]
    summary = register.summary
    since = register.reused_from["run_id"]
    champion = summary.get("champion_version")
    stands = f"champion v{champion} stands" if champion else "no champion"
    message = f"nothing changed since run {since}; {stands}"
    console.rule("[bold green]pipeline finished (all steps cached)")
    console.print(message, highlight=False, markup=False, soft_wrap=True)
    console.print(
        f"  (rerun with `pipeline run --no-cache` or `--rerun STEP`; took {elapsed:.0f}s)",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    print(
        json.dumps(
            {
                "run_id": run_id,
                "cached": True,
                "reused_from": since,
                "message": message,
                "model_name": summary["model_name"],
                "version": summary["version"],
                "champion_version": champion,
                "promoted": False,
                "reason": message,
                "mlflow_run_id": manifests["train"].summary["mlflow_run_id"],
            },
            sort_keys=True,
        ),
        flush=True,
    )


def _resume_can_help(error: BaseException, step: str | None) -> bool:
    """A resume re-runs the failed step on what the steps before it kept: it helps after a
    retryable failure, and after bad input only in the first step, which reads the source again
    (a source fixed in place, a file that was not there yet); a later step would see the same
    kept snapshot and fail the same way."""
    if exit_code_for(error) != EXIT_BAD_INPUT:
        return True
    return step is not None and step == registry.STEPS[0].name


class _StepDisplay:
    """What ``pipeline run`` shows of its steps. On a terminal: a live list with spinners. Anywhere
    else (a file, a pipe, a pod's log): one plain line per step as it ends, no control character
    (no cursor movement, no colour, no spinner glyph)."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.live = console.is_terminal
        self.started: dict[str, float] = {}
        self.progress = None
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> _StepDisplay:
        if self.live:
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
            )
            self.progress.__enter__()
            self.tasks = {
                s.name: self.progress.add_task(f"[dim]{s.name:<11}[/] waiting", total=1, start=False)
                for s in registry.STEPS
            }
        return self

    def __exit__(self, *exc_info) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc_info)

    def _line(self, name: str, text: str) -> None:
        took = time.monotonic() - self.started.get(name, time.monotonic())
        console.print(f"  {name:<11} {text} ({took:.0f}s)", highlight=False, markup=False, soft_wrap=True)

    def on_step(self, name: str, event: str, manifest) -> None:
        if event == "started":
            self.current = name
            self.started[name] = time.monotonic()
        if self.progress is None:
            if event == "kept":
                console.print(f"  {name:<11} already done (kept)", highlight=False, markup=False)
            elif event == "reused":
                self._line(name, _reused(manifest))
            elif event != "started":
                self._line(name, describe(name, manifest.summary))
            return
        from rich.markup import escape

        task, progress = self.tasks[name], self.progress
        if event == "started":
            progress.start_task(task)
            progress.update(task, description=f"[cyan]{name:<11}[/] running")
        elif event == "kept":
            progress.update(task, description=f"[green]{name:<11}[/] already done (kept)", completed=1)
        elif event == "reused":
            progress.update(
                task, description=f"[green]{name:<11}[/] {escape(_reused(manifest))}", completed=1
            )
            progress.stop_task(task)
        else:
            summary = escape(describe(name, manifest.summary))
            progress.update(task, description=f"[green]{name:<11}[/] {summary}", completed=1)
            progress.stop_task(task)

    def failed(self) -> None:
        """The current step failed: it is marked so, and every step after it as not run."""
        names = [s.name for s in registry.STEPS]
        rest = names[names.index(self.current) + 1 :] if self.current in names else []
        if self.progress is None:
            if self.current is not None:
                self._line(self.current, "failed")
            if rest:
                console.print(f"  not run: {', '.join(rest)}", highlight=False, markup=False)
            return
        for name, task in self.tasks.items():
            if name == self.current:
                self.progress.update(task, description=f"[red]{name:<11}[/] failed")
            elif not self.progress.tasks[task].finished:
                self.progress.update(task, description=f"[dim]{name:<11}[/] not run", completed=1)
            self.progress.stop_task(task)


def _reused(manifest) -> str:
    origin = manifest.reused_from
    return f"cached: reused from run {origin['run_id']}, step {origin['step']}"


def _step_display() -> _StepDisplay:
    return _StepDisplay()


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
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Run the step even if an earlier run's outputs fit.")
    ] = False,
) -> None:
    """Run one step for a run id (what each Airflow task runs), or reuse an earlier run's outputs
    when its inputs, code and settings are unchanged; prints a JSON summary on stdout."""
    _prepare()
    from pipeline import torchrun
    from pipeline.errors import ConfigError
    from pipeline.runner import emit_summary, execute_step, step_summary
    from pipeline.storage import utcnow

    since, loaded = utcnow(), {}

    def details() -> list[str]:
        settings = loaded.get("settings")
        return saved_outputs(settings, run_id, name, since) if settings is not None else []

    with reported(f"step {name}: ", details=details):
        if name not in registry.STEP_NAMES:
            raise ConfigError(f"unknown step {name!r}; valid steps: {', '.join(registry.STEP_NAMES)}")
        loaded["settings"] = settings = load_settings(config, overrides)
        launch = torchrun.step_launch(name)
        if launch is not None and launch.rank > 0:
            torchrun.follow(settings.train)  # rank 0 runs the step; this rank only trains its shard
            return
        manifest = execute_step(settings, run_id, name, use_cache=False if no_cache else None)
        if launch is not None:
            torchrun.release_followers(settings.train)  # no-op when the training took them along
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
