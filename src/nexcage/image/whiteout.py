"""Whiteouts: how a layer deletes what lower layers put in place (image-spec layer.md,
CONTRACTS.md §3.7).

- ``DIR/.wh.NAME`` (an empty file) deletes ``DIR/NAME`` of the lower layers; the whiteout itself
  is never materialised. It does not hide an entry of the same layer: "files that are present in
  the same layer as a whiteout file can only be hidden by whiteout files in subsequent layers".
- ``DIR/.wh..wh..opq`` makes DIR opaque: every child of DIR from the lower layers goes, whatever
  the position of the marker in the tar (before or after the layer's own children of DIR).
- ``.wh..wh.*`` other than the opaque marker is aufs bookkeeping (``.wh..wh.plnk``,
  ``.wh..wh.aufs``): ignored, as Docker does.
- ``.wh.`` alone, ``.wh..`` and ``.wh...`` name nothing sensible: the layer is refused (Proxmox
  ignores ``.wh...`` and removes the parent for ``.wh..``; a layer carrying them is hostile or
  broken, and refusing is the safe reading).

Both kinds act on the lower layers only, so the unpacker records every path the current layer
has put in place (`Changes`) and these functions skip those.

Overlay format (``overlay=True`` in `unpack.apply_layer`, for the overlay storage driver): a
layer is unpacked alone into an empty directory and nothing is deleted; instead the markers are
translated into what overlayfs reads (CONTRACTS.md §3.7, §6.1; umoci's ``OverlayfsRootfs``):

- ``DIR/.wh.NAME`` -> a character device 0/0 at ``DIR/NAME`` (`overlay_whiteout`);
- ``DIR/.wh..wh..opq`` -> xattr ``trusted.overlay.opaque=y`` on ``DIR`` (`mark_opaque`); no
  whiteout is kept below an opaque directory: there is nothing lower to hide, and overlayfs lists
  such a device in ``readdir`` of a lower layer's opaque directory (an entry ``stat`` then does not
  find);
- a directory the same layer first whites out and then re-creates (``.wh.d`` then ``d/``) must
  hide the lower ``d`` entirely, as deletion + mkdir does in flat form: it becomes opaque
  (`Changes.whiteouts` remembers the devices made; `replace_whiteouts` turns one that a later
  entry needs as a directory into an opaque directory).
- ``trusted.overlay.*`` xattrs carried *in* a layer are not applied: overlayfs would obey them
  (``redirect_always_follow`` is on by default), so a layer could re-route lookups.
"""

from __future__ import annotations

import os
import stat

from nexcage.image.rootfs import Root, remove_at

PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
META_PREFIX = ".wh..wh."
OVERLAY_OPAQUE = "trusted.overlay.opaque"
OVERLAY_XATTR_PREFIX = "trusted.overlay."

# classify() kinds
NONE = ""
WHITEOUT = "whiteout"
OPAQUE_DIR = "opaque"
META = "meta"
INVALID = "invalid"


def classify(name: str) -> tuple[str, str]:
    """(kind, target) for a tar member's base name. For INVALID, target is the reason."""
    if not name.startswith(PREFIX):
        return NONE, ""
    if name == OPAQUE:
        return OPAQUE_DIR, ""
    if name.startswith(META_PREFIX):
        return META, ""
    target = name[len(PREFIX) :]
    if target in ("", ".", ".."):
        return INVALID, f"whiteout {name!r} names {target or 'nothing'!r}"
    return WHITEOUT, target


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


class Changes:
    """Paths the current layer has put in place, with their ancestors (a child of the layer
    implies its directory chain is the layer's too: overlayfs would show it from the upper)."""

    __slots__ = ("opaques", "paths", "whiteouts")

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.whiteouts: set[str] = set()  # overlay format: whiteout devices this layer made
        self.opaques: set[str] = set()  # overlay format: directories this layer made opaque

    def add(self, rel: str) -> None:
        while rel and rel not in self.paths:
            self.paths.add(rel)
            rel = rel.rpartition("/")[0]

    def __contains__(self, rel: object) -> bool:
        return rel in self.paths


def apply_whiteout(root: Root, parent: str, target: str, changes: Changes) -> None:
    """Delete ``parent/target`` of the lower layers (nothing if absent or the layer's own)."""
    rel = join(parent, target)
    if rel in changes:
        return
    fd = root.dir_fd(parent)
    if fd is None:
        return
    root.forget(rel)
    remove_at(fd, target)


