"""Parallel attention (``2xattn-cnn`` / ``4xattn-cnn``), its controls, and the backbone registry.

References are independent of the code: crops against ``F.affine_grid`` + ``F.grid_sample`` and
against hand-picked quadrants; the backbone adapters against stand-in torchvision/timm modules.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stnkit.experiments.models import create_model, list_backbones
from stnkit.experiments.models.attention import ParallelAttention, default_centres

TINY = dict(features=8, backbone_options={"width": 4, "blocks": (1,)})


def _model(heads: int = 2, in_shape=(1, 16, 16), **options) -> ParallelAttention:
    torch.manual_seed(0)
    return ParallelAttention(in_shape, 5, heads=heads, **{**TINY, **options})


@pytest.mark.parametrize("heads,crop", [(2, (8, 8)), (4, (5, 7)), (1, (20, 20))])  # 20 > 16: up-sampling is fine
def test_k_crops_of_the_requested_size(heads, crop):
    model = _model(heads, crop_size=crop, loc_size=(16, 16))
    crops = model.crops(torch.rand(3, 1, 16, 16))
    assert crops.shape == (3, heads, 1, *crop)
    assert model(torch.rand(3, 1, 16, 16)).shape == (3, 5)
    assert len(model.branches) == heads
    assert len({id(p) for b in model.branches for p in b.parameters()}) == heads * len(list(model.branches[0].parameters()))


def test_four_default_boxes_are_the_quadrants():
    """K = 4 at scale 0.5 with crops of half the input read the four quadrants exactly."""
    model = _model(4, in_shape=(2, 8, 8), crop_size=(4, 4), loc_size=(8, 8))
    x = torch.rand(3, 2, 8, 8)
    crops = model.crops(x)
    quadrants = [x[..., :4, :4], x[..., :4, 4:], x[..., 4:, :4], x[..., 4:, 4:]]  # row-major, y down
    for k, quadrant in enumerate(quadrants):
        torch.testing.assert_close(crops[:, k], quadrant, rtol=0, atol=1e-6)
    assert default_centres(2).tolist() == [[-0.5, 0.0], [0.5, 0.0]]


@pytest.mark.parametrize("scale", ["fixed", "learned", "bounded"])
def test_distinct_initial_boxes_match_affine_grid(scale):
    model = _model(4, scale=scale, init_scale=0.4, crop_size=(6, 6), loc_size=(8, 8))
    x = torch.rand(2, 1, 16, 16)
    crops = model.crops(x)
    boxes = torch.tensor([[0.4, cx, cy] for cx, cy in default_centres(4).tolist()])  # (K, s, tx, ty)
    for k, (s, tx, ty) in enumerate(boxes.tolist()):
        theta = torch.tensor([[s, 0, tx], [0, s, ty]]).expand(2, 2, 3)
        ref = F.grid_sample(x, F.affine_grid(theta, (2, 1, 6, 6), align_corners=False), align_corners=False)
        torch.testing.assert_close(crops[:, k], ref, rtol=0, atol=1e-6)
    assert len({tuple(b) for b in default_centres(4).tolist()}) == 4


def test_bounded_scale_stays_in_range():
    model = _model(2, scale="bounded", scale_range=(0.2, 0.6), init_scale=0.3)
    family = model.st.transform
    theta = torch.tensor([[50.0, 0, 0], [-50.0, 0, 0], [0.0, 0, 0]])
    torch.testing.assert_close(family.matrix(theta)[:, 0, 0], torch.tensor([0.6, 0.2, 0.4]))


def test_gradients_reach_every_head():
    model = _model(4)
    with torch.no_grad():
        model.st.regression.weight.normal_(0, 0.05)
    model(torch.rand(4, 1, 16, 16)).square().sum().backward()
    grad = model.st.regression.weight.grad.view(4, 2, -1)  # (K, P, F): fixed-scale heads, P = 2
    for k in range(4):
        assert grad[k].abs().sum() > 0, f"head {k} gets no gradient"
        assert model.st.regression.bias.grad.view(4, 2)[k].abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.st.localisation.parameters())


def test_gradcheck_float64_tiny():
    model = _model(2, in_shape=(1, 8, 8), crop_size=(3, 3), loc_size=(8, 8), scale="learned").double().eval()
    with torch.no_grad():
        model.st.regression.weight.normal_(0, 0.05)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model, (x,))


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_loc_norm_normalises_the_features_the_regression_reads(norm):
    model = _model(2, loc_norm=norm).train()
    x = torch.rand(6, 1, 16, 16)
    raw = model.st.localisation[:2](x)  # (N, F) pooled input -> conv net, before the norm
    got = model.st.localisation(x)  # what the regression reads
    if norm == "batch":  # each feature: zero mean, unit (biased) variance over the batch
        ref = (raw - raw.mean(0)) / (raw.var(0, unbiased=False) + 1e-5).sqrt()
    else:  # each sample: zero mean, unit variance over its features
        ref = (raw - raw.mean(1, keepdim=True)) / (raw.var(1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    crops = model.crops(x)  # the regression weights start at zero: every canvas starts at the default boxes
    torch.testing.assert_close(crops[:, 0], x[..., 4:12, :8], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="loc_norm"):
        _model(2, loc_norm="group")
    if norm == "batch":  # a training batch of one is normalised with the running statistics
        bn = model.st.localisation[2]
        one = model.st.localisation[:2](x[:1])
        ref = (one - bn.running_mean) / (bn.running_var + 1e-5).sqrt()
        torch.testing.assert_close(model.st.localisation(x[:1]), ref, rtol=1e-4, atol=1e-5)


def test_frozen_boxes_ignore_the_input():
    model = _model(2, freeze_boxes=True)
    assert not any(p.requires_grad for p in model.st.parameters())
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(model.crops(x)[:, 0], x[..., 4:12, :8], rtol=0, atol=1e-6)  # left half box
    model(x).sum().backward()
    assert all(p.grad is None for p in model.st.parameters())  # nothing moves the boxes
    assert all(p.grad is not None for p in model.branches.parameters())


def test_read_downsampled_samples_the_area_pooled_copy():
    model = _model(2, read="downsampled", crop_size=(4, 4), loc_size=(8, 8))
    x = torch.rand(2, 1, 16, 16)
    small = F.avg_pool2d(x, 2)  # (2, 1, 8, 8)
    torch.testing.assert_close(model.crops(x)[:, 1], small[..., 2:6, 4:], rtol=0, atol=1e-6)  # right half box


def test_controls_downsample_by_area_pooling():
    down = create_model("down-cnn", in_shape=(1, 16, 16), num_classes=3, backbone_options={"width": 4})
    x = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(down.classifier(F.avg_pool2d(x, 2)), down(x))
    full = create_model("down-cnn", in_shape=(1, 16, 16), num_classes=3, crop_size=(16, 16),
                        backbone_options={"width": 4})
    torch.testing.assert_close(full.classifier(x), full(x))  # at the input's size: full resolution


def test_registered_through_create_model():
    model = create_model("4xattn-cnn", in_shape=(3, 32, 32), num_classes=7, crop_size=(12, 12), features=4,
                         backbone_options={"width": 4, "blocks": (1,)})
    assert model.heads == 4 and model(torch.rand(1, 3, 32, 32)).shape == (1, 7)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="heads"):
        ParallelAttention((1, 16, 16), 5, heads=0)
    with pytest.raises(ValueError, match="crop_size"):
        ParallelAttention((1, 16, 16), 5, crop_size=(0, 8))
    with pytest.raises(ValueError, match="backbone: unknown backbone 'vgg'; expected one of: cnn, fcn, resnet"):
        ParallelAttention((1, 16, 16), 5, backbone="vgg")
    with pytest.raises(ValueError, match="scale"):
        ParallelAttention((1, 16, 16), 5, scale="huge")
    with pytest.raises(ValueError, match="init_scale"):
        ParallelAttention((1, 16, 16), 5, scale="bounded", scale_range=(0.1, 0.4), init_scale=0.5)
    with pytest.raises(ValueError, match="x: this model expects"):
        _model(2)(torch.rand(1, 1, 12, 12))


# -- backbones ----------------------------------------------------------------------------------
def test_backbone_registry_and_small_resnet():
    assert {"cnn", "fcn", "resnet", "timm", "torchvision"} <= set(list_backbones())
    from stnkit.experiments.models.network import BACKBONES

    net = BACKBONES.get("resnet")((3, 13, 9), 6, width=4, blocks=(1, 2))
    assert net(torch.rand(2, 3, 13, 9)).shape == (2, 6)


class _StandIn(nn.Module):
    """Has torchvision's ResNet interface: features -> ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 5, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(5, 1000)

    def forward(self, x):
        return self.fc(self.body(x))


