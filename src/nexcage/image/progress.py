"""Download progress: one line redrawn on a terminal, nothing at all otherwise.

Written to stderr (stdout carries command output only, cli/output.py). Updates come from the
blob download threads, so counters are kept under a lock and the line is redrawn at most ten
times a second: the per-chunk cost is one lock and an addition.
"""

from __future__ import annotations

import _thread  # `threading` costs an import for nothing more than a lock
import os
import time

_REDRAW_SECONDS = 0.1


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


class Progress:
    """The silent base: counts bytes, shows nothing (``--quiet``, or stderr is not a TTY)."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self._lock = _thread.allocate_lock()
        self._sizes: dict[str, int] = {}
        self._done: dict[str, int] = {}
        self._started = time.monotonic()

    def expect(self, digest: str, size: int) -> None:
        with self._lock:
            self._sizes[digest] = size
            self._done.setdefault(digest, 0)

    def advance(self, digest: str, n: int, *, absolute: bool = False) -> None:
        with self._lock:
            self._done[digest] = n if absolute else self._done.get(digest, 0) + n
        self._changed()

    def _changed(self) -> None:
        pass

    def totals(self) -> tuple[int, int, int, int]:
        """(bytes done, bytes total, blobs done, blobs total)."""
        with self._lock:
            done = sum(min(self._done.get(d, 0), s) for d, s in self._sizes.items())
            total = sum(self._sizes.values())
            blobs = sum(1 for d, s in self._sizes.items() if self._done.get(d, 0) >= s)
            return done, total, blobs, len(self._sizes)

    def close(self) -> None:
        pass


class TerminalProgress(Progress):
    """``title  3/5 blobs  45.2 MiB / 120.0 MiB  12.3 MiB/s`` on one line of a terminal."""

    def __init__(self, title: str, fd: int = 2) -> None:
        super().__init__(title)
        self._fd = fd
        self._last = 0.0
        self._draw_lock = _thread.allocate_lock()

    def _changed(self) -> None:
        now = time.monotonic()
        if now - self._last >= _REDRAW_SECONDS and self._draw_lock.acquire(blocking=False):
            try:
                self._last = now
                self._draw()
            finally:
                self._draw_lock.release()

    def _draw(self, end: str = "") -> None:
        done, total, blobs, count = self.totals()
        elapsed = max(time.monotonic() - self._started, 1e-6)
        line = (
            f"{self.title}  {blobs}/{count} blobs  {_mib(done)} / {_mib(total)}"
            f"  {_mib(int(done / elapsed))}/s"
        )
        try:
            os.write(self._fd, ("\r\x1b[K" + line + end).encode())
        except OSError:
            pass  # a closed terminal must not fail the pull

    def close(self) -> None:
        with self._draw_lock:
            self._draw("\n")


def for_stderr(title: str, *, quiet: bool) -> Progress:
    """A progress display when stderr is a terminal and not ``quiet``, else the silent one."""
    if not quiet and os.isatty(2):
        return TerminalProgress(title)
    return Progress(title)
