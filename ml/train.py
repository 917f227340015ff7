"""Training loop: ``train(model, data, config, *, device, callbacks)``.

The loop knows nothing about MLflow or files; logging is a callback
(:class:`ml.tracking.MLflowCallback`, :class:`PrintCallback`). Runs are reproducible for a
given seed on a given machine: numpy and torch are seeded, batches are drawn from one
``numpy.random.Generator``, and the step count (not the wall clock) ends training — the
time limit is a guard: when the wall clock would run out before the step budget (a
busy shared CPU), the learning-rate schedule follows the elapsed-time fraction instead so
that the run still ends with a decayed learning rate; the result then says
``time_limited=True`` and that run is not bit-reproducible.

``TrainConfig.precision="bf16"`` runs the forward pass under bfloat16 autocast (the
optimiser, weights and loss stay float32); with ``channels_last`` that halves a CPU step on
AVX-512-BF16 processors. The model is handed back float32 and NCHW either way.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from ml.augment import AugmentConfig, make_batch
from ml.data import Sample
from ml.losses import MASK_LOSSES, mask_loss

__all__ = ["TrainConfig", "TrainResult", "Callback", "PrintCallback", "train", "train_step", "task_loss"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run."""

    task: str
    kind: str
    steps: int = 2000
    batch_size: int = 12
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    log_every: int = 50
    max_minutes: float = 20.0
    num_threads: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    #: "bf16": forward pass under bfloat16 autocast (weights, optimiser and loss stay
    #: float32). On this CPU (AVX-512 BF16) with ``channels_last`` a cones step takes
    #: 113 ms instead of 255 ms (bench/results_ml.md), so the same minutes buy 2x the steps.
    precision: str = "fp32"
    #: NHWC activations: oneDNN's faster convolution layout on CPUs.
    channels_last: bool = False
    #: Loss of the mask head (vessels, nfl): one of ``ml.losses.MASK_LOSSES``.
    mask_loss: str = "bce+dice"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["augment"] = asdict(self.augment)
        return d


@dataclass
class TrainResult:
    """History of a run: ``history`` rows are dicts with step, loss, lr, seconds."""

    steps_done: int
    seconds: float
    stopped_by_time: bool
    history: list[dict]
    time_limited: bool = False


class Callback(Protocol):
    def on_train_start(self, model: torch.nn.Module, config: TrainConfig) -> None: ...
    def on_log(self, step: int, metrics: dict) -> None: ...
    def on_train_end(self, model: torch.nn.Module, result: TrainResult) -> None: ...


class PrintCallback:
    """Print a progress line at each log step (for ``aooct train`` and nohup logs)."""

    def on_train_start(self, model, config) -> None:
        print(f"training {config.task}: {config.steps} steps, batch {config.batch_size}", flush=True)

    def on_log(self, step, metrics) -> None:
        items = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        print(f"step {step}: {items}", flush=True)

    def on_train_end(self, model, result) -> None:
        print(f"done: {result.steps_done} steps in {result.seconds:.0f} s"
              + (" (stopped by the time limit)" if result.stopped_by_time else ""), flush=True)


def task_loss(kind: str, out: torch.Tensor, target: torch.Tensor, *, mask_loss_name: str = "bce+dice") -> torch.Tensor:
    """Loss per head kind.

    * cells: BCE against the Gaussian soft heat map (a calibrated "cell-centre" probability);
    * vessels: the mask loss ``mask_loss_name`` (default BCE + soft Dice; see ``ml.losses``);
    * nfl: the mask loss, plus MSE of ``(cos 2θ, sin 2θ)`` inside bundles only.
    """
    if kind == "cells":
        return F.binary_cross_entropy_with_logits(out, target)
    mask_logits, mask = out[:, :1], target[:, :1]
    loss = mask_loss(mask_loss_name, mask_logits, mask)
    if kind == "nfl":
        err = ((torch.tanh(out[:, 1:3]) - target[:, 1:3]) ** 2).sum(dim=1, keepdim=True)
        loss = loss + (err * mask).sum() / mask.sum().clamp_min(1.0)
    return loss


