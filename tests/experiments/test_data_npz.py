"""Users' .npz files and fitting images onto a model's canvas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stnkit.experiments.data import fit_to_size, load_npz


def write(tmp_path, name="data.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("shape", [(4, 28, 28), (4, 2, 42, 42)])
def test_loads_images_as_unit_floats_with_a_channel_axis(tmp_path, shape):
    images = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    labels = np.array([0, 3, 9, 18], dtype=np.int32)
    x, y = load_npz(write(tmp_path, images=images, labels=labels))
    expected = images.reshape(4, -1, *shape[-2:]).astype(np.float32) / 255
    assert x.dtype == torch.float32 and x.shape == expected.shape and np.allclose(x.numpy(), expected)
    assert y.dtype == torch.int64 and y.tolist() == [0, 3, 9, 18]


@pytest.mark.parametrize("arrays, match", [
    ({"labels": np.zeros(2, np.int64)}, "missing array\\(s\\) 'images'"),
    ({"x": np.zeros((2, 28, 28), np.uint8)}, "missing array\\(s\\) 'images', 'labels'.*found 'x'"),
    ({"images": np.zeros((2, 28, 28), np.float32), "labels": np.zeros(2, np.int64)}, "'images' must be uint8.*float32"),
    ({"images": np.zeros((2, 784), np.uint8), "labels": np.zeros(2, np.int64)}, "'images' must be \\(N, H, W\\)"),
    ({"images": np.zeros((2, 28, 28), np.uint8), "labels": np.zeros(2, np.float64)}, "'labels' must be a 1-D integer"),
    ({"images": np.zeros((2, 28, 28), np.uint8), "labels": np.zeros((2, 1), np.int64)}, "'labels' must be a 1-D"),
    ({"images": np.zeros((3, 28, 28), np.uint8), "labels": np.zeros(2, np.int64)}, "3 images but 2 labels"),
    ({"images": np.zeros((2, 28, 28), np.uint8), "labels": np.array([0, -1])}, "labels must be >= 0"),
])
def test_bad_files_give_clear_errors(tmp_path, arrays, match):
    with pytest.raises(ValueError, match=match):
        load_npz(write(tmp_path, **arrays))


def test_label_range_missing_file_and_non_npz(tmp_path):
    path = write(tmp_path, images=np.zeros((2, 28, 28), np.uint8), labels=np.array([1, 10]))
    assert load_npz(path)[1].tolist() == [1, 10]
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\].*found 10"):
        load_npz(path, num_classes=10)
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_npz(tmp_path / "absent.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.npz"):
        load_npz(tmp_path / "junk.npz")
    np.save(tmp_path / "single.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy"):
        load_npz(tmp_path / "single.npy")
    np.savez(tmp_path / "obj.npz", images=np.array([None, 1], dtype=object), labels=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="obj.npz"):
        load_npz(tmp_path / "obj.npz")


def test_fit_to_size_centres_the_image():
    x = torch.rand(3, 1, 28, 28)
    out = fit_to_size(x, (42, 42), 1)
    assert out.shape == (3, 1, 42, 42)
    assert torch.equal(out[:, :, 7:35, 7:35], x) and out.sum() == pytest.approx(x.sum().item(), rel=1e-6)
    odd = fit_to_size(torch.ones(1, 2, 5, 4), (8, 9), 2)
    assert odd[0, 0].nonzero().min(0).values.tolist() == [1, 2] and odd[0, 0].sum() == 20
    assert torch.equal(fit_to_size(x, (28, 28), 1), x)


def test_fit_to_size_errors_say_what_is_needed():
    with pytest.raises(ValueError, match="at most 42x42 pixels.*got 60x60"):
        fit_to_size(torch.zeros(1, 1, 60, 60), (42, 42), 1)
    with pytest.raises(ValueError, match="expects 2 channel\\(s\\).*got 1"):
        fit_to_size(torch.zeros(1, 1, 28, 28), (42, 42), 2)
    with pytest.raises(TypeError, match="floating-point"):
        fit_to_size(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), (42, 42), 1)
    with pytest.raises(ValueError, match="size"):
        fit_to_size(torch.zeros(1, 1, 28, 28), (42,), 1)
