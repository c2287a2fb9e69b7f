"""The result store: the only code that knows how a results folder is laid out.

``<root>/<method>-<dataset>-<backbone>-s<seed>-<key>/`` holds ``result.json`` (a
:class:`odnbench.result.Result`, the source of truth every leaderboard is derived from) and
``model.pt`` (the exported model). ``key`` is a hash of the cell's canonical config, so the same
cell always lands in the same folder (resume). Files are written to a temporary name and renamed,
so a crash never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from odnbench.result import Result

RESULT_FILE = "result.json"
MODEL_FILE = "model.pt"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cell_key(config: dict) -> str:
    """Stable hash of a cell's canonical config (no timestamps, no paths)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:12]


def cell_dirname(config: dict) -> str:
    return f"{config['method']}-{config['dataset']}-{config['backbone']}-s{config['seed']}-{cell_key(config)}"


class ResultStore:
    """A results folder: find, read, write and iterate cells, and save or load their models."""

    def __init__(self, root):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def cell_dir(self, config: dict) -> Path:
        return self.root / cell_dirname(config)

    def find(self, key: str) -> Path | None:
        """The folder of the cell with this key, wherever its name came from (None when absent)."""
        matches = sorted(self.root.glob(f"*-{key}")) if self.root.is_dir() else []
        return matches[0] if matches else None

    def read(self, folder: Path) -> Result | None:
        """The result stored in ``folder`` (None when there is none)."""
        f = Path(folder) / RESULT_FILE
        if not f.is_file():
            return None
        result = Result.from_dict(read_json(f))
        result.folder = Path(folder).name
        return result

    def get(self, key: str) -> Result | None:
        folder = self.find(key)
        return self.read(folder) if folder else None

    def stored(self, config: dict) -> Result | None:
        """The result stored for exactly this config (None when the cell never finished)."""
        return self.read(self.cell_dir(config))

    def write(self, result: Result) -> Path:
        folder = self.cell_dir(result.config)
        write_json(folder / RESULT_FILE, result.to_dict())
        return folder

    def model_path(self, folder: Path) -> Path:
        return Path(folder) / MODEL_FILE

    def save_model(self, model, folder: Path) -> Path:
        path = self.model_path(folder)
        save_model(model, path)
        return path

    def __iter__(self) -> Iterator[tuple[Path, Result]]:
        """Every readable stored result, in a stable order (by folder name)."""
        for folder, raw in self.raw():
            try:
                result = Result.from_dict(raw)
            except (TypeError, ValueError):
                continue  # not a result; `leaderboard verify` reports it
            result.folder = folder.name
            yield folder, result

    def raw(self) -> Iterator[tuple[Path, Any]]:
        """Every result.json as parsed JSON, unchecked (for verify)."""
        if not self.root.is_dir():
            return
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            f = folder / RESULT_FILE
            if f.is_file():
                try:
                    yield folder, read_json(f)
                except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                    continue  # an unreadable file is reported by `leaderboard verify`, not fatal here

    def folders(self) -> list[Path]:
        """Cell folders: those holding a result or a model file."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir()
                      if p.is_dir() and ((p / RESULT_FILE).exists() or (p / MODEL_FILE).exists()))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes files private (0600)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def save_model(model, path: Path) -> None:
    """Save the whole module (architecture + weights): pruned or cut models change shape, so a
    state_dict alone would not reload. Load with :func:`load_model`."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(model, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_model(path: Path, device=None):
    """Reload an exported model. Needs torch, and timm for timm's block classes; not the method's code.

    ``weights_only=False`` because the file holds a pickled module, not just tensors: only load
    files you trust (your own results folder).
    """
    import torch

    return torch.load(path, map_location=device or "cpu", weights_only=False)
