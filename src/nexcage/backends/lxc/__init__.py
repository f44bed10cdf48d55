"""LXC backend: OCI bundles as LXC system containers, with runc's create/start/state contract.

**Tools, not the Python binding.** Engines run the runtime once per verb, so every verb pays its
imports: PyPI ``lxc`` (3.0.4.0, 2022) must be compiled against ``lxc-dev`` and its ``lxc``
module imports ``subprocess`` (~22 ms here, DESIGN.md), while most verbs need no LXC call at
all: ``state`` is derived from the init pid like every backend's, ``kill`` is a host-side
``kill(2)`` with the start-time check, pause/resume/update write the container's cgroup files.
Only ``create`` needs liblxc, and it needs a process that outlives nexcage anyway (LXC's
monitor is init's parent for the container's whole life): nexcage spawns a 40-line C program,
``nexcage-lxc-monitor`` (``helpers/monitor.c``), that calls liblxc's ``start`` in the
foreground. ``exec`` replaces nexcage with ``lxc-attach`` (exit status and signals pass through
unchanged; with a console socket, attach.py). ``lxc-start -F`` itself is not used because it
exits 0 whatever init returned.

**A true ``created`` state** (``helpers/init.c``): ``lxc.init.cmd`` is nexcage's static init
helper, bind-mounted read-only with its directory at ``/dev/.nexcage`` (the /dev tmpfs, so the
user's rootfs is not touched). LXC starts it after all set-up (uid/gid/groups, env, cwd, caps,
limits); it resolves the user's argv[0], reports ``ready`` to ``create`` over an inherited
socket (the kernel attaches its host pid), then blocks opening ``exec.fifo`` for writing.
``create`` returns with that pid in the pid file: a real process that lives as long as the
container; ``start`` opens the FIFO for reading, reads the helper's byte, and the helper
execs the user's process as PID 1 (so ``state`` then shows the user's command at that pid).

**Two pids.** ``state`` reports init's host pid; the ``--pid-file`` engines get names the
monitor, because conmon and containerd's shim learn a container's exit status only by reaping
the pid-file process (``waitpid``) and LXC's init is never their child. The monitor lives
exactly as long as the container, LXC forwards the signals it gets to init, and it exits with
init's status (``waited_pid``).

**stdio.** ``lxc.console.path = none`` and a foreground monitor: init inherits the fds 0-2
nexcage got (engines' pipes or FIFOs), and the preserved fds after them. With
``process.terminal`` the helper opens a pty on the container's devpts and sends the master back
with its ``ready``; nexcage passes it to ``--console-socket`` (runc's protocol).

Layout: ``<root>/<id>/config`` (the LXC config; ``<root>`` is ``lxc.lxcpath``, i.e.
``<state root>/.backends/lxc``, never ``/var/lib/lxc``), ``hook`` (the mount hook's records),
``state`` (pids), ``lxc.log``, and ``nexcage/`` (bound into the container: ``process``,
``exec.fifo``, ``init``).
"""

from __future__ import annotations

import os

from nexcage import OCI_VERSION
from nexcage.errors import ContainerNotFound, InvalidState, NexcageError, Unsupported
from nexcage.host import proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from nexcage.backends.base import Backend
    from nexcage.backends.translate.lxc_config import HostFacts, Translation
    from nexcage.errors import Finding
    from nexcage.spec.config import Spec

NAME = "lxc"
CAPABILITIES = frozenset(
    {"created-state", "exec", "pause", "console-socket", "update", "ps", "preserve-fds"}
)
CONFIG = "config"
STATE = "state"
INNER = "nexcage"
FIFO = "exec.fifo"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
SIGKILL = 9
V1_CONTROLLERS = frozenset(
    {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "blkio",
     "perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc"}
)  # fmt: skip


class InitFailed(NexcageError):
    """The container's init did not come up (reported by the helper or LXC's log)."""


def open_backend(root: str, *, log_file: str | None = None, debug: bool = False) -> Backend:
    return Lxc(root, log_file=log_file, debug=debug)


_host_facts: list[HostFacts] = []  # one per process: check and create both need them


