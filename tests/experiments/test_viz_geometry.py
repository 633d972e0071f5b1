"""The drawn sampling region lands on the pixels the transformer actually samples.

Each test builds a ``stnkit.SpatialTransformer`` whose regression layer outputs a known theta (zero
weights, bias = theta), places a single bright dot in a black input at a drawn position, and checks
that the dot appears at the matching output pixel. Where theta is built from chosen integer pixels
(an independent homography solve, or TPS control points), the drawn positions are also compared
with those pixels directly. Pixel <-> normalised conversions are written out here, independently
of ``stnkit.coords``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stnkit
from stnkit.experiments.viz import apply_transformers, frame_outline, sampling_region


def to_norm(pixels: np.ndarray, size: tuple[int, int], align_corners: bool) -> np.ndarray:
    """Pixel ``(x, y)`` -> normalised, from the convention in ``stnkit.coords``' docstring."""
    extent = np.array([size[1], size[0]], dtype=np.float64)  # (W, H)
    if align_corners:
        return pixels / (extent - 1) * 2 - 1
    return (2 * pixels + 1) / extent - 1


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 matrix H (H[2, 2] = 1) with H @ (src, 1) ~ (dst, 1) for 4 point pairs (DLT)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y]); rhs.append(u)
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y]); rhs.append(v)
    h = np.linalg.solve(np.array(rows), np.array(rhs))
    return np.append(h, 1.0).reshape(3, 3)


def fixed_st(family: str, theta: torch.Tensor, in_shape: tuple[int, ...], **kwargs) -> stnkit.SpatialTransformer:
    """A transformer that outputs ``theta`` (per head) whatever its input."""
    st = stnkit.SpatialTransformer(stnkit.fc_localisation(in_shape, hidden=(4,)), family, **kwargs)
    with torch.no_grad():
        st.regression.weight.zero_()
        st.regression.bias.copy_(theta.reshape(-1))
    return st.double().requires_grad_(False)


def dot_image(in_shape: tuple[int, ...], points: np.ndarray) -> torch.Tensor:
    """One black image per point ``(x, y)`` with a single bright pixel at the rounded point."""
    c, h, w = in_shape
    x = torch.zeros(len(points), c, h, w, dtype=torch.float64)
    for i, (px, py) in enumerate(np.rint(points).astype(int)):
        assert 0 <= px < w and 0 <= py < h, "test setup: the point must lie inside the input"
        x[i, :, py, px] = 1.0
    return x


def corner_pixels(size: tuple[int, int]) -> list[tuple[int, int]]:
    """(row, col) of the output's corner pixels, in the outline's order TL, TR, BR, BL."""
    h, w = size
    return [(0, 0), (0, w - 1), (h - 1, w - 1), (h - 1, 0)]


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("in_size,out_size", [((40, 40), (40, 40)), ((37, 45), (20, 30))])
def test_projective_corners_are_the_chosen_pixels_and_read_the_dot(align_corners, in_size, out_size):
    # Output corner pixel centres -> chosen integer input pixels, by an independent homography solve.
    h_in, w_in = in_size
    chosen = np.array([[5, 4], [w_in - 9, 7], [w_in - 4, h_in - 6], [3, h_in - 10]], dtype=np.float64)
    out_corners = np.array([[0, 0], [out_size[1] - 1, 0], [out_size[1] - 1, out_size[0] - 1], [0, out_size[0] - 1]],
                           dtype=np.float64)
    m = homography(to_norm(out_corners, out_size, align_corners), to_norm(chosen, in_size, align_corners))
    theta = torch.tensor(m.reshape(-1)[:8])
    st = fixed_st("projective", theta, (1, *in_size), output_size=out_size, align_corners=align_corners)

    (view,) = apply_transformers(st, torch.zeros(1, 1, *in_size, dtype=torch.float64), outline="centres")
    drawn = view.region.corners[0].double().numpy()  # (4, 2)
    np.testing.assert_allclose(drawn, chosen, atol=1e-3)

    out = st(dot_image((1, *in_size), drawn))  # one image per corner
    for k, (r, c) in enumerate(corner_pixels(out_size)):
        assert out[k, 0, r, c] == pytest.approx(1.0, abs=1e-3)
        assert out[k, 0].sum() < 4  # a dot, not a smear: the output is not trivially bright


