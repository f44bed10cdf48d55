"""nexcage.spec.config: typed parsing of config.json, process.json and resources documents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nexcage.errors import SpecError, Violation
from nexcage.spec import config as c
from nexcage.spec.config import (
    SyntaxViolation,
    load_config,
    parse_config,
    parse_process,
    parse_resources,
)
from nexcage.spec.model import Model


def full_config() -> dict[str, Any]:
    """A config.json that sets every field nexcage models (runtime-spec v1.3.0)."""

    def idmap() -> list[dict[str, int]]:
        return [{"containerID": 0, "hostID": 100000, "size": 65536}]

    return {
        "ociVersion": "1.3.0",
        "root": {"path": "rootfs", "readonly": True},
        "mounts": [
            {
                "destination": "/data",
                "type": "none",
                "source": "/srv/data",
                "options": ["rbind", "idmap"],
                "uidMappings": idmap(),
                "gidMappings": idmap(),
            }
        ],
        "process": {
            "terminal": True,
            "consoleSize": {"height": 25, "width": 80},
            "user": {"uid": 1, "gid": 2, "umask": 18, "additionalGids": [5, 6], "username": "u"},
            "args": ["sh", "-c", "true"],
            "commandLine": "sh",
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/root",
            "capabilities": {
                k: ["CAP_KILL"] for k in ("bounding", "effective", "inheritable", "permitted")
            }
            | {"ambient": ["CAP_NET_BIND_SERVICE"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}],
            "noNewPrivileges": True,
            "apparmorProfile": "acme",
            "oomScoreAdj": -500,
            "scheduler": {
                "policy": "SCHED_DEADLINE",
                "nice": 0,
                "priority": 0,
                "flags": ["SCHED_FLAG_RESET_ON_FORK"],
                "runtime": 10,
                "deadline": 20,
                "period": 30,
            },
            "selinuxLabel": "system_u:system_r:container_t:s0",
            "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 4},
            "execCPUAffinity": {"initial": "7", "final": "0-3,7"},
        },
        "hostname": "box",
        "domainname": "example.test",
        "hooks": {
            kind: [{"path": "/usr/bin/hook", "args": ["hook", kind], "env": ["A=1"], "timeout": 5}]
            for kind in c.HOOK_KINDS
        },
        "annotations": {"com.example.key": "value"},
        "linux": {
            "namespaces": [
                {"type": t}
                for t in ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
            ],
            "uidMappings": idmap(),
            "gidMappings": idmap(),
            "timeOffsets": {"monotonic": {"secs": 10, "nanosecs": 5}, "boottime": {"secs": -3}},
            "devices": [
                {
                    "path": "/dev/fuse",
                    "type": "c",
                    "major": 10,
                    "minor": 229,
                    "fileMode": 438,
                    "uid": 0,
                    "gid": 0,
                }
            ],
            "netDevices": {"eth1": {"name": "ctr1"}, "eth2": {}},
            "cgroupsPath": "/nexcage/box",
            "resources": full_resources(),
            "intelRdt": {
                "closID": "guaranteed_group",
                "l3CacheSchema": "L3:0=7f0",
                "memBwSchema": "MB:0=20",
                "schemata": ["L2:0=f"],
                "enableMonitoring": True,
            },
            "memoryPolicy": {
                "mode": "MPOL_INTERLEAVE",
                "nodes": "2-3",
                "flags": ["MPOL_F_STATIC_NODES"],
            },
            "sysctl": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1024"},
            "seccomp": {
                "defaultAction": "SCMP_ACT_ERRNO",
                "defaultErrnoRet": 1,
                "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
                "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                "listenerPath": "/run/agent.sock",
                "listenerMetadata": "meta",
                "syscalls": [
                    {
                        "names": ["personality"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
                    },
                    {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
                ],
            },
            "rootfsPropagation": "slave",
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
            "mountLabel": "system_u:object_r:container_file_t:s0",
            "personality": {"domain": "LINUX"},
        },
        "solaris": {"milestone": "svc:/milestone/container:default"},
        "windows": {"layerFolders": ["C:\\layers"]},
        "vm": {"kernel": {"path": "/vmlinuz"}, "hwConfig": {"vcpus": 1}},
        "zos": {"namespaces": []},
        "freebsd": {"jail": {"host": "new"}},
    }


def full_resources() -> dict[str, Any]:
    dev = {"major": 8, "minor": 0}
    return {
        "devices": [
            {"allow": False, "access": "rwm"},
            {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
        ],
        "memory": {
            "limit": 536870912,
            "reservation": 1,
            "swap": -1,
            "kernel": -1,
            "kernelTCP": -1,
            "swappiness": 0,
            "disableOOMKiller": False,
            "useHierarchy": True,
            "checkBeforeUpdate": True,
        },
        "cpu": {
            "shares": 1024,
            "quota": 1000000,
            "burst": 1000000,
            "period": 500000,
            "realtimeRuntime": 950000,
            "realtimePeriod": 1000000,
            "cpus": "2-3",
            "mems": "0-7",
            "idle": 0,
        },
        "pids": {"limit": 32771},
        "blockIO": {
            "weight": 10,
            "leafWeight": 10,
            "weightDevice": [dev | {"weight": 500, "leafWeight": 300}],
            "throttleReadBpsDevice": [dev | {"rate": 600}],
            "throttleWriteBpsDevice": [dev | {"rate": 601}],
            "throttleReadIOPSDevice": [dev | {"rate": 602}],
            "throttleWriteIOPSDevice": [dev | {"rate": 603}],
        },
        "hugepageLimits": [{"pageSize": "2MB", "limit": 209715200}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
        "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
        "unified": {"io.max": "259:0 rbps=2097152", "memory.high": "max"},
    }


def test_full_config_parses_into_typed_models() -> None:
    spec = parse_config(full_config())
    assert spec.oci_version == "1.3.0"
    assert spec.root is not None and spec.root.readonly is True
    assert spec.mounts is not None
    mount = spec.mounts[0]
    assert (mount.destination, mount.options) == ("/data", ("rbind", "idmap"))
    assert mount.uid_mappings is not None and mount.uid_mappings[0].host_id == 100000
    p = spec.process
    assert p is not None
    assert p.console_size is not None and (p.console_size.height, p.console_size.width) == (25, 80)
    assert p.user is not None and p.user.additional_gids == (5, 6) and p.user.umask == 18
    assert p.args == ("sh", "-c", "true") and p.cwd == "/root"
    assert p.capabilities is not None and p.capabilities.ambient == ("CAP_NET_BIND_SERVICE",)
    assert p.rlimits is not None and (p.rlimits[0].soft, p.rlimits[0].hard) == (512, 1024)
    assert p.oom_score_adj == -500 and p.no_new_privileges is True
    assert p.scheduler is not None and p.scheduler.period == 30
    assert p.io_priority is not None and p.io_priority.class_ == "IOPRIO_CLASS_BE"
    assert p.exec_cpu_affinity is not None and p.exec_cpu_affinity.final == "0-3,7"
    assert (spec.hostname, spec.domainname) == ("box", "example.test")
    assert spec.hooks is not None
    for hooks in (
        spec.hooks.prestart,
        spec.hooks.create_runtime,
        spec.hooks.create_container,
        spec.hooks.start_container,
        spec.hooks.poststart,
        spec.hooks.poststop,
    ):
        assert hooks is not None and hooks[0].timeout == 5 and hooks[0].path == "/usr/bin/hook"
    assert spec.annotations == {"com.example.key": "value"}
    assert spec.solaris == {"milestone": "svc:/milestone/container:default"}
    assert spec.vm is not None and spec.zos is not None and spec.freebsd is not None
    assert spec.windows == {"layerFolders": ["C:\\layers"]}


def test_full_config_linux_section() -> None:
    linux = parse_config(full_config()).linux
    assert linux is not None
    assert [ns.type for ns in linux.namespaces or ()][-1] == "time"
    user_ns = linux.namespace("user")
    assert user_ns is not None and user_ns.path is None
    assert linux.namespace("nope") is None
    assert linux.time_offsets is not None and linux.time_offsets["monotonic"].nanosecs == 5
    assert linux.devices is not None and linux.devices[0].file_mode == 438
    assert linux.net_devices is not None
    assert linux.net_devices["eth1"].name == "ctr1" and linux.net_devices["eth2"].name is None
    assert linux.cgroups_path == "/nexcage/box"
    rdt = linux.intel_rdt
    assert rdt is not None and rdt.schemata == ("L2:0=f",) and rdt.enable_monitoring is True
    assert rdt.clos_id == "guaranteed_group" and rdt.mem_bw_schema == "MB:0=20"
    policy = linux.memory_policy
    assert policy is not None and (policy.mode, policy.nodes) == ("MPOL_INTERLEAVE", "2-3")
    assert policy.flags == ("MPOL_F_STATIC_NODES",)
    assert linux.sysctl == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1024"}
    seccomp = linux.seccomp
    assert seccomp is not None and seccomp.default_errno_ret == 1
    assert seccomp.listener_path == "/run/agent.sock" and seccomp.listener_metadata == "meta"
    assert seccomp.syscalls is not None
    arg = (seccomp.syscalls[0].args or ())[0]
    assert (arg.index, arg.value, arg.value_two, arg.op) == (0, 8, 0, "SCMP_CMP_EQ")
    assert seccomp.syscalls[1].errno_ret == 38
    assert linux.rootfs_propagation == "slave" and linux.mount_label
    assert linux.masked_paths == ("/proc/kcore",) and linux.readonly_paths == ("/proc/sys",)
    assert linux.personality is not None and linux.personality.domain == "LINUX"


def test_full_config_resources() -> None:
    linux = parse_config(full_config()).linux
    assert linux is not None and linux.resources is not None
    r = linux.resources
    assert r.devices is not None and r.devices[0].allow is False and r.devices[1].major == 10
    assert r.memory is not None and r.memory.swap == -1 and r.memory.kernel_tcp == -1
    assert r.memory.check_before_update is True and r.memory.use_hierarchy is True
    assert r.cpu is not None and r.cpu.burst == 1000000 and r.cpu.idle == 0
    assert r.cpu.realtime_runtime == 950000 and r.cpu.mems == "0-7"
    assert r.pids is not None and r.pids.limit == 32771
    bio = r.block_io
    assert bio is not None and bio.weight_device is not None
    assert bio.weight_device[0].leaf_weight == 300
    assert [
        d[0].rate
        for d in (
            bio.throttle_read_bps_device,
            bio.throttle_write_bps_device,
            bio.throttle_read_iops_device,
            bio.throttle_write_iops_device,
        )
        if d
    ] == [600, 601, 602, 603]
    assert r.hugepage_limits is not None and r.hugepage_limits[0].page_size == "2MB"
    assert r.network is not None and r.network.class_id == 1048577
    assert r.network.priorities is not None and r.network.priorities[0].name == "eth0"
    assert r.rdma is not None and r.rdma["mlx5_1"].hca_objects == 10000
    assert r.unified == {"io.max": "259:0 rbps=2097152", "memory.high": "max"}


_MAPS = ("annotations", "sysctl", "unified", "timeOffsets", "netDevices", "rdma")


def _add_unknown_everywhere(node: Any, marker: list[int], is_map: bool = False) -> None:
    """Add a distinct unknown key to every object; maps get it in their values only."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if not is_map or isinstance(value, dict):
                _add_unknown_everywhere(value, marker, key in _MAPS and not is_map)
        if not is_map:
            marker[0] += 1
            node[f"x-vendor-{marker[0]}"] = {"n": marker[0]}
    elif isinstance(node, list):
        for value in node:
            _add_unknown_everywhere(value, marker)


