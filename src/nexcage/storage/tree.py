"""Whole directory trees for the flat ``dir`` driver: a faithful copy and disk usage.

`copy_tree` copies what an unpacked layer can hold: regular files (data through a reflink,
``FICLONE``, when the filesystem shares extents — btrfs, XFS — else ``copy_file_range`` in the
kernel), directories, symlinks, hardlinks (kept as links inside the copy), device nodes, fifos and
sockets, with numeric owners, modes (setuid/sticky kept: chown before chmod), nanosecond times
and extended attributes (``security.capability`` included: set after chown, which drops it).

The walk holds two directory fds (source and copy) for the current level only and climbs back
with ``..``, like `nexcage.image.rootfs.remove_at`: no recursion, no path strings handed to the
kernel whole, so a hostile tree thousands of levels deep neither exhausts the stack nor the fd
table, and no symlink is ever followed (``O_NOFOLLOW`` on every open, ``*at`` calls relative to
the fds). The source must not change meanwhile (a stopped container's rootfs, a committed layer).

Not on the hot path: only storage code imports this module.
"""

from __future__ import annotations

import errno
import os
import stat

from nexcage import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 30
# A filesystem (or a pair of them) that cannot do this: fall back for the rest of the copy.
_NO_REFLINK = frozenset({errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY, errno.ENOSYS})
_NO_COPY_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP})
# xattrs this filesystem or this user cannot set: skipped with one warning, as unpack does.
_XATTR_SOFT = frozenset({errno.EOPNOTSUPP, errno.EPERM})


class CopyStats:
    """What a copy did: counts for tests and the benchmark."""

    __slots__ = ("bytes", "files", "reflinked", "skipped_xattrs")

    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0
        self.reflinked = 0
        self.skipped_xattrs: list[str] = []


class _Copier:
    def __init__(self, as_root: bool) -> None:
        self.as_root = as_root
        self.reflink = True
        self.copy_range = True
        self.stats = CopyStats()
        # (st_dev, st_ino) of a source inode with several links -> its first copy, as a path
        # relative to the copy's root.
        self.links: dict[tuple[int, int], str] = {}
        self.root_fd = -1  # the copy's root, for hardlinks to a first copy elsewhere

    # -- one entry ----------------------------------------------------------------------------

    def entry(self, sfd: int, dfd: int, name: str, rel: str) -> bool:
        """Copy one non-directory entry; return True if ``name`` is a directory (copied later)."""
        st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            return True
        if st.st_nlink > 1:
            first = self.links.get((st.st_dev, st.st_ino))
            if first is not None:
                os.link(first, name, src_dir_fd=self.root_fd, dst_dir_fd=dfd,
                        follow_symlinks=False)  # fmt: skip
                return False
            self.links[(st.st_dev, st.st_ino)] = rel
        if stat.S_ISREG(mode):
            self._file(sfd, dfd, name, st)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=sfd), name, dir_fd=dfd)
            self._owner_at(dfd, name, st)
            self._xattrs_at(sfd, dfd, name)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
        else:  # char, block, fifo, socket
            os.mknod(name, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=dfd)
            self._owner_at(dfd, name, st)
            os.chmod(name, stat.S_IMODE(mode), dir_fd=dfd)  # just made here: not a symlink
            self._xattrs_at(sfd, dfd, name)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
        return False

    def _file(self, sfd: int, dfd: int, name: str, st: os.stat_result) -> None:
        src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=sfd)
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            dst = os.open(name, flags, 0o600, dir_fd=dfd)
            try:
                if st.st_size:
                    self._data(src, dst, st.st_size)
                if self.as_root:
                    os.fchown(dst, st.st_uid, st.st_gid)
                os.fchmod(dst, stat.S_IMODE(st.st_mode))  # after chown, which clears setuid
                self._xattrs(src, dst, name)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)
        self.stats.files += 1
        self.stats.bytes += st.st_size

    def _data(self, src: int, dst: int, size: int) -> None:
        if self.reflink:
            import fcntl

            try:
                fcntl.ioctl(dst, FICLONE, src)
                self.stats.reflinked += 1
                return
            except OSError as exc:
                if exc.errno not in _NO_REFLINK:
                    raise
                self.reflink = False
        done = 0
        if self.copy_range:
            try:
                while done < size:
                    n = os.copy_file_range(src, dst, min(_CHUNK, size - done))
                    if n == 0:
                        break  # the file shrank meanwhile
                    done += n
                return
            except OSError as exc:
                if exc.errno not in _NO_COPY_RANGE or done:
                    raise
                self.copy_range = False
        while block := os.read(src, 1 << 20):
            view = memoryview(block)
            while view:
                view = view[os.write(dst, view) :]

    def _owner_at(self, dfd: int, name: str, st: os.stat_result) -> None:
        if self.as_root:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dfd, follow_symlinks=False)

    def _xattrs(self, src: int | str, dst: int | str, what: str) -> None:
        follow = isinstance(src, int)
        try:
            names = os.listxattr(src, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.ENODATA):
                return
            raise
        for key in names:
            try:
                value = os.getxattr(src, key, follow_symlinks=follow)
                os.setxattr(dst, key, value, follow_symlinks=follow)
            except OSError as exc:
                if exc.errno not in _XATTR_SOFT:
                    raise
                self.stats.skipped_xattrs.append(f"{what}: {key} ({exc.strerror})")

    def _xattrs_at(self, sfd: int, dfd: int, name: str) -> None:
        # The parent by fd, the entry itself not followed (llistxattr on the magic link path).
        self._xattrs(f"/proc/self/fd/{sfd}/{name}", f"/proc/self/fd/{dfd}/{name}", name)

    def dir_meta(self, sfd: int, dfd: int, what: str) -> None:
        """A directory's owner, mode, xattrs and times, once all its children are in place."""
        st = os.fstat(sfd)
        if self.as_root:
            os.fchown(dfd, st.st_uid, st.st_gid)
        os.fchmod(dfd, stat.S_IMODE(st.st_mode))
        self._xattrs(sfd, dfd, what)
        os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _listing(fd: int) -> list[str]:
    dup = os.open(".", _DIR, dir_fd=fd)
    try:
        with os.scandir(dup) as entries:
            return [e.name for e in entries]
    finally:
        os.close(dup)