@pytest.mark.parametrize("family", ["affine", "projective", "similarity", "attention"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_edge_outline_insets_to_the_corner_pixels_read(family, align_corners):
    # For any theta: the outer-edge outline, moved half an output pixel inwards along its sides,
    # gives the points the corner pixels read (exact for affine maps, close for mild homographies).
    in_size, out_size = (48, 52), (24, 20)
    t = stnkit.transforms.get(family)
    g = torch.Generator().manual_seed(3)
    theta = t.identity(dtype=torch.float64) + 0.15 * (torch.rand(t.num_params, generator=g, dtype=torch.float64) - 0.5)
    if family in ("affine", "attention", "similarity"):
        theta[0] = 0.6 if family != "affine" else theta[0] * 0.6  # zoom in: corners stay inside
    if family == "affine":
        theta[4] *= 0.6
    if family == "projective":
        theta[:5] *= torch.tensor([0.6, 1.0, 1.0, 1.0, 0.6], dtype=torch.float64)
        theta[6:] *= 0.2
    st = fixed_st(family, theta, (1, *in_size), output_size=out_size, align_corners=align_corners, mode="nearest")
    (view,) = apply_transformers(st, torch.zeros(1, 1, *in_size, dtype=torch.float64))
    tl, tr, br, bl = view.region.corners[0].double().numpy()
    fx, fy = 0.5 / out_size[1], 0.5 / out_size[0]
    inset = np.array([tl + (tr - tl) * fx + (bl - tl) * fy, tr + (tl - tr) * fx + (br - tr) * fy,
                      br + (bl - br) * fx + (tr - br) * fy, bl + (br - bl) * fx + (tl - bl) * fy])
    out = st(dot_image((1, *in_size), inset))
    for k, (r, c) in enumerate(corner_pixels(out_size)):
        assert out[k, 0, r, c] == 1.0, f"corner {k}: output pixel ({r}, {c}) does not read the drawn point"


@pytest.mark.parametrize("align_corners", [False, True])
def test_identity_edges_are_the_image_border(align_corners):
    r = sampling_region("affine", stnkit.transforms.get("affine").identity().unsqueeze(0), (10, 14),
                        align_corners=align_corners)
    expected = [[-0.5, -0.5], [13.5, -0.5], [13.5, 9.5], [-0.5, 9.5]]
    np.testing.assert_allclose(r.corners[0].numpy(), expected, atol=1e-5)
    r = sampling_region("affine", stnkit.transforms.get("affine").identity().unsqueeze(0), (10, 14),
                        align_corners=align_corners, outline="centres")
    np.testing.assert_allclose(r.corners[0].numpy(), [[0, 0], [13, 0], [13, 9], [0, 9]], atol=1e-5)


def test_zoom_with_different_input_size():
    # Half-size window centred on the input, output 8x8 from a 20x20 input: edges 5..15 around centre 9.5.
    theta = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.5, 0.0]])
    r = sampling_region("affine", theta, (8, 8), (20, 20))
    np.testing.assert_allclose(r.corners[0].numpy(), [[4.5, 4.5], [14.5, 4.5], [14.5, 14.5], [4.5, 14.5]], atol=1e-5)


