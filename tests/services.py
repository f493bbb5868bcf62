"""Real services for the tests, on free loopback ports, started and stopped by the tests themselves.

* :class:`PostgresServer` — a throwaway PostgreSQL cluster (the machine's server binaries; as root
  the server runs as the ``postgres`` user, because ``initdb`` refuses root), trust authentication
  on 127.0.0.1 only. It can be stopped and started again mid-test on the same port and data.
* :class:`S3Server` — moto's S3 server over real HTTP with signature checking turned on (an IAM
  user, an access key and a policy are created first, then every request must be signed with that
  key), reached through a :class:`FaultProxy` that can refuse connections or answer 500 on demand,
  so the endpoint can "go down" and "come back" without losing the objects behind it.
* :class:`MlflowServer` — an ``mlflow server`` process with a PostgreSQL backend store and
  artifacts proxied to the S3 server (``--serve-artifacts --artifacts-destination s3://...``).
  Only the server gets S3 credentials; clients reach it through its URL alone.

Each has a context manager (:func:`postgres_server`, :func:`s3_server`, :func:`mlflow_server`)
that a session fixture wraps. A missing binary or package is reported with
:func:`tests.support.unavailable` (skip on a laptop with an install hint, fail in CI).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import free_port, unavailable

PG_VERSIONS = ("17", "16", "15")
PG_INSTALL_HINT = "apt-get install postgresql-15 (server binaries under /usr/lib/postgresql/15/bin)"


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def find_pg_bin() -> Path | None:
    """Folder holding ``initdb`` and ``postgres``: ``PG_BIN``, Debian's layout, or ``PATH``."""
    candidates = [os.environ.get("PG_BIN", "")]
    candidates += [f"/usr/lib/postgresql/{v}/bin" for v in PG_VERSIONS]
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "postgres").is_file():
            return Path(folder)
    return None


def _as_server_user() -> dict[str, Any]:
    """Popen arguments that run the server as ``postgres`` when the tests run as root."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        unavailable("the `postgres` system user (initdb refuses to run as root)", PG_INSTALL_HINT)
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder, listening on 127.0.0.1:``port`` only."""

    def __init__(self, bin_dir: Path, root: Path, port: int):
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.log_path = root / "server.log"
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    # addresses ---------------------------------------------------------------------------

    def url(self, database: str = "postgres", driver: str = "psycopg2") -> str:
        """SQLAlchemy URL (``driver=""`` gives a plain ``postgresql://`` URL, as MLflow takes)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", **kwargs: Any):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, connect_timeout=5, **kwargs
        )

    def create_database(self, name: str) -> str:
        """Create ``name`` (dropping an older one) and return its SQLAlchemy URL."""
        from psycopg2 import sql

        conn = self.connect()
        try:
            conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with conn.cursor() as cur:
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()
        return self.url(name)

    def query(self, database: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    # life cycle ----------------------------------------------------------------------------

    def init(self) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.sockets, "postgres")
        os.chmod(self.root, 0o755)  # noqa: S103 - the server user must reach its data folder
        subprocess.run(
            [
                str(self.bin_dir / "initdb"),
                "-D", str(self.data),
                "-A", "trust",
                "-U", "postgres",
                "-E", "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            **_as_server_user(),
        )  # fmt: skip

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Start the server (again) on the same port and data; returns once it accepts connections."""
        if self.running:
            return
        log = open(self.log_path, "ab")  # noqa: SIM115 - the server holds it; closed by the OS at exit
        self.process = subprocess.Popen(
            [
                str(self.bin_dir / "postgres"),
                "-D", str(self.data),
                "-h", "127.0.0.1",
                "-p", str(self.port),
                "-k", str(self.sockets),
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
                "-c", "max_connections=200",
                "-c", "shared_buffers=64MB",
                "-c", "max_wal_size=2GB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            **_as_server_user(),
        )  # fmt: skip
        log.close()
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                self.connect().close()
                return
            except psycopg2.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"PostgreSQL did not start:\n{self.log_tail()}") from None
                time.sleep(0.1)

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server. ``fast`` (SIGINT) aborts open transactions and disconnects clients, as
        an operator's ``pg_ctl stop`` does; ``immediate`` (SIGQUIT) is a crash without shutdown."""
        if not self.running:
            return
        assert self.process is not None
        signals = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
        self.process.send_signal(signals[mode])
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @contextlib.contextmanager
    def stopped(self, mode: str = "fast") -> Iterator[None]:
        """Stopped inside the block, running again after it."""
        self.stop(mode)
        try:
            yield
        finally:
            self.start()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no server log)"


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh PostgreSQL cluster on a free loopback port; removed afterwards."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        unavailable("PostgreSQL server binaries (initdb, postgres)", PG_INSTALL_HINT)
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        unavailable("psycopg2", "pip install psycopg2-binary")
    root = Path(tempfile.mkdtemp(prefix="mlp-pg-"))
    server = PostgresServer(bin_dir, root, free_port())
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# A TCP proxy in front of a service that can refuse connections or answer HTTP 500
# --------------------------------------------------------------------------------------------

