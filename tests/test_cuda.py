"""CUDA: the same results as on the CPU (skipped on machines without a GPU, such as CI)."""

from __future__ import annotations

import pytest
import torch

import stnkit

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
FAMILIES_2D = [n for n in stnkit.transforms.list_transforms() if stnkit.transforms.get(n).ndim == 2]


@cuda
@pytest.mark.parametrize("family", stnkit.transforms.list_transforms())
@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_warp_matches_cpu(helpers, family, mode):
    t = stnkit.transforms.get(family)
    if mode == "bicubic" and t.ndim == 3:
        pytest.skip("bicubic is 2-D only")
    g = helpers.gen(1)
    x = helpers.smooth_image(helpers.image_shape(t, 3, 2, 9), dtype=torch.float32)
    theta = helpers.random_theta(t, 3, g, dtype=torch.float32)
    results = []
    for device in ("cpu", "cuda"):
        xi = x.detach().clone().to(device).requires_grad_()
        ti = theta.detach().clone().to(device).requires_grad_()
        out = stnkit.warp(xi, ti, family, mode=mode, fill=0.25)
        (out * out).sum().backward()
        assert out.device.type == device and out.dtype == x.dtype
        results.append([out.detach().cpu(), xi.grad.cpu(), ti.grad.cpu()])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_spatial_transformer_on_cuda(dtype):
    st = stnkit.SpatialTransformer(stnkit.conv_localisation((1, 42, 42)), "affine", heads=2).to("cuda", dtype)
    x = torch.rand(4, 1, 42, 42, device="cuda", dtype=dtype)
    out, theta = st(x, return_theta=True)
    assert out.shape == (4, 2, 42, 42) and out.dtype == dtype and out.device.type == "cuda"
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(out, torch.cat([x, x], 1), rtol=tol, atol=tol)
    out.float().sum().backward()
    assert st.regression.weight.grad is not None and torch.isfinite(st.regression.weight.grad).all()


@cuda
@pytest.mark.parametrize("family", stnkit.transforms.list_transforms())
def test_per_call_path_never_synchronises(family):
    """No host-device sync per forward/backward (issue 12): the non-finite check keeps a device flag,
    the projective clamp has no data-dependent branch, a float fill is no tensor. Checked by PyTorch
    itself (set_sync_debug_mode("error") raises on any synchronising call)."""
    t = stnkit.transforms.get(family)
    shape = (4, 1) + ((6, 8, 10) if t.ndim == 3 else (28, 28))
    st = stnkit.SpatialTransformer(stnkit.fc_localisation(shape[1:]), family, fill=0.25).cuda()
    x = torch.rand(shape, device="cuda")
    theta = t.identity(device="cuda").expand(4, -1).contiguous().requires_grad_()
    for _ in range(2):  # the second call runs with the caches filled
        torch.cuda.set_sync_debug_mode("error")
        try:
            st(x).sum().backward()
            stnkit.warp(x, theta, family, fill=[0.5]).sum().backward()
            stnkit.warp(x, theta * float("nan"), family)  # non-finite: flagged, not raised, no sync
        finally:
            torch.cuda.set_sync_debug_mode("default")
    with pytest.raises(stnkit.errors.NonFiniteThetaError):
        stnkit.errors.raise_pending("cuda")  # the one sync, where the caller reads (e.g. the loss)
