"""Progress for long work: per-epoch lines on stderr and tqdm bars with ETA (auto-off when not a TTY)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import contextmanager

#: ``on_epoch(done, cap, seconds)``: the trainer finished an epoch in ``seconds``, epoch ``done`` of at
#: most ``cap`` in its loop (0, 0 when the loop is the method's own and its length unknown).
EpochListener = Callable[[int, int, float], None]


class Progress:
    def __init__(self, prefix: str = "", quiet: bool = False, stream=None, on_epoch: EpochListener | None = None):
        self.prefix = prefix
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.on_epoch = on_epoch  # the grid's ETA listens (odnbench.scheduler), whatever the quietness

    def child(self, prefix: str) -> "Progress":
        return Progress(f"{self.prefix}{prefix}", self.quiet, self.stream, self.on_epoch)

    def listening(self, on_epoch: EpochListener | None) -> "Progress":
        """The same progress, with epochs reported to ``on_epoch``."""
        return Progress(self.prefix, self.quiet, self.stream, on_epoch)

    def epoch(self, done: int, cap: int, seconds: float) -> None:
        """The shared trainer finished an epoch (what the ETA of a running cell is measured from)."""
        if self.on_epoch is not None:
            self.on_epoch(done, cap, seconds)

    def line(self, message: str) -> None:
        if not self.quiet:
            print(f"{self.prefix}{message}", file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        """A warning: shown even with --quiet (something was repaired or ignored on the user's behalf)."""
        print(f"{self.prefix}warning: {message}", file=self.stream, flush=True)

    @contextmanager
    def bar(self, total: int, desc: str = "", unit: str = "batch"):
        """A tqdm bar with ETA; yields a callable ``advance(n=1)``."""
        if self.quiet:
            yield lambda n=1: None
            return
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=f"{self.prefix}{desc}", unit=unit, leave=False,
                   file=self.stream, disable=None, dynamic_ncols=True)
        try:
            yield bar.update
        finally:
            bar.close()
