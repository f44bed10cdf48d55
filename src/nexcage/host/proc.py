"""Process identity: a pid plus its start time, so a recycled pid is never mistaken for ours.

runc records ``init_process_start`` for the same reason. The start time is field 22 of
``/proc/<pid>/stat`` (clock ticks since boot), parsed after the last ``)`` because the command
name may contain spaces and parentheses.
"""

from __future__ import annotations

import os


def start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, or None if it does not exist."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    # fields[0] is field 3 (state); field 22 (starttime) is fields[19].
    if len(fields) < 20:
        return None
    if fields[0] in (b"Z", b"X"):
        return None  # a zombie has exited: the container's process is gone
    return int(fields[19])


def alive(pid: int, started: int | None) -> bool:
    """True if ``pid`` exists, is not a zombie, and (if known) started at ``started``."""
    now = start_time(pid)
    if now is None:
        return False
    return started is None or now == started


def children_of(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
