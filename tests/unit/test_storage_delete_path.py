"""`delete` of a container made by `create --image` releases its storage rootfs without loading
the image store, the unpacker or the layer code (and without json/typing/tarfile): delete is a
runtime verb (docs/DESIGN.md, hot path). Runs the CLI in a fresh interpreter, as
test_hot_path.py does, on a dir-driver rootfs made here; the backend is /bin/true."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nexcage.storage.dir import DirDriver

SRC = Path(__file__).resolve().parents[2] / "src"
PROBE = """
import sys
sys.path.insert(0, {src!r})
from nexcage.cli.main import main
code = main({argv!r})
sys.stderr.write("MODULES " + ",".join(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""
HEAVY = ("json", "typing", "tarfile", "zlib", "hashlib", "nexcage.image.store",
         "nexcage.image.unpack", "nexcage.storage.layers", "nexcage.ops.image_bundle")  # fmt: skip


def test_delete_releases_the_rootfs_on_a_light_path(tmp_path: Path) -> None:
    data, state = tmp_path / "data", tmp_path / "run"
    driver = DirDriver(os.fspath(data / "storage" / "dir"))
    rootfs = driver.create_rootfs("img1", None)
    bundle = data / "containers" / "img1"
    bundle.mkdir(parents=True)
    (bundle / ".nexcage-owner").write_text(f"{state}\n")
    marker = {"driver": "dir", "dataRoot": os.fspath(data), "dataset": "", "id": "img1"}
    (bundle / ".nexcage-storage").write_text(json.dumps(marker))
    (state / "img1").mkdir(parents=True)
    record = {
        "id": "img1", "backend": "crun", "bundle": os.fspath(bundle), "rootfs": rootfs,
        "created": "2026-01-01T00:00:00Z", "pid": 0, "owned": [os.fspath(bundle)],
    }  # fmt: skip
    (state / "img1" / "state.json").write_text(json.dumps(record))
    argv = ["--root", os.fspath(state), "--data-root", os.fspath(data), "delete", "img1"]
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE.format(src=os.fspath(SRC), argv=argv)],
        capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "NEXCAGE_CRUN_PATH": "/bin/true"},  # the backend's delete: a no-op
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    modules = set(line[len("MODULES ") :].split(","))
    assert sorted(m for m in HEAVY if m in modules) == []
    assert "nexcage.storage.dir" in modules  # it did go through the driver
    assert driver.containers() == [] and not bundle.exists() and not (state / "img1").exists()
