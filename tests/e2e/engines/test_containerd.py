"""containerd's runc shim v2 drives the runtime under test (``ctr run --runc-binary <binary>``).

A private containerd (CONTRACTS.md §1.19b): its own root, state, sockets and ``opt`` directory
in one temporary directory, CRI disabled, started by the module fixture and ended by its pid.
The runtime's state goes to a private ``--runc-root``; the namespace is fixed
(`NAMESPACE`), so the cgroups ``ctr`` asks for are ``/<NAMESPACE>/<id>`` in every hierarchy.

What the containerd 1.6.20 shim sends the runtime (CONTRACTS.md §1.19, re-observed here), after
the global prefix ``--root <runc-root>/<ns> --log <bundle>/log.json --log-format json``:
``create --bundle B --pid-file B/init.pid ID``, ``start ID``,
``exec --process /tmp/runc-processNNN --detach --pid-file B/<exec-id>.pid ID``,
``ps --format json ID``, ``pause ID``, ``resume ID``, ``kill ID 9``, ``delete ID``,
``delete --force ID``; never ``state``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import (
    end_pid,
    pid_alive,
    pids_with_arg,
    require_tool,
    run_cmd,
    unmount_under,
    wait_for,
)
from support.busybox import TEST_IMAGE_ENV, TEST_IMAGE_REF, make_oci_archive

pytestmark = [pytest.mark.e2e, pytest.mark.root]

IMAGE = TEST_IMAGE_REF
NAMESPACE = "nexcage-e2e"
RUNTIME_TYPE = "io.containerd.runc.v2"

# containerd 1.6 puts shim sockets and ctr's default fifo dir under this fixed directory.
CONTAINERD_RUN = Path("/run/containerd")

CONFIG = """\
version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{base}/c.sock"

[ttrpc]
  address = "{base}/c.sock.ttrpc"

