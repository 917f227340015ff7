"""ml imports without platform packages; MLflow logging works as a callback."""
import subprocess
import sys
from pathlib import Path

import pytest

from ml.tracking import flatten_scores

ROOT = Path(__file__).resolve().parents[2]


def test_ml_imports_without_platform_packages():
    code = ("import sys; import ml.inference, ml.train, ml.pipeline, ml.backends, ml.uncertainty; "
            "bad = [m for m in ('mlflow', 'dagster', 'sqlalchemy', 'boto3', 'streamlit') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_flatten_scores():
    flat = flatten_scores({"confocal": {"LoG baseline": {"dice_mean": 0.7, "n_images": 3, "x": "s"}}})
    assert flat == {"confocal.LoG_baseline.dice_mean": 0.7, "confocal.LoG_baseline.n_images": 3.0}


def test_mlflow_callback_logs_and_registers(tmp_path):
    pytest.importorskip("mlflow")
    import mlflow
    import numpy as np

    from ml.augment import AugmentConfig, render_heatmap
    from ml.data import Sample
    from ml.models import build_model
    from ml.tracking import MLflowCallback
    from ml.train import TrainConfig, train

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cb = MLflowCallback(tracking_uri=uri, experiment="test",
                        artifact_location=(tmp_path / "artifacts").as_uri())
    pts = np.array([[r, c] for r in range(4, 40, 7) for c in range(4, 40, 7)], np.float32)
    s = Sample(image=render_heatmap(pts, (48, 48), 1.3), subject_id="s", name="s", points_rc=pts)
    cfg = TrainConfig(task="cones", kind="cells", steps=2, batch_size=2, log_every=1,
                      num_threads=1, augment=AugmentConfig(patch_px=32))
    model = build_model("cells", widths=(8, 16))
    train(model, [s], cfg, callbacks=(cb,))
    out = tmp_path / "w"
    out.mkdir()
    (out / "cones.pt").write_bytes(b"weights")
    (out / "cones.model_card.md").write_text("# card")
    cb.on_finalize("cones", out, {"scores": {"set": {"network": {"dice_mean": 0.5}}},
                                  "model_version": "cones-test", "modality_draws": {"split-detector": 2}})
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    run = client.get_run(cb.run.info.run_id)
    assert run.data.metrics["set.network.dice_mean"] == 0.5
    assert "train.loss" in run.data.metrics and run.data.params["steps"] == "2"
    assert run.data.params["sampler.draws.split-detector"] == "2"
    assert (tmp_path / "artifacts").is_dir()      # nothing written into the working tree
    mv = client.get_model_version("aooct-cones", cb.registered_version)
    assert mv.description == "# card" and mv.tags["model_version"] == "cones-test"
