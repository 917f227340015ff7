"""Model cards (Mitchell et al. 2019) for the committed task models, as Markdown.

References
----------
.. [1] Mitchell M et al. "Model cards for model reporting." FAT* 2019, 220-229.
"""
from __future__ import annotations

import json

__all__ = ["render_model_card", "cross_validation_section", "with_section"]

_INTENDED = {
    "cones": "Cone photoreceptor centre detection in AOSLO (confocal, split detector) and AO-OCT "
             "IS/OS en face images, for cone density / spacing metrics with uncertainty.",
    "rpe": "RPE cell centre detection in AO-OCT RPE en face images (dark centres, bright borders).",
    "capillaries": "Capillary segmentation in OCTA / AO-OCT vascular en face slabs.",
    "nfl": "Nerve fiber bundle mask and orientation in AO-OCT NFL en face slabs (research use).",
}
_DATA = {
    "cones": "Cunefare et al. 2017 AOSLO training halves (Garrioch 2012 confocal; Cunefare 2016 "
             "split detector), GPL-2.0; subjects listed below.",
    "rpe": "Soltanian-Zadeh et al. 2024 AO-OCT RPE ROIs, IU crops and full-FOV N=90 (MIT).",
    "capillaries": "ROSSA (Ning et al. ICASSP 2024) train split, 100 images (MIT).",
    "nfl": "Synthetic striated bundle images (ml.data.synthetic_nfl_samples); no real annotated "
           "NFL data were available.",
}
_LIMITS = {
    "cones": "Trained on parafoveal AOSLO mosaics; foveal centre (rods absent, very dense cones) and "
             "diseased retina are out of distribution. Cone spacing 5-25 px handled via zoom augmentation.",
    "rpe": "Six healthy subjects plus two IU crops; pixel size unknown, so spacing is learned in px.",
    "capillaries": "ROSSA OCTA (320x320, 3x3 mm class); AO-OCT capillary slabs have finer sampling "
                   "and were not annotated; check masks visually.",
    "nfl": "Only synthetic training data: the outputs on real NFL slabs are unvalidated.",
}


def _draws_sentence(draws: dict) -> str:
    more = {m: n for m, n in draws.items() if n > 1}
    if not more:
        return ""
    return " Sampler: " + ", ".join(f"{m} images drawn {n}x as often" for m, n in sorted(more.items())) + "."


def render_model_card(task: str, meta: dict, results: dict) -> str:
    """Markdown model card with intended use, data, protocol, figures and limitations."""
    cfg = meta.get("train_config", {})
    lines = [
        f"# Model card: `{task}` ({meta.get('model_version', '?')})",
        "",
        "## Intended use",
        _INTENDED.get(task, ""),
        "Research use only; not a medical device. Review flagged (low-confidence) outputs.",
        "",
        "## Model",
        f"Compact U-Net (`ml.models.UNet`), widths {meta.get('widths')}, "
        f"{meta.get('n_parameters', '?')} parameters, head kind `{meta.get('kind')}`; "
        f"weights stored as float16 in `{task}.pt`, float32 ONNX in `{task}.onnx` (opset 17).",
        f"Post-processing (calibrated on training images only): "
        + json.dumps({k: meta[k] for k in ("peak_threshold", "min_distance_factor", "mask_threshold")
                      if k in meta}),
        "",
        "## Training data",
        _DATA.get(task, ""),
        f"Training images: {meta.get('n_train_images')}; training subjects: "
        f"{', '.join(meta.get('train_subjects', [])[:20])}.",
        f"Training: {meta.get('train_steps')} steps of batch {cfg.get('batch_size')} patches "
        f"{cfg.get('augment', {}).get('patch_px')} px, AdamW lr {cfg.get('lr')}, seed {cfg.get('seed')}, "
        f"{'bfloat16 autocast' if cfg.get('precision') == 'bf16' else 'float32'}"
        f"{' (NHWC)' if cfg.get('channels_last') else ''}, "
        f"{meta.get('train_seconds', 0) / 60:.1f} min on device `{meta.get('train_device', 'cpu')}`"
        + (" (time-limited schedule)" if meta.get("time_limited") else "") + "."
        + _draws_sentence(meta.get("modality_draws") or {}),
        "The same configuration fits the 20-minute guard of `aooct train` on 2 CPU cores "
        "(wall-clock guard with a time-aware learning-rate schedule; see bench/results_ml.md).",
        "",
        "## Evaluation",
        "Held-out subjects (never seen in training): "
        + json.dumps(results.get("holdout", {}), default=str) + ".",
        "Protocol: " + results.get("protocol", ""),
        "",
        "| set | method | figures |",
        "|---|---|---|",
    ]
    for set_name, by_method in results.get("scores", {}).items():
        for method, figs in by_method.items():
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in figs.items())
            lines.append(f"| {set_name} | {method} | {shown} |")
    lines += ["", "## Limitations", _LIMITS.get(task, ""),
              "Committed weights are the hold-out models (trained on the training subjects only), "
              "i.e. exactly the models scored above; they were not retrained on all subjects.", ""]
    return "\n".join(lines)


def cross_validation_section(summary: dict) -> str:
    """Markdown section for a cross-validation summary (``bench/accuracy/cross_validate.py``).

    It scores the *training recipe* (configuration and steps), not the committed weights:
    each fold's model is trained without the fold's subjects.
    """
    lines = ["## Cross-validation by subject",
             f"{summary.get('folds_done')} of {summary.get('folds')} folds; each fold trained "
             f"({summary.get('steps_per_fold')} steps) without its held-out subjects, calibrated on "
             "its own training images; every image scored once. Image-weighted means.",
             "", "| set | method | Dice | sensitivity | FDR | count error % | Dice per fold |",
             "|---|---|---|---|---|---|---|"]
    for set_name, by_method in summary.get("scores", {}).items():
        for method in ("network", "LoG baseline"):
            f = by_method.get(method)
            if f:
                lines.append(f"| {set_name} ({by_method['n_images']} images) | {method} | "
                             f"{f['dice_mean']:.4f} | {f['sensitivity_mean']:.4f} | {f['fdr_mean']:.4f} | "
                             f"{f['count_error_pct_mean']:.2f} | "
                             f"{', '.join(f'{d:.3f}' for d in f['dice_per_fold'])} |")
    return "\n".join(lines) + "\n"


def with_section(card: str, section: str) -> str:
    """``card`` with the ``## `` section of the same title replaced by ``section`` (or appended)."""
    title = section.splitlines()[0]
    if title in card:
        head, rest = card.split(title, 1)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        return head + section + ("\n" + tail if tail else "")
    return card.rstrip("\n") + "\n\n" + section
