"""``nexcage storage init --driver btrfs|zfs --size N [--path FILE]``: storage for a host that
has no btrfs filesystem or zpool to give nexcage, backed by one sparse file.

- btrfs: ``FILE`` (default ``<data_root>/storage/btrfs.img``) made with ``mkfs.btrfs`` and
  loop-mounted at ``<data_root>/storage/btrfs``, the btrfs driver's root.
- zfs: a pool on ``FILE`` (default ``<data_root>/storage/zfs.img``) named after the first
  component of ``storage.zfs_dataset`` (default dataset and pool: ``nexcage``), with the dataset
  mounted at ``<data_root>/storage/zfs``, the zfs driver's root.

What persists across a reboot, and what to do after one (also in the text `init_storage`
returns, for the CLI to print):

- btrfs: the file and everything in it persist; the loop mount does not. Running the same
  ``nexcage storage init --driver btrfs`` again mounts the existing file (it never formats a file
  that already holds a btrfs), or add ``FILE ROOT btrfs loop 0 0`` to /etc/fstab.
- zfs: the file, the pool and its datasets persist, and the pool is recorded in the ZFS daemon's
  pool cache (zfs-fuse: /var/lib/zfs/zpool.cache; OpenZFS: /etc/zfs/zpool.cache), so the daemon
  imports and mounts it when it starts: start zfs-fuse (or OpenZFS's import service) at boot.
  Without the cache entry, ``zpool import -d DIR POOL`` (DIR holding FILE), which running
  ``storage init`` again also does.

Idempotent: storage that is already there and in place is reported, not made again. Refused:
mounting over a non-empty directory, formatting a file that holds something else, moving an
existing dataset's mountpoint. A failure removes what this call made (the file, the pool).
"""

from __future__ import annotations

import os

from nexcage.errors import StorageError
from nexcage.storage import command

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol

    class InitSettings(Protocol):
        data_root: str
        zfs_dataset: str | None


DEFAULT_POOL = "nexcage"
MIN_SIZE = {"btrfs": 128 << 20, "zfs": 64 << 20}  # mkfs.btrfs and zpool refuse less
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
# struct btrfs_super_block: magic "_BHRfS_M" at offset 0x40 of the superblock at 64 KiB.
_BTRFS_SB_MAGIC = (0x10040, b"_BHRfS_M")


