"""Datasets: Fashion-MNIST IDX counts, image folders with broken files, ImageFolder class indices,
CIFAR pickles read safely, the sample photos."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from case_saliency.data import SAMPLE_PHOTOS, open_dataset, read_idx
from case_saliency.data.fashion_mnist import DEFAULT_ROOT, FashionMNIST
from needs import needs_fashion_mnist

needs_fashion = needs_fashion_mnist


@needs_fashion
@pytest.mark.parametrize("split, total, per_class", [("train", 60000, 6000), ("test", 10000, 1000)])
def test_fashion_mnist_counts(split, total, per_class):
    data = open_dataset(f"fashion-mnist:{split}")
    assert len(data) == total and data.images.shape == (total, 28, 28) and data.images.dtype == np.uint8
    assert np.bincount(data.labels, minlength=10).tolist() == [per_class] * 10
    image, label, image_id = data[5]
    assert image.mode == "L" and image.size == (28, 28) and image_id == f"{split}:5"
    assert label == int(data.labels[5]) and data.class_names[9] == "Ankle boot"
    identity = data.identity()
    assert identity["count"] == total and len(identity["hash"]) == 64


@needs_fashion
def test_fashion_mnist_root_override_and_corrupt_files(tmp_path, monkeypatch):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(DEFAULT_ROOT / name, tmp_path / name)
    monkeypatch.setenv("CASE_SALIENCY_FASHION_MNIST", str(tmp_path))
    assert FashionMNIST("test").root == str(tmp_path) and len(FashionMNIST("test")) == 10000
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        FashionMNIST("train")  # the training files are not in the override folder
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "rb") as handle:
        raw = handle.read()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(raw[:-10])  # plain and truncated
    with pytest.raises(ValueError, match="truncated or corrupt"):
        FashionMNIST("test", root=tmp_path)
    (tmp_path / "bad").write_bytes(b"\x12\x34\x56\x78")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def _save(path, array, mode=None, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, format=fmt)


def test_folder_any_nesting_converts_and_skips_broken_files(tmp_path):
    rng = np.random.default_rng(0)
    _save(tmp_path / "a.png", rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    _save(tmp_path / "deep" / "er" / "gray.png", rng.integers(0, 255, (20, 30), dtype=np.uint8))
    rgba = np.zeros((10, 10, 4), np.uint8)  # transparent: becomes white
    _save(tmp_path / "deep" / "rgba.png", rgba)
    _save(tmp_path / "photo.JPG", rng.integers(0, 255, (40, 40, 3), dtype=np.uint8), fmt="JPEG")
    (tmp_path / "garbage.jpg").write_bytes(b"this is not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    good_jpeg = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good_jpeg, format="JPEG")
    (tmp_path / "sub" / "truncated.jpg").parent.mkdir()
    (tmp_path / "sub" / "truncated.jpg").write_bytes(good_jpeg.getvalue()[:300])
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    with pytest.warns(UserWarning, match=r"skipped 3 unreadable image file\(s\)") as caught:
        data = open_dataset(f"folder:{tmp_path}")
    message = str(caught[0].message)
    assert "garbage.jpg" in message and "empty.png" in message and "truncated.jpg" in message
    ids = [data[i][2] for i in range(len(data))]
    assert ids == ["a.png", "deep/er/gray.png", "deep/rgba.png", "photo.JPG"]
    modes = {data[i][2]: data[i][0].mode for i in range(len(data))}
    assert modes == {"a.png": "RGB", "deep/er/gray.png": "L", "deep/rgba.png": "RGB", "photo.JPG": "RGB"}
    assert np.asarray(data[2][0]).min() == 255  # transparent composited on white
    assert all(data[i][1] == -1 for i in range(len(data))) and data.class_names is None


def test_empty_sources_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no image files"):
        open_dataset(f"folder:{tmp_path}")
    (tmp_path / "x.png").write_bytes(b"broken")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="none of the 1 image files"):
            open_dataset(f"folder:{tmp_path}")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(ValueError, match="unknown dataset spec"):
        open_dataset("mnist")
    with pytest.raises(ValueError, match="unknown sample photo"):
        open_dataset("samples:skimage/lena")


def test_imagefolder_with_imagenet_class_index(tmp_path):
    rng = np.random.default_rng(1)
    # ImageNet validation layout: wnid folders; LOC_synset_mapping.txt gives the class order.
    (tmp_path / "LOC_synset_mapping.txt").write_text(
        "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\nn01484850 great white shark\n")
    for wnid, count in (("n01484850", 2), ("n01440764", 1)):
        for i in range(count):
            _save(tmp_path / wnid / f"ILSVRC2012_val_{wnid}_{i}.JPEG",
                  rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), fmt="JPEG")
    data = open_dataset(f"imagefolder:{tmp_path}")
    assert data.class_names == ["tench", "goldfish", "great white shark"]
    assert sorted((data[i][2].split("/")[0], data[i][1]) for i in range(len(data))) == [
        ("n01440764", 0), ("n01484850", 2), ("n01484850", 2)]
    # Without an index file: sorted folder names (torchvision's ImageFolder order).
    (tmp_path / "LOC_synset_mapping.txt").unlink()
    plain = open_dataset(f"imagefolder:{tmp_path}")
    assert plain.class_names == ["n01440764", "n01484850"] and sorted(plain.labels) == [0, 1, 1]
    index = tmp_path.parent / "index.json"
    index.write_text('{"0": ["n01440764", "tench"]}')
    with pytest.raises(ValueError, match="not in the class-index file"):
        open_dataset(f"imagefolder:{tmp_path}", class_index=index)


def _dump(obj, path):
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)  # the original CIFAR files are protocol-2 pickles


def _cifar_batch(rng, n, label_key, classes):
    return {b"batch_label": b"testing", label_key: [int(v) for v in rng.integers(0, classes, n)],
            b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_cifar_python_format(tmp_path, variant):
    rng = np.random.default_rng(2)
    if variant == "cifar10":
        folder = tmp_path / "cifar-10-batches-py"
        folder.mkdir()
        for i in range(1, 6):
            _dump(_cifar_batch(rng, 4, b"labels", 10), folder / f"data_batch_{i}")
        test = _cifar_batch(rng, 3, b"labels", 10)
        _dump(test, folder / "test_batch")
        _dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, folder / "batches.meta")
    else:
        folder = tmp_path / "cifar-100-python"
        folder.mkdir()
        _dump(_cifar_batch(rng, 5, b"fine_labels", 100), folder / "train")
        test = _cifar_batch(rng, 3, b"fine_labels", 100)
        _dump(test, folder / "test")
        _dump({b"fine_label_names": [f"f{i}" for i in range(100)]}, folder / "meta")
    data = open_dataset(f"{variant}:{tmp_path}")  # the parent folder is accepted too
    assert data.name == f"{variant}:test" and len(data) == 3 and len(data.class_names) in (10, 100)
    image, label, image_id = data[1]
    assert image.mode == "RGB" and image.size == (32, 32) and image_id == "test:1"
    pixels = np.asarray(image)
    row = test[b"data"][1]
    assert pixels[0, 0].tolist() == [row[0], row[1024], row[2048]]  # planes R, G, B in row-major order
    assert label == (test[b"labels"] if variant == "cifar10" else test[b"fine_labels"])[1]
    train = open_dataset(f"{variant}:{folder}:train")
    assert len(train) == (20 if variant == "cifar10" else 5)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/case_saliency_pwned_by_test",))


def test_cifar_pickle_with_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    marker = "/tmp/case_saliency_pwned_by_test"
    if os.path.exists(marker):
        os.unlink(marker)
    _dump({b"data": _Exploit(), b"labels": [0]}, folder / "test_batch")
    _dump({b"label_names": [b"a"]}, folder / "batches.meta")
    with pytest.raises(ValueError, match="refusing to load (posix|os).system"):
        open_dataset(f"cifar10:{folder}")
    assert not os.path.exists(marker)
    with pytest.raises(FileNotFoundError, match="missing"):
        open_dataset(f"cifar100:{folder}")


def test_sample_photos_offline():
    data = open_dataset("samples")
    assert len(data) == len(SAMPLE_PHOTOS) == 14
    seen = set()
    for i in range(len(data)):
        image, label, image_id = data[i]
        assert image.mode in ("RGB", "L") and min(image.size) >= 100 and label == -1
        seen.add(image_id)
    assert len(seen) == 14 and "sklearn/china" in seen and data[0][2] == "skimage/chelsea"
    assert open_dataset("samples:skimage/coffee,sklearn/flower").ids == ["skimage/coffee", "sklearn/flower"]
