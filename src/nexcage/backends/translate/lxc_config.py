"""config.json -> LXC 5 configuration keys, as pure data (CONTRACTS.md §4.2).

``translate(spec, ...)`` returns a :class:`Translation`: the ``lxc.*`` keys in order, the records
nexcage's init helper reads (``/dev/.nexcage/process``) and its mount hook reads
(``<container dir>/nexcage/hook``), and a :class:`~nexcage.errors.Finding` for every field LXC
cannot honour. The backend refuses to create when there is any finding (PRODUCT.md §2: never a
silent drop).

LXC's config syntax, as LXC 5.0.2 parses it (src/lxc/confile.c ``parse_line``):

- One ``key = value`` per line; a value is trimmed of blanks and one pair of matching outer
  quotes is removed. :func:`config_value` re-adds quotes when a value would lose characters.
  A line feed, carriage return or NUL in any value would end the line and let the rest of the
  value be read as further keys (an ``lxc.mount.entry`` of the host's ``/``): every such value is
  a finding, and :func:`render` refuses them again (CONTRACTS.md §5.13).
- ``lxc.init.cmd`` is split on spaces with no quoting at all (lxccontainer.c
  ``split_init_cmd``: ``lxc_iterate_parts(p, copy, " ")``), so ``sh -c "echo a b"`` cannot be
  written there. The backend's init command is therefore the helper plus a file holding the
  user's argv (NUL-separated: any byte but NUL is fine, newlines included); :func:`init_cmd` gives
  the plain ``lxc.init.cmd`` form for templates, or ``None`` when the args cannot be written.
- ``lxc.mount.entry`` is an fstab line read with ``getmntent``: blanks and backslashes in paths
  are written as octal escapes (``\\040``).
- ``lxc.namespace.clone`` takes LXC's short names (``mnt``, not ``mount``); ``lxc.namespace.keep``
  makes LXC 5.0.2 fail in ``mount_autodev`` (EOVERFLOW), so namespaces an OCI config does not
  list are simply left out of ``clone``. ``lxc.namespace.share.<ns>`` takes a path (nsfs file).
- ``lxc.environment`` is applied to init *and to hooks* in LXC 5.0.2, so names in the ``LXC_``
  hook namespace are refused: they could steer nexcage's mount hook.
"""

from __future__ import annotations

from nexcage.errors import Finding

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from nexcage.spec.config import (
        Capabilities,
        Linux,
        Mount,
        Process,
        Spec,
    )

# Where the helper's directory is bound inside the container: on the /dev tmpfs, so nothing is
# created in the user's rootfs.
INNER_DIR = "/dev/.nexcage"
INIT = INNER_DIR + "/init"
PROCESS_FILE = INNER_DIR + "/process"
EXEC_FIFO = INNER_DIR + "/exec.fifo"

# capabilities(7) numbers (linux/capability.h), for the exec helper's bounding set.
_CAP_ORDER = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
    "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
    "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
    "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
    "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
    "CHECKPOINT_RESTORE"
)
CAP_NUMBERS = {"CAP_" + name: number for number, name in enumerate(_CAP_ORDER.split(" "))}
STOP_SIGNAL_ANNOTATION = "org.opencontainers.image.stopSignal"
UNSAFE = ("\n", "\r", "\0")
_BLANKS = " \t"
_QUOTES = "'\""

