"""Lifecycle benchmark: nexcage in front of crun/runc against crun/runc called directly.

Usage: .venv/bin/python bench/lifecycle.py [--cycles N] [--json] [--tmpdir DIR]

Each cycle runs create, state (on the created container), start, wait (poll ``state`` until
``stopped``) and delete of a busybox ``/bin/true`` container for four arms: nexcage --runtime
crun, crun, nexcage --runtime runc, runc. The arms and two probes (a bare ``python -I -S -c pass``
with the venv interpreter and ``nexcage --version``) run interleaved in one loop, in an order that
rotates every cycle, so drift on a noisy machine hits every arm alike.

Every call goes through a tiny C trampoline (built with ``cc`` at start, see bench/rusage.py) that
times its own ``posix_spawn`` .. ``wait4`` of the command on CLOCK_MONOTONIC (the clock of
``time.perf_counter_ns``, which times the whole call from here) and reports the command's
``ru_maxrss`` and user+sys CPU time. Stdio: stdin and stdout are /dev/null (``state`` writes to a
regular file) and stderr is a regular file read only on failure: the container inherits the
runtime's fds, so a pipe would block the call until the container exits. Needs root, crun, runc
and a C compiler; see bench/README.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
NEXCAGE = REPO / ".venv" / "bin" / "nexcage"
sys.path.insert(0, os.fspath(REPO / "tests"))

from rusage import build_trampoline  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from support.busybox import make_bundle  # noqa: E402  (tests/ is not a package on sys.path)

VERBS = ("create", "state", "start", "wait", "delete")
TIMED_VERBS = ("create", "state", "start", "delete")  # one invocation each: overhead applies
ARMS = ("nexcage-crun", "crun", "nexcage-runc", "runc")
PAIRS = (("nexcage-crun", "crun"), ("nexcage-runc", "runc"))
PROBES = ("python", "nexcage-version")
CALL_TIMEOUT_S = 30  # one runtime call; a hung call is killed (by pid) and counts as an error
WAIT_LIMIT_S = 10.0  # a /bin/true container that is not stopped after this is an error
MAX_ERRORS = 5  # give up after this many failed cycles: the figures would mean nothing
TARGET_OVERHEAD_RATIO = 1.3  # issue: overhead per invocation <= 1.3 x bare interpreter start
TARGET_RSS_MIB = 25.0


class BenchError(Exception):
    """A call failed: which arm, which verb, and what the tool said."""

    def __init__(self, arm: str, verb: str, rc: int, stderr: str) -> None:
        super().__init__(f"{arm} {verb}: exit {rc}: {stderr.strip()[-500:]}")
        self.arm, self.verb, self.rc, self.stderr = arm, verb, rc, stderr


class Call:
    """One finished process: wall time, exit code, peak RSS (KiB), user+sys CPU, stdout."""

    __slots__ = ("cpu_ns", "maxrss_kib", "ns", "outer_ns", "rc", "stdout")

    def __init__(self, report: str, outer_ns: int, stdout: str) -> None:
        status, maxrss, user_us, sys_us, ns = (int(field) for field in report.split())
        self.rc = os.waitstatus_to_exitcode(status)
        self.maxrss_kib, self.cpu_ns, self.ns = maxrss, (user_us + sys_us) * 1000, ns
        self.outer_ns, self.stdout = outer_ns, stdout


class Spawner:
    """Runs argv through the trampoline: stdin/stdout on /dev/null (or stdout to a file), stderr
    to a file. Never a pipe: the container inherits the runtime's stdio."""

    def __init__(self, workdir: str) -> None:
        self.trampoline = build_trampoline(workdir, "lifecycle")
        self.env = {"LANG": "C.UTF-8", "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin")}
        self.null = os.open(os.devnull, os.O_RDWR)
        files = ("stdout", "stderr", "report")
        self.out, self.err, self.report = (
            os.open(os.path.join(workdir, name), os.O_RDWR | os.O_CREAT, 0o600) for name in files
        )

    def close(self) -> None:
        for fd in (self.null, self.out, self.err, self.report):
            os.close(fd)

    def run(self, argv: list[str], *, capture: bool = False) -> Call:
        for fd in (self.out, self.err, self.report):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
        actions = [
            (os.POSIX_SPAWN_DUP2, self.null, 0),
            (os.POSIX_SPAWN_DUP2, self.out if capture else self.null, 1),
            (os.POSIX_SPAWN_DUP2, self.err, 2),
            (os.POSIX_SPAWN_DUP2, self.report, 3),
        ]
        command = [self.trampoline, str(CALL_TIMEOUT_S), *argv]
        t0 = time.perf_counter_ns()
        pid = os.posix_spawn(self.trampoline, command, self.env, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        outer_ns = time.perf_counter_ns() - t0
        report = _read_all(self.report)
        if os.waitstatus_to_exitcode(status) != 0 or not report:
            raise BenchError(argv[0], "spawn", os.waitstatus_to_exitcode(status), "trampoline")
        return Call(report, outer_ns, _read_all(self.out) if capture else "")

    def stderr_text(self) -> str:
        return _read_all(self.err)


def _read_all(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


class Arm:
    """One way of running the lifecycle: a command prefix with its private --root."""

    def __init__(self, name: str, prefix: list[str]) -> None:
        self.name, self.prefix = name, prefix
        self.ids: list[str] = []  # every id this arm created, for the leak check

    def argv(self, *args: str) -> list[str]:
        return [*self.prefix, *args]


def make_arms(workdir: str) -> dict[str, Arm]:
    binaries = {name: shutil.which(name) for name in ("crun", "runc")}
    missing = [name for name, path in binaries.items() if path is None]
    if missing:
        raise SystemExit(f"lifecycle: not found on PATH: {', '.join(missing)}")
    arms = {}
    for name in ARMS:
        root = os.path.join(workdir, "root-" + name)
        os.mkdir(root, 0o700)
        backend = name.removeprefix("nexcage-")
        if name.startswith("nexcage-"):
            prefix = [os.fspath(NEXCAGE), "--root", root, "--runtime", backend]
        else:
            prefix = [str(binaries[backend]), "--root", root]
        arms[name] = Arm(name, prefix)
    return arms


# -- one cycle --------------------------------------------------------------------------------


def checked(sp: Spawner, arm: Arm, verb: str, argv: list[str], *, capture: bool = False) -> Call:
    call = sp.run(argv, capture=capture)
    if call.rc != 0:
        raise BenchError(arm.name, verb, call.rc, sp.stderr_text())
    return call


def status_of(sp: Spawner, arm: Arm, cid: str) -> tuple[str, Call]:
    call = checked(sp, arm, "state", arm.argv("state", cid), capture=True)
    try:
        status = json.loads(call.stdout)["status"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(arm.name, "state", 0, f"unparsable state: {call.stdout!r}") from exc
    return str(status), call


def wait_stopped(sp: Spawner, arm: Arm, cid: str) -> tuple[int, int]:
    """Poll ``state`` back to back until the container is stopped: (ns in the polls, polls)."""
    spent = polls = 0
    while True:
        status, call = status_of(sp, arm, cid)
        spent, polls = spent + call.ns, polls + 1
        if status == "stopped":
            return spent, polls
        if spent > WAIT_LIMIT_S * 1e9:
            raise BenchError(arm.name, "wait", 0, f"still {status} after {polls} polls")


def run_cycle(sp: Spawner, arm: Arm, bundle: str, cid: str) -> dict[str, Any]:
    """create, state, start, wait, delete; a container left behind is deleted with --force."""
    arm.ids.append(cid)
    calls: dict[str, Any] = {}
    deleted = False  # a failed create may leave state behind too: always clean up
    try:
        calls["create"] = checked(sp, arm, "create", arm.argv("create", "--bundle", bundle, cid))
        status, calls["state"] = status_of(sp, arm, cid)
        if status != "created":
            raise BenchError(arm.name, "state", 0, f"status {status!r} after create")
        calls["start"] = checked(sp, arm, "start", arm.argv("start", cid))
        calls["wait_ns"], calls["polls"] = wait_stopped(sp, arm, cid)
        calls["delete"] = checked(sp, arm, "delete", arm.argv("delete", cid))
        deleted = True
    finally:
        if not deleted:
            try:
                sp.run(arm.argv("delete", "--force", cid))
            except BenchError:
                pass  # a cleanup failure must not hide the error that got us here
    return calls


# -- the loop ---------------------------------------------------------------------------------


class Samples:
    """Every measurement, keyed by arm (or probe) and verb."""

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, list[Call]]] = {}
        self.wait_ns: dict[str, list[int]] = {arm: [] for arm in ARMS}
        self.polls: dict[str, list[int]] = {arm: [] for arm in ARMS}
        self.cycle_ns: dict[str, list[int]] = {arm: [] for arm in ARMS}

    def add_call(self, who: str, verb: str, call: Call) -> None:
        self.calls.setdefault(who, {}).setdefault(verb, []).append(call)

    def add_cycle(self, arm: str, calls: dict[str, Any]) -> None:
        for verb in TIMED_VERBS:
            self.add_call(arm, verb, calls[verb])
        self.wait_ns[arm].append(calls["wait_ns"])
        self.polls[arm].append(calls["polls"])
        total = sum(calls[v].ns for v in ("create", "start", "delete")) + calls["wait_ns"]
        self.cycle_ns[arm].append(total)


def run_probe(sp: Spawner, name: str) -> Call:
    argv = {
        "python": [os.fspath(PYTHON), "-I", "-S", "-c", "pass"],
        "nexcage-version": [os.fspath(NEXCAGE), "--version"],
    }[name]
    call = sp.run(argv)
    if call.rc != 0:
        raise BenchError(name, "probe", call.rc, sp.stderr_text())
    return call


def run_item(sp: Spawner, arms: dict[str, Arm], item: str, bundle: str, tag: str) -> Any:
    if item in PROBES:
        return run_probe(sp, item)
    return run_cycle(sp, arms[item], bundle, f"{tag}-{item}")


def warm_up(sp: Spawner, arms: dict[str, Arm], bundle: str, tag: str, errors: list[str]) -> None:
    """One unrecorded round of everything: page cache, bytecode, cgroup hierarchy."""
    for item in (*ARMS, *PROBES):
        try:
            run_item(sp, arms, item, bundle, tag)
        except BenchError as exc:
            errors.append(f"warm-up: {exc}")


def loop(sp: Spawner, arms: dict[str, Arm], bundle: str, opts: argparse.Namespace) -> dict:
    """The measured cycles, each running every arm and probe once in a rotating order."""
    samples, errors, notes = Samples(), [], []
    items = [*ARMS, *PROBES]
    prefix = f"nxbench-{os.getpid()}"
    t_start = time.monotonic()
    for i in range(opts.warmup):
        warm_up(sp, arms, bundle, f"{prefix}-w{i}", errors)
    done = 0
    for i in range(opts.cycles):
        if time.monotonic() - t_start > opts.max_seconds:
            notes.append(
                f"stopped after {done} of {opts.cycles} cycles: {opts.max_seconds:g} s cap"
            )
            break
        k = i % len(items)
        for item in items[k:] + items[:k]:
            try:
                result = run_item(sp, arms, item, bundle, f"{prefix}-{i}")
            except BenchError as exc:
                errors.append(str(exc))
                continue
            if item in PROBES:
                samples.add_call(item, "run", result)
            else:
                samples.add_cycle(item, result)
        done += 1
        if len(errors) >= MAX_ERRORS:
            notes.append(f"stopped after {done} cycles: {len(errors)} errors")
            break
    return {"samples": samples, "errors": errors, "notes": notes, "cycles": done}


# -- leak check -------------------------------------------------------------------------------


def leaks(sp: Spawner, arms: dict[str, Arm], bundle: str) -> list[str]:
    """Containers, state directories, cgroups or processes left behind after the loop."""
    found = []
    for arm in arms.values():
        call = sp.run(arm.argv("list", "-q"), capture=True)
        if call.rc != 0 or call.stdout.strip():
            found.append(f"{arm.name} list -q: exit {call.rc}: {call.stdout.split()}")
        root = arm.prefix[arm.prefix.index("--root") + 1]
        extra = sorted(set(os.listdir(root)) - {".backends"})
        if extra and arm.name.startswith("nexcage-"):
            found.append(f"{arm.name}: left in --root: {extra}")
        for cid in arm.ids:
            found.extend(
                f"{arm.name}: cgroup left: {p}" for p in glob.glob(f"/sys/fs/cgroup/*/{cid}")
            )
    rootfs = os.path.join(bundle, "rootfs")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/root") == rootfs:
                found.append(f"process {pid} still has the bundle rootfs as its root")
        except OSError:
            continue
    return found


# -- statistics and report --------------------------------------------------------------------


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def summary(ns: list[int]) -> dict[str, float]:
    ms = [v / 1e6 for v in ns]
    return {"n": len(ms), "median_ms": statistics.median(ms), "p90_ms": p90(ms)}


def call_summary(calls: list[Call]) -> dict[str, float]:
    rss = [c.maxrss_kib / 1024 for c in calls]
    out = summary([c.ns for c in calls])
    out["rss_max_mib"] = max(rss)
    out["rss_median_mib"] = statistics.median(rss)
    out["cpu_median_ms"] = statistics.median(c.cpu_ns / 1e6 for c in calls)
    return out


def arm_figures(s: Samples, arm: str) -> dict[str, Any]:
    verbs = {verb: call_summary(s.calls[arm][verb]) for verb in TIMED_VERBS}
    verbs["wait"] = summary(s.wait_ns[arm])
    verbs["wait"]["polls_median"] = statistics.median(s.polls[arm])
    verbs["wait"]["polls_max"] = max(s.polls[arm])
    verbs["cycle"] = summary(s.cycle_ns[arm])
    return verbs


def figures(result: dict, opts: argparse.Namespace, where: str) -> dict[str, Any]:
    s: Samples = result["samples"]
    arms = {arm: arm_figures(s, arm) for arm in ARMS if s.cycle_ns[arm]}
    probes = {p: call_summary(s.calls[p]["run"]) for p in PROBES if p in s.calls}
    bare = probes["python"]["median_ms"] if "python" in probes else math.nan
    every = [c for verbs in s.calls.values() for calls in verbs.values() for c in calls]
    trampoline_ms = statistics.median((c.outer_ns - c.ns) / 1e6 for c in every) if every else 0.0
    ratios, overhead = {}, {}
    for nx, be in PAIRS:
        if nx not in arms or be not in arms:
            continue
        ratios[nx] = {
            v: arms[nx][v]["median_ms"] / arms[be][v]["median_ms"] for v in (*TIMED_VERBS, "cycle")
        }
        overhead[nx] = {}
        for verb in TIMED_VERBS:
            extra = arms[nx][verb]["median_ms"] - arms[be][verb]["median_ms"]
            overhead[nx][verb] = {"ms": extra, "per_bare_start": extra / bare}
    return {
        "cycles": result["cycles"],
        "warmup": opts.warmup,
        "tmpdir": where,
        "trampoline_ms": trampoline_ms,
        "arms": arms,
        "probes": probes,
        "ratios": ratios,
        "overhead": overhead,
        "targets": {"overhead_per_bare_start": TARGET_OVERHEAD_RATIO, "rss_mib": TARGET_RSS_MIB},
        "errors": result["errors"],
        "leaks": result["leaks"],
        "notes": result["notes"],
    }


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def times_table(f: dict[str, Any]) -> str:
    arms = list(f["arms"])
    rows = []
    for verb in (*VERBS, "cycle"):
        row = [verb if verb != "cycle" else "**cycle** (c+s+w+d)"]
        for arm in arms:
            v = f["arms"][arm][verb]
            row.append(f"{v['median_ms']:.1f} / {v['p90_ms']:.1f}")
        rows.append(row)
    rows.append(
        ["polls (median / max)"]
        + [
            f"{f['arms'][a]['wait']['polls_median']:g} / {f['arms'][a]['wait']['polls_max']}"
            for a in arms
        ]
    )
    return _table(["ms: median / p90", *arms], rows)


def overhead_table(f: dict[str, Any]) -> str:
    pairs = list(f["overhead"])
    header = ["verb"]
    for nx in pairs:
        be = nx.removeprefix("nexcage-")
        header += [f"{nx} / {be}", f"overhead ms ({be})", "overhead / bare start"]
    rows = []
    for verb in (*TIMED_VERBS, "cycle"):
        row = [verb]
        for nx in pairs:
            row.append(f"{f['ratios'][nx][verb]:.2f}x")
            if verb == "cycle":
                row += ["", ""]
                continue
            o = f["overhead"][nx][verb]
            row += [f"{o['ms']:+.1f}", f"{o['per_bare_start']:.2f}x"]
        rows.append(row)
    return _table(header, rows)


def probes_table(f: dict[str, Any]) -> str:
    rows = []
    for name, label in (
        ("python", "python -I -S -c pass"),
        ("nexcage-version", "nexcage --version"),
    ):
        if name in f["probes"]:
            p = f["probes"][name]
            rows.append([label, f"{p['median_ms']:.1f}", f"{p['p90_ms']:.1f}",
                         f"{p['rss_max_mib']:.1f}", f"{p['cpu_median_ms']:.1f}"])  # fmt: skip
    return _table(["probe", "median ms", "p90 ms", "max RSS MiB", "cpu ms"], rows)


def rss_table(f: dict[str, Any]) -> str:
    arms = list(f["arms"])
    rows = []
    for verb in TIMED_VERBS:
        row = [verb]
        for arm in arms:
            v = f["arms"][arm][verb]
            row.append(
                f"{v['rss_max_mib']:.1f} / {v['rss_median_mib']:.1f} ({v['cpu_median_ms']:.1f})"
            )
        rows.append(row)
    return _table(["MiB max / median (cpu ms median)", *arms], rows)


def report(f: dict[str, Any]) -> str:
    if not f["arms"]:
        lines = [f"nexcage lifecycle benchmark: no complete cycle ({f['cycles']} run)"]
        for key in ("notes", "errors", "leaks"):
            lines += [f"{key}:", *(f"  - {item}" for item in f[key])]
        return "\n".join(lines)
    parts = [
        f"nexcage lifecycle benchmark: {f['cycles']} cycles (+{f['warmup']} warm-up), "
        f"temp dir {f['tmpdir']}; spawn trampoline adds {f['trampoline_ms']:.2f} ms per call "
        "(not in the figures)",
        "",
        "Wall time per call (wait = state polls until stopped, not in the other rows):",
        times_table(f),
        "",
        f"nexcage vs backend (medians); overhead = median(nexcage) - median(backend); "
        f"target overhead / bare start <= {TARGET_OVERHEAD_RATIO}:",
        overhead_table(f),
        "",
        probes_table(f),
        "",
        f"Peak RSS per invocation (wait4 ru_maxrss: the process and its waited-for children; "
        f"target < {TARGET_RSS_MIB:g} MiB):",
        rss_table(f),
    ]
    for key in ("notes", "errors", "leaks"):
        parts += ["", f"{key}: " + ("none" if not f[key] else "")]
        parts += [f"  - {item}" for item in f[key]]
    return "\n".join(parts)


# -- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=30, help="measured cycles (default 30)")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded cycles first (default 1)")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="stop starting new cycles after this long (default 600)")  # fmt: skip
    parser.add_argument("--tmpdir", help="where bundle and --root dirs go (default: $TMPDIR)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    opts = parser.parse_args(argv)
    if opts.cycles < 1:
        parser.error("--cycles must be at least 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("lifecycle: needs root (crun and runc create real containers)")
    workdir = tempfile.mkdtemp(prefix="nexcage-bench-", dir=opts.tmpdir)
    sp = Spawner(workdir)
    try:
        bundle = make_bundle(os.path.join(workdir, "bundle"), ["/bin/true"])
        arms = make_arms(workdir)
        result = loop(sp, arms, bundle, opts)
        result["leaks"] = leaks(sp, arms, bundle)
        f = figures(result, opts, os.path.dirname(workdir))
    finally:
        sp.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(report(f))
    if opts.json:
        print(json.dumps(f, indent=None, sort_keys=True))
    return 1 if f["errors"] or f["leaks"] else 0


if __name__ == "__main__":
    sys.exit(main())
