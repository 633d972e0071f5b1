"""Property-based tests (Hypothesis) over random theta and sizes for the core invariants:
grid vs warp_points, affine vs ``F.affine_grid``, inverse then theta is the identity, sample vs the
reference sampler. Examples are few and small so the file runs in seconds."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stnkit
from stnkit.reference import reference_sample
from stnkit.transforms import get

FAMILIES = stnkit.transforms.list_transforms()
MATRIX_FAMILIES = [f for f in FAMILIES if get(f).has_matrix]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sides = st.integers(min_value=1, max_value=9)
seeds = st.integers(min_value=0, max_value=2**31 - 1)
scales = st.floats(min_value=0.0, max_value=2.0)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _theta(family, n, seed, scale):
    """``identity + scale * U(-0.2, 0.2)`` (see ``conftest.random_theta``)."""
    noise = torch.rand(n, family.num_params, generator=_gen(seed), dtype=torch.float64) * 0.4 - 0.2
    return family.identity(dtype=torch.float64) + scale * noise


def _centres(size, align_corners):
    """Pixel centres ``(P, ndim)``, x fastest, from the convention in :mod:`stnkit.coords`'s docstring."""
    axes = []
    for n in size:
        i = torch.arange(n, dtype=torch.float64)
        if align_corners:
            axes.append(2 * i / (n - 1) - 1 if n > 1 else torch.zeros(1, dtype=torch.float64))
        else:
            axes.append((2 * i + 1) / n - 1)
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in reversed(mesh)], dim=-1)


@SETTINGS
@given(name=st.sampled_from(FAMILIES), h=sides, w=sides, d=st.integers(1, 4), n=st.integers(1, 3),
       align_corners=st.booleans(), seed=seeds, scale=scales)
def test_grid_equals_warp_points_at_the_pixel_centres(name, h, w, d, n, align_corners, seed, scale):
    family = get(name)
    size = (h, w) if family.ndim == 2 else (d, h, w)
    theta = _theta(family, n, seed, scale)
    grid = family.grid(theta, size, align_corners)
    assert grid.shape == (n, *size, family.ndim)
    points = family.warp_points(theta, _centres(size, align_corners))  # (N, P, ndim)
    torch.testing.assert_close(grid.reshape(n, -1, family.ndim), points, atol=1e-10, rtol=0)


@SETTINGS
@given(h=sides, w=sides, d=st.integers(1, 5), align_corners=st.booleans(), seed=seeds,
       spread=st.floats(min_value=0.01, max_value=10.0), volume=st.booleans())
def test_affine_equals_affine_grid(h, w, d, align_corners, seed, spread, volume):
    rows = 3 if volume else 2
    theta = torch.randn(2, rows * (rows + 1), generator=_gen(seed), dtype=torch.float64) * spread
    size = (d, h, w) if volume else (h, w)
    grid = get("affine3d" if volume else "affine").grid(theta, size, align_corners)
    with warnings.catch_warnings():  # affine_grid warns about unit sizes with align_corners=True
        warnings.simplefilter("ignore", UserWarning)
        expected = F.affine_grid(theta.view(2, rows, rows + 1), (2, 1, *size), align_corners=align_corners)
    torch.testing.assert_close(grid, expected, atol=1e-11 * spread, rtol=0)


@SETTINGS
@given(name=st.sampled_from(MATRIX_FAMILIES), seed=seeds, scale=st.floats(min_value=0.0, max_value=1.5))
def test_inverse_then_theta_is_the_identity(name, seed, scale):
    family = get(name)
    theta = _theta(family, 3, seed, scale)
    inverse = family.inverse(theta)
    points = torch.rand(3, 8, family.ndim, generator=_gen(seed + 1), dtype=torch.float64) * 2 - 1
    torch.testing.assert_close(family.warp_points(inverse, family.warp_points(theta, points)), points,
                               atol=1e-9, rtol=0)
    torch.testing.assert_close(family.compose(inverse, theta), family.identity(dtype=torch.float64).expand(3, -1),
                               atol=1e-9, rtol=0)
    torch.testing.assert_close(family.from_matrix(family.matrix(theta)), theta, atol=1e-9, rtol=0)


@SETTINGS
@given(mode=st.sampled_from(["bilinear", "bicubic", "nearest"]), h=st.integers(1, 7), w=st.integers(1, 7),
       out_h=st.integers(1, 5), out_w=st.integers(1, 5), c=st.integers(1, 3), align_corners=st.booleans(),
       seed=seeds, reach=st.floats(min_value=0.1, max_value=2.0))
def test_sample_equals_reference(mode, h, w, out_h, out_w, c, align_corners, seed, reach):
    g = _gen(seed)
    x = torch.rand(2, c, h, w, generator=g, dtype=torch.float64)
    grid = (torch.rand(2, out_h, out_w, 2, generator=g, dtype=torch.float64) * 2 - 1) * reach
    out = stnkit.sample(x, grid, mode=mode, align_corners=align_corners)
    torch.testing.assert_close(out, reference_sample(x, grid, mode, align_corners), atol=1e-12, rtol=0)
    if mode != "nearest":
        weights = torch.rand(out.shape, generator=g, dtype=torch.float64)
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        ga, gb = grid.clone().requires_grad_(), grid.clone().requires_grad_()
        (stnkit.sample(a, ga, mode=mode, align_corners=align_corners) * weights).sum().backward()
        (reference_sample(b, gb, mode, align_corners) * weights).sum().backward()
        torch.testing.assert_close(a.grad, b.grad, atol=1e-12, rtol=0)
        torch.testing.assert_close(ga.grad, gb.grad, atol=1e-9, rtol=0)


@SETTINGS
@given(name=st.sampled_from(FAMILIES), seed=seeds, c=st.integers(1, 4), fill=st.floats(-2, 2))
def test_identity_warp_returns_the_input(name, seed, c, fill):
    family = get(name)
    x = torch.rand(2, c, *((3, 4, 5) if family.ndim == 3 else (6, 5)), generator=_gen(seed), dtype=torch.float64)
    theta = family.identity(dtype=torch.float64).expand(2, -1)
    torch.testing.assert_close(stnkit.warp(x, theta, family, fill=fill), x, atol=1e-9, rtol=0)
