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

``<root>/.locks/<key>.lock`` marks a cell that a running ``compare`` or ``run`` is working on
(:meth:`ResultStore.lock`), so that two runs on one folder never run the same cell twice.

A cell is its key: a folder counts as a cell only when its name is exactly the one its record's
config gives (:func:`cell_dirname`: method, dataset, backbone, seed and key agree) and the record's
``key`` is its config's. A copied, renamed or planted folder (``backup-full-…-KEY``, a second copy
of a record) is a *stray*: never read as a cell, never counted on a board, never used as a
dependency, and listed by :meth:`ResultStore.strays` (``leaderboard verify`` and the boards name them).

Nothing in a results folder is trusted to be what its name says: symbolic links and non-regular
files (FIFOs, devices) are never followed or read, every file is read with a size bound
(:data:`MAX_RECORD_BYTES`, :data:`MAX_MODEL_BYTES`) and JSON nesting is bounded
(:data:`MAX_JSON_DEPTH`), so that a planted ``/dev/zero`` link, a FIFO or a record nested
100,000 deep is one finding, not a hang or a crash. With ``ODNBENCH_SIGNING_KEY`` set, each record
written is signed (HMAC-SHA256 over its canonical JSON, ``signature`` beside ``digest``), so that a
publisher holding the key can tell a record it wrote from an edited or forged one.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odnbench.errors import CorruptResultError as CorruptResultError  # re-exported for the harness
from odnbench.errors import OdnbenchError
from odnbench.progress import Progress
from odnbench.result import Facts, Result, file_entry

# Re-exported (``X as X``): the store is where callers look for them.
from odnbench.safeio import MAX_JSON_DEPTH as MAX_JSON_DEPTH
from odnbench.safeio import MAX_LOCK_BYTES as MAX_LOCK_BYTES
from odnbench.safeio import MAX_MODEL_BYTES as MAX_MODEL_BYTES
from odnbench.safeio import MAX_RECORD_BYTES as MAX_RECORD_BYTES
from odnbench.safeio import UnsafePathError as UnsafePathError
from odnbench.safeio import file_kind as file_kind
from odnbench.safeio import is_real_dir as is_real_dir
from odnbench.safeio import is_real_file as is_real_file
from odnbench.safeio import json_depth_problem as json_depth_problem
from odnbench.safeio import lstat_or_none as lstat_or_none
from odnbench.safeio import parse_json as parse_json
from odnbench.safeio import read_regular as read_regular
from odnbench.safeio import refuse_link as refuse_link

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

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


