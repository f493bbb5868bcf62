"""Monitoring: `monitor` (drift and live performance of the champion; optionally retrain)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli import ConfigOption, SetOption, _prepare, app, fail, load_settings, reported

logger = logging.getLogger("pipeline.monitor")


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 time; one without a zone is UTC."""
    from pipeline.errors import ConfigError

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} {value!r}: use an ISO 8601 time, e.g. 2026-01-31T12:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command()
def monitor(
    current: Annotated[
        Path | None,
        typer.Option(
            "--current",
            help="Judge this CSV/Parquet batch (read like the configured source) instead of the "
            "prediction log's window.",
            dir_okay=False,
        ),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Window start (ISO 8601; default: until - monitor.window_hours).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Window end (ISO 8601; default: now).")] = None,
    retrain: Annotated[
        bool,
        typer.Option("--retrain", help="Run the training pipeline here when the check triggers a retrain."),
    ] = False,
    trigger: Annotated[
        bool,
        typer.Option(
            "--trigger",
            help="The caller acts on a triggered retrain elsewhere (the monitor DAG emits the retrain "
            "asset): start the cool-down as --retrain does, without training here.",
        ),
    ] = False,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Compare the current window with the champion's reference data: per-column drift, prediction
    drift and the live metric on late labels. Prints one JSON summary; exits 0 whether or not drift
    was found (65 bad input, e.g. no champion; 75 a store unreachable). Without --retrain or
    --trigger the check only reports whether a retrain is warranted (the cool-down does not start)."""
    _prepare()
    from pipeline.monitor.check import run_check
    from pipeline.runner import emit_summary

    with reported("monitor: "):
        settings = load_settings(config, overrides)
        if current is not None and not current.is_file():
            from pipeline.errors import BadInputError

            raise BadInputError(f"--current {str(current)!r} does not exist")
        summary, retrain_settings = run_check(
            settings,
            current_file=current,
            since=parse_time(since, "--since"),
            until=parse_time(until, "--until"),
            act=retrain or trigger,
        )
    error = None
    if retrain and retrain_settings is not None:
        from pipeline.runner import new_run_id, run_pipeline

        run_id = new_run_id()
        logger.info("retraining (cause %s) as run %s", retrain_settings.trigger.cause, run_id)
        try:
            manifests = run_pipeline(retrain_settings, run_id)
            registered = manifests["register"].summary
            summary["retrain"] = {
                "run_id": run_id,
                "cause": retrain_settings.trigger.cause,
                "version": registered.get("version"),
                "promoted": registered.get("promoted"),
                "reason": registered.get("reason"),
            }
        except (Exception, KeyboardInterrupt) as exc:
            error = exc
            summary["retrain"] = {
                "run_id": run_id,
                "cause": retrain_settings.trigger.cause,
                "error": str(exc),
            }
    emit_summary(summary)
    if error is not None:
        raise fail(error, "monitor: retrain: ")
