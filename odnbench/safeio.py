"""Reading untrusted files safely: what a results folder holds is data anyone can plant, so nothing
here follows a symbolic link, opens a FIFO or device, reads more than a stated bound, or hands JSON
nested deeper than a bound to the (recursive) parser. Used by :mod:`odnbench.store` for records and
locks and by :mod:`odnbench.modelio` for model files (docs/security.md)."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path

from odnbench.errors import OdnbenchError

#: Bounds on what is read from a results folder before anything is allocated for it: a record is a
#: few kB (8 MiB leaves room for long method_info), a model file at most a few hundred MB today.
MAX_RECORD_BYTES = 8 * 1024 * 1024
MAX_MODEL_BYTES = 4 * 1024 ** 3
MAX_LOCK_BYTES = 4096
#: A grid file (TOML) is a few kB; 1 MiB is far more than any board needs.
MAX_GRID_BYTES = 1024 * 1024
#: Deepest JSON nesting a record may have (real records nest 4-5 levels; Python's parser recurses).
MAX_JSON_DEPTH = 64


class UnsafePathError(OdnbenchError):
    """A path in a results folder is a symbolic link, not a regular file or folder, or too large."""


def lstat_or_none(path: Path):
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def is_real_dir(path: Path) -> bool:
    """A folder that is not a symbolic link (never followed: it could lead outside --results)."""
    st = lstat_or_none(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def is_real_file(path: Path) -> bool:
    """A regular file that is not a symbolic link (a FIFO or device is never opened)."""
    st = lstat_or_none(path)
    return st is not None and stat.S_ISREG(st.st_mode)


def refuse_link(path: Path, what: str = "") -> None:
    """UnsafePathError when ``path`` exists and is a symbolic link or not a folder."""
    st = lstat_or_none(path)
    if st is None:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(f"{path} is a symbolic link; odnbench never follows links inside a results folder "
                              f"(they could lead outside it): replace it with {what or 'a real folder'}")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{path} is {file_kind(st.st_mode)}, not a folder; move it away")


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISREG, "a file")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file, never following a symbolic link (``O_NOFOLLOW``), never opening a
    FIFO or device (``O_NONBLOCK`` then ``fstat``), and refusing more than ``limit`` bytes before
    reading any. UnsafePathError for each; FileNotFoundError when absent."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{path} is a symbolic link; it is never followed inside a results folder") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(f"{path} is {file_kind(st.st_mode)}, not a regular file; it is never read")
        if st.st_size > limit:
            raise UnsafePathError(f"{path} is {st.st_size:,} bytes, more than the {limit:,} allowed; not read")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:  # grew while read
            raise UnsafePathError(f"{path} is more than the {limit:,} bytes allowed; not read")
        return data
    finally:
        os.close(fd)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_depth_problem(text: str, limit: int = MAX_JSON_DEPTH) -> str | None:
    """Why ``text`` nests deeper than ``limit`` (None when it does not), counted without parsing
    (brackets outside strings), so that a hostile file never reaches the recursive parser."""
    depth = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > limit:
            return f"it nests deeper than {limit} levels"
    return None


def parse_json(data: bytes | str, strict: bool = False):
    """Parse a record: bounded depth (ValueError beyond :data:`MAX_JSON_DEPTH`); ``strict``: NaN and
    Infinity refused (they are not JSON)."""
    text = data.decode() if isinstance(data, bytes) else data
    deep = json_depth_problem(text)
    if deep:
        raise ValueError(deep)

    def refuse(name):
        raise ValueError(f"it holds {name}, which is not JSON (strict readers reject it)")

    return json.loads(text, parse_constant=refuse) if strict else json.loads(text)


def read_named_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a file a user names on the command line (``--grid FILE``): symbolic links are
    followed (the user chose the path), but only a regular file is read (a FIFO or device such as
    ``/dev/zero`` is refused without blocking), and one larger than ``limit`` is refused before any
    byte is read. One-line OdnbenchError naming ``what`` and the path."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise OdnbenchError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OdnbenchError(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file; name a file")
        if st.st_size > limit:
            raise OdnbenchError(f"{what} {path} is {st.st_size:,} bytes, more than the {limit:,} allowed")
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise OdnbenchError(f"{what} {path} is more than the {limit:,} bytes allowed")
        return data
    finally:
        os.close(fd)


def nesting_depth(value, limit: int) -> int:
    """How deep lists and dicts nest in ``value``, counted without recursion, up to ``limit + 1``."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            depth += 1
            deepest = max(deepest, depth)
            if depth > limit:
                return depth
            stack.extend((v, depth) for v in (item.values() if isinstance(item, dict) else item))
    return deepest
