"""``nexcage template REF --format lxc``: an imported image becomes an LXC image that
``lxc-create -t local`` accepts, and the container LXC makes of it runs the image's command with
its Env, WorkingDir, User and StopSignal. Everything LXC makes lives in a private lxcpath and
cgroups under a unique name, all removed at the end. An image whose config would inject lines
into the LXC config is refused before anything is written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_create_image import with_config

from support import require_tool, wait_for
from support.busybox import ImageArchive, make_oci_archive

REPO = Path(__file__).resolve().parents[2]
NEXCAGE = os.fspath(REPO / ".venv" / "bin" / "nexcage")
REF = "localhost/nexcage-e2e/lxc-template:1"
INJECT = "x\nlxc.mount.entry = / host-root none rbind,create=dir 0 0"
# The image's entrypoint: records its arguments, stops cleanly on SIGUSR1 only (as PID 1 it
# ignores every signal it has no handler for), so a quick stop shows lxc.signal.halt worked.
SERVE = """#!/bin/sh
echo "$@" > /tmp/args
trap 'echo stopped by USR1 > /tmp/stopped; exit 0' USR1
while :; do sleep 1 & wait $!; done
"""

pytestmark = [pytest.mark.e2e, pytest.mark.root]


def nexcage(data_root: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [NEXCAGE, "--data-root", data_root, *args]
    return subprocess.run(argv, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=120)  # fmt: skip


def lxc(tool: str, name: str, lxcpath: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool, "-n", name, "-P", lxcpath, *args], capture_output=True,
                          text=True, check=False, stdin=subprocess.DEVNULL, timeout=90)  # fmt: skip


def _remove_cgroups(prefix: str) -> None:
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for top in hierarchy.glob(prefix + "*"):
            for path in [*sorted(top.rglob("*"), key=lambda p: -len(p.parts)), top]:
                if path.is_dir():
                    path.rmdir()


@pytest.fixture(scope="module")
def serve_image(busybox_rootfs: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An OCI layout: busybox plus /usr/local/bin/serve, with an image config that sets every
    field a template key comes from."""
    work = tmp_path_factory.mktemp("lxc-template-image")
    rootfs = work / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "usr" / "local" / "bin").mkdir(parents=True)
    serve = rootfs / "usr" / "local" / "bin" / "serve"
    serve.write_text(SERVE)
    serve.chmod(0o755)
    base: ImageArchive = make_oci_archive(rootfs, work / "base.tar", REF)
    return with_config(
        base, work / "layout", REF,
        Entrypoint=["serve"], Cmd=["first", "second"],
        Env=["PATH=/usr/local/bin:/bin", "FOO=from-image"],
        WorkingDir="/srv/app", User="1000:1000", StopSignal="SIGUSR1",
    )  # fmt: skip


@pytest.fixture
def data_root() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="nexcage-data-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def lxcpath() -> Iterator[str]:
    """A private lxcpath; every container in it is stopped and destroyed afterwards, and the
    cgroups named after it removed."""
    require_tool("lxc-create")
    path = tempfile.mkdtemp(prefix="nexcage-lxcpath-")
    yield path
    for name in os.listdir(path):
        lxc("lxc-stop", name, path, "-k")
        lxc("lxc-destroy", name, path, "-f")
    left = os.listdir(path)
    shutil.rmtree(path, ignore_errors=True)
    _remove_cgroups(f"nexcage-tpl-{os.getpid()}")
    assert left == [], f"LXC containers left behind: {left}"