def _models(node: object) -> list[Model]:
    found: list[Model] = []
    if isinstance(node, Model):
        found.append(node)
        for _, attr, _, _ in node.FIELDS:
            found.extend(_models(getattr(node, attr)))
    elif isinstance(node, tuple):
        for value in node:
            found.extend(_models(value))
    elif isinstance(node, dict):
        for value in node.values():
            found.extend(_models(value))
    return found


def test_unknown_keys_are_kept_at_every_level() -> None:
    raw = full_config()
    # Objects the model keeps raw (other platforms) and maps of objects are handled too.
    _add_unknown_everywhere(raw, [0])
    original = json.loads(json.dumps(raw))
    spec = parse_config(raw)
    models = _models(spec)
    assert len(models) > 50
    for model in models:
        unknown = [k for k in model.raw if k.startswith("x-vendor-")]
        assert unknown, type(model).__name__
        assert set(model.extra) == set(unknown), type(model).__name__
    assert spec.to_json() == original
    assert raw == original  # parsing never mutates the input


def test_every_type_violation_is_reported_with_its_path() -> None:
    raw = full_config()
    raw["hostname"] = 7
    raw["mounts"][0]["options"] = "rbind"
    raw["process"]["args"] = ["sh", 1]
    raw["process"]["user"]["uid"] = -1
    raw["process"]["terminal"] = "yes"
    raw["process"]["rlimits"][0]["soft"] = 1.5
    raw["hooks"]["poststop"][0]["timeout"] = "5"
    raw["annotations"]["k"] = 1
    raw["linux"]["namespaces"][2] = {"type": 3}
    raw["linux"]["uidMappings"][0]["size"] = 2**32
    raw["linux"]["sysctl"]["net.core.somaxconn"] = 256
    raw["linux"]["resources"]["memory"]["limit"] = "1G"
    raw["linux"]["resources"]["rdma"]["mlx5_1"]["hcaHandles"] = -3
    raw["linux"]["seccomp"]["syscalls"][0]["args"][0]["op"] = None
    raw["linux"]["memoryPolicy"]["flags"] = "MPOL_F_STATIC_NODES"
    raw["linux"]["timeOffsets"]["boottime"] = []
    raw["linux"]["netDevices"]["eth1"]["name"] = False
    raw["windows"] = "no"
    with pytest.raises(SpecError) as info:
        parse_config(raw)
    paths = [v.path for v in info.value.violations]
    assert sorted(paths) == sorted(
        [
            "hostname",
            "mounts[0].options",
            "process.args[1]",
            "process.user.uid",
            "process.terminal",
            "process.rlimits[0].soft",
            "hooks.poststop[0].timeout",
            'annotations["k"]',
            "linux.namespaces[2].type",
            "linux.uidMappings[0].size",
            'linux.sysctl["net.core.somaxconn"]',
            "linux.resources.memory.limit",
            'linux.resources.rdma["mlx5_1"].hcaHandles',
            "linux.seccomp.syscalls[0].args[0].op",
            "linux.memoryPolicy.flags",
            'linux.timeOffsets["boottime"]',
            'linux.netDevices["eth1"].name',
            "windows",
        ]
    )
    assert info.value.source == "config.json"
    assert "18 problem(s)" in str(info.value)


