"""Each dataset plugin loads real files in torchvision's on-disk format.

MNIST comes from ../shared/data (the real thing). For the others we write small files in
torchvision 0.29's exact layouts (idx-ubyte under <root>/<Folder>/raw/, SVHN's .mat, CIFAR's
pickled batches), so the plugin goes through torchvision's real readers.
"""

from __future__ import annotations

import copy
import pickle
import struct

import numpy as np
import pytest
import torch

from odnbench.data import Split, carve_validation
from odnbench.errors import DataNotFoundError

# ----------------------------------------------------------------------------- file writers


def write_idx(path, array: np.ndarray) -> None:
    """idx-ubyte (big-endian dims, type 0x08 = uint8), the format MNIST-family files use."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.tobytes())


def fake_images(rng, n, shape):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write_mnist_like(root, folder, n_train, n_test, labels_from=0, n_classes=10, prefix=None, seed=0):
    """torchvision reads <root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (uncompressed:
    its existence check strips the .gz; only download() unpacks archives). EMNIST uses a prefix."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    data = {}
    for part, n in (("train", n_train), ("test", n_test)):
        images = fake_images(rng, n, (28, 28))
        labels = (np.arange(n) % n_classes + labels_from).astype(np.uint8)  # every class present
        rng.shuffle(labels)
        stem = f"{prefix}-{part}" if prefix else ("train" if part == "train" else "t10k")
        write_idx(raw / f"{stem}-images-idx3-ubyte", images)
        write_idx(raw / f"{stem}-labels-idx1-ubyte", labels)
        data[part] = (images, labels)
    return data


def shrunk(reg, name, val_size):
    """A copy of the registered dataset with a small validation carve-out (the registry's own
    instance stays untouched). Hand-made files are small, so they cannot have the published files'
    sizes and checksums: the copy skips those checks (tests/test_hostile.py covers them on real
    MNIST); the readers stay torchvision's."""
    ds = copy.copy(reg.dataset(name))
    ds.val_size = val_size
    ds.files = lambda train: []
    return ds


def check_splits(splits, *, channels, size, num_classes, n_train, n_val, n_test):
    assert splits.sizes() == {"train": n_train, "val": n_val, "test": n_test}
    info = splits.info
    assert (info.channels, info.image_size, info.num_classes) == (channels, size, num_classes)
    for part in (splits.train, splits.val, splits.test):
        assert part.x.dtype == torch.float32 and part.y.dtype == torch.int64
        assert tuple(part.x.shape[1:]) == (channels, size, size)
        assert int(part.y.min()) >= 0 and int(part.y.max()) < num_classes


def denormalise(x, info):
    """Back to the 0..255 integers torchvision read from disk (checks the plugin kept the pixels)."""
    m = torch.tensor(info.mean).view(1, -1, 1, 1)
    s = torch.tensor(info.std).view(1, -1, 1, 1)
    return torch.round((x * s + m) * 255).to(torch.int64)


# ----------------------------------------------------------------------------- real MNIST


def test_mnist_real_files(reg, shared_data):
    splits = reg.dataset("mnist").load(shared_data, download=False, seed=0)
    check_splits(splits, channels=1, size=28, num_classes=10, n_train=50_000, n_val=10_000, n_test=10_000)
    assert set(splits.train.y.unique().tolist()) == set(range(10))
    # Normalised with MNIST's own mean/std: the training pixels come out centred and unit-scaled.
    assert abs(splits.train.x.mean().item()) < 0.02
    assert abs(splits.train.x.std().item() - 1.0) < 0.05
    # The official test split is untouched: its label counts are MNIST's published ones.
    assert torch.bincount(splits.test.y, minlength=10).tolist() == [980, 1135, 1032, 1010, 982,
                                                                     892, 958, 1028, 974, 1009]


# ----------------------------------------------------------------------------- fake files, real readers


def test_fashion_mnist_idx_files(reg, tmp_path):
    written = write_mnist_like(tmp_path, "FashionMNIST", 60, 20)
    splits = shrunk(reg, "fashion-mnist", 10).load(tmp_path, download=False, seed=0)
    check_splits(splits, channels=1, size=28, num_classes=10, n_train=50, n_val=10, n_test=20)
    # The test split is the file's test images, in order, with the plugin's normalisation undone.
    images, labels = written["test"]
    assert torch.equal(denormalise(splits.test.x, splits.info)[:, 0], torch.from_numpy(images).long())
    assert torch.equal(splits.test.y, torch.from_numpy(labels).long())
    assert splits.info.mean == (0.2860,) and splits.info.std == (0.3530,)


def test_emnist_letters_labels_start_at_zero(reg, tmp_path):
    # EMNIST letters files label a..z as 1..26 (0 is "N/A"); the plugin must give 0..25.
    write_mnist_like(tmp_path, "EMNIST", 78, 52, labels_from=1, n_classes=26, prefix="emnist-letters")
    splits = shrunk(reg, "emnist", 26).load(tmp_path, download=False, seed=0)
    check_splits(splits, channels=1, size=28, num_classes=26, n_train=52, n_val=26, n_test=52)
    assert sorted(splits.test.y.unique().tolist()) == list(range(26))
    all_train = torch.cat([splits.train.y, splits.val.y])
    assert sorted(all_train.unique().tolist()) == list(range(26))


