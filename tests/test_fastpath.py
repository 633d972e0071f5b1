"""Fast paths against the reference paths: grids of every family (values and gradients, float32 and
float64, sizes, ``align_corners``), float64 gradcheck, ``torch.compile``, the bounded cache (keyed by
size, ``align_corners``, dtype and device) and inference mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit import coords, fastpath
from stnkit.transforms import _linear, get

FAMILIES = stnkit.transforms.list_transforms()
AC = [False, True]
SIZES_2D = [(5, 7), (1, 4), (16, 16)]
SIZES_3D = [(3, 4, 5), (2, 1, 3)]
TOL32 = dict(rtol=1e-5, atol=1e-5)


def _sizes(family):
    return SIZES_2D if family.ndim == 2 else SIZES_3D


def _grid_and_grad(family, theta, size, align_corners, upstream):
    theta = theta.detach().clone().requires_grad_()
    grid = family.grid(theta, size, align_corners)
    (grad,) = torch.autograd.grad(grid, theta, upstream)
    return grid.detach(), grad


def _assert_close_scaled(actual, expected, eps):
    """``|actual - expected| <= eps * max(1, max|expected|)`` elementwise (plus ``eps`` relative):
    a theta gradient is a float32 sum over every pixel, so its rounding grows with its size."""
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=eps, atol=eps * scale)


def _both_paths(family, theta, size, align_corners, upstream):
    fast = _grid_and_grad(family, theta, size, align_corners, upstream)
    with fastpath.disabled():
        reference = _grid_and_grad(family, theta, size, align_corners, upstream)
    return fast, reference


@pytest.mark.filterwarnings("ignore:Since version 1.3.0, affine_grid")  # unit-size reference grids
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("align_corners", AC)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_grid_equals_reference_values_and_gradients(name, align_corners, dtype, helpers):
    family = get(name)
    g = helpers.gen(1)
    for size in _sizes(family):
        theta = helpers.random_theta(family, 3, g, dtype=dtype)
        upstream = torch.randn(3, *size, family.ndim, generator=g, dtype=dtype)
        (grid, grad), (ref_grid, ref_grad) = _both_paths(family, theta, size, align_corners, upstream)
        assert grid.shape == ref_grid.shape == (3, *size, family.ndim)
        assert grid.dtype == dtype and grad.dtype == dtype
        eps = 1e-5 if dtype == torch.float32 else 1e-12
        _assert_close_scaled(grid, ref_grid, eps)
        _assert_close_scaled(grad, ref_grad, eps)


@pytest.mark.parametrize("size,align_corners", [((28, 28), False), ((42, 42), True), ((13, 60), False)])
def test_affine_fast_grid_equals_affine_grid_at_benchmark_sizes_float32(size, align_corners, helpers):
    family = get("affine")
    g = helpers.gen(2)
    theta = helpers.random_theta(family, 8, g, scale=2.0, dtype=torch.float32)
    upstream = torch.randn(8, *size, 2, generator=g)
    grid, grad = _grid_and_grad(family, theta, size, align_corners, upstream)
    rows = theta.detach().clone().view(8, 2, 3).requires_grad_()  # (N, 2, 3)
    ref = F.affine_grid(rows, [8, 1, *size], align_corners=align_corners)  # independent reference
    (ref_grad,) = torch.autograd.grad(ref, rows, upstream)
    torch.testing.assert_close(grid, ref.detach(), **TOL32)
    _assert_close_scaled(grad, ref_grad.reshape(8, 6), 1e-5)


def test_reference_switch_restores_and_validates():
    assert fastpath.enabled()
    with fastpath.disabled():
        assert not fastpath.enabled()
        with fastpath.disabled():
            assert not fastpath.enabled()
        assert not fastpath.enabled()
    assert fastpath.enabled()
    with pytest.raises(TypeError, match="flag: expected a bool"):
        fastpath.set_enabled(1)


def test_reference_affine_grid_is_torch_affine_grid(helpers):
    """The reference path really is ``F.affine_grid`` (an independent implementation)."""
    family = get("affine")
    theta = helpers.random_theta(family, 2, helpers.gen(3))
    with fastpath.disabled():
        grid = family.grid(theta, (4, 6), align_corners=True)
    assert torch.equal(grid, F.affine_grid(theta.view(2, 2, 3), [2, 1, 4, 6], align_corners=True))


@pytest.mark.parametrize("name", FAMILIES)
def test_fast_grid_gradcheck_float64(name, helpers):
    family = get(name, grid_size=3) if name == "tps" else get(name)
    size = (3, 4) if family.ndim == 2 else (2, 3, 2)
    theta = helpers.random_theta(family, 2, helpers.gen(4)).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: family.grid(t, size, False), (theta,))
    if name == "affine":  # the hand-written backward (shared by every family) is differentiable
        assert torch.autograd.gradgradcheck(lambda t: family.grid(t, size, True), (theta,))


def test_fast_grid_handles_empty_batches_and_non_contiguous_theta(helpers):
    for name in FAMILIES:
        family = get(name)
        size = (4, 5) if family.ndim == 2 else (2, 3, 4)
        assert family.grid(family.identity().expand(0, -1), size).shape == (0, *size, family.ndim)
        theta = helpers.random_theta(family, 3, helpers.gen(5)).T.contiguous().T  # column-major
        assert not theta.is_contiguous()
        with fastpath.disabled():
            reference = family.grid(theta, size)
        torch.testing.assert_close(family.grid(theta, size), reference)


def test_fast_grid_under_torch_compile(helpers):
    """The fast grids trace into one graph (custom autograd function included) and match eager."""
    torch._dynamo.reset()
    pytest.importorskip("torch._inductor")
    affine, projective, tps = get("affine"), get("projective"), get("tps")
    g = helpers.gen(6)
    thetas = [helpers.random_theta(f, 2, g, dtype=torch.float32).requires_grad_() for f in (affine, projective, tps)]

    x = torch.rand(2, 1, 6, 7, generator=g)

    def grids(a, p, t):  # the grids, and a whole warp (compiled: no planar fast path, cleanly)
        return affine.grid(a, (5, 6)), projective.grid(p, (5, 6), True), tps.grid(t, (5, 6)), stnkit.warp(x, a, affine)

    try:
        compiled = torch.compile(grids, backend="inductor", fullgraph=True)
        out = compiled(*thetas)
    except Exception as err:  # no C++ compiler on this machine: nothing to test
        if "compiler" in str(err).lower() or "InvalidCxxCompiler" in type(err).__name__:
            pytest.skip(f"inductor cannot build C++ here: {err}")
        raise
    eager = grids(*thetas)
    for a, b in zip(out, eager):
        torch.testing.assert_close(a, b, **TOL32)
    upstream = [torch.randn(x.shape, generator=g) for x in eager]
    compiled_grads = torch.autograd.grad(out, thetas, upstream)
    eager_grads = torch.autograd.grad(eager, thetas, upstream)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b, **TOL32)


# -- the cache ----------------------------------------------------------------------------------------
def _expected_affine_grid(theta, size, align_corners):
    return F.affine_grid(theta.view(-1, 2, 3), [theta.shape[0], 1, *size], align_corners=align_corners)


def test_cache_never_reuses_a_grid_of_another_size_dtype_or_align_corners(helpers):
    _linear.clear_cache()
    family = get("affine")
    theta64 = helpers.random_theta(family, 2, helpers.gen(7))
    cases = [((5, 7), False, torch.float32), ((7, 5), False, torch.float32), ((5, 7), True, torch.float32),
             ((5, 7), False, torch.float64), ((5, 8), False, torch.float64), ((5, 7), False, torch.float32)]
    for size, align_corners, dtype in cases * 2:  # the second round reads from the cache
        theta = theta64.to(dtype)
        grid = family.grid(theta, size, align_corners)
        assert grid.dtype == dtype
        torch.testing.assert_close(grid, _expected_affine_grid(theta, size, align_corners))
    keys = _linear.cache_keys()
    assert len(keys) == 5  # one per distinct (size, align_corners, dtype)
    assert len({(k[1], k[2], k[4]) for k in keys}) == 5


def test_cache_keys_hold_the_device_and_tps_options(helpers):
    _linear.clear_cache()
    get("affine").grid(get("affine").identity().expand(1, -1), (3, 3))
    get("tps", grid_size=3).grid(get("tps", grid_size=3).identity().expand(1, -1), (3, 3))
    get("tps", grid_size=4).grid(get("tps", grid_size=4).identity().expand(1, -1), (3, 3))
    keys = _linear.cache_keys()
    assert all(torch.device("cpu") in k for k in keys)
    tps_blocks = [k for k in keys if k[0] == "tps-block"]
    assert {k[1] for k in tps_blocks} == {3, 4}  # grid_size is part of the key


def test_cache_on_another_device_is_separate_and_right(helpers):
    """A grid built on the meta device (shape-only) and one on the CPU never share a cache entry."""
    _linear.clear_cache()
    family = get("affine")
    theta = helpers.random_theta(family, 2, helpers.gen(8), dtype=torch.float32)
    meta = family.grid(theta.to("meta"), (4, 6))
    assert meta.device.type == "meta" and meta.shape == (2, 4, 6, 2)
    cpu = family.grid(theta, (4, 6))
    torch.testing.assert_close(cpu, _expected_affine_grid(theta, (4, 6), False))
    assert {k[5].type for k in _linear.cache_keys()} == {"meta", "cpu"}


def test_cache_is_bounded(helpers):
    _linear.clear_cache()
    family = get("translation")
    theta = torch.zeros(1, 2)
    for w in range(1, _linear.CACHE_ENTRIES + 10):
        family.grid(theta, (2, w))
    assert len(_linear.cache_keys()) == _linear.CACHE_ENTRIES
    assert _linear.cache_keys()[-1][1] == (2, _linear.CACHE_ENTRIES + 9)  # the newest kept
    torch.testing.assert_close(family.grid(theta, (2, 1)), _expected_affine_grid(torch.tensor([[1.0, 0, 0, 0, 1, 0]]), (2, 1), False))


@pytest.mark.parametrize("name", ["affine", "tps", "projective"])
def test_basis_first_built_under_inference_mode_works_with_autograd_later(name, helpers):
    _linear.clear_cache()
    coords._base_grid_cache.clear()
    family = get(name)
    theta = helpers.random_theta(family, 2, helpers.gen(9), dtype=torch.float32)
    with torch.inference_mode():
        first = family.grid(theta, (6, 5))
    theta = theta.clone().requires_grad_()
    grid = family.grid(theta, (6, 5))  # reuses the cached basis in a graph
    upstream = torch.randn(grid.shape, generator=helpers.gen(10))
    (grad,) = torch.autograd.grad(grid, theta, upstream)
    with fastpath.disabled():
        reference = family.grid(theta, (6, 5))
    (ref_grad,) = torch.autograd.grad(reference, theta, upstream)
    torch.testing.assert_close(first, reference.detach(), **TOL32)
    torch.testing.assert_close(grad, ref_grad, **TOL32)


# -- stnkit.warp: the planar grid for the 2-D matrix families ----------------------------------------------
PLANAR = ["translation", "attention", "similarity", "affine", "projective"]


def _warp_both_paths(x, theta, name, size, **options):
    x, theta = x.detach().clone().requires_grad_(), theta.detach().clone().requires_grad_()
    out = stnkit.warp(x, theta, name, size, **options)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(11), dtype=out.dtype)
    grads = torch.autograd.grad(out, (x, theta), upstream)
    with fastpath.disabled():
        ref = stnkit.warp(x, theta, name, size, **options)
    ref_grads = torch.autograd.grad(ref, (x, theta), upstream)
    return (out, *grads), (ref, *ref_grads)


@pytest.mark.parametrize("name", PLANAR)
@pytest.mark.parametrize("align_corners", AC)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_warp_fast_path_equals_reference_path(name, align_corners, dtype, helpers):
    family = get(name)
    g = helpers.gen(12)
    x = helpers.smooth_image((3, 2, 9, 11), dtype=dtype)
    theta = helpers.random_theta(family, 3, g, dtype=dtype)
    for size, options in [((9, 11), {}), ((7, 13), {"padding": "border"}), ((5, 4), {"fill": 0.3}),
                          ((8, 8), {"mode": "bicubic", "padding": "reflection"})]:
        fast, ref = _warp_both_paths(x, theta, name, size, align_corners=align_corners, **options)
        eps = 1e-5 if dtype == torch.float32 else 1e-10
        for a, b in zip(fast, ref):  # output, input gradient, theta gradient
            assert a.dtype == dtype
            _assert_close_scaled(a, b, eps)


@pytest.mark.parametrize("shape,size", [((16, 1, 28, 28), (28, 28)), ((4, 3, 42, 42), (21, 30))])
def test_warp_affine_equals_torch_affine_grid_and_grid_sample_float32(shape, size, helpers):
    """Against PyTorch's own path, written out here (an independent reference)."""
    g = helpers.gen(13)
    x = torch.rand(shape, generator=g)
    theta = (get("affine").identity() + 0.3 * torch.randn(shape[0], 6, generator=g)).requires_grad_()
    out = stnkit.warp(x, theta, "affine", size)
    grid = F.affine_grid(theta.view(-1, 2, 3), [shape[0], 1, *size], align_corners=False)
    ref = F.grid_sample(x, grid, align_corners=False)
    upstream = torch.randn(out.shape, generator=g)
    (grad,) = torch.autograd.grad(out, theta, upstream)
    (ref_grad,) = torch.autograd.grad(ref, theta, upstream)
    torch.testing.assert_close(out, ref, **TOL32)
    _assert_close_scaled(grad, ref_grad, 1e-5)


