"""Processes in containers: foreground ``run``, ``exec``, ``ps``.

Foreground ``run`` is create + start + wait + delete. The backend's ``create`` forks the
container's init and exits, so the init would be reparented to the nearest subreaper; nexcage
makes itself a child subreaper first (``PR_SET_CHILD_SUBREAPER``), adopts the init, forwards
signals to it as ``runc run`` does, and returns its exit status (128+N for a signal).
"""

from __future__ import annotations

import os

from nexcage.errors import HostError, InvalidState, SpecError, Violation
from nexcage.host import run as host_run
from nexcage.ops import lifecycle
from nexcage.state import record as st

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from nexcage.ops.context import Context
    from nexcage.ops.image_bundle import ImageSource

PR_SET_CHILD_SUBREAPER = 36
# runc forwards every signal to the container except these (signals.go).
NOT_FORWARDED = frozenset({"CHLD", "CLD", "WINCH", "URG", "KILL", "STOP"})


def _become_subreaper() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise HostError(f"prctl(PR_SET_CHILD_SUBREAPER): errno {ctypes.get_errno()}")


def run(
    ctx: Context,
    container_id: str,
    bundle: str,
    opts: lifecycle.CreateOptions,
    *,
    detach: bool,
    keep: bool = False,
    image: ImageSource | None = None,
) -> int:
    if detach:
        lifecycle.create(ctx, container_id, bundle, opts, image=image)
        lifecycle.start(ctx, container_id)
        return 0
    _become_subreaper()
    console = None
    terminal = image.terminal if image is not None else lifecycle.load_bundle(bundle).terminal
    if opts.console_socket is None and terminal:
        from nexcage.host.console import ConsoleSocket

        console = ConsoleSocket()
        opts.console_socket = console.path
    try:
        rec = lifecycle.create(ctx, container_id, bundle, opts, detached=False, image=image)
        master = console.receive() if console else -1
    finally:
        if console:
            console.close()
    restore = _forward_signals(rec.pid)
    try:
        lifecycle.start(ctx, container_id)
        if master >= 0:
            from nexcage.host.console import proxy

            proxy(master)
        code = _wait_for(rec.monitor_pid or rec.pid)
    finally:
        restore()
        if not keep:
            lifecycle.delete(ctx, container_id, force=True)
    return code


def _forward_signals(pid: int) -> Callable[[], None]:
    import _signal

    from nexcage.host import signals

    previous: dict[int, Any] = {}

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for name, num in signals.table().items():
        if name in NOT_FORWARDED or num in previous:
            continue
        try:
            previous[num] = _signal.signal(num, forward)
        except (OSError, ValueError, RuntimeError):
            continue

    def restore() -> None:
        for num, handler in previous.items():
            _signal.signal(num, handler)

    return restore


def _wait_for(pid: int) -> int:
    """Reap adopted children until the container's init exits; return runc-style status."""
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            # Not adopted (the backend kept it as its own child elsewhere): poll until gone.
            from nexcage.host import proc

            start = proc.start_time(pid)
            while proc.alive(pid, start):
                import time

                time.sleep(0.02)
            return 0
        if reaped == pid:
            if os.WIFSIGNALED(status):
                return 128 + os.WTERMSIG(status)
            return os.WEXITSTATUS(status)


class ExecOptions:
    """runc's per-field exec flags (used only without ``--process``)."""

    __slots__ = (
        "additional_gids",
        "apparmor",
        "caps",
        "cwd",
        "env",
        "no_new_privs",
        "process_label",
        "tty",
        "user",
    )

    def __init__(
        self,
        *,
        env: Sequence[str] = (),
        cwd: str | None = None,
        user: str | None = None,
        additional_gids: Sequence[str] = (),
        caps: Sequence[str] = (),
        tty: bool | None = None,
        no_new_privs: bool | None = None,
        apparmor: str | None = None,
        process_label: str | None = None,
    ) -> None:
        self.env = list(env)
        self.cwd = cwd
        self.user = user
        self.additional_gids = list(additional_gids)
        self.caps = list(caps)
        self.tty = tty
        self.no_new_privs = no_new_privs
        self.apparmor = apparmor
        self.process_label = process_label


