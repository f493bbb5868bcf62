"""Data versioning with DVC.

Each run versions its data in its own throwaway DVC workspace (``dvc init --no-scm``), so two
runs at once never contend for one repository lock; the content-addressed remote they push to is
shared and de-duplicates. What identifies a data version is the ``.dvc`` file (md5, size, path):
it is published with the run and recorded on the MLflow run, and with it the plain ``dvc``
command fetches the exact bytes back from the remote::

    mkdir fetch && cd fetch && dvc init --no-scm
    dvc remote add -d store <remote>          # plus endpointurl/credentials for S3
    cp <downloaded raw.dvc> penguins.csv.dvc && dvc pull penguins.csv.dvc
"""

from __future__ import annotations

import configparser
import logging
import os
import shutil
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

import yaml

from pipeline.errors import BadInputError, ConfigError, RetryableError

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import S3Settings

logger = logging.getLogger(__name__)

REMOTE_NAME = "store"


def _quiet_dvc() -> None:
    """No analytics, no update checks, and DVC's progress chatter kept off stdout (the JSON line)."""
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("DVC_NO_UPDATER", "1")
    logging.getLogger("dvc").setLevel(logging.WARNING)


def remote_config(remote: str, s3: S3Settings) -> tuple[dict[str, str], dict[str, str]]:
    """(shared config, secret config) of the DVC remote section."""
    if remote.startswith("s3://"):
        shared = {
            "url": remote,
            "region": s3.region,
            "connect_timeout": str(max(1, int(s3.connect_timeout_s))),
            "read_timeout": str(max(1, int(s3.read_timeout_s))),
        }
        if s3.endpoint_url:
            shared["endpointurl"] = s3.endpoint_url
        secret: dict[str, str] = {}
        if s3.access_key_id and s3.secret_access_key:
            secret = {
                "access_key_id": s3.access_key_id,
                "secret_access_key": s3.secret_access_key.get_secret_value(),
            }
        return shared, secret
    if "://" in remote and not remote.startswith("file://"):
        raise ConfigError(f"DVC remote {remote!r} is not supported: use a local folder or s3://")
    path = remote[len("file://") :] if remote.startswith("file://") else remote
    return {"url": os.path.abspath(os.path.expanduser(path))}, {}


def bound_s3_retries(s3: S3Settings) -> None:
    """What DVC's S3 client cannot take from its remote config, from the environment botocore
    reads: bounded retries (``standard`` mode, at most ``max_attempts`` attempts per request) and,
    on a non-AWS endpoint, checksums only where the S3 API requires them (as for the artifact
    root, see :func:`pipeline.storage.s3_storage_options`). An operator's own values win."""
    os.environ.setdefault("AWS_RETRY_MODE", "standard")
    os.environ.setdefault("AWS_MAX_ATTEMPTS", str(s3.max_attempts))
    if s3.endpoint_url:
        os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_required")


def init_workspace(workspace: Path, remote: str, s3: S3Settings) -> None:
    """Create a DVC workspace whose default remote is ``remote``. Its credentials are never
    written into the workspace (no ``config.local``): :func:`open_repo` hands them to DVC in
    memory, and a user running ``dvc`` there later brings their own (``AWS_*`` variables)."""
    from dvc.repo import Repo

    _quiet_dvc()
    if remote.startswith("s3://"):
        bound_s3_retries(s3)
    workspace = Path(workspace).resolve()  # every path in the config absolute: DVC reads it from any folder
    workspace.mkdir(parents=True, exist_ok=True)
    Repo.init(str(workspace), no_scm=True, force=True)
    shared, _secret = remote_config(remote, s3)
    section = f'remote "{REMOTE_NAME}"'
    config = configparser.ConfigParser()
    config["core"] = {
        "remote": REMOTE_NAME,
        "no_scm": "true",
        "analytics": "false",
        "site_cache_dir": str(workspace / ".dvc" / "site"),
    }
    config[section] = shared
    with open(workspace / ".dvc" / "config", "w") as handle:
        config.write(handle)
    if shared["url"] and not shared["url"].startswith("s3://"):
        Path(shared["url"]).mkdir(parents=True, exist_ok=True)


