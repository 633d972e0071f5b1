"""Animated GIFs assembled from single-frame GIFs, without re-encoding earlier frames.

Each frame is encoded once (Pillow, its own adaptive palette) as a standalone one-frame GIF; an
animation is then the concatenation of those frames' image blocks, each with its palette as a
local colour table and a graphic control extension carrying its delay. So appending an epoch to
a long training animation costs one frame's encoding plus a byte copy, not a re-encode of every
earlier frame, and identical frames stay separate frames (Pillow's multi-frame writer merges them).

Format reference: the GIF89a specification (W3C / CompuServe, 1990), sections 18-26.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GifFrame:
    """One image of a GIF: size, palette and compressed pixels.

    Attributes:
        width, height: Image size in pixels.
        palette: RGB triplets, ``3 * 2 ** (bits + 1)`` bytes.
        bits: Palette size field (0..7).
        transparent: Transparent colour index, or ``None``.
        interlaced: Whether the rows are stored interlaced.
        data: LZW minimum code size byte followed by the data sub-blocks and their terminator.
    """

    width: int
    height: int
    palette: bytes
    bits: int
    transparent: int | None
    interlaced: bool
    data: bytes


def encode_frame(frame: np.ndarray) -> bytes:
    """A standalone one-frame GIF of an ``(H, W, 3)`` uint8 RGB array (Pillow, adaptive palette)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("RGB").save(buffer, format="GIF", interlace=False)
    return buffer.getvalue()


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """Position just after a run of sub-blocks (and its zero terminator) starting at ``pos``."""
    while True:
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


def parse_frame(data: bytes) -> GifFrame:
    """Reads the first image of a GIF file.

    Raises:
        ValueError: when ``data`` is not a GIF or holds no image.
    """
    if data[:6] not in (b"GIF87a", b"GIF89a"):
        raise ValueError(f"gif: expected a GIF file (GIF87a/GIF89a header), got {data[:6]!r}")
    packed = data[10]
    pos = 13
    palette, bits = b"", 0
    if packed & 0x80:  # global colour table
        bits = packed & 0x07
        palette = data[pos : pos + 3 * 2 ** (bits + 1)]
        pos += len(palette)
    transparent = None
    while pos < len(data):
        kind = data[pos]
        if kind == 0x21:  # extension
            label = data[pos + 1]
            if label == 0xF9 and data[pos + 3] & 0x01:  # graphic control with transparency
                transparent = data[pos + 6]
            pos = _skip_sub_blocks(data, pos + 2)
        elif kind == 0x2C:  # image descriptor
            _, _, width, height, img_packed = struct.unpack("<HHHHB", data[pos + 1 : pos + 10])
            pos += 10
            if img_packed & 0x80:  # local colour table replaces the global one
                bits = img_packed & 0x07
                palette = data[pos : pos + 3 * 2 ** (bits + 1)]
                pos += len(palette)
            if not palette:
                raise ValueError("gif: the image has no colour table")
            end = _skip_sub_blocks(data, pos + 1)  # after the LZW minimum code size byte
            return GifFrame(width, height, palette, bits, transparent, bool(img_packed & 0x40), data[pos:end])
        elif kind == 0x3B:  # trailer
            break
        else:
            raise ValueError(f"gif: unexpected block 0x{kind:02x} at byte {pos}")
    raise ValueError("gif: expected an image, found none")


def assemble(frames: Sequence[GifFrame], durations_ms: Sequence[int], loop: int = 0) -> bytes:
    """An animated GIF of ``frames`` (all one size) shown for ``durations_ms`` each.

    Args:
        frames: From :func:`parse_frame`.
        durations_ms: Display time of each frame (GIF stores hundredths of a second).
        loop: Number of loops; 0 loops forever.

    Returns:
        The GIF file's bytes.
    """
    if not frames:
        raise ValueError("frames: expected at least one frame, got none")
    if len(durations_ms) != len(frames):
        raise ValueError(f"durations_ms: expected one per frame ({len(frames)}), got {len(durations_ms)}")
    width, height = frames[0].width, frames[0].height
    sizes = {(f.width, f.height) for f in frames}
    if len(sizes) != 1:
        raise ValueError(f"frames: expected frames of one size, got sizes (W, H) {sorted(sizes)}")
    out = [b"GIF89a", struct.pack("<HHBBB", width, height, 0x70, 0, 0)]  # no global colour table
    out.append(b"\x21\xff\x0bNETSCAPE2.0" + struct.pack("<BBHB", 3, 1, loop, 0))
    for frame, ms in zip(frames, durations_ms, strict=True):
        delay = max(2, round(ms / 10))  # hundredths; browsers treat 0-1 as "as fast as possible"
        flags = (1 << 2) | (1 if frame.transparent is not None else 0)  # disposal 1: leave in place
        out.append(struct.pack("<BBBBHBB", 0x21, 0xF9, 4, flags, delay, frame.transparent or 0, 0))
        packed = 0x80 | (0x40 if frame.interlaced else 0) | frame.bits  # local colour table
        out.append(b"\x2c" + struct.pack("<HHHHB", 0, 0, frame.width, frame.height, packed))
        out.append(frame.palette)
        out.append(frame.data)
    out.append(b"\x3b")
    return b"".join(out)
