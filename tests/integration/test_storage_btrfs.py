"""The btrfs storage driver on a btrfs the test makes: a loop file, mkfs.btrfs, mounted; removed
afterwards (support.storage.loop_btrfs), one per test module."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexcage.errors import StorageError
from nexcage.storage.btrfs import BtrfsDriver
from support import run_cmd, unmount_under
from support.storage import (
    check_crash_before_commit,
    check_layer_lifecycle,
    check_runs_under_crun,
    check_same_tree_as_flat,
    check_snapshot_rollback,
    loop_btrfs,
    three_layers,
    unpack_onto,
)
from support.trees import diff, tree_facts

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture(scope="module")
def btrfs_mount(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with loop_btrfs(tmp_path_factory.mktemp("btrfs")) as mnt:
        yield mnt


@pytest.fixture
def driver(btrfs_mount: Path, request: pytest.FixtureRequest) -> Iterator[BtrfsDriver]:
    """A driver with its own root on the shared btrfs; emptied afterwards (the subvolumes go
    through the driver's own removal, which a failing test may have left half-done)."""
    root = btrfs_mount / request.node.name
    drv = BtrfsDriver(os.fspath(root))
    assert drv.usable() is None
    yield drv
    for cid in drv.containers():
        drv.remove_rootfs(cid)
    from nexcage.storage.btrfs import remove_tree

    remove_tree(os.fspath(root))


def test_layer_and_container_lifecycle(driver: BtrfsDriver) -> None:
    check_layer_lifecycle(driver)
    root = Path(driver.root)
    assert os.listdir(root / "layers") == [] and os.listdir(root / "containers") == []


def test_crash_between_prepare_and_commit(driver: BtrfsDriver) -> None:
    check_crash_before_commit(driver, "btrfs", "BtrfsDriver", driver.root)
    assert os.listdir(Path(driver.root) / "layers") == []


def test_same_tree_as_flat_unpack(driver: BtrfsDriver, tmp_path: Path) -> None:
    check_same_tree_as_flat(driver, tmp_path)


def test_snapshot_change_rollback(driver: BtrfsDriver) -> None:
    check_snapshot_rollback(driver)


def test_committed_layers_and_snapshots_are_read_only(driver: BtrfsDriver) -> None:
    top = unpack_onto(driver, three_layers())
    assert top is not None
    layer = Path(driver.root, "layers", top.removeprefix("sha256:"), "rootfs")
    with pytest.raises(OSError) as info:
        (layer / "etc/only").write_text("x")
    assert info.value.errno == errno.EROFS
    rootfs = driver.create_rootfs("ro", top)
    driver.snapshot("ro", "s1")
    with pytest.raises(OSError) as info:
        Path(driver.root, "snapshots/ro/s1/rootfs/new").write_text("x")
    assert info.value.errno == errno.EROFS
    Path(rootfs, "new").write_text("the container's own copy is writable\n")
    assert st_dev(rootfs) != st_dev(os.fspath(layer)), "a snapshot, its own subvolume"
    driver.remove_rootfs("ro")
    assert not Path(driver.root, "snapshots/ro").exists()


def st_dev(path: str) -> int:
    return os.stat(path).st_dev


def test_remove_rootfs_with_a_nested_subvolume(driver: BtrfsDriver) -> None:
    # A container that runs btrfs tools on its rootfs (docker-in-a-container) makes subvolumes.
    top = unpack_onto(driver, three_layers())
    rootfs = driver.create_rootfs("nested", top)
    subprocess.run(["btrfs", "subvolume", "create", os.path.join(rootfs, "inner")],
                   check=True, capture_output=True)  # fmt: skip
    Path(rootfs, "inner/file").write_text("x")
    driver.remove_rootfs("nested")
    assert driver.containers() == [] and os.listdir(Path(driver.root, "containers")) == []


def test_interrupted_rollback_is_finished_on_next_access(driver: BtrfsDriver) -> None:
    top = unpack_onto(driver, three_layers())
    rootfs = driver.create_rootfs("crash", top)
    Path(rootfs, "state").write_text("at snapshot\n")
    driver.snapshot("crash", "s1")
    want = tree_facts(rootfs)
    Path(rootfs, "state").write_text("later\n")
    home = Path(driver.root, "containers", "crash")
    subprocess.run(["btrfs", "subvolume", "snapshot", os.fspath(Path(driver.root,
                    "snapshots/crash/s1/rootfs")), os.fspath(home / ".rollback-ready")],
                   check=True, capture_output=True)  # fmt: skip
    os.rename(home / "rootfs", home / ".rollback-old")  # and then the process died
    assert driver.rootfs_path("crash") == rootfs
    assert diff(want, tree_facts(rootfs)) == []
    assert sorted(os.listdir(home)) == ["parent", "rootfs"]


def test_runs_under_crun(
    driver: BtrfsDriver,
    runtime_binary: str,
    runtime_root: str,
    tmp_path: Path,
    busybox_rootfs: str,
) -> None:
    check_runs_under_crun(driver, runtime_binary, runtime_root, tmp_path, busybox_rootfs)


# -- faults ------------------------------------------------------------------------------------


def test_not_on_btrfs_says_why(tmp_path: Path) -> None:
    driver = BtrfsDriver(os.fspath(tmp_path / "storage" / "btrfs"))
    problem = driver.usable()
    assert problem is not None and "is not on btrfs" in problem and os.fspath(tmp_path) in problem
    chain = "sha256:" + "a" * 64
    with pytest.raises(StorageError, match="not on btrfs") as info:
        driver.prepare_layer(chain, None)
    assert info.value.hint and "storage init --driver btrfs" in info.value.hint
    assert not (tmp_path / "storage").exists(), "nothing made on the wrong filesystem"


# -- nexcage storage init --driver btrfs ---------------------------------------------------------


class Settings:
    def __init__(self, data_root: Path) -> None:
        self.data_root = os.fspath(data_root)
        self.zfs_dataset: str | None = None


@pytest.fixture
def data_root(tmp_path: Path) -> Iterator[Path]:
    """A data root whose loop mounts and loop devices are undone afterwards."""
    root = tmp_path / "data"
    try:
        yield root
    finally:
        unmount_under(os.fspath(tmp_path))
        for image in tmp_path.rglob("*.img"):
            detach_loops(image)


def detach_loops(image: Path) -> None:
    out = run_cmd(["losetup", "-j", os.fspath(image)]).stdout
    for line in out.splitlines():
        run_cmd(["losetup", "-d", line.split(":", 1)[0]], check=False)


def test_storage_init_makes_mounts_and_remounts(data_root: Path) -> None:
    from nexcage.storage.init import init_storage

    text = init_storage(Settings(data_root), "btrfs", "200M", None)
    root = data_root / "storage" / "btrfs"
    image = data_root / "storage" / "btrfs.img"
    assert f"Made a btrfs in {image} (200M, sparse)" in text and "/etc/fstab" in text
    assert image.stat().st_size == 200 << 20 and image.stat().st_blocks * 512 < 200 << 20
    driver = BtrfsDriver(os.fspath(root))
    assert driver.usable() is None
    unpack_onto(driver, three_layers())
    assert "already mounted" in init_storage(Settings(data_root), "btrfs", "200M", None)
    # A reboot: the mount is gone, the file stays; init again mounts it without formatting.
    run_cmd(["umount", os.fspath(root)])
    assert driver.usable() is not None
    again = init_storage(Settings(data_root), "btrfs", "200M", None)
    assert "Mounted the existing btrfs" in again
    assert len(driver.layers()) == 3


def test_storage_init_refuses(data_root: Path, tmp_path: Path) -> None:
    from nexcage.storage.init import init_storage

    with pytest.raises(StorageError, match="too small"):
        init_storage(Settings(data_root), "btrfs", "10M", None)
    with pytest.raises(StorageError, match="invalid size"):
        init_storage(Settings(data_root), "btrfs", "lots", None)
    other = tmp_path / "not-btrfs.img"
    other.write_bytes(b"precious" * 1000)
    with pytest.raises(StorageError, match="does not hold a btrfs"):
        init_storage(Settings(data_root), "btrfs", "200M", os.fspath(other))
    assert other.read_bytes() == b"precious" * 1000
    busy = data_root / "storage" / "btrfs"
    busy.mkdir(parents=True)
    (busy / "file").write_text("x")
    with pytest.raises(StorageError, match="not empty"):
        init_storage(Settings(data_root), "btrfs", "200M", None)
    assert not (data_root / "storage" / "btrfs.img").exists()
