"""The programs storage drivers run (``mount``, ``umount``, ``zfs``, ``zpool``, ``mkfs.btrfs``,
``losetup``), always through `nexcage.host.run` (STYLE.md: one subprocess choke point), and the
mount checks they share.

A failed command becomes a `StorageError` naming the driver, what was being done and the tail of
the program's stderr, which is what a user needs to act on ("dataset is busy", "no space left").
"""

from __future__ import annotations

import os

from nexcage.errors import CommandFailed, StorageError
from nexcage.host import run as host_run
from nexcage.host.mountinfo import unescape as _unescape

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

# zfs, zpool, mkfs.btrfs and losetup live in sbin directories, which a user's PATH may lack.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def find(name: str) -> str | None:
    """The absolute path of program ``name`` on PATH or in the sbin directories, else None."""
    path = (os.environ.get("PATH") or host_run.DEFAULT_PATH).split(":")
    for directory in (*path, *SBIN):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None


def program(driver: str, name: str, package: str) -> str:
    found = find(name)
    if found is None:
        raise StorageError(driver, f"{name} not found", hint=f"install {package}")
    return found


def run(driver: str, argv: Sequence[str], what: str) -> str:
    """Run ``argv`` (argv[0] absolute), return its stdout; StorageError on failure."""
    try:
        done = host_run.run(argv, capture=True)
    except CommandFailed as exc:
        detail = exc.stderr_tail.strip() or exc.message
        raise StorageError(driver, f"{what}: {detail}") from None
    return done.stdout.decode("utf-8", "replace")


def is_mountpoint(path: str) -> bool:
    """True if something is mounted on ``path`` (its device differs from its parent's, or it
    is a bind mount of the same filesystem, seen in mountinfo)."""
    try:
        st = os.lstat(path)
        parent = os.lstat(os.path.dirname(path.rstrip("/")) or "/")
    except FileNotFoundError:
        return False
    if st.st_dev != parent.st_dev:
        return True
    return os.path.realpath(path) in mount_points()


def mount_points() -> set[str]:
    points = set()
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split(" ", 5)
            if len(fields) > 4:
                points.add(_unescape(fields[4]))
    return points


def unmount(driver: str, path: str) -> None:
    """Unmount ``path`` if mounted; a busy mount is an error (never a lazy detach: the
    caller is about to delete what is below it)."""
    if not is_mountpoint(path):
        return
    run(driver, [program(driver, "umount", "mount (util-linux)"), path], f"unmount {path}")
