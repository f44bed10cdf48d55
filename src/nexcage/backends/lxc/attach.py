"""``exec`` through ``lxc-attach``: the process document becomes the init helper's exec flags.

``lxc-attach --clear-env --elevated-privileges=CAP -u 0 -g 0`` enters the container
(namespaces, cgroup, LSM) and runs ``/dev/.nexcage/init exec ...`` as root there with its
capabilities intact: LXC would otherwise apply the container's ``lxc.cap.keep`` first, and a
container without CAP_SETGID could not exec as another user. The helper sets groups, gid, the
bounding set of the process's capabilities, uid, cwd, umask, no_new_privs and the exact
environment of the process document, then execs it, as runc's exec does. ``lxc-attach`` waits
for the process and exits with its status (verified with LXC 5.0.2), so:

- foreground: nexcage replaces itself with ``lxc-attach`` (status and signals pass through);
- ``--detach``: nexcage starts ``lxc-attach`` in its own session with a sync socket, waits for
  the helper's ``ready`` (or its error: a missing executable fails the ``exec`` itself, as with
  runc), passes a pty master to ``--console-socket``, and writes ``lxc-attach``'s pid to
  ``--pid-file``: engines reap that process and get the exec'd process's exit status from it;
- foreground with ``--console-socket``: started as with ``--detach``, then nexcage replaces
  itself with the helper's ``wait`` mode, which inherits ``lxc-attach`` as its child, exits with
  its status and forwards the signals it gets to the process (through a pidfd), as runc's
  foreground exec does.
"""

from __future__ import annotations

import _signal  # not `signal`: it builds an IntEnum (DESIGN.md, hot path)
import os

from nexcage.backends.translate.lxc_config import CAP_NUMBERS, INIT
from nexcage.errors import ExitCode, NexcageError, SpecError, UsageError, Violation

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from nexcage.backends.lxc import Lxc

VALUE_FLAGS = frozenset(
    {"--process", "--console-socket", "--pid-file", "--preserve-fds", "--cgroup",
     "--pidfd-socket"}
)  # fmt: skip
BOOL_FLAGS = frozenset({"--detach", "--tty"})
# What a foreground exec passes on to its process (runc's signal proxy forwards these too).
FORWARDED = (
    _signal.SIGHUP, _signal.SIGINT, _signal.SIGQUIT, _signal.SIGTERM, _signal.SIGUSR1,
    _signal.SIGUSR2, _signal.SIGWINCH,
)  # fmt: skip


class ExecFailed(NexcageError):
    """The process could not be started: runc exits 255 then (CONTRACTS.md §1.13)."""

    exit_code = ExitCode.EXEC_FAILED


class _Held:
    """Signals that arrive while a foreground exec is being set up: the helper's ``wait`` mode
    sends them on once it runs (the rest stay blocked across the execve until then)."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: list[int] = []
        for signum in FORWARDED:
            _signal.signal(signum, self)

    def __call__(self, signum: int, _frame: object) -> None:
        self.seen.append(signum)

    def handover(self) -> str:
        _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARDED)
        return ",".join(str(s) for s in self.seen) or "-"


def _options(options: Sequence[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    i = 0
    while i < len(options):
        flag = options[i]
        if flag in VALUE_FLAGS and i + 1 < len(options):
            parsed[flag] = options[i + 1]
            i += 2
        elif flag in BOOL_FLAGS:
            parsed[flag] = "1"
            i += 1
        else:
            raise UsageError(f"exec: {flag} is not supported by the lxc backend")
    for flag in ("--cgroup", "--pidfd-socket"):
        if flag in parsed:
            raise UsageError(f"exec: {flag} is not supported by the lxc backend")
    return parsed


def helper_args(process: dict[str, Any], *, sync_fd: int = -1, tty: bool = False) -> list[str]:
    """The helper's ``exec`` arguments for a runtime-spec process object."""
    args = process.get("args") or []
    if not args or not all(isinstance(a, str) and "\0" not in a for a in args):
        raise SpecError("process", [Violation("args", "must be non-empty strings without NUL")])
    out = [INIT, "exec"]
    if sync_fd >= 0:
        out += ["-s", str(sync_fd)]
    cwd = process.get("cwd")
    if isinstance(cwd, str) and cwd:
        out += ["-c", cwd]
    user = process.get("user") or {}
    out += ["-u", str(int(user.get("uid") or 0)), "-g", str(int(user.get("gid") or 0))]
    groups = user.get("additionalGids") or []
    if groups:
        out += ["-G", ",".join(str(int(g)) for g in groups)]
    caps = process.get("capabilities") or {}
    numbers = [str(CAP_NUMBERS[c]) for c in caps.get("bounding") or [] if c in CAP_NUMBERS]
    out += ["-b", ",".join(numbers)]
    if user.get("umask") is not None:
        out += ["-m", f"{int(user['umask']):o}"]
    if process.get("noNewPrivileges"):
        out.append("-n")
    if tty:
        out.append("-t")
        size = process.get("consoleSize") or {}
        if size.get("height") and size.get("width"):
            out += ["-r", str(int(size["height"])), "-C", str(int(size["width"]))]
    for entry in process.get("env") or []:
        if isinstance(entry, str) and "=" in entry and "\0" not in entry:
            out += ["-e", entry]
    return [*out, "--", *args]


