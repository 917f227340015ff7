"""Mask losses: soft skeleton, clDice and the loss names TrainConfig accepts."""
from __future__ import annotations

import pytest
import torch

from ml.losses import MASK_LOSSES, cldice_loss, mask_loss, soft_dice_loss, soft_skeleton

LOGIT = 20.0  # sigmoid(±20) is 0/1 to float32 precision


def _as_logits(mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask > 0, LOGIT, -LOGIT)


def _two_vessels() -> torch.Tensor:
    """A wide vessel (7 px) and a thin branch (1 px) on a 40×60 image, shape (1, 1, 40, 60)."""
    mask = torch.zeros(1, 1, 40, 60)
    mask[..., 5:12, 5:55] = 1
    mask[..., 25, 5:55] = 1
    return mask


def test_soft_skeleton_of_a_bar_is_its_centre_line():
    bar = torch.zeros(1, 1, 21, 40)
    bar[..., 8:13, 5:35] = 1
    mass_per_row = soft_skeleton(bar, iterations=5)[0, 0].sum(dim=1)
    assert mass_per_row[10] > 0 and float(mass_per_row.sum()) == pytest.approx(float(mass_per_row[10]))


def test_cldice_weighs_a_missed_thin_branch_more_than_pixel_dice():
    truth = _two_vessels()
    missed_branch = truth.clone()
    missed_branch[..., 25, :] = 0
    assert float(cldice_loss(_as_logits(truth), truth)) == pytest.approx(0.0, abs=1e-4)
    dice = float(soft_dice_loss(_as_logits(missed_branch), truth))
    cldice = float(cldice_loss(_as_logits(missed_branch), truth))
    assert 0 < dice < 0.1 < cldice  # 50 of 400 pixels, but half of the centre lines


@pytest.mark.parametrize("name", MASK_LOSSES)
def test_every_mask_loss_is_smallest_for_the_truth_and_has_gradients(name):
    truth = _two_vessels()
    logits = torch.zeros_like(truth, requires_grad=True)
    loss = mask_loss(name, logits, truth)
    loss.backward()
    assert float(mask_loss(name, _as_logits(truth), truth)) < loss.item()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_unknown_mask_loss_is_refused_with_the_choices():
    truth = _two_vessels()
    with pytest.raises(ValueError, match="bce\\+dice"):
        mask_loss("focal", truth, truth)
    with pytest.raises(ValueError, match="iterations"):
        soft_skeleton(truth, iterations=0)


def test_train_refuses_an_unknown_mask_loss_before_training():
    from ml.data import synthetic_nfl_samples
    from ml.models import build_model
    from ml.train import TrainConfig, train

    cfg = TrainConfig(task="nfl", kind="nfl", steps=1, batch_size=1, mask_loss="focal")
    with pytest.raises(ValueError, match="mask_loss must be one of"):
        train(build_model("nfl"), synthetic_nfl_samples(1, seed=0), cfg)
