"""The ``ic-st-cnn`` model (IC-STN in front of the CNN classifier): steps=1 is ``st-cnn``, K steps
warp the input once by the product of the K update matrices, non-matrix families are refused, the
contract holds, and it trains and is drawn end to end (``stnkit train`` then ``stnkit show``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from _synthetic_digits import write_synthetic_mnist
from contract import Case, check_contract
from stnkit import IterativeSpatialTransformer
from stnkit.experiments.cli import main
from stnkit.experiments.models import create_model
from stnkit.experiments.train import load_run
from stnkit.experiments.viz.views import apply_transformers

D = torch.float64
SMALL = {"channels": (4, 8)}


def _randomise(module, seed, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)


def _images(n, size, seed):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed), dtype=D)


def test_one_step_is_st_cnn():
    torch.manual_seed(0)
    plain = create_model("st-cnn", in_shape=(1, 28, 28), num_classes=10, **SMALL).double()
    _randomise(plain.spatial_transformers[0].regression, 1)  # away from the identity init
    ic = create_model("ic-st-cnn", in_shape=(1, 28, 28), num_classes=10, steps=1, **SMALL).double()
    ic.load_state_dict(plain.state_dict())  # same parameters: IC-STN adds none
    x = _images(3, 28, 2)
    assert torch.equal(ic(x), plain(x))


@pytest.mark.parametrize("transform", ["affine", "attention"])
def test_k_steps_warp_the_input_once_by_the_product_of_the_updates(transform):
    torch.manual_seed(0)
    model = create_model("ic-st-cnn", in_shape=(1, 42, 42), num_classes=10, transform=transform, steps=3,
                         downsample=True, **SMALL).double()
    st = model.spatial_transformers[0]
    _randomise(st, 3)
    updates = []
    st.regression.register_forward_hook(lambda m, i, o: updates.append(o.detach()))
    x = _images(2, 42, 4)
    logits = model(x)
    assert len(updates) == 3
    product = torch.eye(3, dtype=D).expand(2, 3, 3)
    for update in updates:
        product = product @ st.transform.matrix(update)  # plain matmul of the step matrices
    grid = F.affine_grid(product[:, :2], [2, 1, 42, 42], align_corners=False)  # PyTorch's own warp
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    torch.testing.assert_close(model.transform(x), warped, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(logits, model.classifier(F.avg_pool2d(warped, 2)), atol=1e-12, rtol=1e-10)


def test_non_matrix_families_and_bad_steps_are_refused():
    with pytest.raises(ValueError, match=r"transform: .*matrix famil.*'tps'"):
        create_model("ic-st-cnn", in_shape=(1, 28, 28), num_classes=10, transform="tps")
    with pytest.raises(ValueError, match=r"steps: expected an int >= 1, got 0"):
        create_model("ic-st-cnn", in_shape=(1, 28, 28), num_classes=10, steps=0)
    with pytest.raises(ValueError, match=r"options: model 'ic-st-cnn' accepts steps, channels; got hidden"):
        create_model("ic-st-cnn", in_shape=(1, 28, 28), num_classes=10, hidden=(8, 8))


def test_default_steps_are_ic_stns():
    model = create_model("ic-st-cnn", in_shape=(1, 28, 28), num_classes=10)
    (st,) = model.spatial_transformers
    assert isinstance(st, IterativeSpatialTransformer) and st.steps == 4


def test_contract_projective_three_steps_on_rts_inputs():
    torch.manual_seed(0)
    model = create_model("ic-st-cnn", in_shape=(1, 42, 42), num_classes=10, transform="projective", steps=3,
                         downsample=True, **SMALL).double().eval()
    _randomise(model.spatial_transformers[0].regression, 5, scale=0.01)
    check_contract(Case("model ic-st-cnn (projective, 3 steps)", model, lambda m, x: m(x),
                        lambda g: (torch.rand(3, 1, 42, 42, generator=g, dtype=D),)))


def test_pictures_show_the_region_of_the_final_composed_warp():
    torch.manual_seed(0)
    model = create_model("ic-st-cnn", in_shape=(1, 28, 28), num_classes=10, steps=3, **SMALL)
    st = model.spatial_transformers[0]
    _randomise(st, 6)
    x = _images(4, 28, 7).float()
    (view,) = apply_transformers(model, x)
    with torch.no_grad():
        out, thetas = st(x, return_thetas=True)
    assert not torch.allclose(thetas[:, 0], thetas[:, -1], atol=1e-3)  # the steps did move the warp
    torch.testing.assert_close(view.theta, thetas[:, -1])
    torch.testing.assert_close(view.output, out)
    # The outline's corners are the output's corners mapped by the final matrix, in input pixels.
    m = st.transform.matrix(thetas[:, -1])  # (4, 3, 3)
    corners = torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]])
    mapped = (m @ corners.T).transpose(1, 2)[..., :2]  # (4, 4, 2) normalised, align_corners=False
    pixels = (mapped + 1) * 28 / 2 - 0.5
    torch.testing.assert_close(view.region.corners, pixels, atol=1e-4, rtol=1e-5)  # top-left, clockwise


def test_trains_and_shows_end_to_end(tmp_path):
    data = write_synthetic_mnist(tmp_path / "data", n_train=64, n_test=16)
    run = tmp_path / "run"
    assert main(["train", "--model", "ic-st-cnn", "--task", "rts", "--data-dir", str(data), "--epochs", "1",
                 "--batch-size", "32", "--optimizer", "adam", "--lr", "0.01", "--threads", "1",
                 "--model-options", '{"steps": 2, "channels": [4, 8]}', "--out", str(run),
                 "--no-progress", "--no-animation"]) == 0
    model, config = load_run(run)
    (st,) = model.spatial_transformers
    assert config.model == "ic-st-cnn" and isinstance(st, IterativeSpatialTransformer) and st.steps == 2
    assert st.regression.weight.abs().sum() > 0  # initialised to zero: the loss reached the localisation net
    assert main(["show", str(run), "--n", "4", "--out", str(tmp_path / "panel.png")]) == 0
    panel = np.asarray(Image.open(tmp_path / "panel.png").convert("RGB"))
    assert panel.std() > 20
