"""``SpatialTransformer``: localisation net + transform family + sampler, as one layer."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ._validate import check_bool, check_choice, check_positive_int, check_size, check_tensor
from .errors import torchscript_unsupported
from .functional import warp
from .sampling import Fill, check_sampling_options, check_volume_options
from .transforms import Transform, get

HEAD_OUTPUTS = ("channels", "stack")


class SpatialTransformer(nn.Module):
    """A spatial transformer (Jaderberg et al., 2015).

    The localisation net maps the input to a feature vector; a regression layer appended here
    (zero weights, bias = the family's identity) turns it into ``theta`` for each of ``heads``
    parallel transformers; each warps the whole input. A new transformer is exactly the identity.

    Args:
        localisation: Any module mapping ``(N, C, H, W)`` to ``(N, F)`` features, e.g. from
            :func:`stnkit.fc_localisation` or :func:`stnkit.conv_localisation`.
        transform: Family name (see :func:`stnkit.transforms.list_transforms`) or instance.
        loc_features: ``F``; default: ``localisation.out_features``, else the ``out_features`` of
            its last ``nn.Linear``.
        output_size: ``(H', W')`` (or ``(D', H', W')``); default: the input's size.
        heads: Number of parallel transformers predicted by the one localisation net.
        head_output: ``"channels"``: heads concatenated along channels, ``(N, heads*C, H', W')``;
            ``"stack"``: ``(N, heads, C, H', W')``. Ignored when ``heads == 1``.
        mode, padding, fill, align_corners, antialias: Sampling options, see :func:`stnkit.sample`.
        transform_options: Options for the family, e.g. ``{"grid_size": 4}`` for ``tps``.
        regression: ``False``: append no regression layer; the localisation net outputs theta itself
            as an offset from the identity, ``(N, heads * num_params)`` or any shape with that many
            values per sample (e.g. ``(N, 2, h, w)`` from the last conv of a U-Net for a
            ``displacement`` or ``velocity`` field). Its last registered layer with a weight is
            zeroed here, so the new transformer is still the identity.
        check_finite: Apply the non-finite theta policy of :mod:`stnkit.errors` (CPU: raise
            :class:`~stnkit.errors.NonFiniteThetaError` at the call; accelerators: a device flag that
            :func:`stnkit.errors.raise_pending` raises, no sync per call). Skipped when compiling.

    Shape:
        - input: ``(N, C, H, W)`` or, for 3-D families, ``(N, C, D, H, W)``.
        - output: ``(N, C, H', W')``; with heads, see ``head_output``.
        - theta (``return_theta=True``): ``(N, num_params)``, or ``(N, heads, num_params)``.

    Example:
        >>> import torch, stnkit
        >>> st = stnkit.SpatialTransformer(stnkit.fc_localisation((1, 28, 28)), "affine")
        >>> x = torch.rand(4, 1, 28, 28)
        >>> torch.allclose(st(x), x, atol=1e-5)   # bilinear rounding: about 1e-6
        True
    """

    def __init__(
        self,
        localisation: nn.Module,
        transform: str | Transform = "affine",
        *,
        loc_features: int | None = None,
        output_size: Sequence[int] | None = None,
        heads: int = 1,
        head_output: str = "channels",
        mode: str = "bilinear",
        padding: str = "zeros",
        fill: Fill = None,
        align_corners: bool = False,
        antialias: bool = False,
        transform_options: dict[str, Any] | None = None,
        check_finite: bool = True,
        regression: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(localisation, nn.Module):
            raise TypeError(f"localisation: expected an nn.Module, got {type(localisation).__name__}")
        self.localisation = localisation
        self.transform = get(transform, **(transform_options or {}))
        self.heads = check_positive_int("heads", heads)
        self.head_output = check_choice("head_output", head_output, HEAD_OUTPUTS)
        check_sampling_options(mode, padding, fill, align_corners, antialias)
        check_volume_options(mode, antialias, self.transform.ndim,
                             f"transforms; transform {self.transform.name!r} warps volumes")
        self.mode, self.padding, self.fill = mode, padding, fill
        self.align_corners, self.antialias = align_corners, antialias
        self.check_finite = check_bool("check_finite", check_finite)
        self.output_size = None if output_size is None else check_size("output_size", output_size, self.transform.ndim)
        n = self.transform.num_params
        self.register_buffer("identity", self.transform.identity().repeat(heads), persistent=False)
        if not check_bool("regression", regression):
            self.regression = None
            _zero_last_layer(localisation)
            return
        features = loc_features if loc_features is not None else _infer_features(localisation)
        self.regression = nn.Linear(check_positive_int("loc_features", features), heads * n)
        with torch.no_grad():
            self.regression.weight.zero_()
            self.regression.bias.copy_(self.identity)

    def forward(self, x: Tensor, source: Tensor | None = None,
                return_theta: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """Warps ``source`` (default ``x``) by the theta that the localisation net reads off ``x``.

        Args:
            x: Input of the localisation net, ``(N, C, H, W)`` (``(N, C, D, H, W)`` in 3-D).
            source: What is sampled, if not ``x`` (e.g. a higher-resolution image or a feature
                map); same batch size.
            return_theta: Also return theta.

        Returns:
            The warped ``source``, and theta if ``return_theta``.
        """
        rank = self.transform.ndim + 2
        shape = "(N, C, H, W)" if rank == 4 else "(N, C, D, H, W)"
        check_tensor("x", x, ndim=rank, shape=shape, floating=True)
        check_bool("return_theta", return_theta)
        src = x if source is None else check_tensor("source", source, ndim=rank, shape=shape, floating=True)
        if src.shape[0] != x.shape[0]:
            raise ValueError(f"source: batch size {src.shape[0]} does not match x's {x.shape[0]}")
        n, h, p = x.shape[0], self.heads, self.transform.num_params
        theta = self.predict(x)  # (N*heads, P)
        if h > 1:
            src = src.unsqueeze(1).expand(n, h, *src.shape[1:]).reshape(n * h, *src.shape[1:])  # (N*heads, C, ...)
        out = warp(src, theta, self.transform, self.output_size or tuple(src.shape[2:]), mode=self.mode,
                   padding=self.padding, fill=self.fill, align_corners=self.align_corners,
                   antialias=self.antialias, check_finite=self.check_finite)
        if h > 1:
            out = out.view(n, h, *out.shape[1:])  # (N, heads, C, ...)
            if self.head_output == "channels":
                out = out.flatten(1, 2)  # (N, heads*C, ...)
            theta = theta.view(n, h, p)
        return (out, theta) if return_theta else out

    def predict(self, x: Tensor) -> Tensor:
        """theta ``(N*heads, P)`` that the localisation net and the regression layer read off ``x``."""
        features = self.localisation(x)
        n, h, p = x.shape[0], self.heads, self.transform.num_params
        if self.regression is None:
            if not isinstance(features, Tensor) or features.dim() < 1 or features.shape[1:].numel() != h * p:
                got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
                raise ValueError(f"localisation: with regression=False expected heads * num_params = {h * p} "
                                 f"values per sample, shape (N, {h * p}) or e.g. (N, {self.transform.ndim}, ...); "
                                 f"got shape {got}")
            return (features.reshape(n, h * p) + self.identity).view(n * h, p)  # (N*heads, P)
        if not isinstance(features, Tensor) or features.dim() != 2:
            got = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
            raise ValueError(f"localisation: expected (N, F) features, got shape {got}; "
                             f"end the localisation net with nn.Flatten()")
        if features.shape[1] != self.regression.in_features:
            raise ValueError(f"loc_features: the regression layer expects {self.regression.in_features} "
                             f"features per sample, but the localisation net gives shape "
                             f"{tuple(features.shape)}; pass loc_features={features.shape[1]}")
        return self.regression(features).view(n * h, p)  # (N*heads, P)

    def __prepare_scriptable__(self) -> SpatialTransformer:  # torch.jit.script calls it first
        torchscript_unsupported()
        return self

    def extra_repr(self) -> str:
        return (f"heads={self.heads}, output_size={self.output_size}, mode={self.mode!r}, "
                f"padding={self.padding!r}, align_corners={self.align_corners}"
                + (", antialias=True" if self.antialias else ""))


def _zero_last_layer(localisation: nn.Module) -> None:
    layers = [m for m in localisation.modules() if isinstance(getattr(m, "weight", None), nn.Parameter)]
    if not layers:
        raise ValueError("localisation: regression=False needs a net whose last layer has a weight "
                         "(nn.Linear, nn.Conv2d, ...) to start at zero; none found")
    with torch.no_grad():
        layers[-1].weight.zero_()
        if isinstance(getattr(layers[-1], "bias", None), nn.Parameter):
            layers[-1].bias.zero_()


def _infer_features(localisation: nn.Module) -> int:
    features = getattr(localisation, "out_features", None)
    if isinstance(features, int):
        return features
    linears = [m for m in localisation.modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1].out_features
    raise ValueError("loc_features: cannot tell the localisation net's output size; pass loc_features=F "
                     "(the size of its (N, F) output)")
