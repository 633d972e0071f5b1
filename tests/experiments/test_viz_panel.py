"""Panel pictures: written, of the expected size, not blank, different for different thetas, and
the region is drawn over the image pixels it names."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import stnkit
from stnkit.experiments.models import create_model
from stnkit.experiments.viz import (HEAD_COLORS, SamplingRegion, figure_to_array, plot_panel, plot_transformer, save_figure,
                     to_rgb)


def fixed_st(family: str, theta: torch.Tensor, in_shape, **kwargs) -> stnkit.SpatialTransformer:
    st = stnkit.SpatialTransformer(stnkit.fc_localisation(in_shape, hidden=(4,)), family, **kwargs)
    with torch.no_grad():
        st.regression.weight.zero_()
        st.regression.bias.copy_(theta.reshape(-1))
    return st


def digit_like(n: int, c: int = 1, side: int = 28) -> torch.Tensor:
    x = torch.zeros(n, c, side, side)
    for i in range(n):
        x[i, i % c, 6 + i % 5: 22, 10: 16 + i % 4] = 1.0
    return x


def red_pixels(image: np.ndarray, color: str = HEAD_COLORS[0]) -> np.ndarray:
    rgb = np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])
    return np.all(np.abs(image[..., :3].astype(int) - rgb) < 40, axis=-1)


def test_import_is_light():
    code = "import sys, stnkit.experiments.viz; bad = [m for m in sys.modules if m.startswith(('matplotlib', 'PIL'))]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_png_written_with_expected_size_and_content(tmp_path):
    theta = torch.tensor([0.7, 0.3, 0.1, -0.3, 0.7, -0.1])
    st = fixed_st("affine", theta, (1, 28, 28))
    fig = plot_transformer(st, digit_like(6), ncols=3, cell=1.0, dpi=50)
    path = save_figure(fig, tmp_path / "sub" / "panel.png")
    assert path == tmp_path / "sub" / "panel.png"
    assert not list(path.parent.glob(".*tmp"))  # no temporary file left behind
    image = np.asarray(Image.open(path).convert("RGB"))
    # 3 groups of (input, output) cells of 1 inch at 50 dpi per row, 2 rows; plus small gaps/margins.
    assert 6 * 50 <= image.shape[1] <= 6 * 50 + 100
    assert 2 * 50 <= image.shape[0] <= 2 * 50 + 60
    assert image.std() > 20  # not blank
    assert red_pixels(image).sum() > 50  # the region outline is drawn, in head 1's colour


def test_different_thetas_give_different_pictures():
    x = digit_like(4)
    a = figure_to_array(plot_transformer(fixed_st("affine", torch.tensor([0.7, 0.3, 0.1, -0.3, 0.7, -0.1]), (1, 28, 28)),
                                         x, dpi=40))
    b = figure_to_array(plot_transformer(fixed_st("affine", torch.tensor([0.9, 0.0, -0.1, 0.0, 0.6, 0.2]), (1, 28, 28)),
                                         x, dpi=40))
    assert a.shape == b.shape
    assert (np.abs(a.astype(int) - b.astype(int)).sum(-1) > 30).sum() > 100


def test_outline_is_drawn_on_the_pixels_it_names():
    # One bright input pixel at (row 7, col 20); a region whose corners are the centres of the
    # pixels around it. In the rendered picture the outline must surround the bright blob.
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 7, 20] = 1.0
    square = torch.tensor([[[19.0, 6.0], [21.0, 6.0], [21.0, 8.0], [19.0, 8.0]]])  # (1, 4, 2) (x, y)
    region = SamplingRegion(square, square)
    fig = plot_panel(x, [torch.zeros(1, 1, 28, 28)], [region], cell=3.0, dpi=100, margin=0.0)
    image = figure_to_array(fig)
    left = image[:, : image.shape[1] // 2]  # the input cell
    black = np.all(left < 30, axis=-1)
    rows, cols = np.flatnonzero(black.sum(1) > 100), np.flatnonzero(black.sum(0) > 100)  # the image, not text
    top, bottom, lft, rgt = rows.min(), rows.max(), cols.min(), cols.max()
    inside = np.zeros_like(black)
    inside[top:bottom + 1, lft:rgt + 1] = True
    white = np.argwhere(np.all(left > 240, axis=-1) & inside)
    red = np.argwhere(red_pixels(left))
    assert len(white) > 20 and len(red) > 20
    np.testing.assert_allclose(white.mean(0), red.mean(0), atol=1.5)  # same centre, to ~1/6 of an image pixel
    px = (rgt - lft + 1) / 28  # screen pixels per image pixel
    assert np.ptp(red[:, 0]) == pytest.approx(2 * px, abs=3)  # the square spans 2 image pixels


def test_multi_channel_composite_and_rgb():
    x = torch.zeros(1, 2, 2, 2)
    x[0, 0, 0, 0] = 1  # channel 0 only
    x[0, 1, 0, 1] = 1  # channel 1 only
    x[0, :, 1, 1] = 1  # both
    rgb = to_rgb(x)[0]
    assert rgb.shape == (2, 2, 3)
    assert rgb[0, 0].tolist() == pytest.approx([0.2, 1.0, 0.2])  # green
    assert rgb[0, 1].tolist() == pytest.approx([1.0, 0.2, 1.0])  # magenta
    assert rgb[1, 1].tolist() == pytest.approx([1.0, 1.0, 1.0])  # overlap: white
    assert rgb[1, 0].tolist() == [0.0, 0.0, 0.0]
    colour = torch.rand(1, 3, 4, 4)
    np.testing.assert_allclose(to_rgb(colour)[0], colour[0].permute(1, 2, 0).numpy(), atol=1e-6)
    gray = torch.rand(1, 1, 4, 4)
    np.testing.assert_allclose(to_rgb(gray)[0, ..., 1], gray[0, 0].numpy(), atol=1e-6)


def test_two_transformer_model_has_one_colour_per_head(tmp_path):
    model = create_model("2xst-fcn", in_shape=(2, 42, 42), num_classes=19, downsample=True)
    with torch.no_grad():
        model.spatial_transformers[0].regression.bias.copy_(torch.tensor([0.5, 0, -0.4, 0, 0.5, -0.4]))
        model.spatial_transformers[1].regression.bias.copy_(torch.tensor([0.5, 0, 0.4, 0, 0.5, 0.4]))
    model.train()
    fig = plot_transformer(model, digit_like(2, c=2, side=42), dpi=60)
    image = figure_to_array(fig)
    assert model.training and all(m.training for m in model.modules())  # mode restored
    assert red_pixels(image, HEAD_COLORS[0]).sum() > 30
    assert red_pixels(image, HEAD_COLORS[1]).sum() > 30
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["input", "ST 1", "ST 2", "input", "ST 1", "ST 2"]


def test_tps_draws_control_points_and_grid():
    g = torch.Generator().manual_seed(1)
    theta = stnkit.transforms.get("tps").identity() * 0.8 + 0.05 * torch.randn(32, generator=g)
    st = fixed_st("tps", theta, (1, 28, 28))
    fig = plot_transformer(st, digit_like(1), dpi=60)
    lines = fig.axes[0].get_lines()
    # 14 grid lines, the outline, the top-left marker and the control points.
    assert len(lines) == 14 + 3
    control = lines[-1]
    assert len(control.get_xdata()) == 16


def test_no_transformer_is_a_clear_error():
    model = create_model("cnn", in_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ValueError, match="spatial transformer"):
        plot_transformer(model, digit_like(2))


def test_bad_inputs():
    with pytest.raises(ValueError, match="outputs\\[0\\]"):
        plot_panel(digit_like(3), [digit_like(2)])
    with pytest.raises(ValueError, match="regions"):
        plot_panel(digit_like(2), [digit_like(2)], [None, None])
    with pytest.raises(ValueError, match="images"):
        to_rgb(torch.zeros(2, 2))


def test_panel_argument_types():
    with pytest.raises(TypeError, match="inputs"):
        plot_panel(np.zeros((1, 1, 4, 4)), [digit_like(1)])
    with pytest.raises(ValueError, match="outputs\\[0\\]"):
        plot_panel(digit_like(1), [torch.zeros(1, 4, 4)])
