"""Cgroup facts nexcage needs: layout, the crun hybrid quirk, freezer state, a cgroup's pids.

Plain file reads of /proc and /sys/fs/cgroup (no statfs through ctypes, no subprocess): status is
derived on every ``state`` call (DESIGN.md), so ``is_frozen`` costs a few reads. Every function
takes ``proc``/``root`` so tests can point it at a fixture tree.
"""

from __future__ import annotations

import os

CGROUP_ROOT = "/sys/fs/cgroup"
PROC = "/proc"

V1 = "v1"
V2 = "v2"
HYBRID = "hybrid"
NONE = "none"  # nothing usable mounted at /sys/fs/cgroup

# crun's message (src/libcrun/cgroup.c, libcrun_cgroup_enter).
CRUN_HYBRID_ERROR = "cgroups in hybrid mode not supported, drop all controllers from cgroupv2"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def mounts(proc: str = PROC) -> list[tuple[str, str, str]]:
    """``(mount point, fs type, super options)`` for every mount, from ``self/mountinfo``."""
    from nexcage.host.mountinfo import unescape  # only when mountinfo is read (not on `state`)

    text = _read(f"{proc}/self/mountinfo") or ""
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        tail = right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        out.append((unescape(fields[4]), tail[0], tail[2]))
    return out


def _fstype_at(all_mounts: list[tuple[str, str, str]], point: str) -> str | None:
    found = None
    for mnt, fstype, _ in all_mounts:
        if mnt == point:
            found = fstype  # the last mount on a point is the one visible
    return found


def layout(proc: str = PROC, root: str = CGROUP_ROOT) -> str:
    """``v2`` (cgroup2 at root), ``hybrid`` (v1 + cgroup2 at root/unified), ``v1`` or ``none``.

    The same decision as crun's ``detect_cgroup_mode`` (statfs of /sys/fs/cgroup, then of
    /sys/fs/cgroup/unified), made from mountinfo; ``none`` is what crun calls "invalid file system
    type on /sys/fs/cgroup".
    """
    all_mounts = mounts(proc)
    top = _fstype_at(all_mounts, root)
    if top == "cgroup2":
        return V2
    if top != "tmpfs":
        return NONE
    if _fstype_at(all_mounts, root + "/unified") == "cgroup2":
        return HYBRID
    return V1


def unified_root(proc: str = PROC, root: str = CGROUP_ROOT) -> str | None:
    """Where the cgroup2 hierarchy is mounted, if anywhere."""
    kind = layout(proc, root)
    if kind == V2:
        return root
    if kind == HYBRID:
        return root + "/unified"
    return None


def v2_controllers(proc: str = PROC, root: str = CGROUP_ROOT) -> list[str]:
    """Controllers available in the unified hierarchy (its root ``cgroup.controllers``)."""
    unified = unified_root(proc, root)
    if unified is None:
        return []
    return (_read(unified + "/cgroup.controllers") or "").split()


def v1_mounted(controller: str, proc: str = PROC) -> bool:
    """Whether a cgroup v1 hierarchy with ``controller`` is mounted."""
    return any(
        fstype == "cgroup" and controller in opts.split(",") for _, fstype, opts in mounts(proc)
    )


def hugetlb_v1_mounted(proc: str = PROC) -> bool:
    return v1_mounted("hugetlb", proc)


def hybrid_fix(controllers: list[str], root: str = CGROUP_ROOT) -> str:
    """Shell commands binding ``controllers`` to v1 hierarchies, which takes them off cgroup2."""
    return " && ".join(
        f"mkdir -p {root}/{c} && mount -t cgroup -o {c} cgroup {root}/{c}" for c in controllers
    )


def crun_hybrid_problem(proc: str = PROC, root: str = CGROUP_ROOT) -> str | None:
    """Why crun will refuse every container on this host, with the fix; None if it will not.

    crun (``libcrun_cgroup_enter`` in src/libcrun/cgroup.c, 1.8.1 and later) does, before it
    even looks at the cgroup manager (so ``--cgroup-manager=disabled`` does not help)::

        if (cgroup_mode == CGROUP_MODE_HYBRID) {
            read_all_file ("/sys/fs/cgroup/unified/cgroup.controllers", &buffer, &len, err);
            if (len > 0)
              return crun_make_error (err, 0, "cgroups in hybrid mode not supported, "
                                              "drop all controllers from cgroupv2");
        }

    A controller sits on cgroup2 when no v1 hierarchy has it; on Debian-style hybrid hosts that is
    typically ``hugetlb``. Mounting it as a v1 hierarchy moves it off cgroup2 and empties the file.
    """
    if layout(proc, root) != HYBRID:
        return None
    unified = root + "/unified"
    raw = _read(unified + "/cgroup.controllers")
    if not raw:
        return None
    controllers = raw.split()
    return (
        f"crun refuses hybrid cgroups while {unified}/cgroup.controllers lists controllers "
        f'({" ".join(controllers)}): "{CRUN_HYBRID_ERROR}"; mount them as cgroup v1 '
        f"hierarchies: {hybrid_fix(controllers, root)}"
    )


