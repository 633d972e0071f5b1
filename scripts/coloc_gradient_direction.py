"""Does the co-localisation loss pull a window towards its digit? (docs/results.md, co-localisation)

    STNKIT_DATA_DIR=/work/shared/data/mnist python scripts/coloc_gradient_direction.py [TASK] [CLASS ...] [OPTIONS]

OPTIONS: the task's options as JSON, e.g. '{"encoder_clutter": true, "encoder_shift": 4}'.
The encoder is the one `stnkit train` cached for these options (seed 0) when there is one; otherwise
it is pretrained here from this script's own (seeded, but different) initialisation and cached, and
the `stnkit train` runs that follow will use it too: run them first for their encoder.

For centred windows of scale 1/3 (crop-sized), 0.5, 0.7 and 0.9 on the task's 100 images of a class:
the paper's triplet loss (random 28x28 negatives of each image, seed 0) and the mean cosine between
minus its gradient with respect to each window's centre and the direction from the centre to the digit
(+1: every window is pulled straight to its digit, -1: straight away from it), for the model's
embedding (all layers), the encoder's logits alone and its softmax alone (each L2-normalised but the
softmax).
"""

from __future__ import annotations

import json
import sys

import torch
import torch.nn.functional as F

from stnkit import warp
from stnkit.experiments.data.coloc import random_crops
from stnkit.experiments.models import create_model
from stnkit.experiments.tasks import get_task
from stnkit.experiments.tasks.boxes import triplet_hinge_loss


def main(task_name: str, classes: list[int], options: dict | None = None) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the encoder's initialisation when none is cached
    for cls in classes:
        task = get_task(task_name)(**{**(options or {}), "classes": [cls]})
        model = create_model("coloc-st", in_shape=(1, 84, 84), num_classes=10, transform="attention")
        task.prepare_model(model)  # pretrains (or loads the cached) encoder
        data = task.train_data()
        x, boxes, labels, n = data.images, data.boxes, data.labels, len(data)
        to_digit = (boxes[:, :2] + boxes[:, 2:]) / 2 / 42 - 1  # (n, 2) box centres, normalised
        encoder = model.encoder
        embeddings = {"all": model.embed, "logits": lambda z, e=encoder: F.normalize(e(z), dim=1),
                      "softmax": lambda z, e=encoder: F.softmax(e(z), dim=1)}
        for name, embed in embeddings.items():
            generator, rows = torch.Generator().manual_seed(0), []
            for scale in (1 / 3, 0.5, 0.7, 0.9):
                theta = torch.cat([torch.full((n, 1), scale), torch.zeros(n, 2)], 1).requires_grad_(True)  # (n, 3)
                negatives = embed(warp(x, random_crops(n, generator), "attention", (28, 28))).detach()
                loss = triplet_hinge_loss(embed(warp(x, theta, "attention", (28, 28))), negatives, labels).mean()
                loss.backward()
                cosine = F.cosine_similarity(-theta.grad[:, 1:], to_digit, dim=1).mean()
                rows.append(f"scale {scale:.2f}: loss {loss.item():.3f} cosine {cosine:+.2f}")
            print(f"{task_name} class {cls} {name}: " + " | ".join(rows), flush=True)


if __name__ == "__main__":
    args = sys.argv[2:]
    options = json.loads(args.pop()) if args and args[-1].startswith("{") else None
    main(sys.argv[1] if len(sys.argv) > 1 else "coloc", [int(c) for c in args] or [1, 3, 7], options)
