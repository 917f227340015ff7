"""Mask losses for the vessel and NFL heads: soft Dice and centreline Dice (clDice).

clDice [1]_ compares *skeletons*: the share of the predicted skeleton that lies inside the
true mask (topology precision) and the share of the true skeleton covered by the prediction
(topology sensitivity). Thin capillaries count as much as wide vessels in it, whereas in
pixel Dice a missed 2-px branch costs little. Skeletons are computed softly (iterated min /
max pooling), so the loss is differentiable.

References
----------
.. [1] Shit S, Paetzold JC, Sekuboyina A, et al. "clDice - a novel topology-preserving loss
       function for tubular structure segmentation." CVPR 2021, 16560-16569.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MASK_LOSSES", "soft_dice_loss", "soft_skeleton", "cldice_loss", "mask_loss"]

#: Names accepted by :func:`mask_loss` (and ``TrainConfig.mask_loss``).
MASK_LOSSES = ("bce+dice", "dice", "bce+dice+cldice")


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 − soft Dice per image (summed over rows and columns), averaged over the batch."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(-2, -1))
    denom = prob.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1))
    return (1 - (2 * inter + 1) / (denom + 1)).mean()


def _soft_erode(x: torch.Tensor) -> torch.Tensor:
    # Cross-shaped 3×3 minimum: min over the vertical and the horizontal 3-px neighbours.
    vertical = -F.max_pool2d(-x, (3, 1), stride=1, padding=(1, 0))
    horizontal = -F.max_pool2d(-x, (1, 3), stride=1, padding=(0, 1))
    return torch.minimum(vertical, horizontal)


def _soft_dilate(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, 3, stride=1, padding=1)


def soft_skeleton(prob: torch.Tensor, *, iterations: int = 5) -> torch.Tensor:
    """Soft morphological skeleton of probabilities ``prob`` (N, C, H, W) in [0, 1].

    Each iteration erodes once more and keeps what an opening removes (the ridge at that
    radius); ``iterations`` should reach the half-width of the widest structure, px.
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1; got {iterations}")
    img = prob
    skel = F.relu(img - _soft_dilate(_soft_erode(img)))
    for _ in range(iterations):
        img = _soft_erode(img)
        delta = F.relu(img - _soft_dilate(_soft_erode(img)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def cldice_loss(logits: torch.Tensor, target: torch.Tensor, *, iterations: int = 5) -> torch.Tensor:
    """1 − clDice per image, averaged over the batch (``target`` binary, same shape)."""
    prob = torch.sigmoid(logits)
    skel_pred = soft_skeleton(prob, iterations=iterations)
    skel_true = soft_skeleton(target, iterations=iterations)
    dims = (-2, -1)
    precision = ((skel_pred * target).sum(dims) + 1) / (skel_pred.sum(dims) + 1)
    sensitivity = ((skel_true * prob).sum(dims) + 1) / (skel_true.sum(dims) + 1)
    return (1 - 2 * precision * sensitivity / (precision + sensitivity)).mean()


def mask_loss(name: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Loss of a binary mask head by name (see :data:`MASK_LOSSES`).

    * "bce+dice": BCE keeps gradients smooth, Dice is the reported score (the default);
    * "dice": soft Dice alone;
    * "bce+dice+cldice": BCE + ½ Dice + ½ (1 − clDice).
    """
    if name == "bce+dice":
        return F.binary_cross_entropy_with_logits(logits, target) + soft_dice_loss(logits, target)
    if name == "dice":
        return soft_dice_loss(logits, target)
    if name == "bce+dice+cldice":
        return (F.binary_cross_entropy_with_logits(logits, target)
                + 0.5 * soft_dice_loss(logits, target) + 0.5 * cldice_loss(logits, target))
    raise ValueError(f"mask loss must be one of {MASK_LOSSES}; got {name!r}")
