"""The CUDA code path of the preprocessing, run on a machine without a GPU.

* The layer-search kernel's source is compiled as C++ and run with one thread per block:
  with ``blockDim.x == 1`` every ``for (z = threadIdx.x; ...; z += blockDim.x)`` loop visits
  all depths in order and ``__syncthreads()`` has nothing to wait for, so this reproduces the
  kernel's recursion, indexing and tie-breaking exactly.
* ``device="cuda"`` is then served by a stand-in for CuPy (NumPy arrays, that emulated
  kernel), so the Python code that only runs on a GPU (the kernel launch, its layouts, the
  host round trips) runs here and must give the CPU result.

The GPU itself (CuPy semantics, float rounding, speed) is checked by ``bench/gpu_check.sh``.
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
import types

import numpy as np
import pytest

import scipy.fft
import scipy.ndimage

from aooct_core.preprocessing import backend as backend_module
from aooct_core.preprocessing import layers, preprocess_case, segment_layers
from aooct_core.preprocessing.backend import Backend, get_backend
from aooct_core.preprocessing.layers import _BIG, _DP_KERNEL_SOURCE, dp_surface

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler (g++)")

_SHIM = r"""
#include <cmath>
#include <vector>
#include <algorithm>
using std::min; using std::max;
struct Dim3 { int x; };
static Dim3 threadIdx = {0}, blockIdx = {0}, blockDim = {1};
static float* g_shared = nullptr;
#define __global__
static inline void __syncthreads() {}
static inline float __int_as_float(int bits) { float f; std::memcpy(&f, &bits, sizeof f); return f; }
"""

_DRIVER = r"""
extern "C" void run_blocks(const float* cost, signed char* back, long long* path, int n_b, int n_z,
                           int n_c, int k, long long stride_z, long long stride_c) {
    std::vector<float> shared(2 * (size_t)n_z);
    g_shared = shared.data();
    for (int b = 0; b < n_b; ++b) {
        blockIdx.x = b;
        dp_surface(cost, back, path, n_b, n_z, n_c, k, stride_z, stride_c);
    }
}
"""


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    source = _DP_KERNEL_SOURCE.replace("extern __shared__ float shared[];", "float* shared = g_shared;")
    assert source != _DP_KERNEL_SOURCE, "the kernel's shared-memory declaration changed; update the shim"
    folder = tmp_path_factory.mktemp("dp_kernel")
    (folder / "kernel.cpp").write_text("#include <cstring>\n" + _SHIM + source + _DRIVER)
    subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", str(folder / "kernel.so"), str(folder / "kernel.cpp")],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(folder / "kernel.so"))
    lib.run_blocks.restype = None
    return lib


@pytest.mark.parametrize("depth_contiguous", [False, True])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_kernel_source_equals_the_numpy_search(emulated_cuda, depth_contiguous, k):
    rng = np.random.default_rng(k)
    cost = rng.standard_normal((5, 37, 23)).astype(np.float32)
    # A window like segment_layers': outside it every cost is the same prohibitive value,
    # so ties are common there and the first-minimum rule must match too.
    cost[:, :8] = _BIG
    cost[:, 30:, 10:] = _BIG
    expected = dp_surface(cost, max_slope=k, backend=get_backend("cpu"))
    found = layers._dp_surface_cuda(cost, k, emulated_cuda, depth_contiguous=depth_contiguous)
    np.testing.assert_array_equal(found, expected)


@pytest.mark.parametrize("depth_contiguous", [False, True])
def test_kernel_breaks_ties_like_the_numpy_search(emulated_cuda, depth_contiguous):
    # Small integer costs make equal accumulated costs common: both must take the first
    # (shallowest) candidate.
    cost = np.random.default_rng(7).integers(0, 3, size=(6, 29, 31)).astype(np.float32)
    expected = dp_surface(cost, max_slope=2, backend=get_backend("cpu"))
    found = layers._dp_surface_cuda(cost, 2, emulated_cuda, depth_contiguous=depth_contiguous)
    np.testing.assert_array_equal(found, expected)


class _EmulatedRawKernel:
    """``cupy.RawKernel`` stand-in: launches the C++-compiled layer-search kernel."""

    def __init__(self, lib):
        self.lib = lib

    def __call__(self, grid, block, args, shared_mem=0):
        cost, back, path, n_b, n_z, n_c, k, stride_z, stride_c = args
        ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
        self.lib.run_blocks(ptr(cost), ptr(back), ptr(path), ctypes.c_int(int(n_b)), ctypes.c_int(int(n_z)),
                            ctypes.c_int(int(n_c)), ctypes.c_int(int(k)), ctypes.c_longlong(int(stride_z)),
                            ctypes.c_longlong(int(stride_c)))


@pytest.fixture()
def emulated_cuda(kernel, monkeypatch):
    """``device="cuda"`` served by NumPy plus the emulated kernel (for this test only)."""
    fake = types.ModuleType("cupy_stand_in")
    fake.__getattr__ = lambda name: getattr(np, name)
    fake.RawKernel = lambda source, name: _EmulatedRawKernel(kernel)
    fake.cuda = types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None))
    monkeypatch.setitem(backend_module._CACHE, "cuda", Backend("cuda", fake, scipy.ndimage, scipy.fft))
    monkeypatch.setattr(layers, "_DP_KERNEL", None)  # compiled for the stand-in, not a real GPU
    return fake


def test_segment_layers_cuda_path_equals_cpu(emulated_cuda):
    phantom = pytest.importorskip("aooct_core.phantom")
    ph = phantom.make_phantom(seed=3, n_repeats=1, shape_px=(16, 256, 64))
    mean = ph.volumes[0].astype(np.float32)
    timings = {}
    gpu = segment_layers(mean, depth_um_per_px=ph.geometry.depth_um_per_px, device="cuda", timings=timings)
    cpu = segment_layers(mean, depth_um_per_px=ph.geometry.depth_um_per_px, device="cpu")
    assert layers._DP_KERNEL is not None, "the kernel path was not taken"
    assert {"search.cost", "search.dp", "refine"} <= set(timings)
    for name in cpu:
        np.testing.assert_array_equal(gpu[name], cpu[name])


def test_preprocess_case_cuda_path_equals_cpu(emulated_cuda):
    phantom = pytest.importorskip("aooct_core.phantom")
    ph = phantom.make_phantom(seed=1, n_repeats=2, shape_px=(32, 256, 64))
    gpu = preprocess_case(ph.volumes, ph.geometry, device="cuda")
    cpu = preprocess_case(ph.volumes, ph.geometry, device="cpu")
    for name in cpu.surfaces_px:
        assert np.mean(np.abs(gpu.surfaces_px[name] - cpu.surfaces_px[name]) <= 0.5) >= 0.98, name
    for name in cpu.enface:
        np.testing.assert_allclose(gpu.enface[name], cpu.enface[name], rtol=1e-3, atol=1e-5, err_msg=name)


def test_deep_cost_volumes_use_the_array_code_instead_of_the_kernel(emulated_cuda):
    # Two columns of 6145 float32 depths exceed the kernel's 48 KiB of shared memory.
    cost = np.random.default_rng(0).standard_normal((2, 6145, 5)).astype(np.float32)
    path = dp_surface(cost, backend=get_backend("cuda"))
    assert layers._DP_KERNEL is None
    np.testing.assert_array_equal(path, dp_surface(cost, backend=get_backend("cpu")))
