"""``stnkit.warp_heads``: K warps of one uncopied input equal K warps of K copies (the old heads path)."""

from __future__ import annotations

import pytest
import torch

import stnkit

FAMILIES = [("translation", (1, 8, 8)), ("attention", (2, 8, 8)), ("affine", (2, 7, 9)),
            ("projective", (1, 8, 8)), ("tps", (1, 8, 8)), ("affine3d", (1, 4, 5, 6))]


def _theta(name: str, n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    family = stnkit.transforms.get(name)
    noise = 0.3 * torch.randn(n, k, family.num_params, generator=generator, dtype=torch.float64)
    if name == "projective":
        noise[..., 6:] *= 0.1  # keep the homogeneous coordinate away from 0
    return (family.identity(dtype=torch.float64) + noise).requires_grad_(True)  # (N, K, P)


def _copied(x: torch.Tensor, theta: torch.Tensor, name: str, size, **options) -> torch.Tensor:
    """The reference: each head warps its own copy of the input, one ``stnkit.warp`` per head."""
    return torch.stack([stnkit.warp(x, theta[:, h], name, size, **options) for h in range(theta.shape[1])], 1)


@pytest.mark.parametrize("name,shape", FAMILIES)
def test_equals_one_warp_per_head(name, shape):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, *shape, generator=g, dtype=torch.float64, requires_grad=True)
    theta = _theta(name, 3, 4, g)
    size = tuple(max(2, s - 2) for s in shape[1:])
    out = stnkit.warp_heads(x, theta, name, size)
    ref = _copied(x, theta, name, size)
    assert out.shape == (3, 4, shape[0], *size)
    # forward: the same reads; the grid's matrix products may round in the last bit differently with the
    # batch size on some CPUs (AMD EPYC, TPS and affine3d: 1.3e-15), hence not bit for bit
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    w = torch.rand(out.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((out * w).sum(), (x, theta))
    ref_grads = torch.autograd.grad((ref * w).sum(), (x, theta))
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)  # sums in another order


@pytest.mark.parametrize("options", [dict(antialias=True), dict(fill=0.5), dict(mode="bicubic", padding="border"),
                                     dict(mode="nearest"), dict(align_corners=True, padding="reflection")])
@pytest.mark.parametrize("name", ["attention", "tps"])
def test_sampling_options_match(name, options):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 2, 16, 16, generator=g, dtype=torch.float64)
    theta = _theta(name, 2, 3, g).detach()
    if name == "attention":
        theta[..., 0] = torch.tensor([0.25, 1.0, 3.0], dtype=torch.float64)  # zoom-in, identity, 3x shrink
    out = stnkit.warp_heads(x, theta, name, (5, 6), **options)
    torch.testing.assert_close(out, _copied(x, theta, name, (5, 6), **options), rtol=1e-13, atol=1e-13)


def test_gradcheck_float64():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64, requires_grad=True)
    theta = _theta("attention", 2, 2, g)
    assert torch.autograd.gradcheck(lambda a, t: stnkit.warp_heads(a, t, "attention", (3, 4)), (x, theta))


def test_spatial_transformer_heads_unchanged():
    """``SpatialTransformer(heads=K)`` (now on warp_heads) gives what K copies of the input gave."""
    torch.manual_seed(0)
    st = stnkit.SpatialTransformer(stnkit.fc_localisation((2, 9, 9), hidden=(6,)), "affine", heads=3,
                                   output_size=(5, 7), head_output="stack").double()
    with torch.no_grad():
        st.regression.weight.normal_(0, 0.1)
    x = torch.rand(4, 2, 9, 9, dtype=torch.float64)
    out, theta = st(x, return_theta=True)
    copies = x.unsqueeze(1).expand(4, 3, 2, 9, 9).reshape(12, 2, 9, 9)  # the old path: (N*heads, C, H, W)
    ref = torch.nn.functional.grid_sample(
        copies, torch.nn.functional.affine_grid(theta.reshape(12, 2, 3), (12, 2, 5, 7), align_corners=False),
        align_corners=False).view(4, 3, 2, 5, 7)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


def test_bad_input():
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ValueError, match="theta"):
        stnkit.warp_heads(x, torch.zeros(2, 6), "affine")  # (N, P): the heads axis is missing
    with pytest.raises(ValueError, match="batch size"):
        stnkit.warp_heads(x, torch.zeros(3, 2, 6), "affine")
    with pytest.raises(ValueError, match="K >= 1"):
        stnkit.warp_heads(x, torch.zeros(2, 0, 6), "affine")
    with pytest.raises(ValueError, match="size"):
        stnkit.warp_heads(x, torch.zeros(2, 2, 6), "affine", (0, 4))
    with pytest.raises(stnkit.errors.NonFiniteThetaError):
        stnkit.warp_heads(x, torch.full((2, 2, 6), float("nan")), "affine")
