"""Dense field families (``displacement``, ``velocity`` and their 3-D forms) and :mod:`stnkit.fields`.

References: hand-made grids sampled with ``F.grid_sample``, ``F.interpolate``, closed forms for
affine fields, the voxel-unit warps of MONAI and VoxelMorph written out from their published
formulas (and MONAI itself when installed).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import stnkit
from stnkit import fields
from stnkit.errors import NonFiniteThetaError
from stnkit.transforms import get


def _smooth_field(n, size, scale, seed, dtype=torch.float64):
    """A smooth random field ``(n, d, *size)``: a coarse normal field upsampled (bicubic/trilinear)."""
    d = len(size)
    coarse = torch.randn(n, d, *([5] * d), generator=torch.Generator().manual_seed(seed), dtype=dtype)
    mode = "bicubic" if d == 2 else "trilinear"
    return scale * F.interpolate(coarse, size=size, mode=mode, align_corners=True)


def _affine_field(matrix, size, align_corners):
    """``u(p) = (A - I) p + b`` at the pixel centres, ``(1, d, *size)`` (via ``F.affine_grid``)."""
    d = len(size)
    grid = F.affine_grid(matrix[None], (1, 1, *size), align_corners=align_corners)  # (1, *size, d)
    eye = torch.eye(d, d + 1, dtype=matrix.dtype)[None]
    base = F.affine_grid(eye, (1, 1, *size), align_corners=align_corners)
    return (grid - base).movedim(-1, 1)


# -- displacement -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name,size", [("displacement", (6, 7)), ("displacement3d", (3, 4, 5))])
def test_displacement_at_full_resolution_is_the_hand_made_grid(name, size, helpers):
    family = get(name, field_size=size)
    d = family.ndim
    theta = helpers.uniform((2, family.num_params), -0.3, 0.3, helpers.gen(1))
    u = theta.view(2, d, *size).movedim(1, -1)  # (2, *size, d), channel 0 = x
    eye = torch.eye(d, d + 1, dtype=torch.float64).expand(2, d, d + 1)
    hand = F.affine_grid(eye, (2, 1, *size), align_corners=False) + u
    torch.testing.assert_close(family.grid(theta, size), hand, atol=1e-14, rtol=0)
    x = helpers.smooth_image((2, 2, *size))
    torch.testing.assert_close(stnkit.warp(x, theta, family), F.grid_sample(x, hand, align_corners=False),
                               atol=1e-12, rtol=0)
    torch.testing.assert_close(family.flat(family.field(theta)), theta, atol=0, rtol=0)


def test_displacement_is_resized_bilinearly(helpers):
    family = get("displacement", field_size=(4, 5))
    theta = helpers.uniform((2, family.num_params), -0.3, 0.3, helpers.gen(2))
    field = family.field(theta)
    base = helpers.centres((9, 11), False).view(1, 9, 11, 2)
    expected = base + F.interpolate(field, size=(9, 11), mode="bilinear", align_corners=False).movedim(1, -1)
    torch.testing.assert_close(family.grid(theta, (9, 11)), expected, atol=1e-14, rtol=0)
    # align_corners=True output pixels read the same field (nodes fixed in the normalised frame)
    base = helpers.centres((9, 11), True).view(1, 9, 11, 2).expand(2, 9, 11, 2)
    read = F.grid_sample(field, base, mode="bilinear", padding_mode="border", align_corners=False)
    torch.testing.assert_close(family.grid(theta, (9, 11), True), base + read.movedim(1, -1), atol=1e-14, rtol=0)


@pytest.mark.parametrize("name,size", [("displacement", (5, 9)), ("velocity", (5, 9)), ("velocity3d", (3, 4, 5))])
def test_grid_equals_warp_points_at_pixel_centres(name, size, helpers):
    family = get(name, field_size=(3, 4) if len(size) == 2 else 3)
    theta = helpers.random_theta(family, 2, helpers.gen(3))
    for align_corners in (False, True):
        grid = family.grid(theta, size, align_corners).reshape(2, -1, family.ndim)
        points = helpers.centres(size, align_corners)
        torch.testing.assert_close(grid, family.warp_points(theta, points), atol=1e-12, rtol=0)


# -- velocity -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,size", [("velocity", (6, 7)), ("velocity3d", (3, 4, 5))])
def test_constant_velocity_is_a_translation(name, size):
    family = get(name, field_size=size)
    d = family.ndim
    shift = torch.tensor([0.3, -0.45, 0.2][:d], dtype=torch.float64)
    theta = (shift.view(1, d, 1) * torch.ones(1, d, family.num_params // d, dtype=torch.float64)).reshape(1, -1)
    eye = torch.eye(d, d + 1, dtype=torch.float64)[None].clone()
    eye[0, :, d] = shift
    expected = F.affine_grid(eye, (1, 1, *size), align_corners=False)
    torch.testing.assert_close(family.grid(theta, size), expected, atol=1e-14, rtol=0)  # border pixels too


def test_velocity_folds_far_less_than_displacement():
    v = _smooth_field(4, (32, 32), 0.3, seed=0)
    as_displacement = fields.folding_fraction(v).mean()
    as_velocity = fields.folding_fraction(fields.integrate_velocity(v)).mean()
    assert as_displacement > 0.05  # the field is large enough to fold
    assert as_velocity * 10 <= as_displacement


@pytest.mark.parametrize("size", [(32, 32), (16, 16, 16)])
def test_invert_field_composed_with_the_forward_warp_is_the_identity(size):
    v = _smooth_field(2, size, 0.1, seed=1)
    forward, inverse = fields.integrate_velocity(v), fields.invert_field(v)
    assert forward.abs().max() > 0.1
    for composed in (fields.compose_fields(forward, inverse), fields.compose_fields(inverse, forward)):
        # what is left is interpolation error: >= 10x smaller than the warp, on average
        assert composed.abs().mean() < 0.1 * forward.abs().mean()


def test_steps_zero_is_the_displacement(helpers):
    theta = helpers.random_theta(get("velocity", field_size=4), 2, helpers.gen(4))
    torch.testing.assert_close(get("velocity", field_size=4, steps=0).grid(theta, (6, 6)),
                               get("displacement", field_size=4).grid(theta, (6, 6)), atol=0, rtol=0)


# -- utilities ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("align_corners", [False, True])
def test_jacobian_determinant_of_affine_fields(align_corners):
    a2 = torch.tensor([[1.2, 0.3, 0.1], [-0.4, 0.7, -0.2]], dtype=torch.float64)
    det2 = fields.jacobian_determinant(_affine_field(a2, (5, 7), align_corners), align_corners=align_corners)
    torch.testing.assert_close(det2, torch.full((1, 5, 7), 1.2 * 0.7 + 0.3 * 0.4, dtype=torch.float64))
    a3 = torch.tensor([[1.1, 0.2, 0.0, 0.1], [0.3, 0.9, -0.1, 0.0], [0.0, 0.4, 1.3, -0.2]], dtype=torch.float64)
    det3 = fields.jacobian_determinant(_affine_field(a3, (4, 5, 6), align_corners), align_corners=align_corners)
    torch.testing.assert_close(det3, torch.linalg.det(a3[:, :3]).expand(1, 4, 5, 6))
    flip = torch.tensor([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)  # a mirror folds everywhere
    assert fields.folding_fraction(_affine_field(flip, (4, 4), align_corners)).item() == 1.0


def test_compose_fields_follows_the_matrix_compose_order():
    affine = get("affine")
    first = torch.tensor([[0.9, 0.1, 0.05, -0.1, 0.8, 0.1]], dtype=torch.float64)
    second = torch.tensor([[0.7, -0.1, 0.0, 0.05, 0.75, -0.05]], dtype=torch.float64)  # keeps points inside
    size = (8, 9)
    u1, u2 = (_affine_field(t.view(2, 3), size, False) for t in (first, second))
    both = _affine_field(affine.compose(first, second).view(2, 3), size, False)
    torch.testing.assert_close(fields.compose_fields(u1, u2), both, atol=1e-12, rtol=0)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(6, 7), (4, 5, 6)])
def test_voxel_units_warp_like_voxelmorph_and_monai(size, align_corners, helpers):
    """The VoxelMorph/MONAI voxel-unit warp, written out from their code, equals ours after
    :func:`fields.from_voxel` (and :func:`fields.to_voxel` is its inverse)."""
    d = len(size)
    x = helpers.smooth_image((2, 2, *size))
    ddf = helpers.uniform((2, d, *size), -1.5, 1.5, helpers.gen(5))  # voxels, channel i along axis i
    mesh = torch.stack(torch.meshgrid(*[torch.arange(n, dtype=torch.float64) for n in size], indexing="ij"))
    locs = mesh + ddf  # (2, d, *size) voxel positions
    locs = torch.stack([2 * (locs[:, i] / (n - 1) - 0.5) for i, n in enumerate(size)], dim=-1)
    theirs = F.grid_sample(x, locs.flip(-1), align_corners=True, padding_mode="zeros")
    field = fields.from_voxel(ddf, align_corners=align_corners, convention="voxelmorph")
    family = get("displacement" if d == 2 else "displacement3d", field_size=size)
    if align_corners:  # the family's nodes are fixed (align_corners=False): compare via sample
        eye = torch.eye(d, d + 1, dtype=torch.float64).expand(2, d, d + 1)
        base = F.affine_grid(eye, (2, 1, *size), align_corners=True)
        ours = stnkit.sample(x, base + field.movedim(1, -1), align_corners=True)
    else:
        ours = stnkit.warp(x, family.flat(field), family)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
    torch.testing.assert_close(fields.to_voxel(field, align_corners=align_corners), ddf, atol=1e-12, rtol=0)


def test_monai_warp_and_dvf2ddf_parity(helpers):
    monai_blocks = pytest.importorskip("monai.networks.blocks")
    size = (6, 7, 8)
    x = helpers.smooth_image((2, 1, *size), torch.float32)
    ddf = helpers.uniform((2, 3, *size), -1.5, 1.5, helpers.gen(6), torch.float32)
    family = get("displacement3d", field_size=size)
    field = fields.from_voxel(ddf)
    for padding in ("border", "zeros"):
        theirs = monai_blocks.Warp(padding_mode=padding)(x, ddf)
        torch.testing.assert_close(stnkit.warp(x, family.flat(field), family, padding=padding), theirs, atol=1e-5, rtol=0)
    dvf = _smooth_field(2, size, 2.0, seed=7, dtype=torch.float32)  # voxels
    theirs = monai_blocks.DVF2DDF(num_steps=7)(dvf)  # zero padding while squaring
    ours = fields.integrate_velocity(fields.from_voxel(dvf), 7, padding="zeros")
    torch.testing.assert_close(fields.to_voxel(ours), theirs, atol=1e-5, rtol=0)


# -- SpatialTransformer with a net that outputs the field ------------------------------------------
def test_spatial_transformer_without_regression_layer(helpers):
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(6), nn.Conv2d(4, 2, 1))
    st = stnkit.SpatialTransformer(net, "velocity", transform_options={"field_size": 6, "steps": 4},
                                   regression=False).double()
    assert st.regression is None and not net[-1].weight.any()
    x = helpers.smooth_image((3, 1, 12, 12))
    y, theta = st(x, return_theta=True)
    torch.testing.assert_close(y, x, atol=1e-12, rtol=0)  # a new transformer is the identity
    assert theta.shape == (3, 2 * 36)
    y.sum().backward()
    assert net[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        net[-1].bias.fill_(0.1)  # every velocity 0.1 along x and y: a translation
    expected = stnkit.warp(x, torch.full((3, 2), 0.1, dtype=torch.float64), "translation")
    torch.testing.assert_close(st(x), expected, atol=1e-12, rtol=0)
    wrong = stnkit.SpatialTransformer(nn.Sequential(nn.Conv2d(1, 2, 1)), "velocity", regression=False)
    with pytest.raises(ValueError, match=r"localisation: with regression=False expected heads \* num_params = 72"):
        wrong(torch.rand(1, 1, 5, 5))
    with pytest.raises(ValueError, match="localisation: regression=False needs"):
        stnkit.SpatialTransformer(nn.ReLU(), "displacement", regression=False)


# -- gradients and bad input -----------------------------------------------------------------------
@pytest.mark.parametrize("name,size", [("displacement", (4, 5)), ("velocity", (4, 5)), ("displacement3d", (2, 3, 4)),
                                       ("velocity3d", (2, 3, 3))])
def test_gradcheck(name, size, helpers):
    options = {"field_size": (3,) * len(size)} | ({"steps": 2} if "velocity" in name else {})
    family = get(name, **options)
    theta = helpers.random_theta(family, 2, helpers.gen(8)).requires_grad_()
    x = helpers.smooth_image((2, 1, *size))
    assert torch.autograd.gradcheck(lambda t: family.grid(t, size, True), (theta,))
    assert torch.autograd.gradcheck(lambda t: stnkit.warp(x, t, family), (theta,))


def test_utilities_gradcheck():
    v = _smooth_field(1, (5, 6), 0.1, seed=9).requires_grad_()
    w = _smooth_field(1, (5, 6), 0.1, seed=10).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: fields.integrate_velocity(a, 3), (v,))
    assert torch.autograd.gradcheck(lambda a, b: fields.compose_fields(a, b), (v, w))
    assert torch.autograd.gradcheck(lambda a: fields.jacobian_determinant(a), (v,))


def test_bad_fields():
    with pytest.raises(ValueError, match=r"velocity: expected 2 channels \(x, y\)"):
        fields.integrate_velocity(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="field: expected a 4-D or 5-D tensor"):
        fields.jacobian_determinant(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="second: expected a 4-D tensor"):
        fields.compose_fields(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 4, 4, 4))
    with pytest.raises(ValueError, match="field: expected every spatial side >= 2"):
        fields.jacobian_determinant(torch.zeros(1, 2, 1, 4))
    bad = torch.zeros(1, 2, 4, 4)
    bad[0, 1, 2, 2] = float("inf")
    with pytest.raises(NonFiniteThetaError, match="velocity: expected finite values"):
        fields.integrate_velocity(bad)
    with pytest.raises(NonFiniteThetaError, match="theta"):
        stnkit.warp(torch.zeros(1, 1, 4, 4), bad.reshape(1, -1), get("displacement", field_size=4))
    with pytest.raises(ValueError, match="steps: expected an int >= 0, got -1"):
        fields.integrate_velocity(torch.zeros(1, 2, 4, 4), steps=-1)
    with pytest.raises(ValueError, match="steps: expected an int >= 0, got -2"):
        get("velocity", steps=-2)
    with pytest.raises(ValueError, match="field_size: expected an int >= 1"):
        get("displacement3d", field_size=(4, 0, 4))
    with pytest.raises(ValueError, match="padding: expected one of"):
        get("velocity", padding="wrap")
    with pytest.raises(ValueError, match=r"field: expected shape \(N, 2, 6, 6\)"):
        get("displacement").flat(torch.zeros(1, 2, 16, 16))
    with pytest.raises(ValueError, match="convention: expected one of 'monai', 'voxelmorph'"):
        fields.to_voxel(torch.zeros(1, 2, 4, 4), convention="ants")


# -- the picture in `stnkit show`: the deformed mesh of a field ---------------------------------------
def test_sampling_region_draws_the_deformed_mesh_of_field_families(helpers):
    from stnkit.experiments.viz import sampling_region

    family = get("velocity", field_size=4)
    theta = torch.zeros(1, family.num_params, dtype=torch.float64)
    family.field(theta)[:, 0] = 0.25  # a translation by 0.25 (1 pixel of 8) along x
    region = sampling_region(family, theta, (8, 8))
    assert region.grid.shape == (1, 18, 24, 2)  # 9 lines each way, 24 points per line
    at = torch.linspace(-1, 1, 9, dtype=torch.float64)
    rows = region.grid[0, :9, :, 1]  # horizontal lines: y fixed at each of the 9 levels
    torch.testing.assert_close(rows, helpers.pixel_of(at.view(9, 1).expand(9, 24).unsqueeze(-1).expand(9, 24, 2),
                                                      (8, 8), False)[..., 1], atol=1e-12, rtol=0)
    columns = region.grid[0, 9:, :, 0]  # vertical lines: x fixed, moved one pixel right
    torch.testing.assert_close(columns, ((at + 1) * 8 - 1).view(9, 1).expand(9, 24) / 2 + 1, atol=1e-12, rtol=0)