@pytest.fixture
def md5_exists_only(monkeypatch):
    """SVHN and CIFAR-10 compare each file's md5 with the official one, which no hand-made file can
    match. Only that check is replaced (by "the file exists"); the readers stay torchvision's."""
    import os

    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.svhn as svhn

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(svhn, "check_integrity", exists)
    monkeypatch.setattr(cifar, "check_integrity", exists)


def test_svhn_mat_files(reg, tmp_path, md5_exists_only):
    from scipy.io import savemat

    rng = np.random.default_rng(1)
    written = {}
    for split, n in (("train", 40), ("test", 15)):
        x = fake_images(rng, n, (32, 32, 3)).transpose(1, 2, 3, 0)  # torchvision's layout: 32 x 32 x 3 x N
        digits = np.arange(n) % 10
        y = np.where(digits == 0, 10, digits).reshape(n, 1).astype(np.uint8)  # SVHN labels digit 0 as 10
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
        written[split] = (x, digits)
    splits = shrunk(reg, "svhn", 8).load(tmp_path, download=False, seed=0)
    check_splits(splits, channels=3, size=32, num_classes=10, n_train=32, n_val=8, n_test=15)
    x, digits = written["test"]
    assert torch.equal(splits.test.y, torch.from_numpy(digits).long())  # 10 became 0
    # N x C x H x W with the right pixel at each place (X[h, w, c, n]).
    assert torch.equal(denormalise(splits.test.x, splits.info), torch.from_numpy(x.transpose(3, 2, 0, 1)).long())


def test_cifar10_pickled_batches(reg, tmp_path, md5_exists_only):
    rng = np.random.default_rng(2)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    test_rows = None
    for name, n in [(f"data_batch_{i}", 6) for i in range(1, 6)] + [("test_batch", 10)]:
        rows = fake_images(rng, n, (3 * 32 * 32,))  # one row per image: 1024 R, 1024 G, 1024 B
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": labels, "batch_label": name}, f)
        if name == "test_batch":
            test_rows, test_labels = rows, labels
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}, f)
    splits = shrunk(reg, "cifar10", 5).load(tmp_path, download=False, seed=0)
    check_splits(splits, channels=3, size=32, num_classes=10, n_train=25, n_val=5, n_test=10)
    assert splits.info.augment == "crop-flip"
    expected = torch.from_numpy(test_rows.reshape(-1, 3, 32, 32)).long()  # back to channels-first
    assert torch.equal(denormalise(splits.test.x, splits.info), expected)
    assert splits.test.y.tolist() == test_labels


@pytest.mark.parametrize("name, folder", [
    ("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST"), ("emnist", "EMNIST"),
    ("svhn", "train_32x32.mat"), ("cifar10", "cifar-10-batches-py"),
])
def test_missing_files_name_the_expected_place(reg, tmp_path, name, folder):
    with pytest.raises(DataNotFoundError) as err:
        reg.dataset(name).load(tmp_path, download=False, seed=0)
    message = str(err.value)
    assert "\n" not in message
    assert name in message and str(tmp_path) in message and folder in message


# ----------------------------------------------------------------------------- offline default


@pytest.mark.slow
def test_mnist5k_splits(reg):
    ds = reg.dataset("mnist5k")
    a = ds.load(None, download=False, seed=0)
    b = ds.load(None, download=False, seed=1)
    check_splits(a, channels=1, size=28, num_classes=10, n_train=3500, n_val=500, n_test=1000)
    assert torch.bincount(a.test.y, minlength=10).tolist() == [100] * 10  # class-balanced test set
    # The test set is fixed across seeds; validation is re-carved with each seed.
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.val.x, b.val.x)
    again = ds.load(None, download=False, seed=0)
    assert torch.equal(a.val.x, again.val.x) and torch.equal(a.train.y, again.train.y)
    # These are real digits, so no test image is also a training image.
    test_rows = {t.numpy().tobytes() for t in a.test.x}
    assert not any(t.numpy().tobytes() in test_rows for t in torch.cat([a.train.x, a.val.x]))


# ----------------------------------------------------------------------------- carve_validation


def test_carve_validation_is_a_seeded_partition():
    n = 200
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)  # each image's value is its index
    y = torch.arange(n) % 7
    train, val = carve_validation(x, y, 30, seed=5)
    train_ids, val_ids = set(train.x.flatten().long().tolist()), set(val.x.flatten().long().tolist())
    assert len(val) == 30 and len(train) == 170
    assert not train_ids & val_ids and train_ids | val_ids == set(range(n))
    assert torch.equal(train.y, train.x.flatten().long() % 7)  # labels stay with their images
    same_train, same_val = carve_validation(x, y, 30, seed=5)
    assert torch.equal(same_val.x, val.x) and torch.equal(same_train.x, train.x)
    _, other_val = carve_validation(x, y, 30, seed=6)
    assert not torch.equal(other_val.x, val.x)
    for bad in (0, n):
        with pytest.raises(ValueError, match="validation size"):
            carve_validation(x, y, bad, seed=0)


def test_split_subset_is_seeded():
    s = Split(torch.arange(50, dtype=torch.float32).view(50, 1, 1, 1), torch.arange(50))
    a, b, c = s.subset(10, 0), s.subset(10, 0), s.subset(10, 1)
    assert torch.equal(a.y, b.y) and not torch.equal(a.y, c.y)
    assert torch.equal(a.x.flatten().long(), a.y)
    assert s.subset(None, 0) is s and s.subset(500, 0) is s
