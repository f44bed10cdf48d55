"""Images onto storage drivers (`storage.layers`, `ops.storage`): the rootfs a driver gives a
container equals the flat unpack of the image, layers are shared between images and unpacked once
even by concurrent creates, a full disk during an unpack leaves the store consistent, and garbage
collection removes exactly what nothing uses.

Drivers: ``dir`` and ``overlay`` here (overlay mounts: root). btrfs and zfs get the same checks in
Storage A's per-driver tests.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexcage import settings as settings_mod
from nexcage.errors import ImageInUse, LayerError, StorageError
from nexcage.image.store import ImageRecord, ImageStore
from nexcage.image.unpack import unpack_image
from nexcage.ops import images as ops_images
from nexcage.ops import storage as ops_storage
from nexcage.ops.context import Context
from nexcage.storage import layers, select
from nexcage.storage.base import StorageDriver
from support import run_cmd
from support.layered import store_image
from support.layers import LayerTar
from support.trees import diff, tree_facts

pytestmark = [pytest.mark.integration, pytest.mark.root]
SRC = Path(__file__).resolve().parents[2] / "src"
TESTS = Path(__file__).resolve().parents[1]


def base_layer() -> bytes:
    t = LayerTar().dir("etc").file("etc/os-release", b"ID=test\n").dir("usr/lib", mode=0o755)
    t.file("usr/lib/libc.so", random.Random(1).randbytes(30_000), mode=0o755)
    t.dir("var/cache/apt", mode=0o755).file("var/cache/apt/pkgcache.bin", b"cache")
    t.dir("opt/app").file("opt/app/old", b"old").file("opt/app/keep", b"keep")
    t.symlink("lib", "usr/lib").hardlink("usr/lib/libc.so.6", "usr/lib/libc.so")
    t.dir("tmp", mode=0o1777).fifo("run-fifo").device("null", major=1, minor=3)
    return t.data()


def app_layer() -> bytes:
    t = LayerTar().whiteout("var/cache/apt").opaque("opt/app").file("opt/app/new", b"new")
    t.file("etc/os-release", b"ID=app\n", mode=0o600, uid=1000, gid=1000)
    t.file("etc/conf", b"x", xattrs={"user.origin": "app"})
    return t.data()


def top_layer() -> bytes:
    return LayerTar().whiteout("etc/conf").file("srv/data", random.Random(2).randbytes(5000)).data()


def other_layer() -> bytes:
    return LayerTar().file("other", b"other image").data()


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_root: Path) -> ImageStore:
    return ImageStore(os.fspath(data_root))


@pytest.fixture(params=["dir", "overlay"])
def driver(request: pytest.FixtureRequest, data_root: Path) -> Iterator[StorageDriver]:
    drv = select.make(request.param, os.fspath(data_root))
    problem = drv.usable()
    assert problem is None, problem
    yield drv
    for cid in drv.containers():
        drv.remove_rootfs(cid)


def locks(data_root: Path) -> str:
    return ops_storage.lock_dir(os.fspath(data_root))


def test_rootfs_equals_the_flat_unpack(
    driver: StorageDriver, store: ImageStore, data_root: Path, tmp_path: Path
) -> None:
    record = store_image(store, "test/app:1", [base_layer(), app_layer(), top_layer()])
    top = layers.ensure_image(driver, store, record, locks(data_root))
    assert top == layers.chain_ids(record.diff_ids)[-1]
    assert driver.layers() == sorted(layers.chain_ids(record.diff_ids))
    rootfs = driver.create_rootfs("c1", top)
    unpack_image(store, record, os.fspath(tmp_path / "flat"))
    # overlayfs shows a directory's mtime from the upper: modes, owners, contents, links and
    # xattrs must agree, times of files too.
    expected = tree_facts(os.fspath(tmp_path / "flat"))
    assert diff(expected, tree_facts(rootfs)) == []
    assert not os.path.exists(os.path.join(rootfs, "var/cache/apt"))
    assert sorted(os.listdir(os.path.join(rootfs, "opt/app"))) == ["new"]


def test_layers_are_shared_between_images(
    driver: StorageDriver, store: ImageStore, data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpacked: list[str] = []
    real = layers.unpack_layer

    def counting(drv: StorageDriver, chain: str, *args: object) -> None:
        unpacked.append(chain)
        real(drv, chain, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(layers, "unpack_layer", counting)
    one = store_image(store, "test/one:1", [base_layer(), app_layer()])
    two = store_image(store, "test/two:1", [base_layer(), app_layer(), other_layer()])
    layers.ensure_image(driver, store, one, locks(data_root))
    layers.ensure_image(driver, store, two, locks(data_root))
    layers.ensure_image(driver, store, one, locks(data_root))  # all there: nothing to do
    chains_two = layers.chain_ids(two.diff_ids)
    assert unpacked == chains_two  # the shared two once, then only the new one
    assert driver.layers() == sorted(chains_two)


# -- concurrent creates --------------------------------------------------------------------------

WORKER = """
import json, os, sys
sys.path[:0] = [{src!r}, {tests!r}]
from nexcage.image.store import ImageStore
from nexcage.storage import layers, select
driver = select.make({name!r}, {data!r})
store = ImageStore({data!r})
record = store.resolve("test/app:1")
done = []
real = layers.unpack_layer
def counting(drv, chain, *args):
    done.append(chain)
    real(drv, chain, *args)
