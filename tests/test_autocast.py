"""stnkit.warp under torch.autocast: the grid and the sampling stay in float32.

Reference: the same warp without autocast (float32), and float64 for the size of the error.
"""

from __future__ import annotations

import pytest
import torch

import stnkit


@pytest.mark.parametrize("family", ["affine", "projective", "tps"])
def test_warp_leaves_bfloat16_autocast(family):
    g = torch.Generator().manual_seed(0)
    fam = stnkit.transforms.get(family)
    theta = fam.identity(dtype=torch.float64) + 0.2 * (torch.rand(4, fam.num_params, generator=g, dtype=torch.float64) - 0.5)
    x = torch.rand(4, 1, 42, 42, generator=g, dtype=torch.float64)
    want = stnkit.warp(x, theta, family)  # float64, no autocast
    x32, theta32 = x.float(), theta.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = stnkit.warp(x32, theta32, family)
        grid = stnkit.transforms.get(family).grid(theta32, (42, 42))  # what autocast alone would do
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-5)
    # the check can fail: a grid computed under autocast is visibly off (a bf16 GEMM for tps)
    if family == "tps":
        exact = stnkit.transforms.get(family).grid(theta, (42, 42))
        assert (grid.double() - exact).abs().max() * 21 > 0.01  # pixels


def test_warp_gradient_under_autocast_matches_float32():
    g = torch.Generator().manual_seed(1)
    fam = stnkit.transforms.get("tps")
    theta = (fam.identity() + 0.1 * torch.rand(2, fam.num_params, generator=g)).requires_grad_()
    x = torch.rand(2, 1, 20, 20, generator=g)
    upstream = torch.rand(2, 1, 20, 20, generator=g)
    (want,) = torch.autograd.grad(stnkit.warp(x, theta, "tps"), theta, upstream)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stnkit.warp(x, theta, "tps")
    (got,) = torch.autograd.grad(out, theta, upstream)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
