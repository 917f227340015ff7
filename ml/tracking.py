"""MLflow tracking as a training callback (params, curves, metrics, artifacts, registry).

MLflow is imported only when :class:`MLflowCallback` is constructed, so ``ml`` imports on a
GPU box without MLflow. The callback logs the training config as params, the loss/lr curve
as step metrics, the held-out scores as metrics, the weights, ONNX file and model card as
artifacts, and registers a model version named ``aooct-<task>`` whose description is the
model card.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["MLflowCallback", "flatten_scores"]


def flatten_scores(scores: dict) -> dict[str, float]:
    """``{"set": {"method": {"dice_mean": x}}}`` → ``{"set.method.dice_mean": x}`` (numbers only)."""
    flat = {}
    for set_name, by_method in scores.items():
        for method, figs in by_method.items():
            for key, value in figs.items():
                if isinstance(value, (int, float)):
                    name = f"{set_name}.{method}.{key}".replace(" ", "_").replace("+", "_")
                    flat[name] = float(value)
    return flat


class MLflowCallback:
    """Log one MLflow run per training and register the resulting model version.

    Parameters
    ----------
    tracking_uri : str, optional
        MLflow tracking URI (default: MLflow's own default / ``MLFLOW_TRACKING_URI``).
    experiment : str
        Experiment name.
    register : bool
        Register ``aooct-<task>`` in the model registry after finalisation.
    artifact_location : str, optional
        Artifact root for a newly created experiment (URI or path).
    """

    def __init__(self, *, tracking_uri: str | None = None, experiment: str = "aooct-segmenter",
                 register: bool = True, artifact_location: str | None = None) -> None:
        import mlflow  # noqa: PLC0415 - deliberately lazy: ml must import without MLflow
        self.mlflow = mlflow
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        # A new experiment's artifacts go to ``artifact_location`` (default: MLflow's
        # ``./mlruns`` next to the working directory).
        if artifact_location and mlflow.get_experiment_by_name(experiment) is None:
            mlflow.create_experiment(experiment, artifact_location=artifact_location)
        mlflow.set_experiment(experiment)
        self.register = register
        self.run = None
        self.registered_version: str | None = None

    def on_train_start(self, model, config) -> None:
        self.run = self.mlflow.start_run(run_name=f"train-{config.task}")
        params = config.as_dict()
        aug = params.pop("augment")
        self.mlflow.log_params({**params, **{f"augment.{k}": v for k, v in aug.items()}})

    def on_log(self, step: int, metrics: dict) -> None:
        self.mlflow.log_metrics({f"train.{k}": float(v) for k, v in metrics.items()}, step=step)

    def on_train_end(self, model, result) -> None:
        self.mlflow.log_metrics({"train.seconds": result.seconds,
                                 "train.stopped_by_time": float(result.stopped_by_time)})

    def on_finalize(self, task: str, out_dir: Path, results: dict) -> None:
        """Log held-out metrics and artifacts, register the version, end the run."""
        mlflow = self.mlflow
        try:
            mlflow.log_metrics(flatten_scores(results.get("scores", {})))
            # Sampler draws are recipe, not TrainConfig: logged here so runs compare on them.
            draws = results.get("modality_draws") or {}
            if draws:
                mlflow.log_params({f"sampler.draws.{m}": n for m, n in sorted(draws.items())})
            mlflow.set_tag("model_version", results.get("model_version", ""))
            for suffix in (".pt", ".onnx", ".model_card.md", ".results.json"):
                path = Path(out_dir) / f"{task}{suffix}"
                if path.exists():
                    mlflow.log_artifact(str(path), artifact_path="model")
            if self.register and self.run is not None:
                # The weights are plain files, not an MLflow "logged model", so the version
                # is created from the run's artifact folder with the low-level client.
                card = (Path(out_dir) / f"{task}.model_card.md").read_text()
                client = mlflow.tracking.MlflowClient()
                name = f"aooct-{task}"
                if not client.search_registered_models(filter_string=f"name = '{name}'"):
                    client.create_registered_model(name, description=f"aooct {task} segmenter")
                version = client.create_model_version(
                    name, source=f"{self.run.info.artifact_uri}/model", run_id=self.run.info.run_id,
                    description=card, tags={"model_version": results.get("model_version", "")})
                self.registered_version = str(version.version)
        finally:
            mlflow.end_run()
