"""Unpacking layers onto a real filesystem: hostile layers, whiteouts, digests, odd tar streams,
and the result compared with `umoci unpack` for the same images.

Hostile layers are built here entry by entry (support.layers). For each one the unpack must fail
with a clear error, leave no rootfs (nor its temporary directory) behind and write nothing
outside it: a sentinel directory next to the target is checked before and after.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from nexcage.errors import ContentMismatch, LayerError
from nexcage.image.store import ImageStore
from nexcage.image.unpack import Layer, unpack_image, unpack_layers
from support import missing, require_tool
from support.layers import MT_GZIP, MT_TAR, MT_ZSTD, LayerTar, digest, gzip_blob, zstd_blob

pytestmark = [pytest.mark.integration]


def layer(tar: LayerTar | bytes, *, codec: str = "gzip", diff_id: str | None = "auto") -> Layer:
    raw = tar if isinstance(tar, bytes) else tar.data()
    blob, media_type = {
        "gzip": (lambda: gzip_blob(raw), MT_GZIP),
        "zstd": (lambda: zstd_blob(raw, frames=3), MT_ZSTD),
        "tar": (lambda: raw, MT_TAR),
        # pigz and concatenated streams: several gzip members, one tar
        "gzip-members": (lambda: b"".join(gzip_blob(raw[i : i + 700]) for i in
                                          range(0, len(raw), 700)), MT_GZIP),
    }[codec]  # fmt: skip
    data = blob()
    return Layer(
        digest(data),
        media_type,
        digest(raw) if diff_id == "auto" else diff_id,
        lambda: io.BytesIO(data),
        len(data),
    )


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """tmp/work (where rootfs goes) and tmp/sentinel (a file hostile layers aim at)."""
    (tmp_path / "work").mkdir()
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "file").write_text("untouched\n")
    return tmp_path


def snapshot(path: Path) -> dict[str, Any]:
    return {
        os.fspath(p.relative_to(path)): (p.lstat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(path.rglob("*"))
    }


def refused(work: Path, layers: list[Layer], match: str, **kw: Any) -> LayerError:
    before = snapshot(work / "sentinel")
    dest = work / "work" / "rootfs"
    with pytest.raises(LayerError, match=match) as info:
        unpack_layers(layers, os.fspath(dest), **kw)
    assert not dest.exists(), "a failed unpack must leave no rootfs"
    assert os.listdir(work / "work") == [], "nor its temporary directory"
    assert snapshot(work / "sentinel") == before, "nothing may be written outside the root"
    assert sorted(os.listdir(work)) == ["sentinel", "work"]
    return info.value


# -- hostile layers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../sentinel/pwned", "/abs/pwned", "./a/../../sentinel/pwned", "a/../../../x", ".."],
)
def test_names_leaving_the_root_are_refused(work: Path, name: str) -> None:
    err = refused(work, [layer(LayerTar().dir("a").file(name, b"pwned"))], "refused")
    assert err.entry == name


def test_write_through_symlink_to_root_is_refused(work: Path) -> None:
    rel = os.fspath(work / "sentinel").lstrip("/")
    tar = LayerTar().symlink("root", "/").file(f"root/{rel}/pwned", b"x")
    err = refused(work, [layer(tar)], "outside the root|leave the root")
    assert err.entry == f"root/{rel}/pwned"


def test_write_through_absolute_symlink_is_refused(work: Path) -> None:
    tar = LayerTar().symlink("evil", os.fspath(work / "sentinel")).file("evil/file", b"x")
    refused(work, [layer(tar)], "leave the root")


def test_write_through_relative_escaping_symlink_is_refused(work: Path) -> None:
    tar = LayerTar().dir("d").symlink("d/up", "../../..").file("d/up/sentinel/file", b"x")
    refused(work, [layer(tar)], "climbs out of the root")


def test_symlink_chain_out_is_refused_across_layers(work: Path) -> None:
    lower = LayerTar().symlink("a", "b").symlink("b", "../sentinel")
    upper = LayerTar().file("a/pwned", b"x")
    refused(work, [layer(lower), layer(upper)], "climbs out")


def test_directory_replaced_by_symlink_then_written_through(work: Path) -> None:
    tar = LayerTar().dir("d").symlink("d", os.fspath(work / "sentinel")).file("d/file", b"x")
    refused(work, [layer(tar)], "leave the root")


@pytest.mark.parametrize("target", ["../sentinel/file", "/etc/passwd", "esc/file", "missing"])
def test_hardlinks_outside_or_missing_are_refused(work: Path, target: str) -> None:
    tar = LayerTar().symlink("esc", os.fspath(work / "sentinel")).hardlink("hl", target)
    refused(work, [layer(tar)], "hardlink")


def test_hardlink_to_inner_symlink_links_the_symlink(work: Path) -> None:
    tar = LayerTar().symlink("lnk", "/etc/shadow").hardlink("hl", "lnk")
    dest = work / "work" / "rootfs"
    unpack_layers([layer(tar)], os.fspath(dest))
    assert os.readlink(dest / "hl") == "/etc/shadow"
    assert (dest / "hl").lstat().st_ino == (dest / "lnk").lstat().st_ino


@pytest.mark.parametrize("name", [".wh..", ".wh...", "a/.wh...", ".wh."])
def test_whiteouts_naming_dot_dot_or_nothing_are_refused(work: Path, name: str) -> None:
    lower = LayerTar().dir("a").file("a/f", b"1")
    refused(work, [layer(lower), layer(LayerTar().file(name))], "whiteout")


def test_whiteout_through_escaping_symlink_is_refused(work: Path) -> None:
    tar = LayerTar().symlink("s", os.fspath(work / "sentinel")).whiteout("s/file")
    refused(work, [layer(tar)], "leave the root")


@pytest.mark.parametrize("kind", ["file", "symlink", "hardlink"])
def test_root_entry_must_stay_a_directory(work: Path, kind: str) -> None:
    tar = LayerTar().file("f", b"1")
    {"file": lambda: tar.file("./", b"x"),
     "symlink": lambda: tar.symlink(".", "/"),
     "hardlink": lambda: tar.hardlink(".", "f")}[kind]()  # fmt: skip
    refused(work, [layer(tar)], "root may only be a directory|hardlink to the root")


def test_device_node_refused_without_root(work: Path) -> None:
    tar = LayerTar().dir("dev").device("dev/null")
    refused(work, [layer(tar)], "device nodes can only be made as root", as_root=False)


@pytest.mark.root
def test_device_node_made_as_root(work: Path) -> None:
    tar = LayerTar().dir("dev").device("dev/null", major=1, minor=3).fifo("dev/fifo")
    tar.device("dev/loop9", char=False, major=7, minor=9)
    dest = work / "work" / "rootfs"
    unpack_layers([layer(tar)], os.fspath(dest))
    st = (dest / "dev/null").lstat()
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert stat.S_ISBLK((dest / "dev/loop9").lstat().st_mode)
    assert stat.S_ISFIFO((dest / "dev/fifo").lstat().st_mode)


def test_entry_under_a_regular_file_is_refused(work: Path) -> None:
    refused(work, [layer(LayerTar().file("f", b"1").file("f/x", b"2"))], "not a directory")


def test_failure_in_a_later_layer_removes_everything(work: Path) -> None:
    good = LayerTar().dir("etc").file("etc/passwd", b"root:x:0:0::/:/bin/sh\n")
    refused(work, [layer(good), layer(LayerTar().file("../x"))], "leaves the root")


# -- whiteouts ---------------------------------------------------------------------------------


def tree(root: Path) -> dict[str, str]:
    """path -> "dir" | file content | "-> target"."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = os.fspath(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[rel] = "dir"
        else:
            out[rel] = p.read_text()
    return out


