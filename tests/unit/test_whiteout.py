"""Whiteout names and their application (image-spec layer.md, CONTRACTS.md §3.7)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nexcage.errors import UnsafePath
from nexcage.image import whiteout
from nexcage.image.rootfs import Root, remove_path
from nexcage.image.unpack import clean_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("file", (whiteout.NONE, "")),
        (".wh.file", (whiteout.WHITEOUT, "file")),
        (".wh..hidden", (whiteout.WHITEOUT, ".hidden")),
        (".wh..wh..opq", (whiteout.OPAQUE_DIR, "")),
        (".wh..wh.plnk", (whiteout.META, "")),
        (".wh..wh.aufs", (whiteout.META, "")),
        (".wh", (whiteout.NONE, "")),
        ("x.wh.y", (whiteout.NONE, "")),
    ],
)
def test_classify(name: str, expected: tuple[str, str]) -> None:
    assert whiteout.classify(name) == expected


@pytest.mark.parametrize("name", [".wh.", ".wh..", ".wh..."])
def test_invalid_whiteouts(name: str) -> None:
    kind, reason = whiteout.classify(name)
    assert kind == whiteout.INVALID and "whiteout" in reason


def test_changes_record_ancestors() -> None:
    changes = whiteout.Changes()
    changes.add("a/b/c")
    assert {"a", "a/b", "a/b/c"} <= changes.paths
    assert "a/b/d" not in changes and "" not in changes


@pytest.mark.parametrize(
    ("name", "clean"),
    [("./a/b/", "a/b"), ("a//b", "a/b"), (".", ""), ("./", ""), ("a/../b", "b"), ("", "")],
)
def test_clean_name(name: str, clean: str) -> None:
    assert clean_name(name) == clean


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "..", "a\0b"])
def test_clean_name_refuses(name: str) -> None:
    with pytest.raises(ValueError):
        clean_name(name)


def make(root: Path, *paths: str) -> None:
    for p in paths:
        target = root / p
        if p.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(p)


def listing(root: Path) -> list[str]:
    return sorted(os.fspath(p.relative_to(root)) for p in root.rglob("*"))


def test_whiteout_removes_lower_tree_only(tmp_path: Path) -> None:
    make(tmp_path, "d/sub/x", "d/y", "mine")
    changes = whiteout.Changes()
    changes.add("mine")
    with Root(os.fspath(tmp_path), clamp=False) as root:
        whiteout.apply_whiteout(root, "d", "sub", changes)
        whiteout.apply_whiteout(root, "", "mine", changes)  # the layer's own: stays
        whiteout.apply_whiteout(root, "absent/dir", "x", changes)  # nothing to do
    assert listing(tmp_path) == ["d", "d/y", "mine"]


def test_opaque_keeps_the_layers_own_children(tmp_path: Path) -> None:
    make(tmp_path, "o/lower", "o/dir/lower", "o/dir/new", "o/new", "other")
    changes = whiteout.Changes()
    changes.add("o/new")
    changes.add("o/dir/new")
    with Root(os.fspath(tmp_path), clamp=False) as root:
        whiteout.apply_opaque(root, "o", changes)
    assert listing(tmp_path) == ["o", "o/dir", "o/dir/new", "o/new", "other"]


def test_whiteout_does_not_follow_symlinks_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    make(outside, "keep")
    rootdir = tmp_path / "root"
    rootdir.mkdir()
    (rootdir / "link").symlink_to(outside)
    with Root(os.fspath(rootdir), clamp=False) as root:
        with pytest.raises(UnsafePath):
            whiteout.apply_whiteout(root, "link", "keep", whiteout.Changes())
        whiteout.apply_whiteout(root, "", "link", whiteout.Changes())  # the link itself goes
    assert (outside / "keep").exists() and not (rootdir / "link").exists()


def test_clamped_root_resolves_like_the_container(tmp_path: Path) -> None:
    make(tmp_path, "etc/real/passwd")
    (tmp_path / "etc/passwd").symlink_to("/etc/real/passwd")
    (tmp_path / "up").symlink_to("../../../..")
    with Root(os.fspath(tmp_path), clamp=True) as root:
        assert root.read_file("etc/passwd", 100) == b"etc/real/passwd"
        assert root.read_file("up/etc/real/passwd", 100) == b"etc/real/passwd"
        assert root.read_file("missing/file", 100) is None
        root.makedirs("/up/var/lib/x")
    assert (tmp_path / "var/lib/x").is_dir()


def test_remove_path_handles_deep_trees(tmp_path: Path) -> None:
    deep = tmp_path / "t"
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.mkdir("t", dir_fd=fd)
        cur = os.open("t", os.O_RDONLY, dir_fd=fd)
        for _ in range(2000):  # deeper than PATH_MAX and the recursion limit
            os.mkdir("d", dir_fd=cur)
            nxt = os.open("d", os.O_RDONLY, dir_fd=cur)
            os.close(cur)
            cur = nxt
        os.close(cur)
    finally:
        os.close(fd)
    remove_path(os.fspath(deep))
    assert not deep.exists()
