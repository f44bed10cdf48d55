"""Real storage for the driver tests: a loop-mounted btrfs, a zfs-fuse pool, an overlay root.

Every context manager here undoes everything it made, in reverse order, whether the body failed
or not; a step of the teardown that fails does not stop the next ones (the first error is raised
at the end):

- `loop_btrfs(workdir)`: a sparse file, ``mkfs.btrfs``, a loop device (``losetup --find --show``,
  so we know which one to detach), mounted at ``workdir/btrfs``. Teardown: unmount everything at
  or below the mount point, ``losetup -d`` that device, remove the file.
- `zfs_fuse_daemon(workdir)`: ``zfs-fuse --no-daemon`` started with ``Popen`` (in that mode it
  writes no pidfile: we keep the pid), ready when ``zpool list`` answers. Teardown: SIGTERM by
  pid, wait (zfs-fuse takes a few seconds to exit), SIGKILL if needed. If a zfs-fuse daemon is
  already running (not ours), it is used and left alone; a flock shared by concurrent test runs
  keeps the run that started the daemon from stopping it under another one.
- `zfs_pool(workdir, mountpoint)`: a file-backed pool (``cachefile=none``: never in zfs-fuse's
  pool cache, which would import it again, faulted, when the next daemon starts) with a
  ``nexcage`` dataset mounted at ``mountpoint``. Teardown: ``zpool destroy -f`` (``zpool export
  -f`` if that fails), remove the file.
- `overlay_root(workdir)`: a directory; teardown unmounts whatever is still mounted below it.

Plus what the three driver test modules share: a three-layer image with whiteouts and an opaque
directory (`three_layers`), unpacking layers onto a driver (`unpack_onto`), a rootfs change set
for the snapshot tests (`change_files`) and running a rootfs under crun through nexcage
(`run_in_rootfs`).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nexcage.image.rootfs import Root
from nexcage.image.unpack import Layer, apply_layer
from nexcage.storage.base import OVERLAY, StorageDriver
from nexcage.storage.layers import chain_ids
from support import end_pid, pid_alive, require_root, require_tool, run_cmd, unmount_under
from support.busybox import bundle_config
from support.layers import MT_GZIP, LayerTar, digest, gzip_blob

_POOLS = itertools.count()


class _Undo:
    """Teardown steps run in reverse; each runs even if an earlier one failed."""

    def __init__(self) -> None:
        self.steps: list[Callable[[], object]] = []

    def push(self, step: Callable[[], object]) -> None:
        self.steps.append(step)

    def run(self) -> None:
        first: BaseException | None = None
        for step in reversed(self.steps):
            try:
                step()
            except BaseException as exc:
                first = first or exc
        self.steps.clear()
        if first is not None:
            raise first


# -- btrfs ---------------------------------------------------------------------------------------


@contextmanager
def loop_btrfs(workdir: Path, size: str = "512M") -> Iterator[Path]:
    """A fresh btrfs mounted at ``workdir/btrfs`` (see the module docstring)."""
    require_root()
    mkfs = require_tool("mkfs.btrfs")
    losetup = require_tool("losetup")
    image, mnt = workdir / "btrfs.img", workdir / "btrfs"
    undo = _Undo()
    try:
        undo.push(lambda: image.unlink(missing_ok=True))
        run_cmd(["truncate", "-s", size, os.fspath(image)])
        run_cmd([mkfs, "-q", os.fspath(image)])
        loop = run_cmd([losetup, "--find", "--show", os.fspath(image)]).stdout.strip()
        undo.push(lambda: run_cmd([losetup, "-d", loop], timeout=30))
        mnt.mkdir()
        undo.push(lambda: mnt.rmdir() if mnt.exists() else None)
        undo.push(lambda: unmount_under(os.fspath(mnt)))
        run_cmd(["mount", "-t", "btrfs", loop, os.fspath(mnt)])
        yield mnt
    finally:
        undo.run()


# -- zfs-fuse ------------------------------------------------------------------------------------


def _zpool_answers(zpool: str) -> bool:
    return run_cmd([zpool, "list"], check=False, timeout=30).returncode == 0


DAEMON_LOCK = "/run/lock/nexcage-test-zfs-fuse.lock"


@contextmanager
def zfs_fuse_daemon(workdir: Path) -> Iterator[int | None]:
    """zfs-fuse running; yields our daemon's pid (None: one that was already running).

    There is one zfs-fuse per machine, and other test runs may use it at the same time. Users
    hold a shared flock on `DAEMON_LOCK` while they use it; starting one takes the lock
    exclusively (so two runs never start two), and the run that started it stops it only once
    it can take the lock exclusively again, i.e. when no other run is using it."""
    import fcntl

    require_root()
    daemon = require_tool("zfs-fuse")
    zpool = require_tool("zpool")
    require_tool("zfs")
    lock = os.open(DAEMON_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)
        if _zpool_answers(zpool):
            yield None
            return
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _zpool_answers(zpool):  # another run started one meanwhile
            fcntl.flock(lock, fcntl.LOCK_SH)
            yield None
            return
        with _started_daemon(daemon, zpool, workdir) as pid:
            fcntl.flock(lock, fcntl.LOCK_SH)
            try:
                yield pid
            finally:
                _wait_exclusive(lock, fcntl)
    finally:
        os.close(lock)


def _wait_exclusive(lock: int, fcntl: Any, limit: float = 1800) -> None:
    deadline = time.monotonic() + limit
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                return  # a run that hangs must not keep the daemon forever
            time.sleep(0.5)


@contextmanager
def _started_daemon(daemon: str, zpool: str, workdir: Path) -> Iterator[int]:
    log = open(workdir / "zfs-fuse.log", "wb")  # closed in the teardown
    proc = subprocess.Popen(
        [daemon, "--no-daemon"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not _zpool_answers(zpool):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"zfs-fuse did not come up (exit status {proc.poll()}): "
                    + (workdir / "zfs-fuse.log").read_text(errors="replace")[-2000:]
                )
            time.sleep(0.1)
        yield proc.pid
    finally:
        # It syncs and unmounts on SIGTERM, which takes a few seconds.
        end_pid(proc.pid, timeout=30)
        proc.wait(timeout=10)
        log.close()
        assert not pid_alive(proc.pid)


@contextmanager
def zfs_pool(workdir: Path, mountpoint: Path, size: str = "256M") -> Iterator[str]:
    """A pool on a file with dataset ``<pool>/nexcage`` mounted at ``mountpoint``; yields the
    dataset name. Needs a running daemon (`zfs_fuse_daemon`)."""
    zpool, zfs = require_tool("zpool"), require_tool("zfs")
    pool = f"nxt{os.getpid()}x{next(_POOLS)}{os.urandom(2).hex()}"
    image = workdir / f"{pool}.img"
    undo = _Undo()
    try:
        undo.push(lambda: image.unlink(missing_ok=True))
        run_cmd(["truncate", "-s", size, os.fspath(image)])
        # cachefile=none: never recorded in zfs-fuse's /var/lib/zfs/zpool.cache, so a daemon
        # stopped before it rewrote the cache cannot bring the pool back, faulted, next time.
        run_cmd([zpool, "create", "-o", "cachefile=none", "-m", "none", pool, os.fspath(image)],
                timeout=60)  # fmt: skip
        undo.push(lambda: _destroy_pool(zpool, pool))
        run_cmd([zfs, "create", "-o", f"mountpoint={mountpoint}", f"{pool}/nexcage"])
        yield f"{pool}/nexcage"
    finally:
        undo.run()


def _destroy_pool(zpool: str, pool: str) -> None:
    destroy_pool(pool, zpool=zpool)


def destroy_pool(pool: str, *, zpool: str = "zpool", zfs: str = "zfs") -> None:
    """``zpool destroy -f`` that works with zfs-fuse: its unmounts are asynchronous, so a
    destroy right after them finds the pool busy. Datasets are unmounted deepest first, busy is
    retried for a few seconds, ``zpool export -f`` is the last resort. A missing pool is fine."""
    if run_cmd([zpool, "list", pool], check=False, timeout=30).returncode != 0:
        return
    listing = run_cmd([zfs, "list", "-H", "-o", "name", "-r", pool], check=False, timeout=30)
    for dataset in sorted(listing.stdout.split(), key=lambda d: -d.count("/")):
        run_cmd([zfs, "unmount", dataset], check=False, timeout=30)
    proc = None
    for _ in range(20):
        proc = run_cmd([zpool, "destroy", "-f", pool], check=False, timeout=60)
        if proc.returncode == 0 or "busy" not in proc.stderr:
            break
        time.sleep(0.25)
    if proc is None or proc.returncode != 0:
        run_cmd([zpool, "export", "-f", pool], timeout=60)


# -- overlay -------------------------------------------------------------------------------------


@contextmanager
def overlay_root(workdir: Path) -> Iterator[Path]:
    require_root()
    root = workdir / "overlay"
    root.mkdir()
    try:
        yield root
    finally:
        unmount_under(os.fspath(root))


# -- images --------------------------------------------------------------------------------------


def make_layer(tar: LayerTar | bytes) -> Layer:
    raw = tar if isinstance(tar, bytes) else tar.data()
    blob = gzip_blob(raw)
    return Layer(digest(blob), MT_GZIP, digest(raw), lambda: io.BytesIO(blob), len(blob))


def three_layers() -> list[Layer]:
    """Files, dirs with odd modes, owners, a symlink, hardlinks, a fifo, a device, a user xattr;
    then whiteouts of files and directories, opaque directories (marker before and after the
    layer's own entries), a whiteout + re-create in one layer, type changes across layers."""
    base = (
        LayerTar().dir("etc").file("etc/hostname", b"base\n").file("etc/motd", b"hello\n")
        .dir("a").dir("a/b").file("a/b/c", b"c").file("a/d", b"d", mode=0o600)
        .dir("f").file("f/g", b"g").dir("f/sub").file("f/sub/old", b"old")
        .dir("keep").file("keep/x", b"x").file("keep/y", b"y")
        .dir("home", mode=0o755).dir("home/user", mode=0o700, uid=1000, gid=1000)
        .file("home/user/.profile", b"export A=1\n", uid=1000, gid=1000, mode=0o640)
        .file("bin-tool", b"#!/bin/sh\n", mode=0o4755)
        .dir("tmp", mode=0o1777)
        .symlink("link", "etc/motd").file("data", b"shared").hardlink("data.hl", "data")
        .file("tagged", b"t", xattrs={"user.nexcage": "yes"})
        .fifo("pipe").dir("dev").device("dev/null", major=1, minor=3)
        .file("type-change", b"file first").dir("dir-to-file").file("dir-to-file/x", b"x")
    )  # fmt: skip
    middle = (
        LayerTar().whiteout("a/b").whiteout("etc/motd").file("etc/hostname", b"middle\n")
        .opaque("f").file("f/h", b"h").dir("f/sub").file("f/sub/new", b"new")
        .whiteout("link").symlink("link", "etc/hostname")
        .dir("newdir").file("newdir/n", b"n").file("keep/z", b"z")
        .dir("type-change").file("type-change/inner", b"now a dir")
        .whiteout("dir-to-file").file("dir-to-file", b"now a file")
    )  # fmt: skip
    top = (
        LayerTar().whiteout("newdir").dir("newdir", mode=0o750).file("newdir/m", b"m")
        .file("keep/w", b"w").whiteout("keep/x").opaque("keep")
        .file("a/d", b"d2", mode=0o644, uid=1000, gid=1000)
        .dir("etc").opaque("etc").file("etc/only", b"only this in etc\n")
    )  # fmt: skip
    return [make_layer(base), make_layer(middle), make_layer(top)]


def unpack_onto(driver: StorageDriver, layers: Sequence[Layer]) -> str | None:
    """Each layer prepared, applied in the driver's format and committed; the top chain id."""
    parent: str | None = None
    for chain, layer in zip(chain_ids([x.diff_id or "" for x in layers]), layers, strict=True):
        if not driver.has_layer(chain):
            path = driver.prepare_layer(chain, parent)
            with Root(path, clamp=False) as root, layer.open() as blob:
                apply_layer(root, blob, layer, as_root=True,
                            overlay=driver.layer_format == OVERLAY)  # fmt: skip
            driver.commit_layer(chain)
        parent = chain
    return parent


def change_files(rootfs: str) -> None:
    """Every kind of change a container makes: content, mode, owner, removal of a file and of a
    lower directory, a new file and directory, a symlink re-pointed, a hardlink broken."""
    root = Path(rootfs)
    (root / "etc/hostname").write_text("changed\n")
    (root / "etc/only").chmod(0o600)
    os.chown(root / "newdir/m", 1000, 1000)
    os.chown(root / "home/user/.profile", 0, 0)
    (root / "keep/w").unlink()
    shutil.rmtree(root / "f")
    (root / "brand-new").mkdir()
    (root / "brand-new/file").write_bytes(b"new" * 1000)
    (root / "link").unlink()
    (root / "link").symlink_to("nowhere")
    (root / "data").write_bytes(b"rewritten")
    (root / "a/d").chmod(0o4711)


def run_in_rootfs(
    nexcage: str, state_root: str, bundle_dir: Path, rootfs: str, args: Sequence[str], cid: str
) -> subprocess.CompletedProcess[str]:
    """``nexcage --runtime crun run`` of a bundle whose ``root.path`` is ``rootfs`` (absolute)."""
    bundle_dir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = bundle_config(list(args), extra={"root": {"path": rootfs}})
    (bundle_dir / "config.json").write_text(json.dumps(config, indent=2))
    argv = [nexcage, "--root", state_root, "--runtime", "crun", "run", "--bundle",
            os.fspath(bundle_dir), cid]  # fmt: skip
    try:
        return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=60, check=False)  # fmt: skip
    finally:
        subprocess.run([nexcage, "--root", state_root, "delete", "--force", cid],
                       capture_output=True, timeout=60, check=False)  # fmt: skip


