"""Result report: every run listed, our error beside the paper's in the matching cells, learning curves."""

from __future__ import annotations

import json
import re
import statistics

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
                   "test_error": errors[-1], "train_time_s": time_s, "epochs": len(errors),
                   "iterations": 10 * len(errors)}
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
        for distortion, value in zip(("r", "rts", "p", "e"), values, strict=True):
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


def trainer_run(path, model, transform, task, errors, *, seed=0, complete=True, digits="mnist"):
    """A run directory in today's trainer format (train/trainer.py): ``task`` and ``completed`` keys;
    an unfinished run has ``completed: false`` and the epochs done so far."""
    path.mkdir(parents=True)
    config = {"model": model, "transform": transform, "task": task, "digits": digits, "epochs": 3, "seed": seed}
    (path / "config.json").write_text(json.dumps(config))
    done = errors if complete else errors[:1]
    rows = [{"epoch": i + 1, "train_loss": 0.5, "train_error": e + 1, "test_error": e, "lr": 0.01,
             "epoch_time_s": 10.0, "images_per_s": 900.0, "elapsed_s": 10.0 * (i + 1)} for i, e in enumerate(done)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"model": model, "transform": transform, "task": task, "digits": digits, "params": 1000,
               "test_error": done[-1], "train_time_s": 10.0 * len(done), "epochs": len(done), "iterations": 7,
               "train_images": 60000, "completed": complete}
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def section(md: str, heading: str) -> str:
    """The text under ``## heading`` up to the next heading."""
    assert f"## {heading}" in md, f"no section {heading!r} in:\n{md}"
    return md.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]


