"""End to end through the command line: a tiny run on synthetic IDX digits, then the README's
``stnkit show`` example, ``stnkit show --npz``, a resumed run's animation, ``stnkit report`` and the README
figure script."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from _synthetic_digits import write_synthetic_mnist
from stnkit.experiments.cli import main
from stnkit.experiments.viz import HEAD_COLORS

ROOT = Path(__file__).resolve().parents[2]


def gif_length(path: Path) -> int:
    with Image.open(path) as im:
        return sum(1 for _ in ImageSequence.Iterator(im))


def outline_pixels(image: np.ndarray) -> int:
    rgb = np.array([int(HEAD_COLORS[0][i:i + 2], 16) for i in (1, 3, 5)])
    return int(np.all(np.abs(image.astype(int) - rgb) < 40, axis=-1).sum())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """An ST-FCN trained for 2 epochs on 64 synthetic digits (rotated, R), with the animation."""
    root = tmp_path_factory.mktemp("viz_cli")
    data = write_synthetic_mnist(root / "data", n_train=64, n_test=32)
    run = root / "runs" / "st-fcn-r"
    main(["train", "--model", "st-fcn", "--dataset", "r", "--data-dir", str(data), "--epochs", "2",
          "--batch-size", "32", "--threads", "1", "--out", str(run), "--no-progress"])
    return root, run


def test_training_leaves_the_animation(tiny_run):
    _, run = tiny_run
    assert gif_length(run / "animation.gif") == 2  # one frame per epoch
    png = np.asarray(Image.open(run / "last_epoch.png").convert("RGB"))
    assert png.std() > 20 and outline_pixels(png) > 20


def test_readme_show_example(tiny_run, monkeypatch):
    root, run = tiny_run
    monkeypatch.chdir(root)
    # README: stnkit show runs/st-fcn-r --out runs/st-fcn-r/panel.png
    assert main(["show", "runs/st-fcn-r", "--out", "runs/st-fcn-r/panel.png"]) == 0
    panel = np.asarray(Image.open(run / "panel.png").convert("RGB"))
    # 16 images: 4 groups of (input, output) 1-inch cells at 100 dpi per row, 4 rows.
    assert 800 <= panel.shape[1] <= 1000 and 400 <= panel.shape[0] <= 560
    assert panel.std() > 20 and outline_pixels(panel) > 100
    assert main(["show", "runs/st-fcn-r", "--n", "4", "--seed", "1", "--out", "four.png"]) == 0
    four = np.asarray(Image.open(root / "four.png").convert("RGB"))
    assert four.shape[1] < panel.shape[1] and four.shape[0] < panel.shape[0]  # 2 x 2 groups


def test_show_with_a_users_npz(tiny_run):
    root, run = tiny_run
    images = np.zeros((5, 20, 20), dtype=np.uint8)  # smaller than the model's 28x28: centred
    images[:, 5:15, 8:12] = 255
    np.savez(root / "mine.npz", images=images, labels=np.arange(5))
    out = root / "mine.png"
    assert main(["show", str(run), "--npz", str(root / "mine.npz"), "--out", str(out)]) == 0
    picture = np.asarray(Image.open(out).convert("RGB"))
    assert picture.std() > 20 and outline_pixels(picture) > 20


def test_show_errors_are_one_line(tiny_run, capsys):
    root, _ = tiny_run
    with pytest.raises(SystemExit) as exc:
        main(["show", str(root / "no-such-run"), "--out", str(root / "x.png")])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_resume_continues_the_animation_and_report(tiny_run):
    root, run = tiny_run
    main(["train", "--resume", "--out", str(run), "--epochs", "3", "--no-progress"])
    assert gif_length(run / "animation.gif") == 3
    assert len(list((run / "animation_frames").iterdir())) == 3
    out = root / "report" / "report.md"
    assert main(["report", str(run), "--out", str(out)]) == 0
    md = out.read_text()
    summary = json.loads((run / "summary.json").read_text())
    assert "st-fcn-r" in md and f"{summary['test_error']:.2f}" in md
    assert "| ST-FCN Aff | **" in md and " / 1.2 |" in md  # the paper's R number for ST-FCN Aff
    assert (root / "report" / "report_curves.png").is_file()


def test_readme_figure_script(tiny_run, monkeypatch):
    root, run = tiny_run
    out, gif = root / "docs" / "images" / "panel.png", root / "docs" / "images" / "anim.gif"
    argv = ["make_readme_figure.py", str(run), "--out", str(out), "--gif", str(gif), "--n", "6", "--ncols", "3",
            "--gif-frames", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(ROOT / "scripts" / "make_readme_figure.py"), run_name="__main__")
    assert exc.value.code == 0
    image = Image.open(out)
    assert image.mode == "P" and out.stat().st_size < 150_000  # small palette PNG
    assert np.asarray(image.convert("RGB")).std() > 20
    assert gif_length(gif) == 2