def _read_process(path: str) -> dict[str, Any]:
    from nexcage import fastjson

    with open(path, "rb") as f:
        doc = fastjson.loads(f.read())
    if not isinstance(doc, dict):
        raise SpecError(path, [Violation("", "expected object")])
    return doc


def exec_argv(backend: Lxc, container_id: str, options: Sequence[str]) -> list[str]:
    from nexcage.backends.lxc import _which

    opts = _options(options)
    if "--process" not in opts:
        raise UsageError("exec: the lxc backend needs --process")
    process = _read_process(opts["--process"])
    attach = [
        _which("lxc-attach"), "-n", container_id, "-P", backend.root,
        "--clear-env", "--elevated-privileges=CAP", "-u", "0", "-g", "0", "--",
    ]  # fmt: skip
    console = opts.get("--console-socket")
    detach = "--detach" in opts
    if not detach and not console:
        # A terminal on our stdin makes lxc-attach allocate and proxy a pty itself.
        return [*attach, *helper_args(process)]
    preserve = int(opts.get("--preserve-fds") or 0)
    listen = int(os.environ.get("LISTEN_FDS", "0") or 0)
    preserved = list(range(3, 3 + listen + preserve))
    sync_fd = 3 + len(preserved)
    tty = bool(console) and bool(process.get("terminal"))
    argv = [*attach, *helper_args(process, sync_fd=sync_fd, tty=tty)]
    held = None if detach else _Held()
    pid, target = _spawn_detached(argv, preserved, sync_fd, console)
    if opts.get("--pid-file"):
        from nexcage.host import fs

        fs.write_pid_file(os.path.abspath(opts["--pid-file"]), pid)
    if held is None:
        return []
    from nexcage.backends.lxc import install

    helper, _monitor = install.find()
    try:
        pidfd = os.pidfd_open(target)
    except ProcessLookupError:
        pidfd = -1  # gone already: lxc-attach has its status, nothing to signal
    else:
        os.set_inheritable(pidfd, True)
    return [helper, "wait", str(pid), str(pidfd), held.handover()]


def _spawn_detached(
    argv: list[str], preserved: list[int], sync_fd: int, console: str | None
) -> tuple[int, int]:
    """Start ``lxc-attach`` in its own session; return its pid and the exec'd process's."""
    from nexcage.backends.lxc import sync
    from nexcage.host import run as host_run

    ours, theirs = sync.channel()
    try:
        child = theirs.fileno()
        if child == sync_fd:
            child = os.dup(child)
        pid = host_run.spawn(argv, pass_fds=preserved, dup2=[(child, sync_fd)], setsid=True)
        if child != theirs.fileno():
            os.close(child)
    finally:
        theirs.close()
    try:
        target, master = sync.wait_ready(ours, pid)
    except sync.ChildFailed as exc:
        _reap(pid)
        message = exc.message or "exec failed: lxc-attach could not start the process"
        raise ExecFailed(message) from None
    finally:
        ours.close()
    try:
        if master >= 0 and console:
            sync.send_console(console, master)
    finally:
        if master >= 0:
            os.close(master)
    return pid, target


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