def test_torchvision_adapter_against_a_stand_in(monkeypatch):
    calls = []

    def get_model(arch, weights=None):
        calls.append((arch, weights))
        return _StandIn()

    fake = types.ModuleType("torchvision")
    fake.models = types.SimpleNamespace(get_model=get_model)
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    from stnkit.experiments.models.network import BACKBONES

    net = BACKBONES.get("torchvision")((3, 12, 12), 11, arch="resnet50", weights="IMAGENET1K_V2")
    assert calls == [("resnet50", "IMAGENET1K_V2")]  # weights through torchvision's own mechanism
    assert net.fc.out_features == 11 and net.fc.in_features == 5
    assert net(torch.rand(2, 3, 12, 12)).shape == (2, 11)
    model = ParallelAttention((3, 24, 24), 4, heads=2, backbone="torchvision", features=6,
                              backbone_options={"arch": "resnet50", "weights": None})
    assert model(torch.rand(2, 3, 24, 24)).shape == (2, 4)


def test_timm_adapter_against_a_stand_in(monkeypatch):
    calls = []

    def create_model(arch, pretrained, num_classes, in_chans):
        calls.append((arch, pretrained, num_classes, in_chans))
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    fake = types.ModuleType("timm")
    fake.create_model = create_model
    monkeypatch.setitem(sys.modules, "timm", fake)
    from stnkit.experiments.models.network import BACKBONES

    net = BACKBONES.get("timm")((1, 6, 6), 3, arch="inception_v3.tv_in1k")
    assert calls == [("inception_v3.tv_in1k", True, 3, 1)]
    assert net(torch.rand(2, 1, 6, 6)).shape == (2, 3)


def test_adapter_without_the_library_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    from stnkit.experiments.models.network import BACKBONES

    with pytest.raises(ImportError, match="need timm"):
        BACKBONES.get("timm")((3, 8, 8), 2)


def test_importing_models_imports_no_adapter_library():
    import subprocess

    code = ("import sys, stnkit.experiments.models as m; m.create_model('2xattn-cnn', in_shape=(1, 16, 16), "
            "num_classes=3); print(any(k in sys.modules for k in ('torchvision', 'timm')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
