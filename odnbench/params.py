"""Declared parameters: :class:`Param`, a typed, range-checked setting that ``--set NAME=VALUE``
(a method's parameters, ``recipe.X``) parses and validates at plan time.

It lives below both :mod:`odnbench.contract` (a method declares its parameters with it) and
:mod:`odnbench.recipes` (each recipe field is one), so that neither imports the other to get it;
plugins import it from ``odnbench`` (or ``odnbench.contract``), as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from odnbench.errors import OdnbenchError

_PARAM_TYPES = (int, float, str, bool)


@dataclass(frozen=True)
class Param:
    """A declared method parameter, settable with ``--set METHOD.NAME=VALUE``.

    ``type`` is one of int, float, str, bool; ``choices`` restricts the value;
    ``nullable`` lets ``none`` stand for "not set" (e.g. a target filled in from a preset).
    ``ge``/``gt``/``le``/``lt`` declare the allowed range of a number (>=, >, <=, <), checked at
    plan time with a one-line error naming it; a float must also be finite (never nan or inf).
    ``omit_default``: while the parameter holds its default it is left out of the cell's config,
    and so of its key (the method still receives it in ``ctx.params``). For a parameter added to
    a method whose results are already stored: those cells keep their keys and resume.
    ``replaces_recipe``: the recipe field this parameter takes the place of for its method while it
    is set (not None), e.g. full's ``epochs`` for ``recipe.epochs``; planning then refuses a
    ``--set recipe.FIELD`` that only such methods would receive, naming the parameter to set instead.
    """

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    omit_default: bool = False
    sweep: bool = False
    replaces_recipe: str | None = None

    def __post_init__(self) -> None:
        if self.type not in _PARAM_TYPES:
            raise TypeError(f"Param {self.name!r}: type must be one of int, float, str, bool")
        bounds = (self.ge, self.gt, self.le, self.lt)
        if any(b is not None for b in bounds) and self.type not in (int, float):
            raise TypeError(f"Param {self.name!r}: ge/gt/le/lt apply to int and float parameters only")
        if self.default is not None and self.type in (int, float) and not isinstance(self.default, bool) \
                and isinstance(self.default, (int, float)) and self.range_problem(self.default):
            # A plugin's own default outside its declared range is a bug in the plugin: fail at import.
            raise ValueError(f"Param {self.name!r}: default {self.default!r} is outside its range {self.range_text()}")

    def range_text(self, where: str | None = None) -> str:
        """The allowed range in words, e.g. ``0 < odn.target <= 100`` ("" when none is declared)."""
        name = where or self.name
        low = f"{self.ge:g} <= " if self.ge is not None else f"{self.gt:g} < " if self.gt is not None else ""
        high = f" <= {self.le:g}" if self.le is not None else f" < {self.lt:g}" if self.lt is not None else ""
        if low and not high:  # "recipe.epochs >= 1" reads better than "1 <= recipe.epochs"
            return f"{name} {'>=' if self.ge is not None else '>'} {low.split()[0]}"
        return f"{low}{name}{high}" if (low or high) else ""

    def range_problem(self, value: float) -> bool:
        """True when a number lies outside the declared range (or is not finite)."""
        if isinstance(value, float) and not math.isfinite(value):
            return True
        return ((self.ge is not None and not value >= self.ge) or (self.gt is not None and not value > self.gt)
                or (self.le is not None and not value <= self.le) or (self.lt is not None and not value < self.lt))

    @property
    def comma_lists(self) -> bool:
        """Whether a comma in ``--set`` text separates several values (a sweep). Numbers, booleans and
        str parameters with ``choices`` or ``sweep`` never contain a comma; any other str parameter
        (``recipe.width=16,32,64,128``, a plugin's free text) keeps its commas, and is swept with ``;``."""
        return self.type is not str or self.choices is not None or self.sweep

    def split_values(self, text: str) -> list[str]:
        """The values one ``--set`` text names: ``;`` always separates values, ``,`` does where
        :attr:`comma_lists` (one value otherwise, the common case)."""
        if ";" in text:
            return [v.strip() for v in text.split(";")]
        if self.comma_lists and "," in text:
            return [v.strip() for v in text.split(",")]
        return [text]

    def parse(self, text: str, owner: str = "") -> Any:
        """Turn command-line text into a typed, validated value (one-line error otherwise)."""
        where = f"{owner}.{self.name}" if owner else self.name
        raw = text.strip()
        if self.nullable and raw.lower() in ("none", "null", ""):
            return None
        value: bool | int | float | str
        try:
            if self.type is bool:
                low = raw.lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                value = low in ("1", "true", "yes", "on")
            elif self.type is int:
                value = int(raw)
            elif self.type is float:
                value = float(raw)
            else:
                value = raw
        except ValueError:
            raise OdnbenchError(
                f"{where}={text!r} is not a valid {self.type.__name__}"
                + (" (true or false)" if self.type is bool else "")
                + (" (or none)" if self.nullable else "")
            ) from None
        return self.check(value, owner)

    def check(self, value: Any, owner: str = "") -> Any:
        where = f"{owner}.{self.name}" if owner else self.name
        if value is None and self.nullable:
            return None
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise OdnbenchError(f"{where} must be {self.type.__name__}, got {value!r}")
        if self.type is float and isinstance(value, float) and not math.isfinite(value):
            raise OdnbenchError(f"{where}={value!r} is not a finite number"
                                + (f"; allowed: {self.range_text(where)}" if self.range_text() else ""))
        if self.type in (int, float) and isinstance(value, (int, float)) and self.range_problem(value):
            raise OdnbenchError(f"{where}={value!r} is out of range; allowed: {self.range_text(where)}"
                                + (" (or none)" if self.nullable else ""))
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise OdnbenchError(f"{where}={value!r} is not allowed; choose one of: {allowed}")
        return value
