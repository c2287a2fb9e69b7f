"""Number and text formatting shared by every rendering of a board (markdown, the terminal), and
the escaping of stored text for each medium: whatever a result.json says (an env string, a method
name) is data, never markup, a spreadsheet formula or a terminal control sequence."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: C0 and C1 control characters but tab and newline, and DEL: ESC starts terminal escape sequences,
#: BEL rings, CR overwrites a line. Dropped from anything printed to a terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: Every control character, tab and newline too: none belongs in a table cell or a CSV field.
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
#: A CSV cell starting with one of these is a formula to Excel, LibreOffice and Sheets (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: What starts a block in markdown when it opens a line: a heading, a list item, a setext underline.
_BLOCK_START = re.compile(r"^(?:#{1,6}|[-+]|\d{1,9}[.)])(?=\s|$)|^=+$")

# --- The escaping of stored text: one function per medium. Every string that comes from a
# result.json (a method name, a cell folder, an env string) reaches a page through md_text (or
# md_code inside a code span), a CSV through csv_cell and a terminal through terminal_text.


def terminal_text(text: object) -> str:
    """For a terminal: ``text`` without control characters (ESC, BEL, CR, ...), tab and newline kept."""
    return _CONTROL.sub("", str(text))


def csv_cell(value: Any) -> Any:
    """For a CSV field: no control character (each becomes a space: no escape sequence reaches a
    terminal that prints the file, no line break splits a record), and no formula: text starting
    with = + - @ gets a leading ``'``, as OWASP recommends. Numbers are left as they are (a negative
    number is not a formula)."""
    if not isinstance(value, str):
        return value
    value = _ANY_CONTROL.sub(" ", value)
    return "'" + value if value.startswith(_FORMULA_START) else value


def md_text(text: object) -> str:
    """For markdown (a table cell, a list item, a sentence, a heading): one line, no control
    characters, markup escaped (``\\ ` * _ [ ] < > |`` and what would open a block at a line's start)."""
    text = " ".join(_ANY_CONTROL.sub(" ", str(text)).split())
    for ch in "\\`*_[]<>|":
        text = text.replace(ch, "\\" + ch)
    # "1." -> "1\.", "#" -> "\#", "-" -> "\-": the line no longer opens a heading or a list
    return _BLOCK_START.sub(lambda m: m.group(0)[:-1] + "\\" + m.group(0)[-1] if m.group(0)[-1] in ".)"
                            else "\\" + m.group(0), text)


def md_code(text: object) -> str:
    """Stored text as a markdown code span: one line, no control characters, no backtick (a code
    span cannot escape one)."""
    return "`" + " ".join(_ANY_CONTROL.sub(" ", str(text)).replace("`", "").split()) + "`"


def md_list(values: Iterable[object] | None) -> str:
    """:func:`fmt_list` with each stored value escaped for markdown."""
    return ", ".join(md_text(v) for v in values) if values else "?"


def md_text_light(text: str) -> str:
    """Our own markdown (fixed sentences with backticks or bold, no stored text): only stray HTML stopped."""
    return text.replace("<", "&lt;").replace(">", "&gt;")


def fmt_value(v: object) -> str:
    if v is None:
        return "none"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def fmt_int(v: float | None) -> str:
    return "–" if v is None else f"{round(v):,}"


def fmt_macs(v: float | None, spec: str = ".2f") -> str:
    """4.46 M, 960.00 K, 6.17 T (training compute); ``spec`` formats the number before the unit (``.3g`` in the terminal)."""
    if v is None:
        return "–"
    for unit, div in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if v >= div:
            return f"{v / div:{spec}} {unit}"
    return f"{v:.0f}"


def fmt_x(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f}×"


def fmt_f(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def fmt_epochs(v: float | None) -> str:
    return "–" if v is None else f"{v:g}" if float(v).is_integer() else f"{v:.1f}"


def fmt_depths(depths: Sequence[int] | None) -> str:
    if not depths:
        return "–"
    return str(depths[0]) if len(depths) == 1 else f"{min(depths)}–{max(depths)}"


def fmt_converged(c: dict[str, int] | None) -> str:
    """``{"yes", "no", "unknown", "n"}`` seed counts: yes, no, k/n, or – when no result says."""
    if not c or not c.get("n"):
        return "–"
    if c["unknown"] == c["n"]:
        return "–"
    if c["yes"] == c["n"]:
        return "yes"
    if c["no"] == c["n"]:
        return "no"
    unknown = f" ({c['unknown']} not said)" if c["unknown"] else ""
    return f"{c['yes']}/{c['n']}{unknown}"


def fmt_span(values: Iterable[object] | None, fmt: Callable[[float], str]) -> str:
    """One value, or min–max of the numbers in ``values``."""
    nums = [v for v in values or [] if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not nums:
        return "–"
    lo, hi = min(nums), max(nums)
    a, b = fmt(lo), fmt(hi)
    return a if a == b else f"{a}–{b}"


def fmt_list(values: Iterable[object] | None) -> str:
    return ", ".join(map(str, values)) if values else "?"
