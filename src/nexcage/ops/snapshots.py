"""``nexcage snapshot create|ls|rollback|rm ID [NAME]``: snapshots of a container's rootfs on
the storage driver that made it (``create --image``).

Consistency. A snapshot of a stopped (or created, or paused: nothing writes) container is the
tree as it is. A running container may be writing: btrfs and zfs snapshot atomically (a
crash-consistent point in time), so they take it; ``dir`` copies file by file and ``overlay``
copies the upper directory, which would mix moments, so they refuse, saying why. Rollback
replaces the tree under the container's processes: only for a stopped container. Every verb
holds the container's state lock, so a concurrent start/delete waits.

Rollback restores the exact tree of the snapshot; the driver may destroy newer snapshots on the
way (``zfs rollback -r``): the result lists them.
"""

from __future__ import annotations

import os

from nexcage.errors import NexcageError, SnapshotNotFound, StorageError
from nexcage.ops import lifecycle
from nexcage.ops import storage as ops_storage
from nexcage.state import record as st
from nexcage.storage import names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nexcage.ops.context import Context
    from nexcage.state.record import Record
    from nexcage.storage.base import Snapshot, StorageDriver

# Drivers whose snapshot is one atomic operation of the filesystem (a running container's tree at
# one instant); the others copy entry by entry.
ATOMIC_SNAPSHOTS = frozenset({"btrfs", "zfs"})
_QUIET = (st.STOPPED, st.CREATED, st.PAUSED)


def _driver(rec: Record) -> tuple[StorageDriver, str]:
    """The driver holding the container's rootfs and the id it knows it by."""
    for path in rec.owned:
        found = ops_storage.driver_of(path)
        if found is not None:
            return found
    raise StorageError(
        "-",
        f"container {rec.id} has no rootfs from a storage driver: snapshots work for "
        "containers made with `create --image`",
    )


def _check_name(name: str) -> str:
    return names.check_snapshot(name)


def create(ctx: Context, container_id: str, name: str | None = None) -> Snapshot:
    with ctx.store.lock(container_id):
        rec, status = lifecycle.load(ctx, container_id)
        driver, cid = _driver(rec)
        if status not in _QUIET and driver.name not in ATOMIC_SNAPSHOTS:
            raise StorageError(
                driver.name,
                f"container {container_id} is {status}: the {driver.name} driver copies the "
                "rootfs file by file, so a snapshot of a running container would not be "
                "consistent; stop (or pause) it first (btrfs and zfs snapshot running containers "
                "atomically)",
            )
        snap_name = _check_name(name) if name else _default_name(driver, cid)
        if any(s.name == snap_name for s in driver.snapshots(cid)):
            raise StorageError(
                driver.name, f"container {container_id} already has a snapshot {snap_name!r}"
            )
        return driver.snapshot(cid, snap_name)


def _default_name(driver: StorageDriver, cid: str) -> str:
    import time

    base = time.strftime("snap-%Y%m%d-%H%M%S", time.gmtime())
    taken = {s.name for s in driver.snapshots(cid)}
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def list_snapshots(ctx: Context, container_id: str) -> list[Snapshot]:
    rec, _status = lifecycle.load(ctx, container_id)
    driver, cid = _driver(rec)
    return driver.snapshots(cid)


def rollback(ctx: Context, container_id: str, name: str) -> list[str]:
    """Restore the snapshot ``name``; returns the newer snapshots the driver destroyed."""
    _check_name(name)
    with ctx.store.lock(container_id):
        rec, status = lifecycle.load(ctx, container_id)
        driver, cid = _driver(rec)
        before = [s.name for s in driver.snapshots(cid)]
        if name not in before:
            raise SnapshotNotFound(driver.name, container_id, name, before)
        if status != st.STOPPED:
            raise StorageError(
                driver.name,
                f"container {container_id} is {status}: rollback replaces the files under its "
                "processes; stop it first",
            )
        driver.rollback(cid, name)
        after = {s.name for s in driver.snapshots(cid)}
        _check_rootfs(driver, cid, rec)
        return [n for n in before if n not in after]


def _check_rootfs(driver: StorageDriver, cid: str, rec: Record) -> None:
    """The bundle points at the rootfs by path: it must still be there after a rollback."""
    path = driver.rootfs_path(cid)
    if os.path.normpath(path) != os.path.normpath(rec.rootfs):
        raise NexcageError(
            f"rollback of {rec.id}: the rootfs moved from {rec.rootfs} to {path}; the bundle "
            "no longer points at it"
        )


def remove(ctx: Context, container_id: str, name: str) -> None:
    _check_name(name)
    with ctx.store.lock(container_id):
        rec, _status = lifecycle.load(ctx, container_id)
        driver, cid = _driver(rec)
        have = [s.name for s in driver.snapshots(cid)]
        if name not in have:
            raise SnapshotNotFound(driver.name, container_id, name, have)
        driver.remove_snapshot(cid, name)
