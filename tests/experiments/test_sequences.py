"""Multi-digit recognition (issue 9): the sequence metric and loss against hand-computed cases, the
heads, the series spatial transformers (identity at init, float64 gradcheck), the MNIST-sequence
generator (determinism, ranges measured on generated images) and a tiny training run of each model."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from _synthetic_digits import write_synthetic_mnist
from stnkit import SpatialTransformer
from stnkit.experiments.data import Digits
from stnkit.experiments.data.sequences import DigitSequences
from stnkit.experiments.models import create_model
from stnkit.experiments.models.multidigit import MultiDigitNet
from stnkit.experiments.tasks.sequences import (IGNORE, NONE, SEQUENCE_MODELS, sequence_counts, sequence_loss,
                                                sequence_metrics)
from stnkit.experiments.train import TrainConfig, Trainer
from stnkit.localisation import fc_localisation

TINY = {"width": 0.0625, "dropout": 0.0}


def _one_hot_logits(predictions: list[list[int]]) -> torch.Tensor:
    """Logits (N, P, 11) whose argmax is ``predictions``."""
    p = torch.tensor(predictions)
    return F.one_hot(p, 11).float() * 5.0


# -- the metric and the loss -----------------------------------------------------------------------
def test_sequence_error_by_hand():
    labels = torch.tensor([[1, 2, NONE, NONE, NONE],   # "12"
                           [7, NONE, NONE, NONE, NONE],  # "7"
                           [1, 2, 3, 4, 5],            # "12345"
                           [0, 0, NONE, NONE, NONE]])  # "00"
    predicted = [[1, 2, NONE, NONE, NONE],   # right
                 [7, 7, NONE, NONE, NONE],   # a "none" read as a digit: wrong
                 [1, 2, 3, 4, 6],            # last digit wrong
                 [0, 0, NONE, NONE, NONE]]   # right
    sums = sequence_counts(_one_hot_logits(predicted), labels)
    assert sums == {"correct": 2.0, "pos_1": 4.0, "pos_2": 3.0, "pos_3": 4.0, "pos_4": 4.0, "pos_5": 3.0}
    metrics = sequence_metrics(sums, 4)
    assert metrics["error"] == pytest.approx(50.0)
    assert [metrics[f"acc_{k}"] for k in range(1, 6)] == pytest.approx([100, 75, 100, 100, 75])


def test_sequence_loss_is_the_sum_of_the_positions_cross_entropies():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=g, dtype=torch.float64)
    labels = torch.tensor([[3, NONE, NONE, NONE, NONE], [1, 2, 3, 4, 5], [9, 9, 9, NONE, NONE]])
    # By hand: -log softmax of the labelled class, summed over every position and sample.
    expected = 0.0
    for n in range(3):
        for k in range(5):
            row = logits[n, k]
            expected += float(torch.log(torch.exp(row).sum()) - row[labels[n, k]])
    assert float(sequence_loss(logits, labels)) == pytest.approx(expected, rel=1e-12)


def test_length_head_scores_a_too_long_number_as_more():
    labels = torch.tensor([[4, 2, NONE, NONE, NONE], [IGNORE] * 5])  # "42", and a 6-digit number
    digits = _one_hot_logits([[4, 2, NONE, NONE, NONE], [0, 0, 0, 0, 0]])
    length = torch.zeros(2, 1, 11)
    length[0, 0, 2] = 5.0  # length 2: right
    length[1, 0, 6] = 5.0  # "more": right
    logits = torch.cat([digits, length], dim=1)  # (2, 6, 11)
    assert sequence_counts(logits, labels)["correct"] == 2.0
    length[1, 0, 6], length[1, 0, 5] = 0.0, 5.0  # read as five digits: wrong
    assert sequence_counts(torch.cat([digits, length], dim=1), labels)["correct"] == 1.0
    # The loss: the "more" sample's digits are ignored; the length term is a 7-way cross-entropy.
    loss = sequence_loss(torch.cat([digits, length], dim=1), labels)
    by_hand = (F.cross_entropy(digits[0], labels[0], reduction="sum")
               + F.cross_entropy(length[:, 0, :7], torch.tensor([2, 6]), reduction="sum"))
    assert float(loss) == pytest.approx(float(by_hand), rel=1e-6)


# -- the models ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SEQUENCE_MODELS)
@pytest.mark.parametrize("length_head", [False, True])
def test_heads_shapes(name, length_head):
    model = create_model(name, in_shape=(1, 64, 64), num_classes=11, length_head=length_head, **TINY)
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 5 + length_head, 11)
    assert len(model.spatial_transformers) == {"multidigit-cnn": 0, "st-cnn-single": 1, "st-cnn-multi": 4}[name]


def test_the_multidigit_cnn_layers_as_documented():
    # Full width: 8 conv 5x5 (48 ... 192), 4 pools: 64 -> 4; three FC 3072; five 11-way heads.
    model = create_model("multidigit-cnn", in_shape=(3, 64, 64), num_classes=11)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [48, 64, 128, 160, 192, 192, 192, 192]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (192 * 4 * 4, 3072), (3072, 3072), (3072, 3072), (3072, 55)]


def test_prior_bias_starts_the_heads_at_the_generators_label_frequencies():
    # Reference: the frequencies of "none" and of each digit per position over 20,000 generated lengths.
    digits = Digits(torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10), "zeros")
    length = DigitSequences("train", digits=digits).make_params(20000, torch.Generator().manual_seed(0))["length"]
    none = torch.stack([(length <= k).float().mean() for k in range(5)])  # (5,)
    model = create_model("multidigit-cnn", in_shape=(1, 64, 64), num_classes=11, prior_bias=True, **TINY)
    probs = model.heads.bias.detach().view(5, 11).exp()
    torch.testing.assert_close(probs[1:, 10], none[1:], atol=0.01, rtol=0)
    torch.testing.assert_close(probs[:, :10], ((1 - none) / 10)[:, None].expand(5, 10), atol=0.01, rtol=0)
    assert probs[0, 10] == pytest.approx(0.01)  # never "none": floored


@pytest.mark.parametrize("readout, features", [("flatten", 12 * 4 * 4), ("column-max", 12 * 4), ("max", 12),
                                               ("avg", 12)])
def test_readouts_pool_the_last_map(readout, features):
    model = create_model("multidigit-cnn", in_shape=(1, 64, 64), num_classes=11, readout=readout,
                         fc_batch_norm=True, **TINY).eval()
    first = model.fc[1]
    assert isinstance(first, torch.nn.Linear) and first.in_features == features
    assert isinstance(model.fc[2], torch.nn.BatchNorm1d)
    x = torch.rand(2, 1, 64, 64)
    seen = []
    first.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    maps = x
    for conv in model.convs:
        maps = conv(maps)  # (2, 12, 4, 4)
    model(x)
    reference = {"flatten": maps.flatten(1), "column-max": F.max_pool2d(maps, (4, 1)).flatten(1),
                 "max": F.adaptive_max_pool2d(maps, 1).flatten(1), "avg": F.adaptive_avg_pool2d(maps, 1).flatten(1)}
    torch.testing.assert_close(seen[0], reference[readout])


@pytest.mark.parametrize("name", ["st-cnn-single", "st-cnn-multi"])
def test_series_transformers_are_the_identity_at_init(name):
    torch.manual_seed(0)
    model = create_model(name, in_shape=(1, 32, 32), num_classes=11, **TINY).eval()
    plain = MultiDigitNet((1, 32, 32), **TINY).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("series.")})
    x = torch.rand(3, 1, 32, 32)
    logits, thetas = model(x, return_thetas=True)
    identity = torch.tensor([1.0, 0, 0, 0, 1, 0])
    assert all(torch.allclose(t, identity.expand_as(t)) for t in thetas)
    torch.testing.assert_close(logits, plain(x), atol=1e-5, rtol=1e-5)


def test_st_cnn_multi_warps_the_feature_maps_it_sits_on():
    model = create_model("st-cnn-multi", in_shape=(1, 32, 32), num_classes=11, **TINY)
    seen = []
    for st in model.spatial_transformers:
        st.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    model(torch.rand(2, 1, 32, 32))
    c1, c2, c3 = (max(1, round(c * TINY["width"])) for c in (48, 64, 128))
    assert seen == [(2, 1, 32, 32), (2, c1, 16, 16), (2, c2, 16, 16), (2, c3, 8, 8)]


def test_gradcheck_of_two_transformers_in_series_on_a_feature_map():
    torch.manual_seed(0)
    sts = [SpatialTransformer(fc_localisation((3, 6, 6), hidden=(4, 4)), "affine").double() for _ in range(2)]
    for st, bias in zip(sts, ([0.9, 0.1, 0.05, -0.1, 0.8, 0.0], [1.1, 0.0, -0.1, 0.2, 0.9, 0.1])):
        with torch.no_grad():  # away from the identity, so the sampling is not on pixel centres
            st.regression.bias.copy_(torch.tensor(bias))
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    biases = [st.regression.bias.detach().clone().requires_grad_(True) for st in sts]
    params = [dict(st.named_parameters()) for st in sts]

    def series(x, b0, b1):  # ST 1 warps x, ReLU, ST 2 warps that feature map
        h = torch.func.functional_call(sts[0], {**params[0], "regression.bias": b0}, (x,))
        return torch.func.functional_call(sts[1], {**params[1], "regression.bias": b1}, (torch.relu(h),))

    assert torch.autograd.gradcheck(series, (x, *biases))


# -- the generator -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def strokes() -> Digits:
    """40 synthetic digits: a filled 12x16 box in the middle of each 28x28 image (ink rows 6..21)."""
    images = torch.zeros(40, 28, 28, dtype=torch.uint8)
    images[:, 6:22, 8:20] = 255
    return Digits(images, torch.arange(40) % 10, "boxes")


def test_generator_is_deterministic_and_seeded(strokes):
    a = DigitSequences("train", digits=strokes, seed=1)
    x1, y1 = next(a.batches(3, 40))
    x2, y2 = next(DigitSequences("train", digits=strokes, seed=1).batches(3, 40))
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(next(a.batches(4, 40))[0], x1)
    test = DigitSequences("test", digits=strokes, seed=1)
    assert torch.equal(next(test.batches(0, 40))[0], next(DigitSequences("test", digits=strokes, seed=9)
                                                         .batches(5, 40))[0])


@pytest.mark.parametrize("canvas", [64, 128])
def test_generated_images_ranges(strokes, canvas):
    data = DigitSequences("train", digits=strokes, canvas=canvas)
    params = data.make_params(400, torch.Generator().manual_seed(0))
    x, y = data.render(params)
    assert x.shape == (400, 1, canvas, canvas) and 0 <= float(x.min()) and float(x.max()) <= 1
    lengths = (y != NONE).sum(1)
    assert set(lengths.tolist()) == {1, 2, 3, 4, 5}
    assert torch.equal(lengths, params["length"])
    assert all(bool((row[: int(n)] < 10).all() and (row[int(n):] == NONE).all()) for row, n in zip(y, lengths))
    # Measured: the ink stays on the canvas (nothing touches the border) and spreads over it.
    ink = x[:, 0] > 0.5
    assert not ink[:, 0].any() and not ink[:, -1].any() and not ink[:, :, 0].any() and not ink[:, :, -1].any()
    rows = ink.any(2).float()
    centres = (rows * torch.arange(canvas)).sum(1) / rows.sum(1)
    assert float(centres.min()) < canvas * 0.35 and float(centres.max()) > canvas * 0.65
    # The strip's height in pixels is the same on either canvas: a box's 16 ink rows times a
    # scale of 0.45-0.6 (+-10% jitter), rotated by at most 15 degrees with the strip's length.
    heights = rows.sum(1)
    single = lengths == 1
    assert 16 * 0.45 * 0.9 - 1 <= float(heights[single].min()) and float(heights[single].max()) <= 0.6 * 1.1 * 28 + 2


def test_the_loose_canvas_keeps_the_pixel_scale(strokes):
    g = torch.Generator().manual_seed(0)
    small, loose = DigitSequences("train", digits=strokes), DigitSequences("train", digits=strokes, canvas=128)
    params = small.make_params(50, g)
    params = {**params, "ox": torch.zeros(50), "oy": torch.zeros(50)}  # both strips centred
    a, b = small.render(params)[0], loose.render(params)[0]
    torch.testing.assert_close(b[:, :, 32:96, 32:96], a, atol=1e-5, rtol=0)
    assert float(b.sum()) == pytest.approx(float(a.sum()), rel=1e-5)


# -- a tiny end-to-end training run of every model ------------------------------------------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(write_synthetic_mnist(tmp_path_factory.mktemp("digits"), n_train=16, n_test=8))


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
def test_tiny_training_run(name, data_dir, tmp_path):
    config = TrainConfig(model=name, task="mnist-sequences", data_dir=data_dir, epochs=1, batch_size=8,
                         optimizer="adam", lr=1e-3, schedule="constant", eval_batch_size=8, loc_lr_mult=0.1,
                         model_options=TINY)
    trainer = Trainer(config, tmp_path / "run", progress=False)
    trainer.fit()
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= row["test_error"] <= 100 and math.isfinite(row["train_loss"])
    assert {f"test_acc_{k}" for k in range(1, 6)} <= set(row)


# -- show: the series' regions mapped back onto the input -------------------------------------------
def test_series_regions_map_back_through_the_transformers_before():
    from stnkit.experiments.viz.views import apply_transformers

    torch.manual_seed(0)
    model = create_model("st-cnn-multi", in_shape=(1, 32, 32), num_classes=11, **TINY).eval()
    thetas = ([0.5, 0, 0, 0, 0.5, 0], [1, 0, 0.25, 0, 1, -0.5], [1, 0, 0, 0, 1, 0], [0.5, 0, 0, 0, 0.5, 0])
    for st, theta in zip(model.spatial_transformers, thetas):
        with torch.no_grad():
            st.regression.weight.zero_()
            st.regression.bias.copy_(torch.tensor(theta, dtype=torch.float32))
    # By hand: ST 2's output corner (-1, -1) reads (-1, -1) + (0.25, -0.5) in ST 1's frame, which reads
    # half of that in the image: (-0.375, -0.75) -> pixels ((x + 1) * 32 - 1) / 2 = (9.5, 3.5).
    # ST 4: (-1, -1) -> 0.5 (-1, -1) -> ST 3 (identity) -> + (0.25, -0.5) -> half of that.
    image = torch.zeros(1, 1, 32, 32)
    views = apply_transformers(model, image, outline="edges")
    assert [v.label for v in views] == ["ST 1", "ST 2", "ST 3", "ST 4"]
    torch.testing.assert_close(views[1].region.corners[0, 0], torch.tensor([9.5, 3.5]))
    p4 = 0.5 * (torch.tensor([-0.5, -0.5]) + torch.tensor([0.25, -0.5]))  # ST 4 -> ST 3 (id) -> ST 2 -> ST 1
    torch.testing.assert_close(views[3].region.corners[0, 0], ((p4 + 1) * 32 - 1) / 2)
    # A dot placed at a drawn corner (pixel centres) lands in that corner of what the ST reads.
    centres = apply_transformers(model, image, outline="centres")
    for view in centres[1:]:
        x, y = view.region.corners[0, 0].round().long().tolist()
        dotted = torch.zeros(1, 1, 32, 32)
        dotted[0, 0, y, x] = 1.0
        seen = [v for v in apply_transformers(model, dotted, outline="centres") if v.label == view.label][0].output
        row, col = divmod(int(seen[0, 0].argmax()), 32)
        assert row <= 2 and col <= 2, (view.label, row, col)


def test_docstring_examples():
    import doctest

    import stnkit.experiments.data.sequences as module

    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def test_table2_configs_pin_the_svhn_recipe():
    from pathlib import Path

    from stnkit.experiments.train.config import read_config_file

    paths = sorted((Path(__file__).resolve().parents[2] / "configs").glob("table2_*.json"))
    assert len(paths) == 6  # CNN, ST-CNN Single, ST-CNN Multi x 64px, 128px
    for path in paths:
        written = read_config_file(path)
        assert {k: written[k] for k in ("optimizer", "lr", "weight_decay", "batch_size", "lr_step", "loc_lr_mult")} == {
            "optimizer": "sgd", "lr": 0.01, "weight_decay": 5e-4, "batch_size": 128, "lr_step": 80_000,
            "loc_lr_mult": 0.1}
        assert written["task"] in ("svhn", "svhn-128") and written["model"] in SEQUENCE_MODELS
        TrainConfig.from_dict(written).validate()


def test_the_cpu_recipe_builds_every_model():
    from stnkit.experiments.train.config import with_task_recipe

    config = TrainConfig.from_dict(with_task_recipe({"task": "mnist-sequences"})).validate()
    assert (config.limit, config.epochs, config.schedule) == (12800, 15, "cosine")
    for name in SEQUENCE_MODELS:
        model = create_model(name, in_shape=(1, 64, 64), num_classes=11, **config.model_options)
        assert isinstance(model.fc[2], torch.nn.BatchNorm1d)  # FC batch norm, and the prior heads:
        torch.testing.assert_close(model.heads.bias[10::11], torch.tensor([0.01, 0.2, 0.4, 0.6, 0.8]).log())
