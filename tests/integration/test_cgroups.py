"""nexcage.host.cgroups against fixture trees and against the real /sys/fs/cgroup.

The real-host tests need root and a v1 freezer (hybrid or v1 layout); they create cgroups named
``nexcage-test-<pid>`` and remove them, and end only the processes they started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexcage.host import cgroups

STRICT = os.environ.get("NEXCAGE_TEST_STRICT") == "1"


def need(condition: bool, reason: str) -> None:
    """Skip when a prerequisite is missing; fail instead under NEXCAGE_TEST_STRICT=1."""
    if not condition:
        if STRICT:
            pytest.fail(f"missing prerequisite: {reason}")
        pytest.skip(reason)


# --- fixture trees -----------------------------------------------------------------------------


class FakeHost:
    def __init__(self, base: Path) -> None:
        self.proc = base / "proc"
        self.root = base / "sys-fs-cgroup"
        (self.proc / "self").mkdir(parents=True)
        self.root.mkdir()
        self.lines: list[str] = []

    def mount(self, point: str, fstype: str, opts: str = "rw") -> Path:
        path = self.root / point if point else self.root
        path.mkdir(parents=True, exist_ok=True)
        n = len(self.lines) + 30
        escaped = str(path).replace(" ", "\\040")
        self.lines.append(f"{n} 1 0:{n} / {escaped} rw,relatime - {fstype} {fstype} {opts}")
        (self.proc / "self" / "mountinfo").write_text("\n".join(self.lines) + "\n")
        return path

    def hybrid(self, unified_controllers: str) -> None:
        self.mount("", "tmpfs", "rw,mode=755")
        for c in ("cpu", "memory", "freezer", "pids"):
            self.mount(c, "cgroup", f"rw,{c}")
        unified = self.mount("unified", "cgroup2")
        (unified / "cgroup.controllers").write_text(unified_controllers)

    def process(self, pid: int, cgroup: str) -> None:
        (self.proc / str(pid)).mkdir(exist_ok=True)
        (self.proc / str(pid) / "cgroup").write_text(cgroup)

    def args(self) -> dict[str, str]:
        return {"proc": str(self.proc), "root": str(self.root)}


@pytest.fixture
def fake(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path / "host with space")


def test_layout_hybrid_with_hugetlb_on_cgroup2(fake: FakeHost) -> None:
    fake.hybrid("hugetlb\n")
    assert cgroups.layout(**fake.args()) == cgroups.HYBRID
    assert cgroups.v2_controllers(**fake.args()) == ["hugetlb"]
    assert not cgroups.hugetlb_v1_mounted(str(fake.proc))
    problem = cgroups.crun_hybrid_problem(**fake.args())
    assert problem is not None
    assert cgroups.CRUN_HYBRID_ERROR in problem
    fix = f"mkdir -p {fake.root}/hugetlb && mount -t cgroup -o hugetlb cgroup {fake.root}/hugetlb"
    assert problem.endswith(fix)


def test_hybrid_fix_for_the_real_root() -> None:
    assert cgroups.hybrid_fix(["hugetlb"]) == (
        "mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup "
        "/sys/fs/cgroup/hugetlb"
    )


def test_hybrid_after_the_fix(fake: FakeHost) -> None:
    fake.hybrid("")  # the kernel prints nothing at all when cgroup2 has no controller
    fake.mount("hugetlb", "cgroup", "rw,hugetlb")
    assert cgroups.layout(**fake.args()) == cgroups.HYBRID
    assert cgroups.v2_controllers(**fake.args()) == []
    assert cgroups.hugetlb_v1_mounted(str(fake.proc))
    assert cgroups.crun_hybrid_problem(**fake.args()) is None


def test_layout_v2(fake: FakeHost) -> None:
    fake.mount("", "cgroup2")
    (fake.root / "cgroup.controllers").write_text("cpu memory pids hugetlb\n")
    assert cgroups.layout(**fake.args()) == cgroups.V2
    assert cgroups.v2_controllers(**fake.args()) == ["cpu", "memory", "pids", "hugetlb"]
    assert cgroups.crun_hybrid_problem(**fake.args()) is None


def test_layout_v1_and_none(fake: FakeHost) -> None:
    assert cgroups.layout(**fake.args()) == cgroups.NONE
    fake.mount("", "tmpfs")
    fake.mount("freezer", "cgroup", "rw,freezer")
    assert cgroups.layout(**fake.args()) == cgroups.V1
    assert cgroups.v2_controllers(**fake.args()) == []
    assert cgroups.crun_hybrid_problem(**fake.args()) is None


def test_overmount_wins(fake: FakeHost) -> None:
    fake.mount("", "tmpfs")
    fake.mount("", "cgroup2")
    assert cgroups.layout(**fake.args()) == cgroups.V2


def test_is_frozen_v1_fixture(fake: FakeHost) -> None:
    fake.hybrid("")
    cg = fake.root / "freezer" / "ctr"
    cg.mkdir()
    fake.process(42, "6:freezer:/ctr\n4:memory:/ctr\n0::/\n")
    for state, frozen in (("THAWED\n", False), ("FREEZING\n", True), ("FROZEN\n", True)):
        (cg / "freezer.state").write_text(state)
        assert cgroups.is_frozen(42, **fake.args()) is frozen
    assert cgroups.is_frozen(43, **fake.args()) is False  # gone


def test_is_frozen_v2_fixture(fake: FakeHost) -> None:
    fake.mount("", "cgroup2")
    cg = fake.root / "a" / "ctr"
    cg.mkdir(parents=True)
    fake.process(7, "0::/a/ctr\n")
    (cg / "cgroup.freeze").write_text("0\n")
    (cg / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    assert not cgroups.is_frozen(7, **fake.args())
    (cg / "cgroup.events").write_text("populated 1\nfrozen 1\n")  # an ancestor froze it
    assert cgroups.is_frozen(7, **fake.args())
    (cg / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    (cg / "cgroup.freeze").write_text("1\n")  # asked, not yet done
    assert cgroups.is_frozen(7, **fake.args())


def test_pids_of_fixture(fake: FakeHost) -> None:
    fake.mount("", "cgroup2")
    cg = fake.root / "ctr"
    (cg / "sub").mkdir(parents=True)
    (cg / "cgroup.procs").write_text("10\n11\n")
    (cg / "sub" / "cgroup.procs").write_text("12\n")
    (fake.root / "cgroup.procs").write_text("1\n2\n")
    fake.process(10, "0::/ctr\n")
    fake.process(1, "0::/\n")
    assert cgroups.pids_of(10, **fake.args()) == [10, 11, 12]
    assert cgroups.cgroup_dir(10, **fake.args()) == str(cg)
    assert cgroups.pids_of(1, **fake.args()) == [1, 2]  # root: not the whole tree
    assert cgroups.pids_of(99, **fake.args()) == []


# --- the real host -----------------------------------------------------------------------------

FREEZER = Path("/sys/fs/cgroup/freezer")


def _fstype(path: str) -> str:
    out = subprocess.run(
        ["stat", "-f", "-c", "%T", path], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


@pytest.mark.integration
def test_layout_matches_statfs() -> None:
    top = _fstype("/sys/fs/cgroup")
    expected = {"cgroup2fs": cgroups.V2}.get(top)
    if top == "tmpfs":
        has_unified = os.path.isdir("/sys/fs/cgroup/unified")
        unified = _fstype("/sys/fs/cgroup/unified") if has_unified else ""
        expected = cgroups.HYBRID if unified == "cgroup2fs" else cgroups.V1
    assert cgroups.layout() == expected


@pytest.mark.integration
def test_v2_controllers_and_hugetlb_mount_match_the_host() -> None:
    unified = cgroups.unified_root()
    need(unified is not None, "no cgroup2 hierarchy")
    assert unified is not None
    assert cgroups.v2_controllers() == Path(unified, "cgroup.controllers").read_text().split()
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    hugetlb = any(
        line.split(" - ")[1].split()[0] == "cgroup" and "hugetlb" in line.split()[-1].split(",")
        for line in mountinfo
    )
    assert cgroups.hugetlb_v1_mounted() is hugetlb


def _bundle(base: Path) -> Path:
    bundle = base / "bundle"
    bin_dir = bundle / "rootfs" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy("/bin/busybox", bin_dir / "busybox")
    (bin_dir / "true").symlink_to("busybox")
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


@pytest.mark.integration
@pytest.mark.root
def test_crun_hybrid_problem_predicts_crun(tmp_path: Path) -> None:
    """crun fails with its hybrid message exactly when crun_hybrid_problem() says it will."""
    need(shutil.which("crun") is not None, "crun not installed")
    need(os.path.exists("/bin/busybox"), "busybox-static not installed")
    need(os.geteuid() == 0, "needs root")
    problem = cgroups.crun_hybrid_problem()
    bundle = _bundle(tmp_path)
    state = str(tmp_path / "state")
    cid = f"nexcage-test-{os.getpid()}"
    try:
        out = subprocess.run(
            ["crun", "--root", state, "run", "-b", str(bundle), cid],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        subprocess.run(
            ["crun", "--root", state, "delete", "-f", cid], capture_output=True, check=False
        )
    if problem is None:
        assert out.returncode == 0, out.stderr
        assert cgroups.CRUN_HYBRID_ERROR not in out.stderr
    else:
        assert out.returncode != 0
        assert cgroups.CRUN_HYBRID_ERROR in out.stderr


def _own_cgroup(controller: str) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if (controller == "" and ctrls == "") or controller in ctrls.split(","):
            return path
    raise AssertionError(f"no {controller!r} line in /proc/self/cgroup")


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "120"])
    try:
        yield proc
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # ours, by pid
        proc.wait(timeout=10)


def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.integration
@pytest.mark.root
def test_is_frozen_and_pids_of_with_a_real_v1_freezer(sleeper: subprocess.Popen[bytes]) -> None:
    need(os.geteuid() == 0, "needs root")
    need(cgroups.v1_mounted("freezer"), "no v1 freezer hierarchy")
    need(FREEZER.is_dir(), "v1 freezer not at /sys/fs/cgroup/freezer")
    pid = sleeper.pid
    home = FREEZER / _own_cgroup("freezer").lstrip("/")
    cg = FREEZER / f"nexcage-test-{os.getpid()}"
    cg.mkdir()
    try:
        (cg / "cgroup.procs").write_text(str(pid))
        assert cgroups.cgroup_dir(pid) == str(cg)
        assert cgroups.pids_of(pid) == [pid]
        assert not cgroups.is_frozen(pid)
        (cg / "freezer.state").write_text("FROZEN")
        assert cgroups.is_frozen(pid)  # FREEZING or FROZEN
        _wait_for(lambda: (cg / "freezer.state").read_text().strip() == "FROZEN")
        assert cgroups.is_frozen(pid)
        (cg / "freezer.state").write_text("THAWED")
        assert not cgroups.is_frozen(pid)
    finally:
        (cg / "freezer.state").write_text("THAWED")
        (home / "cgroup.procs").write_text(str(pid))
        cg.rmdir()
    assert not cg.exists()
    assert not cgroups.is_frozen(pid)


@pytest.mark.integration
@pytest.mark.root
def test_is_frozen_with_a_real_cgroup2_freeze(sleeper: subprocess.Popen[bytes]) -> None:
    need(os.geteuid() == 0, "needs root")
    unified = cgroups.unified_root()
    need(unified is not None, "no cgroup2 hierarchy")
    assert unified is not None
    base = Path(unified)
    pid = sleeper.pid
    home = base / _own_cgroup("").lstrip("/")
    cg = base / f"nexcage-test-{os.getpid()}"
    cg.mkdir()
    try:
        need((cg / "cgroup.freeze").exists(), "kernel without cgroup2 freezer")
        (cg / "cgroup.procs").write_text(str(pid))
        assert not cgroups.is_frozen(pid)
        (cg / "cgroup.freeze").write_text("1")
        _wait_for(lambda: "frozen 1" in (cg / "cgroup.events").read_text())
        assert cgroups.is_frozen(pid)
        (cg / "cgroup.freeze").write_text("0")
        _wait_for(lambda: "frozen 0" in (cg / "cgroup.events").read_text())
        assert not cgroups.is_frozen(pid)
    finally:
        if (cg / "cgroup.freeze").exists():
            (cg / "cgroup.freeze").write_text("0")
        if str(pid) in (cg / "cgroup.procs").read_text().split():
            (home / "cgroup.procs").write_text(str(pid))
        cg.rmdir()


@pytest.mark.integration
def test_is_frozen_of_self_and_of_a_gone_pid() -> None:
    assert cgroups.is_frozen(os.getpid()) is False
    assert cgroups.is_frozen(2**22 + 12345) is False
    assert cgroups.pids_of(2**22 + 12345) == []
