"""The ``dir`` driver against the contract in storage/base.py, on the real filesystem: layers
invisible until committed, idempotent commit/abort, removal refused while something depends on a
layer, exact copies (owners, modes, device nodes, xattrs, hardlinks), snapshots and rollback
file by file, crash leftovers swept, and reflinks on a btrfs loop file."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexcage.errors import StorageError
from nexcage.storage import tree
from nexcage.storage.dir import DirDriver
from support import require_tool, run_cmd
from support.storage import (
    check_crash_before_commit,
    check_layer_lifecycle,
    check_runs_under_crun,
    check_same_tree_as_flat,
    check_snapshot_rollback,
)
from support.trees import diff, tree_facts

pytestmark = [pytest.mark.integration, pytest.mark.root]

L0 = "sha256:" + "0" * 64
L1 = "sha256:" + "1" * 64
L2 = "sha256:" + "2" * 64


@pytest.fixture
def driver(tmp_path: Path) -> DirDriver:
    return DirDriver(os.fspath(tmp_path / "storage" / "dir"))


def rich_tree(root: Path) -> None:
    """Everything a rootfs may hold, as root makes it."""
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "shadow").write_text("root:*:19000::::::\n")
    (root / "etc" / "shadow").chmod(0o640)
    os.chown(root / "etc" / "shadow", 0, 42)
    (root / "home" / "user").mkdir(parents=True)
    os.chown(root / "home" / "user", 1000, 1000)
    (root / "home" / "user" / "notes").write_text("mine\n")
    os.chown(root / "home" / "user" / "notes", 1000, 1000)
    (root / "usr" / "bin").mkdir(parents=True)
    ping = root / "usr" / "bin" / "ping"
    ping.write_bytes(os.urandom(40_000))
    os.setxattr(ping, "security.capability",
                bytes.fromhex("0100000200200000000000000000000000000000"))  # fmt: skip
    (root / "usr" / "bin" / "sudo").write_bytes(b"#!/bin/sh\n")
    (root / "usr" / "bin" / "sudo").chmod(0o4755)
    (root / "usr" / "bin" / "ping6").hardlink_to(ping)
    (root / "usr" / "bin" / "sh").symlink_to("../../bin/busybox")
    (root / "lnk").symlink_to("/etc/shadow")
    os.chown(root / "lnk", 7, 7, follow_symlinks=False)
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(root / "dev" / "sda", stat.S_IFBLK | 0o660, os.makedev(8, 0))
    os.mkfifo(root / "dev" / "initctl", 0o600)
    os.setxattr(root / "etc", "trusted.note", b"t")
    os.setxattr(root / "etc" / "shadow", "user.mime_type", b"text/plain")
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)


def committed(driver: DirDriver, chain: str, parent: str | None = None, fill: str = "") -> str:
    path = driver.prepare_layer(chain, parent)
    if fill:
        Path(path, fill).write_text(chain)
    driver.commit_layer(chain)
    return path


# -- the checks every driver passes (tests/support/storage.py) ----------------------------------


def test_contract_layer_lifecycle(driver: DirDriver) -> None:
    check_layer_lifecycle(driver)


def test_contract_crash_before_commit(driver: DirDriver) -> None:
    check_crash_before_commit(driver, "dir", "DirDriver", driver.root)


def test_contract_same_tree_as_flat(driver: DirDriver, tmp_path: Path) -> None:
    check_same_tree_as_flat(driver, tmp_path)


def test_contract_snapshot_rollback(driver: DirDriver) -> None:
    check_snapshot_rollback(driver)


def test_contract_runs_under_crun(
    driver: DirDriver, runtime_root: str, hugetlb_cgroup_v1: list[str], tmp_path: Path,
    busybox_rootfs: str,
) -> None:  # fmt: skip
    from support.cli import NEXCAGE

    check_runs_under_crun(driver, NEXCAGE, runtime_root, tmp_path, busybox_rootfs)


# -- layers ------------------------------------------------------------------------------------


def test_layer_is_invisible_until_committed(driver: DirDriver) -> None:
    path = driver.prepare_layer(L0, None)
    Path(path, "a").write_text("x")
    assert not driver.has_layer(L0) and driver.layers() == []
    driver.commit_layer(L0)
    assert driver.has_layer(L0) and driver.layers() == [L0]
    driver.commit_layer(L0)  # committing again: a no-op
    assert Path(driver.layer_path(L0), "a").read_text() == "x"
    with pytest.raises(StorageError, match="already committed"):
        driver.prepare_layer(L0, None)


def test_prepare_discards_an_earlier_attempt_and_abort_removes(driver: DirDriver) -> None:
    Path(driver.prepare_layer(L0, None), "stale").write_text("crashed")
    path = driver.prepare_layer(L0, None)
    assert os.listdir(path) == []
    driver.abort_layer(L0)
    driver.abort_layer(L0)  # idempotent
    assert os.listdir(Path(driver.root, "layers")) == []
    with pytest.raises(StorageError, match="not prepared"):
        driver.commit_layer(L0)


def test_child_layer_starts_as_its_parent(driver: DirDriver) -> None:
    committed(driver, L0, fill="base")
    path = driver.prepare_layer(L1, L0)
    assert Path(path, "base").read_text() == L0
    Path(path, "base").unlink()  # the child's changes do not touch the parent
    driver.commit_layer(L1)
    assert Path(driver.layer_path(L0), "base").exists()
    assert not Path(driver.layer_path(L1), "base").exists()
    with pytest.raises(StorageError, match="not in the store"):
        driver.prepare_layer(L2, "sha256:" + "9" * 64)


def test_remove_layer_refused_while_used(driver: DirDriver) -> None:
    committed(driver, L0)
    committed(driver, L1, L0)
    driver.create_rootfs("c1", L1)
    with pytest.raises(StorageError, match="in use by layer " + L1):
        driver.remove_layer(L0)
    with pytest.raises(StorageError, match="in use by container c1"):
        driver.remove_layer(L1)
    driver.remove_rootfs("c1")
    driver.remove_layer(L1)
    driver.remove_layer(L0)
    driver.remove_layer(L0)  # already gone: fine
    assert driver.layers() == []
    assert os.listdir(Path(driver.root, "layers")) == []


def test_invalid_names_never_reach_the_disk(driver: DirDriver) -> None:
    with pytest.raises(StorageError, match="invalid chain id"):
        driver.prepare_layer("sha256:../../etc", None)
    with pytest.raises(StorageError, match="invalid container id"):
        driver.create_rootfs("../evil", None)
    assert not Path(driver.root).exists()


# -- container rootfs ----------------------------------------------------------------------------


def test_rootfs_is_an_exact_independent_copy(driver: DirDriver) -> None:
    rich_tree(Path(driver.prepare_layer(L0, None)))
    driver.commit_layer(L0)
    rootfs = driver.create_rootfs("c1", L0)
    assert rootfs == driver.rootfs_path("c1")
    assert diff(tree_facts(driver.layer_path(L0)), tree_facts(rootfs)) == []
    assert driver.containers() == ["c1"] and driver.parent_of("c1") == L0
    Path(rootfs, "etc", "shadow").write_text("changed")
    assert Path(driver.layer_path(L0), "etc", "shadow").read_text() != "changed"
    with pytest.raises(StorageError, match="already has a rootfs"):
        driver.create_rootfs("c1", L0)


def test_empty_rootfs_and_removal(driver: DirDriver) -> None:
    rootfs = driver.create_rootfs("c0", None)
    assert os.listdir(rootfs) == [] and driver.parent_of("c0") is None
    driver.snapshot("c0", "s")
    driver.remove_rootfs("c0")  # snapshots go with it
    driver.remove_rootfs("c0")  # missing: fine
    assert driver.containers() == []
    assert os.listdir(Path(driver.root, "containers")) == []


def test_crash_leftovers_are_swept(driver: DirDriver) -> None:
    committed(driver, L0, fill="f")
    driver.create_rootfs("c1", L0)
    layers_dir, containers_dir = Path(driver.root, "layers"), Path(driver.root, "containers")
    # what a process killed while removing or creating leaves
    (layers_dir / f".del-{L1[7:]}-999999").mkdir()
    (layers_dir / f".tmp-{L1[7:]}").mkdir()
    (containers_dir / ".del-c1-999999" / "rootfs").mkdir(parents=True)
    (containers_dir / ".tmp-c2").mkdir()
    assert driver.layers() == [L0] and driver.containers() == ["c1"]
    driver.abort_layer(L1)
    driver.remove_rootfs("c1")
    driver.remove_rootfs("c2")
    assert sorted(os.listdir(layers_dir)) == [L0[7:]]
    assert os.listdir(containers_dir) == []


# -- snapshots ---------------------------------------------------------------------------------


def mutate(rootfs: Path) -> None:
    """Every kind of change a container can make."""
    (rootfs / "etc" / "shadow").write_text("root:$6$new:19001::::::\n")  # content
    (rootfs / "home" / "user" / "notes").chmod(0o600)  # mode
    os.chown(rootfs / "home" / "user", 0, 0)  # owner
    (rootfs / "usr" / "bin" / "sudo").unlink()  # deletion
    (rootfs / "new-dir" / "deep").mkdir(parents=True)  # addition
    (rootfs / "new-dir" / "deep" / "f").write_text("new")
    (rootfs / "usr" / "bin" / "sh").unlink()
    (rootfs / "usr" / "bin" / "sh").symlink_to("dash")  # retargeted link
    (rootfs / "usr" / "bin" / "ping6").unlink()
    (rootfs / "usr" / "bin" / "ping6").write_bytes(b"not a link any more")  # broken hardlink
    os.removexattr(rootfs / "etc" / "shadow", "user.mime_type")
    os.setxattr(rootfs / "etc", "trusted.note", b"changed")
    os.utime(rootfs / "home" / "user" / "notes", ns=(5, 5))  # times
    (rootfs / "dev" / "null").unlink()
    os.mknod(rootfs / "dev" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 5))  # device


def test_snapshot_rollback_restores_the_exact_tree(driver: DirDriver) -> None:
    rich_tree(Path(driver.prepare_layer(L0, None)))
    driver.commit_layer(L0)
    rootfs = Path(driver.create_rootfs("c1", L0))
    (rootfs / "state-1").write_text("one")
    snap = driver.snapshot("c1", "s1")
    assert snap.name == "s1" and snap.created.endswith("Z")
    at_s1 = tree_facts(os.fspath(rootfs))
    mutate(rootfs)
    driver.snapshot("c1", "s2")
    at_s2 = tree_facts(os.fspath(rootfs))
    assert diff(at_s1, at_s2) != []
    (rootfs / "after-s2").write_text("x")
    driver.rollback("c1", "s1")
    assert diff(at_s1, tree_facts(driver.rootfs_path("c1"))) == []
    driver.rollback("c1", "s2")  # dir keeps newer snapshots: forward works too
    assert diff(at_s2, tree_facts(driver.rootfs_path("c1"))) == []
    assert [s.name for s in driver.snapshots("c1")] == ["s1", "s2"]
    with pytest.raises(StorageError, match="already has a snapshot 's1'"):
        driver.snapshot("c1", "s1")
    with pytest.raises(StorageError, match="no snapshot 'nope'"):
        driver.rollback("c1", "nope")
    with pytest.raises(StorageError, match="invalid snapshot name"):
        driver.snapshot("c1", "../x")
    driver.remove_snapshot("c1", "s1")
    assert [s.name for s in driver.snapshots("c1")] == ["s2"]
    with pytest.raises(StorageError, match="no snapshot 's1'"):
        driver.remove_snapshot("c1", "s1")
    home = Path(driver.root, "containers", "c1")
    assert sorted(os.listdir(home)) == ["parent", "rootfs", "snapshots"]


def test_interrupted_rollback_is_finished(driver: DirDriver) -> None:
    rootfs = Path(driver.create_rootfs("c1", None))
    (rootfs / "f").write_text("snapshot")
    driver.snapshot("c1", "s1")
    (rootfs / "f").write_text("later")
    home = Path(driver.root, "containers", "c1")
    # killed after the copy was complete and the old tree moved away, before the swap
    tree.copy_tree(
        os.fspath(home / "snapshots" / "s1" / "rootfs"), os.fspath(home / ".rollback-ready")
    )
    os.rename(rootfs, home / ".rollback-old")
    assert Path(driver.rootfs_path("c1"), "f").read_text() == "snapshot"
    assert sorted(os.listdir(home)) == ["parent", "rootfs", "snapshots"]
    # killed during the copy: the rootfs is untouched, the partial copy goes
    (home / ".rollback-new").mkdir()
    assert Path(driver.rootfs_path("c1"), "f").read_text() == "snapshot"
    assert not (home / ".rollback-new").exists()


def test_usage(driver: DirDriver) -> None:
    Path(driver.prepare_layer(L0, None), "big").write_bytes(os.urandom(1 << 20))
    driver.commit_layer(L0)
    rootfs = driver.create_rootfs("c1", L0)
    driver.snapshot("c1", "s1")
    Path(rootfs, "more").write_bytes(os.urandom(1 << 19))
    used = driver.usage()
    assert used["layers"] >= 1 << 20
    assert used["containers"] >= (1 << 20) + (1 << 19)
    assert used["snapshots"] >= 1 << 20


# -- reflinks ----------------------------------------------------------------------------------


@pytest.fixture
def btrfs_dir(tmp_path: Path) -> Iterator[Path]:
    """A btrfs on a 256 MiB loop file, mounted at tmp/mnt; unmounted (loop freed) after."""
    mkfs = require_tool("mkfs.btrfs")
    image = tmp_path / "btrfs.img"
    with open(image, "wb") as f:
        f.truncate(256 << 20)
    run_cmd([mkfs, "-q", os.fspath(image)])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run_cmd(["mount", "-o", "loop", os.fspath(image), os.fspath(mnt)])
    try:
        yield mnt
    finally:
        subprocess.run(["umount", os.fspath(mnt)], check=False, timeout=60)


def test_copies_are_reflinks_on_btrfs(btrfs_dir: Path) -> None:
    driver = DirDriver(os.fspath(btrfs_dir / "storage" / "dir"))
    layer = Path(driver.prepare_layer(L0, None))
    rich_tree(layer)
    (layer / "big").write_bytes(os.urandom(64 << 20))
    driver.commit_layer(L0)
    before = os.statvfs(btrfs_dir)
    stats = tree.copy_tree(driver.layer_path(L0), os.fspath(btrfs_dir / "copy"))
    after = os.statvfs(btrfs_dir)
    assert stats.reflinked == stats.files and stats.files >= 5
    used = (before.f_bfree - after.f_bfree) * before.f_frsize
    assert used < 16 << 20, f"a reflinked copy of 64 MiB used {used} bytes"
    rootfs = driver.create_rootfs("c1", L0)
    assert diff(tree_facts(driver.layer_path(L0)), tree_facts(rootfs)) == []
