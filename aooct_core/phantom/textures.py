"""En face textures of the RPE cell mosaic and the choroid.

RPE: a jittered hexagonal mosaic of ~5,000 cells/mm² (parafoveal RPE, ~15 µm
spacing); each cell is bright at its periphery and dark at its centre (nucleus), as
seen in organelle-motion-averaged AO-OCT. Choroid: overlapping blobs of 8-25 µm
(vessel walls and stroma) on a darker background.

References
----------
.. [1] Liu Z, Kocaoglu OP, Miller DT. "3D imaging of retinal pigment epithelial
       cells in the living human retina." IOVS 57:OCT533-OCT543 (2016).
.. [2] Panda-Jonas S, Jonas JB, Jakobczyk-Zmija M. "Retinal pigment epithelial cell
       count, distribution, and correlations in normal human eyes." Am J Ophthalmol
       121:181-189 (1996).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from aooct_core.phantom.cones import cone_spacing_um, sample_cone_mosaic
from aooct_core.phantom.render import splat_gaussians

__all__ = ["RPE_DENSITY_CELLS_PER_MM2", "RpeMosaic", "make_rpe_mosaic", "choroid_blobs",
           "render_choroid"]

RPE_DENSITY_CELLS_PER_MM2 = 5000.0


class RpeMosaic:
    """RPE cell centres (µm, en face frame) with a nearest-centre texture."""

    def __init__(self, centres_um: np.ndarray, density_cells_per_mm2: float):
        self.centres_um = centres_um
        self.density_cells_per_mm2 = float(density_cells_per_mm2)
        self.spacing_um = cone_spacing_um(density_cells_per_mm2)
        self._tree = cKDTree(centres_um)

    def evaluate(self, rows_um: np.ndarray, cols_um: np.ndarray) -> np.ndarray:
        """Texture (mean ~1) at en face positions in µm (same-shape arrays), float32."""
        pts = np.stack(np.broadcast_arrays(rows_um, cols_um), axis=-1)
        dist, _ = self._tree.query(pts.reshape(-1, 2))
        dark_centre = np.exp(-0.5 * (dist / (0.22 * self.spacing_um)) ** 2)
        return (1.15 - 0.75 * dark_centre).reshape(pts.shape[:-1]).astype(np.float32)


def make_rpe_mosaic(*, field_um: tuple[float, float], margin_um: float,
                    rng: np.random.Generator) -> RpeMosaic:
    """RPE mosaic over the field plus ``margin_um`` on every side."""
    big = (field_um[0] + 2 * margin_um, field_um[1] + 2 * margin_um)
    centres = sample_cone_mosaic(big, density_cells_per_mm2=RPE_DENSITY_CELLS_PER_MM2, rng=rng,
                                 disorder=0.12) - margin_um
    return RpeMosaic(centres, RPE_DENSITY_CELLS_PER_MM2)


def choroid_blobs(*, field_px: tuple[int, int], um_per_px_rc: tuple[float, float], margin_px: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Random blob centres (px), weights and size (µm) for the choroid texture."""
    area_um2 = (field_px[0] + 2 * margin_px) * um_per_px_rc[0] * (field_px[1] + 2 * margin_px) * um_per_px_rc[1]
    n = rng.poisson(area_um2 / 15.0 ** 2)
    centres = rng.uniform(size=(n, 2)) * (np.array(field_px) + 2 * margin_px) - margin_px
    return centres, rng.uniform(0.3, 1.0, n), 7.0


def render_choroid(blobs: tuple[np.ndarray, np.ndarray, float], *, shape: tuple[int, int],
                   um_per_px_rc: tuple[float, float], col_shift_px: np.ndarray | None) -> np.ndarray:
    """Choroid texture map (~0.3-1.5), moved per row by ``col_shift_px``, float32."""
    centres, weights, sigma_um = blobs
    img = splat_gaussians(centres, weights, shape=shape,
                          sigma_px=(sigma_um / um_per_px_rc[0], sigma_um / um_per_px_rc[1]),
                          col_shift_px=col_shift_px)
    return (0.3 + img).astype(np.float32)