def test_every_missing_required_field_is_reported() -> None:
    raw = {
        "root": {},
        "mounts": [{"type": "tmpfs"}],
        "process": {"consoleSize": {}, "rlimits": [{}], "scheduler": {}, "ioPriority": {}},
        "hooks": {"prestart": [{}]},
        "linux": {
            "namespaces": [{"path": "/proc/1/ns/pid"}],
            "uidMappings": [{}],
            "devices": [{}],
            "resources": {
                "devices": [{}],
                "blockIO": {"weightDevice": [{}], "throttleReadBpsDevice": [{}]},
                "hugepageLimits": [{}],
                "network": {"priorities": [{}]},
            },
            "memoryPolicy": {},
            "seccomp": {"syscalls": [{"args": [{}]}]},
            "personality": {},
        },
    }
    with pytest.raises(SpecError) as info:
        parse_config(raw)
    missing = {v.path for v in info.value.violations}
    assert {v.message for v in info.value.violations} == {"required field is missing"}
    assert missing == {
        "ociVersion",
        "root.path",
        "mounts[0].destination",
        "process.cwd",
        "process.consoleSize.height",
        "process.consoleSize.width",
        "process.rlimits[0].type",
        "process.rlimits[0].hard",
        "process.rlimits[0].soft",
        "process.scheduler.policy",
        "process.ioPriority.class",
        "process.ioPriority.priority",
        "hooks.prestart[0].path",
        "linux.namespaces[0].type",
        "linux.uidMappings[0].containerID",
        "linux.uidMappings[0].hostID",
        "linux.uidMappings[0].size",
        "linux.devices[0].type",
        "linux.devices[0].path",
        "linux.resources.devices[0].allow",
        "linux.resources.blockIO.weightDevice[0].major",
        "linux.resources.blockIO.weightDevice[0].minor",
        "linux.resources.blockIO.throttleReadBpsDevice[0].major",
        "linux.resources.blockIO.throttleReadBpsDevice[0].minor",
        "linux.resources.blockIO.throttleReadBpsDevice[0].rate",
        "linux.resources.hugepageLimits[0].pageSize",
        "linux.resources.hugepageLimits[0].limit",
        "linux.resources.network.priorities[0].name",
        "linux.resources.network.priorities[0].priority",
        "linux.memoryPolicy.mode",
        "linux.seccomp.defaultAction",
        "linux.seccomp.syscalls[0].names",
        "linux.seccomp.syscalls[0].action",
        "linux.seccomp.syscalls[0].args[0].index",
        "linux.seccomp.syscalls[0].args[0].value",
        "linux.seccomp.syscalls[0].args[0].op",
        "linux.personality.domain",
    }


