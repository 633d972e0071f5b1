"""File-based data through torch.utils.data: order and augmentation determinism, workers, rank split,
mid-epoch resume (bit for bit through the trainer) and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

from stnkit.experiments.data.loading import (CenterCrop, ImageFiles, LoadedData, RandomCrop, batches_from,
                                             configure_loading)
from stnkit.experiments.tasks import Metric, Task
from stnkit.experiments.tasks.base import TASKS
from stnkit.experiments.tasks.digits import DigitTask
from stnkit.experiments.train import TrainConfig, Trainer, load_checkpoint, train

N = 11


def _indexed(n: int = N, size: int = 6) -> TensorDataset:
    """Sample i: an image whose pixels are i*100 + 0..size*size-1 (every crop tells where it came from),
    and its index as the target."""
    images = torch.arange(n * size * size, dtype=torch.float32).reshape(n, 1, size, size)
    images += torch.arange(n).view(n, 1, 1, 1) * (100 - size * size)
    return TensorDataset(images, torch.arange(n))


def _flat(batches) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(batches)
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def _windows(image: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Every size x size crop of image (C, H, W), flipped and not (the reference for RandomCrop)."""
    h, w = image.shape[-2:]
    crops = [image[..., t:t + size, s:s + size] for t in range(h - size + 1) for s in range(w - size + 1)]
    return crops + [c.flip(-1) for c in crops]


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    data = LoadedData(_indexed(), seed=5)
    orders = {(seed, epoch): _flat(LoadedData(_indexed(), seed=seed).batches(epoch, 4))[1]
              for seed in (5, 6) for epoch in (0, 1)}
    for order in orders.values():
        assert sorted(order.tolist()) == list(range(N))  # every sample once
    assert torch.equal(_flat(data.batches(0, 4))[1], orders[5, 0])  # same (seed, epoch): same order
    assert not torch.equal(orders[5, 0], orders[5, 1]) and not torch.equal(orders[5, 0], orders[6, 0])
    unshuffled = LoadedData(_indexed(), seed=5, shuffle=False)
    assert _flat(unshuffled.batches(3, 4))[1].tolist() == list(range(N))


def test_a_samples_augmentation_depends_on_seed_epoch_and_index_only():
    source = _indexed()
    data = LoadedData(source, augment=RandomCrop((4, 4), flip=0.5), seed=1)

    def by_index(batches):
        x, y = _flat(batches)
        return {int(i): img for img, i in zip(x, y)}

    seen = by_index(data.batches(2, 3))
    assert seen.keys() == set(range(N))
    for index, crop in seen.items():  # a real crop (or mirrored crop) of that sample's image
        assert any(torch.equal(crop, window) for window in _windows(source[index][0], 4)), index
    for other in (by_index(data.batches(2, 8)), by_index(data.batches(2, 3, start=1))):
        for index, crop in other.items():  # other batch sizes, a resumed start: the same draws
            assert torch.equal(crop, seen[index])
    again = by_index(data.batches(3, 3))
    assert any(not torch.equal(again[i], seen[i]) for i in range(N))  # a new epoch draws afresh
    flips = [not any(torch.equal(seen[i], w) for w in _windows(source[i][0], 4)[:9]) for i in range(N)]
    assert 0 < sum(flips) < N  # flip=0.5 flips some samples, not all


