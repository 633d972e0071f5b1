"""Distortions measured from the images they produce.

Each distortion warps *coordinate images*: a source whose pixel values encode their own column
(``10 + 8 x``), one that encodes the row, and an all-ink image. Bilinear sampling reproduces a
linear ramp exactly, so the output says, for every output pixel read entirely inside the source,
which source point it read. The transform recovered from that read map is compared with closed
forms written here (rotation, homography by DLT, thin plate spline solved in numpy) and with the
paper's ranges, never with the library's own constants.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stnkit.experiments.data import get_distortion, index_params, list_distortions

PAPER = {"r_angle": 90.0, "rts_angle": 45.0, "rts_scale": (0.7, 1.2), "rts_canvas": 42,
         "p_scale": (0.75, 1.0), "p_sigma": 5.0, "e_scale": (0.75, 1.0), "e_sigma": 1.5,
         "t_canvas": 60, "tc_patches": 6, "tc_patch": 6}
RAMP0, RAMP_STEP = 10, 8


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def many(distortion, n: int, seeds: int = 10):
    """``n`` draws pooled from ``seeds`` differently seeded generators."""
    parts = [distortion.make_params(n // seeds, gen(1000 + s)) for s in range(seeds)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def coordinate_images() -> torch.Tensor:
    """``uint8 (3, 28, 28)``: x ramp, y ramp, all ink."""
    ramp = (RAMP0 + RAMP_STEP * torch.arange(28)).to(torch.uint8)
    x = ramp.view(1, 28).expand(28, 28)
    return torch.stack([x, x.t(), torch.full((28, 28), 255, dtype=torch.uint8)])


def read_map(distortion, params, channel: int = 0):
    """Source points read by every output pixel, relative to the source centre, in pixels.

    Returns ``src (n, H, W, 2)`` and ``valid (n, H, W)`` (read entirely inside the source).
    """
    n = next(iter(params.values())).shape[0]
    images = coordinate_images().repeat(n, 1, 1)  # (3n, 28, 28), sample i at rows 3i..3i+2
    rep = {k: v.repeat_interleave(3, dim=0) for k, v in params.items()}
    others = None
    if distortion.num_others:  # addition: the same coordinate images; tc: blank clutter
        others = images.unsqueeze(1).expand(-1, distortion.num_others, -1, -1).clone()
        if distortion.name == "tc":
            others.zero_()
    out = distortion.apply(images, rep, others)[:, channel].double()  # (3n, H, W)
    out = out.view(n, 3, *out.shape[1:])
    valid = out[:, 2] > 1 - 1e-5
    src = (out[:, :2] * 255 - RAMP0) / RAMP_STEP + 0.5 - 14  # pixel centre j is at j + 0.5 - 14
    return src.permute(0, 2, 3, 1), valid  # (n, H, W, 2)


def output_points(h: int, w: int) -> torch.Tensor:
    """``(H, W, 2)`` output pixel centres relative to the canvas centre, (x right, y down)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    return torch.stack([xs + 0.5 - w / 2, ys + 0.5 - h / 2], dim=-1)


def fit_affine(distortion, params, channel: int = 0):
    """Least-squares affine read map per sample -> forward map ``(n, 2, 3)`` (source -> canvas px)."""
    src, valid = read_map(distortion, params, channel)
    n = src.shape[0]
    out = output_points(*src.shape[1:3]).reshape(-1, 2)  # (P, 2)
    a = torch.cat([out, torch.ones(out.shape[0], 1, dtype=torch.float64)], dim=1)  # (P, 3)
    w = valid.reshape(n, -1, 1).double()  # (n, P, 1) weights: 1 where read inside the source
    assert (w.sum(dim=(1, 2)) > 50).all(), "too few pixels read inside the source"
    b = src.reshape(n, -1, 2)  # (n, P, 2)
    sol = torch.linalg.solve(a.t() @ (w * a), a.t() @ (w * b))  # (n, 3, 2): src = [u v 1] @ sol
    residual = ((a @ sol - b).abs() * w).amax(dim=(1, 2))
    backward = torch.cat([sol.transpose(1, 2), torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64).expand(n, 1, 3)],
                         dim=1)  # (n, 3, 3)
    return torch.linalg.inv(backward)[:, :2], residual


