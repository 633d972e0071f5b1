"""The ``parts`` task (two glyphs on a cluttered canvas): layout and labels by hand, determinism,
rank splits, and a tiny end-to-end run of the parallel-attention model."""

from __future__ import annotations

import json

import pytest
import torch

from stnkit.experiments.data.glyph_pairs import GLYPH, GlyphPairs
from stnkit.experiments.data.sources import Digits
from stnkit.experiments.tasks import get_task


def _digits(n: int = 20) -> Digits:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (n, 28, 28), generator=g).to(torch.uint8)  # no zero pixel: easy to find
    return Digits(images, torch.arange(n) % 10, "synthetic")


def test_glyphs_in_their_halves_and_label_reads_both():
    data = GlyphPairs("train", digits=_digits(), limit=12, patches=0, canvas=64)
    draw = data.draw(12, torch.Generator().manual_seed(1))
    x, y = data.render(draw)
    assert x.shape == (12, 1, 64, 64) and y.dtype == torch.int64
    for i in range(12):
        expected = torch.zeros(64, 64)
        for k in range(2):
            top, left = int(draw["y"][i, k]), int(draw["x"][i, k])
            assert (left + GLYPH <= 32) if k == 0 else (left >= 32)  # left glyph in the left half, right in the right
            expected[top:top + GLYPH, left:left + GLYPH] = data.images[draw["glyphs"][i, k]]
        torch.testing.assert_close(x[i, 0], expected)
        left, right = (int(data.digits.labels[draw["glyphs"][i, k]]) for k in range(2))
        assert int(y[i]) == left + (10 if right >= 5 else 0)


def test_clutter_is_cut_from_other_digits():
    data = GlyphPairs("train", digits=_digits(), limit=4, patches=3, patch_size=5, canvas=64)
    draw = data.draw(4, torch.Generator().manual_seed(2))
    draw["glyphs"] = torch.zeros(4, 2, dtype=torch.long)
    data.images[0] = 0  # blank glyphs: only the clutter shows
    x, _ = data.render(draw)
    i, k = 1, 2
    (cy, cx), (ay, ax) = draw["cut"][i, k].tolist(), draw["at"][i, k].tolist()
    piece = data.images[draw["sources"][i, k], cy:cy + 5, cx:cx + 5]
    assert (x[i, 0, ay:ay + 5, ax:ax + 5] >= piece).all()  # max-pasted: at least the piece everywhere
    assert int((x[i, 0] > 0).sum()) <= 3 * 25


def test_deterministic_and_independent_of_batching_and_ranks():
    data = GlyphPairs("train", digits=_digits(), limit=10, seed=5)
    one = torch.cat([x for x, _ in data.batches(0, 10)])
    assert torch.equal(one, torch.cat([x for x, _ in data.batches(0, 4)]))
    ranks = [list(data.batches(0, 4, rank=r, world_size=2)) for r in range(2)]
    joined = torch.cat([torch.cat([ranks[0][b][0], ranks[1][b][0]]) for b in range(len(ranks[0]))])
    assert torch.equal(one, joined)
    assert torch.equal(one, torch.cat([x for x, _ in GlyphPairs("train", digits=_digits(), limit=10, seed=5).batches(0, 3)]))
    assert not torch.equal(one, torch.cat([x for x, _ in data.batches(1, 10)]))
    test_a = GlyphPairs("test", digits=_digits(), limit=6, seed=1)
    test_b = GlyphPairs("test", digits=_digits(), limit=6, seed=2)
    assert torch.equal(next(test_a.batches(0, 6))[0], next(test_b.batches(3, 6))[0])  # fixed test set


def test_bad_arguments():
    with pytest.raises(ValueError, match="canvas"):
        GlyphPairs("train", digits=_digits(), canvas=40)
    with pytest.raises(ValueError, match="split"):
        GlyphPairs("val", digits=_digits())


def test_tiny_end_to_end_run(tmp_path, monkeypatch):
    from _synthetic_digits import write_synthetic_mnist

    from stnkit.experiments.train import TrainConfig, Trainer

    data_dir = write_synthetic_mnist(tmp_path / "digits", n_train=32, n_test=16)
    assert get_task("parts").recipe["model"] == "2xattn-cnn"
    config = TrainConfig.from_dict({**get_task("parts").recipe, "task": "parts", "data_dir": str(data_dir),
                                    "limit": 16, "test_limit": 8, "epochs": 1, "batch_size": 8, "threads": 1,
                                    "model_options": {"crop_size": [16, 16], "loc_size": [16, 16], "features": 4,
                                                      "backbone_options": {"width": 4, "blocks": [1]}}}).validate()
    trainer = Trainer(config, tmp_path / "run")
    trainer.fit()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["completed"] and summary["task"] == "parts" and 0 <= summary["test_error"] <= 100
