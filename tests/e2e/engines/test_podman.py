"""podman drives the runtime under test (``--runtime <binary>``) through conmon.

A private podman: own ``--root``/``--runroot``/``--tmpdir`` under one temporary directory, a
generated containers.conf (``CONTAINERS_CONF``: only that file is read), storage.conf and
registries.conf, file locks instead of the shared ``/dev/shm/libpod_lock``, a private CNI config
directory, and ``netns = "none"``. The busybox image comes from `support.busybox` via
``podman load`` of an OCI archive.

What podman 4.3.1 + conmon 2.1.6 send the runtime (CONTRACTS.md §1.20, re-observed here): no
global flags except ``--log-format=json --log <run>/oci-log`` when the basename is in
``runtime_supports_json``; ``create --bundle B --pid-file P [--console-socket S] ID``,
``start ID``, ``exec --pid-file P --process F --detach [--tty --console-socket S] ID``,
``kill ID 15`` / ``kill ID 9``, ``pause ID``, ``resume ID``, ``delete --force ID``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from support.busybox import TEST_IMAGE_REF, ImageArchive

pytestmark = [pytest.mark.e2e, pytest.mark.root]

IMAGE = TEST_IMAGE_REF

# podman's own defaults (containers.conf) plus nexcage: only listed basenames get
# `--log-format=json --log <file>`, which is how podman shows the runtime's error message.
SUPPORTS_JSON = ["crun", "runc", "kata", "runsc", "youki", "krun", "ocijail", "nexcage"]

CONTAINERS_CONF = """\
[containers]
# root here lacks CAP_SYS_RESOURCE: podman's default (raise nofile/nproc to the hard maximum)
# would fail in the runtime's setrlimit.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"
log_driver = "k8s-file"

[engine]
# no systemd on the test machines
cgroup_manager = "cgroupfs"
events_logger = "file"
# file locks live under tmp_dir; the default shm locks are shared by every podman on the host
lock_type = "file"
tmp_dir = "{tmp}"
image_copy_tmp_dir = "{tmp}"
runtime_supports_json = {supports_json}

[network]
network_config_dir = "{net}"
"""

STORAGE_CONF = """\
[storage]
driver = "{driver}"
graphroot = "{root}"
runroot = "{runroot}"
"""

REGISTRIES_CONF = 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n'


@dataclass
class Podman:
    """A private podman instance; call it like the CLI: ``podman("run", "--rm", IMAGE, "true")``."""

    base: Path
    runtime: str
    driver: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def runroot(self) -> Path:
        return self.base / "run"

    @property
    def tmpdir(self) -> Path:
        return self.base / "tmp"

    def argv(self, *args: str) -> list[str]:
        return [
            "podman",
            "--root", os.fspath(self.root),
            "--runroot", os.fspath(self.runroot),
            "--tmpdir", os.fspath(self.tmpdir),
            "--storage-driver", self.driver,
            "--runtime", self.runtime,
            *args,
        ]  # fmt: skip

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return run_cmd(self.argv(*args), env=self.env, check=check, timeout=timeout)

    def json(self, *args: str) -> Any:
        return json.loads(self(*args).stdout)

    def container_ids(self) -> list[str]:
        return [c["Id"] for c in self.json("ps", "-a", "--format", "json")]

    def inspect(self, cid: str) -> dict[str, Any]:
        [info] = self.json("container", "inspect", cid)
        return info  # type: ignore[no-any-return]


def _storage_driver() -> str:
    # overlay works natively on the ext4 test machines as root; vfs (full copies) as a fallback.
    with open("/proc/filesystems") as f:
        return "overlay" if any(line.split()[-1] == "overlay" for line in f) else "vfs"


@pytest.fixture(scope="module")
def podman_engine(runtime_binary: str, busybox_image: ImageArchive) -> Iterator[Podman]:
    """A private podman with the busybox image loaded; everything removed at teardown."""
    podman_bin = require_tool("podman")
    require_tool("conmon")
    base = Path(tempfile.mkdtemp(prefix="nxc-podman-"))
    for sub in ("root", "run", "tmp", "net"):
        (base / sub).mkdir()
    driver = _storage_driver()
    (base / "containers.conf").write_text(
        CONTAINERS_CONF.format(
            tmp=base / "tmp",
            net=base / "net",
            supports_json=json.dumps(sorted({*SUPPORTS_JSON, os.path.basename(runtime_binary)})),
        )
    )
    (base / "storage.conf").write_text(
        STORAGE_CONF.format(driver=driver, root=base / "root", runroot=base / "run")
    )
    (base / "registries.conf").write_text(REGISTRIES_CONF)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CONTAINER_HOST", "CONTAINER_CONNECTION", "DOCKER_HOST"}
    }
    env.update(
        CONTAINERS_CONF=os.fspath(base / "containers.conf"),
        CONTAINERS_STORAGE_CONF=os.fspath(base / "storage.conf"),
        CONTAINERS_REGISTRIES_CONF=os.fspath(base / "registries.conf"),
        PATH=os.path.dirname(podman_bin) + os.pathsep + env.get("PATH", "/usr/bin:/bin"),
    )
    engine = Podman(base=base, runtime=runtime_binary, driver=driver, env=env)
    try:
        engine("load", "--quiet", "--input", busybox_image.path, timeout=120)
        names = [n for image in engine.json("images", "--format", "json") for n in image["Names"]]
        assert IMAGE in names, f"podman load did not name the image {IMAGE}: {names}"
        yield engine
    finally:
        _teardown(engine)


def _teardown(engine: Podman) -> None:
    """Remove containers and images, end leftover conmons by pid, unmount, delete the root.

    Every step runs even if an earlier one failed (a hung podman must not leave the rest);
    the problems are reported together at the end.
    """
    problems: list[str] = []
    with _step(problems):
        engine("rm", "--all", "--force", "--time", "0", check=False, timeout=120)
    with _step(problems):
        engine("rmi", "--all", "--force", check=False, timeout=120)
    with _step(problems):
        left = engine("ps", "-a", "-q", check=False).stdout.split()
        if left:
            problems.append(f"containers left after podman rm -af: {left}")
    # conmon outlives podman; ours are the ones whose argv names a path in our private root.
    conmons = [p for p in pids_with_arg(os.fspath(engine.base)) if pid_alive(p)]
    for pid in conmons:
        end_pid(pid)
    if conmons:
        problems.append(f"ended leftover processes by pid: {conmons}")
    unmount_under(os.fspath(engine.base))
    shutil.rmtree(engine.base, ignore_errors=True)
    assert not problems, "; ".join(problems)


@contextlib.contextmanager
def _step(problems: list[str]) -> Iterator[None]:
    try:
        yield
    except AssertionError as exc:  # run_cmd's failures and timeouts
        problems.append(str(exc).splitlines()[0])


@pytest.fixture
def podman(podman_engine: Podman) -> Iterator[Podman]:
    """The module's podman; fails the test if it leaves a container behind."""
    yield podman_engine
    left = podman_engine.container_ids()
    if left:
        podman_engine("rm", "--all", "--force", "--time", "0", check=False)
        pytest.fail(f"test left containers behind: {left}")


