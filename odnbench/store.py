"""The result store: one folder per cell, named by a hash of the cell's canonical config.

``<results>/<method>-<dataset>-<backbone>-s<seed>-<key>/`` holds ``result.json`` (the source
of truth every leaderboard is derived from) and ``model.pt`` (the exported model, reloadable
without the method's code). Files are written to a temporary name and renamed, so a crash
never leaves a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

RESULT_FILE = "result.json"
MODEL_FILE = "model.pt"


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def cell_key(config: dict) -> str:
    """Stable hash of a cell's canonical config (no timestamps, no paths)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:12]


def cell_dirname(config: dict) -> str:
    return f"{config['method']}-{config['dataset']}-{config['backbone']}-s{config['seed']}-{cell_key(config)}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes files private (0600)


def atomic_write_bytes(path: Path, data: bytes) -> None:
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


def read_json(path: Path) -> dict:
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


def iter_results(results_dir: Path) -> Iterator[tuple[Path, dict]]:
    """Every stored result, in a stable order (by folder name)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return
    for cell in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        f = cell / RESULT_FILE
        if f.is_file():
            try:
                yield cell, read_json(f)
            except (OSError, json.JSONDecodeError):
                continue  # an unreadable file is reported by `leaderboard verify`, not fatal here
