"""The ``stnkit`` command through ``stnkit.experiments.cli.main``: train + eval end to end, configs, errors, list."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _synthetic_digits import write_synthetic_mnist
from stnkit.experiments.cli import main

SMALL = ["--epochs", "1", "--batch-size", "16", "--eval-batch-size", "32", "--no-progress",
         "--model-options", '{"channels": [4, 8]}']


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=48, n_test=32))


def _error_line(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stnkit {argv[0]}: error: ")
    return last


def test_train_then_eval_end_to_end(tmp_path, data_dir, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "st-cnn", "--transform", "affine", "--task", "rts", "--data-dir", data_dir,
                 "--out", str(run), "--lr", "0.02", "--no-animation", *SMALL]) == 0
    out = capsys.readouterr().out
    assert "st-cnn (affine) on rts: test error" in out and str(run) in out
    for name in ("config.json", "checkpoint.pt", "metrics.jsonl", "summary.json"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["model"], summary["task"], summary["in_shape"]) == ("st-cnn", "rts", [1, 42, 42])

    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"error", "accuracy", "n"}
    assert result["n"] == 32 and result["error"] == pytest.approx(summary["test_error"])
    assert result["error"] + result["accuracy"] == pytest.approx(100)
    assert main(["eval", str(run / "checkpoint.pt")]) == 0
    assert f"test error {summary['test_error']:.2f}%" in capsys.readouterr().out


def test_eval_on_a_users_npz_is_fitted_to_the_model(tmp_path, data_dir, capsys):
    run = tmp_path / "run"
    main(["train", "--model", "cnn", "--task", "rts", "--data-dir", data_dir, "--out", str(run), *SMALL])
    capsys.readouterr()
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (20, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (20,), generator=g)
    np.savez(tmp_path / "mine.npz", images=images.numpy(), labels=labels.numpy())
    assert main(["eval", str(run), "--npz", str(tmp_path / "mine.npz"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # Independent check: centre the 28x28 digits on the 42x42 canvas by hand and count mistakes.
    from stnkit.experiments.train import load_run

    model, _ = load_run(run)
    canvas = torch.zeros(20, 1, 42, 42)
    canvas[:, 0, 7:35, 7:35] = images.float() / 255
    with torch.no_grad():
        wrong = int((model(canvas).argmax(1) != labels).sum())
    assert result == {"error": pytest.approx(100 * wrong / 20), "accuracy": pytest.approx(100 - 100 * wrong / 20),
                      "n": 20}

    np.savez(tmp_path / "big.npz", images=np.zeros((2, 60, 60), np.uint8), labels=np.zeros(2, np.int64))
    line = _error_line(capsys, ["eval", str(run), "--npz", str(tmp_path / "big.npz")])
    assert "42x42" in line and "60x60" in line


def test_config_file_overrides_and_saved_resolved_config(tmp_path, data_dir, capsys):
    json_file = tmp_path / "exp.json"
    json_file.write_text(json.dumps({"model": "fcn", "task": "r", "lr": 0.5, "seed": 7, "momentum": 0.5}))
    toml_file = tmp_path / "exp.toml"
    toml_file.write_text('model = "fcn"\ntask = "r"\nlr = 0.5\nseed = 7\nmomentum = 0.5\n')
    for i, file in enumerate((json_file, toml_file)):
        run = tmp_path / f"run{i}"
        main(["train", "--config", str(file), "--lr", "0.1", "--data-dir", data_dir, "--out", str(run),
              "--epochs", "1", "--batch-size", "16", "--no-progress"])
        saved = json.loads((run / "config.json").read_text())
        assert (saved["model"], saved["task"], saved["seed"], saved["momentum"]) == ("fcn", "r", 7, 0.5)  # file
        assert saved["lr"] == 0.1 and saved["epochs"] == 1  # command line wins
        assert saved["optimizer"] == "adam" and saved["batch_size"] == 16  # default, command line
    capsys.readouterr()


def test_resume_through_the_cli_extends_a_run(tmp_path, data_dir, capsys):
    run = str(tmp_path / "run")
    main(["train", "--model", "fcn", "--task", "none", "--data-dir", data_dir, "--out", run, *SMALL[:-2]])
    main(["train", "--resume", "--out", run, "--epochs", "2", "--no-progress"])
    assert "after 2 epochs" in capsys.readouterr().out
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["epoch"] for r in rows] == [1, 2]
    line = _error_line(capsys, ["train", "--out", run, "--model", "fcn", "--data-dir", data_dir])
    assert "already holds a run" in line


@pytest.mark.parametrize("argv,message", [
    (["train", "--model", "resnet"], "model: expected one of .*cnn.*got 'resnet'"),
    (["train", "--transform", "shear"], "transform: expected one of .*affine.*got 'shear'"),
    (["train", "--task", "cifar"], "task: expected one of .*rts.*got 'cifar'"),
    (["train", "--epochs", "0"], "epochs: expected an int >= 1, got 0"),
    (["train", "--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["train", "--num-workers", "-1"], "num_workers: expected an int >= 0, got -1"),
    (["train", "--lr", "-1"], "lr: expected a finite number > 0, got -1"),
    (["train", "--optimizer", "lbfgs"], "optimizer: expected one of sgd, adam; got 'lbfgs'"),
    (["train", "--transform-options", "{grid"], "argument --transform-options: expected a JSON object"),
    (["train", "--config", "no/such.json"], "config: no such file 'no/such.json'"),
    (["train", "--resume", "--out", "no/such/run"], "--resume: no config.json in 'no/such/run'"),
    (["train", "--model", "cnn", "--model-options", '{"hidden": [3]}', "--out", "{tmp}/x", "--data-dir", "{data}"],
     "options: model 'cnn' accepts channels; got hidden"),
    (["eval", "no/such/run"], "no such run directory or checkpoint 'no/such/run'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_user_errors_are_one_line(tmp_path, data_dir, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)).replace("{data}", data_dir) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err), err


def test_missing_data_dir_is_a_one_line_error(tmp_path, capsys):
    line = _error_line(capsys, ["train", "--data-dir", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")])
    assert str(tmp_path / "nothing") in line
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_on_a_cpu_machine_is_a_one_line_error(tmp_path, data_dir, capsys):
    line = _error_line(capsys, ["train", "--device", "cuda", "--data-dir", data_dir, "--out", str(tmp_path)])
    assert "device: 'cuda' requested but CUDA is not available" in line


def _rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line and not line.startswith("#")]


def test_list_names_every_task_model_family_and_digits_once_at_the_start_of_a_row(capsys, monkeypatch):
    from stnkit import transforms
    from stnkit.experiments import data, listing, models, tasks

    built = []
    monkeypatch.setattr(listing, "create_model", lambda *a, **k: built.append(a) or None)
    assert main(["list"]) == 0
    names = [row.split()[0] for row in _rows(capsys.readouterr().out)]
    expected = (tasks.list_tasks() + models.list_models() + transforms.list_transforms() + data.list_sources())
    assert sorted(names) == sorted(expected)
    assert built == []  # no model is built without --params


def test_list_params_counts_parameters_and_tasks_carry_the_papers_numbers(capsys):
    assert main(["list", "--params"]) == 0
    rows = _rows(capsys.readouterr().out)
    # CNN on 28x28: conv 9x9 1->32 (padded), conv 7x7 32->64 (unpadded), FC 64*4*4 -> 10.
    cnn = 1 * 32 * 81 + 32 + 32 * 64 * 49 + 64 + 64 * 4 * 4 * 10 + 10
    assert f"{cnn:,}" in next(row for row in rows if row.startswith("cnn "))
    rts = next(row for row in rows if row.startswith("rts "))
    assert "st-cnn affine 0.5" in rts and "cnn 0.8" in rts  # Table 1 of the paper, RTS column


def test_quickstart_trains_cnn_and_st_cnn_and_prints_both(tmp_path, data_dir, capsys):
    assert main(["quickstart", "--out", str(tmp_path), "--epochs", "1", "--data-dir", data_dir, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "CNN " in out and "ST-CNN affine" in out
    for model in ("cnn", "st-cnn"):
        assert json.loads((tmp_path / model / "summary.json").read_text())["task"] == "rts"
    assert (tmp_path / "st-cnn" / "panel.png").is_file()
    assert (tmp_path / "st-cnn" / "animation.gif").is_file()


def test_version_and_python_dash_m():
    import subprocess
    import sys

    import stnkit

    for cmd in ([sys.executable, "-m", "stnkit", "--version"],):
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        assert out.strip() == f"stnkit {stnkit.__version__}"
