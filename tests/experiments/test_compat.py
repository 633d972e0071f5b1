"""Runs written before the rename (the project was called ``stn`` up to 0.1.0) still load, evaluate,
show and resume: held against the logits that the old code computed (``tests/experiments/fixtures``)."""

from __future__ import annotations

import json
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



def _tiny_rts(tmp_path, name, *extra):
    data = write_synthetic_mnist(tmp_path / "digits")
    run = tmp_path / name
    assert main(["train", "--task", "rts", "--epochs", "1", "--limit", "64", "--test-limit", "32",
                 "--batch-size", "32", "--data-dir", str(data), "--out", str(run), "--no-progress",
                 "--no-animation", *extra]) == 0
    return run


def test_plain_models_see_the_whole_input_and_the_choice_is_recorded(tmp_path):
    cnn = _tiny_rts(tmp_path, "cnn", "--model", "cnn")
    st = _tiny_rts(tmp_path, "st", "--model", "st-cnn")
    for run, pooled in ((cnn, False), (st, True)):
        assert json.loads((run / "config.json").read_text())["downsample"] is pooled
        model, config = load_run(run)
        assert config.downsample is pooled
        x = torch.zeros(2, 1, 42, 42)
        seen = model.pool(model.transform(x))
        assert seen.shape[-1] == (21 if pooled else 42)


def test_run_from_before_the_unpooled_baseline_loads_and_resumes_with_its_pool(tmp_path):
    run = _tiny_rts(tmp_path, "old", "--model", "cnn", "--downsample")
    for name in ("checkpoint.pt", "config.json"):  # what runs before 0.3.0 recorded: downsample unset
        if name == "config.json":
            values = json.loads((run / name).read_text())
            values["downsample"] = None
            (run / name).write_text(json.dumps(values))
        else:
            state = torch.load(run / name, weights_only=True)
            state["config"]["downsample"] = None
            torch.save(state, run / name)
    model, config = load_run(run)  # strict load: the classifier's weights fit a 21x21 input
    assert config.downsample is True and isinstance(model.pool, torch.nn.AvgPool2d)
    data = tmp_path / "digits"
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", "--data-dir", str(data),
                 "--no-progress", "--no-animation"]) == 0
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 2


def test_parallel_attention_run_from_before_loc_norm_loads_and_resumes_without_it(tmp_path):
    data = write_synthetic_mnist(tmp_path / "digits", n_train=32, n_test=16)
    small = {"crop_size": [16, 16], "loc_size": [16, 16], "features": 4,
             "backbone_options": {"width": 4, "blocks": [1]}}
    args = ["--task", "parts", "--limit", "16", "--test-limit", "8", "--batch-size", "8", "--data-dir", str(data),
            "--no-progress", "--no-animation"]
    old = tmp_path / "old"
    assert main(["train", *args, "--epochs", "1", "--out", str(old),
                 "--model-options", json.dumps({**small, "loc_norm": "none"})]) == 0
    for name in ("checkpoint.pt", "config.json"):  # what runs before 0.4.0 recorded: no loc_norm option
        if name == "config.json":
            values = json.loads((old / name).read_text())
            del values["model_options"]["loc_norm"]
            (old / name).write_text(json.dumps(values))
        else:
            state = torch.load(old / name, weights_only=True)
            del state["config"]["model_options"]["loc_norm"]
            torch.save(state, old / name)
    model, config = load_run(old)  # strict load: no normalisation buffers in the checkpoint
    assert config.model_options["loc_norm"] == "none" and model.loc_norm == "none"
    assert main(["train", "--resume", "--out", str(old), "--epochs", "2", "--data-dir", str(data),
                 "--no-progress", "--no-animation"]) == 0
    assert torch.load(old / "checkpoint.pt", weights_only=True)["epoch"] == 2

    new = tmp_path / "new"  # a run of 0.4.0 with the default keeps its batch-normalised features
    assert main(["train", *args, "--epochs", "1", "--out", str(new), "--model-options", json.dumps(small)]) == 0
    model, config = load_run(new)
    assert model.loc_norm == "batch" and "loc_norm" not in config.model_options