def decompose(forward):
    """Forward ``s * [[cos a, sin a], [-sin a, cos a]] + t`` (counter-clockwise on screen, y down)."""
    a = torch.rad2deg(torch.atan2(forward[:, 0, 1], forward[:, 0, 0]))
    s = torch.linalg.det(forward[:, :, :2]).sqrt()
    return a, s, forward[:, 0, 2], forward[:, 1, 2]


# -- registry, contract ---------------------------------------------------------------------------
def test_registry_has_the_papers_distortions():
    assert list_distortions() == sorted(["none", "r", "rts", "p", "e", "t", "tc", "addition"])
    expected = {"none": (1, 28, 10), "r": (1, 28, 10), "rts": (1, 42, 10), "p": (1, 28, 10), "e": (1, 28, 10),
                "t": (1, 60, 10), "tc": (1, 60, 10), "addition": (2, 42, 19)}
    for name, (c, side, classes) in expected.items():
        d = get_distortion(name)
        assert (d.channels, d.size, d.num_classes) == (c, (side, side), classes), name


def _sources(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 28, 28), generator=gen(seed), dtype=torch.uint8)


@pytest.mark.parametrize("name", list_distortions())
def test_contract_shapes_dtype_range_no_inplace_subsets_and_empty(name):
    d = get_distortion(name)
    images = _sources(6)
    others = _sources(6 * d.num_others, 1).view(6, d.num_others, 28, 28) if d.num_others else None
    before = images.clone()
    params = d.make_params(6, gen(3))
    x = d.apply(images, params, others)
    assert x.shape == (6, d.channels, *d.size) and x.dtype == torch.float32
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(images, before)
    sub = d.apply(images[2:5], index_params(params, slice(2, 5)), None if others is None else others[2:5])
    torch.testing.assert_close(sub, x[2:5], atol=2e-5, rtol=0)  # batched equals a subset (up to BLAS rounding)
    empty = d.apply(images[:0], d.make_params(0, gen(0)), None if others is None else others[:0])
    assert empty.shape == (0, d.channels, *d.size)
    assert torch.equal(d.apply(images, params, others), x)  # deterministic


@pytest.mark.parametrize("name", [n for n in list_distortions() if n != "none"])
def test_same_generator_seed_same_params_other_seed_other_params(name):
    d = get_distortion(name)
    a, b, c = d.make_params(32, gen(7)), d.make_params(32, gen(7)), d.make_params(32, gen(8))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_none_is_the_plain_digit_in_unit_range():
    images = _sources(3)
    x = get_distortion("none").apply(images, {})
    torch.testing.assert_close(x, images.unsqueeze(1).float() / 255, atol=0, rtol=0)


# -- R ---------------------------------------------------------------------------------------------
def test_rotation_by_plus_90_turns_counter_clockwise_on_screen():
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    image[0, 13:15, 20:22] = 255  # a mark right of the centre
    out = get_distortion("r").apply(image, {"angle": torch.tensor([90.0])})[0, 0]
    row, col = divmod(int(out.argmax()), 28)
    assert row < 10 and 12 <= col <= 15  # now above the centre


def test_r_measured_angles_cover_the_papers_range():
    d = get_distortion("r")
    params = many(d, 300)
    forward, residual = fit_affine(d, params)
    angle, scale, tx, ty = decompose(forward)
    assert residual.max() < 0.02  # the read map is exactly affine
    torch.testing.assert_close(angle.float(), params["angle"], atol=0.05, rtol=0)
    torch.testing.assert_close(scale, torch.ones_like(scale), atol=2e-3, rtol=0)
    assert tx.abs().max() < 0.02 and ty.abs().max() < 0.02  # about the centre
    lim = PAPER["r_angle"]
    assert angle.abs().max() <= lim + 0.05 and angle.min() < -0.95 * lim and angle.max() > 0.95 * lim
    counts = torch.histc(angle, bins=6, min=-lim, max=lim)
    assert counts.min() > 300 / 6 * 0.5  # roughly uniform


