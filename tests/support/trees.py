"""File trees compared entry by entry: what a rootfs holds, as facts that must survive a copy,
a snapshot, a rollback or an unpack on another driver.

``tree_facts(root)`` maps every path below ``root`` (relative, ``.`` for the root itself) to a
tuple: type, permission bits (setuid/sticky included), owner, group, then per type the content's
sha256 (files), the target (symlinks), the device numbers (devices) — plus the mtime in ns for
everything but directories when ``mtimes`` is set, and the xattrs (``trusted.overlay.*`` left
out: they are how overlayfs stores its own bookkeeping). Hardlinks: every path of a multiply
linked file also carries the sorted list of its other names, so a copy that broke the link (or
made one) differs.

``diff(a, b)`` lists the paths that differ, for an assertion message that says what broke.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

Facts = dict[str, tuple[Any, ...]]


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        keys = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for key in sorted(keys):
        if key.startswith("trusted.overlay."):
            continue
        try:
            out.append((key, os.getxattr(path, key, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(out)


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def tree_facts(root: str, *, mtimes: bool = True, xattrs: bool = True) -> Facts:
    facts: Facts = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames] if dirpath == root else [*dirnames, *filenames]:
            path = os.path.normpath(os.path.join(dirpath, name))
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            mode = st.st_mode
            kind = stat.S_IFMT(mode)
            extra: tuple[Any, ...]
            if stat.S_ISREG(mode):
                extra = (_digest(path),)
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(mode):
                extra = (os.readlink(path),)
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                extra = ()
            when = (st.st_mtime_ns,) if mtimes and not stat.S_ISDIR(mode) else ()
            attrs = (_xattrs(path),) if xattrs else ()
            facts[rel] = (kind, stat.S_IMODE(mode), st.st_uid, st.st_gid, *extra, *when, *attrs)
    for names in inodes.values():
        for rel in names:
            facts[rel] = (*facts[rel], tuple(sorted(n for n in names if n != rel)))
    return facts


def diff(a: Facts, b: Facts, limit: int = 20) -> list[str]:
    out = []
    for rel in sorted(set(a) | set(b)):
        if a.get(rel) != b.get(rel):
            out.append(f"{rel}: {a.get(rel)!r} != {b.get(rel)!r}")
            if len(out) >= limit:
                out.append("...")
                break
    return out
