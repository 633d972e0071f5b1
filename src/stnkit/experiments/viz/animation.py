"""The training animation: a fixed batch through the transformer(s) after every epoch, as a GIF.

:class:`TrainingAnimation` is a trainer callback (see ``docs/design.md``). After each epoch it
renders one frame (:func:`render_frame`) and writes, into the run directory, atomically:

* ``animation_frames/epoch_NNNNN.gif``: that epoch's frame as a one-frame GIF (the persistent
  record; a resumed run replaces the frame of an epoch it repeats and drops frames of later
  epochs, so no epoch appears twice);
* ``animation.gif``: every frame so far, one per epoch, in epoch order;
* ``last_epoch.png``: the latest frame, in full colour.

An interrupted run therefore always has an up-to-date GIF and PNG. Each frame is encoded once;
the GIF is reassembled from the stored frames' bytes (see :mod:`stnkit.experiments.viz._gif`), so a run of
hundreds of epochs does not re-encode hundreds of frames every epoch. Frames are shown for
``12 s / epochs`` each (between 60 and 300 ms), the last one for 1.5 s.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from ..._validate import check_tensor
from ._files import atomic_write
from ._gif import GifFrame, assemble, encode_frame, parse_frame
from .panel import figure_to_array, plot_panel
from .views import HeadView, apply_transformers, spatial_transformers

logger = logging.getLogger(__name__)

GIF_NAME = "animation.gif"
LAST_FRAME_NAME = "last_epoch.png"
FRAMES_DIR = "animation_frames"
_FRAME_FILE = re.compile(r"^epoch_(\d+)\.gif$")


def render_frame(
    images: Tensor,
    views: Sequence[HeadView],
    *,
    title: str | None = None,
    ncols: int | None = None,
    cell: float = 0.8,
    dpi: int = 80,
) -> np.ndarray:
    """One animation frame: the panel of ``images`` and the heads' outputs and regions.

    Args:
        images: ``(n, C, H, W)`` inputs.
        views: From :func:`stnkit.experiments.viz.apply_transformers` on ``images``.
        title: Caption, e.g. the epoch.
        ncols, cell, dpi: See :func:`stnkit.experiments.viz.plot_panel`.

    Returns:
        ``(H_img, W_img, 3)`` uint8 RGB.
    """
    fig = plot_panel(
        images,
        [v.output for v in views],
        [v.region for v in views],
        labels=[v.label for v in views],
        ncols=ncols,
        title=title,
        cell=cell,
        dpi=dpi,
    )
    return figure_to_array(fig)


def encode_png(frame: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 frame (Pillow)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def frame_durations(count: int, duration_ms: int | None = None, last_ms: int = 1500) -> list[int]:
    """Display time of each of ``count`` frames: ``duration_ms`` (default ``12 s / count`` within
    60-300 ms) and ``last_ms`` for the last one."""
    each = duration_ms if duration_ms is not None else max(60, min(300, 12000 // max(count, 1)))
    return [each] * (count - 1) + [max(each, last_ms)]


def save_gif(
    frames: Sequence[np.ndarray | Any],
    path: str | Path,
    *,
    duration_ms: int | None = None,
    last_ms: int = 1500,
    loop: int = 0,
) -> Path:
    """Writes frames as an animated GIF, atomically; every frame stays a frame (none are merged).

    Args:
        frames: ``(H, W, 3)`` uint8 RGB arrays or PIL images, all of one size; at least one.
        path: Destination ``.gif``.
        duration_ms: Display time of each frame; default ``12 s / len(frames)`` within 60-300 ms.
        last_ms: Display time of the last frame (a pause before the loop restarts).
        loop: Number of loops; 0 loops forever.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if len(frames) == 0:
        raise ValueError("frames: expected at least one frame, got none")
    arrays = [np.asarray(f.convert("RGB") if hasattr(f, "convert") else f, dtype=np.uint8) for f in frames]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim != 3 or arrays[0].shape[2] != 3:
        raise ValueError(f"frames: expected (H, W, 3) RGB frames of one size, got shapes {sorted(shapes)}")
    parsed = [parse_frame(encode_frame(a)) for a in arrays]
    return atomic_write(path, assemble(parsed, frame_durations(len(parsed), duration_ms, last_ms), loop))


def frame_files(run_dir: str | Path) -> dict[int, Path]:
    """The saved frames of a run directory, ``{epoch: path}`` in epoch order."""
    folder = Path(run_dir) / FRAMES_DIR
    found: dict[int, Path] = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = _FRAME_FILE.match(p.name)
            if m:
                found[int(m.group(1))] = p
    return dict(sorted(found.items()))