def cell_key(config: dict[str, Any]) -> str:
    """Stable hash of a cell's canonical config (no timestamps, no paths)."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:12]


def cell_dirname(config: dict[str, Any]) -> str:
    return f"{config['method']}-{config['dataset']}-{config['backbone']}-s{config['seed']}-{cell_key(config)}"


SIGNING_KEY_ENV = "ODNBENCH_SIGNING_KEY"
SIGNATURE_ALG = "hmac-sha256"


class ResultStore:
    """A results folder: find, read, write and iterate cells, and save or load their models."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    def cell_dir(self, config: dict[str, Any]) -> Path:
        return self.root / cell_dirname(config)

    def find(self, key: str) -> Path | None:
        """The folder of the cell with this key: the one folder whose name, record key, method and
        seed agree (:func:`cell_problem`); None when there is none. A copy or a planted folder whose
        name merely ends with the key is a stray and never found."""
        if not is_real_dir(self.root):
            return None
        for folder in sorted(self.root.glob(f"*-{key}")):
            if not is_real_dir(folder):
                continue
            try:
                raw = read_json(folder / RESULT_FILE)
            except (OSError, ValueError, UnicodeDecodeError, UnsafePathError):
                continue
            if cell_problem(folder.name, raw) is None and raw["config"] and cell_key(raw["config"]) == key:
                return folder
        return None

    def read(self, folder: Path) -> Result | None:
        """The result stored in ``folder`` (None when there is none; CorruptResultError when it
        cannot be read, or when it is not this folder's cell: a record copied or planted here)."""
        folder = Path(folder)
        f = folder / RESULT_FILE
        if lstat_or_none(f) is None:
            return None
        try:
            refuse_link(folder)
            raw = read_json(f)
            result = Result.from_dict(raw)
        except (OSError, UnicodeDecodeError, ValueError, TypeError, UnsafePathError) as exc:
            raise CorruptResultError(f"{f} is not a readable result ({type(exc).__name__}: "
                                     f"{' '.join(str(exc).split())[:120]})") from None
        wrong = cell_problem(folder.name, raw)
        if wrong:
            raise CorruptResultError(f"{f} is not this folder's cell: {wrong}")
        result.folder = folder.name
        return result

    def strays(self) -> list[tuple[Path, str]]:
        """Folders that look like cells but are not read as any (a copy, a renamed or planted folder,
        a symbolic link, an unreadable record), each with why: what verify and the boards report."""
        out = []
        for folder, _raw, problem in self._scan():
            if problem:
                out.append((folder, problem))
        return out

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
        if not is_real_dir(folder):
            return []
        now = time.time()
        found = []
        for p in folder.iterdir():
            if p.name.startswith(".") and p.name.endswith(TMP_SUFFIX) and is_real_file(p):
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
        return sorted(p for p in folder.glob(f"*{MODEL_SUFFIX}") if is_real_file(p)) if is_real_dir(folder) else []

    def checksums(self, folder: Path) -> dict[str, dict[str, Any]]:
        """``{file name: {"sha256", "bytes"}}`` of every model file in a cell folder (stored in result.json)."""
        out = {}
        for p in self.model_files(folder):
            data = read_regular(p, MAX_MODEL_BYTES)
            out[p.name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        return out

    def get(self, key: str) -> Result | None:
        folder = self.find(key)
        return self.read(folder) if folder else None

    def stored(self, config: dict[str, Any]) -> Result | None:
        """The result stored for exactly this config (None when the cell never finished)."""
        return self.read(self.cell_dir(config))

    def write(self, result: Result) -> Path:
        """Store a result (strict JSON: no NaN or Infinity), with its digest, and its signature when
        ``ODNBENCH_SIGNING_KEY`` is set. Never through a symbolic link."""
        folder = self.cell_dir(result.config)
        refuse_link(folder)
        result.digest = None
        record = result.to_dict()
        key = signing_key()
        if key is not None:
            record["signature"] = {"alg": SIGNATURE_ALG, "value": record_signature(record, key)}
        result.digest = record["digest"] = result_digest(record)
        too_big = unreadable_record_problem(record)
        if too_big:
            raise RecordLimitError(too_big)
        write_json(folder / RESULT_FILE, record)
        return folder

    def open_cell(self, config: dict[str, Any], progress: Progress) -> CellWriter:
        """The folder of the cell a run is about to run, ready for it (:class:`CellWriter`): everything
        one run of a cell reads from and writes to the results folder goes through what this returns."""
        return CellWriter(self, config, progress)

    def lock(self, key: str) -> CellLock:
        """The lock of cell ``key`` (not yet taken: call :meth:`CellLock.acquire`)."""
        return CellLock(self.root / LOCK_DIR / f"{key}.lock")

    def model_path(self, folder: Path) -> Path:
        return Path(folder) / MODEL_FILE

    def save_model(self, model: nn.Module, folder: Path, example: torch.Tensor | None = None) -> Path:
        refuse_link(folder)
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
        """Every cell's result.json as parsed JSON (strays left out: see :meth:`strays`)."""
        for folder, raw, problem in self._scan():
            if not problem:
                yield folder, raw

    def _scan(self) -> Iterator[tuple[Path, Any, str | None]]:
        """Every folder that looks like a cell, its parsed record (None when unreadable) and why it is
        not a cell (None when it is one)."""
        for folder in self.folders(links=True):
            if not is_real_dir(folder):
                yield folder, None, "a symbolic link (never followed inside a results folder)"
                continue
            f = folder / RESULT_FILE
            if lstat_or_none(f) is None:
                continue  # a model without its record: verify reports it
            try:
                raw = read_json(f)
            except (OSError, UnicodeDecodeError, ValueError, UnsafePathError) as exc:
                yield folder, None, f"{RESULT_FILE} is unreadable ({' '.join(str(exc).split())[:120]})"
                continue
            yield folder, raw, cell_problem(folder.name, raw)

    def folders(self, links: bool = False) -> list[Path]:
        """Cell folders: those holding a result or a model file (``links``: symbolic links to folders
        too, which are never followed but reported)."""
        if not is_real_dir(self.root):
            return []
        out = []
        for p in sorted(self.root.iterdir()):
            if p.name == LOCK_DIR:
                continue
            if not is_real_dir(p):
                if links and os.path.islink(p) and _link_looks_like_cell(p):
                    out.append(p)
                continue
            if any(lstat_or_none(p / name) is not None for name in (RESULT_FILE, MODEL_FILE, LEGACY_MODEL_FILE)):
                out.append(p)
        return out


class RecordLimitError(ValueError):
    """A record odnbench's own reader would refuse (too large, nested too deep): never written."""


def unreadable_record_problem(record: dict[str, Any]) -> str | None:
    """Why a record about to be written would be refused when read back (None when it would not):
    the limits every reader applies (:data:`MAX_RECORD_BYTES`, :data:`MAX_JSON_DEPTH`), applied at
    write time so that the cell fails with the reason instead of being stored, then set aside and
    trained again on every rerun. Names the field responsible."""
    from odnbench.safeio import nesting_depth

    depth = nesting_depth(record, MAX_JSON_DEPTH)
    if depth > MAX_JSON_DEPTH:
        field = next((k for k, v in record.items() if nesting_depth(v, MAX_JSON_DEPTH) >= MAX_JSON_DEPTH), "?")
        return (f"{field} nests deeper than the {MAX_JSON_DEPTH} levels a record may have (the reader refuses "
                "deeper JSON); report less structure")
    size = len(json.dumps(record, indent=2, sort_keys=True, default=str).encode()) + 1
    if size > MAX_RECORD_BYTES:
        sizes = {k: len(json.dumps(v, default=str)) for k, v in record.items()}
        field = max(sizes, key=lambda k: sizes[k])
        return (f"the record would be {size:,} bytes, more than the {MAX_RECORD_BYTES:,} a reader accepts ({field} "
                f"is {sizes[field]:,} bytes); report less in it")
    return None


class CellWriter:
    """One run of one cell, as the store sees it (made by :meth:`ResultStore.open_cell`): the cell's
    folder is checked and tidied when it opens, the run reads its dependencies and saves its models
    through it, and :meth:`record` stores its result, so that running a cell crosses into the store
    once and nothing else knows how its folder is laid out.

    Opening: a folder that is a symbolic link is refused (UnsafePathError, nothing run); an unreadable
    result.json (a truncated write, a bad edit) is moved aside with a warning rather than stopping every
    later run; stale temporary files are removed; the model files already there are noted, so that
    :meth:`new_model_files` finds only this run's."""

    def __init__(self, store: ResultStore, config: dict[str, Any], progress: Progress) -> None:
        self.store = store
        self.path = store.cell_dir(config)
        refuse_link(self.path)  # a linked cell folder would write outside --results (one line, nothing run)
        try:
            store.read(self.path)
        except CorruptResultError as exc:
            moved = store.set_aside(self.path)
            progress.warn(f"{exc}; moved it to {moved.name} and running the cell again")
        for p in store.clean_stale_temp_files(self.path):
            progress.line(f"removed {p.name}, left in {self.path.name} by an interrupted write")
        self._before = {p.name: p.stat().st_mtime_ns for p in store.model_files(self.path)}

    def dependency(self, key: str) -> tuple[Path | None, Result | None]:
        """The folder and stored result of the finished cell ``key`` this one needs (None, None when
        there is none; a failed one's result when it failed)."""
        found = self.store.find(key)
        return found, (self.store.read(found) if found else None)

    def create(self) -> Path:
        """Make the folder (the method's ``ctx.workdir``) and return it."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self.path

    def save_model(self, model: nn.Module, example: torch.Tensor | None = None) -> tuple[str, dict[str, Any]]:
        """Store the cell's model (:data:`MODEL_FILE`; checked to reload into the same outputs on
        ``example``); returns its file name and its ``files`` entry (checksum, size)."""
        path = self.store.save_model(model, self.path, example=example)
        return path.name, file_entry(path.read_bytes())

    def new_model_files(self, recorded: Collection[str | None]) -> list[Path]:
        """Model files written into the folder since it opened, other than the cell's model and those
        in ``recorded`` (files an earlier, unfinished attempt left, unchanged since, are not this run's)."""
        return [p for p in self.store.model_files(self.path)
                if p.name != MODEL_FILE and p.name not in recorded and self._before.get(p.name) != p.stat().st_mtime_ns]

    def load_model(self, path: Path, expected_sha256: str | None = None) -> nn.Module:
        """A model file of this folder, reloaded (:func:`load_model`)."""
        return load_model(path, expected_sha256=expected_sha256)

    def record(self, result: Result) -> Result:
        """Store the run's result (ok or failed). A non-finite number that slipped through cannot be
        strict JSON: the cell is then stored as failed, saying so, never as invalid JSON."""
        try:
            self.store.write(result)
        except ValueError as exc:
            result.status, result.metrics, result.files, result.model_file = "failed", None, None, None
            result.method_info, result.facts, result.reference = {}, Facts(), None
            result.artifacts, result.curve = {}, None
            result.error = f"the result could not be stored{' as strict JSON' * (type(exc) is ValueError)} ({exc})"
            self.store.write(result)
        return result


def _link_looks_like_cell(p: Path) -> bool:
    return bool(p.name.rsplit("-", 1)[-1:]) and len(p.name.rsplit("-", 1)[-1]) == 12


def cell_problem(folder_name: str, raw: Any) -> str | None:
    """Why a folder is not the cell its record describes (None when name, key, method and seed
    agree): a copy, a renamed or a planted folder is never read as a cell."""
    if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict):
        return f"{RESULT_FILE} holds no config; not a cell"
    config = raw["config"]
    try:
        expected = cell_dirname(config)
    except (KeyError, TypeError, ValueError):
        return "its record's config lacks method, dataset, backbone or seed; not a cell"
    key = cell_key(config)
    if raw.get("key") not in (None, key):
        return f"its record's key {str(raw.get('key'))[:16]!r} is not its config's key {key}; not counted"
    if folder_name != expected:
        return (f"not its record's cell folder {expected[:120]} (a copy, a renamed or planted folder, or an edited "
                "config); not counted")
    return None