def open_repo(workspace: Path, remote: str, s3: S3Settings):
    """The workspace's DVC repository with the remote's credentials given in memory only."""
    from dvc.repo import Repo

    _shared, secret = remote_config(remote, s3)
    return Repo(str(workspace), remote=REMOTE_NAME, remote_config=secret or None)


def track_and_push(
    files: dict[str, Path], workspace: Path, remote: str, s3: S3Settings
) -> dict[str, dict[str, Any]]:
    """Add ``files`` (name -> path) to a fresh workspace, push them, return their ``.dvc`` data."""
    from dvc.exceptions import DvcException

    _quiet_dvc()
    init_workspace(workspace, remote, s3)
    targets: list[str] = []
    placed: dict[str, Path] = {}
    for name, source in files.items():
        folder = workspace / "data" / name
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / source.name
        shutil.copyfile(source, target)
        targets.append(str(target.resolve()))  # Repo.add resolves relative paths against the CWD
        placed[name] = target
    repo = open_repo(workspace, remote, s3)
    try:
        repo.add(targets)
        pushed = repo.push(remote=REMOTE_NAME)
    except DvcException as exc:
        raise RetryableError(f"DVC could not push to {remote}: {exc}") from exc
    finally:
        repo.close()
    logger.info("DVC pushed %s file(s) to %s", pushed, remote)
    result: dict[str, dict[str, Any]] = {}
    for name, target in placed.items():
        dvc_file = target.with_name(target.name + ".dvc")
        text = dvc_file.read_text()
        out = yaml.safe_load(text)["outs"][0]
        result[name] = {
            "dvc_file": dvc_file,
            "dvc_text": text,
            "md5": out["md5"],
            "size": int(out["size"]),
            "path": out["path"],
        }
    return result


def described_output(dvc_text: str, destination: Path) -> dict[str, Any]:
    """The one output a ``.dvc`` file describes, refused unless its path stays inside
    ``destination`` (a relative path, no '..', no drive, no symbolic link leading out): the file
    comes from a run's artifacts, and DVC writes wherever its ``outs[0].path`` says."""
    try:
        document = yaml.safe_load(dvc_text)
        out = document["outs"][0]
        path = out["path"]
        out["md5"]  # a KeyError if the file does not pin the content
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        raise BadInputError(
            "the .dvc file is malformed (rule: an 'outs' list whose first entry has 'path' and 'md5')"
        ) from None
    if not isinstance(path, str) or not path.strip():
        raise BadInputError("the .dvc file's outs[0].path is not a file name")
    posix, windows = PurePosixPath(path), PureWindowsPath(path)
    leaves = (
        posix.is_absolute()
        or windows.is_absolute()
        or bool(windows.drive)
        or ".." in posix.parts
        or ".." in windows.parts
        or not (destination / path).resolve().is_relative_to(destination.resolve())
    )
    if leaves:
        raise BadInputError(
            f"the .dvc file's outs[0].path {path!r} leads outside the destination {str(destination)!r} "
            "(rule: a relative path inside the folder fetched into)"
        )
    return out


def fetch(dvc_text: str, destination: Path, remote: str, s3: S3Settings) -> Path:
    """Fetch the data a ``.dvc`` file describes into ``destination`` (a new DVC workspace)."""
    from dvc.exceptions import DvcException

    destination = Path(destination)
    out = described_output(dvc_text, destination)  # before anything is created
    init_workspace(destination, remote, s3)
    dvc_file = destination / f"{out['path']}.dvc"
    dvc_file.write_text(dvc_text)
    repo = open_repo(destination, remote, s3)
    try:
        repo.pull([str(dvc_file.resolve())], remote=REMOTE_NAME)
    except DvcException as exc:
        raise RetryableError(
            f"DVC could not pull {out['path']} (md5 {out['md5']}) from {remote}: {exc}"
        ) from exc
    finally:
        repo.close()
    return destination / out["path"]
