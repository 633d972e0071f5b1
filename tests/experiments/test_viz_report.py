"""Result report: every run listed, our error beside the paper's in the matching cells, learning curves."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from stnkit.experiments.viz import paper_error, write_report
from stnkit.experiments.viz.report import load_result

# Copied from docs/paper.md (Table 1), independently of stnkit.experiments.viz.paper_results.
TABLE1_MD = """
| FCN | 2.1 | 5.2 | 3.1 | 3.2 |
| CNN | 1.2 | 0.8 | 1.5 | 1.4 |
| ST-FCN Aff | 1.2 | 0.8 | 1.5 | 2.7 |
| ST-FCN Proj | 1.3 | 0.9 | 1.4 | 2.6 |
| ST-FCN TPS | 1.1 | 0.8 | 1.4 | 2.4 |
| ST-CNN Aff | 0.7 | 0.5 | 0.8 | 1.2 |
| ST-CNN Proj | 0.8 | 0.6 | 0.8 | 1.3 |
| ST-CNN TPS | 0.7 | 0.5 | 0.8 | 1.1 |
"""
NAMES = {"FCN": ("fcn", None), "CNN": ("cnn", None), "ST-FCN Aff": ("st-fcn", "affine"),
         "ST-FCN Proj": ("st-fcn", "projective"), "ST-FCN TPS": ("st-fcn", "tps"), "ST-CNN Aff": ("st-cnn", "affine"),
         "ST-CNN Proj": ("st-cnn", "projective"), "ST-CNN TPS": ("st-cnn", "tps")}


def make_run(path, model, transform, dataset, errors, *, digits="mnist", complete=True, params=12345, time_s=75.0):
    """A run directory as the trainer writes it (docs/design.md): config, metrics, summary."""
    path.mkdir(parents=True)
    config = {"model": model, "transform": transform, "dataset": dataset, "digits": digits, "epochs": len(errors)}
    (path / "config.json").write_text(json.dumps(config))
    rows = [{"epoch": i + 1, "train_loss": 1.0, "train_error": e + 1, "test_error": e, "lr": 0.01,
             "epoch_time_s": time_s / len(errors), "images_per_s": 1000.0, "elapsed_s": time_s * (i + 1) / len(errors)}
            for i, e in enumerate(errors)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if complete:
        summary = {"model": model, "transform": transform, "dataset": dataset, "digits": digits, "params": params,
                   "test_error": errors[-1], "train_time_s": time_s, "epochs": len(errors), "iterations": 10 * len(errors)}
        (path / "summary.json").write_text(json.dumps(summary))
    return path


def table_rows(md: str, section: str) -> dict[str, list[str]]:
    """Rows of the first table after the heading ``section``: {row label: [cells]}."""
    part = md.split(f"## {section}", 1)[1]
    rows = {}
    for line in part.splitlines():
        if line.startswith("## "):
            break
        if line.startswith("| ") and not line.startswith("| model") and "---" not in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_paper_numbers_match_the_paper():
    for line in TABLE1_MD.strip().splitlines():
        label, *values = [c.strip() for c in line.strip("|").split("|")]
        model, transform = NAMES[label]
        for distortion, value in zip(("r", "rts", "p", "e"), values):
            assert paper_error(model, transform, distortion) == float(value), (label, distortion)
    assert [paper_error(m, "affine", "tc") for m in ("fcn", "cnn", "st-fcn", "st-cnn")] == [13.2, 3.5, 2.0, 1.7]
    assert paper_error("st-cnn", "tps", "tc") == 1.7  # the paper names no transform for TC
    addition = {("fcn", None): 47.7, ("cnn", None): 14.7, ("st-fcn", "affine"): 22.6, ("st-fcn", "projective"): 18.5,
                ("st-fcn", "tps"): 19.1, ("2xst-fcn", "affine"): 9.0, ("2xst-fcn", "projective"): 5.9,
                ("2xst-fcn", "tps"): 5.8}
    for (model, transform), value in addition.items():
        assert paper_error(model, transform, "addition") == value
    assert paper_error("cnn", "affine", "r") == 1.2  # the transform does not matter without a transformer
    assert paper_error("st-cnn", "affine", "r", dataset="fashion-mnist") is None
    assert paper_error("2xst-cnn", "affine", "rts") is None


def test_report_lists_every_run_with_the_papers_numbers(tmp_path):
    runs = [
        make_run(tmp_path / "runs" / "st-cnn-rts-s0", "st-cnn", "affine", "rts", [2.0, 0.9, 0.6]),
        make_run(tmp_path / "runs" / "st-cnn-rts-s1", "st-cnn", "affine", "rts", [2.2, 1.0, 0.8]),
        make_run(tmp_path / "runs" / "cnn-tc", "cnn", "affine", "tc", [9.0, 4.1]),
        make_run(tmp_path / "runs" / "2xst-addition", "2xst-fcn", "projective", "addition", [30.0, 7.25]),
        make_run(tmp_path / "runs" / "fcn-r-cut", "fcn", "affine", "r", [5.0, 3.3], complete=False),
        make_run(tmp_path / "runs" / "fashion", "st-cnn", "tps", "e", [12.0, 9.5], digits="fashion-mnist"),
    ]
    out = write_report(runs, tmp_path / "out" / "report.md")
    md = out.read_text()
    for run in runs:
        assert run.name in md
    rows = table_rows(md, "MNIST")
    assert rows["ST-CNN Aff"][1] == "**0.70 ± 0.14 (n=2)** / 0.5"  # RTS: mean of 0.6 and 0.8 ± sqrt(0.02), two seeds
    assert rows["ST-CNN Aff"][0] == "— / 0.7"  # no R run: the paper's number alone
    assert rows["ST-CNN TPS"][3] == "— / 1.1"
    header = md.split("## MNIST", 1)[1].splitlines()[2]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == ["model", "R", "RTS", "P", "E", "TC", "Addition"]
    assert rows["CNN"][4] == "**4.10** / 3.5"  # TC
    assert rows["2xST-FCN Proj"][5] == "**7.25** / 5.9"  # addition (Table 4)
    assert rows["FCN"][0] == "— (+1 incomplete) / 2.1"  # an incomplete run is marked, not counted
    assert "fcn-r-cut` (incomplete)" in md
    fashion = table_rows(md, "fashion-mnist")
    assert fashion == {"ST-CNN TPS": ["— / —", "— / —", "— / —", "**9.50** / —"]}
    # The per-run table: parameters and training time.
    line = next(l for l in md.splitlines() if "runs/cnn-tc" in l)
    assert "12,345" in line and "1m 15s" in line and "4.10" in line and "3.5" in line


def test_learning_curves_png(tmp_path):
    a = make_run(tmp_path / "a", "st-cnn", "affine", "rts", [10.0, 3.0, 1.0, 0.5])
    b = make_run(tmp_path / "b", "cnn", None, "rts", [12.0, 6.0, 2.0, 1.5])
    md = write_report([a, b], tmp_path / "report.md").read_text()
    link = re.search(r"!\[[^\]]*\]\(([^)]+)\)", md).group(1)
    png = tmp_path / link
    assert png.is_file() and png.name == "report_curves.png"
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 10
    only_a = np.asarray(Image.open(write_report([a], tmp_path / "one.md").with_name("one_curves.png")).convert("RGB"))
    assert only_a.shape == image.shape and np.abs(only_a.astype(int) - image.astype(int)).sum() > 1000


def test_load_result_reads_a_checkpoint_path_and_percentages(tmp_path):
    run = make_run(tmp_path / "r", "st-fcn", "tps", "e", [4.0, 2.5])
    (run / "checkpoint.pt").write_bytes(b"")
    result = load_result(run / "checkpoint.pt")
    assert result.path == run and result.test_error == 2.5 and result.curve == [(1, 4.0), (2, 2.5)]
    assert result.label == "ST-FCN TPS" and result.params == 12345


def test_bad_runs(tmp_path):
    with pytest.raises(ValueError, match="runs"):
        write_report([], tmp_path / "r.md")
    with pytest.raises(ValueError, match="runs"):
        write_report(str(tmp_path), tmp_path / "r.md")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="runs.*empty"):
        write_report([tmp_path / "empty"], tmp_path / "r.md")
