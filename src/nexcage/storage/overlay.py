"""The ``overlay`` driver: a directory per layer diff, a container is an overlay mount.

Layer format OVERLAY (base.py): a layer directory holds only that layer's diff, unpacked with
whiteouts kept as overlayfs markers (`image.unpack.apply_layer(..., overlay=True)`). Modelled on
containers/storage ``drivers/overlay`` (CONTRACTS.md §6.2).

Layout under ``root`` (``<data_root>/storage/overlay``)::

    layers/<hex>/diff/            the layer's own entries (hex of its chain id)
    layers/<hex>/parent           its parent's chain id ("" for a base layer)
    layers/<hex>/link             its short name in l/ (10 characters)
    layers/<hex>/lower            short names of the layers below it, topmost first, ":"-joined
                                  ("" for a base layer, or when its root is opaque)
    layers/.tmp-<hex>/            a layer being prepared
    l/<short> -> ../layers/<hex>/diff
    l/_empty -> ../empty          the lower of a container made from no layer
    containers/<id>/upper/ work/ merged/   merged/ is the rootfs (the overlay mount)
    containers/<id>/parent        the chain id it was made from ("" for none)
    containers/<id>/snapshots/<name>/upper/ + created
    containers/.tmp-<id>/         a container being made
    */.del-<name>-<pid>           something being removed (renamed away first)

The mount: ``lowerdir=<top>:<below>:…`` (leftmost is topmost), ``upperdir``, ``workdir``. The
kernel takes mount options in one page (4 KiB), which absolute paths exhaust after ~60 layers;
like containers/storage we name lowers by short symlinks, and the mount runs with ``l/`` as its
working directory (``env -C l/ mount …``: the helper process, since posix_spawn cannot chdir) so
each layer costs 11 bytes: ~350 layers fit (overlayfs itself stops at 500). A layer whose root
is opaque (``.wh..wh..opq`` at the top level) hides everything below it; overlayfs ignores that
marker on a layer's root, so the chain is cut there instead (``lower`` = "").

Upper directory: the merged root shows the upper root's owner and mode, so a container's upper
starts with those of its top layer's root, and a layer's diff root starts with its parent's (a
layer without a ``./`` entry leaves the root as it was, as in flat form).

Snapshots are copies of the upper directory (`tree.copy_tree`, reflinks where the filesystem
can): not instantaneous, consistent only while the container is stopped. Rollback unmounts,
copies the snapshot's upper to ``.rollback-new``, renames it ``.rollback-ready``, swaps it with
``upper`` (old one to ``.rollback-old``), empties ``work`` and mounts again; a crash in between is
finished on the next access (`_recover`). `rootfs_path` mounts again after a reboot.

Atomicity: layers and containers are built under dot-names and renamed into place; removals
rename away first; leftover dot-names are swept by the next operation on the same name.
"""

from __future__ import annotations

import os

from nexcage import log
from nexcage.errors import StorageError
from nexcage.host.fs import fsync_dir
from nexcage.image.rootfs import remove_path
from nexcage.image.whiteout import OVERLAY_OPAQUE
from nexcage.storage import command, files, names
from nexcage.storage.base import OVERLAY, Snapshot
from nexcage.storage.layout import LayerDirs
from nexcage.storage.tree import copy_tree, disk_usage, syncfs

NAME = "overlay"
MAX_LAYERS = 500  # overlayfs OVL_MAX_STACK
PAGE = 4096
_DIFF, _PARENT, _LINK, _LOWER = "diff", "parent", "link", "lower"
_UPPER, _WORK, _MERGED = "upper", "work", "merged"
_SNAPSHOTS, _CREATED = "snapshots", "created"
_EMPTY_LINK = "_empty"
_NEW, _READY, _OLD = ".rollback-new", ".rollback-ready", ".rollback-old"
_PROBED = ".probed"
_SHORT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # 32 symbols: 10 of them, 50 random bits