# OCI namespace type -> LXC's name (confile.c ns_info).
NAMESPACES = {
    "mount": "mnt",
    "pid": "pid",
    "uts": "uts",
    "ipc": "ipc",
    "network": "net",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

# runc's default allowed devices (libcontainer/specconv AllowedDevices), appended after the
# config's own rules as runc does.
DEFAULT_DEVICE_RULES = (
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:8 rwm",
    "c 1:7 rwm",
    "c 5:0 rwm",
    "c 1:5 rwm",
    "c 1:9 rwm",
    "c 136:* rwm",
    "c 5:2 rwm",
    "c 10:200 rwm",
)
# Nodes LXC's autodev creates itself (lxc_fill_autodev); a config listing them gets LXC's.
AUTODEV_NODES = frozenset(
    {"/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/random", "/dev/urandom"}
)

# Mount options LXC 5 cannot apply: mount_setattr recursive attributes (runtime-spec 1.1 "r*"),
# idmapped mounts and crun's tmpcopyup.
UNSUPPORTED_MOUNT_OPTIONS = frozenset(
    {
        "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec", "rnoatime",
        "ratime", "rrelatime", "rnorelatime", "rstrictatime", "rnostrictatime", "rnodiratime",
        "rdiratime", "rnosymfollow", "rsymfollow", "nosymfollow", "symfollow", "idmap", "ridmap",
        "tmpcopyup", "copyup", "nocopyup",
    }
)  # fmt: skip

# MS_* propagation flags for the mount hook (linux/mount.h).
MS_REC = 0x4000
PROPAGATION = {
    "private": 1 << 18,
    "slave": 1 << 19,
    "shared": 1 << 20,
    "unbindable": 1 << 17,
}

# OCI hook kinds; LXC's hooks neither receive the OCI state on stdin nor run at the same points.
HOOK_KINDS = (
    ("prestart", "prestart"),
    ("createRuntime", "create_runtime"),
    ("createContainer", "create_container"),
    ("startContainer", "start_container"),
    ("poststart", "poststart"),
    ("poststop", "poststop"),
)


class HostFacts:
    """What the translation needs to know about the host (gathered by the backend)."""

    __slots__ = ("cgroup_v1", "cgroup_v2", "swap_accounting")

    def __init__(
        self,
        cgroup_v1: Iterable[str] = (),
        cgroup_v2: Iterable[str] = (),
        *,
        swap_accounting: bool = False,
    ) -> None:
        self.cgroup_v1 = frozenset(cgroup_v1)  # controllers with a v1 hierarchy
        self.cgroup_v2 = frozenset(cgroup_v2)  # controllers enabled in the unified hierarchy
        self.swap_accounting = swap_accounting  # v1 memory.memsw.* exists


class Paths:
    """Host paths the keys name: the container's directory and the helper binary."""

    __slots__ = ("container_dir", "helper")

    def __init__(self, container_dir: str, helper: str) -> None:
        self.container_dir = container_dir
        self.helper = helper


class Translation:
    __slots__ = ("findings", "hook", "init", "keys")

    def __init__(self) -> None:
        self.keys: list[tuple[str, str]] = []
        self.findings: list[Finding] = []
        self.init: list[tuple[str, str]] = []  # records of the init helper's process file
        self.hook: list[str] = []  # records of the mount hook's file

    def add(self, key: str, value: str, path: str) -> bool:
        """Append ``key = value`` unless the value (or key) could break out of its line."""
        bad = _unsafe(key) or _unsafe(value)
        if bad:
            self.find(path, f"{bad}: refused, it would inject lines into the LXC config")
            return False
        self.keys.append((key, value))
        return True

    def find(self, path: str, reason: str) -> None:
        self.findings.append(Finding(path, reason))

    def get(self, key: str) -> list[str]:
        return [v for k, v in self.keys if k == key]


def _unsafe(text: str) -> str:
    for ch, name in (("\n", "line feed"), ("\r", "carriage return"), ("\0", "NUL")):
        if ch in text:
            return f"contains a {name}"
    return ""


# -- values and lines ---------------------------------------------------------------------------


def config_value(value: str) -> str:
    """``value`` as written after ``key = `` so that LXC reads back exactly ``value``.

    LXC trims blanks around a value and removes one pair of matching outer quotes; wrapping the
    value in quotes protects both (the stripping happens once and nothing is unescaped).
    """
    if not value:
        return value
    trimmed = value.strip(_BLANKS) != value
    quoted = len(value) > 1 and value[0] in _QUOTES and value[-1] == value[0]
    return f"'{value}'" if trimmed or quoted else value


def render(keys: Sequence[tuple[str, str]], header: str = "") -> str:
    """The config file text. Raises ValueError on an unsafe value (translate already refused
    them: this is the last line of defence, so nothing unsafe is ever written)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for key, value in keys:
        if _unsafe(key) or _unsafe(value):
            raise ValueError(f"refusing to write {key}: {_unsafe(key) or _unsafe(value)}")
        lines.append(f"{key} = {config_value(value)}")
    return "\n".join(lines) + "\n"


def fstab_escape(path: str) -> str:
    """A path as a getmntent(3) field: blank, tab, newline and backslash as octal escapes."""
    out = path.replace("\\", "\\134")
    return out.replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def init_cmd(args: Sequence[str]) -> str | None:
    """``lxc.init.cmd`` for ``args``, or None when LXC's space splitting cannot reproduce them
    (an empty argument, a space, or a character LXC trims or strips at the edges)."""
    if not args:
        return None
    for arg in args:
        if not arg or " " in arg or _unsafe(arg):
            return None
    value = " ".join(args)
    if value.strip(_BLANKS) != value or (value[0] in _QUOTES and value[-1] == value[0]):
        return None
    return value


def records(items: Iterable[tuple[str, str]]) -> bytes:
    """The init helper's process file: ``key=value`` records, each ending with NUL."""
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in items)


