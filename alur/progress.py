"""Progress on long work: a one-line bar with rate and ETA on stderr (redrawn on a terminal,
printed every few seconds into a log)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar on stderr with rate and ETA."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.started = label, total, time.monotonic()
        self._tty = sys.stderr.isatty()
        self._last = 0.0
        self._first: int | None = None  # the count at the first look: rate is what moved since

    def show(self, done: int, force: bool = False) -> None:
        # redraw at most 5 times a second on a terminal, every 5 s in a log
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self._tty else 5.0):
            return
        self._last = now
        if self._first is None:
            self._first, self.started = done, now
        elapsed = max(now - self.started, 1e-6)
        rate = (done - self._first) / elapsed
        eta = f"{(self.total - done) / rate:5.1f}s" if rate > 0 else "    --"
        filled = int(30 * done / self.total) if self.total else 30
        bar = "#" * filled + "-" * (30 - filled)
        line = f"  {self.label:<9} [{bar}] {done}/{self.total} {rate:7.1f}/s  eta {eta} "
        sys.stderr.write(f"\r{line}" if self._tty else f"{line}\n")
        sys.stderr.flush()

    def finish(self, done: int) -> None:
        self.show(done, force=True)
        if self._tty:
            sys.stderr.write("\n")