_ERROR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again. (injected by the test proxy)"
    b"</Message></Error>"
)


class FaultProxy:
    """Forwards TCP connections from its own loopback port to ``target_port``.

    Modes: ``"pass"`` (forward), ``"http500"`` (answer every request with an S3 ``InternalError``
    500 and close), ``"down"`` (nothing listens: connection refused). Switching mode cuts the
    connections already open, so a client's keep-alive pool cannot bypass the fault.
    """

    def __init__(self, target_port: int, port: int | None = None):
        self.target_port = target_port
        self.port = port or free_port()
        self.mode = "pass"
        self.answered_500 = 0
        self.refused_since: float | None = None
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="fault-proxy").start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed ("down" or shutdown)
            with self._lock:
                mode = self.mode
                self._connections.add(client)
            target = self._http500 if mode == "http500" else self._forward
            threading.Thread(target=target, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
        except OSError:
            self._close(client)
            return
        upstream.settimeout(None)
        with self._lock:
            self._connections.add(upstream)

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                self._close(src)
                self._close(dst)

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)

    def _http500(self, client: socket.socket) -> None:
        """Answer every request on this connection like a failing S3 server: read the request
        (its body too, unless the client waits for ``100 Continue``), then a 500 ``InternalError``."""
        client.settimeout(10)
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method = lines[0].split(" ", 1)[0].upper()
                headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
                expects_continue = headers.get("expect", "").lower() == "100-continue"
                length = int(headers.get("content-length", "0") or 0)
                chunked = "chunked" in headers.get("transfer-encoding", "").lower()
                if not expects_continue:
                    if chunked:
                        while not buffer.endswith(b"0\r\n\r\n"):
                            chunk = client.recv(65536)
                            if not chunk:
                                return
                            buffer += chunk
                        buffer = b""
                    else:
                        while len(buffer) < length:
                            chunk = client.recv(65536)
                            if not chunk:
                                return
                            buffer += chunk
                        buffer = buffer[length:]
                with self._lock:
                    self.answered_500 += 1
                body = b"" if method == "HEAD" else _ERROR_BODY
                close = expects_continue or chunked
                client.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
                    + f"Content-Length: {len(_ERROR_BODY)}\r\n".encode()
                    + (b"Connection: close\r\n" if close else b"")
                    + b"\r\n"
                    + body
                )
                if close:  # the unread body must not be taken for the next request
                    return
        except OSError:
            pass
        finally:
            self._close(client)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._connections.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def _cut_connections(self) -> None:
        with self._lock:
            open_now = list(self._connections)
        for sock in open_now:
            self._close(sock)

    def set_mode(self, mode: str) -> None:
        if mode not in ("pass", "http500", "down"):
            raise ValueError(mode)
        with self._lock:
            previous, self.mode = self.mode, mode
        self._cut_connections()
        if mode == "down" and previous != "down":
            assert self._listener is not None
            self._listener.close()
            self._listener = None
        elif mode != "down" and previous == "down":
            self._listen()

    @contextlib.contextmanager
    def fault(self, mode: str) -> Iterator[FaultProxy]:
        """``mode`` inside the block, forwarding again after it."""
        self.set_mode(mode)
        try:
            yield self
        finally:
            self.set_mode("pass")

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._cut_connections()


# --------------------------------------------------------------------------------------------
# S3 (moto's server mode, with signature checking)
# --------------------------------------------------------------------------------------------


