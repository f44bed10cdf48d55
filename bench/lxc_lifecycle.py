"""create+start+stop+delete of a busybox container: nexcage (--runtime lxc) vs the lxc-* tools.

Interleaved rounds, medians per verb and of the whole cycle, and the ratio (target: nexcage <=
1.5x the direct path). The direct path is what an LXC user runs for the same container: a config
with the same keys nexcage writes (minus its init helper), then ``lxc-start -d``, ``lxc-wait -s
RUNNING``, ``lxc-stop -k`` and ``lxc-destroy``. nexcage's path is the engine's: ``create``,
``start``, ``kill KILL``, ``delete --force``, one process each.

    .venv/bin/python bench/lxc_lifecycle.py [ROUNDS] [--tmpdir DIR] [--nexcage PATH] [--json]

``--tmpdir`` holds both sides' state (nexcage's ``--root`` and the direct ``lxcpath``) and the
bundle: ``/dev/shm`` puts them on tmpfs, as ``/run/nexcage`` is on a normal host. ``--nexcage``
times another build (a copy of an older tree, for before/after figures).
"""

from __future__ import annotations

import argparse
import json
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
OURS = ("create", "start", "kill", "delete")
THEIRS = ("config", "lxc-start", "lxc-wait", "lxc-stop", "lxc-destroy")


def run(argv: list[str]) -> float:
    # stderr to a file, not a pipe: the container inherits it and would hold the pipe open.
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.run(argv, check=False, stdin=DEVNULL, stdout=DEVNULL, stderr=err)
        took = time.perf_counter() - started
        if proc.returncode:
            err.seek(0)
            raise SystemExit(f"{argv} -> {proc.returncode}: {err.read().decode()}")
    return took


def nexcage_round(nexcage: str, root: str, bundle: str, cid: str) -> list[float]:
    base = [nexcage, "--root", root, "--runtime", "lxc"]
    return [
        run([*base, "create", "--bundle", bundle, cid]),
        run([*base, "start", cid]),
        run([*base, "kill", cid, "KILL"]),
        run([*base, "delete", "--force", cid]),
    ]


def lxc_round(lxcpath: str, rootfs: str, cid: str) -> list[float]:
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
    config = time.perf_counter() - started
    return [
        config,
        run(["lxc-start", "-n", cid, "-P", lxcpath]),
        run(["lxc-wait", "-n", cid, "-P", lxcpath, "-s", "RUNNING"]),
        run(["lxc-stop", "-k", "-n", cid, "-P", lxcpath]),
        run(["lxc-destroy", "-n", cid, "-P", lxcpath]),
    ]


def remove_cgroups() -> None:
    """The cgroup parents the direct path's lxc.cgroup.dir keys made (LXC removes the leaves)."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for top in hierarchy.glob("nexcage-bench*"):
            for path in [*sorted(top.rglob("*"), key=lambda p: -len(p.parts)), top]:
                if path.is_dir():
                    try:
                        path.rmdir()
                    except OSError:
                        pass  # still busy: a container of a failed round


def _ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", nargs="?", type=int, default=15)
    parser.add_argument("--tmpdir", default=None, help="where state and bundle live")
    parser.add_argument("--nexcage", default=NEXCAGE, help="the nexcage launcher to time")
    parser.add_argument("--json", action="store_true", help="the figures as JSON too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nexcage-bench-lxc-", dir=args.tmpdir))
    root = os.fspath(work / "root")
    try:
        bundle = make_bundle(work / "bundle", ["sleep", "300"])
        lxcpath = os.fspath(work / "lxcpath")
        os.makedirs(lxcpath)
        ours: list[list[float]] = []
        theirs: list[list[float]] = []
        nexcage_round(args.nexcage, root, bundle, "warm")
        for i in range(args.rounds):
            ours.append(nexcage_round(args.nexcage, root, bundle, f"n{i}"))
            theirs.append(lxc_round(lxcpath, os.path.join(bundle, "rootfs"), f"l{i}"))
        mine = _ms([sum(r) for r in ours])
        direct = _ms([sum(r) for r in theirs])
        figures = {
            "rounds": args.rounds,
            "tmpdir": os.fspath(work.parent),
            "nexcage": {v: _ms([r[i] for r in ours]) for i, v in enumerate(OURS)},
            "lxc": {v: _ms([r[i] for r in theirs]) for i, v in enumerate(THEIRS)},
            "nexcage_cycle_ms": mine,
            "lxc_cycle_ms": direct,
            "ratio": round(mine / direct, 2),
        }
        print(f"rounds: {args.rounds} (interleaved), state and bundle in {work.parent}")
        print("nexcage  " + "  ".join(f"{v} {figures['nexcage'][v]:6.1f}" for v in OURS))
        print("lxc-*    " + "  ".join(f"{v} {figures['lxc'][v]:6.1f}" for v in THEIRS))
        print(f"nexcage create+start+kill+delete   median {mine:7.1f} ms")
        print(f"lxc-start/wait/stop/destroy        median {direct:7.1f} ms")
        print(f"ratio nexcage / lxc-*              {mine / direct:7.2f}x  (target <= 1.5x)")
        if args.json:
            print(json.dumps(figures))
    finally:
        # Whatever a failed round left: nexcage containers by id, then the files.
        names = os.listdir(root) if os.path.isdir(root) else []
        for cid in names:
            if not cid.startswith("."):
                base = [args.nexcage, "--root", root, "--runtime", "lxc"]
                subprocess.run([*base, "delete", "--force", cid], capture_output=True, check=False)
        lxcpath = os.fspath(work / "lxcpath")
        for cid in os.listdir(lxcpath) if os.path.isdir(lxcpath) else []:
            for tool in (["lxc-stop", "-k"], ["lxc-destroy", "-f"]):
                subprocess.run([*tool, "-n", cid, "-P", lxcpath], capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)
        remove_cgroups()


if __name__ == "__main__":
    main()