def hook_records(items: Iterable[str]) -> bytes:
    return b"".join(item.encode() + b"\0" for item in items)


# -- the translation ----------------------------------------------------------------------------


def translate(
    spec: Spec,
    *,
    container_id: str,
    bundle: str,
    host: HostFacts,
    paths: Paths | None = None,
    is_dir: Callable[[str], bool] | None = None,
) -> Translation:
    """Translate a parsed, validated config.json. ``paths`` None: findings only (``check``)."""
    out = Translation()
    is_dir = is_dir or (lambda _path: True)
    linux = spec.linux
    root = spec.root
    if root is None:
        out.find("root", "LXC needs a root filesystem")
    else:
        rootfs = root.path if root.path.startswith("/") else _join(bundle, root.path)
        out.add("lxc.rootfs.path", "dir:" + rootfs, "root.path")
        if root.readonly:
            out.hook.append("R")
    out.add("lxc.rootfs.managed", "0", "root")
    if spec.hostname:
        out.add("lxc.uts.name", spec.hostname, "hostname")
    if spec.domainname:
        out.find("domainname", "LXC has no key for the NIS domain name")
    _hooks(spec, out)
    _annotations(spec, out)
    uid = 0
    if spec.process is None:
        out.find("process", "LXC runs a container's process: it is required")
    else:
        uid = _process(spec.process, out)
    namespaces = _namespaces(linux, spec.hostname, out)
    autodev = _mounts(
        spec.mounts or (), bundle, out, is_dir, host, cgroup_leaf(linux, container_id)
    )
    out.add("lxc.autodev", "1" if autodev else "0", "mounts")
    if linux is not None:
        _linux(linux, container_id, host, out, namespaces)
        _capabilities(spec.process, uid, out)
    # Fixed keys: stdio is nexcage's (console none, no ttys); no networking but the netns.
    out.add("lxc.console.path", "none", "process.terminal")
    out.add("lxc.tty.max", "0", "process.terminal")
    if paths is not None:
        _helper_keys(paths, out)
    return out


def _join(base: str, rel: str) -> str:
    parts: list[str] = []
    for piece in (base.rstrip("/") + "/" + rel).split("/"):
        if piece in ("", "."):
            continue
        if piece == "..":
            if parts:
                parts.pop()
            continue
        parts.append(piece)
    return "/" + "/".join(parts)


