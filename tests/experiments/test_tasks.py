"""The task layer: every registered task through the one contract checker (tests/contract.py), what
each declares, its data per epoch, the generic trainer against a plain PyTorch loop written here,
and the deprecated ``dataset`` name."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from _synthetic_digits import write_synthetic_mnist
from contract import Case, check_contract
from stnkit import transforms
from stnkit.experiments.cli import main
from stnkit.experiments.data import DistortedDigits
from stnkit.experiments.models import create_model, list_models
from stnkit.experiments.tasks import DigitTask, Task, get_task, list_tasks
from stnkit.experiments.train import TrainConfig, Trainer, load_run

OLD_RUN = Path(__file__).parent / "fixtures" / "run-stn-0.1.0"
SMALL_CNN = {"channels": [4, 8]}
# Tasks served as (x, y) classification batches; the others test their own data and steps
# (tests/experiments/test_coloc.py) through the same contract checker.
DIGIT_TASKS = [name for name in list_tasks() if issubclass(get_task(name), DigitTask)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=48, n_test=24))


SMALL_SEQUENCE = {"width": 0.0625, "dropout": 0.0}  # the multi-digit models at 1/16 width


def _model(task: Task, name: str = "st-cnn") -> torch.nn.Module:
    torch.manual_seed(0)
    name = name if task.accepts(name) else task.models[-1]
    options = SMALL_CNN if name in ("cnn", "st-cnn") else SMALL_SEQUENCE
    return create_model(name, in_shape=task.in_shape, num_classes=task.num_outputs,
                        downsample=max(task.in_shape[1:]) > 28, **options).double().eval()


def _labels(task: Task, n: int, generator: torch.Generator) -> torch.Tensor:
    """Random labels of ``n`` samples: ``(n,)``, or ``(n, positions)`` for multi-digit tasks."""
    return torch.randint(0, task.num_outputs, (n, *((task.positions,) if hasattr(task, "positions") else ())),
                         generator=generator)


# -- the contract ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DIGIT_TASKS)
def test_task_contract(name):
    task = get_task(name)()
    model = _model(task)

    def step(t, x, y):
        result = t.step(model, (x, y))
        return result.loss, result.count, result.sums

    def make_inputs(g):
        x = torch.rand(3, *task.in_shape, generator=g, dtype=torch.float64)
        return x, _labels(task, 3, g)

    check_contract(Case(f"task {name}", task, step, make_inputs),
                   checks=("inplace", "dtype_device", "additive", "empty", "pickle", "determinism"))


@pytest.mark.parametrize("name", list_tasks())
def test_task_declares_what_the_trainer_and_the_commands_read(name):
    cls = get_task(name)
    assert cls.name == name and cls.title and cls.pictures
    assert cls.metrics and len({m.name for m in cls.metrics}) == len(cls.metrics)
    assert all(isinstance(m.lower_is_better, bool) for m in cls.metrics)
    assert cls.scored_on in ("test", "train")
    assert cls.models and set(cls.models) <= set(list_models())
    assert all(cls.accepts(m) for m in cls.models) and not cls.accepts("no-such-model")
    assert set(cls.recipe) <= {f.name for f in dataclasses.fields(TrainConfig)}
    for (model, transform), value in cls.paper.items():
        assert model in list_models() and transform in (None, "*", *transforms.list_transforms())
        assert 0 < value <= 100 and cls.paper_value(model, transform or "affine") == value
        assert cls.paper_value(model, transform or "affine", digits="fashion-mnist") is None  # MNIST only


def test_the_papers_numbers_are_the_tasks():
    # Table 1 (RTS, E), the TC numbers of section 4.1 (any family) and Table 4 (addition), by hand.
    assert get_task("rts").paper_value("st-cnn", "affine") == 0.5
    assert get_task("e").paper_value("st-cnn", "tps") == 1.1
    assert get_task("tc").paper_value("st-cnn", "projective") == 1.7
    assert get_task("addition").paper_value("2xst-fcn", "tps") == 5.8
    assert get_task("addition").paper_value("cnn", "tps") == 14.7  # no transformer: the family does not matter
    assert get_task("t").paper_value("cnn", None) is None


@pytest.mark.parametrize("name", DIGIT_TASKS + ["mnist-sequences", "mnist-sequences-128"])  # SVHN: test_svhn.py
def test_task_data_per_epoch(name, data_dir):
    task = get_task(name)(data_dir=data_dir, seed=3, limit=10, test_limit=6)

    def epoch(t: Task, e: int, batch_size: int, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [b for r in range(world_size) for b in t.train_data().batches(e, batch_size, r, world_size)]
        order = sorted(range(len(parts)), key=lambda i: (i % math.ceil(10 / batch_size), i))  # rank chunks in order
        return torch.cat([parts[i][0] for i in order]), torch.cat([parts[i][1] for i in order])

    x, y = epoch(task, 1, 10)
    assert tuple(x.shape) == (10, *task.in_shape) and int(y.max()) < task.num_outputs
    for other in (epoch(task, 1, 3), epoch(task, 1, 4, world_size=2)):  # a sample's draw: (seed, epoch, index)
        torch.testing.assert_close(other[0], x, atol=1e-5, rtol=0)  # batched warps round alike to ~1e-7
        assert torch.equal(other[1], y)
    assert not torch.equal(epoch(task, 2, 10)[0], x)
    assert not torch.equal(epoch(get_task(name)(data_dir=data_dir, seed=4, limit=10), 1, 10)[0], x)
    test = torch.cat([b[0] for b in task.eval_data().batches(0, 4)])
    reseeded = get_task(name)(data_dir=data_dir, seed=4, limit=10, test_limit=6)
    assert len(test) == 6 and torch.equal(torch.cat([b[0] for b in reseeded.eval_data().batches(0, 6)]), test)


@pytest.mark.parametrize("module", ["stnkit.experiments.tasks", "stnkit.experiments.tasks.digits"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


# -- the generic trainer equals a plain loop -------------------------------------------------------
@pytest.mark.parametrize("task,model", [("r", "st-cnn"), ("addition", "2xst-fcn")])
def test_the_generic_trainer_equals_a_plain_torch_loop(task, model, data_dir, tmp_path):
    config = TrainConfig(model=model, task=task, data_dir=data_dir, epochs=1, batch_size=16, optimizer="sgd",
                         lr=0.05, momentum=0.9, schedule="constant", seed=2, eval_batch_size=24,
                         model_options=SMALL_CNN if model.endswith("cnn") else {"hidden": [16]})
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.fit()

    # The reference: the same init (seeded as documented), the same batches, a plain SGD loop.
    data = DistortedDigits(task, "train", data_dir=data_dir, seed=2)
    in_shape = (data.channels, *data.size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        reference = create_model(model, in_shape=in_shape, num_classes=data.num_classes,
                                 downsample=max(data.size) > 28,
                                 **config.model_options)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    losses, wrong = [], 0
    for x, y in data.batches(0, 16):  # 48 images: three steps
        logits = reference(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item() * len(y))
        wrong += int((logits.argmax(1) != y).sum())
    assert trainer.state.iteration == 3
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[key], value, atol=1e-6, rtol=1e-5, msg=key)
    row = trainer.state.metrics[0]
    assert row["train_loss"] == pytest.approx(sum(losses) / 48, rel=1e-6)
    assert row["train_error"] == pytest.approx(100 * wrong / 48)
    test = DistortedDigits(task, "test", data_dir=data_dir, seed=2)
    with torch.no_grad():
        x, y = next(test.batches(0, 24))
        expected = 100 * float((reference.eval()(x).argmax(1) != y).float().mean())
    assert row["test_error"] == pytest.approx(expected)


def test_a_tasks_recipe_sits_between_the_defaults_and_the_config_file_and_options(tmp_path, monkeypatch):
    from stnkit.experiments.cli import _config_from_args, build_parser

    monkeypatch.setattr(get_task("p"), "recipe", {"lr": 0.123, "epochs": 7, "optimizer": "adam"})
    (tmp_path / "c.json").write_text(json.dumps({"epochs": 3}))
    args = build_parser().parse_args(["train", "--task", "p", "--config", str(tmp_path / "c.json"),
                                      "--optimizer", "sgd"])
    config = _config_from_args(args)
    assert (config.lr, config.epochs, config.optimizer) == (0.123, 3, "sgd")
    assert _config_from_args(build_parser().parse_args(["train", "--task", "r"])).lr == TrainConfig().lr


# -- the deprecated name `dataset` -----------------------------------------------------------------
def test_dataset_is_read_as_task_with_a_deprecation_warning():
    with pytest.warns(FutureWarning, match="'dataset' is deprecated and now called 'task'"):
        assert TrainConfig.from_dict({"dataset": "tc"}).task == "tc"
    with pytest.warns(FutureWarning, match="now called 'task'"):
        assert TrainConfig(dataset="e").task == "e"
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="dataset: the deprecated name of task"):
        TrainConfig.from_dict({"dataset": "r", "task": "e"})
    assert "dataset" not in TrainConfig(task="r").to_dict()


def test_an_old_run_with_dataset_in_its_config_loads_with_the_warning():
    assert json.loads((OLD_RUN / "config.json").read_text())["dataset"] == "r"
    with pytest.warns(FutureWarning, match="now called 'task'"):
        _, config = load_run(OLD_RUN)
    assert config.task == "r"


def test_the_dataset_flag_and_config_key_still_train_with_one_warning_line(data_dir, tmp_path, capsys):
    (tmp_path / "old.json").write_text(json.dumps({"model": "cnn", "dataset": "r"}))
    for argv in (["--dataset", "r", "--model", "cnn"], ["--config", str(tmp_path / "old.json")]):
        out = tmp_path / argv[0].strip("-")
        assert main(["train", *argv, "--data-dir", data_dir, "--out", str(out), "--epochs", "1", "--batch-size", "16",
                     "--no-progress", "--model-options", json.dumps(SMALL_CNN)]) == 0
        err = capsys.readouterr().err
        warnings = [line for line in err.splitlines() if "deprecated" in line]
        assert warnings == ["stnkit train: warning: 'dataset' is deprecated and now called 'task' (--task on the "
                            "command line, \"task\" in config files); 'dataset' still works for now"]
        saved = json.loads((out / "config.json").read_text())
        assert saved["task"] == "r" and "dataset" not in saved
