"""Runs a model's spatial transformers on a batch and collects what to draw: outputs and regions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from ..._validate import check_tensor
from ...module import SpatialTransformer
from .geometry import SamplingRegion, sampling_region


@dataclass(frozen=True)
class HeadView:
    """One transformer head's result on a batch.

    Attributes:
        output: ``(n, C, H', W')``: what this head's transformer outputs (on the CPU, float32).
        theta: ``(n, num_params)``.
        region: Where it read, in input pixel coordinates.
        label: Short name for a figure, e.g. ``"ST 1 head 2"`` (``"output"`` when it is the only one).
    """

    output: Tensor
    theta: Tensor
    region: SamplingRegion
    label: str


def spatial_transformers(model: nn.Module) -> list[SpatialTransformer]:
    """The model's spatial transformers: ``model.spatial_transformers``, or the model itself when it
    is a :class:`stnkit.SpatialTransformer`, else every one found among its submodules (in order)."""
    if isinstance(model, SpatialTransformer):
        return [model]
    listed = getattr(model, "spatial_transformers", None)
    if listed is not None:
        return list(listed)
    return [m for m in model.modules() if isinstance(m, SpatialTransformer)]


def apply_transformers(
    model: nn.Module | Sequence[SpatialTransformer], images: Tensor, *, outline: str = "edges"
) -> list[HeadView]:
    """Passes ``images`` through each spatial transformer of ``model`` and maps where each head read.

    Every transformer is applied to ``images`` themselves (the paper's layout: transformers at the
    start of the network, in parallel when there are several). Runs under ``torch.no_grad()`` with
    the model in eval mode; every submodule's train/eval flag is restored afterwards.

    Args:
        model: A model exposing ``spatial_transformers``, a :class:`stnkit.SpatialTransformer`, or a
            sequence of transformers.
        images: ``(n, C, H, W)`` in [0, 1] on any device (moved to the model's device and dtype).
        outline: See :func:`stnkit.experiments.viz.sampling_region`.

    Returns:
        One :class:`HeadView` per head, transformer by transformer; empty if there is no transformer.

    Raises:
        ValueError: for a 3-D (volume) transformer, which has no 2-D picture.
    """
    check_tensor("images", images, ndim=4, shape="(n, C, H, W)", floating=True)
    if getattr(model, "transformers_in_series", False):  # e.g. st-cnn-multi: regions mapped back (series.py)
        return _series_views(model, images, outline)  # type: ignore[arg-type]
    sts = list(model) if isinstance(model, (list, tuple)) else spatial_transformers(cast(nn.Module, model))
    views: list[HeadView] = []
    total = sum(st.heads for st in sts)
    for st in sts:
        if st.transform.ndim != 2:
            raise ValueError(
                f"model: expected 2-D spatial transformers to draw, got a {st.transform.ndim}-D "
                f"{st.transform.name!r} transformer"
            )
    for s, st in enumerate(sts):
        param = next(st.parameters(), None)
        x = images if param is None else images.to(device=param.device, dtype=param.dtype)
        with _EvalMode(st), torch.no_grad():
            out, theta = st(x, return_theta=True)
        n, heads = x.shape[0], st.heads
        size = st.output_size or tuple(x.shape[2:])
        out = out.reshape(n, heads, -1, *size).float().cpu()  # (n, heads, C, H', W') for either head_output
        theta = theta.reshape(n, heads, -1)  # (n, heads, P), on the transformer's device
        for h in range(heads):
            region = sampling_region(
                st.transform,
                theta[:, h].float(),
                size,
                tuple(x.shape[2:]),
                align_corners=st.align_corners,
                outline=outline,
            )
            views.append(
                HeadView(out[:, h], theta[:, h].float().cpu(), _to_cpu(region), _label(s, h, len(sts), heads, total))
            )
    return views


def _series_views(model: nn.Module, images: Tensor, outline: str) -> list[HeadView]:
    from .series import series_regions

    param = next(model.parameters(), None)
    x = images if param is None else images.to(device=param.device, dtype=param.dtype)
    with _EvalMode(model):
        results = series_regions(model, x, outline)
    return [
        HeadView(
            view.float().cpu(), theta.float().cpu(), _to_cpu(region), "output" if len(results) == 1 else f"ST {k + 1}"
        )
        for k, (view, theta, region) in enumerate(results)
    ]


def _to_cpu(region: SamplingRegion) -> SamplingRegion:
    def move(t: Tensor | None) -> Tensor | None:
        return None if t is None else t.float().cpu()

    return SamplingRegion(
        region.outline.float().cpu(), region.corners.float().cpu(), move(region.control_points), move(region.grid)
    )


def _label(s: int, h: int, n_st: int, heads: int, total: int) -> str:
    if total == 1:
        return "output"
    if n_st == 1:
        return f"head {h + 1}"
    return f"ST {s + 1}" if heads == 1 else f"ST {s + 1} head {h + 1}"


class _EvalMode:
    """Puts a module in eval mode; restores every submodule's own flag on exit."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.modes: list[tuple[nn.Module, bool]] = []

    def __enter__(self) -> nn.Module:
        self.modes = [(m, m.training) for m in self.module.modules()]
        self.module.eval()
        return self.module

    def __exit__(self, *exc: object) -> None:
        for module, training in self.modes:
            module.training = training
