"""Contracts every entry point keeps: inputs untouched, dtype and device kept, batched equals one by
one, empty batches, inference mode, determinism."""

from __future__ import annotations

import pytest
import torch

import stnkit
from stnkit.transforms import get

from contract import Case, check_contract

FAMILIES = stnkit.transforms.list_transforms()
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _shape(name, n, c=2):
    return (n, c) + ((4, 5, 6) if get(name).ndim == 3 else (7, 9))


# -- inputs are never modified in place -----------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_inputs_are_not_modified(name, helpers):
    family = get(name)
    shape = _shape(name, 2, 3)
    x = helpers.uniform(shape, 0, 1, helpers.gen(1)).requires_grad_()
    theta = helpers.random_theta(family, 2, helpers.gen(2)).requires_grad_()
    points = helpers.uniform((5, family.ndim), -1, 1, helpers.gen(3))
    fill = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    saved = [t.detach().clone() for t in (x, theta, points, fill)]
    family.warp_points(theta, points)
    grid = family.grid(theta, shape[2:])
    grid_saved = grid.detach().clone()
    out = stnkit.sample(x, grid, fill=fill)
    out = out + stnkit.warp(x, theta, family, fill=fill) + stnkit.warp(x, theta, name, padding="reflection")
    out.sum().backward()
    for before, after in zip(saved, (x, theta, points, fill)):
        assert torch.equal(before, after.detach())
    assert torch.equal(grid_saved, grid.detach())


@pytest.mark.parametrize("name", FAMILIES)
def test_module_does_not_modify_its_inputs(name, helpers):
    shape = _shape(name, 2, 2)
    st = helpers.make_st(name, shape[1:], heads=2, fill=0.25)
    conv = stnkit.SpatialTransformer(stnkit.conv_localisation((2, 16, 16, 16) if get(name).ndim == 3 else (2, 16, 16),
                                                        kernel_size=3, downsample=1), name)
    for module, size in ((st, shape[2:]), (conv, (16,) * get(name).ndim)):
        x = torch.rand(2, 2, *size, generator=helpers.gen(4)).requires_grad_()
        source = torch.rand(2, 3, *size, generator=helpers.gen(5))
        saved_x, saved_source = x.detach().clone(), source.clone()
        module(x, source=source, return_theta=True)[0].sum().backward()
        module(x).sum().backward()
        assert torch.equal(saved_x, x.detach()) and torch.equal(saved_source, source)


def test_base_grid_cache_is_not_corrupted(helpers):
    theta = torch.randn(2, 6, generator=helpers.gen(6), dtype=torch.float64, requires_grad=True)
    before = stnkit.coords.base_grid((5, 6), dtype=torch.float64).clone()
    grid = get("affine").grid(theta, (5, 6))
    grid.sum().backward()
    grid.detach().mul_(0)  # a caller scribbling on its own result ...
    assert torch.equal(stnkit.coords.base_grid((5, 6), dtype=torch.float64), before)  # ... leaves the cache alone