class OverlayDriver(LayerDirs):
    name = NAME
    COMMITTED = _DIFF
    layer_format = OVERLAY

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._layers = os.path.join(self.root, "layers")
        self._links = os.path.join(self.root, "l")
        self._containers = os.path.join(self.root, "containers")

    # -- can it work here ------------------------------------------------------------------------

    def usable(self) -> str | None:
        """Mount a tiny overlay under ``root`` once (with a whiteout and an opaque directory in
        its lower): that answers for the kernel, the filesystem and our privileges together.
        A success is remembered in ``root/.probed``."""
        if os.geteuid() != 0:
            return "overlay mounts need root"
        if os.path.exists(os.path.join(self.root, _PROBED)):
            return None
        made = not os.path.isdir(self.root)
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
        except OSError as exc:
            return f"cannot create {self.root}: {exc.strerror}"
        problem = _probe(self.root)
        if problem is None:
            with open(os.path.join(self.root, _PROBED), "w", encoding="utf-8") as f:
                f.write("overlay mounts with whiteouts and opaque directories work here\n")
        elif made:
            os.rmdir(self.root)  # asking must not leave a driver root behind
        return problem

    def _ensure(self) -> None:
        for path in (self._layers, self._links, self._containers):
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
        try:
            files.write(os.path.join(tmp, _PARENT), parent or "")
            diff = os.path.join(tmp, _DIFF)
            os.mkdir(diff, 0o755)
            if parent is not None:
                _copy_root_attributes(os.path.join(self._layer_dir(parent), _DIFF), diff)
        except BaseException:
            files.remove_quietly(tmp)
            raise
        return diff

    def commit_layer(self, chain_id: str) -> None:
        if self.has_layer(chain_id):
            return
        tmp = self._tmp_layer(chain_id)
        diff = os.path.join(tmp, _DIFF)
        if not os.path.isdir(diff):
            raise StorageError(NAME, f"layer {chain_id} was not prepared: nothing to commit")
        parent = files.read(os.path.join(tmp, _PARENT))
        lower = ""
        if parent and not _opaque(diff):
            below = self._layer_dir(parent)
            lower = ":".join(x for x in (files.read(os.path.join(below, _LINK)),
                                         files.read(os.path.join(below, _LOWER))) if x)  # fmt: skip
        files.write(os.path.join(tmp, _LOWER), lower)
        short = self._new_link(names.chain_hex(NAME, chain_id), tmp)
        log.debug(f"storage overlay: layer {chain_id} is l/{short}")
        syncfs(tmp)  # the data first, then the rename that publishes it
        os.rename(tmp, self._layer_dir(chain_id))
        fsync_dir(self._layers)

    def _new_link(self, hexpart: str, tmp: str) -> str:
        """A fresh short name for a layer, recorded in ``tmp/link`` before the symlink exists
        (so an abort finds it), pointing at where the layer will be once committed."""
        while True:
            short = "".join(_SHORT_ALPHABET[b % 32] for b in os.urandom(10))
            files.write(os.path.join(tmp, _LINK), short)
            try:
                os.symlink(f"../layers/{hexpart}/{_DIFF}", os.path.join(self._links, short))
            except FileExistsError:
                continue
            return short

    def abort_layer(self, chain_id: str) -> None:
        hexpart = names.chain_hex(NAME, chain_id)
        tmp = self._tmp_layer(chain_id)
        short = files.read(os.path.join(tmp, _LINK))
        if short:
            files.unlink_quiet(os.path.join(self._links, short))
        remove_path(tmp)
        files.sweep(self._layers, hexpart)

    def remove_layer(self, chain_id: str) -> None:
        hexpart = names.chain_hex(NAME, chain_id)
        final = self._layer_dir(chain_id)
        if not os.path.isdir(final):
            self.abort_layer(chain_id)
            return
        children = [c for c in self.layers() if self._layer_parent(c) == chain_id]
        preparing = [
            n[len(".tmp-") :]
            for n in files.listdir(self._layers)
            if n.startswith(".tmp-")
            and files.read(os.path.join(self._layers, n, _PARENT)) == chain_id
        ]
        users = [c for c in self.containers() if self.parent_of(c) == chain_id]
        if children or preparing or users:
            what = (
                [f"layer {c}" for c in children]
                + [f"layer sha256:{h} (being prepared)" for h in preparing]
                + [f"container {c}" for c in users]
            )
            raise StorageError(NAME, f"layer {chain_id} is in use by {', '.join(what)}")
        short = files.read(os.path.join(final, _LINK))
        gone = files.rename_away(final, self._layers, hexpart)
        if short:
            files.unlink_quiet(os.path.join(self._links, short))
        remove_path(gone)

    # -- container rootfs ------------------------------------------------------------------------

    def create_rootfs(self, container_id: str, top: str | None) -> str:
        final = self._container_dir(container_id)
        if os.path.lexists(final):
            raise StorageError(NAME, f"container {container_id} already has a rootfs")
        if top is not None and not self.has_layer(top):
            raise StorageError(NAME, f"layer {top} is not in the store")
        self._ensure()
        tmp = os.path.join(self._containers, ".tmp-" + container_id)
        remove_path(tmp)
        files.sweep(self._containers, container_id)
        os.mkdir(tmp, 0o700)
        try:
            files.write(os.path.join(tmp, _PARENT), top or "")
            for sub in (_UPPER, _WORK, _MERGED):
                os.mkdir(os.path.join(tmp, sub), 0o755)
            if top is not None:
                top_diff = os.path.join(self._layer_dir(top), _DIFF)
                _copy_root_attributes(top_diff, os.path.join(tmp, _UPPER))
            os.rename(tmp, final)
        except BaseException:
            files.remove_quietly(tmp)
            raise
        try:
            self._mount(container_id, top)
        except BaseException:
            files.remove_quietly(final)
            raise
        return os.path.join(final, _MERGED)

    def _lowers(self, top: str | None) -> list[str]:
        """Short names of the container's lower layers, topmost first."""
        if top is None:
            empty = os.path.join(self.root, "empty")
            os.makedirs(empty, mode=0o755, exist_ok=True)
            link = os.path.join(self._links, _EMPTY_LINK)
            if not os.path.islink(link):
                os.symlink("../empty", link)
            return [_EMPTY_LINK]
        layer = self._layer_dir(top)
        if not os.path.isdir(layer):
            raise StorageError(NAME, f"layer {top} is missing from the store")
        lower = files.read(os.path.join(layer, _LOWER))
        return [files.read(os.path.join(layer, _LINK)), *(lower.split(":") if lower else [])]

    def _mount(self, container_id: str, top: str | None) -> None:
        lowers = self._lowers(top)
        if len(lowers) > MAX_LAYERS:
            raise StorageError(
                NAME, f"{len(lowers)} layers: overlayfs mounts at most {MAX_LAYERS}",
                hint="use a flat driver (btrfs, zfs, dir) for this image",
            )  # fmt: skip
        home = f"../containers/{container_id}"
        options = f"lowerdir={':'.join(lowers)},upperdir={home}/{_UPPER},workdir={home}/{_WORK}"
        if len(options) >= PAGE:
            raise StorageError(
                NAME,
                f"{len(lowers)} layers do not fit in one overlay mount's options "
                f"({len(options)} bytes, the kernel takes {PAGE - 1})",
                hint="use a flat driver (btrfs, zfs, dir) for this image",
            )
        merged = os.path.join(self._containers, container_id, _MERGED)
        argv = [
            command.program(NAME, "env", "coreutils"), "-C", self._links,
            command.program(NAME, "mount", "mount (util-linux)"),
            "-t", "overlay", "overlay", "-o", options, merged,
        ]  # fmt: skip
        command.run(NAME, argv, f"mount the rootfs of {container_id}")

    def rootfs_path(self, container_id: str) -> str:
        home = self._container_dir(container_id)
        if not os.path.isdir(home):
            raise StorageError(NAME, f"container {container_id} has no rootfs")
        merged = os.path.join(home, _MERGED)
        if not command.is_mountpoint(merged):
            self._recover(container_id)
            log.info(f"storage overlay: mounting the rootfs of {container_id} again")
            self._mount(container_id, self.parent_of(container_id))
        return merged

    def remove_rootfs(self, container_id: str) -> None:
        final = self._container_dir(container_id)
        remove_path(os.path.join(self._containers, ".tmp-" + container_id))
        if not os.path.lexists(final):
            files.sweep(self._containers, container_id)
            return
        command.unmount(NAME, os.path.join(final, _MERGED))
        remove_path(files.rename_away(final, self._containers, container_id))
        files.sweep(self._containers, container_id)

    def containers(self) -> list[str]:
        return sorted(n for n in files.listdir(self._containers) if not n.startswith("."))

    def parent_of(self, container_id: str) -> str | None:
        return files.read(os.path.join(self._container_dir(container_id), _PARENT)) or None

    # -- snapshots -------------------------------------------------------------------------------

    def _snap_dir(self, container_id: str, name: str = "") -> str:
        base = os.path.join(self._container_dir(container_id), _SNAPSHOTS)
        return os.path.join(base, names.check_snapshot(name, NAME)) if name else base

    def _home(self, container_id: str) -> str:
        home = self._container_dir(container_id)
        if not os.path.isdir(home):
            raise StorageError(NAME, f"container {container_id} has no rootfs")
        self._recover(container_id)
        return home

    def snapshot(self, container_id: str, name: str) -> Snapshot:
        home = self._home(container_id)
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
            copy_tree(os.path.join(home, _UPPER), os.path.join(tmp, _UPPER))
            files.write(os.path.join(tmp, _CREATED), created)
            syncfs(tmp)
            os.rename(tmp, final)
        except BaseException:
            files.remove_quietly(tmp)
            raise
        fsync_dir(base)
        return Snapshot(name, created)

    def snapshots(self, container_id: str) -> list[Snapshot]:
        base = os.path.join(self._home(container_id), _SNAPSHOTS)
        found = []
        for name in files.listdir(base):
            created = files.read(os.path.join(base, name, _CREATED))
            if not name.startswith(".") and created:
                found.append(Snapshot(name, created))
        return sorted(found, key=lambda s: (s.created, s.name))

    def rollback(self, container_id: str, name: str) -> None:
        home = self._home(container_id)
        source = os.path.join(self._snap_dir(container_id, name), _UPPER)
        if not os.path.isdir(source):
            raise StorageError(NAME, f"container {container_id} has no snapshot {name!r}")
        command.unmount(NAME, os.path.join(home, _MERGED))  # busy while the container runs
        upper = os.path.join(home, _UPPER)
        new, ready, old = (os.path.join(home, n) for n in (_NEW, _READY, _OLD))
        for leftover in (new, ready, old):
            remove_path(leftover)
        try:
            copy_tree(source, new)
        except BaseException:
            files.remove_quietly(new)
            raise
        syncfs(new)
        os.rename(new, ready)
        # From here on `_recover` finishes the job if we die: ready is complete.
        os.rename(upper, old)
        os.rename(ready, upper)
        fsync_dir(home)
        self._recover(container_id)
        self._mount(container_id, self.parent_of(container_id))

    def _recover(self, container_id: str) -> None:
        """Finish a rollback a crash interrupted: ``upper`` from ``.rollback-ready``, leftovers
        removed, ``work`` emptied (overlayfs keeps per-upper state there)."""
        home = os.path.join(self._containers, container_id)
        upper, ready = os.path.join(home, _UPPER), os.path.join(home, _READY)
        leftovers = [os.path.join(home, n) for n in (_NEW, _READY, _OLD)]
        if not any(os.path.lexists(p) for p in leftovers):
            return
        if not os.path.lexists(upper) and os.path.isdir(ready):
            log.info(f"storage overlay: finishing the interrupted rollback of {container_id}")
            os.rename(ready, upper)
        if os.path.isdir(upper):
            for path in leftovers:
                remove_path(path)
            work = os.path.join(home, _WORK)
            remove_path(work)
            os.mkdir(work, 0o755)

    def remove_snapshot(self, container_id: str, name: str) -> None:
        final = self._snap_dir(container_id, name)
        if not os.path.isdir(final):
            raise StorageError(NAME, f"container {container_id} has no snapshot {name!r}")
        remove_path(files.rename_away(final, self._snap_dir(container_id), name))

    def usage(self) -> dict[str, int]:
        containers = snapshots = 0
        for cid in self.containers():
            home = os.path.join(self._containers, cid)
            containers += disk_usage(os.path.join(home, _UPPER))
            snapshots += disk_usage(os.path.join(home, _SNAPSHOTS))
        return {"layers": disk_usage(self._layers), "containers": containers,
                "snapshots": snapshots}  # fmt: skip


