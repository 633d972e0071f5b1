"""The paper's distortions of MNIST, as batched generators in a registry.

A :class:`Distortion` draws all its randomness in :meth:`Distortion.make_params` (a dict of
``(N, ...)`` tensors in human units: degrees, scale factors, pixels) and applies it
deterministically in :meth:`Distortion.apply` with the library's own warps (:func:`stnkit.warp`).

======== ========= ===================================================================
name     output    what (``paper.md``; choices where the paper is silent in the class docs)
======== ========= ===================================================================
none     1x28x28   the plain digit
r        1x28x28   rotated U[-90, 90] degrees
rts      1x42x42   rotated U[-45, 45], scaled U[0.7, 1.2], at a random position
p        1x28x28   scaled U[0.75, 1], corners moved by N(0, 5 px), homography
e        1x28x28   scaled U[0.75, 1], 4x4 thin plate spline points moved by N(0, 1.5 px)
t        1x60x60   at a random position
tc       1x60x60   at a random position plus six 6x6 patches of other digits
addition 2x42x42   two digits, each with its own RTS; label = sum (19 classes)
======== ========= ===================================================================

Example:
    >>> import torch
    >>> rts = get_distortion("rts")
    >>> params = rts.make_params(4, torch.Generator().manual_seed(0))
    >>> sorted(params)
    ['angle', 'offset_x', 'offset_y', 'scale']
    >>> rts.apply(torch.zeros(4, 28, 28, dtype=torch.uint8), params).shape
    torch.Size([4, 1, 42, 42])
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..._registry import Registry
from ..._validate import check_positive_int, check_tensor
from ...functional import warp
from ...transforms import Transform, get
from ._geometry import box_half_extent, homography_theta, similarity_theta, tps_theta, worst_box_half_extent

SOURCE_SIZE = (28, 28)
Params = dict[str, Tensor]

_REGISTRY: Registry[Callable[..., Distortion]] = Registry("distortion")


def register_distortion(obj: Any = None, *, name: str | None = None) -> Any:
    """Registers a :class:`Distortion` subclass (or factory) under its ``name`` attribute (or ``name``)."""
    return _REGISTRY.register(obj, name=name)


def list_distortions() -> list[str]:
    """Names of every registered distortion, sorted."""
    return _REGISTRY.names()


def get_distortion(name: str, **options: Any) -> Distortion:
    """Builds the distortion ``name`` with its ``options`` (e.g. ``angle=(-30, 30)`` for ``r``)."""
    return _REGISTRY.get(name)(**options)


# -- argument checks -------------------------------------------------------------------------------
def check_range(
    name: str, value: object, *, low: float = -math.inf, high: float = math.inf, positive: bool = False
) -> tuple[float, float]:
    """Checks a ``(min, max)`` pair of finite numbers with ``low <= min <= max <= high``."""
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )
    if ok:
        lo, hi = float(value[0]), float(value[1])  # type: ignore[index]
        ok = low <= lo <= hi <= high and (not positive or lo > 0)
    if not ok:
        bounds = f" within [{low:g}, {high:g}]" if math.isfinite(low) or math.isfinite(high) else ""
        kind = "positive " if positive else ""
        raise ValueError(
            f"{name}: expected a ({kind}min, max) pair of finite numbers with min <= max{bounds}, got {value!r}"
        )
    return lo, hi


def check_nonnegative(name: str, value: object) -> float:
    """Checks a finite number ``>= 0`` (a standard deviation)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0, got {value!r}")
    return float(value)


def _generator(generator: object) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: expected a torch.Generator (randomness is explicit), got {type(generator).__name__}"
        )
    return generator


def uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> Tensor:
    """``(n,)`` float32 uniform in ``[bounds[0], bounds[1])``."""
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def to_float(images: Tensor) -> Tensor:
    """``uint8 (N, H, W)`` -> float32 ``(N, 1, H, W)`` in [0, 1] (floating images kept as they are)."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    return x.unsqueeze(1)  # (N, 1, H, W)


class Distortion(ABC):
    """A random distortion of ``28 x 28`` digits.

    Attributes:
        name: The registry name.
        size: Output ``(H, W)``.
        channels: Output channels.
        num_classes: Number of labels after :meth:`labels` (10, or 19 for ``addition``).
        num_others: How many other digits each sample uses (clutter, second digit).
    """

    name: ClassVar[str] = ""
    size: tuple[int, int] = SOURCE_SIZE
    channels: int = 1
    num_classes: int = 10
    num_others: int = 0

    @abstractmethod
    def _make_params(self, n: int, generator: torch.Generator) -> Params:
        """Draws the parameters of ``n`` samples."""

    @abstractmethod
    def _apply(self, images: Tensor, params: Params, others: Tensor | None) -> Tensor:
        """Applies validated parameters to float images ``(N, 1, 28, 28)``."""

    def make_params(self, n: int, generator: torch.Generator) -> Params:
        """Draws every random choice for ``n`` samples (the only random step).

        Args:
            n: Number of samples (``>= 0``).
            generator: The source of randomness.

        Returns:
            A dict of CPU tensors with leading dimension ``n`` (see the class docs for keys).
        """
        check_positive_int("n", n, minimum=0)
        return self._make_params(n, _generator(generator))

    def apply(self, images: Tensor, params: Params, others: Tensor | None = None) -> Tensor:
        """Applies drawn parameters (deterministic).

        Args:
            images: ``uint8 (N, 28, 28)`` (or floating, already in [0, 1]).
            params: From :meth:`make_params` (``n == N``), possibly indexed with
                :func:`index_params`.
            others: ``(N, num_others, 28, 28)`` other digits (clutter, second digit), same dtype.

        Returns:
            float32 ``(N, channels, H, W)`` in [0, 1].
        """
        check_tensor("images", images, ndim=3, shape="(N, 28, 28)")
        if tuple(images.shape[1:]) != SOURCE_SIZE:
            raise ValueError(f"images: expected shape (N, 28, 28), got {tuple(images.shape)}")
        n = images.shape[0]
        if not isinstance(params, dict):
            raise TypeError(f"params: expected the dict from make_params, got {type(params).__name__}")
        expected = set(self._make_params(0, torch.Generator()))
        if set(params) != expected:
            raise ValueError(f"params: expected keys {sorted(expected)}, got {sorted(params)}")
        for key, value in params.items():
            if not isinstance(value, Tensor) or value.shape[:1] != (n,):
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"params[{key!r}]: expected a tensor with {n} rows (one per image), got {got}")
        if others is not None:
            check_tensor("others", others, ndim=4, shape=f"(N, {self.num_others}, 28, 28)")
            if others.shape != (n, self.num_others, *SOURCE_SIZE):
                raise ValueError(f"others: expected shape ({n}, {self.num_others}, 28, 28), got {tuple(others.shape)}")
        if n == 0:
            return torch.zeros(0, self.channels, *self.size, device=images.device)
        params = {k: v.to(images.device) for k, v in params.items()}
        return self._apply(to_float(images), params, others)

    def __call__(self, images: Tensor, generator: torch.Generator, others: Tensor | None = None) -> Tensor:
        """Draws parameters with ``generator`` and applies them: ``(N, 28, 28) -> (N, C, H, W)``."""
        return self.apply(images, self.make_params(images.shape[0], generator), others)

    def draw_others(self, n: int, pool_size: int, generator: torch.Generator) -> Tensor:
        """Indices ``(n, num_others)`` into a pool of ``pool_size`` digits (uniform, with replacement)."""
        if self.num_others == 0 or n == 0:
            return torch.zeros(n, self.num_others, dtype=torch.long)
        return torch.randint(pool_size, (n, self.num_others), generator=generator)

    def labels(self, labels: Tensor, other_labels: Tensor) -> Tensor:
        """The label of each distorted sample: ``labels (N,)``, ``other_labels (N, num_others)``."""
        return labels

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, size={self.size}, channels={self.channels})"


def index_params(params: Params, index: Tensor | slice) -> Params:
    """The parameters of a subset of samples (``index`` into the leading dimension)."""
    return {key: value[index] for key, value in params.items()}


def _warp(
    images: Tensor, theta: Tensor, family: str | Transform, size: tuple[int, int], mode: str = "bilinear"
) -> Tensor:
    return warp(images, theta.to(images.dtype), family, size, mode=mode, check_finite=False)


@register_distortion
class NoDistortion(Distortion):
    """The plain ``28 x 28`` digit; ``make_params`` returns an empty dict."""

    name = "none"

    def _make_params(self, n: int, generator: torch.Generator) -> Params:
        return {}

    def _apply(self, images: Tensor, params: Params, others: Tensor | None) -> Tensor:
        return images.clone()


@register_distortion
class Rotated(Distortion):
    """R: the digit rotated about its centre by an angle drawn uniformly from ``angle`` degrees.

    Params: ``angle (N,)`` degrees, positive = counter-clockwise on screen.
    """

    name = "r"

    def __init__(self, angle: tuple[float, float] = (-90.0, 90.0)) -> None:
        self.angle = check_range("angle", angle, low=-180.0, high=180.0)

    def _make_params(self, n: int, generator: torch.Generator) -> Params:
        return {"angle": uniform(n, self.angle, generator)}

    def _apply(self, images: Tensor, params: Params, others: Tensor | None) -> Tensor:
        angle = params["angle"]
        zero, one = torch.zeros_like(angle), torch.ones_like(angle)
        theta = similarity_theta(angle, one, zero, zero, self.size)
        return _warp(images, theta, "affine", self.size)


@register_distortion
class RotatedTranslatedScaled(Distortion):
    """RTS: rotated by U``angle`` degrees, scaled by U``scale``, at a random position on a
    ``size x size`` canvas.

    Position (the paper only says "random"): the digit's centre is offset from the canvas centre
    by ``offset_x, offset_y`` pixels drawn uniformly from ``[-m, m]`` where
    ``m = size / 2 - h`` and ``h`` is the half-width of the axis-aligned box around the turned
    and scaled ``(digit_box + 1)``-pixel square: MNIST digits are normalised to a 20x20 box
    centred in the 28x28 frame, and bilinear sampling spreads the box's edge pixels by half a
    source pixel on each side. So a digit inside its box stays fully inside the canvas, and the
    position range is as wide as that allows (at 45 degrees and scale 1.2 the digit can only be
    near the centre; unturned at scale 0.7, it moves by up to +-13.6 pixels).

    Params: ``angle (N,)`` degrees (counter-clockwise on screen), ``scale (N,)``,
    ``offset_x (N,)``, ``offset_y (N,)`` pixels (x right, y down).
    """

    name = "rts"

    def __init__(
        self,
        angle: tuple[float, float] = (-45.0, 45.0),
        scale: tuple[float, float] = (0.7, 1.2),
        size: int = 42,
        digit_box: float = 20.0,
    ) -> None:
        self.angle = check_range("angle", angle, low=-180.0, high=180.0)
        self.scale = check_range("scale", scale, positive=True)
        check_positive_int("size", size)
        if not isinstance(digit_box, (int, float)) or not 0 < digit_box <= 28:
            raise ValueError(f"digit_box: expected a number in (0, 28], got {digit_box!r}")
        self.digit_box = float(digit_box)
        needed = 2 * worst_box_half_extent(self.scale[1], self.angle, self.digit_box + 1)
        if size < needed:
            raise ValueError(
                f"size: a {size}x{size} canvas cannot hold the {digit_box:g}-pixel digit box scaled "
                f"by {self.scale[1]:g} and turned within {self.angle}; need size >= {math.ceil(needed)}"
            )
        self.size = (size, size)

    def _make_params(self, n: int, generator: torch.Generator) -> Params:
        angle = uniform(n, self.angle, generator)
        scale = uniform(n, self.scale, generator)
        reach = box_half_extent(angle, scale, self.digit_box + 1)  # + the bilinear reach of the box's edge pixels
        margin = (self.size[0] / 2 - reach).clamp_min(0)  # (N,)
        offset = (2 * torch.rand(n, 2, generator=generator) - 1) * margin.unsqueeze(1)  # (N, 2)
        return {"angle": angle, "scale": scale, "offset_x": offset[:, 0], "offset_y": offset[:, 1]}

    def _apply(self, images: Tensor, params: Params, others: Tensor | None) -> Tensor:
        theta = similarity_theta(params["angle"], params["scale"], params["offset_x"], params["offset_y"], self.size)
        return _warp(images, theta, "affine", self.size)


@register_distortion
class Projective(Distortion):
    """P: scaled by U``scale`` about the centre, then each image corner moved by ``N(0, sigma)``
    pixels (each coordinate independently; clipped to ``3 sigma`` so that the corners cannot fold
    over each other), warped by the homography through the four corners.

    Params: ``scale (N,)``, ``corner_offsets (N, 4, 2)`` pixels ``(dx, dy)`` for the corners
    top-left, top-right, bottom-right, bottom-left.
    """

    name = "p"

    def __init__(self, scale: tuple[float, float] = (0.75, 1.0), sigma: float = 5.0) -> None:
        self.scale = check_range("scale", scale, positive=True)
        self.sigma = check_nonnegative("sigma", sigma)

    def _make_params(self, n: int, generator: torch.Generator) -> Params:
        scale = uniform(n, self.scale, generator)
        offsets = (torch.randn(n, 4, 2, generator=generator) * self.sigma).clamp(-3 * self.sigma, 3 * self.sigma)
        return {"scale": scale, "corner_offsets": offsets}

    def _apply(self, images: Tensor, params: Params, others: Tensor | None) -> Tensor:
        theta = homography_theta(params["corner_offsets"], params["scale"], self.size)
        return _warp(images, theta, "projective", self.size)


@register_distortion
class Elastic(Distortion):
    """E: scaled by U``scale`` about the centre, then the ``grid_size x grid_size`` thin plate
    spline control points (a regular grid spanning the image, corners included) each moved by
    ``N(0, sigma)`` pixels (per coordinate, clipped to ``3 sigma``); output control point ``c_i``
    reads the source at ``(c_i + offset_i) / scale``.

    Params: ``scale (N,)``, ``control_offsets (N, grid_size^2, 2)`` pixels, row-major (y outer).
    """

    name = "e"

    def __init__(self, scale: tuple[float, float] = (0.75, 1.0), sigma: float = 1.5, grid_size: int = 4) -> None:
        self.scale = check_range("scale", scale, positive=True)
        self.sigma = check_nonnegative("sigma", sigma)
        check_positive_int("grid_size", grid_size, minimum=2)
        self.family = get("tps", grid_size=grid_size)
        self.control = self.family.identity(dtype=torch.float32).view(-1, 2)  # (K, 2)

    def _make_params(self, n: int, generator: torch.Generator) -> Params:
        scale = uniform(n, self.scale, generator)
        k = self.control.shape[0]
        offsets = (torch.randn(n, k, 2, generator=generator) * self.sigma).clamp(-3 * self.sigma, 3 * self.sigma)
        return {"scale": scale, "control_offsets": offsets}

    def _apply(self, images: Tensor, params: Params, others: Tensor | None) -> Tensor:
        control = self.control.to(images.device)
        theta = tps_theta(control, params["control_offsets"], params["scale"], self.size)
        return _warp(images, theta, self.family, self.size)


# t, tc and addition live in clutter.py, which imports this module; the package __init__ imports both.
__all__ = [
    "Distortion",
    "NoDistortion",
    "Rotated",
    "RotatedTranslatedScaled",
    "Projective",
    "Elastic",
    "get_distortion",
    "list_distortions",
    "register_distortion",
    "index_params",
]