def _hooks(spec: Spec, out: Translation) -> None:
    hooks = spec.hooks
    if hooks is None:
        return
    for name, attr in HOOK_KINDS:
        if getattr(hooks, attr):
            out.find(
                f"hooks.{name}",
                "OCI hooks are not run by the lxc backend (LXC hooks neither get the OCI state "
                "on stdin nor run at the same points)",
            )


def _annotations(spec: Spec, out: Translation) -> None:
    signal = (spec.annotations or {}).get(STOP_SIGNAL_ANNOTATION)
    if signal is None:
        return
    path = f'annotations["{STOP_SIGNAL_ANNOTATION}"]'
    if _unsafe(signal):
        out.find(path, f"{_unsafe(signal)}: refused, it would inject lines into the LXC config")
        return
    name = signal.strip().upper()
    plain = name[3:] if name.startswith("SIG") else name
    if not (name.isdigit() or plain.replace("+", "").replace("-", "").isalnum()):
        out.find(path, f"{signal!r} is not a signal name or number")
        return
    out.add("lxc.signal.halt", name if name.isdigit() else "SIG" + plain, path)


# -- process ------------------------------------------------------------------------------------


def _process(process: Process, out: Translation) -> int:
    """Keys and helper records for ``process``; returns the uid it runs as."""
    args = process.args or ()
    if not args:
        out.find("process.args", "no command: LXC needs an init command")
    for i, arg in enumerate(args):
        if "\0" in arg:
            out.find(f"process.args[{i}]", "contains a NUL: not representable in an argv")
        out.init.append(("arg", arg))
    if process.command_line is not None:
        out.find("process.commandLine", "Windows only")
    _environment(process.env or (), out)
    out.add("lxc.init.cwd", process.cwd, "process.cwd")
    uid = 0
    user = process.user
    if user is not None:
        uid = user.uid or 0
        out.add("lxc.init.uid", str(uid), "process.user.uid")
        out.add("lxc.init.gid", str(user.gid or 0), "process.user.gid")
        if user.additional_gids:
            groups = ",".join(str(g) for g in user.additional_gids)
            out.add("lxc.init.groups", groups, "process.user.additionalGids")
        if user.umask is not None:
            out.init.append(("umask", f"{user.umask:o}"))
        if user.username:
            out.find("process.user.username", "Windows only")
    if process.terminal:
        out.init.append(("tty", "1"))
        size = process.console_size
        if size is not None:
            out.init += [("rows", str(size.height)), ("cols", str(size.width))]
    for i, rlimit in enumerate(process.rlimits or ()):
        name = rlimit.type.removeprefix("RLIMIT_").lower()
        value = f"{_limit(rlimit.soft)}:{_limit(rlimit.hard)}"
        out.add(f"lxc.prlimit.{name}", value, f"process.rlimits[{i}]")
    if process.no_new_privileges:
        out.add("lxc.no_new_privs", "1", "process.noNewPrivileges")
    out.add("lxc.apparmor.profile", process.apparmor_profile or "unconfined", "process")
    if process.oom_score_adj is not None:
        out.add("lxc.proc.oom_score_adj", str(process.oom_score_adj), "process.oomScoreAdj")
    if process.selinux_label:
        out.add("lxc.selinux.context", process.selinux_label, "process.selinuxLabel")
    for field, attr in (
        ("scheduler", "scheduler"),
        ("ioPriority", "io_priority"),
        ("execCPUAffinity", "exec_cpu_affinity"),
    ):
        if getattr(process, attr) is not None:
            out.find(f"process.{field}", "LXC has no key for it")
    return uid


def _environment(env: Sequence[str], out: Translation) -> None:
    env_names: dict[str, str] = {}
    for i, entry in enumerate(env):
        path = f"process.env[{i}]"
        name, eq, _value = entry.partition("=")
        if not eq or not name:
            # A bare NAME in lxc.environment inherits the *host's* value (lxc.container.conf).
            out.find(path, "not NAME=VALUE: LXC would copy the variable from the host")
            continue
        if name.startswith("LXC_"):
            out.find(path, "LXC passes lxc.environment to its hooks too: LXC_* names refused")
            continue
        if out.add("lxc.environment", entry, path):
            env_names[name] = entry
    # LXC sets these itself (start.c do_start), "container=lxc" even over the config's own
    # value (podman sends container=podman): the helper restores the config's environment.
    for added in ("container", "PATH"):
        if added in env_names:
            out.init.append(("env", env_names[added]))
        else:
            out.init.append(("unset", added))