[debug]
  address = "{base}/debug.sock"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"""


@dataclass
class Containerd:
    """A private containerd; ``ctr(...)`` runs ``ctr`` against it in `NAMESPACE`."""

    base: Path
    runtime: str
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return os.fspath(self.base / "c.sock")

    @property
    def runc_root(self) -> str:
        return os.fspath(self.base / "runc")

    @property
    def fifo_dir(self) -> str:
        return os.fspath(self.base / "fifo")

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        argv = ["ctr", "--address", self.address, "--namespace", NAMESPACE, *args]
        return run_cmd(argv, check=check, timeout=timeout)

    def runtime_flags(self) -> list[str]:
        """``ctr run`` flags that make the shim use the runtime under test, privately."""
        return [
            "--runtime", RUNTIME_TYPE,
            "--runc-binary", self.runtime,
            "--runc-root", self.runc_root,
            "--fifo-dir", self.fifo_dir,
        ]  # fmt: skip

    def run(
        self, cid: str, *cmd: str, flags: tuple[str, ...] = (), check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.ctr("run", *self.runtime_flags(), *flags, IMAGE, cid, *cmd, check=check)

    def tasks(self) -> dict[str, tuple[int, str]]:
        """``ctr task ls`` parsed: {id: (pid, STATUS)}."""
        rows = self.ctr("task", "ls").stdout.splitlines()
        assert rows and rows[0].split() == ["TASK", "PID", "STATUS"], rows
        return {r.split()[0]: (int(r.split()[1]), r.split()[2]) for r in rows[1:] if r.strip()}

    def containers(self) -> list[str]:
        return self.ctr("container", "ls", "-q").stdout.split()


def _new_id() -> str:
    return f"nxc-{uuid.uuid4().hex[:12]}"


def _start(base: Path, runtime: str) -> Containerd:
    containerd = require_tool("containerd")
    require_tool("ctr")
    require_tool("containerd-shim-runc-v2")
    config = base / "config.toml"
    config.write_text(CONFIG.format(base=base))
    with open(base / "containerd.log", "wb") as log:
        process = subprocess.Popen(
            [containerd, "--config", os.fspath(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    engine = Containerd(base=base, runtime=runtime, process=process)

    def ready() -> bool:
        if process.poll() is not None:
            log_tail = (base / "containerd.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"containerd exited with {process.returncode}:\n{log_tail}")
        return engine.ctr("version", check=False, timeout=10).returncode == 0

    try:
        wait_for(ready, timeout=30, what="the private containerd to answer")
    except BaseException:
        end_pid(process.pid)
        raise
    return engine


@pytest.fixture(scope="module")
def containerd(runtime_binary: str, busybox_rootfs: str) -> Iterator[Containerd]:
    """A private containerd with the busybox image imported; ended by pid at teardown."""
    base = Path(tempfile.mkdtemp(prefix="nxc-ctrd-"))  # short: socket paths max 108 bytes
    created_run_dirs = [p for p in _run_dirs() if not p.exists()]
    engine = None
    try:
        engine = _start(base, runtime_binary)
        # `--index-name` keeps the index as the image. The archive's own ref name must differ
        # from it: with the same name ctr 1.6 replaces the index image by the manifest image
        # and then fails to unpack ("content digest …: not found").
        archive = make_oci_archive(
            busybox_rootfs,
            base / "busybox-oci.tar",
            "docker.io/library/busybox-test:oci-manifest",
            env=TEST_IMAGE_ENV,
        )
        engine.ctr("image", "import", "--index-name", IMAGE, archive.path, timeout=120)
        yield engine
    finally:
        _teardown(base, engine, runtime_binary, created_run_dirs)


def _run_dirs() -> list[Path]:
    return [CONTAINERD_RUN / "s", CONTAINERD_RUN / "fifo", CONTAINERD_RUN]


def _teardown(
    base: Path, engine: Containerd | None, runtime: str, created_run_dirs: list[Path]
) -> None:
    """Delete tasks and containers, end containerd and its shims by pid, remove everything."""
    problems: list[str] = []
    if engine is not None and engine.process.poll() is None:
        try:
            for cid in engine.ctr("container", "ls", "-q", check=False).stdout.split():
                engine.ctr("task", "kill", "--signal", "SIGKILL", cid, check=False)
                engine.ctr("task", "delete", "--force", cid, check=False)
                engine.ctr("container", "rm", cid, check=False)
        except AssertionError as exc:  # a ctr call timed out: go on with the pids
            problems.append(str(exc).splitlines()[0])
        end_pid(engine.process.pid, timeout=10)
    if engine is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            engine.process.wait(timeout=5)
    # Shims daemonize (reparented away from containerd); ours name our socket in their argv.
    shims = [p for p in pids_with_arg(os.fspath(base / "c.sock")) if pid_alive(p)]
    for pid in shims:
        end_pid(pid)
    if shims:
        problems.append(f"ended leftover shims by pid: {shims}")
        problems.extend(_force_delete_containers(base, runtime))
    unmount_under(os.fspath(base))
    shutil.rmtree(base, ignore_errors=True)
    _remove_empty_cgroups(NAMESPACE)
    for path in created_run_dirs:  # only dirs that did not exist before, and only if empty
        with contextlib.suppress(OSError):
            path.rmdir()
    assert not problems, "; ".join(problems)


def _force_delete_containers(base: Path, runtime: str) -> list[str]:
    """Last resort after a shim was killed: ``delete --force`` what the runtime still knows."""
    found = []
    root = base / "runc" / NAMESPACE
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        run_cmd([runtime, "--root", os.fspath(root), "delete", "--force", entry.name],
                check=False, timeout=30)  # fmt: skip
        found.append(f"force-deleted container {entry.name}")
        # The shim's socket (containerd 1.6 `shim.SocketAddress`) stays when the shim is killed.
        digest = hashlib.sha256(
            os.path.join(base / "c.sock", NAMESPACE, entry.name).encode()
        ).hexdigest()
        with contextlib.suppress(OSError):
            (CONTAINERD_RUN / "s" / digest).unlink()
    return found


def _remove_empty_cgroups(namespace: str) -> None:
    # `ctr run` asks for cgroupsPath /<namespace>/<id>; runtimes remove <id>, not the parent.
    cgroup_root = Path("/sys/fs/cgroup")
    candidates = [cgroup_root / namespace, *cgroup_root.glob(f"*/{namespace}")]
    for path in candidates:
        with contextlib.suppress(OSError):
            path.rmdir()


@pytest.fixture
def ctr(containerd: Containerd) -> Iterator[Containerd]:
    """The module's containerd; fails the test if it leaves a container behind."""
    yield containerd
    left = containerd.containers()
    if left:
        for cid in left:
            containerd.ctr("task", "delete", "--force", cid, check=False)
            containerd.ctr("container", "rm", cid, check=False)
        pytest.fail(f"test left containers behind: {left}")