@pytest.mark.parametrize("in_size", [(28, 28), (37, 37)])
def test_tps_control_points_are_the_chosen_pixels_and_read_the_dot(in_size):
    # align_corners=True on a 28x28 output puts the 4x4 control grid on pixels 0, 9, 18, 27.
    out_size = (28, 28)
    step_in = (in_size[0] - 1) // 3
    g = torch.Generator().manual_seed(0)
    base = np.array([[step_in * i, step_in * j] for j in range(4) for i in range(4)], dtype=np.float64)  # (16, 2) (x, y)
    offsets = torch.randint(-3, 4, (16, 2), generator=g).double().numpy()
    chosen = np.clip(base + offsets, 0, in_size[0] - 1)
    theta = torch.tensor(to_norm(chosen, in_size, True).reshape(-1))
    st = fixed_st("tps", theta, (1, *in_size), output_size=out_size, align_corners=True)

    (view,) = apply_transformers(st, torch.zeros(1, 1, *in_size, dtype=torch.float64), outline="centres")
    region = view.region
    np.testing.assert_allclose(region.control_points[0].double().numpy(), chosen, atol=1e-3)
    np.testing.assert_allclose(region.corners[0].double().numpy(), chosen[[0, 3, 15, 12]], atol=1e-3)
    assert region.grid is not None and region.grid.shape == (1, 14, 24, 2)  # 7 lines each way
    # The deformed grid passes through the control points: line 0 starts at control point 0.
    np.testing.assert_allclose(region.grid[0, 0, 0].double().numpy(), chosen[0], atol=1e-3)

    out = st(dot_image((1, *in_size), region.control_points[0].double().numpy()))
    for k in range(16):
        r, c = 9 * (k // 4), 9 * (k % 4)
        assert out[k, 0, r, c] == pytest.approx(1.0, abs=1e-3), f"control point {k}"


def test_each_head_is_drawn_where_that_head_reads():
    in_shape, out_size = (2, 40, 40), (20, 20)
    thetas = torch.tensor([[0.5, 0.1, -0.3, -0.1, 0.5, 0.2], [0.4, 0.0, 0.35, 0.0, 0.4, -0.4]], dtype=torch.float64)
    st = fixed_st("affine", thetas, in_shape, heads=2, output_size=out_size, mode="nearest")
    views = apply_transformers(st, torch.zeros(1, *in_shape, dtype=torch.float64), outline="centres")
    assert [v.label for v in views] == ["head 1", "head 2"]
    for h, view in enumerate(views):
        corners = view.region.corners[0].double().numpy()
        out = st(dot_image(in_shape, corners)).view(4, 2, 2, *out_size)  # (points, heads, C, H, W)
        for k, (r, c) in enumerate(corner_pixels(out_size)):
            assert out[k, h, :, r, c].tolist() == [1.0, 1.0]
            assert out[k, 1 - h].sum() <= 2 * 4  # the other head reads elsewhere (or barely)


def test_frame_outline_points_per_side():
    ring = frame_outline((4, 4), points_per_side=2)  # edges, align_corners=False
    np.testing.assert_allclose(ring.numpy(), [[-1, -1], [0, -1], [1, -1], [1, 0], [1, 1], [0, 1], [-1, 1], [-1, 0]],
                               atol=1e-6)


def test_bad_arguments_name_the_argument():
    theta = torch.zeros(2, 5)
    with pytest.raises(ValueError, match="theta"):
        sampling_region("affine", theta, (8, 8))
    with pytest.raises(ValueError, match="outline"):
        sampling_region("affine", torch.zeros(1, 6), (8, 8), outline="corners")
    with pytest.raises(ValueError, match="size"):
        sampling_region("affine", torch.zeros(1, 6), (8,))
    with pytest.raises(ValueError, match="transform"):
        sampling_region("affine3d", torch.zeros(1, 12), (8, 8))
    with pytest.raises(TypeError, match="theta"):
        sampling_region("affine", [[1, 0, 0, 0, 1, 0]], (8, 8))


@pytest.mark.parametrize("name", ["stnkit.experiments.viz", "stnkit.experiments.viz.geometry", "stnkit.experiments.viz.paper_results"])
def test_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0 and result.failed == 0
