"""The storage driver contract (PRODUCT.md §3.2): image layers stored once, containers as
copy-on-write views, snapshots. Imported for type checking and by storage code only.

Identity. A layer is keyed by its **chain id** (OCI image spec): ``ChainID(L0) = DiffID(L0)``,
``ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`` — the same diff on the same parents is
the same layer, whichever image it came from. A container rootfs is keyed by the container id.

On-disk format (``layer_format``):
- ``"flat"`` (btrfs, zfs, dir): every layer is the *whole* tree up to it: ``prepare_layer``
  starts from a writable copy/snapshot/clone of the parent, the diff is unpacked onto it with
  whiteouts applied by deletion, ``commit_layer`` freezes it (read-only snapshot).
- ``"overlay"``: every layer is only its diff, whiteouts kept in overlay form (char device 0/0;
  opaque dirs as xattr ``trusted.overlay.opaque=y``); a container is an overlay mount of the
  chain.

Locations: everything lives under ``root`` = ``<data_root>/storage/<driver name>`` (btrfs: that
directory must be on btrfs; zfs: datasets under the configured parent dataset, mounted there).

Idempotence and atomicity, per method:
- ``prepare_layer``: discards a previous incomplete attempt for the same chain id, returns a
  writable directory; nothing is visible to ``has_layer`` until ``commit_layer``.
- ``commit_layer``: atomic (rename / read-only snapshot); after it, ``has_layer`` is true.
  Committing an already committed layer is a no-op. ``abort_layer`` removes an uncommitted one.
- ``create_rootfs``: returns a writable rootfs (mounted for overlay/zfs legacy mounts); fails if
  the container already has one. ``remove_rootfs``: unmounts and removes; missing is fine.
- ``snapshot``/``rollback``/``remove_snapshot``: only for a container rootfs; rollback restores
  the exact tree of the snapshot (newer snapshots may be destroyed, as ``zfs rollback -r``).
- ``remove_layer``: refuses (StorageError) while a committed child layer or a container rootfs
  depends on it; callers garbage-collect top-down.
"""

from __future__ import annotations

# Drivers import FLAT/OVERLAY/Snapshot from here at run time, and `delete` of an image container
# opens a driver: `typing` (~20 ms, DESIGN.md hot path) only for the type checker.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

FLAT = "flat"
OVERLAY = "overlay"
DRIVERS = ("overlay", "btrfs", "zfs", "dir")


class Snapshot:
    __slots__ = ("created", "name")

    def __init__(self, name: str, created: str) -> None:
        self.name = name
        self.created = created  # RFC 3339


class StorageDriver(Protocol):
    name: str
    layer_format: str  # FLAT or OVERLAY
    root: str

    def usable(self) -> str | None:
        """None when this driver works here, else why not (for ``auto`` and ``check``)."""
        ...

    # -- image layers ----------------------------------------------------------------------------
    def has_layer(self, chain_id: str) -> bool: ...
    def prepare_layer(self, chain_id: str, parent: str | None) -> str: ...
    def commit_layer(self, chain_id: str) -> None: ...
    def abort_layer(self, chain_id: str) -> None: ...
    def remove_layer(self, chain_id: str) -> None: ...
    def layers(self) -> list[str]: ...

    # -- container rootfs ------------------------------------------------------------------------
    def create_rootfs(self, container_id: str, top: str | None) -> str: ...
    def rootfs_path(self, container_id: str) -> str:
        """The rootfs of an existing container, (re)mounted if the driver mounts."""
        ...

    def remove_rootfs(self, container_id: str) -> None: ...
    def containers(self) -> list[str]: ...
    def parent_of(self, container_id: str) -> str | None:
        """The chain id a container rootfs was created from (for garbage collection)."""
        ...

    # -- snapshots -------------------------------------------------------------------------------
    def snapshot(self, container_id: str, name: str) -> Snapshot: ...
    def snapshots(self, container_id: str) -> list[Snapshot]: ...
    def rollback(self, container_id: str, name: str) -> None: ...
    def remove_snapshot(self, container_id: str, name: str) -> None: ...

    def usage(self) -> dict[str, int]:
        """Bytes used: {"layers": n, "containers": n, "snapshots": n} (best effort)."""
        ...
