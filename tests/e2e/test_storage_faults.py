"""Storage faults through the CLI: a driver on a filesystem that cannot host it, the disk filling
up during an unpack, removing an image a container uses, two creates of one image at once, and
``create --image`` killed (SIGKILL) at the worst moments — each leaves a clear error and nothing
that ``delete --force`` or ``storage gc`` cannot clean. (Rollback to a missing snapshot:
tests/e2e/test_snapshots.py.)

Crashes are placed with the test-only hook ``NEXCAGE_TEST_HOOK=<point>=kill`` (storage/layers.py):
``layer-applied`` (a layer unpacked, not committed) and ``rootfs-created`` (the container's
rootfs made, its record not yet saved).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from nexcage.storage.layers import HOOK_ENV, chain_ids
from support import require_tool, run_cmd, unmount_under
from support.busybox import layer_tar, make_rootfs
from support.cli import Nexcage, storage_setup
from support.layered import write_oci_archive
from support.layers import LayerTar

pytestmark = [pytest.mark.e2e, pytest.mark.root]

IMAGE = "localhost/nexcage-e2e/faults:1"
BIG = "localhost/nexcage-e2e/big:1"
BIG_BYTES = 96 << 20


class Images:
    def __init__(self, small: str, big: str, small_diff_ids: list[str]) -> None:
        self.small, self.big, self.small_diff_ids = small, big, small_diff_ids


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    work = tmp_path_factory.mktemp("fault-images")
    base = layer_tar(make_rootfs(work / "rootfs"))
    marker = LayerTar().dir("data").file("data/marker", b"from the image\n").data()
    zeros = LayerTar().file("zeros", bytes(BIG_BYTES)).data()  # ~100 KiB compressed
    import hashlib

    write_oci_archive(work / "small.tar", IMAGE, [base, marker])
    write_oci_archive(work / "big.tar", BIG, [base, zeros])
    diff_ids = ["sha256:" + hashlib.sha256(t).hexdigest() for t in (base, marker)]
    return Images(os.fspath(work / "small.tar"), os.fspath(work / "big.tar"), diff_ids)


@contextmanager
def nexcage_on(driver: str, runtime_root: str, workdir: Path, images: Images) -> Iterator[Nexcage]:
    with storage_setup(driver, workdir) as (data_root, config):
        n = Nexcage(runtime_root, data_root, driver=driver, config=config)
        n("image", "import", images.small)
        try:
            yield n
        finally:
            n.cleanup()


@pytest.fixture(params=["dir", "overlay"])
def nx(
    request: pytest.FixtureRequest, runtime_root: str, hugetlb_cgroup_v1: list[str],
    tmp_path: Path, images: Images,
) -> Iterator[Nexcage]:  # fmt: skip
    with nexcage_on(request.param, runtime_root, tmp_path, images) as n:
        yield n


@pytest.fixture
def nx_dir(
    runtime_root: str, hugetlb_cgroup_v1: list[str], tmp_path: Path, images: Images
) -> Iterator[Nexcage]:
    with nexcage_on("dir", runtime_root, tmp_path, images) as n:
        yield n


def nothing_left(nx: Nexcage, *cids: str) -> None:
    assert nx.leftovers() == {}
    for cid in cids:
        assert not Path(nx.root, cid).exists(), f"state dir of {cid} left"
    locks = Path(nx.data_root, "storage", "locks")
    assert not locks.exists() or [p for p in os.listdir(locks) if p.endswith(".pending")] == []


# -- a driver where it cannot work ---------------------------------------------------------------


def test_driver_on_a_filesystem_that_cannot_host_it(nx_dir: Nexcage) -> None:
    nx = nx_dir
    nx.ids.update({"wrong-fs", "no-pool"})
    root = f"{nx.data_root}/storage/btrfs"
    btrfs = {"NEXCAGE_STORAGE_DRIVER": "btrfs"}
    message = nx.error("create", "--image", IMAGE, "wrong-fs", env=btrfs)
    assert message == f"storage btrfs: cannot be used here: {root} is on ext4, not on btrfs"
    report = json.loads(nx("check", "--format", "json", check=False, env=btrfs).stdout)
    found = next(c for c in report["checks"] if c["name"] == "storage driver")
    assert found["status"] == "FAIL" and "nexcage storage init --driver btrfs" in found["fix"]
    zfs = {"NEXCAGE_STORAGE_DRIVER": "zfs"}
    message = nx.error("create", "--image", IMAGE, "no-pool", env=zfs)
    assert message == (
        "storage zfs: cannot be used here: no ZFS dataset configured "
        "(storage.zfs_dataset in the config file)"
    )
    conf = Path(nx.data_root).parent / "zfs.toml"
    conf.write_text('[storage]\ndriver = "zfs"\nzfs_dataset = "nxnopool/nexcage"\n')
    proc = nx("--config", os.fspath(conf), "create", "--image", IMAGE, "no-pool", check=False,
              env=zfs)  # fmt: skip
    assert proc.returncode == 1
    assert proc.error().startswith("storage zfs: cannot be used here: ")
    nothing_left(nx, "wrong-fs", "no-pool")
    assert json.loads(nx("list", "--format", "json").stdout or "[]") in ([], None)


# -- the disk fills up -------------------------------------------------------------------------


@contextmanager
def loop_ext4(workdir: Path, size_mib: int) -> Iterator[tuple[Path, Path, str]]:
    """A small ext4 on a loop device: (mount point, image file, loop device)."""
    mkfs, losetup = require_tool("mkfs.ext4"), require_tool("losetup")
    image, mnt = workdir / "ext4.img", workdir / "small"
    run_cmd(["truncate", "-s", f"{size_mib}M", os.fspath(image)])
    run_cmd([mkfs, "-q", "-F", "-m", "0", os.fspath(image)])
    loop = run_cmd([losetup, "--find", "--show", os.fspath(image)]).stdout.strip()
    try:
        mnt.mkdir()
        run_cmd(["mount", "-t", "ext4", loop, os.fspath(mnt)])
        try:
            yield mnt, image, loop
        finally:
            unmount_under(os.fspath(mnt))
    finally:
        run_cmd([losetup, "-d", loop], check=False)
        image.unlink(missing_ok=True)


@pytest.mark.parametrize("driver", ["dir", "overlay"])
def test_disk_full_during_unpack_leaves_the_store_consistent(
    driver: str, runtime_root: str, hugetlb_cgroup_v1: list[str], tmp_path: Path, images: Images
) -> None:
    with loop_ext4(tmp_path, 64) as (mnt, image, loop):
        nx = Nexcage(runtime_root, os.fspath(mnt / "data"), driver=driver)
        nx.ids.update({"big1", "small1"})
        try:
            nx("image", "import", images.big)
            nx("image", "import", images.small)
            message = nx.error("create", "--image", BIG, "big1")
            assert "No space left on device" in message
            nothing_left(nx, "big1")
            layers = Path(nx.storage_root(), "layers")
            assert len([n for n in os.listdir(layers) if not n.startswith(".")]) == 1  # base
            assert json.loads(nx("storage", "gc", "--format", "json").stdout) == []
            # a smaller image fits, and reuses the committed base layer
            nx("create", "--image", IMAGE, "small1", "--", "cat", "/data/marker")
            out = nx("start", "small1")
            assert nx.wait_stopped("small1")["status"] == "stopped" and out.returncode == 0
            nx("delete", "small1")
            # more room (grown offline: this kernel refuses an online resize of so small a
            # filesystem): the big image now works, from the store as the failure left it
            run_cmd(["umount", os.fspath(mnt)])
            run_cmd(["truncate", "-s", "512M", os.fspath(image)])
            run_cmd(["losetup", "-c", loop])
            run_cmd([require_tool("e2fsck"), "-f", "-p", loop])
            run_cmd([require_tool("resize2fs"), loop])
            run_cmd(["mount", "-t", "ext4", loop, os.fspath(mnt)])
            nx("create", "--image", BIG, "big1", "--", "sh", "-c", "wc -c < /zeros")
            rootfs = Path(nx.state("big1")["rootfs"])
            assert (rootfs / "zeros").stat().st_size == BIG_BYTES
            nx("delete", "big1")
            nothing_left(nx, "big1", "small1")
        finally:
            nx.cleanup()


# -- images in use ------------------------------------------------------------------------------


def test_image_rm_refused_while_a_container_uses_it(nx_dir: Nexcage, images: Images) -> None:
    nx = nx_dir
    nx.ids.add("user1")
    nx("create", "--image", IMAGE, "user1", "--", "true")
    assert nx.error("image", "rm", IMAGE) == (
        f"image {IMAGE} is in use by container(s) user1: not removed"
    )
    listed = json.loads(nx("image", "ls", "--format", "json").stdout)
    assert [i["ref"] for i in listed] == [IMAGE]
    nx("delete", "user1")
    out = nx("image", "rm", IMAGE).stdout.splitlines()
    assert out[0] == f"Untagged: {IMAGE}"
    released = sorted(line.split()[2] for line in out if line.startswith("Released layer: "))
    assert released == sorted(chain_ids(images.small_diff_ids))
    assert os.listdir(Path(nx.storage_root(), "layers")) == []


# -- two creates at once ------------------------------------------------------------------------


def test_two_creates_of_one_image_at_once(nx: Nexcage, tmp_path: Path) -> None:
    """Both work; each layer is unpacked once (the hook holds the first create inside the
    layer lock long enough for the second to be waiting on it)."""
    env = {**nx.env, HOOK_ENV: "layer-applied=sleep:0.5"}
    procs = []
    for cid in ("twin-a", "twin-b"):
        nx.ids.add(cid)
        log = os.fspath(tmp_path / f"{cid}.log")
        argv = nx.argv("--debug", "create", "--image", IMAGE, cid, "--", "cat", "/data/marker",
                       log=log)  # fmt: skip
        # The container's stdio is create's (runc semantics): a file we read after it ran.
        with open(tmp_path / f"{cid}.out", "w") as out:
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.DEVNULL)  # fmt: skip
        procs.append((cid, log, proc))
    unpacks = []
    for _cid, log, proc in procs:
        assert proc.wait(timeout=120) == 0, Path(log).read_text()
        with open(log) as f:
            lines = [json.loads(line) for line in f if line.startswith("{")]
        unpacks += [ln["msg"] for ln in lines if "unpacking layer" in ln["msg"]]
    assert len(unpacks) == 2, unpacks  # two layers, once each, whoever did it
    for cid, _, _ in procs:
        nx("start", cid)
        nx.wait_stopped(cid)
        assert (tmp_path / f"{cid}.out").read_text() == "from the image\n"
        nx("delete", cid)
    nothing_left(nx, "twin-a", "twin-b")


# -- create killed -------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["layer-applied", "rootfs-created"])
@pytest.mark.parametrize("cleanup", ["delete --force", "storage gc"])
def test_create_killed_leaves_nothing_uncleanable(nx: Nexcage, point: str, cleanup: str) -> None:
    nx.ids.add("crash")
    proc = nx("create", "--image", IMAGE, "crash", check=False, env={HOOK_ENV: f"{point}=kill"})
    assert proc.returncode == -9
    assert nx("list", "-q").stdout == ""  # no record: the container never existed
    assert nx.leftovers() != {} or point == "layer-applied"
    if cleanup == "delete --force":
        nx("delete", "--force", "crash")
        assert not Path(nx.root, "crash").exists()
        found = json.loads(nx("storage", "gc", "--format", "json").stdout)
        # the half layer is the only thing delete cannot know about
        assert [i["kind"] for i in found] == (["partial layer"] if point == "layer-applied" else [])
    else:
        found = json.loads(nx("storage", "gc", "--format", "json").stdout)
        kinds = sorted(i["kind"] for i in found)
        if point == "layer-applied":
            assert kinds == ["orphan bundle", "partial layer"]
        else:
            assert kinds == ["orphan bundle", "orphan rootfs"]
    nothing_left(nx)
    assert json.loads(nx("storage", "gc", "--format", "json").stdout) == []
    # the same id works again, from the layers that did get committed
    nx("create", "--image", IMAGE, "crash", "--", "true")
    nx("delete", "--force", "crash")
    nothing_left(nx, "crash")
