"""stnkit: Spatial Transformer Networks (Jaderberg et al., NIPS 2015) in PyTorch.

The pipeline is ``theta -> grid -> sample``:

* :mod:`stnkit.transforms`: transform families (registry), each ``theta -> grid``;
* :func:`stnkit.sample`: the sampler (``grid -> output``);
* :func:`stnkit.warp`: both in one call; :func:`stnkit.warp_heads`: K warps of one uncopied input;
* :class:`stnkit.SpatialTransformer`: localisation net + family + sampler as an ``nn.Module``;
* :class:`stnkit.IterativeSpatialTransformer`: the same net applied K times, warps composed (IC-STN).

The coordinate convention is defined once, in :mod:`stnkit.coords`.
"""

from __future__ import annotations

from . import coords, errors, fastpath, fields, transforms
from .functional import warp, warp_heads
from .iterative import IterativeSpatialTransformer
from .localisation import LocalisationNet, conv_localisation, fc_localisation
from .module import SpatialTransformer
from .sampling import sample

__version__ = "0.4.0"  # the one place; pyproject.toml reads it (setuptools dynamic version)

__all__ = [
    "IterativeSpatialTransformer",
    "SpatialTransformer",
    "LocalisationNet",
    "conv_localisation",
    "coords",
    "errors",
    "fastpath",
    "fc_localisation",
    "fields",
    "sample",
    "transforms",
    "warp",
    "warp_heads",
    "__version__",
]