def apply_opaque(root: Root, directory: str, changes: Changes) -> None:
    """Delete every lower-layer child of ``directory``, keeping what this layer put there."""
    pending = [directory]
    while pending:
        current = pending.pop()
        fd = root.dir_fd(current)
        if fd is None:
            continue
        listing = _list(fd)
        for name, is_dir in listing:
            child = join(current, name)
            if child in changes:
                # The layer's own entry; below it, lower-layer content is still hidden.
                if is_dir:
                    pending.append(child)
                continue
            root.forget(child)  # closes fds below `current` only: `fd` stays valid
            remove_at(fd, name)


def _list(dir_fd: int) -> list[tuple[str, bool]]:
    fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        with os.scandir(fd) as entries:
            return [(e.name, e.is_dir(follow_symlinks=False)) for e in entries]
    finally:
        os.close(fd)


# -- overlay format ----------------------------------------------------------------------------


def overlay_whiteout(root: Root, parent: str, target: str, changes: Changes) -> None:
    """Hide ``parent/target`` of the lower layers with a 0/0 character device (nothing if the
    layer put that entry in place itself: a whiteout does not hide its own layer's entries)."""
    rel = join(parent, target)
    if rel in changes or _whited_out(rel, changes) or _below_opaque(rel, changes):
        return  # the layer's own entry, or already hidden with an ancestor
    fd = root.dir_fd(parent, create=True)
    assert fd is not None
    root.forget(rel)
    remove_at(fd, target)  # e.g. a directory made only to carry an opaque marker
    os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=fd)
    changes.whiteouts.add(rel)


def mark_opaque(root: Root, directory: str, changes: Changes) -> None:
    """Make ``directory`` (created if this layer has not yet) hide all lower children."""
    if directory and changes.whiteouts:
        replace_whiteouts(root, directory, changes, is_dir=True)
    fd = root.dir_fd(directory, create=True)
    assert fd is not None
    _set_opaque(fd)
    changes.opaques.add(directory)
    prefix = directory + "/" if directory else ""
    for rel in sorted(w for w in changes.whiteouts if w.startswith(prefix)):
        changes.whiteouts.discard(rel)
        wfd, name = root.parent(rel)
        if wfd is not None:
            os.unlink(name, dir_fd=wfd)


def replace_whiteouts(root: Root, rel: str, changes: Changes, *, is_dir: bool) -> None:
    """Before the layer puts ``rel`` in place: where this layer whited out ``rel`` itself (and
    ``rel`` is now a directory) or an ancestor (which must be a directory to hold ``rel``), make
    that path an opaque directory: the lower entry stays hidden, this layer's content shows.

    An ancestor the layer has meanwhile replaced by a non-directory is left alone: the walk then
    fails with "not a directory", as in flat form."""
    parts = rel.split("/")
    for n in range(1, len(parts) + (1 if is_dir else 0)):
        path = "/".join(parts[:n])
        if path not in changes.whiteouts:
            continue
        fd, name = root.parent(path)
        assert fd is not None
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if path != rel and not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
            continue
        changes.whiteouts.discard(path)
        root.forget(path)
        remove_at(fd, name)
        os.mkdir(name, 0o755, dir_fd=fd)
        opened = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=fd)  # fmt: skip
        try:
            _set_opaque(opened)
        finally:
            os.close(opened)
        changes.opaques.add(path)


def _whited_out(rel: str, changes: Changes) -> bool:
    while rel:
        if rel in changes.whiteouts:
            return True
        rel = rel.rpartition("/")[0]
    return False


def _below_opaque(rel: str, changes: Changes) -> bool:
    if "" in changes.opaques:
        return True
    rel = rel.rpartition("/")[0]
    while rel:
        if rel in changes.opaques:
            return True
        rel = rel.rpartition("/")[0]
    return False


def _set_opaque(dir_fd: int) -> None:
    # An O_PATH fd (Root's cache) cannot carry fsetxattr: go through /proc, the fd not followed
    # further than the directory it names.
    os.setxattr(f"/proc/self/fd/{dir_fd}", OVERLAY_OPAQUE, b"y")
