"""DistortedDigits: determinism per (seed, epoch), a fixed test set, DDP rank chunks, limit."""

from __future__ import annotations

import pytest
import torch

from stnkit.experiments.data import Digits, DistortedDigits, get_distortion, list_datasets, list_distortions


def digits(n: int = 70, seed: int = 0) -> Digits:
    """Synthetic digits whose label is written in their pixels (value 10 * label + 30 everywhere)."""
    labels = torch.randint(10, (n,), generator=torch.Generator().manual_seed(seed))
    images = (10 * labels + 30).to(torch.uint8).view(n, 1, 1).expand(n, 28, 28).clone()
    return Digits(images, labels, source="synthetic")


def epoch(data: DistortedDigits, e: int, batch_size: int = 16, rank: int = 0, world_size: int = 1, **kw):
    return list(data.batches(e, batch_size, rank=rank, world_size=world_size, **kw))


def cat(batches):
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_list_datasets_is_the_distortions():
    assert list_datasets() == list_distortions()


@pytest.mark.parametrize("name", ["rts", "tc", "addition"])
def test_same_seed_same_tensors_new_epoch_new_draws(name):
    a = cat(epoch(DistortedDigits(name, "train", digits=digits(), seed=3), 0))
    b = cat(epoch(DistortedDigits(name, "train", digits=digits(), seed=3), 0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = cat(epoch(DistortedDigits(name, "train", digits=digits(), seed=3), 1))
    d = cat(epoch(DistortedDigits(name, "train", digits=digits(), seed=4), 0))
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], d[0])


def test_each_epoch_serves_every_sample_once_in_a_new_order():
    data = DistortedDigits("none", "train", digits=digits())
    x0, y0 = cat(epoch(data, 0))
    x1, y1 = cat(epoch(data, 1))
    # The label is readable from the pixels: images stay paired with their labels.
    assert torch.equal((x0[:, 0, 0, 0] * 255).round().long(), 10 * y0 + 30)
    assert torch.equal(y0.sort().values, data.digits.labels.sort().values)
    assert not torch.equal(y0, y1) and torch.equal(y0.sort().values, y1.sort().values)


def test_draws_do_not_depend_on_batch_size():
    data = DistortedDigits("rts", "train", digits=digits())
    a, b = cat(epoch(data, 2, batch_size=16)), cat(epoch(data, 2, batch_size=50))
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)  # BLAS may round differently per batch size
    assert torch.equal(a[1], b[1])


def test_test_set_is_fixed_in_order_and_independent_of_the_training_seed():
    a = DistortedDigits("rts", "test", digits=digits(), seed=0)
    b = DistortedDigits("rts", "test", digits=digits(), seed=99)
    xa, ya = cat(epoch(a, 0))
    xb, yb = cat(epoch(b, 5))
    assert torch.equal(xa, xb) and torch.equal(ya, a.digits.labels)  # in file order, no shuffle
    assert torch.equal(cat(epoch(a, 3))[0], xa)  # the same every epoch
    other = DistortedDigits("rts", "test", digits=digits(), test_seed=1)
    assert not torch.equal(cat(epoch(other, 0))[0], xa)
    train = cat(epoch(DistortedDigits("rts", "train", digits=digits(), seed=0), 0))[0]
    assert not torch.equal(train, xa)


@pytest.mark.parametrize("name, split, world_size", [("tc", "train", 2), ("tc", "train", 4), ("rts", "train", 2),
                                                     ("tc", "test", 4), ("rts", "test", 2)])
def test_rank_chunks_concatenate_to_the_single_process_batch(name, split, world_size):
    data = DistortedDigits(name, split, digits=digits(70))  # 70 = 4 * 16 + 6: a short last batch
    single = epoch(data, 1, batch_size=16)
    ranks = [epoch(data, 1, batch_size=16, rank=r, world_size=world_size) for r in range(world_size)]
    assert all(len(r) == len(single) == data.num_batches(16) == 5 for r in ranks)  # same step count on every rank
    for i, (x, y) in enumerate(single):
        parts = [ranks[r][i] for r in range(world_size)]
        torch.testing.assert_close(torch.cat([p[0] for p in parts]), x, atol=1e-5, rtol=0)  # BLAS rounding
        assert torch.equal(torch.cat([p[1] for p in parts]), y)
        if i < 4:
            assert all(p[0].shape[0] == 16 // world_size for p in parts)  # equal chunks of full batches


def test_drop_last_and_limit():
    data = DistortedDigits("r", "train", digits=digits(70))
    assert [x.shape[0] for x, _ in epoch(data, 0, drop_last=True)] == [16] * 4
    assert data.num_batches(16, drop_last=True) == 4
    small = DistortedDigits("r", "test", digits=digits(70), limit=20)
    assert len(small) == 20 and torch.equal(cat(epoch(small, 0))[1], digits(70).labels[:20])
    assert len(DistortedDigits("r", "test", digits=digits(5), limit=20)) == 5


def test_addition_pairs_and_labels():
    data = DistortedDigits("addition", "train", digits=digits(60), seed=1)
    assert (data.channels, data.size, data.num_classes) == (2, (42, 42), 19)
    x, y = cat(epoch(data, 0))
    # Each channel's digit is a constant 10 * label + 30; its brightest pixel reads the label back.
    first = ((x[:, 0].amax(dim=(1, 2)) * 255).round().long() - 30) // 10
    second = ((x[:, 1].amax(dim=(1, 2)) * 255).round().long() - 30) // 10
    assert torch.equal(y, first + second) and int(y.max()) <= 18
    assert torch.equal(second.bincount(minlength=10), data.digits.labels.bincount(minlength=10))  # a permutation


def test_real_sizes_and_embedded_default(monkeypatch, tmp_path):
    monkeypatch.delenv("STNKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("STNKIT_CACHE_DIR", str(tmp_path))
    data = DistortedDigits("rts", "test", limit=64)
    assert data.digits.embedded and len(data) == 64
    x, y = next(data.batches(0, 64))
    assert x.shape == (64, 1, 42, 42) and x.dtype == torch.float32 and y.dtype == torch.int64


def test_bad_arguments():
    data = DistortedDigits("r", "train", digits=digits(10))
    with pytest.raises(ValueError, match="rank"):
        epoch(data, 0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size: expected a multiple of world_size=4"):
        epoch(data, 0, batch_size=10, world_size=4)
    with pytest.raises(ValueError, match="epoch"):
        epoch(data, -1)
    with pytest.raises(ValueError, match="batch_size"):
        epoch(data, 0, batch_size=0)
    with pytest.raises(ValueError, match="limit"):
        DistortedDigits("r", "train", digits=digits(10), limit=0)
    with pytest.raises(ValueError, match="seed"):
        DistortedDigits("r", "train", digits=digits(10), seed=-1)
    with pytest.raises(ValueError, match="split"):
        DistortedDigits("r", "val", digits=digits(10))
    with pytest.raises(ValueError, match="unknown distortion"):
        DistortedDigits("rotated", "train", digits=digits(10))
    with pytest.raises(TypeError, match="distortion"):
        DistortedDigits(3, "train", digits=digits(10))
    assert DistortedDigits(get_distortion("r", angle=(0.0, 1.0)), "train", digits=digits(10)).size == (28, 28)
