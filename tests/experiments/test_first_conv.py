"""FirstConv2d: the fast input gradient of a 1-channel convolution equals PyTorch's plain conv.

References: ``F.conv2d`` with autograd (values and gradients, float32 tolerance) and float64
``gradcheck`` (finite differences), plus a hand-computed 1x1-filter case.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stnkit.experiments.models import create_model
from stnkit.experiments.models.first_conv import FirstConv2d, _SingleChannelConv

CASES = [  # (kernel, padding, in (H, W), out channels): the classifier's 9x9 and other shapes
    ((9, 9), (4, 4), (21, 21), 32),
    ((9, 9), (0, 0), (28, 28), 8),
    ((7, 5), (3, 1), (13, 17), 5),
    ((3, 3), (2, 0), (6, 9), 4),  # padding larger than needed on one side
    ((1, 1), (0, 0), (5, 5), 3),
    ((3, 3), (3, 4), (6, 9), 4),  # padding wider than the kernel
]


def _pair(case, dtype=torch.float32, seed=0):
    (kh, kw), padding, (h, w), c_out = case
    g = torch.Generator().manual_seed(seed)
    fast = FirstConv2d(1, c_out, (kh, kw), padding=padding).to(dtype)
    with torch.no_grad():
        fast.weight.copy_(torch.randn(fast.weight.shape, generator=g, dtype=dtype))
        fast.bias.copy_(torch.randn(fast.bias.shape, generator=g, dtype=dtype))
    x = torch.randn(3, 1, h, w, generator=g, dtype=dtype)
    return fast, x, g


@pytest.mark.parametrize("case", CASES, ids=str)
def test_values_and_gradients_equal_plain_conv(case):
    fast, x, g = _pair(case)
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    assert fast.fast_path_applies(x_fast)
    out = fast(x_fast)
    ref = F.conv2d(x_ref, fast.weight, fast.bias, padding=fast.padding)
    assert out.grad_fn is not None and "SingleChannelConv" in type(out.grad_fn).__name__
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    upstream = torch.randn(out.shape, generator=g)
    got = torch.autograd.grad(out, [x_fast, fast.weight, fast.bias], upstream)
    want = torch.autograd.grad(ref, [x_ref, fast.weight, fast.bias], upstream)
    for a, b, name in zip(got, want, ("input", "weight", "bias")):
        scale = b.abs().max()
        torch.testing.assert_close(a / scale, b / scale, rtol=0, atol=1e-5, msg=name)


@pytest.mark.parametrize("case", CASES[1:], ids=str)
def test_float64_gradcheck(case):
    fast, x, _ = _pair(case, torch.float64)
    x = x[:2].requires_grad_()
    fn = lambda x, w, b: _SingleChannelConv.apply(x, w, b, tuple(fast.padding))
    assert torch.autograd.gradcheck(fn, (x, fast.weight, fast.bias))


def test_hand_computed_1x1_filters():
    # out[c] = w[c] * x + b[c], so dL/dx = sum_c w[c] * upstream[c]
    conv = FirstConv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, -3.0]).view(2, 1, 1, 1))
        conv.bias.zero_()
    x = torch.ones(1, 1, 2, 2, requires_grad=True)
    upstream = torch.stack([torch.full((2, 2), 1.0), torch.full((2, 2), 10.0)]).unsqueeze(0)  # (1, 2, 2, 2)
    (grad,) = torch.autograd.grad(conv(x), x, upstream)
    assert torch.equal(grad, torch.full((1, 1, 2, 2), 2.0 * 1.0 - 3.0 * 10.0))


def test_without_bias_and_weight_frozen():
    conv = FirstConv2d(1, 4, 3, padding=1, bias=False)
    conv.weight.requires_grad_(False)
    x = torch.randn(2, 1, 5, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
    (grad,) = torch.autograd.grad(conv(x).square().sum(), x)
    x_ref = x.detach().clone().requires_grad_()
    (want,) = torch.autograd.grad(F.conv2d(x_ref, conv.weight, padding=1).square().sum(), x_ref)
    torch.testing.assert_close(grad, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("options,x_grad", [
    (dict(in_channels=2), True), (dict(stride=2), True), (dict(dilation=2), True),
    (dict(padding="same"), True), (dict(padding_mode="reflect", padding=1), True), (dict(), False)])
def test_falls_back_to_plain_conv(options, x_grad):
    kw = dict(in_channels=1, out_channels=3, kernel_size=3)
    kw.update(options)
    conv = FirstConv2d(**kw)
    x = torch.randn(2, kw["in_channels"], 8, 8, generator=torch.Generator().manual_seed(2), requires_grad=x_grad)
    assert not conv.fast_path_applies(x)
    out = conv(x)
    assert out.grad_fn is None or "SingleChannelConv" not in type(out.grad_fn).__name__
    torch.testing.assert_close(out, torch.nn.Conv2d.forward(conv, x))


def test_no_grad_and_tracing_fall_back(monkeypatch):
    conv = FirstConv2d(1, 3, 3)
    x = torch.randn(1, 1, 6, 6, requires_grad=True)
    with torch.no_grad():
        assert not conv.fast_path_applies(x)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert not conv.fast_path_applies(x)


def test_compile_sees_plain_conv(monkeypatch):
    from stnkit.experiments.models import first_conv

    class Refused(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *args):
            raise AssertionError("the custom conv ran under torch.compile")

    monkeypatch.setattr(first_conv, "_SingleChannelConv", Refused)
    conv = FirstConv2d(1, 3, 3, padding=1)
    x = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(3), requires_grad=True)
    with pytest.raises(AssertionError, match="under torch.compile"):
        conv(x)  # eager: the fast path is taken
    torch._dynamo.reset()
    out = torch.compile(conv, backend="eager", fullgraph=True)(x)
    torch.testing.assert_close(out, F.conv2d(x, conv.weight, conv.bias, padding=1))


def test_the_st_cnn_uses_it_and_keeps_its_state_dict_keys():
    model = create_model("st-cnn", in_shape=(1, 42, 42), num_classes=10, downsample=True)
    first = model.classifier[0]
    assert isinstance(first, FirstConv2d)
    assert {"classifier.0.weight", "classifier.0.bias"} <= set(model.state_dict())
    x = torch.randn(2, 1, 42, 42, generator=torch.Generator().manual_seed(4))
    assert first.fast_path_applies(model.pool(model.transform(x)))


def test_under_bfloat16_autocast_gradients_match_plain_conv():
    fast, x, g = _pair(CASES[0])
    x_fast, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(x_fast)
        ref = F.conv2d(x_ref, fast.weight, fast.bias, padding=fast.padding)
    assert out.dtype == ref.dtype == torch.bfloat16
    upstream = torch.randn(out.shape, generator=g).to(torch.bfloat16)
    got = torch.autograd.grad(out, [x_fast, fast.weight], upstream)
    want = torch.autograd.grad(ref, [x_ref, fast.weight], upstream)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype == torch.float32
        scale = b.abs().max()
        torch.testing.assert_close(a / scale, b / scale, rtol=0, atol=2e-2)  # bfloat16 forward inputs
