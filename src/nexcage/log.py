"""nexcage's logger: a few lines of our own instead of ``logging`` (31 ms, DESIGN.md hot path).

Formats follow runc, whose log engines read (CONTRACTS.md §1.3, §1.17):

- ``json``: one logrus ``JSONFormatter`` object per line, keys exactly ``level``, ``msg``,
  ``time`` (sorted, as logrus writes them):
  ``{"level":"error","msg":"...","time":"2026-01-01T00:00:00.123456789Z"}``.
  containerd decodes ``time`` into a Go ``time.Time``, so it must be valid RFC 3339.
- ``text``: logrus ``TextFormatter`` without a TTY: ``time="..." level=error msg="..."``.

``--log FILE`` is opened ``O_CREAT|O_WRONLY|O_APPEND`` mode 0644 like runc (without runc's
``O_SYNC``: every line is a single ``write(2)`` on an append-mode descriptor, which readers see
at once; durability across a host crash buys an engine nothing). Without ``--log`` lines go to
stderr in text form (as crun does), warnings and errors only unless ``--debug``.

Logging never raises once set up: a full disk must not turn a successful ``create`` into a failure.
"""

from __future__ import annotations

import os
import time

from nexcage.errors import HostError, UsageError
from nexcage.fastjson import dumps, loads

DEBUG = "debug"
INFO = "info"
WARNING = "warning"
ERROR = "error"
LEVELS = {DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40}
FORMATS = ("text", "json")

_STDERR = 2


class _State:
    """Where and how lines go; one instance, mutated by setup()/close()/set_context()."""

    __slots__ = ("context", "fd", "fmt", "threshold")

    def __init__(self) -> None:
        self.fd = _STDERR
        self.fmt = "text"
        self.threshold = LEVELS[WARNING]
        self.context: str | None = None


_state = _State()
# logrus TextFormatter.needsQuoting: these characters leave a value unquoted.
_BARE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/@^+")


def setup(path: str | None, fmt: str, debug: bool, level: str | None = None) -> None:
    """Configure the logger from ``--log``, ``--log-format``, ``--debug`` (and ``--log-level``).

    The threshold is debug with ``debug``, else ``level``, else info for a log file and warning
    for stderr. Raises ``UsageError`` for a bad format or level, ``HostError`` when the log file
    cannot be opened (runc fails too).
    """
    if fmt not in FORMATS:
        raise UsageError(f"invalid log-format: {fmt}")  # runc's wording
    if level is not None and level not in LEVELS:
        raise UsageError(f"invalid log-level: {level}")
    fd = _STDERR
    if path:
        flags = os.O_CREAT | os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise HostError(f"open log file {path}: {exc.strerror}") from None
    close()
    _state.fd = fd
    _state.fmt = fmt
    if debug:
        _state.threshold = LEVELS[DEBUG]
    elif level is not None:
        _state.threshold = LEVELS[level]
    else:
        _state.threshold = LEVELS[INFO] if fd != _STDERR else LEVELS[WARNING]


def close() -> None:
    """Close the log file (if any) and go back to stderr."""
    if _state.fd != _STDERR:
        try:
            os.close(_state.fd)
        except OSError:
            pass
    _state.fd = _STDERR
    _state.fmt = "text"
    _state.threshold = LEVELS[WARNING]


def to_file() -> bool:
    """True when lines go to a ``--log`` file: the CLI then also prints errors to stderr (runc)."""
    return _state.fd != _STDERR


def enabled(level: str) -> bool:
    return LEVELS[level] >= _state.threshold


def set_context(container_id: str | None) -> None:
    """Name the container in text lines (``id=...``). JSON lines stay ``{level,msg,time}``."""
    _state.context = container_id


def rfc3339(ns: int | None = None) -> str:
    """UTC RFC 3339 with nanoseconds, as Go's ``time.RFC3339Nano`` (without trimming zeros)."""
    if ns is None:
        ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def _quote(value: str) -> str:
    if value and not set(value) - _BARE:
        return value
    return dumps(value)  # close to Go's %q for what we log; always one line


def format_line(level: str, msg: str, fmt: str, ns: int | None = None) -> str:
    """One log line (with its newline) in ``fmt``."""
    now = rfc3339(ns)
    if fmt == "json":
        return dumps({"level": level, "msg": msg, "time": now}) + "\n"
    line = f"time={_quote(now)} level={level} msg={_quote(msg)}"
    if _state.context is not None:
        line += f" id={_quote(_state.context)}"
    return line + "\n"


def _emit(level: str, msg: str) -> None:
    if LEVELS[level] < _state.threshold:
        return
    fd = _state.fd
    data = format_line(level, msg, _state.fmt if fd != _STDERR else "text").encode(
        "utf-8", "backslashreplace"
    )
    try:
        while data:
            n = os.write(fd, data)
            data = data[n:]
    except OSError:
        pass


def debug(msg: str) -> None:
    _emit(DEBUG, msg)


def info(msg: str) -> None:
    _emit(INFO, msg)


def warning(msg: str) -> None:
    _emit(WARNING, msg)


def error(msg: str) -> None:
    _emit(ERROR, msg)


# A backend's log can grow over a long-lived container; its last error is near the end.
_TAIL = 1 << 20


def last_error_line(path: str) -> str | None:
    """The ``msg`` of the last ``"level": "error"`` JSON object in a log file, else None.

    Reads like containerd's shim does (CONTRACTS.md §1.17) but tolerates garbage: lines that are
    not JSON objects, or lack a string ``msg``, are skipped. Only the last MiB is read.
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL))
            data = f.read()
    except OSError:
        return None
    found: str | None = None
    for line in data.split(b"\n"):
        raw = line.strip()
        if not raw.startswith(b"{"):
            continue
        try:
            obj = loads(raw)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict) and obj.get("level") == ERROR:
            msg = obj.get("msg")
            if isinstance(msg, str):
                found = msg
    return found
