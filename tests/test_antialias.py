"""``antialias=True``: against the exact area average of analytic patterns (dense supersampling of
the formula, independent of the filter), passband, float64 gradcheck, bit-equality where nothing
shrinks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import stnkit

D = torch.float64
N_IN, N_OUT = 160, 28  # input 160 px; output 28 px over 0.7 of it: 4 input px per output px
ZOOM = 4 * N_OUT / N_IN


def checkerboard(u, v, square_px=3):
    p = square_px * 2 / N_IN  # square side in normalised units
    return (torch.floor(u / p) + torch.floor(v / p)) % 2


def zone_plate(u, v):
    k = math.pi * N_IN / 5  # local period 2.5 input px at radius 1
    return 0.5 + 0.5 * torch.cos(k * (u * u + v * v))


def _centres(n, sub):
    offsets = (torch.arange(sub, dtype=D) + 0.5) / sub
    return (torch.arange(n, dtype=D)[:, None] + offsets).reshape(-1) * 2 / n - 1  # (n*sub,)


def area_image(f, n=N_IN, sub=8):
    """The pattern averaged over each pixel of an ``n x n`` image: ``(1, 1, n, n)``."""
    x = _centres(n, sub)
    return f(x[None, :], x[:, None]).view(n, sub, n, sub).mean((1, 3))[None, None]


def area_reference(f, theta, m=N_OUT, sub=16):
    """Exact area average of ``f`` over each output pixel's footprint under ``theta`` ``(2, 3)``."""
    x = _centres(m, sub)
    yy, xx = torch.meshgrid(x, x, indexing="ij")
    pts = torch.stack([xx, yy, torch.ones_like(xx)], -1) @ theta.T  # (m*sub, m*sub, 2)
    return f(pts[..., 0], pts[..., 1]).view(m, sub, m, sub).mean((1, 3))


def rotation(angle, scale=ZOOM):
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0]], dtype=D)


def rms(a, b):
    return float((a - b).square().mean().sqrt())


@pytest.mark.parametrize("pattern", [checkerboard, zone_plate])
def test_4x_zoom_out_is_3x_closer_to_the_area_average(pattern):
    image = area_image(pattern)
    gen = torch.Generator().manual_seed(0)
    plain_err = ours_err = 0.0
    for _ in range(3):
        theta = rotation(float(torch.rand(1, generator=gen)) * 2 * math.pi)
        ref = area_reference(pattern, theta)
        plain = stnkit.warp(image, theta.view(1, 6), size=(N_OUT, N_OUT))[0, 0]
        ours = stnkit.warp(image, theta.view(1, 6), size=(N_OUT, N_OUT), antialias=True)[0, 0]
        plain_err += rms(plain, ref)
        ours_err += rms(ours, ref)
    # measured: checkerboard 6.6x, zone plate 5.5x (3 random rotations); the target is 3x
    assert plain_err > 3.6 * ours_err, (plain_err, ours_err)


@pytest.mark.parametrize("angle", [0.3, 1.1])
def test_passband_keeps_a_4_pixel_sinusoid(angle):
    period = 4 * 4 * 2 / N_IN  # 4 output px = 16 input px, in normalised units
    image = area_image(lambda u, v: torch.sin(2 * math.pi * u / period) + 0 * v)
    theta = rotation(angle)
    out = stnkit.warp(image, theta.view(1, 6), size=(N_OUT, N_OUT), antialias=True)[0, 0]
    grid = F.affine_grid(theta[None], [1, 1, N_OUT, N_OUT], align_corners=False)[0]  # (H, W, 2)
    phase = 2 * math.pi * grid[..., 0].flatten() / period
    basis = torch.stack([torch.sin(phase), torch.cos(phase)], 1)  # (P, 2)
    amplitude = torch.linalg.lstsq(basis, out.flatten()[:, None]).solution.norm()
    # measured 0.89 (the area average itself keeps sinc(1/4) = 0.90); plain bilinear keeps ~1
    assert 0.8 <= float(amplitude) <= 1.0, float(amplitude)


def _warps(name):
    family = stnkit.transforms.get(name)
    return family, family.identity(dtype=D).expand(2, -1).clone()


@pytest.mark.parametrize("name", [n for n in stnkit.transforms.list_transforms() if stnkit.transforms.get(n).ndim == 2])
@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_and_zoom_in_are_bit_equal(name, align_corners, helpers):
    x = helpers.uniform((2, 3, 9, 11), 0, 1, helpers.gen(0))
    family, theta = _warps(name)
    for size in [(9, 11), (20, 23)]:  # identity, then a zoom-in by about 2x
        kw = dict(size=size, align_corners=align_corners)
        plain = stnkit.warp(x, theta, name, **kw)
        assert torch.equal(stnkit.warp(x, theta, name, antialias=True, **kw), plain)
        assert torch.equal(stnkit.warp(x, theta, name, antialias=True, fill=0.25, **kw),
                           stnkit.warp(x, theta, name, fill=0.25, **kw))


