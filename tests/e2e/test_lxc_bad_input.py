"""Bad input for the lxc backend: a clear error, and nothing left behind (no LXC config at all
for refused bundles)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_create_image import with_config
from test_lxc_lifecycle import Lxc, lxc  # noqa: F401  (the fixture)

from support import pid_alive, wait_for
from support.busybox import ImageArchive

pytestmark = [pytest.mark.e2e, pytest.mark.root]

INJECT = "x\nlxc.mount.entry = / host-root none rbind,create=dir 0 0"


def _lxc_dirs(root: str) -> list[str]:
    backend = Path(root) / ".backends" / "lxc"
    return (
        [p.name for p in backend.iterdir() if not p.name.startswith(".")]
        if backend.exists()
        else []
    )


def _no_config_mentions(root: str) -> None:
    for path in Path(root).rglob("config"):
        assert "host-root" not in path.read_text(errors="replace"), path


def test_unsupported_field_lists_its_path(lxc: Lxc, busybox_bundle: Callable[..., str]) -> None:  # noqa: F811 (fixture)
    bundle = busybox_bundle(
        ["true"],
        extra={"hooks": {"prestart": [{"path": "/bin/true"}]},
               "linux": {"intelRdt": {"closID": "x"}}},
    )  # fmt: skip
    proc = lxc.create("u1", bundle, check=False)
    assert proc.returncode == 1
    assert "hooks.prestart" in proc.stderr and "linux.intelRdt" in proc.stderr
    assert lxc("state", "u1", check=False).returncode == 1
    assert _lxc_dirs(lxc.root) == []


@pytest.mark.parametrize(
    ("field", "extra", "path"),
    [
        ("env", {"process": {"env": ["PATH=/bin", "EVIL=" + INJECT]}}, "process.env[1]"),
        ("cwd", {"process": {"cwd": "/" + INJECT}}, "process.cwd"),
        ("hostname", {"hostname": INJECT}, "hostname"),
        ("stop signal", {"annotations": {"org.opencontainers.image.stopSignal": "TERM\n" + INJECT}},
         "stopSignal"),
    ],
)  # fmt: skip
def test_config_line_injection_is_refused(
    lxc: Lxc,  # noqa: F811 (fixture)
    busybox_bundle: Callable[..., str],
    field: str,
    extra: dict[str, object],
    path: str,
) -> None:
    """An image's Env / WorkingDir / StopSignal (or a bundle's hostname) with a newline meant to
    add an lxc.mount.entry: refused before anything is written."""
    bundle = busybox_bundle(["true"], extra=extra)
    proc = lxc.create("inj", bundle, check=False)
    assert proc.returncode == 1, field
    assert path in proc.stderr and "line feed" in proc.stderr
    assert _lxc_dirs(lxc.root) == []
    _no_config_mentions(lxc.root)
    assert not Path("/var/lib/lxc/inj").exists()


def test_missing_executable_fails_create(lxc: Lxc, busybox_bundle: Callable[..., str]) -> None:  # noqa: F811 (fixture)
    proc = lxc.create("m1", busybox_bundle(["/nonexistent"]), check=False)
    assert proc.returncode == 1
    assert "no such file or directory" in proc.stderr.lower()
    proc = lxc.create("m2", busybox_bundle(["nonexistent-cmd"]), check=False)
    assert "executable file not found in $PATH" in proc.stderr
    assert _lxc_dirs(lxc.root) == []


def test_init_that_exits_at_once(lxc: Lxc, busybox_bundle: Callable[..., str]) -> None:  # noqa: F811 (fixture)
    lxc.create("q1", busybox_bundle(["true"]))
    init = lxc.state("q1")["pid"]
    assert lxc.state("q1")["status"] == "created" and pid_alive(init)
    lxc("start", "q1")
    lxc.wait_status("q1", "stopped")
    wait_for(lambda: not pid_alive(init), what="init to exit")
    lxc("delete", "q1")
    assert _lxc_dirs(lxc.root) == []


def test_missing_rootfs(lxc: Lxc, busybox_bundle: Callable[..., str]) -> None:  # noqa: F811 (fixture)
    bundle = busybox_bundle(["true"])
    shutil.rmtree(os.path.join(bundle, "rootfs"))
    proc = lxc.create("nr", bundle, check=False)
    assert proc.returncode == 1 and "rootfs" in proc.stderr
    assert _lxc_dirs(lxc.root) == []


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"Env": ["PATH=/bin", "EVIL=" + INJECT]}, ("process.env[1]", "line feed")),
        ({"WorkingDir": "/srv" + INJECT}, ("config.WorkingDir", "newline")),
        ({"User": "0\nlxc.init.uid = 0"}, ("config.User", "newline")),
        ({"StopSignal": "TERM\n" + INJECT}, ("config.StopSignal", "newline")),
    ],
    ids=["env", "workdir", "user", "stopsignal"],
)
def test_image_line_injection_is_refused(
    lxc: Lxc,  # noqa: F811 (fixture)
    busybox_image: ImageArchive,
    tmp_path: Path,
    config: dict[str, object],
    words: tuple[str, str],
) -> None:
    """``create --image`` with the lxc backend: an image whose Env, WorkingDir, User or
    StopSignal holds a newline meant to add an lxc.mount.entry is refused, with nothing left in
    the data root or the LXC path."""
    ref = "localhost/nexcage-e2e/lxc-inject:1"
    data = tmp_path / "data"
    layout = with_config(busybox_image, tmp_path / "layout", ref, **config)
    assert lxc("--data-root", os.fspath(data), "image", "import", layout).returncode == 0
    lxc.ids.add("img-inj")
    proc = lxc.detached("--data-root", os.fspath(data), "create", "--image", ref, "img-inj",
                        check=False)  # fmt: skip
    assert proc.returncode == 1
    assert all(word in proc.stderr for word in words), proc.stderr
    assert lxc("state", "img-inj", check=False).returncode == 1
    assert _lxc_dirs(lxc.root) == []
    _no_config_mentions(lxc.root)
    assert list(data.glob("containers/*")) == []
    assert list(data.glob("storage/*/containers/*")) == []
