"""The zfs storage driver through zfs-fuse: the module starts the daemon (and stops it by its
pid at the end), each test gets a pool on a file with a ``<pool>/nexcage`` dataset mounted at its
driver root, destroyed afterwards (support.storage.zfs_fuse_daemon, zfs_pool).

zfs-fuse has no xattrs: the tree comparison leaves them out (unpack skips them with a warning).
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexcage.errors import StorageError
from nexcage.storage.zfs import ZfsDriver
from support import run_cmd, wait_for
from support.storage import (
    check_crash_before_commit,
    check_layer_lifecycle,
    check_runs_under_crun,
    check_same_tree_as_flat,
    check_snapshot_rollback,
    destroy_pool,
    three_layers,
    unpack_onto,
    zfs_fuse_daemon,
    zfs_pool,
)

POOLS = itertools.count()

pytestmark = [pytest.mark.integration, pytest.mark.root, pytest.mark.slow]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int | None]:
    with zfs_fuse_daemon(tmp_path_factory.mktemp("zfs-fuse")) as pid:
        yield pid


@pytest.fixture
def dataset_and_root(daemon: int | None, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "storage" / "zfs"
    with zfs_pool(tmp_path, root) as dataset:
        yield dataset, root


@pytest.fixture
def driver(dataset_and_root: tuple[str, Path]) -> ZfsDriver:
    dataset, root = dataset_and_root
    drv = ZfsDriver(os.fspath(root), dataset)
    assert drv.usable() is None
    return drv


def zfs(*args: str) -> str:
    return subprocess.run(["zfs", *args], check=True, capture_output=True, text=True).stdout


def test_layer_and_container_lifecycle(driver: ZfsDriver) -> None:
    check_layer_lifecycle(driver)
    assert zfs("list", "-H", "-o", "name", "-r", f"{driver.dataset}/layers").split() == [
        f"{driver.dataset}/layers"
    ]


def test_crash_between_prepare_and_commit(driver: ZfsDriver) -> None:
    assert driver.dataset is not None
    check_crash_before_commit(driver, "zfs", "ZfsDriver", driver.root, driver.dataset)


def test_same_tree_as_flat_unpack(driver: ZfsDriver, tmp_path: Path) -> None:
    check_same_tree_as_flat(driver, tmp_path, xattrs=False)


def test_snapshot_change_rollback(driver: ZfsDriver) -> None:
    check_snapshot_rollback(driver)


def test_layers_are_clones_and_read_only(driver: ZfsDriver) -> None:
    layers = three_layers()
    top = unpack_onto(driver, layers)
    assert top is not None
    top_ds = f"{driver.dataset}/layers/{top.removeprefix('sha256:')}"
    assert zfs("get", "-H", "-o", "value", "readonly", top_ds).strip() == "on"
    assert zfs("get", "-H", "-o", "value", "mounted", top_ds).strip() == "no"
    origin = zfs("get", "-H", "-o", "value", "origin", top_ds).strip()
    assert origin.endswith("@base") and origin.startswith(f"{driver.dataset}/layers/")
    rootfs = driver.create_rootfs("clone", top)
    container_ds = f"{driver.dataset}/containers/clone"
    assert zfs("get", "-H", "-o", "value", "origin", container_ds).strip() == f"{top_ds}@base"
    Path(rootfs, "new").write_text("a clone is writable\n")
    driver.remove_rootfs("clone")


def test_container_id_with_plus(driver: ZfsDriver) -> None:
    top = unpack_onto(driver, three_layers())
    rootfs = driver.create_rootfs("a+b", top)
    assert driver.containers() == ["a+b"] and driver.parent_of("a+b") == top
    assert driver.rootfs_path("a+b") == rootfs
    driver.remove_rootfs("a+b")
    assert driver.containers() == []


def test_rootfs_path_mounts_again(driver: ZfsDriver) -> None:
    top = unpack_onto(driver, three_layers())
    rootfs = driver.create_rootfs("remount", top)
    Path(rootfs, "kept").write_text("x")
    zfs("unmount", f"{driver.dataset}/containers/remount")
    assert not Path(rootfs, "kept").exists()
    assert driver.rootfs_path("remount") == rootfs
    assert Path(rootfs, "kept").read_text() == "x"
    driver.remove_rootfs("remount")


def test_runs_under_crun(
    driver: ZfsDriver,
    runtime_binary: str,
    runtime_root: str,
    tmp_path: Path,
    busybox_rootfs: str,
) -> None:
    check_runs_under_crun(driver, runtime_binary, runtime_root, tmp_path, busybox_rootfs)


# -- faults ------------------------------------------------------------------------------------


def test_without_the_pool_says_why(daemon: int | None, tmp_path: Path) -> None:
    driver = ZfsDriver(os.fspath(tmp_path / "zfs"), "nxnosuchpool/nexcage")
    problem = driver.usable()
    assert problem is not None and "nxnosuchpool/nexcage does not exist" in problem
    with pytest.raises(StorageError, match="does not exist"):
        driver.prepare_layer("sha256:" + "b" * 64, None)


def test_without_a_dataset_configured(tmp_path: Path) -> None:
    driver = ZfsDriver(os.fspath(tmp_path / "zfs"), None)
    assert driver.usable() == "no ZFS dataset configured (storage.zfs_dataset in the config file)"
    with pytest.raises(StorageError, match="no ZFS dataset configured"):
        driver.layers()


def test_mounted_elsewhere_says_so(dataset_and_root: tuple[str, Path], tmp_path: Path) -> None:
    dataset, root = dataset_and_root
    driver = ZfsDriver(os.fspath(tmp_path / "elsewhere"), dataset)
    problem = driver.usable()
    assert problem is not None and f"mounted at '{root}'" in problem


# -- nexcage storage init --driver zfs -----------------------------------------------------------


class Settings:
    def __init__(self, data_root: Path, dataset: str | None) -> None:
        self.data_root = os.fspath(data_root)
        self.zfs_dataset = dataset


@pytest.fixture
def init_pool(daemon: int | None, tmp_path: Path) -> Iterator[str]:
    """The name of a pool `init_storage` may make; destroyed afterwards, and gone from
    zfs-fuse's pool cache (a stale entry would come back, faulted, with the next daemon)."""
    pool = f"nxinit{os.getpid()}x{next(POOLS)}"
    try:
        yield pool
    finally:
        destroy_pool(pool)
        wait_for(lambda: pool.encode() not in cache_bytes(), timeout=10, what="the pool cache")


