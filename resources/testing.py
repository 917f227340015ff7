"""Test doubles and real throw-away servers for the platform's integration tests.

* :func:`moto_s3_server` — moto's ``ThreadedMotoServer`` on a free loopback port: the real
  S3 HTTP protocol through boto3, no AWS account.
* :func:`postgres_database` — a uniquely named database on a PostgreSQL server
  (``AOOCT_TEST_PG``, default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``),
  dropped afterwards; raises :class:`ServiceUnavailable` when no server answers.
* :func:`inject_s3_connection_errors` — make the next N calls of one S3 operation fail
  with a connection error, to exercise botocore's and Dagster's retries.
"""
from __future__ import annotations

import contextlib
import os
import socket
import uuid

__all__ = ["ServiceUnavailable", "free_port", "moto_s3_server", "postgres_database",
           "inject_s3_connection_errors", "PG_ADMIN_URL"]

PG_ADMIN_URL = os.environ.get("AOOCT_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


class ServiceUnavailable(RuntimeError):
    """The server a test needs does not answer (the test should skip, saying which)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def moto_s3_server(bucket: str = "aooct-test"):
    """Yield the endpoint URL of a fresh moto S3 server with ``bucket`` created."""
    import boto3
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def postgres_database(admin_url: str = PG_ADMIN_URL):
    """Yield the URL of a new, empty database ``aooct_test_<random>``; drop it afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"aooct_test_{uuid.uuid4().hex[:12]}"
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        engine.dispose()
        raise ServiceUnavailable(f"no PostgreSQL server answers at {admin_url} ({exc.orig}); "
                                 "start one or set AOOCT_TEST_PG") from exc
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        engine.dispose()


def inject_s3_connection_errors(store, operation: str = "PutObject", n: int = 1) -> dict:
    """Make the next ``n`` ``operation`` calls of ``store`` (an S3ObjectStore) fail to connect.

    Returns a dict whose ``"failed"`` entry counts the injected failures.
    """
    from botocore.exceptions import EndpointConnectionError

    state = {"left": n, "failed": 0}

    def _fail(**kwargs):
        if state["left"] > 0:
            state["left"] -= 1
            state["failed"] += 1
            raise EndpointConnectionError(endpoint_url=store.endpoint_url or "s3")

    store.client.meta.events.register(f"before-send.s3.{operation}", _fail)
    return state


# --- issue 17: faults that need a server of our own -----------------------------------------
# * private_postgres — a throw-away PostgreSQL cluster (initdb in a temporary folder, its own
#   loopback port), so a test may stop and restart *its* server without touching the shared
#   one other tests and people use; raises ServiceUnavailable when it cannot be made here.
# * small_tmpfs — a size-limited tmpfs mounted for a test (the object store's disk filling up);
#   ServiceUnavailable where mounting is not allowed (not root, no CAP_SYS_ADMIN).
# The S3 fault proxy is resources/fault_proxy.py.

__all__ += ["PrivatePostgres", "private_postgres", "small_tmpfs"]  # noqa: F405


def _pg_bindir() -> str | None:
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return os.path.dirname(found[-1]) if found else None


class PrivatePostgres:
    """One PostgreSQL cluster in ``data_dir`` listening on ``127.0.0.1:port`` (trust auth)."""

    def __init__(self, bindir: str, data_dir: str, port: int, run_as: list[str]):
        self.bindir, self.data_dir, self.port, self._run_as = bindir, data_dir, port, run_as
        self.url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"

    def _pg_ctl(self, *args: str, timeout: float = 60) -> None:
        import subprocess

        cmd = [*self._run_as, f"{self.bindir}/pg_ctl", "-D", self.data_dir, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr or res.stdout}")

    def start(self) -> None:
        opts = (f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c max_connections=50")
        self._pg_ctl("-l", f"{self.data_dir}/server.log", "-o", opts, "-w", "-t", "30", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; ``immediate`` ends every connection at once, like a crash."""
        self._pg_ctl("-m", mode, "-w", "-t", "30", "stop")

    def is_running(self) -> bool:
        import subprocess

        res = subprocess.run([*self._run_as, f"{self.bindir}/pg_ctl", "-D", self.data_dir, "status"],
                             capture_output=True, timeout=30)
        return res.returncode == 0

    def restart(self, mode: str = "immediate") -> None:
        self.stop(mode)
        self.start()


@contextlib.contextmanager
def private_postgres():
    """Yield a started :class:`PrivatePostgres`; stopped and deleted afterwards, whatever happens."""
    import shutil
    import subprocess
    import tempfile

    bindir = _pg_bindir()
    if bindir is None:
        raise ServiceUnavailable("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)")
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            import pwd

            pw = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ServiceUnavailable("running as root and there is no 'postgres' user to run "
                                     "initdb as") from exc
        run_as = ["runuser", "-u", "postgres", "--"]
    data_dir = tempfile.mkdtemp(prefix="aooct-pg-")
    if run_as:
        os.chown(data_dir, pw.pw_uid, pw.pw_gid)
    os.chmod(data_dir, 0o700)
    init = subprocess.run([*run_as, f"{bindir}/initdb", "-D", data_dir, "-U", "postgres",
                           "--auth=trust", "-E", "UTF8", "--no-sync"],
                          capture_output=True, text=True, timeout=120)
    if init.returncode != 0:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise ServiceUnavailable(f"initdb failed: {init.stderr.strip()[-300:]}")
    pg = PrivatePostgres(bindir, data_dir, free_port(), run_as)
    try:
        pg.start()
        yield pg
    finally:
        try:
            if pg.is_running():
                pg.stop("immediate")
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def small_tmpfs(path, size_bytes: int):
    """Mount a tmpfs of ``size_bytes`` on the (new or empty) folder ``path``; unmounted after.

    Yields a function ``resize(size_bytes)`` that remounts it with another size (freeing
    space). Raises :class:`ServiceUnavailable` where this process may not mount.
    """
    import subprocess
    from pathlib import Path

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise ServiceUnavailable("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size_bytes)},mode=0755",
                          "aooct-test-tmpfs", str(path)], capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise ServiceUnavailable(f"cannot mount a tmpfs here: {res.stderr.strip()}")

    def resize(new_size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={int(new_size)}", str(path)],
                       check=True, capture_output=True, timeout=30)

    try:
        yield resize
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
