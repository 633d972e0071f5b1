"""``mnist3d``: classify an MNIST digit extruded into a volume at a random 3-D pose (paper, appendix).

Each sample is a ``(1, size, size, size)`` volume (:mod:`stnkit.experiments.data.volumes`: the digit
as a slab of ``size / 6`` voxels, rotated up to 45 degrees about a random axis, scaled by 0.8-1.2 and
shifted by up to a quarter of the volume per axis); the label is the digit. The models
(:mod:`stnkit.experiments.models.volumes`) flatten the volume along depth into an image for the
paper's 2-D CNN, ``st3d-cnn`` after a 3-D affine spatial transformer, ``flat-cnn`` without. Trained
with cross-entropy and scored by the classification error (%) on fixed test volumes.

The paper shows this experiment in a figure only (no number), so :attr:`Task.paper` is empty and
:attr:`Mnist3d.compared` names the cells that ``stnkit grid 3d`` trains.

Options (``task_options``): ``size``, the volume's side (default 60, the paper's; at least 8). A 60^3
volume costs 4.9 ms to generate and ``st3d-cnn`` 24.5 ms per training sample on one CPU thread
(docs/results.md, "3-D (mnist3d)"); ``{"size": 32}`` costs 0.6 ms and 4.1 ms.

Example:
    >>> from stnkit.experiments.tasks import get_task
    >>> task = get_task("mnist3d")(size=32)
    >>> task.in_shape, task.num_outputs, task.accepts("st3d-cnn"), task.accepts("cnn")
    ((1, 32, 32, 32), 10, True, False)
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..data import load_digits
from ..data.volumes import MIN_SIZE, DigitVolumes, slab_thickness
from .base import register_task
from .digits import ClassificationTask

#: The paper's volume side.
SIZE = 60


@register_task
class Mnist3d(ClassificationTask):
    """Digits at random 3-D poses in volumes, flattened along depth by the models (see the module docs)."""

    name = "mnist3d"
    title = "3-D: an MNIST digit extruded into a volume at a random 3-D pose"
    models: ClassVar[tuple[str, ...]] = ("flat-cnn", "st3d-cnn")
    options: ClassVar[tuple[str, ...]] = ("size",)
    recipe: ClassVar[dict[str, Any]] = {"model": "st3d-cnn", "transform": "affine3d"}
    pictures: ClassVar[str] = "none yet (stnkit show and the training animation draw 2-D transformers only)"
    paper_source = "appendix (a figure, no number)"
    compared: ClassVar[tuple[tuple[str, str | None], ...]] = (("flat-cnn", None), ("st3d-cnn", "affine3d"))

    def __init__(self, *, size: int = SIZE, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
            raise ValueError(f"task_options.size: expected an int >= {MIN_SIZE} (the volume's side), got {size!r}")
        self.size = size
        self._train: DigitVolumes | None = None
        self._test: DigitVolumes | None = None

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (1, self.size, self.size, self.size)

    @property
    def num_outputs(self) -> int:
        return 10

    def train_data(self) -> DigitVolumes:
        """Fresh order and poses every epoch, drawn from ``(seed, epoch)``."""
        if self._train is None:
            digits = load_digits(self.digits, "train", data_dir=self.data_dir, download=self.download)
            self._train = DigitVolumes(digits, size=self.size, train=True, seed=self.seed, limit=self.limit)
        return self._train

    def eval_data(self) -> DigitVolumes:
        """The fixed test volumes (poses drawn once from a constant seed)."""
        if self._test is None:
            digits = load_digits(self.digits, "test", data_dir=self.data_dir, download=self.download)
            limit = self.test_limit if self.test_limit is not None else self.limit
            self._test = DigitVolumes(digits, size=self.size, train=False, limit=limit)
        return self._test

    def data_info(self) -> dict[str, Any]:
        return {"data_source": self.train_data().source, "size": self.size, "slab": slab_thickness(self.size)}
