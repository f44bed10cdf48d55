"""The ``btrfs`` driver: a subvolume per layer, a writable snapshot per container.

Layer format FLAT (base.py): a layer is the whole tree up to it. Modelled on containers/storage
``drivers/btrfs`` and Incus (CONTRACTS.md §6.2, §6.3).

Layout under ``root`` (``<data_root>/storage/btrfs``, which must be on btrfs)::

    layers/<hex>/rootfs           read-only subvolume: the tree up to this layer (hex: chain id)
    layers/<hex>/parent           its parent's chain id ("" for a base layer)
    layers/.tmp-<hex>/            a layer being prepared: rootfs/ is a writable snapshot of the
                                  parent's (or a new, empty subvolume)
    containers/<id>/rootfs        writable snapshot of the top layer's subvolume
    containers/<id>/parent        the chain id it was made from ("" for none)
    containers/.tmp-<id>/         a container being made
    snapshots/<id>/<name>/rootfs  read-only snapshot of the container's rootfs, + created
    */.del-<name>-<pid>           something being removed (renamed away first)

``commit_layer`` marks the subvolume read-only, flushes the filesystem (``syncfs``) and renames the
``.tmp-`` directory into place: the rename is the commit. A snapshot is atomic by itself (one
ioctl, one transaction), so rollback makes the writable copy of the snapshot at
``.rollback-ready`` directly, then swaps it with ``rootfs`` (old one to ``.rollback-old``); a
crash in between is finished on the next access (`_recover`). Snapshots are instantaneous and
consistent whether or not the container runs (a point-in-time copy of the subvolume).

Subvolumes are made, snapshotted, flagged and destroyed with the btrfs ioctls
(``BTRFS_IOC_SUBVOL_CREATE``, ``SNAP_CREATE_V2``, ``SUBVOL_SETFLAGS``, ``SNAP_DESTROY``) through
``fcntl.ioctl``, as containers/storage does, not with the ``btrfs`` program: a snapshot costs
~3 ms instead of ~8-10 ms for a fork+exec of btrfs-progs (CONTRACTS.md §7.2), no output is
parsed, and only ``nexcage storage init`` (mkfs) needs btrfs-progs. ``usage()`` asks
``btrfs filesystem du`` when it is installed (the only way to count shared extents once).
"""

from __future__ import annotations

import errno
import os
import stat
import struct

from nexcage import log
from nexcage.errors import StorageError
from nexcage.host.fs import fsync_dir
from nexcage.storage import command, files, names
from nexcage.storage.base import FLAT, Snapshot
from nexcage.storage.layout import LayerDirs
from nexcage.storage.tree import disk_usage, syncfs

NAME = "btrfs"
BTRFS_MAGIC = 0x9123683E
FIRST_FREE_OBJECTID = 256  # the inode number of every subvolume's root directory
_ROOTFS, _PARENT, _CREATED = "rootfs", "parent", "created"
_READY, _OLD = ".rollback-ready", ".rollback-old"


# -- ioctls (linux/btrfs.h) ----------------------------------------------------------------------


def _iow(nr: int, size: int) -> int:
    return (1 << 30) | (size << 16) | (0x94 << 8) | nr


_VOL_ARGS_SIZE = 4096  # struct btrfs_ioctl_vol_args{,_v2}
_SUBVOL_CREATE = _iow(14, _VOL_ARGS_SIZE)
_SNAP_DESTROY = _iow(15, _VOL_ARGS_SIZE)
_SNAP_CREATE_V2 = _iow(23, _VOL_ARGS_SIZE)
_SUBVOL_SETFLAGS = _iow(26, 8)
_SUBVOL_RDONLY = 1 << 1
_NAME_AT_V1 = 8  # __s64 fd; char name[4088]
_NAME_AT_V2 = 56  # __s64 fd; __u64 transid; __u64 flags; union{...} (32 bytes); char name[4040]
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _args(name: str, offset: int, head: bytes = b"") -> bytearray:
    # A mutable buffer: fcntl.ioctl copies immutable arguments into a 1024-byte one.
    encoded = os.fsencode(name)
    buf = bytearray(_VOL_ARGS_SIZE)
    buf[: len(head)] = head
    buf[offset : offset + len(encoded)] = encoded
    return buf


def _ioctl(what: str, fd: int, request: int, arg: bytearray) -> None:
    import fcntl

    try:
        fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        raise StorageError(NAME, f"{what}: {exc.strerror}") from None


def _create_subvolume(path: str) -> None:
    parent, name = os.path.split(path)
    fd = os.open(parent, _DIR)
    try:
        _ioctl(f"create subvolume {path}", fd, _SUBVOL_CREATE, _args(name, _NAME_AT_V1))
    finally:
        os.close(fd)