def unpacked(tmp_path: Path, *tars: LayerTar, **kw: Any) -> dict[str, str]:
    dest = tmp_path / "rootfs"
    unpack_layers([layer(t, **kw) for t in tars], os.fspath(dest))
    return tree(dest)


def base() -> LayerTar:
    return (
        LayerTar().dir("a").dir("a/b").file("a/b/c", b"c").file("a/d", b"d").file("e", b"e")
        .dir("f").file("f/g", b"g").dir("f/sub").file("f/sub/old", b"old")
        .dir("keep").file("keep/x", b"x").file("plain", b"p")
    )  # fmt: skip


def test_whiteouts_and_opaque_directories_across_layers(tmp_path: Path) -> None:
    upper = (
        LayerTar().whiteout("a/b").whiteout("e").opaque("f").file("f/h", b"h")
        .whiteout("nothing-here").file(".wh..wh.plnk", b"")
    )  # fmt: skip
    assert unpacked(tmp_path, base(), upper) == {
        "a": "dir", "a/d": "d", "f": "dir", "f/h": "h", "keep": "dir", "keep/x": "x",
        "plain": "p",
    }  # fmt: skip


def test_opaque_marker_after_the_layers_own_entries(tmp_path: Path) -> None:
    # layer.md: the opaque marker hides lower children whatever its position in the tar; the
    # layer's own children of the directory stay, including a re-declared lower directory
    # whose lower content is hidden all the same.
    upper = LayerTar().file("f/h", b"h").dir("f/sub").file("f/sub/new", b"new").opaque("f")
    result = unpacked(tmp_path, base(), upper)
    assert {k: v for k, v in result.items() if k.startswith("f")} == {
        "f": "dir", "f/h": "h", "f/sub": "dir", "f/sub/new": "new",
    }  # fmt: skip


