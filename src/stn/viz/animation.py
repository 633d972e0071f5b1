"""The training animation: a fixed batch through the transformer(s) after every epoch, as a GIF.

:class:`TrainingAnimation` is a trainer callback (see ``docs/design.md``). After each epoch it
renders one frame (:func:`render_frame`) and writes, into the run directory, atomically:

* ``animation_frames/epoch_NNNNN.png``: that epoch's frame (the persistent record; a resumed run
  replaces the frame of an epoch it repeats and drops frames of later epochs, so no epoch appears
  twice);
* ``animation.gif``: every frame so far, one per epoch, in epoch order (:func:`save_gif`);
* ``last_epoch.png``: the latest frame.

An interrupted run therefore always has an up-to-date GIF and PNG.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from torch import Tensor, nn

from .._validate import check_tensor
from ._files import atomic_write
from .panel import figure_to_array, plot_panel
from .views import HeadView, apply_transformers

logger = logging.getLogger(__name__)

GIF_NAME = "animation.gif"
LAST_FRAME_NAME = "last_epoch.png"
FRAMES_DIR = "animation_frames"
_FRAME_FILE = re.compile(r"^epoch_(\d+)\.png$")


def render_frame(images: Tensor, views: Sequence[HeadView], *, title: str | None = None,
                 ncols: int | None = None, cell: float = 0.8, dpi: int = 80) -> np.ndarray:
    """One animation frame: the panel of ``images`` and the heads' outputs and regions.

    Args:
        images: ``(n, C, H, W)`` inputs.
        views: From :func:`stn.viz.apply_transformers` on ``images``.
        title: Caption, e.g. the epoch.
        ncols, cell, dpi: See :func:`stn.viz.plot_panel`.

    Returns:
        ``(H_img, W_img, 3)`` uint8 RGB.
    """
    fig = plot_panel(images, [v.output for v in views], [v.region for v in views],
                     labels=[v.label for v in views], ncols=ncols, title=title, cell=cell, dpi=dpi)
    return figure_to_array(fig)


def encode_png(frame: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 frame (Pillow)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_gif(frames: Sequence[np.ndarray | Any], path: str | Path, *, duration_ms: int = 300,
             last_ms: int = 1500, loop: int = 0) -> Path:
    """Writes frames as an animated GIF (Pillow), atomically.

    Pillow merges consecutive identical frames into one; give frames a caption (such as the
    epoch) when every frame must stay a frame of its own.

    Args:
        frames: ``(H, W, 3)`` uint8 arrays or PIL images, all of one size; at least one.
        path: Destination ``.gif``.
        duration_ms: Display time of each frame.
        last_ms: Display time of the last frame (a pause before the loop restarts).
        loop: Number of loops; 0 loops forever.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from PIL import Image

    if len(frames) == 0:
        raise ValueError("frames: expected at least one frame, got none")
    images = [f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    images = [im.convert("RGB") for im in images]
    sizes = {im.size for im in images}
    if len(sizes) != 1:
        raise ValueError(f"frames: expected frames of one size, got sizes (W, H) {sorted(sizes)}")
    durations = [duration_ms] * (len(images) - 1) + [max(duration_ms, last_ms)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=durations,
                   loop=loop, disposal=1)
    return atomic_write(path, buffer.getvalue())


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
        duration_ms: GIF time per frame.

    Example:
        >>> anim = TrainingAnimation(test_images[:16])            # doctest: +SKIP
        >>> train(config, callbacks=[anim])                       # doctest: +SKIP
    """

    def __init__(self, images: Tensor, *, ncols: int | None = None, cell: float = 0.8, dpi: int = 80,
                 duration_ms: int = 300) -> None:
        check_tensor("images", images, ndim=4, shape="(n, C, H, W)", floating=True)
        if images.shape[0] < 1:
            raise ValueError(f"images: expected at least one image, got shape {tuple(images.shape)}")
        self.images = images.detach().cpu().clone()
        self.ncols, self.cell, self.dpi, self.duration_ms = ncols, cell, dpi, duration_ms
        self._frames: dict[int, Path] = {}
        self._enabled = True

    def on_train_start(self, model: nn.Module, run_dir: Path) -> None:
        """Finds the frames a previous (interrupted) run left, to continue its animation."""
        in_shape = getattr(model, "in_shape", None)
        if in_shape is not None and tuple(in_shape) != tuple(self.images.shape[1:]):
            raise ValueError(f"images: expected the model's input shape (n, {', '.join(map(str, in_shape))}), "
                             f"got {tuple(self.images.shape)}")
        self._frames = frame_files(run_dir)
        if self._frames:
            logger.info("training animation: continuing from %d saved frames in %s", len(self._frames), run_dir)

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict, run_dir: Path) -> None:
        """Renders this epoch's frame and rewrites the GIF and the last-frame PNG."""
        if not self._enabled:
            return
        views = apply_transformers(model, self.images)
        if not views:
            logger.info("training animation: the model has no spatial transformer; no animation is written")
            self._enabled = False
            return
        run_dir = Path(run_dir)
        frame = render_frame(self.images, views, title=_caption(epoch, metrics), ncols=self.ncols,
                             cell=self.cell, dpi=self.dpi)
        png = encode_png(frame)
        for later in [e for e in self._frames if e >= epoch]:  # a resumed run redoes these epochs
            self._frames.pop(later).unlink(missing_ok=True)
        self._frames[epoch] = atomic_write(run_dir / FRAMES_DIR / f"epoch_{epoch:05d}.png", png)
        atomic_write(run_dir / LAST_FRAME_NAME, png)
        self._write_gif(run_dir, frame)

    def on_train_end(self, model: nn.Module, run_dir: Path) -> None:
        """Nothing left to do: every epoch already wrote its files."""

    def _write_gif(self, run_dir: Path, last: np.ndarray) -> None:
        from PIL import Image

        size = (last.shape[1], last.shape[0])  # (W, H)
        frames: list[Any] = []
        for epoch, path in list(self._frames.items()):
            with Image.open(path) as im:
                if im.size != size:  # from a run with another batch or layout: cannot share a GIF
                    logger.warning("training animation: dropping the frame of epoch %d (size %s, now %s)",
                                   epoch, im.size, size)
                    self._frames.pop(epoch)
                    path.unlink(missing_ok=True)
                    continue
                frames.append(im.convert("RGB"))
        save_gif(frames, run_dir / GIF_NAME, duration_ms=self.duration_ms)


def _caption(epoch: int, metrics: dict) -> str:
    text = f"epoch {epoch}"
    error = metrics.get("test_error") if isinstance(metrics, dict) else None
    if isinstance(error, (int, float)):
        text += f"   test error {error:.2f}%"
    return text
