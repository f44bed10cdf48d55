"""Paths inside a root filesystem, resolved without ever leaving it (a secure join).

A lookup walks the path one component at a time with ``openat(O_PATH | O_NOFOLLOW)`` from an fd
of the root, so no path string is ever handed to the kernel whole and no symlink is followed by
the kernel. The *last* component of a path is never resolved: callers create, replace or remove
it relative to the fd of its parent. Symlinks met in the middle of a path follow one of two
policies:

- ``clamp=False`` (unpacking layers): a relative symlink that stays inside the root is followed;
  one with an absolute target, or one that climbs above the root with ``..``, is refused. A write
  through such a link is how a hostile layer reaches the host. umoci and containerd resolve these
  links as if chrooted (filepath-securejoin); nexcage refuses them instead: image builders never
  emit writes through symlinks (a layer diff names real paths), so only hostile layers do.
- ``clamp=True`` (reading ``/etc/passwd``, making WorkingDir and volume directories): resolved as
  the container will see them: an absolute target starts again at the root, ``..`` at the root
  stays there (filepath-securejoin's semantics, as runc resolves mount destinations).

Directory fds are cached by their real (symlink-free) path; callers drop what they replace with
`Root.forget` and bound the cache with `Root.trim`.
"""

from __future__ import annotations

import os
import stat
from types import TracebackType

from nexcage.errors import UnsafePath

MAX_LINKS = 40  # Linux MAXSYMLINKS
MAX_CACHED = 256
_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Root:
    """An open directory that every lookup stays inside. Use as a context manager."""

    __slots__ = ("_cache", "clamp", "fd", "path")

    def __init__(self, path: str, *, clamp: bool) -> None:
        self.path = os.path.abspath(path)
        self.clamp = clamp
        self.fd = os.open(self.path, _PATH_DIR)
        self._cache: dict[str, int] = {}

    def __enter__(self) -> Root:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.forget("")
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def forget(self, rel: str) -> None:
        """Drop cached fds of ``rel`` and everything below it (it was removed or replaced)."""
        prefix = rel + "/"
        for key in [k for k in self._cache if not rel or k == rel or k.startswith(prefix)]:
            os.close(self._cache.pop(key))

    def trim(self) -> None:
        """Bound the number of open fds. Call between operations, never while holding an fd."""
        if len(self._cache) > MAX_CACHED:
            self.forget("")

    def dir_fd(self, rel: str, *, create: bool = False) -> int | None:
        """The fd of directory ``rel`` ("" is the root), None if it does not exist (and not
        ``create``). Missing directories are made 0755 when ``create``. The fd is borrowed: it
        stays valid until the next `forget` or `trim`; do not close it."""
        if not rel:
            return self.fd
        fd = self._cache.get(rel)
        if fd is not None:
            return fd
        return self._resolve(rel, create)

    def _resolve(self, rel: str, create: bool) -> int | None:
        pending = rel.split("/")[::-1]  # a stack: the next component is at the end
        chain: list[str] = []  # the real path of `cur`, component by component
        cur = self.fd
        links = 0
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if not chain:
                    if self.clamp:
                        continue
                    raise UnsafePath(rel, "climbs out of the root")
                chain.pop()
                cur = self._real(chain)
                continue
            key = "/".join((*chain, name))
            cached = self._cache.get(key)
            if cached is not None:
                chain.append(name)
                cur = cached
                continue
            try:
                fd = os.open(name, _PATH_DIR, dir_fd=cur)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(name, 0o755, dir_fd=cur)
                fd = os.open(name, _PATH_DIR, dir_fd=cur)
            except NotADirectoryError:
                mode = os.stat(name, dir_fd=cur, follow_symlinks=False).st_mode
                if not stat.S_ISLNK(mode):
                    raise UnsafePath(key, "is not a directory") from None
                links += 1
                if links > MAX_LINKS:
                    raise UnsafePath(rel, "too many levels of symbolic links") from None
                target = os.readlink(name, dir_fd=cur)
                if target.startswith("/"):
                    if not self.clamp:
                        raise UnsafePath(
                            key, f"is a symlink to {target!r}: writing through it would leave "
                            "the root"
                        ) from None  # fmt: skip
                    chain = []
                    cur = self.fd
                pending.extend(reversed(target.split("/")))
                continue
            self._cache[key] = fd
            chain.append(name)
            cur = fd
        return cur

    def _real(self, chain: list[str]) -> int:
        """The fd of a directory known to exist at the symlink-free path ``chain``."""
        if not chain:
            return self.fd
        fd = self.dir_fd("/".join(chain))
        if fd is None:  # pragma: no cover - it was walked a moment ago
            raise UnsafePath("/".join(chain), "disappeared while walking")
        return fd

    def parent(self, rel: str, *, create: bool = False) -> tuple[int | None, str]:
        """(fd of the parent directory or None, last component) for a non-root ``rel``."""
        head, _, name = rel.rpartition("/")
        return self.dir_fd(head, create=create), name

    # -- conveniences for bundle preparation (clamp=True roots) --------------------------------

    def read_file(self, rel: str, limit: int) -> bytes | None:
        """A regular file's content (None if it does not exist); symlinks resolved inside the
        root. Refuses anything but a regular file and more than ``limit`` bytes."""
        rel = rel.strip("/")
        for _ in range(MAX_LINKS):
            fd, name = self.parent(rel)
            if fd is None:
                return None
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return None
            if stat.S_ISLNK(st.st_mode):
                target = os.readlink(name, dir_fd=fd)
                head = rel.rpartition("/")[0]
                rel = target.lstrip("/") if target.startswith("/") else f"{head}/{target}"
                continue
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(rel, "is not a regular file")
            opened = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            with os.fdopen(opened, "rb") as f:
                data = f.read(limit + 1)
            if len(data) > limit:
                raise UnsafePath(rel, f"is larger than {limit} bytes")
            return data
        raise UnsafePath(rel, "too many levels of symbolic links")

    def makedirs(self, rel: str) -> None:
        """``mkdir -p`` inside the root (new directories 0755, root-owned as made)."""
        self.dir_fd(rel.strip("/"), create=True)


