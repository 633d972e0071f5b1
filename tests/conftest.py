"""Shared helpers for the core library's tests.

Every random number comes from an explicit ``torch.Generator`` seeded in the test, so a failure
reproduces exactly. The helpers live here (not in a package) so that test modules reach them as
fixtures; ``helpers`` is session-scoped so Hypothesis tests may use it too.
"""

from __future__ import annotations

import os
import signal
import types
from typing import Sequence

import pytest
from hypothesis import settings
import torch
from torch import Tensor, nn

import stnkit

# CI explores the same Hypothesis examples on every run (a failure there reproduces locally with
# CI=1); local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(seed)


def uniform(shape: Sequence[int], low: float, high: float, generator: torch.Generator,
            dtype: torch.dtype = torch.float64) -> Tensor:
    """Uniform samples in ``[low, high)``."""
    return torch.rand(*shape, generator=generator, dtype=dtype) * (high - low) + low


def random_theta(family: stnkit.transforms.Transform, n: int, generator: torch.Generator,
                 scale: float = 1.0, dtype: torch.dtype = torch.float64) -> Tensor:
    """A moderate random warp near the identity: ``identity + scale * U(-0.2, 0.2)`` per parameter.

    Works for any registered family (it only needs ``identity()``). With ``scale <= 1`` matrix
    families stay invertible, projective denominators stay in ``[0.6, 1.4]`` and TPS control
    points move by at most 0.2 (their spacing is at least 2/3 for ``grid_size <= 4``).

    Returns:
        ``(n, num_params)``.
    """
    identity = family.identity(dtype=dtype)
    noise = uniform((n, family.num_params), -0.2, 0.2, generator, dtype)
    return identity + scale * noise  # (n, P)


def image_shape(family: stnkit.transforms.Transform, n: int, c: int, side: int) -> tuple[int, ...]:
    """``(n, c, side, side)`` for 2-D families, ``(n, c, side, side, side)`` for 3-D ones."""
    return (n, c) + (side,) * family.ndim


def smooth_image(shape: Sequence[int], dtype: torch.dtype = torch.float64) -> Tensor:
    """A smooth band-limited test image ``(N, C, H, W)`` or ``(N, C, D, H, W)`` in [0, 1].

    Each channel and sample has a different low-frequency pattern of the normalised coordinates
    (so interpolation errors are small and a wrong coordinate convention is visible).
    """
    n, c, *size = shape
    axes = [stnkit.coords.pixel_centres(s, dtype=dtype) for s in size]
    mesh = torch.meshgrid(*axes, indexing="ij")  # each (H, W) or (D, H, W)
    total = sum((i + 1) * m for i, m in enumerate(mesh))  # (H, W)
    out = torch.empty(n, c, *size, dtype=dtype)
    for b in range(n):
        for ch in range(c):
            out[b, ch] = 0.5 + 0.25 * torch.sin(1.3 * total + 0.7 * b + 1.1 * ch) * torch.cos(mesh[0] - 0.4 * ch)
    return out


def make_st(family: str, in_shape: Sequence[int], *, seed: int = 0, fresh: bool = False,
            weight_scale: float = 0.1, **kwargs) -> stnkit.SpatialTransformer:
    """A small SpatialTransformer on ``in_shape = (C, H, W)`` or ``(C, D, H, W)``.

    The localisation weights are drawn from ``torch.Generator(seed)`` (scaled by ``1/sqrt(fan_in)``).
    With ``fresh=True`` the regression layer keeps its identity initialisation; otherwise it gets
    random weights of scale ``weight_scale`` so that theta depends on the input but stays moderate.
    """
    st = stnkit.SpatialTransformer(stnkit.fc_localisation(in_shape, hidden=(8,)), family, **kwargs)
    g = gen(seed)
    with torch.no_grad():
        for m in st.localisation.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        if not fresh:
            st.regression.weight.copy_(torch.randn(st.regression.weight.shape, generator=g) * weight_scale)
    return st


def pixel_of(points: Tensor, size: Sequence[int], align_corners: bool) -> Tensor:
    """Normalised ``(x, y[, z])`` points to pixel indices, written out independently of
    :mod:`stnkit.coords` (closed form from the convention in its docstring)."""
    extent = torch.tensor(list(reversed(list(size))), dtype=points.dtype)  # (W, H[, D])
    if align_corners:
        return (points + 1) * (extent - 1) / 2
    return ((points + 1) * extent - 1) / 2


def centres(size: Sequence[int], align_corners: bool, dtype: torch.dtype = torch.float64) -> Tensor:
    """Normalised centres of every pixel, ``(H*W, 2)`` in row-major order (x fastest), written out
    independently of :mod:`stnkit.coords`."""
    axes = []
    for n in size:
        i = torch.arange(n, dtype=dtype)
        if align_corners:
            axes.append(2 * i / max(n - 1, 1) - 1 if n > 1 else torch.zeros(1, dtype=dtype))
        else:
            axes.append((2 * i + 1) / n - 1)
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in reversed(mesh)], dim=-1)  # (P, ndim)


@pytest.fixture(scope="session")
def helpers() -> types.SimpleNamespace:
    """The helper functions above, for tests (Hypothesis included) that prefer a fixture."""
    return types.SimpleNamespace(
        gen=gen, uniform=uniform, random_theta=random_theta, image_shape=image_shape,
        smooth_image=smooth_image, make_st=make_st, pixel_of=pixel_of, centres=centres,
    )


@pytest.fixture
def default_sigint():
    """SIGINT handled as an interactive shell leaves it (Python's KeyboardInterrupt), for the tests of
    Ctrl-C: a CI runner or a background job may start the tests with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
