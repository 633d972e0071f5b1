"""The picture: inputs with the sampling region drawn on them, beside the transformer's outputs.

matplotlib is imported inside the functions (never at ``import stnkit.experiments.viz``), and only its
object-oriented API with the Agg canvas is used: no pyplot, no display, no global state.

Images are shown as follows: one channel in greyscale (0 black, 1 white); three channels as RGB;
any other number of channels (e.g. MNIST addition's two) as a colour composite in which channel
``c`` adds :data:`CHANNEL_COLORS` ``[c]`` (channel 0 green, channel 1 magenta, ...; where two
channels overlap the pixel turns white).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import Tensor

from ..._validate import check_tensor
from ._files import atomic_write
from .geometry import SamplingRegion

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: One outline colour per head (in order: every head of the first transformer, then the next one's).
HEAD_COLORS = ("#ff3b30", "#00c8ff", "#ffcc00", "#ff9500", "#af52de", "#34c759", "#ffffff", "#0a84ff")

#: RGB added by each channel of a multi-channel (non-RGB) image.
CHANNEL_COLORS = ((0.2, 1.0, 0.2), (1.0, 0.2, 1.0), (0.25, 0.6, 1.0), (1.0, 0.8, 0.1))


def to_rgb(images: Tensor | np.ndarray) -> np.ndarray:
    """Turns images into displayable RGB (see the module docstring for the channel rule).

    Args:
        images: ``(N, C, H, W)``, values in [0, 1] (clipped).

    Returns:
        ``(N, H, W, 3)`` float32 array in [0, 1].
    """
    x = images.detach().cpu().float().numpy() if isinstance(images, Tensor) else np.asarray(images, np.float32)
    if x.ndim != 4:
        raise ValueError(f"images: expected a 4-D array (N, C, H, W), got shape {tuple(x.shape)}")
    x = np.clip(x, 0.0, 1.0)
    c = x.shape[1]
    if c == 1:
        rgb = np.repeat(x, 3, axis=1)  # (N, 3, H, W)
    elif c == 3:
        rgb = x
    else:
        colors = np.array([CHANNEL_COLORS[i % len(CHANNEL_COLORS)] for i in range(c)], np.float32)  # (C, 3)
        rgb = np.clip(np.einsum("nchw,ck->nkhw", x, colors), 0.0, 1.0)  # (N, 3, H, W)
    return np.ascontiguousarray(rgb.transpose(0, 2, 3, 1), dtype=np.float32)  # (N, H, W, 3)


def plot_panel(
    inputs: Tensor,
    outputs: Sequence[Tensor],
    regions: Sequence[SamplingRegion | None] | None = None,
    *,
    labels: Sequence[str] | None = None,
    colors: Sequence[str] | None = None,
    ncols: int | None = None,
    title: str | None = None,
    cell: float = 1.0,
    dpi: int = 100,
    margin: float = 0.12,
) -> Figure:
    """A figure of samples, each as its input (regions drawn on it) followed by its outputs.

    Samples are laid out in a grid of ``ncols`` groups per row; a group is one input cell and one
    cell per output. Region ``h`` is drawn in ``colors[h]`` on the input and the output it
    belongs to gets a border of the same colour. Regions are in input pixel coordinates (pixel
    centres at integers, see :func:`stnkit.experiments.viz.sampling_region`); each cell shows a margin of
    ``margin`` times the image size around the image so that regions reaching past the border
    stay visible.

    Args:
        inputs: ``(n, C, H, W)`` in [0, 1].
        outputs: One ``(n, C', H', W')`` tensor per transformer head.
        regions: One :class:`SamplingRegion` (or ``None``) per output, batch ``n``.
        labels: Column titles of the outputs (default "output" or "head 1", "head 2", ...).
        colors: One matplotlib colour per output; default :data:`HEAD_COLORS`.
        ncols: Groups per row; default ``ceil(sqrt(n))``.
        title: Figure title.
        cell: Size of one image cell in inches.
        dpi: Resolution of the figure.
        margin: Border around each image, as a fraction of its size.

    Returns:
        A ``matplotlib.figure.Figure`` on an Agg canvas (save it with :func:`save_figure`).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_tensor("inputs", inputs, ndim=4, shape="(n, C, H, W)")
    for h, out in enumerate(outputs):
        check_tensor(f"outputs[{h}]", out, ndim=4, shape="(n, C', H', W')")
    n = inputs.shape[0]
    if n < 1:
        raise ValueError(f"inputs: expected at least one image, got shape {tuple(inputs.shape)}")
    heads = len(outputs)
    regions = list(regions) if regions is not None else [None] * heads
    if len(regions) != heads:
        raise ValueError(f"regions: expected one per output ({heads}), got {len(regions)}")
    for h, out in enumerate(outputs):
        if out.shape[0] != n:
            raise ValueError(f"outputs[{h}]: expected {n} images like inputs, got shape {tuple(out.shape)}")
    colors = list(colors) if colors is not None else [HEAD_COLORS[h % len(HEAD_COLORS)] for h in range(heads)]
    if labels is None:
        labels = ["output"] if heads == 1 else [f"head {h + 1}" for h in range(heads)]
    ncols = max(1, min(n, ncols or math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)

    gap, group_gap = 0.04 * cell, 0.22 * cell
    top = (0.32 if title else 0.0) + 0.22
    group_w = (1 + heads) * cell + heads * gap
    width = ncols * group_w + (ncols - 1) * group_gap + 0.2
    height = nrows * cell + (nrows - 1) * gap * 2 + top + 0.1
    fig = Figure(figsize=(width, height), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title, y=1 - 0.06 / height, va="top", fontsize=11)

    input_rgb = to_rgb(inputs)
    output_rgb = [to_rgb(o) for o in outputs]
    for i in range(n):
        row, col = divmod(i, ncols)
        x0 = 0.1 + col * (group_w + group_gap)
        y0 = height - top - (row + 1) * cell - row * gap * 2
        for j in range(1 + heads):
            ax = fig.add_axes(((x0 + j * (cell + gap)) / width, y0 / height, cell / width, cell / height))
            image = input_rgb[i] if j == 0 else output_rgb[j - 1][i]
            _show_image(ax, image, margin)
            if j == 0:
                for region, color in zip(regions, colors, strict=False):
                    if region is not None:
                        _draw_region(ax, region.select(slice(i, i + 1)), color)
            elif heads > 1 or regions[j - 1] is not None:
                for spine in ax.spines.values():
                    spine.set(visible=True, color=colors[j - 1], linewidth=1.5)
            if row == 0:
                text = "input" if j == 0 else labels[j - 1]
                ax.set_title(text, fontsize=8, pad=2, color="black" if j == 0 else _title_color(colors[j - 1]))
    return fig


def _title_color(color: str) -> str:
    return "#555555" if color.lower() in ("#ffffff", "white", "#ffcc00") else color


def _show_image(ax: Axes, image: np.ndarray, margin: float) -> None:
    h, w = image.shape[:2]
    ax.imshow(image, interpolation="nearest", extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    ax.set_xlim(-0.5 - margin * w, w - 0.5 + margin * w)
    ax.set_ylim(h - 0.5 + margin * h, -0.5 - margin * h)  # y down, like the image rows
    ax.set_facecolor("#c8c8c8")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _draw_region(ax: Axes, region: SamplingRegion, color: str) -> None:
    """Draws one sample's region (batch of one) on ``ax``, in pixel coordinates."""
    if region.grid is not None:
        for line in region.grid[0].cpu().numpy():  # (M, 2)
            ax.plot(line[:, 0], line[:, 1], color=color, linewidth=0.5, alpha=0.7)
    ring = region.outline[0].cpu().numpy()  # (4 S, 2)
    ring = np.concatenate([ring, ring[:1]], 0)  # closed
    ax.plot(ring[:, 0], ring[:, 1], color=color, linewidth=1.4)
    tl = region.corners[0, 0].cpu().numpy()
    ax.plot([tl[0]], [tl[1]], marker="o", markersize=2.5, color=color)  # the output's top-left corner
    if region.control_points is not None:
        pts = region.control_points[0].cpu().numpy()
        ax.plot(pts[:, 0], pts[:, 1], linestyle="none", marker="o", markersize=2.0, color=color)


def figure_to_array(fig: Figure) -> np.ndarray:
    """Renders a figure to an ``(H, W, 3)`` uint8 RGB array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig: Figure, path: str | Path, *, dpi: int | None = None) -> Path:
    """Writes a figure as PNG, atomically (temporary file in the same folder, then rename).

    Args:
        fig: The figure.
        path: Where to write; parent folders are created.
        dpi: Resolution; default the figure's own.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi or fig.dpi, facecolor=fig.get_facecolor())
    return atomic_write(path, buffer.getvalue())
