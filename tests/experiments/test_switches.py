"""Training switches --compile, --amp and --channels-last: each runs a tiny training that learns.

Reference: the same tiny training without the switch (synthetic digits, fixed seed); the loss must
fall and the final test error stay near the plain run's.
"""

from __future__ import annotations

import json

import pytest
import torch

from _synthetic_digits import write_synthetic_mnist
from stnkit.experiments.train import TrainConfig, train
from stnkit.experiments.train import switches


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=64, n_test=32))


def _run(tmp_path, data_dir, **switch):
    config = TrainConfig(model="st-cnn", dataset="none", data_dir=data_dir, epochs=4, batch_size=16, lr=3e-3,
                         eval_batch_size=32, seed=3, threads=1, model_options={"channels": [4, 8]}, **switch)
    summary = train(config, tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return rows, summary


@pytest.mark.parametrize("switch", [dict(channels_last=True), dict(amp=True), dict(compile=True)],
                         ids=["channels-last", "amp", "compile"])
def test_switch_trains(tmp_path, data_dir, switch):
    if switch.get("amp"):
        try:
            switches.amp_dtype(torch.device("cpu"))
        except ValueError as err:
            pytest.skip(str(err))
    rows, summary = _run(tmp_path / "on", data_dir, **switch)
    plain_rows, plain = _run(tmp_path / "off", data_dir)
    assert rows[-1]["train_loss"] < 0.85 * rows[0]["train_loss"]  # the plain run: 2.28 -> 1.74
    assert summary["test_error"] <= plain["test_error"] + 15
    if not switch.get("amp"):  # same arithmetic up to float rounding
        assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in plain_rows], rel=1e-2)


def test_amp_refused_without_bfloat16(monkeypatch):
    monkeypatch.setattr(switches, "_cpu_flags", lambda: {"avx2"})
    with pytest.raises(ValueError, match="amp: expected a CPU with bfloat16"):
        switches.amp_dtype(torch.device("cpu"))
