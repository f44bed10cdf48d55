"""nexcage.spec.default: `nexcage spec` output, equivalent to runc's specconv Example/ToRootless."""

from __future__ import annotations

import os

from nexcage.spec.config import parse_config
from nexcage.spec.default import default_spec
from nexcage.spec.validate import validate_config


def test_default_spec_matches_runc_example() -> None:
    spec = default_spec()
    assert list(spec) == ["ociVersion", "process", "root", "hostname", "mounts", "linux"]
    assert spec["ociVersion"] == "1.3.0"
    assert spec["hostname"] == "nexcage"
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    process = spec["process"]
    assert process["terminal"] is True
    assert process["args"] == ["sh"]
    assert process["cwd"] == "/"
    assert process["user"] == {"uid": 0, "gid": 0}
    assert process["env"] == [
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TERM=xterm",
    ]
    assert process["noNewPrivileges"] is True
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert process["capabilities"] == {"bounding": caps, "effective": caps, "permitted": caps}
    assert process["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ]
    assert spec["mounts"][0] == {"destination": "/proc", "type": "proc", "source": "proc"}
    assert "gid=5" in spec["mounts"][2]["options"]
    linux = spec["linux"]
    assert [n["type"] for n in linux["namespaces"]] == [
        "pid",
        "network",
        "ipc",
        "uts",
        "mount",
        "cgroup",
    ]
    assert linux["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert "/proc/kcore" in linux["maskedPaths"] and len(linux["maskedPaths"]) == 11
    assert linux["readonlyPaths"] == [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]


def test_default_spec_without_cgroup_namespace() -> None:
    types = [n["type"] for n in default_spec(cgroup_ns=False)["linux"]["namespaces"]]
    assert types == ["pid", "network", "ipc", "uts", "mount"]


def test_rootless_spec_matches_runc_to_rootless() -> None:
    spec = default_spec(rootless=True, uid=1000, gid=1001)
    linux = spec["linux"]
    assert list(linux)[:2] == ["uidMappings", "gidMappings"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert linux["gidMappings"] == [{"containerID": 0, "hostID": 1001, "size": 1}]
    assert [n["type"] for n in linux["namespaces"]] == [
        "pid",
        "ipc",
        "uts",
        "mount",
        "cgroup",
        "user",
    ]
    assert "resources" not in linux
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/sys"] == {
        "destination": "/sys",
        "type": "none",
        "source": "/sys",
        "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
    }
    assert not any(
        o.startswith(("uid=", "gid=")) for m in spec["mounts"] for o in m.get("options", [])
    )
    assert "options" not in mounts["/proc"]
    # Current runc (specconv ToRootless) keeps the cgroup mount; runc 1.0 dropped /sys/* mounts.
    assert "/sys/fs/cgroup" in mounts


def test_rootless_defaults_to_the_effective_ids() -> None:
    linux = default_spec(rootless=True)["linux"]
    assert linux["uidMappings"][0]["hostID"] == os.geteuid()
    assert linux["gidMappings"][0]["hostID"] == os.getegid()


def test_each_call_returns_a_fresh_document() -> None:
    a, b = default_spec(), default_spec()
    a["process"]["capabilities"]["bounding"].append("CAP_SYS_ADMIN")
    a["mounts"][4]["options"].append("ro")
    assert b == default_spec()
    assert a["process"]["capabilities"]["effective"] == b["process"]["capabilities"]["effective"]


def test_default_specs_validate_clean() -> None:
    for spec in (default_spec(), default_spec(rootless=True), default_spec(cgroup_ns=False)):
        assert validate_config(parse_config(spec)) == []