def _limit(value: int) -> str:
    return "unlimited" if value >= 2**64 - 1 else str(value)


def _capabilities(process: Process | None, uid: int, out: Translation) -> None:
    caps: Capabilities | None = process.capabilities if process else None
    if caps is None:
        return
    # LXC bounds init with lxc.cap.keep; execve then gives root the whole bounding set as
    # permitted/effective (capabilities(7)), as it does under runc.
    bounding = caps.bounding or ()
    names = [c.removeprefix("CAP_").lower() for c in bounding]
    out.add("lxc.cap.keep", " ".join(names) if names else "none", "process.capabilities.bounding")
    if caps.ambient and uid != 0:
        out.find(
            "process.capabilities.ambient",
            "LXC cannot raise ambient capabilities for a non-root init",
        )
    extra = [c for c in caps.inheritable or () if c not in bounding]
    if extra:
        out.find(
            "process.capabilities.inheritable",
            f"{', '.join(extra)} not in the bounding set: LXC cannot grant it",
        )


# -- namespaces ---------------------------------------------------------------------------------


def _namespaces(linux: Linux | None, hostname: str | None, out: Translation) -> set[str]:
    """Keys for the namespaces; returns the OCI types that are new or joined."""
    listed: set[str] = set()
    clone: list[str] = []
    for i, ns in enumerate(linux.namespaces or () if linux else ()):
        path = f"linux.namespaces[{i}]"
        lxc_name = NAMESPACES.get(ns.type)
        if lxc_name is None:
            out.find(path + ".type", f"unknown namespace {ns.type!r}")
            continue
        listed.add(ns.type)
        if ns.path:
            if ns.type == "mount":
                out.find(path + ".path", "LXC builds its own mount namespace; it cannot join one")
            else:
                out.add(f"lxc.namespace.share.{lxc_name}", ns.path, path + ".path")
        else:
            clone.append(lxc_name)
    if "mount" not in listed:
        out.find("linux.namespaces", "LXC always creates a mount namespace: list one")
    if clone:
        out.add("lxc.namespace.clone", " ".join(clone), "linux.namespaces")
    new_net = "net" in clone
    # empty: a new netns with only loopback; none: the host's (or the joined) netns.
    out.add("lxc.net.0.type", "empty" if new_net else "none", "linux.namespaces")
    if hostname and "uts" not in clone:
        out.find("hostname", "setting the hostname needs a new uts namespace")
    if "user" in clone and linux is not None and not (linux.uid_mappings and linux.gid_mappings):
        out.find("linux.uidMappings", "a new user namespace needs uid and gid mappings")
    return listed


# -- mounts -------------------------------------------------------------------------------------


def _mounts(
    mounts: Sequence[Mount],
    bundle: str,
    out: Translation,
    is_dir: Callable[[str], bool],
    host: HostFacts,
    leaf: str | None,
) -> bool:
    """Mount keys; returns whether /dev is a tmpfs (LXC's autodev)."""
    auto: list[str] = []
    autodev = False
    for i, mount in enumerate(mounts):
        path = f"mounts[{i}]"
        dest = _join("/", mount.destination)
        kind = mount.type or ""
        options = list(mount.options or ())
        if mount.uid_mappings or mount.gid_mappings:
            out.find(path + ".uidMappings", "idmapped mounts are not supported by LXC 5")
        if dest == "/proc" and kind == "proc":
            auto.append("proc:rw")  # readonlyPaths/maskedPaths do the rest, as under runc
        elif dest == "/sys" and kind == "sysfs":
            auto.append("sys:ro" if "ro" in options else "sys:rw")
        elif dest == "/sys/fs/cgroup" and kind in ("cgroup", "cgroup2"):
            _cgroup_mounts(host, "ro" in options, path, leaf, out)
        elif dest == "/dev" and kind == "tmpfs":
            autodev = True  # LXC mounts and fills /dev itself
        elif dest == "/dev/pts" and kind == "devpts":
            # LXC mounts its own devpts (newinstance, ptmxmode=0666, mode=0620, gid=5).
            out.add("lxc.pty.max", "1024", path)
        else:
            _mount_entry(mount, path, dest, kind, options, bundle, out, is_dir)
    if auto:
        out.add("lxc.mount.auto", " ".join(auto), "mounts")
    return autodev


