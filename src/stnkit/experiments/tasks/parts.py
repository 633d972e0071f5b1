"""The parallel-attention experiment: the paper's CUB-200 (Table 3) offline stand-in and its controls.

``parts``: two digits on a 96x96 cluttered canvas; label = the left digit, plus 10 when the right
one is 5 or more (20 classes; see :mod:`stnkit.experiments.data.glyph_pairs`). It asks the paper's question:
does attention at high resolution (``2xattn-cnn`` / ``4xattn-cnn``: crops sampled from the full-resolution canvas) beat
seeing the whole image at low resolution (``down-cnn``: the canvas area-downsampled to the crops'
size) at a similar cost? Controls: ``down-cnn`` at the canvas's own size (full resolution),
``2xattn-cnn`` with ``freeze_boxes`` (two branches, no attention) and with ``read="downsampled"``.

The default recipe (Adam 1e-3, batch 64, 4 epochs of 10,000 canvases, the localisation net at the
full learning rate) and model options (the built-in ResNet of width 8 as every sub-network; crops of
32x32 at a fixed scale of 0.5, i.e. each crop reads a 48x48 box at 1.5x reduction, while
``down-cnn`` sees the canvas at 3x reduction; the localisation net reads the 32x32 canvas and its
features are batch-normalised, the model's default ``loc_norm``) are chosen to run on a CPU; with
them the left head moves to its digit (docs/results.md, parallel attention). :data:`TABLE3` holds
the paper's CUB-200-2011 accuracies, for the CUB configs (``configs/table3_*.json``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Metric, Task, register_task
from .digits import DigitTask

#: The paper's Table 3 (CUB-200-2011 accuracy, %), by its model names.
TABLE3 = {
    "Cimpoi '15": 66.7,
    "Zhang '14": 74.9,
    "Branson '14": 75.7,
    "Lin '15": 80.9,
    "Simon '15": 81.0,
    "CNN (ours) 224px": 82.3,
    "2xST-CNN 224px": 83.1,
    "2xST-CNN 448px": 83.9,
    "4xST-CNN 448px": 84.1,
}


@register_task
class Parts(Task):
    """Two glyphs at random, well-separated positions on a 96x96 cluttered canvas; class from both."""

    name = "parts"
    title = "parts: two digits on a 96x96 cluttered canvas, label = left digit + 10 if right >= 5"
    metrics: ClassVar[tuple[Metric, ...]] = (Metric("error", lower_is_better=True),)
    models: ClassVar[tuple[str, ...]] = ("2xattn-cnn", "4xattn-cnn", "down-cnn")
    recipe: ClassVar[dict[str, Any]] = {
        "optimizer": "adam",
        "lr": 1e-3,
        "batch_size": 64,
        "epochs": 4,
        "limit": 10000,
        "test_limit": 2000,
        "schedule": "cosine",
        "model": "2xattn-cnn",
        "loc_lr_mult": 1.0,
        "model_options": {"crop_size": [32, 32], "backbone_options": {"width": 8}},
    }
    pictures: ClassVar[str] = "test canvases with each head's box in its own colour, and the crops beside them"
    paper: ClassVar[dict[tuple[str, str | None], float]] = {}
    paper_source = "Table 3 (CUB-200-2011, accuracy %) for the configs/table3_*.json runs"
    canvas: ClassVar[int] = 96

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._train: Any = None
        self._eval: Any = None

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (1, self.canvas, self.canvas)

    @property
    def num_outputs(self) -> int:
        return 20

    def _split(self, split: str, limit: int | None) -> Any:
        from ..data.glyph_pairs import GlyphPairs

        return GlyphPairs(
            split,
            self.digits,
            data_dir=self.data_dir,
            download=self.download,
            seed=self.seed,
            limit=limit,
            canvas=self.canvas,
        )

    # Cached splits (through _split), classification by cross-entropy, scored by the error: exactly
    # the digit tasks' data caching, step and metrics.
    train_data = DigitTask.train_data
    eval_data = DigitTask.eval_data
    data_info = DigitTask.data_info
    step = DigitTask.step
    train_metrics = DigitTask.train_metrics
    evaluate = DigitTask.evaluate
