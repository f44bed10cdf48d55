"""/proc/<pid>/mountinfo fields (proc(5))."""

from __future__ import annotations


def unescape(field: str) -> str:
    """Decode a mountinfo path field: space, tab, newline and backslash appear as \\ooo."""
    if "\\" not in field:
        return field
    out = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
