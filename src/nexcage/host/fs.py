"""Filesystem primitives: atomic writes, per-container locks, tree removal, pid files.

``shutil`` and ``tempfile`` pull in ``re``/``random`` (DESIGN.md, hot path), so the few pieces we
need are written here against ``os`` directly.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType


def _tmp_name(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.{os.getpid()}.tmp")


def atomic_write(path: str, data: bytes, mode: int = 0o644, *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new content, never a mix.

    Temp file in the same directory, fsync, rename, fsync of the directory (runc ``saveState``).
    ``durable=False`` skips both fsyncs: for files whose content means nothing after a crash of
    the host (a backend's record of live pids), where only atomicity for concurrent readers
    matters. Each fsync pair costs 2-10 ms on a disk-backed state root (bench/lxc_lifecycle.py).
    """
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quiet(tmp)
        raise
    os.close(fd)
    try:
        os.rename(tmp, path)
    except BaseException:
        _unlink_quiet(tmp)
        raise
    if durable:
        fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_pid_file(path: str, pid: int) -> None:
    """runc's pid file: decimal pid, no newline, written to ``.<name>`` then renamed."""
    path = os.path.abspath(path)
    head, tail = os.path.split(path)
    tmp = os.path.join(head, "." + tail)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def read_text(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_tree(path: str) -> None:
    """``rm -rf`` without following symlinks; a missing path is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not _is_dir(st.st_mode):
        os.unlink(path)
        return
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                remove_tree(entry.path)
            else:
                _unlink_quiet(entry.path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _is_dir(mode: int) -> bool:
    return (mode & 0o170000) == 0o040000


class Lock:
    """An exclusive ``flock`` on a file, held for the ``with`` block (one per container)."""

    __slots__ = ("fd", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> Lock:
        import fcntl  # an extension module (0.6 ms to load): only verbs that lock pay for it

        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1
