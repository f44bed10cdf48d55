"""``nexcage snapshot create|ls|rollback|rm`` through the CLI, on containers made with
``create --image`` and run under crun, on every storage driver (dir, overlay, btrfs on a loop
file, zfs through zfs-fuse).

The rollback check is file by file (`support.trees`): content, mode, owner, link targets,
device numbers, times and hardlinks of every entry equal what they were at the snapshot.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support.busybox import layer_tar, make_rootfs
from support.cli import Nexcage, storage_setup
from support.layered import write_oci_archive
from support.layers import LayerTar
from support.trees import diff, tree_facts

pytestmark = [pytest.mark.e2e, pytest.mark.root]

IMAGE = "localhost/nexcage-e2e/snap:1"
DRIVERS = ["dir", "overlay", "btrfs", "zfs"]
ATOMIC = ("btrfs", "zfs")  # snapshot a running container
# what the container itself changes before the first snapshot
WRITES = (
    "echo one > /data/a && chmod 600 /data/a && rm /data/gone && mkdir -p /var/made "
    "&& ln -s /data/a /var/made/link && ln /data/b /data/b-link && touch -d @1000 /data/b"
)


@pytest.fixture(scope="module")
def image_archive(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("snap-image")
    rootfs = make_rootfs(work / "rootfs")
    extra = (
        LayerTar().dir("data").file("data/gone", b"bye").file("data/b", b"bee", mode=0o640)
        .file("data/owned", b"u", uid=1000, gid=1000).device("data/null", major=1, minor=3)
    )  # fmt: skip
    path = work / "snap.tar"
    write_oci_archive(path, IMAGE, [layer_tar(rootfs), extra.data()])
    return os.fspath(path)


@contextmanager
def nexcage_on(
    driver: str, image_archive: str, runtime_root: str, tmp_path: Path
) -> Iterator[Nexcage]:
    with storage_setup(driver, tmp_path) as (data_root, config):
        n = Nexcage(runtime_root, data_root, driver=driver, config=config)
        n("image", "import", image_archive)
        try:
            yield n
        finally:
            n.cleanup()
        assert n.leftovers() == {}, "delete must remove rootfs, snapshots and bundle"


@pytest.fixture(params=DRIVERS)
def nx(
    request: pytest.FixtureRequest, image_archive: str, runtime_root: str,
    hugetlb_cgroup_v1: list[str], tmp_path: Path,
) -> Iterator[Nexcage]:  # fmt: skip
    with nexcage_on(request.param, image_archive, runtime_root, tmp_path) as n:
        yield n


@pytest.fixture
def nx_dir(
    image_archive: str, runtime_root: str, hugetlb_cgroup_v1: list[str], tmp_path: Path
) -> Iterator[Nexcage]:
    """For what does not depend on the driver."""
    with nexcage_on("dir", image_archive, runtime_root, tmp_path) as n:
        yield n


def facts(nx: Nexcage, rootfs: str) -> dict[str, tuple[object, ...]]:
    return tree_facts(rootfs, xattrs=nx.driver != "zfs")  # zfs-fuse has no xattrs


def mutate(rootfs: Path) -> None:
    """Changes of every kind, made on the host while the container is stopped."""
    (rootfs / "data" / "a").write_text("two\n")
    (rootfs / "data" / "b").chmod(0o777)
    os.chown(rootfs / "data" / "owned", 0, 0)
    shutil.rmtree(rootfs / "var" / "made")
    (rootfs / "data" / "b-link").unlink()
    (rootfs / "data" / "b-link").write_text("no longer a hardlink")
    (rootfs / "bin" / "sh").unlink()
    (rootfs / "bin" / "sh").symlink_to("/elsewhere")
    (rootfs / "data" / "null").unlink()
    (rootfs / "new" / "deeper").mkdir(parents=True)
    (rootfs / "new" / "deeper" / "file").write_bytes(os.urandom(100_000))
    os.utime(rootfs / "etc" / "passwd", ns=(7, 7))


def test_snapshot_change_rollback_restores_the_exact_tree(nx: Nexcage) -> None:
    nx.ids.add("snap1")
    nx("create", "--image", IMAGE, "snap1", "--", "sh", "-c", WRITES)
    nx("start", "snap1")
    rootfs = Path(nx.wait_stopped("snap1")["rootfs"])
    assert (rootfs / "data" / "a").read_text() == "one\n"  # the container's own writes
    assert nx("snapshot", "create", "snap1", "s1").stdout == "s1\n"
    at_s1 = facts(nx, os.fspath(rootfs))
    mutate(rootfs)
    changed = facts(nx, os.fspath(rootfs))
    assert len(diff(at_s1, changed, limit=100)) >= 9
    auto_name = nx("snapshot", "create", "snap1").stdout.strip()
    assert auto_name.startswith("snap-")
    listed = nx("snapshot", "ls", "--format", "json", "snap1").stdout
    assert [s["name"] for s in json.loads(listed)] == ["s1", auto_name]
    (rootfs / "after-second").write_text("x")
    nx("snapshot", "rollback", "snap1", "s1")
    assert nx.state("snap1")["rootfs"] == os.fspath(rootfs)
    assert diff(at_s1, facts(nx, os.fspath(rootfs))) == []
    left = [s["name"] for s in json.loads(nx("snapshot", "ls", "-f", "json", "snap1").stdout)]
    # zfs rolls back with -r: newer snapshots are destroyed (and the CLI says so)
    assert left == (["s1"] if nx.driver == "zfs" else ["s1", auto_name])
    if auto_name in left:
        nx("snapshot", "rollback", "snap1", auto_name)  # forward again
        assert diff(changed, facts(nx, os.fspath(rootfs))) == []
        nx("snapshot", "rm", "snap1", auto_name)
    nx("snapshot", "rm", "snap1", "s1")
    assert nx("snapshot", "ls", "-f", "json", "snap1").stdout.strip() == "[]"


def test_running_container(nx: Nexcage) -> None:
    nx.ids.add("busy")
    nx("create", "--image", IMAGE, "busy", "--", "sleep", "100")
    nx("start", "busy")
    if nx.driver in ATOMIC:
        nx("snapshot", "create", "busy", "live")  # one atomic snapshot: consistent
    else:
        message = nx.error("snapshot", "create", "busy", "live")
        assert message == (
            f"storage {nx.driver}: container busy is running: the {nx.driver} driver copies the "
            "rootfs file by file, so a snapshot of a running container would not be consistent; "
            "stop (or pause) it first (btrfs and zfs snapshot running containers atomically)"
        )
        nx("pause", "busy")  # frozen: nothing writes, a copy is consistent
        nx("snapshot", "create", "busy", "live")
        nx("resume", "busy")
    message = nx.error("snapshot", "rollback", "busy", "live")
    assert message.endswith(
        "container busy is running: rollback replaces the files under its processes; stop it first"
    )
    nx("kill", "busy", "KILL")
    nx.wait_stopped("busy")
    nx("snapshot", "rollback", "busy", "live")


def test_bad_requests(nx_dir: Nexcage, busybox_bundle: object) -> None:
    nx = nx_dir
    nx.ids.add("quiet")
    nx("create", "--image", IMAGE, "quiet", "--", "true")
    nx("snapshot", "create", "quiet", "s1")
    assert nx.error("snapshot", "rollback", "quiet", "nope") == (
        "storage dir: container quiet has no snapshot 'nope' (snapshots: s1)"
    )
    assert nx.error("snapshot", "rm", "quiet", "nope") == (
        "storage dir: container quiet has no snapshot 'nope' (snapshots: s1)"
    )
    assert nx.error("snapshot", "create", "quiet", "s1") == (
        "storage dir: container quiet already has a snapshot 's1'"
    )
    assert nx.error("snapshot", "create", "quiet", "../up").startswith(
        "storage snapshot: invalid snapshot name '../up'"
    )
    assert nx.error("snapshot", "ls", "ghost") == "container does not exist"
    proc = nx("snapshot", "rollback", "quiet", check=False)
    assert proc.returncode == 2  # usage: NAME is required
    bundle = busybox_bundle(["true"])  # type: ignore[operator]
    nx.ids.add("plain")
    nx("create", "--bundle", bundle, "plain")
    assert nx.error("snapshot", "create", "plain") == (
        "storage -: container plain has no rootfs from a storage driver: snapshots work for "
        "containers made with `create --image`"
    )
