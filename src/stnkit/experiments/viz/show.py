"""``stnkit show``: a trained run's transformer on real images, as one panel PNG."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import Tensor, nn

from ..._validate import check_positive_int
from .panel import plot_panel, save_figure
from .paper_results import DISTORTION_LABELS, row_label
from .views import apply_transformers

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)


def plot_transformer(
    model: nn.Module,
    images: Tensor,
    *,
    title: str | None = None,
    ncols: int | None = None,
    outline: str = "edges",
    cell: float = 1.0,
    dpi: int = 100,
) -> Figure:
    """The panel of ``images`` through every spatial transformer of ``model``.

    Args:
        model: A model with ``spatial_transformers`` (see :mod:`stnkit.experiments.models`) or a
            :class:`stnkit.SpatialTransformer`.
        images: ``(n, C, H, W)`` in [0, 1], the model's input shape.
        title: Figure title.
        ncols, cell, dpi: See :func:`stnkit.experiments.viz.plot_panel`.
        outline: See :func:`stnkit.experiments.viz.sampling_region`.

    Returns:
        A matplotlib figure (Agg canvas).

    Raises:
        ValueError: when the model has no spatial transformer.
    """
    views = apply_transformers(model, images, outline=outline)
    if not views:
        raise ValueError(
            f"model: expected a model with a spatial transformer, got {type(model).__name__} "
            f"without one (fcn and cnn have nothing to show)"
        )
    return plot_panel(
        images,
        [v.output for v in views],
        [v.region for v in views],
        labels=[v.label for v in views],
        title=title,
        ncols=ncols,
        cell=cell,
        dpi=dpi,
    )


def run_title(config: Any) -> str:
    """A run's name in the paper's words, e.g. ``"ST-CNN Aff on MNIST RTS"``."""
    model = getattr(config, "model", "?")
    digits = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}.get(getattr(config, "digits", "mnist"), "digits")
    distortion = getattr(config, "task", "?")
    label = DISTORTION_LABELS.get(distortion, distortion)
    return f"{row_label(model, getattr(config, 'transform', None))} on {digits} {label}"


def pick(count: int, n: int, seed: int) -> Tensor:
    """``n`` distinct indices of ``range(count)`` (all if ``count <= n``), sorted, seeded."""
    if count <= n:
        return torch.arange(count)
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(count, generator=generator)[:n].sort().values


def sample_test_images(config: Any, n: int, seed: int = 0) -> Tensor:
    """``n`` images of what the run's task is scored on (the set ``stnkit eval`` uses), chosen with ``seed``.

    Returns:
        ``(n, C, H, W)`` float in [0, 1] (fewer when the set is smaller).
    """
    from ..train import make_task

    task = make_task(config)
    dataset = task.eval_data()
    wanted = pick(len(dataset), n, seed)
    if len(wanted) == 0:
        raise ValueError(f"run: the {task.scored_on} set of task {config.task!r} is empty; nothing to show")
    chosen: list[Tensor] = []
    start = 0
    for batch in dataset.batches(0, 1000):  # in order: the evaluation set is not shuffled
        x = task.images(batch)  # (b, C, H, W)
        local = wanted[(wanted >= start) & (wanted < start + x.shape[0])] - start
        chosen.append(x[local])
        start += x.shape[0]
        if start > int(wanted[-1]):
            break
    return torch.cat(chosen)  # (n, C, H, W)


def sample_boxed(task: Any, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` images of what ``task`` is scored on (chosen with ``seed``) and their true boxes, for
    tasks whose evaluation batches are ``(x, boxes, ...)``."""
    data = task.eval_data()
    wanted = pick(len(data), n, seed)
    images, boxes, start = [], [], 0
    for batch in data.batches(0, 1000):
        x, b = batch[0], batch[1]  # (m, C, H, W), (m, 4)
        local = wanted[(wanted >= start) & (wanted < start + x.shape[0])] - start
        images.append(x[local])
        boxes.append(b[local])
        start += x.shape[0]
        if len(wanted) == 0 or start > int(wanted[-1]):
            break
    return torch.cat(images), torch.cat(boxes)


def npz_images(path: str | Path, in_shape: tuple[int, ...], n: int, seed: int = 0) -> Tensor:
    """``n`` images of a user's ``.npz`` file, fitted to the model's input ``(C, H, W)``."""
    from ..data import fit_to_size, load_npz

    images, _ = load_npz(path)
    images = images[pick(images.shape[0], n, seed)]  # (n, C, h, w)
    if images.shape[0] == 0:
        raise ValueError(f"npz: expected at least one image in {str(path)!r}, got none")
    return fit_to_size(images, in_shape[1:], in_shape[0])  # (n, C, H, W)


def show_run(run: str | Path, out: str | Path, *, npz: str | Path | None = None, n: int = 16, seed: int = 0) -> Path:
    """Draws a trained run's transformer on ``n`` real images and writes the panel PNG.

    Args:
        run: A run directory or checkpoint (see :func:`stnkit.experiments.train.load_run`).
        out: Destination PNG (e.g. ``RUN_DIR/panel.png``).
        npz: Images of your own (see :func:`stnkit.experiments.data.load_npz`) instead of the run's test set;
            fitted to the model's input size.
        n: Number of images.
        seed: Which images: a seeded random choice.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Example:
        >>> show_run("runs/st-cnn-rts", "runs/st-cnn-rts/panel.png")   # doctest: +SKIP
    """
    from ..train import load_run

    check_positive_int("n", n)
    model, config = load_run(run)
    in_shape = tuple(getattr(model, "in_shape", ()))
    if len(in_shape) == 4:
        raise ValueError(
            f"run: stnkit show draws models of images (C, H, W); {str(run)!r} is a model of volumes "
            f"{in_shape} (mnist3d), which has no panel yet"
        )
    if npz is None and callable(getattr(model, "boxes", None)):  # localisation (co-localisation): boxes
        from ..train import make_task
        from .boxes import plot_boxes

        images, true = sample_boxed(make_task(config), n, seed)
        with torch.no_grad():
            predicted = cast(Any, model).boxes(images)
        fig = plot_boxes(images, predicted, true, title=f"{run_title(config)}: predicted (solid) and true (dashed) box")
        return save_figure(fig, out)
    if npz is not None:
        images, source = npz_images(npz, in_shape, n, seed), Path(npz).name
    else:
        images, source = sample_test_images(config, n, seed), "test set"
    title = f"{run_title(config)}, {source}"
    fig = plot_transformer(model, images, title=title)
    path = save_figure(fig, out)
    logger.debug("wrote %s", path)
    return path
