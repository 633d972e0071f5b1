"""Pictures of what a spatial transformer learned: panels, training animation, result report.

matplotlib and Pillow are imported only inside the functions that draw (never when
``stnkit.experiments.viz`` is imported); drawing uses the Agg canvas, so no display is needed.

* :func:`sampling_region`: where a transformer reads, in input pixel coordinates (pure torch).
* :func:`apply_transformers`: a model's transformers on a batch: outputs, theta and regions.
* :func:`plot_panel` / :func:`plot_transformer`: the figure; :func:`save_figure` writes it.
* :class:`TrainingAnimation`: trainer callback writing ``animation.gif`` and ``last_epoch.png``.
* :func:`show_run`: ``stnkit show``; :func:`write_report`: ``stnkit report``.

Example:
    >>> import torch, stnkit, stnkit.experiments.viz
    >>> st = stnkit.SpatialTransformer(stnkit.fc_localisation((1, 28, 28)), "affine")
    >>> fig = stnkit.experiments.viz.plot_transformer(st, torch.rand(4, 1, 28, 28))
    >>> path = stnkit.experiments.viz.save_figure(fig, "panel.png")                   # doctest: +SKIP
"""

from __future__ import annotations

from .animation import TrainingAnimation, render_frame, save_gif
from .geometry import SamplingRegion, frame_outline, sampling_region
from .panel import CHANNEL_COLORS, HEAD_COLORS, figure_to_array, plot_panel, save_figure, to_rgb
from .paper_results import paper_error
from .report import load_result, plot_learning_curves, write_report
from .show import plot_transformer, show_run
from .views import HeadView, apply_transformers

__all__ = [
    "CHANNEL_COLORS",
    "HEAD_COLORS",
    "HeadView",
    "SamplingRegion",
    "TrainingAnimation",
    "apply_transformers",
    "figure_to_array",
    "frame_outline",
    "load_result",
    "paper_error",
    "plot_learning_curves",
    "plot_panel",
    "plot_transformer",
    "render_frame",
    "sampling_region",
    "save_figure",
    "save_gif",
    "show_run",
    "to_rgb",
    "write_report",
]
