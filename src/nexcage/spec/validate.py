"""Semantic validation of a parsed config.json for the Linux platform.

Every function returns *all* violations, each located by its JSON path. Rules come from the
runtime-spec v1.3.0 text (config.md, config-linux.md; MUST-level only) and from what runc refuses
(libcontainer/configs/validate/validator.go, libcontainer/specconv, libcontainer/seccomp), since
runc is the de-facto contract (CONTRACTS.md §1.1). Host-dependent checks (does the kernel have
time namespaces, is a joined netns the host's, is SELinux on) are not made here: this package
never touches the OS.
"""

from __future__ import annotations

from nexcage.errors import Violation
from nexcage.spec.model import child, entry
from nexcage.spec.versions import parse_version

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nexcage.spec.config import (
        IDMapping,
        IntelRdt,
        Linux,
        MemoryPolicy,
        Namespace,
        Process,
        Resources,
        Scheduler,
        Seccomp,
        Spec,
    )


def _prefixed(prefix: str, names: str) -> frozenset[str]:
    return frozenset(prefix + name for name in names.split())


NAMESPACE_TYPES = frozenset({"pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"})
# The spec lists shared/slave/private/unbindable; runc also takes the recursive forms
# (specconv mountPropagationMapping).
ROOTFS_PROPAGATION = frozenset(
    {"shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable"}
)
# runc specconv strToRlimit: the rlimits Linux has.
RLIMITS = _prefixed(
    "RLIMIT_",
    "AS CORE CPU DATA FSIZE LOCKS MEMLOCK MSGQUEUE NICE NOFILE NPROC RSS RTPRIO RTTIME "
    "SIGPENDING STACK",
)
# capabilities(7) as of Linux 5.9; what runc/crun `features` report.
KNOWN_CAPABILITIES = _prefixed(
    "CAP_",
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
    "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
    "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
    "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
    "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
    "CHECKPOINT_RESTORE",
)
SECCOMP_ACTIONS = _prefixed(
    "SCMP_ACT_", "KILL KILL_PROCESS KILL_THREAD TRAP ERRNO TRACE ALLOW LOG NOTIFY"
)
SECCOMP_OPERATORS = _prefixed("SCMP_CMP_", "NE LT LE EQ GE GT MASKED_EQ")
SECCOMP_ARCHES = _prefixed(
    "SCMP_ARCH_",
    "X86 X86_64 X32 ARM AARCH64 MIPS MIPS64 MIPS64N32 MIPSEL MIPSEL64 MIPSEL64N32 PPC PPC64 "
    "PPC64LE S390 S390X PARISC PARISC64 RISCV64 LOONGARCH64 M68K SH SHEB",
)
SECCOMP_FLAGS = frozenset(
    {
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
    }
)
MEMORY_POLICY_MODES = _prefixed(
    "MPOL_", "DEFAULT BIND INTERLEAVE WEIGHTED_INTERLEAVE PREFERRED PREFERRED_MANY LOCAL"
)
MEMORY_POLICY_FLAGS = frozenset(
    {"MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"}
)
SCHEDULER_POLICIES = _prefixed("SCHED_", "OTHER FIFO RR BATCH ISO IDLE DEADLINE")
SCHEDULER_FLAGS = _prefixed(
    "SCHED_FLAG_",
    "RESET_ON_FORK RECLAIM DL_OVERRUN KEEP_POLICY KEEP_PARAMS UTIL_CLAMP_MIN UTIL_CLAMP_MAX",
)
IO_PRIORITY_CLASSES = frozenset({"IOPRIO_CLASS_RT", "IOPRIO_CLASS_BE", "IOPRIO_CLASS_IDLE"})
DEVICE_TYPES = frozenset("cbup")  # linux.devices[].type
CGROUP_DEVICE_TYPES = frozenset("acb")  # linux.resources.devices[].type
PERSONALITY_DOMAINS = frozenset({"LINUX", "LINUX32"})
TIME_CLOCKS = frozenset({"boottime", "monotonic"})  # time_namespaces(7)