def test_whiteout_does_not_hide_the_same_layers_entry(tmp_path: Path) -> None:
    upper = LayerTar().file("e", b"new e").whiteout("e").file("n", b"n").whiteout("n")
    result = unpacked(tmp_path, base(), upper)
    assert result["e"] == "new e" and result["n"] == "n"


def test_whiteout_before_recreate_in_same_layer(tmp_path: Path) -> None:
    upper = LayerTar().whiteout("keep").dir("keep").file("keep/y", b"y")
    result = unpacked(tmp_path, base(), upper)
    assert {k: v for k, v in result.items() if k.startswith("keep")} == {
        "keep": "dir", "keep/y": "y",
    }  # fmt: skip


def test_replacing_types_across_layers(tmp_path: Path) -> None:
    upper = LayerTar().file("a", b"now a file").dir("plain").file("plain/in", b"i")
    upper.symlink("keep", "a")
    result = unpacked(tmp_path, base(), upper)
    assert result["a"] == "now a file" and "a/d" not in result
    assert result["plain"] == "dir" and result["plain/in"] == "i"
    assert result["keep"] == "-> a"


def test_relative_symlink_inside_the_root_is_followed(tmp_path: Path) -> None:
    lower = LayerTar().dir("usr").dir("usr/lib").symlink("lib", "usr/lib")
    upper = LayerTar().file("lib/libx.so", b"x")
    assert unpacked(tmp_path, lower, upper)["usr/lib/libx.so"] == "x"


# -- streams and digests -----------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["gzip", "gzip-members", "zstd", "tar"])
def test_codecs(tmp_path: Path, codec: str) -> None:
    big = os.urandom(3 << 20)
    tar = LayerTar().file("big", big).file("small", b"s")
    dest = tmp_path / "rootfs"
    unpack_layers([layer(tar, codec=codec)], os.fspath(dest))
    assert (dest / "big").read_bytes() == big


