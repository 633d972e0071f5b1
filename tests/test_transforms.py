"""Transform families against independent references: ``F.affine_grid``, closed-form matrices,
exact TPS interpolation, and a bright pixel that must land where ``warp_points`` says."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit.transforms import Transform, get

FAMILIES = stnkit.transforms.list_transforms()
FAMILIES_2D = [f for f in FAMILIES if get(f).ndim == 2]
MATRIX_FAMILIES = [f for f in FAMILIES if get(f).has_matrix]
AC = [False, True]

EXPECTED_PARAMS = {"translation": 2, "attention": 3, "similarity": 4, "affine": 6, "projective": 8,
                   "tps": 32, "affine3d": 12}


# -- registry -------------------------------------------------------------------------------------
def test_registry_lists_every_family_of_the_issue():
    assert set(EXPECTED_PARAMS) <= set(FAMILIES)
    assert FAMILIES == sorted(FAMILIES)


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_parameter_counts(name):
    family = get(name)
    assert family.num_params == EXPECTED_PARAMS[name]
    assert family.identity().shape == (EXPECTED_PARAMS[name],)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_tps_parameter_count_follows_grid_size(k):
    assert get("tps", grid_size=k).num_params == 2 * k * k


def test_get_returns_an_instance_unchanged():
    family = get("tps", grid_size=3)
    assert get(family) is family
    assert isinstance(get("affine"), Transform)


def test_register_refuses_duplicates():
    with pytest.raises(ValueError, match="'affine' is already registered"):
        stnkit.transforms.register_transform("affine")(stnkit.transforms.Affine)


# -- identity ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("align_corners", AC)
def test_identity_grid_is_the_pixel_centres(name, align_corners, helpers):
    family = get(name)
    size = (5, 7) if family.ndim == 2 else (3, 5, 7)
    theta = family.identity(dtype=torch.float64).expand(2, -1)
    grid = family.grid(theta, size, align_corners)
    assert grid.shape == (2, *size, family.ndim)
    expected = helpers.centres(size, align_corners).reshape(*size, family.ndim)
    torch.testing.assert_close(grid, expected.expand_as(grid), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_forward_is_grid(name, helpers):
    family = get(name)
    theta = helpers.random_theta(family, 2, helpers.gen(1))
    size = (4, 6) if family.ndim == 2 else (3, 4, 6)
    torch.testing.assert_close(family(theta, size), family.grid(theta, size), atol=0, rtol=0)


# -- references -------------------------------------------------------------------------------------
@pytest.mark.parametrize("align_corners", AC)
@pytest.mark.parametrize("size", [(5, 7), (1, 4), (8, 1), (6, 6)])
def test_affine_equals_affine_grid(size, align_corners, helpers):
    theta = torch.randn(4, 6, generator=helpers.gen(2), dtype=torch.float64)
    grid = get("affine").grid(theta, size, align_corners)
    with warnings.catch_warnings():  # affine_grid warns about unit sizes with align_corners=True
        warnings.simplefilter("ignore", UserWarning)
        expected = F.affine_grid(theta.view(4, 2, 3), (4, 1, *size), align_corners=align_corners)
    torch.testing.assert_close(grid, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("align_corners", AC)
def test_affine3d_equals_affine_grid_5d(align_corners, helpers):
    theta = torch.randn(3, 12, generator=helpers.gen(3), dtype=torch.float64)
    size = (4, 5, 6)
    grid = get("affine3d").grid(theta, size, align_corners)
    expected = F.affine_grid(theta.view(3, 3, 4), (3, 1, *size), align_corners=align_corners)
    torch.testing.assert_close(grid, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("align_corners", AC)
def test_projective_with_affine_bottom_row_equals_affine(align_corners, helpers):
    affine = torch.randn(3, 6, generator=helpers.gen(4), dtype=torch.float64)
    projective = torch.cat([affine, torch.zeros(3, 2, dtype=torch.float64)], dim=1)  # bottom row [0, 0, 1]
    expected = get("affine").grid(affine, (6, 9), align_corners)
    torch.testing.assert_close(get("projective").grid(projective, (6, 9), align_corners), expected,
                               atol=1e-12, rtol=0)


def test_projective_divides_by_the_homogeneous_coordinate(helpers):
    theta = helpers.random_theta(get("projective"), 2, helpers.gen(5), scale=2.0)
    points = helpers.uniform((2, 10, 2), -1, 1, helpers.gen(6))
    m = torch.cat([theta, torch.ones(2, 1, dtype=theta.dtype)], dim=1).view(2, 3, 3)  # closed form
    hom = torch.einsum("nij,npj->npi", m, torch.cat([points, torch.ones(2, 10, 1, dtype=theta.dtype)], -1))
    expected = hom[..., :2] / hom[..., 2:]
    torch.testing.assert_close(get("projective").warp_points(theta, points), expected, atol=1e-12, rtol=0)


def _closed_form_matrix(name: str, theta: torch.Tensor) -> torch.Tensor:
    """The ``(N, 2, 3)`` affine matrix each restricted family denotes, written out by hand."""
    rows = []
    for t in theta.tolist():
        if name == "translation":
            tx, ty = t
            rows.append([[1, 0, tx], [0, 1, ty]])
        elif name == "attention":
            s, tx, ty = t
            rows.append([[s, 0, tx], [0, s, ty]])
        elif name == "similarity":
            s, a, tx, ty = t
            rows.append([[s * math.cos(a), -s * math.sin(a), tx], [s * math.sin(a), s * math.cos(a), ty]])
    return torch.tensor(rows, dtype=theta.dtype)


@pytest.mark.parametrize("name", ["translation", "attention", "similarity"])
@pytest.mark.parametrize("align_corners", AC)
def test_restricted_families_equal_their_affine_matrices(name, align_corners, helpers):
    family = get(name)
    theta = helpers.random_theta(family, 3, helpers.gen(7), scale=3.0)
    expected = _closed_form_matrix(name, theta)  # (N, 2, 3)
    torch.testing.assert_close(family.matrix(theta)[:, :2], expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(family.matrix(theta)[:, 2], torch.tensor([[0.0, 0, 1]] * 3, dtype=theta.dtype))
    grid = family.grid(theta, (5, 6), align_corners)
    torch.testing.assert_close(grid, F.affine_grid(expected, (3, 1, 5, 6), align_corners=align_corners),
                               atol=1e-12, rtol=0)


def test_attention_zooms_on_a_window():
    # s = 0.5 centred on (0.5, -0.5): the output's corners read the window's corners.
    theta = torch.tensor([[0.5, 0.5, -0.5]], dtype=torch.float64)
    corners = torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(get("attention").warp_points(theta, corners),
                               torch.tensor([[[0.0, -1.0], [1.0, 0.0]]], dtype=torch.float64))


def _affine_of_control_points(family, affine: torch.Tensor) -> torch.Tensor:
    """TPS theta whose control points are moved by the ``(N, 6)`` affine map."""
    control = family.identity(dtype=torch.float64).view(-1, 2)  # (K, 2)
    return get("affine").warp_points(affine, control).reshape(affine.shape[0], -1)  # (N, 2K)


@pytest.mark.parametrize("grid_size", [2, 3, 4])
@pytest.mark.parametrize("smoothing", [0.0, 0.5])
@pytest.mark.parametrize("align_corners", AC)
def test_tps_with_affine_theta_equals_affine(grid_size, smoothing, align_corners, helpers):
    tps = get("tps", grid_size=grid_size, smoothing=smoothing)
    affine = helpers.random_theta(get("affine"), 3, helpers.gen(8), scale=3.0)
    theta = _affine_of_control_points(tps, affine)
    expected = get("affine").grid(affine, (7, 5), align_corners)
    torch.testing.assert_close(tps.grid(theta, (7, 5), align_corners), expected, atol=1e-9, rtol=0)
    points = helpers.uniform((3, 11, 2), -1.5, 1.5, helpers.gen(9))
    torch.testing.assert_close(tps.warp_points(theta, points), get("affine").warp_points(affine, points),
                               atol=1e-9, rtol=0)


@pytest.mark.parametrize("grid_size", [2, 3, 4])
def test_tps_interpolates_its_control_points(grid_size, helpers):
    tps = get("tps", grid_size=grid_size)
    theta = helpers.random_theta(tps, 3, helpers.gen(10), scale=2.0)
    control = torch.stack(torch.meshgrid(torch.linspace(-1, 1, grid_size, dtype=torch.float64),
                                         torch.linspace(-1, 1, grid_size, dtype=torch.float64),
                                         indexing="xy"), dim=-1).reshape(-1, 2)  # (K, 2), y outer
    torch.testing.assert_close(tps.warp_points(theta, control), theta.view(3, -1, 2), atol=1e-10, rtol=0)
    # The grid path too: with align_corners=True, a (3k-2)-pixel side puts pixel centres on the
    # control points every 3 pixels.
    side = 3 * grid_size - 2
    grid = tps.grid(theta, (side, side), align_corners=True)[:, ::3, ::3]  # (N, k, k, 2)
    torch.testing.assert_close(grid.reshape(3, -1, 2), theta.view(3, -1, 2), atol=1e-10, rtol=0)


def test_tps_smoothing_trades_exactness_for_smoothness(helpers):
    exact, smooth = get("tps", grid_size=3), get("tps", grid_size=3, smoothing=1.0)
    theta = helpers.random_theta(exact, 1, helpers.gen(11), scale=2.0)
    control = exact.identity(dtype=torch.float64).view(-1, 2)
    err = (smooth.warp_points(theta, control) - theta.view(1, -1, 2)).abs().max()
    assert err > 1e-3  # no longer interpolates ...
    assert (exact.warp_points(theta, control) - theta.view(1, -1, 2)).abs().max() < 1e-10


@pytest.mark.parametrize("name", FAMILIES)
def test_warp_points_shared_points_equal_batched_points(name, helpers):
    family = get(name)
    theta = helpers.random_theta(family, 3, helpers.gen(12))
    points = helpers.uniform((7, family.ndim), -1, 1, helpers.gen(13))
    shared = family.warp_points(theta, points)
    assert shared.shape == (3, 7, family.ndim)
    torch.testing.assert_close(shared, family.warp_points(theta, points.expand(3, 7, family.ndim)))


# -- warp_points agrees with grid: a bright pixel lands where warp_points says ---------------------
@pytest.mark.parametrize("name", FAMILIES_2D)
@pytest.mark.parametrize("align_corners", AC)
def test_bright_pixel_lands_where_warp_points_says(name, align_corners, helpers):
    family = get(name)
    size, (i0, j0) = (15, 17), (7, 8)
    x = torch.zeros(1, 1, *size, dtype=torch.float64)
    x[0, 0, i0, j0] = 1.0
    theta = helpers.random_theta(family, 1, helpers.gen(14))
    out = stnkit.warp(x, theta, family, align_corners=align_corners)[0, 0]  # (H, W)
    # Closed form: output pixel p reads the input at q = warp_points(p); bilinear gives the tent
    # max(0, 1 - |q_x - j0|) * max(0, 1 - |q_y - i0|) (paper eq. 5).
    q = helpers.pixel_of(family.warp_points(theta, helpers.centres(size, align_corners))[0], size,
                         align_corners)  # (H*W, 2) pixel (col, row)
    expected = ((1 - (q[:, 0] - j0).abs()).clamp_min(0) * (1 - (q[:, 1] - i0).abs()).clamp_min(0)).view(size)
    assert expected.sum() > 0.5  # the pixel did land inside the output
    torch.testing.assert_close(out, expected, atol=1e-9, rtol=0)
    # The brightest output pixel is the one whose source point is nearest the bright pixel.
    nearest = ((q - torch.tensor([j0, i0], dtype=q.dtype)).abs().amax(dim=1)).argmin()
    assert int(out.argmax()) == int(nearest)


@pytest.mark.parametrize("align_corners", AC)
def test_bright_voxel_lands_where_warp_points_says(align_corners, helpers):
    family = get("affine3d")
    size, (k0, i0, j0) = (7, 8, 9), (3, 4, 4)
    x = torch.zeros(1, 1, *size, dtype=torch.float64)
    x[0, 0, k0, i0, j0] = 1.0
    theta = helpers.random_theta(family, 1, helpers.gen(15))
    out = stnkit.warp(x, theta, family, align_corners=align_corners)[0, 0]  # (D, H, W)
    q = helpers.pixel_of(family.warp_points(theta, helpers.centres(size, align_corners))[0], size,
                         align_corners)  # (D*H*W, 3) (col, row, slice)
    target = torch.tensor([j0, i0, k0], dtype=q.dtype)
    expected = (1 - (q - target).abs()).clamp_min(0).prod(dim=1).view(size)
    assert expected.sum() > 0.5
    torch.testing.assert_close(out, expected, atol=1e-9, rtol=0)


@pytest.mark.parametrize("name", MATRIX_FAMILIES)
def test_inverse_predicts_where_a_pixel_lands(name, helpers):
    family = get(name)
    size = (9,) * family.ndim
    centre = torch.zeros(1, family.ndim, dtype=torch.float64)  # the middle pixel's centre
    theta = helpers.random_theta(family, 1, helpers.gen(16), scale=0.5)
    landing = family.warp_points(family.inverse(theta), centre)  # (1, 1, d) output point
    x = torch.zeros(1, 1, *size, dtype=torch.float64)
    x[(0, 0) + (4,) * family.ndim] = 1.0
    out = stnkit.warp(x, theta, family)
    flat = int(out.argmax())
    index = torch.tensor(list(reversed(torch.unravel_index(torch.tensor(flat), size))), dtype=torch.float64)
    expected = helpers.pixel_of(landing[0, 0], size, False)  # (col, row[, slice])
    assert (index - expected).abs().max() <= 0.5 + 1e-9


# -- matrix families: matrix, from_matrix, inverse, compose ----------------------------------------
@pytest.mark.parametrize("name", MATRIX_FAMILIES)
def test_from_matrix_inverts_matrix(name, helpers):
    family = get(name)
    theta = helpers.random_theta(family, 4, helpers.gen(17), scale=2.0)
    torch.testing.assert_close(family.from_matrix(family.matrix(theta)), theta, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", MATRIX_FAMILIES)
def test_compose_with_inverse_is_identity(name, helpers):
    family = get(name)
    theta = helpers.random_theta(family, 4, helpers.gen(18), scale=2.0)
    inverse = family.inverse(theta)
    eye = torch.eye(family.ndim + 1, dtype=torch.float64).expand(4, -1, -1)
    product = family.matrix(theta) @ family.matrix(inverse)
    product = product / product[:, -1:, -1:]  # homogeneous matrices are defined up to scale
    torch.testing.assert_close(product, eye, atol=1e-12, rtol=0)
    identity = family.identity(dtype=torch.float64).expand(4, -1)
    torch.testing.assert_close(family.compose(theta, inverse), identity, atol=1e-12, rtol=0)
    torch.testing.assert_close(family.compose(inverse, theta), identity, atol=1e-12, rtol=0)
    points = helpers.uniform((4, 6, family.ndim), -1, 1, helpers.gen(19))
    back = family.warp_points(inverse, family.warp_points(theta, points))
    torch.testing.assert_close(back, points, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", MATRIX_FAMILIES)
def test_compose_multiplies_matrices_in_order(name, helpers):
    family = get(name)
    a = helpers.random_theta(family, 3, helpers.gen(20), scale=2.0)
    b = helpers.random_theta(family, 3, helpers.gen(21), scale=2.0)
    product = family.matrix(a) @ family.matrix(b)
    product = product / product[:, -1:, -1:]  # homogeneous matrices are defined up to scale
    torch.testing.assert_close(family.matrix(family.compose(a, b)), product, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", [f for f in MATRIX_FAMILIES if get(f).ndim == 2])
def test_warping_by_compose_equals_warping_twice(name, helpers):
    family = get(name)
    size = (40, 40)
    x = helpers.smooth_image((2, 2, *size))
    a = helpers.random_theta(family, 2, helpers.gen(22), scale=1.5)
    b = helpers.random_theta(family, 2, helpers.gen(23), scale=1.5)
    twice = stnkit.warp(stnkit.warp(x, a, family), b, family)
    once = stnkit.warp(x, family.compose(a, b), family)
    # Compare where neither path reads padding: the intermediate and final points stay inside.
    p = helpers.centres(size, False)
    mid = family.warp_points(b, p)
    end = family.warp_points(a, mid)
    inside = ((mid.abs().amax(-1) < 0.85) & (end.abs().amax(-1) < 0.85)).view(2, 1, *size)  # (N, 1, H, W)
    assert inside.float().mean() > 0.3
    diff = ((twice - once).abs() * inside).amax()
    assert diff < 5e-3
    if name != "translation":  # the order matters: a then b is not b then a
        swapped = stnkit.warp(x, family.compose(b, a), family)
        assert ((swapped - once).abs() * inside).amax() > 4 * diff


def test_similarity_from_matrix_recovers_scale_and_angle():
    theta = torch.tensor([[0.8, 2.5, 0.1, -0.2], [1.3, -3.0, 0.0, 0.3]], dtype=torch.float64)
    family = get("similarity")
    torch.testing.assert_close(family.from_matrix(family.matrix(theta)), theta, atol=1e-12, rtol=0)


# -- projective near a zero homogeneous coordinate ------------------------------------------------
def _horizon_theta(align_corners: bool, width: int, dtype) -> torch.Tensor:
    """Projective theta whose homogeneous coordinate ``w = 1 + g x`` is zero at a pixel centre."""
    centre = -1.0 if align_corners else (2 * 2 + 1) / width - 1  # pixel 0 or 2 of the row
    return torch.tensor([[1.0, 0.2, 0.0, 0.1, 1.0, 0.0, -1.0 / centre, 0.0]], dtype=dtype)


@pytest.mark.parametrize("align_corners", AC)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode,padding", [("bilinear", "zeros"), ("bicubic", "zeros"),
                                          ("bilinear", "border"), ("bilinear", "reflection"),
                                          ("bicubic", "reflection")])
def test_projective_stays_finite_near_zero_homogeneous_coordinate(align_corners, dtype, mode, padding, helpers):
    family = get("projective")
    theta = _horizon_theta(align_corners, 8, dtype).requires_grad_()
    w = family.warp_points(theta.detach().double(), helpers.centres((6, 8), align_corners))
    grid = family.grid(theta, (6, 8), align_corners)
    assert torch.isfinite(grid).all()
    assert grid.abs().max() > 1e3  # the horizon maps far outside, as documented
    x = helpers.smooth_image((1, 2, 6, 8), dtype).requires_grad_()
    out = stnkit.warp(x, theta, family, mode=mode, padding=padding, align_corners=align_corners)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert torch.isfinite(theta.grad).all() and torch.isfinite(x.grad).all()
    assert torch.isfinite(w).all()


def test_projective_points_on_the_horizon_are_finite():
    theta = torch.tensor([[1.0, 0, 0, 0, 1.0, 0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    points = torch.tensor([[-1.0, 0.3], [-1.0 + 1e-9, 0.0], [-1.0 - 1e-9, 0.0]], dtype=torch.float64)
    out = get("projective").warp_points(theta, points)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(theta.grad).all()


# -- the coordinate helpers -------------------------------------------------------------------------
@pytest.mark.parametrize("align_corners", AC)
@pytest.mark.parametrize("n", [1, 2, 5])
def test_pixel_centres_and_conversions_agree(n, align_corners, helpers):
    centres = stnkit.coords.pixel_centres(n, align_corners, dtype=torch.float64)
    expected = helpers.centres((n,), align_corners)[:, 0]
    torch.testing.assert_close(centres, expected, atol=1e-15, rtol=0)
    index = torch.arange(n, dtype=torch.float64)
    points = torch.stack([index, torch.zeros(n, dtype=torch.float64)], dim=-1)  # (n, 2) pixels (col, row 0)
    normalised = stnkit.coords.pixel_to_normalized(points, (1, n), align_corners)
    torch.testing.assert_close(normalised[:, 0], centres, atol=1e-15, rtol=0)
    torch.testing.assert_close(normalised[:, 1], stnkit.coords.pixel_centres(1, align_corners, dtype=torch.float64)
                               .expand(n), atol=1e-15, rtol=0)
    back = stnkit.coords.normalized_to_pixel(normalised, (1, n), align_corners)
    torch.testing.assert_close(back, points, atol=1e-12, rtol=0)
