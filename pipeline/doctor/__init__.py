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

from typing import TYPE_CHECKING

from pipeline.doctor.feature_store import check_feature_store, required_feature_store_columns
from pipeline.doctor.gpu import check_gpu
from pipeline.doctor.mlflow_server import check_mlflow, check_mlflow_artifacts, tracking_auth
from pipeline.doctor.report import OK, PROBLEM, SKIPPED, UNREACHABLE, Check, Report
from pipeline.doctor.s3 import check_s3
from pipeline.doctor.stores import check_artifact_root, check_dvc_remote

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import Settings

__all__ = [
    "OK",
    "PROBLEM",
    "SKIPPED",
    "UNREACHABLE",
    "Check",
    "Report",
    "check_artifact_root",
    "check_dvc_remote",
    "check_feature_store",
    "check_gpu",
    "check_mlflow",
    "check_mlflow_artifacts",
    "check_s3",
    "required_feature_store_columns",
    "run_checks",
    "tracking_auth",
]


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