def _snapshot(source: str, dest: str, *, readonly: bool) -> None:
    parent, name = os.path.split(dest)
    src = os.open(source, _DIR)
    try:
        fd = os.open(parent, _DIR)
        try:
            head = struct.pack("=qQQ", src, 0, _SUBVOL_RDONLY if readonly else 0)
            what = f"snapshot {source} to {dest}"
            _ioctl(what, fd, _SNAP_CREATE_V2, _args(name, _NAME_AT_V2, head))
        finally:
            os.close(fd)
    finally:
        os.close(src)


def _set_readonly(path: str) -> None:
    fd = os.open(path, _DIR)
    try:
        _ioctl(f"make {path} read-only", fd, _SUBVOL_SETFLAGS,
               bytearray(struct.pack("=Q", _SUBVOL_RDONLY)))  # fmt: skip
    finally:
        os.close(fd)


def _is_subvolume(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode) and st.st_ino == FIRST_FREE_OBJECTID


def _destroy_subvolume(path: str) -> None:
    """Delete subvolume ``path``, first any subvolume a container made inside it (a container
    running btrfs tools on its rootfs): the kernel refuses a subvolume that holds others."""
    import fcntl

    parent, name = os.path.split(path)
    fd = os.open(parent, _DIR)
    try:
        try:
            fcntl.ioctl(fd, _SNAP_DESTROY, _args(name, _NAME_AT_V1))
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise StorageError(NAME, f"delete subvolume {path}: {exc.strerror}") from None
        for nested in _nested_subvolumes(path):
            _destroy_subvolume(nested)
        _ioctl(f"delete subvolume {path}", fd, _SNAP_DESTROY, _args(name, _NAME_AT_V1))
    finally:
        os.close(fd)


def _nested_subvolumes(path: str) -> list[str]:
    """Subvolume roots directly nested in subvolume ``path`` (without descending into them)."""
    found = []
    pending = [path]
    while pending:
        current = pending.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if _is_subvolume(entry.stat(follow_symlinks=False)):
                    found.append(entry.path)
                else:
                    pending.append(entry.path)
    return found


def remove_tree(path: str) -> None:
    """Remove ``path``: subvolumes with the ioctl (read-only ones included), directories
    entry by entry; a missing path is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if _is_subvolume(st):
        _destroy_subvolume(path)
    elif stat.S_ISDIR(st.st_mode):
        for entry in files.listdir(path):
            remove_tree(os.path.join(path, entry))
        os.rmdir(path)
    else:
        os.unlink(path)


def fs_magic(path: str) -> int:
    """``statfs(2)``'s f_type for ``path`` (the first field, a C long on Linux)."""
    import ctypes

    buf = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    value: int = struct.unpack_from("=q" if ctypes.sizeof(ctypes.c_long) == 8 else "=i", buf)[0]
    return value & 0xFFFFFFFF


# -- the driver ----------------------------------------------------------------------------------


