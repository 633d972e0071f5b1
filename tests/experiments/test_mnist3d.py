"""The 3-D task ``mnist3d`` and its models (issue 11 item 3): the volumes against hand-built ones (numpy
extrusion, ``torch.rot90``), fixed test poses, the ST model at identity against the baseline's
flattening (closed form: the mean along depth), bad options, the grid's ``3d`` cells and a tiny
``stnkit train --task mnist3d``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _synthetic_digits import write_synthetic_mnist
from stnkit.experiments.cli import main
from stnkit.experiments.data import Digits
from stnkit.experiments.data.volumes import DigitVolumes, Poses, render, slab_thickness
from stnkit.experiments.grid import cells_of
from stnkit.experiments.models import count_parameters, create_model
from stnkit.experiments.tasks import get_task


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=64, n_test=32))


def _digits(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 28, 28), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# -- the volumes -----------------------------------------------------------------------------------
def test_identity_pose_is_the_digit_extruded():
    # size 56: the digit (half the side) covers 28 voxels, on the voxel grid; the slab is 10 voxels deep
    digits = _digits()
    assert slab_thickness(56) == 10 and slab_thickness(60) == 10 and slab_thickness(24) == 4
    volume = render(digits, Poses.identity(3), 56)
    expected = np.zeros((3, 1, 56, 56, 56), dtype=np.float32)
    expected[:, 0, 23:33, 14:42, 14:42] = digits.numpy()[:, None].astype(np.float32) / 255  # (z, y, x)
    np.testing.assert_allclose(volume.numpy(), expected, atol=1e-5)  # float32 grid rounding: 3e-6


def test_quarter_turn_about_depth_is_rot90():
    # +90 degrees about +z turns x toward y (down): a clockwise quarter turn on screen, rot90 with k=-1
    digits = _digits(1)
    turned = Poses.identity(1)
    turned = Poses(turned.axis, torch.full((1,), 90.0, dtype=torch.float64), turned.scale, turned.shift)
    upright = render(digits, Poses.identity(1), 56)
    torch.testing.assert_close(render(digits, turned, 56), torch.rot90(upright, -1, dims=(3, 4)), atol=1e-5, rtol=0)


def test_test_volumes_are_fixed_and_training_volumes_change_per_epoch():
    digits = Digits(_digits(10), torch.arange(10), "toy")
    first = [x for x, _ in DigitVolumes(digits, size=16, train=False, seed=0).batches(0, 4)]
    again = [x for x, _ in DigitVolumes(digits, size=16, train=False, seed=5).batches(3, 4)]
    assert [tuple(x.shape) for x in first] == [(4, 1, 16, 16, 16), (4, 1, 16, 16, 16), (2, 1, 16, 16, 16)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    train = DigitVolumes(digits, size=16, train=True, seed=0)
    x0, y0 = next(train.batches(0, 10))
    x0b, y0b = next(DigitVolumes(digits, size=16, train=True, seed=0).batches(0, 10))
    x1, _ = next(train.batches(1, 10))
    assert torch.equal(x0, x0b) and torch.equal(y0, y0b) and not torch.equal(x0, x1)
    assert sorted(y0.tolist()) == list(range(10)) and 0 <= float(x0.min()) and float(x0.max()) <= 1


@pytest.mark.parametrize("size", [7, 8.0, "60", True])
def test_bad_size_names_the_option(size):
    with pytest.raises(ValueError, match=r"task_options\.size: expected an int >= 8"):
        get_task("mnist3d")(size=size)


# -- the models ------------------------------------------------------------------------------------
def test_st_model_at_identity_equals_the_baseline():
    shape = (1, 16, 16, 16)
    torch.manual_seed(0)
    st = create_model("st3d-cnn", in_shape=shape, num_classes=10, transform="affine3d", channels=(4, 8)).double()
    flat = create_model("flat-cnn", in_shape=shape, num_classes=10, channels=(4, 8)).double()
    flat.classifier.load_state_dict(st.classifier.state_dict())
    x = torch.rand(3, *shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(st.transform(x), x.mean(2))  # closed form: identity warp, then the mean over depth
    torch.testing.assert_close(flat.transform(x), x.mean(2))
    torch.testing.assert_close(st(x), flat(x))
    assert count_parameters(st) > count_parameters(flat) == count_parameters(st.classifier)


def test_models_refuse_images_and_2d_families():
    with pytest.raises(ValueError, match=r"in_shape: expected \(C, D, H, W\) for model 'st3d-cnn'"):
        create_model("st3d-cnn", in_shape=(1, 28, 28), num_classes=10, transform="affine3d")
    with pytest.raises(ValueError, match="transform: st3d-cnn warps volumes"):
        create_model("st3d-cnn", in_shape=(1, 16, 16, 16), num_classes=10, transform="affine")
    with pytest.raises(ValueError, match=r"in_shape: expected \(C, H, W\) for model 'cnn'"):
        create_model("cnn", in_shape=(1, 16, 16, 16), num_classes=10)


# -- the grid and the command line -----------------------------------------------------------------
def test_grid_3d_cells():
    assert [c.name for c in cells_of("3d")] == ["mnist3d_flat-cnn", "mnist3d_st3d-cnn_affine3d"]
    assert not any(c.task == "mnist3d" for c in cells_of("all"))  # `all` is the paper's tables


def test_tiny_train_run_end_to_end(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "mnist3d", "--model", "st3d-cnn", "--epochs", "1", "--limit", "64",
                 "--test-limit", "32", "--batch-size", "32", "--threads", "1", "--data-dir", data_dir,
                 "--out", str(run), "--no-progress", "--task-options", '{"size": 24}',
                 "--model-options", '{"channels": [4, 8]}']) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["model"], summary["task"], summary["in_shape"]) == ("st3d-cnn", "mnist3d", [1, 24, 24, 24])
    assert summary["train_images"] == 64 and summary["test_images"] == 32 and summary["size"] == 24
    assert 0 <= summary["test_error"] <= 100
    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["error"] == pytest.approx(summary["test_error"]) and result["n"] == 32
    with pytest.raises(SystemExit) as exit_info:
        main(["show", str(run), "--out", str(tmp_path / "panel.png")])
    assert exit_info.value.code == 2 and "stnkit show draws models of images" in capsys.readouterr().err
