"""Pictures of localisation: each image with the model's predicted box and the true box
(co-localisation: ``stnkit show`` on a ``coloc`` / ``coloc-tc`` run)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import Tensor

from ..._validate import check_tensor
from .panel import to_rgb

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: Colours of the predicted and the true box.
PREDICTED, TRUE = "#e4572e", "#17bebb"


def plot_boxes(
    images: Tensor,
    predicted: Tensor,
    true: Tensor | None = None,
    *,
    title: str | None = None,
    ncols: int = 8,
    cell: float = 1.3,
    dpi: int = 100,
) -> Figure:
    """A grid of ``images`` with the predicted box (orange) and the true box (teal, dashed).

    Args:
        images: ``(n, C, H, W)`` in [0, 1].
        predicted: ``(n, 4)`` boxes ``(x0, y0, x1, y1)`` in pixels (pixel ``i`` covers ``[i, i + 1]``).
        true: ``(n, 4)`` true boxes, or ``None``.
        title, ncols, cell, dpi: Figure title, columns, inches per image, resolution.

    Returns:
        A matplotlib figure on an Agg canvas (save it with :func:`~.panel.save_figure`).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    check_tensor("images", images, ndim=4, shape="(n, C, H, W)", floating=True)
    n = images.shape[0]
    for name, boxes in (("predicted", predicted), ("true", true)):
        if boxes is not None and tuple(boxes.shape) != (n, 4):
            raise ValueError(f"{name}: expected boxes of shape ({n}, 4), got {tuple(boxes.shape)}")
    cols = max(1, min(ncols, n))
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(cols * cell, rows * cell + (0.4 if title else 0)), dpi=dpi)
    FigureCanvasAgg(fig)
    rgb = to_rgb(images)  # (n, H, W, 3)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(rgb[i], extent=(0, images.shape[3], images.shape[2], 0), interpolation="nearest")
        for boxes, colour, style in ((true, TRUE, "--"), (predicted, PREDICTED, "-")):
            if boxes is not None:
                x0, y0, x1, y1 = (float(v) for v in boxes[i])
                ax.add_patch(
                    Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linestyle=style, linewidth=1.5)
                )
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
