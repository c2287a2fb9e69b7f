"""The result store: the only code that knows how a results folder is laid out.

``<root>/<method>-<dataset>-<backbone>-s<seed>-<key>/`` holds ``result.json`` (a
:class:`odnbench.result.Result`, the source of truth every leaderboard is derived from) and
``model.safetensors`` (the exported model, in the format of :mod:`odnbench.modelio`: loading it
never runs code). ``key`` is a hash of the cell's canonical config, so the same cell always lands
in the same folder (resume). Files are written to a temporary name and renamed, so a crash never
leaves a half-written file; it may leave the temporary file (``.NAME.XXXX.tmp``), which a resumed
run removes and ``leaderboard verify`` lists.

``result.json`` records the sha256 of each model file of its cell (``files``) and a digest of its
own content (``digest``), so that a changed model or a hand-edited result is noticed. A
``result.json`` that cannot be read (e.g. truncated) is not a finished cell: a run moves it aside
to ``result.json.corrupt-N`` and runs the cell again.

``<root>/.locks/<key>.lock`` marks a cell that a running ``compare`` is working on
(:meth:`ResultStore.lock`), so that two runs on one folder never run the same cell twice.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from odnbench.errors import CorruptResultError, OdnbenchError
from odnbench.result import Result

RESULT_FILE = "result.json"
MODEL_FILE = "model.safetensors"
MODEL_SUFFIX = ".safetensors"
LEGACY_MODEL_FILE = "model.pt"  # odnbench 0.1: a pickled module, never loaded (see odnbench.modelio)
TMP_SUFFIX = ".tmp"
LOCK_DIR = ".locks"
#: A temporary file older than this is left over from a killed write (a live write takes seconds).
STALE_TMP_SECONDS = 300


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
        """The result stored in ``folder`` (None when there is none; CorruptResultError when it
        cannot be read)."""
        f = Path(folder) / RESULT_FILE
        if not f.is_file():
            return None
        try:
            result = Result.from_dict(read_json(f))
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise CorruptResultError(f"{f} is not a readable result ({type(exc).__name__}: "
                                     f"{' '.join(str(exc).split())[:120]})") from None
        result.folder = Path(folder).name
        return result

    def set_aside(self, folder: Path) -> Path:
        """Move an unreadable result.json out of the way (kept for inspection, never deleted):
        ``result.json.corrupt-N``, N the first free number."""
        f = Path(folder) / RESULT_FILE
        n = 1
        while (target := f.with_name(f"{RESULT_FILE}.corrupt-{n}")).exists():
            n += 1
        os.replace(f, target)
        return target

    def stale_temp_files(self, folder: Path | None = None, older_than: float = 0.0) -> list[Path]:
        """Temporary files of interrupted writes in ``folder`` (default: the root), oldest first."""
        folder = Path(folder) if folder is not None else self.root
        if not folder.is_dir():
            return []
        now = time.time()
        found = []
        for p in folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and p.is_file():
                try:
                    if now - p.stat().st_mtime >= older_than:
                        found.append(p)
                except FileNotFoundError:  # finished (renamed) meanwhile
                    continue
        return sorted(found)

    def clean_stale_temp_files(self, folder: Path | None = None) -> list[Path]:
        """Remove temporary files left by killed writes (older than STALE_TMP_SECONDS, so that a write
        in progress in another process is never touched)."""
        removed = []
        for p in self.stale_temp_files(folder, older_than=STALE_TMP_SECONDS):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                continue
        return removed

    def model_files(self, folder: Path) -> list[Path]:
        """The ``*.safetensors`` files in a cell folder. What a result vouches for is its record's
        ``files`` (:meth:`Result.stored_files`); this finds files written by name (before 0.2)."""
        folder = Path(folder)
        return sorted(p for p in folder.glob(f"*{MODEL_SUFFIX}") if p.is_file()) if folder.is_dir() else []

    def checksums(self, folder: Path) -> dict[str, dict]:
        """``{file name: {"sha256", "bytes"}}`` of every model file in a cell folder (stored in result.json)."""
        out = {}
        for p in self.model_files(folder):
            data = p.read_bytes()
            out[p.name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        return out

    def get(self, key: str) -> Result | None:
        folder = self.find(key)
        return self.read(folder) if folder else None

    def stored(self, config: dict) -> Result | None:
        """The result stored for exactly this config (None when the cell never finished)."""
        return self.read(self.cell_dir(config))

    def write(self, result: Result) -> Path:
        """Store a result (strict JSON: no NaN or Infinity), with its digest."""
        folder = self.cell_dir(result.config)
        result.digest = None
        result.digest = result_digest(result.to_dict())
        write_json(folder / RESULT_FILE, result.to_dict())
        return folder

    def lock(self, key: str) -> "CellLock":
        """The lock of cell ``key`` (not yet taken: call :meth:`CellLock.acquire`)."""
        return CellLock(self.root / LOCK_DIR / f"{key}.lock")

    def model_path(self, folder: Path) -> Path:
        return Path(folder) / MODEL_FILE

    def save_model(self, model, folder: Path, example=None) -> Path:
        path = self.model_path(folder)
        save_model(model, path, example=example)
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
                      if p.is_dir() and ((p / RESULT_FILE).exists() or (p / MODEL_FILE).exists()
                                         or (p / LEGACY_MODEL_FILE).exists()))


def result_digest(d: dict) -> str:
    """sha256 of a stored result's canonical JSON, its own ``digest`` field left out. It shows that a
    result was edited after it was written; it is not a signature (whoever edits can recompute it)."""
    return hashlib.sha256(canonical_json({k: v for k, v in d.items() if k != "digest"}).encode()).hexdigest()


def check_results_root(path, cell_names: list[str] = (), what: str = "--results") -> Path:
    """Make sure ``path`` can hold results before any training starts (one-line OdnbenchError
    otherwise): not a file, every name short enough (the cell folders' and temporary files' too),
    writable. Creates the folder."""
    path = Path(path)
    shown = str(path)
    limit = _name_max(path)
    longest_tmp = f".{MODEL_FILE}.XXXXXXXX{TMP_SUFFIX}"
    for part in (*path.parts, *cell_names):
        if len(os.fsencode(part)) > limit:
            raise OdnbenchError(f"{what} {shown[:60]}{'…' if len(shown) > 60 else ''}: the name {part[:24]}… is "
                                f"{len(os.fsencode(part))} bytes long; this file system allows at most {limit} per name")
    deepest = path.absolute() / max(cell_names, key=len, default="x") / longest_tmp
    if len(os.fsencode(str(deepest))) >= _path_max(path):
        raise OdnbenchError(f"{what} {shown[:60]}…: the path is too long ({len(os.fsencode(str(deepest)))} bytes with "
                            f"a cell folder and file in it; this file system allows {_path_max(path) - 1})")
    for parent in (path, *path.parents):
        if parent.exists() and not parent.is_dir():
            raise OdnbenchError(f"{what} {shown}: {parent} is a file, not a folder; choose another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".odnbench-write-test.", suffix=TMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.ENAMETOOLONG:
            raise OdnbenchError(f"{what} {shown[:60]}…: the path is too long for this file system ({why})") from None
        raise OdnbenchError(f"{what} {shown} is not writable ({why}); choose a folder you can write to") from None
    return path


def _name_max(path: Path) -> int:
    return _pathconf(path, "PC_NAME_MAX", 255)


def _path_max(path: Path) -> int:
    return _pathconf(path, "PC_PATH_MAX", 4096)


def _pathconf(path: Path, name: str, default: int) -> int:
    for parent in (path, *path.absolute().parents):
        try:
            return os.pathconf(parent, name)
        except (OSError, ValueError):
            continue
    return default


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
    """Strict JSON (``allow_nan=False``): NaN and Infinity are not JSON and strict readers reject them;
    a non-finite number reaching here is a bug upstream, so it raises ValueError instead of writing."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str, allow_nan=False)
                              + "\n").encode())


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def save_model(model, path: Path, example=None) -> None:
    """Store a model in the safe format of :mod:`odnbench.modelio` (weights + a JSON architecture
    rebuilt from allowlisted classes only). With ``example`` (an input batch) the stored form is
    checked to reload into the same outputs. Load with :func:`load_model`."""
    from odnbench import modelio

    atomic_write_bytes(Path(path), modelio.to_bytes(model, example))