# -- RTS -------------------------------------------------------------------------------------------
def test_rts_measured_transform_matches_params_and_papers_ranges():
    d = get_distortion("rts")
    params = many(d, 300)
    forward, residual = fit_affine(d, params)
    angle, scale, tx, ty = decompose(forward)
    assert residual.max() < 0.02
    torch.testing.assert_close(angle.float(), params["angle"], atol=0.05, rtol=0)
    torch.testing.assert_close(scale.float(), params["scale"], atol=2e-3, rtol=0)
    torch.testing.assert_close(tx.float(), params["offset_x"], atol=0.03, rtol=0)
    torch.testing.assert_close(ty.float(), params["offset_y"], atol=0.03, rtol=0)
    lo, hi = PAPER["rts_scale"]
    assert angle.abs().max() <= PAPER["rts_angle"] + 0.05 and angle.abs().max() > 0.95 * PAPER["rts_angle"]
    assert scale.min() >= lo - 2e-3 and scale.max() <= hi + 2e-3
    assert scale.min() < lo + 0.03 and scale.max() > hi - 0.03
    # The 20x20 digit box (MNIST's size normalisation), mapped forward, stays on the 42x42 canvas.
    corners = torch.tensor([[-10.0, -10.0, 1], [10, -10, 1], [10, 10, 1], [-10, 10, 1]], dtype=torch.float64)
    landed = corners @ forward.transpose(1, 2)  # (n, 4, 2)
    half = PAPER["rts_canvas"] / 2
    assert landed.abs().max() <= half + 1e-3
    # ... and positions really vary: digits reach near every edge over the draws.
    assert landed[..., 0].min() < -half + 3 and landed[..., 0].max() > half - 3
    assert landed[..., 1].min() < -half + 3 and landed[..., 1].max() > half - 3


def test_rts_digit_inside_its_box_loses_no_ink_off_the_canvas():
    d, wider = get_distortion("rts"), get_distortion("rts", size=46)
    box = torch.zeros(400, 28, 28, dtype=torch.uint8)
    box[:, 4:24, 4:24] = 255  # a digit filling its 20x20 box
    params = d.make_params(400, gen(2))
    out = d.apply(box, params)[:, 0]  # (400, 42, 42)
    around = wider.apply(box, params)[:, 0]  # (400, 46, 46): same placement, two more pixels each side
    torch.testing.assert_close(around[:, 2:-2, 2:-2], out, atol=1e-4, rtol=0)
    ring = around.clone()
    ring[:, 2:-2, 2:-2] = 0
    assert ring.max() < 1e-4  # nothing would have fallen off the 42x42 canvas
    border = torch.cat([out[:, 0], out[:, -1], out[:, :, 0], out[:, :, -1]], dim=1)
    assert (border.amax(dim=1) > 0).any()  # some digits do reach the edge


# -- P ---------------------------------------------------------------------------------------------
def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 homography mapping 4 points ``src -> dst`` (DLT, float64)."""
    rows = []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    h = np.linalg.svd(np.asarray(rows))[2][-1].reshape(3, 3)
    return h / h[2, 2]


def test_p_measured_warp_is_the_homography_of_the_moved_corners():
    d = get_distortion("p")
    params = many(d, 150)
    src, valid = read_map(d, params)
    out = output_points(28, 28).numpy()
    corners = np.array([[-14.0, -14.0], [14, -14], [14, 14], [-14, 14]])  # image corners, TL TR BR BL
    for i in range(150):
        dest = params["scale"][i].item() * corners + params["corner_offsets"][i].double().numpy()
        back = np.linalg.inv(_homography(corners, dest))  # canvas -> source
        m = valid[i].numpy()
        hom = np.concatenate([out[m], np.ones((m.sum(), 1))], axis=1) @ back.T
        expected = hom[:, :2] / hom[:, 2:]
        assert np.abs(expected - src[i].numpy()[m]).max() < 0.03
    lo, hi = PAPER["p_scale"]
    scale, offsets = params["scale"], params["corner_offsets"]
    assert lo <= scale.min() and scale.max() <= hi and scale.min() < lo + 0.02 and scale.max() > hi - 0.02
    assert abs(offsets.std().item() - PAPER["p_sigma"]) < 0.4 and abs(offsets.mean().item()) < 0.5


# -- E ---------------------------------------------------------------------------------------------
def _tps(control: np.ndarray, values: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Thin plate spline through ``control -> values`` evaluated at ``points`` (numpy, float64)."""
    def kernel(a, b):
        d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(d2 > 0, d2 * np.log(d2), 0.0)
    k = len(control)
    p = np.concatenate([np.ones((k, 1)), control], axis=1)
    system = np.block([[kernel(control, control), p], [p.T, np.zeros((3, 3))]])
    coef = np.linalg.solve(system, np.concatenate([values, np.zeros((3, 2))]))
    q = np.concatenate([np.ones((len(points), 1)), points], axis=1)
    return kernel(points, control) @ coef[:k] + q @ coef[k:]