def test_run_echo_hello(ctr: Containerd) -> None:
    proc = ctr.run(_new_id(), "echo", "hello", flags=("--rm",))
    assert proc.stdout == "hello\n"


def test_exit_status_propagates(ctr: Containerd) -> None:
    proc = ctr.run(_new_id(), "sh", "-c", "exit 7", flags=("--rm",), check=False)
    assert proc.returncode == 7, proc.stderr


def test_env_and_cwd(ctr: Containerd) -> None:
    flags = ("--rm", "--env", "FOO=bar", "--cwd", "/tmp")
    proc = ctr.run(_new_id(), "sh", "-c", 'echo "$FOO|$NEXCAGE_IMAGE|$(pwd)"', flags=flags)
    assert proc.stdout == "bar|busybox-test|/tmp\n"


def _status(ctr: Containerd, cid: str) -> str | None:
    task = ctr.tasks().get(cid)
    return task[1] if task else None


def test_detached_task_lifecycle(ctr: Containerd, runtime_binary: str) -> None:
    cid = _new_id()
    ctr.run(cid, "sleep", "300", flags=("-d",))
    try:
        # The shim really uses the runtime under test: the runc options (a protobuf
        # `containerd.runc.v1.Options`) carry its path, and it keeps its state in our root.
        runtime = json.loads(ctr.ctr("container", "info", cid).stdout)["Runtime"]
        assert runtime["Name"] == RUNTIME_TYPE
        assert runtime_binary.encode() in base64.b64decode(runtime["Options"]["value"])
        assert (Path(ctr.runc_root) / NAMESPACE / cid).is_dir()

        wait_for(lambda: _status(ctr, cid) == "RUNNING", what=f"{cid} RUNNING")
        init_pid = ctr.tasks()[cid][0]
        assert pid_alive(init_pid)

        exec_flags = ("--fifo-dir", ctr.fifo_dir)
        proc = ctr.ctr("task", "exec", *exec_flags, "--exec-id", "x1", cid, "echo", "in-exec")
        assert proc.stdout == "in-exec\n"
        proc = ctr.ctr("task", "exec", *exec_flags, "--exec-id", "x2", cid, "sh", "-c", "exit 3",
                       check=False)  # fmt: skip
        assert proc.returncode == 3, proc.stderr

        rows = ctr.ctr("task", "ps", cid).stdout.splitlines()
        assert rows[0].split() == ["PID", "INFO"], rows
        assert init_pid in [int(r.split()[0]) for r in rows[1:]]

        ctr.ctr("task", "pause", cid)
        wait_for(lambda: _status(ctr, cid) == "PAUSED", what=f"{cid} PAUSED")
        ctr.ctr("task", "resume", cid)
        wait_for(lambda: _status(ctr, cid) == "RUNNING", what=f"{cid} RUNNING again")

        ctr.ctr("task", "kill", "--signal", "SIGKILL", cid)
        wait_for(lambda: _status(ctr, cid) == "STOPPED", what=f"{cid} STOPPED")
        wait_for(lambda: not pid_alive(init_pid), what=f"init pid {init_pid} to go")
        ctr.ctr("task", "delete", cid)
        assert cid not in ctr.tasks()
    finally:
        if cid in ctr.tasks():
            ctr.ctr("task", "delete", "--force", cid, check=False)
        ctr.ctr("container", "rm", cid, check=False)
    assert cid not in ctr.containers()
