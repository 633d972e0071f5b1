"""The SVHN format-1 reader on small synthetic archives written in exactly that format: PNGs plus a
MATLAB v7.3 ``digitStruct.mat`` (HDF5 with a 512-byte MATLAB header and object references)."""

from __future__ import annotations

import io
import json
import logging
import tarfile

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")
from PIL import Image  # noqa: E402

from stnkit.experiments.data.svhn import (SvhnFormatError, SvhnImages, load_svhn, preprocess_archive,  # noqa: E402
                                          read_digit_struct)
from stnkit.experiments.train import TrainConfig, Trainer  # noqa: E402

FIELDS = ("label", "left", "top", "width", "height")


def write_digit_struct(path, records) -> None:
    """``records``: ``[(name, [(label, left, top, width, height), ...])]``, written as MATLAB does."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        group = f.create_group("digitStruct")
        names = group.create_dataset("name", (len(records), 1), dtype=h5py.ref_dtype)
        bboxes = group.create_dataset("bbox", (len(records), 1), dtype=h5py.ref_dtype)
        for i, (name, boxes) in enumerate(records):
            chars = refs.create_dataset(f"n{i}", data=np.array([[ord(c)] for c in name], dtype=np.uint16))
            names[i, 0] = chars.ref
            box = refs.create_group(f"b{i}")
            for j, key in enumerate(FIELDS):
                values = [float(b[j]) for b in boxes]
                if len(values) == 1:  # one digit: the value itself
                    box.create_dataset(key, data=np.array([[values[0]]]))
                else:  # several: references to (1, 1) scalars
                    scalars = [refs.create_dataset(f"b{i}{key}{k}", data=np.array([[v]])).ref
                               for k, v in enumerate(values)]
                    box.create_dataset(key, data=np.array(scalars, dtype=h5py.ref_dtype).reshape(-1, 1))
            bboxes[i, 0] = box.ref
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")


def _png(width: int, height: int, box: tuple[int, int, int, int]) -> bytes:
    """A black RGB image with a white rectangle ``(x0, y0, x1, y1)`` (the digits' union box)."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    x0, y0, x1, y1 = box
    image[y0:y1, x0:x1] = 255
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


# Five numbers: "5", "10" (label 10 = 0), "12345", a six-digit one (dropped), "7".
NUMBERS = [[(5, 40, 20, 20, 40)],
           [(1, 30, 20, 20, 40), (10, 50, 20, 20, 40)],
           [(1, 10, 10, 16, 30), (2, 26, 10, 16, 30), (3, 42, 10, 16, 30), (4, 58, 10, 16, 30), (5, 74, 10, 16, 30)],
           [(d, 5 + 12 * d, 10, 12, 30) for d in range(1, 7)],
           [(7, 45, 25, 15, 30)]]


def write_archive(folder, split="train", numbers=NUMBERS, skip_png=None, mat_writer=write_digit_struct):
    folder.mkdir(parents=True, exist_ok=True)
    records = [(f"{i + 1}.png", boxes) for i, boxes in enumerate(numbers)]
    mat = folder / "digitStruct.mat"
    mat_writer(mat, records)
    path = folder / f"{split}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, boxes in records:
            if name == skip_png:
                continue
            x0 = min(b[1] for b in boxes)
            y0 = min(b[2] for b in boxes)
            x1 = max(b[1] + b[3] for b in boxes)
            y1 = max(b[2] + b[4] for b in boxes)
            data = _png(120, 80, (x0, y0, x1, y1))
            info = tarfile.TarInfo(f"{split}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(mat, arcname=f"{split}/digitStruct.mat")
    mat.unlink()
    return path


def test_digit_struct_records(tmp_path):
    path = tmp_path / "digitStruct.mat"
    write_digit_struct(path, [(f"{i + 1}.png", b) for i, b in enumerate(NUMBERS)])
    records = read_digit_struct(path)
    assert [name for name, _ in records] == ["1.png", "2.png", "3.png", "4.png", "5.png"]
    np.testing.assert_array_equal(records[0][1], [[5, 40, 20, 20, 40]])  # one digit: stored as a value
    np.testing.assert_array_equal(records[2][1], np.array(NUMBERS[2], dtype=float))  # five: references
    assert records[1][1][:, 0].tolist() == [1, 10]


def test_preprocessed_crops_and_labels(tmp_path, caplog):
    archive = write_archive(tmp_path)
    with caplog.at_level(logging.WARNING):
        images, labels = preprocess_archive(archive, "train", 64)
    assert "dropped 1 number(s) longer than 5 digits (of 5)" in caplog.text
    assert images.shape == (4, 3, 64, 64) and images.dtype == np.uint8
    assert labels.tolist() == [[5, 10, 10, 10, 10], [1, 0, 10, 10, 10], [1, 2, 3, 4, 5], [7, 10, 10, 10, 10]]
    # The union box enlarged by 30% fills 64 px: the white box spans 64 / 1.3 = 49 px in the middle.
    for image in images:
        white = image[0] > 127
        cols, rows = np.flatnonzero(white.any(0)), np.flatnonzero(white.any(1))
        assert abs(len(cols) - 64 / 1.3) <= 2 and abs(len(rows) - 64 / 1.3) <= 2
        assert abs((cols[0] + cols[-1]) / 2 - 31.5) <= 1 and abs((rows[0] + rows[-1]) / 2 - 31.5) <= 1
    loose, _ = preprocess_archive(archive, "train", 128)  # twice the box at twice the side: same scale
    white = loose[2, 0] > 127
    assert abs(white.any(0).sum() - 128 / 2.6) <= 2


def test_with_the_length_head_a_long_number_is_kept_as_more(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        _, labels = preprocess_archive(write_archive(tmp_path), "train", 64, keep_long=True)
    assert "kept as 'more' (length head) 1 number(s) longer than 5 digits (of 5)" in caplog.text
    assert labels.tolist()[3] == [-100] * 5 and len(labels) == 5


def test_cache_is_memory_mapped_and_used_without_the_archive(tmp_path):
    write_archive(tmp_path)
    images, labels = load_svhn("train", 64, tmp_path)
    assert isinstance(images, np.memmap) and len(images) == len(labels) == 4
    (tmp_path / "train.tar.gz").unlink()
    again, _ = load_svhn("train", 64, tmp_path)
    np.testing.assert_array_equal(again, images)
    with pytest.raises(FileNotFoundError, match="no SVHN test.tar.gz"):
        load_svhn("test", 64, tmp_path)


def test_truncated_and_foreign_archives(tmp_path):
    archive = write_archive(tmp_path / "a")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(SvhnFormatError, match="truncated"):
        preprocess_archive(archive, "train")
    archive.write_bytes(b"PK\x03\x04 this is a zip file, not SVHN" * 20)
    with pytest.raises(SvhnFormatError, match="truncated or not one"):
        preprocess_archive(archive, "train")


def test_missing_png(tmp_path):
    with pytest.raises(SvhnFormatError, match=r"lists 5 images, the archive holds 4 PNGs; missing e.g. train/3.png"):
        preprocess_archive(write_archive(tmp_path, skip_png="3.png"), "train")


def test_wrong_digit_struct_layout(tmp_path):
    def wrong(path, records):
        with h5py.File(path, "w") as f:
            f.create_group("digitStruct").create_dataset("names", data=np.zeros(3))

    with pytest.raises(SvhnFormatError, match="expected a 'digitStruct' group with 'name' and 'bbox'"):
        preprocess_archive(write_archive(tmp_path, mat_writer=wrong), "train")


def test_empty_split(tmp_path):
    with pytest.raises(SvhnFormatError, match="holds no number of 1-5 digits"):
        preprocess_archive(write_archive(tmp_path, numbers=[NUMBERS[3]]), "train")


def test_batches_crop_at_random_in_training_and_at_the_centre_in_test(tmp_path):
    write_archive(tmp_path)
    images, labels = load_svhn("train", 64, tmp_path)
    train = SvhnImages(images, labels, "train", crop=54, seed=0)
    x, y = next(train.batches(0, 4))
    x2, _ = next(train.batches(0, 4))
    assert x.shape == (4, 3, 54, 54) and y.shape == (4, 5) and torch.equal(x, x2)
    test_x, test_y = next(SvhnImages(images, labels, "test", crop=54).batches(0, 4))
    torch.testing.assert_close(test_x, torch.from_numpy(np.array(images))[:, :, 5:59, 5:59].float() / 255)
    assert test_y.tolist() == labels.tolist()


def test_tiny_training_run_on_svhn(tmp_path):
    for split in ("train", "test"):
        write_archive(tmp_path / "data", split)
    config = TrainConfig(model="st-cnn-multi", task="svhn", data_dir=str(tmp_path / "data"), epochs=1,
                         batch_size=4, optimizer="adam", lr=1e-3, schedule="constant", eval_batch_size=4,
                         model_options={"width": 0.0625, "dropout": 0.0})
    Trainer(config, tmp_path / "run", progress=False).fit()
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 <= row["test_error"] <= 100