_CAP_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_DIGITS = frozenset("0123456789")
# runc validator.go sysctl(): IPC-namespaced keys besides fs.mqueue.*
_IPC_SYSCTLS = frozenset(
    {
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    }
)
_ERRNO_ACTIONS = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})
_NODES_FORBIDDEN = frozenset({"MPOL_DEFAULT", "MPOL_LOCAL"})
# config-linux.md names BIND and INTERLEAVE; set_mempolicy(2) gives EINVAL for an empty
# nodemask with the weighted-interleave and preferred-many modes as well.
_NODES_NEEDED = frozenset(
    {"MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE", "MPOL_PREFERRED_MANY"}
)


def _absolute(value: str | None) -> bool:
    return value is not None and value.startswith("/")


def _number(text: str) -> bool:
    return bool(text) and set(text) <= _DIGITS  # not str.isdigit(): that accepts "²"


def valid_id_list(text: str) -> bool:
    """``0-3,7`` style lists (cpus, mems, memoryPolicy.nodes, execCPUAffinity).

    Also takes the kernel's ``N-M:used/group`` stride form (bitmap_parselist) and blanks
    around items (the schema's pattern for execCPUAffinity allows them).
    """
    for item in text.split(","):
        part = item.strip()
        span, _, stride = part.partition(":")
        if stride:
            used, slash, group = stride.partition("/")
            if not (slash and _number(used) and _number(group) and 0 < int(used) <= int(group)):
                return False
        low, dash, high = span.partition("-")
        if not _number(low) or (dash and not (_number(high) and int(low) <= int(high))):
            return False
        if stride and not dash:
            return False
    return True


def _mappings(mappings: tuple[IDMapping, ...] | None, path: str, errors: list[Violation]) -> None:
    for i, mapping in enumerate(mappings or ()):
        if mapping.size == 0:
            errors.append(Violation(f"{path}[{i}].size", "must be greater than zero"))


# -- process ----------------------------------------------------------------------------------


def validate_process(process: Process, path: str = "process") -> list[Violation]:
    """Violations in a ``process`` object (config.json's, or an ``exec --process`` file)."""
    errors: list[Violation] = []
    if not _absolute(process.cwd):
        errors.append(Violation(child(path, "cwd"), "must be an absolute path"))
    if not process.args:
        # config.md: at least one entry is REQUIRED on non-Windows platforms
        errors.append(Violation(child(path, "args"), "must not be empty"))
    for i, env in enumerate(process.env or ()):
        # runc libcontainer/env.go prepareEnv
        name, eq, _ = env.partition("=")
        where = f"{child(path, 'env')}[{i}]"
        if not eq:
            errors.append(Violation(where, "invalid environment variable: missing '='"))
        elif not name:
            errors.append(Violation(where, "invalid environment variable: name cannot be empty"))
        elif "\x00" in env:
            errors.append(Violation(where, "invalid environment variable: contains a NUL byte"))
    user = process.user
    for field in ("uid", "gid"):  # config.md "POSIX-platform User": REQUIRED
        if user is None or getattr(user, field) is None:
            where = child(child(path, "user"), field)
            errors.append(Violation(where, "required on POSIX platforms"))
    if process.capabilities is not None:
        caps = process.capabilities
        for kind in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            for i, cap in enumerate(getattr(caps, kind) or ()):
                # Unknown but well-formed names are the runtime's warning, not an error
                # (config.md: runtimes SHOULD NOT fail on capabilities they cannot grant).
                if not (cap.startswith("CAP_") and len(cap) > 4 and set(cap) <= _CAP_CHARS):
                    where = f"{child(path, 'capabilities')}.{kind}[{i}]"
                    errors.append(Violation(where, f"{cap!r} is not a capability name (CAP_*)"))
    _rlimits(process, path, errors)
    if process.oom_score_adj is not None and not -1000 <= process.oom_score_adj <= 1000:
        errors.append(Violation(child(path, "oomScoreAdj"), "must be between -1000 and 1000"))
    if process.scheduler is not None:
        _scheduler(process.scheduler, child(path, "scheduler"), errors)
    if process.io_priority is not None:
        prio = process.io_priority
        where = child(path, "ioPriority")
        if prio.class_ not in IO_PRIORITY_CLASSES:
            errors.append(
                Violation(f"{where}.class", f"unknown I/O priority class {prio.class_!r}")
            )
        if not 0 <= prio.priority <= 7:
            errors.append(Violation(f"{where}.priority", "must be between 0 and 7"))
    if process.exec_cpu_affinity is not None:
        for field in ("initial", "final"):
            value = getattr(process.exec_cpu_affinity, field)
            if value and not valid_id_list(value):
                where = f"{child(path, 'execCPUAffinity')}.{field}"
                errors.append(Violation(where, f"{value!r} is not a CPU list like 0-3,7"))
    return errors