def parse_table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """The first markdown table of ``text``: (header cells after the corner, {row label: cells})."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    split = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    return split[0][1:], {row[0]: row[1:] for row in split[2:]}


def test_report_renders_the_papers_tables_with_ours_beside(tmp_path):
    seeds = [0.61, 0.83, 0.74]
    root = tmp_path / "runs"
    runs = [trainer_run(root / f"rts_st-cnn_affine/seed{k}", "st-cnn", "affine", "rts", [3.0, 1.5, e], seed=k)
            for k, e in enumerate(seeds)]
    runs += [trainer_run(root / "p_st-fcn_tps/seed0", "st-fcn", "tps", "p", [4.0, 2.0, 1.25]),
             trainer_run(root / "tc_cnn/seed0", "cnn", None, "tc", [9.0, 5.0, 4.1]),
             trainer_run(root / "tc_st-cnn_affine/seed0", "st-cnn", "affine", "tc", [9.0, 5.0, 2.5]),
             trainer_run(root / "addition_2xst-fcn_projective/seed0", "2xst-fcn", "projective", "addition",
                         [30.0, 9.0, 7.25]),
             trainer_run(root / "e_fcn/seed0", "fcn", None, "e", [9.0, 5.0, 4.0], complete=False),
             trainer_run(root / "mnist3d_st-cnn3d/seed0", "st-cnn3d", "affine3d", "mnist3d", [9.0, 5.0, 3.5]),
             trainer_run(root / "fashion", "st-cnn", "tps", "r", [20.0, 15.0, 12.0], digits="fashion-mnist")]
    md = write_report(runs, tmp_path / "report.md").read_text()

    columns, rows = parse_table(section(md, "Table 1"))
    assert columns == ["R", "RTS", "P", "E"]
    assert list(rows) == list(NAMES)  # the paper's rows, in its order, nothing else
    mean, std = statistics.mean(seeds), statistics.stdev(seeds)
    assert rows["ST-CNN Aff"][1] == f"**{mean:.2f} ± {std:.2f} (n=3)** / 0.5"
    assert rows["ST-FCN TPS"][2] == "**1.25** / 1.4"  # P column, single seed: no ± and no n
    assert rows["FCN"][3] == "incomplete / 3.2"  # started, not finished: marked, not averaged
    assert rows["ST-CNN Aff"][0] == "— / 0.7"  # no run, none planned
    for line in TABLE1_MD.strip().splitlines():  # every paper number in its row and column
        label, *values = [c.strip() for c in line.strip("|").split("|")]
        assert [cell.rsplit(" / ", 1)[1] for cell in rows[label]] == values, label

    columns, rows = parse_table(section(md, "Translated cluttered"))
    assert columns == ["FCN", "CNN", "ST-FCN", "ST-CNN Aff"]  # ST-FCN: no run, the paper names no transform
    assert rows["TC"] == ["— / 13.2", "**4.10** / 3.5", "— / 2.0", "**2.50** / 1.7"]

    columns, rows = parse_table(section(md, "Table 4"))
    assert columns == ["Addition"]
    assert rows == {"FCN": ["— / 47.7"], "CNN": ["— / 14.7"], "ST-FCN Aff": ["— / 22.6"],
                    "ST-FCN Proj": ["— / 18.5"], "ST-FCN TPS": ["— / 19.1"], "2xST-FCN Aff": ["— / 9.0"],
                    "2xST-FCN Proj": ["**7.25** / 5.9"], "2xST-FCN TPS": ["— / 5.8"]}

    columns, rows = parse_table(section(md, "Other MNIST tasks"))
    assert columns == ["mnist3d"] and rows == {"st-cnn3d Aff3d": ["**3.50** / —"]}
    columns, rows = parse_table(section(md, "fashion-mnist"))
    assert columns == ["R"] and rows == {"ST-CNN TPS": ["**12.00** / —"]}

    runs_section = section(md, "Runs")
    for run in runs:  # the per-run table keeps every run
        assert str(run.relative_to(tmp_path)) in runs_section
    assert "e_fcn/seed0` (incomplete)" in runs_section


def test_planned_cells_are_marked_not_run_or_incomplete_and_cpu_minutes_shown(tmp_path):
    done = trainer_run(tmp_path / "a0", "cnn", None, "rts", [3.0, 2.0, 1.5])
    cut = trainer_run(tmp_path / "a1", "cnn", None, "rts", [3.0, 2.0, 1.0], seed=1, complete=False)
    only_cut = trainer_run(tmp_path / "b0", "st-cnn", "tps", "r", [3.0, 2.0, 1.0], complete=False)
    planned = {("cnn", None, "rts"): 3, ("st-cnn", "tps", "r"): 2, ("st-fcn", "affine", "e"): 2,
               ("st-fcn", "affine", "tc"): 1, ("2xst-fcn", "tps", "addition"): 1}
    md = write_report([done, cut, only_cut], tmp_path / "report.md", planned=planned,
                      cpu={tmp_path / "a0": 150.0, str(tmp_path / "b0"): 30.0}, note="Grid budget `x`.").read_text()
    assert "Grid budget `x`." in md.split("## Table 1")[0]  # the budget at the top
    _, rows = parse_table(section(md, "Table 1"))
    assert rows["CNN"][1] == "**1.50** (+1 incomplete, +1 not run) / 0.8"
    assert rows["ST-CNN TPS"][0] == "incomplete (+1 not run) / 0.7"
    assert rows["ST-FCN Aff"][3] == "not run / 2.7"
    assert rows["ST-FCN Aff"][0] == "— / 1.2"  # not planned
    columns, rows = parse_table(section(md, "Translated cluttered"))
    assert columns == ["FCN", "CNN", "ST-FCN Aff", "ST-CNN"] and rows["TC"][2] == "not run / 2.0"
    _, rows = parse_table(section(md, "Table 4"))
    assert rows["2xST-FCN TPS"] == ["not run / 5.8"] and rows["CNN"] == ["— / 14.7"]
    columns, rows = parse_table(section(md, "Runs"))
    cpu = columns.index("CPU min")
    assert rows["`a0`"][cpu] == "2.5" and rows["`b0` (incomplete)"][cpu] == "0.5"
    assert rows["`a1` (incomplete)"][cpu] == "—"  # none recorded


def test_runs_off_the_papers_tasks_get_no_paper_tables(tmp_path):
    run = trainer_run(tmp_path / "m", "st-cnn3d", "affine3d", "mnist3d", [9.0, 5.0, 3.5])
    md = write_report([run], tmp_path / "report.md").read_text()
    assert "## Table 1" not in md and "## Table 4" not in md and "TC" not in md
    assert parse_table(section(md, "Other MNIST tasks"))[1] == {"st-cnn3d Aff3d": ["**3.50** / —"]}


def test_old_format_runs_still_load(tmp_path):
    runs = [make_run(tmp_path / "s0", "st-cnn", "affine", "rts", [2.0, 0.9, 0.6]),
            make_run(tmp_path / "s1", "st-cnn", "affine", "rts", [2.2, 1.0, 0.8]),
            make_run(tmp_path / "cut", "fcn", "affine", "r", [5.0, 3.3], complete=False)]
    md = write_report(runs, tmp_path / "report.md").read_text()
    _, rows = parse_table(section(md, "Table 1"))
    assert rows["ST-CNN Aff"][1] == "**0.70 ± 0.14 (n=2)** / 0.5"  # mean of 0.6 and 0.8 ± sqrt(0.02)
    assert rows["FCN"][0] == "incomplete / 2.1"
    line = next(x for x in md.splitlines() if "`s0`" in x)
    assert "12,345" in line and "1m 15s" in line


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
