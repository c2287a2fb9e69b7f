"""Dataset splits held as tensors in memory (on the GPU when there is one).

Small images fed from tensors are much faster than DataLoader workers, which is most of the
speed of a benchmark on 28-32 px images. Dataset plugins build a :class:`Splits`; the harness
subsets it per the recipe and moves it to the device.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    image_size: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str | None = None  # None or "crop-flip" (random crop with 4 px padding + horizontal flip)
    split_rule: str = ""  # how train/val/test were made, stored with each result


@dataclass
class Split:
    x: torch.Tensor  # float32, N x C x H x W, normalised
    y: torch.Tensor  # int64, N

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device) -> Split:
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, n: int | None, seed: int) -> Split:
        """A seeded random subset of ``n`` examples (all of them when n is None or too big)."""
        if n is None or n >= len(self):
            return self
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(self), generator=g)[:n].sort().values
        return Split(self.x[idx], self.y[idx])


@dataclass
class Splits:
    info: DatasetInfo
    train: Split
    val: Split
    test: Split
    notes: dict = field(default_factory=dict)
    fingerprint: str | None = None  # of the tensors actually used (see fingerprint()), set by the harness

    def to(self, device) -> Splits:
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def fingerprint(splits: Splits) -> str:
    """sha256 over the train, val and test tensors (shape, dtype, bytes) after subsetting: the data a
    result was trained and measured on, whatever files or plugin produced it. Stored in result.json
    (``data.fingerprint``) and compared by ``leaderboard verify``."""
    import hashlib

    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        split = getattr(splits, name)
        for t in (split.x, split.y):
            t = t.detach().to("cpu").contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()


def check_splits(splits: Splits, dataset: str) -> None:
    """One-line DataError when a dataset plugin's splits cannot be what its info says: wrong image
    shape, non-finite pixels, labels outside 0..classes-1 (which would otherwise surface as an
    IndexError or a NaN loss blamed on the method)."""
    from odnbench.errors import DataError

    info = splits.info
    want = (info.channels, info.image_size, info.image_size)
    for name in ("train", "val", "test"):
        s = getattr(splits, name)
        if len(s) == 0:
            raise DataError(f"dataset {dataset!r}: the {name} split is empty")
        if s.x.dim() != 4 or tuple(s.x.shape[1:]) != want or s.x.shape[0] != s.y.shape[0]:
            raise DataError(f"dataset {dataset!r}: {name} images are {tuple(s.x.shape)} for {tuple(s.y.shape)} labels; "
                            f"expected N x {' x '.join(map(str, want))} (channels x height x width) for N labels")
        if s.y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8) or s.y.dim() != 1:
            raise DataError(f"dataset {dataset!r}: {name} labels must be a 1-D integer tensor, got {s.y.dtype} "
                            f"{tuple(s.y.shape)}")
        low, high = int(s.y.min()), int(s.y.max())
        if low < 0 or high >= info.num_classes:
            raise DataError(f"dataset {dataset!r}: {name} labels run {low}..{high}, outside 0..{info.num_classes - 1} "
                            f"({info.num_classes} classes): the data files are damaged or not {dataset}'s")
        if not bool(torch.isfinite(s.x).all()):
            raise DataError(f"dataset {dataset!r}: {name} images hold NaN or infinite values")


def normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 N x C x H x W (or N x H x W) -> float32 normalised N x C x H x W."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    x = images.float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - m) / s


def carve_validation(x: torch.Tensor, y: torch.Tensor, val_size: int, seed: int):
    """Split training data into (train, val) with a seeded permutation; never touches test."""
    if not 0 < val_size < len(y):
        raise ValueError(f"validation size {val_size} must be between 1 and {len(y) - 1}")
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(y), generator=g)
    val_idx, train_idx = perm[:val_size].sort().values, perm[val_size:].sort().values
    return Split(x[train_idx], y[train_idx]), Split(x[val_idx], y[val_idx])


def crop_flip(x: torch.Tensor, generator: torch.Generator | None, pad: int = 4) -> torch.Tensor:
    """Random crop (zero padding ``pad``) and horizontal flip, per image, on whatever device x is."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device).view(1, h))  # n x h
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device).view(1, w))  # n x w
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: str | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) mini-batches from an in-memory split; the shuffle order comes from ``generator``."""
    n = len(split)
    if shuffle:
        order = torch.randperm(n, generator=generator).to(split.x.device)
    for start in range(0, n, batch_size):
        if shuffle:
            idx = order[start:start + batch_size]
            x, y = split.x[idx], split.y[idx]
        else:
            x, y = split.x[start:start + batch_size], split.y[start:start + batch_size]
        if augment == "crop-flip":
            x = crop_flip(x, generator)
        yield x, y
