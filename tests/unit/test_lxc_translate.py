"""config.json -> LXC keys (backends/translate/lxc_config.py, lxc_resources.py): pure, no LXC."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from nexcage.backends.translate import lxc_config as lc
from nexcage.spec.config import parse_config

V1 = lc.HostFacts({"memory", "cpu", "cpuset", "pids", "blkio", "hugetlb", "devices", "freezer"},
                  swap_accounting=True)  # fmt: skip
V2 = lc.HostFacts((), {"memory", "cpu", "cpuset", "pids", "io", "hugetlb"})
PATHS = lc.Paths("/run/nx/.backends/lxc/c1", "/opt/nx/libexec/nexcage-lxc-init")

BASE: dict[str, Any] = {
    "ociVersion": "1.0.2",
    "root": {"path": "rootfs"},
    "process": {"args": ["sh", "-c", "echo a b"], "cwd": "/", "env": ["PATH=/bin"],
                "user": {"uid": 0, "gid": 0}},
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs"},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts"},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
    ],
    "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")]},
}  # fmt: skip


def tr(extra: dict[str, Any] | None = None, host: lc.HostFacts = V1, **kw: Any) -> lc.Translation:
    doc = copy.deepcopy(BASE)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return lc.translate(
        parse_config(doc), container_id="c1", bundle="/b", host=host, paths=PATHS,
        is_dir=kw.get("is_dir", lambda p: not p.endswith(".conf")),
    )  # fmt: skip


def paths(t: lc.Translation) -> list[str]:
    return [f.path for f in t.findings]


def test_basic_keys() -> None:
    t = tr()
    assert t.findings == []
    assert t.get("lxc.rootfs.path") == ["dir:/b/rootfs"]
    assert t.get("lxc.namespace.clone") == ["pid ipc uts mnt net"]
    assert t.get("lxc.net.0.type") == ["empty"]
    assert t.get("lxc.mount.auto") == ["proc:rw sys:ro"]
    assert t.get("lxc.autodev") == ["1"] and t.get("lxc.pty.max") == ["1024"]
    assert t.get("lxc.init.cmd") == ["/dev/.nexcage/init init /dev/.nexcage/process"]
    assert t.get("lxc.console.path") == ["none"] and t.get("lxc.apparmor.profile") == ["unconfined"]
    # argv goes to the helper's file, untouched: spaces are fine there
    assert [v for k, v in t.init if k == "arg"] == ["sh", "-c", "echo a b"]
    assert ("unset", "container") in t.init and ("unset", "PATH") not in t.init
    assert t.get("lxc.cgroup.dir.container") == ["nexcage/c1"]
    assert t.get("lxc.cgroup.dir.monitor") == ["nexcage.monitor/c1"]


def test_process_fields() -> None:
    t = tr({"process": {"args": ["x"], "cwd": "/srv", "env": ["A=1", "B= two "],
                        "user": {"uid": 1000, "gid": 100, "additionalGids": [5, 6], "umask": 18},
                        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 2**64 - 1}],
                        "noNewPrivileges": True, "oomScoreAdj": -5, "apparmorProfile": "p",
                        "terminal": True, "consoleSize": {"height": 24, "width": 80}},
            "hostname": "h"})  # fmt: skip
    assert t.findings == []
    assert t.get("lxc.environment") == ["A=1", "B= two "]
    assert t.get("lxc.init.cwd") == ["/srv"]
    assert (t.get("lxc.init.uid"), t.get("lxc.init.gid")) == (["1000"], ["100"])
    assert t.get("lxc.init.groups") == ["5,6"]
    assert t.get("lxc.prlimit.nofile") == ["10:unlimited"]
    assert t.get("lxc.no_new_privs") == ["1"] and t.get("lxc.proc.oom_score_adj") == ["-5"]
    assert t.get("lxc.apparmor.profile") == ["p"] and t.get("lxc.uts.name") == ["h"]
    assert ("umask", "22") in t.init and ("tty", "1") in t.init
    assert ("rows", "24") in t.init and ("cols", "80") in t.init
    assert ("unset", "PATH") in t.init


def test_config_value_quoting_round_trips() -> None:
    assert lc.config_value("plain") == "plain"
    assert lc.config_value(" x ") == "' x '"  # LXC trims blanks
    assert lc.config_value("'q'") == "''q''"  # LXC strips one pair of matching quotes
    assert lc.config_value('"q') == '"q'
    text = lc.render([("lxc.environment", "B= two ")])
    assert text == "lxc.environment = 'B= two '\n"


@pytest.mark.parametrize("bad", ["a\nlxc.mount.entry = / host none bind 0 0", "a\rb", "a\0b"])
def test_injection_is_refused_everywhere(bad: str) -> None:
    t = tr({"process": {"args": ["x"], "cwd": "/" + bad, "env": ["E=" + bad],
                        "user": {"uid": 0, "gid": 0}},
            "hostname": bad,
            "annotations": {lc.STOP_SIGNAL_ANNOTATION: "TERM" + bad},
            "mounts": [{"destination": "/m" + bad, "type": "bind", "source": "/s"}]})  # fmt: skip
    assert set(paths(t)) >= {"process.cwd", "process.env[0]", "hostname", "mounts[0]",
                             f'annotations["{lc.STOP_SIGNAL_ANNOTATION}"]'}  # fmt: skip
    for key, value in t.keys:
        assert "\n" not in value and "\r" not in value and "\0" not in value, key
    with pytest.raises(ValueError):
        lc.render([("lxc.environment", "x\nlxc.mount.entry = / a none bind 0 0")])


def test_newline_in_args_is_fine() -> None:
    # args never enter a config line (the helper reads them NUL-separated)
    t = tr({"process": {"args": ["sh", "-c", "echo a\necho b"], "cwd": "/"}})
    assert t.findings == []


def test_env_rules() -> None:
    t = tr({"process": {"args": ["x"], "cwd": "/", "env": ["BARE", "LXC_ROOTFS_MOUNT=/", "=x"]}})
    assert paths(t) == ["process.env[0]", "process.env[1]", "process.env[2]"]


def test_init_cmd_for_templates() -> None:
    assert lc.init_cmd(["/bin/sh", "-c", "true"]) == "/bin/sh -c true"
    assert lc.init_cmd(["sh", "-c", "echo a b"]) is None  # LXC splits on every space
    assert lc.init_cmd(["a", ""]) is None
    assert lc.init_cmd(["'x'"]) is None


def test_mounts() -> None:
    mounts = [*BASE["mounts"],
              {"destination": "/data", "type": "bind", "source": "vol", "options": ["rbind", "ro"]},
              {"destination": "/etc/my file.conf", "type": "bind", "source": "/h/my.conf"},
              {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
              {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue"},
              {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro"]}]  # fmt: skip
    t = tr({"mounts": mounts})
    assert t.findings == []
    entries = t.get("lxc.mount.entry")
    assert "/b/vol data none rbind,ro,create=dir 0 0" in entries
    assert "/h/my.conf etc/my\\040file.conf none bind,create=file 0 0" in entries
    assert "tmpfs tmp tmpfs size=1m,create=dir 0 0" in entries
    assert "mqueue dev/mqueue mqueue create=dir 0 0" in entries
    assert "/sys/fs/cgroup/memory/nexcage/c1 sys/fs/cgroup/memory none bind,ro,create=dir 0 0" in (
        entries
    )
    # nexcage's own entries come last, on top of everything
    assert entries[-1].startswith("/opt/nx/libexec/nexcage-lxc-init dev/.nexcage/init ")


def test_unsupported_mount_options() -> None:
    mounts = [{"destination": "/x", "type": "bind", "source": "/y", "options": ["rro", "idmap"]}]
    t = tr({"mounts": mounts})
    assert paths(t) == ["mounts[0].options[0]", "mounts[0].options[1]"]


def test_namespaces_joined_and_host() -> None:
    t = tr({"linux": {"namespaces": [{"type": "mount"}, {"type": "pid"},
                                     {"type": "network", "path": "/run/netns/n1"}]}})  # fmt: skip
    assert t.findings == []
    assert t.get("lxc.namespace.clone") == ["mnt pid"]
    assert t.get("lxc.namespace.share.net") == ["/run/netns/n1"]
    assert t.get("lxc.net.0.type") == ["none"]
    no_mnt = tr({"linux": {"namespaces": [{"type": "pid"}]}, "hostname": "h"})
    assert set(paths(no_mnt)) == {"linux.namespaces", "hostname"}
    join_mnt = tr({"linux": {"namespaces": [{"type": "mount", "path": "/proc/1/ns/mnt"}]}})
    assert "linux.namespaces[0].path" in paths(join_mnt)


def test_user_namespace_idmap() -> None:
    linux = {"namespaces": [*BASE["linux"]["namespaces"], {"type": "user"}],
             "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
             "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}  # fmt: skip
    t = tr({"linux": linux})
    assert t.get("lxc.idmap") == ["u 0 100000 65536", "g 0 100000 65536"]
    assert "user" in t.get("lxc.namespace.clone")[0]


def test_resources_v1_and_v2() -> None:
    res = {"memory": {"limit": 100, "swap": 300, "reservation": 50},
           "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1"},
           "pids": {"limit": 42},
           "blockIO": {"weight": 500,
                       "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 10}]},
           "hugepageLimits": [{"pageSize": "2MB", "limit": 4096}]}  # fmt: skip
    v1 = tr({"linux": {"resources": res}})
    assert v1.findings == []
    assert v1.get("lxc.cgroup.memory.limit_in_bytes") == ["100"]
    assert v1.get("lxc.cgroup.memory.memsw.limit_in_bytes") == ["300"]
    assert v1.get("lxc.cgroup.memory.soft_limit_in_bytes") == ["50"]
    assert v1.get("lxc.cgroup.cpu.shares") == ["1024"]
    assert v1.get("lxc.cgroup.cpu.cfs_quota_us") == ["50000"]
    assert v1.get("lxc.cgroup.cpu.cfs_period_us") == ["100000"]
    assert v1.get("lxc.cgroup.cpuset.cpus") == ["0-1"]
    assert v1.get("lxc.cgroup.pids.max") == ["42"]
    assert v1.get("lxc.cgroup.blkio.weight") == ["500"]
    assert v1.get("lxc.cgroup.blkio.throttle.read_bps_device") == ["8:0 10"]
    assert v1.get("lxc.cgroup.hugetlb.2MB.limit_in_bytes") == ["4096"]
    v2 = tr({"linux": {"resources": res}}, host=V2)
    assert v2.get("lxc.cgroup2.memory.max") == ["100"]
    assert v2.get("lxc.cgroup2.memory.swap.max") == ["200"]
    assert v2.get("lxc.cgroup2.memory.low") == ["50"]
    assert v2.get("lxc.cgroup2.cpu.weight") == ["39"]
    assert v2.get("lxc.cgroup2.cpu.max") == ["50000 100000"]
    assert v2.get("lxc.cgroup2.pids.max") == ["42"]
    assert v2.get("lxc.cgroup2.io.max") == ["8:0 rbps=10"]
    assert v2.get("lxc.cgroup2.hugetlb.2MB.max") == ["4096"]
    assert v2.get("lxc.cgroup2.io.weight") == ["4950"]
    assert v2.findings == []


def test_resources_without_controller_are_findings() -> None:
    t = tr({"linux": {"resources": {"rdma": {"mlx": {"hcaHandles": 1}},
                                    "memory": {"kernel": 5, "swappiness": 1},
                                    "unified": {"memory.high": "5"}}}})  # fmt: skip
    assert set(paths(t)) == {"linux.resources.rdma", "linux.resources.memory.kernel",
                             'linux.resources.unified["memory.high"]'}  # fmt: skip


def test_devices() -> None:
    linux = {**BASE["linux"],
             "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                          "fileMode": 0o666}, {"path": "/dev/null", "type": "c", "major": 1,
                          "minor": 3}],
             "resources": {"devices": [
                 {"allow": False, "access": "rwm"},
                 {"allow": True, "type": "c", "major": 4, "access": "rw"},
             ]}}  # fmt: skip
    t = tr({"linux": linux})
    assert t.findings == []
    rules = [(k.rsplit(".", 1)[1], v) for k, v in t.keys if k.startswith("lxc.cgroup.devices")]
    assert rules[:3] == [("deny", "a"), ("deny", "a"), ("allow", "c 4:* rw")]
    assert ("allow", "c 10:229 rwm") in rules and ("allow", "c 136:* rwm") in rules
    assert "dc 10 229 666 0 0 /dev/fuse" in t.hook
    assert not any("/dev/null" in r for r in t.hook)  # LXC's autodev makes it


def test_hook_records_and_hook_key() -> None:
    linux = {**BASE["linux"], "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
             "rootfsPropagation": "rslave"}  # fmt: skip
    t = tr({"linux": linux, "root": {"path": "rootfs", "readonly": True}})
    assert t.hook == ["R", "m/proc/kcore", "r/proc/sys", f"p{(1 << 19) | lc.MS_REC}"]
    assert t.get("lxc.hook.mount") == ["/opt/nx/libexec/nexcage-lxc-init hook"]
    assert lc.hook_records(["a", "b"]) == b"a\0b\0"
    assert lc.records([("arg", "x y")]) == b"arg=x y\0"


def test_capabilities() -> None:
    caps = {k: ["CAP_KILL", "CAP_CHOWN"] for k in ("bounding", "effective", "permitted")}
    t = tr({"process": {"args": ["x"], "cwd": "/", "capabilities": caps}})
    assert t.get("lxc.cap.keep") == ["kill chown"]
    none = tr({"process": {"args": ["x"], "cwd": "/", "capabilities": {"bounding": []}}})
    assert none.get("lxc.cap.keep") == ["none"]
    ambient = tr({"process": {"args": ["x"], "cwd": "/", "user": {"uid": 5, "gid": 5},
                              "capabilities": {"ambient": ["CAP_KILL"]}}})  # fmt: skip
    assert paths(ambient) == ["process.capabilities.ambient"]
    assert lc.CAP_NUMBERS["CAP_CHOWN"] == 0 and lc.CAP_NUMBERS["CAP_CHECKPOINT_RESTORE"] == 40


def test_fields_lxc_cannot_express() -> None:
    t = tr({
        "hooks": {"prestart": [{"path": "/bin/true"}], "poststop": [{"path": "/bin/true"}]},
        "domainname": "d",
        "process": {"args": ["x"], "cwd": "/", "scheduler": {"policy": "SCHED_OTHER"},
                    "ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 1}},
        "linux": {**BASE["linux"], "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"},
                  "intelRdt": {"closID": "x"}, "cgroupsPath": "system.slice:nx:c1",
                  "personality": {"domain": "LINUX", "flags": ["x"]}},
    })  # fmt: skip
    assert set(paths(t)) == {
        "hooks.prestart", "hooks.poststop", "domainname", "process.scheduler",
        "process.ioPriority", "linux.seccomp", "linux.intelRdt", "linux.cgroupsPath",
        "linux.personality.flags",
    }  # fmt: skip


def test_cgroups_path_and_stop_signal() -> None:
    t = tr({"linux": {**BASE["linux"], "cgroupsPath": "/libpod_parent/libpod-x"},
            "annotations": {lc.STOP_SIGNAL_ANNOTATION: "sigusr1"}})  # fmt: skip
    assert t.get("lxc.cgroup.dir.container") == ["libpod_parent/libpod-x"]
    assert t.get("lxc.signal.halt") == ["SIGUSR1"]
    rel = tr({"linux": {**BASE["linux"], "cgroupsPath": "rel/x"}})
    assert rel.get("lxc.cgroup.relative") == ["1"]


def test_check_mode_has_no_helper_keys() -> None:
    t = lc.translate(parse_config(copy.deepcopy(BASE)), container_id="c", bundle="/b", host=V1)
    assert t.findings == [] and t.get("lxc.init.cmd") == []
