"""Fixtures for the resource tests: object stores (local, memory, real S3 protocol via moto)."""
from __future__ import annotations

import pytest

from resources.object_store import InMemoryObjectStore, LocalObjectStore, S3ObjectStore
from resources.testing import ServiceUnavailable, moto_s3_server, postgres_database


@pytest.fixture(scope="session")
def s3_endpoint():
    with moto_s3_server("aooct-test") as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "memory", "s3"])
def any_store(request, tmp_path):
    if request.param == "local":
        return LocalObjectStore(tmp_path / "objects")
    if request.param == "memory":
        return InMemoryObjectStore()
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3ObjectStore("aooct-test", f"t-{tmp_path.name}", endpoint_url=endpoint)


@pytest.fixture
def pg_url():
    try:
        with postgres_database() as url:
            yield url
    except ServiceUnavailable as exc:
        pytest.skip(str(exc))
