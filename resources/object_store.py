"""Object store: one interface, a local-folder, an S3 (boto3) and an in-memory implementation.

Keys are ``/``-separated relative paths (``cases/<case_id>/corrected/volume.npy``).
Every write is atomic, so a killed writer never leaves a partial object under its
final key: locally through a temporary file and ``os.replace`` (temporary names contain
``.tmp-`` and are never listed); on S3 a single ``PutObject``, which S3 only makes
visible once complete, sent with its ``Content-MD5`` so that a body damaged on the way is
refused rather than stored. (S3 keys with ``.tmp-`` left by earlier versions, which wrote
through a temporary key and a copy, are still never listed.)

Transient failures (S3 throttling/5xx, dropped connections) surface as
:class:`TransientStoreError` so that the orchestrator's retry policy can tell them
from bad input, which must not be retried.
"""
from __future__ import annotations

import abc
import errno
import os
import shutil
import stat
import threading
import uuid
from pathlib import Path

from aooct_core.atomicfile import write_atomic

__all__ = [
    "ObjectStore",
    "LocalObjectStore",
    "S3ObjectStore",
    "InMemoryObjectStore",
    "TransientStoreError",
    "make_object_store",
    "TMP_MARKER",
]

TMP_MARKER = ".tmp-"


class TransientStoreError(RuntimeError):
    """A store operation failed for a reason that a retry may fix (network, throttling, 5xx)."""


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key:
        raise ValueError(f"object key must be a non-empty relative '/'-separated path; got {key!r}")
    parts = key.split("/")
    if any(p in ("..", ".", "") for p in parts):
        raise ValueError(f"object key must not contain '.' or '..' segments; got {key!r}")
    return key