def test_shrinking_pixels_change_and_others_do_not(helpers):
    # a projective warp that shrinks strongly at one side only
    x = helpers.uniform((1, 1, 64, 64), 0, 1, helpers.gen(1))
    theta = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.5, 0.0]], dtype=D)
    grid = stnkit.transforms.get("projective").grid(theta, (64, 64))
    plain = stnkit.sample(x, grid)
    ours = stnkit.sample(x, grid, antialias=True)
    scale = stnkit._antialias.local_scale(grid, (64, 64), False)  # (1, 64, 64)
    still = (scale <= 2.0).unsqueeze(1)
    assert torch.equal(ours[still], plain[still])
    assert (ours - plain).abs()[~still].max() > 0.05


def test_local_scale_of_an_affine_warp_is_its_jacobian():
    theta = torch.tensor([[3.0, 0.0, 0.0, 0.0, 5.0, 0.0]], dtype=D)  # x 3x, y 5x (same size in and out)
    grid = stnkit.transforms.get("affine").grid(theta, (8, 8))
    scale = stnkit._antialias.local_scale(grid, (8, 8), False)
    torch.testing.assert_close(scale, torch.full_like(scale, math.sqrt((9 + 25) / 2)))


@pytest.mark.parametrize("name,theta", [
    ("affine", [2.71, 0.43, 0.117, -0.31, 2.93, 0.053]),
    ("projective", [2.63, 0.21, 0.057, 0.13, 2.81, -0.11, 0.31, -0.23]),
])
def test_gradcheck_through_the_level_choice(name, theta, helpers):
    x = helpers.uniform((1, 2, 12, 12), 0, 1, helpers.gen(2)).requires_grad_()
    t = torch.tensor([theta], dtype=D, requires_grad=True)

    def f(a, th):
        return stnkit.warp(a, th, name, size=(4, 5), antialias=True)

    grid = stnkit.transforms.get(name).grid(t.detach(), (4, 5))
    levels = stnkit._antialias.levels_of(stnkit._antialias.local_scale(grid, (12, 12), False))
    assert levels.min() > 0.05 and (levels - levels.round()).abs().min() > 1e-3  # away from the kinks
    for n in (12, 6, 3):  # nor on a pixel centre of any level (bilinear's kinks)
        pix = ((grid + 1) * n - 1) / 2
        assert (pix - pix.round()).abs().min() > 1e-3
    assert torch.autograd.gradcheck(f, (x, t))


def test_module_and_volumes():
    st = stnkit.SpatialTransformer(stnkit.fc_localisation((1, 8, 8), hidden=(4,)), antialias=True)
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(st(x), F.grid_sample(x, F.affine_grid(torch.eye(2, 3).expand(2, 2, 3), [2, 1, 8, 8],
                                                               align_corners=False), align_corners=False))
    assert "antialias=True" in repr(st)
    with pytest.raises(ValueError, match="antialias: only available for 2-D"):
        stnkit.warp(torch.rand(1, 1, 4, 4, 4), stnkit.transforms.get("affine3d").identity()[None], "affine3d",
                    antialias=True)
    with pytest.raises(TypeError, match=r"antialias: expected a bool \(True or False\), got 1"):
        stnkit.warp(x, stnkit.transforms.get("affine").identity().expand(2, 6), antialias=1)


@pytest.mark.parametrize("align_corners", [False, True])
def test_per_sample_scale_of_matrix_families_equals_the_grids(align_corners, helpers):
    # warp() takes the affine families' scale from the matrix; sample() from the grid: same result
    x = helpers.uniform((3, 2, 30, 26), 0, 1, helpers.gen(5))
    g = helpers.gen(6)
    theta = torch.tensor([2.2, 0.5, 0.1, -0.4, 3.1, 0.0], dtype=D) + torch.rand(3, 6, generator=g, dtype=D) * 0.3
    family = stnkit.transforms.get("affine")
    grid = family.grid(theta, (7, 9), align_corners)
    per_pixel = stnkit._antialias.local_scale(grid, (30, 26), align_corners)
    per_sample = stnkit._antialias.matrix_scale(family.matrix(theta)[:, :2, :2], (30, 26), (7, 9), align_corners)
    torch.testing.assert_close(per_pixel, per_sample.view(3, 1, 1).expand_as(per_pixel), atol=1e-12, rtol=0)
    torch.testing.assert_close(stnkit.warp(x, theta, size=(7, 9), align_corners=align_corners, antialias=True),
                               stnkit.sample(x, grid, align_corners=align_corners, antialias=True), atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
def test_every_mode_and_padding(mode, padding, helpers):
    x = helpers.uniform((2, 2, 24, 20), 0, 1, helpers.gen(7))
    identity = stnkit.transforms.get("affine").identity(dtype=D).expand(2, 6)
    kw = dict(mode=mode, padding=padding)
    assert torch.equal(stnkit.warp(x, identity, antialias=True, **kw), stnkit.warp(x, identity, **kw))
    shrink = identity * torch.tensor([3.0, 0, 1, 0, 3.0, 1], dtype=D)  # 12 input px per output px: levels 2, 3
    out = stnkit.warp(x, shrink, size=(6, 5), antialias=True, **kw)
    assert out.shape == (2, 2, 6, 5) and bool(torch.isfinite(out).all())
    assert not torch.equal(out, stnkit.warp(x, shrink, size=(6, 5), **kw))