def host_facts() -> HostFacts:
    """The cgroup layout the translation picks v1 or v2 keys from (read once per process)."""
    if _host_facts:
        return _host_facts[0]
    from nexcage.backends.translate.lxc_config import HostFacts
    from nexcage.host import cgroups

    v1: set[str] = set()
    for _point, fstype, options in cgroups.mounts():
        if fstype == "cgroup":
            v1.update(o for o in options.split(",") if o in V1_CONTROLLERS)
    swap = os.path.exists(cgroups.CGROUP_ROOT + "/memory/memory.memsw.limit_in_bytes")
    _host_facts.append(HostFacts(v1, cgroups.v2_controllers(), swap_accounting=swap))
    return _host_facts[0]


def _which(name: str) -> str:
    from nexcage.host import run as host_run

    for directory in (os.environ.get("PATH") or host_run.DEFAULT_PATH).split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    for candidate in (f"/usr/bin/{name}", f"/usr/local/bin/{name}"):
        if os.access(candidate, os.X_OK):
            return candidate
    from nexcage.errors import BackendNotFound

    raise BackendNotFound(NAME, f"{name} not found: install LXC (apt-get install lxc)")


class Pids:
    """The backend's own record of a container: init and monitor, each with its start time."""

    __slots__ = ("init", "init_start", "monitor", "monitor_start")

    def __init__(self, init: int, init_start: int, monitor: int, monitor_start: int) -> None:
        self.init = init
        self.init_start = init_start
        self.monitor = monitor
        self.monitor_start = monitor_start

    def encode(self) -> bytes:
        return f"{self.init} {self.init_start} {self.monitor} {self.monitor_start}\n".encode()

    @classmethod
    def decode(cls, text: bytes) -> Pids:
        fields = [int(f) for f in text.split()]
        if len(fields) != 4:
            raise ValueError("expected 4 numbers")
        return cls(*fields)

    def init_alive(self) -> bool:
        return proc.alive(self.init, self.init_start)

    def monitor_alive(self) -> bool:
        return proc.alive(self.monitor, self.monitor_start)


