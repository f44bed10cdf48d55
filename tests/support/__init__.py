"""Helpers shared by tests, benchmarks and the README demo.

`tests/` is on ``sys.path`` while pytest runs (``tests/conftest.py`` is a rootdir conftest), so
``from support import require_tool`` and ``from support.busybox import make_bundle`` work in any
test module. Outside pytest, put ``<repo>/tests`` on ``sys.path`` first.

Strict mode: when ``NEXCAGE_TEST_STRICT=1`` or ``CI`` is set (any non-empty value other than
``0``/``false``), a test that cannot run because the machine lacks something (a tool, root, a
kernel feature) **fails** instead of skipping, so CI cannot go green by testing nothing.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from typing import NoReturn, TypeVar

import pytest

T = TypeVar("T")

_FALSE = {"", "0", "false", "no", "off"}


def strict_mode() -> bool:
    """True when missing prerequisites must fail tests instead of skipping them."""
    for var in ("NEXCAGE_TEST_STRICT", "CI"):
        if os.environ.get(var, "").strip().lower() not in _FALSE:
            return True
    return False


def missing(reason: str) -> NoReturn:
    """Skip the current test because a prerequisite is missing; fail instead in strict mode."""
    if strict_mode():
        pytest.fail(f"{reason} (strict mode: NEXCAGE_TEST_STRICT=1 or CI is set)", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """Absolute path of the executable ``name`` (a command name or a path), else `missing`."""
    if os.sep in name:
        if os.path.isfile(name) and os.access(name, os.X_OK):
            return os.path.abspath(name)
        missing(f"required tool {name} is not an executable file")
    found = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if found is None:
        missing(f"required tool {name!r} not found on PATH")
    return found


def require_root() -> None:
    """`missing` unless running as root."""
    if os.geteuid() != 0:
        missing("needs root")


def wait_for(
    condition: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``condition`` until it returns a truthy value and return that value.

    Bounded by ``timeout`` seconds; raises ``TimeoutError`` naming ``what`` (with the last
    value seen) instead of hanging. The interval backs off to at most 0.2 s.
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"timed out after {timeout:.1f}s waiting for {what} (last: {last!r})"
            )
        time.sleep(interval)
        interval = min(interval * 1.5, 0.2)


def pids_with_arg(needle: str) -> list[int]:
    """Pids of live processes one of whose argv words contains ``needle`` (not ourselves).

    Used to find what an engine left behind (conmon, containerd shims) by a path that only
    our private instance uses, so teardown can end exactly those processes by pid.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(needle.encode() in word for word in argv):
            found.append(int(entry))
    return found


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def end_pid(pid: int, *, timeout: float = 5.0) -> None:
    """SIGTERM ``pid``, wait up to ``timeout`` s for it to go, then SIGKILL it (and wait)."""
    for sig, limit in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                # Reap it if it is our child; otherwise just watch /proc.
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:
                pass
            if not pid_alive(pid):
                return
            time.sleep(0.02)


def run_cmd(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 60.0,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (no shell), capture text output, bounded by ``timeout``.

    stdin is ``/dev/null`` unless ``input`` is given. With ``check``, a non-zero exit raises an
    AssertionError that shows the argv, the status and the output tails, which is what a failing
    engine test needs to be diagnosed from the report alone. A timeout always raises.
    """
    try:
        proc = subprocess.run(
            argv,
            env=env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"timed out after {timeout}s: {shlex.join(argv)}\n"
            f"stdout: {_tail(exc.stdout)}\nstderr: {_tail(exc.stderr)}"
        ) from None
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit status {proc.returncode}: {shlex.join(argv)}\n"
            f"stdout: {_tail(proc.stdout)}\nstderr: {_tail(proc.stderr)}"
        )
    return proc


def _tail(text: str | bytes | None, limit: int = 2000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text if len(text) <= limit else "…" + text[-limit:]


def mounts_under(path: str) -> list[str]:
    """Mount points at or below ``path`` (from /proc/self/mountinfo), deepest first."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape_mountinfo(line.split()[4])
            if point == prefix[:-1] or point.startswith(prefix):
                found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def _unescape_mountinfo(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def unmount_under(path: str) -> list[str]:
    """Unmount everything at or below ``path`` (deepest first; lazily if busy). Returns them."""
    points = mounts_under(path)
    for point in points:
        if run_cmd(["umount", point], check=False, timeout=30).returncode != 0:
            run_cmd(["umount", "-l", point], check=False, timeout=30)
    return points
