"""IterativeSpatialTransformer (IC-STN): K = 1 is a plain transformer, the composed theta is the
product of the step matrices, an oracle localisation net recovers a known warp."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import stnkit
from stnkit.transforms import get

D = torch.float64


def _loc(seed=0):
    torch.manual_seed(seed)
    return stnkit.fc_localisation((1, 12, 12), hidden=(8,))


def _randomise(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.05 + p)


@pytest.mark.parametrize("name", ["affine", "similarity", "projective"])
def test_k1_equals_a_plain_transformer(name, helpers):
    plain = stnkit.SpatialTransformer(_loc(), name).double()
    _randomise(plain, 1)
    ic = stnkit.IterativeSpatialTransformer(_loc(), name, steps=1).double()
    ic.load_state_dict(plain.state_dict())
    x = helpers.uniform((3, 1, 12, 12), 0, 1, helpers.gen(2))
    out, thetas = ic(x, return_thetas=True)
    ref, theta = plain(x, return_theta=True)
    assert torch.equal(out, ref) and torch.equal(thetas[:, 0], theta)


@pytest.mark.parametrize("name", ["affine", "attention", "projective"])
def test_composed_theta_is_the_product_of_the_step_matrices(name, helpers):
    ic = stnkit.IterativeSpatialTransformer(_loc(), name, steps=3).double()
    _randomise(ic, 3)
    updates = []
    ic.regression.register_forward_hook(lambda m, i, o: updates.append(o.detach()))
    x = helpers.uniform((2, 1, 12, 12), 0, 1, helpers.gen(4))
    _, thetas = ic(x, return_thetas=True)
    family = get(name)
    product = torch.eye(3, dtype=D).expand(2, 3, 3)
    for k, update in enumerate(updates):
        product = product @ family.matrix(update)  # independent: plain matmul of the step matrices
        expected = product / product[:, 2:, 2:] if name == "projective" else product
        torch.testing.assert_close(family.matrix(thetas[:, k]), expected, atol=1e-12, rtol=1e-12)
    assert len(updates) == 3


class _Oracle(nn.Module):
    """Reads its input's coordinate planes: the image holds ``L(p)`` (an affine map of the input
    point, which bilinear sampling reproduces exactly), so the image warped by ``M`` holds ``L M q``;
    fitting it on the central pixels gives ``C = L M``, and the true correction is ``C^-1``. Returns
    ``affine`` parameters of ``C^-1`` (``damping=1``) or, for ``translation``, ``damping`` times the
    translation correction."""

    def __init__(self, family, damping=1.0):
        super().__init__()
        self.family, self.damping = family, damping
        self.out_features = get(family).num_params

    def forward(self, x):  # (N, 2, H, W): the u, v planes
        n, _, h, w = x.shape
        q = stnkit.coords.base_grid((h, w), dtype=x.dtype)  # (H*W, 3): (x, y, 1)
        central = (q[:, :2].abs() < 0.6).all(1)
        planes = x.reshape(n, 2, h * w)[:, :, central].transpose(1, 2)  # (N, P, 2)
        rows = torch.linalg.lstsq(q[central].expand(n, -1, -1), planes).solution.transpose(1, 2)  # (N, 2, 3)
        c = torch.cat([rows, torch.tensor([[[0.0, 0.0, 1.0]]], dtype=x.dtype).expand(n, 1, 3)], 1)  # (N, 3, 3)
        if self.family == "translation":
            return -self.damping * c[:, :2, 2]
        return torch.linalg.inv(c)[:, :2].reshape(n, 6)


def _planes(l, size=40):
    """The image whose channels are ``L(p)`` at the pixel centres: ``(1, 2, H, W)``."""
    q = stnkit.coords.base_grid((size, size), dtype=D)  # (H*W, 3)
    return (q @ l[:2].T).T.reshape(1, 2, size, size)


def _identity_regression(ic):
    with torch.no_grad():
        ic.regression.weight.copy_(torch.eye(ic.regression.out_features, dtype=D))
        ic.regression.bias.zero_()
    return ic


def test_oracle_localisation_recovers_a_known_affine_warp():
    l = torch.tensor([[1.1, 0.3, 0.08], [-0.2, 0.9, -0.05], [0, 0, 1]], dtype=D)
    ic = _identity_regression(stnkit.IterativeSpatialTransformer(_Oracle("affine"), "affine", steps=3).double())
    out, thetas = ic(_planes(l), return_thetas=True)
    truth = torch.linalg.inv(l)[:2].reshape(1, 6)
    for k in range(3):  # the first step is exact, and later ones keep it
        torch.testing.assert_close(thetas[:, k], truth, atol=1e-10, rtol=0)
    inside = stnkit.coords.base_grid((40, 40), dtype=D)[:, :2].abs().lt(0.6).all(1).view(40, 40)
    torch.testing.assert_close(out[0, :, inside], _planes(torch.eye(3, dtype=D))[0, :, inside], atol=1e-10, rtol=0)


def test_damped_oracle_halves_the_error_each_step():
    t = torch.tensor([0.12, -0.07], dtype=D)
    l = torch.eye(3, dtype=D)
    l[:2, 2] = -t  # the true warp reads at q + t
    steps = 5
    ic = _identity_regression(stnkit.IterativeSpatialTransformer(_Oracle("translation", 0.5), "translation",
                                                                 steps=steps).double())
    _, thetas = ic(_planes(l), return_thetas=True)
    errors = (thetas[0] - t).norm(dim=1)  # (K,)
    expected = t.norm() * 0.5 ** torch.arange(1, steps + 1, dtype=D)
    torch.testing.assert_close(errors, expected, atol=1e-10, rtol=0)


def test_refuses_families_without_compose():
    with pytest.raises(ValueError, match=r"transform: IterativeSpatialTransformer composes .* got 'tps'"):
        stnkit.IterativeSpatialTransformer(_loc(), "tps")
    with pytest.raises(ValueError, match=r"steps: expected an int >= 1, got 0"):
        stnkit.IterativeSpatialTransformer(_loc(), "affine", steps=0)


def test_return_theta_is_the_final_composition(helpers):
    # What code written for SpatialTransformer asks (st(x, return_theta=True)), e.g. the pictures.
    ic = stnkit.IterativeSpatialTransformer(_loc(), "affine", steps=3).double()
    _randomise(ic, 8)
    x = helpers.uniform((2, 1, 12, 12), 0, 1, helpers.gen(9))
    out, thetas = ic(x, return_thetas=True)
    out2, theta = ic(x, return_theta=True)
    out3, theta3, thetas3 = ic(x, return_thetas=True, return_theta=True)
    assert torch.equal(out2, out) and torch.equal(out3, out) and torch.equal(thetas3, thetas)
    assert torch.equal(theta, thetas[:, -1]) and torch.equal(theta3, theta)
    assert not torch.allclose(theta, thetas[:, 0])
    expected = torch.nn.functional.grid_sample(  # PyTorch's own warp by the final matrix
        x, torch.nn.functional.affine_grid(theta.view(2, 2, 3), [2, 1, 12, 12], align_corners=False),
        align_corners=False)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=1e-10)
    with pytest.raises(TypeError, match="return_theta"):
        ic(x, return_theta=1)
