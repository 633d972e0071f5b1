"""The mesh and free-form families: ``piecewise_affine``, ``bspline`` and ``bspline3d``.

References are independent of the code under test: ``F.affine_grid`` for affine and translation
grids, closed-form cubic B-spline weights, hand-computed barycentric weights.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit.transforms import get


def _affine_points(matrix, points):
    """``matrix (2, 3)`` applied to ``points (P, 2)``."""
    return points @ matrix[:, :2].T + matrix[:, 2]


# -- piecewise_affine ----------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("align_corners", [False, True])
def test_piecewise_affine_from_an_affine_map_is_that_affine_map(k, align_corners, helpers):
    family = get("piecewise_affine", grid_size=k)
    matrix = torch.tensor([[1.1, 0.3, 0.1], [-0.2, 0.8, -0.05]], dtype=torch.float64)
    control = family.identity(dtype=torch.float64).view(-1, 2)  # (K, 2)
    theta = _affine_points(matrix, control).reshape(1, -1)
    expected = F.affine_grid(matrix[None], (1, 1, 6, 7), align_corners=align_corners)
    torch.testing.assert_close(family.grid(theta, (6, 7), align_corners), expected, atol=1e-12, rtol=0)
    # outside the control grid too: every border triangle's extension is the same affine map
    points = helpers.uniform((40, 2), -2.0, 2.0, helpers.gen(1))
    torch.testing.assert_close(family.warp_points(theta, points)[0], _affine_points(matrix, points),
                               atol=1e-12, rtol=0)


def test_piecewise_affine_interpolates_its_control_points(helpers):
    family = get("piecewise_affine", grid_size=4)
    theta = helpers.random_theta(family, 2, helpers.gen(2), scale=2.0)
    control = family.identity(dtype=torch.float64).view(-1, 2)
    torch.testing.assert_close(family.warp_points(theta, control), theta.view(2, -1, 2), atol=1e-14, rtol=0)


def test_piecewise_affine_hand_computed_weights():
    # k = 2: one cell, corners (-1,-1) (1,-1) (-1,1) (1,1); the point (0.5, -0.5) is in the
    # triangle (-1,-1) (1,-1) (1,1) (above the diagonal y = x) with weights 1/4, 1/2, 1/4.
    family = get("piecewise_affine", grid_size=2)
    theta = torch.tensor([[0.0, 0.0, 4.0, 0.0, 0.0, 8.0, 4.0, 4.0]], dtype=torch.float64)
    out = family.warp_points(theta, torch.tensor([[0.5, -0.5]], dtype=torch.float64))
    expected = 0.25 * theta[0, 0:2] + 0.5 * theta[0, 2:4] + 0.25 * theta[0, 6:8]
    torch.testing.assert_close(out[0, 0], expected, atol=1e-14, rtol=0)


def test_piecewise_affine_is_continuous_across_triangle_edges(helpers):
    family = get("piecewise_affine", grid_size=4)
    theta = helpers.random_theta(family, 1, helpers.gen(3), scale=2.0)
    step = 2 / 3
    t = helpers.uniform((50,), 0.0, 1.0, helpers.gen(4))
    cell = torch.randint(0, 3, (50, 2), generator=helpers.gen(5)).double()
    corner = -1 + cell * step  # (50, 2) top-left corner of a random cell
    eps = 1e-7
    edges = [  # a point on each kind of edge, and the direction across it
        (corner + step * torch.stack([t, t], 1), torch.tensor([1.0, -1.0])),  # diagonal
        (corner + step * torch.stack([t, torch.zeros_like(t)], 1), torch.tensor([0.0, 1.0])),  # horizontal
        (corner + step * torch.stack([torch.zeros_like(t), t], 1), torch.tensor([1.0, 0.0])),  # vertical
    ]
    for on_edge, across in edges:
        across = across.double() * eps
        a = family.warp_points(theta, on_edge - across)
        b = family.warp_points(theta, on_edge + across)
        assert (a - b).abs().max() < 20 * eps  # the jump is O(eps): continuous


def test_piecewise_affine_grid_equals_warp_points_at_pixel_centres(helpers):
    family = get("piecewise_affine", grid_size=3)
    theta = helpers.random_theta(family, 2, helpers.gen(6))
    for align_corners in (False, True):
        points = helpers.centres((5, 8), align_corners)
        grid = family.grid(theta, (5, 8), align_corners).reshape(2, -1, 2)
        torch.testing.assert_close(grid, family.warp_points(theta, points), atol=1e-12, rtol=0)


# -- bspline -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,size", [("bspline", (6, 7)), ("bspline3d", (3, 4, 5))])
@pytest.mark.parametrize("align_corners", [False, True])
def test_bspline_zero_is_identity_and_constant_is_translation(name, size, align_corners):
    family = get(name)
    d = family.ndim
    theta = torch.zeros(2, family.num_params, dtype=torch.float64)
    eye = torch.eye(d, d + 1, dtype=torch.float64).expand(2, d, d + 1)
    identity = F.affine_grid(eye, (2, 1, *size), align_corners=align_corners)
    torch.testing.assert_close(family.grid(theta, size, align_corners), identity, atol=1e-14, rtol=0)
    shift = torch.tensor([[0.3, -0.2, 0.1][:d], [-0.5, 0.25, 0.4][:d]], dtype=torch.float64)  # (2, d)
    theta = (shift[:, :, None] * torch.ones(2, d, family.num_params // d, dtype=torch.float64)).reshape(2, -1)
    moved = eye.clone()
    moved[:, :, d] = shift
    expected = F.affine_grid(moved, (2, 1, *size), align_corners=align_corners)
    # every pixel, the border ones included (control points lie beyond the image)
    torch.testing.assert_close(family.grid(theta, size, align_corners), expected, atol=1e-14, rtol=0)


def test_bspline_hand_computed_weights():
    # grid_size 5: spacing 1, control points at -2, -1, 0, 1, 2; align_corners=True pixels of a
    # 3 x 3 output sit at -1, 0, 1, i.e. on control points, where the cubic B-spline weights are
    # 1/6, 2/3, 1/6.
    family = get("bspline", grid_size=5)
    theta = torch.zeros(1, family.num_params, dtype=torch.float64)
    family.field(theta)[0, 0, 2, 2] = 0.6  # x displacement of the centre control point
    family.field(theta)[0, 1, 1, 2] = 0.3  # y displacement of the control point at (0, -1)
    grid = family.grid(theta, (3, 3), align_corners=True)
    centre_x = grid[0, 1, 1, 0] - 0.0
    top_x, top_y = grid[0, 0, 1, 0] - 0.0, grid[0, 0, 1, 1] - (-1.0)
    assert abs(centre_x - 0.6 * (2 / 3) ** 2) < 1e-14
    assert abs(top_x - 0.6 * (1 / 6) * (2 / 3)) < 1e-14
    assert abs(top_y - 0.3 * (2 / 3) ** 2) < 1e-14
    assert abs(grid[0, 1, 1, 1] - 0.3 * (1 / 6) * (2 / 3)) < 1e-14  # centre y from the (0, -1) point


@pytest.mark.parametrize("name,size", [("bspline", (5, 8)), ("bspline3d", (3, 4, 5))])
def test_bspline_grid_equals_warp_points_at_pixel_centres(name, size, helpers):
    family = get(name, grid_size=4 if name == "bspline3d" else (5, 7))
    theta = helpers.random_theta(family, 2, helpers.gen(7))
    for align_corners in (False, True):
        points = helpers.centres(size, align_corners)
        grid = family.grid(theta, size, align_corners).reshape(2, -1, family.ndim)
        torch.testing.assert_close(grid, family.warp_points(theta, points), atol=1e-12, rtol=0)


# -- all new families: gradients, bad input -------------------------------------------------------
@pytest.mark.parametrize("name,options,size", [
    ("piecewise_affine", {"grid_size": 3}, (4, 5)),
    ("bspline", {"grid_size": 4}, (4, 5)),
    ("bspline3d", {"grid_size": 4}, (2, 3, 4)),
])
def test_gradcheck(name, options, size, helpers):
    family = get(name, **options)
    theta = helpers.random_theta(family, 2, helpers.gen(8)).requires_grad_()
    x = helpers.smooth_image((2, 1, *size))
    points = helpers.uniform((3, family.ndim), -1.5, 1.5, helpers.gen(9))
    assert torch.autograd.gradcheck(lambda t: family.grid(t, size), (theta,))
    assert torch.autograd.gradcheck(lambda t: family.warp_points(t, points), (theta,))
    assert torch.autograd.gradcheck(lambda t: stnkit.warp(x, t, family), (theta,))


@pytest.mark.parametrize("name,options,message", [
    ("piecewise_affine", {"grid_size": 1}, "grid_size: expected an int >= 2"),
    ("bspline", {"grid_size": 3}, "grid_size: expected an int >= 4"),
    ("bspline3d", {"grid_size": (4, 4)}, "grid_size: expected an int >= 4 or 3 such ints"),
    ("bspline", {"grid_size": (4, 3)}, "grid_size: expected an int >= 4, got 3"),
])
def test_control_grid_too_small(name, options, message):
    with pytest.raises(ValueError, match=message):
        get(name, **options)


@pytest.mark.parametrize("name", ["piecewise_affine", "bspline", "bspline3d"])
def test_wrong_theta_and_non_finite_theta(name):
    family = get(name)
    size = (4,) * family.ndim
    with pytest.raises(ValueError, match="theta: transform .* expects"):
        family.grid(torch.zeros(1, family.num_params + 1), size)
    theta = family.identity().unsqueeze(0).clone()
    theta[0, 3] = float("nan")
    with pytest.raises(stnkit.errors.NonFiniteThetaError, match="theta"):
        stnkit.warp(torch.zeros(1, 1, *size), theta, family)
