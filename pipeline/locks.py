"""Locks shared by every process that works on the same state: on one machine or across a cluster.

With a PostgreSQL URL the lock is a session advisory lock on that server (pods on different nodes
share it); otherwise it is a file lock (processes of one machine). Both are released by their
process's death, so a killed holder never leaves the lock taken. Waiting is bounded: past
``timeout`` the caller gets a ``RetryableError``, as it does when PostgreSQL is unreachable.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import RetryableError


@contextlib.contextmanager
def shared_lock(url: str, key: str, lock_file: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold ``key`` on the PostgreSQL server of ``url``, or ``lock_file`` for any other URL.

    ``what`` names the lock in errors ("the registry lock of 'penguins'").
    """
    if url.startswith(("postgresql", "postgres")):
        with _advisory_lock(url, key, timeout, what):
            yield
        return
    from filelock import FileLock, Timeout

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_file))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise RetryableError(f"timed out after {timeout:.0f}s waiting for {what}") from None
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def _advisory_lock(url: str, key: str, timeout: float, what: str) -> Iterator[None]:
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
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
                connection.commit()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        raise RetryableError(f"{what}: PostgreSQL unreachable: {getattr(exc, 'orig', exc)}") from None
    finally:
        engine.dispose()