def parse_size(driver: str, text: str) -> int:
    """``20G``, ``512M``, ``1T``, ``1048576`` (binary units, as truncate(1); ``iB``/``B``
    suffixes accepted)."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in _UNITS and value[-1:] else ""
    number = value[: len(value) - len(unit)]
    if not number.isdigit():
        raise StorageError(driver, f"invalid size {text!r} (expected e.g. 20G, 512M)")
    size = int(number) * _UNITS[unit]
    if size < MIN_SIZE[driver]:
        raise StorageError(driver, f"size {text} is too small (at least {MIN_SIZE[driver] >> 20}M)")
    return size


def init_storage(settings: InitSettings, driver: str, size: str, path: str | None) -> str:
    """Make (or find, or remount) the storage; return what was done and what persists."""
    if driver == "btrfs":
        return _init_btrfs(settings.data_root, size, path)
    if driver == "zfs":
        return _init_zfs(settings, size, path)
    raise StorageError(driver, "storage init makes btrfs or zfs storage only")


# -- shared --------------------------------------------------------------------------------------


def _check_mount_target(driver: str, root: str) -> None:
    if os.path.isdir(root) and os.listdir(root):
        raise StorageError(
            driver, f"{root} is not empty: refusing to mount over it",
            hint="move its content away, or use another --data-root",
        )  # fmt: skip


def _make_file(driver: str, path: str, size: int) -> None:
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise StorageError(driver, f"{path} exists") from None
    try:
        os.ftruncate(fd, size)  # sparse: blocks are allocated as the filesystem fills
    except OSError as exc:
        os.close(fd)
        os.unlink(path)
        raise StorageError(driver, f"cannot make {path}: {exc.strerror}") from None
    os.close(fd)


def _human(size: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if size >= _UNITS[unit] and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return f"{size} bytes"


# -- btrfs ---------------------------------------------------------------------------------------


def _holds_btrfs(path: str) -> bool:
    offset, magic = _BTRFS_SB_MAGIC
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(len(magic)) == magic
    except OSError:
        return False


def _init_btrfs(data_root: str, size_text: str, path: str | None) -> str:
    from nexcage.storage.btrfs import BtrfsDriver

    name = "btrfs"
    root = os.path.join(data_root, "storage", name)
    image = os.path.abspath(path or os.path.join(data_root, "storage", "btrfs.img"))
    size = parse_size(name, size_text)
    persist = (
        f"Persists: {image} and everything in it. Not across a reboot: the loop mount. "
        f"Mount it again with the same `nexcage storage init --driver btrfs"
        f"{'' if path is None else ' --path ' + image}` (an existing btrfs file is mounted, "
        f"never formatted again), or with an /etc/fstab line:\n"
        f"  {image} {root} btrfs loop 0 0"
    )
    if command.is_mountpoint(root) and BtrfsDriver(root).usable() is None:
        return f"btrfs storage is already mounted at {root}.\n{persist}"
    _check_mount_target(name, root)
    made = False
    if os.path.exists(image):
        if not _holds_btrfs(image):
            raise StorageError(name, f"{image} exists and does not hold a btrfs: not touching it")
        done = f"Mounted the existing btrfs in {image} at {root}."
    else:
        _make_file(name, image, size)
        made = True
        done = f"Made a btrfs in {image} ({_human(size)}, sparse) and mounted it at {root}."
    made_root = not os.path.isdir(root)
    try:
        if made:
            mkfs = command.program(name, "mkfs.btrfs", "btrfs-progs")
            command.run(name, [mkfs, "-q", image], f"mkfs.btrfs {image}")
        os.makedirs(root, mode=0o700, exist_ok=True)
        mount = command.program(name, "mount", "mount (util-linux)")
        command.run(name, [mount, "-t", "btrfs", "-o", "loop", image, root], f"mount {image}")
    except BaseException:
        if made:
            os.unlink(image)
        if made_root:
            os.rmdir(root)
        raise
    return f"{done}\n{persist}"


# -- zfs -----------------------------------------------------------------------------------------


class _Zfs:
    """The zpool/zfs programs, with the answers `_init_zfs` needs."""

    def __init__(self) -> None:
        package = "zfsutils-linux (OpenZFS) or zfs-fuse"
        self.zpool = command.program("zfs", "zpool", package)
        self.zfs = command.program("zfs", "zfs", package)

    def run(self, what: str, *argv: str) -> str:
        return command.run("zfs", argv, what)

    def check(self) -> None:
        try:
            self.run("zpool list", self.zpool, "list", "-H", "-o", "name")
        except StorageError as exc:
            raise StorageError(
                "zfs", f"the ZFS tools do not work: {' '.join(exc.message.split())}",
                hint="start the ZFS daemon (zfs-fuse: `zfs-fuse`, or its service) or load the "
                "kernel module",
            ) from None  # fmt: skip

    def pools(self) -> list[str]:
        return self.run("zpool list", self.zpool, "list", "-H", "-o", "name").split()

    def mountpoint(self, dataset: str) -> str | None:
        try:
            out = self.run(f"look up {dataset}", self.zfs, "get", "-H", "-o", "value",
                           "mountpoint", dataset)  # fmt: skip
        except StorageError as exc:
            if "does not exist" in exc.message:
                return None
            raise
        return out.strip()


def _init_zfs(settings: InitSettings, size_text: str, path: str | None) -> str:
    name = "zfs"
    dataset = settings.zfs_dataset or DEFAULT_POOL
    pool = dataset.split("/", 1)[0]
    root = os.path.join(settings.data_root, "storage", name)
    image = os.path.abspath(path or os.path.join(settings.data_root, "storage", "zfs.img"))
    size = parse_size(name, size_text)
    tools = _Zfs()
    tools.check()
    config = ""
    if settings.zfs_dataset is None:
        config = (
            f'\nAdd to the config file: [storage] zfs_dataset = "{dataset}" (and driver = "zfs", '
            f"or keep auto)."
        )
    persist = (
        f"Persists: {image}, pool {pool} and its datasets. The pool is in the ZFS daemon's pool "
        f"cache, so the daemon imports and mounts it when it starts (start zfs-fuse at boot). "
        f"If it is missing after a reboot: zpool import -d {os.path.dirname(image)} {pool} "
        f"(running this storage init again does that)."
    )
    pools = tools.pools()
    done = ""
    if pool not in pools and os.path.exists(image):
        tools.run(f"import pool {pool} from {image}", tools.zpool, "import", "-d",
                  os.path.dirname(image), pool)  # fmt: skip
        done = f"Imported pool {pool} from {image}."
        pools.append(pool)
    mountpoint = tools.mountpoint(dataset) if pool in pools else None
    if mountpoint is not None:
        if os.path.abspath(mountpoint) != root:
            raise StorageError(
                name, f"dataset {dataset} exists, mounted at {mountpoint}, not at {root}",
                hint=f"zfs set mountpoint={root} {dataset} (moves it), or another dataset",
            )  # fmt: skip
        return f"{done or f'ZFS dataset {dataset} is already at {root}.'}{config}\n{persist}"
    _check_mount_target(name, root)
    made_pool = pool not in pools
    if made_pool:
        _make_file(name, image, size)
        try:
            tools.run(f"create pool {pool}", tools.zpool, "create", "-m",
                      root if dataset == pool else "none", pool, image)  # fmt: skip
        except BaseException:
            os.unlink(image)
            raise
        done = f"Made pool {pool} on {image} ({_human(size)}, sparse)"
    if dataset != pool:
        try:
            tools.run(f"create dataset {dataset}", tools.zfs, "create", "-p", "-o",
                      f"mountpoint={root}", dataset)  # fmt: skip
        except BaseException:
            if made_pool:
                tools.run(f"remove pool {pool}", tools.zpool, "destroy", pool)
                os.unlink(image)
            raise
        done = (done + ", dataset" if done else "Made dataset") + f" {dataset}"
    return f"{done} mounted at {root}.{config}\n{persist}"
