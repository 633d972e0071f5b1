"""Models: shapes, parameter counts (computed by hand from the paper's layer list), identity at init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stnkit.experiments.models import count_parameters, create_model, list_models

# (in_shape, downsample, num_classes): Table 1 R/P/E, RTS, TC, MNIST addition.
SETUPS = [((1, 28, 28), False, 10), ((1, 42, 42), True, 10), ((1, 60, 60), True, 10), ((2, 42, 42), True, 19)]
N_ST = {"fcn": 0, "cnn": 0, "st-fcn": 1, "st-cnn": 1, "2xst-fcn": 2, "2xst-cnn": 2}


def _linear(i: int, o: int) -> int:
    return i * o + o


def _conv(c: int, o: int, k: int) -> int:
    return c * o * k * k + o


def test_registry_lists_the_papers_models():
    multidigit = ["multidigit-cnn", "st-cnn-multi", "st-cnn-single"]  # tests/experiments/test_sequences.py
    assert list_models() == sorted([*N_ST, "coloc-st", *multidigit])  # coloc-st: tests/experiments/test_coloc.py


@pytest.mark.parametrize("name", sorted(N_ST))
@pytest.mark.parametrize("in_shape,downsample,num_classes", SETUPS)
def test_output_shape_and_attributes(name, in_shape, downsample, num_classes):
    model = create_model(name, in_shape=in_shape, num_classes=num_classes, downsample=downsample)
    out = model(torch.rand(3, *in_shape))
    assert out.shape == (3, num_classes)
    assert torch.isfinite(out).all()
    assert model.in_shape == in_shape
    assert len(model.spatial_transformers) == N_ST[name]


def test_cnn_parameter_count_by_hand():
    # conv 9x9 (1->32, padded by 4) -> pool -> conv 7x7 (32->64, unpadded) -> pool -> FC to 10:
    # 28 -> 28 -> 14 -> 8 -> 4.
    m28 = create_model("cnn", in_shape=(1, 28, 28), num_classes=10)
    assert count_parameters(m28) == _conv(1, 32, 9) + _conv(32, 64, 7) + _linear(64 * 4 * 4, 10)
    # RTS: 42x42 -> 2x average pool -> 21 -> 21 -> 10 -> 4 -> 2.
    m42 = create_model("cnn", in_shape=(1, 42, 42), num_classes=10, downsample=True)
    assert count_parameters(m42) == _conv(1, 32, 9) + _conv(32, 64, 7) + _linear(64 * 2 * 2, 10)
    # TC: 60x60 -> 30 -> 30 -> 15 -> 9 -> 4.
    m60 = create_model("cnn", in_shape=(1, 60, 60), num_classes=10, downsample=True)
    assert count_parameters(m60) == _conv(1, 32, 9) + _conv(32, 64, 7) + _linear(64 * 4 * 4, 10)


def test_fcn_parameter_count_by_hand():
    model = create_model("fcn", in_shape=(1, 28, 28), num_classes=10)
    assert count_parameters(model) == _linear(784, 128) + _linear(128, 128) + _linear(128, 10)
    small = create_model("fcn", in_shape=(1, 42, 42), num_classes=10, downsample=True, hidden=(64, 32))
    assert count_parameters(small) == _linear(441, 64) + _linear(64, 32) + _linear(32, 10)


def test_st_cnn_parameter_count_by_hand():
    # Localisation on 28x28: avg-pool 2 -> 14 -> conv 5x5 (20) -> 10 -> pool -> 5 -> conv 5x5 (20) -> 1
    # -> FC 20 -> regression (6 affine numbers).
    loc = _conv(1, 20, 5) + _conv(20, 20, 5) + _linear(20 * 1 * 1, 20) + _linear(20, 6)
    classifier = _conv(1, 32, 9) + _conv(32, 64, 7) + _linear(64 * 4 * 4, 10)
    model = create_model("st-cnn", in_shape=(1, 28, 28), num_classes=10, transform="affine")
    assert count_parameters(model) == loc + classifier
    # TPS with a 4x4 grid regresses 32 numbers instead of 6.
    tps = create_model("st-cnn", in_shape=(1, 28, 28), num_classes=10, transform="tps")
    assert count_parameters(tps) == loc + classifier + 20 * (32 - 6) + (32 - 6)


def test_2xst_cnn_parameter_count_by_hand():
    # Addition: two 42x42 channels; each localisation sees both: 42 -> 21 -> 17 -> 8 -> 4 (x20).
    loc = _conv(2, 20, 5) + _conv(20, 20, 5) + _linear(20 * 4 * 4, 20) + _linear(20, 6)
    classifier = _conv(4, 32, 9) + _conv(32, 64, 7) + _linear(64 * 2 * 2, 19)
    model = create_model("2xst-cnn", in_shape=(2, 42, 42), num_classes=19, downsample=True)
    assert count_parameters(model) == 2 * loc + classifier


def test_st_fcn_parameter_count_by_hand():
    loc = _linear(784, 32) + 2 * _linear(32, 32) + _linear(32, 6)
    model = create_model("st-fcn", in_shape=(1, 28, 28), num_classes=10)
    assert count_parameters(model) == loc + _linear(784, 128) + _linear(128, 128) + _linear(128, 10)


@pytest.mark.parametrize("transform", ["affine", "projective", "tps", "attention"])
@pytest.mark.parametrize("name", ["st-fcn", "st-cnn", "2xst-fcn", "2xst-cnn"])
def test_spatial_transformers_are_the_identity_at_init(name, transform):
    torch.manual_seed(0)
    model = create_model(name, in_shape=(2, 42, 42), num_classes=19, transform=transform, downsample=True)
    x = torch.rand(4, 2, 42, 42)
    expected = x.repeat(1, N_ST[name], 1, 1)  # each transformer passes the whole input through
    torch.testing.assert_close(model.transform(x), expected, atol=1e-5, rtol=0)


def test_downsample_is_a_2x_average_pool_before_the_classifier():
    torch.manual_seed(0)
    model = create_model("st-cnn", in_shape=(1, 42, 42), num_classes=10, downsample=True)
    x = torch.rand(2, 1, 42, 42)
    pooled = x.view(2, 1, 21, 2, 21, 2).mean(dim=(3, 5))  # (N, 1, 21, 21), by hand
    torch.testing.assert_close(model(x), model.classifier(pooled), atol=1e-5, rtol=1e-5)


def test_loss_reaches_the_localisation_net():
    torch.manual_seed(0)
    model = create_model("st-cnn", in_shape=(1, 28, 28), num_classes=10)
    x = torch.rand(8, 1, 28, 28)
    F.cross_entropy(model(x), torch.arange(8)).backward()
    st = model.spatial_transformers[0]
    assert st.regression.weight.grad.abs().sum() > 0


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="unknown model 'resnet'.*cnn"):
        create_model("resnet", in_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ValueError, match="transform: expected one of .*affine.*got 'shear'"):
        create_model("st-cnn", in_shape=(1, 28, 28), num_classes=10, transform="shear")
    with pytest.raises(ValueError, match="in_shape: expected \\(C, H, W\\)"):
        create_model("cnn", in_shape=(28, 28), num_classes=10)
    with pytest.raises(ValueError, match="options: model 'cnn' accepts channels; got hidden"):
        create_model("cnn", in_shape=(1, 28, 28), num_classes=10, hidden=(3,))
    with pytest.raises(ValueError, match="num_classes"):
        create_model("fcn", in_shape=(1, 28, 28), num_classes=0)
    model = create_model("cnn", in_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 1, 28, 28\), got shape \(2, 1, 42, 42\)"):
        model(torch.rand(2, 1, 42, 42))
    with pytest.raises(TypeError, match="floating-point"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
