"""Users' own evaluation data: ``.npz`` files, and placing images on a model's canvas."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..._validate import check_positive_int, check_size, check_tensor


def load_npz(path: str | os.PathLike, num_classes: int | None = None) -> tuple[Tensor, Tensor]:
    """Loads ``images`` and ``labels`` from an ``.npz`` file.

    The file holds ``images``: uint8 ``(N, H, W)`` or ``(N, C, H, W)`` (0 = background,
    255 = ink, as MNIST) and ``labels``: integer ``(N,)``.

    Args:
        path: The ``.npz`` file (as written by ``numpy.savez``).
        num_classes: When given, labels must lie in ``[0, num_classes)``.

    Returns:
        ``images`` float32 ``(N, C, H, W)`` in [0, 1] and ``labels`` int64 ``(N,)``.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not an ``.npz``, a key missing, wrong dtype or rank, lengths differ, labels
            out of range; the message names the file and the key.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "mine.npz")
        >>> np.savez(path, images=np.zeros((3, 28, 28), np.uint8), labels=np.array([1, 2, 3]))
        >>> x, y = load_npz(path)
        >>> tuple(x.shape), y.tolist()
        ((3, 1, 28, 28), [1, 2, 3])
    """
    path = Path(path)
    if num_classes is not None:
        check_positive_int("num_classes", num_classes)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .npz file")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(
                f"{path}: expected an .npz archive (numpy.savez) with arrays 'images' and "
                f"'labels', got a single .npy array"
            )
        with archive:
            missing = [k for k in ("images", "labels") if k not in archive.files]
            if missing:
                raise ValueError(
                    f"{path}: missing array(s) {', '.join(map(repr, missing))}; expected 'images' "
                    f"(N, H, W) or (N, C, H, W) uint8 and 'labels' (N,) int, found "
                    f"{', '.join(map(repr, archive.files)) or 'no arrays'}"
                )
            images, labels = archive["images"], archive["labels"]
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None
    except ValueError as err:
        if str(err).startswith(str(path)):
            raise
        raise ValueError(f"{path}: cannot read the arrays ({err}); object arrays are not supported") from None
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: 'images' must be uint8 (0-255), got dtype {images.dtype}")
    if images.ndim not in (3, 4):
        raise ValueError(f"{path}: 'images' must be (N, H, W) or (N, C, H, W), got shape {images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: 'labels' must be a 1-D integer array (N,), got {labels.dtype} shape {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{path}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{path}: labels must be >= 0, found {labels.min()}")
    if num_classes is not None and labels.size and labels.max() >= num_classes:
        raise ValueError(
            f"{path}: labels must be in [0, {num_classes - 1}] for this model ({num_classes} classes), "
            f"found {labels.max()}"
        )
    x = torch.from_numpy(np.ascontiguousarray(images)).float() / 255.0
    if x.dim() == 3:
        x = x.unsqueeze(1)  # (N, 1, H, W)
    return x, torch.from_numpy(labels.astype(np.int64))


def fit_to_size(images: Tensor, size: Sequence[int], channels: int) -> Tensor:
    """Centres images on a larger zero canvas (e.g. 28x28 MNIST onto a 42x42 or 60x60 model).

    Args:
        images: ``(N, C, H, W)`` floating point.
        size: The model's input ``(H', W')``, each no smaller than the images'.
        channels: The model's input channels (must equal ``C``).

    Returns:
        ``(N, C, H', W')``; the image's top-left pixel lands at ``((H' - H) // 2, (W' - W) // 2)``.

    Raises:
        ValueError: The images are larger than ``size`` or have another channel count; the
            message says what the model needs.
    """
    check_tensor("images", images, ndim=4, shape="(N, C, H, W)", floating=True)
    size = check_size("size", size, 2)
    check_positive_int("channels", channels)
    n, c, h, w = images.shape
    if c != channels:
        raise ValueError(
            f"images: the model expects {channels} channel(s) of at most {size[0]}x{size[1]} pixels, "
            f"got {c} channel(s) (shape {tuple(images.shape)})"
        )
    if h > size[0] or w > size[1]:
        raise ValueError(
            f"images: the model expects images of at most {size[0]}x{size[1]} pixels (smaller ones are "
            f"centred on its canvas), got {h}x{w}; resize or crop them to {size[0]}x{size[1]}"
        )
    top, left = (size[0] - h) // 2, (size[1] - w) // 2
    return F.pad(images, (left, size[1] - w - left, top, size[0] - h - top))  # (N, C, H', W')
