"""The only writer of stdout. Command output only: logs and errors go to stderr or --log."""

from __future__ import annotations

import os

from nexcage import fastjson

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def write(text: str) -> None:
    data = text.encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def json(obj: Any, *, indent: int | None = 2) -> None:
    write(fastjson.dumps(obj, indent=indent) + "\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns laid out like runc's tabwriter (min width 12, padding 3)."""
    widths = [max(12, len(h) + 3) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell) + 3)
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("".join(cells) + row[-1])
    write("\n".join(lines) + "\n")
