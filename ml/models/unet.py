"""A compact 2-D U-Net with task heads.

One architecture serves all tasks; only the number of output channels changes:

* ``cells`` (cones, RPE cells): 1 channel, logits of a cell-centre heat map;
* ``vessels`` (capillaries): 1 channel, vessel-mask logits;
* ``nfl`` (nerve fiber bundles): 3 channels, mask logits and ``(cos 2θ, sin 2θ)`` of
  the local bundle orientation (the doubled angle makes θ and θ+π the same).

The network is deliberately small (≈0.1–0.5 M parameters): AO en face images are
150–500 px, the structures are a few pixels across, and the committed weights of all four
tasks (torch + ONNX) must stay under 10 MB. Bilinear up-sampling and BatchNorm keep the
graph exportable to ONNX/TensorRT. ``Dropout2d`` in the decoder is active only in
``train()`` mode or when :func:`ml.uncertainty.enable_mc_dropout` switches it on.

References
----------
.. [1] Ronneberger O, Fischer P, Brox T. "U-Net: Convolutional networks for biomedical
       image segmentation." MICCAI 2015, LNCS 9351:234-241.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

__all__ = ["UNet", "build_model", "count_parameters", "head_channels", "DEFAULT_WIDTHS"]

DEFAULT_WIDTHS = {
    "cells": (16, 32, 64, 128),
    "vessels": (16, 32, 64, 128),
    "nfl": (8, 16, 32, 64),
}


def head_channels(kind: str) -> int:
    """Number of output channels of the head for a task kind ("cells"|"vessels"|"nfl")."""
    if kind not in DEFAULT_WIDTHS:
        raise ValueError(f"unknown head kind {kind!r}; use one of {sorted(DEFAULT_WIDTHS)}")
    return 3 if kind == "nfl" else 1


class _ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net with ``len(widths) - 1`` down-samplings.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for grey-level en face images).
    out_channels : int
        Output channels (see :func:`head_channels`).
    widths : tuple of int
        Feature channels per level, finest first.
    dropout : float
        Dropout2d probability in the bottleneck and decoder blocks (MC dropout).

    Notes
    -----
    Input height and width must be multiples of ``2 ** (len(widths) - 1)``;
    :func:`ml.inference.predict_maps` pads by reflection to satisfy this.
    """

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1,
                 widths: tuple[int, ...] = (16, 32, 64, 128), dropout: float = 0.1) -> None:
        super().__init__()
        if len(widths) < 2:
            raise ValueError(f"widths needs at least 2 levels; got {widths}")
        self.widths = tuple(int(w) for w in widths)
        self.multiple = 2 ** (len(widths) - 1)
        self.encoders = nn.ModuleList()
        cin = in_channels
        for i, w in enumerate(widths):
            self.encoders.append(_ConvBlock(cin, w, dropout if i == len(widths) - 1 else 0.0))
            cin = w
        self.decoders = nn.ModuleList()
        for w_skip in reversed(widths[:-1]):
            self.decoders.append(_ConvBlock(cin + w_skip, w_skip, dropout))
            cin = w_skip
        self.head = nn.Conv2d(cin, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.encoders):
            x = enc(x)
            if i < len(self.encoders) - 1:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for dec, skip in zip(self.decoders, reversed(skips)):
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = dec(torch.cat([x, skip], dim=1))
        return self.head(x)


def build_model(kind: str, *, widths: tuple[int, ...] | None = None, dropout: float = 0.1) -> UNet:
    """Build the U-Net for a task kind with its default widths."""
    widths = tuple(widths) if widths is not None else DEFAULT_WIDTHS[kind]
    return UNet(out_channels=head_channels(kind), widths=widths, dropout=dropout)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))
