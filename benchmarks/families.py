"""Sections ``families`` and ``fields``: the mesh/free-form families and the dense fields.

Section ``families`` (targets of issue 13): ``stnkit.warp`` forward+backward with ``bspline``
(6 x 6 control points) and ``piecewise_affine`` (4 x 4) against the ``affine`` warp at
(256, 1, 42, 42) and against ``tps`` (4 x 4) at (64, 3, 128, 128); target: within 1.5x, i.e.
``x f+b >= 0.67``. The gradient is taken with respect to theta, as in training.

Section ``fields`` (needs MONAI, skipped without it): on a (8, 1, 64, 64, 64) volume,

* ``stnkit.warp(x, theta, displacement3d)`` against MONAI's ``Warp`` (PyTorch ``grid_sample`` mode,
  border padding both) with the same field in voxel units (converted once, outside the timing);
* ``stnkit.fields.integrate_velocity`` (7 steps) against MONAI's ``DVF2DDF`` (7 steps), both with
  zero padding while squaring;

target: not slower (``x >= 1``) forward and forward+backward (gradient with respect to the field).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

import stnkit
from stnkit import fields

from . import _timing

FAMILY_CASES = [  # (family, options, baseline, baseline options, shape)
    ("bspline", {"grid_size": 6}, "affine", {}, (256, 1, 42, 42)),
    ("piecewise_affine", {"grid_size": 4}, "affine", {}, (256, 1, 42, 42)),
    ("bspline", {"grid_size": 6}, "tps", {"grid_size": 4}, (64, 3, 128, 128)),
    ("piecewise_affine", {"grid_size": 4}, "tps", {"grid_size": 4}, (64, 3, 128, 128)),
]
FIELD_SHAPE = (8, 1, 64, 64, 64)
SMOKE_2D, SMOKE_3D = (2, 1, 9, 8), (1, 1, 5, 6, 7)
TARGET_RATIO = 1.5  # ours within 1.5x of the baseline


class Unavailable(RuntimeError):
    """Raised when MONAI is not installed."""


def _theta(family: stnkit.transforms.Transform, n: int, g: torch.Generator) -> torch.Tensor:
    return (family.identity() + 0.05 * torch.randn(n, family.num_params, generator=g)).requires_grad_()


def _compare(name: str, section: str, shape: tuple[int, ...], labels: tuple[str, str],
             fns: tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]],
             leaves: tuple[torch.Tensor, torch.Tensor], upstream: torch.Tensor, *, repeats: int,
             warmup: int, budget_s: float | None, **extra: Any) -> dict[str, Any]:
    ours, base = fns

    def ours_step():
        torch.autograd.grad(ours(), leaves[0], upstream)

    def base_step():
        torch.autograd.grad(base(), leaves[1], upstream)

    times = _timing.interleaved({"ours_fwd": ours, "baseline_fwd": base, "ours_fwd_bwd": ours_step,
                                 "baseline_fwd_bwd": base_step}, repeats=repeats, warmup=warmup, budget_s=budget_s)
    return _timing.comparison(name, section, shape, labels[0], labels[1], times, **extra)


def family_case(family_name: str, options: dict, base_name: str, base_options: dict, shape: tuple[int, ...], *,
                repeats: int, warmup: int, budget_s: float | None) -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    family = stnkit.transforms.get(family_name, **options)
    baseline = stnkit.transforms.get(base_name, **base_options)
    x = torch.rand(shape, generator=g)
    theta, base_theta = _theta(family, shape[0], g), _theta(baseline, shape[0], g)
    upstream = torch.randn(shape, generator=g)
    row = _compare(f"families/{family_name} vs {base_name} {'x'.join(map(str, shape))}", "families", shape,
                   ("stnkit.warp(family)", "stnkit.warp(affine or tps)"),
                   (lambda: stnkit.warp(x, theta, family), lambda: stnkit.warp(x, base_theta, baseline)),
                   (theta, base_theta), upstream, repeats=repeats, warmup=warmup, budget_s=budget_s)
    row["target_speedup_fwd_bwd"] = round(1 / TARGET_RATIO, 2)
    row["meets_target"] = row["speedup_fwd_bwd"] >= 1 / TARGET_RATIO
    return row


def _monai() -> Any:
    try:
        from monai.networks import blocks
    except ImportError as err:
        raise Unavailable("MONAI is not installed (pip install monai -c constraints.txt)") from err
    return blocks


def field_cases(shape: tuple[int, ...], *, repeats: int, warmup: int, budget_s: float | None) -> list[dict[str, Any]]:
    import warnings

    blocks = _monai()
    g = torch.Generator().manual_seed(0)
    size = shape[2:]
    x = torch.rand(shape, generator=g)
    ddf = (torch.randn(shape[0], 3, *size, generator=g) * 2).requires_grad_()  # voxels
    field = fields.from_voxel(ddf.detach()).requires_grad_()  # normalised, ours
    family = stnkit.transforms.get("displacement3d", field_size=size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Using PyTorch native grid_sample"
        warp, dvf2ddf = blocks.Warp(padding_mode="border"), blocks.DVF2DDF(num_steps=7)
    upstream = torch.randn(shape, generator=g)
    rows = [_compare(f"fields/displacement3d vs Warp {'x'.join(map(str, shape))}", "fields", shape,
                     ("stnkit displacement3d / integrate_velocity", "MONAI Warp / DVF2DDF"),
                     (lambda: stnkit.warp(x, family.flat(field), family, padding="border"), lambda: warp(x, ddf)),
                     (field, ddf), upstream, repeats=repeats, warmup=warmup, budget_s=budget_s)]
    vshape = (shape[0], 3, *size)
    upstream = torch.randn(vshape, generator=g)
    velocity = (torch.randn(vshape, generator=g) * 0.5).requires_grad_()  # voxels
    ours_v = fields.from_voxel(velocity.detach()).requires_grad_()
    rows.append(_compare(f"fields/integrate_velocity vs DVF2DDF {'x'.join(map(str, vshape))}", "fields", vshape,
                         ("stnkit.fields.integrate_velocity", "MONAI DVF2DDF"), (lambda: fields.integrate_velocity(ours_v, 7, padding="zeros"),
                                    lambda: dvf2ddf(velocity)),
                         (ours_v, velocity), upstream, repeats=repeats, warmup=warmup, budget_s=budget_s))
    for row in rows:
        row["meets_target"] = row["speedup_fwd"] >= 1 and row["speedup_fwd_bwd"] >= 1
    return rows


def run_families(smoke: bool = False, repeats: int = 30, warmup: int = 3) -> list[dict[str, Any]]:
    """Section ``families``."""
    if smoke:
        return [family_case(f, o, b, bo, SMOKE_2D, repeats=1, warmup=1, budget_s=None)
                for f, o, b, bo, _ in FAMILY_CASES[:2]]
    return [family_case(*case, repeats=repeats, warmup=warmup, budget_s=8.0) for case in FAMILY_CASES]


def run_fields(smoke: bool = False, repeats: int = 30, warmup: int = 3) -> list[dict[str, Any]]:
    """Section ``fields`` (raises :class:`Unavailable` without MONAI)."""
    if smoke:
        return field_cases(SMOKE_3D, repeats=1, warmup=1, budget_s=None)
    return field_cases(FIELD_SHAPE, repeats=min(repeats, 10), warmup=1, budget_s=30.0)