@pytest.mark.parametrize("name", PLANAR)
def test_warp_fast_path_gradcheck_float64(name, helpers):
    family = get(name)
    g = helpers.gen(14)
    x = helpers.smooth_image((2, 1, 4, 5)).requires_grad_()
    theta = helpers.random_theta(family, 2, g).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, t: stnkit.warp(a, t, name, (3, 4)), (x, theta))


def test_warp_grid_is_planar_only_where_it_applies(helpers):
    from stnkit._fast_warp import warp_grid

    g = helpers.gen(15)
    for name in FAMILIES:
        family = get(name)
        size = (4, 6) if family.ndim == 2 else (2, 4, 6)
        theta = helpers.random_theta(family, 2, g, dtype=torch.float32)
        grid = warp_grid(family, theta, size, False)
        torch.testing.assert_close(grid, family.grid(theta, size), **TOL32)
        field = getattr(family, "planar_grid", False)  # field families: planar on both paths
        planar = name in PLANAR or field
        assert grid.stride(-2) == (1 if planar else family.ndim), name  # x of neighbours adjacent
        with fastpath.disabled():
            assert field or warp_grid(family, theta, size, False).is_contiguous()


@pytest.mark.parametrize("name", ["affine", "projective"])
def test_planar_grids_gradgradcheck_float64(name, helpers):
    """The planar grids' hand-written backward passes are differentiable themselves."""
    from stnkit._fast_warp import warp_grid

    family = get(name)
    theta = helpers.random_theta(family, 2, helpers.gen(19)).requires_grad_()
    assert torch.autograd.gradgradcheck(lambda t: warp_grid(family, t, (3, 4), False), (theta,))


