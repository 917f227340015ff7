"""Dagster resources: thin configurable wrappers that build the plain interfaces.

Each resource has string configuration (so it shows in the Dagster UI and can come from
``EnvVar``) and a ``get()`` that returns the interface object the assets use
(:class:`~resources.object_store.ObjectStore`, :class:`~resources.metadata_db.MetadataDB`,
:class:`~resources.model_registry.ModelRegistry`) or the device string. Tests may pass
the interface objects themselves as resources; :func:`unwrap` accepts both.
"""
from __future__ import annotations

from typing import Any

from dagster import ConfigurableResource
from pydantic import PrivateAttr

from resources.compute import resolve_device
from resources.metadata_db import MetadataDB, SqlMetadataDB
from resources.model_registry import ModelRegistry
from resources.object_store import ObjectStore, make_object_store

__all__ = ["ObjectStoreResource", "MetadataDBResource", "ModelRegistryResource",
           "ComputeDevice", "unwrap"]


class ObjectStoreResource(ConfigurableResource):
    """``url``: a folder or ``s3://bucket/prefix``; ``endpoint_url`` for MinIO/moto;
    the timeouts (seconds, per attempt) apply to S3 only."""

    url: str
    endpoint_url: str | None = None
    region: str | None = "us-east-1"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    _store: Any = PrivateAttr(default=None)

    def get(self) -> ObjectStore:
        if self._store is None:
            self._store = make_object_store(self.url, endpoint_url=self.endpoint_url or None,
                                            region=self.region, connect_timeout_s=self.connect_timeout_s,
                                            read_timeout_s=self.read_timeout_s)
        return self._store


class MetadataDBResource(ConfigurableResource):
    """``url``: ``sqlite:///path`` or ``postgresql+psycopg2://user@host/db``."""

    url: str
    _db: Any = PrivateAttr(default=None)

    def get(self) -> MetadataDB:
        if self._db is None:
            self._db = SqlMetadataDB(self.url)
        return self._db


class ModelRegistryResource(ConfigurableResource):
    """``tracking_uri``: MLflow tracking URI; ``artifact_location`` for new runs."""

    tracking_uri: str
    artifact_location: str | None = None
    cache_dir: str | None = None
    _registry: Any = PrivateAttr(default=None)

    def get(self) -> ModelRegistry:
        if self._registry is None:
            self._registry = ModelRegistry(self.tracking_uri,
                                           artifact_location=self.artifact_location or None,
                                           cache_dir=self.cache_dir or None)
        return self._registry


class ComputeDevice(ConfigurableResource):
    """``device``: ``cpu`` or ``cuda[:N]``; validated when a step asks for it."""

    device: str = "cpu"

    def get(self) -> str:
        return resolve_device(self.device)


def unwrap(resource: Any) -> Any:
    """The interface object behind a resource (or the object itself when passed directly)."""
    if isinstance(resource, (ObjectStore, MetadataDB, ModelRegistry, str)):
        return resource
    return resource.get()