def _cgroup_mounts(
    host: HostFacts, readonly: bool, path: str, leaf: str | None, out: Translation
) -> None:
    """/sys/fs/cgroup as runc mounts it for cgroup v1: a tmpfs with the container's own cgroup
    of each controller bound in, so the container sees its limits at the top. (``lxc.mount.auto
    = cgroup`` is skipped under a cgroup namespace, with ``:force`` it shows host paths behind
    mode-000 directories, ``cgroup-full`` the host's whole tree; a fresh v1 mount from the
    container's set-up fails with EBUSY on LXC 5.0.2.)"""
    if leaf is None:
        out.find(path, "a cgroup mount needs an absolute (or no) linux.cgroupsPath with LXC")
        return
    bind = "bind,ro" if readonly else "bind"
    if host.cgroup_v1:
        out.add("lxc.mount.entry", "tmpfs sys/fs/cgroup tmpfs mode=755,create=dir 0 0", path)
        for controller in sorted(host.cgroup_v1):
            source = fstab_escape(f"/sys/fs/cgroup/{controller}/{leaf}")
            line = f"{source} sys/fs/cgroup/{controller} none {bind},create=dir 0 0"
            out.add("lxc.mount.entry", line, path)
    else:
        source = fstab_escape(f"/sys/fs/cgroup/{leaf}")
        out.add("lxc.mount.entry", f"{source} sys/fs/cgroup none {bind},create=dir 0 0", path)


def _mount_entry(
    mount: Mount,
    path: str,
    dest: str,
    kind: str,
    options: list[str],
    bundle: str,
    out: Translation,
    is_dir: Callable[[str], bool],
) -> None:
    keep: list[str] = []
    for j, option in enumerate(options):
        if option in UNSUPPORTED_MOUNT_OPTIONS:
            out.find(f"{path}.options[{j}]", f"mount option {option!r} is not supported by LXC")
        elif "," in option:
            out.find(f"{path}.options[{j}]", "a comma would split the option")
        else:
            keep.append(option)
    bind = kind == "bind" or "bind" in keep or "rbind" in keep
    source = mount.source or kind or "none"
    if bind:
        if not source.startswith("/"):
            source = _join(bundle, source)  # runc: relative to the bundle
        if "bind" not in keep and "rbind" not in keep:
            keep.insert(0, "bind")
        kind = "none"
        keep.append("create=dir" if is_dir(source) else "create=file")
    else:
        keep.append("create=dir")
    line = " ".join(
        (
            fstab_escape(source),
            fstab_escape(dest.lstrip("/")),
            fstab_escape(kind or "none"),
            fstab_escape(",".join(keep)),
            "0",
            "0",
        )
    )
    bad = _unsafe(mount.destination) or _unsafe(mount.source or "") or _unsafe(kind)
    if bad:
        out.find(path, f"{bad}: refused, it would inject lines into the LXC config")
        return
    out.add("lxc.mount.entry", line, path)


# -- linux --------------------------------------------------------------------------------------


