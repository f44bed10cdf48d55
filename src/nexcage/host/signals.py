"""Signal names and numbers as runc accepts them: ``KILL``, ``SIGKILL``, ``9``, ``RTMIN+3``.

Uses the C module ``_signal`` for the host's numbers: ``import signal`` builds an ``IntEnum`` and
costs ~8 ms (DESIGN.md, hot path).
"""

from __future__ import annotations

import _signal

from nexcage.errors import UsageError

_NAMES = [
    "HUP",
    "INT",
    "QUIT",
    "ILL",
    "TRAP",
    "ABRT",
    "IOT",
    "BUS",
    "FPE",
    "KILL",
    "USR1",
    "SEGV",
    "USR2",
    "PIPE",
    "ALRM",
    "TERM",
    "STKFLT",
    "CHLD",
    "CLD",
    "CONT",
    "STOP",
    "TSTP",
    "TTIN",
    "TTOU",
    "URG",
    "XCPU",
    "XFSZ",
    "VTALRM",
    "PROF",
    "WINCH",
    "IO",
    "POLL",
    "PWR",
    "SYS",
]


def table() -> dict[str, int]:
    out: dict[str, int] = {}
    for name in _NAMES:
        num = getattr(_signal, "SIG" + name, None)
        if isinstance(num, int):
            out[name] = num
    return out


def parse(text: str) -> int:
    """Signal number for ``text``; raises UsageError for an unknown signal (runc wording)."""
    raw = text.strip()
    if raw.isdigit():
        num = int(raw)
        if 0 < num <= _signal.SIGRTMAX:
            return num
        raise UsageError(f"unknown signal {text!r}")
    name = raw.upper()
    if name.startswith("SIG"):
        name = name[3:]
    known = table()
    if name in known:
        return known[name]
    for base, anchor, sign in (("RTMIN", _signal.SIGRTMIN, 1), ("RTMAX", _signal.SIGRTMAX, -1)):
        if name == base:
            return anchor
        if name.startswith(base + ("+" if sign > 0 else "-")):
            offset = name[len(base) + 1 :]
            if offset.isdigit():
                num = anchor + sign * int(offset)
                if _signal.SIGRTMIN <= num <= _signal.SIGRTMAX:
                    return num
    raise UsageError(f"unknown signal {text!r}")


def name_of(num: int) -> str:
    for name, value in table().items():
        if value == num:
            return "SIG" + name
    return str(num)
