"""Task definitions: which data, which subjects are held out, which training settings.

The hold-out subjects are fixed here (not chosen by score) so every number in
``bench/results_ml.md`` can be reproduced. Committed weights are the models trained on
the *training* subjects only — the same models that were scored on the held-out subjects.
"""
from __future__ import annotations

from dataclasses import replace

from ml.augment import AugmentConfig
from ml.data import (Sample, load_cone_set, load_rossa, load_rpe_set, phantom_capillary_samples,
                     split_by_subject, synthetic_nfl_samples)
from ml.train import TrainConfig

__all__ = ["TASK_KINDS", "HOLDOUT", "PHANTOM_CAPILLARY_SEEDS", "default_config", "load_task_data",
           "cone_folds", "task_metadata", "MODALITY_DRAWS", "training_draws"]

TASK_KINDS = {"cones": "cells", "rpe": "cells", "capillaries": "vessels", "nfl": "nfl"}

#: Held-out subjects per task and set (subject-level split, fixed before training).
HOLDOUT = {
    "cones": {"confocal": {"JC_0138", "JC_0395"},
              "split-detector": {"JC_10121", "JC_10318", "JC_0905"}},
    "rpe": {"aooct-rpe": {"1610", "3339"}},
    "capillaries": {"octa": "ROSSA val split",
                    "phantom": "phantom seeds 1000-1007 (SVP slab) and 1000-1003 (OCTA SVP slab)"},
    "nfl": {"synthetic-nfl": "seeds 1000+ (never trained on)"},
}

#: Wall-clock guards (min) — the sum stays inside the shared CPU budget.
_MINUTES = {"cones": 16.0, "rpe": 12.0, "capillaries": 14.0, "nfl": 5.0}
#: Phantom seeds of the capillary task: training seeds and held-out seeds never overlap.
PHANTOM_CAPILLARY_SEEDS = {"train": list(range(30)), "svp": list(range(1000, 1008)),
                           "octa_svp": list(range(1000, 1004))}
_STEPS = {"cones": 6500, "rpe": 3000, "capillaries": 6000, "nfl": 1200}
#: Tasks trained with bfloat16 autocast and NHWC activations (2x the steps per minute on
#: this CPU); the others keep the float32 recipe their committed weights were trained with.
_FAST_PRECISION = {"cones", "capillaries"}
#: How many times each training image of a modality is listed for the batch sampler (1 when
#: absent). The sampler draws uniformly, so N lists it N times as often; calibration and
#: scoring still use every image once. Cones: split-detector images twice — the harder
#: modality; 5-fold CV by subject 0.961 split detector / 0.993 confocal with it, against
#: 0.957 / 0.993 without (bench/results_ml.md, "Cross-validation").
MODALITY_DRAWS: dict[str, dict[str, int]] = {"cones": {"split-detector": 2}}


def default_config(task: str, **overrides) -> TrainConfig:
    """Training settings sized to finish in ≤ 20 min on 2 CPU cores."""
    if task not in TASK_KINDS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_KINDS)}")
    aug = AugmentConfig()
    if task == "capillaries":
        aug = replace(aug, patch_px=128, zoom=(0.85, 1.2))
    if task == "nfl":
        aug = replace(aug, patch_px=96, zoom=(0.7, 1.4))
    fast = task in _FAST_PRECISION
    cfg = TrainConfig(task=task, kind=TASK_KINDS[task], steps=_STEPS[task],
                      max_minutes=_MINUTES[task],
                      batch_size=8 if task == "capillaries" else 12, augment=aug,
                      precision="bf16" if fast else "fp32", channels_last=fast)
    return replace(cfg, **overrides)


