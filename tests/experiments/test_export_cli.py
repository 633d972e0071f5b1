"""``stnkit export RUN``: a tiny trained run to ONNX (onnxruntime) and to torch.export, checked on its test images."""

from __future__ import annotations

import json
import re

import onnx
import pytest

from _synthetic_digits import write_synthetic_mnist
from stnkit.experiments.cli import main

SMALL = ["--epochs", "1", "--batch-size", "16", "--eval-batch-size", "32", "--no-progress", "--no-animation",
         "--model-options", '{"channels": [4, 8]}']


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data_dir = str(write_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=48, n_test=32))
    out = tmp_path_factory.mktemp("runs") / "st"
    assert main(["train", "--model", "st-cnn", "--transform", "tps", "--task", "rts", "--data-dir", data_dir,
                 "--out", str(out), "--lr", "0.02", *SMALL]) == 0
    return out


LINE = re.compile(r"wrote (\S+) \((\S+)\); on (\d+) test images the exported model's largest output difference is "
                  r"(\S+), its predictions agree ([\d.]+)%, test error ([\d.]+)%")


@pytest.mark.parametrize("fmt, name", [("onnx", "st.onnx"), ("exported-program", "st.pt2")])
def test_export_runs_the_file_on_the_test_images(run, fmt, name, tmp_path, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    expected_error = json.loads(capsys.readouterr().out)["error"]
    # batch size 5: the file traced on 2 images runs on 5, ..., 5 and a last batch of 2
    assert main(["export", str(run), "--format", fmt, "--out", str(tmp_path / name), "--batch-size", "5"]) == 0
    match = LINE.search(capsys.readouterr().out)
    assert match, "no result line"
    path, got_fmt, n, diff, agreement, error = match.groups()
    assert (path, got_fmt, int(n)) == (str(tmp_path / name), fmt, 32)
    assert float(diff) <= 1e-4 and float(agreement) == 100.0
    assert float(error) == pytest.approx(expected_error)
    assert [p.name for p in tmp_path.iterdir()] == [name]
    if fmt == "onnx":
        assert onnx.load(tmp_path / name).opset_import[0].version == 20


def test_export_errors_are_one_line(run, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "m.onnx"), "--opset", "12"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == "stnkit export: error: opset: expected at least 18 (the first opset PyTorch's ONNX exporter " \
                  "writes; GridSample needs 16), got 12"
    with pytest.raises(SystemExit) as exc:
        main(["export", str(run), "--format", "torchscript", "--out", str(tmp_path / "m.pt")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stnkit export: error: TorchScript") and "deprecated" in err and "torch.export" in err
    assert not list(tmp_path.iterdir())
