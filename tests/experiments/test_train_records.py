"""An epoch's record (train/records.py): the metrics row and the log line, against hand-computed values."""

from __future__ import annotations

import pytest

from stnkit.experiments.tasks import get_task
from stnkit.experiments.train.records import epoch_line, epoch_row
from stnkit.experiments.train.state import EpochTotals


def test_epoch_row_of_a_digit_task_by_hand():
    task = get_task("rts")()  # no data is loaded
    totals = EpochTotals(loss=50.0, count=100.0, seconds=4.0, sums={"correct": 90.0})
    row = epoch_row(task, totals, {"error": 7.5, "n": 1000}, epoch=3, lr=0.01, elapsed=12.0)
    assert row == {
        "epoch": 3,
        "train_loss": 0.5,
        "train_error": pytest.approx(10.0),
        "test_error": 7.5,
        "lr": 0.01,
        "epoch_time_s": 4.0,
        "images_per_s": 25.0,
        "elapsed_s": 12.0,
    }
    assert list(row)[:4] == ["epoch", "train_loss", "train_error", "test_error"]  # the metrics.jsonl order


def test_epoch_row_without_an_evaluation_and_without_samples():
    row = epoch_row(get_task("rts")(), EpochTotals(), None, epoch=1, lr=0.1, elapsed=0.0)
    assert row["test_error"] is None and row["train_loss"] == 0.0 and row["images_per_s"] == 0.0


def test_epoch_line_by_hand():
    task = get_task("rts")()
    row = {
        "epoch": 2,
        "train_loss": 0.12345,
        "train_error": 3.1,
        "test_error": None,
        "lr": 0.01,
        "epoch_time_s": 12.34,
        "images_per_s": 4875.4,
        "elapsed_s": 20.0,
    }
    assert epoch_line(task, row, 10) == "epoch 2/10: train loss 0.1235, train error 3.10%, 12.3 s (4875 img/s)"