def test_template_runs_under_lxc(
    serve_image: str, data_root: str, lxcpath: str, tmp_path: Path
) -> None:
    assert nexcage(data_root, "image", "import", serve_image).returncode == 0
    out = tmp_path / "template"
    proc = nexcage(data_root, "template", REF, "--format", "lxc", "-o", os.fspath(out))
    assert proc.returncode == 0, proc.stderr
    meta, rootfs, *config = proc.stdout.splitlines()
    assert (meta, rootfs) == (os.fspath(out / "meta.tar.xz"), os.fspath(out / "rootfs.tar.xz"))
    assert sorted(p.name for p in out.iterdir()) == ["meta.tar.xz", "rootfs.tar.xz"]
    for line in (
        "lxc.include = LXC_TEMPLATE_CONFIG/common.conf",
        "lxc.init.cmd = serve first second",
        "lxc.environment = FOO=from-image",
        "lxc.init.cwd = /srv/app",
        "lxc.init.uid = 1000",
        "lxc.init.gid = 1000",
        "lxc.signal.halt = SIGUSR1",
    ):
        assert line in config

    # The container's own settings: no network device, no AppArmor (CONTRACTS.md §4.7), and
    # cgroups under a name this test removes afterwards.
    name = f"nexcage-tpl-{os.getpid()}"
    own = tmp_path / "lxc.conf"
    own.write_text(
        "lxc.net.0.type = empty\nlxc.apparmor.profile = unconfined\n"
        f"lxc.cgroup.dir.container = {name}/payload\nlxc.cgroup.dir.monitor = {name}/monitor\n"
        f"lxc.cgroup.dir.monitor.pivot = {name}/pivot\n"
    )
    made = lxc("lxc-create", name, lxcpath, "-f", os.fspath(own), "-t", "local", "--",
               "--metadata", meta, "--fstree", rootfs)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "lxc.init.cmd = serve first second" in (Path(lxcpath) / name / "config").read_text()
    container_root = Path(lxcpath) / name / "rootfs"
    assert (container_root / "srv" / "app").is_dir()
    assert (container_root / "usr" / "local" / "bin" / "serve").stat().st_mode & 0o111

    started = lxc("lxc-start", name, lxcpath)
    assert started.returncode == 0, started.stderr
    assert lxc("lxc-wait", name, lxcpath, "-s", "RUNNING", "-t", "30").returncode == 0

    def inside(*argv: str) -> str:
        proc = lxc("lxc-attach", name, lxcpath, "--clear-env", "--", *argv)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    wait_for((container_root / "tmp" / "args").exists, what="the image's command")
    assert (container_root / "tmp" / "args").read_text() == "first second\n"
    assert inside("cat", "/proc/1/cmdline").split("\0")[:4] == [
        "/bin/sh", "/usr/local/bin/serve", "first", "second"
    ]  # fmt: skip
    environ = inside("cat", "/proc/1/environ").split("\0")
    assert {"PATH=/usr/local/bin:/bin", "FOO=from-image", "HOME=/home/user"} <= set(environ)
    assert inside("readlink", "/proc/1/cwd").strip() == "/srv/app"
    status = dict(line.split(":", 1) for line in inside("cat", "/proc/1/status").splitlines())
    assert status["Uid"].split()[0] == "1000" and status["Gid"].split()[0] == "1000"

    # lxc-stop sends lxc.signal.halt: the image's SIGUSR1 ends it (SIGPWR or SIGTERM would be
    # ignored by this PID 1 until the 60 s timeout and a SIGKILL).
    stopped = lxc("lxc-stop", name, lxcpath, "-t", "60")
    assert stopped.returncode == 0, stopped.stderr
    assert (container_root / "tmp" / "stopped").read_text() == "stopped by USR1\n"
    assert lxc("lxc-info", name, lxcpath, "-s", "-H").stdout.strip() == "STOPPED"
    destroyed = lxc("lxc-destroy", name, lxcpath)
    assert destroyed.returncode == 0, destroyed.stderr
    assert not (Path(lxcpath) / name).exists()


@pytest.mark.parametrize(
    ("config", "path", "why"),
    [
        ({"Env": ["PATH=/bin", "EVIL=" + INJECT]}, "config.Env[1]", "line feed"),
        ({"Env": ["PATH=/bin\r"]}, "config.Env[0]", "carriage return"),
        ({"Cmd": ["sleep", "1\n" + INJECT]}, "config.Cmd[1]", "line feed"),
        ({"Env": ["PATH=/bin", "ROOT=LXC_ROOTFS"]}, "config.Env[1]", "LXC_ROOTFS"),
    ],
)  # fmt: skip
def test_injection_image_is_refused_and_nothing_written(
    busybox_image: ImageArchive,
    data_root: str,
    tmp_path: Path,
    config: dict[str, object],
    path: str,
    why: str,
) -> None:
    ref = "localhost/nexcage-e2e/lxc-inject:1"
    layout = with_config(busybox_image, tmp_path / "layout", ref, **config)
    imported = nexcage(data_root, "image", "import", layout)
    assert imported.returncode == 0, imported.stderr
    out = tmp_path / "out"
    proc = nexcage(data_root, "template", ref, "--format", "lxc", "-o", os.fspath(out))
    assert proc.returncode == 1
    assert path in proc.stderr and why in proc.stderr
    assert not out.exists()
    # An existing output directory stays as it was: no tarball, no work directory.
    out.mkdir()
    assert nexcage(data_root, "template", ref, "--format", "lxc", "-o", os.fspath(out)).returncode
    assert list(out.iterdir()) == []


def test_usage(data_root: str) -> None:
    assert nexcage(data_root, "template", "x").returncode == 2
    proc = nexcage(data_root, "template", "x", "--format", "tgz")
    assert proc.returncode == 2 and "unknown --format" in proc.stderr
