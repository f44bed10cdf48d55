"""The starter config.json written by ``nexcage spec`` (CONTRACTS.md §1.12).

Equivalent to runc's ``runc spec`` (libcontainer/specconv/example.go ``Example`` and
``ToRootless``), with ``ociVersion`` 1.3.0 and hostname ``nexcage``. Keys are in the order Go's
encoding/json writes runc's structs, so the two outputs compare line by line.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def _mounts() -> list[dict[str, Any]]:
    nosuid_noexec_nodev = ["nosuid", "noexec", "nodev"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": [*nosuid_noexec_nodev, "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": nosuid_noexec_nodev[:],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": [*nosuid_noexec_nodev, "ro"],
        },
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": [*nosuid_noexec_nodev, "relatime", "ro"],
        },
    ]


def default_spec(
    rootless: bool = False,
    *,
    cgroup_ns: bool = True,
    uid: int | None = None,
    gid: int | None = None,
) -> dict[str, Any]:
    """A fresh config.json dict (the caller serialises it).

    ``cgroup_ns``: runc adds a cgroup namespace only on a cgroup v2 host
    (``cgroups.IsCgroup2UnifiedMode``); the caller, which may look at the host, decides.
    ``rootless`` applies runc's ToRootless: a user namespace mapping container root to ``uid``/
    ``gid`` (default: this process's euid/egid), no network namespace, /sys bind-mounted from
    the host, no ``uid=``/``gid=`` mount options, no ``linux.resources``.
    """
    namespaces = ["pid", "network", "ipc", "uts", "mount"] + (["cgroup"] if cgroup_ns else [])
    mounts = _mounts()
    linux: dict[str, Any] = {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in namespaces],
        "maskedPaths": [
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
            "/sys/devices/virtual/tpm",
        ],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    }
    if rootless:
        linux["namespaces"] = [{"type": t} for t in namespaces if t not in ("network", "user")] + [
            {"type": "user"}
        ]
        host_uid = os.geteuid() if uid is None else uid
        host_gid = os.getegid() if gid is None else gid
        # Go field order of LinuxIDMapping: containerID, hostID, size; mappings lead Linux.
        linux = {
            "uidMappings": [{"containerID": 0, "hostID": host_uid, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": host_gid, "size": 1}],
            **{k: v for k, v in linux.items() if k != "resources"},
        }
        mounts = [_rootless_mount(m) for m in mounts]
    return {
        "ociVersion": "1.3.0",
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": _CAPS[:],
                "effective": _CAPS[:],
                "permitted": _CAPS[:],
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "nexcage",
        "mounts": mounts,
        "linux": linux,
    }


def _rootless_mount(mount: dict[str, Any]) -> dict[str, Any]:
    if os.path.normpath(mount["destination"]) == "/sys":
        # sysfs cannot be mounted without owning the network namespace: bind the host's.
        return {
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
        }
    options = [o for o in mount.get("options", ()) if not o.startswith(("uid=", "gid="))]
    result = {k: v for k, v in mount.items() if k != "options"}
    if options:
        result["options"] = options
    return result
