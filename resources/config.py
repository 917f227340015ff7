"""Platform configuration from environment variables, with embedded defaults.

Every endpoint comes from one variable so that the same code runs on a laptop
(embedded SQLite, local folders, MLflow on SQLite) and on a cluster
(PostgreSQL, S3/MinIO, an MLflow server) without edits:

===========================  =====================================================
variable                     meaning (default)
===========================  =====================================================
``AOOCT_HOME``               state folder (``./.aooct_home``)
``AOOCT_DB_URL``             metadata DB (``sqlite:///$AOOCT_HOME/aooct.db``);
                             PostgreSQL: ``postgresql+psycopg2://user@host/db``
``AOOCT_OBJECT_STORE``       artifacts: a folder or ``s3://bucket/prefix``
                             (``$AOOCT_HOME/objects``)
``AOOCT_S3_ENDPOINT_URL``    S3-compatible endpoint, e.g. MinIO
                             (falls back to ``AWS_ENDPOINT_URL``; unset = AWS)
``AOOCT_S3_REGION``          S3 region (falls back to ``AWS_REGION``, then ``us-east-1``)
``AOOCT_S3_CONNECT_TIMEOUT_S`` seconds to connect to S3, per attempt (``10``)
``AOOCT_S3_READ_TIMEOUT_S``  seconds S3 may take to answer, per attempt (``60``)
``MLFLOW_TRACKING_URI``      model registry (``sqlite:///$AOOCT_HOME/mlflow.db``)
``AOOCT_DROP``               where new cases are dropped: a folder or ``s3://`` prefix
                             (``$AOOCT_HOME/drop``)
``AOOCT_EXPORT``             where exports go (review app, gateway): a folder or ``s3://``
                             prefix (``$AOOCT_HOME/exports``)
``AOOCT_DEVICE``             compute device for GPU steps: ``cpu`` or ``cuda`` (``cpu``)
``AOOCT_CASE_ID_CONFLICT``   a drop whose ``case_id`` is already stored with other
                             content: ``version`` (new partition ``<id>~v2``; default)
                             or ``quarantine``; never an overwrite
``AOOCT_DEID_KEY``           secret (hex, ≥ 32 digits) of the keyed UID mapping of DICOM
                             de-identification; the same on every worker. Unset: a
                             random key kept in ``$AOOCT_HOME/secrets/deid.key`` (0600)
``DAGSTER_HOME``             Dagster instance folder (``$AOOCT_HOME/dagster``), set by
                             ``aooct demo``; ``dagster.yaml`` in the repository shows
                             the PostgreSQL variant
===========================  =====================================================
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PlatformConfig", "load_config", "deid_uid_key"]


@dataclass(frozen=True)
class PlatformConfig:
    """Resolved endpoints of one deployment (all strings, ready for the resources)."""

    home: Path
    db_url: str
    object_store: str
    s3_endpoint_url: str | None
    s3_region: str
    mlflow_tracking_uri: str
    drop: str
    device: str
    export: str = ""
    case_id_conflict: str = "version"
    s3_connect_timeout_s: float = 10.0
    s3_read_timeout_s: float = 60.0

    def store_options(self) -> dict:
        """Keyword arguments of :func:`resources.object_store.make_object_store` for this
        deployment: ``make_object_store(cfg.drop, **cfg.store_options())``."""
        return {"endpoint_url": self.s3_endpoint_url, "region": self.s3_region,
                "connect_timeout_s": self.s3_connect_timeout_s,
                "read_timeout_s": self.s3_read_timeout_s}

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.home / "mlflow_artifacts"


def load_config(env: Mapping[str, str] | None = None) -> PlatformConfig:
    """Read the platform configuration from ``env`` (default ``os.environ``).

    Relative local paths are resolved against the current directory so that the
    Dagster daemon, the webserver and ``aooct ui`` started from the same folder
    see the same data.
    """
    env = os.environ if env is None else env
    home = Path(env.get("AOOCT_HOME") or "./.aooct_home").expanduser().resolve()
    device = env.get("AOOCT_DEVICE", "cpu")
    if device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"AOOCT_DEVICE must be 'cpu' or 'cuda[:N]'; got {device!r}")
    conflict = env.get("AOOCT_CASE_ID_CONFLICT") or "version"
    if conflict not in ("version", "quarantine"):
        raise ValueError(f"AOOCT_CASE_ID_CONFLICT must be 'version' or 'quarantine'; got {conflict!r}")
    return PlatformConfig(
        home=home,
        db_url=env.get("AOOCT_DB_URL") or f"sqlite:///{home / 'aooct.db'}",
        object_store=_local_or_s3(env.get("AOOCT_OBJECT_STORE"), home / "objects"),
        s3_endpoint_url=env.get("AOOCT_S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL") or None,
        s3_region=env.get("AOOCT_S3_REGION") or env.get("AWS_REGION") or "us-east-1",
        mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}",
        drop=_local_or_s3(env.get("AOOCT_DROP"), home / "drop"),
        device=device,
        export=_local_or_s3(env.get("AOOCT_EXPORT"), home / "exports"),
        case_id_conflict=conflict,
        s3_connect_timeout_s=_seconds(env, "AOOCT_S3_CONNECT_TIMEOUT_S", 10.0),
        s3_read_timeout_s=_seconds(env, "AOOCT_S3_READ_TIMEOUT_S", 60.0),
    )


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 3600:
        raise ValueError(f"{name} must be a number of seconds in (0, 3600]; got {raw!r}")
    return value


def _local_or_s3(value: str | None, default: Path) -> str:
    if not value:
        return str(default)
    if value.startswith("s3://"):
        return value
    return str(Path(value).expanduser().resolve())


def deid_uid_key(env: Mapping[str, str] | None = None) -> bytes:
    """The installation's secret for de-identified DICOM UIDs and subject pseudonyms
    (``AOOCT_DEID_KEY`` or a key file).

    The key file is created once, readable by its owner only; losing it only means that
    a study received again later gets other UIDs (subjects already in the subject map keep
    their pseudonym; nothing stored depends on the key otherwise).
    """
    import secrets

    env = os.environ if env is None else env
    if env.get("AOOCT_DEID_KEY"):
        try:
            key = bytes.fromhex(env["AOOCT_DEID_KEY"].strip())
        except ValueError as exc:
            raise ValueError("AOOCT_DEID_KEY must be hexadecimal (e.g. `openssl rand -hex 32`)") from exc
        if len(key) < 16:
            raise ValueError("AOOCT_DEID_KEY must have at least 32 hex digits (16 bytes)")
        return key
    path = load_config(env).home / "secrets" / "deid.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".deid.key.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)  # first writer wins; the others read its key
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())