def result_digest(d: dict[str, Any]) -> str:
    """sha256 of a stored result's canonical JSON, its own ``digest`` field left out. It shows that a
    result was edited after it was written; it is not a signature (whoever edits can recompute it:
    see :func:`record_signature`)."""
    return hashlib.sha256(canonical_json({k: v for k, v in d.items() if k != "digest"}).encode()).hexdigest()


def signing_key() -> bytes | None:
    """The publisher's key from ``ODNBENCH_SIGNING_KEY`` (None when unset or empty)."""
    key = os.environ.get(SIGNING_KEY_ENV, "")
    try:
        return key.encode() if key else None
    except UnicodeEncodeError:  # os.environ keeps undecodable bytes as surrogates
        raise OdnbenchError(f"{SIGNING_KEY_ENV} is not valid UTF-8 text; set it to a UTF-8 string (e.g. the output "
                            "of `python -c 'import secrets; print(secrets.token_hex(32))'`), or unset it") from None


def record_signature(d: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256, under ``key``, of a record's canonical JSON without ``digest`` and ``signature``:
    unlike the digest, nobody without the key can recompute it after an edit."""
    body = canonical_json({k: v for k, v in d.items() if k not in ("digest", "signature")})
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def signature_status(d: dict[str, Any], key: bytes | None) -> str:
    """``unsigned``, ``good signature``, ``bad signature`` or ``signed (no key to check)``."""
    sig = d.get("signature")
    if sig is None:
        return "unsigned"
    if key is None:
        return "signed (no key to check)"
    if not (isinstance(sig, dict) and sig.get("alg") == SIGNATURE_ALG and isinstance(sig.get("value"), str)
            and re.fullmatch(r"[0-9a-f]{64}", sig["value"])):  # compare_digest raises on non-ASCII text
        return "bad signature (malformed: not an hmac-sha256 hex value)"
    return "good signature" if hmac.compare_digest(sig["value"], record_signature(d, key)) else "bad signature"


def cheap_record_problems(raw: Any, key: bytes | None) -> list[str]:
    """What a board can check of a stored record without reloading its model (no plugin, no torch):
    the types and ranges of the fields it has (a top-1 of 1e308, a NaN token; a missing field
    other than top-1 shows as "–") and, with ``key`` (ODNBENCH_SIGNING_KEY) set, the signature.
    A record with any of these problems is left off every board, with a note (``leaderboard verify``
    says more)."""
    from odnbench.result import schema_problems

    problems = schema_problems(raw, ranges_only=True)
    if problems:
        return problems[:3]
    if key is not None:
        signed = signature_status(raw, key)
        if signed != "good signature":
            problems.append(f"{signed} while ODNBENCH_SIGNING_KEY is set")
    return problems


def board_results(root: str | os.PathLike[str]) -> tuple[list[tuple[Path, Result]], list[tuple[Path, str]]]:
    """The records a board may count (folder, result) and those it leaves out (folder, why):
    :func:`cheap_record_problems` under the current ODNBENCH_SIGNING_KEY. Strays are
    :meth:`ResultStore.strays`."""
    key = signing_key()
    kept, left_out = [], []
    for folder, raw in ResultStore(root).raw():
        problems = cheap_record_problems(raw, key)
        if not problems:
            try:
                result = Result.from_dict(raw)
            except (TypeError, ValueError) as exc:
                problems = [f"not a result ({exc})"]
        if problems:
            left_out.append((folder, "; ".join(problems) + " (`leaderboard verify` checks it)"))
            continue
        result.folder = folder.name
        kept.append((folder, result))
    return kept, left_out


def check_results_root(path: str | os.PathLike[str], cell_names: Sequence[str] = (), what: str = "--results") -> Path:
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
    """Write ``path`` whole or not at all (a temporary file, then a rename). An OSError always names
    ``path`` (a full disk's ENOSPC from write or fsync names no file by itself)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _naming(exc, path) from None
    try:
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from None
        raise


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name when it names none."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))


def write_json(path: Path, obj: Any) -> None:
    """Strict JSON (``allow_nan=False``): NaN and Infinity are not JSON and strict readers reject them;
    a non-finite number reaching here is a bug upstream, so it raises ValueError instead of writing."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str, allow_nan=False)
                              + "\n").encode())


def read_json(path: Path, strict: bool = False) -> Any:
    """A record from a results folder: a regular file (never a link, FIFO or device), at most
    :data:`MAX_RECORD_BYTES`, nested at most :data:`MAX_JSON_DEPTH` deep."""
    return parse_json(read_regular(path, MAX_RECORD_BYTES), strict=strict)


def save_model(model: nn.Module, path: Path, example: torch.Tensor | None = None) -> None:
    """Store a model in the safe format of :mod:`odnbench.modelio` (weights + a JSON architecture
    rebuilt from allowlisted classes only). With ``example`` (an input batch) the stored form is
    checked to reload into the same outputs. Load with :func:`load_model`."""
    from odnbench import modelio

    atomic_write_bytes(Path(path), modelio.to_bytes(model, example))


def load_model(path: Path, device: torch.device | str | None = None,
               expected_sha256: str | None = None) -> nn.Module:
    """Reload a stored model without the code of the plugin that made it. Never unpickles: a pickled
    file (odnbench 0.1's model.pt, or anything planted) is refused with one line. With
    ``expected_sha256`` the file must be the one its result recorded."""
    from odnbench import modelio

    model: nn.Module = modelio.load_model(path, device=device, expected_sha256=expected_sha256)
    return model


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
        self.taken_over: dict[str, Any] | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        """Take the lock if nobody holds it (True), else return False at once. UnsafePathError (one
        line) when ``.locks`` or the lock file is a symbolic link or not what it should be."""
        import fcntl

        if self._fd is not None:
            return True
        folder = self.path.parent
        refuse_link(folder, f"a real {LOCK_DIR} folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            refuse_link(folder, f"a real {LOCK_DIR} folder")  # raced: names what is there
            raise
        while True:
            flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
            try:
                fd = os.open(self.path, flags, _FILE_MODE)
            except OSError:
                st = lstat_or_none(self.path)
                if st is not None and not stat.S_ISREG(st.st_mode):
                    raise UnsafePathError(f"the lock {self.path} is {file_kind(st.st_mode)}, not a lock file; "
                                          "move it away (no odnbench run made it)") from None
                raise
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise UnsafePathError(f"the lock {self.path} is not a regular file; move it away")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:  # its last holder may have removed the file between our open and our flock
                same = os.fstat(fd).st_ino == os.stat(self.path, follow_symlinks=False).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        left = os.read(fd, MAX_LOCK_BYTES)
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

    def holder(self) -> dict[str, Any] | None:
        """Who holds (or last held) the lock, as its file says: pid, host, started, command."""
        try:
            return _parse_holder(read_regular(self.path, MAX_LOCK_BYTES))
        except (OSError, UnsafePathError):
            return None

    def __enter__(self) -> CellLock:
        """Hold the lock for the block; CellBusyError (one line naming the holder) when another
        live process holds it. A lock left by a killed run is free and taken over."""
        if not self.acquire():
            raise CellBusyError(self.path.stem, self.holder())
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class CellBusyError(OdnbenchError):
    """Another live odnbench process holds the cell's lock."""

    def __init__(self, key: str, holder: dict[str, Any] | None):
        self.key, self.holder = key, holder or {}
        h = self.holder
        since = time.strftime("%H:%M:%S", time.localtime(h["started"])) if isinstance(h.get("started"), (int, float)) else "?"
        super().__init__(f"cell {key} is being run by another odnbench process (pid {h.get('pid', '?')} on "
                         f"{h.get('host', '?')}, since {since}); wait for it to finish, then rerun (its result is "
                         "then used, not redone)")


def _parse_holder(data: bytes) -> dict[str, Any] | None:
    try:
        found = parse_json(data)
    except (UnicodeDecodeError, ValueError):
        return None
    return found if isinstance(found, dict) else None
