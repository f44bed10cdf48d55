"""nexcage.spec.validate: semantic rules of config.json, each reported with its JSON path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nexcage.errors import Violation
from nexcage.spec.config import parse_config, parse_process, parse_resources
from nexcage.spec.default import default_spec
from nexcage.spec.validate import (
    KNOWN_CAPABILITIES,
    valid_id_list,
    validate_config,
    validate_process,
    validate_resources,
)

Raw = dict[str, Any]


def check(mutate: Callable[[Raw], object], rootless: bool = False) -> list[Violation]:
    raw = default_spec(rootless, uid=1000, gid=1000)
    mutate(raw)
    return validate_config(parse_config(raw))


def ns(raw: Raw, *types: str, **paths: str) -> None:
    raw["linux"]["namespaces"] = [{"type": t} for t in types] + [
        {"type": t, "path": p} for t, p in paths.items()
    ]


def linux(raw: Raw, **fields: Any) -> None:
    raw["linux"].update(fields)


def process(raw: Raw, **fields: Any) -> None:
    raw["process"].update(fields)


def resources(raw: Raw, **fields: Any) -> None:
    raw["linux"]["resources"].update(fields)


def test_default_spec_validates_clean() -> None:
    assert check(lambda raw: None) == []


def test_rootless_default_spec_validates_clean() -> None:
    assert check(lambda raw: None, rootless=True) == []


def test_default_spec_without_cgroup_namespace_validates_clean() -> None:
    assert validate_config(parse_config(default_spec(cgroup_ns=False))) == []


# (mutation, JSON path, part of the message)
CASES: list[tuple[str, Callable[[Raw], object], str, str]] = [
    # ociVersion
    ("semver", lambda r: r.update(ociVersion="1.0"), "ociVersion", "not a SemVer"),
    ("semver-v", lambda r: r.update(ociVersion="v1.3.0"), "ociVersion", "not a SemVer"),
    ("major", lambda r: r.update(ociVersion="2.0.0"), "ociVersion", "unsupported major"),
    # root
    ("root-missing", lambda r: r.pop("root"), "root", "required on Linux"),
    ("root-empty", lambda r: r["root"].update(path=""), "root.path", "must not be empty"),
    # process
    ("cwd-relative", lambda r: process(r, cwd="tmp"), "process.cwd", "absolute"),
    ("cwd-empty", lambda r: process(r, cwd=""), "process.cwd", "absolute"),
    ("args-empty", lambda r: process(r, args=[]), "process.args", "must not be empty"),
    ("args-missing", lambda r: r["process"].pop("args"), "process.args", "must not be empty"),
    ("env-no-eq", lambda r: process(r, env=["PATH"]), "process.env[0]", "missing '='"),
    ("env-no-name", lambda r: process(r, env=["A=1", "=x"]), "process.env[1]", "name cannot"),
    ("env-nul", lambda r: process(r, env=["A=x\x00y"]), "process.env[0]", "NUL"),
    ("uid", lambda r: r["process"]["user"].pop("uid"), "process.user.uid", "POSIX"),
    ("gid", lambda r: r["process"].pop("user"), "process.user.gid", "POSIX"),
    (
        "cap-name",
        lambda r: r["process"]["capabilities"]["bounding"].append("NET_ADMIN"),
        "process.capabilities.bounding[3]",
        "capability name",
    ),
    (
        "cap-lower",
        lambda r: r["process"]["capabilities"].update(ambient=["cap_kill"]),
        "process.capabilities.ambient[0]",
        "capability name",
    ),
    (
        "rlimit-type",
        lambda r: r["process"]["rlimits"].append({"type": "RLIMIT_FOO", "hard": 1, "soft": 1}),
        "process.rlimits[1].type",
        "unknown rlimit",
    ),
    (
        "rlimit-dup",
        lambda r: r["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "hard": 1, "soft": 1}),
        "process.rlimits[1].type",
        "duplicated",
    ),
    (
        "rlimit-soft",
        lambda r: r["process"]["rlimits"][0].update(soft=2048),
        "process.rlimits[0].soft",
        "must not exceed hard",
    ),
    ("oom", lambda r: process(r, oomScoreAdj=1001), "process.oomScoreAdj", "-1000 and 1000"),
    (
        "sched-policy",
        lambda r: process(r, scheduler={"policy": "SCHED_FAST"}),
        "process.scheduler.policy",
        "unknown scheduler policy",
    ),
    (
        "sched-nice",
        lambda r: process(r, scheduler={"policy": "SCHED_OTHER", "nice": 20}),
        "process.scheduler.nice",
        "-20 and 19",
    ),
    (
        "sched-priority",
        lambda r: process(r, scheduler={"policy": "SCHED_OTHER", "priority": 5}),
        "process.scheduler.priority",
        "SCHED_FIFO or SCHED_RR",
    ),
    (
        "sched-deadline",
        lambda r: process(r, scheduler={"policy": "SCHED_RR", "runtime": 5}),
        "process.scheduler.runtime",
        "SCHED_DEADLINE",
    ),
    (
        "sched-flag",
        lambda r: process(r, scheduler={"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_X"]}),
        "process.scheduler.flags[0]",
        "unknown scheduler flag",
    ),
    (
        "ioprio-class",
        lambda r: process(r, ioPriority={"class": "IOPRIO_CLASS_NONE", "priority": 0}),
        "process.ioPriority.class",
        "unknown I/O priority class",
    ),
    (
        "ioprio-level",
        lambda r: process(r, ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 8}),
        "process.ioPriority.priority",
        "0 and 7",
    ),
    (
        "affinity",
        lambda r: process(r, execCPUAffinity={"initial": "a-b"}),
        "process.execCPUAffinity.initial",
        "CPU list",
    ),
    (
        "affinity-range",
        lambda r: process(r, execCPUAffinity={"final": "3-1"}),
        "process.execCPUAffinity.final",
        "CPU list",
    ),
    # mounts
    (
        "mount-dest",
        lambda r: r["mounts"][0].update(destination=""),
        "mounts[0].destination",
        "empty",
    ),
    (
        "mount-uid-only",
        lambda r: r["mounts"][1].update(uidMappings=[{"containerID": 0, "hostID": 1, "size": 1}]),
        "mounts[1].gidMappings",
        "go together",
    ),
    (
        "mount-map-size",
        lambda r: r["mounts"][1].update(
            uidMappings=[{"containerID": 0, "hostID": 1, "size": 0}],
            gidMappings=[{"containerID": 0, "hostID": 1, "size": 1}],
        ),
        "mounts[1].uidMappings[0].size",
        "greater than zero",
    ),
    (
        "idmap-no-userns",
        lambda r: r["mounts"][1].update(options=["rbind", "idmap"]),
        "mounts[1].options",
        "idmap",
    ),
    (
        "ridmap-no-userns",
        lambda r: r["mounts"][1].update(options=["ridmap"]),
        "mounts[1].options",
        "idmap",
    ),
    # hooks
    (
        "hook-path",
        lambda r: r.update(hooks={"createRuntime": [{"path": "hook"}]}),
        "hooks.createRuntime[0].path",
        "absolute",
    ),
    (
        "hook-timeout",
        lambda r: r.update(hooks={"poststop": [{"path": "/h"}, {"path": "/h", "timeout": 0}]}),
        "hooks.poststop[1].timeout",
        "greater than zero",
    ),
    # annotations
    ("annotation-key", lambda r: r.update(annotations={"": "x"}), 'annotations[""]', "empty"),
    # namespaces
    (
        "ns-type",
        lambda r: ns(r, "pid", "uts", "mount", "net"),
        "linux.namespaces[3].type",
        "unknown",
    ),
    (
        "ns-dup",
        lambda r: ns(r, "pid", "uts", "mount", "pid"),
        "linux.namespaces[3].type",
        "duplicated",
    ),
    (
        "ns-path",
        lambda r: ns(r, "uts", "mount", network="run/netns/x"),
        "linux.namespaces[2].path",
        "absolute",
    ),
    ("hostname-uts", lambda r: ns(r, "pid", "mount"), "hostname", "private UTS namespace"),
    (
        "domainname-uts",
        lambda r: (ns(r, "pid", "mount"), r.update(hostname="", domainname="x")),
        "domainname",
        "private UTS namespace",
    ),
    # user namespace
    (
        "userns-uid-missing",
        lambda r: r["linux"].pop("uidMappings"),
        "linux.uidMappings",
        "needs uid mappings",
    ),
    (
        "userns-gid-missing",
        lambda r: r["linux"].update(gidMappings=[]),
        "linux.gidMappings",
        "needs gid mappings",
    ),
    (
        "mappings-without-userns",
        lambda r: linux(r, uidMappings=[{"containerID": 0, "hostID": 1, "size": 1}]),
        "linux.uidMappings",
        "need a user namespace",
    ),
    (
        "mapping-size",
        lambda r: r["linux"]["uidMappings"][0].update(size=0),
        "linux.uidMappings[0].size",
        "greater than zero",
    ),
    # time namespace
    (
        "time-offsets-no-ns",
        lambda r: linux(r, timeOffsets={"monotonic": {"secs": 1}}),
        "linux.timeOffsets",
        "time namespace",
    ),
    (
        "time-clock",
        lambda r: (ns(r, "uts", "mount", "time"), linux(r, timeOffsets={"realtime": {}})),
        'linux.timeOffsets["realtime"]',
        "boottime or monotonic",
    ),
    (
        "time-nanosecs",
        lambda r: (
            ns(r, "uts", "mount", "time"),
            linux(r, timeOffsets={"boottime": {"nanosecs": 10**9}}),
        ),
        'linux.timeOffsets["boottime"].nanosecs',
        "below",
    ),
    # misc linux
    (
        "propagation",
        lambda r: linux(r, rootfsPropagation="rwhatever"),
        "linux.rootfsPropagation",
        "invalid value",
    ),
    (
        "masked-relative",
        lambda r: r["linux"]["maskedPaths"].append("proc/x"),
        "linux.maskedPaths[11]",
        "absolute",
    ),
    (
        "readonly-relative",
        lambda r: r["linux"]["readonlyPaths"].insert(0, ""),
        "linux.readonlyPaths[0]",
        "absolute",
    ),
    ("masked-no-mntns", lambda r: ns(r, "uts"), "linux.maskedPaths", "mount namespace"),
    (
        "device-type",
        lambda r: linux(r, devices=[{"type": "x", "path": "/dev/x", "major": 1, "minor": 1}]),
        "linux.devices[0].type",
        "c, b, u or p",
    ),
    (
        "device-path",
        lambda r: linux(r, devices=[{"type": "c", "path": "dev/x", "major": 1, "minor": 1}]),
        "linux.devices[0].path",
        "absolute",
    ),
    (
        "device-major",
        lambda r: linux(r, devices=[{"type": "c", "path": "/dev/x", "minor": 1}]),
        "linux.devices[0].major",
        "unless type is p",
    ),
    (
        "device-mode",
        lambda r: linux(
            r,
            devices=[{"type": "c", "path": "/dev/x", "major": 1, "minor": 1, "fileMode": 0o10666}],
        ),
        "linux.devices[0].fileMode",
        "permission bits",
    ),
    (
        "netdev-no-netns",
        lambda r: (ns(r, "uts", "mount"), linux(r, netDevices={"eth0": {}})),
        "linux.netDevices",
        "network namespace",
    ),
    (
        "netdev-host-name",
        lambda r: linux(r, netDevices={"a/b": {}}),
        'linux.netDevices["a/b"]',
        "interface name",
    ),
    (
        "netdev-name",
        lambda r: linux(r, netDevices={"eth0": {"name": "x" * 16}}),
        'linux.netDevices["eth0"].name',
        "interface name",
    ),
    # sysctl (runc validator.go)
    (
        "sysctl-net-hostns",
        lambda r: (ns(r, "uts", "mount"), linux(r, sysctl={"net.ipv4.ip_forward": "1"})),
        'linux.sysctl["net.ipv4.ip_forward"]',
        "host network namespace",
    ),
    (
        "sysctl-ipc-hostns",
        lambda r: (ns(r, "uts", "mount"), linux(r, sysctl={"fs.mqueue.msg_max": "1"})),
        'linux.sysctl["fs.mqueue.msg_max"]',
        "IPC namespace",
    ),
    (
        "sysctl-ipc-slash",
        lambda r: (ns(r, "uts", "mount"), linux(r, sysctl={"kernel/shmmax": "1"})),
        'linux.sysctl["kernel/shmmax"]',
        "IPC namespace",
    ),
    (
        "sysctl-not-namespaced",
        lambda r: linux(r, sysctl={"vm.swappiness": "1"}),
        'linux.sysctl["vm.swappiness"]',
        "not in a separate kernel namespace",
    ),
    (
        "sysctl-hostname",
        lambda r: linux(r, sysctl={"kernel.hostname": "x"}),
        'linux.sysctl["kernel.hostname"]',
        "conflicts",
    ),
    ("sysctl-empty", lambda r: linux(r, sysctl={"": "x"}), 'linux.sysctl[""]', "empty"),
    # seccomp
    (
        "seccomp-default",
        lambda r: linux(r, seccomp={"defaultAction": "SCMP_ACT_MAYBE"}),
        "linux.seccomp.defaultAction",
        "unknown seccomp action",
    ),
    (
        "seccomp-default-notify",
        lambda r: linux(r, seccomp={"defaultAction": "SCMP_ACT_NOTIFY"}),
        "linux.seccomp.defaultAction",
        "cannot be the default",
    ),
    (
        "seccomp-default-errno",
        lambda r: linux(r, seccomp={"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}),
        "linux.seccomp.defaultErrnoRet",
        "SCMP_ACT_ERRNO",
    ),
    (
        "seccomp-arch",
        lambda r: linux(r, seccomp={"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86"]}),
        "linux.seccomp.architectures[0]",
        "unknown arch",
    ),
    (
        "seccomp-flag",
        lambda r: linux(r, seccomp={"defaultAction": "SCMP_ACT_ALLOW", "flags": ["LOG"]}),
        "linux.seccomp.flags[0]",
        "unknown seccomp flag",
    ),
    (
        "seccomp-metadata",
        lambda r: linux(r, seccomp={"defaultAction": "SCMP_ACT_ALLOW", "listenerMetadata": "m"}),
        "linux.seccomp.listenerMetadata",
        "needs listenerPath",
    ),
    (
        "seccomp-names-empty",
        lambda r: linux(
            r,
            seccomp={
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": [], "action": "SCMP_ACT_LOG"}],
            },
        ),
        "linux.seccomp.syscalls[0].names",
        "at least one",
    ),
    (
        "seccomp-name-empty",
        lambda r: linux(
            r,
            seccomp={
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_LOG"}],
            },
        ),
        "linux.seccomp.syscalls[0].names[1]",
        "must not be empty",
    ),
    (
        "seccomp-action",
        lambda r: linux(
            r,
            seccomp={
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["x"], "action": "A"}],
            },
        ),
        "linux.seccomp.syscalls[0].action",
        "unknown seccomp action",
    ),
    (
        "seccomp-errnoret",
        lambda r: linux(
            r,
            seccomp={
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["x"], "action": "SCMP_ACT_KILL", "errnoRet": 1}],
            },
        ),
        "linux.seccomp.syscalls[0].errnoRet",
        "SCMP_ACT_ERRNO",
    ),
    (
        "seccomp-notify-write",
        lambda r: linux(
            r,
            seccomp={
                "defaultAction": "SCMP_ACT_ALLOW",
                "listenerPath": "/run/s",
                "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}],
            },
        ),
        "linux.seccomp.syscalls[0].names[1]",
        "write",
    ),
    (
        "seccomp-op",
        lambda r: linux(
            r,
            seccomp={
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["x"],
                        "action": "SCMP_ACT_LOG",
                        "args": [{"index": 0, "value": 1, "op": "EQ"}],
                    }
                ],
            },
        ),
        "linux.seccomp.syscalls[0].args[0].op",
        "unknown operator",
    ),
    (
        "seccomp-index",
        lambda r: linux(
            r,
            seccomp={
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [
                    {
                        "names": ["x"],
                        "action": "SCMP_ACT_LOG",
                        "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}],
                    }
                ],
            },
        ),
        "linux.seccomp.syscalls[0].args[0].index",
        "0 and 5",
    ),
    # memoryPolicy (config-linux.md "Memory policy", CONTRACTS.md §2.6)
    (
        "mpol-mode",
        lambda r: linux(r, memoryPolicy={"mode": "MPOL_FAST"}),
        "linux.memoryPolicy.mode",
        "unknown memory policy mode",
    ),
    (
        "mpol-flag",
        lambda r: linux(r, memoryPolicy={"mode": "MPOL_DEFAULT", "flags": ["MPOL_F_X"]}),
        "linux.memoryPolicy.flags[0]",
        "unknown memory policy flag",
    ),
    (
        "mpol-static-relative",
        lambda r: linux(
            r,
            memoryPolicy={
                "mode": "MPOL_BIND",
                "nodes": "0",
                "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"],
            },
        ),
        "linux.memoryPolicy.flags",
        "excludes",
    ),
    (
        "mpol-default-nodes",
        lambda r: linux(r, memoryPolicy={"mode": "MPOL_DEFAULT", "nodes": "0"}),
        "linux.memoryPolicy.nodes",
        "must be empty",
    ),
    (
        "mpol-local-nodes",
        lambda r: linux(r, memoryPolicy={"mode": "MPOL_LOCAL", "nodes": "0-1"}),
        "linux.memoryPolicy.nodes",
        "must be empty",
    ),
    (
        "mpol-bind-no-nodes",
        lambda r: linux(r, memoryPolicy={"mode": "MPOL_BIND"}),
        "linux.memoryPolicy.nodes",
        "needs at least one node",
    ),
    (
        "mpol-interleave-empty",
        lambda r: linux(r, memoryPolicy={"mode": "MPOL_INTERLEAVE", "nodes": ""}),
        "linux.memoryPolicy.nodes",
        "needs at least one node",
    ),
    (
        "mpol-nodes-format",
        lambda r: linux(r, memoryPolicy={"mode": "MPOL_PREFERRED", "nodes": "0-"}),
        "linux.memoryPolicy.nodes",
        "node list",
    ),
    # intelRdt
    (
        "rdt-membw",
        lambda r: linux(r, intelRdt={"memBwSchema": "L3:0=f"}),
        "linux.intelRdt.memBwSchema",
        "MB:",
    ),
    (
        "rdt-membw-newline",
        lambda r: linux(r, intelRdt={"memBwSchema": "MB:0=20\nMB:1=70"}),
        "linux.intelRdt.memBwSchema",
        "one line",
    ),
    (
        "rdt-schemata-newline",
        lambda r: linux(r, intelRdt={"schemata": ["L3:0=f", "L2:0=f\nMB:0=1"]}),
        "linux.intelRdt.schemata[1]",
        "newlines",
    ),
    ("rdt-clos", lambda r: linux(r, intelRdt={"closID": "a/b"}), "linux.intelRdt.closID", "CLOS"),
    (
        "rdt-clos-dots",
        lambda r: linux(r, intelRdt={"closID": ".."}),
        "linux.intelRdt.closID",
        "CLOS",
    ),
    # personality
    (
        "personality-domain",
        lambda r: linux(r, personality={"domain": "LINUX64"}),
        "linux.personality.domain",
        "LINUX or LINUX32",
    ),
    (
        "personality-flags",
        lambda r: linux(r, personality={"domain": "LINUX", "flags": ["X"]}),
        "linux.personality.flags[0]",
        "no flags",
    ),
    # resources
    (
        "cgroup-device-type",
        lambda r: resources(r, devices=[{"allow": True, "type": "u"}]),
        "linux.resources.devices[0].type",
        "a, c or b",
    ),
    (
        "cgroup-device-access",
        lambda r: resources(r, devices=[{"allow": True, "access": "rwx"}]),
        "linux.resources.devices[0].access",
        "r, w and m",
    ),
    (
        "memory-limit",
        lambda r: resources(r, memory={"limit": -2}),
        "linux.resources.memory.limit",
        "-1 or more",
    ),
    (
        "memory-kernel-tcp",
        lambda r: resources(r, memory={"kernelTCP": -5}),
        "linux.resources.memory.kernelTCP",
        "-1 or more",
    ),
    (
        "swappiness",
        lambda r: resources(r, memory={"swappiness": 101}),
        "linux.resources.memory.swappiness",
        "0 to 100",
    ),
    (
        "cpu-burst",
        lambda r: resources(r, cpu={"quota": 1000, "burst": 2000}),
        "linux.resources.cpu.burst",
        "positive quota",
    ),
    ("cpus", lambda r: resources(r, cpu={"cpus": "0-3,x"}), "linux.resources.cpu.cpus", "list"),
    ("mems", lambda r: resources(r, cpu={"mems": ",0"}), "linux.resources.cpu.mems", "list"),
    ("cpu-idle", lambda r: resources(r, cpu={"idle": 2}), "linux.resources.cpu.idle", "0 or 1"),
    ("pids", lambda r: resources(r, pids={"limit": -2}), "linux.resources.pids.limit", "-1"),
    (
        "weight-device",
        lambda r: resources(r, blockIO={"weightDevice": [{"major": 8, "minor": 0}]}),
        "linux.resources.blockIO.weightDevice[0]",
        "weight or leafWeight",
    ),
    (
        "hugepage-size",
        lambda r: resources(r, hugepageLimits=[{"pageSize": "2M", "limit": 1}]),
        "linux.resources.hugepageLimits[0].pageSize",
        "size like 2MB",
    ),
    (
        "rdma",
        lambda r: resources(r, rdma={"mlx4_0": {}}),
        'linux.resources.rdma["mlx4_0"]',
        "hcaHandles or hcaObjects",
    ),
    (
        "unified-key",
        lambda r: resources(r, unified={"../memory.max": "1"}),
        'linux.resources.unified["../memory.max"]',
        "file name",
    ),
]


# Cases that start from the rootless default spec (it has a new user namespace).
ROOTLESS = {"userns-uid-missing", "userns-gid-missing", "mapping-size"}


@pytest.mark.parametrize(("case", "mutate", "path", "message"), CASES, ids=[c[0] for c in CASES])
def test_semantic_rule(case: str, mutate: Callable[[Raw], object], path: str, message: str) -> None:
    violations = check(mutate, rootless=case in ROOTLESS)
    matching = [v for v in violations if v.path == path]
    assert matching, violations
    assert any(message in v.message for v in matching), matching


def test_joined_user_namespace_needs_no_mappings() -> None:
    def mutate(raw: Raw) -> None:
        ns(raw, "pid", "uts", "mount", user="/proc/42/ns/user")
        del raw["linux"]["uidMappings"], raw["linux"]["gidMappings"]

    assert check(mutate, rootless=True) == []


def test_all_violations_are_reported_at_once() -> None:
    def mutate(raw: Raw) -> None:
        raw["ociVersion"] = "one"
        raw["process"]["cwd"] = "relative"
        raw["process"]["env"].append("BROKEN")
        ns(raw, "pid", "mount", "pid")
        raw["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND"}
        raw["linux"]["intelRdt"] = {"memBwSchema": "L3:0"}

    paths = [v.path for v in check(mutate)]
    assert paths == [
        "ociVersion",
        "process.cwd",
        "process.env[2]",
        "linux.namespaces[2].type",
        "hostname",
        "linux.memoryPolicy.nodes",
        "linux.intelRdt.memBwSchema",
    ]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r["mounts"].append({"destination": "relative/dir", "type": "tmpfs"}),
        lambda r: r["mounts"][1].update(
            options=["rbind", "idmap"],
            uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
            gidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}],
        ),
        lambda r: linux(r, rootfsPropagation="rprivate"),
        lambda r: linux(r, intelRdt={"closID": "/", "l3CacheSchema": "L3:0=7f0"}),
        lambda r: linux(
            r, sysctl={"kernel.domainname": "x", "net/ipv4/conf/eth0.100/rp_filter": "1"}
        ),
        lambda r: linux(r, memoryPolicy={"mode": "MPOL_PREFERRED"}),
        lambda r: linux(r, memoryPolicy={"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0-3,7"}),
        lambda r: linux(r, netDevices={"eth0": {"name": "ctr%d"}, "eth1": {}}),
        lambda r: linux(r, devices=[{"type": "p", "path": "/dev/fifo"}]),
        lambda r: process(r, capabilities={"bounding": ["CAP_FUTURE_THING"]}),
        lambda r: process(r, scheduler={"policy": "SCHED_FIFO", "priority": 50}),
        lambda r: process(r, execCPUAffinity={"initial": " 0, 2-3 ", "final": ""}),
        lambda r: resources(r, pids={"limit": 0}, cpu={"quota": -1, "burst": 5}),
        lambda r: resources(r, hugepageLimits=[{"pageSize": "1GB", "limit": 0}]),
        lambda r: linux(
            r,
            seccomp={
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 38,
                "architectures": ["SCMP_ARCH_LOONGARCH64"],
                "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
            },
        ),
    ],
)
def test_valid_configs_pass(mutate: Callable[[Raw], object]) -> None:
    assert check(mutate) == []


def test_idmap_with_the_container_user_namespace_passes() -> None:
    assert check(lambda r: r["mounts"][1].update(options=["rbind", "idmap"]), rootless=True) == []


def test_validate_process_for_exec_documents() -> None:
    proc = parse_process({"cwd": "/", "args": ["ls"], "env": ["X"], "user": {"uid": 0, "gid": 0}})
    assert validate_process(proc, "") == [
        Violation("env[0]", "invalid environment variable: missing '='")
    ]
    assert validate_process(proc)[0].path == "process.env[0]"


def test_validate_resources_for_update_documents() -> None:
    res = parse_resources({"memory": {"swappiness": 200}, "cpu": {"cpus": "1-0"}})
    assert [v.path for v in validate_resources(res, "")] == ["memory.swappiness", "cpu.cpus"]


@pytest.mark.parametrize("text", ["0", "0-3", "0-3,7", "1,2,3", " 0 , 2-3", "0-31:4/8", "7-7"])
def test_id_lists_valid(text: str) -> None:
    assert valid_id_list(text)


@pytest.mark.parametrize(
    "text",
    ["", "a", "1-", "-1", "3-1", "1,,2", "0:1/2", "0-7:3/2", "1.5", "\u00b2", "0-3:\u00b2/4"],
)
def test_id_lists_invalid(text: str) -> None:
    assert not valid_id_list(text)


def test_known_capabilities() -> None:
    assert len(KNOWN_CAPABILITIES) == 41
    assert {"CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE", "CAP_BPF"} <= KNOWN_CAPABILITIES
