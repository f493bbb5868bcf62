"""Experiments: `sweep` (pipeline/sweep/) and `report` (pipeline/report/)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli import (
    ConfigOption,
    SetOption,
    _prepare,
    app,
    console,
    load_settings,
    reported,
)

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
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="HTML file to write (default <home>/reports/<experiment>.html).",
            dir_okay=False,
        ),
    ] = None,
    experiments: Annotated[
        list[str] | None,
        typer.Option(
            "--experiment", "-e", help="MLflow experiment (repeatable; default the configured one)."
        ),
    ] = None,
) -> None:
    """Write a self-contained HTML dashboard of an experiment (opens from the file, no server). Its
    model, task and metrics come from the configuration its runs recorded."""
    _prepare("WARNING")
    from pipeline.report import write_report

    with reported("report: "):
        settings = load_settings(config, overrides)
        path = write_report(settings, output or default_report_path(settings, experiments), experiments)
    typer.echo(str(path.resolve()))


def default_report_path(settings, experiments: list[str] | None) -> Path:
    """<home>/reports/<experiment>[+<experiment>...].html: state goes to the pipeline home, never
    into the folder the command runs in (which may be the source tree)."""
    import re

    names = experiments or [settings.resolved_experiment_name]
    stem = "+".join(re.sub(r"[^A-Za-z0-9._-]+", "_", name) for name in names)
    return settings.home / "reports" / f"{stem}.html"