class BtrfsDriver(LayerDirs):
    name = NAME
    COMMITTED = _ROOTFS
    layer_format = FLAT

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._layers = os.path.join(self.root, "layers")
        self._containers = os.path.join(self.root, "containers")
        self._snapshots = os.path.join(self.root, "snapshots")

    def usable(self) -> str | None:
        """The root (or, before it exists, its nearest ancestor) must be on btrfs."""
        probe = self.root
        while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        try:
            magic = fs_magic(probe)
        except OSError as exc:
            return f"cannot statfs {probe}: {exc.strerror}"
        if magic != BTRFS_MAGIC:
            return f"{probe} is not on btrfs (statfs type {magic:#x}, btrfs is {BTRFS_MAGIC:#x})"
        if not os.access(probe, os.W_OK | os.X_OK):
            return f"{probe} is not writable"
        return None

    def _ensure(self) -> None:
        if not os.path.isdir(self._layers):
            problem = self.usable()
            if problem is not None:
                raise StorageError(NAME, problem, hint="nexcage storage init --driver btrfs")
        for path in (self._layers, self._containers, self._snapshots):
            os.makedirs(path, mode=0o700, exist_ok=True)

    # -- image layers ----------------------------------------------------------------------------

    def prepare_layer(self, chain_id: str, parent: str | None) -> str:
        if self.has_layer(chain_id):
            raise StorageError(NAME, f"layer {chain_id} is already committed")
        if parent is not None and not self.has_layer(parent):
            raise StorageError(NAME, f"parent layer {parent} is not in the store")
        self._ensure()
        self.abort_layer(chain_id)  # an earlier attempt that crashed
        tmp = self._tmp_layer(chain_id)
        os.mkdir(tmp, 0o700)
        rootfs = os.path.join(tmp, _ROOTFS)
        try:
            files.write(os.path.join(tmp, _PARENT), parent or "")
            if parent is None:
                _create_subvolume(rootfs)
            else:
                source = os.path.join(self._layer_dir(parent), _ROOTFS)
                _snapshot(source, rootfs, readonly=False)
        except BaseException:
            _remove_quietly(tmp)
            raise
        return rootfs

    def commit_layer(self, chain_id: str) -> None:
        if self.has_layer(chain_id):
            return
        tmp = self._tmp_layer(chain_id)
        rootfs = os.path.join(tmp, _ROOTFS)
        if not os.path.isdir(rootfs):
            raise StorageError(NAME, f"layer {chain_id} was not prepared: nothing to commit")
        _set_readonly(rootfs)
        syncfs(rootfs)  # the data first, then the rename that publishes it
        os.rename(tmp, self._layer_dir(chain_id))
        fsync_dir(self._layers)

    def abort_layer(self, chain_id: str) -> None:
        remove_tree(self._tmp_layer(chain_id))
        for path in files.leftovers(self._layers, names.chain_hex(NAME, chain_id)):
            remove_tree(path)

    def remove_layer(self, chain_id: str) -> None:
        hexpart = names.chain_hex(NAME, chain_id)
        final = self._layer_dir(chain_id)
        if not os.path.isdir(final):
            self.abort_layer(chain_id)
            return
        users = self._dependents(chain_id)
        if users:
            raise StorageError(NAME, f"layer {chain_id} is in use by {', '.join(users)}")
        remove_tree(files.rename_away(final, self._layers, hexpart))

    def _dependents(self, chain_id: str) -> list[str]:
        found = [f"layer {c}" for c in self.layers() if self._layer_parent(c) == chain_id]
        for entry in files.listdir(self._layers):
            parent = files.read(os.path.join(self._layers, entry, _PARENT))
            if entry.startswith(".tmp-") and parent == chain_id:
                found.append(f"layer sha256:{entry[5:]} (being prepared)")
        found += [f"container {c}" for c in self.containers() if self.parent_of(c) == chain_id]
        return found

    # -- container rootfs ------------------------------------------------------------------------

    def create_rootfs(self, container_id: str, top: str | None) -> str:
        final = self._container_dir(container_id)
        if os.path.lexists(final):
            raise StorageError(NAME, f"container {container_id} already has a rootfs")
        if top is not None and not self.has_layer(top):
            raise StorageError(NAME, f"layer {top} is not in the store")
        self._ensure()
        tmp = os.path.join(self._containers, ".tmp-" + container_id)
        remove_tree(tmp)
        for path in files.leftovers(self._containers, container_id):
            remove_tree(path)
        os.mkdir(tmp, 0o700)
        try:
            files.write(os.path.join(tmp, _PARENT), top or "")
            rootfs = os.path.join(tmp, _ROOTFS)
            if top is None:
                _create_subvolume(rootfs)
            else:
                _snapshot(os.path.join(self._layer_dir(top), _ROOTFS), rootfs, readonly=False)
            os.rename(tmp, final)
        except BaseException:
            _remove_quietly(tmp)
            raise
        # No fsync of the directory: it costs as much as the snapshot (a log commit, 2-20 ms
        # here) and the next transaction commit (at most 30 s later) persists the rename; a
        # power loss before that leaves .tmp-<id>, which remove_rootfs and create_rootfs sweep.
        return os.path.join(final, _ROOTFS)

    def rootfs_path(self, container_id: str) -> str:
        home = self._container_dir(container_id)
        self._recover(home, container_id)
        path = os.path.join(home, _ROOTFS)
        if not os.path.isdir(path):
            raise StorageError(NAME, f"container {container_id} has no rootfs")
        return path

    def remove_rootfs(self, container_id: str) -> None:
        final = self._container_dir(container_id)
        remove_tree(os.path.join(self._containers, ".tmp-" + container_id))
        if os.path.lexists(final):
            remove_tree(files.rename_away(final, self._containers, container_id))
        snaps = os.path.join(self._snapshots, container_id)
        if os.path.lexists(snaps):
            remove_tree(files.rename_away(snaps, self._snapshots, container_id))
        for parent in (self._containers, self._snapshots):
            for path in files.leftovers(parent, container_id):
                remove_tree(path)

    def containers(self) -> list[str]:
        return sorted(n for n in files.listdir(self._containers) if not n.startswith("."))

    def parent_of(self, container_id: str) -> str | None:
        return files.read(os.path.join(self._container_dir(container_id), _PARENT)) or None

    # -- snapshots -------------------------------------------------------------------------------

    def _snap_dir(self, container_id: str, name: str = "") -> str:
        base = os.path.join(self._snapshots, names.check_container(NAME, container_id))
        return os.path.join(base, names.check_snapshot(name, NAME)) if name else base

    def snapshot(self, container_id: str, name: str) -> Snapshot:
        rootfs = self.rootfs_path(container_id)
        final = self._snap_dir(container_id, name)
        if os.path.lexists(final):
            raise StorageError(NAME, f"container {container_id} already has a snapshot {name!r}")
        base = self._snap_dir(container_id)
        os.makedirs(base, mode=0o700, exist_ok=True)
        tmp = os.path.join(base, ".tmp-" + name)
        remove_tree(tmp)
        os.mkdir(tmp, 0o700)
        created = names.now_rfc3339()
        try:
            files.write(os.path.join(tmp, _CREATED), created)
            _snapshot(rootfs, os.path.join(tmp, _ROOTFS), readonly=True)
            os.rename(tmp, final)
        except BaseException:
            _remove_quietly(tmp)
            raise
        fsync_dir(base)
        return Snapshot(name, created)

    def snapshots(self, container_id: str) -> list[Snapshot]:
        self.rootfs_path(container_id)
        base = self._snap_dir(container_id)
        found = []
        for name in files.listdir(base):
            created = files.read(os.path.join(base, name, _CREATED))
            if not name.startswith(".") and os.path.isdir(os.path.join(base, name, _ROOTFS)):
                found.append(Snapshot(name, created))
        return sorted(found, key=lambda s: (s.created, s.name))

    def rollback(self, container_id: str, name: str) -> None:
        rootfs = self.rootfs_path(container_id)
        source = os.path.join(self._snap_dir(container_id, name), _ROOTFS)
        if not os.path.isdir(source):
            raise StorageError(NAME, f"container {container_id} has no snapshot {name!r}")
        home = self._container_dir(container_id)
        ready, old = os.path.join(home, _READY), os.path.join(home, _OLD)
        remove_tree(ready)
        remove_tree(old)
        _snapshot(source, ready, readonly=False)
        # From here on `_recover` finishes the job if we die: ready is complete.
        os.rename(rootfs, old)
        os.rename(ready, rootfs)
        fsync_dir(home)
        remove_tree(old)

    def _recover(self, home: str, container_id: str) -> None:
        """Finish a rollback a crash interrupted."""
        rootfs, ready, old = (os.path.join(home, n) for n in (_ROOTFS, _READY, _OLD))
        if not os.path.lexists(rootfs) and os.path.isdir(ready):
            log.info(f"storage btrfs: finishing the interrupted rollback of {container_id}")
            os.rename(ready, rootfs)
        if os.path.isdir(rootfs):
            for leftover in (ready, old):
                if os.path.lexists(leftover):
                    remove_tree(leftover)

    def remove_snapshot(self, container_id: str, name: str) -> None:
        final = self._snap_dir(container_id, name)
        if not os.path.isdir(final):
            raise StorageError(NAME, f"container {container_id} has no snapshot {name!r}")
        remove_tree(files.rename_away(final, self._snap_dir(container_id), name))

    def usage(self) -> dict[str, int]:
        """``btrfs filesystem du``: layers = every extent they reference, once (exclusive + set
        shared); containers and snapshots = what only they hold (exclusive). Without
        btrfs-progs: st_blocks per inode, which counts shared extents again in every copy."""
        paths = {"layers": self._layers, "containers": self._containers,
                 "snapshots": self._snapshots}  # fmt: skip
        present = {k: p for k, p in paths.items() if os.path.isdir(p)}
        program = command.find("btrfs")
        if program is None or not present:
            return {k: disk_usage(p) for k, p in paths.items()}
        out = command.run(
            NAME, [program, "filesystem", "du", "-s", "--raw", *present.values()], "usage"
        )
        sizes = {k: 0 for k in paths}
        by_path = {p: k for k, p in present.items()}
        for line in out.splitlines()[1:]:
            fields = line.split(None, 3)
            if len(fields) == 4 and fields[3] in by_path and fields[0].isdigit():
                exclusive, shared = int(fields[1]), int(fields[2])
                key = by_path[fields[3]]
                sizes[key] = exclusive + shared if key == "layers" else exclusive
        return sizes


def _remove_quietly(path: str) -> None:
    """Cleanup after a failure: never masks the original error (a full disk, a signal)."""
    try:
        remove_tree(path)
    except (OSError, StorageError) as exc:
        log.warning(f"cannot remove {path}: {exc}")
