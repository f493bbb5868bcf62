"""The artifact store: one run prefix per pipeline run, atomic publication of each step's outputs.

Layout under the artifact root (a local folder or ``s3://bucket/prefix``)::

    runs/<run id>/<step>/manifest.json          <- the only thing readers look at
    runs/<run id>/<step>/attempts/<attempt>/... <- the files one attempt published
    runs/<run id>/<step>/_checkpoints/...       <- resumable state of a long step (train)

A step writes its files into a private local staging folder. Publishing copies them into a fresh
``attempts/<attempt>/`` folder and then writes ``manifest.json`` in one atomic operation (a rename
on a local disk, a single PUT on S3). A later step resolves its inputs only through the manifest,
so it sees either the previous complete attempt or the new complete one, never a half-written
folder.

Two publishes of the same (run, step) may overlap (an Airflow retry while the first pod still runs,
``pipeline run --run-id X`` started twice): the last manifest write wins, and the manifest must
never name an attempt that was removed. Each publisher writes the manifest exactly once, so an
attempt that has been *seen* named by the manifest will never be named again once the manifest
has moved on; only such attempts are removed: the one a publisher saw just before its own write,
and its own attempt when it reads back another one (it lost the race). An attempt nobody saw (a
publisher killed mid-upload, or one overtaken before anyone read it) is left alone until it is
older than :data:`ORPHAN_GRACE_S`, as it may still be about to be published.

Why one module of this size: the publish protocol (attempt folders, the manifest switch, the
race and orphan rules) is trusted only when it can be read as a whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, RetryableError

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.settings import S3Settings

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ATTEMPT_TIME = "%Y%m%dT%H%M%S"
ORPHAN_GRACE_S = 24 * 3600  # an attempt no manifest named is removed once it is this old


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def utcnow() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def s3_storage_options(s3: S3Settings) -> dict[str, Any]:
    """fsspec/s3fs options from the S3 settings: explicit credentials, bounded retries.

    botocore's ``standard`` retry mode makes at most ``max_attempts`` attempts per request, the
    first included (on 5xx, throttling, connection errors), with capped exponential backoff;
    s3fs's own retry loop is turned off in :func:`filesystem_for`, so the two never multiply
    (``total_max_attempts``: botocore's ``max_attempts`` key would count retries only). Listings
    are not cached: other processes (pods) write the same prefixes. On an S3-compatible endpoint
    other than AWS, request
    checksums are sent only where the API requires them (botocore's newer default, CRC trailers on
    every upload, is not implemented by every server).
    """
    config: dict[str, Any] = {
        "retries": {"total_max_attempts": s3.max_attempts, "mode": "standard"},
        "connect_timeout": s3.connect_timeout_s,
        "read_timeout": s3.read_timeout_s,
    }
    options: dict[str, Any] = {
        "client_kwargs": {"region_name": s3.region},
        "config_kwargs": config,
        "use_listings_cache": False,
    }
    if s3.endpoint_url:
        options["endpoint_url"] = s3.endpoint_url
        config["request_checksum_calculation"] = "when_required"
        config["response_checksum_validation"] = "when_required"
    if s3.access_key_id and s3.secret_access_key:
        options["key"] = s3.access_key_id
        options["secret"] = s3.secret_access_key.get_secret_value()
    return options


def storage_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "the store failed": OSError (s3fs translates most S3 errors into it)
    and botocore's own (connection errors and unexpected answers that s3fs passes through)."""
    try:
        import botocore.exceptions as bexc
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return (OSError,)
    return (OSError, bexc.BotoCoreError, bexc.ClientError)


def error_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions behind it (``__cause__``, else ``__context__``): s3fs and DVC
    wrap botocore's errors."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        yield cause
        cause = cause.__cause__ or cause.__context__


def botocore_cause(exc: BaseException) -> BaseException:
    """The botocore exception behind ``exc`` (``exc`` itself counts), else ``exc``."""
    import botocore.exceptions as bexc

    return next((c for c in error_chain(exc) if isinstance(c, bexc.BotoCoreError | bexc.ClientError)), exc)


def describe_error(exc: BaseException) -> str:
    """One line: the error's type and message, plus what S3 answered and after how many attempts
    when botocore is behind it (no traceback; botocore keeps credentials out of its messages)."""
    text = " ".join(str(exc).split()) or repr(exc)
    line = f"{type(exc).__name__}: {text}"
    cause = next((c for c in error_chain(exc) if hasattr(c, "response")), None)
    response = getattr(cause, "response", None)
    if isinstance(response, dict) and cause is not exc:
        meta = response.get("ResponseMetadata", {})
        code = response.get("Error", {}).get("Code", "")
        status = meta.get("HTTPStatusCode", "")
        attempts = int(meta.get("RetryAttempts", 0)) + 1
        # A HEAD's error has no body: botocore then reports the status as the code.
        answer = f"{status} {code}" if code and code != str(status) else f"{status}"
        line += f" (S3 answered {answer} after {attempts} attempt(s))"
    return line


def filesystem_for(uri: str, s3: S3Settings):
    """Return ``(fs, path)`` for a local path, ``file://`` or ``s3://`` URI."""
    import fsspec

    if uri.startswith("s3://"):
        fs = fsspec.filesystem("s3", **s3_storage_options(s3))
        fs.retries = 1  # botocore's bounded retries only (see s3_storage_options)
        return fs, uri[len("s3://") :]
    if "://" in uri and not uri.startswith("file://"):
        raise ConfigError(f"unsupported artifact URI {uri!r}: use a local path, file:// or s3://")
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    return fsspec.filesystem("file"), os.path.abspath(os.path.expanduser(path))


@dataclass
class Manifest:
    """What one step published for one run."""

    run_id: str
    step: str
    status: str
    attempt: str
    started_at: str
    finished_at: str
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    cache_key: str | None = None  # the step cache's key of these outputs (pipeline.cache)
    reused_from: dict[str, str] | None = None  # {run_id, step} whose outputs these are, on a hit

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def uri(self, name: str) -> str:
        try:
            return self.outputs[name]["uri"]
        except KeyError:
            raise KeyError(f"step {self.step!r} of run {self.run_id!r} has no output {name!r}") from None

    def to_json(self) -> str:
        """The published form; the summary goes through the one redaction (no secret recorded)."""
        from pipeline.redaction import redact_data

        return json.dumps(
            {**self.__dict__, "summary": redact_data(self.summary)}, indent=2, sort_keys=True, default=str
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        return cls(**json.loads(text))


def _older_than(attempt: str, now: datetime, seconds: float) -> bool:
    """Whether the attempt id (``<UTC time>-<random>``) was made more than ``seconds`` ago."""
    try:
        made = datetime.strptime(attempt.split("-", 1)[0], ATTEMPT_TIME).replace(tzinfo=UTC)
    except ValueError:
        return False
    return (now - made).total_seconds() > seconds


class ArtifactStore:
    """Reads and publishes step outputs under ``<root>/runs/<run id>/<step>/``."""

    def __init__(self, root: str, s3: S3Settings, scratch: Path):
        self.root_uri = root.rstrip("/")
        self.fs, self.root = filesystem_for(self.root_uri, s3)
        self.is_local = not self.root_uri.startswith("s3://")
        self.scratch = scratch
        self.endpoint = "" if self.is_local else f" on {s3.endpoint_url or 'AWS S3'}"

    def _failed(self, what: str, exc: BaseException, note: str = "") -> RetryableError:
        return RetryableError(f"cannot {what}{self.endpoint}: {describe_error(exc)}{note}")

    # paths ---------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def to_uri(self, path: str) -> str:
        return path if self.is_local else f"s3://{path}"

    def step_path(self, run_id: str, step: str) -> str:
        return self._path("runs", run_id, step)

    def checkpoint_path(self, run_id: str, step: str) -> str:
        return self._path("runs", run_id, step, "_checkpoints")

    # manifests -----------------------------------------------------------------------------

    def read_manifest(self, run_id: str, step: str) -> Manifest | None:
        path = f"{self.step_path(run_id, step)}/{MANIFEST}"
        try:
            with self.fs.open(path, "r") as handle:
                return Manifest.from_json(handle.read())
        except FileNotFoundError:
            return None
        except storage_errors() as exc:  # S3 endpoint down, permissions, ...
            raise self._failed(f"read {self.to_uri(path)}", exc) from exc

    def list_runs(self) -> list[str]:
        try:
            return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self._path("runs")))
        except FileNotFoundError:
            return []
        except storage_errors() as exc:
            raise self._failed(f"list {self.to_uri(self._path('runs'))}", exc) from exc

    # publication ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def workdir(self, run_id: str, step: str) -> Iterator[Path]:
        """A private local folder for one step attempt; removed afterwards whatever happens."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{step}-", dir=self.scratch))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def publish(
        self,
        run_id: str,
        step: str,
        staging: Path,
        outputs: dict[str, str],
        summary: dict[str, Any],
        started_at: str,
        status: str = "succeeded",
        cache_key: str | None = None,
    ) -> Manifest:
        """Copy the staged files into a new attempt folder, then switch the manifest to it.

        ``outputs`` maps output names to paths relative to ``staging`` (a file or a folder).
        """
        attempt = f"{datetime.now(UTC).strftime(ATTEMPT_TIME)}-{uuid.uuid4().hex[:8]}"
        step_dir = self.step_path(run_id, step)
        attempt_dir = f"{step_dir}/attempts/{attempt}"
        described: dict[str, dict[str, Any]] = {}
        for name, relative in outputs.items():
            local = staging / relative
            if not local.exists():
                raise FileNotFoundError(f"step {step} declared output {name!r} but {local} is missing")
            entry: dict[str, Any] = {"uri": self.to_uri(f"{attempt_dir}/{relative}")}
            if local.is_file():
                entry["sha256"] = sha256_file(local)
                entry["bytes"] = local.stat().st_size
            described[name] = entry
        previous: str | None = None
        try:
            self._upload_tree(staging, attempt_dir)
            manifest = Manifest(
                run_id=run_id,
                step=step,
                status=status,
                attempt=attempt,
                started_at=started_at,
                finished_at=utcnow(),
                outputs=described,
                summary=summary,
                cache_key=cache_key,
            )
            previous = self._current_attempt_or_none(step_dir, default=None)
            self._atomic_write_text(f"{step_dir}/{MANIFEST}", manifest.to_json())
        except storage_errors() as exc:
            # The write may have landed even though it failed (an answer lost on the way back):
            # the attempt goes only if the manifest is known to name another one.
            if self._current_attempt_or_none(step_dir, default=attempt) != attempt:
                self._remove_quietly(attempt_dir)
            note = "; the previously published outputs (if any) are unchanged"
            raise self._failed(f"publish {step} outputs to {self.to_uri(step_dir)}", exc, note) from exc
        self._remove_superseded(step_dir, attempt, previous)
        return manifest

    def publish_manifest(self, manifest: Manifest) -> None:
        """Publish a manifest whose outputs already exist elsewhere in the store (a step cache
        hit names another run's attempt): no files are copied; this step's own superseded attempt
        goes as after :meth:`publish`."""
        step_dir = self.step_path(manifest.run_id, manifest.step)
        try:
            previous = self._current_attempt_or_none(step_dir, default=None)
            self._atomic_write_text(f"{step_dir}/{MANIFEST}", manifest.to_json())
        except storage_errors() as exc:
            raise self._failed(
                f"publish the {manifest.step} manifest to {self.to_uri(step_dir)}", exc
            ) from exc
        self._remove_superseded(step_dir, manifest.attempt, previous)

    def _current_attempt(self, step_dir: str) -> str | None:
        """The attempt the manifest names now (``None`` when there is no manifest yet)."""
        try:
            with self.fs.open(f"{step_dir}/{MANIFEST}", "r") as handle:
                return json.loads(handle.read()).get("attempt")
        except FileNotFoundError:
            return None

    def _current_attempt_or_none(self, step_dir: str, default: str) -> str | None:
        try:
            return self._current_attempt(step_dir)
        except (*storage_errors(), ValueError):
            return default

    def _remove_superseded(self, step_dir: str, mine: str, previous: str | None) -> None:
        """Remove the attempts no manifest will name again (see the module docstring)."""
        current = self._current_attempt_or_none(step_dir, default=mine)
        if current is None:  # the manifest vanished (the run prefix was removed): touch nothing
            return
        superseded = {a for a in (previous, mine) if a is not None and a != current}
        try:
            attempts = [
                a.rstrip("/").rsplit("/", 1)[-1] for a in self.fs.ls(f"{step_dir}/attempts", detail=False)
            ]
        except storage_errors():
            attempts = []
        now = datetime.now(UTC)
        for attempt in attempts:
            if attempt == current:
                continue
            if attempt in superseded or _older_than(attempt, now, ORPHAN_GRACE_S):
                self._remove_quietly(f"{step_dir}/attempts/{attempt}")

    def _upload_tree(self, staging: Path, target: str) -> None:
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copytree(staging, target)
        else:
            for path in sorted(staging.rglob("*")):
                if path.is_file():
                    self.fs.put_file(str(path), f"{target}/{path.relative_to(staging).as_posix()}")

    def _atomic_write_text(self, path: str, text: str) -> None:
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        else:  # one PUT: S3 makes an object visible whole or not at all
            self.fs.pipe_file(path, text.encode("utf-8"))

    def _remove_quietly(self, path: str) -> None:
        try:
            if self.fs.exists(path):
                self.fs.rm(path, recursive=True)
        except storage_errors() as exc:  # cleanup must never hide the real outcome
            logger.warning("could not remove %s: %s", self.to_uri(path), describe_error(exc))

    # reading -------------------------------------------------------------------------------

    def local_copy(self, uri: str, into: Path) -> Path:
        """A local path for ``uri``: the file itself when local, else a download into ``into``."""
        if self.is_local:
            return Path(uri)
        into.mkdir(parents=True, exist_ok=True)
        path = uri[len("s3://") :] if uri.startswith("s3://") else uri
        target = into / path.rstrip("/").rsplit("/", 1)[-1]
        try:
            if self.fs.isdir(path):
                self.fs.get(path, str(target), recursive=True)
            else:
                self.fs.get_file(path, str(target))
        except storage_errors() as exc:
            raise self._failed(f"download {uri}", exc) from exc
        return target

    def exists(self, uri: str) -> bool:
        """Whether a published output (a URI of a manifest) is still there."""
        path = uri[len("s3://") :] if uri.startswith("s3://") else uri
        try:
            return bool(self.fs.exists(path))
        except storage_errors() as exc:
            raise self._failed(f"check {uri}", exc) from exc

    # small files -----------------------------------------------------------------------------

    def write_bytes(self, path: str, data: bytes) -> None:
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            return
        try:
            self.fs.pipe_file(path, data)
        except storage_errors() as exc:
            raise self._failed(f"write {self.to_uri(path)}", exc) from exc

    def read_bytes(self, path: str) -> bytes | None:
        try:
            with self.fs.open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except storage_errors() as exc:
            raise self._failed(f"read {self.to_uri(path)}", exc) from exc

    def remove(self, path: str) -> None:
        self._remove_quietly(path)
