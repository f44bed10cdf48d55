"""Routing, update, features, spec and the log contract through the CLI (real crun and runc)."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NEXCAGE = os.fspath(REPO / ".venv" / "bin" / "nexcage")

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def run(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run nexcage with stderr in a file (a container created by the verb inherits the runtime's
    stdio, as with runc: a pipe would stay open as long as it lives). Verbs that start a
    container must pass ``stdout=subprocess.DEVNULL``."""
    if "create" in argv or "-d" in argv:
        kw.setdefault("stdout", subprocess.DEVNULL)
    with tempfile.TemporaryFile("w+") as err:
        stdin = kw.pop("stdin", subprocess.DEVNULL)
        stdout = kw.pop("stdout", subprocess.PIPE)
        proc = subprocess.run(
            [NEXCAGE, *argv],
            text=True,
            timeout=60,
            check=False,
            stdin=stdin,
            stdout=stdout,
            stderr=err,
            **kw,
        )
        err.seek(0)
        proc.stderr = err.read()
    return proc


@pytest.fixture
def root(runtime_root: str, hugetlb_cgroup_v1: list[str]) -> Iterator[str]:
    yield runtime_root
    listed = run("--root", runtime_root, "list", "-q").stdout.split()
    for cid in listed:
        run("--root", runtime_root, "delete", "--force", cid)


def backend_of(root: str, cid: str) -> str:
    owners = [b for b in ("crun", "runc") if os.path.isdir(os.path.join(root, ".backends", b, cid))]
    assert len(owners) == 1, owners
    return owners[0]


def test_routing_order(root: str, busybox_bundle: Callable[..., str], tmp_path: Path) -> None:
    conf = tmp_path / "config.toml"
    conf.write_text(
        'default_runtime = "crun"\n[[routing]]\npattern = "kube-*"\nruntime = "runc"\n'
        '[[routing]]\npattern = "^re-[0-9]+$"\nruntime = "runc"\n'
    )
    plain = busybox_bundle(["sleep", "60"])
    annotated = busybox_bundle(["sleep", "60"], annotations={"org.nexcage.runtime": "runc"})
    cases = [
        ("other", plain, [], "crun"),  # default_runtime
        ("kube-a", plain, [], "runc"),  # glob rule
        ("re-12", plain, [], "runc"),  # regex rule
        ("re-x", plain, [], "crun"),  # regex does not match
        ("ann", annotated, [], "runc"),  # annotation outranks default
        ("kube-b", annotated, ["--runtime", "crun"], "crun"),  # the flag outranks everything
    ]
    for cid, bundle, flags, expected in cases:
        proc = run(
            "--root", root, "--config", os.fspath(conf), *flags, "create", "--bundle", bundle, cid
        )
        assert proc.returncode == 0, (cid, proc.stderr)
        assert backend_of(root, cid) == expected, cid
    # later verbs go to the recorded backend even when the config changes
    conf.write_text('default_runtime = "runc"\n')
    assert run("--root", root, "--config", os.fspath(conf), "start", "other").returncode == 0
    state = json.loads(run("--root", root, "state", "other").stdout)
    assert state["status"] == "running"


@pytest.mark.parametrize("backend", ["crun", "runc"])
def test_update_pids_limit(root: str, busybox_bundle: Callable[..., str], backend: str) -> None:
    bundle = busybox_bundle(["sleep", "60"])
    assert (
        run("--root", root, "--runtime", backend, "run", "-d", "--bundle", bundle, "u1").returncode
        == 0
    )
    pid = json.loads(run("--root", root, "state", "u1").stdout)["pid"]

    def update(resources: str) -> subprocess.CompletedProcess[str]:
        return run("--root", root, "update", "--resources", "-", "u1", stdin=None, input=resources)

    proc = update('{"pids": {"limit": 42}}')
    assert proc.returncode == 0, proc.stderr
    cgroup = next(
        line.split(":", 2)[2]
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        if line.split(":")[1] == "pids"
    )
    assert Path(f"/sys/fs/cgroup/pids{cgroup}/pids.max").read_text().strip() == "42"
    bad = update('{"pids": {"limit": "x"}}')
    assert bad.returncode == 1 and "pids.limit" in bad.stderr
    assert Path(f"/sys/fs/cgroup/pids{cgroup}/pids.max").read_text().strip() == "42"  # unchanged
    flag = run("--root", root, "update", "--pids-limit", "7", "u1")
    assert flag.returncode == 0, flag.stderr
    assert Path(f"/sys/fs/cgroup/pids{cgroup}/pids.max").read_text().strip() == "7"


