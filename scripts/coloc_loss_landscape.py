"""The co-localisation triplet loss (margin 1) at a few fixed windows, one class, 100 images: where the
loss is smallest tells whether the paper's loss can find the digits (docs/results.md, co-localisation).

    STNKIT_DATA_DIR=/work/shared/data/mnist python scripts/coloc_loss_landscape.py [CLASS]

Windows (28x28 crops of the 84x84 images): ``true`` (on each digit's box), ``centre``, ``corner``
(top-left, mostly empty), ``off`` (outside the image: all black; the bounded model cannot go there).
"""

from __future__ import annotations

import sys

import torch

from stnkit import warp
from stnkit.experiments.models import create_model
from stnkit.experiments.tasks import get_task
from stnkit.experiments.tasks.boxes import triplet_hinge_loss


def main(cls: int) -> None:
    torch.set_num_threads(1)
    for name in ("coloc", "coloc-tc"):
        task = get_task(name)(classes=[cls])
        model = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention")
        task.prepare_model(model)  # pretrains (or loads the cached) encoder
        data = task.train_data()
        x, boxes, n = data.images, data.boxes, len(data)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2 / 42 - 1  # (n, 2) normalised box centres
        windows = {"true": torch.cat([torch.full((n, 1), 1 / 3), centre], 1),
                   "centre": torch.tensor([[1 / 3, 0.0, 0.0]]).repeat(n, 1),
                   "corner": torch.tensor([[1 / 3, -2 / 3, -2 / 3]]).repeat(n, 1),
                   "off": torch.tensor([[1 / 3, 3.0, 3.0]]).repeat(n, 1)}
        with torch.no_grad():
            negatives = model.embed(warp(x, data.negatives(0), "attention", (28, 28)))
            losses = {k: float(triplet_hinge_loss(model.embed(warp(x, theta, "attention", (28, 28))), negatives,
                                                  data.labels).mean()) for k, theta in windows.items()}
        print(name, f"class {cls}:", ", ".join(f"{k} {v:.3f}" for k, v in losses.items()))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