def exec_process(base: dict[str, Any], command: Sequence[str], opts: ExecOptions) -> dict[str, Any]:
    """The process object runc builds for ``exec CMD...`` (runc exec.go ``getProcess``).

    Starts from the container's own process; args replaced; env appended with later keys
    winning; cwd, user, groups, capabilities, tty, no_new_privs, apparmor and label overridden
    when given. Every backend then gets it through ``--process``, so exec means the same on
    crun (whose ``--env`` replaces the environment) as on runc.
    """
    proc: dict[str, Any] = {k: v for k, v in base.items() if k not in ("consoleSize",)}
    proc["args"] = list(command)
    proc["env"] = _merge_env([e for e in base.get("env") or [] if isinstance(e, str)], opts.env)
    if opts.cwd:
        proc["cwd"] = opts.cwd
    if opts.apparmor:
        proc["apparmorProfile"] = opts.apparmor
    if opts.process_label:
        proc["selinuxLabel"] = opts.process_label
    proc["terminal"] = bool(opts.tty)
    if opts.no_new_privs is not None:
        proc["noNewPrivileges"] = opts.no_new_privs
    if opts.caps:
        caps = dict(base.get("capabilities") or {})
        for kind in ("bounding", "effective", "permitted"):
            caps[kind] = list(caps.get(kind) or []) + [
                c for c in opts.caps if c not in (caps.get(kind) or [])
            ]
        proc["capabilities"] = caps
    user = dict(base.get("user") or {"uid": 0, "gid": 0})
    if opts.user:
        uid, _, gid = opts.user.partition(":")
        user["uid"] = _id_number(uid, "--user")
        if gid:
            user["gid"] = _id_number(gid, "--user")
    if opts.additional_gids:
        user["additionalGids"] = [_id_number(g, "--additional-gids") for g in opts.additional_gids]
    proc["user"] = user
    return proc


def _merge_env(base: list[str], extra: Sequence[str]) -> list[str]:
    merged: dict[str, str] = {}
    for entry in [*base, *extra]:
        key = entry.partition("=")[0]
        merged.pop(key, None)  # a later value wins and moves to the end, like runc's dedup
        merged[key] = entry
    return list(merged.values())


def _id_number(text: str, flag: str) -> int:
    from nexcage.errors import UsageError

    if not text.isdigit():
        raise UsageError(f"{flag}: {text!r} is not a numeric id (UID[:GID])")
    return int(text)


def exec_(
    ctx: Context,
    container_id: str,
    passthrough: Sequence[str],
    command: Sequence[str],
    *,
    process_file: str | None = None,
    options: ExecOptions | None = None,
    ignore_paused: bool = False,
    preserve_fds: int = 0,
) -> None:
    """Replace this process with the backend's ``exec`` (its exit status is the caller's).

    ``passthrough`` holds the flags that are not process fields (``--detach``,
    ``--console-socket``, ``--pid-file``, ``--preserve-fds``, ``--tty``, ...).
    """
    rec, status = lifecycle.load(ctx, container_id)
    if status == st.STOPPED:
        raise InvalidState(container_id, status, "cannot exec in a stopped container")
    if status == st.PAUSED and not ignore_paused:
        raise InvalidState(
            container_id,
            status,
            "cannot exec in a paused container (use --ignore-paused to override)",
        )
    listen = int(os.environ.get("LISTEN_FDS", "0") or 0)
    fds = list(range(3, 3 + listen + preserve_fds))
    if process_file is not None:
        _check_process_file(process_file)
    elif not command:
        from nexcage.errors import UsageError

        raise UsageError("exec: no command given (args, or --process FILE)")
    else:
        from nexcage import fastjson

        doc = exec_process(rec.process, command, options or ExecOptions())
        fd = os.memfd_create("nexcage-exec-process", 0)
        os.write(fd, fastjson.dumps(doc).encode())
        os.lseek(fd, 0, os.SEEK_SET)
        fds.append(fd)
        process_file = f"/proc/self/fd/{fd}"
    argv = ctx.backend(rec.backend).exec_argv(
        container_id, ["--process", process_file, *passthrough], ()
    )
    if not argv:
        return  # the backend started a detached exec itself (lxc)
    host_run.replace(argv, pass_fds=fds)


def _check_process_file(path: str) -> None:
    from nexcage import fastjson
    from nexcage.spec.config import parse_process
    from nexcage.spec.validate import validate_process

    try:
        with open(path, "rb") as f:
            raw = fastjson.loads(f.read())
    except OSError as exc:
        raise SpecError(path, [Violation("", f"cannot read: {exc.strerror}")]) from None
    except ValueError as exc:
        raise SpecError(path, [Violation("", f"malformed JSON: {exc}")]) from None
    violations = validate_process(parse_process(raw, path))
    if violations:
        raise SpecError(path, violations)


def ps(ctx: Context, container_id: str, fmt: str, ps_args: Sequence[str]) -> list[int] | None:
    """Replace this process with the backend's ``ps``; a stopped container has no pids."""
    rec, status = lifecycle.load(ctx, container_id)
    if status == st.STOPPED:
        return []
    argv = ctx.backend(rec.backend).ps_argv(container_id, fmt, ps_args)
    if not argv:
        from nexcage.host import cgroups

        return cgroups.pids_of(rec.pid)
    host_run.replace(argv)
    return None


def events(ctx: Context, container_id: str, options: Sequence[str]) -> None:
    """Replace this process with the backend's ``events`` (stats / OOM JSON lines)."""
    rec, status = lifecycle.load(ctx, container_id)
    if status == st.STOPPED:
        raise InvalidState(container_id, status, "container not running")
    backend = ctx.backend(rec.backend)
    if "events" not in backend.capabilities:
        from nexcage.errors import NexcageError

        raise NexcageError(
            f"events: the {rec.backend} backend has no events support (crun has no `events` "
            "command); create the container with --runtime runc for stats and OOM events"
        )
    host_run.replace(backend.events_argv(container_id, options))