layers.unpack_layer = counting
print("ready", flush=True)
sys.stdin.readline()
top = layers.ensure_image(driver, store, record, {locks!r})
rootfs = driver.create_rootfs({cid!r}, top)
print(json.dumps({{"unpacked": done, "rootfs": rootfs}}), flush=True)
"""


def test_concurrent_creates_unpack_each_layer_once(
    driver: StorageDriver, store: ImageStore, data_root: Path
) -> None:
    record = store_image(store, "test/app:1", [base_layer(), app_layer(), top_layer()])
    env = {**os.environ, layers.HOOK_ENV: "layer-applied=sleep:0.3"}  # widen the race
    procs = []
    for cid in ("c1", "c2"):
        code = WORKER.format(
            src=os.fspath(SRC), tests=os.fspath(TESTS), name=driver.name,
            data=os.fspath(data_root), locks=locks(data_root), cid=cid,
        )  # fmt: skip
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        procs.append(proc)
    for proc in procs:  # both start unpacking at the same moment
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    unpacked = [chain for r in results for chain in r["unpacked"]]
    assert sorted(unpacked) == sorted(layers.chain_ids(record.diff_ids))  # once each, in total
    assert diff(tree_facts(results[0]["rootfs"]), tree_facts(results[1]["rootfs"])) == []


# -- a full disk -------------------------------------------------------------------------------


@pytest.fixture
def small_data_root(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs as the data root (grown by the test with a remount)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    run_cmd(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs", os.fspath(mnt)])
    try:
        yield mnt
    finally:
        subprocess.run(["umount", os.fspath(mnt)], check=False, timeout=60)


@pytest.mark.parametrize("name", ["dir", "overlay"])
def test_full_disk_during_unpack_leaves_the_store_consistent(
    name: str, small_data_root: Path, tmp_path: Path
) -> None:
    store = ImageStore(os.fspath(small_data_root))
    big = LayerTar().file("zeros", bytes(40 << 20)).data()  # 40 MiB, ~40 KiB compressed
    record = store_image(store, "test/big:1", [base_layer(), big])
    chains = layers.chain_ids(record.diff_ids)
    driver = select.make(name, os.fspath(small_data_root))
    lock_dir = locks(small_data_root)
    with pytest.raises((LayerError, StorageError, OSError)) as info:
        layers.ensure_image(driver, store, record, lock_dir)
    assert "No space left on device" in str(info.value)
    assert driver.has_layer(chains[0]) and not driver.has_layer(chains[1])
    assert driver.layers() == [chains[0]]
    layer_dir = Path(driver.root, "layers")
    assert [n for n in os.listdir(layer_dir) if n.startswith(".")] == []  # no half layer
    assert [n for n in os.listdir(lock_dir) if n.endswith(".pending")] == []
    # room again: the same create works, reusing the base layer
    run_cmd(["mount", "-o", "remount,size=128m", os.fspath(small_data_root)])
    top = layers.ensure_image(driver, store, record, lock_dir)
    rootfs = driver.create_rootfs("c1", top)
    unpack_image(store, record, os.fspath(tmp_path / "flat"))
    assert diff(tree_facts(os.fspath(tmp_path / "flat")), tree_facts(rootfs)) == []
    driver.remove_rootfs("c1")


# -- garbage collection, image rm ----------------------------------------------------------------


@pytest.fixture
def ctx(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Context:
    monkeypatch.setattr(settings_mod, "DEFAULT_CONFIG", os.fspath(tmp_path / "absent.toml"))
    conf = settings_mod.load(
        {"--root": os.fspath(tmp_path / "run"), "--data-root": os.fspath(data_root)},
        {"NEXCAGE_STORAGE_DRIVER": "dir"},
    )
    return Context(conf)


def bundle_for(ctx: Context, cid: str, *, owner: str | None = None) -> Path:
    """What `create --image` makes in the data root for ``cid`` (bundle dir, markers)."""
    bundle = Path(ctx.settings.data_root, "containers", cid)
    bundle.mkdir(parents=True)
    (bundle / ".nexcage-owner").write_text((owner or ctx.store.root) + "\n")
    marker = {"driver": "dir", "dataRoot": ctx.settings.data_root, "dataset": "", "id": cid}
    (bundle / ".nexcage-storage").write_text(json.dumps(marker))
    return bundle


def test_gc_removes_only_orphans(ctx: Context, store: ImageStore, data_root: Path) -> None:
    driver = ops_storage.open_driver(ctx.settings)
    one = store_image(store, "test/one:1", [base_layer(), app_layer()])
    two = store_image(store, "test/two:1", [base_layer(), other_layer()])
    for record in (one, two):
        layers.ensure_image(driver, store, record, locks(data_root))
    top_one, top_two = layers.top_chain(one), layers.top_chain(two)
    # a live container (record saved), one being created (its state lock held), two dead ones
    for cid in ("live", "creating", "dead", "ghost"):
        driver.create_rootfs(cid, top_one)
    for cid in ("live", "creating", "dead"):
        bundle_for(ctx, cid)
    state = Path(ctx.store.root)
    (state / "live").mkdir(parents=True)
    (state / "live" / "state.json").write_text("{}")
    (state / "creating").mkdir()
    (state / "dead").mkdir()  # an aborted create: no record, lock free
    # a crash while unpacking: a half layer and its journal
    half = "sha256:" + "e" * 64
    driver.prepare_layer(half, None)
    Path(locks(data_root), f"dir-{half[7:]}.pending").touch()
    ops_images.remove(ctx, ["test/two:1"])  # its own layer goes at once
    assert not driver.has_layer(top_two)
    import fcntl

    fd = os.open(state / "creating" / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        planned = [(i.kind, i.what) for i in ops_storage.gc(ctx, dry_run=True)]
        assert sorted(driver.containers()) == ["creating", "dead", "ghost", "live"]
        found = [(i.kind, i.what) for i in ops_storage.gc(ctx)]
    finally:
        os.close(fd)
    assert found == planned
    assert sorted(found) == sorted(
        [
            ("partial layer", f"dir {half}"),
            ("orphan rootfs", "dir dead"),
            ("orphan bundle", f"{data_root}/containers/dead"),
            ("orphan rootfs", "dir ghost"),
        ]
    )
    assert sorted(driver.containers()) == ["creating", "live"]
    assert sorted(os.listdir(data_root / "containers")) == ["creating", "live"]
    assert driver.layers() == sorted(layers.chain_ids(one.diff_ids))
    assert os.listdir(locks(data_root)) == []  # lock files go under the exclusive lease
    # the create that held its lock died without saving a record: now it is an orphan too
    found = [(i.kind, i.what) for i in ops_storage.gc(ctx)]
    assert found == [
        ("orphan rootfs", "dir creating"),
        ("orphan bundle", f"{data_root}/containers/creating"),
    ]
    assert ops_storage.gc(ctx) == []


def test_image_rm_refuses_an_image_in_use(ctx: Context, store: ImageStore, data_root: Path) -> None:
    driver = ops_storage.open_driver(ctx.settings)
    record: ImageRecord = store_image(store, "test/one:1", [base_layer(), app_layer()])
    top = layers.ensure_image(driver, store, record, locks(data_root))
    driver.create_rootfs("web", top)
    with pytest.raises(ImageInUse, match=r"image docker.io/test/one:1 is in use by .* web"):
        ops_images.remove(ctx, ["test/one:1"])
    assert store.lookup("docker.io/test/one:1") is not None
    # a second name for the same image: untagging one of them is fine
    store.tag("test/alias:1", record.manifest_digest)
    untagged, released = ops_images.remove(ctx, ["test/one:1"])
    assert [ref for ref, _ in untagged] == ["test/one:1"] and released == []
    with pytest.raises(ImageInUse):
        ops_images.remove(ctx, ["test/alias:1"])
    driver.remove_rootfs("web")
    _, released = ops_images.remove(ctx, ["test/alias:1"])
    assert sorted(chain for _, chain in released) == sorted(layers.chain_ids(record.diff_ids))
    assert driver.layers() == []


def test_prune_releases_layers_of_untagged_images(
    ctx: Context, store: ImageStore, data_root: Path
) -> None:
    driver = ops_storage.open_driver(ctx.settings)
    record = store_image(store, "test/one:1", [base_layer()])
    layers.ensure_image(driver, store, record, locks(data_root))
    os.unlink(store._record_path("docker.io/test/one:1"))  # untagged behind our back
    blobs, released = ops_images.prune(ctx)
    assert len(blobs) == 3 and released == [("dir", layers.chain_ids(record.diff_ids)[0])]
    assert driver.layers() == []


def test_prepare_rootfs_writes_the_marker_and_replaces_a_leftover(
    ctx: Context, store: ImageStore
) -> None:
    record = store_image(store, "test/one:1", [base_layer(), app_layer()])
    driver = ops_storage.open_driver(ctx.settings)
    driver.create_rootfs("c1", None)  # what a crashed create of the same id left
    bundle = Path(ctx.settings.data_root, "containers", "c1")
    bundle.mkdir(parents=True)
    rootfs = ops_storage.prepare_rootfs(ctx.settings, record, "c1", os.fspath(bundle))
    assert Path(rootfs, "opt/app/new").read_text() == "new"
    assert driver.parent_of("c1") == layers.top_chain(record)
    marker = json.loads((bundle / ".nexcage-storage").read_text())
    assert marker == {"driver": "dir", "dataRoot": ctx.settings.data_root, "dataset": "",
                      "id": "c1"}  # fmt: skip
    found = ops_storage.driver_of(os.fspath(bundle))
    assert found is not None and (found[0].name, found[1]) == ("dir", "c1")
    ops_storage.release_rootfs(os.fspath(bundle))
    ops_storage.release_rootfs(os.fspath(bundle))  # gone already: fine
    assert driver.containers() == []
