"""`nexcage check` and `nexcage config show` on the real host."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NEXCAGE = os.fspath(REPO / ".venv" / "bin" / "nexcage")

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def nexcage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEXCAGE, *args], capture_output=True, text=True, timeout=60, check=False)


def test_check_passes_on_a_prepared_host(
    runtime_root: str, hugetlb_cgroup_v1: list[str], tmp_path: Path
) -> None:
    proc = nexcage(
        "--root",
        runtime_root,
        "--data-root",
        os.fspath(tmp_path / "data"),
        "check",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stdout
    report = json.loads(proc.stdout)
    by_name = {c["name"]: c for c in report["checks"]}
    assert (
        by_name["backend crun"]["status"] == "OK" and "1.8.1" in by_name["backend crun"]["detail"]
    )
    assert by_name["backend runc"]["status"] == "OK"
    assert by_name["crun hybrid cgroups"]["status"] == "OK"
    assert report["status"] == "OK"


def test_check_fails_when_the_default_backend_is_missing(runtime_root: str, tmp_path: Path) -> None:
    conf = tmp_path / "config.toml"
    conf.write_text('default_runtime = "crun"\n[runtimes.crun]\npath = "/nonexistent/crun"\n')
    proc = nexcage(
        "--root",
        runtime_root,
        "--data-root",
        os.fspath(tmp_path / "d"),
        "--config",
        os.fspath(conf),
        "check",
    )
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout


def test_config_show_names_sources(tmp_path: Path) -> None:
    conf = tmp_path / "config.toml"
    conf.write_text('default_runtime = "runc"\n')
    env = {**os.environ, "NEXCAGE_DATA_ROOT": os.fspath(tmp_path / "data")}
    argv = [NEXCAGE, "--config", os.fspath(conf), "--root", "/tmp/x-root"]
    proc = subprocess.run(
        [*argv, "config", "show", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)["settings"]
    assert shown["default_runtime"] == {"value": "runc", "source": f"file:{conf}"}
    assert shown["data_root"]["source"] == "env:NEXCAGE_DATA_ROOT"
    assert shown["state_root"] == {"value": "/tmp/x-root", "source": "flag:--root"}
