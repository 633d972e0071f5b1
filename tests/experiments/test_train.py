"""The trainer: resume equivalence, Ctrl-C checkpoints, divergence, schedules, run files, seeds."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal

import pytest
import torch

from _synthetic_digits import write_synthetic_mnist
from stnkit.experiments.train import TrainConfig, Trainer, TrainingDiverged, load_checkpoint, load_run, train
from stnkit.experiments.train.optim import lr_factor


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=64, n_test=32))


def _config(data_dir: str, **overrides) -> TrainConfig:
    values = dict(model="st-cnn", task="r", data_dir=data_dir, epochs=3, batch_size=16, optimizer="sgd",
                  momentum=0.9, lr=0.05, loc_lr_mult=0.5, eval_batch_size=32, seed=3,
                  model_options={"channels": [4, 8]})  # a small CNN keeps the tests fast
    return TrainConfig(**{**values, **overrides})


class _Interrupt:
    """Raises KeyboardInterrupt after optimizer step ``at`` (or at the end of epoch ``epoch``)."""

    def __init__(self, at: int | None = None, epoch: int | None = None) -> None:
        self.at, self.epoch = at, epoch

    def on_step_end(self, model, iteration, loss):
        if iteration == self.at:
            raise KeyboardInterrupt

    def on_epoch_end(self, model, epoch, metrics, run_dir):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _without_timings(rows):
    return [{k: v for k, v in r.items() if k not in ("epoch_time_s", "images_per_s", "elapsed_s")} for r in rows]


@pytest.mark.parametrize("optimizer,interrupt", [("sgd", dict(at=6)), ("sgd", dict(epoch=1)), ("adam", dict(at=6))],
                         ids=["sgd-mid-epoch", "sgd-epoch-end", "adam-mid-epoch"])
def test_resume_gives_bit_identical_weights(tmp_path, data_dir, optimizer, interrupt):
    config = _config(data_dir, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 0.003)
    full = train(config, tmp_path / "full", progress=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", callbacks=[_Interrupt(**interrupt)], progress=False)
    saved = load_checkpoint(tmp_path / "cut")
    assert saved["scheduler"]["iteration"] == (6 if "at" in interrupt else 4)
    resumed = train(config, tmp_path / "cut", resume=True, progress=False)

    a, b = load_checkpoint(tmp_path / "full"), load_checkpoint(tmp_path / "cut")
    _assert_same_state(a["model"], b["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        _assert_same_state(sa, sb)
    assert _without_timings(a["metrics"]) == _without_timings(b["metrics"])
    assert resumed["iterations"] == full["iterations"] == 12 and resumed["test_error"] == full["test_error"]
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_ctrl_c_mid_run_leaves_a_usable_checkpoint(tmp_path, data_dir):
    config = _config(data_dir)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path, callbacks=[_Interrupt(at=5)], progress=False)
    state = load_checkpoint(tmp_path)
    assert (state["epoch"], state["batch"], state["scheduler"]["iteration"]) == (1, 1, 5)
    model, loaded = load_run(tmp_path)  # the checkpoint holds the weights after step 5
    _assert_same_state(model.state_dict(), state["model"])
    assert loaded == dataclasses.replace(config, downsample=False)  # recorded with the pool decided (28x28: none)
    assert not model.training
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_real_sigint_stops_at_the_next_step_boundary(tmp_path, data_dir, default_sigint):
    class SendSigint:
        def on_step_end(self, model, iteration, loss):
            if iteration == 2:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(_config(data_dir), tmp_path, callbacks=[SendSigint()], progress=False)
    assert load_checkpoint(tmp_path)["scheduler"]["iteration"] == 2  # step 3 was not applied
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def _all_finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_huge_lr_stops_with_a_clear_message_and_keeps_the_initial_checkpoint(tmp_path, data_dir):
    config = _config(data_dir, model="cnn", lr=1e20, momentum=0.0)
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1, iteration \d+: .*last good checkpoint"):
        train(config, tmp_path, progress=False)
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 0 and _all_finite(state["model"])


@pytest.mark.parametrize("poison", ["weight", "theta"])
def test_divergence_after_an_epoch_keeps_that_epochs_checkpoint(tmp_path, data_dir, poison):
    class Poison:
        def on_epoch_end(self, model, epoch, metrics, run_dir):
            st = model.spatial_transformers[0]
            with torch.no_grad():
                if poison == "theta":  # non-finite theta: the core raises ValueError, read as divergence
                    st.regression.bias.fill_(float("inf"))
                else:
                    model.classifier[0].weight.fill_(float("nan"))

    reason = "non-finite theta" if poison == "theta" else "loss is nan"
    with pytest.raises(TrainingDiverged, match=f"epoch 2, iteration 5: {reason}"):
        train(_config(data_dir), tmp_path, callbacks=[Poison()], progress=False)
    state = load_checkpoint(tmp_path)
    assert state["epoch"] == 1 and _all_finite(state["model"])
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_run_files_follow_the_contract(tmp_path, data_dir):
    seen = []

    class Record:
        def on_train_start(self, model, run_dir):
            seen.append(("start", run_dir))

        def on_epoch_end(self, model, epoch, metrics, run_dir):
            seen.append(("epoch", epoch, sorted(metrics)))

        def on_train_end(self, model, run_dir):
            seen.append(("end", run_dir))

    config = _config(data_dir, epochs=2)
    summary = train(config, tmp_path, callbacks=[Record()], progress=False)
    keys = sorted(["epoch", "train_loss", "train_error", "test_error", "lr", "epoch_time_s", "images_per_s",
                   "elapsed_s"])
    assert seen == [("start", tmp_path), ("epoch", 1, keys), ("epoch", 2, keys), ("end", tmp_path)]
    recorded = TrainConfig(**json.loads((tmp_path / "config.json").read_text()))
    assert recorded == dataclasses.replace(config, downsample=False)  # the given config, the pool decided
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    for key in ("model", "transform", "task", "params", "test_error", "train_time_s", "epochs", "iterations"):
        assert key in summary
    assert (summary["epochs"], summary["iterations"]) == (2, 8)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(r) for r in rows] == [keys, keys] and rows[-1]["test_error"] == summary["test_error"]
    # test error = share of the 32 test images that the saved model gets wrong, recounted here
    model, _ = load_run(tmp_path)
    assert summary["params"] == sum(p.numel() for p in model.parameters())
    from stnkit.experiments.data import DistortedDigits

    x, y = next(iter(DistortedDigits("r", "test", data_dir=data_dir).batches(0, 32)))
    with torch.no_grad():
        wrong = int((model(x).argmax(1) != y).sum())
    assert summary["test_error"] == pytest.approx(100 * wrong / 32)


def test_training_learns_the_synthetic_digits(tmp_path, data_dir):
    config = _config(data_dir, model="fcn", task="none", epochs=6, optimizer="adam", lr=3e-3,
                     model_options={})
    summary = train(config, tmp_path, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert summary["test_error"] < 50  # chance is 90%


def test_seed_decides_the_weights_and_the_global_rng_is_left_alone(tmp_path, data_dir):
    before = torch.get_rng_state()
    a = Trainer(_config(data_dir, seed=1), tmp_path / "a").model.state_dict()
    b = Trainer(_config(data_dir, seed=1), tmp_path / "b").model.state_dict()
    c = Trainer(_config(data_dir, seed=2), tmp_path / "c").model.state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    _assert_same_state(a, b)
    assert not torch.equal(a["classifier.0.weight"], c["classifier.0.weight"])


def test_localisation_lr_multiplier(tmp_path, data_dir):
    trainer = Trainer(_config(data_dir, lr=0.2, loc_lr_mult=0.1), tmp_path)
    groups = {g["name"]: g for g in trainer.optimizer.param_groups}
    assert groups["classifier"]["lr"] == pytest.approx(0.2)
    assert groups["localisation"]["lr"] == pytest.approx(0.02)
    st_params = {id(p) for p in trainer.model.spatial_transformers[0].parameters()}
    assert {id(p) for p in groups["localisation"]["params"]} == st_params
    n_all = sum(1 for _ in trainer.model.parameters())
    assert len(groups["classifier"]["params"]) + len(st_params) == n_all


def test_lr_schedules():
    paper = TrainConfig(schedule="step")  # /10 every 50k of 150k iterations
    assert [lr_factor(paper, i, 150_000) for i in (0, 49_999, 50_000, 100_000, 149_999)] == pytest.approx(
        [1, 1, 0.1, 0.01, 0.01])
    every = TrainConfig(schedule="step", lr_step=10, lr_gamma=0.5)
    assert lr_factor(every, 25, 100) == pytest.approx(0.25)
    cosine = TrainConfig(schedule="cosine")
    assert [lr_factor(cosine, i, 100) for i in (0, 50, 100)] == pytest.approx([1, 0.5, 0], abs=1e-12)
    warm = TrainConfig(schedule="constant", warmup_iterations=4)
    assert [lr_factor(warm, i, 100) for i in (0, 3, 4)] == pytest.approx([0.25, 1, 1])
    assert math.isclose(lr_factor(TrainConfig(schedule="cosine", warmup_iterations=10), 4, 100),
                        0.5 * (1 + math.cos(math.pi * 0.04)) * 0.5)


def test_resume_refuses_changed_settings(tmp_path, data_dir):
    train(_config(data_dir, epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="resume: lr was 0.05 .* got 0.1"):
        Trainer(_config(data_dir, epochs=2, lr=0.1), tmp_path, resume=True)
    with pytest.raises(ValueError, match="already holds a run"):
        Trainer(_config(data_dir), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(KeyboardInterrupt):  # an overwrite stopped before its first epoch puts the old run back
        train(_config(data_dir), tmp_path, overwrite=True, callbacks=[_Interrupt(at=1)], progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    summary = train(_config(data_dir, epochs=2), tmp_path, resume=True, progress=False)  # more epochs: fine
    assert summary["epochs"] == 2 and summary["iterations"] == 8


def test_resume_of_a_model_without_st_ignores_st_settings(tmp_path, data_dir):
    train(_config(data_dir, model="fcn", model_options={}, epochs=1), tmp_path, progress=False)
    summary = train(_config(data_dir, model="fcn", model_options={}, epochs=2, loc_lr_mult=0.3, transform="tps"),
                    tmp_path, resume=True, progress=False)
    assert summary["epochs"] == 2


def test_the_progress_bar_is_a_callback_showing_the_tasks_metric_and_the_eta(tmp_path, data_dir, monkeypatch):
    import tqdm.auto

    from stnkit.experiments.train import ProgressBar

    bars = []

    class Bar:  # records what the callback asks of tqdm (tqdm itself redraws on a timer)
        def __init__(self, **kwargs):
            self.kwargs, self.updates, self.postfix, self.closed = kwargs, 0, [], False
            bars.append(self)

        def update(self, n):
            self.updates += n

        def set_postfix_str(self, text, refresh=True):
            self.postfix.append(text)

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm.auto, "tqdm", Bar)
    trainer = Trainer(_config(data_dir, epochs=2), tmp_path, progress=True)
    assert isinstance(trainer.callbacks[0], ProgressBar)
    quiet = Trainer(_config(data_dir), tmp_path / "b", progress=False)
    assert not any(isinstance(cb, ProgressBar) for cb in quiet.callbacks)
    trainer.fit()
    assert [b.kwargs["desc"] for b in bars] == ["epoch 1/2", "epoch 2/2"]
    assert all(b.updates == b.kwargs["total"] == 4 and b.closed for b in bars)  # 64 images / 16
    assert "error" in bars[0].postfix[-1] and "run ETA" in bars[0].postfix[-1]


def test_under_torchrun_the_caller_sets_up_the_process_group(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="env: this process is one of WORLD_SIZE=2.*pass its env"):
        Trainer(_config(data_dir), tmp_path)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