def median_ms(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2] * 1000


# -- checks every driver passes ------------------------------------------------------------------


def _chains(layers: Sequence[Layer]) -> list[str]:
    return chain_ids([x.diff_id or "" for x in layers])


def _apply(driver: StorageDriver, path: str, layer: Layer) -> None:
    with Root(path, clamp=False) as root, layer.open() as blob:
        apply_layer(root, blob, layer, as_root=True, overlay=driver.layer_format == OVERLAY)


def check_layer_lifecycle(driver: StorageDriver) -> None:
    """prepare/commit/has_layer/layers/abort/remove_layer and container create/remove: each
    idempotent where the contract says so, refused where it must be."""
    import pytest

    from nexcage.errors import StorageError

    layers = three_layers()
    c0, c1, c2 = _chains(layers)
    with pytest.raises(StorageError, match="invalid chain id"):
        driver.has_layer("not-a-chain-id")
    assert driver.layers() == [] and driver.containers() == []

    # An attempt that is never committed is invisible; preparing again starts afresh.
    first = driver.prepare_layer(c0, None)
    Path(first, "partial").write_text("half an unpack")
    assert not driver.has_layer(c0) and driver.layers() == []
    path = driver.prepare_layer(c0, None)
    assert os.listdir(path) == [], "re-prepare must discard the earlier attempt"
    _apply(driver, path, layers[0])
    base_entries = sorted(os.listdir(path))
    driver.commit_layer(c0)
    driver.commit_layer(c0)  # committed already: a no-op
    assert driver.has_layer(c0) and driver.layers() == [c0]
    with pytest.raises(StorageError, match="already committed"):
        driver.prepare_layer(c0, None)
    with pytest.raises(StorageError, match="not in the store"):
        driver.prepare_layer(c1, c2)

    # A child starts from its parent (flat: the whole tree; overlay: nothing).
    child = driver.prepare_layer(c1, c0)
    expected = [] if driver.layer_format == OVERLAY else base_entries
    assert sorted(os.listdir(child)) == expected
    with pytest.raises(StorageError, match=r"in use by layer .* \(being prepared\)"):
        driver.remove_layer(c0)
    driver.abort_layer(c1)
    driver.abort_layer(c1)  # nothing left to abort: fine
    assert not driver.has_layer(c1) and driver.layers() == [c0]
    with pytest.raises(StorageError, match="was not prepared"):
        driver.commit_layer(c1)
    assert unpack_onto(driver, layers) == c2
    assert driver.layers() == sorted([c0, c1, c2])

    # Removal is refused while a child layer or a container depends on a layer.
    for parent, child_chain in ((c0, c1), (c1, c2)):
        with pytest.raises(StorageError, match=f"in use by layer {child_chain}"):
            driver.remove_layer(parent)
    rootfs = driver.create_rootfs("ctr-1", c2)
    assert os.path.isdir(rootfs) and driver.rootfs_path("ctr-1") == rootfs
    with pytest.raises(StorageError, match="already has a rootfs"):
        driver.create_rootfs("ctr-1", c2)
    with pytest.raises(StorageError, match="not in the store"):
        driver.create_rootfs("ctr-2", "sha256:" + "0" * 64)
    empty = driver.create_rootfs("ctr-empty", None)
    Path(empty, "written").write_text("a rootfs from no layer is writable")
    assert driver.containers() == ["ctr-1", "ctr-empty"]
    assert driver.parent_of("ctr-1") == c2 and driver.parent_of("ctr-empty") is None
    with pytest.raises(StorageError, match="in use by container ctr-1"):
        driver.remove_layer(c2)
    with pytest.raises(StorageError, match="invalid container id"):
        driver.create_rootfs("../escape", c2)
    usage = driver.usage()
    assert set(usage) == {"layers", "containers", "snapshots"}
    assert all(isinstance(v, int) and v >= 0 for v in usage.values())

    for cid in ("ctr-1", "ctr-empty"):
        driver.remove_rootfs(cid)
        driver.remove_rootfs(cid)  # missing is fine
    assert driver.containers() == []
    with pytest.raises(StorageError, match="has no rootfs"):
        driver.rootfs_path("ctr-1")
    for chain in (c2, c1, c0):
        driver.remove_layer(chain)
        assert not driver.has_layer(chain)
    driver.remove_layer(c0)  # gone already: fine
    assert driver.layers() == []


