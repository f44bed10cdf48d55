"""The overlay storage driver on real overlay mounts, and the overlay form of unpack.

Each test gets its own driver root in a temporary directory; whatever is still mounted below it
is unmounted when the test ends (support.storage.overlay_root).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexcage.errors import StorageError
from nexcage.image.rootfs import Root
from nexcage.image.unpack import apply_layer, unpack_layers
from nexcage.storage.overlay import OverlayDriver
from support import mounts_under, run_cmd
from support.layers import LayerTar
from support.storage import (
    check_crash_before_commit,
    check_layer_lifecycle,
    check_runs_under_crun,
    check_same_tree_as_flat,
    check_snapshot_rollback,
    make_layer,
    median_ms,
    overlay_root,
    three_layers,
    unpack_onto,
)
from support.trees import diff, tree_facts

pytestmark = [pytest.mark.integration, pytest.mark.root]


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[OverlayDriver]:
    with overlay_root(tmp_path) as root:
        drv = OverlayDriver(os.fspath(root / "storage"))
        assert drv.usable() is None
        yield drv


def is_mounted(path: str) -> bool:
    return os.path.realpath(path) in mounts_under(path)


# -- the overlay form of unpack ----------------------------------------------------------------


def overlay_unpack(tmp_path: Path, tar: LayerTar) -> Path:
    dest = tmp_path / "diff"
    dest.mkdir()
    layer = make_layer(tar)
    with Root(os.fspath(dest), clamp=False) as root, layer.open() as blob:
        apply_layer(root, blob, layer, as_root=True, overlay=True)
    return dest


def is_whiteout(path: Path) -> bool:
    st = path.lstat()
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)


def opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque") == b"y"
    except OSError:
        return False


def test_overlay_unpack_keeps_whiteouts_as_markers(tmp_path: Path) -> None:
    tar = (
        LayerTar().dir("d").whiteout("d/gone").whiteout("top-gone").opaque("o").file("o/new", b"n")
        .file("mine", b"mine").whiteout("mine")  # a whiteout never hides its own layer's entry
        .whiteout("implicit/parent/x")
    )  # fmt: skip
    diff_dir = overlay_unpack(tmp_path, tar)
    assert is_whiteout(diff_dir / "d/gone") and is_whiteout(diff_dir / "top-gone")
    assert opaque(diff_dir / "o") and (diff_dir / "o/new").read_bytes() == b"n"
    assert not opaque(diff_dir / "d")
    assert (diff_dir / "mine").read_bytes() == b"mine"
    assert is_whiteout(diff_dir / "implicit/parent/x")
    assert not any(p.name.startswith(".wh.") for p in diff_dir.rglob("*"))


def test_overlay_unpack_whiteout_then_recreate_is_opaque(tmp_path: Path) -> None:
    # Flat form deletes the lower directory and makes a new one: only the layer's content shows.
    # In overlay form that is an opaque directory, also when only a child names the directory.
    tar = (
        LayerTar().whiteout("d").dir("d").file("d/y", b"y")
        .whiteout("e").file("e/inner", b"i")
        .whiteout("f").file("f", b"now a file")
        .whiteout("g").opaque("g")
    )  # fmt: skip
    diff_dir = overlay_unpack(tmp_path, tar)
    assert opaque(diff_dir / "d") and (diff_dir / "d/y").read_bytes() == b"y"
    assert opaque(diff_dir / "e") and (diff_dir / "e/inner").read_bytes() == b"i"
    assert (diff_dir / "f").read_bytes() == b"now a file"
    assert opaque(diff_dir / "g")


def test_overlay_unpack_drops_overlay_xattrs_from_the_layer(tmp_path: Path) -> None:
    # overlayfs would obey them (redirect_always_follow): a layer must not carry its own.
    tar = (
        LayerTar()
        .dir("d")
        .file("d/f", b"x", xattrs={"trusted.overlay.redirect": "/etc", "user.kept": "yes"})
    )
    diff_dir = overlay_unpack(tmp_path, tar)
    keys = os.listxattr(diff_dir / "d/f")
    assert "user.kept" in keys and not [k for k in keys if k.startswith("trusted.overlay.")]


def test_flat_unpack_is_unchanged_by_overlay_mode(tmp_path: Path) -> None:
    dest = tmp_path / "flat"
    unpack_layers(three_layers(), os.fspath(dest))
    assert not [p for p in dest.rglob("*") if p.is_char_device() and is_whiteout(p)]


# -- the driver --------------------------------------------------------------------------------


def test_layer_and_container_lifecycle(driver: OverlayDriver) -> None:
    check_layer_lifecycle(driver)
    root = Path(driver.root)
    assert sorted(os.listdir(root / "layers")) == []
    assert os.listdir(root / "l") in ([], ["_empty"]), "no dangling short links"
    assert os.listdir(root / "containers") == []


def test_crash_between_prepare_and_commit(driver: OverlayDriver) -> None:
    check_crash_before_commit(driver, "overlay", "OverlayDriver", driver.root)
    assert [n for n in os.listdir(Path(driver.root) / "layers") if n.startswith(".")] == []


def test_same_tree_as_flat_unpack(driver: OverlayDriver, tmp_path: Path) -> None:
    check_same_tree_as_flat(driver, tmp_path)


def test_snapshot_change_rollback(driver: OverlayDriver) -> None:
    check_snapshot_rollback(driver)


def test_rollback_refused_while_busy(driver: OverlayDriver) -> None:
    top = unpack_onto(driver, three_layers())
    rootfs = driver.create_rootfs("busy", top)
    driver.snapshot("busy", "s1")
    fd = os.open(os.path.join(rootfs, "etc/only"), os.O_RDONLY)
    try:
        with pytest.raises(StorageError, match="busy"):
            driver.rollback("busy", "s1")
    finally:
        os.close(fd)
    assert is_mounted(rootfs)
    driver.rollback("busy", "s1")
    assert is_mounted(rootfs)
    driver.remove_rootfs("busy")


def test_rootfs_path_mounts_again_after_reboot(driver: OverlayDriver) -> None:
    top = unpack_onto(driver, three_layers())
    rootfs = driver.create_rootfs("reboot", top)
    Path(rootfs, "kept").write_text("in the upper dir\n")
    before = tree_facts(rootfs)
    run_cmd(["umount", rootfs])  # what a reboot does to it
    assert not is_mounted(rootfs)
    assert driver.rootfs_path("reboot") == rootfs
    assert is_mounted(rootfs)
    assert diff(before, tree_facts(rootfs)) == []
    driver.remove_rootfs("reboot")
    assert not os.path.exists(Path(driver.root) / "containers" / "reboot")


def test_interrupted_rollback_is_finished_on_next_access(driver: OverlayDriver) -> None:
    top = unpack_onto(driver, three_layers())
    rootfs = driver.create_rootfs("crash", top)
    Path(rootfs, "state").write_text("at snapshot\n")
    driver.snapshot("crash", "s1")
    want = tree_facts(rootfs)
    Path(rootfs, "state").write_text("later\n")
    # Die right after the new upper is complete and the old one moved away.
    home = Path(driver.root) / "containers" / "crash"
    run_cmd(["umount", rootfs])
    snapshot_upper = os.fspath(home / "snapshots/s1/upper")
    run_cmd(["cp", "-a", snapshot_upper, os.fspath(home / ".rollback-ready")])
    os.rename(home / "upper", home / ".rollback-old")
    assert driver.rootfs_path("crash") == rootfs
    assert diff(want, tree_facts(rootfs)) == []
    assert sorted(os.listdir(home)) == ["merged", "parent", "snapshots", "upper", "work"]
    driver.remove_rootfs("crash")


def test_many_layers(driver: OverlayDriver, tmp_path: Path) -> None:
    """150 layers (beyond what absolute lowerdir paths fit in a page), with whiteouts."""
    tars = []
    for i in range(150):
        tar = LayerTar().dir("files").file(f"files/{i:03}", f"layer {i}\n".encode())
        if i % 10 == 9:
            tar.whiteout(f"files/{i - 5:03}")
        tars.append(make_layer(tar))
    top = unpack_onto(driver, tars)
    rootfs = driver.create_rootfs("tall", top)
    flat = tmp_path / "flat"
    unpack_layers(tars, os.fspath(flat))
    assert diff(tree_facts(os.fspath(flat)), tree_facts(rootfs)) == []
    assert len(os.listdir(Path(rootfs, "files"))) == 150 - 15
    driver.remove_rootfs("tall")


def test_too_many_layers_is_a_clear_error(driver: OverlayDriver) -> None:
    top = unpack_onto(driver, [make_layer(LayerTar().file("x", b"x"))])
    assert top is not None
    # More lowers than overlayfs stacks: a stored chain says so (as after 600 real layers).
    layer_dir = Path(driver.root) / "layers" / top.removeprefix("sha256:")
    (layer_dir / "lower").write_text(":".join(["ABCDEFGHIJ"] * 600) + "\n")
    with pytest.raises(StorageError, match="at most 500"):
        driver.create_rootfs("too-tall", top)
    assert driver.containers() == []


def test_opaque_root_cuts_the_chain(driver: OverlayDriver, tmp_path: Path) -> None:
    # overlayfs ignores the opaque marker on a layer's root: the driver drops the lowers instead.
    layers = [
        make_layer(LayerTar().file("old", b"o")),
        make_layer(LayerTar().opaque("").file("new", b"n")),
    ]
    rootfs = driver.create_rootfs("opaque-root", unpack_onto(driver, layers))
    flat = tmp_path / "flat"
    unpack_layers(layers, os.fspath(flat))
    assert sorted(os.listdir(rootfs)) == sorted(os.listdir(flat)) == ["new"]
    driver.remove_rootfs("opaque-root")


def test_runs_under_crun(
    driver: OverlayDriver,
    runtime_binary: str,
    runtime_root: str,
    tmp_path: Path,
    busybox_rootfs: str,
) -> None:
    check_runs_under_crun(driver, runtime_binary, runtime_root, tmp_path, busybox_rootfs)


def test_create_rootfs_is_a_mount_not_a_copy(driver: OverlayDriver) -> None:
    big = LayerTar().dir("big")
    for i in range(200):
        big.file(f"big/{i}", os.urandom(50_000))
    top = unpack_onto(driver, [make_layer(big), *three_layers()])
    samples = []
    for i in range(5):
        start = time.perf_counter()
        driver.create_rootfs(f"t{i}", top)
        samples.append(time.perf_counter() - start)
    assert median_ms(samples) < 500  # generous: a mount, never a 10 MB copy
    for i in range(5):
        driver.remove_rootfs(f"t{i}")


def test_usable_refuses_a_root_on_overlayfs(driver: OverlayDriver) -> None:
    rootfs = driver.create_rootfs("host", None)
    nested = OverlayDriver(os.path.join(rootfs, "storage"))
    problem = nested.usable()
    assert problem is not None
    assert not os.path.exists(os.path.join(rootfs, "storage", ".probed"))
    driver.remove_rootfs("host")