def _lines(text: str) -> list[str]:
    # A terminal turns "\n" into "\r\n".
    return text.replace("\r\n", "\n").splitlines()


def test_run_echo_hello(podman: Podman) -> None:
    proc = podman("run", "--rm", IMAGE, "echo", "hello")
    assert proc.stdout == "hello\n"


def test_runtime_under_test_is_used(podman: Podman, runtime_binary: str) -> None:
    cid = podman("create", IMAGE, "true").stdout.strip()
    try:
        runtime = podman.inspect(cid)["OCIRuntime"]
        assert runtime in {runtime_binary, os.path.basename(runtime_binary)}
    finally:
        podman("rm", cid)


def test_exit_status_propagates(podman: Podman) -> None:
    proc = podman("run", "--rm", IMAGE, "sh", "-c", "exit 7", check=False)
    assert proc.returncode == 7, proc.stderr


def test_missing_executable_is_127(podman: Podman) -> None:
    # podman maps the runtime's "no such file or directory" to exit 127 (CONTRACTS.md §1.18):
    # the runtime's create error must reach podman through --log (oci-log) with that wording.
    proc = podman("run", "--rm", IMAGE, "/nonexistent", check=False)
    assert proc.returncode == 127, proc.stderr


def test_detached_exec_stop_rm(podman: Podman) -> None:
    script = 'trap "exit 0" TERM; touch /tmp/ready; sleep 300 & wait'
    cid = podman("run", "-d", IMAGE, "sh", "-c", script).stdout.strip().splitlines()[-1]
    try:
        assert podman.inspect(cid)["State"]["Status"] == "running"

        assert podman("exec", cid, "echo", "in-exec").stdout == "in-exec\n"
        assert podman("exec", cid, "sh", "-c", "exit 3", check=False).returncode == 3
        proc = podman("exec", "-e", "X=1", "-w", "/tmp", cid, "sh", "-c", 'echo "$X $(pwd)"')
        assert proc.stdout == "1 /tmp\n"

        # The trap must be installed before SIGTERM arrives, or sh (pid 1) ignores it.
        wait_for(
            lambda: podman("exec", cid, "test", "-e", "/tmp/ready", check=False).returncode == 0,
            what="the container's TERM trap",
        )
        started = time.monotonic()
        podman("stop", "-t", "2", cid)
        # The trap exits at once on SIGTERM: no escalation to SIGKILL after the 2 s timeout.
        assert time.monotonic() - started < 2.0
        state = podman.inspect(cid)["State"]
        assert (state["Status"], state["ExitCode"]) == ("exited", 0)
    finally:
        podman("rm", "--force", "--time", "0", cid)
    assert cid not in podman.container_ids()


def test_pause_unpause(podman: Podman) -> None:
    cid = podman("run", "-d", IMAGE, "sleep", "300").stdout.strip().splitlines()[-1]
    try:
        podman("pause", cid)
        assert podman.inspect(cid)["State"]["Status"] == "paused"
        podman("unpause", cid)
        assert podman.inspect(cid)["State"]["Status"] == "running"
        assert podman("exec", cid, "echo", "alive").stdout == "alive\n"
    finally:
        podman("rm", "--force", "--time", "0", cid)


def test_run_tty(podman: Podman) -> None:
    proc = podman(
        "run", "--rm", "-t", IMAGE, "sh", "-c", "test -t 0 && test -t 1 && echo tty-ok; tty"
    )
    lines = _lines(proc.stdout)
    assert lines[0] == "tty-ok"
    assert lines[1].startswith("/dev/pts/")


def test_env_and_workdir(podman: Podman) -> None:
    proc = podman(
        "run", "--rm", "-e", "FOO=bar", "-w", "/tmp", IMAGE,
        "sh", "-c", 'echo "$FOO|$NEXCAGE_IMAGE|$(pwd)"',
    )  # fmt: skip
    assert proc.stdout == "bar|busybox-test|/tmp\n"


def test_user(podman: Podman) -> None:
    proc = podman("run", "--rm", "--user", "1000:1000", IMAGE, "sh", "-c", "id -u; id -g")
    assert proc.stdout.split() == ["1000", "1000"]
