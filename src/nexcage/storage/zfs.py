"""The ``zfs`` driver: a dataset per layer, committed as ``@base``; a container is a clone.

Layer format FLAT (base.py). Modelled on Incus's zfs driver and containers/storage's
(CONTRACTS.md §6.2, §6.3), driven through the ``zfs`` program (as go-zfs does; there is no stable
ioctl ABI to call instead), which works the same with OpenZFS and with zfs-fuse.

Datasets under the configured parent dataset ``P`` (``storage.zfs_dataset``), whose mountpoint
must be the driver root (``<data_root>/storage/zfs``); children inherit their mountpoints::

    P/layers/<hex>            a layer (hex of its chain id); committed = has ``@base``
    P/layers/<hex>@base       the committed layer, read-only; children and containers clone it
    P/containers/<id>         a container rootfs: ``zfs clone P/layers/<top>@base`` (``+`` in
                              an id is ``:`` here: ZFS names cannot hold ``+``)
    P/containers/<id>@<name>  its snapshots

zfs-fuse (the FUSE port, pool version 23) has no ``mount -t zfs`` helper, so ``mountpoint=legacy``
datasets (containers/storage, Incus) cannot be mounted; inherited mountpoints can, and zfs mounts
a clone as it makes it. It has no xattrs (user or trusted: EOPNOTSUPP; unpack skips them with a
warning) and no ``-p``/``-t`` on ``zfs get`` (``zfs list -t``, ``zfs get -p`` work).

- ``prepare_layer``: destroys an uncommitted ``P/layers/<hex>`` (no ``@base``), then clones the
  parent's ``@base`` (or creates an empty dataset). Nothing is visible until ``@base`` exists.
- ``commit_layer``: ``readonly=on``, then ``zfs snapshot …@base`` (atomic, one transaction: the
  commit), then ``canmount=noauto`` and unmount: containers clone ``@base``, nothing reads the
  layer's own dataset again (``readonly`` alone is not enough on zfs-fuse: a mounted dataset
  stays writable, the property shows "off, temporary").
- ``remove_layer``: refused while any dataset's ``origin`` is its ``@base`` (a child layer, even
  one being prepared, or a container); else ``zfs destroy -r`` (the dataset and ``@base``, never
  ``-R``, which would take dependent clones with it).
- ``rollback``: ``zfs rollback -r`` (snapshots newer than the target are destroyed: ZFS can only
  roll back to the latest one). Snapshots are instantaneous and consistent while running.
- ``has_layer`` remembers positive answers for the object's lifetime (a committed layer only goes
  away through ``remove_layer``): checking an image's N layers costs one ``zfs list``, not N.
"""

from __future__ import annotations

import os

from nexcage import log
from nexcage.errors import StorageError
from nexcage.storage import command, names
from nexcage.storage.base import FLAT, Snapshot

NAME = "zfs"
BASE = "base"
PACKAGE = "zfsutils-linux (OpenZFS) or zfs-fuse"


def _missing(exc: StorageError) -> bool:
    return "does not exist" in exc.message