def test_e_measured_warp_is_the_thin_plate_spline_of_the_moved_points():
    d = get_distortion("e")
    params = many(d, 60)
    src, valid = read_map(d, params)
    axis = np.linspace(-14.0, 14.0, 4)  # a 4x4 control grid spanning the image, in pixels
    control = np.stack(np.meshgrid(axis, axis, indexing="xy"), -1).reshape(-1, 2)  # row-major, x fastest
    out = output_points(28, 28).numpy().reshape(-1, 2)
    for i in range(60):
        s = params["scale"][i].item()
        values = (control + params["control_offsets"][i].double().numpy()) / s  # source points read
        expected = _tps(control, values, out).reshape(28, 28, 2)
        m = valid[i].numpy()
        assert np.abs(expected[m] - src[i].numpy()[m]).max() < 0.03
    lo, hi = PAPER["e_scale"]
    scale, offsets = params["scale"], params["control_offsets"]
    assert offsets.shape == (60, 16, 2)
    assert lo <= scale.min() and scale.max() <= hi
    assert abs(offsets.std().item() - PAPER["e_sigma"]) < 0.15


# -- T, TC -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["t", "tc"])
def test_t_and_tc_place_the_whole_frame_at_random_whole_pixel_positions(name):
    d = get_distortion(name)
    params = many(d, 400)
    src, valid = read_map(d, params)
    side = PAPER["t_canvas"]
    assert valid.sum(dim=(1, 2)).eq(28 * 28).all()  # the whole 28x28 frame is on the canvas
    shift = output_points(side, side) - src  # (n, H, W, 2): canvas minus source position
    per_sample = torch.stack([shift[i][valid[i]].mean(0) for i in range(400)])  # (n, 2)
    spread = torch.stack([shift[i][valid[i]].std(0).max() for i in range(400)])
    assert spread.max() < 1e-3  # a pure translation
    torch.testing.assert_close(per_sample[:, 0].float(), params["offset_x"], atol=1e-3, rtol=0)
    torch.testing.assert_close(per_sample[:, 1].float(), params["offset_y"], atol=1e-3, rtol=0)
    assert torch.allclose(per_sample, per_sample.round(), atol=1e-3)  # whole pixels, no blur
    reach = (side - 28) / 2
    assert per_sample.abs().max() <= reach + 1e-3
    assert per_sample.min() == pytest.approx(-reach, abs=1e-3) and per_sample.max() == pytest.approx(reach, abs=1e-3)


def test_tc_clutter_is_six_6x6_crops_of_the_other_digits_at_the_drawn_places():
    d = get_distortion("tc")
    n = 50
    params = d.make_params(n, gen(6))
    blank = torch.zeros(n, 28, 28, dtype=torch.uint8)
    others = torch.randint(1, 256, (n, 6, 28, 28), generator=gen(7), dtype=torch.uint8)
    out = d.apply(blank, params, others)[:, 0]  # only clutter
    for i in range(n):
        expected = torch.zeros(60, 60)
        for k in range(6):
            px, py = int(params["patch_x"][i, k]), int(params["patch_y"][i, k])
            cx, cy = int(params["crop_x"][i, k]), int(params["crop_y"][i, k])
            assert 0 <= px <= 54 and 0 <= py <= 54 and 4 <= cx <= 18 and 4 <= cy <= 18
            crop = others[i, k, cy:cy + 6, cx:cx + 6].float() / 255
            expected[py:py + 6, px:px + 6] = torch.maximum(expected[py:py + 6, px:px + 6], crop)
        torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=0)
    assert params["patch_x"].min() == 0 and params["patch_x"].max() == 54


def test_tc_has_the_digit_plus_clutter():
    d = get_distortion("tc")
    digit = torch.zeros(20, 28, 28, dtype=torch.uint8)
    digit[:, 4:24, 10:18] = 200  # a bar
    others = torch.full((20, 6, 28, 28), 90, dtype=torch.uint8)
    params = d.make_params(20, gen(8))
    both = d.apply(digit, params, others)[:, 0]
    alone = get_distortion("t").apply(digit, {k: params[k] for k in ("offset_x", "offset_y")})[:, 0]
    assert ((alone > 0).sum(dim=(1, 2)) == 160).all()  # the whole bar
    assert torch.equal(torch.maximum(both, alone), both)  # the digit is all there
    clutter = (both > 0) & (alone == 0)
    assert (clutter.sum(dim=(1, 2)) > 0).all()  # and clutter outside it
    torch.testing.assert_close(both[clutter], torch.full_like(both[clutter], 90 / 255))