def systemd_booted() -> bool:
    """sd_booted(3): systemd is PID 1 (so ``--systemd-cgroup`` can work)."""
    return os.path.isdir("/run/systemd/system")


def _proc_cgroups(pid: int, proc: str) -> list[tuple[list[str], str]]:
    """``([controllers], path)`` per line of /proc/<pid>/cgroup; ``[]`` controllers is cgroup2."""
    text = _read(f"{proc}/{pid}/cgroup")
    if text is None:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            out.append(([c for c in parts[1].split(",") if c], parts[2]))
    return out


def _v1_mount(controller: str, proc: str, root: str) -> str | None:
    conventional = f"{root}/{controller}"
    if os.path.isdir(conventional):
        return conventional
    for mnt, fstype, opts in mounts(proc):
        if fstype == "cgroup" and controller in opts.split(","):
            return mnt
    return None


def _join(base: str, path: str) -> str:
    return base if path in ("", "/") else base + path


def is_frozen(pid: int, proc: str = PROC, root: str = CGROUP_ROOT) -> bool:
    """Whether ``pid``'s cgroup is frozen or freezing (v1 freezer, or cgroup2 freeze).

    False for a pid that is gone: the caller decides ``stopped`` from the pid first.
    """
    lines = _proc_cgroups(pid, proc)
    unified_path = None
    for controllers, path in lines:
        if not controllers:
            unified_path = path
        elif "freezer" in controllers:
            base = _v1_mount("freezer", proc, root)
            if base is not None:
                state = _read(_join(base, path) + "/freezer.state")
                if state is not None:
                    # With a v1 freezer hierarchy runtimes freeze there (runc, crun): it is the
                    # answer, and the unified lookup below (mountinfo parsing) is not needed.
                    return state.strip() in ("FROZEN", "FREEZING")
    if unified_path is None or unified_path in ("", "/"):
        return False  # the root cgroup cannot be frozen
    unified = unified_root(proc, root)
    if unified is None:
        return False
    cg = _join(unified, unified_path)
    # cgroup.freeze is what was asked; "frozen 1" in cgroup.events is the result (also set when
    # an ancestor is frozen).
    if (_read(cg + "/cgroup.freeze") or "").strip() == "1":
        return True
    return any(e.strip() == "frozen 1" for e in (_read(cg + "/cgroup.events") or "").splitlines())


def controller_dir(
    pid: int, controller: str | None, proc: str = PROC, root: str = CGROUP_ROOT
) -> str | None:
    """The directory of ``pid``'s cgroup in ``controller``'s v1 hierarchy, or (``None``) in the
    unified hierarchy; None if there is no such hierarchy or the pid is gone."""
    for controllers, path in _proc_cgroups(pid, proc):
        if controller is None and not controllers:
            unified = unified_root(proc, root)
            return _join(unified, path) if unified else None
        if controller is not None and controller in controllers:
            base = _v1_mount(controller, proc, root)
            return _join(base, path) if base else None
    return None


def _location(pid: int, proc: str, root: str) -> tuple[str, bool] | None:
    lines = _proc_cgroups(pid, proc)
    if not lines:
        return None
    unified_path = next((path for ctrls, path in lines if not ctrls), None)
    unified = unified_root(proc, root)
    if unified == root:  # pure v2
        path = unified_path or "/"
        return _join(root, path), path in ("", "/")
    for controller in ("freezer", "pids", "memory", "cpu", "devices"):
        for ctrls, path in lines:
            if controller in ctrls and path not in ("", "/"):
                base = _v1_mount(controller, proc, root)
                if base is not None:
                    return _join(base, path), False
    if unified is not None and unified_path not in (None, "", "/"):
        return _join(unified, unified_path or "/"), False
    base = _v1_mount("memory", proc, root) or unified
    return (base, True) if base is not None else None


def cgroup_dir(pid: int, proc: str = PROC, root: str = CGROUP_ROOT) -> str | None:
    """The directory of ``pid``'s cgroup, used to find the processes that share it.

    On v2 the unified cgroup. On v1/hybrid the first of freezer, pids, memory, cpu, devices in
    which the pid is not in the root cgroup (then the unified one): the engines' cgroupfs drivers
    put a container in all of them.
    """
    found = _location(pid, proc, root)
    return found[0] if found else None


def _collect(directory: str, out: set[int], recurse: bool) -> None:
    for line in (_read(directory + "/cgroup.procs") or "").split():
        if line.isdigit():
            out.add(int(line))
    if not recurse:
        return
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _collect(entry.path, out, True)


def pids_of(pid: int, proc: str = PROC, root: str = CGROUP_ROOT) -> list[int]:
    """All pids in ``pid``'s cgroup and its descendants, sorted (a ``ps`` fallback).

    A pid in a root cgroup gets the root's own members only, not the whole host.
    """
    found = _location(pid, proc, root)
    if found is None:
        return []
    out: set[int] = set()
    _collect(found[0], out, recurse=not found[1])
    return sorted(out)
