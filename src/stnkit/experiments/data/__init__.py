"""Data for the paper's experiments: MNIST / Fashion-MNIST, distortions, distorted data sets.

* :func:`load_digits`: one split as ``uint8 (N, 28, 28)`` images and ``int64`` labels, from a
  folder, ``$STNKIT_DATA_DIR``, the download cache (MD5-checked), or the embedded 5,000-digit
  MNIST sample;
* :func:`get_distortion` / :func:`list_distortions`: the paper's distortions (``none``, ``r``,
  ``rts``, ``p``, ``e``, ``t``, ``tc``, ``addition``) with ``make_params`` / ``apply``;
* :class:`DistortedDigits`: a distorted split served in batches (fresh draws each epoch, a fixed
  test set, DDP rank chunks);
* :func:`load_npz` / :func:`fit_to_size`: users' own evaluation data;
* :class:`LoadedData`, :class:`ImageFiles`, :class:`RandomCrop`, :class:`CenterCrop`
  (:mod:`.loading`): file-based data sets through ``torch.utils.data`` (workers, pinned memory,
  explicit generators, rank split, mid-epoch resume);
* :func:`read_idx` / :func:`write_idx`: the IDX file format.

Example:
    >>> import torch
    >>> from stnkit.experiments.data import get_distortion
    >>> r = get_distortion("r")
    >>> x = r(torch.zeros(2, 28, 28, dtype=torch.uint8), torch.Generator().manual_seed(0))
    >>> tuple(x.shape)
    (2, 1, 28, 28)
"""

from __future__ import annotations

from . import clutter  # noqa: F401  (registers t, tc, addition; imports .distortions, never the reverse)
from .datasets import TEST_SEED, DistortedDigits, derive_seed, list_datasets
from .distortions import Distortion, get_distortion, index_params, list_distortions, register_distortion
from .download import ChecksumError, DownloadError
from .embedded import EmbeddedDataError
from .idx import read_idx, write_idx
from .loading import CenterCrop, ImageFiles, LoadedData, RandomCrop
from .npz import fit_to_size, load_npz
from .sources import DataNotFoundError, Digits, WrongDataSetError, cache_dir, list_sources, load_digits

__all__ = [
    "CenterCrop",
    "ChecksumError",
    "DataNotFoundError",
    "Digits",
    "Distortion",
    "DistortedDigits",
    "DownloadError",
    "EmbeddedDataError",
    "ImageFiles",
    "LoadedData",
    "RandomCrop",
    "TEST_SEED",
    "WrongDataSetError",
    "cache_dir",
    "derive_seed",
    "fit_to_size",
    "get_distortion",
    "index_params",
    "list_datasets",
    "list_distortions",
    "list_sources",
    "load_digits",
    "load_npz",
    "read_idx",
    "register_distortion",
    "write_idx",
]
