"""The hot path stays light: `nexcage state` imports no image, registry, storage or spec code and
none of the expensive stdlib modules (docs/DESIGN.md: each costs milliseconds per invocation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
FORBIDDEN_PREFIXES = ("nexcage.image", "nexcage.storage", "nexcage.spec", "nexcage.backends")
FORBIDDEN = {
    "json", "re", "enum", "typing", "dataclasses", "subprocess", "argparse", "logging",
    "tomllib", "datetime", "pathlib", "shutil", "tempfile", "inspect", "signal", "socket",
    "fcntl", "encodings.utf_8_sig",
}  # fmt: skip

PROBE = """
import sys
sys.path.insert(0, {src!r})
from nexcage.cli.main import main
code = main({argv!r})
sys.stderr.write("MODULES " + ",".join(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""


def _modules_after(argv: list[str], tmp_path: Path) -> tuple[int, set[str], str]:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE.format(src=os.fspath(SRC), argv=argv)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    return proc.returncode, set(line[len("MODULES ") :].split(",")), proc.stdout


def _write_record(root: Path, cid: str) -> None:
    (root / cid).mkdir(parents=True)
    record = {"id": cid, "backend": "crun", "bundle": "/b", "rootfs": "/b/rootfs",
              "created": "2026-01-01T00:00:00Z", "pid": 0}  # fmt: skip
    (root / cid / "state.json").write_text(json.dumps(record))


def _assert_light(modules: set[str]) -> None:
    heavy = sorted(m for m in modules if m in FORBIDDEN or m.startswith(FORBIDDEN_PREFIXES))
    assert heavy == [], f"the hot path imported {heavy}"


def test_state_imports_only_the_hot_path(tmp_path: Path) -> None:
    _write_record(tmp_path, "c1")
    code, modules, out = _modules_after(["--root", os.fspath(tmp_path), "state", "c1"], tmp_path)
    assert code == 0
    assert json.loads(out)["status"] == "stopped"
    _assert_light(modules)


def test_list_and_errors_stay_light(tmp_path: Path) -> None:
    _write_record(tmp_path, "c1")
    code, modules, _ = _modules_after(["--root", os.fspath(tmp_path), "list"], tmp_path)
    assert code == 0
    _assert_light(modules)
    code, modules, _ = _modules_after(["--root", os.fspath(tmp_path), "state", "nope"], tmp_path)
    assert code == 1
    _assert_light(modules)
