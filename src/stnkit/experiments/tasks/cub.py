"""CUB-200-2011 bird classification (the paper's Table 3), read by :mod:`stnkit.experiments.data.cub`.

The data cannot be downloaded on this project's machines; ``stnkit train --task cub --data-dir
DIR [--download]`` runs it where it can. Options (``task_options``): ``size`` (crop side, 224 or
448), ``resize`` (shorter side before cropping, default ``size * 8 // 7``), ``workers``
(``DataLoader`` processes decoding the JPEGs, default 4).

Models: the paper's parallel attention transformers ``2xattn-cnn`` / ``4xattn-cnn`` over an
ImageNet-pretrained backbone, ``down-cnn`` (the single-network baseline) and the plain ``cnn``;
Table 3's configs are ``configs/table3_*px.json`` (ResNet-50 from torchvision in place of the
paper's Inception-BN, which those libraries do not ship).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..data.cub import NUM_CLASSES, CubData, CubImages, find_cub
from .base import Metric, register_task
from .digits import ClassificationTask

#: Table 3 (accuracy %, the paper's Inception-BN models).
TABLE3 = {"CNN 224px": 82.3, "2xST-CNN 224px": 83.1, "2xST-CNN 448px": 83.9, "4xST-CNN 448px": 84.1}


@register_task
class Cub(ClassificationTask):  # batch[2], the boxes, is for scoring localisation only
    """CUB-200-2011: 200 species, 5,994 training / 5,794 test images, scored by accuracy."""

    name = "cub"
    title = "CUB-200-2011 birds (Table 3), 200 species"
    metrics: ClassVar[tuple[Metric, ...]] = (Metric("accuracy", lower_is_better=False), Metric("error"))
    models: ClassVar[tuple[str, ...]] = ("cnn", "down-cnn", "2xattn-cnn", "4xattn-cnn")
    options: ClassVar[tuple[str, ...]] = ("size", "resize", "workers")
    recipe: ClassVar[dict[str, Any]] = {
        "model": "cnn",
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 1e-5,
        "batch_size": 64,
        "epochs": 30,
        "schedule": "cosine",
        "eval_batch_size": 64,
    }
    pictures: ClassVar[str] = "test birds, each head's crop box on the input (attention models) and the true box"
    paper: ClassVar[dict[tuple[str, str | None], float]] = {}  # Table 3 is by crop size, not by (model, family):
    # its numbers are in ``paper_source`` (and the docs beside the configs)
    paper_source = "Table 3 (accuracy %): " + ", ".join(f"{k} {v}" for k, v in TABLE3.items())

    def __init__(self, *, size: int = 224, resize: int | None = None, workers: int = 4, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size, self.resize, self.workers = size, resize, workers
        self._data: dict[str, CubData] = {}

    @property
    def in_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    @property
    def num_outputs(self) -> int:
        return NUM_CLASSES

    def _split(self, split: str, limit: int | None) -> CubData:
        if split not in self._data:
            folder = find_cub(self.data_dir, self.download)
            images = CubImages(folder, split, self.size, self.resize, seed=self.seed, limit=limit)
            self._data[split] = CubData(images, self.workers)
        return self._data[split]

    def train_data(self) -> CubData:
        """Training images, random crop + flip from ``(seed, epoch, index)``."""
        return self._split("train", self.limit)

    def eval_data(self) -> CubData:
        """Test images, centre crop."""
        return self._split("test", self.test_limit or self.limit)

    def data_info(self) -> dict[str, Any]:
        return {"data_source": str(self.train_data().images.folder)}

    def train_metrics(self, sums: dict[str, float], count: float) -> dict[str, float]:
        accuracy = 100 * sums.get("correct", 0.0) / max(count, 1)
        return {"accuracy": accuracy, "error": 100 - accuracy}

    @classmethod
    def paper_value(cls, model: str, transform: str | None, digits: str = "mnist") -> float | None:
        return cls.paper.get((model, transform))
