"""The create/exec handshake with nexcage's init helper, over an inherited socket.

nexcage makes a socketpair, hands one end to the child it spawns (the LXC monitor, or
``lxc-attach``) at a fixed fd number; LXC passes inherited fds on to the container's init and to
attached processes, so the helper inside the container writes to it:

- ``ready``: set up, blocked before the user's process. With ``SO_PASSCRED`` on our end the
  kernel attaches the sender's credentials, its pid translated into *our* pid namespace: that is
  the container init's host pid, with no ``lxc-info`` round trip. A pty master (process.terminal)
  rides along as ``SCM_RIGHTS``.
- ``error <message>``: it could not (``executable file not found in $PATH``, ...).

EOF before either means the container died during set-up (LXC's own log says why).

``_socket`` rather than ``socket``: the latter imports ``enum`` and ``selectors`` (DESIGN.md).
"""

from __future__ import annotations

import _socket
import os
import time

from nexcage.errors import HostError, NexcageError

_UCRED = 12  # struct ucred: pid, uid, gid (3 x int32)


class ChildFailed(NexcageError):
    """The container's helper reported an error, or the container died during set-up."""


def channel() -> tuple[_socket.socket, _socket.socket]:
    """(our end, the child's end); our end receives credentials."""
    ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
    ours.setsockopt(_socket.SOL_SOCKET, _socket.SO_PASSCRED, 1)
    return ours, theirs


def wait_ready(sock: _socket.socket, child: int, timeout: float = 60.0) -> tuple[int, int]:
    """Wait for the helper's message; return (its host pid, pty master fd or -1).

    ``child`` is the process we spawned (monitor or lxc-attach): if it exits without a word,
    EOF arrives (every other holder of the socket is its descendant).
    """
    deadline = time.monotonic() + timeout
    sock.settimeout(0.25)
    chunks: list[bytes] = []
    pid = 0
    fds: list[int] = []
    while True:
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(
                4096, _socket.CMSG_SPACE(_UCRED) + _socket.CMSG_SPACE(4 * 4)
            )
        except TimeoutError:
            if time.monotonic() > deadline:
                raise HostError(
                    f"no word from the container's init within {timeout:.0f}s"
                ) from None
            continue
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        for level, kind, payload in ancillary:
            if level != _socket.SOL_SOCKET:
                continue
            if kind == _socket.SCM_CREDENTIALS and len(payload) >= _UCRED and not pid:
                pid = int.from_bytes(payload[:4], "little", signed=True)
            elif kind == _socket.SCM_RIGHTS:
                for i in range(0, len(payload) - len(payload) % 4, 4):
                    fds.append(int.from_bytes(payload[i : i + 4], "little", signed=True))
        if data:
            chunks.append(data)
        text = b"".join(chunks).decode("utf-8", "replace")
        if text.startswith("ready") or not data:
            break
        if text.startswith("error ") and not data.endswith(b"\0"):
            # The helper writes its error in one write and exits: read until EOF.
            continue
    if text.startswith("ready") and pid > 0:
        for extra in fds[1:]:
            os.close(extra)
        return pid, fds[0] if fds else -1
    for fd in fds:
        os.close(fd)
    if text.startswith("error "):
        raise ChildFailed(text[len("error ") :].strip())
    raise ChildFailed("")


def send_console(path: str, fd: int) -> None:
    """Send the pty master to an engine's console socket (runc: utils.SendFile)."""
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
    try:
        sock.settimeout(30)
        sock.connect(path)
        rights = [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, "little"))]
        sock.sendmsg([b"/dev/ptmx"], rights)
    except OSError as exc:
        raise HostError(f"console socket {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
