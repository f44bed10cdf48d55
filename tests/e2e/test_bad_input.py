"""Bad input gets a clear error and an exit code of 1 or 2, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NEXCAGE = os.fspath(REPO / ".venv" / "bin" / "nexcage")

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def nexcage(
    root: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NEXCAGE, "--root", root, *args], capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL, check=False, env=env,
    )  # fmt: skip


def leftovers(root: str) -> list[str]:
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if n != ".backends")


@pytest.fixture(params=["crun", "runc"])
def backend(request: pytest.FixtureRequest, hugetlb_cgroup_v1: list[str]) -> str:
    return str(request.param)


@pytest.mark.parametrize("bad_id", ["", "../x", "a/b", "x" * 1000, ".", "..", "a b"])
def test_invalid_ids(
    runtime_root: str, backend: str, busybox_bundle: Callable[..., str], bad_id: str
) -> None:
    bundle = busybox_bundle(["true"])
    proc = nexcage(runtime_root, "--runtime", backend, "create", "--bundle", bundle, bad_id)
    assert proc.returncode == 1
    assert "invalid container ID format" in proc.stderr
    assert leftovers(runtime_root) == []
    assert not os.path.exists(os.path.join(os.path.dirname(runtime_root), "x"))
    for verb in ("state", "start", "delete", "kill"):
        other = nexcage(runtime_root, verb, bad_id)
        assert other.returncode == 1 and "invalid container ID format" in other.stderr, verb


def test_missing_bundle(runtime_root: str, backend: str, tmp_path: Path) -> None:
    proc = nexcage(
        runtime_root, "--runtime", backend, "create", "--bundle", os.fspath(tmp_path / "nope"), "c1"
    )
    assert proc.returncode == 1 and "no such file or directory" in proc.stderr
    assert leftovers(runtime_root) == []


def test_missing_config(runtime_root: str, backend: str, tmp_path: Path) -> None:
    proc = nexcage(
        runtime_root, "--runtime", backend, "create", "--bundle", os.fspath(tmp_path), "c1"
    )
    assert proc.returncode == 1 and "config.json: no such file or directory" in proc.stderr
    assert leftovers(runtime_root) == []


def test_missing_rootfs(
    runtime_root: str, backend: str, busybox_bundle: Callable[..., str]
) -> None:
    bundle = busybox_bundle(["true"], extra={"root": {"path": "elsewhere"}})
    proc = nexcage(runtime_root, "--runtime", backend, "create", "--bundle", bundle, "c1")
    assert proc.returncode == 1 and "rootfs" in proc.stderr and "no such file" in proc.stderr
    assert leftovers(runtime_root) == []


@pytest.mark.parametrize("text", ["", "{", '{"ociVersion": "1.0.2",}', "[]", "null", "\xff"])
def test_malformed_config_json(
    runtime_root: str, backend: str, busybox_bundle: Callable[..., str], text: str
) -> None:
    bundle = busybox_bundle(["true"])
    Path(bundle, "config.json").write_bytes(text.encode("latin-1"))
    proc = nexcage(runtime_root, "--runtime", backend, "create", "--bundle", bundle, "c1")
    assert proc.returncode == 1, proc.stderr
    assert "config.json" in proc.stderr
    assert leftovers(runtime_root) == []


def test_every_spec_violation_is_listed(
    runtime_root: str, backend: str, busybox_bundle: Callable[..., str]
) -> None:
    bundle = busybox_bundle(["true"])
    config = json.loads(Path(bundle, "config.json").read_text())
    config["process"]["cwd"] = "relative/dir"
    config["process"]["args"] = "not-a-list"
    config["linux"]["namespaces"].append({"type": "bogus"})
    config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]
    Path(bundle, "config.json").write_text(json.dumps(config))
    proc = nexcage(runtime_root, "--runtime", backend, "create", "--bundle", bundle, "c1")
    assert proc.returncode == 1
    for path in ("process.args", "process.cwd", "linux.namespaces[5].type", "process.rlimits[0]"):
        assert path in proc.stderr, (path, proc.stderr)
    assert leftovers(runtime_root) == []


def test_unknown_runtime(runtime_root: str, busybox_bundle: Callable[..., str]) -> None:
    proc = nexcage(
        runtime_root, "--runtime", "nope", "create", "--bundle", busybox_bundle(["true"]), "c1"
    )
    assert proc.returncode == 1 and "'nope'" in proc.stderr and "--runtime" in proc.stderr
    assert leftovers(runtime_root) == []


def test_config_toml_with_unknown_key(runtime_root: str, tmp_path: Path) -> None:
    conf = tmp_path / "config.toml"
    conf.write_text('default_runtime = "crun"\nbogus_key = 1\n')
    proc = nexcage(runtime_root, "--config", os.fspath(conf), "list")
    assert proc.returncode == 1
    assert os.fspath(conf) in proc.stderr and "bogus_key" in proc.stderr


def test_bundle_config_given_as_nexcage_config(
    runtime_root: str, busybox_bundle: Callable[..., str]
) -> None:
    bundle = busybox_bundle(["true"])
    proc = nexcage(runtime_root, "--config", os.path.join(bundle, "config.json"), "list")
    assert proc.returncode == 1 and "ociVersion" in proc.stderr


def test_usage_errors(runtime_root: str) -> None:
    assert nexcage(runtime_root, "frobnicate").returncode == 2
    assert nexcage(runtime_root, "create", "--bogus", "c1").returncode == 2
    assert nexcage(runtime_root, "--log-format", "xml", "list").returncode == 2
    assert nexcage(runtime_root, "kill").returncode == 2