def remove_at(parent_fd: int, name: str) -> bool:
    """Remove ``name`` in ``parent_fd`` (a whole tree for a directory) without following any
    symlink and without recursion (a hostile layer may nest thousands of levels). Returns
    False if there was nothing to remove."""
    try:
        mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(mode):
        os.unlink(name, dir_fd=parent_fd)
        return True
    fd = os.open(name, _READ_DIR, dir_fd=parent_fd)
    # (name, subdirectories still to remove) per level; only the deepest level holds an fd.
    stack = [(name, _clear_files(fd))]
    try:
        while True:
            subs = stack[-1][1]
            if subs:
                sub = subs.pop()
                child = os.open(sub, _READ_DIR, dir_fd=fd)
                os.close(fd)
                fd = child
                stack.append((sub, _clear_files(fd)))
                continue
            done = stack.pop()[0]
            if not stack:
                break
            up = os.open("..", _READ_DIR, dir_fd=fd)
            os.close(fd)
            fd = up
            os.rmdir(done, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)
    return True


def _clear_files(fd: int) -> list[str]:
    """Unlink every non-directory in ``fd``; return the names of its subdirectories."""
    with os.scandir(fd) as entries:
        listing = [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    subs = []
    for entry, is_dir in listing:
        if is_dir:
            subs.append(entry)
        else:
            os.unlink(entry, dir_fd=fd)
    return subs


def remove_path(path: str) -> None:
    """Remove ``path`` (a tree) securely; a missing path is fine."""
    head, name = os.path.split(os.path.abspath(path))
    fd = os.open(head or "/", _PATH_DIR)
    try:
        remove_at(fd, name)
    finally:
        os.close(fd)
