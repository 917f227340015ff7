"""Ground-truth AO-OCT phantom: layered retina, cone mosaic, capillaries, nerve fiber
bundles, RPE cells, speckle, eye motion and noise, with an exact ``truth`` record.

Public API: ``make_phantom``, ``write_phantom``, ``Phantom``,
``sample_cone_mosaic``, ``curcio_cone_density_cells_per_mm2``, ``cone_spacing_um``,
``speckle_field``, ``speckle_contrast``, ``averaged_speckle_contrast``,
``simulate_eye_motion_px``, ``motion_residual``, ``capillary_truth_mask``.
"""
from aooct_core.phantom.build import Phantom, make_phantom, write_phantom
from aooct_core.phantom.cones import (
    cone_spacing_um,
    curcio_cone_density_cells_per_mm2,
    sample_cone_mosaic,
    sample_point_process,
)
from aooct_core.phantom.motion import motion_residual, simulate_eye_motion_px
from aooct_core.phantom.retina import SURFACE_NAMES
from aooct_core.phantom.speckle import averaged_speckle_contrast, speckle_contrast, speckle_field
from aooct_core.phantom.truth_masks import capillary_truth_mask

__all__ = ["Phantom", "make_phantom", "write_phantom", "sample_cone_mosaic", "sample_point_process",
           "curcio_cone_density_cells_per_mm2", "cone_spacing_um", "simulate_eye_motion_px", "motion_residual",
           "speckle_field", "speckle_contrast", "averaged_speckle_contrast", "capillary_truth_mask",
           "SURFACE_NAMES"]