def train_step(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, *,
               kind: str, bf16: bool, mask_loss_name: str = "bce+dice") -> torch.Tensor:
    """One optimisation step: forward (bfloat16 autocast when ``bf16``), float32 loss,
    backward, optimiser step. ``x`` must already be on the model's device and layout.
    Returns the detached loss."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    loss = task_loss(kind, out.float(), y, mask_loss_name=mask_loss_name)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def train(model: torch.nn.Module, data: list[Sample], config: TrainConfig, *,
          device: str = "cpu", callbacks: tuple = ()) -> TrainResult:
    """Train ``model`` in place on augmented patches of ``data``.

    Parameters
    ----------
    model : torch.nn.Module
        Network from :func:`ml.models.build_model`.
    data : list of Sample
        Training images with points (cells) or masks (vessels, nfl).
    config : TrainConfig
        Steps, batch size, learning rate, seed, augmentation.
    device : str
        Torch device, chosen once by the caller ("cpu", "cuda").
    callbacks : tuple
        Objects with ``on_train_start``, ``on_log``, ``on_train_end``.
    """
    if not data:
        raise ValueError(f"no training samples for task {config.task!r}; check the data folder")
    if config.steps < 1 or config.batch_size < 1:
        raise ValueError("steps and batch_size must be >= 1")
    if config.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16'; got {config.precision!r}")
    if config.mask_loss not in MASK_LOSSES:
        raise ValueError(f"mask_loss must be one of {MASK_LOSSES}; got {config.mask_loss!r}")
    torch.manual_seed(config.seed)
    if device == "cpu":
        torch.set_num_threads(config.num_threads)
    else:  # reproducible cuDNN kernels (a few % slower)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    rng = np.random.default_rng(config.seed)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device).to(memory_format=layout).train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    warm = max(1, config.steps // 20)

    budget_s = config.max_minutes * 60

    def lr_at(step: int, time_frac: float | None) -> float:  # warm-up, cosine decay to 2 %
        if step < warm:
            return config.lr * (step + 1) / warm
        t = (step - warm) / max(1, config.steps - warm)
        if time_frac is not None:  # only once the step budget is projected to overrun
            t = max(t, time_frac)
        return config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    for cb in callbacks:
        cb.on_train_start(model, config)
    history, running, t0, stopped = [], [], time.perf_counter(), False
    step, time_limited = 0, False
    for step in range(config.steps):
        elapsed = time.perf_counter() - t0
        # Switch to the time-aware schedule only when the projected run time exceeds the
        # guard (checked after warm-up, when the per-step cost is known); otherwise the
        # schedule depends on the step count alone and the run is reproducible.
        if not time_limited and step > max(warm, 20) and elapsed / step * config.steps > budget_s:
            time_limited = True
        for g in opt.param_groups:
            g["lr"] = lr_at(step, elapsed / budget_s if time_limited else None)
        x, y = make_batch(data, config.kind, config.batch_size, config.augment, rng)
        x_t, y_t = torch.from_numpy(x).to(device).contiguous(memory_format=layout), torch.from_numpy(y).to(device)
        loss = train_step(model, opt, x_t, y_t, kind=config.kind, bf16=config.precision == "bf16",
                          mask_loss_name=config.mask_loss)
        running.append(float(loss))
        elapsed = time.perf_counter() - t0
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            row = {"loss": float(np.mean(running)), "lr": opt.param_groups[0]["lr"],
                   "seconds": elapsed}
            history.append({"step": step + 1, **row})
            running = []
            for cb in callbacks:
                cb.on_log(step + 1, row)
        if elapsed > budget_s:
            stopped = True
            break
    model.to(memory_format=torch.contiguous_format).eval()  # export and inference expect NCHW
    result = TrainResult(steps_done=step + 1, seconds=time.perf_counter() - t0,
                         stopped_by_time=stopped, history=history, time_limited=time_limited)
    for cb in callbacks:
        cb.on_train_end(model, result)
    return result
