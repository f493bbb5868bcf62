"""Serving: `serve` (the champion over HTTP, following its alias) and `feedback` (late labels)."""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli import ConfigOption, SetOption, _prepare, app, load_settings, reported

logger = logging.getLogger("pipeline.serve")


def parse_model_ref(
    ref: str | None, default_name: str, default_alias: str
) -> tuple[str, str | None, str | None]:
    """``NAME@ALIAS``, ``NAME/VERSION`` or ``NAME`` -> (name, alias, pinned version)."""
    from pipeline.errors import ConfigError
    from pipeline.settings import check_safe_name

    ref = (ref or default_name).removeprefix("models:/")
    name, alias, version = ref, default_alias, None
    if "@" in ref:
        name, _, alias = ref.partition("@")
    elif "/" in ref:
        name, _, version = ref.partition("/")
        alias = None
        if not version.isdigit():
            raise ConfigError(f"model {ref!r}: the version after '/' must be a number")
    try:
        check_safe_name(name, "model name")
        if alias is not None:
            check_safe_name(alias, "alias")
    except ValueError as exc:
        raise ConfigError(f"model {ref!r}: {exc}") from None
    return name, alias, version


@app.command()
def serve(
    model: Annotated[
        str | None,
        typer.Argument(
            help="NAME@ALIAS (followed as it moves), NAME/VERSION (pinned) or NAME. "
            "Default: the configured model @serve.alias (champion)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default serve.host, 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default serve.port, 5001; 0: any free port).")
    ] = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Serve a registered model over HTTP with MLflow's scoring protocol, logging every prediction."""
    _prepare()
    from pipeline.serve.predlog import PredictionLogger, create_engine
    from pipeline.serve.server import ModelHolder, ScoringServer
    from pipeline.tracking import configure

    with reported("serve: "):
        settings = load_settings(config, overrides)
        name, alias, version = parse_model_ref(model, settings.resolved_model_name, settings.serve.alias)
        client = configure(settings)
        holder = ModelHolder(client, name, alias, version)
        holder.refresh()
        log = None
        if settings.serve.log_predictions:
            log = PredictionLogger(
                create_engine(settings.resolved_feature_store_url),
                max_queue=settings.serve.log_queue_max,
                batch_rows=settings.serve.log_batch_rows,
                flush_s=settings.serve.log_flush_s,
            )
        server = ScoringServer(
            (host or settings.serve.host, settings.serve.port if port is None else port),
            holder,
            log,
            settings.serve.max_request_bytes,
        )
    if alias is not None:
        holder.start_polling(settings.serve.poll_interval_s)
    bound_host, bound_port = server.server_address[:2]
    served = holder.current()
    typer.echo(
        json.dumps(
            {
                "url": f"http://{bound_host}:{bound_port}",
                "model": f"{name}@{alias}" if alias else f"{name}/{version}",
                "model_version": served.version if served else None,
                "prediction_log": settings.serve.log_predictions,
            }
        ),
    )
    logger.info("listening on http://%s:%s", bound_host, bound_port)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt as exc:
        logger.info("stopping (%s)", exc or "Ctrl-C")
    finally:
        # A second signal (`timeout` and some supervisors send one to the process and its group)
        # must not cut the flush short: the prediction log's report is printed whatever happens.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda n, f: logger.warning("already stopping (signal %s)", n))
        holder.stop()
        server.server_close()
        if log is not None:
            report = log.close(settings.serve.shutdown_flush_s)
            typer.echo(json.dumps({"stopped": True, "prediction_log": report}))
            if report["unwritten_rows"]:
                raise typer.Exit(75)


@app.command()
def feedback(
    file: Annotated[
        Path, typer.Argument(help="CSV or Parquet: request_id, the target column, optional row.")
    ],
    key: Annotated[str, typer.Option(help="Column holding the request id.")] = "request_id",
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Join late labels into the prediction log (idempotent: a re-run replaces the same labels)."""
    _prepare()
    from pipeline.serve.predlog import create_engine, read_feedback, write_feedback

    with reported("feedback: "):
        settings = load_settings(config, overrides)
        labels = read_feedback(file, settings.data.target, key)
        engine = create_engine(settings.resolved_feature_store_url)
        try:
            summary = write_feedback(engine, labels)
        finally:
            engine.dispose()
    typer.echo(json.dumps({"file": str(file), **summary}))
