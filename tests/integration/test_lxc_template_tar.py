"""The rootfs tarball of ``nexcage template --format lxc`` (ops/template.py ``_write_rootfs``):
what GNU tar, as lxc-local runs it, needs to rebuild the tree."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from nexcage.ops.template import _write_rootfs

pytestmark = [pytest.mark.integration, pytest.mark.root]  # GNU tar keeps setuid bits for root
DEPTH = 1100  # directory levels: deeper than Python's recursion limit


def test_entries_links_owners_and_a_deep_tree(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "busybox").write_bytes(b"\x7fELF...")
    (root / "bin" / "busybox").chmod(0o4755)
    os.link(root / "bin" / "busybox", root / "bin" / "hard")
    (root / "bin" / "sh").symlink_to("busybox")
    os.mkfifo(root / "fifo")
    levels = [os.fspath(root) + "/d" * i for i in range(1, DEPTH + 1)]
    for level in levels:  # os.makedirs and shutil.rmtree recurse: walk the levels by hand
        os.mkdir(level)
    Path(levels[-1], "leaf").write_text("bottom")
    out = tmp_path / "rootfs.tar.xz"
    try:
        _write_rootfs(os.fspath(out), os.fspath(root))
    finally:
        os.unlink(os.path.join(levels[-1], "leaf"))
        for level in reversed(levels):
            os.rmdir(level)
    with tarfile.open(out) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        by_name = {m.name: m for m in members}
        assert names[:4] == [".", "./bin", "./bin/busybox", "./bin/hard"]
        assert names.index("./d") < names.index("./d/d")  # parents before children
        assert by_name["./bin/busybox"].mode & 0o7777 == 0o4755
        assert by_name["./bin/hard"].islnk() and by_name["./bin/hard"].linkname == "./bin/busybox"
        assert by_name["./bin/sh"].issym() and by_name["./bin/sh"].linkname == "busybox"
        assert by_name["./fifo"].isfifo()
        assert all(m.uname == "" and m.gname == "" for m in members)
        leaf = "." + "/d" * DEPTH + "/leaf"
        extracted = tar.extractfile(by_name[leaf])
        assert extracted is not None and extracted.read() == b"bottom"
    # As lxc-local unpacks it (GNU tar); the deep part was checked above.
    dest = tmp_path / "dest"
    dest.mkdir()
    subprocess.run(["tar", "--anchored", "--exclude=./d", "--numeric-owner", "-xpJf", out,
                    "-C", dest], check=True)  # fmt: skip
    assert (dest / "bin" / "hard").stat().st_ino == (dest / "bin" / "busybox").stat().st_ino
    assert (dest / "bin" / "busybox").stat().st_mode & 0o7777 == 0o4755
    assert os.readlink(dest / "bin" / "sh") == "busybox"
    assert not (dest / "d").exists()
