"""`storage.tree.copy_tree`: a faithful copy on the local filesystem (no root needed here; owners
and device nodes are in tests/integration/test_storage_dir.py)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from nexcage.image.rootfs import remove_path
from nexcage.storage import tree
from support.trees import diff, tree_facts


def _populate(root: Path) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(os.urandom(70_000))
    (root / "bin" / "tool").chmod(0o4755)  # setuid survives
    (root / "bin" / "alias").hardlink_to(root / "bin" / "tool")
    (root / "etc" / "tool-link").hardlink_to(root / "bin" / "tool")  # across directories
    (root / "bin" / "sh").symlink_to("busybox")  # dangling: never followed
    (root / "abs").symlink_to("/etc/shadow")  # absolute: copied as is, never followed
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    os.mkfifo(root / "tmp" / "fifo", 0o640)
    (root / "empty").write_bytes(b"")
    locked = root / "locked"
    locked.mkdir()
    (locked / "inside").write_text("x")
    locked.chmod(0o500)  # read-only directory: its content is copied before its mode is set
    try:
        os.setxattr(root / "etc" / "passwd", "user.note", b"kept")
    except OSError as exc:
        if exc.errno != errno.EOPNOTSUPP:
            raise
    for path in [root / "bin" / "tool", root / "etc"]:
        os.utime(path, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))


def test_copy_is_exact(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _populate(src)
    stats = tree.copy_tree(os.fspath(src), os.fspath(tmp_path / "dst"))
    assert diff(tree_facts(os.fspath(src)), tree_facts(os.fspath(tmp_path / "dst"))) == []
    assert stats.files == 4  # passwd, tool, empty, inside (hardlinks are linked, not copied)
    dst = tmp_path / "dst"
    assert os.stat(dst / "bin" / "tool").st_ino == os.stat(dst / "etc" / "tool-link").st_ino
    assert os.stat(dst / "bin" / "tool").st_ino != os.stat(src / "bin" / "tool").st_ino


def test_destination_must_not_exist(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    with pytest.raises(FileExistsError):
        tree.copy_tree(os.fspath(tmp_path / "src"), os.fspath(tmp_path / "dst"))


def test_deep_tree_without_recursion_or_long_paths(tmp_path: Path) -> None:
    """3000 levels: the path is ~6000 bytes (> PATH_MAX) and recursion would hit Python's
    limit; the walk goes by fds and ``..``. (Removed here, iteratively: pytest's own clean-up of
    old temporary directories is a recursive shutil.rmtree.)"""
    try:
        _deep_copy(tmp_path)
    finally:
        for name in ("src", "dst"):
            remove_path(os.fspath(tmp_path / name))


def _deep_copy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    fd = os.open(src, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(3000):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"bottom")
        os.close(leaf)
    finally:
        os.close(fd)
    tree.copy_tree(os.fspath(src), os.fspath(tmp_path / "dst"))
    fd = os.open(tmp_path / "dst", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(3000):
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        leaf = os.open("leaf", os.O_RDONLY, dir_fd=fd)
        assert os.read(leaf, 10) == b"bottom"
        os.close(leaf)
    finally:
        os.close(fd)


def test_source_symlink_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    with pytest.raises(OSError):
        tree.copy_tree(os.fspath(tmp_path / "link"), os.fspath(tmp_path / "dst"))


def test_disk_usage_counts_each_inode_once(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(os.urandom(1 << 20))
    (tmp_path / "b").hardlink_to(tmp_path / "a")
    used = tree.disk_usage(os.fspath(tmp_path))
    assert (1 << 20) <= used < (1 << 20) + (64 << 10)
    assert tree.disk_usage(os.fspath(tmp_path / "missing")) == 0
