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
"""

from __future__ import annotations

import os

from nexcage.image.rootfs import Root, remove_at

PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
META_PREFIX = ".wh..wh."

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

    __slots__ = ("paths",)

    def __init__(self) -> None:
        self.paths: set[str] = set()

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
