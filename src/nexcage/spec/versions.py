"""runtime-spec versions: SemVer parsing and which config.json fields each release introduced.

Pure data and functions. The caller (ops) decides what to do with them: when a backend rejects
a bundle's ``ociVersion`` (crun 1.8 accepts only strings containing "1.0"), nexcage may hand it a
derived config with an older ``ociVersion`` — but only if :func:`newer_fields` finds nothing the
older release does not define.
"""

from __future__ import annotations

from nexcage.spec.model import copy_json

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any

    Matcher = None | str | Callable[[object], bool]

_DIGITS = frozenset("0123456789")
_IDENT = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-")


def _numeric(part: str) -> bool:
    return bool(part) and set(part) <= _DIGITS and (part == "0" or part[0] != "0")


def parse_version(text: str) -> tuple[int, int, int, str]:
    """Parse SemVer 2.0.0 ``MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]``.

    Returns (major, minor, patch, prerelease); "" means a release. Build metadata ("+dev", as
    specs-go/version.go uses between releases) is checked and dropped: SemVer gives it no
    precedence. Raises ValueError for anything else ("1.0", "v1.0.0", "01.0.0").
    """
    core, plus, build = text.partition("+")
    if plus and not all(ident and set(ident) <= _IDENT for ident in build.split(".")):
        raise ValueError(f"invalid SemVer build metadata in {text!r}")
    core, dash, pre = core.partition("-")
    if dash:
        for ident in pre.split("."):
            if not ident or not set(ident) <= _IDENT:
                raise ValueError(f"invalid SemVer pre-release in {text!r}")
            if set(ident) <= _DIGITS and not _numeric(ident):
                raise ValueError(f"leading zero in SemVer pre-release of {text!r}")
    parts = core.split(".")
    if len(parts) != 3 or not all(_numeric(p) for p in parts):
        raise ValueError(f"not a SemVer version (MAJOR.MINOR.PATCH): {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2]), pre


def _pre_key(pre: str) -> tuple[tuple[int, int, str], ...]:
    # SemVer §11: numeric identifiers sort numerically and before alphanumeric ones.
    return tuple((0, int(i), "") if set(i) <= _DIGITS else (1, 0, i) for i in pre.split("."))


def compare(a: str, b: str) -> int:
    """SemVer precedence of ``a`` against ``b``: -1, 0 or 1 (``1.0.2-dev`` < ``1.0.2``)."""
    va, vb = parse_version(a), parse_version(b)
    if va[:3] != vb[:3]:
        return -1 if va[:3] < vb[:3] else 1
    if va[3] == vb[3]:
        return 0
    if not va[3] or not vb[3]:  # a release outranks its pre-releases
        return 1 if not va[3] else -1
    ka, kb = _pre_key(va[3]), _pre_key(vb[3])
    return 0 if ka == kb else (-1 if ka < kb else 1)


def _relative(value: object) -> bool:
    return isinstance(value, str) and not value.startswith("/")


# (JSON path pattern, release that introduced it, matcher). "[]" walks every array element.
# Matcher None: the key is present; a string: the value (or an array
# element) equals it; a callable: it returns True. Source: runtime-spec ChangeLog, checked
# against specs-go/config.go and config*.md at each tag.
INTRODUCED: tuple[tuple[str, str, Matcher], ...] = (
    # v1.0.2
    ("hooks.createRuntime", "1.0.2", None),  # #1008
    ("hooks.createContainer", "1.0.2", None),
    ("hooks.startContainer", "1.0.2", None),
    ("process.user.umask", "1.0.2", None),  # #941
    ("linux.intelRdt.closID", "1.0.2", None),  # #988
    ("linux.intelRdt.memBwSchema", "1.0.2", None),  # #932
    ("linux.resources.memory.useHierarchy", "1.0.2", None),  # #985
    ("linux.personality", "1.0.2", None),  # #1012
    ("linux.seccomp.flags", "1.0.2", None),  # #1018
    ("linux.seccomp.defaultAction", "1.0.2", "SCMP_ACT_LOG"),  # #1019
    ("linux.seccomp.syscalls[].action", "1.0.2", "SCMP_ACT_LOG"),
    # v1.1.0
    ("domainname", "1.1.0", None),  # #1156
    ("mounts[].uidMappings", "1.1.0", None),  # #1143
    ("mounts[].gidMappings", "1.1.0", None),
    ("process.scheduler", "1.1.0", None),  # #1188
    ("process.ioPriority", "1.1.0", None),  # #1191
    ("linux.namespaces[].type", "1.1.0", "time"),  # #1151
    ("linux.timeOffsets", "1.1.0", None),
    ("linux.resources.unified", "1.1.0", None),  # #1040 (cgroup v2)
    ("linux.resources.cpu.burst", "1.1.0", None),  # #1120
    ("linux.resources.cpu.idle", "1.1.0", None),  # #1136
    ("linux.resources.memory.checkBeforeUpdate", "1.1.0", None),  # #1158
    ("linux.intelRdt.enableCMT", "1.1.0", None),  # #1076, replaced in 1.3.0
    ("linux.intelRdt.enableMBM", "1.1.0", None),
    ("linux.seccomp.defaultErrnoRet", "1.1.0", None),  # #1087
    ("linux.seccomp.syscalls[].errnoRet", "1.1.0", None),  # #1041
    ("linux.seccomp.listenerPath", "1.1.0", None),  # #1074 (seccomp notify)
    ("linux.seccomp.listenerMetadata", "1.1.0", None),
    ("linux.seccomp.defaultAction", "1.1.0", "SCMP_ACT_KILL_PROCESS"),  # #1044
    ("linux.seccomp.defaultAction", "1.1.0", "SCMP_ACT_KILL_THREAD"),  # #1064
    ("linux.seccomp.syscalls[].action", "1.1.0", "SCMP_ACT_KILL_PROCESS"),
    ("linux.seccomp.syscalls[].action", "1.1.0", "SCMP_ACT_KILL_THREAD"),
    ("linux.seccomp.syscalls[].action", "1.1.0", "SCMP_ACT_NOTIFY"),  # #1074
    ("linux.seccomp.architectures[]", "1.1.0", "SCMP_ARCH_RISCV64"),  # #1059
    ("linux.seccomp.flags[]", "1.1.0", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"),  # #1161
    ("zos", "1.1.0", None),  # #1095
    # v1.2.0
    ("mounts[].options[]", "1.2.0", "idmap"),  # #1222
    ("mounts[].options[]", "1.2.0", "ridmap"),
    ("mounts[].destination", "1.2.0", _relative),  # #1225
    # v1.2.1
    ("process.execCPUAffinity", "1.2.1", None),  # #1253, #1261
    ("windows.resources.cpu.affinity", "1.2.1", None),  # #1258
    # #1229 synced the SCMP_ARCH_* list with libseccomp main; these four are absent from the
    # Arch constants of specs-go/config.go before it (which end at SCMP_ARCH_RISCV64).
    ("linux.seccomp.architectures[]", "1.2.1", "SCMP_ARCH_LOONGARCH64"),
    ("linux.seccomp.architectures[]", "1.2.1", "SCMP_ARCH_M68K"),
    ("linux.seccomp.architectures[]", "1.2.1", "SCMP_ARCH_SH"),
    ("linux.seccomp.architectures[]", "1.2.1", "SCMP_ARCH_SHEB"),
    # v1.3.0
    ("linux.memoryPolicy", "1.3.0", None),  # #1282
    ("linux.intelRdt.schemata", "1.3.0", None),  # #1230
    ("linux.intelRdt.enableMonitoring", "1.3.0", None),  # #1287
    ("linux.netDevices", "1.3.0", None),  # #1271
    ("freebsd", "1.3.0", None),  # #1286
    # #1209: config-vm.md and the schema say "hwConfig", specs-go's JSON tag says "hwconfig".
    ("vm.hwConfig", "1.3.0", None),
    ("vm.hwconfig", "1.3.0", None),
)


def _walk(node: object, segments: list[str], path: str) -> Iterator[tuple[str, object]]:
    """Yield (concrete JSON path, value) for every match of a pattern's segments."""
    if not segments:
        yield path, node
        return
    head, rest = segments[0], segments[1:]
    key, brackets = (head[:-2], True) if head.endswith("[]") else (head, False)
    if not isinstance(node, dict) or node.get(key) is None:
        return
    value = node[key]
    here = f"{path}.{key}" if path else key
    if not brackets:
        yield from _walk(value, rest, here)
    elif isinstance(value, list):
        for i, element in enumerate(value):
            yield from _walk(element, rest, f"{here}[{i}]")


def _core(version: str) -> tuple[int, int, int]:
    major, minor, patch, _ = parse_version(version)
    return major, minor, patch


def newer_fields(raw: dict[str, Any], version: str) -> list[tuple[str, str]]:
    """JSON paths in ``raw`` whose field (or value) was introduced after ``version``.

    Each is paired with the release that introduced it, in document order of the table. A
    pre-release of X counts as X: runtimes report e.g. "1.0.2-dev" (runc 1.1) while implementing
    what 1.0.2 added. Raises ValueError if ``version`` is not SemVer.
    """
    accepted = _core(version)
    found: list[tuple[str, str]] = []
    for pattern, release, matcher in INTRODUCED:
        if _core(release) <= accepted:
            continue
        for path, value in _walk(raw, pattern.split("."), ""):
            if matcher is None:
                found.append((path, release))
            elif isinstance(matcher, str):
                if value == matcher:
                    found.append((path, release))
            elif matcher(value):
                found.append((path, release))
    return found


def derive_for(raw: dict[str, Any], accepted: str) -> dict[str, Any]:
    """A deep copy of ``raw`` with ``ociVersion`` set to ``accepted`` (the user's dict is kept)."""
    derived: dict[str, Any] = copy_json(raw)
    derived["ociVersion"] = accepted
    return derived


def minimal_version(raw: dict[str, Any], floor: str = "1.0.2") -> str:
    """The oldest runtime-spec release that has every field ``raw`` uses (at least ``floor``).

    What a bundle nexcage writes should declare, so that runtimes which check the version (crun
    1.8 accepts only "1.0"-ish strings, CONTRACTS.md §0) take it as long as no newer field is used.
    """
    best = floor
    for _path, since in newer_fields(raw, floor):
        if compare(since, best) > 0:
            best = since
    return best