def _linux(
    linux: Linux, container_id: str, host: HostFacts, out: Translation, namespaces: set[str]
) -> None:
    for i, m in enumerate(linux.uid_mappings or ()):
        out.add("lxc.idmap", f"u {m.container_id} {m.host_id} {m.size}", f"linux.uidMappings[{i}]")
    for i, m in enumerate(linux.gid_mappings or ()):
        out.add("lxc.idmap", f"g {m.container_id} {m.host_id} {m.size}", f"linux.gidMappings[{i}]")
    for clock, offset in (linux.time_offsets or {}).items():
        path = f'linux.timeOffsets["{clock}"]'
        key = {"boottime": "boot", "monotonic": "monotonic"}.get(clock)
        if key is None or "time" not in namespaces:
            out.find(path, "needs a new time namespace and a known clock")
            continue
        nanos = (offset.secs or 0) * 1_000_000_000 + (offset.nanosecs or 0)
        out.add(f"lxc.time.offset.{key}", f"{nanos}ns", path)
    for key, value in (linux.sysctl or {}).items():
        path = f'linux.sysctl["{key}"]'
        if not key or not all(c.isalnum() or c in "._-/" for c in key):
            out.find(path, "not a sysctl name")
            continue
        out.add(f"lxc.sysctl.{key}", value, path)
    _cgroup_dir(linux.cgroups_path, container_id, out)
    _devices(linux, host, out)
    if linux.resources is not None:
        from nexcage.backends.translate.lxc_resources import resource_keys

        resource_keys(linux.resources, host, out, "linux.resources")
    _paths(linux, out)
    if linux.personality is not None:
        if linux.personality.domain == "LINUX32":
            out.add("lxc.arch", "linux32", "linux.personality.domain")
        if linux.personality.flags:
            out.find("linux.personality.flags", "LXC sets no personality flags")
    if linux.seccomp is not None:
        out.find(
            "linux.seccomp",
            "not translated to an LXC seccomp policy by this version; remove it (podman: "
            "--security-opt seccomp=unconfined) or use the crun/runc backend",
        )
    for field, attr in (
        ("intelRdt", "intel_rdt"),
        ("memoryPolicy", "memory_policy"),
        ("netDevices", "net_devices"),
        ("mountLabel", "mount_label"),
    ):
        if getattr(linux, attr):
            out.find(f"linux.{field}", "LXC has no key for it")


def cgroup_leaf(linux: Linux | None, container_id: str) -> str | None:
    """The container's cgroup below each hierarchy's root; None when relative to nexcage's."""
    path = linux.cgroups_path if linux is not None else None
    if path and (":" in path or not path.startswith("/")):
        return None
    return (path or "").strip("/") or f"nexcage/{container_id}"


def _cgroup_dir(cgroups_path: str | None, container_id: str, out: Translation) -> None:
    # runc: an absolute cgroupsPath is relative to the cgroup root, a relative one to the
    # runtime's own cgroup; "slice:prefix:name" is the systemd driver's form.
    path = "linux.cgroupsPath"
    if cgroups_path and ":" in cgroups_path:
        out.find(path, "systemd cgroup paths are not supported by the lxc backend")
        return
    if cgroups_path and not cgroups_path.startswith("/"):
        out.add("lxc.cgroup.relative", "1", path)
    leaf = (cgroups_path or "").strip("/") or f"nexcage/{container_id}"
    out.add("lxc.cgroup.dir.container", leaf, path)
    out.add("lxc.cgroup.dir.monitor", f"nexcage.monitor/{container_id}", path)