class ZfsDriver:
    name = NAME
    layer_format = FLAT

    def __init__(self, root: str, dataset: str | None) -> None:
        self.root = os.path.abspath(root)
        self.dataset = dataset
        self._committed: set[str] = set()
        self._listed = False

    # -- plumbing --------------------------------------------------------------------------------

    def _zfs(self, what: str, *args: str) -> str:
        return command.run(NAME, [command.program(NAME, "zfs", PACKAGE), *args], what)

    @property
    def _parent(self) -> str:
        if not self.dataset:
            raise StorageError(NAME, "no ZFS dataset configured (storage.zfs_dataset)")
        return self.dataset

    def _layer_ds(self, chain_id: str) -> str:
        return f"{self._parent}/layers/{names.chain_hex(NAME, chain_id)}"

    def _container_ds(self, container_id: str) -> str:
        component = names.zfs_component(names.check_container(NAME, container_id))
        return f"{self._parent}/containers/{component}"

    def _path(self, dataset: str) -> str:
        """Where ``dataset`` is mounted: below root as its name is below the parent dataset
        (mountpoints are inherited; `usable` checks the parent is mounted at root)."""
        return os.path.join(self.root, dataset[len(self._parent) + 1 :])

    def _exists(self, dataset: str) -> bool:
        try:
            self._zfs(f"look up {dataset}", "list", "-H", "-o", "name", dataset)
        except StorageError as exc:
            if _missing(exc):
                return False
            raise
        return True

    def _destroy(self, dataset: str, what: str) -> bool:
        """``zfs destroy -r`` (the dataset and its snapshots; never ``-R``: clones of it are the
        caller's to refuse). False if it did not exist.

        zfs-fuse's ``destroy`` unmounts asynchronously and then finds the dataset busy, so it is
        unmounted first (harmless with OpenZFS), and ``busy`` is retried briefly before being
        reported: a container still running on it stays busy."""
        import time

        try:
            self._zfs(what, "unmount", dataset)
        except StorageError as exc:
            if _missing(exc):
                return False
            if "not currently mounted" not in exc.message:
                raise
        for delay in (0.05, 0.1, 0.2, 0.4, 0.0):
            try:
                self._zfs(what, "destroy", "-r", dataset)
                break
            except StorageError as exc:
                if _missing(exc):
                    return False
                if "busy" not in exc.message or not delay:
                    raise
                time.sleep(delay)
        try:
            os.rmdir(self._path(dataset))  # the empty mountpoint directory zfs leaves
        except OSError:
            pass
        return True

    def _ensure(self, child: str) -> None:
        dataset = f"{self._parent}/{child}"
        if self._exists(dataset):
            return
        if not self._exists(self._parent):
            raise StorageError(
                NAME,
                f"ZFS dataset {self._parent} does not exist (no pool or no dataset)",
                hint="nexcage storage init --driver zfs, or zfs create it",
            )
        try:
            self._zfs(f"create {dataset}", "create", dataset)
        except StorageError as exc:
            if "already exists" not in exc.message:  # made meanwhile by another process
                raise

    # -- can it work here ------------------------------------------------------------------------

    def usable(self) -> str | None:
        if not self.dataset:
            return "no ZFS dataset configured (storage.zfs_dataset in the config file)"
        if command.find("zfs") is None:
            return f"the zfs program is not installed ({PACKAGE})"
        try:
            out = self._zfs(
                f"look up {self.dataset}", "get", "-H", "-o", "value", "mountpoint,mounted",
                self.dataset,
            )  # fmt: skip
        except StorageError as exc:
            if _missing(exc):
                return f"ZFS dataset {self.dataset} does not exist (no pool or no dataset)"
            detail = exc.message.removeprefix(f"storage {NAME}: ")
            return f"zfs does not answer: {' '.join(detail.split())}"
        values = out.split()
        mountpoint, mounted = [*values, "", ""][:2]
        if not mountpoint.startswith("/") or os.path.abspath(mountpoint) != self.root:
            return (
                f"ZFS dataset {self.dataset} is mounted at {mountpoint!r}, not at {self.root} "
                f"(zfs set mountpoint={self.root} {self.dataset})"
            )
        if mounted != "yes":
            return f"ZFS dataset {self.dataset} is not mounted (zfs mount {self.dataset})"
        return None

    # -- image layers ----------------------------------------------------------------------------

    def _list_committed(self) -> set[str]:
        prefix = f"{self._parent}/layers/"
        try:
            out = self._zfs(
                "list layers", "list", "-H", "-o", "name", "-t", "snapshot", "-r",
                f"{self._parent}/layers",
            )  # fmt: skip
        except StorageError as exc:
            if _missing(exc):
                return set()
            raise
        found = set()
        for line in out.splitlines():
            dataset, _, snap = line.strip().partition("@")
            chain = names.chain_from_hex(dataset.removeprefix(prefix))
            if snap == BASE and dataset.startswith(prefix) and chain:
                found.add(chain)
        return found

    def has_layer(self, chain_id: str) -> bool:
        dataset = self._layer_ds(chain_id)
        if chain_id in self._committed:
            return True
        if not self._listed:
            self._committed |= self._list_committed()
            self._listed = True
            if chain_id in self._committed:
                return True
        if self._exists(f"{dataset}@{BASE}"):
            self._committed.add(chain_id)
            return True
        return False

    def prepare_layer(self, chain_id: str, parent: str | None) -> str:
        if self.has_layer(chain_id):
            raise StorageError(NAME, f"layer {chain_id} is already committed")
        if parent is not None and not self.has_layer(parent):
            raise StorageError(NAME, f"parent layer {parent} is not in the store")
        dataset = self._layer_ds(chain_id)
        self._ensure("layers")
        self.abort_layer(chain_id)  # an earlier attempt that crashed
        if parent is None:
            self._zfs(f"create layer {chain_id}", "create", dataset)
        else:
            origin = f"{self._layer_ds(parent)}@{BASE}"
            self._zfs(f"clone layer {parent} for {chain_id}", "clone", origin, dataset)
        return self._path(dataset)

    def commit_layer(self, chain_id: str) -> None:
        if self.has_layer(chain_id):
            return
        dataset = self._layer_ds(chain_id)
        if not self._exists(dataset):
            raise StorageError(NAME, f"layer {chain_id} was not prepared: nothing to commit")
        self._zfs(f"make layer {chain_id} read-only", "set", "readonly=on", dataset)
        self._zfs(f"commit layer {chain_id}", "snapshot", f"{dataset}@{BASE}")
        self._committed.add(chain_id)
        # Clones are made from @base: the layer's own dataset need not stay mounted (hundreds
        # of layers would be hundreds of mounts, FUSE ones with zfs-fuse). Best effort.
        try:
            self._zfs(f"unmount layer {chain_id}", "set", "canmount=noauto", dataset)
            self._zfs(f"unmount layer {chain_id}", "unmount", dataset)
            os.rmdir(self._path(dataset))
        except (StorageError, OSError) as exc:
            log.warning(f"storage zfs: layer {chain_id} stays mounted: {exc}")

    def abort_layer(self, chain_id: str) -> None:
        dataset = self._layer_ds(chain_id)
        if chain_id in self._committed or self._exists(f"{dataset}@{BASE}"):
            return  # committed: not ours to abort (remove_layer is)
        self._destroy(dataset, f"remove the partial layer {chain_id}")

    def remove_layer(self, chain_id: str) -> None:
        dataset = self._layer_ds(chain_id)
        if not self._exists(f"{dataset}@{BASE}"):
            self.abort_layer(chain_id)
            return
        users = self._dependents(f"{dataset}@{BASE}")
        if users:
            raise StorageError(NAME, f"layer {chain_id} is in use by {', '.join(users)}")
        self._committed.discard(chain_id)
        self._destroy(dataset, f"remove layer {chain_id}")

    def _dependents(self, origin: str) -> list[str]:
        """Datasets cloned from ``origin``, named for a human."""
        out = self._zfs(
            "list clones", "get", "-H", "-r", "-o", "name,value", "origin", self._parent
        )  # fmt: skip
        found = []
        layers, containers = f"{self._parent}/layers/", f"{self._parent}/containers/"
        for line in out.splitlines():
            name, _, value = line.strip().partition("\t")
            if value != origin or "@" in name:
                continue
            if name.startswith(layers):
                chain = names.chain_from_hex(name[len(layers) :])
                committed = self._exists(f"{name}@{BASE}")
                found.append(f"layer {chain}" + ("" if committed else " (being prepared)"))
            elif name.startswith(containers):
                found.append(f"container {names.from_zfs_component(name[len(containers) :])}")
            else:
                found.append(f"dataset {name}")
        return found

    def layers(self) -> list[str]:
        found = self._list_committed()
        self._committed |= found
        return sorted(found)

    # -- container rootfs ------------------------------------------------------------------------

    def create_rootfs(self, container_id: str, top: str | None) -> str:
        dataset = self._container_ds(container_id)
        for attempt in (1, 2):
            try:
                if top is None:
                    self._zfs(f"create the rootfs of {container_id}", "create", dataset)
                else:
                    origin = f"{self._layer_ds(top)}@{BASE}"
                    self._zfs(f"clone layer {top} for {container_id}", "clone", origin, dataset)
                break
            except StorageError as exc:
                if "already exists" in exc.message:
                    raise StorageError(
                        NAME, f"container {container_id} already has a rootfs"
                    ) from None
                if not _missing(exc) or attempt == 2:
                    raise
                if top is not None and not self.has_layer(top):
                    raise StorageError(NAME, f"layer {top} is not in the store") from None
                self._ensure("containers")  # the first container on this dataset
        return self._path(dataset)

    def rootfs_path(self, container_id: str) -> str:
        dataset = self._container_ds(container_id)
        path = self._path(dataset)
        if command.is_mountpoint(path):
            return path
        if not self._exists(dataset):
            raise StorageError(NAME, f"container {container_id} has no rootfs")
        self._zfs(f"mount the rootfs of {container_id}", "mount", dataset)
        return path

    def remove_rootfs(self, container_id: str) -> None:
        self._destroy(self._container_ds(container_id), f"remove the rootfs of {container_id}")

    def containers(self) -> list[str]:
        parent = f"{self._parent}/containers"
        try:
            out = self._zfs("list containers", "list", "-H", "-o", "name", "-r", "-d", "1", parent)
        except StorageError as exc:
            if _missing(exc):
                return []
            raise
        prefix = parent + "/"
        return sorted(
            names.from_zfs_component(line.strip()[len(prefix) :])
            for line in out.splitlines()
            if line.strip().startswith(prefix)
        )

    def parent_of(self, container_id: str) -> str | None:
        dataset = self._container_ds(container_id)
        try:
            origin = self._zfs(f"look up {dataset}", "get", "-H", "-o", "value", "origin", dataset)
        except StorageError as exc:
            if _missing(exc):
                return None
            raise
        layer, _, snap = origin.strip().partition("@")
        prefix = f"{self._parent}/layers/"
        if snap != BASE or not layer.startswith(prefix):
            return None
        return names.chain_from_hex(layer[len(prefix) :])

    # -- snapshots -------------------------------------------------------------------------------

    def _require(self, container_id: str) -> str:
        dataset = self._container_ds(container_id)
        if not self._exists(dataset):
            raise StorageError(NAME, f"container {container_id} has no rootfs")
        return dataset

    def snapshot(self, container_id: str, name: str) -> Snapshot:
        names.check_snapshot(name, NAME)
        dataset = self._container_ds(container_id)
        try:
            self._zfs(f"snapshot {container_id}", "snapshot", f"{dataset}@{name}")
        except StorageError as exc:
            if "already exists" in exc.message:
                raise StorageError(
                    NAME, f"container {container_id} already has a snapshot {name!r}"
                ) from None
            if _missing(exc):
                raise StorageError(NAME, f"container {container_id} has no rootfs") from None
            raise
        for snap in self.snapshots(container_id):
            if snap.name == name:
                return snap
        return Snapshot(name, names.now_rfc3339())  # pragma: no cover - removed meanwhile

    def snapshots(self, container_id: str) -> list[Snapshot]:
        dataset = self._require(container_id)
        out = self._zfs(
            f"list the snapshots of {container_id}",
            "get", "-H", "-p", "-r", "-o", "name,value", "creation", dataset,
        )  # fmt: skip
        found = []
        for line in out.splitlines():
            name, _, value = line.strip().partition("\t")
            owner, _, snap = name.partition("@")
            if owner == dataset and snap and value.isdigit():
                found.append(Snapshot(snap, names.rfc3339(int(value))))
        return sorted(found, key=lambda s: (s.created, s.name))

    def rollback(self, container_id: str, name: str) -> None:
        names.check_snapshot(name, NAME)
        dataset = self._require(container_id)
        if not self._exists(f"{dataset}@{name}"):
            raise StorageError(NAME, f"container {container_id} has no snapshot {name!r}")
        self._zfs(
            f"roll {container_id} back to {name}", "rollback", "-r", f"{dataset}@{name}"
        )  # fmt: skip

    def remove_snapshot(self, container_id: str, name: str) -> None:
        names.check_snapshot(name, NAME)
        dataset = self._container_ds(container_id)
        try:
            self._zfs(f"remove snapshot {name} of {container_id}", "destroy", f"{dataset}@{name}")
        except StorageError as exc:
            if _missing(exc):
                raise StorageError(
                    NAME, f"container {container_id} has no snapshot {name!r}"
                ) from None
            raise

    def usage(self) -> dict[str, int]:
        """``used`` of the layers dataset; a clone's ``used`` counts only what it changed, so
        containers = ``used`` of containers minus their snapshots' share."""
        sizes = {"layers": 0, "containers": 0, "snapshots": 0}
        try:
            out = self._zfs(
                "usage", "get", "-H", "-p", "-r", "-o", "name,property,value",
                "used,usedbysnapshots", f"{self._parent}/layers", f"{self._parent}/containers",
            )  # fmt: skip
        except StorageError as exc:
            if _missing(exc):
                return sizes
            raise
        containers = f"{self._parent}/containers"
        for line in out.splitlines():
            fields = line.strip().split("\t")
            if len(fields) != 3 or not fields[2].isdigit() or "@" in fields[0]:
                continue
            dataset, prop, value = fields[0], fields[1], int(fields[2])
            if dataset == f"{self._parent}/layers" and prop == "used":
                sizes["layers"] = value
            elif dataset == containers and prop == "used":
                sizes["containers"] += value
            elif dataset.startswith(containers + "/") and prop == "usedbysnapshots":
                sizes["snapshots"] += value
                sizes["containers"] -= value
        return sizes