def copy_tree(
    src: str,
    dst: str,
    *,
    as_root: bool | None = None,
    check: Callable[[], None] | None = None,
) -> CopyStats:
    """Copy the directory ``src`` to ``dst``, which must not exist (its parent must).

    On error ``dst`` is left half-made: callers copy to a temporary name they remove on failure
    and rename into place. ``as_root`` (default: euid 0) keeps numeric owners. ``check`` is
    called between directories (a test hook, or a caller's cancellation).
    """
    copier = _Copier(os.geteuid() == 0 if as_root is None else as_root)
    os.mkdir(dst, 0o700)
    sfd = os.open(src, _DIR)
    try:
        dfd = os.open(dst, _DIR)
    except BaseException:
        os.close(sfd)
        raise
    copier.root_fd = os.open(dst, _DIR)
    # One level per directory being copied: (its path in the tree, subdirs still to copy).
    stack: list[tuple[str, list[str]]] = []
    try:
        stack.append(("", _copy_level(copier, sfd, dfd, "")))
        while stack:
            rel, subs = stack[-1]
            if subs:
                sub = subs.pop()
                child_rel = f"{rel}/{sub}" if rel else sub
                os.mkdir(sub, 0o700, dir_fd=dfd)
                sfd = _replace(sfd, os.open(sub, _DIR, dir_fd=sfd))
                dfd = _replace(dfd, os.open(sub, _DIR, dir_fd=dfd))
                if check is not None:
                    check()
                stack.append((child_rel, _copy_level(copier, sfd, dfd, child_rel)))
                continue
            copier.dir_meta(sfd, dfd, rel or ".")
            stack.pop()
            if not stack:
                break
            sfd = _replace(sfd, os.open("..", _DIR, dir_fd=sfd))
            dfd = _replace(dfd, os.open("..", _DIR, dir_fd=dfd))
    finally:
        os.close(sfd)
        os.close(dfd)
        os.close(copier.root_fd)
    if copier.stats.skipped_xattrs:
        skipped = copier.stats.skipped_xattrs
        log.warning(
            f"copy of {src}: {len(skipped)} xattr(s) not supported here, skipped "
            f"(first: {skipped[0]})"
        )
    return copier.stats


def _replace(old: int, new: int) -> int:
    """Move to another level: only the current level holds fds (``new`` opened from ``old``)."""
    os.close(old)
    return new


def _copy_level(copier: _Copier, sfd: int, dfd: int, rel: str) -> list[str]:
    """Copy every non-directory of one directory; return its subdirectories."""
    subs = []
    for name in _listing(sfd):
        child = f"{rel}/{name}" if rel else name
        if copier.entry(sfd, dfd, name, child):
            subs.append(name)
    return subs


def disk_usage(path: str) -> int:
    """Bytes allocated under ``path`` (``du``: st_blocks, each inode once); 0 if it is missing.
    Reflinked extents count in every file that shares them: best effort, as the contract says."""
    seen: set[tuple[int, int]] = set()
    total = 0
    pending = [path]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    key = (st.st_dev, st.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                    total += st.st_blocks * 512
                    if stat.S_ISDIR(st.st_mode):
                        pending.append(entry.path)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
    return total


def syncfs(path: str) -> None:
    """Flush the filesystem holding ``path`` (``syncfs(2)``): a layer committed by rename must not
    come back with empty files after a power loss. Best effort: an error is logged."""
    import ctypes

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            log.warning(f"syncfs {path}: {os.strerror(err)}")
    finally:
        os.close(fd)