def test_media_type_that_lies_about_compression(tmp_path: Path) -> None:
    raw = LayerTar().file("x", b"x").data()
    lying = Layer(digest(raw), MT_GZIP, digest(raw), lambda: io.BytesIO(raw), len(raw))
    unpack_layers([lying], os.fspath(tmp_path / "rootfs"))
    assert (tmp_path / "rootfs/x").read_text() == "x"


def test_diff_id_mismatch(work: Path) -> None:
    bad = layer(LayerTar().file("x", b"x"), diff_id="sha256:" + "0" * 64)
    dest = work / "work" / "rootfs"
    with pytest.raises(ContentMismatch, match="diff_id"):
        unpack_layers([bad], os.fspath(dest))
    assert not dest.exists() and os.listdir(work / "work") == []


def test_blob_digest_mismatch(tmp_path: Path) -> None:
    good = layer(LayerTar().file("x", b"x"))
    bad = Layer("sha256:" + "1" * 64, good.media_type, good.diff_id, good.open, good.size)
    with pytest.raises(ContentMismatch, match="digest"):
        unpack_layers([bad], os.fspath(tmp_path / "rootfs"))
    assert not (tmp_path / "rootfs").exists()


@pytest.mark.parametrize("padding", [True, False])
def test_layer_without_end_of_archive_blocks(tmp_path: Path, padding: bool) -> None:
    # Debian's umoci 0.4.7 writes these (CONTRACTS.md §3.7); Python's tarfile alone refuses.
    raw = (
        LayerTar()
        .dir("d")
        .file("d/x", b"hello")
        .file("d/y", b"last")
        .data(end=False, padding=padding)
    )
    assert len(raw) % 512 == (0 if padding else 4)
    dest = tmp_path / "rootfs"
    unpack_layers([layer(raw)], os.fspath(dest))
    assert (dest / "d/y").read_text() == "last"


def test_last_member_cut_short_is_refused(work: Path) -> None:
    raw = LayerTar().file("a", b"a").file("b", b"0123456789").data(end=False, padding=False)
    refused(work, [layer(raw[:-3])], "truncated|unexpected end")


def test_garbage_after_a_member_is_refused(work: Path) -> None:
    raw = LayerTar().file("a", b"a").data(end=False) + b"\xff" * 512
    refused(work, [layer(raw)], "corrupt tar header")


def test_empty_layers(tmp_path: Path) -> None:
    dest = tmp_path / "rootfs"
    unpack_layers([layer(b""), layer(LayerTar().data())], os.fspath(dest))
    assert os.listdir(dest) == []


def test_trailing_garbage_after_gzip_is_refused(work: Path) -> None:
    raw = LayerTar().file("a", b"a").data()
    blob = gzip_blob(raw) + b"\0" * 100
    bad = Layer(digest(blob), MT_GZIP, digest(raw), lambda: io.BytesIO(blob), len(blob))
    refused(work, [bad], "corrupt compressed stream")


def test_truncated_gzip_is_refused(work: Path) -> None:
    raw = LayerTar().file("a", os.urandom(5000)).data()
    blob = gzip_blob(raw)[:-100]
    bad = Layer(digest(blob), MT_GZIP, digest(raw), lambda: io.BytesIO(blob), len(blob))
    refused(work, [bad], "corrupt compressed stream|truncated")


def test_not_a_tar(work: Path) -> None:
    refused(work, [layer(b"this is not a tar archive" * 40)], "not a tar archive|corrupt tar")


