"""Which storage driver: the configured one, or for ``auto`` the best the data root offers.

``auto`` (PRODUCT.md §3.2), in order:

1. ``btrfs`` when the storage root is on btrfs (a snapshot per container, no mount);
2. ``zfs`` when ``storage.zfs_dataset`` is configured and the driver can use it;
3. ``overlay`` when the kernel has overlayfs and the storage root's filesystem can hold upper
   directories (the driver's own ``usable()`` decides: not on overlayfs itself, whiteouts);
4. ``dir`` otherwise (plain copies).

`choose` returns the driver with the reason, which ``nexcage check`` prints. A driver asked for by
name that cannot work here is an error saying why (btrfs on ext4, zfs without a pool), never a
silent fall back: the user chose it for its properties.

Drivers live under ``<data_root>/storage/<name>``. Settings are typed structurally
(`StorageSettings`): storage sits below settings in the layer order (DESIGN.md).
"""

from __future__ import annotations

import os

from nexcage.errors import StorageError
from nexcage.host.mountinfo import unescape as _unescape
from nexcage.storage.base import DRIVERS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    from nexcage.storage.base import StorageDriver

    class StorageSettings(Protocol):
        data_root: str
        storage_driver: str
        zfs_dataset: str | None


STORAGE_DIR = "storage"
INIT_HINT = "`nexcage storage init --driver {name} --size 20G` makes {what} for the data root"
_INIT_WHAT = {"btrfs": "a loop-backed btrfs", "zfs": "a file-backed zpool"}


def storage_root(data_root: str) -> str:
    return os.path.join(data_root, STORAGE_DIR)


def driver_root(data_root: str, name: str) -> str:
    return os.path.join(data_root, STORAGE_DIR, name)


def make(name: str, data_root: str, zfs_dataset: str | None = None) -> StorageDriver:
    """The driver object for ``name`` (nothing checked, nothing touched on disk)."""
    root = driver_root(data_root, name)
    if name == "dir":
        from nexcage.storage.dir import DirDriver

        return DirDriver(root)
    if name not in DRIVERS:
        raise StorageError(name, f"unknown storage driver (one of {', '.join(DRIVERS)})")
    try:
        if name == "overlay":
            from nexcage.storage.overlay import OverlayDriver

            return OverlayDriver(root)
        if name == "btrfs":
            from nexcage.storage.btrfs import BtrfsDriver

            return BtrfsDriver(root)
        from nexcage.storage.zfs import ZfsDriver

        return ZfsDriver(root, zfs_dataset)
    except ImportError as exc:
        raise StorageError(name, f"driver not available in this build ({exc})") from None


def fs_type(path: str, mountinfo: str = "/proc/self/mountinfo") -> str:
    """The filesystem type holding ``path`` (or its nearest existing ancestor), from mountinfo."""
    probe = os.path.realpath(path)
    while not os.path.exists(probe) and probe != "/":
        probe = os.path.dirname(probe)
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            return fs_type_in(f.read(), probe)
    except OSError:
        return "unknown"


def fs_type_in(mountinfo: str, path: str) -> str:
    """The type of the mount holding the absolute, symlink-free ``path``: the longest mount
    point that is a prefix of it, the last such mount winning (it is the one visible)."""
    best, found = -1, "unknown"
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or not tail:
            continue
        point = _unescape(fields[4])
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:
            best, found = len(point), tail[0]
    return found


def _problem(name: str, settings: StorageSettings) -> str | None:
    """Why driver ``name`` cannot work for these settings, checked before the driver's own
    ``usable()`` for the cases a user most often gets wrong."""
    root = driver_root(settings.data_root, name)
    if name == "btrfs":
        kind = fs_type(root)
        if kind != "btrfs":
            return f"{root} is on {kind}, not on btrfs"
    if name == "zfs" and not settings.zfs_dataset:
        return "no ZFS dataset configured (storage.zfs_dataset in the config file)"
    return None


def _try(name: str, settings: StorageSettings) -> tuple[StorageDriver | None, str]:
    """(driver, "") when ``name`` works here, else (None, why not)."""
    problem = _problem(name, settings)
    if problem is not None:
        return None, problem
    try:
        driver = make(name, settings.data_root, settings.zfs_dataset)
    except StorageError as exc:
        return None, exc.message.removeprefix(f"storage {name}: ")
    problem = driver.usable()
    return (None, problem) if problem is not None else (driver, "")


def choose(settings: StorageSettings) -> tuple[StorageDriver, str]:
    """The driver for these settings and why it was chosen. Raises StorageError when the
    configured driver cannot work here."""
    wanted = settings.storage_driver
    if wanted != "auto":
        driver, why_not = _try(wanted, settings)
        if driver is None:
            what = _INIT_WHAT.get(wanted)
            hint = INIT_HINT.format(name=wanted, what=what) if what else None
            raise StorageError(wanted, f"cannot be used here: {why_not}", hint=hint)
        return driver, f"{wanted}: configured (storage.driver)"
    skipped: list[str] = []
    for name in ("btrfs", "zfs", "overlay"):
        driver, why_not = _try(name, settings)
        if driver is not None:
            reason = f"auto -> {name}: " + _WHY[name].format(root=driver.root)
            return driver, reason + ("" if not skipped else f" (not {'; not '.join(skipped)})")
        skipped.append(f"{name}: {why_not}")
    driver = make("dir", settings.data_root)
    return driver, f"auto -> dir: plain copies (not {'; not '.join(skipped)})"


_WHY = {
    "btrfs": "{root} is on btrfs (a subvolume snapshot per container)",
    "zfs": "the configured ZFS dataset is usable (a clone per container)",
    "overlay": "the kernel has overlayfs and {root} can hold upper directories",
}


def open_driver(settings: StorageSettings) -> StorageDriver:
    """The configured driver, or for ``auto`` the best the data root offers."""
    return choose(settings)[0]
