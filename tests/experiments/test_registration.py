"""The registration task (issue 13 item 6): Dice against hand-computed masks, the same-class pairs,
the U-Net model (identity at start, smoothness closed form), the task through the one contract
checker, a few steps that register a shifted square, and a tiny ``stnkit train --task registration``."""

from __future__ import annotations

import json

import pytest
import torch

from _synthetic_digits import write_synthetic_mnist
from contract import Case, check_contract
from stnkit.experiments.cli import main
from stnkit.experiments.data import Digits
from stnkit.experiments.data.pairs import DigitPairs, same_class_partners
from stnkit.experiments.models import create_model
from stnkit.experiments.tasks import get_task
from stnkit.experiments.tasks.registration import dice

SMALL = {"channels": [4, 8]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=40, n_test=20))


def _model(transform: str = "velocity", dtype=torch.float64) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("reg-unet", in_shape=(2, 28, 28), num_classes=2, transform=transform, **SMALL).to(dtype)


# -- Dice ------------------------------------------------------------------------------------------
def test_dice_against_hand_computed_masks():
    a = torch.zeros(4, 3, 3, dtype=torch.bool)
    b = torch.zeros(4, 3, 3, dtype=torch.bool)
    a[0, 0, :2] = True; b[0, 0, 1:] = True  # noqa: E702  2 and 2 pixels, 1 shared: 2*1/4
    a[1, :, :] = True; b[1, 1, 1] = True  # noqa: E702  9 and 1, 1 shared: 2/10
    a[2, 2, 2] = True  # noqa: E702  1 and 0: 0
    # sample 3: both empty -> 1 by convention
    torch.testing.assert_close(dice(a, b), torch.tensor([0.5, 0.2, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(dice(b, a), dice(a, b))
    with pytest.raises(ValueError, match="b: expected"):
        dice(a, b[:2])


# -- the pairs -------------------------------------------------------------------------------------
def test_partners_are_another_digit_of_the_same_class():
    labels = torch.tensor([3, 1, 3, 3, 1, 7, 3])
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        p = same_class_partners(labels, g)
        assert torch.equal(labels[p], labels)
        assert p[5] == 5 and bool((p[torch.arange(7) != 5] != torch.arange(7)[torch.arange(7) != 5]).all())
    seen = {int(same_class_partners(labels, torch.Generator().manual_seed(s))[0]) for s in range(30)}
    assert seen == {2, 3, 6}  # every other 3 is drawn


def _toy_digits(n: int = 12) -> Digits:
    images = (torch.arange(n, dtype=torch.uint8) * 20).view(n, 1, 1).expand(n, 28, 28).clone()
    return Digits(images, torch.arange(n) % 3, "toy")


def test_pairs_per_epoch_and_fixed_test_pairs():
    digits = _toy_digits()
    train = DigitPairs(digits, seed=2)
    full = [torch.cat(t) for t in zip(*train.batches(1, 12))]
    split = [list(train.batches(1, 4, r, 2)) for r in range(2)]
    glued = [torch.cat([torch.cat([split[0][i][k], split[1][i][k]]) for i in range(3)]) for k in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(glued, full))  # ranks' chunks make the global batches
    assert sorted(full[0][:, 0, 0, 0].tolist()) == sorted(digits.images[:, 0, 0].div(255).float().tolist())
    value_class = {int(v): int(c) for v, c in zip(digits.images[:, 0, 0], digits.labels)}
    assert all(value_class[round(float(m) * 255)] == value_class[round(float(f) * 255)]
               for m, f in zip(full[0][:, 0, 0, 0], full[1][:, 0, 0, 0]))
    assert not torch.equal(torch.cat([b[1] for b in train.batches(2, 12)]), full[1])
    tests = [torch.cat([b[1] for b in DigitPairs(digits, train=False, seed=s).batches(e, 5)]) for s, e in ((0, 0), (9, 4))]
    assert torch.equal(*tests)  # fixed test pairs, whatever the seed and epoch


# -- the model -------------------------------------------------------------------------------------
@pytest.mark.parametrize("transform", ["displacement", "velocity"])
def test_model_starts_as_the_identity_and_refuses_other_families(transform):
    model = _model(transform)
    x = torch.rand(3, 2, 28, 28, dtype=torch.float64)
    warped, theta = model(x, return_theta=True)
    torch.testing.assert_close(warped, x[:, :1], atol=1e-10, rtol=0)  # bilinear at the pixel centres
    assert theta.abs().max() == 0 and model.field(x).shape == (3, 2, 28, 28)
    with pytest.raises(ValueError, match="transform"):
        create_model("reg-unet", in_shape=(2, 28, 28), num_classes=2, transform="affine")
    with pytest.raises(ValueError, match="in_shape"):
        create_model("reg-unet", in_shape=(1, 28, 28), num_classes=2, transform=transform)


def test_smoothness_closed_form():
    # u_x = a * x (normalised units), u_y = 0: du_x/dx = a everywhere, so the mean over both
    # components of the squared derivatives is a^2 / 2.
    model = _model("displacement")
    a = 0.3
    xs = (torch.arange(14, dtype=torch.float64) + 0.5) * 2 / 14 - 1  # node centres
    field = torch.zeros(2, 2, 14, 14, dtype=torch.float64)
    field[:, 0] = a * xs
    theta = field.flatten(1)
    torch.testing.assert_close(model.smoothness(theta), torch.full((2,), a * a / 2, dtype=torch.float64))


# -- the task --------------------------------------------------------------------------------------
def test_task_contract():
    task = get_task("registration")()
    model = _model()
    with torch.no_grad():  # a non-zero field, so the checks see a real warp
        model.st.localisation.out.weight.normal_(0, 0.01, generator=torch.Generator().manual_seed(0))

    def step(t, moving, fixed, labels):
        result = t.step(model, (moving, fixed, labels))
        return result.loss, result.count, result.sums

    def make_inputs(g):
        return (torch.rand(3, 1, 28, 28, generator=g, dtype=torch.float64),
                torch.rand(3, 1, 28, 28, generator=g, dtype=torch.float64), torch.zeros(3, dtype=torch.long))

    check_contract(Case("task registration", task, step, make_inputs),
                   checks=("inplace", "dtype_device", "additive", "empty", "pickle", "determinism"))


def test_metrics_before_warping_by_hand():
    task = get_task("registration")()
    moving = torch.zeros(2, 1, 28, 28, dtype=torch.float64)
    fixed = torch.zeros(2, 1, 28, 28, dtype=torch.float64)
    moving[:, :, 4:8, 4:8] = 1.0  # 16 pixels
    fixed[:, :, 6:10, 4:8] = 1.0  # 16 pixels, 8 shared
    result = task.evaluate(_model(), [(moving, fixed, torch.zeros(2, dtype=torch.long))])
    assert result["n"] == 2 and result["folding"] == 0
    assert result["dice_before"] == pytest.approx(0.5) and result["dice"] == pytest.approx(0.5)  # identity
    assert result["mse_before"] == pytest.approx(16 / 784) and result["mse"] == pytest.approx(16 / 784)


@pytest.mark.parametrize("transform", ["displacement", "velocity"])
def test_a_few_steps_register_a_shifted_square(transform):
    task = get_task("registration")(smooth=0.01)
    model = _model(transform, torch.float32)
    moving = torch.zeros(1, 1, 28, 28)
    fixed = torch.zeros(1, 1, 28, 28)
    moving[:, :, 8:18, 8:18] = 1.0
    fixed[:, :, 10:20, 9:19] = 1.0  # shifted by (2, 1) pixels
    batch = (moving, fixed, torch.zeros(1, dtype=torch.long))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(25):
        loss = task.step(model, batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result = task.evaluate(model, [batch])
    assert result["dice"] > 0.9 > result["dice_before"] and result["mse"] < 0.25 * result["mse_before"]  # 1.0, 0.72; 0.02x


def test_tiny_train_run_end_to_end(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "registration", "--transform", "displacement", "--data-dir", data_dir,
                 "--out", str(run), "--epochs", "1", "--batch-size", "8", "--threads", "1", "--no-animation",
                 "--model-options", json.dumps(SMALL), "--task-options", '{"smooth": 0.1}']) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["model"], summary["task"], summary["in_shape"]) == ("reg-unet", "registration", [2, 28, 28])
    assert summary["train_images"] == 40 and summary["test_images"] == 20 and summary["smooth"] == 0.1
    assert 0 <= summary["test_dice"] <= 1 and 0 <= summary["test_folding"] <= 100
    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["dice"] == pytest.approx(summary["test_dice"]) and result["n"] == 20
