"""GET /models over a real MLflow registry (SQLite store): versions, aliases, cards — for the
roles that may see models only."""
from __future__ import annotations

from fastapi.testclient import TestClient

from api.gateway import create_app
from api.local_tokens import LocalTokens, Verifiers
from resources.metadata_db import make_test_metadata_db
from resources.model_registry import ModelRegistry


def test_models_are_listed_for_ml_engineers(tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "cones.pt").write_bytes(b"c" * 64)
    (weights / "cones.onnx").write_bytes(b"c" * 8)
    (weights / "cones.model_card.md").write_text("# cones model\nTrained on ...\n")
    registry = ModelRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=str(tmp_path / "artifacts"),
                             cache_dir=tmp_path / "cache")
    registry.seed_from_committed_weights(weights)
    db = make_test_metadata_db(tmp_path)
    tokens = LocalTokens(tmp_path / "key.pem", db=db)
    for user, role in (("mel", "ML Engineer"), ("lara", "Labeler")):
        db.create_user(user, name=user, email=f"{user}@lab.example", password_hash="$2b$04$" + "x" * 53, role=role)
    client = TestClient(create_app(db=db, verifier=Verifiers(tokens), tokens=tokens, registry=registry))
    r = client.get("/models", headers={"Authorization": f"Bearer {tokens.issue('mel', 'ML Engineer')}"})
    assert r.status_code == 200, r.text
    cones = {m["name"]: m for m in r.json()}["aooct-cones"]
    assert cones["aliases"] == {"champion": 1} and cones["model_card"].startswith("# cones model")
    denied = client.get("/models", headers={"Authorization": f"Bearer {tokens.issue('lara', 'Labeler')}"})
    assert denied.status_code == 403