def test_attributes(tmp_path: Path) -> None:
    tar = LayerTar().dir("d", mode=0o1777).file("d/suid", b"#!", mode=0o4755, uid=1000, gid=12)
    tar.file("ro", b"r", mode=0o400, mtime=1000000000, xattrs={"user.nexcage": "yes"})
    tar.dir("locked", mode=0o500).file("locked/inside", b"i")
    dest = tmp_path / "rootfs"
    unpack_layers([layer(tar)], os.fspath(dest))
    assert stat.S_IMODE((dest / "d").stat().st_mode) == 0o1777
    st = (dest / "d/suid").stat()
    assert stat.S_IMODE(st.st_mode) == 0o4755
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1000, 12)
    assert (dest / "ro").stat().st_mtime == 1000000000
    assert os.getxattr(dest / "ro", "user.nexcage") == b"yes"
    assert stat.S_IMODE((dest / "locked").stat().st_mode) == 0o500
    assert (dest / "locked/inside").read_text() == "i"


def test_deep_tree_is_removed_on_failure(work: Path) -> None:
    deep = "/".join(["d"] * 1500)
    tar = LayerTar().file(f"{deep}/x", b"x").file("../escape", b"")
    refused(work, [layer(tar)], "leaves the root")


# -- umoci comparison --------------------------------------------------------------------------


