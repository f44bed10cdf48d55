"""The runc contract through the nexcage CLI with the lxc backend and real LXC 5.

Asserts on parsed state JSON and on what the container sees (via exec). The pid engines get
in --pid-file is LXC's monitor (the process they reap: it exits with the container's status);
``state`` reports the container's init (backends/lxc/__init__.py, "Two pids").
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import pid_alive, require_tool, wait_for
from support.busybox import bundle_config as busybox_config

REPO = Path(__file__).resolve().parents[2]
NEXCAGE = os.fspath(REPO / ".venv" / "bin" / "nexcage")

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def cmdline(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


class Lxc:
    """The CLI with a private --root and --runtime lxc; remembers ids to clean up."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.ids: set[str] = set()

    def argv(self, *args: str) -> list[str]:
        return [NEXCAGE, "--root", self.root, "--runtime", "lxc", *args]

    def __call__(
        self, *args: str, check: bool = True, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 60)
        proc = subprocess.run(self.argv(*args), text=True, check=False, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"nexcage {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc

    def detached(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A verb that leaves a process behind holding its stdio: no pipes (runc does the same)."""
        with open(os.devnull, "w") as null, os.fdopen(os.memfd_create("err"), "w+") as err:
            proc = subprocess.run(
                self.argv(*args), text=True, check=False, timeout=60,
                stdin=subprocess.DEVNULL, stdout=null, stderr=err,
            )  # fmt: skip
            err.seek(0)
            proc.stderr = err.read()
        if check and proc.returncode != 0:
            raise AssertionError(f"nexcage {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc

    def create(self, cid: str, bundle: str, *extra: str, check: bool = True) -> Any:
        self.ids.add(cid)
        return self.detached("create", "--bundle", bundle, *extra, cid, check=check)

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)  # type: ignore[no-any-return]

    def wait_status(self, cid: str, status: str) -> dict[str, Any]:
        return wait_for(
            lambda: (s := self.state(cid))["status"] == status and s,
            what=f"{cid} {status}",
        )


@pytest.fixture
def lxc(runtime_root: str) -> Iterator[Lxc]:
    require_tool("lxc-start")
    require_tool("lxc-attach")
    n = Lxc(runtime_root)
    yield n
    for cid in n.ids:
        subprocess.run(
            n.argv("delete", "--force", cid), capture_output=True, timeout=30, check=False
        )
    leftover = subprocess.run(n.argv("list", "-q"), capture_output=True, text=True, check=False)
    assert leftover.stdout.strip() == "", f"containers left behind: {leftover.stdout}"
    backend_dir = Path(runtime_root) / ".backends" / "lxc"
    entries = list(backend_dir.iterdir()) if backend_dir.exists() else []
    left = [p.name for p in entries if not p.name.startswith(".")]
    assert left == [], f"LXC container directories left behind: {left}"
    for cid in n.ids:
        for ctl in ("memory", "pids", "freezer"):
            assert not Path(f"/sys/fs/cgroup/{ctl}/nexcage/{cid}").exists()
            assert not Path(f"/sys/fs/cgroup/{ctl}/nexcage.monitor/{cid}").exists()


def test_created_running_stopped(
    lxc: Lxc, busybox_bundle: Callable[..., str], tmp_path: Path
) -> None:
    bundle = busybox_bundle(["sleep", "300"])
    pid_file = tmp_path / "pid"
    lxc.create("c1", bundle, "--pid-file", os.fspath(pid_file))
    state = lxc.state("c1")
    assert state["status"] == "created"
    assert state["id"] == "c1" and state["bundle"] == bundle
    init = state["pid"]
    assert init > 0 and pid_alive(init)
    # Held before the user's process: the init is still nexcage's helper.
    assert cmdline(init)[:2] == ["/dev/.nexcage/init", "init"]
    # Engines get the monitor, init's parent, which they reap for the exit status.
    monitor = int(pid_file.read_text())
    assert monitor != init and pid_alive(monitor)
    with open(f"/proc/{init}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) == monitor

    lxc("start", "c1")
    state = lxc.state("c1")
    assert state["status"] == "running" and state["pid"] == init
    assert cmdline(init) == ["sleep", "300"]
    listed = json.loads(lxc("list", "--format", "json").stdout)
    assert [(s["id"], s["status"]) for s in listed] == [("c1", "running")]

    lxc("kill", "c1", "KILL")
    state = lxc.wait_status("c1", "stopped")
    assert state["pid"] == 0
    wait_for(lambda: not pid_alive(monitor), what="the monitor to exit")
    lxc("delete", "c1")
    gone = lxc("state", "c1", check=False)
    assert gone.returncode == 1 and "container does not exist" in gone.stderr


def test_run_exit_status_and_output(lxc: Lxc, busybox_bundle: Callable[..., str]) -> None:
    bundle = busybox_bundle(["sh", "-c", "echo out; echo err >&2; exit 7"])
    lxc.ids.add("r1")
    proc = lxc("run", "--bundle", bundle, "r1", check=False)
    assert (proc.returncode, proc.stdout) == (7, "out\n")
    assert proc.stderr == "err\n"  # LXC's own messages never reach the container's stderr
    assert lxc("state", "r1", check=False).returncode == 1


def test_run_killed_by_signal(lxc: Lxc, busybox_bundle: Callable[..., str]) -> None:
    lxc.ids.add("r2")
    runner = subprocess.Popen(
        lxc.argv("run", "--bundle", busybox_bundle(["sleep", "300"]), "r2"),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: lxc("state", "r2", check=False).returncode == 0, what="r2 to exist")
        lxc.wait_status("r2", "running")
        lxc("kill", "r2", "KILL")
        assert runner.wait(timeout=30) == 128 + 9
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_inside_the_container(lxc: Lxc, busybox_bundle: Callable[..., str]) -> None:
    bundle = busybox_bundle(
        ["sleep", "300"],
        env={"FOO": "bar baz", "EDGE": " padded "},
        cwd="/tmp",
        hostname="lxc-box",
        extra={
            "process": {
                "user": {"uid": 1000, "gid": 1000, "additionalGids": [5, 65534]},
                "capabilities": {
                    k: ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
                    for k in ("bounding", "effective", "permitted")
                },
            },
            "mounts": [
                *busybox_config(["true"])["mounts"],
                {"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                 "options": ["size=1m", "mode=0700"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                 "options": ["ro", "nosuid", "noexec", "nodev"]},
            ],
            "linux": {"resources": {"memory": {"limit": 64 * 1024 * 1024}, "pids": {"limit": 42}}},
        },
    )  # fmt: skip
    lxc.ids.add("i1")
    lxc.detached("run", "-d", "--bundle", bundle, "i1")
    init = lxc.state("i1")["pid"]
    script = 'echo "$FOO|$EDGE|$(pwd)|$(id -u):$(id -g):$(id -G)|$(hostname)|${container-unset}"'
    out = lxc("exec", "i1", "sh", "-c", script).stdout
    assert out == "bar baz| padded |/tmp|1000:1000:1000 5 65534|lxc-box|unset\n"
    # The init itself (not an exec) got the same, from LXC's keys.
    env = open(f"/proc/{init}/environ", "rb").read().split(b"\0")
    assert b"FOO=bar baz" in env and b"EDGE= padded " in env
    assert not any(e.startswith(b"container=") for e in env)
    status = {
        line.split(":")[0]: line.split(":", 1)[1].strip()
        for line in open(f"/proc/{init}/status").read().splitlines()
    }
    assert status["Uid"].split()[0] == "1000" and status["Groups"].split() == ["5", "65534"]
    assert int(status["CapBnd"], 16) == (1 << 5) | (1 << 10)  # kill, net_bind_service
    mounts = lxc("exec", "i1", "cat", "/proc/mounts").stdout
    assert any(line.split()[1:3] == ["/data", "tmpfs"] for line in mounts.splitlines())
    cgroup = lxc("exec", "i1", "cat", "/proc/self/cgroup").stdout
    assert "memory:/" in cgroup  # a cgroup namespace: the container sees its own root
    # The limits, as the container sees them in its own cgroup (mounted by lxc.mount.auto).
    limit = lxc(
        "exec", "-u", "0", "i1", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    ).stdout
    pids = lxc("exec", "-u", "0", "i1", "cat", "/sys/fs/cgroup/pids/pids.max").stdout
    assert (limit.strip(), pids.strip()) == (str(64 * 1024 * 1024), "42")
    host_mem = Path("/sys/fs/cgroup/memory/nexcage/i1/memory.limit_in_bytes").read_text()
    assert host_mem.strip() == str(64 * 1024 * 1024)
    assert Path("/sys/fs/cgroup/pids/nexcage/i1/pids.max").read_text().strip() == "42"


def test_exec_variants(lxc: Lxc, busybox_bundle: Callable[..., str], tmp_path: Path) -> None:
    lxc.ids.add("e1")
    lxc.detached("run", "-d", "--bundle", busybox_bundle(["sleep", "300"], env={"X": "1"}), "e1")
    assert lxc("exec", "e1", "sh", "-c", "exit 3", check=False).returncode == 3
    out = lxc("exec", "--env", "Y=2", "--cwd", "/tmp", "-u", "1000", "e1", "sh", "-c",
              'echo "$X$Y $(pwd) $(id -u)"').stdout  # fmt: skip
    assert out == "12 /tmp 1000\n"
    missing = lxc("exec", "e1", "nonexistent", check=False)
    assert missing.returncode == 255 and "executable file not found" in missing.stderr
    # What engines run: exec --process FILE --detach --pid-file FILE
    process = {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["sleep", "7"],
               "env": ["PATH=/bin"], "cwd": "/"}  # fmt: skip
    pfile = tmp_path / "process.json"
    pfile.write_text(json.dumps(process))
    pidf = tmp_path / "exec.pid"
    lxc.detached("exec", "--process", os.fspath(pfile), "--detach", "--pid-file",
                 os.fspath(pidf), "e1")  # fmt: skip
    attach = int(pidf.read_text())
    assert "lxc-attach" in cmdline(attach)[0]  # the process engines reap
    pids = json.loads(lxc("ps", "--format", "json", "e1").stdout)
    sleeps = [p for p in pids if cmdline(p) == ["sleep", "7"]]
    assert len(sleeps) == 1 and lxc.state("e1")["pid"] in pids
    os.kill(sleeps[0], 9)
    wait_for(lambda: not pid_alive(attach), what="lxc-attach to exit")


def test_kill_all_pause_resume_update(lxc: Lxc, busybox_bundle: Callable[..., str]) -> None:
    bundle = busybox_bundle(["sh", "-c", "trap 'exit 0' TERM; sleep 300 & sleep 300 & wait"])
    lxc.ids.add("k1")
    lxc.detached("run", "-d", "--bundle", bundle, "k1")
    wait_for(lambda: len(json.loads(lxc("ps", "--format", "json", "k1").stdout)) == 3)
    lxc("pause", "k1")
    assert lxc.state("k1")["status"] == "paused"
    assert Path("/sys/fs/cgroup/freezer/nexcage/k1/freezer.state").read_text().strip() == "FROZEN"
    lxc("resume", "k1")
    assert lxc.state("k1")["status"] == "running"
    lxc("update", "--memory", "32m", "--pids-limit", "17", "k1")
    memory = Path("/sys/fs/cgroup/memory/nexcage/k1/memory.limit_in_bytes").read_text()
    assert memory.strip() == str(32 << 20)
    assert Path("/sys/fs/cgroup/pids/nexcage/k1/pids.max").read_text().strip() == "17"
    pids = json.loads(lxc("ps", "--format", "json", "k1").stdout)
    lxc("kill", "--all", "k1", "KILL")
    wait_for(lambda: not any(pid_alive(p) for p in pids), what="every process to die")
    lxc.wait_status("k1", "stopped")
    not_running = lxc("kill", "k1", "TERM", check=False)
    assert not_running.returncode == 1 and "container not running" in not_running.stderr
    assert lxc("kill", "--all", "k1", "KILL").returncode == 0
    stopped = lxc("exec", "k1", "true", check=False)
    assert "cannot exec in a stopped container" in stopped.stderr
    lxc("delete", "k1")


def test_delete_created_and_running_force(lxc: Lxc, busybox_bundle: Callable[..., str]) -> None:
    bundle = busybox_bundle(["sleep", "300"])
    lxc.create("f1", bundle)
    init = lxc.state("f1")["pid"]
    lxc("delete", "f1")
    wait_for(lambda: not pid_alive(init), what="the created init to go")
    lxc.create("f2", bundle)
    lxc("start", "f2")
    busy = lxc("delete", "f2", check=False)
    assert busy.returncode == 1 and "not stopped: running" in busy.stderr
    init = lxc.state("f2")["pid"]
    lxc("delete", "--force", "f2")
    wait_for(lambda: not pid_alive(init), what="the running init to go")


def test_console_socket(lxc: Lxc, busybox_bundle: Callable[..., str], tmp_path: Path) -> None:
    sock_path = os.fspath(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    server.settimeout(30)
    try:
        lxc.create("t1", busybox_bundle(["sh"], terminal=True), "--console-socket", sock_path)
        conn, _ = server.accept()
        fds = array.array("i")
        _msg, anc, _flags, _addr = conn.recvmsg(1024, socket.CMSG_LEN(fds.itemsize))
        conn.close()
        fds.frombytes(anc[0][2][: fds.itemsize])
        master = fds[0]
        lxc("start", "t1")
        os.write(master, b"echo tty-$((40+2)); tty\n")
        seen = b""
        deadline = time.monotonic() + 15
        while b"tty-42" not in seen or b"/dev/pts/" not in seen.split(b"tty-42", 1)[-1]:
            assert time.monotonic() < deadline, seen
            seen += os.read(master, 4096)
        os.write(master, b"exit 0\n")
        lxc.wait_status("t1", "stopped")
        os.close(master)
    finally:
        server.close()


def test_preserve_fds(lxc: Lxc, busybox_bundle: Callable[..., str]) -> None:
    bundle = busybox_bundle(["sh", "-c", "echo through-fd-3 >&3"])
    r3, w3 = os.pipe()
    try:
        lxc.ids.add("fd1")
        proc = subprocess.run(
            ["bash", "-c", f'exec 3>&{w3}; exec "$@"', "bash",
             *lxc.argv("run", "--preserve-fds", "1", "--bundle", bundle, "fd1")],
            pass_fds=(w3,), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        os.close(w3)
        assert proc.returncode == 0, proc.stderr
        assert os.read(r3, 100) == b"through-fd-3\n"
    finally:
        os.close(r3)


def _console(server: socket.socket) -> int:
    """The pty master an exec or create sent to the console socket ``server`` listens on."""
    conn, _ = server.accept()
    fds = array.array("i")
    _msg, anc, _flags, _addr = conn.recvmsg(1024, socket.CMSG_LEN(fds.itemsize))
    conn.close()
    fds.frombytes(anc[0][2][: fds.itemsize])
    return fds[0]


def _read_until(master: int, text: bytes) -> bytes:
    seen = b""
    deadline = time.monotonic() + 15
    while text not in seen:
        assert time.monotonic() < deadline, seen
        seen += os.read(master, 4096)
    return seen


def test_foreground_exec_with_console_socket(
    lxc: Lxc, busybox_bundle: Callable[..., str], tmp_path: Path
) -> None:
    """runc's ``exec --tty --console-socket S`` without ``--detach``: the pty goes to the socket,
    the exec waits for the process, exits with its status and passes signals on to it."""
    lxc.ids.add("fc1")
    lxc.detached("run", "-d", "--bundle", busybox_bundle(["sleep", "300"]), "fc1")
    sock_path = os.fspath(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(2)
    server.settimeout(30)
    null = subprocess.DEVNULL
    try:
        script = "tty; read x; echo got-$x; exit 7"
        exe = subprocess.Popen(
            lxc.argv("exec", "--tty", "--console-socket", sock_path, "fc1", "sh", "-c", script),
            stdin=null, stdout=null, stderr=null,
        )  # fmt: skip
        master = _console(server)
        assert b"/dev/pts/" in _read_until(master, b"/dev/pts/")
        os.write(master, b"hello\n")
        _read_until(master, b"got-hello")
        assert exe.wait(timeout=30) == 7
        os.close(master)

        script = "trap 'exit 9' TERM; echo ready; while :; do sleep 1; done"
        exe = subprocess.Popen(
            lxc.argv("exec", "--tty", "--console-socket", sock_path, "fc1", "sh", "-c", script),
            stdin=null, stdout=null, stderr=null,
        )  # fmt: skip
        master = _console(server)
        _read_until(master, b"ready")
        exe.send_signal(signal.SIGTERM)
        assert exe.wait(timeout=30) == 9
        os.close(master)
    finally:
        server.close()
    missing = lxc("exec", "--tty", "--console-socket", sock_path, "fc1", "nonexistent",
                  check=False, stdin=null)  # fmt: skip
    assert missing.returncode == 255 and "executable file not found" in missing.stderr