def cone_folds(n_folds: int = 5, *, root=None) -> list[dict[str, set[str]]]:
    """Subject-level folds for cones: fold k holds out every n_folds-th subject of each
    modality starting at the k-th (round robin over sorted ids; with the set's 5 confocal
    subjects and n_folds=5, one confocal subject per fold). Each subject is held out once."""
    folds = [{"confocal": set(), "split-detector": set()} for _ in range(n_folds)]
    for modality in ("confocal", "split-detector"):
        subjects = sorted({s.subject_id for s in load_cone_set(modality, root=root)})
        for i, sid in enumerate(subjects):
            folds[i % n_folds][modality].add(sid)
    return folds


def load_task_data(task: str, *, root=None, holdout: dict | None = None
                   ) -> tuple[list[Sample], dict[str, list[Sample]]]:
    """Training samples and held-out sets (name → samples) of a task.

    ``holdout`` overrides :data:`HOLDOUT` for cones (cross-validation folds).
    """
    if task == "cones":
        train, held = [], {}
        spec = holdout or HOLDOUT["cones"]
        for modality in ("confocal", "split-detector"):
            tr, te = split_by_subject(load_cone_set(modality, root=root), spec[modality])
            train += tr
            held[modality] = te
        return train, held
    if task == "rpe":
        tr, te = split_by_subject(load_rpe_set(root=root), HOLDOUT["rpe"]["aooct-rpe"])
        return tr, {"aooct-rpe": te}
    if task == "capillaries":
        # ROSSA OCTA (≈ 9.4 µm/px) plus phantom AO-OCT structural SVP slabs (≈ 1.1-3.4
        # µm/px): the same network then serves both scales (see ml.inference.segment_vessels).
        seeds = PHANTOM_CAPILLARY_SEEDS
        train = load_rossa("train", root=root) + phantom_capillary_samples(seeds["train"], slab="svp")
        held = {"rossa-val": load_rossa("val", root=root),
                "phantom-svp": phantom_capillary_samples(seeds["svp"], slab="svp"),
                "phantom-octa_svp": phantom_capillary_samples(seeds["octa_svp"], slab="octa_svp")}
        return train, held
    if task == "nfl":
        return synthetic_nfl_samples(160, seed=0), {"synthetic-nfl": synthetic_nfl_samples(20, seed=1000)}
    raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_KINDS)}")


def training_draws(task: str, train_set: list[Sample], *,
                   draws: dict[str, int] | None = None) -> list[Sample]:
    """The list the batch sampler draws from: ``train_set`` with each image of a modality
    repeated ``draws[modality]`` times (default: the task's :data:`MODALITY_DRAWS`)."""
    draws = MODALITY_DRAWS.get(task, {}) if draws is None else draws
    bad = {m: n for m, n in draws.items() if not isinstance(n, int) or n < 1}
    if bad:
        raise ValueError(f"modality draws must be integers >= 1, got {bad}; use 1 for 'as often as the others'")
    # Original order first, then the extra copies: with all draws at 1 the list (and so
    # every batch of a seeded run) is exactly the training set.
    extra = [s for n_extra in range(1, max(draws.values(), default=1))
             for s in train_set if draws.get(s.modality, 1) > n_extra]
    return list(train_set) + extra


def task_metadata(task: str, train_set: list[Sample]) -> dict:
    """Extra checkpoint metadata of a task, computed from its training set.

    For the vessel tasks: ``train_um_per_px_ranges`` — the (min, max) pixel sizes in µm of
    each training source that publishes one (e.g. ROSSA ≈ 9.4; phantom ≈ 1.1-3.4), which
    :func:`ml.inference.segment_vessels` uses to resample images of other scales.
    """
    if task != "capillaries":
        return {}
    ranges: dict[str, list[float]] = {}
    for s in train_set:
        if s.um_per_px is None:
            continue
        lo, hi = ranges.get(s.modality, [s.um_per_px, s.um_per_px])
        ranges[s.modality] = [min(lo, s.um_per_px), max(hi, s.um_per_px)]
    return {"train_um_per_px_ranges": sorted([round(lo, 3), round(hi, 3)] for lo, hi in ranges.values())}