CRASH_SCRIPT = """
import os, sys
from nexcage.storage.{module} import {cls}
driver = {cls}(*sys.argv[2:])
path = driver.prepare_layer(sys.argv[1], None)
with open(os.path.join(path, "half-written"), "w") as f:
    f.write("x" * 10000)
os.kill(os.getpid(), 9)
"""


def check_crash_before_commit(driver: StorageDriver, module: str, cls: str, *args: str) -> str:
    """A process killed between prepare and commit leaves nothing visible; the next prepare
    discards its remains. Returns the chain id used."""
    import sys

    chain = _chains(three_layers())[0]
    script = CRASH_SCRIPT.format(module=module, cls=cls)
    proc = subprocess.run([sys.executable, "-c", script, chain, *args], capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert proc.returncode == -9, proc.stderr
    assert not driver.has_layer(chain) and driver.layers() == []
    path = driver.prepare_layer(chain, None)
    assert os.listdir(path) == []
    driver.abort_layer(chain)
    assert not driver.has_layer(chain)
    return chain


def check_same_tree_as_flat(driver: StorageDriver, workdir: Path, *, xattrs: bool = True) -> None:
    """The three-layer image on the driver (a container's rootfs: for overlay the merged mount)
    holds exactly the tree a flat unpack makes."""
    from nexcage.image.unpack import unpack_layers
    from support.trees import diff, tree_facts

    layers = three_layers()
    flat = workdir / "flat"
    unpack_layers(layers, os.fspath(flat), as_root=True)
    top = unpack_onto(driver, layers)
    rootfs = driver.create_rootfs("same-tree", top)
    want = tree_facts(os.fspath(flat), xattrs=xattrs)
    got = tree_facts(rootfs, xattrs=xattrs)
    assert diff(want, got) == []
    assert "etc/only" in got and "etc/hostname" not in got and "a/b" not in got  # sanity
    driver.remove_rootfs("same-tree")


def check_snapshot_rollback(driver: StorageDriver) -> None:
    """Snapshot, change every kind of thing, rollback: the tree equals the snapshot's, file by
    file (content, mode, owner, symlink targets, times, hardlinks)."""
    import pytest

    from nexcage.errors import StorageError
    from support.trees import diff, tree_facts

    top = unpack_onto(driver, three_layers())
    rootfs = driver.create_rootfs("snap", top)
    Path(rootfs, "before").write_text("written before the snapshot\n")
    Path(rootfs, "keep/w").unlink()  # a lower file already gone at snapshot time
    snap = driver.snapshot("snap", "s1")
    assert snap.name == "s1" and snap.created.endswith("Z")
    at_snapshot = tree_facts(driver.rootfs_path("snap"))
    with pytest.raises(StorageError, match="already has a snapshot 's1'"):
        driver.snapshot("snap", "s1")
    with pytest.raises(StorageError, match="invalid snapshot name"):
        driver.snapshot("snap", "../up")

    Path(rootfs, "keep/w").write_text("back, different\n")
    change_files(rootfs)
    driver.snapshot("snap", "s2")
    assert [s.name for s in driver.snapshots("snap")] == ["s1", "s2"]
    assert diff(at_snapshot, tree_facts(driver.rootfs_path("snap"))) != []

    with pytest.raises(StorageError, match="has no snapshot 'missing'"):
        driver.rollback("snap", "missing")
    driver.rollback("snap", "s1")
    assert diff(at_snapshot, tree_facts(driver.rootfs_path("snap"))) == []
    # Rolling back again to the same snapshot is as good (newer ones may be gone: zfs -r).
    Path(driver.rootfs_path("snap"), "again").write_text("x")
    driver.rollback("snap", "s1")
    assert diff(at_snapshot, tree_facts(driver.rootfs_path("snap"))) == []

    driver.remove_snapshot("snap", "s1")
    assert "s1" not in [s.name for s in driver.snapshots("snap")]
    with pytest.raises(StorageError, match="has no snapshot 's1'"):
        driver.remove_snapshot("snap", "s1")
    with pytest.raises(StorageError, match="has no snapshot 's1'"):
        driver.rollback("snap", "s1")
    with pytest.raises(StorageError, match="has no rootfs"):
        driver.snapshot("no-such-container", "s1")
    driver.remove_rootfs("snap")
    assert driver.containers() == []


def check_runs_under_crun(
    driver: StorageDriver, nexcage: str, state_root: str, workdir: Path, busybox_rootfs: str
) -> None:
    """A container rootfs from the driver runs a command under crun (through nexcage)."""
    from support.busybox import layer_tar

    layers = [
        make_layer(layer_tar(busybox_rootfs)),
        make_layer(LayerTar().dir("etc").file("etc/marker", b"from layer 2\n")),
        make_layer(LayerTar().whiteout("bin/true")),
    ]
    top = unpack_onto(driver, layers)
    cid = f"storage-{driver.name}-{os.getpid()}"
    rootfs = driver.create_rootfs(cid, top)
    try:
        script = "cat /etc/marker; test -e /bin/true || echo whiteout-applied; echo $((6*7))"
        proc = run_in_rootfs(nexcage, state_root, workdir / "bundle", rootfs,
                             ["sh", "-c", script], cid)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.split() == ["from", "layer", "2", "whiteout-applied", "42"]
    finally:
        driver.remove_rootfs(cid)
