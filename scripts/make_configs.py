"""Writes configs/*.json: one config per cell of the paper's Table 1, the TC runs, Table 4 (addition)
and our rows of Table 2 (SVHN, 64px and 128px).

Every config holds the paper's training setup (SGD, lr 0.01 divided by 10 every 50k iterations,
batch 256, no warm-up, no gradient clipping, localisation nets at the base learning rate, ~150k
iterations = 639 epochs of 60k images at 235 iterations each). Every optimisation setting is pinned, so
the configs stay the paper's whatever the defaults of ``stnkit.experiments.train.TrainConfig`` (Adam,
cosine) are; other settings (threads, data, ...) keep the defaults. Run from the repository root:

    python scripts/make_configs.py
"""

from __future__ import annotations

import json
from pathlib import Path

PAPER = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0, "schedule": "step",
         "lr_step": 50_000, "lr_gamma": 0.1, "warmup_iterations": 0, "loc_lr_mult": 1.0, "grad_clip": None,
         "batch_size": 256, "epochs": 639}
TPS = {"grid_size": 4}  # the paper's 16-point thin plate spline
# Table 2 (SVHN): SGD, lr 0.01 /10 every 80k iterations, batch 128, weight decay 5e-4, localisation lr 0.1x
# [sec], 400k iterations = 217 epochs of train + extra (235,755 images); dropout 0.5 and full width are
# the models' defaults.
SVHN = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 5e-4, "schedule": "step",
        "lr_step": 80_000, "lr_gamma": 0.1, "batch_size": 128, "epochs": 217, "loc_lr_mult": 0.1}
TABLE2_MODELS = [("multidigit-cnn", "affine"), ("st-cnn-single", "affine"), ("st-cnn-multi", "affine")]

TABLE1_MODELS = [("fcn", "affine"), ("cnn", "affine")] + [
    (model, transform) for model in ("st-fcn", "st-cnn") for transform in ("affine", "projective", "tps")]
TC_MODELS = [("fcn", "affine"), ("cnn", "affine"), ("st-fcn", "affine"), ("st-cnn", "affine")]
ADDITION_MODELS = [("fcn", "affine"), ("cnn", "affine")] + [
    (model, transform) for model in ("st-fcn", "2xst-fcn") for transform in ("affine", "projective", "tps")]


def config(model: str, transform: str, task: str) -> dict:
    values = {"model": model, "transform": transform, "task": task, **PAPER}
    if transform == "tps" and model.endswith(("st-fcn", "st-cnn")):
        values["transform_options"] = TPS
    return values


def main() -> None:
    out = Path(__file__).resolve().parent.parent / "configs"
    out.mkdir(exist_ok=True)
    jobs = [("table1", m, t, d) for d in ("r", "rts", "p", "e") for m, t in TABLE1_MODELS]
    jobs += [("tc", m, t, "tc") for m, t in TC_MODELS]
    jobs += [("addition", m, t, "addition") for m, t in ADDITION_MODELS]
    for group, model, transform, dataset in jobs:
        name = f"{group}_{model}" + ("" if model in ("fcn", "cnn") else f"_{transform}")
        name += f"_{dataset}.json" if group == "table1" else ".json"
        (out / name).write_text(json.dumps(config(model, transform, dataset), indent=2) + "\n")
    for model, transform in TABLE2_MODELS:
        for task in ("svhn", "svhn-128"):
            values = {"model": model, "transform": transform, "task": task, **SVHN}
            (out / f"table2_{model}_{task}.json").write_text(json.dumps(values, indent=2) + "\n")
    print(f"wrote {len(jobs) + 2 * len(TABLE2_MODELS)} configs to {out}")


if __name__ == "__main__":
    main()