def fingerprint(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything the comparison looks at, per path: type, mode, owner, size, content hash,
    link target, device number, user xattrs; hardlinked paths share an inode group."""
    import hashlib

    inodes: dict[int, str] = {}
    out: dict[str, tuple[Any, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            extra: Any = None
            if stat.S_ISREG(st.st_mode):
                extra = hashlib.sha256(Path(p).read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            xattrs = ()
            if not stat.S_ISLNK(st.st_mode):
                xattrs = tuple(
                    sorted((k, os.getxattr(p, k)) for k in os.listxattr(p) if k.startswith("user."))
                )
            regular = stat.S_ISREG(st.st_mode)
            group = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 and regular else ""
            size = 0 if stat.S_ISDIR(st.st_mode) else st.st_size
            mtime = int(st.st_mtime) if regular else 0
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        size, extra, xattrs, group, mtime)  # fmt: skip
    return out


def populate(root: Path) -> None:
    """Awkward content for the first layer: modes, owners, links, long and odd names, xattrs."""
    (root / "srv").mkdir()
    (root / "srv/suid").write_text("#!/bin/sh\n")
    os.chmod(root / "srv/suid", 0o4755)
    (root / "srv/sgid").write_text("g")
    os.chmod(root / "srv/sgid", 0o2711)
    (root / "srv/none").write_text("")
    os.chmod(root / "srv/none", 0)
    (root / "srv/sticky").mkdir()
    os.chmod(root / "srv/sticky", 0o1777)
    (root / "srv/owned").write_text("mine")
    os.chown(root / "srv/owned", 12345, 54321)
    os.link(root / "srv/owned", root / "srv/owned-link")
    (root / "srv/abs-link").symlink_to("/etc/passwd")
    (root / "srv/dangling").symlink_to("../nowhere/at/all")
    long_dir = root / "srv" / ("long-" * 25)
    long_dir.mkdir()
    (long_dir / ("name-" * 30)).write_text("long")
    (root / "srv/ünïcödé and spaces").write_text("u")
    (root / "srv/big").write_bytes(os.urandom(300_000))
    os.mkfifo(root / "srv/fifo")
    os.mknod(root / "srv/zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    os.setxattr(root / "srv/owned", "user.note", b"kept")
    for sub in ("gone", "gone/deep", "replaced", "opq", "opq/lower"):
        (root / "srv" / sub).mkdir()
    (root / "srv/gone/deep/f").write_text("f")
    (root / "srv/replaced/f").write_text("f")
    (root / "srv/opq/lower/f").write_text("f")
    (root / "srv/opq/keep").write_text("lower")


def umoci(*args: str) -> None:
    proc = subprocess.run(["umoci", *args], capture_output=True, text=True, check=False,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, f"umoci {' '.join(args)}: {proc.stderr}"


@pytest.fixture(scope="module")
def umoci_layout(
    tmp_path_factory: pytest.TempPathFactory, busybox_rootfs: str
) -> tuple[Path, list[str]]:
    """An OCI layout built by umoci: busybox + awkward content (repack), changes with deletions
    (repack: whiteouts), an inserted dir (insert: a layer without end-of-archive blocks), an
    opaque insert and a whiteout insert. Tags: one per stage."""
    require_tool("umoci")
    if os.geteuid() != 0:
        missing("building the comparison images needs root (owners, device nodes)")
    work = tmp_path_factory.mktemp("umoci")
    layout = work / "layout"
    umoci("init", "--layout", os.fspath(layout))
    umoci("new", "--image", f"{layout}:v1")
    bundle = work / "bundle"
    umoci("unpack", "--image", f"{layout}:v1", os.fspath(bundle))
    shutil.copytree(busybox_rootfs, bundle / "rootfs", symlinks=True, dirs_exist_ok=True)
    populate(bundle / "rootfs")
    umoci("repack", "--image", f"{layout}:v1", os.fspath(bundle))
    rootfs = bundle / "rootfs"
    shutil.rmtree(rootfs / "srv/gone")
    (rootfs / "srv/replaced").rename(rootfs / "srv/replaced.old")
    (rootfs / "srv/replaced").write_text("now a file")
    (rootfs / "etc/hosts").unlink()
    (rootfs / "srv/new").write_text("new")
    umoci("repack", "--image", f"{layout}:v2", os.fspath(bundle))
    extra = work / "extra"
    (extra / "sub").mkdir(parents=True)
    (extra / "sub/file").write_text("inserted")
    umoci("insert", "--image", f"{layout}:v2", os.fspath(extra), "/opt/extra")
    umoci("insert", "--image", f"{layout}:v2", "--opaque", os.fspath(extra), "/srv/opq")
    umoci("insert", "--image", f"{layout}:v2", "--whiteout", "/srv/owned-link")
    return layout, ["v1", "v2"]


@pytest.mark.root
@pytest.mark.parametrize("tag", ["v1", "v2"])
def test_rootfs_equals_umoci_unpack(
    umoci_layout: tuple[Path, list[str]], tmp_path: Path, tag: str
) -> None:
    from nexcage.image.layout import import_path

    layout, _ = umoci_layout
    umoci("unpack", "--image", f"{layout}:{tag}", os.fspath(tmp_path / "umoci"))
    store = ImageStore(os.fspath(tmp_path / "store"))
    (record,) = [r for r in import_path(store, os.fspath(layout)) if r.ref.endswith(":" + tag)]
    unpack_image(store, record, os.fspath(tmp_path / "nexcage"))
    theirs = fingerprint(tmp_path / "umoci" / "rootfs")
    ours = fingerprint(tmp_path / "nexcage")
    assert len(ours) > 300  # busybox applets and all
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    differ = {k: (theirs[k], ours[k]) for k in theirs.keys() & ours.keys() if theirs[k] != ours[k]}
    assert (missing, extra, differ) == ([], [], {})
    if tag == "v2":
        assert "srv/gone" not in ours and "srv/owned-link" not in ours
        assert set(k for k in ours if k.startswith("srv/opq")) == {
            "srv/opq", "srv/opq/sub", "srv/opq/sub/file",
        }  # fmt: skip


@pytest.mark.root
def test_rootfs_equals_umoci_for_the_test_image(busybox_image: Any, tmp_path: Path) -> None:
    import tarfile

    from nexcage.image.layout import import_path

    layout = tmp_path / "layout"
    with tarfile.open(busybox_image.path) as tf:
        tf.extractall(layout, filter="data")
    store = ImageStore(os.fspath(tmp_path / "store"))
    (record,) = import_path(store, busybox_image.path)
    unpack_image(store, record, os.fspath(tmp_path / "nexcage"))
    umoci("unpack", "--image", f"{layout}:{busybox_image.ref_name}", os.fspath(tmp_path / "u"))
    assert fingerprint(tmp_path / "nexcage") == fingerprint(tmp_path / "u" / "rootfs")
