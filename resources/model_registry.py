"""Model registry over MLflow: versions, aliases (``@champion``), model cards and metrics.

Weights are registered as plain artifacts (the ``.pt`` checkpoint, its ``.onnx`` export
and the model card) rather than as ``mlflow.pytorch`` models: MLflow 3.17 saves torch
models with a fixed input signature unless logged with ``serialization_format="pickle"``
or as a pyfunc, and our inference (``ml.inference``) tiles images of any size from the
checkpoint file itself. A model version's ``source`` is the run's artifact folder.

The default tracking URI is SQLite under ``AOOCT_HOME`` (the model registry needs a
database-backed store); a server (``http://mlflow:5000``) works unchanged.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["ModelRegistry", "MODEL_PREFIX"]

MODEL_PREFIX = "aooct-"
_EXPERIMENT = "aooct-model-registry"


class ModelRegistry:
    """Register, list and fetch model weights by name and alias.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking URI (``sqlite:///...``, ``file:...`` or ``http://...``).
    artifact_location : str or None
        Where new runs store artifacts (a folder or ``s3://``); MLflow's default if None.
    cache_dir : str or None
        Where :meth:`load_weights` puts downloaded files (a temporary folder if None).
    """

    def __init__(self, tracking_uri: str, *, artifact_location: str | None = None,
                 cache_dir: str | os.PathLike | None = None, alias_ttl_s: float | None = None):
        if tracking_uri.startswith("sqlite:///"):
            Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self._client = None
        self.alias_ttl_s = float(os.environ.get("AOOCT_MODEL_ALIAS_TTL_S", "300")
                                 if alias_ttl_s is None else alias_ttl_s)
        self.cache_dir = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="aooct-models-"))
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ModelRegistry({self.tracking_uri!r})"

    @property
    def client(self):
        """The MlflowClient, created on first use (importing MLflow and opening its store
        costs 2-4 s, which a step whose alias is cached does not pay)."""
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _alias_file(self, name: str, alias: str) -> Path:
        return self.cache_dir / name / f"alias-{alias}.json"

    def _resolve(self, name: str, alias: str) -> dict:
        """``name@alias`` → version info + local weights path; cached for ``alias_ttl_s``.

        Step processes would otherwise each open MLflow just to learn that the champion has
        not moved; an alias moved by ``register_from_file`` in this process is seen at once,
        one moved elsewhere within ``alias_ttl_s`` (``AOOCT_MODEL_ALIAS_TTL_S``, 300 s).
        """
        import time

        f = self._alias_file(name, alias)
        if self.alias_ttl_s > 0 and f.exists():
            info = json.loads(f.read_text())
            if time.time() - info["resolved_at"] < self.alias_ttl_s and Path(info["path"]).exists():
                return info
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            raise KeyError(f"model {name}@{alias} is not registered in {self.tracking_uri}; "
                           "call seed_from_committed_weights() or register_from_file()") from exc
        folder = self._download(name, mv.version)
        weights = sorted(folder.glob("*.pt"))
        if not weights:
            raise FileNotFoundError(f"model {name} v{mv.version} has no .pt file in {mv.source}")
        info = {"name": name, "version": int(mv.version), "alias": alias,
                "model_version": mv.tags.get("model_version"),
                "weights_sha256": mv.tags.get("weights_sha256"), "path": str(weights[0]),
                "resolved_at": time.time()}
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, f)
        return info

    # queries ---------------------------------------------------------------
    def list_models(self) -> list[dict]:
        """Every registered model: name, versions (with tags, metrics), aliases, card text."""
        out = []
        for rm in self.client.search_registered_models():
            versions = []
            for mv in self.client.search_model_versions(f"name='{rm.name}'"):
                run_metrics = self.client.get_run(mv.run_id).data.metrics if mv.run_id else {}
                versions.append({
                    "version": int(mv.version), "model_version": mv.tags.get("model_version"),
                    "weights_sha256": mv.tags.get("weights_sha256"), "source": mv.source,
                    "metrics": dict(run_metrics), "status": mv.status,
                    "created_at_ms": mv.creation_timestamp,
                })
            versions.sort(key=lambda v: v["version"])
            aliases = dict(rm.aliases) if rm.aliases else {}
            latest = versions[-1]["version"] if versions else None
            out.append({"name": rm.name, "versions": versions,
                        "aliases": {k: int(v) for k, v in aliases.items()},
                        "model_card": self.get_model_card(rm.name, latest) if latest else "",
                        "metrics": versions[-1]["metrics"] if versions else {}})
        return sorted(out, key=lambda m: m["name"])

    def get_model_card(self, name: str, version: int | str) -> str:
        """The model card (markdown) registered with ``name`` version ``version``."""
        folder = self._download(name, str(version))
        cards = sorted(folder.glob("*.model_card.md")) + sorted(folder.glob("*.md"))
        return cards[0].read_text() if cards else ""

    def load_weights(self, name: str, alias: str = "champion") -> Path:
        """Local path of the ``.pt`` weights of ``name@alias`` (downloaded once, then cached)."""
        return Path(self._resolve(name, alias)["path"])

    def model_version_info(self, name: str, alias: str = "champion") -> dict:
        info = self._resolve(name, alias)
        return {k: info[k] for k in ("name", "version", "alias", "model_version", "weights_sha256")}

    # writes ----------------------------------------------------------------
    def register_from_file(self, name: str, weights_path: str | os.PathLike, card_md: str,
                           metrics: dict[str, float] | None = None, *,
                           extra_files: tuple[str | os.PathLike, ...] = (),
                           alias: str | None = "champion") -> int:
        """Log ``weights_path`` (+ card, extra files) in a run and register it as a new version.

        Returns the new version number; ``alias`` (default ``champion``) is moved to it.
        """
        weights_path = Path(weights_path)
        if not weights_path.is_file():
            raise FileNotFoundError(f"{weights_path}: weights file not found")
        sha = hashlib.sha256(weights_path.read_bytes()).hexdigest()
        exp_id = self._experiment_id()
        run = self.client.create_run(exp_id, run_name=f"register-{name}")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                stage = Path(tmp) / "model"
                stage.mkdir()
                shutil.copy2(weights_path, stage / weights_path.name)
                for f in extra_files:
                    shutil.copy2(f, stage / Path(f).name)
                (stage / f"{weights_path.stem}.model_card.md").write_text(card_md)
                (stage / "metrics.json").write_text(json.dumps(metrics or {}, sort_keys=True))
                self.client.log_artifacts(run.info.run_id, str(stage), artifact_path="model")
            for key, value in (metrics or {}).items():
                self.client.log_metric(run.info.run_id, key, float(value))
            self.client.set_terminated(run.info.run_id)
        except Exception:
            self.client.set_terminated(run.info.run_id, status="FAILED")
            raise
        if not self.client.search_registered_models(f"name='{name}'"):
            self.client.create_registered_model(name)
        source = f"{run.info.artifact_uri}/model"
        mv = self.client.create_model_version(
            name, source=source, run_id=run.info.run_id,
            tags={"model_version": f"{weights_path.stem}-{sha[:12]}", "weights_sha256": sha},
        )
        if alias:
            self.client.set_registered_model_alias(name, alias, mv.version)
            self._alias_file(name, alias).unlink(missing_ok=True)
        return int(mv.version)

    def seed_from_committed_weights(self, weights_dir: str | os.PathLike | None = None) -> list[str]:
        """Register every ``ml/weights/<task>.pt`` (or ``$AOOCT_WEIGHTS_DIR``) not yet registered as ``aooct-<task>@champion``.

        Idempotent: a task whose committed weights (same sha256) are already a version
        is skipped. Returns the names registered now.
        """
        if weights_dir is None:  # the same folder ml.inference uses
            from ml import WEIGHTS_DIR

            weights_dir = os.environ.get("AOOCT_WEIGHTS_DIR", WEIGHTS_DIR)
        weights_dir = Path(weights_dir)
        registered = []
        for pt in sorted(weights_dir.glob("*.pt")):
            name = MODEL_PREFIX + pt.stem
            sha = hashlib.sha256(pt.read_bytes()).hexdigest()
            known = self.client.search_model_versions(f"name='{name}'") if \
                self.client.search_registered_models(f"name='{name}'") else []
            if any(mv.tags.get("weights_sha256") == sha for mv in known):
                continue
            card = weights_dir / f"{pt.stem}.model_card.md"
            metrics_file = weights_dir / f"{pt.stem}.metrics.json"
            metrics = _numeric(json.loads(metrics_file.read_text())) if metrics_file.exists() else {}
            extras = tuple(p for p in (weights_dir / f"{pt.stem}.onnx",) if p.exists())
            self.register_from_file(name, pt, card.read_text() if card.exists() else "",
                                    metrics, extra_files=extras)
            registered.append(name)
        return registered

    # helpers ---------------------------------------------------------------
    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(_EXPERIMENT)
        if exp is not None:
            return exp.experiment_id
        return self.client.create_experiment(_EXPERIMENT, artifact_location=self.artifact_location)

    def _download(self, name: str, version: str) -> Path:
        import mlflow.artifacts

        target = self.cache_dir / name / str(version)
        if not target.exists():
            mv = self.client.get_model_version(name, str(version))
            tmp = Path(tempfile.mkdtemp(dir=self.cache_dir))
            mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(tmp),
                                                tracking_uri=self.tracking_uri)
            found = tmp / "model" if (tmp / "model").is_dir() else tmp
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(found, target)  # atomic: a half-downloaded model is never used
        return target


def _numeric(d: dict, prefix: str = "") -> dict[str, float]:
    """Flatten a metrics JSON to MLflow's ``name -> float`` (non-numbers are dropped)."""
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_numeric(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out