def _rlimits(process: Process, path: str, errors: list[Violation]) -> None:
    seen: set[str] = set()
    for i, rlimit in enumerate(process.rlimits or ()):
        where = f"{child(path, 'rlimits')}[{i}]"
        if rlimit.type not in RLIMITS:
            errors.append(Violation(f"{where}.type", f"unknown rlimit type {rlimit.type!r}"))
        elif rlimit.type in seen:
            errors.append(Violation(f"{where}.type", f"duplicated rlimit type {rlimit.type!r}"))
        seen.add(rlimit.type)
        if rlimit.soft > rlimit.hard:
            errors.append(Violation(f"{where}.soft", "must not exceed hard"))


def _scheduler(sched: Scheduler, path: str, errors: list[Violation]) -> None:
    # runc validator.go scheduler(), after sched_setattr(2)
    if sched.policy not in SCHEDULER_POLICIES:
        errors.append(Violation(f"{path}.policy", f"unknown scheduler policy {sched.policy!r}"))
    if sched.nice is not None and not -20 <= sched.nice <= 19:
        errors.append(Violation(f"{path}.nice", "must be between -20 and 19"))
    if sched.priority and sched.policy not in ("SCHED_FIFO", "SCHED_RR"):
        errors.append(Violation(f"{path}.priority", "only for SCHED_FIFO or SCHED_RR"))
    if sched.policy != "SCHED_DEADLINE":
        for field in ("runtime", "deadline", "period"):
            if getattr(sched, field):
                errors.append(Violation(f"{path}.{field}", "only for SCHED_DEADLINE"))
    for i, flag in enumerate(sched.flags or ()):
        if flag not in SCHEDULER_FLAGS:
            errors.append(Violation(f"{path}.flags[{i}]", f"unknown scheduler flag {flag!r}"))


# -- config.json --------------------------------------------------------------------------------


def validate_config(spec: Spec) -> list[Violation]:
    """Every semantic violation in ``spec`` (a Linux config.json), each with its JSON path."""
    errors: list[Violation] = []
    try:
        if parse_version(spec.oci_version)[0] != 1:
            errors.append(
                Violation("ociVersion", f"unsupported major version {spec.oci_version!r}")
            )
    except ValueError:
        errors.append(Violation("ociVersion", f"{spec.oci_version!r} is not a SemVer version"))
    if spec.root is None:
        errors.append(Violation("root", "required on Linux"))
    elif not spec.root.path:
        errors.append(Violation("root.path", "must not be empty"))
    if spec.process is not None:
        errors.extend(validate_process(spec.process))
    namespaces = _namespaces(spec.linux, errors)
    _mounts(spec, namespaces, errors)
    _hooks(spec, errors)
    for key in spec.annotations or {}:
        if not key:
            errors.append(Violation('annotations[""]', "keys must not be empty"))
    for field in ("hostname", "domainname"):
        if getattr(spec, field) and "uts" not in namespaces:
            errors.append(
                Violation(field, f"unable to set {field} without a private UTS namespace")
            )
    _user_namespace(spec.linux, namespaces, errors)
    if spec.linux is not None:
        _linux(spec.linux, namespaces, errors)
    return errors


def _namespaces(linux: Linux | None, errors: list[Violation]) -> dict[str, Namespace]:
    found: dict[str, Namespace] = {}
    for i, ns in enumerate(linux.namespaces or () if linux else ()):
        where = f"linux.namespaces[{i}]"
        if ns.type not in NAMESPACE_TYPES:
            errors.append(Violation(f"{where}.type", f"unknown namespace type {ns.type!r}"))
        elif ns.type in found:
            errors.append(Violation(f"{where}.type", f"duplicated namespace type {ns.type!r}"))
        else:
            found[ns.type] = ns
        if ns.path is not None and ns.path != "" and not ns.path.startswith("/"):
            errors.append(Violation(f"{where}.path", "must be an absolute path"))
    return found


