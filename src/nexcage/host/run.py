"""The one place nexcage starts other programs (STYLE.md: one subprocess choke point).

- argv lists only, never a shell; paths through ``os.fspath``.
- A minimal explicit environment: ``LANG=C.UTF-8``, ``PATH`` and the variables that runtimes
  honour from their caller (``LISTEN_FDS``, ``NOTIFY_SOCKET``, ``XDG_RUNTIME_DIR``, ...).
- Lifecycle calls inherit stdio: with ``process.terminal: false`` the container's process gets the
  runtime's fds 0-2, so holding a pipe to them would make us wait for the container's exit.
- Queries capture stdout/stderr; a non-zero exit raises ``CommandFailed(argv, rc, stderr_tail)``.
- Secrets given in ``redact`` never reach the log.

``subprocess`` costs ~22 ms to import here (DESIGN.md), so this uses ``os.posix_spawn`` and
``select.poll`` directly.
"""

from __future__ import annotations

import os

from nexcage import log
from nexcage.errors import CommandFailed, HostError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Variables a runtime reads from its caller (runc: LISTEN_FDS/LISTEN_PID for socket activation,
# NOTIFY_SOCKET for sd_notify proxying, XDG_RUNTIME_DIR for rootless state, TMPDIR for temp files).
PASSTHROUGH = (
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "XDG_RUNTIME_DIR",
    "TMPDIR",
    "TERM",
    "HOME",
    "USER",
)
STDERR_TAIL = 4000


class Completed:
    __slots__ = ("argv", "returncode", "stderr", "stdout")

    def __init__(self, argv: list[str], returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {"LANG": "C.UTF-8", "PATH": os.environ.get("PATH") or DEFAULT_PATH}
    for key in PASSTHROUGH:
        value = os.environ.get(key)
        if value is not None:
            env[key] = value
    if extra:
        env.update(extra)
    return env


def _show(argv: Sequence[str], redact: Iterable[str]) -> str:
    text = " ".join(argv)
    for secret in redact:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def _spawn(
    argv: list[str],
    env: dict[str, str],
    actions: list[tuple[int, ...]],
    *,
    setsid: bool = False,
) -> int:
    try:
        return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=setsid)
    except OSError as exc:
        raise CommandFailed(
            argv, 127, "", message=f"cannot run {argv[0]}: {exc.strerror}"
        ) from None


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            continue
        return os.waitstatus_to_exitcode(status)


def run(
    argv: Sequence[str],
    *,
    capture: bool = False,
    input: bytes | None = None,
    pass_fds: Sequence[int] = (),
    env: Mapping[str, str] | None = None,
    check: bool = True,
    redact: Iterable[str] = (),
) -> Completed:
    """Run argv to completion.

    ``capture=False`` (lifecycle calls) inherits fds 0-2; ``capture=True`` (queries) collects
    stdout and stderr. ``input`` feeds stdin through a pipe. ``pass_fds`` stay open in the child
    (``--preserve-fds``). A negative return code means death by that signal.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("+ " + _show(args, redact))
    environ = environment(env)
    for fd in pass_fds:
        os.set_inheritable(fd, True)
    if "LISTEN_FDS" in environ:
        # systemd socket activation: LISTEN_PID must name the process that consumes the fds, which
        # posix_spawn cannot know in advance; fork+exec sets it in the child.
        return _run_forked(args, environ, capture=capture, input=input, check=check)
    actions: list[tuple[int, ...]] = []
    to_close: list[int] = []
    out_r = err_r = in_w = -1
    try:
        if input is not None:
            in_r, in_w = os.pipe()
            actions += [(os.POSIX_SPAWN_DUP2, in_r, 0)]
            to_close.append(in_r)
        if capture:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            actions += [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
            to_close += [out_w, err_w]
        pid = _spawn(args, environ, actions)
    finally:
        for fd in to_close:
            os.close(fd)
    stdout = stderr = b""
    if in_w >= 0 or capture:  # lifecycle calls have nothing to copy: no `select` import
        stdout, stderr = _communicate(in_w, input, out_r, err_r)
    code = _wait(pid)
    result = Completed(args, code, stdout, stderr)
    if check and code != 0:
        tail = stderr[-STDERR_TAIL:].decode("utf-8", "replace")
        raise CommandFailed(args, code, tail)
    return result


def _communicate(in_w: int, data: bytes | None, out_r: int, err_r: int) -> tuple[bytes, bytes]:
    import select

    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    poller = select.poll()
    pending = data or b""
    if in_w >= 0:
        if pending:
            poller.register(in_w, select.POLLOUT)
        else:
            os.close(in_w)
            in_w = -1
    for fd in (out_r, err_r):
        if fd >= 0:
            poller.register(fd, select.POLLIN)
    open_fds = {fd for fd in (in_w, out_r, err_r) if fd >= 0}
    while open_fds:
        for fd, _event in poller.poll():
            if fd == in_w:
                try:
                    written = os.write(fd, pending[:65536])
                except BrokenPipeError:
                    written = len(pending)
                pending = pending[written:]
                if not pending:
                    poller.unregister(fd)
                    os.close(fd)
                    open_fds.discard(fd)
                continue
            block = os.read(fd, 65536)
            if block:
                chunks[fd].append(block)
            else:
                poller.unregister(fd)
                os.close(fd)
                open_fds.discard(fd)
    return b"".join(chunks.get(out_r, [])), b"".join(chunks.get(err_r, []))


def _run_forked(
    args: list[str], environ: dict[str, str], *, capture: bool, input: bytes | None, check: bool
) -> Completed:
    in_r = in_w = out_r = out_w = err_r = err_w = -1
    if input is not None:
        in_r, in_w = os.pipe()
    if capture:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            for src, dst in ((in_r, 0), (out_w, 1), (err_w, 2)):
                if src >= 0:
                    os.dup2(src, dst)
            environ["LISTEN_PID"] = str(os.getpid())
            os.execve(args[0], args, environ)
        finally:
            os._exit(127)
    for fd in (in_r, out_w, err_w):
        if fd >= 0:
            os.close(fd)
    stdout, stderr = _communicate(in_w, input, out_r, err_r)
    code = _wait(pid)
    if check and code != 0:
        raise CommandFailed(args, code, stderr[-STDERR_TAIL:].decode("utf-8", "replace"))
    return Completed(args, code, stdout, stderr)


def spawn(
    argv: Sequence[str],
    *,
    pass_fds: Sequence[int] = (),
    dup2: Sequence[tuple[int, int]] = (),
    setsid: bool = False,
) -> int:
    """Start argv with inherited stdio and return its pid (the caller waits).

    ``dup2`` maps (our fd, child fd) pairs, e.g. a sync socket to the fd after the preserved
    ones; ``setsid`` puts a long-lived child (the LXC monitor) in its own session, away from
    the caller's terminal signals.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("+ " + " ".join(args))
    for fd in pass_fds:
        os.set_inheritable(fd, True)
    actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, src, dst) for src, dst in dup2]
    return _spawn(args, environment(), actions, setsid=setsid)


def wait(pid: int) -> int:
    """Wait for a child (or, as a subreaper, an adopted orphan); return its exit code."""
    return _wait(pid)


def replace(argv: Sequence[str], *, pass_fds: Sequence[int] = ()) -> None:
    """Become argv (``execve``): for verbs whose output and exit status are the backend's own.

    Used by foreground ``exec`` so that signals and the exit status reach the caller unchanged.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("+ exec " + " ".join(args))
    for fd in pass_fds:
        os.set_inheritable(fd, True)
    environ = environment()
    if "LISTEN_FDS" in environ:
        environ["LISTEN_PID"] = str(os.getpid())
    log.close()
    try:
        os.execve(args[0], args, environ)
    except OSError as exc:
        raise HostError(f"cannot run {args[0]}: {exc.strerror}") from None