def _devices(linux: Linux, host: HostFacts, out: Translation) -> None:
    rules: list[tuple[str, str, str]] = []  # (allow|deny, rule, json path)
    devices = linux.devices or ()
    for i, dev in enumerate(devices):
        path = f"linux.devices[{i}]"
        if _unsafe(dev.path) or " " in dev.path:
            out.find(path + ".path", "a device path with blanks or line breaks is refused")
            continue
        if dev.path in AUTODEV_NODES:
            continue
        kind = "c" if dev.type == "u" else dev.type
        mode = dev.file_mode if dev.file_mode is not None else 0o666
        out.hook.append(
            f"d{kind} {dev.major or 0} {dev.minor or 0} {mode:o} {dev.uid or 0} {dev.gid or 0} "
            f"{dev.path}"
        )
        if kind in ("c", "b"):
            rules.append(("allow", f"{kind} {dev.major}:{dev.minor} rwm", path))
    resources = linux.resources
    spec_rules: list[tuple[str, str, str]] = []
    for i, rule in enumerate(resources.devices or () if resources else ()):
        kind = rule.type or "a"
        if kind == "a":
            text = "a"
        else:
            major = "*" if rule.major is None or rule.major < 0 else str(rule.major)
            minor = "*" if rule.minor is None or rule.minor < 0 else str(rule.minor)
            text = f"{kind} {major}:{minor} {rule.access or 'rwm'}"
        spec_rules.append(
            ("allow" if rule.allow else "deny", text, f"linux.resources.devices[{i}]")
        )
    # runc: deny everything, then the config's rules, then its default devices.
    ordered = [("deny", "a", "linux.resources.devices"), *spec_rules]
    ordered += [("allow", r, "linux.resources.devices") for r in DEFAULT_DEVICE_RULES]
    ordered += rules
    if "devices" in host.cgroup_v1:
        prefix = "lxc.cgroup.devices"
    elif host.cgroup_v2:
        prefix = "lxc.cgroup2.devices"  # LXC emulates the v1 list with a BPF program
    else:
        if spec_rules:
            out.find("linux.resources.devices", "no device cgroup on this host")
        return
    for verb, text, path in ordered:
        out.add(f"{prefix}.{verb}", text, path)


def _paths(linux: Linux, out: Translation) -> None:
    for field, kind, values in (
        ("maskedPaths", "m", linux.masked_paths),
        ("readonlyPaths", "r", linux.readonly_paths),
    ):
        for i, value in enumerate(values or ()):
            if "\0" in value or not value.startswith("/"):
                out.find(f"linux.{field}[{i}]", "must be an absolute path without NUL")
                continue
            out.hook.append(kind + value)
    propagation = linux.rootfs_propagation
    if propagation:
        flag = PROPAGATION.get(propagation.removeprefix("r"))
        if flag is None:
            out.find("linux.rootfsPropagation", f"unknown propagation {propagation!r}")
        else:
            out.hook.append(f"p{flag | (MS_REC if propagation.startswith('r') else 0)}")


# -- nexcage's own pieces -----------------------------------------------------------------------


def _helper_keys(paths: Paths, out: Translation) -> None:
    """The init helper, its directory (read-only) and, when needed, the mount hook."""
    directory = paths.container_dir.rstrip("/") + "/nexcage"
    inner = INNER_DIR.lstrip("/")
    entries = (
        f"{fstab_escape(directory)} {inner} none bind,ro,create=dir 0 0",
        f"{fstab_escape(paths.helper)} {inner}/init none bind,ro 0 0",
    )
    for entry in entries:
        out.add("lxc.mount.entry", entry, "<nexcage>")
    out.add("lxc.init.cmd", f"{INIT} init {PROCESS_FILE}", "<nexcage>")
    # LXC's own errors go to a file, never to the container's stderr (which is the engine's).
    out.add("lxc.log.file", paths.container_dir.rstrip("/") + "/lxc.log", "<nexcage>")
    out.add("lxc.log.level", "ERROR", "<nexcage>")
    out.init.append(("fifo", EXEC_FIFO))
    if out.hook:
        # LXC runs hooks through `sh -c`: the helper's path must be plain.
        if not all(c.isalnum() or c in "/._-+" for c in paths.helper):
            out.find("<nexcage>", f"helper path {paths.helper!r} is not shell-safe")
            return
        out.add("lxc.hook.mount", f"{paths.helper} hook", "<nexcage>")
