"""No silent wrong answers (issue 14 item 4), parametrised over the transforms registry and over the
public functions' signatures, so a new family, option or flag inherits every check."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit.errors import AllocationTooLargeError, NonFiniteThetaError
from stnkit.transforms import MatrixTransform, get

FAMILIES = stnkit.transforms.list_transforms()
MATRIX = [n for n in FAMILIES if isinstance(get(n), MatrixTransform)]
D = torch.float64


def _theta(name, n=2, seed=0, spread=0.3):
    family = get(name)
    g = torch.Generator().manual_seed(seed)
    return family.identity(dtype=D) + (torch.rand(n, family.num_params, generator=g, dtype=D) - 0.5) * spread


def _image(name, n=2, c=2):
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, c, *((4, 5, 6) if get(name).ndim == 3 else (6, 7)), generator=g, dtype=D)


def _st(cls, name, **kw):
    shape = (1, 4, 5, 6) if get(name).ndim == 3 else (1, 6, 7)
    return cls(stnkit.fc_localisation(shape, hidden=(4,)), name, **kw)


# The public callables, each as (label, call with keyword options for a family name).
ENTRY_POINTS = {
    "warp": lambda name, **kw: stnkit.warp(_image(name), _theta(name), name, **kw),
    "sample": lambda name, **kw: stnkit.sample(_image(name), get(name).grid(_theta(name), _image(name).shape[2:]), **kw),
    "SpatialTransformer": lambda name, **kw: _st(stnkit.SpatialTransformer, name, **kw),
    "IterativeSpatialTransformer": lambda name, **kw: _st(stnkit.IterativeSpatialTransformer, name, **kw),
    "grid": lambda name, **kw: get(name).grid(_theta(name), _image(name).shape[2:], **kw),
    "pixel_centres": lambda name, **kw: stnkit.coords.pixel_centres(5, **kw),
    "base_grid": lambda name, **kw: stnkit.coords.base_grid((4, 5), **kw),
    "normalized_to_pixel": lambda name, **kw: stnkit.coords.normalized_to_pixel(torch.zeros(3, 2), (4, 5), **kw),
    "pixel_to_normalized": lambda name, **kw: stnkit.coords.pixel_to_normalized(torch.zeros(3, 2), (4, 5), **kw),
    "SpatialTransformer.forward": lambda name, **kw: _st(stnkit.SpatialTransformer, name).double()(
        _image(name, c=1), **kw),
    "IterativeSpatialTransformer.forward": lambda name, **kw: _st(stnkit.IterativeSpatialTransformer, name).double()(
        _image(name, c=1), **kw),
}
SIGNATURES = {
    "warp": stnkit.warp, "sample": stnkit.sample, "SpatialTransformer": stnkit.SpatialTransformer,
    "IterativeSpatialTransformer": stnkit.IterativeSpatialTransformer, "grid": stnkit.transforms.Transform.grid,
    "SpatialTransformer.forward": stnkit.SpatialTransformer.forward,
    "pixel_centres": stnkit.coords.pixel_centres, "base_grid": stnkit.coords.base_grid,
    "normalized_to_pixel": stnkit.coords.normalized_to_pixel, "pixel_to_normalized": stnkit.coords.pixel_to_normalized,
    "IterativeSpatialTransformer.forward": stnkit.IterativeSpatialTransformer.forward,
}


def _flags():
    """Every (entry point, parameter) whose default is a bool."""
    for entry, fn in SIGNATURES.items():
        for p in inspect.signature(fn).parameters.values():
            if isinstance(p.default, bool):
                yield entry, p.name


# -- flags must be real bools --------------------------------------------------------------------------
@pytest.mark.parametrize("entry,flag", list(_flags()))
@pytest.mark.parametrize("value", [1, 0, "False", None, torch.tensor(True)])
def test_flags_must_be_bools(entry, flag, value):
    name = "affine"
    with pytest.raises(TypeError, match=rf"{flag}: expected a bool \(True or False\), got"):
        ENTRY_POINTS[entry](name, **{flag: value})


def test_other_flags_must_be_bools():
    with pytest.raises(TypeError, match=r"strict: expected a bool"):
        get("affine").from_matrix(torch.eye(3, dtype=D)[None], strict=1)
    with pytest.raises(TypeError, match=r"flag: expected a bool"):
        stnkit.fastpath.set_enabled(1)


# -- family options: finite, of the right kind (from each registered family's signature) ---------------
def _family_options():
    for name in FAMILIES:
        for p in inspect.signature(stnkit.transforms._REGISTRY.get(name)).parameters.values():
            if isinstance(p.default, float):
                for bad in (math.nan, math.inf, -math.inf):
                    yield name, p.name, bad
            elif isinstance(p.default, int) and not isinstance(p.default, bool):
                for bad in (2.5, True, "3"):
                    yield name, p.name, bad


@pytest.mark.parametrize("name,option,bad", list(_family_options()))
def test_family_options_refuse_non_finite_and_wrong_kinds(name, option, bad):
    with pytest.raises((TypeError, ValueError), match=rf"{option}: expected"):
        get(name, **{option: bad})


# -- fill: finite, applied exactly whatever its size --------------------------------------------------------
@pytest.mark.parametrize("entry", ["warp", "sample", "SpatialTransformer", "IterativeSpatialTransformer"])
@pytest.mark.parametrize("fill", [math.nan, math.inf, [0.5, -math.inf], torch.tensor([math.nan, 1.0])])
def test_non_finite_fill_is_refused(entry, fill):
    with pytest.raises(ValueError, match=r"fill: expected finite values"):
        ENTRY_POINTS[entry]("affine", fill=fill)


def test_fill_beyond_the_dtype_is_refused():
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"fill: 1e\+300 does not fit the sampling dtype torch.float32"):
        stnkit.warp(x, get("affine").identity()[None], fill=1e300)
    with pytest.raises(ValueError, match=r"fill: 100000.0 does not fit the sampling dtype torch.float16"):
        stnkit.warp(x.half(), get("affine").identity()[None].half(), fill=1e5)  # sampled in float32, returned in float16


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("fill", [1e30, -3e38, 12345.678])
def test_huge_fill_is_exact_inside_and_outside(name, fill):
    x = _image(name).float()
    grid = get(name).grid(_theta(name, spread=0.6).float(), x.shape[2:]).clone()
    grid[:, 0] = 4.0  # a row far outside
    plain = stnkit.sample(x, grid)  # zero padding
    out = stnkit.sample(x, grid, fill=fill)
    pix = stnkit.coords.normalized_to_pixel(grid, x.shape[2:])  # (N, ..., d)
    extent = torch.tensor(list(reversed(x.shape[2:])), dtype=pix.dtype)
    inside = ((pix >= 0) & (pix <= extent - 1)).all(-1).unsqueeze(1).expand_as(out)  # every tap in the image
    outside = ((pix < -1) | (pix > extent)).any(-1).unsqueeze(1).expand_as(out)  # every tap outside
    assert inside.any() and outside.any()
    assert torch.equal(out[inside], plain[inside])
    assert torch.equal(out[outside], torch.full_like(out[outside], fill))


@pytest.mark.parametrize("fill", [1e30, -3e38])
def test_huge_fill_with_antialias_is_exact_inside(fill):
    x = torch.rand(2, 3, 32, 32)
    theta = torch.tensor([[0.6, 0.05, 0.02, -0.04, 0.6, 0.01]]).expand(2, 6)  # 4.8x shrink, 8 px from the edges
    plain = stnkit.warp(x, theta, size=(4, 4), antialias=True)
    assert not torch.equal(plain, stnkit.warp(x, theta, size=(4, 4)))  # the mip levels are read
    assert torch.equal(stnkit.warp(x, theta, size=(4, 4), antialias=True, fill=fill), plain)


# -- restricted families refuse matrices they cannot represent --------------------------------------------
@pytest.mark.parametrize("name", MATRIX)
def test_from_matrix_refuses_matrices_outside_the_family(name):
    family = get(name)
    d = family.ndim + 1
    g = torch.Generator().manual_seed(3)
    general = torch.eye(d, dtype=D) + torch.rand(3, d, d, generator=g, dtype=D) * 0.3
    if name == "projective":  # every matrix with a usable corner is projective: refuse a zero corner
        general[1, 2, 2] = 0.0
        with pytest.raises(ValueError, match=r"matrix: expected a bottom-right entry .* in samples \[1\]"):
            family.from_matrix(general)
        return
    general[0] = family.matrix(_theta(name, 1))[0]  # sample 0 is in the family
    with pytest.raises(ValueError, match=rf"matrix: samples \[1, 2\] are not '{name}' matrices: they differ"):
        family.from_matrix(general)
    projected = family.from_matrix(general, strict=False)  # documented projection, no check
    assert projected.shape == (3, family.num_params)
    torch.testing.assert_close(projected[0], _theta(name, 1)[0], atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", MATRIX)
@pytest.mark.parametrize("dtype", [torch.float32, D])
def test_round_trips_through_compose_and_inverse_pass_strict(name, dtype):
    family = get(name)
    a, b = _theta(name, 4, 5, 0.8).to(dtype), _theta(name, 4, 6, 0.8).to(dtype)
    for theta in (family.compose(a, b), family.inverse(a), family.compose(family.inverse(b), a)):
        family.from_matrix(family.matrix(theta))  # strict: within the documented tolerance


def test_from_matrix_refuses_non_finite():
    m = torch.eye(3, dtype=D).repeat(2, 1, 1)
    m[1, 0, 1] = math.nan
    with pytest.raises(ValueError, match=r"matrix: expected finite values, got NaN or infinity in samples \[1\]"):
        get("affine").from_matrix(m)


# -- inverse names the singular samples ----------------------------------------------------------------------
@pytest.mark.parametrize("name", MATRIX)
def test_inverse_names_the_singular_samples(name):
    family = get(name)
    d = family.ndim + 1
    collapse = torch.zeros(1, d, d, dtype=D)
    collapse[0, -1, -1] = 1.0  # every point to the origin
    singular = family.from_matrix(collapse, strict=False)
    if torch.linalg.matrix_rank(family.matrix(singular))[0] == d:
        pytest.skip(f"{name} has no singular member")
    theta = torch.cat([_theta(name, 2), singular, _theta(name, 1, 9)])
    with pytest.raises(ValueError, match=r"theta: samples \[2\] are singular warps"):
        family.inverse(theta)
    theta[1, 0] = math.nan
    with pytest.raises(NonFiniteThetaError, match=r"theta: expected finite values.*samples \[1\]"):
        family.inverse(theta)


# -- compose and the samplers name mismatched batch sizes, dtypes and devices -----------------------------
@pytest.mark.parametrize("name", MATRIX)
def test_compose_names_mismatches(name):
    family = get(name)
    a = _theta(name, 2)
    with pytest.raises(ValueError, match=r"second: batch size 3 does not match first's 2"):
        family.compose(a, _theta(name, 3))
    with pytest.raises(TypeError, match=r"second: expected first's dtype torch.float64, got torch.float32"):
        family.compose(a, a.float())
    with pytest.raises(ValueError, match=r"second: expected a tensor on first's device cpu, got meta"):
        family.compose(a, a.to("meta"))


@pytest.mark.parametrize("name", FAMILIES)
def test_samplers_name_mismatched_devices_and_batches(name):
    x, theta = _image(name), _theta(name)
    grid = get(name).grid(theta, x.shape[2:])
    with pytest.raises(ValueError, match=r"theta: expected a tensor on input's device cpu, got meta"):
        stnkit.warp(x, theta.to("meta"), name)
    with pytest.raises(ValueError, match=r"grid: expected a tensor on input's device cpu, got meta"):
        stnkit.sample(x, grid.to("meta"))
    with pytest.raises(ValueError, match=r"points: expected a tensor on theta's device cpu, got meta"):
        get(name).warp_points(theta, torch.zeros(3, get(name).ndim, device="meta", dtype=D))
    with pytest.raises(ValueError, match=r"theta: batch size 3 does not match input's 2"):
        stnkit.warp(x, _theta(name, 3), name)
    with pytest.raises(ValueError, match=r"grid: batch size 2 does not match input's 1"):
        stnkit.sample(x[:1], grid)


@pytest.mark.parametrize("name", FAMILIES)
def test_non_finite_grid_follows_the_policy(name):
    x, theta = _image(name), _theta(name)
    grid = get(name).grid(theta, x.shape[2:]).clone()
    grid[1, 0, 0] = math.nan
    with pytest.raises(NonFiniteThetaError, match=r"grid: expected finite values.*samples \[1\]"):
        stnkit.sample(x, grid)


# -- warp_points passes gradients to the points -------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_warp_points_gradcheck_in_points_and_theta(name):
    family = get(name)
    g = torch.Generator().manual_seed(7)
    points = (torch.rand(2, 4, family.ndim, generator=g, dtype=D) * 1.8 - 0.9).requires_grad_()
    theta = _theta(name).requires_grad_()
    assert torch.autograd.gradcheck(family.warp_points, (theta, points))


# -- allocations above the limit ---------------------------------------------------------------------------
@pytest.fixture
def small_limit():
    previous = stnkit.errors.max_allocation_bytes()
    stnkit.errors.set_max_allocation_bytes(1 << 20)
    yield 1 << 20
    stnkit.errors.set_max_allocation_bytes(previous)


@pytest.mark.parametrize("entry", ["warp", "grid"])
@pytest.mark.parametrize("name", FAMILIES)
def test_allocations_above_the_limit_are_refused(entry, name, small_limit):
    family = get(name)
    size = (64,) * family.ndim if family.ndim == 3 else (600, 700)
    theta = _theta(name)
    with pytest.raises(AllocationTooLargeError, match=r"grid: shape \(2, .*\) in torch.float64 needs .* MiB .* above "
                                                      r"the limit of 1.00 MiB"):
        if entry == "warp":
            stnkit.warp(_image(name), theta, name, size=size)
        else:
            family.grid(theta, size)


def test_sample_output_above_the_limit(small_limit):
    x = torch.rand(2, 300, 8, 8, dtype=D)
    grid = torch.zeros(2, 20, 20, 2, dtype=D)
    with pytest.raises(AllocationTooLargeError, match=r"output: shape \(2, 300, 20, 20\) in torch.float64 needs "
                                                      r"1.83 MiB \(1920000 bytes\)") as err:
        stnkit.sample(x, grid)
    assert err.value.requested == 1920000 and err.value.limit == small_limit


def test_default_limit_catches_absurd_sizes():
    with pytest.raises(AllocationTooLargeError, match=r"needs 74.51 GiB"):
        stnkit.warp(torch.rand(1, 1, 4, 4), get("affine").identity()[None], size=(100000, 100000))
    with pytest.raises(ValueError, match=r"limit: expected a positive int"):
        stnkit.errors.set_max_allocation_bytes(0)