def _mounts(spec: Spec, namespaces: dict[str, Namespace], errors: list[Violation]) -> None:
    for i, mount in enumerate(spec.mounts or ()):
        where = f"mounts[{i}]"
        # Relative destinations are allowed (deprecated) since 1.2.0; runc only warns.
        if not mount.destination:
            errors.append(Violation(f"{where}.destination", "must not be empty"))
        uid, gid = mount.uid_mappings, mount.gid_mappings
        if bool(uid) != bool(gid):
            missing = "gidMappings" if uid else "uidMappings"
            errors.append(
                Violation(f"{where}.{missing}", "uidMappings and gidMappings go together")
            )
        _mappings(uid, f"{where}.uidMappings", errors)
        _mappings(gid, f"{where}.gidMappings", errors)
        options = mount.options or ()
        if ("idmap" in options or "ridmap" in options) and not uid and "user" not in namespaces:
            # config.md "Linux mount options": no mappings and no user namespace is an error
            errors.append(
                Violation(
                    f"{where}.options", "idmap needs uidMappings/gidMappings or a user namespace"
                )
            )


def _hooks(spec: Spec, errors: list[Violation]) -> None:
    if spec.hooks is None:
        return
    for kind, attr, _, _ in spec.hooks.FIELDS:
        for i, hook in enumerate(getattr(spec.hooks, attr) or ()):
            where = f"hooks.{kind}[{i}]"
            if not _absolute(hook.path):
                errors.append(Violation(f"{where}.path", "must be an absolute path"))
            if hook.timeout is not None and hook.timeout <= 0:
                errors.append(Violation(f"{where}.timeout", "must be greater than zero"))


def _user_namespace(
    linux: Linux | None, namespaces: dict[str, Namespace], errors: list[Violation]
) -> None:
    uid = linux.uid_mappings if linux else None
    gid = linux.gid_mappings if linux else None
    user = namespaces.get("user")
    if user is None:
        for field, mappings in (("uidMappings", uid), ("gidMappings", gid)):
            if mappings:  # runc validator.go namespaces()
                errors.append(
                    Violation(f"linux.{field}", "user namespace mappings need a user namespace")
                )
    elif not user.path:  # a new user namespace (runc specconv setupUserNamespace)
        if not uid:
            errors.append(Violation("linux.uidMappings", "a new user namespace needs uid mappings"))
        if not gid:
            errors.append(Violation("linux.gidMappings", "a new user namespace needs gid mappings"))
    _mappings(uid, "linux.uidMappings", errors)
    _mappings(gid, "linux.gidMappings", errors)


def _linux(linux: Linux, namespaces: dict[str, Namespace], errors: list[Violation]) -> None:
    if linux.time_offsets:
        if "time" not in namespaces:
            errors.append(Violation("linux.timeOffsets", "needs a time namespace"))
        for clock, offset in linux.time_offsets.items():
            where = entry("linux.timeOffsets", clock)
            if clock not in TIME_CLOCKS:
                errors.append(Violation(where, "clock must be boottime or monotonic"))
            if offset.nanosecs is not None and offset.nanosecs >= 1_000_000_000:
                errors.append(Violation(f"{where}.nanosecs", "must be below 1000000000"))
    if linux.rootfs_propagation and linux.rootfs_propagation not in ROOTFS_PROPAGATION:
        errors.append(
            Violation("linux.rootfsPropagation", f"invalid value {linux.rootfs_propagation!r}")
        )
    for field, paths in (
        ("maskedPaths", linux.masked_paths),
        ("readonlyPaths", linux.readonly_paths),
    ):
        for i, path in enumerate(paths or ()):
            if not _absolute(path):
                errors.append(Violation(f"linux.{field}[{i}]", "must be an absolute path"))
        if paths and "mount" not in namespaces:
            errors.append(Violation(f"linux.{field}", "needs a private mount namespace"))
    _devices(linux, errors)
    _net_devices(linux, namespaces, errors)
    _sysctl(linux, namespaces, errors)
    if linux.resources is not None:
        errors.extend(validate_resources(linux.resources))
    if linux.seccomp is not None:
        _seccomp(linux.seccomp, errors)
    if linux.memory_policy is not None:
        _memory_policy(linux.memory_policy, errors)
    if linux.intel_rdt is not None:
        _intel_rdt(linux.intel_rdt, errors)
    if linux.personality is not None:
        if linux.personality.domain not in PERSONALITY_DOMAINS:
            errors.append(Violation("linux.personality.domain", "must be LINUX or LINUX32"))
        for i, _ in enumerate(linux.personality.flags or ()):
            errors.append(Violation(f"linux.personality.flags[{i}]", "no flags are defined"))


