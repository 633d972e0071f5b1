"""``IterativeSpatialTransformer``: one localisation net applied K times (IC-STN, Lin & Lucey 2017)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._validate import check_bool, check_positive_int, check_tensor
from .module import SpatialTransformer
from .sampling import Fill
from .transforms import MatrixTransform, Transform, get, list_transforms


class IterativeSpatialTransformer(SpatialTransformer):
    """Inverse compositional spatial transformer (IC-STN, Lin & Lucey, CVPR 2017).

    One localisation net (with its regression layer, zero weights and identity bias as in
    :class:`~stnkit.SpatialTransformer`) is applied ``steps`` times. Step ``k`` reads the
    **original** input warped by the composition of the updates so far (at the input's size, so the
    same net applies at every step) and predicts an update ``dtheta_k``; the composition becomes
    ``compose(theta_{k-1}, dtheta_k)`` (the family's :meth:`~stnkit.transforms.MatrixTransform.compose`:
    matrices ``M_1 @ M_2 @ ... @ M_k``). The output is the original input warped once by the final
    composition, so nothing is lost at the borders between steps. Matrix families only.

    Args:
        localisation: Maps ``(N, C, H, W)`` to ``(N, F)`` features.
        transform: A matrix family (``translation``, ``attention``, ``similarity``, ``affine``,
            ``projective``, ``affine3d``) or an instance of one.
        steps: ``K``, the number of updates (``K = 1`` is a plain :class:`~stnkit.SpatialTransformer`).
        loc_features, output_size, mode, padding, fill, align_corners, antialias, transform_options,
            check_finite: As for :class:`~stnkit.SpatialTransformer`.

    Shape:
        - input: ``(N, C, H, W)`` (``(N, C, D, H, W)`` for ``affine3d``).
        - output: ``(N, C, H', W')``.
        - thetas (``return_thetas=True``): ``(N, K, num_params)``, the composition after each step
          (the last one is the final warp).

    Example:
        >>> import torch, stnkit
        >>> ic = stnkit.IterativeSpatialTransformer(stnkit.fc_localisation((1, 8, 8)), "affine", steps=3)
        >>> out, thetas = ic(torch.rand(2, 1, 8, 8), return_thetas=True)
        >>> tuple(thetas.shape)
        (2, 3, 6)
    """

    transform: MatrixTransform  # checked in __init__

    def __init__(
        self,
        localisation: nn.Module,
        transform: str | Transform = "affine",
        *,
        steps: int = 4,
        loc_features: int | None = None,
        output_size: Sequence[int] | None = None,
        mode: str = "bilinear",
        padding: str = "zeros",
        fill: Fill = None,
        align_corners: bool = False,
        antialias: bool = False,
        transform_options: dict[str, Any] | None = None,
        check_finite: bool = True,
    ) -> None:
        super().__init__(
            localisation,
            transform,
            loc_features=loc_features,
            output_size=output_size,
            mode=mode,
            padding=padding,
            fill=fill,
            align_corners=align_corners,
            antialias=antialias,
            transform_options=transform_options,
            check_finite=check_finite,
        )
        if not isinstance(self.transform, MatrixTransform):
            matrix = [n for n in list_transforms() if n != self.transform.name and _is_matrix(n)]
            raise ValueError(
                f"transform: IterativeSpatialTransformer composes warps with the family's compose, "
                f"which only matrix families have; got {self.transform.name!r}, expected one of "
                f"{', '.join(map(repr, matrix))}"
            )
        self.steps = check_positive_int("steps", steps)

    # Not a drop-in override, by design: the second positional argument is ``return_thetas`` (not
    # ``source``) and the result can hold three tensors.
    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        return_thetas: bool = False,
        *,
        return_theta: bool = False,
    ) -> Tensor | tuple[Tensor, ...]:
        """Warps ``x`` by the composition of ``steps`` updates read off ``x`` warped so far.

        Args:
            x: ``(N, C, H, W)`` (``(N, C, D, H, W)`` in 3-D).
            return_thetas: Also return every step's composed theta, ``(N, K, num_params)``.
            return_theta: Also return the final composed theta, ``(N, num_params)`` (as
                :class:`~stnkit.SpatialTransformer` does, so code written for it, such as the
                pictures of where a transformer read, sees the warp that made the output).

        Returns:
            The warped ``x``, then the final theta if ``return_theta``, then the thetas if
            ``return_thetas``.
        """
        rank = self.transform.ndim + 2
        check_tensor("x", x, ndim=rank, shape="(N, C, H, W)" if rank == 4 else "(N, C, D, H, W)", floating=True)
        check_bool("return_thetas", return_thetas)
        check_bool("return_theta", return_theta)
        theta = self.predict(x)  # (N, P): step 1 reads the input itself
        thetas = [theta]
        for _ in range(self.steps - 1):
            current = self._warp(x, theta, tuple(x.shape[2:]))  # the ORIGINAL input, warped
            theta = self.transform.compose(theta, self.predict(current))  # (N, P): M_theta @ M_update
            thetas.append(theta)
        out = self._warp(x, theta, self.output_size or tuple(x.shape[2:]))
        extra: tuple[Tensor, ...] = (theta,) if return_theta else ()  # (N, P)
        extra += (torch.stack(thetas, dim=1),) if return_thetas else ()  # (N, K, P)
        return (out, *extra) if extra else out

    def extra_repr(self) -> str:
        return f"steps={self.steps}, " + super().extra_repr()


def _is_matrix(name: str) -> bool:
    try:
        return isinstance(get(name), MatrixTransform)
    except (TypeError, ValueError):
        return False