class ObjectStore(abc.ABC):
    """Abstract byte store addressed by relative keys."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically (temporary key, then commit)."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Return the bytes under ``key``; ``FileNotFoundError`` naming the key if absent."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def list_objects(self, prefix: str = "") -> dict[str, int]:
        """Committed keys under ``prefix`` with their sizes in bytes, sorted by key."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key`` (no error if it is already absent)."""

    @abc.abstractmethod
    def uri(self, key: str) -> str:
        """A URI a person can paste (``file:///...`` or ``s3://...``)."""

    def list_versions(self, prefix: str = "") -> dict[str, tuple[int, str]]:
        """Committed keys under ``prefix`` with ``(size in bytes, version token)``, sorted.

        The token changes whenever the object is rewritten, even at the same size (local:
        mtime and inode; S3: ETag; memory: a write counter). One listing gives both, so a
        caller that needs sizes and versions lists once. This default has sizes only.
        """
        return {k: (v, "") for k, v in self.list_objects(prefix).items()}

    def refused_entries(self, prefix: str = "") -> dict[str, str]:
        """Entries under ``prefix`` that are not objects and are never read, with the reason:
        symbolic links, FIFOs, sockets and devices in a local folder (none elsewhere)."""
        return {}

    def list_keys(self, prefix: str = "") -> list[str]:
        """Committed keys under ``prefix``, sorted."""
        return list(self.list_objects(prefix))

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        self.put_bytes(key, Path(path).read_bytes())

    def get_file(self, key: str, path: str | os.PathLike) -> Path:
        """Copy ``key`` to the local ``path`` (atomically) and return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}{TMP_MARKER}{uuid.uuid4().hex}")
        tmp.write_bytes(self.get_bytes(key))
        os.replace(tmp, path)
        return path

    def move(self, src: str, dst: str) -> None:
        """Move one object: the copy is committed before the source is deleted, so nothing is lost."""
        self.put_bytes(dst, self.get_bytes(src))
        self.delete(src)

    def move_prefix(self, src_prefix: str, dst_prefix: str, *, last: tuple[str, ...] = ("case.json",)
                    ) -> list[str]:
        """Move every object under ``src_prefix/`` to ``dst_prefix/``; returns the new keys.

        Objects named in ``last`` move last, so an interrupted move of a case folder leaves
        its ``case.json`` (and thus a complete description of what is missing) in place.
        """
        src_prefix, dst_prefix = src_prefix.rstrip("/") + "/", dst_prefix.rstrip("/") + "/"
        moved = []
        # Refused entries (a symlink, a FIFO) move with the folder, never opened.
        found = [*self.list_keys(src_prefix), *self.refused_entries(src_prefix)]
        keys = sorted(found, key=lambda k: (k.rsplit("/", 1)[-1] in last, k))
        for key in keys:
            new_key = dst_prefix + key[len(src_prefix):]
            self.move(key, new_key)
            moved.append(new_key)
        self.remove_empty_folders(src_prefix)
        return moved

    def delete_prefix(self, prefix: str, *, keys=None, first: tuple[str, ...] = ("case.json",)
                      ) -> list[str]:
        """Delete every object under ``prefix/`` (or only ``keys``, all under it); returns
        the deleted keys.

        Objects named in ``first`` go first, so an interrupted delete of a case folder never
        leaves a complete-looking drop (``case.json`` beside only some of its volumes).
        """
        prefix = prefix.rstrip("/") + "/"
        found = self.list_keys(prefix) if keys is None else list(keys)
        if any(not k.startswith(prefix) for k in found):
            raise ValueError(f"delete_prefix({prefix!r}) was given keys outside it")
        keys = sorted(found, key=lambda k: (k.rsplit("/", 1)[-1] not in first, k))
        for key in keys:
            self.delete(key)
        self.remove_empty_folders(prefix)
        return keys

    def remove_empty_folders(self, prefix: str) -> None:
        """Remove the folders left empty under ``prefix/`` (and ``prefix`` itself) once its
        objects are moved or deleted; object stores without folders (S3) have none."""

    def size(self, key: str) -> int:
        sizes = self.list_objects(key)
        if key not in sizes:
            raise FileNotFoundError(f"object {self.uri(key)} does not exist")
        return sizes[key]


class LocalObjectStore(ObjectStore):
    """Objects as files under ``root``; commit by ``os.replace`` in the same folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalObjectStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: tmp.write_bytes(bytes(data)), tmp_prefix=f".{path.name}{TMP_MARKER}")

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}{TMP_MARKER}{uuid.uuid4().hex}")
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _regular(self, key: str) -> Path | None:
        """The file behind ``key`` when it is a regular file reached without a symlink."""
        path = self._path(key)
        try:
            st = path.lstat()
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode) or os.path.realpath(path) != str(path):
            return None  # a symlink (of the file or of a folder on its way) or a FIFO/device
        return path

    def get_bytes(self, key: str) -> bytes:
        path = self._regular(key)
        if path is None:
            full = self._path(key)
            why = self._why_refused(full) or (
                "reached through a symbolic link" if os.path.lexists(full) else None)
            raise FileNotFoundError(f"object {self.uri(key)} does not exist"
                                    + (f" ({why}; the store never follows links)" if why else ""))
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self._regular(key) is not None

    @staticmethod
    def _why_refused(path: Path) -> str | None:
        try:
            st = path.lstat()
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return f"a symbolic link to {os.readlink(path)}" + ("" if path.exists() else " (dangling)")
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file (a FIFO, socket or device)"
        return None

    def _walk(self, prefix: str):
        """(key, lstat or None, refusal reason or None) for every entry under ``prefix``."""
        for dirpath, dirnames, filenames in os.walk(self.root):  # never descends into symlinks
            for name in [*filenames, *[d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]]:
                if TMP_MARKER in name:
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key, full.lstat(), self._why_refused(full)

    def list_objects(self, prefix: str = "") -> dict[str, int]:
        return {k: st.st_size for k, st, why in sorted(self._walk(prefix)) if why is None}

    def list_versions(self, prefix: str = "") -> dict[str, tuple[int, str]]:
        return {k: (st.st_size, f"{st.st_mtime_ns}:{st.st_ino}")
                for k, st, why in sorted(self._walk(prefix)) if why is None}

    def refused_entries(self, prefix: str = "") -> dict[str, str]:
        return {k: why for k, _st, why in sorted(self._walk(prefix)) if why is not None}

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def remove_empty_folders(self, prefix: str) -> None:
        top = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if top.is_symlink() or not top.is_dir():
            return
        for folder, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            if Path(folder) != self.root:
                try:
                    os.rmdir(folder)   # only ever removes an empty folder
                except OSError as exc:
                    if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT, errno.ENOTDIR):
                        raise          # not empty or gone: kept; anything else is reported

    def move(self, src: str, dst: str) -> None:
        s, d = self._path(src), self._path(dst)
        if not (s.is_file() or s.is_symlink() or self._why_refused(s)):
            raise FileNotFoundError(f"object {self.uri(src)} does not exist")
        d.parent.mkdir(parents=True, exist_ok=True)
        os.replace(s, d)  # atomic within one file system

    def uri(self, key: str) -> str:
        return self._path(key).as_uri()

    def local_path(self, key: str) -> Path:
        """The file behind ``key`` (local store only), for zero-copy readers."""
        return self._path(key)