def _write_pngs(folder, count: int, size: int = 30, seed: int = 0) -> tuple[list, torch.Tensor, np.ndarray]:
    """count grayscale PNGs of 3 classes (a bright bar whose row band is the class), their labels, pixels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = torch.arange(count) % 3
    pixels = rng.integers(0, 60, size=(count, size, size), dtype=np.uint8)
    paths = []
    for i, label in enumerate(labels.tolist()):
        band = slice(3 + 8 * label, 9 + 8 * label)
        pixels[i, band, 4:26] = 255
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(pixels[i]).save(paths[-1])
    return paths, labels, pixels


def test_image_files_decode_the_pixels_written(tmp_path):
    paths, labels, pixels = _write_pngs(tmp_path, 4)
    files = ImageFiles(paths, labels, mode="L")
    image, label = files[2]
    assert image.dtype == torch.float32 and image.shape == (1, 30, 30) and int(label) == int(labels[2])
    assert torch.equal(image, torch.from_numpy(pixels[2]).float().unsqueeze(0) / 255)  # PNG is lossless
    assert ImageFiles(paths, labels, mode="RGB")[0][0].shape == (3, 30, 30)
    assert ImageFiles(paths, labels, mode="L", size=(10, 12))[0][0].shape == (1, 10, 12)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(OSError, match="broken.png"):
        ImageFiles([tmp_path / "broken.png"], [0])[0]
    with pytest.raises(ValueError, match="targets"):
        ImageFiles(paths, labels[:2])


def test_workers_give_the_same_batches_as_the_main_process(tmp_path):
    paths, labels, _ = _write_pngs(tmp_path, 10)
    data = LoadedData(ImageFiles(paths, labels, mode="L"), augment=RandomCrop((24, 24), flip=0.5), seed=2)
    alone = list(data.batches(1, 4))
    configure_loading(data, num_workers=2, pin_memory=False)
    assert data.num_workers == 2
    with_workers = list(data.batches(1, 4))
    assert len(alone) == len(with_workers) == 3
    for a, b in zip(alone, with_workers):
        assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_two_ranks_cover_the_epoch_once_and_rebuild_the_global_batches():
    data = LoadedData(_indexed(), seed=3)
    single = [y for _, y in data.batches(0, 4)]
    ranks = [[y for _, y in data.batches(0, 4, rank=r, world_size=2)] for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 3  # same step count on every rank
    for b, whole in enumerate(single):  # rank 0's chunk then rank 1's is the single-process batch
        assert torch.equal(torch.cat([ranks[0][b], ranks[1][b]]), whole)
    assert sorted(torch.cat(ranks[0] + ranks[1]).tolist()) == list(range(N))
    # a last batch of one sample: rank 1 gets an empty chunk shaped like the others
    last = [list(data.batches(0, 10, rank=r, world_size=2))[-1] for r in range(2)]
    assert [len(b[1]) for b in last] == [1, 0] and last[1][0].shape == (0, 1, 6, 6)
    with pytest.raises(ValueError, match="batch_size"):
        list(data.batches(0, 5, rank=0, world_size=2))
    with pytest.raises(ValueError, match="rank"):
        list(data.batches(0, 4, rank=2, world_size=2))


class _Counting(Dataset):
    def __init__(self, base: Dataset) -> None:
        self.base, self.reads = base, []

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        self.reads.append(index)
        return self.base[index]


def test_start_skips_batches_without_loading_them():
    counting = _Counting(_indexed())
    data = LoadedData(counting, seed=4)
    full = [y for _, y in data.batches(0, 4)]
    counting.reads.clear()
    tail = [y for _, y in batches_from(data, 0, 4, start=2)]
    assert len(tail) == 1 and torch.equal(tail[0], full[2])
    assert sorted(counting.reads) == sorted(full[2].tolist())  # batches 0 and 1 were never read

    class Plain:  # data without `start` (the digit tasks' fast path): drawn and dropped
        def batches(self, epoch, batch_size, rank=0, world_size=1):
            return iter([("a",), ("b",), ("c",)])

    assert list(batches_from(Plain(), 0, 4, start=1)) == [("b",), ("c",)]
    configure_loading(Plain(), num_workers=3, pin_memory=True)  # left alone, no error


def test_center_crop():
    image = torch.arange(30.0).reshape(1, 5, 6)
    assert torch.equal(CenterCrop((3, 2))((image, 7))[0], image[:, 1:4, 2:4])
    with pytest.raises(ValueError, match="size"):
        RandomCrop((6, 6))((image, 7), torch.Generator())


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="num_workers"):
        TrainConfig(num_workers=-1).validate()
    with pytest.raises(ValueError, match="checkpoint_every"):
        TrainConfig(checkpoint_every=0).validate()
    with pytest.raises(ValueError, match="num_workers"):
        LoadedData(_indexed(), num_workers=-1)
    with pytest.raises(ValueError, match="num_workers"):
        configure_loading(object(), num_workers=-2, pin_memory=False)
    with pytest.raises(ValueError, match="flip"):
        RandomCrop((2, 2), flip=1.5)
    with pytest.raises(ValueError, match="size"):
        RandomCrop((2, 0))
    with pytest.raises(TypeError, match="augment"):
        LoadedData(_indexed(), augment=3)
    with pytest.raises(ValueError, match="start"):
        list(LoadedData(_indexed()).batches(0, 4, start=-1))


# -- through the trainer: a tiny task of PNG files -----------------------------------------------------
class _PngTask(Task):
    """Three classes of 30x30 PNG files, random 28x28 crops and flips; scored on centre crops."""

    name = "test-png"
    metrics = (Metric("error"),)
    models = ("st-cnn",)
    step, train_metrics, evaluate = DigitTask.step, DigitTask.train_metrics, DigitTask.evaluate

    @property
    def in_shape(self):
        return (1, 28, 28)

    @property
    def num_outputs(self):
        return 3

    def _files(self, split: str) -> ImageFiles:
        paths = sorted((Path(self.data_dir) / split).glob("*.png"))
        return ImageFiles(paths, torch.tensor([int(p.stem) % 3 for p in paths]), mode="L")

    def train_data(self):
        return LoadedData(self._files("train"), augment=RandomCrop((28, 28), flip=0.5), seed=self.seed)

    def eval_data(self):
        return LoadedData(self._files("test"), augment=CenterCrop((28, 28)), shuffle=False)


class _Stop:
    """Raises ``error`` after optimizer step ``at`` (KeyboardInterrupt: Ctrl-C; another error: a crash)."""

    def __init__(self, at: int, error: type[BaseException] = KeyboardInterrupt) -> None:
        self.at, self.error = at, error

    def on_step_end(self, model, iteration, loss):
        if iteration == self.at:
            raise self.error


def _assert_same_weights(a: dict, b: dict) -> None:
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mid_epoch_resume_of_file_data_is_bit_identical(tmp_path, monkeypatch):
    _write_pngs(tmp_path / "png" / "train", 24, seed=1)
    _write_pngs(tmp_path / "png" / "test", 6, seed=2)
    monkeypatch.setitem(TASKS._items, _PngTask.name, _PngTask)
    config = TrainConfig(model="st-cnn", task=_PngTask.name, data_dir=str(tmp_path / "png"), epochs=3, batch_size=8,
                         momentum=0.9, lr=0.05, seed=3, eval_batch_size=6, threads=1,
                         model_options={"channels": [4, 8]})
    full = train(config, tmp_path / "full", progress=False)
    reference = load_checkpoint(tmp_path / "full")

    # Ctrl-C after step 5 (3 steps per epoch: the middle of epoch 2), resumed with 2 workers
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "cut", callbacks=[_Stop(5)], progress=False)
    saved = load_checkpoint(tmp_path / "cut")
    assert (saved["epoch"], saved["batch"]) == (1, 2)
    with_workers = Trainer(config.replace(num_workers=2), tmp_path / "other", progress=False)
    for data in (with_workers.train_set, with_workers.test_set):  # the trainer passes its settings on
        assert (data.num_workers, data.pin_memory) == (2, False)  # pinned on CUDA only
    resumed = train(config.replace(num_workers=2), tmp_path / "cut", resume=True, progress=False)
    _assert_same_weights(reference, load_checkpoint(tmp_path / "cut"))
    assert resumed["iterations"] == full["iterations"] == 9 and resumed["test_error"] == full["test_error"]

    # a crash after step 5 saves nothing; checkpoint_every=2 left one at step 4 (epoch 2, batch 1)
    every = config.replace(checkpoint_every=2)
    with pytest.raises(RuntimeError):
        train(every, tmp_path / "crash", callbacks=[_Stop(5, RuntimeError)], progress=False)
    saved = load_checkpoint(tmp_path / "crash")
    assert (saved["scheduler"]["iteration"], saved["epoch"], saved["batch"]) == (4, 1, 1)
    train(every, tmp_path / "crash", resume=True, progress=False)
    _assert_same_weights(reference, load_checkpoint(tmp_path / "crash"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_pinned_batches_on_cuda(tmp_path, monkeypatch):
    data = LoadedData(_indexed(), augment=RandomCrop((4, 4)), num_workers=1, pin_memory=True)
    assert all(t.is_pinned() for batch in data.batches(0, 4) for t in batch)
    _write_pngs(tmp_path / "png" / "train", 6)
    _write_pngs(tmp_path / "png" / "test", 3)
    monkeypatch.setitem(TASKS._items, _PngTask.name, _PngTask)
    trainer = Trainer(TrainConfig(model="st-cnn", task=_PngTask.name, data_dir=str(tmp_path / "png"), device="cuda"),
                      tmp_path / "run", progress=False)
    assert trainer.train_set.pin_memory and trainer.test_set.pin_memory
