"""Sections 2 and 3: thin plate spline and projective warps against kornia.

Section 2, TPS with a 4x4 control grid (32 parameters):

* ours: ``stnkit.warp(x, theta, tps)`` with one ``stnkit.transforms.get("tps", grid_size=4)`` family (its
  control-point system is solved once, when it is built; each call is one GEMM + the sampler);
* kornia: ``get_tps_transform`` + ``warp_image_tps`` as kornia documents it (the system is solved
  on every call). Both interpolate the same control points; kornia centres its kernels on the
  input-side points, so away from the control points the two splines differ a little
  (``max_abs_diff``).

Section 3, plane projective (8 parameters):

* ours: ``stnkit.warp(x, theta, "projective", align_corners=True)``;
* kornia: ``warp_perspective(x, M, (H, W), align_corners=True)`` with the pixel-space matrix ``M``
  of the same warp (kornia inverts it on every call); the outputs agree to rounding.

Each side's own parameters require grad (theta / the control points / ``M``), the image does not.
kornia is an optional benchmark dependency (``pip install -e ".[bench]"``); without it these
sections are skipped with a message.
"""

from __future__ import annotations

from typing import Any

import torch

import stnkit

from . import _timing

TPS_SHAPES = [(256, 1, 42, 42), (64, 3, 128, 128)]
PROJECTIVE_SHAPES = [(256, 1, 28, 28), (64, 3, 128, 128)]
SMOKE_SHAPES = [(2, 1, 9, 8)]
TARGET_TPS = 20.0  # fwd+bwd speedup at (256, 1, 42, 42) (issue 5)


class Unavailable(RuntimeError):
    """Raised when kornia is not installed."""


def _kornia() -> Any:
    try:
        from kornia.geometry import transform
    except ImportError as err:
        raise Unavailable("kornia is not installed (pip install -e '.[bench]')") from err
    return transform


def _timed(name: str, section: str, shape: tuple[int, ...], ours_label: str, kornia_label: str,
           ours_fn, kornia_fn, leaves: tuple[torch.Tensor, torch.Tensor], upstream: torch.Tensor, *,
           repeats: int, warmup: int, budget_s: float | None, memory: bool, **extra: Any) -> dict[str, Any]:
    ours_leaf, kornia_leaf = leaves

    def ours_step():
        torch.autograd.grad(ours_fn(), ours_leaf, upstream)

    def kornia_step():
        torch.autograd.grad(kornia_fn(), kornia_leaf, upstream)

    diff = (ours_fn() - kornia_fn()).abs().max().item()
    times = _timing.interleaved({"ours_fwd": ours_fn, "baseline_fwd": kornia_fn, "ours_fwd_bwd": ours_step,
                                 "baseline_fwd_bwd": kornia_step},
                                repeats=repeats, warmup=warmup, budget_s=budget_s)
    peaks = {"ours": _timing.peak_memory_bytes(ours_step),
             "baseline": _timing.peak_memory_bytes(kornia_step)} if memory else None
    return _timing.comparison(name, section, shape, ours_label, kornia_label, times, peaks,
                              max_abs_diff=diff, **extra)


def tps_case(shape: tuple[int, ...], *, repeats: int, warmup: int, budget_s: float | None,
             memory: bool = True) -> dict[str, Any]:
    kt = _kornia()
    family = stnkit.transforms.get("tps", grid_size=4)
    g = torch.Generator().manual_seed(0)
    n = shape[0]
    x = torch.rand(shape, generator=g)
    theta = (family.identity() + 0.05 * torch.randn(n, family.num_params, generator=g)).requires_grad_()
    points = theta.detach().view(n, 16, 2).clone().requires_grad_()  # input point of each control point
    control = family.identity().view(1, 16, 2).expand(n, -1, -1)  # output-frame control points
    upstream = torch.randn(shape, generator=g)

    def ours():
        return stnkit.warp(x, theta, family)

    def kornia():
        kernel_weights, affine_weights = kt.get_tps_transform(control, points)
        return kt.warp_image_tps(x, points, kernel_weights, affine_weights, align_corners=False)

    row = _timed(f"tps/{'x'.join(map(str, shape))}", "tps", shape, "stnkit.warp tps 4x4",
                 "kornia get_tps_transform + warp_image_tps", ours, kornia, (theta, points), upstream,
                 repeats=repeats, warmup=warmup, budget_s=budget_s, memory=memory)
    if shape == TPS_SHAPES[0]:
        row["target_speedup_fwd_bwd"] = TARGET_TPS
        row["meets_target"] = row["speedup_fwd_bwd"] >= TARGET_TPS
    return row


def projective_case(shape: tuple[int, ...], *, repeats: int, warmup: int, budget_s: float | None,
                    memory: bool = True) -> dict[str, Any]:
    kt = _kornia()
    family = stnkit.transforms.get("projective")
    g = torch.Generator().manual_seed(0)
    n, _, h, w = shape
    x = torch.rand(shape, generator=g)
    theta = family.identity() + 0.05 * torch.randn(n, 8, generator=g)
    theta[:, 6:] *= 0.2  # keep the horizon far outside the image
    theta.requires_grad_()
    # kornia's M maps input pixels to output pixels (align_corners=True pixel frame).
    scale = torch.tensor([[(w - 1) / 2, 0, (w - 1) / 2], [0, (h - 1) / 2, (h - 1) / 2], [0, 0, 1.0]])
    with torch.no_grad():
        matrix = scale @ torch.linalg.inv(family.matrix(theta)) @ torch.linalg.inv(scale)  # (N, 3, 3)
    matrix.requires_grad_()
    upstream = torch.randn(shape, generator=g)

    def ours():
        return stnkit.warp(x, theta, family, align_corners=True)

    def kornia():
        return kt.warp_perspective(x, matrix, (h, w), align_corners=True)

    return _timed(f"projective/{'x'.join(map(str, shape))}", "projective", shape, "stnkit.warp projective",
                  "kornia warp_perspective", ours, kornia, (theta, matrix), upstream,
                  repeats=repeats, warmup=warmup, budget_s=budget_s, memory=memory)


def run_tps(smoke: bool = False, repeats: int = 30, warmup: int = 3) -> list[dict[str, Any]]:
    """Section 2 (raises :class:`Unavailable` without kornia)."""
    if smoke:
        return [tps_case(s, repeats=1, warmup=1, budget_s=None) for s in SMOKE_SHAPES]
    return [tps_case(s, repeats=repeats, warmup=warmup, budget_s=8.0) for s in TPS_SHAPES]


def run_projective(smoke: bool = False, repeats: int = 30, warmup: int = 3) -> list[dict[str, Any]]:
    """Section 3 (raises :class:`Unavailable` without kornia)."""
    if smoke:
        return [projective_case(s, repeats=1, warmup=1, budget_s=None) for s in SMOKE_SHAPES]
    return [projective_case(s, repeats=repeats, warmup=warmup, budget_s=8.0) for s in PROJECTIVE_SHAPES]
