"""Every bad input of issue 2 section 6 raises TypeError/ValueError naming the argument, what was
expected and what was given."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
from torch import nn

import stnkit
from stnkit import errors
from stnkit.errors import NonFiniteThetaError
from stnkit.reference import reference_sample
from stnkit.transforms import get

FAMILIES = stnkit.transforms.list_transforms()


def _st(transform="affine", in_shape=(1, 6, 6), **kwargs):
    return stnkit.SpatialTransformer(stnkit.fc_localisation(in_shape, hidden=(4,)), transform, **kwargs)


def _theta(name, n=2):
    return get(name).identity().expand(n, -1)


def _x(name, n=2, c=1):
    return torch.rand(n, c, *((4, 5, 6) if get(name).ndim == 3 else (6, 7)))


# -- wrong rank ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_warp_input_of_wrong_rank(name):
    rank = get(name).ndim + 2
    bad = torch.rand(*([2] * (rank - 1)))
    with pytest.raises(ValueError, match=rf"input: expected a {rank}-D tensor .*got shape \(2, 2.*\({rank - 1}-D\)"):
        stnkit.warp(bad, _theta(name), name)


@pytest.mark.parametrize("name", FAMILIES)
def test_theta_of_wrong_rank(name):
    p = get(name).num_params
    with pytest.raises(ValueError, match=rf"theta: expected a 2-D tensor \(N, {p}\), got shape \({p}\,?\)"):
        stnkit.warp(_x(name, 1), get(name).identity(), name)
    with pytest.raises(ValueError, match=r"theta: expected a 2-D tensor"):
        get(name).grid(get(name).identity().view(1, 1, -1), (3,) * get(name).ndim)


def test_module_input_of_wrong_rank():
    with pytest.raises(ValueError, match=r"x: expected a 4-D tensor \(N, C, H, W\), got shape \(1, 6, 6\) \(3-D\)"):
        _st()(torch.rand(1, 6, 6))
    with pytest.raises(ValueError, match=r"x: expected a 5-D tensor \(N, C, D, H, W\)"):
        _st("affine3d", (1, 3, 4, 5))(torch.rand(1, 1, 12, 5))
    with pytest.raises(ValueError, match=r"source: expected a 4-D tensor"):
        _st()(torch.rand(1, 1, 6, 6), source=torch.rand(1, 1, 1, 6, 6))


def test_sample_grid_of_wrong_rank_or_width():
    x = torch.rand(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"grid: expected a 4-D tensor \(N, H', W', 2\), got shape \(1, 3, 2\)"):
        stnkit.sample(x, torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match=r"grid: expected last dimension 2 for a 4-D input, got shape \(1, 3, 3, 3\)"):
        stnkit.sample(x, torch.zeros(1, 3, 3, 3))
    with pytest.raises(ValueError, match=r"input: expected a 4-D or 5-D tensor"):
        stnkit.sample(torch.rand(4, 4), torch.zeros(1, 3, 3, 2))


def test_points_of_wrong_shape():
    with pytest.raises(ValueError, match=r"points: expected last dimension 2 \(x, y\), got shape \(5, 3\)"):
        get("affine").warp_points(_theta("affine"), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"points: batch size 3 does not match theta's 2"):
        get("tps").warp_points(_theta("tps"), torch.zeros(3, 5, 2))
    with pytest.raises(ValueError, match=r"points: expected a 2-D or 3-D tensor"):
        get("affine3d").warp_points(_theta("affine3d"), torch.zeros(3))


# -- batch mismatch -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_batch_mismatch_between_input_and_theta(name):
    with pytest.raises(ValueError, match=r"theta: batch size 3 does not match input's 2 .*input shape \(2, 1"):
        stnkit.warp(_x(name, 2), _theta(name, 3), name)


def test_batch_mismatch_between_input_and_grid():
    with pytest.raises(ValueError, match=r"grid: batch size 1 does not match input's 2"):
        stnkit.sample(torch.rand(2, 1, 4, 4), torch.zeros(1, 3, 3, 2))


def test_batch_mismatch_between_x_and_source():
    with pytest.raises(ValueError, match=r"source: batch size 3 does not match x's 2"):
        _st()(torch.rand(2, 1, 6, 6), source=torch.rand(3, 1, 6, 6))


# -- wrong parameter count ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
def test_wrong_parameter_count(name):
    p = get(name).num_params
    theta = torch.zeros(2, p + 1)
    message = (rf"theta: transform '{name}' expects {p} parameters per sample, shape \(N, {p}\); "
               rf"got shape \(2, {p + 1}\)")
    with pytest.raises(ValueError, match=message):
        stnkit.warp(_x(name), theta, name)
    with pytest.raises(ValueError, match=message):
        get(name).grid(theta, (3,) * get(name).ndim)
    with pytest.raises(ValueError, match=message):
        get(name).warp_points(theta, torch.zeros(4, get(name).ndim))


def test_from_matrix_of_wrong_shape():
    with pytest.raises(ValueError, match=r"matrix: expected shape \(N, 3, 3\), got \(2, 2, 3\)"):
        get("affine").from_matrix(torch.zeros(2, 2, 3))
    with pytest.raises(ValueError, match=r"matrix: expected shape \(N, 4, 4\), got list"):
        get("affine3d").from_matrix([[1.0]])


# -- integer images and non-tensors -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool])
def test_integer_images_are_refused(dtype):
    x = torch.zeros(2, 1, 6, 6, dtype=dtype)
    message = rf"input: expected a floating-point tensor .*got dtype {dtype}"
    with pytest.raises(TypeError, match=message):
        stnkit.warp(x, _theta("affine"), "affine")
    with pytest.raises(TypeError, match=message):
        stnkit.sample(x, torch.zeros(2, 3, 3, 2))
    with pytest.raises(TypeError, match=rf"x: expected a floating-point tensor .*got dtype {dtype}"):
        _st()(x)


def test_integer_theta_is_refused():
    with pytest.raises(TypeError, match=r"theta: expected a floating-point tensor .*got dtype torch.int64"):
        stnkit.warp(torch.rand(1, 1, 4, 4), torch.tensor([[1, 0, 0, 0, 1, 0]]), "affine")


def test_non_tensors_are_refused():
    with pytest.raises(TypeError, match=r"input: expected a torch.Tensor of shape \(N, C, H, W\), got list"):
        stnkit.warp([[0.0]], _theta("affine", 1), "affine")
    with pytest.raises(TypeError, match=r"theta: expected a torch.Tensor .*got ndarray"):
        import numpy as np
        stnkit.warp(torch.rand(1, 1, 4, 4), np.zeros((1, 6)), "affine")
    with pytest.raises(TypeError, match=r"localisation: expected an nn.Module, got function"):
        stnkit.SpatialTransformer(lambda x: x, "affine")


# -- unknown names list the valid ones -----------------------------------------------------------------
def test_unknown_family_lists_the_registered_ones():
    listed = ", ".join(FAMILIES)
    with pytest.raises(ValueError, match=rf"transform: unknown transform family 'rigid'; expected one of: {listed}"):
        get("rigid")
    with pytest.raises(ValueError, match=r"transform: unknown transform family 'Affine'; expected one of: affine,"):
        _st("Affine")
    with pytest.raises(ValueError, match=r"transform: unknown transform family 'homography'"):
        stnkit.warp(torch.rand(1, 1, 4, 4), torch.zeros(1, 8), "homography")


def test_unknown_mode_lists_the_valid_ones():
    message = r"mode: expected one of 'bilinear', 'nearest', 'bicubic'; got 'linear'"
    with pytest.raises(ValueError, match=message):
        stnkit.sample(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 2, 2), mode="linear")
    with pytest.raises(ValueError, match=message):
        stnkit.warp(torch.rand(1, 1, 4, 4), _theta("affine", 1), "affine", mode="linear")
    with pytest.raises(ValueError, match=message):
        _st(mode="linear")


def test_unknown_padding_lists_the_valid_ones():
    message = r"padding: expected one of 'zeros', 'border', 'reflection'; got 'constant'"
    with pytest.raises(ValueError, match=message):
        stnkit.sample(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 2, 2), padding="constant")
    with pytest.raises(ValueError, match=message):
        _st(padding="constant")


def test_unknown_head_output_and_kernel():
    with pytest.raises(ValueError, match=r"head_output: expected one of 'channels', 'stack'; got 'concat'"):
        _st(heads=2, head_output="concat")
    with pytest.raises(ValueError, match=r"kernel: expected one of 'bilinear', 'nearest', 'bicubic'; got 'lanczos'"):
        reference_sample(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 2, 2), "lanczos")


def test_bicubic_volumes_are_refused():
    with pytest.raises(ValueError, match=r"mode: 'bicubic' is only available for 2-D"):
        stnkit.sample(torch.rand(1, 1, 3, 3, 3), torch.zeros(1, 2, 2, 2, 3), mode="bicubic")
    with pytest.raises(ValueError, match=r"mode: 'bicubic' is only available for 2-D"):
        _st("affine3d", (1, 3, 3, 3), mode="bicubic")


# -- family options -----------------------------------------------------------------------------------
@pytest.mark.parametrize("grid_size", [1, 0, -3])
def test_tps_grid_smaller_than_two_by_two(grid_size):
    with pytest.raises(ValueError, match=rf"grid_size: expected an int >= 2, got {grid_size}"):
        get("tps", grid_size=grid_size)
    with pytest.raises(ValueError, match=r"grid_size: expected an int >= 2"):
        _st("tps", transform_options={"grid_size": grid_size})


@pytest.mark.parametrize("grid_size", [2.5, "4", True])
def test_tps_grid_size_must_be_an_int(grid_size):
    with pytest.raises(ValueError, match=r"grid_size: expected an int >= 2, got"):
        get("tps", grid_size=grid_size)


@pytest.mark.parametrize("smoothing", [-0.1, math.nan, math.inf, "0"])
def test_tps_bad_smoothing(smoothing):
    with pytest.raises(ValueError, match=r"smoothing: expected a finite float >= 0, got"):
        get("tps", smoothing=smoothing)


def test_unknown_family_options():
    with pytest.raises(TypeError, match=r"transform_options: bad options \['grid'\] for transform 'tps'"):
        get("tps", grid=3)
    with pytest.raises(TypeError, match=r"transform_options: bad options \['grid_size'\] for transform 'affine'"):
        _st("affine", transform_options={"grid_size": 3})
    with pytest.raises(ValueError, match=r"transform_options: expected none with a Transform instance"):
        _st(get("tps"), transform_options={"grid_size": 3})


# -- non-finite theta ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_theta_is_a_clear_error(name, bad):
    theta = _theta(name).clone()
    theta[1, 0] = bad
    with pytest.raises(NonFiniteThetaError, match=rf"theta: expected finite values, got {bad} at index \(1, 0\)") as info:
        stnkit.warp(_x(name), theta, name)
    assert info.value.samples == (1,) and info.value.name == "theta" and isinstance(info.value, ValueError)


def test_non_finite_theta_from_the_localisation_net():
    st = _st()
    x = torch.rand(2, 1, 6, 6)
    x[1, 0, 2, 2] = math.nan  # NaN input -> NaN features -> NaN theta
    with torch.no_grad():
        st.regression.weight.fill_(0.01)
    with pytest.raises(NonFiniteThetaError, match=r"theta: expected finite values, got nan .*localisation net has diverged") as info:
        st(x)
    assert info.value.samples == (1,)
    assert pickle.loads(pickle.dumps(info.value)).samples == (1,)


def test_deferred_flags_raise_at_the_sync_point_and_clear(monkeypatch):
    """The accelerator half of the policy, driven by hand: a flag recorded for cuda:0 is raised by
    raise_pending (for every device, or for 'cuda' without an index) and then cleared."""
    monkeypatch.setattr(errors, "_PENDING", {})
    errors._PENDING[torch.device("cuda", 0)] = torch.tensor(False)
    errors.raise_pending()  # a clean flag raises nothing
    errors._PENDING[torch.device("cuda", 0)] = torch.tensor(True)
    with pytest.raises(NonFiniteThetaError, match="cuda:0") as info:
        errors.raise_pending("cuda")
    assert info.value.samples is None and info.value.device == torch.device("cuda", 0)
    errors.raise_pending()  # cleared
    assert errors._PENDING == {}


def test_finite_check_can_be_disabled():
    theta = _theta("affine").clone()
    theta[0, 0] = math.nan
    out = stnkit.warp(torch.rand(2, 1, 4, 4), theta, "affine", check_finite=False)
    assert out[0].isnan().all() and out[1].isfinite().all()


# -- output sizes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(0, 5), (5,), (5, 5, 5), (-1, 4), (2.0, 3), (True, 3), "28x28", 28])
def test_bad_output_size(size):
    with pytest.raises(ValueError, match=r"output_size: expected 2 positive ints \(H, W\), got"):
        _st(output_size=size)
    with pytest.raises(ValueError, match=r"size: expected 2 positive ints \(H, W\), got"):
        stnkit.warp(torch.rand(1, 1, 4, 4), _theta("affine", 1), "affine", size)


def test_bad_volume_output_size():
    with pytest.raises(ValueError, match=r"output_size: expected 3 positive ints \(D, H, W\), got \(4, 4\)"):
        _st("affine3d", (1, 3, 3, 3), output_size=(4, 4))


# -- fill --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("padding", ["border", "reflection"])
def test_fill_with_non_zeros_padding(padding):
    message = rf"fill: a constant fill replaces padding='zeros'; got padding='{padding}' with fill=0.5"
    with pytest.raises(ValueError, match=message):
        stnkit.sample(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 2, 2), padding=padding, fill=0.5)
    with pytest.raises(ValueError, match=message):
        _st(padding=padding, fill=0.5)


def test_fill_with_the_wrong_number_of_channels():
    with pytest.raises(ValueError, match=r"fill: expected a float or 3 values \(one per channel\), got shape \(2,\)"):
        stnkit.sample(torch.rand(1, 3, 4, 4), torch.zeros(1, 2, 2, 2), fill=[0.1, 0.2])


@pytest.mark.parametrize("fill", ["white", [], [0.1, "a"], True, {"c": 1}])
def test_fill_of_the_wrong_type(fill):
    with pytest.raises(TypeError, match=r"fill: expected None, a float, a sequence of floats"):
        stnkit.sample(torch.rand(1, 1, 4, 4), torch.zeros(1, 2, 2, 2), fill=fill)
    with pytest.raises(TypeError, match=r"fill: expected"):
        _st(fill=fill)


# -- module construction ----------------------------------------------------------------------------
@pytest.mark.parametrize("heads", [0, -1, 1.5, True])
def test_bad_heads(heads):
    with pytest.raises(ValueError, match=rf"heads: expected an int >= 1, got {heads!r}"):
        _st(heads=heads)


def test_localisation_feature_size_unknown_or_wrong():
    with pytest.raises(ValueError, match=r"loc_features: cannot tell the localisation net's output size"):
        stnkit.SpatialTransformer(nn.Flatten(), "affine")
    st = stnkit.SpatialTransformer(nn.Flatten(), "affine", loc_features=10)
    with pytest.raises(ValueError, match=r"loc_features: the regression layer expects 10 .*pass loc_features=36"):
        st(torch.rand(2, 1, 6, 6))
    with pytest.raises(ValueError, match=r"localisation: expected \(N, F\) features, got shape \(2, 1, 6, 6\)"):
        stnkit.SpatialTransformer(nn.Identity(), "affine", loc_features=36)(torch.rand(2, 1, 6, 6))


def test_localisation_builders_validate():
    with pytest.raises(ValueError, match=r"hidden: expected at least one layer size"):
        stnkit.fc_localisation((1, 4, 4), hidden=())
    with pytest.raises(ValueError, match=r"in_shape: expected an int >= 1, got 0"):
        stnkit.fc_localisation((1, 0, 4))
    with pytest.raises(ValueError, match=r"in_shape: expected \(C, H, W\) or \(C, D, H, W\), got \(28, 28\)"):
        stnkit.conv_localisation((28, 28))
    with pytest.raises(ValueError, match=r"in_shape: \(1, 8, 8\) is too small for this localisation net"):
        stnkit.conv_localisation((1, 8, 8))
    with pytest.raises(ValueError, match=r"kernel_size: expected an int >= 1, got 0"):
        stnkit.conv_localisation((1, 28, 28), kernel_size=0)
