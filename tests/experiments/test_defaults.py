"""The training defaults learn within a short run; the paper's recipe stays one ``--config`` away.

References are independent of the code: the defaults as README/docs/results.md state them, and the
paper's training setup as docs/paper.md quotes it ("SGD, lr 0.01 divided by 10 every 50k
iterations, 150k iterations, batch 256, no weight decay, no dropout"; no momentum and no separate
localisation learning rate are stated for the MNIST experiments).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from stnkit.experiments.train import TrainConfig, train
from stnkit.experiments.train.config import read_config_file
from stnkit.experiments.train.optim import lr_factor

ROOT = Path(__file__).resolve().parents[2]
# Table 2 (SVHN) configs pin their own recipe: tests/experiments/test_sequences.py.
PAPER_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.json") if not p.name.startswith("table2_"))

# The documented defaults (docs/results.md, "Defaults"; TrainConfig's docstring).
DOCUMENTED_DEFAULTS = {"optimizer": "adam", "lr": 2e-3, "schedule": "cosine", "batch_size": 256,
                       "warmup_iterations": 0, "loc_lr_mult": 1.0, "weight_decay": 0.0, "grad_clip": None,
                       "epochs": 10}

# The paper's MNIST recipe (docs/paper.md, "Training").
PAPER_RECIPE = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.0, "weight_decay": 0.0, "schedule": "step",
                "lr_step": 50_000, "lr_gamma": 0.1, "batch_size": 256, "warmup_iterations": 0,
                "loc_lr_mult": 1.0, "grad_clip": None}
PAPER_ITERATIONS = 150_000
TRAIN_IMAGES = 60_000


def test_defaults_are_the_documented_ones():
    config = TrainConfig()
    assert {k: getattr(config, k) for k in DOCUMENTED_DEFAULTS} == DOCUMENTED_DEFAULTS
    config.validate()


def test_there_are_paper_configs():
    names = {p.name for p in PAPER_CONFIGS}
    assert len(names) == 44  # Table 1 (4 x 10), TC (4); Table 4 (8) shares files with none of them
    assert {"table1_st-cnn_affine_rts.json", "tc_st-cnn_affine.json", "addition_2xst-fcn_tps.json"} <= names


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_every_paper_config_pins_the_paper_recipe(path):
    written = read_config_file(path)
    # Pinned in the file itself, so that no change of the defaults can alter the paper's run.
    assert {k: written.get(k, "<not written>") for k in PAPER_RECIPE} == PAPER_RECIPE
    # about 150k iterations of batch 256 over the 60k training images
    iterations = written["epochs"] * math.ceil(TRAIN_IMAGES / written["batch_size"])
    assert abs(iterations - PAPER_ITERATIONS) <= math.ceil(TRAIN_IMAGES / 256)


@pytest.mark.parametrize("path", PAPER_CONFIGS[:1] + PAPER_CONFIGS[-1:], ids=lambda p: p.stem)
def test_paper_config_builds_the_papers_optimizer(path):
    import torch

    from stnkit.experiments.train.config import load_config
    from stnkit.experiments.train.optim import build_optimizer

    config = load_config(path)
    optimizer = build_optimizer(torch.nn.Linear(2, 2), config)
    assert type(optimizer) is torch.optim.SGD
    assert optimizer.param_groups[0]["lr"] == 0.01 and optimizer.param_groups[0]["momentum"] == 0.0
    # the step schedule divides by 10 at 50k and 100k iterations
    assert [lr_factor(config, i, PAPER_ITERATIONS) for i in (49_999, 50_000, 100_000)] == pytest.approx(
        [1.0, 0.1, 0.01])


def test_a_tiny_training_with_the_defaults_learns_real_digits(tmp_path):
    # Real MNIST: $STNKIT_DATA_DIR when set, else the cache or the embedded 5,000-digit sample.
    # Default model and optimisation (ST-CNN affine, Adam 2e-3, cosine, batch 256): 32 iterations on R.
    config = TrainConfig(dataset="r", data_dir=os.environ.get("STNKIT_DATA_DIR"), limit=4000, test_limit=500,
                         epochs=2, threads=1)
    summary = train(config, tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train_loss"] < 1.05 * math.log(10)  # the first epoch's mean: learning, not diverging
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]  # measured: 1.76 -> 1.11
    assert summary["test_error"] < 60  # chance is 90%; measured 35.8% on the embedded sample