@pytest.mark.parametrize("raw", [[], "x", None, 1])
def test_config_must_be_an_object(raw: object) -> None:
    with pytest.raises(SpecError) as info:
        parse_config(raw, "b/config.json")
    assert info.value.source == "b/config.json"
    assert info.value.violations[0].path == ""
    assert "expected object" in info.value.violations[0].message


def test_pids_limit_is_optional_since_1_3_0() -> None:
    resources = parse_resources({"pids": {}})
    assert resources.pids is not None and resources.pids.limit is None


def test_minimal_config() -> None:
    spec = parse_config({"ociVersion": "1.0.0", "root": {"path": "rootfs"}})
    assert spec.process is None and spec.linux is None and spec.mounts is None
    assert spec.extra == {}


# -- load_config --------------------------------------------------------------------------------


def test_load_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(full_config(), indent=2))
    raw, spec = load_config(str(path))
    assert raw == full_config()
    assert spec.raw is raw


def test_load_config_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{\n  "ociVersion": "1.3.0",\n  "root": {"path": "rootfs",}\n}\n')
    with pytest.raises(SpecError) as info:
        load_config(str(path))
    (violation,) = info.value.violations
    assert isinstance(violation, SyntaxViolation)
    assert (violation.line, violation.column) == (3, 29)
    assert "line 3 column 29" in violation.message
    assert info.value.source == str(path)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [("", 1, 1), ("{", 1, 2), ('{"a": 1} x', 1, 10), ('{"a":\n x}', 2, 2), ("\n\n  [", 3, 4)],
)
def test_malformed_json_positions(tmp_path: Path, text: str, line: int, column: int) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_config(str(path))
    violation = info.value.violations[0]
    assert isinstance(violation, SyntaxViolation)
    assert (violation.line, violation.column) == (line, column)


