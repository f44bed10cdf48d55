"""Pull progress: silent unless asked for a terminal; one redrawn line when shown."""

from __future__ import annotations

import os

from nexcage.image.progress import Progress, TerminalProgress, for_stderr


def test_counts() -> None:
    p = Progress("x")
    p.expect("a", 100)
    p.expect("b", 50)
    p.advance("a", 60)
    p.advance("b", 50)
    assert p.totals() == (110, 150, 1, 2)
    p.advance("a", 100, absolute=True)
    assert p.totals() == (150, 150, 2, 2)


def test_quiet_or_not_a_terminal_is_silent() -> None:
    assert type(for_stderr("x", quiet=True)) is Progress
    if not os.isatty(2):
        assert type(for_stderr("x", quiet=False)) is Progress


def test_terminal_line() -> None:
    r, w = os.pipe()
    try:
        p = TerminalProgress("host/app:1", fd=w)
        p.expect("a", 2 << 20)
        p.advance("a", 1 << 20)
        p.advance("a", 1 << 20)
        p.close()
        os.close(w)
        w = -1
        text = os.read(r, 65536).decode()
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    last = text.split("\r\x1b[K")[-1]
    assert last.startswith("host/app:1  1/1 blobs  2.0 MiB / 2.0 MiB  ")
    assert last.endswith("MiB/s\n")