def _devices(linux: Linux, errors: list[Violation]) -> None:
    for i, dev in enumerate(linux.devices or ()):
        where = f"linux.devices[{i}]"
        if dev.type not in DEVICE_TYPES:
            errors.append(Violation(f"{where}.type", f"must be c, b, u or p, not {dev.type!r}"))
        if not _absolute(dev.path):
            errors.append(Violation(f"{where}.path", "must be an absolute path"))
        if dev.type != "p":
            for field in ("major", "minor"):
                if getattr(dev, field) is None:
                    errors.append(Violation(f"{where}.{field}", "required unless type is p"))
        # schema/defs.json says 0..511; 07777 keeps setuid/setgid/sticky that containerd copies.
        if dev.file_mode is not None and dev.file_mode > 0o7777:
            errors.append(Violation(f"{where}.fileMode", "must hold permission bits only"))


def _valid_ifname(name: str) -> bool:
    # Linux dev_valid_name(): below IFNAMSIZ (16), not "." or "..", no '/', ':' or blanks
    return (
        0 < len(name) < 16
        and name not in (".", "..")
        and not any(c in "/:" or c.isspace() for c in name)
    )


def _net_devices(linux: Linux, namespaces: dict[str, Namespace], errors: list[Violation]) -> None:
    if not linux.net_devices:
        return
    if "network" not in namespaces:
        errors.append(Violation("linux.netDevices", "needs a network namespace"))
    for host_name, dev in linux.net_devices.items():
        where = entry("linux.netDevices", host_name)
        if not _valid_ifname(host_name):
            errors.append(Violation(where, "invalid network interface name"))
        if dev.name is not None and dev.name != "" and not _valid_ifname(dev.name):
            errors.append(Violation(f"{where}.name", "invalid network interface name"))


def _sysctl(linux: Linux, namespaces: dict[str, Namespace], errors: list[Violation]) -> None:
    # runc validator.go sysctl(): only namespaced keys, and only with that namespace private.
    for key in linux.sysctl or {}:
        where = entry("linux.sysctl", key)
        name = key
        first = min((i for i in (key.find("."), key.find("/")) if i >= 0), default=-1)
        if first >= 0 and key[first] == "/":  # sysctl.d(5): '/' separators, '.' in names
            name = key.translate(str.maketrans("./", "/."))
        if not name:
            errors.append(Violation(where, "must not be empty"))
        elif name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
            if "ipc" not in namespaces:
                errors.append(Violation(where, "not allowed in the host's IPC namespace"))
        elif name.startswith("net."):
            if "network" not in namespaces:
                errors.append(Violation(where, "not allowed in the host network namespace"))
        elif name == "kernel.domainname" and "uts" in namespaces:
            continue
        elif name == "kernel.hostname" and "uts" in namespaces:
            errors.append(Violation(where, "conflicts with the hostname field"))
        else:
            errors.append(Violation(where, "not in a separate kernel namespace"))


