"""``nexcage check``: a system integrity report (PRODUCT.md §1.2).

The caller finds the backends (binary path and version) and decides the exit code (1 on any FAIL);
this module runs the checks and renders them. Not on the runtime verbs' hot path.
"""

from __future__ import annotations

import os

from nexcage.errors import UsageError
from nexcage.fastjson import dumps
from nexcage.host import cgroups

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nexcage.settings import Settings

OK = "OK"
WARN = "WARN"
FAIL = "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}
# Backends that are one OCI CLI class: either one is enough for OCI containers.
OCI_BACKENDS = ("crun", "runc")
_INSTALL = {
    "crun": "apt-get install crun",
    "runc": "apt-get install runc",
    "lxc": "apt-get install lxc",
    "proxmox": "run nexcage on a Proxmox VE node (pct, pvesh)",
}


class CheckResult:
    __slots__ = ("detail", "fix", "name", "status")

    def __init__(self, name: str, status: str, detail: str, fix: str | None = None) -> None:
        self.name = name
        self.status = status
        self.detail = detail
        self.fix = fix

    def to_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CheckResult) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.name, self.status, self.detail, self.fix))

    def __repr__(self) -> str:
        return f"CheckResult({self.name!r}, {self.status!r}, {self.detail!r}, {self.fix!r})"


def _backend_checks(
    settings: Settings, backends: list[tuple[str, str | None, str | None]]
) -> list[CheckResult]:
    found = {name for name, path, _ in backends if path}
    out = []
    for name, path, version in backends:
        check = f"backend {name}"
        if path is None:
            # Missing crun or runc is fine while another backend exists; nothing at all is not.
            status = WARN if found else FAIL
            fix = _INSTALL.get(name)
            if name in OCI_BACKENDS:
                fix = f"{fix}, or set [runtimes.{name}] path / NEXCAGE_{name.upper()}_PATH"
            out.append(CheckResult(check, status, "not found", fix))
        elif version is None:
            out.append(CheckResult(check, WARN, f"{path}: version unknown (--version failed)"))
        else:
            out.append(CheckResult(check, OK, f"{name} {version} ({path})"))
    if not backends:
        out.append(CheckResult("backends", FAIL, "no runtime backend found", _INSTALL["crun"]))
    wanted = settings.default_runtime
    if wanted is not None and wanted not in found:
        source = settings.sources.get("default_runtime", "default")
        out.append(
            CheckResult(
                "default runtime",
                FAIL,
                f"default_runtime = {wanted} ({source}) but {wanted} was not found",
                _INSTALL.get(wanted),
            )
        )
    return out


_LAYOUTS = {
    cgroups.V2: "v2 (unified at /sys/fs/cgroup)",
    cgroups.HYBRID: "hybrid (v1 controllers, cgroup2 at /sys/fs/cgroup/unified)",
    cgroups.V1: "v1",
}


def _cgroup_checks(backends: list[tuple[str, str | None, str | None]]) -> list[CheckResult]:
    kind = cgroups.layout()
    out = []
    if kind == cgroups.NONE:
        out.append(
            CheckResult(
                "cgroup layout",
                FAIL,
                "no cgroup file system at /sys/fs/cgroup",
                "mount -t cgroup2 none /sys/fs/cgroup",
            )
        )
    else:
        detail = _LAYOUTS[kind]
        if kind != cgroups.V1:
            detail += "; cgroup2 controllers: " + (" ".join(cgroups.v2_controllers()) or "none")
        out.append(CheckResult("cgroup layout", OK, detail))
    if any(name == "crun" and path for name, path, _ in backends):
        problem = cgroups.crun_hybrid_problem()
        if problem is None:
            detail = "cgroup2 has no controllers" if kind == cgroups.HYBRID else "not hybrid"
            out.append(CheckResult("crun hybrid cgroups", OK, detail))
        else:
            fix = cgroups.hybrid_fix(cgroups.v2_controllers())
            out.append(CheckResult("crun hybrid cgroups", FAIL, problem, fix))
    if cgroups.systemd_booted():
        detail = "systemd is PID 1: --systemd-cgroup available; cgroupfs is the default"
    else:
        detail = "systemd not running: nexcage uses the cgroupfs driver (--systemd-cgroup fails)"
    out.append(CheckResult("cgroup driver", OK, detail))
    return out


def _writable(name: str, path: str, source: str) -> CheckResult:
    """Create ``path`` if missing (0700, like runc's state root) and write a file in it."""
    # TODO(host): the probe belongs in host/fs.py once it exists.
    created = not os.path.isdir(path)
    probe = os.path.join(path, f".nexcage-check-{os.getpid()}")
    try:
        if created:
            os.makedirs(path, 0o700, exist_ok=True)
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"nexcage check\n")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        return CheckResult(
            name,
            FAIL,
            f"{path} ({source}) is not writable: {exc.strerror}",
            "run as root, or choose another directory with "
            + ("--root / NEXCAGE_ROOT" if name == "state root" else "--data-root / data_root"),
        )
    return CheckResult(name, OK, f"{path} ({source})" + (", created" if created else ""))


def _storage_check(settings: Settings) -> CheckResult:
    """The driver containers from images get, and why (``auto`` explains its pick)."""
    from nexcage.errors import StorageError
    from nexcage.storage import select

    source = settings.sources.get("storage.driver", "default")
    try:
        driver, reason = select.choose(settings)
    except StorageError as exc:
        return CheckResult("storage driver", FAIL, f"{exc} ({source})", exc.hint)
    return CheckResult("storage driver", OK, f"{reason}; root {driver.root}")


def run_checks(
    settings: Settings, backends: list[tuple[str, str | None, str | None]]
) -> list[CheckResult]:
    """All checks. ``backends``: ``(name, binary path or None, version or None)`` per backend."""
    results = _backend_checks(settings, backends)
    results += _cgroup_checks(backends)
    results.append(
        _writable("state root", settings.state_root, settings.sources.get("state_root", ""))
    )
    results.append(
        _writable("data root", settings.data_root, settings.sources.get("data_root", ""))
    )
    results.append(_storage_check(settings))
    # Settings exist, so they were valid (load() fails closed): report where they came from.
    if settings.config_file is not None:
        detail = f"{settings.config_file} ({settings.config_file_source}) is valid"
    else:
        detail = "no config file (/etc/nexcage/config.toml absent): defaults, env and flags"
    results.append(CheckResult("config", OK, detail))
    return results


def overall(results: list[CheckResult]) -> str:
    """The worst status (OK when there are no results)."""
    return max((r.status for r in results), key=_RANK.__getitem__, default=OK)


def render(results: list[CheckResult], fmt: str = "text") -> str:
    """A text table (STATUS CHECK DETAIL, then ``fix:`` lines) or a JSON document."""
    if fmt == "json":
        doc = {"status": overall(results), "checks": [r.to_dict() for r in results]}
        return dumps(doc, indent=2) + "\n"
    if fmt != "text":
        raise UsageError(f"invalid format: {fmt}")
    width = max([len("CHECK"), *(len(r.name) for r in results)])
    lines = [f"{'STATUS':<6}  {'CHECK':<{width}}  DETAIL"]
    for r in results:
        lines.append(f"{r.status:<6}  {r.name:<{width}}  {r.detail}")
        if r.fix:
            lines.append(f"{'':<6}  {'':<{width}}  fix: {r.fix}")
    lines.append(f"\n{overall(results)}")
    return "\n".join(lines) + "\n"
