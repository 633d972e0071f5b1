"""Transform families, in a registry.

Example:
    >>> import stnkit
    >>> stnkit.transforms.list_transforms()
    ['affine', 'affine3d', 'attention', 'bspline', 'bspline3d', 'displacement', 'displacement3d', 'piecewise_affine', 'projective', 'similarity', 'tps', 'translation', 'velocity', 'velocity3d']
    >>> tps = stnkit.transforms.get("tps", grid_size=3)
    >>> tps.num_params
    18
"""

from __future__ import annotations

from typing import Any, Callable

from .._registry import Registry
from .base import Transform
from .matrix import (
    Affine,
    Affine3d,
    Attention,
    MatrixTransform,
    Projective,
    Similarity,
    Translation,
)
from .tps import ThinPlateSpline
from .piecewise_affine import PiecewiseAffine
from .bspline import BSpline, BSpline3d
from .displacement import Displacement, Displacement3d, Velocity, Velocity3d

_REGISTRY: Registry[Callable[..., Transform]] = Registry("transform family")


def register_transform(obj: Any = None, *, name: str | None = None) -> Any:
    """Registers a :class:`Transform` subclass (or factory) under its ``name`` attribute, or ``name``.

    Use bare (``@register_transform``), with a name (``@register_transform("x")`` or ``name="x"``),
    or call it on a class (``register_transform(MyFamily)``); see :class:`stnkit._registry.Registry`.
    """
    return _REGISTRY.register(obj, name=name)


def list_transforms() -> list[str]:
    """Names of every registered transform family, sorted."""
    return _REGISTRY.names()


def get(name: str | Transform, **options: Any) -> Transform:
    """Builds the transform family ``name`` with its ``options`` (e.g. ``grid_size`` for ``tps``).

    A :class:`Transform` instance is returned as it is (options are then not allowed).

    Raises:
        ValueError: ``name`` is not registered (the message lists the registered names).
    """
    if isinstance(name, Transform):
        if options:
            raise ValueError(f"transform_options: expected none with a Transform instance "
                             f"(configure the instance instead), got {sorted(options)}")
        return name
    factory = _REGISTRY.get(name, argument="transform")
    try:
        return factory(**options)
    except TypeError as err:
        raise TypeError(f"transform_options: bad options {sorted(options)} for transform {name!r}: {err}") from None


for _cls in (Translation, Attention, Similarity, Affine, Projective, Affine3d, ThinPlateSpline,
             PiecewiseAffine, BSpline, BSpline3d, Displacement, Displacement3d, Velocity, Velocity3d):
    register_transform(_cls)

__all__ = [
    "Transform",
    "MatrixTransform",
    "Translation",
    "Attention",
    "Similarity",
    "Affine",
    "Projective",
    "Affine3d",
    "ThinPlateSpline",
    "PiecewiseAffine",
    "BSpline",
    "BSpline3d",
    "Displacement",
    "Displacement3d",
    "Velocity",
    "Velocity3d",
    "get",
    "list_transforms",
    "register_transform",
]
