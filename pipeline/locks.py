"""Locks shared by every process that works on the same state: on one machine or across a cluster.

:func:`shared_lock` (the sweep's trial reservation) and :class:`RegistryLease` (the registry's
compare-and-set on ``champion``, kept in the registry itself; see its docstring). Both hand the
holder a ``check()`` to call before each write the lock protects: it raises
:class:`LockLostError` (retryable) once the lock may be held by someone else.

For :func:`shared_lock`: with a PostgreSQL URL the lock is a session advisory lock on that
server (pods on different nodes share it); otherwise it is a file lock (processes of one machine).
Both are released by their process's death, so a killed holder never leaves the lock taken.
Waiting is bounded: past ``timeout`` the caller gets a ``RetryableError``, as it does when
PostgreSQL is unreachable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import RetryableError

if TYPE_CHECKING:  # pragma: no cover
    from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)


class LockLostError(RetryableError):
    """The lock was lost (session ended, lease expired, taken over): stop writing and retry."""


class HeldLock:
    """What :func:`shared_lock` yields: :meth:`check` before each write the lock protects."""

    def __init__(self, what: str, probe: Callable[[], None] | None = None):
        self.what = what
        self.lost = False
        self._probe = probe

    def check(self) -> None:
        if self._probe is None:  # a file lock is held as long as its process lives
            return
        try:
            self._probe()
        except Exception:
            self.lost = True
            raise LockLostError(
                f"{self.what} was lost: the PostgreSQL session that held it ended (a server restart or "
                "a killed session), so another process may hold it now; retry"
            ) from None


@contextlib.contextmanager
def shared_lock(url: str, key: str, lock_file: Path, timeout: float, what: str) -> Iterator[HeldLock]:
    """Hold ``key`` on the PostgreSQL server of ``url``, or ``lock_file`` for any other URL.

    ``what`` names the lock in errors ("the trial reservation of 'sweep-a'"). A PostgreSQL session
    lock disappears with its session (server restart, ``pg_terminate_backend``) without telling
    the holder: call the yielded lock's ``check()`` before each write it protects.
    """
    if url.startswith(("postgresql", "postgres")):
        with _advisory_lock(url, key, timeout, what) as held:
            yield held
        return
    from filelock import FileLock, Timeout

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise RetryableError(f"timed out after {timeout:.0f}s waiting for {what}") from None
    try:
        yield HeldLock(what)
    finally:
        lock.release()


@contextlib.contextmanager
def _advisory_lock(url: str, key: str, timeout: float, what: str) -> Iterator[HeldLock]:
    import sqlalchemy as sa

    from pipeline.featurestore import POSTGRES_CONNECT_ARGS

    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=dict(POSTGRES_CONNECT_ARGS))
    try:
        with engine.connect() as connection:
            deadline = time.monotonic() + timeout
            while not connection.execute(
                sa.text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": key}
            ).scalar():
                if time.monotonic() > deadline:
                    raise RetryableError(f"timed out after {timeout:.0f}s waiting for {what}")
                time.sleep(0.5)
            connection.commit()

            def probe() -> None:  # the session is alive, so the lock it took is still held
                connection.execute(sa.text("SELECT 1")).scalar()
                connection.commit()

            held = HeldLock(what, probe)
            try:
                yield held
            finally:
                if not held.lost:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
                    connection.commit()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise RetryableError(f"{what}: PostgreSQL unreachable: {getattr(exc, 'orig', exc)}") from None
    finally:
        engine.dispose()


# --------------------------------------------------------------------------------------------
# A lease kept in an MLflow Model Registry
# --------------------------------------------------------------------------------------------

LEASE_TAG = "lease_until"  # epoch seconds on the holder's clock
OWNER_TAG = "owner"
TICKET_SOURCE = "ml-pipeline://registry-lock/ticket"  # never read: a ticket has no model
_MISSING = "RESOURCE_DOES_NOT_EXIST"


class RegistryLease:
    """Mutual exclusion among every process that uses one MLflow registry, kept in that registry.

    MLflow has no conditional write, but it numbers the versions of a registered model atomically
    and never reuses a number. Each contender creates a version ("ticket") of the registered model
    ``<model>.lock``; the lowest live ticket holds the lock (first come, first served); releasing
    deletes the ticket. So the lock is keyed to the registry itself: processes that share a
    tracking server exclude each other whatever else they are configured with.

    A ticket carries a lease (tag ``lease_until``) that a background thread renews every
    ``lease_s / 4``. A ticket whose lease ran out (its process died or froze) is deleted by the
    next contender, who may then proceed; the frozen holder finds out at its next :meth:`check`,
    which every write under the lock calls first: it raises :class:`LockLostError` (retryable) when
    the ticket is gone or has less than half its lease left, and never renews a lease that may
    already be taken over. Clocks of the processes are assumed to agree to well within
    ``lease_s / 2`` (NTP). A restart of the tracking server loses nothing: the tickets are rows of
    its database.
    """

    def __init__(self, client: MlflowClient, model: str, lease_s: float, timeout: float, what: str):
        self.client = client
        self.name = f"{model}.lock"
        self.lease_s = lease_s
        self.timeout = timeout
        self.what = what
        # One owner per thread of a process: a retry in the same thread reclaims its own leftovers.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.ticket: str | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # life cycle ------------------------------------------------------------------------------

    def acquire(self, poll_s: float = 0.5) -> None:
        self._ensure_lock_model()
        self.ticket = self._new_ticket()
        deadline = time.monotonic() + self.timeout
        try:
            while ahead := self._tickets_ahead():
                if time.monotonic() > deadline:
                    holder = ahead[0].tags.get(OWNER_TAG, "?")
                    raise RetryableError(
                        f"timed out after {self.timeout:.0f}s waiting for {self.what} (held by {holder}, "
                        f"ticket {ahead[0].version} of registered model {self.name!r})"
                    )
                time.sleep(poll_s)
                if not self._renew(quiet=True):  # our waiting ticket was taken for dead: queue again
                    self._lost = None
                    self.ticket = self._new_ticket()
        except BaseException:
            self.release()
            raise
        self._heartbeat = threading.Thread(target=self._beat, name=f"lease-{self.name}", daemon=True)
        self._heartbeat.start()

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        if self.ticket is not None:
            self._delete_quietly(self.ticket)

    def check(self) -> None:
        """Raise :class:`LockLostError` unless the lock is still ours (call before each write)."""
        if self._lost is None:
            self._renew()
        if self._lost is not None:
            raise LockLostError(f"{self.what} was lost before a write it protects ({self._lost}); retry")

    # tickets ---------------------------------------------------------------------------------

    def _ensure_lock_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            try:
                self.client.create_registered_model(
                    self.name,
                    tags={"ml-pipeline.lock": "true"},
                    description="The ml-pipeline's registry lock: each version is a ticket of a process "
                    "waiting for or holding the lock. Not a model; do not register versions here.",
                )
            except MlflowException:  # created concurrently
                self.client.get_registered_model(self.name)

    def _new_ticket(self) -> str:
        version = self.client.create_model_version(
            self.name,
            source=TICKET_SOURCE,
            tags={OWNER_TAG: self.owner, LEASE_TAG: f"{time.time() + self.lease_s:.3f}"},
        )
        return str(version.version)

    def _tickets_ahead(self) -> list[Any]:
        """Live tickets older than ours; expired ones and our own leftovers are deleted on the way."""
        assert self.ticket is not None
        ahead = []
        for version in self.client.search_model_versions(f"name = '{self.name}'"):
            if int(version.version) >= int(self.ticket):
                continue
            if version.tags.get(OWNER_TAG) == self.owner or _lease_left(version) <= 0:
                self._delete_quietly(str(version.version))
            else:
                ahead.append(version)
        return sorted(ahead, key=lambda v: int(v.version))

    def _renew(self, quiet: bool = False) -> bool:
        """Extend our lease unless it is gone or may already be taken over (then it is lost)."""
        from mlflow.exceptions import MlflowException

        assert self.ticket is not None
        try:
            left = _lease_left(self.client.get_model_version(self.name, self.ticket))
            if left < self.lease_s / 2:
                self._lost = f"its lease had {max(left, 0):.1f}s of {self.lease_s:.0f}s left"
                return False
            self.client.set_model_version_tag(
                self.name, self.ticket, LEASE_TAG, f"{time.time() + self.lease_s:.3f}"
            )
            return True
        except MlflowException as exc:
            if exc.error_code == _MISSING:
                self._lost = f"ticket {self.ticket} of {self.name!r} was deleted by another process"
                return False
            if quiet:
                return True
            raise RetryableError(f"cannot check {self.what}: {str(exc).splitlines()[0][:300]}") from None

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 4):
            try:
                if not self._renew():
                    logger.warning("%s: lost (%s)", self.what, self._lost)
                    return
            except RetryableError as exc:  # check() refuses writes once the lease runs short
                logger.warning("could not renew %s: %s", self.what, exc)

    def _delete_quietly(self, version: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.delete_model_version(self.name, version)
        except MlflowException as exc:  # already gone, or the server is away: the lease expires
            if exc.error_code != _MISSING:
                logger.warning("could not delete ticket %s of %s: %s", version, self.name, exc)


def _lease_left(version: Any) -> float:
    try:
        return float(version.tags.get(LEASE_TAG, "0")) - time.time()
    except ValueError:
        return 0.0


@contextlib.contextmanager
def registry_lease(
    client: MlflowClient, model: str, lease_s: float, timeout: float, what: str
) -> Iterator[RegistryLease]:
    """Hold the :class:`RegistryLease` of ``model`` inside the block."""
    lease = RegistryLease(client, model, lease_s, timeout, what)
    lease.acquire()
    try:
        yield lease
    finally:
        lease.release()