class Lxc:
    """The LXC backend (see the module docstring)."""

    __slots__ = ("_checked", "_version", "debug", "log_file", "root")

    name = NAME
    capabilities = CAPABILITIES

    def __init__(self, root: str, *, log_file: str | None = None, debug: bool = False) -> None:
        self.root = root  # lxc.lxcpath
        self.log_file = log_file
        self.debug = debug
        self._version: str | None = None
        # What check() parsed: create() translates that instead of reading config.json again.
        self._checked: tuple[dict[str, Any], Spec, list[Finding]] | None = None

    # -- identity -----------------------------------------------------------------------------
    def version(self) -> str:
        if self._version is None:
            from nexcage.backends.oci_cli import _cached_version

            os.makedirs(self.root, mode=0o700, exist_ok=True)
            self._version = _cached_version(_which("lxc-start"), self.root)
        return self._version

    def accepts_version(self, oci_version: str) -> bool:
        return True  # the config is translated, never handed over

    def negotiated_version(self) -> str:
        return OCI_VERSION

    def supported_spec(self) -> str:
        return OCI_VERSION

    def waited_pid(self, container_id: str, init_pid: int) -> int:
        """The LXC monitor: what engines reap (module docstring, "Two pids")."""
        return self._pids(container_id).monitor

    def check(self, raw: dict[str, Any]) -> list[Finding]:
        """Everything in config.json LXC cannot express (JSON paths), before anything is made."""
        if self._checked is not None and self._checked[0] is raw:
            return self._checked[2]
        from nexcage.backends.translate.lxc_config import translate
        from nexcage.spec.config import parse_config

        spec = parse_config(raw)
        result = translate(spec, container_id="check", bundle="/bundle", host=host_facts())
        self._checked = (raw, spec, result.findings)
        return result.findings

    def checked_spec(self) -> Spec | None:
        """The config the last check() parsed: ``lifecycle.create`` checks the bundle's own
        config.json and then calls create() for that bundle with ``config=None``."""
        return self._checked[1] if self._checked is not None else None

    # -- paths and records --------------------------------------------------------------------
    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, container_id)

    def _pids(self, container_id: str) -> Pids:
        path = os.path.join(self.dir(container_id), STATE)
        try:
            # Bytes: a text read would import the ascii codec (a module) on every verb.
            with open(path, "rb") as f:
                return Pids.decode(f.read())
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None
        except (OSError, ValueError) as exc:
            raise NexcageError(f"lxc backend record {path} is unreadable: {exc}") from None

    # -- create / start -----------------------------------------------------------------------
    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        config: str | None,
        pid_file: str,
        console_socket: str | None = None,
        preserve_fds: int = 0,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
    ) -> None:
        from nexcage.backends.lxc import create as make

        make.create(self, container_id, bundle, config, pid_file, console_socket, preserve_fds)

    def start(self, container_id: str) -> None:
        """Open the FIFO the held init is blocked on and read its byte (package docstring)."""
        pids = self._pids(container_id)
        fifo = os.path.join(self.dir(container_id), INNER, FIFO)
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            try:
                data = os.read(fd, 1)
            except BlockingIOError:
                # The helper is the writer (blocked in open until now): its byte follows at
                # once, so a blocking read costs no wait loop (and no `select` import).
                os.set_blocking(fd, True)
                data = os.read(fd, 1)
            if not data:  # no writer (yet, or any more): watch the init while waiting
                _await_byte(fd, pids)
        finally:
            os.close(fd)

    # -- signals and removal ------------------------------------------------------------------
    def kill(self, container_id: str, signum: int, *, all_processes: bool = False) -> None:
        pids = self._pids(container_id)
        if not pids.init_alive():
            if all_processes:
                return
            raise InvalidState(container_id, "stopped", "container not running")
        targets = [pids.init]
        if all_processes:
            from nexcage.host import cgroups

            targets += [p for p in cgroups.pids_of(pids.init) if p != pids.init]
        for pid in targets:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                if pid == pids.init and not all_processes:
                    raise InvalidState(container_id, "stopped", "container not running") from None

    def delete(self, container_id: str, *, force: bool = False) -> None:
        directory = self.dir(container_id)
        if not os.path.isdir(directory):
            raise ContainerNotFound(container_id)
        try:
            pids: Pids | None = self._pids(container_id)
        except ContainerNotFound:
            pids = None  # an aborted create: no container ever ran
        if pids is not None and pids.monitor_alive():
            if pids.init_alive() and not force:
                raise InvalidState(container_id, "running", "container is still running")
            self._stop(pids)
        from nexcage.backends.lxc import cgroup

        cgroup.remove_leftovers(container_id)
        from nexcage.host import fs

        fs.remove_tree(directory)

    def _stop(self, pids: Pids) -> None:
        """SIGKILL everything in the container, then wait for LXC's monitor to clean up."""
        from nexcage.host import cgroups

        if pids.init_alive():
            for pid in [pids.init, *cgroups.pids_of(pids.init)]:
                try:
                    os.kill(pid, SIGKILL)
                except ProcessLookupError:
                    pass
        if not _wait_gone(pids.monitor, pids.monitor_start, STOP_TIMEOUT):
            try:
                os.kill(pids.monitor, SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(pids.monitor, pids.monitor_start, STOP_TIMEOUT)
        _reap(pids.monitor)

    # -- freezer and limits -------------------------------------------------------------------
    def pause(self, container_id: str) -> None:
        from nexcage.backends.lxc import cgroup

        cgroup.freeze(self._live_init(container_id), True)

    def resume(self, container_id: str) -> None:
        from nexcage.backends.lxc import cgroup

        cgroup.freeze(self._live_init(container_id), False)

    def update(self, container_id: str, options: Sequence[str], stdin: bytes | None) -> None:
        from nexcage.backends.lxc import cgroup

        translation = cgroup.update_keys(options, stdin, host_facts())
        if translation.findings:
            raise Unsupported(NAME, translation.findings)
        cgroup.apply(self._live_init(container_id), translation.keys)

    def _live_init(self, container_id: str) -> int:
        pids = self._pids(container_id)
        if not pids.init_alive():
            raise InvalidState(container_id, "stopped", "container not running")
        return pids.init

    # -- processes ----------------------------------------------------------------------------
    def exec_argv(
        self, container_id: str, options: Sequence[str], command: Sequence[str]
    ) -> list[str]:
        """``lxc-attach`` running the helper's exec mode; [] when a detached exec was started
        here (``--detach``: the pid file names the lxc-attach process, which exits with the
        process's status)."""
        from nexcage.backends.lxc import attach

        return attach.exec_argv(self, container_id, options)

    def ps_argv(self, container_id: str, fmt: str, ps_args: Sequence[str]) -> list[str]:
        """[] for JSON (the caller lists the container's cgroup); ``ps`` for the table."""
        if fmt == "json":
            return []
        from nexcage.host import cgroups

        pids = cgroups.pids_of(self._live_init(container_id))
        return [_which("ps"), *(ps_args or ["-f"]), "-p", ",".join(str(p) for p in pids)]

    def events_argv(self, container_id: str, options: Sequence[str]) -> list[str]:
        raise NexcageError("events: the lxc backend has no events support")


def features(doc: dict[str, Any]) -> dict[str, Any]:
    """nexcage's features document as this backend narrows it: what the translation refuses
    (lxc_config.py) is not listed. Static, as the spec asks: the host's cgroup layout decides
    at create which keys are written."""
    from nexcage.backends.translate import lxc_config as lc

    out = dict(doc)
    out["hooks"] = []  # OCI hooks are refused (lxc_config._hooks)
    out["mountOptions"] = [o for o in doc["mountOptions"] if o not in lc.UNSUPPORTED_MOUNT_OPTIONS]
    out["linux"] = {
        **doc["linux"],
        "namespaces": sorted(lc.NAMESPACES),
        "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False},
        "seccomp": {"enabled": False},  # refused until translated to LXC's policy format
        "apparmor": {"enabled": True},
        "selinux": {"enabled": True},
        "intelRdt": {"enabled": False},
        "mountExtensions": {"idmap": {"enabled": False}},
    }
    return out


def translation_for(
    backend: Lxc, container_id: str, spec: Spec, bundle: str, helper: str
) -> Translation:
    from nexcage.backends.translate.lxc_config import Paths, translate

    return translate(
        spec,
        container_id=container_id,
        bundle=bundle,
        host=host_facts(),
        paths=Paths(backend.dir(container_id), helper),
        is_dir=os.path.isdir,
    )


def _await_byte(fd: int, pids: Pids) -> None:
    """The slow path of ``start``: the helper is not (or no longer) blocked on the FIFO. Wait
    for its byte while its init lives (between its ``ready`` and its ``open`` there is a short
    window where it is neither)."""
    import select

    os.set_blocking(fd, False)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    waited = 0
    while True:
        if poller.poll(50):
            try:
                if os.read(fd, 1):
                    return
            except BlockingIOError:
                pass
        if not pids.init_alive():
            raise InitFailed("lxc: the container's init exited before start")
        waited += 50
        if waited > START_TIMEOUT * 1000:
            raise InitFailed("lxc: the container's init did not take the start signal")


def _wait_gone(pid: int, start: int, timeout: float) -> bool:
    """Wait until ``pid`` (the process that started at ``start``) has exited; False on timeout.

    A pidfd becomes readable when its process exits (pidfd_open(2)), so this returns as soon as
    the monitor is gone instead of on the next tick of a sleep loop. The start time is checked
    after the pidfd pins the pid, so a recycled pid is never waited for."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:  # pragma: no cover - kernels before 5.3
        return _poll_gone(pid, start, timeout)
    try:
        if not proc.alive(pid, start):
            return True
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(int(timeout * 1000)))
    finally:
        os.close(fd)


def _poll_gone(pid: int, start: int, timeout: float) -> bool:  # pragma: no cover - old kernels
    import time

    deadline = time.monotonic() + timeout
    while proc.alive(pid, start):
        _reap(pid)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _reap(pid: int) -> None:
    """Collect our own child's exit status if it is one (create in the same process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
