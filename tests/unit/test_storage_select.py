"""Which driver `auto` picks, and the errors for a driver that cannot work here (host facts
stubbed: the filesystem type and each driver's ``usable()``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from nexcage.errors import StorageError
from nexcage.storage import select
from nexcage.storage.dir import DirDriver

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:26 / /srv/b rw,relatime shared:9 - btrfs /dev/loop0 rw
31 30 0:27 / /srv/b/inner\\040dir rw - tmpfs tmpfs rw
32 22 0:28 / /srv/bb rw - xfs /dev/vdb rw
"""


class Conf:
    def __init__(self, data_root: str, driver: str = "auto", dataset: str | None = None) -> None:
        self.data_root = data_root
        self.storage_driver = driver
        self.zfs_dataset = dataset


class Fake:
    layer_format = "flat"

    def __init__(self, name: str, root: str, problem: str | None) -> None:
        self.name, self.root, self.problem = name, root, problem

    def usable(self) -> str | None:
        return self.problem


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """fs type of the data root, and what each driver's usable() says."""
    facts: dict[str, Any] = {"fs": "ext4", "overlay": None, "btrfs": None, "zfs": None}
    monkeypatch.setattr(select, "fs_type", lambda path: facts["fs"])
    real_make = select.make

    def make(name: str, data_root: str, zfs_dataset: str | None = None) -> Any:
        if name == "dir":
            return real_make(name, data_root)
        return Fake(name, select.driver_root(data_root, name), facts[name])

    monkeypatch.setattr(select, "make", make)
    return facts


def test_fs_type_longest_mount_prefix() -> None:
    assert select.fs_type_in(MOUNTINFO, "/srv/b/storage/btrfs") == "btrfs"
    assert select.fs_type_in(MOUNTINFO, "/srv/b") == "btrfs"
    assert select.fs_type_in(MOUNTINFO, "/srv/bb/x") == "xfs"  # not below /srv/b
    assert select.fs_type_in(MOUNTINFO, "/srv/b/inner dir/x") == "tmpfs"  # \040 unescaped
    assert select.fs_type_in(MOUNTINFO, "/var/lib/nexcage") == "ext4"


def test_fs_type_of_this_host(tmp_path: Path) -> None:
    assert select.fs_type("/proc/self/status") == "proc"
    # a path that does not exist yet: its nearest existing ancestor decides
    assert select.fs_type(os.fspath(tmp_path / "a" / "b")) == select.fs_type(os.fspath(tmp_path))


def test_auto_prefers_btrfs_on_btrfs(host: dict[str, Any]) -> None:
    host["fs"] = "btrfs"
    driver, reason = select.choose(Conf("/d"))
    assert driver.name == "btrfs"
    assert reason.startswith("auto -> btrfs: /d/storage/btrfs is on btrfs")


def test_auto_takes_zfs_when_a_dataset_is_configured_and_usable(host: dict[str, Any]) -> None:
    driver, reason = select.choose(Conf("/d", dataset="tank/nexcage"))
    assert driver.name == "zfs"
    assert "not btrfs: /d/storage/btrfs is on ext4, not on btrfs" in reason


def test_auto_falls_to_overlay_then_dir(host: dict[str, Any]) -> None:
    driver, reason = select.choose(Conf("/d"))
    assert driver.name == "overlay"
    assert "not zfs: no ZFS dataset configured" in reason
    host["overlay"] = "mounting a test overlay failed: permission denied"
    driver, reason = select.choose(Conf("/d"))
    assert isinstance(driver, DirDriver)
    assert reason.startswith("auto -> dir: plain copies")
    assert "not overlay: mounting a test overlay failed" in reason


def test_unusable_zfs_dataset_is_explained(host: dict[str, Any]) -> None:
    host["zfs"] = "dataset tank/nexcage does not exist"
    driver, reason = select.choose(Conf("/d", dataset="tank/nexcage"))
    assert driver.name == "overlay" and "not zfs: dataset tank/nexcage does not exist" in reason


def test_btrfs_asked_for_on_ext4_is_an_error_with_the_fix(host: dict[str, Any]) -> None:
    with pytest.raises(StorageError) as info:
        select.open_driver(Conf("/d", driver="btrfs"))
    assert str(info.value) == (
        "storage btrfs: cannot be used here: /d/storage/btrfs is on ext4, not on btrfs"
    )
    assert info.value.hint is not None and "storage init --driver btrfs" in info.value.hint


def test_zfs_asked_for_without_a_pool(host: dict[str, Any]) -> None:
    with pytest.raises(StorageError, match="no ZFS dataset configured"):
        select.open_driver(Conf("/d", driver="zfs"))
    host["zfs"] = "cannot open 'tank': no such pool"
    with pytest.raises(StorageError, match="no such pool") as info:
        select.open_driver(Conf("/d", driver="zfs", dataset="tank/x"))
    assert info.value.hint is not None and "zpool" in info.value.hint


def test_configured_driver_that_works(host: dict[str, Any]) -> None:
    driver, reason = select.choose(Conf("/d", driver="overlay"))
    assert driver.name == "overlay" and reason == "overlay: configured (storage.driver)"
    driver, _ = select.choose(Conf("/d", driver="dir"))
    assert isinstance(driver, DirDriver) and driver.root == "/d/storage/dir"


def test_unknown_driver() -> None:
    with pytest.raises(StorageError, match="unknown storage driver"):
        select.make("aufs", "/d")
