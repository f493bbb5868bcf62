"""``pipeline doctor``: check every configured backend before a run.

Each check talks to the real backend with the pipeline's own settings and client code, writes a
small probe where the pipeline will write, and removes it again. A problem is one line that says
what is wrong and what to change. Checks that depend on a failed one are skipped rather than
reported again, so one misconfiguration gives one line.

Checks, in order:

* S3 (when any location is ``s3://``): the endpoint answers, the configured credentials are
  accepted, each bucket exists (one line per root cause: unreachable endpoint, rejected
  credentials, missing bucket).
* artifact root: a probe object (or file) can be written, read back and removed.
* DVC remote: reachable and writable through DVC's own filesystem, configured exactly as the
  ``version`` step configures it, with the ``PIPELINE_S3__*`` credentials (never another chain when
  they are set).
* feature store: the database answers; its tables are there (migrated) or can be created.
* MLflow: the tracking server is healthy, accepts this client's Host header and credentials
  (HTTP basic auth from ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, as MLflow's
  client sends them, when both are set), serves artifacts, and
  a probe uploaded through it lands in the same S3 endpoint and bucket as the DVC remote.
* GPU: a CUDA device is visible when ``require_gpu`` or ``train.device=cuda`` asks for one.

Exit status (``pipeline doctor``): 0 when every check passed; 65 when any problem needs a person
(wrong credentials, missing bucket, mismatched artifact store, no GPU); 75 when the only problems
are backends that did not answer (worth retrying).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_RETRYABLE
from pipeline.settings import redact_url
from pipeline.storage import botocore_cause

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import S3Settings, Settings

logger = logging.getLogger(__name__)

PROBE_PREFIX = "_doctor"
TIMEOUT_S = 5.0

OK = "ok"
PROBLEM = "problem"  # a person must change something
UNREACHABLE = "unreachable"  # a backend did not answer: worth retrying
SKIPPED = "skipped"  # depends on a check that failed


@dataclass
class Check:
    name: str
    status: str
    message: str

    @property
    def failed(self) -> bool:
        return self.status in (PROBLEM, UNREACHABLE)

    def line(self) -> str:
        label = {OK: "ok", PROBLEM: "FAIL", UNREACHABLE: "FAIL", SKIPPED: "skip"}[self.status]
        return f"{label:<5}{self.name:<15}{self.message}"


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    def add(self, name: str, status: str, message: str) -> Check:
        check = Check(name, status, " ".join(message.split()))
        self.checks.append(check)
        return check

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.failed]

    @property
    def exit_code(self) -> int:
        if any(c.status == PROBLEM for c in self.checks):
            return EXIT_BAD_INPUT
        if any(c.status == UNREACHABLE for c in self.checks):
            return EXIT_RETRYABLE
        return EXIT_OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.problems,
            "exit_code": self.exit_code,
            "checks": [{"name": c.name, "status": c.status, "message": c.message} for c in self.checks],
        }


# --------------------------------------------------------------------------------------------
# S3
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# artifact root and DVC remote
# --------------------------------------------------------------------------------------------


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (another doctor at the same time) or gone
        folder.rmdir()


def _probe_bytes() -> tuple[str, bytes]:
    token = uuid.uuid4().hex
    return token, f"ml-pipeline doctor probe {token}\n".encode()


def check_artifact_root(settings: Settings, report: Report, buckets: dict[str, bool]) -> None:
    from pipeline.storage import filesystem_for

    root = settings.resolved_artifact_root.rstrip("/")
    name = "artifact root"
    if root.startswith("s3://") and not buckets.get(split_s3(root)[0], False):
        report.add(name, SKIPPED, f"{root}: see the S3 line above")
        return
    token, data = _probe_bytes()
    try:
        fs, path = filesystem_for(root, settings.s3)
        probe = f"{path}/{PROBE_PREFIX}/{token}"
        if not root.startswith("s3://"):
            Path(path, PROBE_PREFIX).mkdir(parents=True, exist_ok=True)
        fs.pipe_file(probe, data)
        back = fs.cat_file(probe)
        fs.rm(probe)
        if not root.startswith("s3://"):
            _remove_empty(Path(path, PROBE_PREFIX))
    except Exception as exc:
        if root.startswith("s3://"):
            status, message = classify_s3_error(exc, settings.s3, split_s3(root)[0], root)
        else:
            status, message = (
                PROBLEM,
                f"{root}: not writable: {exc} (set PIPELINE_ARTIFACT_ROOT or PIPELINE_HOME)",
            )
        report.add(name, status, message)
        return
    if back != data:
        report.add(name, PROBLEM, f"{root}: a probe read back different bytes than were written")
        return
    report.add(name, OK, f"{root}: writable (probe written, read back, removed)")


def check_dvc_remote(settings: Settings, report: Report, buckets: dict[str, bool]) -> None:
    from pipeline.dvcstore import REMOTE_NAME, init_workspace, open_repo

    remote = settings.resolved_dvc_remote.rstrip("/")
    name = "dvc remote"
    if remote.startswith("s3://") and not buckets.get(split_s3(remote)[0], False):
        report.add(name, SKIPPED, f"{redact_url(remote)}: see the S3 line above")
        return
    token, data = _probe_bytes()
    with tempfile.TemporaryDirectory(prefix="mlp-doctor-dvc-") as folder:
        try:
            init_workspace(Path(folder), remote, settings.s3)
            repo = open_repo(Path(folder), remote, settings.s3)
            try:
                dvc_remote = repo.cloud.get_remote(REMOTE_NAME)
                fs = dvc_remote.fs
                if remote.startswith("s3://") and settings.s3.access_key_id:
                    used = getattr(fs, "fs_args", {}).get("key")
                    if used != settings.s3.access_key_id:
                        report.add(
                            name,
                            PROBLEM,
                            f"{remote}: DVC is not using the configured access key (PIPELINE_S3__*); "
                            "it would fall back to another credential chain",
                        )
                        return
                probe = fs.join(dvc_remote.path, PROBE_PREFIX, token)
                fs.makedirs(fs.join(dvc_remote.path, PROBE_PREFIX), exist_ok=True)
                with fs.open(probe, "wb") as handle:
                    handle.write(data)
                with fs.open(probe, "rb") as handle:
                    back = handle.read()
                fs.remove(probe)
                if not remote.startswith("s3://"):
                    _remove_empty(Path(dvc_remote.path, PROBE_PREFIX))
            finally:
                repo.close()
        except Exception as exc:
            if remote.startswith("s3://"):
                status, message = classify_s3_error(
                    exc, settings.s3, split_s3(remote)[0], f"DVC remote {remote}"
                )
            else:
                status, message = PROBLEM, f"{remote}: not writable by DVC: {exc} (set PIPELINE_DVC_REMOTE)"
            report.add(name, status, message)
            return
    if back != data:
        report.add(name, PROBLEM, f"{remote}: a probe read back different bytes than were written")
        return
    how = f"with {key_label(settings.s3)}" if remote.startswith("s3://") else "local folder"
    report.add(name, OK, f"{redact_url(remote)}: reachable and writable through DVC ({how})")


# --------------------------------------------------------------------------------------------
# feature store
# --------------------------------------------------------------------------------------------


def required_feature_store_columns() -> list[str]:
    """The columns the versions table must have: those of its one declaration."""
    from pipeline.featurestore import VERSIONS_COLUMNS

    return [column.name for column in VERSIONS_COLUMNS]


def check_feature_store(settings: Settings, report: Report) -> None:
    import sqlalchemy as sa

    from pipeline.featurestore import VERSIONS_TABLE, FeatureStore

    url = settings.resolved_feature_store_url
    label = redact_url(url)
    name = "feature store"
    if url.startswith("sqlite:///"):
        folder = Path(url[len("sqlite:///") :].split("?", 1)[0]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            report.add(name, PROBLEM, f"{label}: cannot create {folder}: {exc}")
            return
    try:
        store = FeatureStore(url)
    except Exception as exc:
        report.add(name, PROBLEM, f"{label}: {exc}")
        return
    try:
        with store.engine.connect() as connection:
            present = sa.inspect(connection).has_table(VERSIONS_TABLE)
            if present:
                columns = {c["name"] for c in sa.inspect(connection).get_columns(VERSIONS_TABLE)}
                missing = sorted(set(required_feature_store_columns()) - columns)
                if missing:
                    report.add(
                        name,
                        PROBLEM,
                        f"{label}: table {VERSIONS_TABLE} lacks columns {missing}: it was made by another "
                        "version of the pipeline; migrate it or point PIPELINE_FEATURE_STORE_URL elsewhere",
                    )
                    return
                count = connection.execute(sa.text(f'SELECT count(*) FROM "{VERSIONS_TABLE}"')).scalar()  # noqa: S608
                report.add(name, OK, f"{label}: reachable, migrated ({VERSIONS_TABLE}: {count} version(s))")
                return
            if store.dialect == "postgresql":
                can_create = connection.execute(
                    sa.text("SELECT has_schema_privilege(current_user, current_schema(), 'CREATE')")
                ).scalar()
                if not can_create:
                    report.add(
                        name,
                        PROBLEM,
                        f"{label}: {VERSIONS_TABLE} is missing and this user may not CREATE in the schema: "
                        "grant CREATE on the schema or create the tables first",
                    )
                    return
            report.add(name, OK, f"{label}: reachable; tables are created on the first load")
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        reason = " ".join(str(getattr(exc, "orig", exc)).split())
        lowered = reason.lower()
        if "password authentication failed" in lowered or "does not exist" in lowered or "role" in lowered:
            status, hint = PROBLEM, "check PIPELINE_FEATURE_STORE_URL and PIPELINE_FEATURE_STORE_PASSWORD"
        else:
            status, hint = UNREACHABLE, "check that PostgreSQL is running and PIPELINE_FEATURE_STORE_URL"
        report.add(name, status, f"{label}: cannot connect: {reason}: {hint}")
    except Exception as exc:
        report.add(name, UNREACHABLE, f"{label}: {type(exc).__name__}: {' '.join(str(exc).split())}")
    finally:
        store.close()


# --------------------------------------------------------------------------------------------
# MLflow
# --------------------------------------------------------------------------------------------


def expected_mlflow_destination(settings: Settings) -> str | None:
    """Where the tracking server should keep artifacts: the setting, else the chart's layout
    ``s3://<bucket of the DVC remote>/mlflow``; ``None`` when there is nothing to compare with."""
    if settings.mlflow_artifacts_destination:
        return settings.mlflow_artifacts_destination.rstrip("/")
    remote = settings.resolved_dvc_remote
    if remote.startswith("s3://"):
        return f"s3://{split_s3(remote)[0]}/mlflow"
    return None


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
    token, data = _probe_bytes()
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


