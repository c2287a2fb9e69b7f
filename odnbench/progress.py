"""Progress for long work: per-epoch lines on stderr and tqdm bars with ETA (auto-off when not a TTY)."""

from __future__ import annotations

import sys
from contextlib import contextmanager


class Progress:
    def __init__(self, prefix: str = "", quiet: bool = False, stream=None):
        self.prefix = prefix
        self.quiet = quiet
        self.stream = stream or sys.stderr

    def child(self, prefix: str) -> Progress:
        return Progress(f"{self.prefix}{prefix}", self.quiet, self.stream)

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
