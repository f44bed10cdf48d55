"""``create``: write the LXC config, start the monitor, wait for the held init.

See the package docstring for the design. The order of a create:

1. translate config.json (pure) and refuse on any finding;
2. write ``<root>/<id>/``: ``config``, ``hook``, ``nexcage/process``, ``nexcage/exec.fifo``;
3. spawn ``nexcage-lxc-monitor`` in its own session with our fds 0-2, the preserved fds and the
   sync socket at the fd after them;
4. wait for the helper's ``ready`` (its host pid, a pty master with ``process.terminal``),
   hand the pty to ``--console-socket``, write the pid records.

Anything failing after step 2 is undone by the caller (``delete --force``).

Nothing here is fsync'ed: the files live in a directory made by this create and removed by its
cleanup, and what they describe (a config for the monitor, live pids) means nothing after a
crash of the host. On a disk-backed state root their ten fsyncs cost 5-35 ms per create
(bench/lxc_lifecycle.py, more when the disk is busy). Readers still see whole files (rename).
"""

from __future__ import annotations

import os

from nexcage.backends.lxc import (
    CONFIG,
    FIFO,
    INNER,
    START_TIMEOUT,
    STATE,
    InitFailed,
    Lxc,
    Pids,
    translation_for,
)
from nexcage.errors import NexcageError, Unsupported
from nexcage.host import fs, proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nexcage.backends.translate.lxc_config import Translation
    from nexcage.spec.config import Spec


def create(
    backend: Lxc,
    container_id: str,
    bundle: str,
    config: str | None,
    pid_file: str,
    console_socket: str | None,
    preserve_fds: int,
) -> None:
    from nexcage.backends.lxc import install

    helper, monitor = install.find()
    directory = backend.dir(container_id)
    spec = backend.checked_spec() if config is None else None
    if spec is None:
        spec = _read_config(config or os.path.join(bundle, "config.json"))
    translation = translation_for(backend, container_id, spec, bundle, helper)
    if translation.findings:
        raise Unsupported(backend.name, translation.findings)
    if os.path.lexists(directory):
        fs.remove_tree(directory)  # left by a create that died before its cleanup
    inner = os.path.join(directory, INNER)
    os.makedirs(inner, mode=0o755)
    os.chmod(directory, 0o700)
    listen = int(os.environ.get("LISTEN_FDS", "0") or 0)
    preserved = list(range(3, 3 + listen + preserve_fds))
    sync_fd = 3 + len(preserved)
    translation.init.insert(0, ("sync", str(sync_fd)))
    _write_files(directory, inner, translation, container_id)
    from nexcage.backends.lxc import sync

    ours, pid = _spawn_monitor(
        [monitor, container_id, backend.root, os.path.join(directory, "lxc.log")],
        preserved,
        sync_fd,
    )
    monitor_start = proc.start_time(pid) or 0
    # Recorded at once: a failure below is cleaned up by delete, which needs the monitor.
    _record(directory, Pids(0, 0, pid, monitor_start))
    try:
        init, master = sync.wait_ready(ours, pid, START_TIMEOUT)
    except sync.ChildFailed as exc:
        raise InitFailed(
            f"lxc: container init failed: {exc.message or _log_tail(directory)}"
        ) from None
    finally:
        ours.close()
    try:
        if master >= 0 and console_socket:
            sync.send_console(console_socket, master)
    finally:
        if master >= 0:
            os.close(master)
    init_start = proc.start_time(init)
    if init_start is None:
        raise InitFailed(f"lxc: container init exited during create: {_log_tail(directory)}")
    _record(directory, Pids(init, init_start, pid, monitor_start))
    fs.write_pid_file(pid_file, init)


def _record(directory: str, pids: Pids) -> None:
    fs.atomic_write(os.path.join(directory, STATE), pids.encode(), durable=False)


def _spawn_monitor(argv: list[str], preserved: list[int], sync_fd: int) -> tuple[Any, int]:
    """Start the monitor in its own session with the sync socket at ``sync_fd``."""
    from nexcage.backends.lxc import sync
    from nexcage.host import run as host_run

    ours, theirs = sync.channel()
    try:
        child = theirs.fileno()
        if child == sync_fd:  # posix_spawn's dup2 onto itself would keep FD_CLOEXEC
            child = os.dup(child)
        pid = host_run.spawn(argv, pass_fds=preserved, dup2=[(child, sync_fd)], setsid=True)
        if child != theirs.fileno():
            os.close(child)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return ours, pid


def _read_config(path: str) -> Spec:
    from nexcage.spec.config import parse_config, read_config

    raw = read_config(path)
    if not isinstance(raw, dict):
        raise NexcageError(f"{path}: not a JSON object")
    return parse_config(raw)


def _write_files(directory: str, inner: str, translation: Translation, container_id: str) -> None:
    from nexcage.backends.translate import lxc_config

    header = f"written by nexcage for container {container_id}; do not edit"
    text = lxc_config.render(translation.keys, header)
    fs.atomic_write(os.path.join(directory, CONFIG), text.encode(), 0o600, durable=False)
    hook = lxc_config.hook_records(translation.hook)
    fs.atomic_write(os.path.join(directory, "hook"), hook, 0o600, durable=False)
    process = lxc_config.records(translation.init)
    fs.atomic_write(os.path.join(inner, "process"), process, 0o644, durable=False)
    fifo = os.path.join(inner, FIFO)
    os.mkfifo(fifo, 0o600)
    os.chmod(fifo, 0o622)  # the init may run as any uid; only it and start open it
    with open(os.path.join(inner, "init"), "wb"):
        pass  # mount point of the helper binary


def _log_tail(directory: str) -> str:
    """LXC's own reason, from the monitor's log (ERROR level)."""
    try:
        with open(os.path.join(directory, "lxc.log"), encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "no reason logged"
    if not lines:
        return "no reason logged"
    # "nexcage-lxc-monitor <id> <time> ERROR <module> - <file>:<func>:<line> - <message>"
    messages = [line.rsplit(" - ", 1)[-1] for line in lines[-3:]]
    return "; ".join(messages)