# --------------------------------------------------------------------------------------------
# GPU
# --------------------------------------------------------------------------------------------


def check_gpu(settings: Settings, report: Report) -> None:
    wanted = settings.require_gpu or settings.train.device == "cuda"
    if not wanted:
        report.add("gpu", OK, f"not required (train.device={settings.train.device})")
        return
    why = "PIPELINE_REQUIRE_GPU=true" if settings.require_gpu else "train.device=cuda"
    try:
        import torch
    except ImportError as exc:
        report.add("gpu", PROBLEM, f"{why}, but torch cannot be imported: {exc}")
        return
    if not torch.cuda.is_available() or torch.cuda.device_count() == 0:
        built = torch.version.cuda or "none (a CPU build of torch)"
        report.add(
            "gpu",
            PROBLEM,
            f"{why}, but no CUDA device is visible (torch {torch.__version__}, CUDA {built}): run on a GPU "
            "node with the CUDA image, or set train.device=cpu",
        )
        return
    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    report.add("gpu", OK, f"{torch.cuda.device_count()} CUDA device(s): {names}")


# --------------------------------------------------------------------------------------------


def run_checks(settings: Settings) -> Report:
    """Every check, in order; never raises for a backend problem."""
    from pipeline.tracking import quiet_telemetry

    quiet_telemetry()
    report = Report()
    buckets = check_s3(settings, report)
    check_artifact_root(settings, report, buckets)
    check_dvc_remote(settings, report, buckets)
    check_feature_store(settings, report)
    check_mlflow(settings, report, buckets)
    check_gpu(settings, report)
    return report
