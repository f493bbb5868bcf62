"""The artifact root and the DVC remote: a probe written, read back and removed (DVC through its
own filesystem)."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.doctor.report import OK, PROBE_PREFIX, PROBLEM, SKIPPED, Report, probe_bytes
from pipeline.doctor.s3 import classify_s3_error, key_label, split_s3
from pipeline.settings import redact_url

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import Settings

logger = logging.getLogger(__name__)


def _remove_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (another doctor at the same time) or gone
        folder.rmdir()


def _bucket_usable(report: Report, name: str, location: str, buckets: dict[str, bool]) -> bool:
    """Whether to probe ``location``: not when it lies in a bucket the S3 check found unusable
    (then a SKIPPED line points at that check's)."""
    if location.startswith("s3://") and not buckets.get(split_s3(location)[0], False):
        report.add(name, SKIPPED, f"{redact_url(location)}: see the S3 line above")
        return False
    return True


def _read_back(report: Report, name: str, location: str, back: bytes, data: bytes) -> bool:
    """Whether the probe read back is the one written (else a PROBLEM line)."""
    if back != data:
        report.add(name, PROBLEM, f"{location}: a probe read back different bytes than were written")
        return False
    return True


def check_artifact_root(settings: Settings, report: Report, buckets: dict[str, bool]) -> None:
    from pipeline.storage import filesystem_for

    root = settings.resolved_artifact_root.rstrip("/")
    name = "artifact root"
    if not _bucket_usable(report, name, root, buckets):
        return
    token, data = probe_bytes()
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
    if not _read_back(report, name, root, back, data):
        return
    report.add(name, OK, f"{root}: writable (probe written, read back, removed)")


def check_dvc_remote(settings: Settings, report: Report, buckets: dict[str, bool]) -> None:
    from pipeline.dvcstore import REMOTE_NAME, init_workspace, open_repo

    remote = settings.resolved_dvc_remote.rstrip("/")
    name = "dvc remote"
    if not _bucket_usable(report, name, remote, buckets):
        return
    token, data = probe_bytes()
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
    if not _read_back(report, name, remote, back, data):
        return
    how = f"with {key_label(settings.s3)}" if remote.startswith("s3://") else "local folder"
    report.add(name, OK, f"{redact_url(remote)}: reachable and writable through DVC ({how})")
