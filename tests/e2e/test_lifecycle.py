"""The whole runc contract through the nexcage CLI, with real crun and real runc behind it.

Each test drives ``nexcage`` as an engine does (separate invocations, state JSON parsed) and
asserts on parsed output. Parametrised over both OCI backends.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.root]

NEXCAGE = os.fspath(REPO / ".venv" / "bin" / "nexcage")
BACKENDS = ["crun", "runc"]


class Nexcage:
    """Runs the CLI with a private --root and a forced backend; remembers ids to clean up."""

    def __init__(self, root: str, backend: str) -> None:
        self.root = root
        self.backend = backend
        self.ids: set[str] = set()

    def argv(self, *args: str) -> list[str]:
        return [NEXCAGE, "--root", self.root, "--runtime", self.backend, *args]

    def __call__(
        self, *args: str, check: bool = True, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 60)
        proc = subprocess.run(self.argv(*args), text=True, check=False, **kw)
        if check and proc.returncode != 0:
            raise AssertionError(f"nexcage {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc

    def create(
        self, cid: str, bundle: str, *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``create`` with the container's stdio on /dev/null and stderr in a file.

        With ``terminal: false`` the container inherits the runtime's fds 0-2 (runc does the
        same): a pipe there would stay open as long as the container lives.
        """
        self.ids.add(cid)
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(
                self.argv("create", "--bundle", bundle, *extra, cid),
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                timeout=60,
            )
            err.seek(0)
            proc.stderr = err.read()
        if check and proc.returncode != 0:
            raise AssertionError(f"create {cid} -> {proc.returncode}: {proc.stderr}")
        return proc

    def detached(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A verb that leaves a process running (run -d, exec -d): stdio not on pipes."""
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(
                self.argv(*args),
                text=True,
                check=False,
                timeout=60,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            err.seek(0)
            proc.stderr = err.read()
        assert proc.returncode == 0, proc.stderr
        return proc

    def state(self, cid: str) -> dict[str, Any]:
        return json.loads(self("state", cid).stdout)

    def wait_status(self, cid: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            proc = self("state", cid, check=False)
            if proc.returncode != 0:  # not created yet (a `run` in the background)
                assert time.monotonic() < deadline, proc.stderr
                time.sleep(0.02)
                continue
            state = json.loads(proc.stdout)
            if state["status"] == status or time.monotonic() > deadline:
                assert state["status"] == status, state
                return state
            time.sleep(0.02)


@pytest.fixture(params=BACKENDS)
def nx(
    request: pytest.FixtureRequest, runtime_root: str, hugetlb_cgroup_v1: list[str]
) -> Iterator[Nexcage]:
    n = Nexcage(runtime_root, request.param)
    yield n
    for cid in n.ids:
        subprocess.run(
            n.argv("delete", "--force", cid), capture_output=True, check=False, timeout=30
        )
    leftover = subprocess.run(n.argv("list", "-q"), capture_output=True, text=True, check=False)
    assert leftover.stdout.strip() == "", f"containers left behind: {leftover.stdout}"


def test_lifecycle_create_start_kill_delete(
    nx: Nexcage, busybox_bundle: Callable[..., str], tmp_path: Any
) -> None:
    bundle = busybox_bundle(["sleep", "300"])
    pid_file = os.fspath(tmp_path / "pid")
    nx.create("c1", bundle, "--pid-file", pid_file)
    state = nx.state("c1")
    assert state["status"] == "created"
    assert state["id"] == "c1" and state["bundle"] == bundle
    assert state["rootfs"] == os.path.join(bundle, "rootfs")
    pid = state["pid"]
    assert pid > 0 and os.path.exists(f"/proc/{pid}")
    # The user's process has not run yet: init is still the runtime's waiting process.
    assert b"sleep" not in open(f"/proc/{pid}/cmdline", "rb").read()
    assert open(pid_file).read() == str(pid)  # runc's format: no newline

    nx("start", "c1")
    state = nx.state("c1")
    assert state["status"] == "running" and state["pid"] == pid
    assert open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0] == b"sleep"

    listed = json.loads(nx("list", "--format", "json").stdout)
    assert [(s["id"], s["status"], s["owner"]) for s in listed] == [("c1", "running", "root")]

    nx("kill", "c1", "KILL")
    state = nx.wait_status("c1", "stopped")
    assert state["pid"] == 0
    nx("delete", "c1")
    gone = nx("state", "c1", check=False)
    assert gone.returncode == 1 and "container does not exist" in gone.stderr


def test_run_foreground_exit_status_and_output(
    nx: Nexcage, busybox_bundle: Callable[..., str]
) -> None:
    bundle = busybox_bundle(["sh", "-c", "echo out; echo err >&2; exit 7"])
    nx.ids.add("r1")
    proc = nx("run", "--bundle", bundle, "r1", check=False)
    assert proc.returncode == 7
    assert proc.stdout == "out\n" and "err\n" in proc.stderr
    assert nx("state", "r1", check=False).returncode == 1  # removed after the run


def test_run_forwards_signals(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    # PID 1 of a pid namespace ignores signals it has no handler for (as under runc): trap TERM.
    bundle = busybox_bundle(
        ["sh", "-c", "trap 'exit 42' TERM; touch /ready; while true; do sleep 0.1; done"]
    )
    ready = os.path.join(bundle, "rootfs", "ready")
    nx.ids.add("r2")
    runner = subprocess.Popen(
        nx.argv("run", "--bundle", bundle, "r2"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        nx.wait_status("r2", "running")
        deadline = time.monotonic() + 10
        while not os.path.exists(ready):  # the trap is installed once /ready exists
            assert time.monotonic() < deadline
            time.sleep(0.02)
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=20) == 42
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_run_detached_and_exec(
    nx: Nexcage, busybox_bundle: Callable[..., str], tmp_path: Any
) -> None:
    bundle = busybox_bundle(["sleep", "300"], env={"FOO": "bar"})
    nx.ids.add("d1")
    nx.detached("run", "-d", "--bundle", bundle, "d1")
    assert nx.state("d1")["status"] == "running"
    out = nx("exec", "d1", "sh", "-c", "echo $FOO; pwd; id -u")
    assert out.stdout.split() == ["bar", "/", "0"]
    assert nx(
        "exec", "--env", "X=1", "--cwd", "/tmp", "d1", "sh", "-c", "echo $X; pwd"
    ).stdout.split() == ["1", "/tmp"]
    assert nx("exec", "d1", "sh", "-c", "exit 3", check=False).returncode == 3
    # engines: exec --process FILE --detach --pid-file FILE
    process = {
        "terminal": False,
        "user": {"uid": 0, "gid": 0},
        "args": ["sleep", "5"],
        "env": ["PATH=/bin"],
        "cwd": "/",
    }
    pfile = tmp_path / "process.json"
    pfile.write_text(json.dumps(process))
    pidf = tmp_path / "exec.pid"
    nx.detached(
        "exec", "--process", os.fspath(pfile), "--detach", "--pid-file", os.fspath(pidf), "d1"
    )
    exec_pid = int(pidf.read_text())
    assert open(f"/proc/{exec_pid}/cmdline", "rb").read().split(b"\0")[0] == b"sleep"
    pids = json.loads(nx("ps", "--format", "json", "d1").stdout)
    assert nx.state("d1")["pid"] in pids and exec_pid in pids


def test_bad_process_json_is_refused(
    nx: Nexcage, busybox_bundle: Callable[..., str], tmp_path: Any
) -> None:
    nx.ids.add("d2")
    nx.detached("run", "-d", "--bundle", busybox_bundle(["sleep", "300"]), "d2")
    pfile = tmp_path / "process.json"
    pfile.write_text(json.dumps({"args": [], "cwd": "relative"}))
    proc = nx("exec", "--process", os.fspath(pfile), "d2", check=False)
    assert proc.returncode != 0 and "cwd" in proc.stderr and "args" in proc.stderr


def test_pause_resume(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    nx.ids.add("p1")
    nx.detached("run", "-d", "--bundle", busybox_bundle(["sleep", "300"]), "p1")
    nx("pause", "p1")
    assert nx.state("p1")["status"] == "paused"
    assert "cannot exec in a paused container" in nx("exec", "p1", "true", check=False).stderr
    assert "container not paused" not in nx("resume", "p1").stderr
    assert nx.state("p1")["status"] == "running"
    assert "container not paused" in nx("resume", "p1", check=False).stderr


def test_state_rules(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    bundle = busybox_bundle(["sleep", "300"])
    nx.create("s1", bundle)
    dup = nx.create("s1", bundle, check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    nx("start", "s1")
    again = nx("start", "s1", check=False)
    assert again.returncode == 1 and "cannot start an already running container" in again.stderr
    busy = nx("delete", "s1", check=False)
    assert busy.returncode == 1 and "that is not stopped: running" in busy.stderr
    assert nx.state("s1")["status"] == "running"  # the refused delete changed nothing
    nx("kill", "s1", "9")
    nx.wait_status("s1", "stopped")
    not_running = nx("kill", "s1", "TERM", check=False)
    assert not_running.returncode == 1 and "container not running" in not_running.stderr
    assert nx("kill", "--all", "s1", "9").returncode == 0  # --all suppresses the error
    stopped = nx("start", "s1", check=False)
    assert "cannot start a container that has stopped" in stopped.stderr
    assert "cannot exec in a stopped container" in nx("exec", "s1", "true", check=False).stderr
    nx("delete", "s1")


def test_delete_created_and_force(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    bundle = busybox_bundle(["sleep", "300"])
    nx.create("f1", bundle)
    pid = nx.state("f1")["pid"]
    nx("delete", "f1")  # runc and crun delete a created container
    assert nx("state", "f1", check=False).returncode == 1
    nx.create("f2", bundle)
    nx("start", "f2")
    pid = nx.state("f2")["pid"]
    nx("delete", "--force", "f2")
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        status = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        if status == "Z":
            break
        time.sleep(0.02)
    assert nx("state", "f2", check=False).returncode == 1


def test_unknown_signal_and_unknown_id(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    nx.create("k1", busybox_bundle(["sleep", "300"]))
    bad = nx("kill", "k1", "SIGFOO", check=False)
    assert bad.returncode == 2 and "unknown signal" in bad.stderr
    assert nx.state("k1")["status"] == "created"
    for verb in ("state", "start", "kill", "delete", "pause", "resume", "ps"):
        proc = nx(verb, "nope", check=False)
        assert proc.returncode == 1 and "container does not exist" in proc.stderr, verb


def test_console_socket(nx: Nexcage, busybox_bundle: Callable[..., str], tmp_path: Any) -> None:
    bundle = busybox_bundle(["sh"], terminal=True)
    sock_path = os.fspath(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    server.settimeout(30)
    try:
        nx.create("t1", bundle, "--console-socket", sock_path)
        conn, _ = server.accept()
        fds = array.array("i")
        _msg, anc, _flags, _addr = conn.recvmsg(1024, socket.CMSG_LEN(fds.itemsize))
        conn.close()
        fds.frombytes(anc[0][2][: fds.itemsize])
        master = fds[0]
        nx("start", "t1")
        os.write(master, b"echo tty-$((40+2)); tty\n")
        seen = b""
        deadline = time.monotonic() + 15
        while b"tty-42" not in seen or b"/dev/" not in seen.split(b"tty-42", 1)[-1]:
            assert time.monotonic() < deadline, seen
            seen += os.read(master, 4096)
        assert b"tty-42" in seen
        os.write(master, b"exit 0\n")
        nx.wait_status("t1", "stopped")
        os.close(master)
    finally:
        server.close()


def test_console_socket_without_terminal_is_refused(
    nx: Nexcage, busybox_bundle: Callable[..., str], tmp_path: Any
) -> None:
    proc = nx.create(
        "t2", busybox_bundle(["true"]), "--console-socket", os.fspath(tmp_path / "s"), check=False
    )
    assert proc.returncode == 2 and "cannot use console socket" in proc.stderr
    tty = nx.create("t3", busybox_bundle(["sh"], terminal=True), check=False)
    assert tty.returncode == 2 and "cannot allocate tty" in tty.stderr


def test_preserve_fds(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    bundle = busybox_bundle(["sh", "-c", "echo through-fd-3 >&3; echo through-fd-4 >&4"])
    r3, w3 = os.pipe()
    r4, w4 = os.pipe()
    try:
        nx.ids.add("fd1")
        # fds 3 and 4 of nexcage are the pipes' write ends
        proc = subprocess.run(
            [
                "bash",
                "-c",
                f'exec 3>&{w3} 4>&{w4}; exec "$@"',
                "bash",
                *nx.argv("run", "--preserve-fds", "2", "--bundle", bundle, "fd1"),
            ],
            pass_fds=(w3, w4),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        os.close(w3)
        os.close(w4)
        assert proc.returncode == 0, proc.stderr
        assert os.read(r3, 100) == b"through-fd-3\n"
        assert os.read(r4, 100) == b"through-fd-4\n"
    finally:
        for fd in (r3, r4):
            os.close(fd)


def test_version_negotiation_keeps_user_config(
    nx: Nexcage, busybox_bundle: Callable[..., str]
) -> None:
    bundle = busybox_bundle(["sh", "-c", "echo negotiated"], oci_version="1.3.0")
    before = open(os.path.join(bundle, "config.json"), "rb").read()
    nx.ids.add("v1")
    proc = nx("run", "--bundle", bundle, "v1")
    assert proc.stdout == "negotiated\n"
    assert open(os.path.join(bundle, "config.json"), "rb").read() == before


def test_newer_field_is_refused_with_its_path(
    nx: Nexcage, busybox_bundle: Callable[..., str]
) -> None:
    bundle = busybox_bundle(
        ["true"],
        oci_version="1.3.0",
        extra={"linux": {"memoryPolicy": {"mode": "MPOL_BIND", "nodes": "0"}}},
    )
    proc = nx.create("v2", bundle, check=False)
    assert proc.returncode == 1
    assert "linux.memoryPolicy" in proc.stderr
    assert nx("state", "v2", check=False).returncode == 1
    assert os.listdir(nx.root) in ([], [".backends"])  # nothing left behind


def test_run_foreground_with_terminal(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    """`run` with process.terminal and no --console-socket: nexcage receives the pty itself and
    copies it to its own stdio, as `runc run` does."""
    bundle = busybox_bundle(
        ["sh", "-c", "test -t 0 && test -t 1 && echo tty-ok; tty; exit 5"], terminal=True
    )
    nx.ids.add("tt1")
    proc = nx("run", "--bundle", bundle, "tt1", check=False, stdin=subprocess.DEVNULL)
    assert proc.returncode == 5, proc.stderr
    assert "tty-ok" in proc.stdout and "/dev/pts/" in proc.stdout


def test_kill_all_signals_every_process(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    bundle = busybox_bundle(["sh", "-c", "sleep 300 & sleep 300 & touch /ready; wait"])
    nx.ids.add("ka1")
    nx.detached("run", "-d", "--bundle", bundle, "ka1")
    ready = os.path.join(bundle, "rootfs", "ready")
    deadline = time.monotonic() + 10
    while not os.path.exists(ready):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pids = json.loads(nx("ps", "--format", "json", "ka1").stdout)
    assert len(pids) == 3
    nx("kill", "--all", "ka1", "KILL")
    nx.wait_status("ka1", "stopped")
    for pid in pids:  # gone, or a zombie waiting for a reaper
        stat = f"/proc/{pid}/stat"
        assert not os.path.exists(stat) or open(stat).read().rsplit(")", 1)[1].split()[0] == "Z"


def test_force_delete_paused(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    nx.ids.add("fp1")
    nx.detached("run", "-d", "--bundle", busybox_bundle(["sleep", "300"]), "fp1")
    nx("pause", "fp1")
    refused = nx("delete", "fp1", check=False)
    assert refused.returncode == 1 and "not stopped: paused" in refused.stderr
    nx("delete", "--force", "fp1")
    assert nx("state", "fp1", check=False).returncode == 1


def test_events(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    nx.ids.add("ev1")
    nx.detached("run", "-d", "--bundle", busybox_bundle(["sleep", "300"]), "ev1")
    proc = nx("events", "--stats", "ev1", check=False)
    if nx.backend == "runc":
        assert proc.returncode == 0, proc.stderr
        event = json.loads(proc.stdout.splitlines()[0])
        assert event["type"] == "stats" and event["id"] == "ev1"
        assert "memory" in event["data"]
    else:
        assert proc.returncode == 1 and "no events support" in proc.stderr


def test_list_survives_a_corrupt_record(nx: Nexcage, busybox_bundle: Callable[..., str]) -> None:
    nx.create("ok1", busybox_bundle(["sleep", "300"]))
    os.makedirs(os.path.join(nx.root, "bad1"))
    with open(os.path.join(nx.root, "bad1", "state.json"), "w") as f:
        f.write("{truncated")
    proc = nx("list", "--format", "json")
    assert [s["id"] for s in json.loads(proc.stdout)] == ["ok1"]
    assert "bad1" in proc.stderr and "corrupt" in proc.stderr
    nx("delete", "--force", "bad1")  # a corrupt record can still be removed
    assert not os.path.exists(os.path.join(nx.root, "bad1"))
