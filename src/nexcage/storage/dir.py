"""The ``dir`` driver: plain directory copies, the fallback that works on any filesystem.

Layer format FLAT (see base.py): every layer holds the whole tree up to it, so a layer starts as a
copy of its parent, a container rootfs is a copy of its top layer and a snapshot is a copy of the
rootfs. Copies go through `tree.copy_tree`: a reflink per file where the filesystem shares
extents (btrfs, XFS: then a copy costs metadata only), else a kernel-side ``copy_file_range``;
owners, modes, times, xattrs, hardlinks and device nodes are kept. This is Incus's ``dir`` pool
and containers/storage's ``vfs``: correct everywhere, fast nowhere.

Layout under ``root`` (``<data_root>/storage/dir``)::

    layers/<hex>/tree/                 a committed layer (whole tree), hex of its chain id
    layers/<hex>/parent                its parent's chain id ("" for a base layer)
    layers/.tmp-<hex>/                 a layer being prepared (prepare_layer .. commit_layer)
    containers/<id>/rootfs/            a container's writable rootfs
    containers/<id>/parent             the chain id it was made from ("" for none)
    containers/<id>/snapshots/<name>/  rootfs/ + created (RFC 3339)
    containers/.tmp-<id>/              a rootfs being made
    */.del-<name>-<pid>                something being removed (renamed away first)

Atomicity: everything is built under a dot-name and renamed into place, so a reader never sees
half a layer, rootfs or snapshot; removal renames away before deleting, so a crash never leaves a
half-deleted tree under a real name. Leftover dot-names are swept by the next operation on the
same name (``prepare_layer``/``abort_layer`` for a layer, ``create_rootfs``/``remove_rootfs``
for a container; `nexcage storage gc` calls those for everything it finds).

Rollback copies the snapshot to ``containers/<id>/.rollback-new``, renames it ``.rollback-ready``
(complete), swaps it with ``rootfs`` (old one to ``.rollback-old``) and removes the old tree; a
crash in between is repaired on the next access (`_recover`).
"""

from __future__ import annotations

import os

from nexcage import log
from nexcage.errors import StorageError
from nexcage.host.fs import fsync_dir
from nexcage.image.rootfs import remove_path
from nexcage.storage import files, names
from nexcage.storage.base import FLAT, Snapshot
from nexcage.storage.layout import LayerDirs
from nexcage.storage.tree import copy_tree, disk_usage, syncfs

NAME = "dir"
_TREE = "tree"
_ROOTFS = "rootfs"
_PARENT = "parent"
_CREATED = "created"
_SNAPSHOTS = "snapshots"
_NEW, _READY, _OLD = ".rollback-new", ".rollback-ready", ".rollback-old"