def test_features_document(root: str) -> None:
    doc = json.loads(run("features").stdout)
    assert doc["ociVersionMin"] == "1.0.0" and doc["ociVersionMax"] == "1.3.0"
    assert "createRuntime" in doc["hooks"] and "rbind" in doc["mountOptions"]
    assert set(doc["linux"]["namespaces"]) >= {"pid", "mount", "network", "user", "cgroup"}
    assert doc["annotations"]["org.nexcage.version"]


def test_version_output() -> None:
    out = run("--version").stdout
    assert out.startswith("nexcage version ")  # go-runc's parser needs this prefix
    assert "spec: 1.3.0" in out


@pytest.mark.parametrize("backend", ["crun", "runc"])
def test_spec_writes_a_runnable_config(root: str, tmp_path: Path, backend: str) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    assert run("spec", "--bundle", os.fspath(bundle)).returncode == 0
    config = json.loads((bundle / "config.json").read_text())
    assert config["ociVersion"] == "1.3.0" and config["process"]["terminal"] is True
    again = run("spec", "--bundle", os.fspath(bundle))
    assert again.returncode == 1 and "exists" in again.stderr
    # make it runnable without a terminal, with busybox as rootfs
    from support.busybox import make_rootfs

    make_rootfs(bundle / "rootfs")
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "echo from-spec"]
    (bundle / "config.json").write_text(json.dumps(config))
    proc = run("--root", root, "--runtime", backend, "run", "--bundle", os.fspath(bundle), "sp1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from-spec\n"
    rootless = tmp_path / "rootless"
    rootless.mkdir()
    assert run("spec", "--rootless", "--bundle", os.fspath(rootless)).returncode == 0
    doc = json.loads((rootless / "config.json").read_text())
    assert any(ns["type"] == "user" for ns in doc["linux"]["namespaces"])


def test_json_log_last_error_is_the_cause(
    root: str, busybox_bundle: Callable[..., str], tmp_path: Path
) -> None:
    log = tmp_path / "log.json"
    bundle = busybox_bundle(["true"], extra={"root": {"path": "missing"}})
    proc = run(
        "--root",
        root,
        "--log",
        os.fspath(log),
        "--log-format",
        "json",
        "create",
        "--bundle",
        bundle,
        "c1",
    )
    assert proc.returncode == 1
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert all(set(line) == {"level", "msg", "time"} for line in lines)
    errors = [line for line in lines if line["level"] == "error"]
    assert "rootfs" in errors[-1]["msg"] and "no such file or directory" in errors[-1]["msg"]
    # runc: with a log file, the error also goes to stderr
    assert "no such file or directory" in proc.stderr


def test_backend_error_reaches_the_log(
    root: str, busybox_bundle: Callable[..., str], tmp_path: Path
) -> None:
    """A failure inside the backend (here: a missing executable) is the last error line."""
    log = tmp_path / "log.json"
    bundle = busybox_bundle(["/no/such/binary"])
    argv = ["--root", root, "--runtime", "crun", "--log", os.fspath(log), "--log-format", "json"]
    created = run(*argv, "create", "--bundle", bundle, "c2")
    started = run(*argv, "start", "c2") if created.returncode == 0 else created
    assert started.returncode == 1
    errors = [json.loads(line) for line in log.read_text().splitlines()]
    last = [e for e in errors if e["level"] == "error"][-1]
    assert "no such file or directory" in last["msg"].lower() or "not found" in last["msg"].lower()
    run("--root", root, "delete", "--force", "c2")