def _seccomp(seccomp: Seccomp, errors: list[Violation]) -> None:
    path = "linux.seccomp"
    action = seccomp.default_action
    if action not in SECCOMP_ACTIONS:
        errors.append(Violation(f"{path}.defaultAction", f"unknown seccomp action {action!r}"))
    elif action == "SCMP_ACT_NOTIFY":  # runc seccomp_linux.go
        errors.append(Violation(f"{path}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default"))
    if seccomp.default_errno_ret is not None and action not in _ERRNO_ACTIONS:
        errors.append(
            Violation(f"{path}.defaultErrnoRet", "only for SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
        )
    for i, arch in enumerate(seccomp.architectures or ()):
        if arch not in SECCOMP_ARCHES:
            errors.append(Violation(f"{path}.architectures[{i}]", f"unknown arch {arch!r}"))
    for i, flag in enumerate(seccomp.flags or ()):
        if flag not in SECCOMP_FLAGS:
            errors.append(Violation(f"{path}.flags[{i}]", f"unknown seccomp flag {flag!r}"))
    if seccomp.listener_metadata and not seccomp.listener_path:
        errors.append(Violation(f"{path}.listenerMetadata", "needs listenerPath"))
    for i, call in enumerate(seccomp.syscalls or ()):
        where = f"{path}.syscalls[{i}]"
        if not call.names:
            errors.append(Violation(f"{where}.names", "must contain at least one entry"))
        for j, name in enumerate(call.names or ()):
            if not name:
                errors.append(Violation(f"{where}.names[{j}]", "must not be empty"))
            elif name == "write" and call.action == "SCMP_ACT_NOTIFY":
                errors.append(Violation(f"{where}.names[{j}]", "SCMP_ACT_NOTIFY cannot trap write"))
        if call.action not in SECCOMP_ACTIONS:
            errors.append(Violation(f"{where}.action", f"unknown seccomp action {call.action!r}"))
        if call.errno_ret is not None and call.action not in _ERRNO_ACTIONS:
            errors.append(
                Violation(f"{where}.errnoRet", "only for SCMP_ACT_ERRNO or SCMP_ACT_TRACE")
            )
        for j, arg in enumerate(call.args or ()):
            if arg.op not in SECCOMP_OPERATORS:
                errors.append(Violation(f"{where}.args[{j}].op", f"unknown operator {arg.op!r}"))
            if arg.index > 5:  # libseccomp: syscalls have arguments 0-5
                errors.append(Violation(f"{where}.args[{j}].index", "must be between 0 and 5"))


def _memory_policy(policy: MemoryPolicy, errors: list[Violation]) -> None:
    path = "linux.memoryPolicy"
    if policy.mode not in MEMORY_POLICY_MODES:
        errors.append(Violation(f"{path}.mode", f"unknown memory policy mode {policy.mode!r}"))
    flags = policy.flags or ()
    for i, flag in enumerate(flags):
        if flag not in MEMORY_POLICY_FLAGS:
            errors.append(Violation(f"{path}.flags[{i}]", f"unknown memory policy flag {flag!r}"))
    if "MPOL_F_STATIC_NODES" in flags and "MPOL_F_RELATIVE_NODES" in flags:
        # set_mempolicy(2): EINVAL
        errors.append(
            Violation(f"{path}.flags", "MPOL_F_STATIC_NODES excludes MPOL_F_RELATIVE_NODES")
        )
    if policy.nodes and policy.mode in _NODES_FORBIDDEN:
        errors.append(Violation(f"{path}.nodes", f"must be empty with {policy.mode}"))
    elif not policy.nodes and policy.mode in _NODES_NEEDED:
        errors.append(Violation(f"{path}.nodes", f"{policy.mode} needs at least one node"))
    elif policy.nodes and not valid_id_list(policy.nodes):
        errors.append(Violation(f"{path}.nodes", f"{policy.nodes!r} is not a node list like 0-3,7"))


def _intel_rdt(rdt: IntelRdt, errors: list[Violation]) -> None:
    path = "linux.intelRdt"
    clos = rdt.clos_id
    # runc validator.go intelrdtCheck; "/" is the default CLOS since 1.3.0 (#1289)
    if clos is not None and clos != "/" and (clos in (".", "..") or "/" in clos):
        errors.append(Violation(f"{path}.closID", f"invalid CLOS name {clos!r}"))
    bw = rdt.mem_bw_schema
    if bw is not None and (not bw.startswith("MB:") or "\n" in bw):
        errors.append(Violation(f"{path}.memBwSchema", "must start with MB: and hold one line"))
    for i, line in enumerate(rdt.schemata or ()):
        if "\n" in line:
            errors.append(Violation(f"{path}.schemata[{i}]", "must not contain newlines"))


# -- linux.resources ------------------------------------------------------------------------------


def validate_resources(resources: Resources, path: str = "linux.resources") -> list[Violation]:
    """Violations in a ``linux.resources`` object (config.json's, or ``update --resources``)."""
    errors: list[Violation] = []
    for i, rule in enumerate(resources.devices or ()):
        where = f"{child(path, 'devices')}[{i}]"
        if rule.type is not None and rule.type not in CGROUP_DEVICE_TYPES:
            errors.append(Violation(f"{where}.type", f"must be a, c or b, not {rule.type!r}"))
        if rule.access is not None and not set(rule.access) <= set("rwm"):
            errors.append(Violation(f"{where}.access", "must be made of r, w and m"))
    memory = resources.memory
    if memory is not None:
        for field in ("limit", "reservation", "swap", "kernel", "kernel_tcp"):
            value = getattr(memory, field)
            if value is not None and value < -1:
                key = "kernelTCP" if field == "kernel_tcp" else field
                errors.append(Violation(f"{child(path, 'memory')}.{key}", "must be -1 or more"))
        if memory.swappiness is not None and memory.swappiness > 100:
            errors.append(Violation(f"{child(path, 'memory')}.swappiness", "must be 0 to 100"))
    cpu = resources.cpu
    if cpu is not None:
        where = child(path, "cpu")
        if (
            cpu.quota is not None
            and cpu.quota > 0
            and cpu.burst is not None
            and cpu.burst > cpu.quota
        ):
            errors.append(Violation(f"{where}.burst", "must not exceed a positive quota"))
        for field in ("cpus", "mems"):
            value = getattr(cpu, field)
            if value and not valid_id_list(value):
                errors.append(Violation(f"{where}.{field}", f"{value!r} is not a list like 0-3,7"))
        if cpu.idle is not None and cpu.idle not in (0, 1):
            errors.append(Violation(f"{where}.idle", "must be 0 or 1"))
    if (
        resources.pids is not None
        and resources.pids.limit is not None
        and resources.pids.limit < -1
    ):
        errors.append(Violation(f"{child(path, 'pids')}.limit", "must be -1 (no limit) or more"))
    block_io = resources.block_io
    for i, dev in enumerate(block_io.weight_device or () if block_io else ()):
        if dev.weight is None and dev.leaf_weight is None:
            where = f"{child(path, 'blockIO')}.weightDevice[{i}]"
            errors.append(Violation(where, "needs weight or leafWeight"))
    for i, limit in enumerate(resources.hugepage_limits or ()):
        size = limit.page_size  # schema: ^[1-9][0-9]*[KMG]B$
        if not (
            len(size) >= 3
            and size[-1] == "B"
            and size[-2] in "KMG"
            and size[0] != "0"
            and set(size[:-2]) <= _DIGITS
        ):
            where = f"{child(path, 'hugepageLimits')}[{i}].pageSize"
            errors.append(Violation(where, f"{size!r} is not a size like 2MB"))
    for device, rdma in (resources.rdma or {}).items():
        if rdma.hca_handles is None and rdma.hca_objects is None:
            errors.append(
                Violation(entry(child(path, "rdma"), device), "needs hcaHandles or hcaObjects")
            )
    for key in resources.unified or {}:
        if not key or "/" in key or key in (".", ".."):
            # runc: "unified resource %q must be a file name (no slashes)"
            errors.append(Violation(entry(child(path, "unified"), key), "must be a file name"))
    return errors


def check_config(raw: object, source: str = "config.json") -> Spec:
    """Type-check *and* validate a decoded config.json, raising one SpecError with every
    violation of both kinds (a field with a wrong type is absent from the typed view, so the
    semantic rules still run on the rest)."""
    from nexcage.errors import SpecError
    from nexcage.spec.config import Spec
    from nexcage.spec.model import json_type

    if not isinstance(raw, dict):
        raise SpecError(source, [Violation("", f"expected object, got {json_type(raw)}")])
    errors: list[Violation] = []
    spec = Spec.parse(raw, "", errors)
    if spec is None:  # pragma: no cover - raw is a dict
        raise SpecError(source, errors)
    try:
        errors.extend(validate_config(spec))
    except (AttributeError, TypeError):
        # A list item with a wrong type is None in the typed view; rules that walk that list
        # cannot run. The type violations already name the problem.
        if not errors:
            raise
    if errors:
        raise SpecError(source, errors)
    return spec
