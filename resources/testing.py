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
