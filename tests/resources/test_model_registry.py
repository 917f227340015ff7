"""ModelRegistry over a local MLflow (SQLite store): seed, versions, aliases, cards, weights."""
from __future__ import annotations

import json

import pytest

from resources.model_registry import ModelRegistry


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    for task, payload in (("cones", b"c" * 64), ("nfl", b"n" * 32)):
        (d / f"{task}.pt").write_bytes(payload)
        (d / f"{task}.onnx").write_bytes(payload[:8])
        (d / f"{task}.model_card.md").write_text(f"# {task} model\nTrained on ...\n")
    (d / "cones.metrics.json").write_text(json.dumps({"f1": 0.91, "held_out": {"f1": 0.88}, "note": "x"}))
    return d


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    d = tmp_path_factory.mktemp("mlflow")
    return ModelRegistry(f"sqlite:///{d / 'mlflow.db'}", artifact_location=str(d / "artifacts"),
                         cache_dir=d / "cache")


def test_seed_is_idempotent_and_sets_champion(registry, weights):
    assert registry.seed_from_committed_weights(weights) == ["aooct-cones", "aooct-nfl"]
    assert registry.seed_from_committed_weights(weights) == []
    models = {m["name"]: m for m in registry.list_models()}
    cones = models["aooct-cones"]
    assert cones["aliases"] == {"champion": 1}
    assert cones["metrics"] == {"f1": 0.91, "held_out.f1": 0.88}
    assert cones["model_card"].startswith("# cones model")
    assert cones["versions"][0]["model_version"].startswith("cones-")
    path = registry.load_weights("aooct-cones")
    assert path.read_bytes() == b"c" * 64 and path.with_suffix(".onnx").exists()


def test_new_version_moves_alias_and_unknown_alias_is_a_clear_error(registry, weights, tmp_path):
    registry.seed_from_committed_weights(weights)
    new = tmp_path / "cones.pt"
    new.write_bytes(b"better" * 10)
    v = registry.register_from_file("aooct-cones", new, "# cones v2", {"f1": 0.95})
    assert v == 2
    assert registry.load_weights("aooct-cones", alias="champion").read_bytes() == b"better" * 10
    assert registry.get_model_card("aooct-cones", 1).startswith("# cones model")
    assert registry.model_version_info("aooct-cones")["version"] == 2
    with pytest.raises(KeyError, match="aooct-cones@staging"):
        registry.load_weights("aooct-cones", alias="staging")
    with pytest.raises(FileNotFoundError):
        registry.register_from_file("aooct-x", tmp_path / "missing.pt", "")


def test_alias_resolution_is_cached_for_the_ttl_then_refreshed(registry, weights, tmp_path):
    registry.seed_from_committed_weights(weights)
    other = ModelRegistry(registry.tracking_uri, cache_dir=registry.cache_dir, alias_ttl_s=3600)
    before = other.model_version_info("aooct-nfl")["version"]
    new = tmp_path / "nfl.pt"
    new.write_bytes(b"nfl v2")
    ModelRegistry(registry.tracking_uri, cache_dir=tmp_path / "elsewhere").register_from_file(
        "aooct-nfl", new, "# nfl v2")
    # another process moved the alias: seen after the TTL, not before (no MLflow call needed)
    assert other.model_version_info("aooct-nfl")["version"] == before
    other.alias_ttl_s = 0
    assert other.model_version_info("aooct-nfl")["version"] == before + 1
    assert other.load_weights("aooct-nfl").read_bytes() == b"nfl v2"
