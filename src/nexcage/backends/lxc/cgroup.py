"""The container's cgroup, host side: freezer, live limits (``update``), leftovers.

nexcage writes the files itself instead of asking LXC's monitor (``lxc-freeze``,
``lxc-cgroup``): it knows init's pid, ``/proc/<pid>/cgroup`` names the directories, and a verb
then costs a few writes instead of a process spawn plus a command-socket round trip.
"""

from __future__ import annotations

import os
import time

from nexcage.errors import HostError
from nexcage.host import cgroups

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from nexcage.backends.translate.lxc_config import HostFacts, Translation

FREEZE_TIMEOUT = 10.0


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return ""


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def freeze(pid: int, frozen: bool) -> None:
    """Freeze or thaw ``pid``'s cgroup (v1 freezer, else cgroup2 ``cgroup.freeze``) and wait."""
    directory = cgroups.controller_dir(pid, "freezer")
    if directory is not None:
        state = "FROZEN" if frozen else "THAWED"
        _write(directory + "/freezer.state", state)
        _wait(lambda: _read(directory + "/freezer.state").strip() == state)
        return
    directory = cgroups.controller_dir(pid, None)
    if directory is None:
        raise HostError("no freezer: neither a v1 freezer hierarchy nor cgroup2")
    _write(directory + "/cgroup.freeze", "1" if frozen else "0")
    want = f"frozen {1 if frozen else 0}"
    _wait(lambda: want in _read(directory + "/cgroup.events").splitlines())


def _wait(done: object) -> None:
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while not done():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise HostError("the cgroup freezer did not settle")
        time.sleep(0.005)


# runc update's flags -> linux.resources (runc update.go).
_FLAGS = {
    "--memory": ("memory", "limit"),
    "--memory-swap": ("memory", "swap"),
    "--memory-reservation": ("memory", "reservation"),
    "--kernel-memory": ("memory", "kernel"),
    "--kernel-memory-tcp": ("memory", "kernelTCP"),
    "--cpu-period": ("cpu", "period"),
    "--cpu-quota": ("cpu", "quota"),
    "--cpu-burst": ("cpu", "burst"),
    "--cpu-share": ("cpu", "shares"),
    "--cpu-rt-period": ("cpu", "realtimePeriod"),
    "--cpu-rt-runtime": ("cpu", "realtimeRuntime"),
    "--cpuset-cpus": ("cpu", "cpus"),
    "--cpuset-mems": ("cpu", "mems"),
    "--cpu-idle": ("cpu", "idle"),
    "--pids-limit": ("pids", "limit"),
    "--blkio-weight": ("blockIO", "weight"),
}
_STRINGS = frozenset({"cpus", "mems"})
_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _number(flag: str, text: str) -> int:
    value = text.strip().lower().removesuffix("b")
    scale = 1
    if value and value[-1] in _UNITS:
        scale = _UNITS[value[-1]]
        value = value[:-1]
    try:
        return int(value) * scale
    except ValueError:
        from nexcage.errors import UsageError

        raise UsageError(f"{flag}: invalid value {text!r}") from None


def update_keys(options: Sequence[str], stdin: bytes | None, host: HostFacts) -> Translation:
    """The cgroup keys for ``update``: ``--resources`` (stdin) first, then the flags."""
    from nexcage import fastjson
    from nexcage.backends.translate.lxc_config import Translation
    from nexcage.backends.translate.lxc_resources import resource_keys
    from nexcage.errors import UsageError
    from nexcage.spec.config import parse_resources

    doc: dict[str, object] = {}
    args = list(options)
    if args[:2] == ["--resources", "-"]:
        args = args[2:]
        loaded = fastjson.loads(stdin or b"{}")
        if isinstance(loaded, dict):
            doc = loaded
    for i in range(0, len(args) - 1, 2):
        flag, value = args[i], args[i + 1]
        if flag not in _FLAGS:
            raise UsageError(f"update: {flag} is not supported by the lxc backend")
        group, field = _FLAGS[flag]
        section = doc.setdefault(group, {})
        assert isinstance(section, dict)
        section[field] = value if field in _STRINGS else _number(flag, value)
    out = Translation()
    resource_keys(parse_resources(doc, "resources"), host, out, "resources")
    return out


def apply(pid: int, keys: Sequence[tuple[str, str]]) -> None:
    """Write ``lxc.cgroup.<controller>.<file>`` / ``lxc.cgroup2.<file>`` values for ``pid``.

    A write the kernel refuses because of another limit (memory below memory+swap) is retried
    once after the rest, as runc orders memory and swap."""
    pending: list[tuple[str, str]] = []
    for key, value in keys:
        if key.startswith("lxc.cgroup2."):
            filename = key[len("lxc.cgroup2.") :]
            directory = cgroups.controller_dir(pid, None)
        else:
            filename = key[len("lxc.cgroup.") :]
            directory = cgroups.controller_dir(pid, filename.split(".", 1)[0])
        if directory is None:
            raise HostError(f"no cgroup directory for {key}")
        pending.append((os.path.join(directory, filename), value))
    failed: list[tuple[str, str, OSError]] = []
    for path, value in pending:
        try:
            _write(path, value)
        except OSError as exc:
            failed.append((path, value, exc))
    for path, value, _first in failed:
        try:
            _write(path, value)
        except OSError as exc:
            raise HostError(f"cannot write {value!r} to {path}: {exc.strerror}") from None


def remove_leftovers(container_id: str) -> None:
    """Remove the cgroups LXC leaves when its monitor is killed or exits: our monitor's and the
    default payload's leaves (``nexcage.monitor/<id>``, ``nexcage/<id>``); never a parent."""
    roots = [point for point, fstype, _ in cgroups.mounts() if fstype in ("cgroup", "cgroup2")]
    for root in roots:
        for leaf in (f"nexcage.monitor/{container_id}", f"nexcage/{container_id}"):
            path = os.path.join(root, leaf)
            if os.path.isdir(path):
                _remove_cgroup(path)


def _remove_cgroup(path: str) -> None:
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            _remove_cgroup(entry.path)
    try:
        os.rmdir(path)
    except OSError:
        pass  # still busy: a later delete or the host's cleanup gets it
