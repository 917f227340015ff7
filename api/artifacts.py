"""A case's stored artifacts for the gateway: the listing, en face slabs as ``.npy`` or PNG
tiles, and the report — read from the object store with a size budget.

Keys come from :mod:`aooct_core.artifact_keys` (the one layout); nothing outside the case's
prefix can be named. A slab is loaded only when it is under :data:`MAX_ARRAY_BYTES` (the
corrected volume is not served whole: fetch it from the store). PNG tiles are 8-bit with one
display window per slab (its 1st–99th percentile), so adjacent tiles match; the decoded slab and
its window are kept for :data:`SLAB_CACHE_TTL_S` in a small cache (:data:`SLAB_CACHE_ENTRIES`
slabs), keyed by the object's key and size, so the tiles of one view do not reload the slab.
"""
from __future__ import annotations

import io
import threading
import time
from collections import OrderedDict

import numpy as np

from aooct_core.artifact_keys import REPORT, case_prefix, classify, enface_key

__all__ = ["MAX_ARRAY_BYTES", "MAX_TILE_PX", "list_artifacts", "slab_npy", "slab_png_tile", "report_html"]

#: Largest array the gateway loads to serve or render, bytes.
MAX_ARRAY_BYTES = 256 * 1024**2
#: Largest tile edge, px.
MAX_TILE_PX = 2048
#: Decoded slabs kept for tiles, and for how long, s.
SLAB_CACHE_ENTRIES = 8
SLAB_CACHE_TTL_S = 30.0

_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


class ArtifactMissing(LookupError):
    """The case has no such artifact (HTTP 404)."""


class ArtifactTooLarge(ValueError):
    """The artifact is over the gateway's budget (HTTP 413)."""


def list_artifacts(store, case_id: str) -> list[dict]:
    """``[{kind, name, key, bytes}]`` of the case's artifacts (``key`` relative to the case)."""
    prefix = case_prefix(case_id) + "/"
    out = []
    for key, size in sorted(store.list_objects(prefix).items()):
        hit = classify(key[len(prefix):])
        if hit is not None:
            out.append({"kind": hit[0], "name": hit[1], "key": key[len(prefix):], "bytes": int(size)})
    return out


def _size(store, key: str) -> int:
    try:
        return store.size(key)
    except FileNotFoundError as exc:
        raise ArtifactMissing(f"no {key.split('/', 2)[-1]} for this case") from exc


def _load(store, key: str, size: int | None = None) -> bytes:
    """The object's bytes, within the budget (``size``: already looked up)."""
    size = _size(store, key) if size is None else size
    if size > MAX_ARRAY_BYTES:
        raise ArtifactTooLarge(f"{key.split('/', 2)[-1]} is {size} bytes, over the gateway's "
                               f"{MAX_ARRAY_BYTES}-byte budget; read it from the object store")
    return store.get_bytes(key)


def slab_npy(store, case_id: str, slab: str) -> bytes:
    """The en face slab as stored (``.npy``)."""
    return _load(store, enface_key(case_id, slab))


def slab_png_tile(store, case_id: str, slab: str, *, row: int, col: int, size_px: int) -> bytes:
    """A ``size_px`` tile of the slab from ``(row, col)`` (clipped at the edges) as an 8-bit PNG."""
    from PIL import Image

    if not 1 <= size_px <= MAX_TILE_PX or row < 0 or col < 0:
        raise ValueError(f"a tile needs row, col >= 0 and size in [1, {MAX_TILE_PX}] px; got {row}, {col}, {size_px}")
    image, lo, hi = _windowed_slab(store, case_id, slab)
    if row >= image.shape[0] or col >= image.shape[1]:
        raise ValueError(f"tile origin ({row}, {col}) is outside the slab's {image.shape[0]}×{image.shape[1]} px")
    tile = image[row:row + size_px, col:col + size_px].astype(np.float64)
    scaled = np.clip((np.nan_to_num(tile, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    buf = io.BytesIO()
    Image.fromarray(np.round(255 * scaled).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _windowed_slab(store, case_id: str, slab: str):
    key = enface_key(case_id, slab)
    size = _size(store, key)
    tag, now = (id(store), key, size), time.monotonic()
    with _cache_lock:
        hit = _cache.get(tag)
        if hit is not None and now - hit[0] < SLAB_CACHE_TTL_S:
            _cache.move_to_end(tag)
            return hit[1:]
    image = np.load(io.BytesIO(_load(store, key, size)), allow_pickle=False)
    if image.ndim != 2:
        raise ValueError(f"slab {slab!r} is not 2-D (shape {image.shape})")
    finite = image[np.isfinite(image)]
    lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0.0, 1.0))
    with _cache_lock:
        _cache[tag] = (now, image, float(lo), float(hi))
        while len(_cache) > SLAB_CACHE_ENTRIES:
            _cache.popitem(last=False)
    return image, float(lo), float(hi)


def report_html(store, case_id: str) -> bytes:
    return _load(store, f"{case_prefix(case_id)}/{REPORT}")