# -- helpers -------------------------------------------------------------------------------------


def _probe(root: str) -> str | None:
    base = os.path.join(root, f".probe-{os.getpid()}")
    remove_path(base)
    try:
        for sub in ("lower/d", "upper", "work", "merged"):
            os.makedirs(os.path.join(base, sub), mode=0o755)
        lower = os.path.join(base, "lower")
        os.setxattr(os.path.join(lower, "d"), OVERLAY_OPAQUE, b"y")
        os.mknod(os.path.join(lower, "gone"), 0o020600, os.makedev(0, 0))
        options = f"lowerdir={lower},upperdir={base}/upper,workdir={base}/work"
        merged = os.path.join(base, "merged")
        argv = [command.program(NAME, "mount", "mount (util-linux)"),
                "-t", "overlay", "overlay", "-o", options, merged]  # fmt: skip
        command.run(NAME, argv, f"probe mount under {root}")
        try:
            if os.path.lexists(os.path.join(merged, "gone")):
                return "overlayfs here does not honour whiteouts"
        finally:
            command.unmount(NAME, merged)
    except StorageError as exc:
        return exc.message.removeprefix(f"storage {NAME}: ")
    except OSError as exc:
        return f"{root} cannot hold overlay layers: {exc.strerror} ({exc.filename})"
    finally:
        files.remove_quietly(base)
    return None


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE) == b"y"
    except OSError:
        return False


def _copy_root_attributes(source: str, dest: str) -> None:
    st = os.stat(source)
    os.chown(dest, st.st_uid, st.st_gid)
    os.chmod(dest, st.st_mode & 0o7777)
