"""create+start+stop+delete of a busybox container: nexcage (--runtime lxc) vs the lxc-* tools.

Interleaved rounds, medians and the ratio (target: nexcage <= 1.5x the direct path). The direct
path is what an LXC user runs for the same container: a config with the same keys nexcage
writes (minus its init helper), then ``lxc-start -d``, ``lxc-wait -s RUNNING``, ``lxc-stop -k``
and ``lxc-destroy``. nexcage's path is the engine's: ``create``, ``start``, ``kill KILL``,
``delete --force``, one process each.

    .venv/bin/python bench/lxc_lifecycle.py [ROUNDS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.fspath(REPO / "tests"))

from support.busybox import make_bundle  # noqa: E402

NEXCAGE = os.fspath(REPO / ".venv" / "bin" / "nexcage")
DEVNULL = subprocess.DEVNULL


def run(argv: list[str]) -> None:
    # stderr to a file, not a pipe: the container inherits it and would hold the pipe open.
    with tempfile.TemporaryFile() as err:
        proc = subprocess.run(argv, check=False, stdin=DEVNULL, stdout=DEVNULL, stderr=err)
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"{argv} -> {proc.returncode}: {err.read().decode()}")


def nexcage_round(root: str, bundle: str, cid: str) -> float:
    base = [NEXCAGE, "--root", root, "--runtime", "lxc"]
    started = time.perf_counter()
    run([*base, "create", "--bundle", bundle, cid])
    run([*base, "start", cid])
    run([*base, "kill", cid, "KILL"])
    run([*base, "delete", "--force", cid])
    return time.perf_counter() - started


def lxc_round(lxcpath: str, rootfs: str, cid: str) -> float:
    started = time.perf_counter()
    directory = Path(lxcpath) / cid
    directory.mkdir()
    (directory / "config").write_text(
        f"lxc.rootfs.path = dir:{rootfs}\nlxc.rootfs.managed = 0\nlxc.uts.name = {cid}\n"
        "lxc.net.0.type = empty\n"
        "lxc.apparmor.profile = unconfined\nlxc.console.path = none\nlxc.tty.max = 0\n"
        "lxc.mount.auto = proc:rw sys:ro\nlxc.autodev = 1\nlxc.pty.max = 1024\n"
        "lxc.init.cmd = /bin/sleep 300\n"
        f"lxc.cgroup.dir.container = nexcage-bench/{cid}\n"
        f"lxc.cgroup.dir.monitor = nexcage-bench.monitor/{cid}\n"
    )
    run(["lxc-start", "-n", cid, "-P", lxcpath])
    run(["lxc-wait", "-n", cid, "-P", lxcpath, "-s", "RUNNING"])
    run(["lxc-stop", "-k", "-n", cid, "-P", lxcpath])
    run(["lxc-destroy", "-n", cid, "-P", lxcpath])
    return time.perf_counter() - started


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    work = Path(tempfile.mkdtemp(prefix="nexcage-bench-lxc-"))
    try:
        bundle = make_bundle(work / "bundle", ["sleep", "300"])
        root, lxcpath = os.fspath(work / "root"), os.fspath(work / "lxcpath")
        os.makedirs(lxcpath)
        ours: list[float] = []
        theirs: list[float] = []
        nexcage_round(root, bundle, "warm")
        for i in range(rounds):
            ours.append(nexcage_round(root, bundle, f"n{i}"))
            theirs.append(lxc_round(lxcpath, os.path.join(bundle, "rootfs"), f"l{i}"))
        mine, direct = statistics.median(ours), statistics.median(theirs)
        print(f"rounds: {rounds} (interleaved)")
        print(f"nexcage create+start+kill+delete   median {mine * 1000:7.1f} ms")
        print(f"lxc-start/wait/stop/destroy        median {direct * 1000:7.1f} ms")
        print(f"ratio nexcage / lxc-*              {mine / direct:7.2f}x  (target <= 1.5x)")
    finally:
        # Whatever a failed round left: nexcage containers by id, then the files.
        names = os.listdir(os.path.join(work, "root")) if (work / "root").exists() else []
        for cid in names:
            if not cid.startswith("."):
                base = [NEXCAGE, "--root", os.fspath(work / "root"), "--runtime", "lxc"]
                subprocess.run([*base, "delete", "--force", cid], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
