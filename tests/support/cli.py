"""Driving the nexcage CLI from storage e2e tests: one state root, one data root, one backend,
one storage driver (``NEXCAGE_STORAGE_DRIVER``), optional extra environment.

Verbs whose container inherits our stdio (create, start, run) get files, never pipes: a
detached container holding a pipe would keep the call waiting (see test_create_image.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
NEXCAGE = os.fspath(REPO / ".venv" / "bin" / "nexcage")


class Result:
    """A finished call: exit status, stdout, stderr and the JSON log lines it wrote."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.log: list[dict[str, Any]] = []

    def error(self) -> str:
        """The message of the last ``"level":"error"`` log line (what engines show)."""
        errors = [line["msg"] for line in self.log if line.get("level") == "error"]
        assert errors, f"no error line in the log: {self.log} (stderr: {self.stderr})"
        return str(errors[-1])


class Nexcage:
    def __init__(
        self,
        root: str,
        data_root: str,
        *,
        backend: str = "crun",
        driver: str = "dir",
        env: Mapping[str, str] | None = None,
        config: str | None = None,
    ) -> None:
        self.root, self.data_root, self.backend, self.driver = root, data_root, backend, driver
        self.env = {**os.environ, "NEXCAGE_STORAGE_DRIVER": driver, **(env or {})}
        self.env.pop("NEXCAGE_TEST_HOOK", None)
        self.config = config
        self.ids: set[str] = set()

    def argv(self, *args: str, log: str | None = None) -> list[str]:
        extra = ["--config", self.config] if self.config else []
        if log:
            extra += ["--log", log, "--log-format", "json"]
        return [NEXCAGE, "--root", self.root, "--data-root", self.data_root,
                "--runtime", self.backend, *extra, *args]  # fmt: skip

    def __call__(
        self,
        *args: str,
        check: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        debug: bool = False,
    ) -> Result:
        """A verb whose output we read; its container (if any) gets files, never our pipes.
        The log (JSON lines, debug ones with ``debug``) is in ``result.log``."""
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "log.json")
            argv = self.argv(*(("--debug",) if debug else ()), *args, log=log)
            with (
                open(os.path.join(tmp, "out"), "w+") as out,
                open(os.path.join(tmp, "err"), "w+") as err,
            ):
                proc = subprocess.run(argv, text=True, check=False, timeout=timeout,
                                      stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                      env={**self.env, **(env or {})})  # fmt: skip
                out.seek(0)
                err.seek(0)
                result = Result(proc.returncode, out.read(), err.read())
            if os.path.exists(log):
                with open(log) as f:
                    result.log = [json.loads(line) for line in f if line.startswith("{")]
        if check and result.returncode != 0:
            raise AssertionError(
                f"nexcage {' '.join(args)} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def error(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run a verb that must fail (exit 1); return the message of its last error line."""
        proc = self(*args, check=False, env=env)
        assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
        return proc.error()

    def state(self, cid: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self("state", cid).stdout)
        return result

    def wait_stopped(self, cid: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(cid)
            if state["status"] == "stopped":
                return state
            assert time.monotonic() < deadline, state
            time.sleep(0.05)

    def cleanup(self) -> None:
        for cid in sorted(self.ids):
            self("delete", "--force", cid, check=False)

    def storage_root(self) -> Path:
        return Path(self.data_root, "storage", self.driver)

    def leftovers(self) -> dict[str, list[str]]:
        """What the data root still holds for containers: should be empty after deletes."""
        found: dict[str, list[str]] = {}
        bundles = Path(self.data_root, "containers")
        if bundles.is_dir():
            found["bundles"] = sorted(os.listdir(bundles))
        containers = self.storage_root() / "containers"
        if containers.is_dir():
            found["rootfs"] = sorted(os.listdir(containers))
        layers = self.storage_root() / "layers"
        if layers.is_dir():
            found["partial layers"] = sorted(n for n in os.listdir(layers) if n.startswith("."))
        return {k: v for k, v in found.items() if v}


@contextmanager
def storage_setup(driver: str, workdir: Path) -> Iterator[tuple[str, str | None]]:
    """A data root where ``driver`` works: (data root, config file or None). btrfs: a loop
    btrfs; zfs: zfs-fuse, a file-backed pool whose dataset is mounted at the driver root and a
    config file naming it; overlay and dir: a plain directory (for overlay, whatever is still
    mounted below it is unmounted after). Everything is undone after."""
    from support import unmount_under
    from support.storage import loop_btrfs, zfs_fuse_daemon, zfs_pool

    with ExitStack() as stack:
        config: str | None = None
        if driver == "btrfs":
            data_root = stack.enter_context(loop_btrfs(workdir)) / "data"
        else:
            data_root = workdir / "data"
        data_root.mkdir()
        if driver == "zfs":
            stack.enter_context(zfs_fuse_daemon(workdir))
            dataset = stack.enter_context(zfs_pool(workdir, data_root / "storage" / "zfs"))
            conf = workdir / "config.toml"
            conf.write_text(f'[storage]\ndriver = "zfs"\nzfs_dataset = "{dataset}"\n')
            config = os.fspath(conf)
        if driver == "overlay":
            stack.callback(unmount_under, os.fspath(data_root))
        yield os.fspath(data_root), config