class DirDriver(LayerDirs):
    name = NAME
    COMMITTED = _TREE
    layer_format = FLAT

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._layers = os.path.join(self.root, "layers")
        self._containers = os.path.join(self.root, "containers")

    def usable(self) -> str | None:
        """Any directory we can write will do; the nearest existing ancestor must be writable."""
        probe = self.root
        while not os.path.isdir(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if not os.access(probe, os.W_OK | os.X_OK):
            return f"{probe} is not writable"
        return None

    def _ensure(self) -> None:
        for path in (self._layers, self._containers):
            os.makedirs(path, mode=0o700, exist_ok=True)

    # -- image layers ----------------------------------------------------------------------------

    def layer_path(self, chain_id: str) -> str:
        """The tree of a committed layer (read it, never write it)."""
        path = os.path.join(self._layer_dir(chain_id), _TREE)
        if not os.path.isdir(path):
            raise StorageError(NAME, f"layer {chain_id} is not in the store")
        return path

    def prepare_layer(self, chain_id: str, parent: str | None) -> str:
        if self.has_layer(chain_id):
            raise StorageError(NAME, f"layer {chain_id} is already committed")
        source = self.layer_path(parent) if parent else None
        self._ensure()
        tmp = self._tmp_layer(chain_id)
        remove_path(tmp)  # an earlier attempt that crashed
        os.mkdir(tmp, 0o700)
        try:
            files.write(os.path.join(tmp, _PARENT), parent or "")
            tree = os.path.join(tmp, _TREE)
            if source is None:
                os.mkdir(tree, 0o755)
            else:
                copy_tree(source, tree)
        except BaseException:
            files.remove_quietly(tmp)
            raise
        return tree

    def commit_layer(self, chain_id: str) -> None:
        final = self._layer_dir(chain_id)
        if self.has_layer(chain_id):
            return
        tmp = self._tmp_layer(chain_id)
        if not os.path.isdir(os.path.join(tmp, _TREE)):
            raise StorageError(NAME, f"layer {chain_id} was not prepared: nothing to commit")
        syncfs(tmp)  # the data first, then the rename that publishes it
        os.rename(tmp, final)
        fsync_dir(self._layers)

    def abort_layer(self, chain_id: str) -> None:
        hexpart = names.chain_hex(NAME, chain_id)
        remove_path(self._tmp_layer(chain_id))
        files.sweep(self._layers, hexpart)

    def remove_layer(self, chain_id: str) -> None:
        final = self._layer_dir(chain_id)
        if not os.path.isdir(final):
            self.abort_layer(chain_id)
            return
        children = [f"layer {c}" for c in self.layers() if self._layer_parent(c) == chain_id]
        for entry in files.listdir(self._layers):
            if (
                entry.startswith(".tmp-")
                and files.read(os.path.join(self._layers, entry, _PARENT)) == chain_id
            ):
                children.append(f"layer sha256:{entry[5:]} (being prepared)")
        users = [f"container {c}" for c in self.containers() if self.parent_of(c) == chain_id]
        if children or users:
            what = children + users
            raise StorageError(NAME, f"layer {chain_id} is in use by {', '.join(what)}")
        _remove_renamed(final, self._layers, names.chain_hex(NAME, chain_id))

    # -- container rootfs ------------------------------------------------------------------------

    def create_rootfs(self, container_id: str, top: str | None) -> str:
        final = self._container_dir(container_id)
        if os.path.lexists(final):
            raise StorageError(NAME, f"container {container_id} already has a rootfs")
        source = self.layer_path(top) if top else None
        self._ensure()
        tmp = os.path.join(self._containers, ".tmp-" + container_id)
        remove_path(tmp)
        files.sweep(self._containers, container_id)
        os.mkdir(tmp, 0o700)
        try:
            files.write(os.path.join(tmp, _PARENT), top or "")
            os.mkdir(os.path.join(tmp, _SNAPSHOTS), 0o700)
            rootfs = os.path.join(tmp, _ROOTFS)
            if source is None:
                os.mkdir(rootfs, 0o755)
            else:
                copy_tree(source, rootfs)
            os.rename(tmp, final)
        except BaseException:
            files.remove_quietly(tmp)
            raise
        fsync_dir(self._containers)
        return os.path.join(final, _ROOTFS)

    def rootfs_path(self, container_id: str) -> str:
        self._recover(container_id)
        path = os.path.join(self._container_dir(container_id), _ROOTFS)
        if not os.path.isdir(path):
            raise StorageError(NAME, f"container {container_id} has no rootfs")
        return path

    def remove_rootfs(self, container_id: str) -> None:
        final = self._container_dir(container_id)
        remove_path(os.path.join(self._containers, ".tmp-" + container_id))
        if os.path.lexists(final):
            _remove_renamed(final, self._containers, container_id)
        else:
            files.sweep(self._containers, container_id)

    def containers(self) -> list[str]:
        return sorted(n for n in files.listdir(self._containers) if not n.startswith("."))

    def parent_of(self, container_id: str) -> str | None:
        return files.read(os.path.join(self._container_dir(container_id), _PARENT)) or None

    # -- snapshots -------------------------------------------------------------------------------

    def _snap_dir(self, container_id: str, name: str = "") -> str:
        base = os.path.join(self._container_dir(container_id), _SNAPSHOTS)
        return os.path.join(base, names.check_snapshot(name)) if name else base

    def snapshot(self, container_id: str, name: str) -> Snapshot:
        rootfs = self.rootfs_path(container_id)
        final = self._snap_dir(container_id, name)
        if os.path.lexists(final):
            raise StorageError(NAME, f"container {container_id} already has a snapshot {name!r}")
        base = self._snap_dir(container_id)
        os.makedirs(base, mode=0o700, exist_ok=True)
        tmp = os.path.join(base, ".tmp-" + name)
        remove_path(tmp)
        os.mkdir(tmp, 0o700)
        created = names.now_rfc3339()
        try:
            copy_tree(rootfs, os.path.join(tmp, _ROOTFS))
            files.write(os.path.join(tmp, _CREATED), created)
            syncfs(tmp)
            os.rename(tmp, final)
        except BaseException:
            files.remove_quietly(tmp)
            raise
        fsync_dir(base)
        return Snapshot(name, created)

    def snapshots(self, container_id: str) -> list[Snapshot]:
        base = self._snap_dir(container_id)
        found = []
        for name in files.listdir(base):
            if name.startswith("."):
                continue
            created = files.read(os.path.join(base, name, _CREATED))
            if created:
                found.append(Snapshot(name, created))
        return sorted(found, key=lambda s: (s.created, s.name))

    def rollback(self, container_id: str, name: str) -> None:
        rootfs = self.rootfs_path(container_id)
        source = os.path.join(self._snap_dir(container_id, name), _ROOTFS)
        if not os.path.isdir(source):
            raise StorageError(NAME, f"container {container_id} has no snapshot {name!r}")
        home = self._container_dir(container_id)
        new, ready, old = (os.path.join(home, n) for n in (_NEW, _READY, _OLD))
        for leftover in (new, ready, old):
            remove_path(leftover)
        try:
            copy_tree(source, new)
        except BaseException:
            files.remove_quietly(new)
            raise
        os.rename(new, ready)
        # From here on `_recover` finishes the job if we die: ready is complete.
        os.rename(rootfs, old)
        os.rename(ready, rootfs)
        fsync_dir(home)
        remove_path(old)

    def _recover(self, container_id: str) -> None:
        """Finish or undo a rollback a crash interrupted."""
        home = self._container_dir(container_id)
        rootfs, ready = os.path.join(home, _ROOTFS), os.path.join(home, _READY)
        if not os.path.lexists(rootfs) and os.path.isdir(ready):
            log.info(f"storage dir: finishing the interrupted rollback of {container_id}")
            os.rename(ready, rootfs)
        for leftover in (_NEW, _READY, _OLD):
            path = os.path.join(home, leftover)
            if os.path.lexists(path) and os.path.isdir(rootfs):
                remove_path(path)

    def remove_snapshot(self, container_id: str, name: str) -> None:
        final = self._snap_dir(container_id, name)
        if not os.path.isdir(final):
            raise StorageError(NAME, f"container {container_id} has no snapshot {name!r}")
        _remove_renamed(final, self._snap_dir(container_id), name)

    def usage(self) -> dict[str, int]:
        containers = snapshots = 0
        for cid in self.containers():
            home = os.path.join(self._containers, cid)
            containers += disk_usage(os.path.join(home, _ROOTFS))
            snapshots += disk_usage(os.path.join(home, _SNAPSHOTS))
        return {"layers": disk_usage(self._layers), "containers": containers,
                "snapshots": snapshots}  # fmt: skip


def _remove_renamed(path: str, parent: str, name: str) -> None:
    """Rename ``path`` away (a crash never leaves half a tree under its name), then delete it."""
    remove_path(files.rename_away(path, parent, name))
    files.sweep(parent, name)
