"""Typed models of runtime-spec v1.3.0 ``config.json`` and the functions that parse it.

Field names and types follow ``specs-go/config.go`` at v1.3.0; REQUIRED follows the markdown
(config.md, config-linux.md), which the spec calls canonical, where it disagrees with
``schema/*.json``. Other platforms (solaris, windows, vm, zos, freebsd) stay raw dicts.

Parsing checks JSON types and required fields only and reports all of them at once
(:class:`~nexcage.errors.SpecError`); the semantic rules live in :mod:`nexcage.spec.validate`.
The models are read-only views: never re-serialise one over a user's config.json — derive from
the raw dict instead (STYLE.md).
"""

from __future__ import annotations

from nexcage import fastjson
from nexcage.errors import SpecError, Violation
from nexcage.spec.model import (
    BOOL,
    INT,
    INT32,
    INT64,
    OBJECT,
    REQUIRED,
    STRING,
    STRING_MAP,
    STRINGS,
    UINT,
    UINT16,
    UINT32,
    UINT64,
    Model,
    json_type,
    list_of,
    map_of,
    slots,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# -- process ----------------------------------------------------------------------------------


class ConsoleSize(Model):
    FIELDS = (("height", "height", UINT, REQUIRED), ("width", "width", UINT, REQUIRED))
    __slots__ = slots(FIELDS)
    height: int
    width: int


class User(Model):
    # uid/gid are REQUIRED on POSIX only (Windows has username): checked in validate.py.
    FIELDS = (
        ("uid", "uid", UINT32, False),
        ("gid", "gid", UINT32, False),
        ("umask", "umask", UINT32, False),
        ("additionalGids", "additional_gids", list_of(UINT32), False),
        ("username", "username", STRING, False),
    )
    __slots__ = slots(FIELDS)
    uid: int | None
    gid: int | None
    umask: int | None
    additional_gids: tuple[int, ...] | None
    username: str | None


class Capabilities(Model):
    FIELDS = (
        ("bounding", "bounding", STRINGS, False),
        ("effective", "effective", STRINGS, False),
        ("inheritable", "inheritable", STRINGS, False),
        ("permitted", "permitted", STRINGS, False),
        ("ambient", "ambient", STRINGS, False),
    )
    __slots__ = slots(FIELDS)
    bounding: tuple[str, ...] | None
    effective: tuple[str, ...] | None
    inheritable: tuple[str, ...] | None
    permitted: tuple[str, ...] | None
    ambient: tuple[str, ...] | None


class Rlimit(Model):
    FIELDS = (
        ("type", "type", STRING, REQUIRED),
        ("hard", "hard", UINT64, REQUIRED),
        ("soft", "soft", UINT64, REQUIRED),
    )
    __slots__ = slots(FIELDS)
    type: str
    hard: int
    soft: int


class Scheduler(Model):
    # since 1.1.0
    FIELDS = (
        ("policy", "policy", STRING, REQUIRED),
        ("nice", "nice", INT32, False),
        ("priority", "priority", INT32, False),
        ("flags", "flags", STRINGS, False),
        ("runtime", "runtime", UINT64, False),
        ("deadline", "deadline", UINT64, False),
        ("period", "period", UINT64, False),
    )
    __slots__ = slots(FIELDS)
    policy: str
    nice: int | None
    priority: int | None
    flags: tuple[str, ...] | None
    runtime: int | None
    deadline: int | None
    period: int | None


class IOPriority(Model):
    # since 1.1.0; config.md marks both REQUIRED (the schema only `class`)
    FIELDS = (("class", "class_", STRING, REQUIRED), ("priority", "priority", INT, REQUIRED))
    __slots__ = slots(FIELDS)
    class_: str
    priority: int


class CPUAffinity(Model):
    # process.execCPUAffinity, since 1.2.1
    FIELDS = (("initial", "initial", STRING, False), ("final", "final", STRING, False))
    __slots__ = slots(FIELDS)
    initial: str | None
    final: str | None


class Process(Model):
    FIELDS = (
        ("terminal", "terminal", BOOL, False),
        ("consoleSize", "console_size", ConsoleSize.parse, False),
        ("user", "user", User.parse, False),
        ("args", "args", STRINGS, False),
        ("commandLine", "command_line", STRING, False),
        ("env", "env", STRINGS, False),
        ("cwd", "cwd", STRING, REQUIRED),
        ("capabilities", "capabilities", Capabilities.parse, False),
        ("rlimits", "rlimits", list_of(Rlimit.parse), False),
        ("noNewPrivileges", "no_new_privileges", BOOL, False),
        ("apparmorProfile", "apparmor_profile", STRING, False),
        ("oomScoreAdj", "oom_score_adj", INT, False),
        ("scheduler", "scheduler", Scheduler.parse, False),
        ("selinuxLabel", "selinux_label", STRING, False),
        ("ioPriority", "io_priority", IOPriority.parse, False),
        ("execCPUAffinity", "exec_cpu_affinity", CPUAffinity.parse, False),
    )
    __slots__ = slots(FIELDS)
    terminal: bool | None
    console_size: ConsoleSize | None
    user: User | None
    args: tuple[str, ...] | None
    command_line: str | None
    env: tuple[str, ...] | None
    cwd: str
    capabilities: Capabilities | None
    rlimits: tuple[Rlimit, ...] | None
    no_new_privileges: bool | None
    apparmor_profile: str | None
    oom_score_adj: int | None
    scheduler: Scheduler | None
    selinux_label: str | None
    io_priority: IOPriority | None
    exec_cpu_affinity: CPUAffinity | None


# -- root, mounts, hooks ----------------------------------------------------------------------


class Root(Model):
    FIELDS = (("path", "path", STRING, REQUIRED), ("readonly", "readonly", BOOL, False))
    __slots__ = slots(FIELDS)
    path: str
    readonly: bool | None


class IDMapping(Model):
    FIELDS = (
        ("containerID", "container_id", UINT32, REQUIRED),
        ("hostID", "host_id", UINT32, REQUIRED),
        ("size", "size", UINT32, REQUIRED),
    )
    __slots__ = slots(FIELDS)
    container_id: int
    host_id: int
    size: int


class Mount(Model):
    FIELDS = (
        ("destination", "destination", STRING, REQUIRED),
        ("type", "type", STRING, False),
        ("source", "source", STRING, False),
        ("options", "options", STRINGS, False),
        ("uidMappings", "uid_mappings", list_of(IDMapping.parse), False),  # since 1.1.0
        ("gidMappings", "gid_mappings", list_of(IDMapping.parse), False),
    )
    __slots__ = slots(FIELDS)
    destination: str
    type: str | None
    source: str | None
    options: tuple[str, ...] | None
    uid_mappings: tuple[IDMapping, ...] | None
    gid_mappings: tuple[IDMapping, ...] | None


class Hook(Model):
    FIELDS = (
        ("path", "path", STRING, REQUIRED),
        ("args", "args", STRINGS, False),
        ("env", "env", STRINGS, False),
        ("timeout", "timeout", INT, False),
    )
    __slots__ = slots(FIELDS)
    path: str
    args: tuple[str, ...] | None
    env: tuple[str, ...] | None
    timeout: int | None


HOOK_KINDS = (
    "prestart",  # deprecated
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)
_HOOKS = list_of(Hook.parse)


class Hooks(Model):
    FIELDS = (
        ("prestart", "prestart", _HOOKS, False),
        ("createRuntime", "create_runtime", _HOOKS, False),
        ("createContainer", "create_container", _HOOKS, False),
        ("startContainer", "start_container", _HOOKS, False),
        ("poststart", "poststart", _HOOKS, False),
        ("poststop", "poststop", _HOOKS, False),
    )
    __slots__ = slots(FIELDS)
    prestart: tuple[Hook, ...] | None
    create_runtime: tuple[Hook, ...] | None
    create_container: tuple[Hook, ...] | None
    start_container: tuple[Hook, ...] | None
    poststart: tuple[Hook, ...] | None
    poststop: tuple[Hook, ...] | None


# -- linux.resources (also the document of `update --resources`) -------------------------------


class DeviceRule(Model):
    """An entry of linux.resources.devices (the device cgroup allow list)."""

    FIELDS = (
        ("allow", "allow", BOOL, REQUIRED),
        ("type", "type", STRING, False),
        ("major", "major", INT64, False),
        ("minor", "minor", INT64, False),
        ("access", "access", STRING, False),
    )
    __slots__ = slots(FIELDS)
    allow: bool
    type: str | None
    major: int | None
    minor: int | None
    access: str | None


class Memory(Model):
    FIELDS = (
        ("limit", "limit", INT64, False),
        ("reservation", "reservation", INT64, False),
        ("swap", "swap", INT64, False),  # memory+swap, runc semantics
        ("kernel", "kernel", INT64, False),  # NOT RECOMMENDED
        ("kernelTCP", "kernel_tcp", INT64, False),  # NOT RECOMMENDED
        ("swappiness", "swappiness", UINT64, False),
        ("disableOOMKiller", "disable_oom_killer", BOOL, False),
        ("useHierarchy", "use_hierarchy", BOOL, False),
        ("checkBeforeUpdate", "check_before_update", BOOL, False),  # since 1.1.0
    )
    __slots__ = slots(FIELDS)
    limit: int | None
    reservation: int | None
    swap: int | None
    kernel: int | None
    kernel_tcp: int | None
    swappiness: int | None
    disable_oom_killer: bool | None
    use_hierarchy: bool | None
    check_before_update: bool | None


class CPU(Model):
    FIELDS = (
        ("shares", "shares", UINT64, False),
        ("quota", "quota", INT64, False),
        ("burst", "burst", UINT64, False),  # since 1.1.0
        ("period", "period", UINT64, False),
        ("realtimeRuntime", "realtime_runtime", INT64, False),
        ("realtimePeriod", "realtime_period", UINT64, False),
        ("cpus", "cpus", STRING, False),
        ("mems", "mems", STRING, False),
        ("idle", "idle", INT64, False),  # since 1.1.0
    )
    __slots__ = slots(FIELDS)
    shares: int | None
    quota: int | None
    burst: int | None
    period: int | None
    realtime_runtime: int | None
    realtime_period: int | None
    cpus: str | None
    mems: str | None
    idle: int | None


class Pids(Model):
    # limit is OPTIONAL since 1.3.0 (#1279, config-linux.md); schema/config-linux.json still
    # lists it as required.
    FIELDS = (("limit", "limit", INT64, False),)
    __slots__ = slots(FIELDS)
    limit: int | None


class WeightDevice(Model):
    FIELDS = (
        ("major", "major", INT64, REQUIRED),
        ("minor", "minor", INT64, REQUIRED),
        ("weight", "weight", UINT16, False),
        ("leafWeight", "leaf_weight", UINT16, False),
    )
    __slots__ = slots(FIELDS)
    major: int
    minor: int
    weight: int | None
    leaf_weight: int | None


class ThrottleDevice(Model):
    FIELDS = (
        ("major", "major", INT64, REQUIRED),
        ("minor", "minor", INT64, REQUIRED),
        ("rate", "rate", UINT64, REQUIRED),
    )
    __slots__ = slots(FIELDS)
    major: int
    minor: int
    rate: int


_THROTTLE = list_of(ThrottleDevice.parse)


class BlockIO(Model):
    FIELDS = (
        ("weight", "weight", UINT16, False),
        ("leafWeight", "leaf_weight", UINT16, False),
        ("weightDevice", "weight_device", list_of(WeightDevice.parse), False),
        ("throttleReadBpsDevice", "throttle_read_bps_device", _THROTTLE, False),
        ("throttleWriteBpsDevice", "throttle_write_bps_device", _THROTTLE, False),
        ("throttleReadIOPSDevice", "throttle_read_iops_device", _THROTTLE, False),
        ("throttleWriteIOPSDevice", "throttle_write_iops_device", _THROTTLE, False),
    )
    __slots__ = slots(FIELDS)
    weight: int | None
    leaf_weight: int | None
    weight_device: tuple[WeightDevice, ...] | None
    throttle_read_bps_device: tuple[ThrottleDevice, ...] | None
    throttle_write_bps_device: tuple[ThrottleDevice, ...] | None
    throttle_read_iops_device: tuple[ThrottleDevice, ...] | None
    throttle_write_iops_device: tuple[ThrottleDevice, ...] | None


class HugepageLimit(Model):
    FIELDS = (("pageSize", "page_size", STRING, REQUIRED), ("limit", "limit", UINT64, REQUIRED))
    __slots__ = slots(FIELDS)
    page_size: str
    limit: int


class InterfacePriority(Model):
    FIELDS = (("name", "name", STRING, REQUIRED), ("priority", "priority", UINT32, REQUIRED))
    __slots__ = slots(FIELDS)
    name: str
    priority: int


class Network(Model):
    FIELDS = (
        ("classID", "class_id", UINT32, False),
        ("priorities", "priorities", list_of(InterfacePriority.parse), False),
    )
    __slots__ = slots(FIELDS)
    class_id: int | None
    priorities: tuple[InterfacePriority, ...] | None


class Rdma(Model):
    FIELDS = (
        ("hcaHandles", "hca_handles", UINT32, False),
        ("hcaObjects", "hca_objects", UINT32, False),
    )
    __slots__ = slots(FIELDS)
    hca_handles: int | None
    hca_objects: int | None


class Resources(Model):
    FIELDS = (
        ("devices", "devices", list_of(DeviceRule.parse), False),
        ("memory", "memory", Memory.parse, False),
        ("cpu", "cpu", CPU.parse, False),
        ("pids", "pids", Pids.parse, False),
        ("blockIO", "block_io", BlockIO.parse, False),
        ("hugepageLimits", "hugepage_limits", list_of(HugepageLimit.parse), False),
        ("network", "network", Network.parse, False),
        ("rdma", "rdma", map_of(Rdma.parse), False),
        ("unified", "unified", STRING_MAP, False),  # cgroup v2 files, since 1.1.0
    )
    __slots__ = slots(FIELDS)
    devices: tuple[DeviceRule, ...] | None
    memory: Memory | None
    cpu: CPU | None
    pids: Pids | None
    block_io: BlockIO | None
    hugepage_limits: tuple[HugepageLimit, ...] | None
    network: Network | None
    rdma: dict[str, Rdma] | None
    unified: dict[str, str] | None


# -- linux ------------------------------------------------------------------------------------


class Namespace(Model):
    FIELDS = (("type", "type", STRING, REQUIRED), ("path", "path", STRING, False))
    __slots__ = slots(FIELDS)
    type: str
    path: str | None


class TimeOffset(Model):
    FIELDS = (("secs", "secs", INT64, False), ("nanosecs", "nanosecs", UINT32, False))
    __slots__ = slots(FIELDS)
    secs: int | None
    nanosecs: int | None


class Device(Model):
    """An entry of linux.devices; major/minor are REQUIRED unless type is "p" (validate.py)."""

    FIELDS = (
        ("type", "type", STRING, REQUIRED),
        ("path", "path", STRING, REQUIRED),
        ("major", "major", INT64, False),
        ("minor", "minor", INT64, False),
        ("fileMode", "file_mode", UINT32, False),
        ("uid", "uid", UINT32, False),
        ("gid", "gid", UINT32, False),
    )
    __slots__ = slots(FIELDS)
    type: str
    path: str
    major: int | None
    minor: int | None
    file_mode: int | None
    uid: int | None
    gid: int | None


class NetDevice(Model):
    # linux.netDevices values, since 1.3.0; the map key is the host interface name
    FIELDS = (("name", "name", STRING, False),)
    __slots__ = slots(FIELDS)
    name: str | None


class IntelRdt(Model):
    FIELDS = (
        ("closID", "clos_id", STRING, False),
        ("l3CacheSchema", "l3_cache_schema", STRING, False),
        ("memBwSchema", "mem_bw_schema", STRING, False),
        ("schemata", "schemata", STRINGS, False),  # since 1.3.0
        ("enableMonitoring", "enable_monitoring", BOOL, False),  # since 1.3.0
        # 1.1.0 to 1.2.1 only, replaced by enableMonitoring (config-linux.md NOTE)
        ("enableCMT", "enable_cmt", BOOL, False),
        ("enableMBM", "enable_mbm", BOOL, False),
    )
    __slots__ = slots(FIELDS)
    clos_id: str | None
    l3_cache_schema: str | None
    mem_bw_schema: str | None
    schemata: tuple[str, ...] | None
    enable_monitoring: bool | None
    enable_cmt: bool | None
    enable_mbm: bool | None


class MemoryPolicy(Model):
    # since 1.3.0 (#1282)
    FIELDS = (
        ("mode", "mode", STRING, REQUIRED),
        ("nodes", "nodes", STRING, False),
        ("flags", "flags", STRINGS, False),
    )
    __slots__ = slots(FIELDS)
    mode: str
    nodes: str | None
    flags: tuple[str, ...] | None


class SyscallArg(Model):
    FIELDS = (
        ("index", "index", UINT, REQUIRED),
        ("value", "value", UINT64, REQUIRED),
        ("valueTwo", "value_two", UINT64, False),
        ("op", "op", STRING, REQUIRED),
    )
    __slots__ = slots(FIELDS)
    index: int
    value: int
    value_two: int | None
    op: str


class Syscall(Model):
    FIELDS = (
        ("names", "names", STRINGS, REQUIRED),
        ("action", "action", STRING, REQUIRED),
        ("errnoRet", "errno_ret", UINT32, False),
        ("args", "args", list_of(SyscallArg.parse), False),
    )
    __slots__ = slots(FIELDS)
    names: tuple[str, ...]
    action: str
    errno_ret: int | None
    args: tuple[SyscallArg, ...] | None


class Seccomp(Model):
    FIELDS = (
        ("defaultAction", "default_action", STRING, REQUIRED),
        ("defaultErrnoRet", "default_errno_ret", UINT32, False),
        ("architectures", "architectures", STRINGS, False),
        ("flags", "flags", STRINGS, False),
        ("listenerPath", "listener_path", STRING, False),
        ("listenerMetadata", "listener_metadata", STRING, False),
        ("syscalls", "syscalls", list_of(Syscall.parse), False),
    )
    __slots__ = slots(FIELDS)
    default_action: str
    default_errno_ret: int | None
    architectures: tuple[str, ...] | None
    flags: tuple[str, ...] | None
    listener_path: str | None
    listener_metadata: str | None
    syscalls: tuple[Syscall, ...] | None


class Personality(Model):
    FIELDS = (("domain", "domain", STRING, REQUIRED), ("flags", "flags", STRINGS, False))
    __slots__ = slots(FIELDS)
    domain: str
    flags: tuple[str, ...] | None


class Linux(Model):
    FIELDS = (
        ("namespaces", "namespaces", list_of(Namespace.parse), False),
        ("uidMappings", "uid_mappings", list_of(IDMapping.parse), False),
        ("gidMappings", "gid_mappings", list_of(IDMapping.parse), False),
        ("timeOffsets", "time_offsets", map_of(TimeOffset.parse), False),
        ("devices", "devices", list_of(Device.parse), False),
        ("netDevices", "net_devices", map_of(NetDevice.parse), False),
        ("cgroupsPath", "cgroups_path", STRING, False),
        ("resources", "resources", Resources.parse, False),
        ("intelRdt", "intel_rdt", IntelRdt.parse, False),
        ("memoryPolicy", "memory_policy", MemoryPolicy.parse, False),
        ("sysctl", "sysctl", STRING_MAP, False),
        ("seccomp", "seccomp", Seccomp.parse, False),
        ("rootfsPropagation", "rootfs_propagation", STRING, False),
        ("maskedPaths", "masked_paths", STRINGS, False),
        ("readonlyPaths", "readonly_paths", STRINGS, False),
        ("mountLabel", "mount_label", STRING, False),
        ("personality", "personality", Personality.parse, False),
    )
    __slots__ = slots(FIELDS)
    namespaces: tuple[Namespace, ...] | None
    uid_mappings: tuple[IDMapping, ...] | None
    gid_mappings: tuple[IDMapping, ...] | None
    time_offsets: dict[str, TimeOffset] | None
    devices: tuple[Device, ...] | None
    net_devices: dict[str, NetDevice] | None
    cgroups_path: str | None
    resources: Resources | None
    intel_rdt: IntelRdt | None
    memory_policy: MemoryPolicy | None
    sysctl: dict[str, str] | None
    seccomp: Seccomp | None
    rootfs_propagation: str | None
    masked_paths: tuple[str, ...] | None
    readonly_paths: tuple[str, ...] | None
    mount_label: str | None
    personality: Personality | None

    def namespace(self, kind: str) -> Namespace | None:
        """The first ``namespaces`` entry of type ``kind`` ("pid", "user", ...), if any."""
        for ns in self.namespaces or ():
            if ns.type == kind:
                return ns
        return None


class Spec(Model):
    """The whole config.json."""

    FIELDS = (
        ("ociVersion", "oci_version", STRING, REQUIRED),
        ("root", "root", Root.parse, False),  # REQUIRED on Linux: validate.py
        ("mounts", "mounts", list_of(Mount.parse), False),
        ("process", "process", Process.parse, False),
        ("hostname", "hostname", STRING, False),
        ("domainname", "domainname", STRING, False),
        ("hooks", "hooks", Hooks.parse, False),
        ("annotations", "annotations", STRING_MAP, False),
        ("linux", "linux", Linux.parse, False),
        ("solaris", "solaris", OBJECT, False),
        ("windows", "windows", OBJECT, False),
        ("vm", "vm", OBJECT, False),
        ("zos", "zos", OBJECT, False),
        ("freebsd", "freebsd", OBJECT, False),
    )
    __slots__ = slots(FIELDS)
    oci_version: str
    root: Root | None
    mounts: tuple[Mount, ...] | None
    process: Process | None
    hostname: str | None
    domainname: str | None
    hooks: Hooks | None
    annotations: dict[str, str] | None
    linux: Linux | None
    solaris: dict[str, Any] | None
    windows: dict[str, Any] | None
    vm: dict[str, Any] | None
    zos: dict[str, Any] | None
    freebsd: dict[str, Any] | None


# -- entry points -----------------------------------------------------------------------------


class SyntaxViolation(Violation):
    """Malformed JSON: the violation also carries the 1-based line and column."""

    __slots__ = ("column", "line")

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__("", f"{message}: line {line} column {column}")
        self.line = line
        self.column = column


def _parse(model: type[Model], raw: object, source: str) -> Any:
    errors: list[Violation] = []
    if not isinstance(raw, dict):
        raise SpecError(source, [Violation("", f"expected object, got {json_type(raw)}")])
    parsed = model.parse(raw, "", errors)
    if errors:
        raise SpecError(source, errors)
    return parsed


def parse_config(raw: object, source: str = "config.json") -> Spec:
    """Type-check decoded config.json; raise SpecError naming *every* violation with its path.

    Semantic rules (SemVer, absolute cwd, namespaces, ...) are validate.validate_config's job.
    """
    spec: Spec = _parse(Spec, raw, source)
    return spec


def read_config(path: str) -> Any:
    """Read and decode ``path`` (not type-checked: see parse_config / validate.check_config).

    Malformed JSON raises SpecError whose one violation is a SyntaxViolation (line, column).
    OSError (FileNotFoundError, IsADirectoryError, PermissionError) propagates unchanged: the
    caller knows the bundle and words the BundleError (ops.lifecycle.load_bundle).
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return fastjson.loads(data)
    except fastjson.JSONError as exc:
        raise SpecError(path, [SyntaxViolation(exc.msg, exc.lineno, exc.colno)]) from None


def load_config(path: str) -> tuple[dict[str, Any], Spec]:
    """Read and parse ``path``: (the raw dict, its typed view). Errors as for read_config."""
    raw = read_config(path)
    return raw, parse_config(raw, path)


def parse_process(raw: object, source: str = "process.json") -> Process:
    """Parse the document of ``exec --process FILE`` (a config.json ``process`` object).

    Besides types, runc's validateProcessSpec (utils_linux.go) requires a non-empty absolute
    cwd and non-empty args here; those violations are raised together with the type ones.
    """
    errors: list[Violation] = []
    if not isinstance(raw, dict):
        raise SpecError(source, [Violation("", f"expected object, got {json_type(raw)}")])
    process = Process.parse(raw, "", errors)
    if process is not None:
        if isinstance(process.cwd, str) and not process.cwd.startswith("/"):
            errors.append(Violation("cwd", "must be an absolute path"))
        if raw.get("args") in (None, []):  # a wrong type is already reported
            errors.append(Violation("args", "must not be empty"))
    if errors or process is None:
        raise SpecError(source, errors)
    return process


def parse_resources(raw: object, source: str = "resources") -> Resources:
    """Parse the document of ``update --resources FILE|-`` (a linux.resources object)."""
    resources: Resources = _parse(Resources, raw, source)
    return resources
