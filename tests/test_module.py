"""``stnkit.SpatialTransformer``: identity at initialisation, heads, output sizes, ``source=``,
``return_theta``, modules in series, the localisation builders."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import stnkit
from stnkit.transforms import get

FAMILIES = stnkit.transforms.list_transforms()
FAMILIES_2D = [f for f in FAMILIES if get(f).ndim == 2]
FAMILIES_3D = [f for f in FAMILIES if get(f).ndim == 3]
AC = [False, True]


def _shape(name, n, c):
    return (n, c) + ((5, 6, 7) if get(name).ndim == 3 else (9, 11))


# -- a fresh transformer is the identity ----------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("channels", [1, 3, 5])
@pytest.mark.parametrize("align_corners", AC)
def test_fresh_transformer_is_identity(name, channels, align_corners, helpers):
    shape = _shape(name, 2, channels)
    x64 = helpers.uniform(shape, 0, 1, helpers.gen(1))
    st = stnkit.SpatialTransformer(stnkit.fc_localisation(shape[1:], hidden=(8,)), name, align_corners=align_corners)
    torch.testing.assert_close(st(x64.float()), x64.float(), atol=2e-6, rtol=0)  # float32 rounding
    st64 = st.double()
    torch.testing.assert_close(st64(x64), x64, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_fresh_transformer_with_conv_localisation_is_identity(name, helpers):
    shape = (2, 2, 16, 16, 16) if get(name).ndim == 3 else (2, 2, 16, 16)
    x = helpers.uniform(shape, 0, 1, helpers.gen(2))
    st = stnkit.SpatialTransformer(stnkit.conv_localisation(shape[1:], channels=(4, 4), kernel_size=3), name).double()
    torch.testing.assert_close(st(x), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_regression_layer_starts_at_the_identity(name):
    st = stnkit.SpatialTransformer(stnkit.fc_localisation((1, 4, 4), hidden=(5,)), name, heads=3)
    p = st.transform.num_params
    assert st.regression.weight.shape == (3 * p, 5) and not st.regression.weight.any()
    torch.testing.assert_close(st.regression.bias.detach(), st.transform.identity().repeat(3))


# -- output size -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES_2D)
def test_identity_downsampling_by_two_is_average_pooling(name, helpers):
    x = helpers.uniform((2, 3, 8, 10), 0, 1, helpers.gen(3))
    st = stnkit.SpatialTransformer(stnkit.fc_localisation((3, 8, 10), hidden=(4,)), name, output_size=(4, 5)).double()
    # Without align_corners, output pixel i reads input position 2 i + 0.5: the mean of a 2x2 block.
    torch.testing.assert_close(st(x), F.avg_pool2d(x, 2), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", FAMILIES_2D)
@pytest.mark.parametrize("align_corners", AC)
def test_identity_upsampling_is_bilinear_interpolation(name, align_corners, helpers):
    x = helpers.uniform((2, 2, 5, 6), 0, 1, helpers.gen(4))
    st = stnkit.SpatialTransformer(stnkit.fc_localisation((2, 5, 6), hidden=(4,)), name, output_size=(10, 15),
                                padding="border", align_corners=align_corners).double()
    expected = F.interpolate(x, size=(10, 15), mode="bilinear", align_corners=align_corners)
    torch.testing.assert_close(st(x), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", FAMILIES_3D)
def test_identity_volume_resampling(name, helpers):
    x = helpers.uniform((1, 2, 4, 6, 8), 0, 1, helpers.gen(5))
    down = stnkit.SpatialTransformer(stnkit.fc_localisation((2, 4, 6, 8), hidden=(4,)), name,
                                  output_size=(2, 3, 4)).double()
    torch.testing.assert_close(down(x), F.avg_pool3d(x, 2), atol=1e-6, rtol=0)
    up = stnkit.SpatialTransformer(stnkit.fc_localisation((2, 4, 6, 8), hidden=(4,)), name, output_size=(8, 9, 16),
                                padding="border").double()
    expected = F.interpolate(x, size=(8, 9, 16), mode="trilinear", align_corners=False)
    torch.testing.assert_close(up(x), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("out", ["down", "up"])
def test_output_size_with_random_theta_equals_warp(name, out, helpers):
    shape = _shape(name, 2, 2)
    size = tuple(s // 2 if out == "down" else s * 2 - 1 for s in shape[2:])
    st = helpers.make_st(name, shape[1:], output_size=size).double()
    x = helpers.uniform(shape, 0, 1, helpers.gen(6))
    y, theta = st(x, return_theta=True)
    assert y.shape == (*shape[:2], *size)
    torch.testing.assert_close(y, stnkit.warp(x, theta, name, size), atol=1e-12, rtol=0)


# -- heads -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("head_output", ["channels", "stack"])
def test_each_head_equals_a_single_head_transformer(name, head_output, helpers):
    shape, heads = _shape(name, 3, 2), 3
    st = helpers.make_st(name, shape[1:], heads=heads, head_output=head_output).double()
    x = helpers.uniform(shape, 0, 1, helpers.gen(7))
    y, theta = st(x, return_theta=True)
    p, c = st.transform.num_params, shape[1]
    assert theta.shape == (3, heads, p)
    assert y.shape == ((3, heads * c, *shape[2:]) if head_output == "channels" else (3, heads, c, *shape[2:]))
    for h in range(heads):
        single = stnkit.SpatialTransformer(st.localisation, name, loc_features=8).double()
        with torch.no_grad():
            single.regression.weight.copy_(st.regression.weight[h * p:(h + 1) * p])
            single.regression.bias.copy_(st.regression.bias[h * p:(h + 1) * p])
        y_h, theta_h = single(x, return_theta=True)
        torch.testing.assert_close(theta[:, h], theta_h, atol=1e-14, rtol=0)
        part = y[:, h * c:(h + 1) * c] if head_output == "channels" else y[:, h]
        torch.testing.assert_close(part, y_h, atol=1e-12, rtol=0)
    assert not torch.allclose(theta[:, 0], theta[:, 1])  # the heads differ


# -- source= and return_theta ----------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_source_is_warped_by_the_theta_read_off_x(name, helpers):
    shape = _shape(name, 2, 1)
    st = helpers.make_st(name, shape[1:]).double()
    x = helpers.uniform(shape, 0, 1, helpers.gen(8))
    big = tuple(2 * s for s in shape[2:])
    source = helpers.uniform((2, 4, *big), 0, 1, helpers.gen(9))  # other channels, higher resolution
    y, theta = st(x, source=source, return_theta=True)
    _, theta_x = st(x, return_theta=True)
    torch.testing.assert_close(theta, theta_x, atol=0, rtol=0)
    assert y.shape == source.shape
    torch.testing.assert_close(y, stnkit.warp(source, theta, name), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_return_theta_is_the_regression_output(name, helpers):
    shape = _shape(name, 3, 2)
    st = helpers.make_st(name, shape[1:]).double()
    x = helpers.uniform(shape, 0, 1, helpers.gen(10))
    y, theta = st(x, return_theta=True)
    # By hand: flatten -> linear -> relu -> linear.
    lin1 = st.localisation[1]
    features = torch.relu(x.flatten(1) @ lin1.weight.T + lin1.bias)
    expected = features @ st.regression.weight.T + st.regression.bias
    torch.testing.assert_close(theta, expected, atol=1e-12, rtol=0)
    assert theta.shape == (3, st.transform.num_params)
    assert (theta - st.transform.identity(dtype=theta.dtype)).abs().max() > 1e-3  # non-trivial warp
    torch.testing.assert_close(st(x), y, atol=0, rtol=0)


# -- in series -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [f for f in FAMILIES_2D if get(f).has_matrix])
def test_transformers_in_series_compose(name, helpers):
    family = get(name)
    a = helpers.random_theta(family, 1, helpers.gen(11))
    b = helpers.random_theta(family, 1, helpers.gen(12))
    first = stnkit.SpatialTransformer(stnkit.fc_localisation((2, 40, 40), hidden=(4,)), name).double()
    second = stnkit.SpatialTransformer(stnkit.fc_localisation((2, 40, 40), hidden=(4,)), name).double()
    with torch.no_grad():
        first.regression.bias.copy_(a[0])
        second.regression.bias.copy_(b[0])
    x = helpers.smooth_image((1, 2, 40, 40))
    y = nn.Sequential(first, second)(x)
    once = stnkit.warp(x, family.compose(a, b), family)
    p = helpers.centres((40, 40), False)
    mid = family.warp_points(b, p)
    end = family.warp_points(a, mid)
    inside = ((mid.abs().amax(-1) < 0.85) & (end.abs().amax(-1) < 0.85)).view(1, 1, 40, 40)
    assert inside.float().mean() > 0.3
    assert ((y - once).abs() * inside).amax() < 5e-3


@pytest.mark.parametrize("name", FAMILIES)
def test_gradient_reaches_every_transformer_in_series(name, helpers):
    shape = _shape(name, 2, 1)
    model = nn.Sequential(helpers.make_st(name, shape[1:], seed=1), helpers.make_st(name, shape[1:], seed=2))
    x = helpers.smooth_image(shape, torch.float32)
    model(x).square().sum().backward()
    for st in model:
        assert st.regression.weight.grad.abs().sum() > 0
        assert st.regression.bias.grad.abs().sum() > 0
        assert all(p.grad is not None for p in st.localisation.parameters())


# -- any number of channels: one warp for every channel ---------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_every_channel_gets_the_same_warp(name, helpers):
    shape = _shape(name, 2, 17)
    st = helpers.make_st(name, shape[1:]).double()
    x = helpers.uniform(shape, 0, 1, helpers.gen(13))
    y, theta = st(x, return_theta=True)
    for c in (0, 7, 16):
        torch.testing.assert_close(y[:, c:c + 1], stnkit.warp(x[:, c:c + 1], theta, name), atol=1e-12, rtol=0)


# -- localisation nets ---------------------------------------------------------------------------------
def test_fc_localisation_shapes():
    net = stnkit.fc_localisation((2, 6, 5))
    assert net.out_features == 32
    assert net(torch.zeros(3, 2, 6, 5)).shape == (3, 32)
    assert [m.out_features for m in net if isinstance(m, nn.Linear)] == [32, 32, 32]  # the paper's 3 x 32
    assert stnkit.fc_localisation((1, 4, 4), hidden=(7, 3))(torch.zeros(2, 1, 4, 4)).shape == (2, 3)


@pytest.mark.parametrize("in_shape", [(1, 28, 28), (2, 42, 42), (1, 60, 60), (1, 32, 32, 32)])
def test_conv_localisation_shapes(in_shape):
    net = stnkit.conv_localisation(in_shape)
    assert net.out_features == 20
    assert net(torch.zeros(2, *in_shape)).shape == (2, 20)
    convs = [m for m in net if isinstance(m, (nn.Conv2d, nn.Conv3d))]
    assert [c.out_channels for c in convs] == [20, 20] and convs[0].kernel_size[0] == 5


def test_conv_localisation_without_downsampling():
    net = stnkit.conv_localisation((1, 12, 12), channels=(3,), kernel_size=3, hidden=6, downsample=1)
    assert not any(isinstance(m, nn.AvgPool2d) for m in net)
    assert net(torch.zeros(1, 1, 12, 12)).shape == (1, 6)


def test_any_user_module_works_as_localisation(helpers):
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.AdaptiveAvgPool2d(2)

        def forward(self, x):
            return self.pool(x).flatten(1)  # (N, 4 C)

    st = stnkit.SpatialTransformer(Custom(), "attention", loc_features=12)
    x = torch.rand(2, 3, 8, 8, generator=helpers.gen(14))
    torch.testing.assert_close(st(x), x, atol=2e-6, rtol=0)
    inferred = stnkit.SpatialTransformer(nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 5)), "affine")
    assert inferred.regression.in_features == 5


def test_state_dict_round_trip(helpers):
    st = helpers.make_st("tps", (1, 8, 8), heads=2)
    clone = stnkit.SpatialTransformer(stnkit.fc_localisation((1, 8, 8), hidden=(8,)), "tps", heads=2)
    clone.load_state_dict(st.state_dict())
    x = torch.rand(2, 1, 8, 8, generator=helpers.gen(15))
    torch.testing.assert_close(clone(x), st(x), atol=0, rtol=0)
