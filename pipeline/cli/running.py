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
)
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
) -> None:
    """Run every step on this machine, resuming a run id where it stopped (with the configuration
    it recorded: a different --config/--set is refused without --allow-config-change)."""
    _prepare()
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from pipeline.runner import make_store, new_run_id, run_pipeline

    resuming = run_id is not None
    run_id = run_id or new_run_id()
    with reported():
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