@dataclass
class S3Server:
    """moto's S3 server (``direct_url``) behind a :class:`FaultProxy` (``url``)."""

    direct_url: str
    proxy: FaultProxy
    access_key_id: str = ""
    secret_access_key: str = ""
    region: str = "us-east-1"
    buckets: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The endpoint the pipeline uses (through the fault proxy)."""
        return self.proxy.url

    def client(self, endpoint: str | None = None, key: str | None = None, secret: str | None = None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.direct_url,
            aws_access_key_id=key or self.access_key_id,
            aws_secret_access_key=secret or self.secret_access_key,
            region_name=self.region,
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def get(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def pipeline_env(self, endpoint: str | None = None) -> dict[str, str]:
        """The pipeline's S3 settings for this endpoint (through the proxy unless told otherwise)."""
        return {
            "PIPELINE_S3__ENDPOINT_URL": endpoint or self.url,
            "PIPELINE_S3__REGION": self.region,
            "PIPELINE_S3__ACCESS_KEY_ID": self.access_key_id,
            "PIPELINE_S3__SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def server_env(self) -> dict[str, str]:
        """What a server process (MLflow) needs to reach the bucket directly."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "MLFLOW_S3_ENDPOINT_URL": self.direct_url,
        }


def _moto_api(url: str, path: str, body: bytes) -> None:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{url}{path}", data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        response.read()


@contextlib.contextmanager
def s3_server(log_dir: Path, buckets: tuple[str, ...] = ("ml-pipeline",)) -> Iterator[S3Server]:
    """moto's S3 server in a subprocess, signatures checked, buckets created, behind a proxy."""
    try:
        import boto3
        import moto.server  # noqa: F401
    except ImportError:
        unavailable("moto's S3 server", "pip install -e '.[dev]' (moto[server])")
    port = free_port()
    log_path = log_dir / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    direct = f"http://127.0.0.1:{port}"
    proxy: FaultProxy | None = None
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"moto exited {process.returncode}: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{direct}/moto-api/", timeout=2):  # noqa: S310 - loopback
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"no answer from moto: {log_path.read_text()[-2000:]}") from None
                time.sleep(0.2)
        # Signature checking: an IAM user with an S3 policy and an access key, then auth on.
        import boto3

        bootstrap = {"aws_access_key_id": "bootstrap", "aws_secret_access_key": "bootstrap"}
        iam = boto3.client("iam", endpoint_url=direct, region_name="us-east-1", **bootstrap)
        iam.create_user(UserName="ml-pipeline")
        iam.put_user_policy(
            UserName="ml-pipeline",
            PolicyName="s3",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )
        key = iam.create_access_key(UserName="ml-pipeline")["AccessKey"]
        _moto_api(direct, "/moto-api/reset-auth", b"0")
        proxy = FaultProxy(port)
        server = S3Server(direct, proxy, key["AccessKeyId"], key["SecretAccessKey"])
        for bucket in buckets:
            server.create_bucket(bucket)
        yield server
    finally:
        if proxy is not None:
            proxy.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --------------------------------------------------------------------------------------------
# MLflow tracking server
# --------------------------------------------------------------------------------------------


class MlflowServer:
    """``mlflow server`` on PostgreSQL with artifacts proxied to S3; stoppable mid-test."""

    def __init__(self, backend_uri: str, artifacts_destination: str, s3: S3Server, log_dir: Path):
        self.backend_uri = backend_uri
        self.artifacts_destination = artifacts_destination
        self.s3 = s3
        self.port = free_port()
        self.log_path = log_dir / f"mlflow-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_uri,
            "--serve-artifacts",
            "--artifacts-destination", self.artifacts_destination,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--workers", "1",
            "--allowed-hosts", f"127.0.0.1:{self.port},localhost:{self.port}",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_", "PIPELINE_"))}
        env.update(self.s3.server_env())
        env.update(
            {
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:  # noqa: S310
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def start(self, timeout: float = 180) -> None:
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env(),
                start_new_session=True,  # its own process group: stop() reaches the workers too
            )
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log_path.read_text(errors="replace")[-4000:]
                self.stop()
                raise AssertionError(f"mlflow server did not start:\n{tail}")
            time.sleep(0.3)

    def stop(self, timeout: float = 30) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        # Workers in the group may outlive the parent by a moment: wait until the port is free.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()


@contextlib.contextmanager
def mlflow_server(
    postgres: PostgresServer, s3: S3Server, log_dir: Path, database: str, artifacts_destination: str
) -> Iterator[MlflowServer]:
    """An MLflow server on its own database of ``postgres``, artifacts under ``artifacts_destination``."""
    if shutil.which("mlflow", path=str(Path(sys.executable).parent)) is None:
        unavailable("the `mlflow` server", "pip install -e . (mlflow)")
    backend = postgres.create_database(database).replace("postgresql+psycopg2://", "postgresql://")
    server = MlflowServer(backend, artifacts_destination, s3, log_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def unique(prefix: str) -> str:
    """A short unique name for per-test databases, buckets and models."""
    return f"{prefix}{secrets.token_hex(3)}"