@pytest.mark.parametrize("align_corners", AC)
def test_warp_projective_across_the_horizon_equals_reference(align_corners, helpers):
    """w = 1 + x vanishes on the left edge (and is negative beyond it): the clamped points must
    give the reference path's values and gradients (zero gradient through the clamp), no NaN."""
    theta = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0], [0.9, 0.1, 0.0, 0.0, 1.0, 0.0, 1.2, 0.1]],
                         dtype=torch.float64)
    x = helpers.smooth_image((2, 1, 6, 7))
    fast, ref = _warp_both_paths(x, theta, "projective", (5, 9), align_corners=align_corners, padding="border")
    for a, b in zip(fast, ref):
        assert torch.isfinite(a).all()
        _assert_close_scaled(a, b, 1e-8)  # 1/w^2 near the horizon amplifies float64 rounding


def test_warp_fast_path_empty_batch_and_low_precision(helpers):
    x = torch.rand(0, 1, 5, 5)
    theta = get("affine").identity().expand(0, -1).requires_grad_()
    out = stnkit.warp(x, theta, "affine")
    assert out.shape == (0, 1, 5, 5)
    out.sum().backward()
    assert theta.grad.shape == (0, 6)
    x16 = torch.rand(2, 1, 6, 6, generator=helpers.gen(16)).to(torch.bfloat16)
    theta = helpers.random_theta(get("affine"), 2, helpers.gen(17), dtype=torch.float32)
    with fastpath.disabled():
        ref = stnkit.warp(x16, theta, "affine")
    assert torch.equal(stnkit.warp(x16, theta, "affine"), ref)


def test_fastpath_docstring_example():
    import doctest

    result = doctest.testmod(fastpath, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_warp_under_torch_func_grad_falls_back_cleanly(helpers):
    """torch.func transforms get ``family.grid`` (the planar functions do not support them)."""
    x = helpers.smooth_image((2, 1, 6, 7))
    theta = helpers.random_theta(get("affine"), 2, helpers.gen(18))

    def loss(t):
        return stnkit.warp(x, t, "affine", check_finite=False).square().sum()

    grad = torch.func.grad(loss)(theta)
    theta = theta.clone().requires_grad_()
    (expected,) = torch.autograd.grad(loss(theta), theta)
    torch.testing.assert_close(grad, expected, rtol=1e-10, atol=1e-10)
