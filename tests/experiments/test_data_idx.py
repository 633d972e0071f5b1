"""The IDX reader against bytes written here with ``struct`` (the format in shared/data/README.md)."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
import torch

from stnkit.experiments.data import load_digits, read_idx, write_idx


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """IDX bytes of a uint8 array, written from the format description."""
    if magic is None:
        magic = 0x0800 + array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def save(path, data: bytes, compress: bool) -> str:
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)
    return str(path)


def sample_images(n: int = 5) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)


@pytest.mark.parametrize("compress", [True, False])
def test_reads_images_and_labels_gzip_or_raw(tmp_path, compress):
    images, labels = sample_images(), np.array([3, 1, 4, 1, 5], np.uint8)
    x = read_idx(save(tmp_path / "i", idx_bytes(images), compress))
    y = read_idx(save(tmp_path / "l", idx_bytes(labels), compress))
    assert x.dtype == torch.uint8 and x.shape == (5, 28, 28) and np.array_equal(x.numpy(), images)
    assert y.dtype == torch.uint8 and y.tolist() == [3, 1, 4, 1, 5]


def test_write_idx_produces_the_documented_format_atomically(tmp_path):
    images = sample_images(3)
    write_idx(tmp_path / "x-idx3-ubyte.gz", torch.from_numpy(images))
    write_idx(tmp_path / "x-idx3-ubyte", torch.from_numpy(images))
    assert gzip.decompress((tmp_path / "x-idx3-ubyte.gz").read_bytes()) == idx_bytes(images)
    assert (tmp_path / "x-idx3-ubyte").read_bytes() == idx_bytes(images)
    assert sorted(os.listdir(tmp_path)) == ["x-idx3-ubyte", "x-idx3-ubyte.gz"]  # no temp files left


@pytest.mark.parametrize("compress", [True, False])
def test_truncated_data_is_a_clear_error(tmp_path, compress):
    data = idx_bytes(sample_images())
    path = save(tmp_path / "t", data[:-100], compress)
    with pytest.raises(ValueError, match=r"truncated IDX file.*\(5, 28, 28\)"):
        read_idx(path)


def test_truncated_gzip_stream_is_a_clear_error(tmp_path):
    raw = gzip.compress(idx_bytes(sample_images()))
    (tmp_path / "t.gz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated gzip"):
        read_idx(tmp_path / "t.gz")


@pytest.mark.parametrize("magic", [0x12345678, 0x00000F03, 0x08030000])
def test_wrong_magic_is_a_clear_error(tmp_path, magic):
    path = save(tmp_path / "m", idx_bytes(sample_images(), magic=magic), True)
    with pytest.raises(ValueError, match="not an IDX file: wrong magic number"):
        read_idx(path)


def test_short_header_trailing_bytes_and_missing_file(tmp_path):
    (tmp_path / "short").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="shorter than the 4-byte header"):
        read_idx(tmp_path / "short")
    (tmp_path / "hdr").write_bytes(struct.pack(">I", 0x803) + b"\x00\x00\x00\x05")
    with pytest.raises(ValueError, match="truncated IDX header"):
        read_idx(tmp_path / "hdr")
    (tmp_path / "long").write_bytes(idx_bytes(np.array([1, 2], np.uint8)) + b"\x07")
    with pytest.raises(ValueError, match="1 unexpected bytes"):
        read_idx(tmp_path / "long")
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "absent")


def _write_split(folder, images: np.ndarray, labels: np.ndarray, split: str = "test"):
    folder.mkdir(parents=True, exist_ok=True)
    prefix = "t10k" if split == "test" else "train"
    save(folder / f"{prefix}-images-idx3-ubyte.gz", idx_bytes(images), True)
    save(folder / f"{prefix}-labels-idx1-ubyte.gz", idx_bytes(labels), True)


def test_count_mismatch_between_images_and_labels(tmp_path):
    _write_split(tmp_path, sample_images(5), np.arange(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="holds 5 images but t10k-labels-idx1-ubyte.gz holds 4 labels"):
        load_digits("mnist", "test", data_dir=tmp_path)


def test_wrong_image_size_and_label_range(tmp_path):
    _write_split(tmp_path / "a", np.zeros((2, 32, 32), np.uint8), np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match=r"shape \(N, 28, 28\)"):
        load_digits("mnist", "test", data_dir=tmp_path / "a")
    _write_split(tmp_path / "b", sample_images(2), np.array([1, 12], np.uint8))
    with pytest.raises(ValueError, match="labels must be 0-9, found 12"):
        load_digits("mnist", "test", data_dir=tmp_path / "b")
    _write_split(tmp_path / "c", sample_images(2), np.array([[1, 2]], np.uint8))
    with pytest.raises(ValueError, match="labels of shape"):
        load_digits("mnist", "test", data_dir=tmp_path / "c")