class TrainingAnimation:
    """Trainer callback: the fixed batch ``images`` through the transformer(s) after every epoch.

    Writes ``animation.gif`` (one frame per epoch), ``last_epoch.png`` and the per-epoch frames
    into the run directory at every epoch end; see the module docstring. Models without a
    spatial transformer are skipped (with a log message).

    Args:
        images: ``(n, C, H, W)`` in [0, 1], the model's input shape; e.g. 16 test images.
        ncols: Samples per row of a frame; default ``ceil(sqrt(n))``.
        cell: Size of one image in a frame, inches (at ``dpi``).
        dpi: Frame resolution.
        duration_ms: GIF time per frame; default ``12 s / epochs`` within 60-300 ms.

    Example:
        >>> anim = TrainingAnimation(test_images[:16])            # doctest: +SKIP
        >>> train(config, callbacks=[anim])                       # doctest: +SKIP
    """

    def __init__(
        self,
        images: Tensor,
        *,
        ncols: int | None = None,
        cell: float = 0.8,
        dpi: int = 80,
        duration_ms: int | None = None,
    ) -> None:
        check_tensor("images", images, ndim=4, shape="(n, C, H, W)", floating=True)
        if images.shape[0] < 1:
            raise ValueError(f"images: expected at least one image, got shape {tuple(images.shape)}")
        self.images = images.detach().cpu().clone()
        self.ncols, self.cell, self.dpi, self.duration_ms = ncols, cell, dpi, duration_ms
        self._frames: dict[int, GifFrame] = {}
        self._enabled = True

    def on_train_start(self, model: nn.Module, run_dir: Path) -> None:
        """Reads the frames a previous (interrupted) run left, to continue its animation."""
        in_shape = getattr(model, "in_shape", None)
        if in_shape is not None and tuple(in_shape) != tuple(self.images.shape[1:]):
            raise ValueError(
                f"images: expected the model's input shape (n, {', '.join(map(str, in_shape))}), "
                f"got {tuple(self.images.shape)}"
            )
        self._frames = {}
        for epoch, path in frame_files(run_dir).items():
            try:
                self._frames[epoch] = parse_frame(path.read_bytes())
            except (OSError, ValueError, IndexError) as err:
                logger.warning("training animation: ignoring unreadable frame %s (%s)", path, err)
        if self._frames:
            logger.info("training animation: continuing from %d saved frames in %s", len(self._frames), run_dir)

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict, run_dir: Path) -> None:
        """Renders this epoch's frame and rewrites the GIF and the last-frame PNG."""
        if not self._enabled:
            return
        if not spatial_transformers(model) or any(st.transform.ndim != 2 for st in spatial_transformers(model)):
            logger.info("training animation: the model has no 2-D spatial transformer; no animation is written")
            self._enabled = False
            return
        views = apply_transformers(model, self.images)
        try:
            self._write(views, epoch, metrics, Path(run_dir))
        except OSError as err:  # e.g. a full disk: the run matters more than its animation
            logger.warning(
                "training animation: could not write epoch %d's frame (%s); continuing without it", epoch, err
            )

    def _write(self, views: list[HeadView], epoch: int, metrics: dict, run_dir: Path) -> None:
        frame = render_frame(
            self.images, views, title=_caption(epoch, metrics), ncols=self.ncols, cell=self.cell, dpi=self.dpi
        )
        folder = run_dir / FRAMES_DIR
        for later in [e for e in self._frames if e >= epoch]:  # a resumed run redoes these epochs
            self._frames.pop(later)
            (folder / _frame_name(later)).unlink(missing_ok=True)
        encoded = encode_frame(frame)
        atomic_write(folder / _frame_name(epoch), encoded)
        self._frames[epoch] = parse_frame(encoded)
        atomic_write(run_dir / LAST_FRAME_NAME, encode_png(frame))
        self._write_gif(run_dir)

    def on_train_end(self, model: nn.Module, run_dir: Path) -> None:
        """Nothing left to do: every epoch already wrote its files."""

    def _write_gif(self, run_dir: Path) -> None:
        last = self._frames[max(self._frames)]
        for epoch in [e for e, f in self._frames.items() if (f.width, f.height) != (last.width, last.height)]:
            # From a run with another batch or layout: cannot share the GIF.
            logger.warning("training animation: dropping the frame of epoch %d (another size)", epoch)
            self._frames.pop(epoch)
            (run_dir / FRAMES_DIR / _frame_name(epoch)).unlink(missing_ok=True)
        frames = [self._frames[e] for e in sorted(self._frames)]
        data = assemble(frames, frame_durations(len(frames), self.duration_ms))
        atomic_write(run_dir / GIF_NAME, data)


def _frame_name(epoch: int) -> str:
    return f"epoch_{epoch:05d}.gif"


def _caption(epoch: int, metrics: dict) -> str:
    text = f"epoch {epoch}"
    error = metrics.get("test_error") if isinstance(metrics, dict) else None
    if isinstance(error, (int, float)):
        text += f"   test error {error:.2f}%"
    return text
