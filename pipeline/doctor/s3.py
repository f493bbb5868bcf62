"""S3: the endpoint answers, the credentials are accepted, each bucket exists (one line per root cause)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipeline.doctor.report import OK, PROBLEM, TIMEOUT_S, UNREACHABLE, Report
from pipeline.settings import redact_url
from pipeline.storage import botocore_cause

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import S3Settings, Settings

logger = logging.getLogger(__name__)


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``)."""
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix.strip("/")


def s3_client(s3: S3Settings):
    """A boto3 client with exactly the pipeline's endpoint, region and credentials, failing fast."""
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {
        "region_name": s3.region,
        "config": Config(
            retries={"total_max_attempts": 2, "mode": "standard"},
            connect_timeout=TIMEOUT_S,
            read_timeout=TIMEOUT_S * 2,
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    }
    if s3.endpoint_url:
        kwargs["endpoint_url"] = s3.endpoint_url
    if s3.access_key_id and s3.secret_access_key:
        kwargs["aws_access_key_id"] = s3.access_key_id
        kwargs["aws_secret_access_key"] = s3.secret_access_key.get_secret_value()
    return boto3.session.Session().client("s3", **kwargs)


def endpoint_label(s3: S3Settings) -> str:
    return redact_url(s3.endpoint_url) if s3.endpoint_url else f"AWS S3 ({s3.region})"


def key_label(s3: S3Settings) -> str:
    if not s3.access_key_id:
        return "the default AWS credential chain"
    return f"access key {s3.access_key_id[:4]}… (PIPELINE_S3__ACCESS_KEY_ID)"


def classify_s3_error(exc: BaseException, s3: S3Settings, bucket: str, what: str) -> tuple[str, str]:
    """(status, actionable message) for an error talking to S3."""
    import botocore.exceptions as bexc

    cause = botocore_cause(exc)
    endpoint = endpoint_label(s3)
    if isinstance(cause, bexc.NoCredentialsError):
        return PROBLEM, (
            f"{what}: no S3 credentials found: set PIPELINE_S3__ACCESS_KEY_ID and "
            "PIPELINE_S3__SECRET_ACCESS_KEY (from a Secret)"
        )
    if isinstance(
        cause,
        bexc.EndpointConnectionError
        | bexc.ConnectTimeoutError
        | bexc.ReadTimeoutError
        | bexc.ConnectionClosedError,
    ):
        return UNREACHABLE, (
            f"{what}: S3 endpoint {endpoint} does not answer ({type(cause).__name__}): check "
            "PIPELINE_S3__ENDPOINT_URL and that the object store is running"
        )
    if isinstance(cause, bexc.ClientError):
        error = cause.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken") or (
            code in ("403", "AccessDenied", "Forbidden")
        ):
            return PROBLEM, (
                f"{what}: {endpoint} rejected {key_label(s3)} for bucket {bucket!r} ({code or status}): "
                "check PIPELINE_S3__ACCESS_KEY_ID / PIPELINE_S3__SECRET_ACCESS_KEY and the key's policy"
            )
        if code in ("NoSuchBucket", "404", "NotFound"):
            return PROBLEM, (
                f"{what}: bucket {bucket!r} does not exist on {endpoint}: create it (e.g. `mc mb` or "
                "`aws s3 mb`) or fix the bucket in the configured s3:// location"
            )
        if status is not None and int(status) >= 500:
            return UNREACHABLE, f"{what}: {endpoint} answered {status} ({code}) for bucket {bucket!r}"
        return PROBLEM, f"{what}: {endpoint} refused the request on bucket {bucket!r}: {code} {status}"
    if isinstance(cause, bexc.BotoCoreError):
        return UNREACHABLE, f"{what}: S3 endpoint {endpoint}: {cause}"
    text = " ".join(str(exc).split())
    if isinstance(exc, PermissionError):
        return PROBLEM, f"{what}: {endpoint} rejected {key_label(s3)} for bucket {bucket!r}: {text}"
    if isinstance(exc, FileNotFoundError):
        return PROBLEM, f"{what}: bucket {bucket!r} not found on {endpoint}: {text}"
    return UNREACHABLE, f"{what}: {endpoint}: {type(exc).__name__}: {text}"


def check_s3(settings: Settings, report: Report) -> dict[str, bool]:
    """One line per bucket in use (or per root cause); returns which buckets are usable."""
    s3 = settings.s3
    buckets: dict[str, list[str]] = {}
    for label, uri in s3_locations(settings):
        buckets.setdefault(split_s3(uri)[0], []).append(label)
    usable: dict[str, bool] = {}
    if not buckets:
        return usable
    if bool(s3.access_key_id) != bool(s3.secret_access_key):
        report.add(
            "s3",
            PROBLEM,
            "only one of PIPELINE_S3__ACCESS_KEY_ID and PIPELINE_S3__SECRET_ACCESS_KEY is set: set both "
            "(or neither, to use the default AWS credential chain)",
        )
        return dict.fromkeys(buckets, False)
    client = s3_client(s3)
    endpoint_down = False
    for bucket, users in buckets.items():
        if endpoint_down:
            usable[bucket] = False
            continue
        try:
            # Not HeadBucket: its errors have no body, so a wrong secret and an unknown key
            # would both read "403". A one-key listing names the error (and the pipeline lists).
            client.list_objects_v2(Bucket=bucket, MaxKeys=1)
        except Exception as exc:
            status, message = classify_s3_error(exc, s3, bucket, f"bucket {bucket!r} ({', '.join(users)})")
            report.add("s3", status, message)
            usable[bucket] = False
            endpoint_down = status == UNREACHABLE
            continue
        usable[bucket] = True
        source = "" if s3.access_key_id else " (no PIPELINE_S3__ credentials: default AWS chain)"
        report.add(
            "s3",
            OK,
            f"bucket {bucket!r} on {endpoint_label(s3)} accepts {key_label(s3)}{source}; "
            f"used by {', '.join(users)}",
        )
    return usable


def s3_locations(settings: Settings) -> list[tuple[str, str]]:
    locations = [
        ("artifact root", settings.resolved_artifact_root),
        ("DVC remote", settings.resolved_dvc_remote),
    ]
    expected = expected_mlflow_destination(settings)
    if expected and not settings.uses_embedded_tracking:
        locations.append(("MLflow artifacts", expected))
    return [(label, uri) for label, uri in locations if uri.startswith("s3://")]


def expected_mlflow_destination(settings: Settings) -> str | None:
    """Where the tracking server should keep artifacts: the setting, else the chart's layout
    ``s3://<bucket of the DVC remote>/mlflow``; ``None`` when there is nothing to compare with."""
    if settings.mlflow_artifacts_destination:
        return settings.mlflow_artifacts_destination.rstrip("/")
    remote = settings.resolved_dvc_remote
    if remote.startswith("s3://"):
        return f"s3://{split_s3(remote)[0]}/mlflow"
    return None