# -- addition --------------------------------------------------------------------------------------
def test_addition_channels_carry_independent_rts_warps():
    d = get_distortion("addition")
    params = d.make_params(40, gen(9))
    for channel in (0, 1):
        forward, _ = fit_affine(d, params, channel)
        angle, scale, tx, ty = decompose(forward)
        torch.testing.assert_close(angle.float(), params["angle"][:, channel], atol=0.05, rtol=0)
        torch.testing.assert_close(scale.float(), params["scale"][:, channel], atol=2e-3, rtol=0)
        torch.testing.assert_close(tx.float(), params["offset_x"][:, channel], atol=0.03, rtol=0)
    assert not torch.allclose(params["angle"][:, 0], params["angle"][:, 1])


def test_addition_label_is_the_sum_and_second_digit_is_required():
    d = get_distortion("addition")
    labels = torch.arange(10).repeat(4)
    other = torch.randint(10, (40, 1), generator=gen(10))
    summed = d.labels(labels, other)
    assert torch.equal(summed, labels + other[:, 0]) and summed.max() <= 18
    with pytest.raises(ValueError, match="others"):
        d.apply(_sources(2), d.make_params(2, gen(0)))


def test_addition_partners_follow_a_permutation():
    index = get_distortion("addition").draw_others(100, 100, gen(11))
    assert index.shape == (100, 1) and torch.equal(index[:, 0].sort().values, torch.arange(100))


# -- bad input -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, options, match", [
    ("r", {"angle": (10, -10)}, "angle"),
    ("r", {"angle": (-200, 0)}, "angle"),
    ("r", {"angle": 45}, "angle"),
    ("rts", {"scale": (0.0, 1.0)}, "scale"),
    ("rts", {"scale": (1.2, 0.7)}, "scale"),
    ("rts", {"size": 30}, "size"),
    ("rts", {"digit_box": 40}, "digit_box"),
    ("p", {"sigma": -1.0}, "sigma"),
    ("p", {"scale": (float("nan"), 1.0)}, "scale"),
    ("e", {"sigma": float("inf")}, "sigma"),
    ("e", {"grid_size": 1}, "grid_size"),
    ("t", {"size": 20}, "size"),
    ("tc", {"patch_size": 0}, "patch_size"),
    ("tc", {"crop_box": 4}, "crop_box"),
    ("addition", {"scale": (0.5, 3.0)}, "size"),
])
def test_bad_ranges_are_refused_by_name(name, options, match):
    with pytest.raises(ValueError, match=match):
        get_distortion(name, **options)


def test_bad_apply_and_make_params_arguments():
    d = get_distortion("rts")
    with pytest.raises(ValueError, match="images"):
        d.apply(torch.zeros(2, 32, 32, dtype=torch.uint8), d.make_params(2, gen(0)))
    with pytest.raises(ValueError, match="params\\['angle'\\]"):
        d.apply(_sources(3), d.make_params(2, gen(0)))
    with pytest.raises(ValueError, match="params"):
        d.apply(_sources(2), {"angle": torch.zeros(2)})
    with pytest.raises(TypeError, match="generator"):
        d.make_params(2, 0)
    with pytest.raises(ValueError, match="n"):
        d.make_params(-1, gen(0))
    with pytest.raises(ValueError, match="unknown distortion"):
        get_distortion("rotate")
    tc = get_distortion("tc")
    with pytest.raises(ValueError, match="others"):
        tc.apply(_sources(2), tc.make_params(2, gen(0)), torch.zeros(2, 3, 28, 28, dtype=torch.uint8))


def test_angles_follow_options():
    d = get_distortion("r", angle=(10.0, 20.0))
    forward, _ = fit_affine(d, d.make_params(20, gen(12)))
    angle = decompose(forward)[0]
    assert angle.min() >= 10 - 0.05 and angle.max() <= 20 + 0.05
    assert math.isclose(get_distortion("rts", size=50).size[0], 50)