def load_model(path: Path, device=None, expected_sha256: str | None = None):
    """Reload a stored model without the code of the plugin that made it. Never unpickles: a pickled
    file (odnbench 0.1's model.pt, or anything planted) is refused with one line. With
    ``expected_sha256`` the file must be the one its result recorded."""
    from odnbench import modelio

    return modelio.load_model(path, device=device, expected_sha256=expected_sha256)


class CellLock:
    """An exclusive, non-blocking lock on one cell, held by the process that runs it.

    The lock is ``flock`` on a file, so the kernel releases it the moment its holder dies (a
    ``kill -9`` included): a lock left by a killed run is simply free, and the next run takes it
    over (:attr:`taken_over` then holds what the dead holder wrote). The file says who holds it
    (pid, host, start time, command) for the waiting run's message. On a shared filesystem the
    lock works across hosts where the filesystem supports POSIX locks (NFSv4 does).
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None
        self.taken_over: dict | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it (True), else return False at once."""
        import fcntl

        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:  # its last holder may have removed the file between our open and our flock
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        left = os.read(fd, 4096)
        self.taken_over = _parse_holder(left) if left else None
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                         "command": " ".join(sys.argv)[:300]}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, me, 0)
        self._fd = fd
        return True

    def release(self) -> None:
        """Remove the lock file and let go (removing first, while held, so no one locks a stale file)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None

    def holder(self) -> dict | None:
        """Who holds (or last held) the lock, as its file says: pid, host, started, command."""
        try:
            return _parse_holder(self.path.read_bytes())
        except OSError:
            return None

    def __enter__(self) -> "CellLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _parse_holder(data: bytes) -> dict | None:
    try:
        found = json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return found if isinstance(found, dict) else None