class S3ObjectStore(ObjectStore):
    """Objects in ``s3://bucket/prefix`` through boto3; works with MinIO via ``endpoint_url``.

    ``max_attempts`` is botocore's own retry budget per call (retries after the first
    attempt: botocore's ``retries={"max_attempts": ...}``);
    ``connect_timeout_s`` and ``read_timeout_s`` bound each attempt (botocore's defaults,
    60 s, would hold a step for minutes on a hung endpoint). Transient errors left after
    the attempts (5xx, throttling, timeouts, connections refused, dropped or closed,
    bodies cut short) are raised as :class:`TransientStoreError` for the orchestrator
    to retry.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = "us-east-1", max_attempts: int = 3,
                 connect_timeout_s: float = 10.0, read_timeout_s: float = 60.0, client=None):
        import boto3
        from botocore.config import Config

        if not bucket:
            raise ValueError("S3ObjectStore needs a bucket name, e.g. S3ObjectStore('aooct', 'prod')")
        if not (max_attempts >= 0 and connect_timeout_s > 0 and read_timeout_s > 0):
            raise ValueError(f"S3ObjectStore needs max_attempts >= 0 and positive timeouts; got "
                             f"max_attempts={max_attempts}, connect_timeout_s={connect_timeout_s}, "
                             f"read_timeout_s={read_timeout_s}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self.max_attempts = max_attempts
        self.client = client or boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=Config(retries={"max_attempts": max_attempts, "mode": "standard"},
                          connect_timeout=connect_timeout_s, read_timeout=read_timeout_s),
        )

    def __repr__(self) -> str:
        return f"S3ObjectStore(s3://{self.bucket}/{self.prefix})"

    def _full(self, key: str) -> str:
        _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, fn, **kwargs):
        from botocore.exceptions import ClientError

        try:
            return fn(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = exc.response.get("Error", {}).get("Code", "")
            if status >= 500 or code in ("SlowDown", "Throttling", "RequestTimeout", "InternalError",
                                         "BadDigest"):
                raise TransientStoreError(f"S3 {fn.__name__} on s3://{self.bucket}: {exc}") from exc
            raise
        except _transport_errors() as exc:
            raise TransientStoreError(f"S3 {fn.__name__} on s3://{self.bucket}: {exc}") from exc

    def put_bytes(self, key: str, data: bytes) -> None:
        import base64
        import hashlib

        data = bytes(data)
        digest = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
        self._call(self.client.put_object, Key=self._full(key), Body=data, ContentMD5=digest)

    def get_bytes(self, key: str) -> bytes:
        """The object's bytes; a body cut short is read again (``max_attempts`` times, as
        botocore does for the request: it does not retry the reading of a body)."""
        from botocore.exceptions import ClientError

        reads = self.max_attempts + 1
        for attempt in range(1, reads + 1):
            try:
                response = self._call(self.client.get_object, Key=self._full(key))
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                    raise FileNotFoundError(f"object {self.uri(key)} does not exist") from exc
                raise
            try:
                return response["Body"].read()
            except _transport_errors() as exc:
                if attempt == reads:
                    raise TransientStoreError(
                        f"S3 get_object on {self.uri(key)}: the body was cut short on all "
                        f"{attempt} reads: {exc}") from exc
        raise AssertionError("unreachable")

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._call(self.client.head_object, Key=self._full(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return False
            raise

    def _list(self, prefix: str):
        """(key, listing entry) of every committed object under ``prefix``, page by page."""
        base = f"{self.prefix}/" if self.prefix else ""
        token = None
        while True:
            kwargs = {"Prefix": base + prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(self.client.list_objects_v2, **kwargs)
            for obj in page.get("Contents", []):
                key = obj["Key"][len(base):]
                if TMP_MARKER not in key:
                    yield key, obj
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]

    def list_objects(self, prefix: str = "") -> dict[str, int]:
        return dict(sorted((k, int(o["Size"])) for k, o in self._list(prefix)))

    def list_versions(self, prefix: str = "") -> dict[str, tuple[int, str]]:
        return dict(sorted((k, (int(o["Size"]), str(o.get("ETag", "")))) for k, o in self._list(prefix)))

    def delete(self, key: str) -> None:
        self._call(self.client.delete_object, Key=self._full(key))

    def move(self, src: str, dst: str) -> None:
        if not self.exists(src):
            raise FileNotFoundError(f"object {self.uri(src)} does not exist")
        self._call(self.client.copy_object, Key=self._full(dst),
                   CopySource={"Bucket": self.bucket, "Key": self._full(src)})
        self.delete(src)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"


def _transport_errors() -> tuple[type[BaseException], ...]:
    """botocore's errors of the connection rather than of the request: worth a retry."""
    from botocore.exceptions import (ConnectionClosedError, ConnectionError, EndpointConnectionError,
                                     HTTPClientError, IncompleteReadError, ReadTimeoutError,
                                     ResponseStreamingError)

    return (ConnectionError, EndpointConnectionError, ConnectionClosedError, ReadTimeoutError,
            HTTPClientError, ResponseStreamingError, IncompleteReadError)


