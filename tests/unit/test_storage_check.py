"""`nexcage check` reports the storage driver containers from images get, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexcage import settings
from nexcage.ops import check
from nexcage.storage import select

CRUN = ("crun", "/usr/bin/crun", "1.8.1")


def _conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> settings.Settings:
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", str(tmp_path / "absent.toml"))
    return settings.load({"--root": str(tmp_path / "run"), "--data-root": str(tmp_path / "d")}, env)


def _storage(results: list[check.CheckResult]) -> check.CheckResult:
    return next(r for r in results if r.name == "storage driver")


def test_auto_says_which_and_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select, "fs_type", lambda path: "ext4")
    conf = _conf(tmp_path, monkeypatch)
    found = _storage(check.run_checks(conf, [CRUN]))
    assert found.status == check.OK
    assert found.detail.startswith("auto -> ")
    assert "not btrfs: " in found.detail and f"root {tmp_path}/d/storage/" in found.detail


def test_configured_btrfs_on_ext4_fails_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(select, "fs_type", lambda path: "ext4")
    conf = _conf(tmp_path, monkeypatch, NEXCAGE_STORAGE_DRIVER="btrfs")
    results = check.run_checks(conf, [CRUN])
    found = _storage(results)
    assert found.status == check.FAIL
    assert (
        "is on ext4, not on btrfs" in found.detail
        and "(env:NEXCAGE_STORAGE_DRIVER)" in found.detail
    )
    assert found.fix is not None and "nexcage storage init --driver btrfs" in found.fix
    assert check.overall(results) == check.FAIL


def test_configured_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = _conf(tmp_path, monkeypatch, NEXCAGE_STORAGE_DRIVER="dir")
    found = _storage(check.run_checks(conf, [CRUN]))
    assert (found.status, found.detail) == (
        check.OK,
        f"dir: configured (storage.driver); root {tmp_path}/d/storage/dir",
    )
