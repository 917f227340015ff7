"""Compact U-Net family used by every aooct task (see :mod:`ml.models.unet`)."""
from ml.models.unet import UNet, build_model, count_parameters, head_channels

__all__ = ["UNet", "build_model", "count_parameters", "head_channels"]