# -- dtype and device --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_and_device_are_kept(name, dtype, device, helpers):
    shape = _shape(name, 2, 2)
    st = helpers.make_st(name, shape[1:]).to(device=device, dtype=dtype)
    x64 = helpers.smooth_image(shape)
    x = x64.to(device=device, dtype=dtype).requires_grad_()
    y, theta = st(x, return_theta=True)
    assert y.dtype == dtype and y.device == x.device
    assert theta.dtype == dtype and theta.device == x.device
    y.float().sum().backward()
    assert x.grad.dtype == dtype and st.regression.weight.grad.dtype == dtype
    # Low precision warps in float32 internally: the result is the float64 warp, rounded.
    expected = stnkit.warp(x64, theta.detach().double().cpu(), name)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 2e-2, torch.float16: 3e-3}[dtype]
    torch.testing.assert_close(y.detach().double().cpu(), expected, atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_functional_dtypes(dtype, helpers):
    x = helpers.smooth_image((1, 1, 6, 6)).to(dtype)
    theta = helpers.random_theta(get("affine"), 1, helpers.gen(7))  # float64 theta, any input dtype
    out = stnkit.warp(x, theta, "affine")
    assert out.dtype == dtype
    grid = get("affine").grid(theta.to(dtype), (6, 6))
    assert grid.dtype == dtype
    assert stnkit.sample(x, grid.double()).dtype == dtype


def test_low_precision_sample_uses_a_float32_grid(helpers):
    # A 256-pixel row: a bfloat16 grid would be off by up to half a pixel.
    x = torch.arange(256, dtype=torch.float32).view(1, 1, 1, 256)
    grid = helpers.uniform((1, 1, 50, 2), -0.99, 0.99, helpers.gen(8), dtype=torch.float32)
    grid[..., 1] = 0
    out = stnkit.sample(x.to(torch.bfloat16), grid).float()
    expected = stnkit.sample(x, grid)
    torch.testing.assert_close(out, expected.to(torch.bfloat16).float(), atol=0, rtol=0)


# -- batched equals one by one -------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_batched_equals_one_by_one(name, helpers):
    shape = _shape(name, 4, 2)
    st = helpers.make_st(name, shape[1:], heads=2).double()
    x = helpers.uniform(shape, 0, 1, helpers.gen(9))
    y, theta = st(x, return_theta=True)
    for i in range(4):
        y_i, theta_i = st(x[i:i + 1], return_theta=True)
        torch.testing.assert_close(y[i:i + 1], y_i, atol=1e-12, rtol=0)
        torch.testing.assert_close(theta[i:i + 1], theta_i, atol=1e-12, rtol=0)
        torch.testing.assert_close(stnkit.warp(x[i:i + 1], theta[i:i + 1, 0], name), y_i[:, :2], atol=1e-12, rtol=0)


# -- empty batches ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("heads", [1, 3])
def test_empty_batch_forward_and_backward(name, heads, helpers):
    shape = _shape(name, 0, 2)
    st = helpers.make_st(name, shape[1:], heads=heads)
    x = torch.zeros(shape, requires_grad=True)
    y, theta = st(x, return_theta=True)
    assert y.shape == (0, 2 * heads, *shape[2:])
    assert theta.shape == ((0, st.transform.num_params) if heads == 1 else (0, heads, st.transform.num_params))
    y.sum().backward()
    assert x.grad.shape == shape
    assert st.regression.weight.grad is not None and not st.regression.weight.grad.any()


@pytest.mark.parametrize("name", FAMILIES)
def test_empty_batch_functional(name):
    family = get(name)
    theta = torch.zeros(0, family.num_params, requires_grad=True)
    size = (3,) * family.ndim
    assert family.grid(theta, size).shape == (0, *size, family.ndim)
    assert family.warp_points(theta, torch.zeros(4, family.ndim)).shape == (0, 4, family.ndim)
    out = stnkit.warp(torch.zeros(0, 1, *size), theta, family, fill=0.5)
    assert out.shape == (0, 1, *size)
    out.sum().backward()
    assert theta.grad.shape == theta.shape


# -- no-grad and inference mode --------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_inference_mode_first_then_training(name, helpers):
    # Caches filled under inference mode must still work with autograd afterwards.
    shape = (1, 1) + ((3, 7, 5) if get(name).ndim == 3 else (13, 7))  # sizes no other test uses
    st = helpers.make_st(name, shape[1:])
    x = torch.rand(shape, generator=helpers.gen(10))
    with torch.inference_mode():
        y0 = st(x)
    with torch.no_grad():
        y1 = st(x)
    y2 = st(x.requires_grad_())
    y2.sum().backward()
    assert st.regression.weight.grad.abs().sum() > 0
    torch.testing.assert_close(y0, y1, atol=0, rtol=0)
    torch.testing.assert_close(y1, y2.detach(), atol=0, rtol=0)


def test_repeated_calls_are_deterministic(helpers):
    st = helpers.make_st("tps", (1, 8, 8))
    x = torch.rand(3, 1, 8, 8, generator=helpers.gen(11))
    assert torch.equal(st(x), st(x))


def test_functional_warp_by_name_equals_instance(helpers):
    x = torch.rand(2, 1, 8, 8, generator=helpers.gen(12))
    theta = helpers.random_theta(get("tps"), 2, helpers.gen(13), dtype=torch.float32)
    torch.testing.assert_close(stnkit.warp(x, theta, "tps"), stnkit.warp(x, theta, get("tps")), atol=0, rtol=0)


# -- the one contract checker over the family registry (tests/contract.py) -------------------------
def _family_cases(name):
    family = get(name)
    size = (4, 5, 6) if family.ndim == 3 else (7, 9)

    def theta_and_image(g):
        theta = helpers_random_theta(family, 3, g)
        return theta, torch.rand(3, 2, *size, generator=g, dtype=torch.float64)

    antialias = [] if family.ndim == 3 else [  # output 3x smaller: the mip levels are read
        Case(f"stnkit.warp({name}, antialias=True)", family,
             lambda f, theta, x: stnkit.warp(x, theta, f, size=(2, 3), fill=0.25, antialias=True), theta_and_image)]
    return antialias + [
        Case(f"{name}.grid", family, lambda f, theta, x: f.grid(theta, size), theta_and_image),
        Case(f"{name}.warp_points", family,
             lambda f, theta, points: f.warp_points(theta, points),
             lambda g: (helpers_random_theta(family, 3, g), torch.rand(3, 5, family.ndim, generator=g, dtype=torch.float64) * 2 - 1)),
        Case(f"stnkit.warp({name})", family,
             lambda f, theta, x: stnkit.warp(x, theta, f, fill=0.25), theta_and_image),
    ]


def helpers_random_theta(family, n, g):
    identity = family.identity(dtype=torch.float64)
    return identity + (torch.rand(n, family.num_params, generator=g, dtype=torch.float64) - 0.5) * 0.4


@pytest.mark.parametrize("name", FAMILIES)
def test_family_contract(name):
    for case in _family_cases(name):
        check_contract(case)


@pytest.mark.parametrize("name", FAMILIES)
def test_spatial_transformer_contract(name, helpers):
    shape = _shape(name, 3, 2)
    st = helpers.make_st(name, shape[1:], heads=2, fill=0.25).double().eval()
    check_contract(Case(f"SpatialTransformer({name})", st, lambda m, x: m(x, return_theta=True),
                        lambda g: (torch.rand(shape, generator=g, dtype=torch.float64),)))


# -- export (the contract checker's "export" check): ONNX in onnxruntime and torch.export ----------------
def _horizon_theta(n, g):
    """Projective theta whose horizon (w = 0) crosses the output: w = g x + h y + 1 with |g| + |h| > 1."""
    theta = helpers_random_theta(get("projective"), n, g)
    theta[:, 6:8] = torch.tensor([1.3, -0.4], dtype=torch.float64) + 0.1 * torch.rand(n, 2, generator=g, dtype=torch.float64)
    return theta


@pytest.mark.parametrize("name", FAMILIES)
def test_export_contract(name, helpers):
    family = get(name)
    shape = _shape(name, 3, 2)
    out_size = (3, 4, 5) if family.ndim == 3 else (6, 11)
    st = helpers.make_st(name, shape[1:], heads=2, fill=0.25, output_size=out_size).eval()
    cases = [
        Case(f"stnkit.warp({name}) export", family, lambda f, theta, x: stnkit.warp(x, theta, f, fill=0.25),
             lambda g: (helpers_random_theta(family, 3, g), torch.rand(shape, generator=g, dtype=torch.float64))),
        Case(f"SpatialTransformer({name}, heads=2, fill, output_size) export", st,
             lambda m, x: m(x, return_theta=True), lambda g: (torch.rand(shape, generator=g),)),
    ]
    if name == "projective":
        cases.append(Case("stnkit.warp(projective) near the horizon export", family,
                          lambda f, theta, x: stnkit.warp(x, theta, f, padding="border"),
                          lambda g: (_horizon_theta(3, g), torch.rand(shape, generator=g, dtype=torch.float64))))
    for case in cases:
        check_contract(case, ("export",))


@pytest.mark.parametrize("name", [n for n in FAMILIES if isinstance(get(n), stnkit.transforms.MatrixTransform)])
def test_iterative_transformer_contract(name):
    shape = _shape(name, 3, 2)
    ic = stnkit.IterativeSpatialTransformer(stnkit.fc_localisation(shape[1:], hidden=(4,)), name, steps=3,
                                            fill=0.25).double().eval()
    with torch.no_grad():  # updates away from the identity, so every step warps
        ic.regression.bias.add_(torch.linspace(-0.05, 0.05, ic.regression.bias.numel(), dtype=torch.float64))
    check_contract(Case(f"IterativeSpatialTransformer({name})", ic, lambda m, x: m(x, return_thetas=True),
                        lambda g: (torch.rand(shape, generator=g, dtype=torch.float64),)))


# -- the field utilities and a transformer without regression layer (stnkit.fields, issue 13) -----
FIELD_FUNCTIONS = {
    "integrate_velocity": lambda f, a, b: stnkit.fields.integrate_velocity(a, 3),
    "invert_field": lambda f, a, b: stnkit.fields.invert_field(a, 3),
    "compose_fields": lambda f, a, b: stnkit.fields.compose_fields(a, b),
    "jacobian_determinant": lambda f, a, b: stnkit.fields.jacobian_determinant(a),
    "folding_fraction": lambda f, a, b: stnkit.fields.folding_fraction(a * 8),
    "to_voxel": lambda f, a, b: stnkit.fields.from_voxel(stnkit.fields.to_voxel(a) + b),
}


@pytest.mark.parametrize("name", sorted(FIELD_FUNCTIONS))
@pytest.mark.parametrize("size", [(5, 6), (3, 4, 5)])
def test_field_utilities_contract(name, size):
    d = len(size)
    check_contract(Case(f"fields.{name}", None, FIELD_FUNCTIONS[name],
                        lambda g: tuple(torch.rand(3, d, *size, generator=g, dtype=torch.float64) * 0.2 - 0.1
                                        for _ in range(2))))


def test_spatial_transformer_without_regression_contract():
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 3, padding=1), torch.nn.AdaptiveAvgPool2d(4))
    st = stnkit.SpatialTransformer(net, "velocity", transform_options={"field_size": 4, "steps": 3},
                                   regression=False).double().eval()
    with torch.no_grad():
        net[0].weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    check_contract(Case("SpatialTransformer(velocity, regression=False)", st, lambda m, x: m(x, return_theta=True),
                        lambda g: (torch.rand(3, 2, 9, 8, generator=g, dtype=torch.float64),)))


def test_iterative_transformer_export_contract(helpers):
    shape = _shape("affine", 3, 2)
    ic = stnkit.IterativeSpatialTransformer(stnkit.fc_localisation(shape[1:], hidden=(4,)), "affine", steps=3,
                                            fill=0.25).eval()
    with torch.no_grad():  # updates away from the identity, so every step warps
        ic.regression.weight.normal_(0, 0.05, generator=helpers.gen(3))
    check_contract(Case("IterativeSpatialTransformer(affine) export", ic, lambda m, x: m(x, return_thetas=True),
                        lambda g: (torch.rand(shape, generator=g),)), ("export",))
