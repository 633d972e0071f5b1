"""The sampler against the paper's reference sampler (eq. 3-7) and closed forms; float64 gradcheck
through ``stnkit.warp`` for every family."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit.reference import bicubic_kernel, bilinear_kernel, nearest_kernel, reference_sample
from stnkit.transforms import get

FAMILIES = stnkit.transforms.list_transforms()
AC = [False, True]


def _grid(helpers, n, h, w, seed, low=-1.3, high=1.3, dtype=torch.float64):
    return helpers.uniform((n, h, w, 2), low, high, helpers.gen(seed), dtype)


# -- the reference sampler's kernels, written out by hand -------------------------------------------
def test_reference_kernels_closed_form():
    d = torch.tensor([-2.5, -1.5, -1.0, -0.7, -0.25, 0.0, 0.3, 0.5, 1.0, 1.2, 2.0], dtype=torch.float64)
    torch.testing.assert_close(bilinear_kernel(d), torch.tensor(
        [0, 0, 0, 0.3, 0.75, 1, 0.7, 0.5, 0, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(nearest_kernel(d), torch.tensor(
        [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0], dtype=torch.float64))
    a = -0.75  # Keys: |t| <= 1: (a+2)|t|^3 - (a+3)|t|^2 + 1; 1 < |t| < 2: a|t|^3 - 5a|t|^2 + 8a|t| - 4a
    t = d.abs()
    keys = torch.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                       torch.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0 * t))
    torch.testing.assert_close(bicubic_kernel(d), keys)


def test_reference_bilinear_has_the_papers_subgradients():
    # d = x_s - m; d(max(0, 1 - |d|))/dx_s: 0 where |d| >= 1, +1 where m >= x_s, -1 where m < x_s.
    d = torch.tensor([-1.5, -1.0, -0.4, 0.0, 0.4, 1.0, 1.5], dtype=torch.float64, requires_grad=True)
    bilinear_kernel(d).sum().backward()
    torch.testing.assert_close(d.grad, torch.tensor([0, 0, 1, 1, -1, 0, 0], dtype=torch.float64))


def test_reference_nearest_rounds_half_up_like_eq4():
    # eq. 4: delta(floor(x_s + 0.5) - m): x_s = 2.5 reads pixel 3, x_s = 1.5 reads pixel 2.
    x = torch.arange(5, dtype=torch.float64).view(1, 1, 1, 5)
    grid = stnkit.coords.pixel_to_normalized(torch.tensor([[[[2.5, 0.0], [1.5, 0.0]]]], dtype=torch.float64),
                                          (1, 5), align_corners=True)
    assert reference_sample(x, grid, "nearest", align_corners=True).flatten().tolist() == [3.0, 2.0]


# -- stnkit.sample equals the reference in value and gradient ------------------------------------------
@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("align_corners", AC)
def test_sample_equals_reference(mode, align_corners, helpers):
    x = helpers.uniform((2, 3, 6, 7), 0, 1, helpers.gen(1))
    grid = _grid(helpers, 2, 5, 4, seed=2)
    out = stnkit.sample(x, grid, mode=mode, align_corners=align_corners)
    assert out.shape == (2, 3, 5, 4)
    torch.testing.assert_close(out, reference_sample(x, grid, mode, align_corners), atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
@pytest.mark.parametrize("align_corners", AC)
def test_sample_gradient_equals_reference(mode, align_corners, helpers):
    x = helpers.uniform((2, 2, 5, 6), 0, 1, helpers.gen(3))
    grid = _grid(helpers, 2, 4, 3, seed=4)
    weights = helpers.uniform((2, 2, 4, 3), -1, 1, helpers.gen(5))
    grads = []
    for sampler in (lambda a, g: stnkit.sample(a, g, mode=mode, align_corners=align_corners),
                    lambda a, g: reference_sample(a, g, mode, align_corners)):
        a, g = x.clone().requires_grad_(), grid.clone().requires_grad_()
        (sampler(a, g) * weights).sum().backward()
        grads.append((a.grad, g.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-12, rtol=0)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-10, rtol=0)
    assert grads[0][1].abs().max() > 0.1  # the grid gradient is not trivially zero


@pytest.mark.parametrize("align_corners", AC)
def test_nearest_input_gradient_equals_reference(align_corners, helpers):
    x = helpers.uniform((1, 2, 5, 6), 0, 1, helpers.gen(6))
    grid = _grid(helpers, 1, 4, 4, seed=7)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    stnkit.sample(a, grid, mode="nearest", align_corners=align_corners).sum().backward()
    reference_sample(b, grid, "nearest", align_corners).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=0, rtol=0)


# -- padding -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("align_corners", AC)
def test_border_padding_reads_the_nearest_edge(align_corners, helpers):
    x = helpers.uniform((1, 2, 5, 6), 0, 1, helpers.gen(8))
    grid = _grid(helpers, 1, 6, 6, seed=9, low=-2.0, high=2.0)
    # Closed form: clamp the pixel coordinates to the extreme pixel centres, then sample normally.
    lo = helpers.centres((5, 6), align_corners).amin(0)
    hi = helpers.centres((5, 6), align_corners).amax(0)
    clamped = torch.maximum(torch.minimum(grid, hi), lo)
    expected = reference_sample(x, clamped, "bilinear", align_corners)
    torch.testing.assert_close(stnkit.sample(x, grid, padding="border", align_corners=align_corners), expected,
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("align_corners", AC)
def test_reflection_padding_mirrors_at_the_edges(align_corners, helpers):
    x = helpers.uniform((1, 2, 5, 6), 0, 1, helpers.gen(10))
    grid = _grid(helpers, 1, 6, 6, seed=11, low=-2.5, high=2.5)
    # Closed form: mirror at -1 / +1 (edges without align_corners, border pixel centres with it),
    # then clamp to the extreme pixel centres.
    mirrored = torch.where(grid > 1, 2 - grid, torch.where(grid < -1, -2 - grid, grid))
    lo = helpers.centres((5, 6), align_corners).amin(0)
    hi = helpers.centres((5, 6), align_corners).amax(0)
    expected = reference_sample(x, torch.maximum(torch.minimum(mirrored, hi), lo), "bilinear", align_corners)
    torch.testing.assert_close(stnkit.sample(x, grid, padding="reflection", align_corners=align_corners),
                               expected, atol=1e-12, rtol=0)


# -- constant fill -------------------------------------------------------------------------------------
def _constant_padded(x, fill, pad):
    """``x`` surrounded by ``pad`` pixels of the per-channel constant ``fill`` (closed form)."""
    n, c, h, w = x.shape
    value = torch.as_tensor(fill, dtype=x.dtype).reshape(-1)  # (1,) or (C,)
    out = value.view(1, -1, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    out[:, :, pad:pad + h, pad:pad + w] = x
    return out


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("fill", [0.5, -1.25, [0.2, 0.9, -3.0], torch.tensor([0.7])])
@pytest.mark.parametrize("align_corners", AC)
def test_fill_equals_constant_padding(mode, fill, align_corners, helpers):
    size, pad = (5, 6), 6
    x = helpers.uniform((2, 3, *size), 0, 1, helpers.gen(12))
    grid = _grid(helpers, 2, 7, 7, seed=13, low=-1.6, high=1.6)
    out = stnkit.sample(x, grid, mode=mode, fill=fill, align_corners=align_corners)
    # Closed form: sample an explicitly padded image at the same pixel positions.
    padded = _constant_padded(x, fill, pad)
    padded_size = (size[0] + 2 * pad, size[1] + 2 * pad)
    pix = helpers.pixel_of(grid, size, align_corners) + pad  # (N, H', W', 2) pixels of the padded image
    assert pix.min() > 2 and (pix[..., 0].max() < padded_size[1] - 3) and (pix[..., 1].max() < padded_size[0] - 3)
    padded_grid = stnkit.coords.pixel_to_normalized(pix, padded_size, align_corners)
    expected = reference_sample(padded, padded_grid, mode, align_corners)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_points_far_outside_read_the_fill_exactly(mode, helpers):
    x = helpers.uniform((1, 3, 4, 4), 0, 1, helpers.gen(14), dtype=torch.float32)
    grid = torch.tensor([[[[3.0, 0.0], [-3.0, 0.5], [0.2, 5.0], [-9.0, -9.0]]]])  # (1, 1, 4, 2)
    fill = [0.25, -0.5, 7.0]
    out = stnkit.sample(x, grid, mode=mode, fill=fill)
    assert torch.equal(out, torch.tensor(fill).view(1, 3, 1, 1).expand(1, 3, 1, 4))
    assert torch.equal(stnkit.sample(x, grid, mode=mode, fill=0.3), torch.full((1, 3, 1, 4), 0.3))


def test_fill_applies_to_volumes(helpers):
    x = helpers.uniform((1, 2, 3, 4, 5), 0, 1, helpers.gen(15))
    grid = torch.full((1, 1, 1, 2, 3), 4.0, dtype=torch.float64)
    grid[0, 0, 0, 1] = 0.0  # the centre of the volume, inside
    out = stnkit.sample(x, grid, fill=[1.5, 2.5])
    assert out[0, :, 0, 0, 0].tolist() == [1.5, 2.5]
    torch.testing.assert_close(out[:, :, :, 1:], stnkit.sample(x, grid[:, :, 1:]))


def test_fill_gradient_flows_to_input_inside(helpers):
    x = helpers.uniform((1, 1, 4, 4), 0, 1, helpers.gen(16)).requires_grad_()
    grid = torch.tensor([[[[0.0, 0.0], [5.0, 5.0]]]], dtype=torch.float64)
    stnkit.sample(x, grid, fill=0.5).sum().backward()
    # The inside point reads the four centre pixels with weight 1/4 each; the outside one nothing.
    expected = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    expected[0, 0, 1:3, 1:3] = 0.25
    torch.testing.assert_close(x.grad, expected)


# -- nearest passes no gradient to theta, and says so -----------------------------------------------
def test_nearest_warns_and_passes_no_gradient_to_theta(helpers):
    x = helpers.uniform((2, 1, 6, 6), 0, 1, helpers.gen(17)).requires_grad_()
    theta = helpers.random_theta(get("affine"), 2, helpers.gen(18)).requires_grad_()
    with pytest.warns(UserWarning, match="nearest.*no gradient"):
        out = stnkit.warp(x, theta, "affine", mode="nearest")
    out.square().sum().backward()
    assert theta.grad is None or torch.count_nonzero(theta.grad) == 0
    assert x.grad.abs().sum() > 0  # the image itself still gets a gradient


def test_nearest_does_not_warn_without_gradients(helpers):
    x = helpers.uniform((1, 1, 5, 5), 0, 1, helpers.gen(19))
    theta = get("affine").identity(dtype=torch.float64).expand(1, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stnkit.warp(x, theta, "affine", mode="nearest")
        with torch.no_grad():
            stnkit.warp(x, theta.clone().requires_grad_(), "affine", mode="nearest")


def test_nearest_module_warns_while_training(helpers):
    st = helpers.make_st("affine", (1, 6, 6), mode="nearest")
    with pytest.warns(UserWarning, match="nearest"):
        st(torch.rand(1, 1, 6, 6, generator=helpers.gen(20)))


def test_nearest_documents_missing_gradient():
    assert "no gradient" in stnkit.sample.__doc__


# -- float64 gradcheck through stnkit.warp --------------------------------------------------------------
def _gradcheck_cases():
    for name in FAMILIES:
        modes = ["bilinear"] if get(name).ndim == 3 else ["bilinear", "bicubic"]
        for mode in modes:
            yield name, mode


@pytest.mark.parametrize("name,mode", list(_gradcheck_cases()))
@pytest.mark.parametrize("align_corners", AC)
def test_gradcheck_input_and_theta(name, mode, align_corners, helpers):
    family = get(name)
    side = 4 if family.ndim == 3 else 5
    x = helpers.uniform(helpers.image_shape(family, 2, 2, side), 0, 1, helpers.gen(21)).requires_grad_()
    # Random theta near the identity: no sampling point sits on a pixel centre, where the
    # kernels are not differentiable.
    theta = helpers.random_theta(family, 2, helpers.gen(22), scale=0.5).requires_grad_()
    size = (3,) * family.ndim if family.ndim == 3 else (4, 3)

    def f(a, t):
        return stnkit.warp(a, t, family, size, mode=mode, align_corners=align_corners)

    assert torch.autograd.gradcheck(f, (x, theta), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("padding,fill", [("zeros", [0.3, -0.7]), ("border", None), ("reflection", None)])
def test_gradcheck_paddings(padding, fill, helpers):
    x = helpers.uniform((1, 2, 5, 5), 0, 1, helpers.gen(23)).requires_grad_()
    theta = torch.tensor([[1.3, 0.2, 0.31, -0.1, 1.25, -0.27]], dtype=torch.float64, requires_grad=True)

    def f(a, t):
        return stnkit.warp(a, t, "affine", mode="bilinear", padding=padding, fill=fill)

    assert torch.autograd.gradcheck(f, (x, theta), atol=1e-6, rtol=1e-4)


def test_gradcheck_reference_sampler(helpers):
    x = helpers.uniform((1, 1, 4, 4), 0, 1, helpers.gen(24)).requires_grad_()
    grid = _grid(helpers, 1, 3, 3, seed=25).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, g: reference_sample(a, g, "bilinear"), (x, grid))
    assert torch.autograd.gradcheck(lambda a, g: reference_sample(a, g, "bicubic"), (x, grid))


# -- misc -------------------------------------------------------------------------------------------
def test_sample_casts_the_grid_to_the_input_dtype(helpers):
    x = helpers.uniform((1, 1, 4, 4), 0, 1, helpers.gen(26), dtype=torch.float32)
    grid = _grid(helpers, 1, 3, 3, seed=27)
    out = stnkit.sample(x, grid)
    assert out.dtype == torch.float32
    expected = F.grid_sample(x, grid.float(), align_corners=False)
    torch.testing.assert_close(out, expected, atol=0, rtol=0)
