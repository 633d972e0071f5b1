"""Training animation: one GIF frame per epoch (also across a resume), files written every epoch,
the model's train/eval flags and weights left alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from stnkit.experiments.models import create_model
from stnkit.experiments.viz import TrainingAnimation, save_gif
from stnkit.experiments.viz.animation import FRAMES_DIR, GIF_NAME, LAST_FRAME_NAME

IN_SHAPE = (1, 20, 20)


def model_at(step: int) -> torch.nn.Module:
    """An ST-FCN whose transformer zooms and shifts a bit more at each 'epoch'."""
    torch.manual_seed(0)
    model = create_model("st-fcn", in_shape=IN_SHAPE, num_classes=10)
    with torch.no_grad():
        s = 1.0 - 0.1 * step
        model.spatial_transformers[0].regression.bias.copy_(torch.tensor([s, 0.05 * step, 0.05 * step, 0, s, 0]))
    return model


def images(n: int = 4) -> torch.Tensor:
    x = torch.zeros(n, *IN_SHAPE)
    for i in range(n):
        x[i, 0, 4 + i: 15, 6: 12 + i] = 1.0
    return x


def gif_frames(path) -> list[np.ndarray]:
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


def train(anim: TrainingAnimation, run_dir, epochs, model=None) -> None:
    """What the trainer does with a callback: start, one call per epoch, end."""
    model = model or model_at(0)
    anim.on_train_start(model, run_dir)
    for epoch in epochs:
        with torch.no_grad():  # 'training' moves the transformer
            model.load_state_dict(model_at(epoch).state_dict())
        anim.on_epoch_end(model, epoch, {"test_error": 10.0 / epoch}, run_dir)
        assert (run_dir / GIF_NAME).is_file() and (run_dir / LAST_FRAME_NAME).is_file()  # written every epoch
        assert len(gif_frames(run_dir / GIF_NAME)) == len([e for e in range(1, epoch + 1)])
    anim.on_train_end(model, run_dir)


def test_one_frame_per_epoch_and_last_png(tmp_path):
    train(TrainingAnimation(images()), tmp_path, range(1, 4))
    frames = gif_frames(tmp_path / GIF_NAME)
    assert len(frames) == 3
    assert all(f.shape == frames[0].shape for f in frames)
    assert frames[0].std() > 20  # not blank
    for a, b in zip(frames, frames[1:]):  # the transformer moved: every frame differs
        assert np.abs(a.astype(int) - b.astype(int)).sum() > 1000
    last = np.asarray(Image.open(tmp_path / LAST_FRAME_NAME).convert("RGB"))
    assert last.shape == frames[-1].shape
    assert np.abs(last.astype(int) - frames[-1].astype(int)).mean() < 8  # the GIF palette is approximate
    assert sorted(p.name for p in (tmp_path / FRAMES_DIR).iterdir()) == [
        "epoch_00001.gif", "epoch_00002.gif", "epoch_00003.gif"]


def test_resume_continues_without_duplicating_epochs(tmp_path):
    train(TrainingAnimation(images()), tmp_path, range(1, 4))
    first = gif_frames(tmp_path / GIF_NAME)
    # Interrupted after epoch 3's frame but resumed from the checkpoint of epoch 2: epoch 3 again.
    train(TrainingAnimation(images()), tmp_path, range(3, 6), model=model_at(2))
    frames = gif_frames(tmp_path / GIF_NAME)
    assert len(frames) == 5
    assert np.array_equal(frames[0], first[0]) and np.array_equal(frames[1], first[1])  # kept


def test_model_mode_and_weights_untouched(tmp_path):
    model = model_at(1)
    model.train()
    model.spatial_transformers[0].localisation.eval()  # a frozen part stays frozen
    before = {k: v.clone() for k, v in model.state_dict().items()}
    anim = TrainingAnimation(images())
    anim.on_train_start(model, tmp_path)
    anim.on_epoch_end(model, 1, {}, tmp_path)
    assert model.training and model.spatial_transformers[0].regression.training
    assert not model.spatial_transformers[0].localisation.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_without_transformer_writes_nothing(tmp_path):
    model = create_model("fcn", in_shape=IN_SHAPE, num_classes=10)
    anim = TrainingAnimation(images())
    anim.on_train_start(model, tmp_path)
    anim.on_epoch_end(model, 1, {}, tmp_path)
    anim.on_train_end(model, tmp_path)
    assert not (tmp_path / GIF_NAME).exists()


def test_bad_images():
    with pytest.raises(ValueError, match="images"):
        TrainingAnimation(torch.zeros(3, 20, 20))
    with pytest.raises(TypeError, match="images"):
        TrainingAnimation(torch.zeros(3, 1, 20, 20, dtype=torch.uint8))
    anim = TrainingAnimation(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="images"):
        anim.on_train_start(model_at(0), None)


def test_save_gif(tmp_path):
    frames = [np.full((8, 10, 3), v, dtype=np.uint8) for v in (0, 120, 255)]
    path = save_gif(frames, tmp_path / "a.gif")
    got = gif_frames(path)
    assert len(got) == 3 and got[0].shape == (8, 10, 3)
    assert [int(f.mean()) for f in got] == [0, 120, 255]
    with pytest.raises(ValueError, match="frames"):
        save_gif([], tmp_path / "b.gif")
    with pytest.raises(ValueError, match="frames"):
        save_gif([frames[0], np.zeros((9, 10, 3), np.uint8)], tmp_path / "c.gif")


def test_save_gif_keeps_identical_frames_and_durations(tmp_path):
    frame = np.zeros((6, 7, 3), dtype=np.uint8)
    frame[2, 3] = (255, 0, 0)
    path = save_gif([frame, frame, frame], tmp_path / "same.gif", duration_ms=120, last_ms=900)
    with Image.open(path) as im:
        assert im.n_frames == 3  # Pillow's own writer would merge these into one
        durations = []
        for f in ImageSequence.Iterator(im):
            durations.append(f.info["duration"])
            rgb = np.asarray(f.convert("RGB"))
            assert tuple(rgb[2, 3]) == (255, 0, 0) and rgb.sum() == 255
    assert durations == [120, 120, 900]


def test_gif_frames_from_interlaced_and_global_palette_files_reassemble(tmp_path):
    # parse_frame reads what other writers produce: Pillow's interlaced default here.
    import io

    from stnkit.experiments.viz._gif import assemble, parse_frame

    g = np.random.default_rng(0)
    arrays = [g.integers(0, 256, (24, 30, 3), dtype=np.uint8) // 64 * 64 for _ in range(2)]
    encoded = []
    for a in arrays:
        buffer = io.BytesIO()
        Image.fromarray(a).save(buffer, format="GIF", interlace=True)
        encoded.append(parse_frame(buffer.getvalue()))
    assert encoded[0].interlaced
    (tmp_path / "i.gif").write_bytes(assemble(encoded, [100, 100]))
    for got, want in zip(gif_frames(tmp_path / "i.gif"), arrays):
        assert np.array_equal(got, want)  # 64 colours fit the palette exactly
    with pytest.raises(ValueError, match="gif"):
        parse_frame(b"\x89PNG\r\n\x1a\n" + bytes(20))


def test_volume_transformer_is_skipped_not_fatal(tmp_path):
    import stnkit
    from stnkit.experiments.viz import apply_transformers

    st = stnkit.SpatialTransformer(stnkit.fc_localisation((1, 4, 6, 6), hidden=(4,)), "affine3d")
    with pytest.raises(ValueError, match="2-D"):
        apply_transformers(st, torch.zeros(1, 1, 6, 6))
    anim = TrainingAnimation(torch.zeros(2, 1, 6, 6))
    anim.on_train_start(st, tmp_path)
    anim.on_epoch_end(st, 1, {}, tmp_path)  # a training run must not die for its animation
    assert not (tmp_path / GIF_NAME).exists()


def test_images_follow_the_model_dtype(tmp_path):
    model = model_at(1).double()
    anim = TrainingAnimation(images())  # float32 images, float64 model
    anim.on_train_start(model, tmp_path)
    anim.on_epoch_end(model, 1, {}, tmp_path)
    assert gif_frames(tmp_path / GIF_NAME)
