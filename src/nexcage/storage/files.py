"""The small files and dot-names the directory-based drivers (overlay, btrfs) keep next to their
data: one-line records (``parent``, ``link``, ``created``), removal by renaming away first
(``.del-<name>-<pid>``) and the sweep of what an interrupted removal left.
"""

from __future__ import annotations

import os

from nexcage import log
from nexcage.host.fs import fsync_dir, read_text
from nexcage.image.rootfs import remove_path


def listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def read(path: str) -> str:
    """A one-line record, "" when it does not exist."""
    try:
        return read_text(path).strip()
    except (FileNotFoundError, NotADirectoryError):
        return ""


def write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def rename_away(path: str, parent: str, name: str) -> str:
    """Rename ``path`` to ``parent/.del-<name>-<pid>`` (a crash never leaves half a tree under
    its real name) and return the new name, for the caller to delete."""
    gone = os.path.join(parent, f".del-{name}-{os.getpid()}")
    remove_path(gone)
    os.rename(path, gone)
    fsync_dir(parent)
    return gone


def leftovers(parent: str, name: str) -> list[str]:
    """``.del-<name>-<pid>`` entries an interrupted removal left in ``parent``."""
    prefix = f".del-{name}-"
    return [
        os.path.join(parent, entry)
        for entry in listdir(parent)
        if entry.startswith(prefix) and entry[len(prefix) :].isdigit()
    ]


def sweep(parent: str, name: str) -> None:
    for path in leftovers(parent, name):
        remove_path(path)


def remove_quietly(path: str) -> None:
    """Cleanup after a failure: never masks the original error (a full disk, a signal)."""
    try:
        remove_path(path)
    except OSError as exc:
        log.warning(f"cannot remove {path}: {exc}")
