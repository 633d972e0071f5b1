"""The CUB-200-2011 reader (issue 10 item 3) on a small synthetic archive in exactly the layout of
``CUB_200_2011.tgz``: the split, 1-based labels, boxes, a missing image, a truncated archive, the
MD5-checked download, augmentation drawn from (seed, epoch, index) in DataLoader workers, and a tiny
run of the ``cub`` task."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from stnkit.experiments.data import cub
from stnkit.experiments.data.cub import CubArchiveError, CubData, CubImages, extract, find_cub, read_index
from stnkit.experiments.train import TrainConfig, Trainer

# id: (path, class (1-based), train?, box x y w h, image width, height)
ROWS = {1: ("001.Albatross/a_1.jpg", 1, 1, (8, 4, 12, 6), 40, 20),
        2: ("001.Albatross/a_2.jpg", 1, 0, (0, 0, 10, 10), 30, 30),
        3: ("002.Auklet/b_1.jpg", 2, 1, (5, 5, 20, 10), 40, 32),
        4: ("002.Auklet/b_2.jpg", 2, 1, (1, 2, 3, 4), 36, 36),
        5: ("200.Wren/c_1.jpg", 200, 0, (2, 3, 10, 10), 32, 40)}


def _archive(tmp_path: Path, drop: int | None = None) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"CUB_200_2011/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("images.txt", "".join(f"{i} {r[0]}\n" for i, r in ROWS.items()).encode())
        add("image_class_labels.txt", "".join(f"{i} {r[1]}\n" for i, r in ROWS.items()).encode())
        add("train_test_split.txt", "".join(f"{i} {r[2]}\n" for i, r in ROWS.items()).encode())
        add("bounding_boxes.txt", "".join(f"{i} {' '.join(f'{v:.1f}' for v in r[3])}\n" for i, r in ROWS.items()).encode())
        for i, (path, label, _, _, w, h) in ROWS.items():
            if i == drop:
                continue
            g = torch.Generator().manual_seed(i)
            pixels = torch.randint(0, 256, (h, w, 3), generator=g, dtype=torch.uint8)
            data = io.BytesIO()
            Image.fromarray(pixels.numpy()).save(data, format="PNG")  # lossless: pixels can be compared
            add(f"images/{path}", data.getvalue())
    path = tmp_path / cub.ARCHIVE
    path.write_bytes(buffer.getvalue())
    return path


def test_index_split_labels_and_boxes(tmp_path):
    folder = find_cub(_archive(tmp_path).parent)  # extracts the archive
    index = read_index(folder)
    assert index.labels.tolist() == [0, 0, 1, 1, 199]  # 1-based in the file
    assert index.train.tolist() == [True, False, True, True, False]
    assert index.boxes[0].tolist() == [8, 4, 20, 10]  # x, y, w, h -> corners
    train, test = CubImages(folder, "train", size=10), CubImages(folder, "test", size=10)
    assert train.paths == [ROWS[i][0] for i in (1, 3, 4)] and test.paths == [ROWS[i][0] for i in (2, 5)]
    assert train.labels.tolist() == [0, 1, 1] and test.labels.tolist() == [0, 199]
    assert len(CubImages(folder, "train", size=10, limit=2)) == 2


def test_test_images_are_the_centre_crop_and_the_box_follows(tmp_path):
    from PIL import Image

    folder = find_cub(_archive(tmp_path).parent)
    x, label, box = CubImages(folder, "test", size=10, resize=10)[1]  # image 5: 32x40 -> 10x12 -> rows 1..11
    with Image.open(folder / "images" / ROWS[5][0]) as img:
        ref = img.convert("RGB").resize((10, 12), Image.Resampling.BILINEAR)
    ref = torch.from_numpy(np.array(ref)).float().permute(2, 0, 1)[:, 1:11] / 255  # (3, 10, 10)
    torch.testing.assert_close(x, ref)
    assert int(label) == 199
    # box (2, 3)-(12, 13) scaled by 10/32 and 12/40, moved up by the crop's top row 1, clipped to the crop
    torch.testing.assert_close(box, torch.tensor([2 * 10 / 32, 0.0, 12 * 10 / 32, 13 * 12 / 40 - 1]))


def test_training_augmentation_comes_from_seed_epoch_and_index_in_any_worker(tmp_path):
    folder = find_cub(_archive(tmp_path).parent)
    data = CubData(CubImages(folder, "train", size=8, resize=16, seed=3), workers=0)
    one = [b for b in data.batches(1, 2)]
    two = [b for b in CubData(CubImages(folder, "train", size=8, resize=16, seed=3), workers=2).batches(1, 3)]
    x1, y1 = torch.cat([b[0] for b in one]), torch.cat([b[1] for b in one])
    assert torch.equal(x1, torch.cat([b[0] for b in two])) and torch.equal(y1, torch.cat([b[1] for b in two]))
    assert not torch.equal(torch.cat([b[0] for b in data.batches(2, 3)]), x1)
    # ranks: each global batch cut into contiguous chunks
    ranks = [list(data.batches(1, 2, r, 2)) for r in range(2)]
    assert torch.equal(torch.cat([ranks[0][0][1], ranks[1][0][1]]), one[0][1])
    for x, y, box in one:
        assert x.shape[1:] == (3, 8, 8) and bool((box >= 0).all() and (box <= 8).all())


def test_a_missing_image_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="a_1.jpg"):
        CubImages(find_cub(_archive(tmp_path, drop=1).parent), "train", size=8)


def test_a_truncated_archive_is_refused_and_leaves_nothing(tmp_path):
    archive = _archive(tmp_path)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(CubArchiveError, match="truncated or corrupt"):
        find_cub(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [cub.ARCHIVE]  # no half-extracted folder


def test_download_on_request_checks_the_md5(tmp_path, monkeypatch):
    source = _archive(tmp_path / "server" if (tmp_path / "server").mkdir() is None else tmp_path)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    monkeypatch.setattr(cub, "URLS", (source.as_uri(),))
    with pytest.raises(FileNotFoundError, match="--download"):
        find_cub(tmp_path / "data")
    monkeypatch.setattr(cub, "MD5", "0" * 32)
    with pytest.raises(OSError, match="MD5"):
        find_cub(tmp_path / "data", download_missing=True)
    monkeypatch.setattr(cub, "MD5", md5)
    assert (find_cub(tmp_path / "data", download_missing=True) / "images.txt").is_file()
    with pytest.raises(CubArchiveError, match="images.txt"):  # an archive of something else
        other = tmp_path / "other.tgz"
        with tarfile.open(other, "w:gz") as tar:
            tar.addfile(tarfile.TarInfo("README"), io.BytesIO(b""))
        (tmp_path / "x").mkdir()
        extract(other, tmp_path / "x")


def test_tiny_cub_run(tmp_path):
    _archive(tmp_path)
    config = TrainConfig.from_dict({"task": "cub", "model": "cnn", "data_dir": str(tmp_path), "epochs": 1,
                                    "batch_size": 2, "eval_batch_size": 2, "threads": 1, "downsample": False,
                                    "model_options": {"channels": [2, 2]},
                                    "task_options": {"size": 32, "resize": 32, "workers": 0}})
    summary = Trainer(config, tmp_path / "run", progress=False).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["test_images"] == 2 and 0 <= rows[-1]["test_accuracy"] <= 100


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "configs").glob("table3_*.json")))
def test_table3_configs_validate(path):
    from stnkit.experiments.train.config import load_config

    config = load_config(path).validate()
    assert config.task == "cub" and config.task_options["size"] in (224, 448)


def test_bad_sizes_are_named(tmp_path):
    folder = find_cub(_archive(tmp_path).parent)
    with pytest.raises(ValueError, match="size"):
        CubImages(folder, "train", size=0)
    with pytest.raises(ValueError, match="resize"):
        CubImages(folder, "train", size=32, resize=16)  # the crop must fit in the resized image
    with pytest.raises(ValueError, match="split"):
        CubImages(folder, "val", size=8)
