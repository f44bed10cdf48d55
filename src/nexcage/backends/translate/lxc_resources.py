"""linux.resources -> ``lxc.cgroup.*`` (cgroup v1) or ``lxc.cgroup2.*`` (v2) keys, as pure data.

Per limit, the hierarchy that holds the controller on this host decides the key family (LXC 5
accepts both; LXC 7 only ``lxc.cgroup2.*``); values use runc's conversions where v1 and v2
differ (CPU shares to weight, memory+swap to swap alone, blkio weight to io weight). Used for
create and for ``update`` (whose keys are written to the live cgroup).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nexcage.backends.translate.lxc_config import HostFacts, Translation
    from nexcage.spec.config import Resources


# The v1 controller whose limits cgroup v2 moved to another controller's files.
V2_NAMES = {"blkio": "io"}


class _Cgroup:
    """Emit one limit as a v1 key or a v2 key, whichever hierarchy has the controller."""

    __slots__ = ("host", "out")

    def __init__(self, host: HostFacts, out: Translation) -> None:
        self.host = host
        self.out = out

    def set(
        self,
        controller: str,
        path: str,
        v1: tuple[str, str] | None,
        v2: tuple[str, str] | None,
    ) -> None:
        if controller in self.host.cgroup_v1:
            if v1 is None:
                self.out.find(path, f"no cgroup v1 {controller} file for it")
            else:
                self.out.add(f"lxc.cgroup.{v1[0]}", v1[1], path)
        elif V2_NAMES.get(controller, controller) in self.host.cgroup_v2:
            if v2 is None:
                self.out.find(path, f"no cgroup v2 {controller} file for it")
            else:
                self.out.add(f"lxc.cgroup2.{v2[0]}", v2[1], path)
        else:
            self.out.find(path, f"the {controller} cgroup controller is not available here")


def resource_keys(res: Resources, host: HostFacts, out: Translation, base: str) -> None:
    """``lxc.cgroup.*`` / ``lxc.cgroup2.*`` keys for linux.resources (also ``update``)."""
    cg = _Cgroup(host, out)
    _memory(res, host, cg, base)
    _cpu(res, cg, base)
    if res.pids is not None and res.pids.limit is not None:
        limit = res.pids.limit
        value = "max" if limit <= 0 else str(limit)
        cg.set("pids", f"{base}.pids.limit", ("pids.max", value), ("pids.max", value))
    _block_io(res, cg, base)
    for i, page in enumerate(res.hugepage_limits or ()):
        size = page.page_size
        path = f"{base}.hugepageLimits[{i}]"
        if not size.replace("B", "").replace("K", "").replace("M", "").replace("G", "").isdigit():
            out.find(path + ".pageSize", f"{size!r} is not a page size")
            continue
        value = str(page.limit)
        cg.set(
            "hugetlb",
            path,
            (f"hugetlb.{size}.limit_in_bytes", value),
            (f"hugetlb.{size}.max", value),
        )
    network = res.network
    if network is not None:
        if network.class_id is not None:
            value = str(network.class_id)
            cg.set("net_cls", f"{base}.network.classID", ("net_cls.classid", value), None)
        for i, prio in enumerate(network.priorities or ()):
            value = f"{prio.name} {prio.priority}"
            path = f"{base}.network.priorities[{i}]"
            cg.set("net_prio", path, ("net_prio.ifpriomap", value), None)
    if res.rdma:
        out.find(f"{base}.rdma", "rdma limits are not translated for LXC")
    for key, value in (res.unified or {}).items():
        path = f'{base}.unified["{key}"]'
        if not host.cgroup_v2 or not key.replace(".", "").replace("_", "").isalnum():
            out.find(path, "cgroup v2 files need a cgroup v2 hierarchy with that controller")
            continue
        out.add(f"lxc.cgroup2.{key}", value, path)


def _memory(res: Resources, host: HostFacts, cg: _Cgroup, base: str) -> None:
    mem = res.memory
    if mem is None:
        return
    path = f"{base}.memory"
    if mem.limit is not None:
        value = "max" if mem.limit < 0 else str(mem.limit)
        v1 = "-1" if mem.limit < 0 else str(mem.limit)
        cg.set("memory", path + ".limit", ("memory.limit_in_bytes", v1), ("memory.max", value))
    if mem.reservation is not None:
        v1 = str(mem.reservation)
        value = "max" if mem.reservation < 0 else v1
        cg.set(
            "memory",
            path + ".reservation",
            ("memory.soft_limit_in_bytes", v1),
            ("memory.low", value),
        )
    if mem.swap is not None:
        # OCI swap is memory+swap (runc); cgroup v2 limits swap alone.
        swap_v2: tuple[str, str] | None = None
        if mem.swap < 0:
            swap_v2 = ("memory.swap.max", "max")
        elif mem.limit is not None and mem.limit >= 0:
            swap_v2 = ("memory.swap.max", str(max(mem.swap - mem.limit, 0)))
        swap_v1 = ("memory.memsw.limit_in_bytes", str(mem.swap)) if host.swap_accounting else None
        cg.set("memory", path + ".swap", swap_v1, swap_v2)
    if mem.kernel is not None:
        cg.out.find(path + ".kernel", "kernel memory limits are deprecated and not set by LXC")
    if mem.kernel_tcp is not None:
        cg.out.find(path + ".kernelTCP", "kernel TCP memory limits are not set by LXC")
    if mem.swappiness is not None:
        value = str(mem.swappiness)
        cg.set("memory", path + ".swappiness", ("memory.swappiness", value), None)
    if mem.disable_oom_killer:
        cg.set("memory", path + ".disableOOMKiller", ("memory.oom_control", "1"), None)
    if mem.use_hierarchy is not None:
        value = "1" if mem.use_hierarchy else "0"
        cg.set("memory", path + ".useHierarchy", ("memory.use_hierarchy", value), None)


def _cpu(res: Resources, cg: _Cgroup, base: str) -> None:
    cpu = res.cpu
    if cpu is None:
        return
    path = f"{base}.cpu"
    if cpu.shares is not None:
        # runc's conversion (libcontainer/cgroups ConvertCPUSharesToCgroupV2Value).
        weight = 0 if cpu.shares == 0 else 1 + ((cpu.shares - 2) * 9999) // 262142
        cg.set(
            "cpu", path + ".shares", ("cpu.shares", str(cpu.shares)), ("cpu.weight", str(weight))
        )
    if cpu.quota is not None or cpu.period is not None:
        period = cpu.period or 100000
        quota = cpu.quota if cpu.quota is not None else -1
        max_value = f"{'max' if quota < 0 else quota} {period}"
        if cpu.quota is not None:
            cg.set("cpu", path + ".quota", ("cpu.cfs_quota_us", str(quota)), ("cpu.max", max_value))
        if cpu.period is not None:
            v2 = None if cpu.quota is not None else ("cpu.max", max_value)
            if cg.host.cgroup_v1 and "cpu" in cg.host.cgroup_v1:
                cg.set("cpu", path + ".period", ("cpu.cfs_period_us", str(period)), v2)
            elif v2 is not None:
                cg.set("cpu", path + ".period", None, v2)
    if cpu.burst is not None:
        value = str(cpu.burst)
        cg.set("cpu", path + ".burst", ("cpu.cfs_burst_us", value), ("cpu.max.burst", value))
    if cpu.realtime_runtime is not None:
        value = str(cpu.realtime_runtime)
        cg.set("cpu", path + ".realtimeRuntime", ("cpu.rt_runtime_us", value), None)
    if cpu.realtime_period is not None:
        value = str(cpu.realtime_period)
        cg.set("cpu", path + ".realtimePeriod", ("cpu.rt_period_us", value), None)
    if cpu.cpus:
        value = cpu.cpus
        cg.set("cpuset", path + ".cpus", ("cpuset.cpus", value), ("cpuset.cpus", value))
    if cpu.mems:
        value = cpu.mems
        cg.set("cpuset", path + ".mems", ("cpuset.mems", value), ("cpuset.mems", value))
    if cpu.idle is not None:
        cg.set("cpu", path + ".idle", None, ("cpu.idle", str(cpu.idle)))


def _block_io(res: Resources, cg: _Cgroup, base: str) -> None:
    bio = res.block_io
    if bio is None:
        return
    path = f"{base}.blockIO"
    if bio.weight is not None:
        weight = 1 + (bio.weight - 10) * 9999 // 990 if bio.weight else 0
        cg.set(
            "blkio", path + ".weight", ("blkio.weight", str(bio.weight)), ("io.weight", str(weight))
        )
    if bio.leaf_weight is not None:
        value = str(bio.leaf_weight)
        cg.set("blkio", path + ".leafWeight", ("blkio.leaf_weight", value), None)
    for i, dev in enumerate(bio.weight_device or ()):
        if dev.weight is not None:
            value = f"{dev.major}:{dev.minor} {dev.weight}"
            cg.set(
                "blkio",
                f"{path}.weightDevice[{i}]",
                ("blkio.weight_device", value),
                ("io.weight", value),
            )
    for field, attr, v1, v2 in (
        ("throttleReadBpsDevice", "throttle_read_bps_device", "read_bps_device", "rbps"),
        ("throttleWriteBpsDevice", "throttle_write_bps_device", "write_bps_device", "wbps"),
        ("throttleReadIOPSDevice", "throttle_read_iops_device", "read_iops_device", "riops"),
        ("throttleWriteIOPSDevice", "throttle_write_iops_device", "write_iops_device", "wiops"),
    ):
        for i, dev in enumerate(getattr(bio, attr) or ()):
            device = f"{dev.major}:{dev.minor}"
            cg.set(
                "blkio",
                f"{path}.{field}[{i}]",
                (f"blkio.throttle.{v1}", f"{device} {dev.rate}"),
                ("io.max", f"{device} {v2}={dev.rate}"),
            )