def test_load_config_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"ociVersion": "\xff"}')
    with pytest.raises(SpecError) as info:
        load_config(str(path))
    assert isinstance(info.value.violations[0], SyntaxViolation)


def test_load_config_missing_file_propagates_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_config(str(tmp_path / "config.json"))
    with pytest.raises(IsADirectoryError):
        load_config(str(tmp_path))


def test_load_config_type_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"ociVersion": 1}')
    with pytest.raises(SpecError) as info:
        load_config(str(path))
    assert info.value.source == str(path)
    assert info.value.violations == [Violation("ociVersion", "expected string, got number")]


# -- parse_process / parse_resources --------------------------------------------------------------


def test_parse_process() -> None:
    process = parse_process({"cwd": "/", "args": ["ls"], "env": ["A=1"], "user": {"uid": 0}})
    assert process.args == ("ls",) and process.cwd == "/"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"cwd": "tmp", "args": ["ls"]}, [Violation("cwd", "must be an absolute path")]),
        ({"cwd": "", "args": ["ls"]}, [Violation("cwd", "must be an absolute path")]),
        ({"cwd": "/"}, [Violation("args", "must not be empty")]),
        ({"cwd": "/", "args": []}, [Violation("args", "must not be empty")]),
        (
            {"args": [], "terminal": 1},
            [
                Violation("terminal", "expected boolean, got number"),
                Violation("cwd", "required field is missing"),
                Violation("args", "must not be empty"),
            ],
        ),
        ({"cwd": "/", "args": "ls"}, [Violation("args", "expected array, got string")]),
        ([], [Violation("", "expected object, got array")]),
    ],
)
def test_parse_process_violations(raw: object, expected: list[Violation]) -> None:
    with pytest.raises(SpecError) as info:
        parse_process(raw, "p.json")
    assert info.value.violations == expected
    assert info.value.source == "p.json"


def test_parse_resources() -> None:
    resources = parse_resources(full_resources())
    assert resources.memory is not None and resources.memory.limit == 536870912
    assert resources.extra == {}


def test_parse_resources_paths_are_relative_to_the_document() -> None:
    with pytest.raises(SpecError) as info:
        parse_resources({"memory": {"limit": "1G"}, "cpu": {"shares": -1}, "pids": 5})
    assert [v.path for v in info.value.violations] == ["memory.limit", "cpu.shares", "pids"]
    assert info.value.source == "resources"
