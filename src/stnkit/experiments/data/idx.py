"""Reading and writing IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw.

An IDX file is a header then the data: two zero bytes, one type byte, one byte giving the number
of dimensions ``d``, ``d`` big-endian 32-bit sizes, then ``prod(sizes)`` big-endian values.
Images are type ``0x08`` (unsigned byte) with ``d = 3`` (magic 2051), labels ``0x08`` with
``d = 1`` (magic 2049).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..._io import atomic_write

#: IDX type byte -> (numpy big-endian dtype, torch dtype).
_TYPES: dict[int, tuple[str, torch.dtype]] = {
    0x08: (">u1", torch.uint8),
    0x09: (">i1", torch.int8),
    0x0B: (">i2", torch.int16),
    0x0C: (">i4", torch.int32),
    0x0D: (">f4", torch.float32),
    0x0E: (">f8", torch.float64),
}
_CODES = {torch_dtype: code for code, (_, torch_dtype) in _TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (detected from its first bytes, not its name)."""
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise ValueError(
            f"{path}: truncated gzip file ({len(raw)} bytes): the compressed stream ends "
            f"early; the file is incomplete (an interrupted download?)"
        ) from None
    except (OSError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt gzip file ({err})") from None


def parse_idx(data: bytes, name: str = "<bytes>") -> Tensor:
    """Parses the bytes of an (uncompressed) IDX file.

    Args:
        data: The whole file.
        name: What to call it in error messages (usually the path).

    Returns:
        A tensor of the stored shape and type: ``uint8 (N, H, W)`` for IDX image files and
        ``uint8 (N,)`` for label files.

    Raises:
        ValueError: Not an IDX file (wrong magic), unknown type, truncated data or trailing bytes.
    """
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file: {len(data)} bytes, shorter than the 4-byte header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    magic = struct.unpack(">I", data[:4])[0]
    if zero != 0 or code not in _TYPES or ndim == 0:
        raise ValueError(
            f"{name}: not an IDX file: wrong magic number 0x{magic:08x} ({magic}); expected "
            f"0x00000803 (2051) for images or 0x00000801 (2049) for labels"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header: {ndim} dimensions need {header} bytes, file has {len(data)}")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype, torch_dtype = _TYPES[code]
    expected = header + math.prod(shape) * np.dtype(dtype).itemsize
    if len(data) < expected:
        raise ValueError(
            f"{name}: truncated IDX file: header says shape {shape} ({expected} bytes with the "
            f"header), file has {len(data)} bytes"
        )
    if len(data) > expected:
        raise ValueError(f"{name}: {len(data) - expected} unexpected bytes after the data of shape {shape}")
    array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=header).reshape(shape)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))


def read_idx(path: str | os.PathLike) -> Tensor:
    """Reads an IDX file, gzip-compressed or raw.

    Args:
        path: The file (``*-idx3-ubyte.gz``, ``*-idx1-ubyte`` ...).

    Returns:
        A tensor of the stored shape and type (``uint8 (N, 28, 28)`` for MNIST images,
        ``uint8 (N,)`` for its labels).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Truncated or corrupt file, or not an IDX file; the message names the file.

    Example:
        >>> import tempfile, os, torch
        >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte.gz")
        >>> write_idx(path, torch.tensor([3, 1, 4], dtype=torch.uint8))
        >>> read_idx(path).tolist()
        [3, 1, 4]
    """
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path))


def encode_idx(tensor: Tensor) -> bytes:
    """The IDX bytes (uncompressed) of ``tensor`` (uint8, int8, int16, int32, float32 or float64)."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"tensor: expected a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in _CODES:
        names = ", ".join(str(d) for d in _CODES)
        raise TypeError(f"tensor: expected dtype {names}; got {tensor.dtype}")
    if tensor.dim() == 0 or tensor.dim() > 255:
        raise ValueError(f"tensor: expected 1 to 255 dimensions, got shape {tuple(tensor.shape)}")
    code = _CODES[tensor.dtype]
    header = struct.pack(">HBB", 0, code, tensor.dim()) + struct.pack(f">{tensor.dim()}I", *tensor.shape)
    body = tensor.detach().cpu().contiguous().numpy().astype(_TYPES[code][0]).tobytes()
    return header + body


def write_idx(path: str | os.PathLike, tensor: Tensor) -> None:
    """Writes ``tensor`` as an IDX file, atomically; gzip-compressed when ``path`` ends in ``.gz``.

    Args:
        path: Destination (its folder must exist).
        tensor: ``uint8 (N, H, W)`` images, ``uint8 (N,)`` labels, or any supported dtype.
    """
    path = Path(path)
    data = encode_idx(tensor)
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    atomic_write(path, data)