class InMemoryObjectStore(ObjectStore):
    """A dict-backed store for tests; thread-safe."""

    def __init__(self):
        self._data: dict[str, bytes] = {}
        self._writes: dict[str, int] = {}
        self._lock = threading.Lock()

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._lock:
            self._data[_check_key(key)] = bytes(data)
            self._writes[key] = self._writes.get(key, 0) + 1

    def list_versions(self, prefix: str = "") -> dict[str, tuple[int, str]]:
        with self._lock:
            return {k: (len(v), str(self._writes[k])) for k, v in sorted(self._data.items())
                    if k.startswith(prefix)}

    def get_bytes(self, key: str) -> bytes:
        with self._lock:
            if key not in self._data:
                raise FileNotFoundError(f"object {self.uri(key)} does not exist")
            return self._data[key]

    def exists(self, key: str) -> bool:
        with self._lock:
            return key in self._data

    def list_objects(self, prefix: str = "") -> dict[str, int]:
        with self._lock:
            return {k: len(v) for k, v in sorted(self._data.items()) if k.startswith(prefix)}

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def uri(self, key: str) -> str:
        return f"memory://{key}"


def make_object_store(url: str, *, endpoint_url: str | None = None,
                      region: str | None = "us-east-1", connect_timeout_s: float = 10.0,
                      read_timeout_s: float = 60.0) -> ObjectStore:
    """Build a store from ``s3://bucket/prefix``, ``memory://`` or a local folder path
    (the timeouts apply to S3 only; see :class:`S3ObjectStore`)."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://"):].partition("/")
        return S3ObjectStore(bucket, prefix, endpoint_url=endpoint_url, region=region,
                             connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s)
    if url.startswith("memory://"):
        return InMemoryObjectStore()
    if url.startswith("file://"):
        url = url[len("file://"):]
    return LocalObjectStore(url)
