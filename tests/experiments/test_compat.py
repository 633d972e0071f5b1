"""Runs written before the rename (the project was called ``stn`` up to 0.1.0) still load, evaluate,
show and resume: held against the logits that the old code computed (``tests/experiments/fixtures``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch

from _synthetic_digits import write_synthetic_mnist
from stnkit.experiments.cli import main
from stnkit.experiments.train import load_run

OLD_RUN = Path(__file__).parent / "fixtures" / "run-stn-0.1.0"


def test_old_checkpoint_gives_the_old_outputs():
    model, config = load_run(OLD_RUN)
    expected = torch.load(OLD_RUN / "expected_outputs.pt", weights_only=True)
    with torch.no_grad():
        logits = model(expected["input"])
    torch.testing.assert_close(logits, expected["logits"], atol=1e-6, rtol=1e-5)
    assert config.model == "st-cnn" and config.transform == "affine"


def test_old_run_evaluates_and_shows(tmp_path, capsys):
    images = (np.random.default_rng(0).random((8, 28, 28)) * 255).astype(np.uint8)
    np.savez(tmp_path / "mine.npz", images=images, labels=np.arange(8) % 10)
    assert main(["eval", str(OLD_RUN), "--npz", str(tmp_path / "mine.npz"), "--json"]) == 0
    assert '"n": 8' in capsys.readouterr().out
    assert main(["show", str(OLD_RUN), "--npz", str(tmp_path / "mine.npz"), "--n", "4",
                 "--out", str(tmp_path / "panel.png")]) == 0
    assert (tmp_path / "panel.png").stat().st_size > 0


def test_old_run_resumes(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    data = write_synthetic_mnist(tmp_path / "digits")
    before = torch.load(run / "checkpoint.pt", weights_only=True)["epoch"]
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "--data-dir", str(data),
                 "--no-progress", "--no-animation"]) == 0
    after = torch.load(run / "checkpoint.pt", weights_only=True)
    assert before == 1 and after["epoch"] == 2