def cache_bytes() -> bytes:
    try:
        return Path("/var/lib/zfs/zpool.cache").read_bytes()
    except FileNotFoundError:
        return b""


def test_storage_init_makes_a_pool(init_pool: str, tmp_path: Path) -> None:
    from nexcage.storage.init import init_storage

    data_root = tmp_path / "data"
    settings = Settings(data_root, f"{init_pool}/nexcage")
    text = init_storage(settings, "zfs", "128M", None)
    root = data_root / "storage" / "zfs"
    image = data_root / "storage" / "zfs.img"
    assert f"Made pool {init_pool} on {image} (128M, sparse), dataset {init_pool}/nexcage" in text
    assert "zpool import -d" in text and "zfs_dataset" not in text
    driver = ZfsDriver(os.fspath(root), f"{init_pool}/nexcage")
    assert driver.usable() is None
    unpack_onto(driver, three_layers())
    again = init_storage(settings, "zfs", "128M", None)
    assert "is already at" in again
    assert len(driver.layers()) == 3
    # A pool the daemon forgot (no cache entry): init imports it again from the file.
    subprocess.run(["zpool", "export", init_pool], check=True, capture_output=True)
    assert driver.usable() is not None
    assert "Imported pool" in init_storage(settings, "zfs", "128M", None)
    assert driver.usable() is None and len(driver.layers()) == 3


def test_storage_init_default_dataset_and_refusals(init_pool: str, tmp_path: Path) -> None:
    from nexcage.storage.init import init_storage

    with pytest.raises(StorageError, match="too small"):
        init_storage(Settings(tmp_path, f"{init_pool}/x"), "zfs", "1M", None)
    busy = tmp_path / "busy"
    (busy / "storage" / "zfs").mkdir(parents=True)
    (busy / "storage" / "zfs" / "file").write_text("x")
    with pytest.raises(StorageError, match="not empty"):
        init_storage(Settings(busy, f"{init_pool}/x"), "zfs", "128M", None)
    assert run_cmd(["zpool", "list", init_pool], check=False).returncode != 0
    # A dataset that exists elsewhere is not moved.
    text = init_storage(Settings(tmp_path / "one", init_pool), "zfs", "128M", None)
    assert f'[storage] zfs_dataset = "{init_pool}"' not in text  # it was configured
    with pytest.raises(StorageError, match="not at"):
        init_storage(Settings(tmp_path / "two", init_pool), "zfs", "128M", None)
