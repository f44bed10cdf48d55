"""Containers straight from images: ``create --image`` / ``run --image`` / ``bundle``, through
the nexcage CLI with crun and runc behind it.

The test image is the busybox test image with an Entrypoint, a Cmd, Env, a WorkingDir missing
from its rootfs and ``User 1000:1000``; the container reports what it sees from inside. Images
reach the store through ``nexcage image import`` (no registry needed).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.busybox import TEST_IMAGE_REF, ImageArchive

REPO = Path(__file__).resolve().parents[2]
NEXCAGE = os.fspath(REPO / ".venv" / "bin" / "nexcage")

pytestmark = [pytest.mark.e2e, pytest.mark.root]

REPORT = 'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) cwd=$(pwd) foo=$FOO home=$HOME args=$*"'
IMAGE = "localhost/nexcage-e2e/report:1"


def with_config(base: ImageArchive, out: Path, ref: str, **config: Any) -> str:
    """An OCI layout dir: ``base``'s layer with its config's ``config`` updated."""
    with tarfile.open(base.path) as tf:
        tf.extractall(out, filter="data")
    blobs = out / "blobs" / "sha256"

    def put(doc: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(doc, sort_keys=True).encode()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    image = json.loads((blobs / base.config_digest[7:]).read_text())
    image["config"].update(config)
    manifest = json.loads((blobs / base.manifest_digest[7:]).read_text())
    manifest["config"].update(put(image))
    index = json.loads((out / "index.json").read_text())
    index["manifests"][0].update(put(manifest))
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = ref
    (out / "index.json").write_text(json.dumps(index))
    return os.fspath(out)


@pytest.fixture(scope="module")
def report_image(busybox_image: ImageArchive, tmp_path_factory: pytest.TempPathFactory) -> str:
    return with_config(
        busybox_image,
        tmp_path_factory.mktemp("report") / "layout",
        IMAGE,
        Entrypoint=["sh", "-c", REPORT, "entry"],
        Cmd=["default", "args"],
        Env=["PATH=/bin", "FOO=from-image"],
        WorkingDir="/work/dir",
        User="1000:1000",
        StopSignal="SIGINT",
    )


class Nexcage:
    def __init__(self, root: str, data_root: str, backend: str) -> None:
        self.root, self.data_root, self.backend = root, data_root, backend
        self.ids: set[str] = set()

    def argv(self, *args: str) -> list[str]:
        return [NEXCAGE, "--root", self.root, "--data-root", self.data_root,
                "--runtime", self.backend, *args]  # fmt: skip

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.argv(*args), capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, timeout=60)  # fmt: skip
        if check and proc.returncode != 0:
            raise AssertionError(f"nexcage {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
        return proc

    def detached(self, *args: str, out: str = os.devnull) -> subprocess.CompletedProcess[str]:
        """A verb whose container keeps our stdio: give it files, never pipes."""
        with open(out, "w") as stdout, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(self.argv(*args), text=True, check=False, timeout=60,
                                  stdin=subprocess.DEVNULL, stdout=stdout, stderr=err)  # fmt: skip
            err.seek(0)
            proc.stderr = err.read()
        return proc

    def container_dir(self, cid: str) -> Path:
        return Path(self.data_root) / "containers" / cid

    def wait_stopped(self, cid: str) -> dict[str, Any]:
        deadline = time.monotonic() + 20
        while True:
            state = json.loads(self("state", cid).stdout)
            if state["status"] == "stopped":
                return state
            assert time.monotonic() < deadline, state
            time.sleep(0.05)


@pytest.fixture(scope="module")
def data_root(report_image: str, busybox_image: ImageArchive) -> Iterator[str]:
    """One image store for the module, holding both test images (imported through the CLI)."""
    path = tempfile.mkdtemp(prefix="nexcage-data-")
    with tempfile.TemporaryDirectory() as root:
        n = Nexcage(root, path, "crun")
        n("image", "import", report_image)
        n("image", "import", busybox_image.path)  # TEST_IMAGE_REF: Cmd /bin/sh, no Entrypoint
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["crun", "runc"])
def nx(
    request: pytest.FixtureRequest, runtime_root: str, hugetlb_cgroup_v1: list[str],
    data_root: str,
) -> Iterator[Nexcage]:  # fmt: skip
    n = Nexcage(runtime_root, data_root, request.param)
    yield n
    for cid in n.ids:
        n("delete", "--force", cid, check=False)
    leftovers = [cid for cid in n.ids if n.container_dir(cid).exists()]
    assert leftovers == [], f"container directories left behind: {leftovers}"
    rootfs = [p.name for p in Path(data_root, "storage").glob("*/containers/*")]
    assert rootfs == [], f"container rootfs left behind: {rootfs}"


def parse(line: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in line.split(" ", 6)[:6]) | {
        "args": line.split(" args=", 1)[1]
    }


def test_run_image_entrypoint_env_workdir_user(nx: Nexcage) -> None:
    nx.ids.add("img-run")
    proc = nx("run", "--image", IMAGE, "img-run")
    seen = parse(proc.stdout.strip())
    assert seen == {
        "uid": "1000", "gid": "1000", "groups": "1000", "cwd": "/work/dir",
        "foo": "from-image", "home": "/home/user", "args": "default args",
    }  # fmt: skip
    assert not nx.container_dir("img-run").exists()  # foreground run deletes


def test_command_after_dashes_replaces_cmd(nx: Nexcage) -> None:
    nx.ids.add("img-cmd")
    proc = nx("run", "--image", IMAGE, "img-cmd", "--", "one", "two words")
    assert parse(proc.stdout.strip())["args"] == "one two words"


def test_create_start_delete_removes_the_rootfs(nx: Nexcage, tmp_path: Path) -> None:
    nx.ids.add("img-c")
    out = tmp_path / "out"
    proc = nx.detached("create", "--image", IMAGE, "img-c", out=os.fspath(out))
    assert proc.returncode == 0, proc.stderr
    directory = nx.container_dir("img-c")
    state = json.loads(nx("state", "img-c").stdout)
    assert state["status"] == "created"
    assert state["bundle"] == os.fspath(directory)
    # the rootfs comes from the storage driver (layers unpacked once, shared), not the bundle
    rootfs = Path(state["rootfs"])
    assert rootfs.is_relative_to(Path(nx.data_root, "storage"))
    assert state["annotations"]["org.opencontainers.image.stopSignal"] == "SIGINT"
    assert (rootfs / "work" / "dir").is_dir()  # WorkingDir made
    config = json.loads((directory / "config.json").read_text())
    assert config["process"]["terminal"] is False and config["hostname"] == "img-c"
    assert config["root"]["path"] == os.fspath(rootfs)
    nx("start", "img-c")
    nx.wait_stopped("img-c")
    assert parse(out.read_text().strip())["uid"] == "1000"
    nx("delete", "img-c")
    assert not directory.exists()
    assert not rootfs.exists()
    assert json.loads(nx("list", "--format", "json").stdout) == []


def test_run_detached_then_force_delete(nx: Nexcage) -> None:
    nx.ids.add("img-d")
    proc = nx.detached("run", "-d", "--image", TEST_IMAGE_REF, "img-d", "--", "sleep", "300")
    assert proc.returncode == 0, proc.stderr
    state = json.loads(nx("state", "img-d").stdout)
    assert state["status"] == "running"
    assert nx.container_dir("img-d").is_dir()
    nx("delete", "--force", "img-d")
    assert not nx.container_dir("img-d").exists()


def test_failed_creates_leave_nothing(nx: Nexcage) -> None:
    nx.ids.update({"img-f1", "img-f2"})
    # the backend fails: the command does not exist in the image (both check it at create)
    proc = nx.detached("create", "--image", TEST_IMAGE_REF, "img-f1", "--", "/no/such/binary")
    assert proc.returncode == 1, proc.stderr
    assert nx("state", "img-f1", check=False).returncode == 1
    assert not nx.container_dir("img-f1").exists()
    # the image is unknown and may not be pulled
    proc = nx("create", "--image", "localhost/absent:1", "--pull", "never", "img-f2", check=False)
    assert proc.returncode == 1 and "image not known" in proc.stderr
    assert nx("state", "img-f2", check=False).returncode == 1
    assert not nx.container_dir("img-f2").exists()


def test_same_id_twice(nx: Nexcage) -> None:
    nx.ids.add("img-twice")
    assert nx.detached("create", "--image", IMAGE, "img-twice").returncode == 0
    rootfs = Path(json.loads(nx("state", "img-twice").stdout)["rootfs"])
    proc = nx("create", "--image", IMAGE, "img-twice", check=False)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert (rootfs / "bin").is_dir()  # untouched


def test_bundle_verb_writes_a_runnable_bundle(nx: Nexcage, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    proc = nx("bundle", IMAGE, os.fspath(bundle), "--", "bundled")
    assert proc.stdout.split()[0] == IMAGE
    assert sorted(os.listdir(bundle)) == ["config.json", "rootfs"]
    assert (bundle.stat().st_mode & 0o777) == 0o700
    nx.ids.add("img-b")
    run = nx("run", "--bundle", os.fspath(bundle), "img-b")
    assert parse(run.stdout.strip())["args"] == "bundled"
    again = nx("bundle", IMAGE, os.fspath(bundle), check=False)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_usage_errors(nx: Nexcage) -> None:
    proc = nx("create", "--pull", "never", "x", check=False)
    assert proc.returncode == 2 and "needs --image" in proc.stderr
    proc = nx("create", "--image", IMAGE, "--pull", "sometimes", "x", check=False)
    assert proc.returncode == 2 and "--pull" in proc.stderr
    proc = nx("create", "--image", IMAGE, "--bundle", "/tmp", "x", check=False)
    assert proc.returncode == 2


def test_image_import_export_cli(report_image: str, tmp_path: Path) -> None:
    """`image import` / `image export` through the CLI; the export is what skopeo reads."""
    from support import require_tool

    n = Nexcage(os.fspath(tmp_path / "root"), os.fspath(tmp_path / "data"), "crun")
    junk = tmp_path / "junk.tar"
    with tarfile.open(junk, "w") as tf:
        tf.add(__file__, arcname="notes.txt")
    proc = n("image", "import", os.fspath(junk), check=False)
    assert proc.returncode == 1 and "not an image archive" in proc.stderr
    assert json.loads(n("image", "ls", "--format", "json").stdout) == []
    ref, digest = n("image", "import", report_image).stdout.split()
    assert ref == IMAGE
    out = tmp_path / "out.tar"
    n("image", "export", IMAGE, os.fspath(out))
    proc = subprocess.run([require_tool("skopeo"), "inspect", f"oci-archive:{out}"],
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    inspected = json.loads(proc.stdout)
    assert inspected["Digest"] == digest and inspected["Env"] == ["PATH=/bin", "FOO=from-image"]
