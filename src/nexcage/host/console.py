"""Console sockets (CONTRACTS.md §1.16): receive a pty master over AF_UNIX with SCM_RIGHTS, and
proxy it to our own stdio for foreground ``run`` with ``process.terminal: true``."""

from __future__ import annotations

import os
import socket

from nexcage.errors import HostError


class ConsoleSocket:
    """A listening AF_UNIX socket in a private temp dir; the runtime sends the master fd to it."""

    def __init__(self) -> None:
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="nexcage-pty-")
        self.path = os.path.join(self.dir, "pty.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)

    def receive(self, timeout: float = 30.0) -> int:
        """Accept one connection and return the first fd it carries (payload ignored)."""
        self.sock.settimeout(timeout)
        try:
            conn, _ = self.sock.accept()
        except TimeoutError:
            raise HostError("no console received from the runtime within 30 s") from None
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 4)
        if not fds:
            raise HostError("the runtime connected to the console socket but sent no fd")
        for extra in fds[1:]:
            os.close(extra)
        return fds[0]

    def close(self) -> None:
        self.sock.close()
        for path in (self.path,):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os.rmdir(self.dir)


def _copy_winsize(src: int, dst: int) -> None:
    import fcntl
    import termios

    try:
        size = fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(dst, termios.TIOCSWINSZ, size)
    except OSError:
        pass


def proxy(master: int) -> None:
    """Copy stdin -> master and master -> stdout until the container side hangs up."""
    import select
    import termios
    import tty

    stdin, stdout = 0, 1
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
        _copy_winsize(stdin, master)
    poller = select.poll()
    poller.register(master, select.POLLIN)
    stdin_open = True
    try:
        poller.register(stdin, select.POLLIN)
    except (OSError, ValueError):
        stdin_open = False
    try:
        while True:
            for fd, event in poller.poll():
                if fd == master:
                    try:
                        data = os.read(master, 65536)
                    except OSError:  # EIO: the slave side closed
                        return
                    if not data:
                        return
                    os.write(stdout, data)
                elif stdin_open:
                    data = os.read(stdin, 65536) if event & select.POLLIN else b""
                    if not data:
                        poller.unregister(stdin)
                        stdin_open = False
                        continue
                    os.write(master, data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
        os.close(master)
