"""MLflow: healthy, accepts this client's Host header and credentials, and serves artifacts into
the same store as DVC."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.doctor.report import (
    OK,
    PROBE_PREFIX,
    PROBLEM,
    SKIPPED,
    TIMEOUT_S,
    UNREACHABLE,
    Report,
    probe_bytes,
)
from pipeline.doctor.s3 import (
    classify_s3_error,
    endpoint_label,
    expected_mlflow_destination,
    s3_client,
    split_s3,
)
from pipeline.settings import redact_url
from pipeline.storage import botocore_cause

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import Settings

logger = logging.getLogger(__name__)


def tracking_auth(environ: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """HTTP basic auth for the tracking server, from the variables MLflow's own client reads
    (``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``); ``None`` when either is unset."""
    env = os.environ if environ is None else environ
    user, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
    return (user, password) if user and password else None


def check_mlflow(settings: Settings, report: Report, buckets: dict[str, bool]) -> None:
    name = "mlflow"
    uri = settings.resolved_tracking_uri
    label = redact_url(uri)
    if settings.uses_embedded_tracking:
        path = Path(uri[len("sqlite:///") :].split("?", 1)[0])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            report.add(name, PROBLEM, f"{label}: cannot create {path.parent}: {exc}")
            return
        report.add(name, OK, f"{label}: embedded store (no server)")
        return
    if not uri.startswith(("http://", "https://")):
        report.add(name, OK, f"{label}: not a server; not probed")
        return
    import requests

    base = uri.rstrip("/")
    session = requests.Session()
    session.auth = tracking_auth()
    try:
        health = session.get(f"{base}/health", timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        report.add(
            name,
            UNREACHABLE,
            f"{label}: tracking server does not answer ({type(exc).__name__}): check MLFLOW_TRACKING_URI "
            "and that the server is running",
        )
        return
    if health.status_code == 403 and "host" in health.text.lower():
        report.add(
            name,
            PROBLEM,
            f"{label}: the server refuses this Host header ({health.text.strip()[:80]}): add it to the "
            "server's --allowed-hosts",
        )
        return
    if health.status_code != 200:
        report.add(
            name, UNREACHABLE, f"{label}: /health answered {health.status_code}: the server is not healthy"
        )
        return
    try:
        api = session.get(
            f"{base}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=TIMEOUT_S * 2
        )
    except requests.RequestException as exc:
        report.add(name, UNREACHABLE, f"{label}: tracking API does not answer: {type(exc).__name__}")
        return
    if api.status_code in (401, 403):
        who = (
            f"user {session.auth[0]!r} (MLFLOW_TRACKING_USERNAME)"
            if session.auth
            else "no credentials (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD are unset)"
        )
        report.add(
            name,
            PROBLEM,
            f"{label}: the tracking API refused {who} with {api.status_code}: set the server's "
            "credentials in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (the pipeline Secret)",
        )
        return
    if api.status_code != 200:
        report.add(
            name,
            UNREACHABLE if api.status_code >= 500 else PROBLEM,
            f"{label}: tracking API answered {api.status_code}: {api.text.strip()[:120]}",
        )
        return
    check_mlflow_artifacts(settings, report, session, base, buckets)


def check_mlflow_artifacts(settings: Settings, report: Report, session, base: str, buckets) -> None:
    """Upload a probe through the server's artifact proxy and find it in the expected bucket."""
    import requests

    name = "mlflow"
    label = redact_url(base)
    token, data = probe_bytes()
    relative = f"{PROBE_PREFIX}/{token}/probe.txt"
    endpoint = f"{base}/api/2.0/mlflow-artifacts/artifacts/{relative}"
    try:
        put = session.put(endpoint, data=data, timeout=TIMEOUT_S * 2)
    except requests.RequestException as exc:
        report.add(name, UNREACHABLE, f"{label}: artifact upload does not answer: {type(exc).__name__}")
        return
    if put.status_code in (404, 501, 503) or (put.status_code >= 400 and "serve" in put.text.lower()):
        report.add(
            name,
            PROBLEM,
            f"{label}: healthy, but does not serve artifacts (upload answered {put.status_code}): start it "
            "with --serve-artifacts --artifacts-destination s3://<bucket>/mlflow",
        )
        return
    if put.status_code != 200:
        report.add(
            name,
            UNREACHABLE if put.status_code >= 500 else PROBLEM,
            f"{label}: artifact upload answered {put.status_code}: {put.text.strip()[:160]} (the server "
            "cannot write to its --artifacts-destination: check its S3 endpoint and credentials)",
        )
        return
    try:
        expected = expected_mlflow_destination(settings)
        if expected is None:
            report.add(
                name,
                OK,
                f"{label}: healthy, serves artifacts; where it stores them is not compared (the DVC "
                "remote is not on S3 and PIPELINE_MLFLOW_ARTIFACTS_DESTINATION is unset)",
            )
            return
        bucket, prefix = split_s3(expected)
        if not buckets.get(bucket, False):
            report.add(
                name, SKIPPED, f"{label}: healthy, serves artifacts; {expected}: see the S3 line above"
            )
            return
        key = f"{prefix}/{relative}" if prefix else relative
        client = s3_client(settings.s3)
        try:
            found = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            import botocore.exceptions as bexc

            cause = botocore_cause(exc)
            code = (
                cause.response.get("Error", {}).get("Code") if isinstance(cause, bexc.ClientError) else None
            )
            if code not in ("NoSuchKey", "404"):
                status, message = classify_s3_error(exc, settings.s3, bucket, f"MLflow artifacts {expected}")
                report.add(name, status, message)
                return
            found = None
        if found != data:
            report.add(
                name,
                PROBLEM,
                f"{label}: serves artifacts, but not from {expected} on {endpoint_label(settings.s3)} (the "
                "DVC remote's endpoint and bucket): a probe uploaded through the server is not there. Give "
                "the server --artifacts-destination "
                f"{expected} and MLFLOW_S3_ENDPOINT_URL={endpoint_label(settings.s3)}, or set "
                "PIPELINE_MLFLOW_ARTIFACTS_DESTINATION to where it really stores them",
            )
            return
        report.add(
            name,
            OK,
            f"{label}: healthy; serves artifacts from {expected} on {endpoint_label(settings.s3)} "
            "(same endpoint as the DVC remote)",
        )
    finally:
        try:
            session.delete(
                f"{base}/api/2.0/mlflow-artifacts/artifacts/{PROBE_PREFIX}/{token}", timeout=TIMEOUT_S
            )
        except requests.RequestException:
            logger.debug("could not remove the MLflow probe", exc_info=True)
